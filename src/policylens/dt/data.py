"""Trajectories for the decision transformer: returns-to-go, timesteps and K-step windows from a rollouts store.

A store recorded by ``policylens dt collect`` holds the symbolic view in field ``obs_symbolic``; a store
recorded by ``policylens record`` from a symbolic-observation agent holds it in ``obs``. Either works.
The fields a DT needs (the view, ``action``, ``reward``, ``done``) are read whole into memory: a symbolic
frame is 147 bytes, so a million frames fit in ~150 MB.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..envs import parse_spec

SYMBOLIC_SHAPE = (7, 7, 3)
NEEDED = ("action", "reward", "done")


def returns_to_go(reward: np.ndarray, done: np.ndarray) -> np.ndarray:
    """``rtg[t]`` = sum of the rewards from t to its episode's end, (F,) float32 (episodes end where ``done``).

    Not discounted: MiniGrid's success reward is already discounted by time (1 - 0.9 t / max_steps).
    """
    reward, done = np.asarray(reward, np.float64), np.asarray(done, bool)  # (F,), (F,)
    if len(reward) == 0:
        return np.zeros(0, np.float32)
    episode = np.concatenate([[0], np.cumsum(done)[:-1]]).astype(np.int64)  # (F,) episode of each frame
    suffix = np.cumsum(reward[::-1])[::-1]  # (F,) sum from t to the very end
    after = _after_episode(suffix, np.flatnonzero(done), int(episode[-1]) + 1)  # (E,)
    return (suffix - after[episode]).astype(np.float32)


def _after_episode(suffix: np.ndarray, ends: np.ndarray, n_episodes: int) -> np.ndarray:
    """For each episode, the suffix sum starting right after its last frame (0 for the final one)."""
    out = np.zeros(n_episodes, np.float64)  # (E,)
    nxt = ends + 1  # (E_done,) first frame of the following episode
    keep = nxt < len(suffix)
    out[:int(keep.sum())] = suffix[nxt[keep]]
    return out


def timesteps(done: np.ndarray) -> np.ndarray:
    """Step index of each frame within its episode, (F,) int64."""
    done = np.asarray(done, bool)
    after_end = np.flatnonzero(done) + 1  # first frames of the episodes that follow an end
    starts = np.concatenate([[0], after_end[after_end < len(done)]])  # (E,)
    index = np.arange(len(done))  # (F,)
    start_of = starts[np.searchsorted(starts, index, side="right") - 1]  # (F,)
    return (index - start_of).astype(np.int64)


@dataclass
class Batch:
    """K-step windows, left-padded where an episode began less than K steps before the window's end."""

    states: torch.Tensor  # (B, K, H, W, 3) uint8
    actions: torch.Tensor  # (B, K) long; the last column is the target of the last step
    rtgs: torch.Tensor  # (B, K) float
    timesteps: torch.Tensor  # (B, K) long
    mask: torch.Tensor  # (B, K) bool, False on padding

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, f).to(device) for f in ("states", "actions", "rtgs", "timesteps", "mask")))


@dataclass
class Trajectories:
    """Whole episodes in memory. Frames are concatenated; episode e is ``[start[e], start[e] + length[e])``."""

    obs: np.ndarray  # (F, H, W, 3) uint8 symbolic views
    action: np.ndarray  # (F,) int64
    reward: np.ndarray  # (F,) float32
    rtg: np.ndarray  # (F,) float32
    timestep: np.ndarray  # (F,) int64
    start: np.ndarray  # (E,) int64
    length: np.ndarray  # (E,) int64
    env: str = ""  # env spec with symbolic observations
    action_names: tuple = ()

    @property
    def num_episodes(self) -> int:
        return len(self.start)

    @property
    def num_frames(self) -> int:
        return len(self.action)

    def frames_of(self, episodes: np.ndarray) -> np.ndarray:
        """Global frame indices of the given episodes, in order, (n,)."""
        if len(episodes) == 0:
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(self.start[e], self.start[e] + self.length[e]) for e in episodes])

    def split(self, val_fraction: float, seed: int = 0) -> tuple:
        """Episodes ``(train, held_out)``: :func:`policylens.rollouts.store.split_episodes`."""
        from ..rollouts.store import split_episodes

        return split_episodes(self.num_episodes, val_fraction, seed)

    def windows(self, ends: np.ndarray, context: int) -> Batch:
        """The ``context``-step windows ending at the given global frames (each window stays in its episode)."""
        ends = np.asarray(ends, np.int64)  # (B,)
        first = self.start[np.searchsorted(self.start, ends, side="right") - 1]  # (B,) episode start of each end
        idx = ends[:, None] - np.arange(context - 1, -1, -1)[None]  # (B, K)
        valid = idx >= first[:, None]  # (B, K)
        idx = np.maximum(idx, first[:, None])  # padded slots read the first frame, then are blanked
        states = np.where(valid[..., None, None, None], self.obs[idx], 0).astype(np.uint8)  # (B, K, H, W, 3)
        return Batch(states=torch.from_numpy(states),
                     actions=torch.from_numpy(np.where(valid, self.action[idx], 0)),
                     rtgs=torch.from_numpy(np.where(valid, self.rtg[idx], 0).astype(np.float32)),
                     timesteps=torch.from_numpy(np.where(valid, self.timestep[idx], 0)),
                     mask=torch.from_numpy(valid))


def symbolic_env(spec: str) -> str:
    """The env spec with symbolic observations (what the DT plays on)."""
    return str(parse_spec(spec).replace(obs="symbolic", tile_size=None))


def load_trajectories(path) -> Trajectories:
    """Read the fields a DT needs from a rollouts store; clear errors when the store cannot serve a DT."""
    from ..rollouts import open as open_store

    store = open_store(Path(path))
    missing = [f for f in NEEDED if f not in store.fields]
    view = "obs_symbolic" if "obs_symbolic" in store.fields else "obs"
    if view not in store.fields:
        missing.append("obs_symbolic")
    if missing:
        raise ValueError(f"rollouts store {path} lacks the field(s) {', '.join(missing)} a decision transformer "
                         f"needs (it has {', '.join(store.fields)}); record one with `policylens dt collect`")
    if len(store) == 0:
        raise ValueError(f"rollouts store {path} holds no episodes")
    n = store.num_frames
    obs = store.read(view, 0, n)  # (F, H, W, C)
    if obs.ndim != 4 or obs.shape[-1] != 3 or obs.shape[1] != obs.shape[2] or obs.shape[1] > 15:
        raise ValueError(f"rollouts store {path}: field {view!r} holds observations of shape {obs.shape[1:]}, not "
                         f"the symbolic MiniGrid view (7, 7, 3) a decision transformer reads; record with "
                         f"`policylens dt collect` (it stores the symbolic view as obs_symbolic)")
    reward, done = store.read("reward", 0, n).astype(np.float32), store.read("done", 0, n).astype(bool)
    return Trajectories(obs=obs.astype(np.uint8), action=store.read("action", 0, n).astype(np.int64), reward=reward,
                        rtg=returns_to_go(reward, done), timestep=timesteps(done),
                        start=store.index["start"].astype(np.int64), length=store.index["length"].astype(np.int64),
                        env=symbolic_env(store.env) if store.env else "", action_names=tuple(store.action_names))
