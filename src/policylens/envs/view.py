"""Every policylens env as Gymnasium sees envs: a ``VectorEnv`` for CleanRL-style loops, an ``Env`` for
Stable-Baselines3, with ground truth in ``info``.

>>> from policylens.envs import as_gymnasium, gymnasium_env
>>> envs = as_gymnasium(make("procgen:coinrun?ground_truth=true", num_envs=64))   # gymnasium.vector.VectorEnv
>>> obs, infos = envs.reset(seed=1)
>>> obs, reward, terminated, truncated, infos = envs.step(actions)
>>> infos["episode"]["cause"][infos["_episode"]]      # why each finished episode ended: saw, enemy, ...
>>> from stable_baselines3 import PPO
>>> from stable_baselines3.common.env_util import make_vec_env
>>> venv = make_vec_env(lambda: gymnasium_env("minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"), n_envs=8)
>>> PPO("MlpPolicy", venv).learn(100_000)

The vector view autoresets in the same step (``metadata["autoreset_mode"]`` is ``AutoresetMode.SAME_STEP``):
where an episode ends, ``obs`` is already the next episode's first, and ``infos["final_obs"]`` (masked by
``infos["_final_obs"]``) holds the last one where the env can give it (MiniGrid, ``gym:``; None for procgen,
which resets inside). An episode ends ``truncated`` when its cause is a
time limit (``timeout``) and ``terminated`` otherwise. ``infos["episode"]`` (masked by ``infos["_episode"]``)
follows Gymnasium's ``RecordEpisodeStatistics`` (``r``, ``l``, ``t``) and adds ``cause``, ``success`` and
``level_seed``; ``infos["level_seed"]`` is every env's current level and, with ``entities=True`` where the
env has them, ``infos["entities"]`` every env's ground-truth entities (a list of dicts each).

The single view is one env of a ``num_envs=1`` policylens env, without autoreset: the step that ends an
episode returns that episode's last observation (procgen, which cannot give it, the next episode's first) and
``reset()`` starts the next.
``reset(seed=s)`` restarts the level sequence from ``s``; ``reset()`` goes on with it.
"""
from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv as GymnasiumVectorEnv
from gymnasium.vector.utils import batch_space

from .base import VecEnv

#: Episode-end causes that mean a time limit cut the episode (Gymnasium's ``truncated``).
TRUNCATION_CAUSES = ("timeout", "max_steps")


def _split_done(done: np.ndarray, info: list) -> tuple:
    """``(terminated, truncated)`` bool arrays from ``done`` and each ended episode's cause."""
    truncated = np.array([bool(d) and i.get("episode", {}).get("cause") in TRUNCATION_CAUSES
                          for d, i in zip(done, info)], dtype=bool)
    return np.asarray(done, bool) & ~truncated, truncated


def _make(env) -> VecEnv:
    from . import make

    return make(env, num_envs=1) if isinstance(env, str) or not hasattr(env, "step") else env


