"""How well directions and attributions line up with ground-truth entities.

Understanding RL Vision counted "interpretable features" with human raters. Here each direction's spatial map (N, h, w) of
where it fires is compared with entity masks pooled onto the same grid (share of each cell the entity covers):

- ``precision``: the share of the direction's firing mass that falls on the entity;
- ``lift``: precision over the entity's share of all cells (1 = no better than chance);
- ``nmi``: mutual information between "the direction fires here" (its map above its ``quantile`` over all
  cells) and "the entity is here" (covers at least half the cell; an entity too small to cover half a cell
  anywhere, as an Atari ball at a coarse layer, where it covers at least half the most it covers in any cell:
  ``present_at``), over the entity's entropy: the share of the uncertainty about where the entity is that the
  direction removes (0 independent, 1 perfect).

A direction counts as *interpretable* when its best entity reaches ``nmi >= min_nmi`` and ``lift >= min_lift``:
a stated, repeatable criterion instead of a rater's judgement.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from ..factors import Directions



def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (bits) between two boolean arrays of the same shape."""
    a, b = np.asarray(a, bool).ravel(), np.asarray(b, bool).ravel()
    joint = np.array([[np.mean(~a & ~b), np.mean(~a & b)], [np.mean(a & ~b), np.mean(a & b)]])  # (2, 2)
    return _entropy(joint.sum(1)) + _entropy(joint.sum(0)) - _entropy(joint.ravel())


def present_at(cover) -> float:
    """The share of a cell an entity must cover to count as there: half the cell, or half the most it covers in
    any cell where it never covers half of one (a small object on a coarse grid)."""
    top = float(np.max(cover, initial=0.0))
    return 0.5 if top >= 0.5 or top == 0 else top / 2


def direction_entity_scores(maps: np.ndarray, masks: dict, labels=None, quantile: float = 0.9,
                            min_nmi: float = 0.1, min_lift: float = 2.0) -> dict:
    """Score each direction's firing map ``(N, K, h, w)`` (non-negative) against pooled masks
    ``{kind: (N, h, w)}`` in [0, 1]. Returns ``{"directions": [...], "interpretable_share", "criterion"}``."""
    maps = np.clip(np.asarray(maps, np.float64), 0, None)
    n, k = maps.shape[:2]
    labels = list(labels) if labels is not None else [str(i) for i in range(k)]
    presence = {kind: present_at(cover) for kind, cover in masks.items()}
    rows = []
    for j in range(k):
        m = maps[:, j]  # (N, h, w)
        mass = m.sum()
        fires = m > np.quantile(m, quantile) if mass > 0 else np.zeros_like(m, bool)
        per_kind = {}
        for kind, cover in masks.items():
            cover = np.asarray(cover, np.float64)
            if cover.shape != m.shape:
                raise ValueError(f"mask {kind!r} has shape {cover.shape}, direction maps {m.shape}: pool the "
                                 "masks onto the layer's grid first (pool_masks)")
            base = cover.mean()
            present = cover >= presence[kind]
            h = _entropy(np.array([present.mean(), 1 - present.mean()]))
            precision = float((m * cover).sum() / mass) if mass > 0 else 0.0
            per_kind[kind] = {"precision": precision, "lift": precision / base if base > 0 else 0.0,
                              "nmi": mutual_information(fires, present) / h if h > 0 else 0.0, "base_rate": float(base),
                              "present_at": presence[kind]}
        best = max(per_kind, key=lambda kk: per_kind[kk]["nmi"]) if per_kind else None
        ok = best is not None and per_kind[best]["nmi"] >= min_nmi and per_kind[best]["lift"] >= min_lift
        rows.append({"label": labels[j], "best_entity": best, "interpretable": bool(ok), "entities": per_kind})
    return {"directions": rows, "interpretable_share": float(np.mean([r["interpretable"] for r in rows])),
            "criterion": {"quantile": quantile, "min_nmi": min_nmi, "min_lift": min_lift}}


def attribution_entity_mass(attr: np.ndarray, masks: dict) -> dict:
    """Share of |attribution| on each entity kind and on the background (no entity), against the share of
    cells each covers. ``attr`` ``(N, C, h, w)`` (a layer) or ``(N, h, w)``; masks pooled to ``(N, h, w)``."""
    a = np.abs(np.asarray(attr, np.float64))
    if a.ndim == 4:
        a = a.sum(1)  # (N, h, w)
    total = a.sum()
    covered = np.zeros_like(a)
    out = {}
    for kind, cover in masks.items():
        cover = np.asarray(cover, np.float64)
        if cover.shape != a.shape:
            raise ValueError(f"mask {kind!r} has shape {cover.shape}, attributions {a.shape}")
        out[kind] = {"mass": float((a * cover).sum() / total) if total > 0 else 0.0, "area": float(cover.mean())}
        covered = np.maximum(covered, cover)
    out["background"] = {"mass": float((a * (1 - covered)).sum() / total) if total > 0 else 0.0,
                         "area": float((1 - covered).mean())}
    for v in out.values():
        v["ratio"] = v["mass"] / v["area"] if v["area"] > 0 else 0.0
    return out


