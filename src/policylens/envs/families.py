"""Each env family's vector env, made from a parsed spec: the dispatch behind :func:`policylens.envs.make`."""
from __future__ import annotations

from .base import VecEnv
from .spec import EnvSpec

FAMILIES = ("procgen", "minigrid", "atari", "gym")
#: Families whose envs step in Python one after another, so that worker processes speed them up (:mod:`.workers`).
STEPPED_IN_PYTHON = ("minigrid", "gym")


def make_batch(spec: EnvSpec, num_envs: int = 1, seed: "int | None" = None, shard: "tuple | None" = None) -> VecEnv:
    """``num_envs`` envs of ``spec`` in this process. ``shard = (first, total)``: these are envs ``first ..`` of
    a batch of ``total`` and play what those envs of the whole batch would (families in :data:`STEPPED_IN_PYTHON`)."""
    if shard is not None and spec.family not in STEPPED_IN_PYTHON:
        raise ValueError(f"{spec.family} envs cannot be made as a shard of a larger batch")
    if spec.family == "procgen":
        from .procgen import ProcgenVecEnv

        return ProcgenVecEnv(spec, num_envs=num_envs, seed=seed)
    if spec.family == "minigrid":
        from .minigrid import MiniGridVecEnv

        return MiniGridVecEnv(spec, num_envs=num_envs, seed=seed, shard=shard)
    if spec.family == "atari":
        from .atari import AtariVecEnv

        return AtariVecEnv(spec, num_envs=num_envs, seed=seed)
    if spec.family == "gym":
        from .gym import GymVecEnv

        return GymVecEnv(spec, num_envs=num_envs, seed=seed, shard=shard)
    raise ValueError(f"unknown env family {spec.family!r} in {str(spec)!r}; expected one of {FAMILIES}")
