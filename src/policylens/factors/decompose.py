"""NMF, PCA and ICA of a layer's activations (or attributions) -> :class:`Directions`.

Every method takes ``(N, C)`` (e.g. GRU states ``hx``) or ``(N, C, H, W)`` (conv activations). Spatial
positions are flattened into the batch, as *Understanding RL Vision* does: the matrix factorised has one
row per observation per position and one column per channel, so the directions live in channel space and
use no spatial information.

- :func:`nmf`: non-negative activations (post-ReLU). Directions are the NMF components scaled to unit
  norm, ordered by how much of the data they carry. ``meta["residual"]`` is the share of the data's squared
  norm left outside the factorisation, ``|X - W H|^2 / |X|^2``.
- :func:`nmf_attributions`: signed attributions, split as the paper does: the positive part ``max(A, 0)``
  and the negative part ``max(-A, 0)`` stacked along the batch, one NMF over both, so one set of
  directions serves "good news" and "bad news" alike. ``meta["positive_share"][k]`` tells how much of
  direction k's use comes from the positive part (1: only good news, 0: only bad news).
- :func:`pca`: orthonormal principal directions of the centred rows; ``meta`` has ``mean``,
  ``explained_variance_ratio`` and ``residual`` (share of the centred variance outside the span, equal to
  ``1 - sum(explained_variance_ratio)``).
- :func:`ica`: FastICA. Each direction is a column of the mixing matrix (where source k moves the activation);
  ``meta["unmixing"]`` ``(K, C)`` maps centred activations to the sources; ``mean`` and ``residual`` as PCA.

NMF uses scikit-learn's coordinate-descent solver rather than hand-written multiplicative updates: it
converges in far fewer iterations on the few-million-row matrices a layer gives, and is well tested.

Every method gives the same answer at any thread count: seeded restarts, a fixed rule to choose among them,
canonical order and sign, and a stability score per direction (``meta["stability"]``); see :mod:`.stable`.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch

from .directions import Directions
from .stable import choose, matched_spread, numerical_rank, one_thread, resample_frames, stability


def as_float(x, name: str = "activations") -> torch.Tensor:
    """A float32 CPU tensor from a tensor or array ``(N, C, ...)``, checked finite and at least 2-D."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().float()
    if t.ndim < 2:
        raise ValueError(f"{name} must be (N, C) or (N, C, H, W); got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return t


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, *S)`` -> ``(N * prod(S), C)``: every spatial position becomes a row."""
    return x.movedim(1, -1).reshape(-1, x.shape[1])  # (M, C)


def from_rows(rows: torch.Tensor, like_shape) -> torch.Tensor:
    """Inverse of :func:`to_rows` for ``(M, K)`` rows: -> ``(N, K, *S)`` where ``like_shape = (N, C, *S)``."""
    n, spatial = like_shape[0], tuple(like_shape[2:])
    return rows.reshape(n, *spatial, rows.shape[1]).movedim(-1, 1)  # (N, K, *S)


def _check_k(k: int, rows: torch.Tensor, method: str, limit_by_channels: bool = True) -> None:
    most = min(rows.shape) if limit_by_channels else rows.shape[0]
    if not isinstance(k, int) or not 1 <= k <= most:
        raise ValueError(f"{method} k must be an integer in [1, {most}] for {rows.shape[0]} rows x "
                         f"{rows.shape[1]} channels; got {k!r}")


def _squared_share(part: torch.Tensor, whole: torch.Tensor) -> float:
    """``|part|^2 / |whole|^2`` in float64."""
    total = whole.double().pow(2).sum()
    if total == 0:
        raise ValueError("the data are all zero: nothing to factorise")
    return float(part.double().pow(2).sum() / total)


class Fit(NamedTuple):
    """One restart of a decomposition: its directions, its objective and what else it records."""
    vectors: torch.Tensor  # (K, C)
    objective: float  # lower is better; NMF: residual share
    meta: dict  # per-fit extras (n_iter, converged, coefficients, ...)


def settle(fit_once, x: torch.Tensor, prepare, *, seed: int, restarts: int, bootstrap: int) -> tuple:
    """The stable choice among ``restarts`` fits of ``prepare(x)`` (see :mod:`.stable`): ``(chosen Fit, meta)``
    with the restarts' objectives, the index chosen and the per-direction stability over the other restarts
    and over ``bootstrap`` fits to resampled frames (each made with the chosen restart's start).
    ``fit_once(rows, restart) -> Fit``; ``prepare(frames) -> rows``."""
    for name, value, least in (("restarts", restarts, 1), ("bootstrap", bootstrap, 0)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
    rows = prepare(x)
    with one_thread():
        fits = [fit_once(rows, r) for r in range(restarts)]
        pick = choose([f.objective for f in fits], [f.vectors.numpy() for f in fits])
        samples = [fit_once(prepare(resample_frames(x, seed + 7919 * (b + 1))), pick).vectors.numpy()
                   for b in range(bootstrap)]
    chosen = fits[pick]
    others = [f.vectors.numpy() for i, f in enumerate(fits) if i != pick]
    meta = {"seed": seed, "restart": pick, "restarts": [{"restart": i, "objective": f.objective} for i, f in
                                                        enumerate(fits)],
            "bootstrap": bootstrap, **stability(chosen.vectors.numpy(), others, samples)}
    return chosen, meta, fits


def restart_directions(directions: Directions, fits: list) -> list:
    """Every restart behind ``directions`` as its own :class:`Directions` (same layer, method and labels), for
    reporting how a finding varies over restarts; the chosen one is ``directions`` itself."""
    return [directions if i == directions.meta.get("restart") else
            Directions(f.vectors, directions.layer, directions.labels, directions.method,
                       {"restart": i, "objective": f.objective}) for i, f in enumerate(fits)]


def _cap_k(k: int, rows: torch.Tensor, method: str) -> int:
    """``k`` capped at the rank of the rows: directions beyond it are not identifiable."""
    rank = numerical_rank(rows)
    if k > rank:
        warnings.warn(f"{method}: the data have rank {rank}, so only {rank} of the {k} directions asked for are "
                      f"determined; factorising with k={rank}")
    return max(1, min(k, rank))


def _nmf_fitter(k: int, seed: int, max_iter: int, tol: float):
    """``fit_once(rows, restart) -> Fit`` for NMF: restart 0 starts from NNDSVDa (deterministic), restart r > 0
    from a random start seeded ``seed + r``. Components scaled to unit norm (the scale moves into the
    coefficients) and ordered by coefficient energy; objective = residual share."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    def fit_once(rows: torch.Tensor, restart: int) -> Fit:
        init = "nndsvda" if restart == 0 and k <= min(rows.shape) else "random"
        model = NMF(n_components=k, init=init, random_state=seed + restart, max_iter=max_iter, tol=tol)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            coef = torch.from_numpy(model.fit_transform(rows.double().numpy()))  # (M, K)
        comps = torch.from_numpy(model.components_)  # (K, C)
        norms = comps.norm(dim=1)  # (K,)
        comps, coef = comps / norms.clamp_min(1e-12)[:, None], coef * norms[None, :]
        order = torch.argsort(coef.pow(2).sum(0), descending=True, stable=True)  # (K,)
        coef, comps = coef[:, order], comps[order]
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return Fit(comps.float(), _squared_share(rows.double() - coef @ comps, rows),
                   {"coef": coef, "n_iter": int(model.n_iter_), "converged": converged, "init": init})

    return fit_once


def _nmf_meta(chosen: Fit, meta: dict, k_asked: int, k: int) -> dict:
    out = {"residual": chosen.objective, "n_iter": chosen.meta["n_iter"], "converged": chosen.meta["converged"],
           "init": chosen.meta["init"], **meta}
    if k != k_asked:
        out["k_requested"] = k_asked
    return out


def nmf(x, k: int, *, layer: str, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4, restarts: int = 5,
        bootstrap: int = 5, labels=None, return_fits: bool = False):
    """NMF directions ``(k, C)`` of non-negative activations ``(N, C)`` or ``(N, C, H, W)``, the stable
    choice among ``restarts`` fits (see :mod:`.stable`); ``k`` is capped at the data's rank.

    ``meta``: ``residual`` (share of ``|X|^2`` not explained), ``stability`` per direction (and its parts
    over restarts and over ``bootstrap`` resamples of the frames), ``unstable``, ``restarts`` (each one's
    residual), ``restart`` (the one chosen), ``rows``, ``n_iter``, ``converged``, ``on``. With
    ``return_fits`` also every restart's fit (see :func:`restart_directions`).
    """
    acts = as_float(x)
    rows = to_rows(acts)  # (M, C)
    if rows.min() < 0:
        raise ValueError(f"nmf needs non-negative activations (e.g. post-ReLU); layer {layer!r} has values down to "
                         f"{float(rows.min()):.4g}. For signed attributions use nmf_attributions; else pca or ica")
    _check_k(k, rows, "nmf", limit_by_channels=False)
    kk = _cap_k(k, rows, "nmf")
    chosen, meta, fits = settle(_nmf_fitter(kk, seed, max_iter, tol), acts, to_rows, seed=seed, restarts=restarts,
                                bootstrap=bootstrap)
    meta = {"on": "activations", **_nmf_meta(chosen, meta, k, kk), "rows": rows.shape[0],
            "shape": list(acts.shape[1:])}
    out = Directions(chosen.vectors, layer, tuple(labels or ())[:kk], "nmf", meta)
    return (out, fits) if return_fits else out


def _positive_share(coef: torch.Tensor, positive_rows: int) -> list:
    """Per direction: its coefficient mass in the first ``positive_rows`` rows (the positive part) over its
    total; None for an unused direction."""
    mass, positive = coef.sum(0), coef[:positive_rows].sum(0)  # (K,), (K,)
    return [float(p / m) if m > 0 else None for p, m in zip(positive, mass)]


def _signed_parts(attr: torch.Tensor) -> torch.Tensor:
    rows = to_rows(attr)  # (M, C)
    return torch.cat([rows.clamp_min(0), (-rows).clamp_min(0)])  # (2M, C): positive part, then negative part


def nmf_attributions(attr, k: int, *, layer: str, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4,
                     restarts: int = 5, bootstrap: int = 5, labels=None, return_fits: bool = False):
    """NMF directions ``(k, C)`` of signed attributions ``(N, C)`` or ``(N, C, H, W)`` (Understanding RL Vision):
    rows of ``max(A, 0)`` and of ``max(-A, 0)`` stacked along the batch and factorised together, the stable
    choice among ``restarts`` fits as :func:`nmf`.

    ``meta``: ``residual`` over the stacked matrix, ``positive_share`` (per direction: its coefficient mass
    in the positive rows over its total; None if unused) and ``positive_share_spread`` (its median, min and
    max over the restarts, each restart's direction matched to this one), ``sign_split = "batch"``, plus what
    :func:`nmf` records.
    """
    a = as_float(attr, "attributions")
    parts = _signed_parts(a)  # (2M, C)
    _check_k(k, parts, "nmf_attributions", limit_by_channels=False)
    kk = _cap_k(k, parts, "nmf_attributions")
    chosen, meta, fits = settle(_nmf_fitter(kk, seed, max_iter, tol), a, _signed_parts, seed=seed,
                                restarts=restarts, bootstrap=bootstrap)
    shares = [_positive_share(f.meta["coef"], parts.shape[0] // 2) for f in fits]  # per restart, per direction
    spread = matched_spread(chosen.vectors.numpy(), [f.vectors.numpy() for f in fits], lambda r, j: shares[r][j])
    meta = {"on": "attributions", "sign_split": "batch", **_nmf_meta(chosen, meta, k, kk),
            "positive_share": shares[meta["restart"]], "positive_share_spread": spread,
            "rows": parts.shape[0], "shape": list(a.shape[1:])}
    out = Directions(chosen.vectors, layer, tuple(labels or ())[:kk], "nmf", meta)
    return (out, fits) if return_fits else out


def _sign_canonical(vectors: torch.Tensor) -> torch.Tensor:
    """Per row, +1 or -1 so that its largest-magnitude entry is positive (PCA/ICA signs are arbitrary)."""
    idx = vectors.abs().argmax(dim=1)  # (K,)
    biggest = vectors[torch.arange(len(vectors)), idx]  # (K,)
    return torch.where(biggest < 0, -1.0, 1.0).to(vectors.dtype)  # (K,)


def _pca_fitter(k: int, seed: int):
    from sklearn.decomposition import PCA

    def fit_once(rows: torch.Tensor, restart: int) -> Fit:
        model = PCA(n_components=k, svd_solver="full", random_state=seed).fit(rows.double().numpy())
        comps = torch.from_numpy(model.components_)  # (K, C) float64
        comps = comps * _sign_canonical(comps)[:, None]
        mean = torch.from_numpy(model.mean_)  # (C,)
        centred = rows.double() - mean  # (M, C)
        outside = centred - (centred @ comps.T) @ comps  # (M, C)
        return Fit(comps.float(), _squared_share(outside, centred),
                   {"mean": mean.tolist(), "explained_variance_ratio": model.explained_variance_ratio_.tolist(),
                    "explained_variance": model.explained_variance_.tolist()})

    return fit_once


def pca(x, k: int, *, layer: str, seed: int = 0, bootstrap: int = 5, labels=None) -> Directions:
    """Principal directions ``(k, C)`` (orthonormal rows, each signed so its largest entry is positive) of
    ``(N, C)`` or ``(N, C, H, W)`` activations. PCA has one answer, so there are no restarts; ``stability``
    compares each direction with the PCA of ``bootstrap`` resamples of the frames (two nearly equal variances
    make their directions unstable).

    ``meta``: ``mean`` (C,), ``explained_variance_ratio`` (k,), ``explained_variance`` (k,), ``residual``,
    ``stability``.
    """
    acts = as_float(x)
    rows = to_rows(acts)  # (M, C)
    _check_k(k, rows, "pca")
    chosen, meta, _ = settle(_pca_fitter(k, seed), acts, to_rows, seed=seed, restarts=1, bootstrap=bootstrap)
    meta = {**chosen.meta, "residual": chosen.objective, **meta, "rows": rows.shape[0], "shape": list(acts.shape[1:])}
    return Directions(chosen.vectors, layer, tuple(labels or ()), "pca", meta)


def _ica_fitter(k: int, seed: int, max_iter: int, tol: float):
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    def fit_once(rows: torch.Tensor, restart: int) -> Fit:
        rows = rows.double()
        model = FastICA(n_components=k, whiten="unit-variance", random_state=seed + restart, max_iter=max_iter,
                        tol=tol)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(rows.numpy())
        mixing = torch.from_numpy(model.mixing_).T  # (K, C)
        unmixing = torch.from_numpy(model.components_)  # (K, C)
        order = torch.argsort(mixing.norm(dim=1), descending=True, stable=True)  # (K,)
        sign = _sign_canonical(mixing[order])[:, None]  # (K, 1)
        mixing, unmixing = mixing[order] * sign, unmixing[order] * sign
        mean = torch.from_numpy(model.mean_)  # (C,)
        centred = rows - mean  # (M, C)
        outside = centred - (centred @ unmixing.T) @ mixing  # (M, C)
        return Fit(mixing.float(), _squared_share(outside, centred),
                   {"mean": mean.tolist(), "unmixing": unmixing.tolist(), "n_iter": int(model.n_iter_),
                    "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)})

    return fit_once


def ica(x, k: int, *, layer: str, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4, restarts: int = 5,
        bootstrap: int = 5, labels=None, return_fits: bool = False):
    """Independent directions ``(k, C)`` of ``(N, C)`` or ``(N, C, H, W)`` activations (FastICA, unit-variance
    sources after PCA whitening to ``k`` dimensions), the stable choice among ``restarts`` seeded starts:
    every start reconstructs the same whitened subspace, so the one that agrees most with the others is kept.

    Vectors are the mixing matrix's columns (``x ~ mean + sum_k s_k v_k``), ordered by norm (the spread each
    source causes), signs fixed so each vector's largest entry is positive. ``meta``: ``mean`` (C,),
    ``unmixing`` (K, C) with ``s = unmixing @ (x - mean)``, ``residual``, ``converged``, ``stability``.
    """
    acts = as_float(x)
    rows = to_rows(acts)  # (M, C)
    _check_k(k, rows, "ica")
    chosen, meta, fits = settle(_ica_fitter(k, seed, max_iter, tol), acts, to_rows, seed=seed, restarts=restarts,
                                bootstrap=bootstrap)
    meta = {**chosen.meta, "residual": chosen.objective, **meta, "rows": rows.shape[0], "shape": list(acts.shape[1:])}
    out = Directions(chosen.vectors, layer, tuple(labels or ()), "ica", meta)
    return (out, fits) if return_fits else out


METHODS = {"nmf": nmf, "pca": pca, "ica": ica}
