"""Activations expressed in a set of directions, and the part of them the directions miss.

For activations ``x`` of shape ``(N, C)`` or ``(N, C, H, W)`` and directions ``V`` ``(K, C)``:

- :func:`coefficients` -> ``(N, K[, H, W])``, how much of each direction ``x`` holds at each position:
  non-negative least squares for NMF directions (for signed ``x``, e.g. attributions, the positive and the
  negative part are each expressed and the negative one subtracted: "good news" minus "bad news");
  projection onto orthonormal PCA directions after removing ``meta["mean"]``; the unmixing matrix
  ``meta["unmixing"]`` for ICA; least squares onto the span for any other directions.
- :func:`reconstruct` -> ``(N, C[, H, W])``: ``mean + coefficients @ V`` (mean 0 unless the directions
  record one).
- :func:`residual` -> ``x - reconstruct(coefficients(x))``: the "residual feature" of the explorer, so
  ``reconstruct(coefficients(x)) + residual(x) == x`` always.
"""
from __future__ import annotations

import torch

from .decompose import as_float, from_rows, to_rows
from .directions import Directions
from .stable import one_thread


def channel_matmul(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``matrix`` ``(D, C)`` to the channel axis (dim 1) of ``x`` ``(N, C, ...)`` -> ``(N, D, ...)``."""
    return torch.einsum("nc...,dc->nd...", x, matrix.to(x.device, x.dtype))


def offset(directions: Directions) -> "torch.Tensor | None":
    """The mean the directions are taken around (PCA / ICA record one), ``(C,)``, else None."""
    mean = directions.meta.get("mean")
    return None if mean is None else torch.as_tensor(mean, dtype=torch.float32)


def _check_channels(x: torch.Tensor, directions: Directions) -> None:
    if x.shape[1] != directions.channels:
        raise ValueError(f"activations have {x.shape[1]} channels on dim 1; directions of layer "
                         f"{directions.layer!r} have {directions.channels}")


def nnls_rows(rows: torch.Tensor, vectors: torch.Tensor, tol: float = 1e-6, max_iter: int = 2000) -> torch.Tensor:
    """Non-negative least squares for every row at once: ``argmin_{c >= 0} |row - c @ vectors|``,
    ``(M, C), (K, C) -> (M, K)`` (scikit-learn's NMF solver with the components held fixed)."""
    from sklearn.decomposition import non_negative_factorization

    if (vectors < 0).any():
        raise ValueError("NMF coefficients need non-negative directions; these have negative entries")
    if (rows < 0).any():
        raise ValueError("non-negative least squares needs non-negative rows")
    with one_thread():  # the same sums at any thread count
        coef, _, _ = non_negative_factorization(rows.double().numpy(), H=vectors.double().numpy(),
                                                n_components=vectors.shape[0], update_H=False, tol=tol,
                                                max_iter=max_iter)
    return torch.from_numpy(coef).float()  # (M, K)


def _coefficient_rows(rows: torch.Tensor, directions: Directions, split_sign: bool):
    """``(M, C)`` centred rows -> ``(M, K)`` coefficients (a pair for ``split_sign``)."""
    v = directions.vectors  # (K, C)
    if directions.method == "nmf":
        positive = nnls_rows(rows.clamp_min(0), v)  # (M, K)
        if not (rows < 0).any():
            negative = torch.zeros_like(positive)
        else:
            negative = nnls_rows((-rows).clamp_min(0), v)  # (M, K)
        return (positive, negative) if split_sign else positive - negative
    if split_sign:
        raise ValueError(f"split_sign applies to NMF directions; these are {directions.method!r}")
    if "unmixing" in directions.meta:
        unmixing = torch.as_tensor(directions.meta["unmixing"], dtype=torch.float64)  # (K, C)
        return (rows.double() @ unmixing.T).float()
    if directions.method == "pca":
        return (rows.double() @ v.double().T).float()  # orthonormal rows: projection
    return (rows.double() @ torch.linalg.pinv(v.double())).float()  # least squares onto the span, (M, K)


def coefficients(x, directions: Directions, *, split_sign: bool = False):
    """``x`` ``(N, C[, H, W])`` in the directions: ``(N, K[, H, W])`` (see the module doc for the method per
    kind of directions). ``split_sign=True`` (NMF only) returns ``(positive, negative)``, both non-negative,
    the coefficients of ``max(x, 0)`` and of ``max(-x, 0)``."""
    x = as_float(x)
    _check_channels(x, directions)
    rows = to_rows(x)  # (M, C)
    mean = offset(directions)
    if mean is not None:
        rows = rows - mean
    out = _coefficient_rows(rows, directions, split_sign)
    if split_sign:
        return tuple(from_rows(part, x.shape) for part in out)
    return from_rows(out, x.shape)  # (N, K, *S)


def reconstruct(coefs, directions: Directions) -> torch.Tensor:
    """``(N, K[, H, W])`` coefficients -> ``(N, C[, H, W])`` activations: ``mean + sum_k coef_k v_k``."""
    coefs = as_float(coefs, "coefficients")
    if coefs.shape[1] != len(directions):
        raise ValueError(f"coefficients have {coefs.shape[1]} entries on dim 1; there are {len(directions)} directions")
    out = channel_matmul(coefs, directions.vectors.T)  # (N, C, *S)
    mean = offset(directions)
    if mean is not None:
        out = out + mean.reshape(1, -1, *([1] * (out.ndim - 2)))
    return out


def residual(x, directions: Directions) -> torch.Tensor:
    """The part of ``x`` ``(N, C[, H, W])`` the directions do not explain, same shape as ``x``."""
    x = as_float(x)
    return x - reconstruct(coefficients(x, directions), directions)
