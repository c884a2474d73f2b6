"""rl-attention's saliency tree: from an output, the top-k units layer by layer down to the input pixels.

    >>> from policylens.attribution import saliency_tree
    >>> tree = saliency_tree(agent, obs[:1], target="value", k=3)       # a JSON-able dict
    >>> tree["children"][0]["layer"], tree["children"][0]["unit"]       # e.g. "fc", [17]

The root is the target (its value). Its children are the ``k`` units of the top layer (the one nearest the
output among ``layers``) with the largest |attribution| of the target; each unit's children are the ``k``
units of the next layer down with the largest |attribution| of THAT unit's activation (a hook-based target
that reads the unit, :class:`UnitTarget`), and so on down to the input, whose leaves are pixels (or
``patch`` x ``patch`` blocks) ``(y, x)``, attribution summed over colour channels. All the parents of one
level go through :func:`~policylens.attribution.attribute` in one batched call (the observation repeated
once per parent).

Every node: ``layer``, ``unit`` (``[c, y, x]`` in a spatial layer, ``[i]`` in a flat one, ``[y, x]`` for
input pixels, ``[i]`` for a feature of a vector observation), ``activation``, ``score`` (signed attribution),
``share`` (|score| over the parent's total |attribution| in that layer, in [0, 1]), ``box`` (``[y0, x0, y1, x1]`` on the observation, or None for a
flat layer) and ``children``. The root also holds ``target``, ``method``, ``k``, ``layers`` and ``obs_shape``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..agents import get_layer, layer_names
from .methods import METHODS, attribute
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
        self.module, self.layer = get_layer(agent, layer), layer
        self.units = torch.as_tensor(list(units), dtype=torch.long)  # (P,)
        self.name, self.output, self.handle = f"unit of {layer}", None, None

    def _record(self, module, inputs, output):
        self.output = output

    def __enter__(self):
        self.output = None
        self.handle = self.module.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        self.handle = None
        return False

    def __call__(self, out) -> torch.Tensor:
        acts = self.output
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
    acts, order, handles = {}, [], []

    def hook(name):
        def record(module, inputs, output):
            if name not in acts:
                order.append(name)
            acts[name] = output.detach() if isinstance(output, torch.Tensor) else output
        return record

    for name in names:
        handles.append(get_layer(agent, name).register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            out = agent(obs, state, first)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in acts]
    if missing:
        raise ValueError(f"layers {missing} are not reached by the agent's forward pass")
    not_tensors = [n for n in names if not isinstance(acts[n], torch.Tensor) or not acts[n].is_floating_point()]
    if not_tensors:
        raise ValueError(f"layers {not_tensors} do not give a floating-point tensor; the tree needs ones that do")
    return acts, order, out


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
                  max_batch: int = 64, **method_options) -> dict:
    """The saliency tree of ``target`` for ONE observation ``obs`` (1, H, W, C) (or (H, W, C)).

    ``layers``: the hidden layers to descend through (default :func:`default_tree_layers`), taken in the
    agent's forward order, nearest the output first, then the input; ``depth`` keeps only the first ``depth``
    levels below the root (default: all, down to the input); ``k`` children per node; ``method`` any of
    :data:`METHODS` (``method_options`` such as ``steps`` or ``samples`` go to ``attribute``); ``state`` (1,
    hidden) and ``first`` (1,) for recurrent agents; ``patch`` sums input attribution over blocks of pixels;
    ``max_batch`` bounds the parents attributed in one call. Returns the root node (see the module doc).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (children per node) must be an integer >= 1, got {k!r}")
    if not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch must be an integer >= 1 (pixels per side), got {patch!r}")
    obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
    obs = obs[None] if obs.ndim in (1, 3) else obs
    if obs.ndim not in (2, 4) or obs.shape[0] != 1:
        raise ValueError(f"saliency_tree takes one observation (H, W, C) or (1, H, W, C) (a vector: (D,) or "
                         f"(1, D)), got {tuple(obs.shape)}")
    device = next(iter(agent.parameters()), torch.empty(0)).device
    obs = obs.to(device)
    names = list(default_tree_layers(agent) if layers is None else layers)
    for name in names:
        get_layer(agent, name)  # KeyError listing the layers
    state = None if state is None else torch.as_tensor(state, dtype=torch.float32, device=device).reshape(1, -1)
    first = None if first is None else torch.as_tensor(first, device=device).reshape(1)
    acts, order, _ = _record_activations(agent, obs, names, state, first)
    chain = [*reversed(order), INPUT]  # nearest the output first
    if depth is not None:
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth (levels below the root) must be an integer >= 1, got {depth!r}")
        chain = chain[:depth]
    tgt = resolve_target(target, agent)
    obs_hw = tuple(obs.shape[1:3]) if obs.ndim == 4 else (1, obs.shape[1])  # a vector is drawn as a (1, D) strip

    def expand(parents: list, parent_layer: Optional[str], layer: str) -> None:
        """Give each of ``parents`` (nodes of ``parent_layer``, or the root when None) its k children."""
        for a in range(0, len(parents), max_batch):
            group = parents[a:a + max_batch]
            p = len(group)
            rep = lambda x: None if x is None else x.expand(p, *x.shape[1:])  # noqa: E731
            kw = dict(layer=None if layer == INPUT else layer, method=method, state=rep(state), first=rep(first),
                      **method_options)
            if parent_layer is None:
                attr = attribute(agent, obs, target=tgt, **kw)
            else:
                with UnitTarget(agent, parent_layer, [n["_flat"] for n in group]) as unit_target:
                    attr = attribute(agent, obs.expand(p, *obs.shape[1:]), target=unit_target, **kw)
            attr = attr.detach()
            if layer == INPUT:
                attr = _pixel_scores(attr, patch)  # (P, H', W')
                values = obs.float().expand(p, *obs.shape[1:]) if obs.ndim == 2 else \
                    _pixel_scores(obs.float().expand(p, *obs.shape[1:]), patch) / (obs.shape[-1] * patch ** 2)
                shape = None
            else:
                values = acts[layer].expand(p, *acts[layer].shape[1:])  # (P, ...)
                shape = tuple(acts[layer].shape[1:])
            grid = tuple(attr.shape[1:])
            flat = attr.reshape(p, -1)  # (P, units)
            total = flat.abs().sum(1)  # (P,)
            top = flat.abs().topk(min(k, flat.shape[1]), dim=1).indices  # (P, k)
            for i, node in enumerate(group):
                for j in top[i].tolist():
                    unit = [int(u) for u in np.unravel_index(j, grid)]
                    score = float(flat[i, j])
                    node["children"].append({
                        "layer": layer, "unit": [u * patch for u in unit] if layer == INPUT else unit,
                        "activation": float(values[i].reshape(-1)[j]), "score": score,
                        "share": abs(score) / float(total[i]) if float(total[i]) > 0 else 0.0,
                        "box": _box(shape, [u * patch for u in unit] if layer == INPUT else unit, obs_hw, patch),
                        "children": [], "_flat": j})

    with torch.no_grad():
        root_value = float(tgt(agent(obs, state, first)).reshape(-1)[0])
    root = {"layer": "output", "unit": tgt.name, "activation": root_value, "score": root_value, "share": 1.0,
            "box": None, "children": [], "target": tgt.name, "method": method, "k": k, "layers": chain,
            "obs_shape": list(obs.shape[1:])}
    level, parent_layer = [root], None
    for layer in chain:
        expand(level, parent_layer, layer)
        level, parent_layer = [c for n in level for c in n["children"]], layer
    _strip(root)
    return root


def _strip(node: dict) -> None:
    node.pop("_flat", None)
    for child in node["children"]:
        _strip(child)


def saliency_trees(agent, obs, state, frames, k: int = 3) -> dict:
    """``{t: the value's saliency tree at frame t}`` for the ``frames`` of one trajectory's ``obs`` (T, ...)
    (``state`` (T, hidden): what a recurrent agent received, else None)."""
    return {int(t): saliency_tree(agent, obs[t:t + 1], target="value", k=k,
                                  state=None if state is None else state[t:t + 1]) for t in frames}


def tree_nodes(tree: dict) -> list:
    """Every node of a tree, depth first, root first."""
    out = [tree]
    for child in tree["children"]:
        out += tree_nodes(child)
    return out
