"""Evaluation by cause: outcomes of an agent over many levels, with confidence intervals.

>>> result = evaluate("runs/coinrun", episodes=500, start_level=100_000)   # held-out levels
>>> result["success_rate"], result["ci95"], result["causes"]

Episode k plays level ``start_level + k`` (procgen level / MiniGrid reset seed), so two agents evaluated
with the same arguments play the same levels; see :mod:`policylens.evaluate.run` for how results stay
identical whatever the number of workers or the backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .cli import EvalConfig, format_table, main, run_config
    from .run import episode_plan, episode_seed, evaluate, play
    from .stats import summarize, wilson_interval

__all__ = ["EvalConfig", "evaluate", "wilson_interval", "summarize", "episode_plan", "episode_seed", "play",
           "main", "run_config", "format_table"]

lazy_exports(__name__)
