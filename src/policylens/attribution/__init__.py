"""Attribution: which parts of an observation, or of a hidden layer's activation, a target depends on.

>>> from policylens.attribution import attribute
>>> attr = attribute(agent, obs, target="value", layer="block2", method="ig", steps=10)   # (N, 32, 16, 16)
>>> attr, delta = attribute(agent, obs, layer="block2", return_delta=True)          # delta (N,): completeness
>>> attribute(agent, obs, target="action:left-action:right", method="smoothgrad", samples=16, noise=0.1)
>>> value, taken = attribute_many(agent, obs, ["value", own_actions(actions)], layer="block2")  # one pass

Methods ``saliency``, ``grad_x_act``, ``ig``, ``smoothgrad``, ``vargrad`` (see :mod:`.methods`); targets
``"value"``, an action index or ``"action:NAME"``, a logit difference, or a callable (see :mod:`.targets`).
Hidden layers are done in one batched pass, folding the points into the batch above the layer
(see :mod:`.layer`). The saliency tree (top-k or peaks, :mod:`.tree`) and the washout of SmoothGrad / VarGrad
maps against their samples (:mod:`.washout`) are rl-attention's. From the shell: ``policylens attribute RUN --store STORE --layer L`` (:mod:`.cli`).
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .layer import LayerSwap, NotACutWarning, Rows, evaluate_rows
    from .methods import METHODS, attribute, attribute_many
    from .targets import PerObservation, Target, action_index, own_actions, resolve_target
    from .tree import UnitTarget, saliency_tree, saliency_trees, tree_nodes
    from .washout import LayerTarget, washout

__all__ = ["attribute", "attribute_many", "own_actions", "PerObservation", "METHODS", "resolve_target", "Target", "action_index", "evaluate_rows", "Rows",
           "LayerSwap", "NotACutWarning", "saliency_tree", "saliency_trees", "UnitTarget", "tree_nodes",
           "washout", "LayerTarget"]

lazy_exports(__name__)
