"""rl-attention's saliency tree: from an output, the top-k units (or the peaks) layer by layer down to the input pixels.

    >>> from policylens.attribution import saliency_tree
    >>> tree = saliency_tree(agent, obs[:1], target="value", k=3)       # a JSON-able dict
    >>> tree["children"][0]["layer"], tree["children"][0]["unit"]       # e.g. "fc", [17]
    >>> trees = saliency_trees(agent, obs[:8], k=2)                      # one per observation, one pass
    >>> tree = saliency_tree(agent, obs[:1], k=3, select="peaks")       # local maxima of |attribution|, at most 3

The root is the target (its value). Its children are the ``k`` units of the top layer (the one nearest the
output among ``layers``) with the largest |attribution| of the target; each unit's children are the ``k``
units of the next layer down with the largest |attribution| of THAT unit's activation (a hook-based target
that reads the unit, :class:`UnitTarget`), and so on down to the input, whose leaves are pixels (or
``patch`` x ``patch`` blocks) ``(y, x)``, attribution summed over the channels (colours, or a frame stack's
frames). Saliency and gradient x activation trees are read from one recorded forward pass, one backward pass per
parent (:func:`saliency_trees` does many observations at once); other methods send all the parents of one level
through :func:`~policylens.attribution.attribute` in one batched call (the observation repeated once per parent).
With ``select="peaks"`` the children are instead the peaks of |attribution| (:mod:`.peaks`: per channel, strictly
above the 8 neighbours and at least ``peak_threshold`` of the layer's largest), at most ``k``, so a node may have
fewer children or none.

Every node: ``layer``, ``unit`` (``[c, y, x]`` in a spatial layer, ``[i]`` in a flat one, ``[y, x]`` for
input pixels, ``[i]`` for a feature of a vector observation), ``activation``, ``score`` (signed attribution),
``share`` (|score| over the parent's total |attribution| in that layer, in [0, 1]), ``box`` (``[y0, x0, y1, x1]`` on the observation, or None for a
flat layer) and ``children``. The root also holds ``target``, ``method``, ``k``, ``select`` (with
``peak_threshold`` for peaks), ``layers`` and ``obs_shape``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..agents import get_layer, layer_names
from ..hooks import agent_device, capture
from .methods import METHODS, attribute
from .peaks import check_select, select_units
from .targets import resolve_target

HEADS = ("pi", "v")
INPUT = "input"


class UnitTarget:
    """A target that reads ``layer``'s activation at one unit per parent, through a forward hook.

    ``units`` (P, ...) flat indices into the activation without its batch axis, one per parent; the batch
    the target sees holds ``P * R`` rows, row ``p * R + r`` belonging to parent ``p`` (the layout of
    :func:`~policylens.attribution.evaluate_rows` in one chunk). Use as a context manager: the hook is
    removed on exit, also after an exception.
    """

    def __init__(self, agent, layer: str, units: Sequence[int]):
        get_layer(agent, layer)  # KeyError listing the layers
        self.agent, self.layer = agent, layer
        self.units = torch.as_tensor(list(units), dtype=torch.long)  # (P,)
        self.name, self._capture = f"unit of {layer}", None
        self._cache: dict = {}

    def __enter__(self):
        self._capture = capture(self.agent, self.layer, whole=True)
        self._cache = self._capture.__enter__()
        return self

    def __exit__(self, *exc):
        done, self._capture = self._capture, None
        return done.__exit__(*exc)

    def __call__(self, out) -> torch.Tensor:
        acts = self._cache.get(self.layer)
        if not isinstance(acts, torch.Tensor):
            raise ValueError(f"layer {self.layer!r} gave no tensor in this forward pass (a hidden-unit target needs "
                             "a layer above the attributed one, reached by the forward pass)")
        rows, parents = acts.shape[0], self.units.shape[0]
        if rows % parents:
            raise ValueError(f"{rows} rows at layer {self.layer!r} do not split over {parents} parents")
        parent = torch.arange(rows, device=acts.device) // (rows // parents)  # (rows,)
        flat = acts.reshape(rows, -1)  # (rows, units)
        return flat[torch.arange(rows, device=acts.device), self.units.to(acts.device)[parent]]  # (rows,)


def _record_activations(agent, obs, names, state, first) -> tuple:
    """One forward pass: ``({layer: activation (1, ...)}, layers in the order the pass reached them, output)``."""
    with torch.no_grad(), capture(agent, names, whole=True) as cache:
        out = agent(obs, state, first)
    acts = {n: a.detach() if isinstance(a, torch.Tensor) else a for n, a in cache.items()}
    order = list(cache)  # the order the pass first reached them
    missing = [n for n in names if n not in acts]
    if missing:
        raise ValueError(f"layers {missing} are not reached by the agent's forward pass")
    not_tensors = [n for n in names if not isinstance(acts[n], torch.Tensor) or not acts[n].is_floating_point()]
    if not_tensors:
        raise ValueError(f"layers {not_tensors} do not give a floating-point tensor; the tree needs ones that do")
    return acts, order, out


class _Graph:
    """One forward pass of a batch of observations with its graph kept and every tree layer's output recorded: the
    gradients of saliency and gradient x activation trees come from it by backward passes alone, one per parent
    slot for the whole batch (the observations do not mix in an agent's forward pass, so row b of the gradient of
    a sum over the batch is observation b's own), instead of a forward and a backward pass per parent and
    observation. It equals what :func:`~policylens.attribution.attribute` gives with :class:`UnitTarget`;
    :meth:`record` gives None where it cannot stand in for that (a layer that runs twice in one pass)."""

    def __init__(self, out, acts: dict, x: torch.Tensor):
        self.out, self.acts, self.x = out, acts, x

    @classmethod
    def record(cls, agent, obs, names, state, first) -> "Optional[_Graph]":
        x = obs.float().requires_grad_()  # (B, ...) the input as attribute() takes it
        with torch.enable_grad(), capture(agent, names, whole=True) as acts:
            out = agent(x, state, first)
        if any(c != 1 for c in acts.calls.values()) or not all(isinstance(acts.get(n), torch.Tensor) and
                                                             acts[n].requires_grad for n in names):
            return None
        return cls(out, acts, x)

    def attribution(self, target, parent_layer: Optional[str], units, layer: str, method: str) -> torch.Tensor:
        """``(B, P, ...)``: the attribution to ``layer`` (or the input) of each observation's parent units
        ``units`` ``(B, P)`` (flat indices into ``parent_layer``'s activation; the root ``target`` when
        ``parent_layer`` is None, ``P`` = 1)."""
        below = self.x if layer == INPUT else self.acts[layer]  # (B, ...)
        rows = torch.arange(below.shape[0], device=below.device)
        if parent_layer is None:
            tops = target(self.out).reshape(-1, 1)  # (B, 1)
        else:
            flat = self.acts[parent_layer].reshape(below.shape[0], -1)  # (B, units)
            tops = torch.stack([flat[rows, units[:, j].to(flat.device)] for j in range(units.shape[1])], 1)  # (B, P)
        per_slot = []
        for j in range(tops.shape[1]):  # one backward pass per parent slot (vmap's batched backward is far slower
            top = tops[:, j].sum()  # for some layers, e.g. max-pooling)
            got = torch.autograd.grad(top, below, retain_graph=True, allow_unused=True)[0] if top.requires_grad else None
            per_slot.append(torch.zeros_like(below) if got is None else got)
        grads = torch.stack(per_slot, 1)  # (B, P, ...)
        return (grads * below.detach()[:, None] if method == "grad_x_act" else grads).detach()


def default_tree_layers(agent) -> list:
    """The agent's documented layers without the heads (``pi``, ``v``)."""
    return [n for n in layer_names(agent) if n not in HEADS]


def _box(layer_shape, unit, obs_hw, patch: int = 1) -> Optional[list]:
    """The unit's footprint on the observation ``[y0, x0, y1, x1]`` (scaled position; None for flat layers)."""
    H, W = obs_hw
    if layer_shape is None:  # the input: a pixel (y, x), or a feature of a vector observation (drawn as a strip)
        y, x = unit if len(unit) == 2 else (0, unit[0])
        return [y, x, min(y + patch, H), min(x + patch, W)]
    if len(layer_shape) != 3:
        return None
    _, h, w = layer_shape
    y, x = unit[1], unit[2]
    return [y * H // h, x * W // w, max((y + 1) * H // h, y * H // h + 1), max((x + 1) * W // w, x * W // w + 1)]


def _pixel_scores(attr: torch.Tensor, patch: int) -> torch.Tensor:
    """Input attribution (P, H, W, C) -> per pixel (or ``patch`` block) summed over colour: (P, H', W');
    a vector observation's (P, D) stays per feature."""
    if attr.ndim == 2:
        return attr  # (P, D)
    pix = attr.sum(-1)  # (P, H, W)
    if patch == 1:
        return pix
    p, h, w = pix.shape
    padded = torch.nn.functional.pad(pix, (0, -w % patch, 0, -h % patch))  # (P, H'*patch, W'*patch) zeros at the edge
    hp, wp = padded.shape[1] // patch, padded.shape[2] // patch
    return padded.reshape(p, hp, patch, wp, patch).sum((2, 4))  # (P, H', W')


def saliency_tree(agent, obs, *, target="value", layers: Optional[Sequence[str]] = None, k: int = 3,
                  method: str = "grad_x_act", state=None, first=None, depth: Optional[int] = None, patch: int = 1,
                  max_batch: int = 64, select: str = "topk", peak_threshold: float = 0.5, **method_options) -> dict:
    """The saliency tree of ``target`` for ONE observation ``obs`` (1, H, W, C) (or (H, W, C)).

    ``layers``: the hidden layers to descend through (default :func:`default_tree_layers`), taken in the
    agent's forward order, nearest the output first, then the input; ``depth`` keeps only the first ``depth``
    levels below the root (default: all, down to the input); ``k`` children per node; ``method`` any of
    :data:`METHODS` (``method_options`` such as ``steps`` or ``samples`` go to ``attribute``); ``state`` (1,
    hidden) and ``first`` (1,) for recurrent agents; ``patch`` sums input attribution over blocks of pixels;
    ``max_batch`` bounds the parents attributed in one call; ``select``: ``topk`` (the ``k`` largest |attribution|)
    or ``peaks`` (at most ``k`` local maxima at least ``peak_threshold`` of the layer's largest, :mod:`.peaks`).
    Returns the root node (see the module doc).
    """
    obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
    obs = obs[None] if obs.ndim in (1, 3) else obs
    if obs.ndim not in (2, 4) or obs.shape[0] != 1:
        raise ValueError(f"saliency_tree takes one observation (H, W, C) or (1, H, W, C) (a vector: (D,) or "
                         f"(1, D)), got {tuple(obs.shape)}")
    return saliency_trees(agent, obs, target=target, layers=layers, k=k, method=method, state=state, first=first,
                          depth=depth, patch=patch, max_batch=max_batch, select=select,
                          peak_threshold=peak_threshold, **method_options)[0]


def saliency_trees(agent, obs, *, target="value", layers: Optional[Sequence[str]] = None, k: int = 3,
                   method: str = "grad_x_act", state=None, first=None, depth: Optional[int] = None, patch: int = 1,
                   max_batch: int = 64, select: str = "topk", peak_threshold: float = 0.5,
                   **method_options) -> list:
    """:func:`saliency_tree` of each observation of ``obs`` ``(B, H, W, C)`` (``state`` (B, hidden), ``first``
    (B,)), one tree each. Saliency and gradient x activation trees of the whole batch come from one recorded
    forward pass and one backward pass per parent slot (:class:`_Graph`); other methods (or any
    ``method_options``) attribute each observation's parents through :func:`~policylens.attribution.attribute`,
    ``max_batch`` at a time."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (children per node) must be an integer >= 1, got {k!r}")
    if not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch must be an integer >= 1 (pixels per side), got {patch!r}")
    check_select(select, peak_threshold)
    obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
    if obs.ndim not in (2, 4) or obs.shape[0] < 1:
        raise ValueError(f"saliency_trees takes observations (B, H, W, C) (vectors: (B, D)), got {tuple(obs.shape)}")
    device = agent_device(agent)
    obs, b = obs.to(device), obs.shape[0]
    names = list(default_tree_layers(agent) if layers is None else layers)
    for name in names:
        get_layer(agent, name)  # KeyError listing the layers
    state = None if state is None else torch.as_tensor(state, dtype=torch.float32, device=device).reshape(b, -1)
    first = None if first is None else torch.as_tensor(first, device=device).reshape(b)
    acts, order, out = _record_activations(agent, obs, names, state, first)
    chain = [*reversed(order), INPUT]  # nearest the output first
    if depth is not None:
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth (levels below the root) must be an integer >= 1, got {depth!r}")
        chain = chain[:depth]
    tgt = resolve_target(target, agent)
    obs_hw = tuple(obs.shape[1:3]) if obs.ndim == 4 else (1, obs.shape[1])  # a vector is drawn as a (1, D) strip
    graph = _Graph.record(agent, obs, names, state, first) if method in ("saliency", "grad_x_act") and \
        not method_options else None
    pick = lambda x, i: None if x is None else x[i:i + 1]  # noqa: E731

    def per_observation(i: int, parents: list, parent_layer: Optional[str], layer: str) -> torch.Tensor:
        """``(P, ...)``: observation i's attribution to ``layer`` of each of its ``parents``, through attribute()."""
        parts = []
        for a in range(0, len(parents), max_batch):
            group = parents[a:a + max_batch]
            p = len(group)
            rep = lambda x: None if x is None else x.expand(p, *x.shape[1:])  # noqa: E731
            kw = dict(layer=None if layer == INPUT else layer, method=method, state=rep(pick(state, i)),
                      first=rep(pick(first, i)), **method_options)
            if parent_layer is None:
                parts.append(attribute(agent, obs[i:i + 1], target=tgt, **kw).detach())
            else:
                with UnitTarget(agent, parent_layer, [n["_flat"] for n in group]) as unit_target:
                    parts.append(attribute(agent, obs[i:i + 1].expand(p, *obs.shape[1:]), target=unit_target,
                                           **kw).detach())
        return torch.cat(parts)

    values_out = tgt(out).reshape(-1)  # (B,)
    roots: list[dict[str, Any]] = [
        {"layer": "output", "unit": tgt.name, "activation": float(values_out[i]), "score": float(values_out[i]),
         "share": 1.0, "box": None, "children": [], "target": tgt.name, "method": method, "k": k, "select": select,
         **({"peak_threshold": peak_threshold} if select == "peaks" else {}), "layers": chain,
         "obs_shape": list(obs.shape[1:])} for i in range(b)]
    levels, parent_layer = [[r] for r in roots], None
    attrs: "torch.Tensor | list[torch.Tensor]"  # (B, P, ...) or per observation (P, ...)
    for layer in chain:
        widest = max(len(lv) for lv in levels)
        if not widest:  # peaks: no node of the level above has a child
            break
        if graph is not None:  # parent slots padded with unit 0 where an observation has fewer (peaks)
            units = None if parent_layer is None else torch.as_tensor(
                [[n["_flat"] for n in lv] + [0] * (widest - len(lv)) for lv in levels])  # (B, P)
            attrs = graph.attribution(tgt, parent_layer, units, layer, method)  # (B, P, ...)
        else:
            attrs = [per_observation(i, levels[i], parent_layer, layer) if levels[i] else obs.new_zeros(0)
                     for i in range(b)]  # (P, ...) each; nothing for an observation without parents (peaks)
        for i in range(b):
            if not levels[i]:
                continue
            values = obs[i:i + 1].float() if layer == INPUT else acts[layer][i:i + 1]  # (1, ...)
            _add_children(levels[i], attrs[i][:len(levels[i])], values, layer,
                          None if layer == INPUT else tuple(acts[layer].shape[1:]), k, patch, obs_hw, select,
                          peak_threshold)
        levels, parent_layer = [[c for n in lv for c in n["children"]] for lv in levels], layer
    for root in roots:
        _strip(root)
    return roots


def _add_children(parents: list, attr: torch.Tensor, values: torch.Tensor, layer: str, shape, k: int, patch: int,
                  obs_hw, select: str = "topk", peak_threshold: float = 0.5) -> None:
    """Give each of ``parents`` its children in ``layer``: the units of its attribution ``attr`` (P, ...) that
    :func:`~policylens.attribution.peaks.select_units` picks (the ``k`` largest |attribution|, or the peaks);
    ``values`` (1, ...) the layer's activation (the float observation for the input), ``shape`` the layer's
    activation shape (None for the input)."""
    p = len(parents)
    if layer == INPUT:
        attr = _pixel_scores(attr, patch)  # (P, H', W')
        values = values.expand(p, *values.shape[1:])
        values = values if values.ndim == 2 else _pixel_scores(values, patch) / (values.shape[-1] * patch ** 2)
    else:
        values = values.expand(p, *values.shape[1:])  # (P, ...)
    grid = tuple(attr.shape[1:])
    flat = attr.reshape(p, -1)  # (P, units)
    total = flat.abs().sum(1)  # (P,)
    top = select_units(attr, k, select, peak_threshold)  # P lists of flat indices
    for i, node in enumerate(parents):
        for j in top[i]:
            unit = [int(u) for u in np.unravel_index(j, grid)]
            unit = [u * patch for u in unit] if layer == INPUT else unit
            score = float(flat[i, j])
            node["children"].append({
                "layer": layer, "unit": unit, "activation": float(values[i].reshape(-1)[j]), "score": score,
                "share": abs(score) / float(total[i]) if float(total[i]) > 0 else 0.0,
                "box": _box(shape, unit, obs_hw, patch), "children": [], "_flat": j})


def _strip(node: dict) -> None:
    node.pop("_flat", None)
    for child in node["children"]:
        _strip(child)


def tree_nodes(tree: dict) -> list:
    """Every node of a tree, depth first, root first."""
    out = [tree]
    for child in tree["children"]:
        out += tree_nodes(child)
    return out
