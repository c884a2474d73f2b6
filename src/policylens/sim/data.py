"""Windows of T consecutive frames from a rollouts store, for training and checking the simulator.

A window never crosses an episode's end: it starts at a frame from which T frames remain in the episode
(or, in an episode shorter than T, at its first frame, and is padded past its end with ``mask`` False).
The held-out split is by whole episodes. The fields the simulator needs (``obs``, ``action``, ``reward``,
``done``, ``agent_state``, ``logits``) are read into memory: ~0.4 kB a frame for MiniGrid's symbolic view,
~9.6 kB for 56x56 RGB; ``max_episodes`` bounds what is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from .loop import Context

NEEDED = ("obs", "action", "reward", "done", "logits", "agent_state")


@dataclass
class Windows:
    """A batch of windows (B windows of T steps)."""

    obs: torch.Tensor  # (B, T, H, W, C) uint8 observation the agent saw
    action: torch.Tensor  # (B, T) long action it took
    reward: torch.Tensor  # (B, T) float reward of that action
    done: torch.Tensor  # (B, T) float 1 where the action ended the episode
    logits: torch.Tensor  # (B, T, A) float the agent's logits
    agent_state: torch.Tensor  # (B, T, hidden) float the state the agent received
    mask: torch.Tensor  # (B, T) bool, False on padding past an episode's end
    start: torch.Tensor  # (B,) long global index of each window's first frame in its SimData

    def to(self, device) -> "Windows":
        return Windows(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def rows(self, index) -> "Windows":
        return Windows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def context(self, frames: int) -> Context:
        """The encoder's input: the first ``frames`` frames and the agent's state at the first."""
        return Context(self.obs[:, :frames], self.agent_state[:, 0], self.mask[:, :frames])


@dataclass
class SimData:
    """Whole episodes in memory; episode e is frames ``[start[e], start[e] + length[e])``."""

    obs: np.ndarray  # (F, H, W, C) uint8
    action: np.ndarray  # (F,) int64
    reward: np.ndarray  # (F,) float32
    done: np.ndarray  # (F,) bool
    logits: np.ndarray  # (F, A) float32
    agent_state: np.ndarray  # (F, hidden) float32
    start: np.ndarray  # (E,) int64
    length: np.ndarray  # (E,) int64
    env: str = ""
    action_names: tuple = ()
    run: str = ""  # the agent the store was recorded with (zoo:NAME or a path)
    agent_sha256: str = ""  # sha256 of its weights file
    path: str = ""
    split_episodes: int = 0  # episodes the held-out split draws from (the first store's); 0: all
    level_seed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (E,) each episode's level

    @property
    def num_episodes(self) -> int:
        return len(self.start)

    @property
    def num_frames(self) -> int:
        return len(self.action)

    @property
    def split_pool(self) -> int:
        """How many of the first episodes the held-out split draws from (the first store's, when joined)."""
        return self.split_episodes or self.num_episodes

    def split(self, val_fraction: float, seed: int = 0) -> tuple:
        """Episodes ``(train, held_out)``: :func:`policylens.rollouts.store.split_episodes` of the first store's
        episodes; the episodes of any further stores (``--store A,B``) all train, so the held-out episodes are
        the ones the first store alone would hold out, and analyses of that store stay on unseen episodes."""
        from ..rollouts.store import split_episodes

        n = self.split_pool
        train, held_out = split_episodes(n, val_fraction, seed)
        return np.concatenate([train, np.arange(n, self.num_episodes)]).astype(np.int64), held_out

    def window_starts(self, episodes: np.ndarray, steps: int, min_frames: int = 0) -> np.ndarray:
        """First frames of every window of ``steps`` frames inside the given episodes, (n,) global indices; with
        ``min_frames`` > 0 also the windows that run past their episode's end with at least that many of its frames
        (padded by :meth:`windows`), so an episode's end falls at every step of some window."""
        keep = steps if min_frames <= 0 else min(min_frames, steps)
        starts = [np.arange(self.start[e], self.start[e] + max(self.length[e] - keep, 0) + 1) for e in episodes]
        return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)

    def episode_of(self, frames: npt.ArrayLike) -> np.ndarray:
        """The episode of each global frame index, (n,) int64."""
        return (np.searchsorted(self.start, np.asarray(frames, np.int64), side="right") - 1).astype(np.int64)

    def windows(self, starts: np.ndarray, steps: int) -> Windows:
        """The windows of ``steps`` frames starting at the given global frames, padded past episode ends."""
        starts = np.asarray(starts, np.int64)  # (B,)
        episode = self.episode_of(starts)  # (B,)
        end = self.start[episode] + self.length[episode]  # (B,) one past each episode's last frame
        idx = starts[:, None] + np.arange(steps)[None]  # (B, T)
        valid = idx < end[:, None]  # (B, T)
        idx = np.minimum(idx, end[:, None] - 1)  # padding reads the last frame, then is blanked

        def take(a, dtype):
            x = a[idx]  # (B, T, ...)
            blank = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
            return torch.from_numpy(np.where(blank, x, 0).astype(dtype))

        return Windows(obs=take(self.obs, np.uint8), action=take(self.action, np.int64),
                       reward=take(self.reward, np.float32), done=take(self.done, np.float32),
                       logits=take(self.logits, np.float32), agent_state=take(self.agent_state, np.float32),
                       mask=torch.from_numpy(valid), start=torch.from_numpy(starts))