class GymnasiumVectorView(GymnasiumVectorEnv):
    """A policylens :class:`~policylens.envs.base.VecEnv` as a ``gymnasium.vector.VectorEnv`` (see the module doc)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env: VecEnv, entities: bool = True):
        self.env, self.num_envs = env, int(env.num_envs)
        self.single_observation_space, self.single_action_space = env.observation_space, env.action_space
        self.observation_space = batch_space(env.observation_space, self.num_envs)
        self.action_space = batch_space(env.action_space, self.num_envs)
        self.with_entities = bool(entities) and env.entities() is not None
        self._start = time.perf_counter()

    def _infos(self, info: list) -> dict:
        infos: dict = {}
        entities = self.env.entities() if self.with_entities else None
        for i, one in enumerate(info):
            item: dict[str, Any] = {"level_seed": int(one["level_seed"])}
            if entities is not None:
                item["entities"] = entities[i]
            if "episode" in one:
                ep = one["episode"]
                item["episode"] = {"r": float(ep["return"]), "l": int(ep["length"]),
                                   "t": round(time.perf_counter() - self._start, 6), "cause": ep["cause"],
                                   "success": bool(ep["success"]), "level_seed": int(ep["level_seed"])}
                item["final_obs"] = np.array(one["final_obs"]) if "final_obs" in one else None
                item["final_info"] = {"cause": ep["cause"], "level_seed": int(ep["level_seed"])}
            infos = self._add_info(infos, item, i)
        return infos

    def reset(self, *, seed: "int | None" = None, options: "dict | None" = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be one int (it seeds every env's level sequence) or None, got {seed!r}")
        obs = self.env.reset(None if seed is None else int(seed))
        self._start = time.perf_counter()
        return obs, self._infos([{"level_seed": s} for s in self._level_seeds()])

    def _level_seeds(self) -> list:
        seeds = getattr(self.env, "_level_seeds", None)
        return list(seeds) if seeds is not None else [-1] * self.num_envs

    def step(self, actions):
        obs, reward, done, info = self.env.step(np.asarray(actions).reshape(self.num_envs))
        terminated, truncated = _split_done(done, info)
        return obs, np.asarray(reward, np.float64), terminated, truncated, self._infos(info)

    def close_extras(self, **kwargs):
        self.env.close()


class GymnasiumEnvView(gym.Env):
    """One policylens env (``num_envs=1``) as a ``gymnasium.Env``, e.g. for Stable-Baselines3 (see the module doc)."""

    metadata = {"render_modes": []}

    def __init__(self, env: "VecEnv | str", seed: "int | None" = None, entities: bool = True):
        self.env = _make(env)
        if self.env.num_envs != 1:
            raise ValueError(f"a single-env view needs a policylens env with num_envs=1, got {self.env.num_envs}")
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space
        self.with_entities = bool(entities) and self.env.entities() is not None
        self._seed, self._pending, self._started = seed, None, False

    def _info(self, one: dict) -> dict:
        info: dict[str, Any] = {"level_seed": int(one.get("level_seed", -1))}
        entities = self.env.entities() if self.with_entities else None
        if entities is not None:
            info["entities"] = entities[0]
        if "episode" in one:
            info["episode"] = dict(one["episode"])
            info["cause"] = one["episode"]["cause"]
        return info

    def reset(self, *, seed: "int | None" = None, options: "dict | None" = None):
        super().reset(seed=seed)
        if seed is not None or not self._started:  # a new level sequence (the view's seed on the first reset)
            seed = self._seed if seed is None else seed
            self._levels = np.random.default_rng(seed)
            obs, self._started, self._pending = self.env.reset(seed), True, None
        elif self._pending is not None:  # the next episode, already started when the last one ended
            obs, self._pending = self._pending, None
        else:  # mid-episode: the next level of the sequence
            obs = self.env.reset(int(self._levels.integers(2**31 - 1)))
        return np.array(obs[0]), self._info({"level_seed": getattr(self.env, "_level_seeds", [-1])[0]})

    def step(self, action):
        if not self._started or self._pending is not None:
            raise RuntimeError("call reset() first: the episode has ended" if self._started else "call reset() first")
        obs, reward, done, info = self.env.step(np.asarray([action]))
        terminated, truncated = _split_done(done, info)
        last = obs[0]
        if done[0]:
            self._pending = obs
            last = info[0].get("final_obs", obs[0])
        return np.array(last), float(reward[0]), bool(terminated[0]), bool(truncated[0]), self._info(info[0])

    def close(self):
        self.env.close()


def as_gymnasium(env: VecEnv, entities: bool = True) -> GymnasiumVectorView:
    """``env`` as a ``gymnasium.vector.VectorEnv`` (causes and, with ``entities``, entities in ``infos``)."""
    return GymnasiumVectorView(env, entities=entities)


def gymnasium_env(spec: "str | VecEnv", seed: "int | None" = None, entities: bool = True) -> GymnasiumEnvView:
    """One env of ``spec`` (or of a ``num_envs=1`` policylens env) as a ``gymnasium.Env``."""
    return GymnasiumEnvView(spec, seed=seed, entities=entities)
