"""Is an attribution faithful to the agent? Sparsity, deletion/insertion curves, parameter randomisation.

- :func:`sparsity`: the share of |attribution| held by the top ``top`` (position, channel) pairs of each frame
  (Understanding RL Vision's statistic: attributions concentrate on few units).
- :func:`deletion_insertion`: remove the most-attributed positions first (set them to the baseline) and follow
  the target down; or start from the baseline and insert them first and follow it up. A faithful attribution
  drops (rises) faster than a random order; the areas under the normalised curves say by how much.
- :func:`randomisation_check`: Adebayo et al.'s model-parameter randomisation test. Re-initialise the agent's
  parameterised layers from the output down, one more at a time, and recompute the attribution; an attribution
  that depends on what the agent learnt decorrelates (Spearman rank correlation of |attribution| falls).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..agents import get_layer
from ..attribution import attribute, resolve_target
from ..hooks import capture


def sparsity(attr, top: int = 10) -> float:
    """Mean over frames of the share of |attr| in the ``top`` largest (position, channel) entries."""
    a = torch.as_tensor(attr).abs().flatten(1)  # (N, C*h*w)
    total = a.sum(1).clamp_min(1e-12)
    return float((a.topk(min(top, a.shape[1]), dim=1).values.sum(1) / total).mean())


def _positions(attr: torch.Tensor, layer) -> torch.Tensor:
    """Per-position attribution (N, h, w): channels summed; input attributions are (N, H, W, C)."""
    return attr.sum(-1) if layer is None else (attr.sum(1) if attr.ndim == 4 else attr)


@torch.no_grad()
def _target_with_keep(agent, obs, tgt, layer, keep, state, first) -> torch.Tensor:
    """The target with only the positions where ``keep`` (N, h, w) is 1 kept, the rest set to zero."""
    if layer is None:
        x = obs.float() * keep.unsqueeze(-1)  # (N, H, W, C)
        return tgt(agent(x, state=state, first=first))
    module = get_layer(agent, layer)

    def hook(_, __, out):
        k = keep.unsqueeze(1) if out.ndim == 4 else keep  # (N, 1, h, w)
        return out * k

    handle = module.register_forward_hook(hook)
    try:
        return tgt(agent(obs, state=state, first=first))
    finally:
        handle.remove()


def deletion_insertion(agent, obs, attr, *, target="value", layer=None, fractions: int = 10, state=None,
                       first=None, seed: int = 0) -> dict:
    """Deletion and insertion curves (means over frames) at ``fractions + 1`` points from 0 to 1 of the
    positions, ordered by attribution (most positive first) and, for reference, in a random order.

    Curves are normalised per frame to ``(F - F(all removed)) / (F(x) - F(all removed))`` before averaging, so
    deletion starts at 1 and ends at 0 and insertion the reverse; ``auc`` is the trapezoid area (deletion:
    lower is more faithful; insertion: higher)."""
    tgt = resolve_target(target, agent)
    obs = torch.as_tensor(obs)
    pos = _positions(torch.as_tensor(attr, dtype=torch.float32), layer)  # (N, h, w)
    n, cells = pos.shape[0], pos[0].numel()
    gen = torch.Generator().manual_seed(seed)
    orders = {"attribution": pos.flatten(1).argsort(dim=1, descending=True),
              "random": torch.stack([torch.randperm(cells, generator=gen) for _ in range(n)])}  # (N, cells)
    points = np.linspace(0, 1, fractions + 1)
    full = _target_with_keep(agent, obs, tgt, layer, torch.ones_like(pos), state, first)
    empty = _target_with_keep(agent, obs, tgt, layer, torch.zeros_like(pos), state, first)
    span = torch.where((full - empty).abs() > 1e-8, full - empty, torch.ones_like(full))
    out = {"fractions": points.tolist()}
    for name, order in orders.items():
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(cells).expand(n, -1))  # rank of each position
        for mode in ("deletion", "insertion"):
            curve = []
            for p in points:
                top = (rank < int(round(p * cells))).float().reshape(pos.shape)  # (N, h, w) the first p
                keep = 1 - top if mode == "deletion" else top
                value = _target_with_keep(agent, obs, tgt, layer, keep, state, first)
                curve.append(float(((value - empty) / span).mean()))
            out[f"{mode}_{name}"] = curve
            out[f"{mode}_{name}_auc"] = float(np.trapz(curve, points))
    return out


@torch.no_grad()
def _forward_order(agent: nn.Module, obs, state=None, first=None) -> list:
    """Names of the modules that own parameters directly, in the order the forward pass calls them."""
    owners = [(n, m) for n, m in agent.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    with capture(agent, [n for n, _ in owners]) as cache:
        agent(torch.as_tensor(obs)[:2], state=None if state is None else state[:2],
              first=None if first is None else first[:2])
    seen = list(cache)  # in the order the pass first called them
    return seen + [n for n, _ in owners if n not in seen]  # never called (e.g. h0 owners): last


def _reinit(module: nn.Module, gen: torch.Generator) -> None:
    for p in module.parameters(recurse=False):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen) * (p.std() if p.numel() > 1 else 0.1))


def randomisation_check(agent, obs, *, layer=None, target="value", method="ig", steps: int = 10, state=None,
                        first=None, seed: int = 0, **kwargs) -> dict:
    """Cascading parameter randomisation from the output down (forward-call order, reversed). Returns the
    stages (module names, top first)
    with the Spearman correlation of |attribution| with the trained agent's (mean over frames). The agent is
    not modified (copies are randomised)."""
    from scipy.stats import spearmanr

    def attr_of(model):
        a = attribute(model, obs, target=target, layer=layer, method=method, steps=steps, state=state,
                      first=first, **kwargs)
        return a.abs().flatten(1).numpy()  # (N, D)

    reference = attr_of(agent)
    model, gen, stages = copy.deepcopy(agent), torch.Generator().manual_seed(seed), []
    for name in reversed(_forward_order(agent, obs, state, first)):
        _reinit(dict(model.named_modules())[name], gen)
        a = attr_of(model)
        rho = [spearmanr(r, x).statistic if r.std() > 0 and x.std() > 0 else 0.0 for r, x in zip(reference, a)]
        stages.append({"randomised_down_to": name, "spearman": float(np.nanmean(rho))})
    return {"layer": layer, "target": str(target), "method": method, "stages": stages}
