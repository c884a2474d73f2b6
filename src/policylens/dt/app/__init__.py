"""``policylens dt app RUN``: play MiniGrid beside a decision transformer and watch its decision being made.

>>> from policylens.dt import load_dt
>>> from policylens.dt.app import AppSession
>>> session = AppSession(load_dt("zoo:dt-minigrid-do8"), target_rtg=0.9)
>>> view = session.act("forward")          # you move; None lets the model choose
>>> view["analysis"]["policy"]["probs"]    # the model's action probabilities at the new step
>>> session.configure(ablation=["blocks.0.attn.head1"], rtg=-1)

:mod:`.session` holds the game, :mod:`.analysis` the per-step analysis, :mod:`.server` the page and its API.
"""
from typing import TYPE_CHECKING

from ...lazy import lazy_exports

if TYPE_CHECKING:
    from .analysis import step_analysis
    from .session import AppSession

__all__ = ["AppSession", "step_analysis"]

lazy_exports(__name__)