class LayerScores(NamedTuple):
    """What :func:`score_layer` finds: the chosen NMF directions scored, and every restart scored alike."""
    directions: Directions  # the stable choice among the NMF restarts
    scores: dict  # direction_entity_scores of the chosen directions, with stability and the spread over restarts
    maps: np.ndarray  # (N, K, h, w) where each chosen direction fires
    restarts: list  # per NMF restart: (Directions, scores); the chosen one at directions.meta["restart"]


def spread(values) -> dict:
    """``{"median", "min", "max", "n"}`` of a finding over decomposition restarts (None entries left out)."""
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def score_layer(agent, obs, masks: dict, layer: str, k: int = 8, seed: int = 0, state=None, restarts: int = 5,
                bootstrap: int = 5, on: str = "activations", target="value", steps: int = 16) -> LayerScores:
    """NMF (``k`` directions, the stable choice among ``restarts``) of a spatial layer over ``obs``, each
    direction scored against the entity masks where it is used. The scores carry each direction's ``stability``
    and ``unstable`` flag, and ``interpretable_share_spread``: the share of interpretable directions over the
    restarts (median, min, max), since a finding that rests on a decomposition depends on which draw it got.

    ``on="activations"``: NMF of the (post-ReLU) activations, a direction's map its coefficients there.
    ``on="attributions"``: NMF of the integrated-gradients attribution of ``target`` (``steps`` steps) to the
    layer, positive and negative parts together (:func:`~policylens.factors.nmf_attributions`, Understanding
    RL Vision's way), a direction's map its coefficients in ``|attribution|``: where it matters, as good or as
    bad news. Either way a direction is a vector over the layer's channels, so it edits the same way."""
    import torch

    from ..factors import collect_activations, nmf, nmf_attributions
    from ..factors.decompose import restart_directions

    x = torch.as_tensor(np.asarray(obs))
    if on == "activations":
        values = collect_activations(agent, x, layer, state=state).clamp_min(0)  # (N, C, h, w)
    elif on == "attributions":
        from ..attribution import attribute

        values = attribute(agent, x, target=target, layer=layer, method="ig", steps=steps, state=state)
    else:
        raise ValueError(f"score_layer on={on!r}: expected 'activations' or 'attributions'")
    if values.ndim != 4:
        raise ValueError(f"layer {layer!r} is not spatial ({tuple(values.shape[1:])}); scoring needs (C, h, w) maps")
    k = min(k, values.shape[0] * values.shape[2] * values.shape[3], values.shape[1])
    factorise = nmf if on == "activations" else nmf_attributions
    directions, fits = factorise(values, k, layer=layer, seed=seed, restarts=restarts, bootstrap=bootstrap,
                                 return_fits=True)
    used = values if on == "activations" else values.abs()  # (N, C, h, w), non-negative
    every = restart_directions(directions, fits)
    scored = [score_directions(used, masks, d) for d in every]
    scores, maps = scored[directions.meta["restart"]]
    rows = scores["directions"]
    for row, stab, flag in zip(rows, directions.meta["stability"], directions.meta["unstable"]):
        row.update(stability=stab, unstable=flag)
    for row, spread_ in zip(rows, _nmi_spread(directions, every, scored)):
        row["nmi_spread"] = spread_
    scores["on"] = on
    scores["interpretable_share_restarts"] = [s["interpretable_share"] for s, _ in scored]
    scores["interpretable_share_spread"] = spread(scores["interpretable_share_restarts"])
    return LayerScores(directions, scores, maps, [(d, s) for d, (s, _) in zip(every, scored)])


def _nmi_spread(directions, every: list, scored: list) -> list:
    """Per chosen direction, the spread over the restarts of its NMI with its best entity, each restart's
    direction matched to it (:func:`policylens.factors.stable.matches`)."""
    from ..factors.stable import matches

    rows = scored[directions.meta["restart"]][0]["directions"]
    values: list[list] = [[] for _ in rows]
    for d, (s, _) in zip(every, scored):
        for k, j in enumerate(matches(directions.vectors.numpy(), d.vectors.numpy())):
            if j >= 0 and rows[k]["best_entity"] is not None:
                values[k].append(s["directions"][j]["entities"][rows[k]["best_entity"]]["nmi"])
    return [spread(v) for v in values]


def score_directions(acts, masks: dict, directions) -> tuple:
    """``(direction_entity_scores, coefficient maps (N, K, h, w))`` of ``directions`` over non-negative
    activations ``acts`` ``(N, C, h, w)``."""
    from ..factors import coefficients
    from .masks import pool_masks

    maps = coefficients(acts, directions).numpy()  # (N, K, h, w)
    return direction_entity_scores(maps, pool_masks(masks, tuple(acts.shape[-2:])), labels=directions.labels), maps
