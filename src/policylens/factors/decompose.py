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
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .directions import Directions


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


def _fit_nmf(rows: torch.Tensor, k: int, seed: int, max_iter: int, tol: float):
    """NMF of non-negative ``(M, C)`` rows -> ``(coef (M, K), comps (K, C), n_iter, converged)``; components
    scaled to unit norm (the scale moves into the coefficients) and ordered by coefficient energy."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = NMF(n_components=k, init="nndsvda" if k <= min(rows.shape) else "random", random_state=seed,
                max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        coef = torch.from_numpy(model.fit_transform(rows.numpy())).float()  # (M, K)
    comps = torch.from_numpy(model.components_).float()  # (K, C)
    norms = comps.norm(dim=1)  # (K,)
    safe = norms.clamp_min(1e-12)
    comps, coef = comps / safe[:, None], coef * norms[None, :]
    order = torch.argsort(coef.pow(2).sum(0), descending=True)  # (K,)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return coef[:, order], comps[order], int(model.n_iter_), converged


def nmf(x, k: int, *, layer: str, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4,
        labels=None) -> Directions:
    """NMF directions ``(k, C)`` of non-negative activations ``(N, C)`` or ``(N, C, H, W)``.

    ``meta``: ``residual`` (share of ``|X|^2`` not explained), ``rows``, ``n_iter``, ``converged``, ``on``.
    """
    acts = as_float(x)
    rows = to_rows(acts)  # (M, C)
    if rows.min() < 0:
        raise ValueError(f"nmf needs non-negative activations (e.g. post-ReLU); layer {layer!r} has values down to "
                         f"{float(rows.min()):.4g}. For signed attributions use nmf_attributions; else pca or ica")
    _check_k(k, rows, "nmf", limit_by_channels=False)
    coef, comps, n_iter, converged = _fit_nmf(rows, k, seed, max_iter, tol)
    residual = _squared_share(rows - coef @ comps, rows)
    meta = {"on": "activations", "residual": residual, "rows": rows.shape[0], "shape": list(acts.shape[1:]),
            "n_iter": n_iter, "converged": converged, "seed": seed}
    return Directions(comps, layer, tuple(labels or ()), "nmf", meta)


def nmf_attributions(attr, k: int, *, layer: str, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4,
                     labels=None) -> Directions:
    """NMF directions ``(k, C)`` of signed attributions ``(N, C)`` or ``(N, C, H, W)`` (seed 001): rows of
    ``max(A, 0)`` and of ``max(-A, 0)`` stacked along the batch and factorised together.

    ``meta``: ``residual`` over the stacked matrix, ``positive_share`` (per direction: its coefficient mass
    in the positive rows over its total; None if unused), ``sign_split = "batch"``, plus what :func:`nmf`
    records.
    """
    a = as_float(attr, "attributions")
    rows = to_rows(a)  # (M, C)
    parts = torch.cat([rows.clamp_min(0), (-rows).clamp_min(0)])  # (2M, C): positive part, then negative part
    _check_k(k, parts, "nmf_attributions", limit_by_channels=False)
    coef, comps, n_iter, converged = _fit_nmf(parts, k, seed, max_iter, tol)
    mass = coef.double().sum(0)  # (K,)
    positive = coef[: rows.shape[0]].double().sum(0)  # (K,)
    share = [float(p / m) if m > 0 else None for p, m in zip(positive, mass)]  # None: an unused direction
    meta = {"on": "attributions", "sign_split": "batch", "residual": _squared_share(parts - coef @ comps, parts),
            "positive_share": share, "rows": parts.shape[0], "shape": list(a.shape[1:]),
            "n_iter": n_iter, "converged": converged, "seed": seed}
    return Directions(comps, layer, tuple(labels or ()), "nmf", meta)


def _sign_canonical(vectors: torch.Tensor) -> torch.Tensor:
    """Per row, +1 or -1 so that its largest-magnitude entry is positive (PCA/ICA signs are arbitrary)."""
    idx = vectors.abs().argmax(dim=1)  # (K,)
    biggest = vectors[torch.arange(len(vectors)), idx]  # (K,)
    return torch.where(biggest < 0, -1.0, 1.0).to(vectors.dtype)  # (K,)


def pca(x, k: int, *, layer: str, seed: int = 0, labels=None) -> Directions:
    """Principal directions ``(k, C)`` (orthonormal rows) of ``(N, C)`` or ``(N, C, H, W)`` activations.

    ``meta``: ``mean`` (C,), ``explained_variance_ratio`` (k,), ``explained_variance`` (k,), ``residual``.
    """
    from sklearn.decomposition import PCA

    acts = as_float(x)
    rows = to_rows(acts)  # (M, C)
    _check_k(k, rows, "pca")
    model = PCA(n_components=k, svd_solver="full", random_state=seed).fit(rows.double().numpy())
    comps = torch.from_numpy(model.components_)  # (K, C) float64
    comps = comps * _sign_canonical(comps)[:, None]
    mean = torch.from_numpy(model.mean_)  # (C,)
    centred = rows.double() - mean  # (M, C)
    outside = centred - (centred @ comps.T) @ comps  # (M, C)
    meta = {"mean": mean.tolist(), "explained_variance_ratio": model.explained_variance_ratio_.tolist(),
            "explained_variance": model.explained_variance_.tolist(), "residual": _squared_share(outside, centred),
            "rows": rows.shape[0], "shape": list(acts.shape[1:])}
    return Directions(comps.float(), layer, tuple(labels or ()), "pca", meta)


def ica(x, k: int, *, layer: str, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4,
        labels=None) -> Directions:
    """Independent directions ``(k, C)`` of ``(N, C)`` or ``(N, C, H, W)`` activations (FastICA, unit-variance
    sources after PCA whitening to ``k`` dimensions).

    Vectors are the mixing matrix's columns (``x ~ mean + sum_k s_k v_k``), ordered by norm (the spread each
    source causes), signs fixed so each vector's largest entry is positive. ``meta``: ``mean`` (C,),
    ``unmixing`` (K, C) with ``s = unmixing @ (x - mean)``, ``residual``, ``converged``.
    """
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    acts = as_float(x)
    rows = to_rows(acts).double()  # (M, C)
    _check_k(k, rows, "ica")
    model = FastICA(n_components=k, whiten="unit-variance", random_state=seed, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(rows.numpy())
    mixing = torch.from_numpy(model.mixing_).T  # (K, C)
    unmixing = torch.from_numpy(model.components_)  # (K, C)
    order = torch.argsort(mixing.norm(dim=1), descending=True)  # (K,)
    sign = _sign_canonical(mixing[order])[:, None]  # (K, 1)
    mixing, unmixing = mixing[order] * sign, unmixing[order] * sign
    mean = torch.from_numpy(model.mean_)  # (C,)
    centred = rows - mean  # (M, C)
    outside = centred - (centred @ unmixing.T) @ mixing  # (M, C)
    meta = {"mean": mean.tolist(), "unmixing": unmixing.tolist(), "residual": _squared_share(outside, centred),
            "rows": rows.shape[0], "shape": list(acts.shape[1:]), "n_iter": int(model.n_iter_),
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught), "seed": seed}
    return Directions(mixing.float(), layer, tuple(labels or ()), "ica", meta)


METHODS = {"nmf": nmf, "pca": pca, "ica": ica}
