"""Observations for dataset examples: frames sampled evenly ("infrequently", as the paper does) from a store."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rollouts.store import OBS_CHUNK


@dataclass
class FrameSample:
    frames: np.ndarray  # (N,) int64 global frame numbers in the store
    episodes: np.ndarray  # (N,) int64 episode of each frame
    obs: np.ndarray  # (N, H, W, C) uint8
    state: "np.ndarray | None"  # (N, hidden) the recurrent agent's recorded input state, or None


def even_frames(num_frames: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` frame numbers spread evenly over ``[0, num_frames)`` (all when fewer)."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if num_frames <= max_frames:
        return np.arange(num_frames, dtype=np.int64)
    return np.unique(np.linspace(0, num_frames - 1, max_frames).round().astype(np.int64))


def sample_frames(store, max_frames: int = 4000, with_state: bool = False, progress: bool = False) -> FrameSample:
    """Read evenly spaced frames of ``store`` (a :class:`policylens.rollouts.Rollouts`), one chunk window at a
    time; ``with_state`` also reads ``agent_state`` (a clear error if the store has none)."""
    if store.num_frames == 0:
        raise ValueError(f"rollouts store {store.path} holds no frames; record some episodes first")
    if with_state and "agent_state" not in store.fields:
        raise ValueError(f"the agent is recurrent but rollouts store {store.path} has no agent_state field; "
                         "record the store with this agent")
    frames = even_frames(store.num_frames, max_frames)  # (N,)
    fields = ("obs", "agent_state") if with_state else ("obs",)
    parts: dict[str, list] = {name: [] for name in fields}
    windows = np.unique(frames // OBS_CHUNK)
    if progress:
        from tqdm.auto import tqdm

        windows = tqdm(windows, desc="reading frames", unit="chunk")
    for w in windows:
        a, b = int(w) * OBS_CHUNK, min((int(w) + 1) * OBS_CHUNK, store.num_frames)
        picked = frames[(frames >= a) & (frames < b)] - a  # (n,) offsets inside the window
        for name in fields:
            parts[name].append(store.read(name, a, b)[picked])
    data = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    return FrameSample(frames, store.episode_of(frames).astype(np.int64), data["obs"], data.get("agent_state"))
