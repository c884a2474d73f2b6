"""Vector environments behind one interface, chosen by an env spec string.

>>> env = make("minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb", num_envs=8, seed=0)
>>> obs = env.reset(0)               # (8, 56, 56, 3) uint8
>>> obs, reward, done, info = env.step(actions)
>>> make("atari:breakout", num_envs=8, seed=0).reset(0).shape   # (8, 84, 84, 4)

Families: ``procgen:GAME``, ``minigrid:ENV_ID``, ``atari:GAME`` (any ALE game, ground truth from RAM through
OCAtari, :mod:`policylens.envs.atari`) and ``gym:ENV_ID`` (any Gymnasium env with image or vector observations
and discrete actions, :mod:`policylens.envs.gym`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CAUSES, VecEnv
from .families import FAMILIES, STEPPED_IN_PYTHON, make_batch
from .spec import EnvSpec, parse_spec

if TYPE_CHECKING:
    from .minigrid import MiniGridVecEnv


def make(spec: "str | EnvSpec", num_envs: int = 1, seed: int | None = None, workers: int = 1) -> VecEnv:
    """Make the vector env named by ``spec`` (see :mod:`policylens.envs.spec`). ``workers > 1``: the envs step in
    that many processes where their family steps in Python (:mod:`.workers`: MiniGrid, ``gym:``), with the same
    results as in one."""
    spec = parse_spec(spec)
    if workers < 1:
        raise ValueError(f"env workers={workers}: expected at least 1 process")
    if workers > 1 and num_envs > 1 and spec.family in STEPPED_IN_PYTHON:
        from .workers import WorkerVecEnv

        return WorkerVecEnv(spec, num_envs=num_envs, seed=seed, workers=workers)
    return make_batch(spec, num_envs=num_envs, seed=seed)


def make_minigrid(spec: "str | EnvSpec", num_envs: int = 1, seed: int | None = None) -> MiniGridVecEnv:
    """:func:`make` for a ``minigrid:`` spec, as the MiniGrid vector env it is (``envs``: its MiniGrid games)."""
    from .minigrid import MiniGridVecEnv

    env = make(spec, num_envs, seed)
    if not isinstance(env, MiniGridVecEnv):
        env.close()
        raise ValueError(f"env {str(env.spec)!r} is not a MiniGrid env (minigrid:ENV_ID)")
    return env


def __getattr__(name):  # the Gymnasium views, imported on first use
    if name in ("as_gymnasium", "gymnasium_env", "GymnasiumVectorView", "GymnasiumEnvView"):
        from . import view

        return getattr(view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["make", "make_minigrid", "parse_spec", "EnvSpec", "VecEnv", "CAUSES", "FAMILIES", "as_gymnasium", "gymnasium_env"]
