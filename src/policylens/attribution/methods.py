"""``attribute``: one verb for saliency, gradient x activation, integrated gradients, SmoothGrad and VarGrad,
on the input or on any named layer of an agent.

- ``saliency``: the (signed) gradient of the target w.r.t. the layer (Simonyan et al.; take ``.abs()`` for
  Captum's default);
- ``grad_x_act``: that gradient times the activation;
- ``ig``: integrated gradients as in Understanding RL Vision, Appendix B: the straight path from the baseline
  (zero, or ``baseline`` broadcast to the activation) to the activation ``a``, evaluated at
  ``alpha = 1/steps, 2/steps, ..., 1`` (right Riemann sum); attribution ``(a - baseline) * mean gradient``.
  Its completeness delta, ``attr.sum(non-batch dims) - (F(a) - F(baseline))`` (N,), comes with
  ``return_delta=True`` (one more point per observation, at ``alpha = 0``);
- ``smoothgrad`` / ``vargrad``: the mean / variance (over ``samples``, without Bessel's correction) of the
  gradient at ``samples`` copies of the activation with Gaussian noise of std ``noise * (max - min)`` of that
  observation's activation (SmoothGrad's noise level). Reproducible: ``seed`` or ``generator``; each
  observation's noise depends only on it and its index, so chunking does not change it.
"""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np
import torch

from ..hooks import agent_device
from .layer import evaluate_rows
from .method_names import METHODS
from .targets import resolve_target


def _as_obs(obs, device) -> torch.Tensor:
    obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs, device=device)
    if obs.ndim not in (2, 4):
        raise ValueError(f"obs must be a batch of images (N, H, W, C) or vectors (N, D), got shape {tuple(obs.shape)}")
    if obs.dtype != torch.uint8 and not obs.is_floating_point():
        raise ValueError(f"obs must be uint8 (as the env gives it) or float of the same scale, got {obs.dtype}")
    return obs


class _Baseline:
    """The IG baseline, broadcast to the activation's shape ``(N, ...)`` once that is known."""

    def __init__(self, baseline, n: int, device):
        self.value = None if baseline is None else torch.as_tensor(baseline, dtype=torch.float32, device=device)
        self.n, self.device = n, device
        self.full: torch.Tensor | None = None

    def of(self, act_shape) -> torch.Tensor:
        if self.full is None:
            shape = (self.n, *act_shape)
            if self.value is None:
                self.full = torch.zeros(shape, device=self.device)
            else:
                try:
                    self.full = torch.broadcast_to(self.value, shape)  # (N, ...)
                except RuntimeError:
                    raise ValueError(f"baseline of shape {tuple(self.value.shape)} does not broadcast to the "
                                     f"activation's shape {shape}") from None
        return self.full

    def rows(self, acts: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """The baseline of each row's observation, broadcastable against ``acts`` (C, ...)."""
        full = self.of(acts.shape[1:])  # (N, ...)
        return full[:1] if full.stride(0) == 0 else full[n]  # shared by every observation: no copy


def _seed(seed: int, generator: Optional[torch.Generator]) -> int:
    if generator is not None:
        return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return int(seed)


class _Noise:
    """Gaussian noise for SmoothGrad/VarGrad: observation ``n``'s ``samples`` draws come from a generator
    seeded by ``(seed, n)``, scaled by ``noise * (max - min)`` of its activation."""

    def __init__(self, seed: int, samples: int, noise: float):
        self.seed, self.samples, self.noise = seed, samples, noise

    def __call__(self, acts, n, r):  # acts (C, ...) one observation's activation per row
        out = acts.clone()
        for obs in torch.unique(n).tolist():
            sel = n == obs
            a = acts[sel]
            std = self.noise * (a.max() - a.min())
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + obs)
            eps = torch.randn((self.samples, *acts.shape[1:]), generator=g).to(acts.device)  # (S, ...)
            out[sel] = a + std * eps[r[sel]]
        return out


