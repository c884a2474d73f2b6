"""Decompositions that give the same answer at any thread count, with a stability score per direction.

A factorisation can have many near-equal solutions: NMF of a layer whose activations take a handful of
distinct values is exact for many bases, FastICA's sources come out in an order and sign set by its start,
and PCA's components rotate freely where two variances are equal. Which solution an iterative solver
reaches then hangs on the order of floating-point sums, and that order changes with the number of BLAS
threads. So every decomposition in :mod:`.decompose` goes through here:

- the solver runs with BLAS and OpenMP pinned to one thread (:func:`one_thread`): the same sums in the same
  order whatever ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` say;
- several seeded restarts are fitted and one is chosen by a fixed rule (:func:`choose`): the lowest
  objective; restarts within ``TIE`` of it are told apart by their agreement with all the restarts (the
  medoid: the highest mean matched cosine), then by restart index;
- each chosen direction gets a **stability score** (:func:`stability`): the median, over the other restarts
  and over fits to bootstrap resamples of the frames, of its best-matched cosine (Hungarian matching, one
  direction to one direction). Below ``UNSTABLE`` a direction is flagged: it is one draw among several
  different answers, and a finding built on it should be reported with its spread over restarts.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

UNSTABLE = 0.9
"""a direction whose stability score is below this is flagged unstable"""
TIE = 1e-4
"""restarts whose objectives (shares of the data's squared norm) differ by at most this are tied"""


@contextlib.contextmanager
def one_thread():
    """BLAS and OpenMP limited to one thread inside the block: solver sums in a fixed order."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def matched_cosines(a, b) -> np.ndarray:
    """For each row of ``a`` ``(K, C)``, the absolute cosine with the row of ``b`` ``(K', C)`` it is matched to
    by the assignment that maximises the total (Hungarian); 0 for rows left unmatched when ``K' < K``."""
    cos = np.abs(_unit(a) @ _unit(b).T)  # (K, K')
    pair = matches(a, b)
    return np.where(pair >= 0, cos[np.arange(len(cos)), np.maximum(pair, 0)], 0.0)


def matches(a, b) -> np.ndarray:
    """For each row of ``a`` ``(K, C)``, the index of the row of ``b`` it is matched to (as
    :func:`matched_cosines`), -1 where unmatched."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.abs(_unit(a) @ _unit(b).T))
    out = np.full(len(a), -1)
    out[rows] = cols
    return out


def matched_spread(chosen, fits: list, value) -> list:
    """Per direction of ``chosen`` ``(K, C)``, ``{"median", "min", "max", "n"}`` of a per-direction finding over
    every restart: ``value(r, j)`` is the finding for direction ``j`` of restart ``r`` (``fits[r]`` ``(K_r, C)``),
    read at the direction matched to each chosen one. How much a finding about "this direction" depends on
    which decomposition was drawn."""
    per: list[list[float]] = [[] for _ in range(len(chosen))]
    for r, f in enumerate(fits):
        for k, j in enumerate(matches(chosen, f)):
            if j >= 0 and value(r, int(j)) is not None:
                per[k].append(float(value(r, int(j))))
    return [{"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v)), "n": len(v)} if v else
            {"median": None, "min": None, "max": None, "n": 0} for v in per]


def agreement(fits: list) -> np.ndarray:
    """``(R,)``: each fit's mean matched cosine with every other fit (1 when there is only one)."""
    r = len(fits)
    if r == 1:
        return np.ones(1)
    pair = np.ones((r, r))
    for i in range(r):
        for j in range(i + 1, r):
            pair[i, j] = pair[j, i] = matched_cosines(fits[i], fits[j]).mean()
    return (pair.sum(1) - 1) / (r - 1)


def choose(objectives, fits: list, tie: float = TIE) -> int:
    """Index of the restart to keep: the lowest objective; within ``tie`` of it the one that agrees most with
    all the restarts (its mean matched cosine), ties of that (1e-9) by the lowest index. ``objectives``
    ``(R,)``; ``fits``: the restarts' direction matrices ``(K, C)``."""
    objectives = np.asarray(objectives, np.float64)
    tied = np.flatnonzero(objectives <= objectives.min() + tie)
    if len(tied) == 1:
        return int(tied[0])
    agree = agreement(fits)
    best = agree[tied].max()
    return int(next(i for i in tied if agree[i] >= best - 1e-9))


def stability(chosen, restarts: list, resamples: list) -> dict:
    """Per direction of ``chosen`` ``(K, C)``: its matched cosine in every other restart and every resample
    fit, and ``stability``, the median over both (1.0 when there is nothing to compare with)."""
    by_restart = np.array([matched_cosines(chosen, f) for f in restarts]).reshape(len(restarts), len(chosen))
    by_sample = np.array([matched_cosines(chosen, f) for f in resamples]).reshape(len(resamples), len(chosen))
    both = np.concatenate([by_restart, by_sample])  # (R - 1 + B, K)
    score = np.median(both, 0) if len(both) else np.ones(len(chosen))

    def median(x):
        return np.median(x, 0).round(6).tolist() if len(x) else None

    return {"stability": score.round(6).tolist(), "stability_restarts": median(by_restart),
            "stability_bootstrap": median(by_sample), "unstable": [bool(s < UNSTABLE) for s in score]}


def resample_frames(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A bootstrap resample of the frames (first axis) of ``x``, drawn with ``seed``."""
    index = np.random.default_rng(seed).integers(0, x.shape[0], x.shape[0])
    return x[torch.from_numpy(index)]


def numerical_rank(rows: torch.Tensor, tol: float = 1e-6) -> int:
    """Number of singular values of ``rows`` ``(M, C)`` above ``tol`` times the largest (from the eigenvalues
    of the ``(C, C)`` Gram matrix in float64, so a layer of a million rows costs one pass)."""
    r = rows.double().numpy()
    with one_thread():
        eig = np.linalg.eigvalsh(r.T @ r)[::-1].clip(min=0)  # (C,) squared singular values, largest first
    return int((eig > tol ** 2 * eig[0]).sum()) if len(eig) and eig[0] > 0 else 0


def canonical_clusters(labels: np.ndarray, centres: np.ndarray) -> tuple:
    """Clusters renumbered in a fixed order, largest first, ties by their centres (lexicographic):
    ``(labels (N,), centres (C, D))``. k-means numbers its clusters in whatever order its start gave them."""
    labels, centres = np.asarray(labels), np.asarray(centres)
    sizes = np.bincount(labels, minlength=len(centres))
    order = np.lexsort((*centres.T[::-1], -sizes))  # primary key: size, descending; then the centre
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels], centres[order]


def kmeans(x: np.ndarray, clusters: int, seed: int = 0, n_init: int = 10) -> tuple:
    """k-means with one thread, ``n_init`` seeded starts (the lowest inertia kept) and canonical cluster
    numbers: ``(labels (N,), centres (C, D))``."""
    from sklearn.cluster import KMeans

    with one_thread():
        model = KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit(x)
    return canonical_clusters(model.labels_.astype(np.int64), model.cluster_centers_)
