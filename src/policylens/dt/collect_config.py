"""The settings of ``policylens dt collect`` (:class:`CollectConfig`), apart from the collection
(:mod:`policylens.dt.collect`) so the command's ``--help`` needs no torch."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"
# success (greedy .. topk), failure (bottomk:1, random, most of temperature:5) and timeouts (bottomk:2 turns in place)
DEFAULT_STRATEGIES = ("greedy", "sampled", "temperature:2", "temperature:5", "topk:2", "bottomk:1", "bottomk:2",
                      "random")


@dataclass
class CollectConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the PPO agent that plays"""
    episodes: int = 1000
    """number of complete episodes the store should hold (a resumed collection tops it up to this)"""
    env: str = ""
    """env spec to play in (default: the env in the run's config.json, e.g. MiniGrid-Dynamic-Obstacles-8x8 with RGB)"""
    strategies: tuple = DEFAULT_STRATEGIES
    """sampling strategies: greedy, sampled, temperature:T, topk:K, bottomk:K, random"""
    shares: tuple = ()
    """share of the episodes per strategy, in the order of --strategies (default: equal shares)"""
    extra_obs: str = "symbolic"
    """also store the env's view in this observation mode as field obs_MODE (symbolic | onehot | rgb; '' none)"""
    out: str = ""
    """store path (default: RUN/trajectories.zarr, or runs/NAME/trajectories.zarr for zoo:NAME)"""
    num_envs: int = 8
    """environments stepped in parallel"""
    seed: int = 0
    """seed of the envs, the strategy order and action sampling (a resumed collection uses seed + episodes stored)"""
    entities: bool = True
    """store ground-truth entities per frame (JSON)"""
    max_steps: int = 10000
    """guard: cut an episode after this many steps (stored with cause 'max_steps')"""
    flush_seconds: float = 2.0
    """commit finished episodes to the store at least this often"""
    device: str = "cpu"
    """torch device for the agent"""
    progress: bool = True
    """show a progress bar"""
    resume: bool = False
    """top up the store already at OUT to --episodes (collected with the same settings; e.g. after an interruption)"""
    overwrite: bool = False
    """replace the store already at OUT (and its RTG report)"""