def _check_args(method, steps, samples, noise, baseline, return_delta) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "ig" and (not isinstance(steps, numbers.Integral) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if method in ("smoothgrad", "vargrad"):
        if not isinstance(samples, numbers.Integral) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0 (a fraction of the activation's range), got {noise!r}")
    if method != "ig" and (baseline is not None or return_delta):
        raise ValueError(f"baseline and return_delta belong to method='ig', not {method!r}")


def attribute(agent, obs, *, target="value", layer: Optional[str] = None, method: str = "ig", steps: int = 10,
              baseline=None, state=None, first=None, samples: int = 16, noise: float = 0.1,
              chunk_size: Optional[int] = None, return_delta: bool = False, seed: int = 0,
              generator: Optional[torch.Generator] = None):
    """Attribute ``target`` to ``layer``'s activations (or to the input when ``layer`` is None).

    ``obs`` (N, H, W, C) uint8 or float, or (N, D) float vectors; ``state`` (N, hidden) and ``first`` (N,) for recurrent agents (the
    state the agent receives at these steps); ``chunk_size`` bounds the rows (observations x points) of one
    pass. Returns a float tensor shaped like the layer's activation ``(N, ...)`` (``(N, H, W, C)`` for the
    input), and with ``return_delta=True`` (IG only) also the completeness delta ``(N,)``.
    Raises ValueError for bad arguments, a non-finite target, activation, gradient or attribution;
    KeyError (listing the layers) for an unknown layer.
    """
    return attribute_many(agent, obs, [target], layer=layer, method=method, steps=steps, baseline=baseline,
                          state=state, first=first, samples=samples, noise=noise, chunk_size=chunk_size,
                          return_delta=return_delta, seed=seed, generator=generator)[0]


def attribute_many(agent, obs, targets, *, layer: Optional[str] = None, method: str = "ig", steps: int = 10,
                   baseline=None, state=None, first=None, samples: int = 16, noise: float = 0.1,
                   chunk_size: Optional[int] = None, return_delta: bool = False, seed: int = 0,
                   generator: Optional[torch.Generator] = None) -> list:
    """:func:`attribute` of several ``targets`` at once, one result per target (each what :func:`attribute`
    gives for it): every target is read from the same forward passes (one pass below the layer, one over the
    points above it) and only the backward passes are repeated. A target may be anything :func:`attribute`
    takes, or :func:`~policylens.attribution.targets.own_actions` (each observation's own action's logit)."""
    _check_args(method, steps, samples, noise, baseline, return_delta)
    if not len(targets):
        raise ValueError("attribute_many needs at least one target")
    tgts = tuple(resolve_target(t, agent) for t in targets)
    device = agent_device(agent)
    obs = _as_obs(obs, device)
    n_obs = obs.shape[0]
    common = dict(layer=layer, state=state, first=first, chunk_size=chunk_size)
    if method == "ig":
        base = _Baseline(baseline, n_obs, device)
        steps = int(steps)
        alphas = torch.arange(1, steps + 1, device=device, dtype=torch.float32) / steps  # (steps,)
        if return_delta:
            alphas = torch.cat([alphas, alphas.new_zeros(1)])  # one more point: F(baseline)

        def path(acts, n, r):  # acts (C, ...) -> points on the straight line from the baseline (C, ...)
            alpha = alphas[r].reshape(-1, *[1] * (acts.ndim - 1)).to(acts.dtype)  # (C, 1, ...)
            if baseline is None:
                return acts * alpha
            return torch.lerp(base.rows(acts, n).to(acts.dtype), acts, alpha)  # exact at both ends

        rows = evaluate_rows(agent, obs, tgts, path, len(alphas), describe=lambda r: f"alpha={float(alphas[r]):.3g}",
                             **common)  # grads (N, R, T, ...), values (N, R, T)
        out: list = []  # per target: attr, or (attr, delta)
        for j in range(len(tgts)):
            attr = (rows.acts - base.of(rows.acts.shape[1:])) * rows.grads[:, :steps, j].mean(1)  # (N, ...)
            _check_attr(attr, method, layer)
            if not return_delta:
                out.append(attr)
                continue
            values = rows.values[:, :, j]  # (N, R)
            out.append((attr, attr.flatten(1).sum(1) - (values[:, steps - 1] - values[:, steps])))  # delta (N,)
        return out
    if method in ("saliency", "grad_x_act"):
        rows = evaluate_rows(agent, obs, tgts, lambda acts, n, r: acts, 1, describe=lambda r: "at the activation",
                             **common)
        attrs = [rows.grads[:, 0, j] * (rows.acts if method == "grad_x_act" else 1) for j in range(len(tgts))]
    else:
        noisy = _Noise(_seed(seed, generator), int(samples), float(noise))
        rows = evaluate_rows(agent, obs, tgts, noisy, int(samples), describe=lambda r: f"noise sample {r}", **common)
        grads = rows.grads  # (N, S, T, ...)
        attrs = [grads[:, :, j].mean(1) if method == "smoothgrad" else grads[:, :, j].var(1, correction=0)
                 for j in range(len(tgts))]  # (N, ...) each
    for attr in attrs:
        _check_attr(attr, method, layer)
    return attrs


def _check_attr(attr: torch.Tensor, method: str, layer) -> None:
    bad = ~torch.isfinite(attr.flatten(1)).all(1)  # (N,)
    if bad.any():
        i = int(bad.nonzero()[0])
        kind = "nan" if torch.isnan(attr[i]).any() else "inf"
        where = "the input" if layer is None else f"layer {layer!r}"
        raise ValueError(f"{method} attribution to {where} is {kind} for observation {i} (check the baseline)")
