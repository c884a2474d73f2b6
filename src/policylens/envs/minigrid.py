"""MiniGrid (gymnasium) behind the vector interface, with episode-end causes from the grid itself.

Spec options: ``obs`` = ``symbolic`` (7x7x3 integer encoding, default) | ``onehot`` (7x7x20, 0/1) |
``rgb`` (the agent's partial view rendered, ``tile_size`` px per cell, default 8 -> 56x56x3);
``num_levels``/``start_level``: episode seeds drawn from ``[start_level, start_level + num_levels)``
(0 = unlimited), so seeds play the role of procgen's levels; ``num_actions``: keep only the first n actions
(e.g. 3 = left, right, forward, as Dynamic-Obstacles has, so an agent trained on Empty-Random can go on to
Dynamic-Obstacles in a curriculum); ``invisible=ball`` (any of :data:`HIDEABLE`, comma-separated): those
objects are left out of every observation while the game keeps them (they still move and block);
any other option goes to ``gymnasium.make``.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import types
from typing import TYPE_CHECKING, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .base import EpisodeTracker, VecEnv, env_rngs
from .spec import EnvSpec, invisible_option

if TYPE_CHECKING:
    from minigrid.minigrid_env import MiniGridEnv

OBS_MODES = ("symbolic", "onehot", "rgb")
# One-hot widths of the three planes of MiniGrid's encoding: object, colour, state.
ONEHOT_SIZES = (11, 6, 3)
_OWN_OPTIONS = ("obs", "tile_size", "num_levels", "start_level", "ground_truth", "num_actions", "invisible")
#: Objects ``invisible=`` can leave out of the view: those that do not block sight, so hiding one changes its
#: own cells and nothing else the agent sees.
HIDEABLE = ("ball", "key", "box", "goal", "lava")


def _minigrid_ids() -> list:
    importlib.import_module("minigrid")  # importing it registers the ids

    return sorted(k for k in gym.registry if k.startswith("MiniGrid") or k.startswith("BabyAI"))


def onehot(image: np.ndarray) -> np.ndarray:
    """``(..., 7, 7, 3)`` integer encoding -> ``(..., 7, 7, 20)`` uint8 one-hot."""
    planes = [np.eye(n, dtype=np.uint8)[np.clip(image[..., k], 0, n - 1)] for k, n in enumerate(ONEHOT_SIZES)]
    return np.concatenate(planes, axis=-1)


class MiniGridVecEnv(VecEnv):
    """``fast_view``: draw the agent's view with :mod:`.minigrid_view` (numpy, the same arrays as MiniGrid's own)
    where the env draws it MiniGrid's way; False: MiniGrid's own ``gen_obs`` and ``get_frame`` throughout."""

    def __init__(self, spec: EnvSpec, num_envs: int = 1, seed: int | None = None, shard: tuple | None = None,
                 fast_view: bool = True):
        ids = _minigrid_ids()
        if spec.name not in ids:
            import difflib

            close = difflib.get_close_matches(spec.name, ids, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            listed = [i for i in ids if i.startswith("MiniGrid")]
            raise ValueError(f"unknown MiniGrid env {spec.name!r}; {hint}registered MiniGrid ids: {', '.join(listed)} "
                             f"(and {len(ids) - len(listed)} BabyAI ids)")
        opts = dict(spec.options)
        self.obs_mode = opts.get("obs", "symbolic")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"minigrid option obs={self.obs_mode!r}; expected one of {OBS_MODES}")
        self.tile_size = int(opts.get("tile_size", 8))
        self.num_levels = int(opts.get("num_levels", 0))
        self.start_level = int(opts.get("start_level", 0))
        self.invisible = invisible_option(opts.get("invisible"), HIDEABLE, "minigrid")
        make_kwargs = {k: v for k, v in opts.items() if k not in _OWN_OPTIONS}
        self.spec, self.shard = spec, shard
        self.num_envs = num_envs
        self.envs = [cast("MiniGridEnv", gym.make(spec.name, **make_kwargs).unwrapped) for _ in range(num_envs)]
        from . import minigrid_view  # imports MiniGrid: here, not where only ONEHOT_SIZES is wanted

        self._fast = minigrid_view
        self.fast_view = fast_view and all(minigrid_view.supported(env) for env in self.envs)
        # MiniGrid's step and reset end with gen_obs(); where our own drawing replaces its image, it is not drawn
        self._view_unused = self.obs_mode == "rgb" or bool(self.invisible)
        if self.fast_view:
            for env in self.envs:
                env.gen_obs = types.MethodType(minigrid_view.gen_obs, env)  # type: ignore[method-assign]
        available = int(cast(spaces.Discrete, self.envs[0].action_space).n)
        n_actions = int(opts.get("num_actions", available))
        if not 1 <= n_actions <= available:
            raise ValueError(f"minigrid option num_actions={n_actions}: {spec.name} has {available} actions")
        self.action_space = spaces.Discrete(n_actions)
        self.action_names = [a.name for a in self.envs[0].actions][: self.action_space.n]
        view = self.envs[0].agent_view_size
        shape = {
            "symbolic": (view, view, 3),
            "onehot": (view, view, sum(ONEHOT_SIZES)),
            "rgb": (view * self.tile_size, view * self.tile_size, 3),
        }[self.obs_mode]
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.obs_scale = {"symbolic": 1 / 10, "onehot": 1.0, "rgb": 1 / 255}[self.obs_mode]
        self._tracker = EpisodeTracker(num_envs)
        self._level_seeds = [0] * num_envs
        self.reset(seed)

    # ----------------------------------------------------------------------------------------------
    def _next_seed(self, i: int) -> int:
        rng = self._rngs[i]
        if self.num_levels > 0:
            return self.start_level + int(rng.integers(self.num_levels))
        return int(rng.integers(2**31 - 1))

    def _raw(self, i: int, given: "dict | None" = None) -> np.ndarray:
        """Env ``i``'s view before encoding: the integer grid (symbolic and one-hot) or the RGB picture.
        ``given``: the obs dict MiniGrid just returned for this very state, reused where nothing is hidden
        (drawing it again costs as much as the step itself)."""
        env = self.envs[i]
        if given is not None and not self._view_unused:
            return given["image"]
        if self.fast_view and self._fast.supported(env):
            if self.obs_mode == "rgb":
                return self._fast.pov_frame(env, self.tile_size, self.invisible)
            return self._fast.view(env, self.invisible)[0]
        with _hidden(env, self.invisible):
            if self.obs_mode == "rgb":
                return env.get_frame(highlight=False, tile_size=self.tile_size, agent_pov=True)
            return env.gen_obs()["image"]

    @contextlib.contextmanager
    def _quiet(self, i: int, unused: bool = False):
        """Env ``i``'s own gen_obs leaves its image out meanwhile (None) where :meth:`_raw` would not use it
        (``unused``: nothing will)."""
        env = self.envs[i]
        env._view_unused = (unused or self._view_unused) and self.fast_view  # type: ignore[attr-defined]
        try:
            yield
        finally:
            env._view_unused = False  # type: ignore[attr-defined]

    def _encode(self, raw: np.ndarray) -> np.ndarray:
        """Views from :meth:`_raw` (stacked or one) as the agent observes them, uint8."""
        return onehot(raw) if self.obs_mode == "onehot" else raw.astype(np.uint8)

    def _reset_one(self, i: int) -> np.ndarray:
        """A new episode in env ``i``; its first view, unencoded."""
        self._level_seeds[i] = self._next_seed(i)
        with self._quiet(i):
            given, _ = self.envs[i].reset(seed=self._level_seeds[i])
        self._actions[i] = []
        return self._raw(i, given)

    def observe(self) -> np.ndarray:
        """The current observation of every env, ``(N, H, W, C)`` uint8."""
        return self._encode(np.stack([self._raw(i) for i in range(self.num_envs)]))

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._rngs = env_rngs(seed, self.num_envs, self.shard)
        self._actions: list[list[int]] = [[] for _ in range(self.num_envs)]
        self._tracker = EpisodeTracker(self.num_envs)
        return self._encode(np.stack([self._reset_one(i) for i in range(self.num_envs)]))

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_envs)
        obs, rewards = [], np.zeros(self.num_envs, np.float32)
        dones, causes, ended_seeds = np.zeros(self.num_envs, bool), [None] * self.num_envs, list(self._level_seeds)
        finals = {}
        for i, env in enumerate(self.envs):
            a = int(actions[i])
            front = env.grid.get(*env.front_pos)
            front_type = front.type if front is not None else None
            with self._quiet(i):
                given, reward, terminated, truncated, _ = env.step(a)
            self._actions[i].append(a)
            rewards[i] = reward
            if terminated or truncated:
                dones[i] = True
                causes[i] = _cause(env, a, front_type, reward, terminated)
                finals[i] = self._encode(self._raw(i, given))  # the episode's last observation
                obs.append(self._reset_one(i))
            else:
                obs.append(self._raw(i, given))
        info = [{"level_seed": s} for s in self._level_seeds]
        for i, final in finals.items():
            info[i]["final_obs"] = final
        self._tracker.update(rewards, dones, info, causes, ended_seeds)
        return self._encode(np.stack(obs)), rewards, dones, info

    # ----------------------------------------------------------------------------------------------
    def get_state(self) -> list:
        """Per env, JSON bytes: the episode's seed, the actions taken so far and the seed generator's state.
        MiniGrid is deterministic given the reset seed, so :meth:`set_state` replays the actions."""
        return [json.dumps({"level_seed": self._level_seeds[i], "actions": self._actions[i],
                            "rng": self._rngs[i].bit_generator.state}).encode() for i in range(self.num_envs)]

    def set_state(self, states: list) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"set_state got {len(states)} states for {self.num_envs} envs")
        for i, raw in enumerate(states):
            try:
                state = json.loads(raw)
                self._rngs[i].bit_generator.state = state["rng"]
                self._level_seeds[i], actions = int(state["level_seed"]), list(state["actions"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"not a MiniGrid env state (env {i}): {e}") from None
            with self._quiet(i, unused=True):
                self.envs[i].reset(seed=self._level_seeds[i])
                for a in actions:
                    self.envs[i].step(a)
            self._actions[i] = actions

    def entities(self) -> list:
        out = []
        for env in self.envs:
            ents = [{"type": "agent", "x": int(env.agent_pos[0]), "y": int(env.agent_pos[1]), "dir": int(env.agent_dir)}]
            for x in range(env.grid.width):
                for y in range(env.grid.height):
                    cell = env.grid.get(x, y)
                    if cell is not None and cell.type != "wall":
                        ents.append({"type": cell.type, "x": x, "y": y})
            out.append(ents)
        return out


@contextlib.contextmanager
def _hidden(env, kinds: tuple):
    """The grid without the objects of ``kinds`` while the observation is drawn; every one put back after."""
    taken = []
    if kinds:
        for x in range(env.grid.width):
            for y in range(env.grid.height):
                cell = env.grid.get(x, y)
                if cell is not None and cell.type in kinds:
                    taken.append((x, y, cell))
                    env.grid.set(x, y, None)
    try:
        yield
    finally:
        for x, y, cell in taken:
            env.grid.set(x, y, cell)


def _cause(env, action: int, front_type: str | None, reward: float, terminated: bool) -> str:
    """Why a MiniGrid episode ended, read from the grid (not from pixels)."""
    if not terminated:
        return "timeout"
    if reward > 0:
        return "success"
    here = env.grid.get(*env.agent_pos)
    if here is not None and here.type == "lava":
        return "lava"
    if action == env.actions.forward and front_type == "ball":
        return "obstacle"
    if action == env.actions.forward and front_type == "wall":
        return "wall"
    return "other"
