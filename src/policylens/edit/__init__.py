"""Out-of-place edits: project a direction out of a layer (a new agent), and temporary ablations.

>>> from policylens.edit import project_out, ablate
>>> edited = project_out(agent, "conv1", directions.select(["coin"]))   # agent is untouched
>>> edited.policylens_edits[-1]["how"]          # "fold" (weights of the next layer) or "hook"
>>> with ablate(agent, "conv2", channels=[3], mode="mean", mean=mean_acts): agent(obs)
>>> blinded, info = blind(agent, obs, masks, "ball", layer="embed")   # the NMF direction that locates balls
>>> swapped = swap_directions(agent, hx_directions, [(3, 5), (1, None)])  # hidden-state changes: 3 -> 5, 1 -> 0

From the shell: ``policylens edit RUN --layer L --directions PATH --direction K --out NEW_RUN``.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .ablate import Ablation, ablate
    from .blind import blind
    from .project import project_out, projector
    from .swap import swap_directions, swap_matrix

__all__ = ["project_out", "projector", "ablate", "Ablation", "blind", "swap_directions", "swap_matrix"]

lazy_exports(__name__)