def load_sim_data(path, max_episodes: int = 0) -> SimData:
    """Read a rollouts store's frames for the simulator (the first ``max_episodes`` episodes; 0: all), with
    clear errors when it cannot serve one. ``path`` may name several stores of the same agent and env, comma-
    separated (e.g. its own play and a higher-temperature policy's): their episodes follow one another, and the
    held-out split is drawn from the first's (:meth:`SimData.split`)."""
    parts = store_paths(path)
    if len(parts) > 1:
        return join_sim_data([load_sim_data(p, max_episodes) for p in parts])
    return _load_one(path, max_episodes)


def store_paths(text) -> list:
    """The stores a ``--store A,B`` value names, in order."""
    return [p.strip() for p in str(text).split(",") if p.strip()]


def join_sim_data(parts: list) -> SimData:
    """Several stores' :class:`SimData` as one; refuses stores of different agents, envs or shapes."""
    first = parts[0]
    kind = lambda d: (d.env, d.agent_sha256, d.obs.shape[1:], d.logits.shape[1:], d.agent_state.shape[1:])  # noqa: E731
    for d in parts[1:]:
        if kind(d) != kind(first):
            raise ValueError(f"rollouts stores {first.path} and {d.path} cannot train one simulator: they differ "
                             f"in env, agent or shapes ({kind(first)} vs {kind(d)})")
    offsets = np.cumsum([0] + [d.num_frames for d in parts[:-1]])
    cat = lambda name: np.concatenate([getattr(d, name) for d in parts])  # noqa: E731
    return SimData(obs=cat("obs"), action=cat("action"), reward=cat("reward"), done=cat("done"),
                   logits=cat("logits"), agent_state=cat("agent_state"),
                   start=np.concatenate([d.start + o for d, o in zip(parts, offsets)]).astype(np.int64),
                   length=cat("length"), env=first.env, action_names=first.action_names, run=first.run,
                   agent_sha256=first.agent_sha256, path=",".join(d.path for d in parts),
                   split_episodes=first.num_episodes, level_seed=cat("level_seed"))


def _load_one(path, max_episodes: int = 0) -> SimData:
    from ..rollouts import open as open_store

    store = open_store(Path(path))
    if "agent_state" not in store.fields:
        arch = store.metadata.get("agent", {}).get("arch", "?")
        raise ValueError(f"rollouts store {path} has no agent_state: it was recorded with a feed-forward agent "
                         f"(arch {arch!r}, {store.run or 'unknown run'}). The simulator trains the agent's hidden "
                         "state, so it needs a recurrent agent (e.g. zoo:minigrid-do8-recurrent); record one with "
                         "`policylens record RUN`")
    missing = [f for f in NEEDED if f not in store.fields]
    if missing:
        raise ValueError(f"rollouts store {path} lacks the field(s) {', '.join(missing)} the simulator needs "
                         f"(it has {', '.join(store.fields)})")
    if len(store) == 0:
        raise ValueError(f"rollouts store {path} holds no episodes")
    n_ep = len(store) if max_episodes <= 0 else min(max_episodes, len(store))
    n = int(store.index["start"][n_ep - 1] + store.index["length"][n_ep - 1])

    def read(name):
        return store.read(name, 0, n)

    recording = store.metadata.get("recording", {})
    return SimData(obs=read("obs").astype(np.uint8), action=read("action").astype(np.int64),
                   reward=read("reward").astype(np.float32), done=read("done").astype(bool),
                   logits=read("logits").astype(np.float32), agent_state=read("agent_state").astype(np.float32),
                   start=store.index["start"][:n_ep].astype(np.int64),
                   length=store.index["length"][:n_ep].astype(np.int64), env=store.env,
                   level_seed=store.index["level_seed"][:n_ep].astype(np.int64),
                   action_names=tuple(store.action_names), run=store.run,
                   agent_sha256=str(recording.get("agent_sha256", "")), path=str(Path(path).resolve()))
