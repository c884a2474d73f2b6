"""The hidden-state swap experiment's pieces: the swaps named on the command line, the random control, and the
paired comparison of each edited agent with the original (:func:`paired_comparison`), also with the real episodes
cut at the simulator's horizon. ``policylens sim swap`` (:mod:`.cli`) runs the experiment.
"""
from __future__ import annotations

import torch

from ...factors import Directions


def parse_swaps(text: str) -> list:
    """``"3:5,saw:box,1:none"`` -> ``[("3", "5"), ("saw", "box"), ("1", None)]``."""
    swaps = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, sep, b = part.partition(":")
        if not sep or not a or not b:
            raise ValueError(f"swap {part!r}; expected FROM:TO (index or label; TO may be 'none')")
        swaps.append((a, None if b.lower() == "none" else b))
    if not swaps:
        raise ValueError("no swaps given; expected --swap FROM:TO[,FROM:TO...]")
    return swaps


def random_control(directions: Directions, seed: int = 0) -> Directions:
    """As many random orthonormal directions as ``directions`` has, in the same space (z-space when they are
    z-scored: ``meta["std"]`` is kept), as PCA-like directions: a swap between them moves as much as a swap
    between real ones of unit norm, but along nothing the agent learnt."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(directions.channels, len(directions), generator=g, dtype=torch.float64))
    meta = {k: v for k, v in directions.meta.items() if k == "std"}
    return Directions(q.T.float(), directions.layer, tuple(f"random{k}" for k in range(len(directions))), "pca",
                      {**meta, "control_seed": seed})


def cut_at_horizon(records: list, horizon: int) -> list:
    """Real episode records as an imagined episode of ``horizon`` frames would score them: an episode longer
    than ``horizon`` becomes a ``timeout`` (no success); the others keep their outcome."""
    return [{**r, "cause": "timeout", "success": False} if r["length"] > horizon else r for r in records]


def horizon_setting(results: dict, horizon: int, alpha: float) -> "dict | None":
    """The real comparison with every agent's episodes cut at ``horizon`` frames, or None when no real episode
    runs longer (the whole-episode comparison then already is the one at the horizon)."""
    if not any(r["length"] > horizon for recs in results.values() for r in recs):
        return None
    cut = {name: cut_at_horizon(recs, horizon) for name, recs in results.items()}
    return {**paired_comparison(cut, alpha), "horizon": horizon}


def paired_comparison(records: dict, alpha: float) -> dict:
    """Each edited agent's records against the original's: success rates and
    :func:`~policylens.evaluate.compare.compare_records`."""
    from ...evaluate.compare import compare_records

    base = records["original"]
    return {"success": {n: sum(bool(r["success"]) for r in recs) / len(recs) for n, recs in records.items()},
            **{n: compare_records(base, recs, alpha) for n, recs in records.items() if n != "original"}}
