"""Swapping directions of a recurrent agent's hidden state (Saliency as causality's validation by control).

At every step the agent's GRU moves its state from ``h`` to ``GRU(x, h)``. A swap rewrites that change
``delta = GRU(x, h) - h``: its component on direction A moves onto direction B (``B = None``: it is dropped, the
change collapsed into A's nullspace), and the agent continues from ``h + delta'``, so the policy and value
heads read the edited state at that step and every later step builds on it.

Components are coefficients in the directions (:func:`coefficient_matrix`: the projection for PCA, the
unmixing matrix for ICA, least squares onto the span otherwise), so for directions ``V`` (K, C)

    c = delta @ W                       # (K,) how much of each direction the change holds
    delta' = delta + sum_(a, b) c_a * (V_b - V_a)

(for ``b = None`` the term is ``- c_a * V_a``). With z-scored directions (``meta["std"]``, the per-unit standard
deviation the hidden states were divided by) this happens in z-space and is mapped back. It is linear, so the
whole edit is one matrix ``M`` (C, C): ``h' = h + (GRU(x, h) - h) @ M``, held by the GRU cell as a buffer
(:class:`~policylens.agents.swapped.SwappedGRUCell`) and saved with the weights; the checkpoint's ``edits``
record lets :func:`~policylens.agents.load` rebuild it. The reference code had two bugs (its "to" loop used the "from"
direction, and it returned the change instead of the new state); tests check the formula against a hand
computation.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..agents.base import ActorCritic
from ..agents.swapped import KIND, SwappedGRUCell
from ..factors import Directions


def coefficient_matrix(directions: Directions) -> torch.Tensor:
    """``W`` (C, K) with ``coefficients = x @ W`` for centred rows ``x``, as :func:`policylens.factors.coefficients`
    computes them for PCA (projection), ICA (unmixing) and any other directions (least squares onto the span)."""
    v = directions.vectors.double()  # (K, C)
    if "unmixing" in directions.meta:
        return torch.as_tensor(directions.meta["unmixing"], dtype=torch.float64).T
    if directions.method == "pca":
        return v.T
    return torch.linalg.pinv(v)


def direction_index(directions: Directions, key) -> "int | None":
    """A direction given by index or label -> its index (None stays None); KeyError naming the choices."""
    if key is None:
        return None
    if isinstance(key, str) and not key.lstrip("-").isdigit():
        if key not in directions.labels:
            raise KeyError(f"no direction labelled {key!r}; labels: {', '.join(directions.labels) or '(none)'}")
        return directions.labels.index(key)
    k = int(key)
    if not 0 <= k < len(directions):
        raise KeyError(f"direction {k} does not exist: there are {len(directions)} (0-{len(directions) - 1})")
    return k


def swap_matrix(directions: Directions, swaps) -> torch.Tensor:
    """``M`` (C, C) such that ``delta' = delta @ M`` for ``swaps`` = pairs ``(from, to)`` of direction indices or
    labels, ``to = None`` to collapse ``from`` into the nullspace."""
    swaps = [(direction_index(directions, a), direction_index(directions, b)) for a, b in swaps]
    if not swaps:
        raise ValueError("a swap needs at least one (from, to) pair")
    v = directions.vectors.double()  # (K, C)
    w = coefficient_matrix(directions)  # (C, K)
    m = torch.eye(directions.channels, dtype=torch.float64)  # (C, C)
    for a, b in swaps:
        target = v[b] if b is not None else torch.zeros_like(v[a])
        m = m + torch.outer(w[:, a], target - v[a])  # c_a moves from V_a to V_b
    std = directions.meta.get("std")
    if std is not None:  # the directions live in z-space: delta_z = delta / std
        std = torch.as_tensor(std, dtype=torch.float64)
        m = (1 / std)[:, None] * m * std[None, :]
    return m.float()


def swap_directions(agent: ActorCritic, directions: Directions, swaps) -> ActorCritic:
    """A copy of the recurrent ``agent`` with ``swaps`` applied to every hidden-state change (the original is
    untouched). Swaps compose: swapping an already swapped agent multiplies the matrices."""
    if not isinstance(getattr(agent, "gru", None), nn.GRUCell):
        raise ValueError("swapping hidden-state directions needs a recurrent agent (its GRU cell `gru`); "
                         f"this {type(agent).__name__} has none")
    if directions.layer not in ("hx", "gru"):
        raise ValueError(f"the directions are of layer {directions.layer!r}; a swap needs directions of the hidden "
                         "state (layer 'hx', e.g. from policylens sim hx)")
    if directions.channels != agent.gru.hidden_size:
        raise ValueError(f"directions have {directions.channels} channels; the agent's hidden state has "
                         f"{agent.gru.hidden_size}")
    m = swap_matrix(directions, swaps)
    edited = copy.deepcopy(agent)
    old = edited.gru
    before = old.swap if isinstance(old, SwappedGRUCell) else torch.eye(old.hidden_size)
    edited.gru = SwappedGRUCell.from_cell(old, before.to(m.dtype) @ m)
    edited.policylens_edits = [*getattr(agent, "policylens_edits", []),
                               {"kind": KIND, "swaps": [[a, b] for a, b in swaps], "method": directions.method}]
    return edited
