"""Procgen (all 16 games, through gym3) behind the vector interface.

Every procgen option is a spec option: ``distribution_mode``, ``num_levels``, ``start_level``,
``use_backgrounds``, ``restrict_themes``, ``use_monochrome_assets``, ``paint_vel_info``, ``center_agent``,
``use_generated_assets``, ``num_threads``, ``debug_mode``. ``ground_truth=true`` (CoinRun) labels every
episode end with its cause from the game's state (see :mod:`policylens.envs.coinrun`). ``invisible=saw``
(CoinRun; any of ``saw,enemy,crate``, comma-separated) draws those entities transparent in every episode: they
still move and kill, the agent just cannot see them (Understanding RL Vision's control for its buzzsaw edit).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .base import EpisodeTracker, VecEnv
from .gym3_env import gym3_env
from .spec import EnvSpec, invisible_option, option_list

GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)
PROCGEN_OPTIONS = (
    "distribution_mode", "num_levels", "start_level", "use_backgrounds", "restrict_themes",
    "use_monochrome_assets", "paint_vel_info", "center_agent", "use_generated_assets", "num_threads",
    "debug_mode",
)
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")
#: procgen's 15 button combinations, in action-index order.
ACTION_NAMES = [
    "LEFT+DOWN", "LEFT", "LEFT+UP", "DOWN", "NOOP", "UP", "RIGHT+DOWN", "RIGHT", "RIGHT+UP",
    "D", "A", "W", "S", "Q", "E",
]
#: The step limit of every procgen game; an episode this long that did not succeed timed out.
TIMEOUT_STEPS = 1000


def invisible_kinds(spec: EnvSpec, value) -> tuple:
    """The entity kinds of ``invisible=`` (comma-separated), checked: CoinRun's :data:`~.coinrun.HIDEABLE`."""
    if not option_list(value):
        return ()
    if spec.name != "coinrun":
        raise ValueError(f"invisible= is available for coinrun only, not {spec.name!r}")
    from .coinrun import HIDEABLE

    return invisible_option(value, HIDEABLE, "procgen")


class ProcgenVecEnv(VecEnv):
    def __init__(self, spec: EnvSpec, num_envs: int = 1, seed: int | None = None):
        if spec.name not in GAMES:
            raise ValueError(f"unknown procgen game {spec.name!r}; expected one of {', '.join(GAMES)}")
        opts = dict(spec.options)
        self.ground_truth = bool(opts.pop("ground_truth", False))
        self.invisible = invisible_kinds(spec, opts.pop("invisible", ""))
        unknown = sorted(set(opts) - set(PROCGEN_OPTIONS))
        if unknown:
            raise ValueError(f"unknown procgen option(s) {unknown}; expected any of "
                             f"{', '.join(PROCGEN_OPTIONS + ('ground_truth', 'invisible'))}")
        if opts.get("distribution_mode", "hard") not in DISTRIBUTION_MODES:
            raise ValueError(f"distribution_mode={opts['distribution_mode']!r}; expected one of {DISTRIBUTION_MODES}")
        if self.ground_truth and spec.name != "coinrun":
            raise ValueError(f"ground_truth is available for coinrun only, not {spec.name!r}")
        self.spec, self.game, self.options, self.num_envs = spec, spec.name, opts, num_envs
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(15)
        self.action_names = list(ACTION_NAMES)
        self.env: Any = None  # procgen's gym3 env (untyped), made by reset
        self.reset(seed)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if self.env is not None:
            self.env.close() if hasattr(self.env, "close") else None
        self.env = gym3_env(self.game, self.num_envs, seed, self.options)
        self._tracker = EpisodeTracker(self.num_envs)
        self._hide(range(self.num_envs))
        _, obs, _ = self.env.observe()
        self._level_seeds = [int(i["level_seed"]) for i in self.env.get_info()]
        return obs["rgb"].copy()

    def _hide(self, which) -> None:
        """Make the ``invisible`` entities of envs ``which`` (just started episodes) transparent."""
        which = list(which)
        if not self.invisible or not which:
            return
        from .coinrun import hide_entities

        states = self.env.callmethod("get_state")
        for i in which:
            states[i] = hide_entities(states[i], self.invisible)
        self.env.callmethod("set_state", states)

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int32).reshape(self.num_envs)
        before = self.env.callmethod("get_state") if self.ground_truth else None
        ended_seeds = list(self._level_seeds)
        lengths = self._tracker.lengths + 1
        self.env.act(actions)
        reward, obs, first = self.env.observe()
        raw_info = self.env.get_info()
        done = np.asarray(first, bool)
        if self.invisible and done.any():
            self._hide(np.flatnonzero(done))
            obs = self.env.observe()[1]  # the new episodes' first frames, redrawn without them
        causes = [None] * self.num_envs
        for i in np.flatnonzero(done):
            causes[i] = self._cause(i, raw_info[i], int(lengths[i]), before, actions)
        self._level_seeds = [int(d["level_seed"]) for d in raw_info]
        info = [{"level_seed": s} for s in self._level_seeds]
        self._tracker.update(np.asarray(reward, np.float32), done, info, causes, ended_seeds)
        return obs["rgb"].copy(), np.asarray(reward, np.float32), done, info

    def _cause(self, i: int, raw: dict, length: int, before, actions) -> str:
        if raw.get("prev_level_complete", 0):
            return "success"
        if length >= TIMEOUT_STEPS:
            return "timeout"
        if before is None:
            return "other"
        from .coinrun import end_cause

        return end_cause(before[i], int(actions[i]), self.options)

    def get_state(self) -> list:
        return self.env.callmethod("get_state")

    def set_state(self, states: list) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"set_state got {len(states)} states for {self.num_envs} envs")
        self.env.callmethod("set_state", list(states))
        _, _, _ = self.env.observe()
        self._level_seeds = [int(d["level_seed"]) for d in self.env.get_info()]

    def observe(self) -> np.ndarray:
        """The current observation (e.g. after :meth:`set_state`)."""
        return self.env.observe()[1]["rgb"].copy()

    def entities(self) -> list | None:
        if self.game != "coinrun":
            return None
        from .coinrun import objects, parse_state

        return [objects(parse_state(s)) for s in self.get_state()]  # entities plus the coin tile

    def close(self) -> None:
        self.env = None
