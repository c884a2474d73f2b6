"""GAE bookmarks: the timesteps of a trajectory whose advantage is most extreme (Understanding RL Vision's
hallucination search).

An unusually high or low advantage means something unexpected happened, or the value function was wrong
about the state (a "hallucinated" coin or buzzsaw); these are the frames worth looking at first.
"""
from __future__ import annotations

import numpy as np


def bookmarks(advantages, k: int = 10, *, separation: int = 1) -> np.ndarray:
    """The ``k`` timesteps with the largest ``|advantage|``, most extreme first, ``(n,)`` int64 with ``n <= k``.

    ``advantages`` ``(T,)``: one trajectory's GAE advantages (the store's ``advantages`` field). Ties go to the
    earlier timestep. ``separation``: chosen timesteps are at least this far apart (1: any distinct steps;
    e.g. 5 keeps one bookmark per event instead of its neighbours too), so fewer than ``k`` may come back.
    """
    adv = np.asarray(advantages, dtype=np.float64)
    if adv.ndim != 1:
        raise ValueError(f"advantages must be one trajectory's (T,) array, got shape {adv.shape}")
    if not np.isfinite(adv).all():
        bad = np.flatnonzero(~np.isfinite(adv))
        raise ValueError(f"advantages contain NaN or infinite values at timesteps {bad[:10].tolist()}")
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if isinstance(separation, bool) or int(separation) != separation or separation < 1:
        raise ValueError(f"separation must be an integer >= 1, got {separation!r}")
    order = np.argsort(-np.abs(adv), kind="stable")  # (T,) most extreme first, earlier first on ties
    if separation == 1:
        return order[:int(k)].astype(np.int64)
    taken = np.zeros(len(adv), bool)  # (T,) within `separation` of a chosen step
    chosen: list[int] = []
    for t in order:
        if len(chosen) >= k:
            break
        if taken[t]:
            continue
        chosen.append(int(t))
        taken[max(0, t - separation + 1):t + separation] = True
    return np.array(chosen, dtype=np.int64)
