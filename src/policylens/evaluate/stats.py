"""Summaries of evaluated episodes: success rate with a Wilson interval, returns, lengths, causes."""
from __future__ import annotations

import math

import numpy as np

from ..envs import CAUSES


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple:
    """Wilson score interval ``(lo, hi)`` for ``k`` successes in ``n`` trials (z=1.96: 95%).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at k = 0 or k = n:
    ``wilson_interval(0, 10) == (0.0, 0.2775...)``.
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n >= 1 trials, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k}, n={n}")
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # At k = 0 (k = n) the bound is exactly 0 (1); keep it so instead of a rounding residue.
    return (0.0 if k == 0 else lo, 1.0 if k == n else hi)


def summarize(records: list) -> dict:
    """Episode records (``return``, ``length``, ``cause``, ``success``) -> the evaluation summary.

    ``causes`` has every cause in :data:`policylens.envs.CAUSES` (zero where none) plus any other seen;
    ``cause_rates`` has each occurring cause's rate with its Wilson 95% interval.
    """
    n = len(records)
    if n == 0:
        raise ValueError("no episodes to summarize")
    returns = np.array([r["return"] for r in records], dtype=np.float64)
    lengths = np.array([r["length"] for r in records], dtype=np.float64)
    wins = sum(bool(r["success"]) for r in records)
    causes = {c: 0 for c in CAUSES}
    for r in records:
        causes[r["cause"]] = causes.get(r["cause"], 0) + 1
    rates = {c: {"count": m, "rate": m / n, "ci95": list(wilson_interval(m, n))} for c, m in causes.items() if m}
    return {
        "episodes": n,
        "success_rate": wins / n,
        "ci95": list(wilson_interval(wins, n)),
        "mean_return": float(returns.mean()),
        "return_std": float(returns.std()),
        "mean_length": float(lengths.mean()),
        "length_std": float(lengths.std()),
        "causes": causes,
        "cause_rates": rates,
    }
