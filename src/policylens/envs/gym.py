"""Any Gymnasium env with image or vector observations and discrete actions: the ``gym:`` family.

``gym:ENV_ID?key=value&...``, e.g. ``gym:CartPole-v1``, ``gym:CartPole-v1?pixels=true&grey=true&resize=64&stack=4``,
``gym:ALE/Pong-v5?grey=true&resize=84&stack=4`` (ALE ids need ale-py). Wrapper options, applied in this order:

=================  ===========================================================================================
``pixels=true``    observe ``env.render()`` (``render_mode="rgb_array"``) instead of the env's own observation
                   (Gymnasium's ``AddRenderObservation``): CartPole from pixels
``grey=true``      RGB frames to one luminance channel (``GrayscaleObservation``, channel kept: ``(H, W, 1)``)
``resize=N``       frames to ``N x N``; ``resize=HxW`` (e.g. ``84x84``) to ``H x W`` (``ResizeObservation``, needs
                   opencv-python)
``stack=K``        the last K observations side by side on the last axis, oldest first, zeros before the first
                   (Stable-Baselines3's ``VecFrameStack`` layout): ``(H, W, C*K)`` frames, ``(D*K,)`` vectors
``max_steps=N``    episodes end (truncated, cause ``timeout``) after N steps (``TimeLimit``)
=================  ===========================================================================================

``num_levels`` / ``start_level`` draw each episode's reset seed from ``[start_level, start_level + num_levels)``
(0: unlimited), so seeds play the role of procgen's levels; any other option goes to ``gymnasium.make``.

Observations: uint8 images ``(H, W, C)`` (``obs_scale`` 1/255; a 2-D frame gets a channel axis), any other
``Box`` flattened to float32 ``(D,)`` and a ``Discrete`` observation one-hot float32 ``(n,)`` (``obs_scale`` 1).
Actions must be ``Discrete``: a continuous (``Box``) action space is not supported yet.

There is no ground truth here: ``entities()`` is None, an episode that terminates ends with cause ``other``
and one cut by a time limit with ``timeout``; ``invisible=`` is refused. ``get_state()`` is the episode's reset
seed and its actions, which ``set_state`` replays (exact for envs that are deterministic given their seed, as
Gymnasium's own are; a replay that does not reproduce the saved observation is refused).
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import TypeGuard

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .base import EpisodeTracker, VecEnv, env_rngs
from .spec import EnvSpec

OWN_OPTIONS = ("pixels", "grey", "resize", "stack", "max_steps", "num_levels", "start_level")
NO_GROUND_TRUTH = ("invisible", "ground_truth")


def no_ground_truth(spec: EnvSpec, what: str) -> str:
    """The message for a request that needs ground truth on an env that has none."""
    return (f"{what} needs ground truth (entities and episode-end causes), and {spec} has none: a generic "
            "Gymnasium env gives neither (ground truth exists for procgen:coinrun and minigrid:)")


def _resize_shape(value) -> tuple:
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", str(value).strip())
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"gym option resize={value!r}: expected N or HxW, e.g. resize=84 or resize=84x84")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def _is_image(space) -> TypeGuard[spaces.Box]:
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)


def _make_one(name: str, own: dict, kwargs: dict):
    """``gymnasium.make`` with the wrapper options applied; a clear error for an unknown id."""
    if name.startswith("ALE/"):
        try:
            import ale_py

            gym.register_envs(ale_py)
        except ImportError:
            raise ValueError(f"{name} is an ALE env: install ale-py (pip install 'ale-py>=0.11')") from None
    if own.get("pixels"):
        kwargs = {**kwargs, "render_mode": "rgb_array"}
    if own.get("max_steps"):
        kwargs = {**kwargs, "max_episode_steps": int(own["max_steps"])}
    try:
        env = gym.make(name, **kwargs)
    except gym.error.Error as e:  # NameNotFound, NamespaceNotFound, VersionNotFound, DependencyNotInstalled, ...
        import difflib

        close = difflib.get_close_matches(name, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"gym env {name!r} cannot be made: {e}{hint}") from None
    except TypeError as e:  # an option the env's constructor does not take
        raise ValueError(f"gym env {name!r} refused options {sorted(kwargs)}: {e}") from None
    if own.get("pixels"):
        env = gym.wrappers.AddRenderObservation(env, render_only=True)
    if own.get("grey"):
        if not (_is_image(env.observation_space) and env.observation_space.shape[-1] == 3):
            raise ValueError(f"gym option grey=true needs RGB frames (H, W, 3); {name} gives {env.observation_space} "
                             "(add pixels=true to observe its rendering)")
        env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    if own.get("resize"):
        if not _is_image(env.observation_space):
            raise ValueError(f"gym option resize= needs image observations; {name} gives {env.observation_space}")
        env = gym.wrappers.ResizeObservation(env, _resize_shape(own["resize"]))
    return env


class GymVecEnv(VecEnv):
    """``num_envs`` copies of one Gymnasium env behind the vector interface (see the module doc)."""

    def __init__(self, spec: EnvSpec, num_envs: int = 1, seed: int | None = None, shard: tuple | None = None):
        opts = dict(spec.options)
        refused = [k for k in NO_GROUND_TRUTH if k in opts]
        if refused:
            raise ValueError(no_ground_truth(spec, f"option {refused[0]}="))
        own = {k: opts.pop(k) for k in OWN_OPTIONS if k in opts}
        self.spec, self.num_envs, self.shard = spec, num_envs, shard
        self.stack = int(own.get("stack", 1))
        if self.stack < 1:
            raise ValueError(f"gym option stack={self.stack}: expected a positive number of observations")
        self.num_levels, self.start_level = int(own.get("num_levels", 0)), int(own.get("start_level", 0))
        self.envs = [_make_one(spec.name, own, opts) for _ in range(num_envs)]
        space, acts = self.envs[0].observation_space, self.envs[0].action_space
        if not isinstance(acts, spaces.Discrete):
            kind = "a continuous" if isinstance(acts, spaces.Box) else "an"
            raise ValueError(f"gym env {spec.name} has {kind} action space {acts}: not supported yet (policylens "
                             "agents take Discrete actions)")
        self.action_space = spaces.Discrete(int(acts.n))
        self._action_start = int(acts.start)
        meanings = getattr(self.envs[0].unwrapped, "get_action_meanings", None)
        self.action_names = list(meanings()) if callable(meanings) else [str(a) for a in range(int(acts.n))]
        one: tuple
        dtype: type[np.generic]
        if _is_image(space):
            one = space.shape if len(space.shape) == 3 else (*space.shape, 1)
            self.kind, dtype, self.obs_scale = "image", np.uint8, 1 / 255
        elif isinstance(space, spaces.Box):
            one, self.kind, dtype, self.obs_scale = (int(np.prod(space.shape)),), "vector", np.float32, 1.0
        elif isinstance(space, spaces.Discrete):
            one, self.kind, dtype, self.obs_scale = (int(space.n),), "onehot", np.float32, 1.0
        else:
            raise ValueError(f"gym env {spec.name} observes {space}: not supported yet (expected uint8 images, a Box "
                             "or a Discrete observation)")
        self._one_shape = tuple(int(d) for d in one)
        shape = (*self._one_shape[:-1], self._one_shape[-1] * self.stack)
        low: np.ndarray | float
        high: np.ndarray | float
        if self.kind == "vector":  # the env's own bounds, flattened, once per stacked observation (0 before the first)
            low = np.tile(np.minimum(np.asarray(space.low, np.float32).reshape(-1), 0), self.stack)
            high = np.tile(np.maximum(np.asarray(space.high, np.float32).reshape(-1), 0), self.stack)
        else:
            low, high = (0, 255) if dtype == np.uint8 else (0, 1)
        self.observation_space = spaces.Box(low, high, shape, dtype)
        self._tracker = EpisodeTracker(num_envs)
        self.reset(seed)

    # ----------------------------------------------------------------------------------------------
    def _convert(self, raw) -> np.ndarray:
        if self.kind == "image":
            return np.asarray(raw, np.uint8).reshape(self._one_shape)
        if self.kind == "onehot":
            return np.eye(self._one_shape[0], dtype=np.float32)[int(raw)]
        return np.asarray(raw, np.float32).reshape(-1)

    def _push(self, i: int, raw, fresh: bool = False) -> None:
        frame = self._convert(raw)
        if fresh:
            self._frames[i] = [np.zeros_like(frame)] * (self.stack - 1) + [frame]
        else:
            self._frames[i] = self._frames[i][1:] + [frame]

    def _observe(self, i: int) -> np.ndarray:
        return np.concatenate(self._frames[i], axis=-1) if self.stack > 1 else self._frames[i][-1]

    def _next_seed(self, i: int) -> int:
        rng = self._rngs[i]
        if self.num_levels > 0:
            return self.start_level + int(rng.integers(self.num_levels))
        return int(rng.integers(2**31 - 1))

    def _reset_one(self, i: int) -> None:
        self._level_seeds[i] = self._next_seed(i)
        raw, _ = self.envs[i].reset(seed=self._level_seeds[i])
        self._actions[i] = []
        self._push(i, raw, fresh=True)

    def observe(self) -> np.ndarray:
        """The current observation of every env, ``(N, *observation_space.shape)``."""
        return np.stack([self._observe(i) for i in range(self.num_envs)])

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._rngs = env_rngs(seed, self.num_envs, self.shard)
        self._frames: list[list[np.ndarray]] = [[] for _ in range(self.num_envs)]
        self._actions: list[list[int]] = [[] for _ in range(self.num_envs)]
        self._level_seeds = [0] * self.num_envs
        self._tracker = EpisodeTracker(self.num_envs)
        for i in range(self.num_envs):
            self._reset_one(i)
        return self.observe()

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_envs)
        rewards, dones = np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, bool)
        causes, ended_seeds, finals = [None] * self.num_envs, list(self._level_seeds), {}
        for i, env in enumerate(self.envs):
            a = int(actions[i])
            if not 0 <= a < self.action_space.n:
                raise ValueError(f"action {a} for env {i} is outside Discrete({self.action_space.n})")
            raw, reward, terminated, truncated, _ = env.step(a + self._action_start)
            self._actions[i].append(a)
            rewards[i] = reward
            self._push(i, raw)
            if terminated or truncated:
                dones[i], causes[i] = True, "other" if terminated else "timeout"
                finals[i] = self._observe(i)
                self._reset_one(i)
        info = [{"level_seed": s} for s in self._level_seeds]
        for i, obs in finals.items():
            info[i]["final_obs"] = obs
        self._tracker.update(rewards, dones, info, causes, ended_seeds)
        return self.observe(), rewards, dones, info

    # ----------------------------------------------------------------------------------------------
    def get_state(self) -> list:
        """Per env, JSON bytes: the episode's reset seed, its actions, the seed generator's state and a digest
        of the current observation (which :meth:`set_state` checks its replay against)."""
        return [json.dumps({"level_seed": self._level_seeds[i], "actions": self._actions[i],
                            "rng": self._rngs[i].bit_generator.state,
                            "obs_sha1": hashlib.sha1(self._observe(i).tobytes()).hexdigest()}).encode()
                for i in range(self.num_envs)]

    def set_state(self, states: list) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"set_state got {len(states)} states for {self.num_envs} envs")
        for i, raw in enumerate(states):
            try:
                state = json.loads(raw)
                self._rngs[i].bit_generator.state = state["rng"]
                seed, actions, digest = int(state["level_seed"]), list(state["actions"]), state["obs_sha1"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"not a gym env state (env {i}): {e}") from None
            self._level_seeds[i] = seed
            obs, _ = self.envs[i].reset(seed=seed)
            self._push(i, obs, fresh=True)
            for a in actions:
                self._push(i, self.envs[i].step(int(a) + self._action_start)[0])
            self._actions[i] = actions
            if hashlib.sha1(self._observe(i).tobytes()).hexdigest() != digest:
                raise ValueError(f"{self.spec} did not replay to the saved state (env {i}): the env is not "
                                 "deterministic given its reset seed, so its state cannot be restored")

    def close(self) -> None:
        for env in self.envs:
            env.close()
