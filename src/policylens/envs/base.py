"""The one vector-env interface every analysis relies on.

Semantics (gym3-like, auto-reset): ``step`` returns for each env the reward of the step and whether the
episode ended with it; where it ended, the returned observation is already the first of the next episode.
``info[i]`` always holds ``level_seed`` (of the episode the returned obs belongs to); on an episode's last
step it also holds ``episode = {"return", "length", "cause", "success", "level_seed"}`` for the episode
that just ended, and, where the env can give it (MiniGrid, ``gym:``; not procgen, which resets inside),
``final_obs``, that episode's last observation. An episode cut by a time limit ends with cause ``timeout``.
"""
from __future__ import annotations

import abc
import base64
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gymnasium import spaces

    from .spec import EnvSpec

#: Every cause an episode can end by. CoinRun uses all but ``obstacle``; MiniGrid uses success, obstacle (a moving ball), wall, lava, timeout;
#: Atari (:mod:`.atari_causes`) the category of what struck the player: ball, ghost, bullet, alien, enemy, and success, timeout.
CAUSES = ("success", "saw", "enemy", "lava", "obstacle", "wall", "timeout", "ball", "ghost", "bullet", "alien", "other")


def env_rngs(seed: "int | None", num_envs: int, shard: "tuple | None" = None) -> list:
    """One generator per env. ``shard = (first, total)``: these envs are envs ``first ..`` of a batch of ``total``
    (split across worker processes, :mod:`.workers`), and draw what those envs of the whole batch would."""
    first, total = shard or (0, num_envs)
    children = np.random.SeedSequence(seed).spawn(total)[first:first + num_envs]
    return [np.random.default_rng(s) for s in children]


class VecEnv(abc.ABC):
    """A batch of ``num_envs`` environments stepped together. Observations are uint8 images ``(N, H, W, C)``
    or float32 vectors ``(N, D)`` (``gym:`` envs), of ``observation_space``'s dtype."""

    num_envs: int
    observation_space: spaces.Box  # uint8 (H, W, C) or float32 (D,)
    action_space: spaces.Discrete
    action_names: list
    spec: EnvSpec  # the spec it was made from
    obs_scale: float = 1 / 255  # factor from obs to a network's input (agents read it at build time): 1 for vectors
    _tracker: EpisodeTracker  # running returns and lengths (what :meth:`snapshot` saves)

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start fresh episodes in every env; returns obs ``(N, H, W, C)`` uint8."""

    @abc.abstractmethod
    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Act; returns ``obs (N,H,W,C) uint8, reward (N,) float32, done (N,) bool, info list[dict]``."""

    def get_state(self) -> list:
        """Opaque per-env state (bytes) that :meth:`set_state` restores exactly."""
        raise NotImplementedError(f"{type(self).__name__} cannot save its state")

    def set_state(self, states: list) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot restore a state")

    def observe(self) -> np.ndarray:
        """The current observation ``(N, H, W, C)`` without stepping (e.g. after :meth:`set_state`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot observe without stepping")

    def render(self) -> "np.ndarray | None":
        """The game's own pictures of the current step ``(N, h, w, 3)`` uint8, as it draws them for people (Atari:
        the full RGB screen), or None where the env draws none beyond its observations."""
        return None

    def snapshot(self) -> dict:
        """Everything needed to continue exactly from here, JSON-able (env states base64-encoded)."""
        return {"states": [base64.b64encode(s).decode() for s in self.get_state()],
                "tracker": self._tracker.state()}

    def restore(self, snap: dict) -> np.ndarray:
        """Undo to a :meth:`snapshot`; returns the current observation."""
        self.set_state([base64.b64decode(s) for s in snap["states"]])
        self._tracker.load(snap["tracker"])
        return self.observe()

    def entities(self) -> list | None:
        """Ground-truth entities per env (list of dicts), or None where the game gives none."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EpisodeTracker:
    """Running return/length per env, turned into an ``episode`` record when an episode ends."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def state(self) -> dict:
        return {"returns": self.returns.tolist(), "lengths": self.lengths.tolist()}

    def load(self, state: dict) -> None:
        self.returns[:] = state["returns"]
        self.lengths[:] = state["lengths"]

    def update(self, reward: np.ndarray, done: np.ndarray, info: list, causes: list, level_seeds: list) -> None:
        self.returns += reward
        self.lengths += 1
        for i in np.flatnonzero(done):
            info[i]["episode"] = {
                "return": float(self.returns[i]),
                "length": int(self.lengths[i]),
                "cause": causes[i],
                "success": causes[i] == "success",
                "level_seed": level_seeds[i],
            }
            self.returns[i] = 0.0
            self.lengths[i] = 0
