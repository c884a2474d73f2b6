"""rl-attention's washout: SmoothGrad and VarGrad maps of the attention layer against the number of noise samples.

The write-up: "Using SmoothGrad and VarGrad gave us less noisy, more specific areas, but we found that the more
samples we used, the more washed out the images became, until they hardly gave any information at all".
:func:`washout` measures it: for each number of samples ``n`` it attributes a target read at ``layer`` to the
input pixels, turns each observation's map into a distribution over pixels (the attribution summed over the
channels, its absolute value, normalised to sum 1) and scores how spread out it is:

- ``entropy``: the normalised entropy ``H(p) / log(pixels)``, 0 for one pixel, 1 for a uniform map (washed out);
- ``gini``: the Gini coefficient of the pixel masses, 1 for one pixel, 0 for a uniform map (sparse = high).

Targets (what the attention layer's gradient is taken of): ``"peak"``, each observation's most attended unit
``(head, y, x)`` of the clean observation (its activation, read through a hook); ``"entropy"``, the attention
maps' entropy summed over the heads (the quantity rl-attention penalises); or any target
:func:`~policylens.attribution.attribute` takes (``"value"``, an action). A map of zeros (VarGrad of one sample
is 0 everywhere) has no distribution: its scores are NaN, left out of the statistics and counted.

    >>> from policylens.attribution.washout import washout
    >>> curve = washout(agent, obs, method="vargrad", samples=(2, 4, 8, 16), noise=0.1, seed=0)
    >>> curve["entropy"]["mean"]          # one per sample count, averaged over the observations
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Sequence

import numpy as np
import torch

from ..hooks import agent_device, capture
from .methods import attribute
from .targets import PerObservation, resolve_target

SAMPLES = tuple(2 ** i for i in range(9))  # 1, 2, 4, ..., 256
LAYER_TARGETS = ("peak", "entropy")


def pixel_distribution(attr: torch.Tensor) -> torch.Tensor:
    """Input attribution (N, H, W, C) (or vectors (N, D)) -> (N, pixels): |attribution summed over channels|,
    normalised to sum 1 per observation (NaN rows where it is zero everywhere)."""
    mass = (attr.sum(-1) if attr.ndim == 4 else attr).abs().reshape(attr.shape[0], -1).double()  # (N, pixels)
    return mass / mass.sum(1, keepdim=True)


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """(N, pixels) distributions -> (N,) entropy over log(pixels), in [0, 1]."""
    return -(p * p.clamp_min(1e-300).log()).sum(1) / math.log(p.shape[1])


def gini(p: torch.Tensor) -> torch.Tensor:
    """(N, pixels) distributions -> (N,) Gini coefficient of the masses, in [0, 1 - 1/pixels]."""
    m = p.shape[1]
    s = p.sort(1).values  # (N, pixels) ascending
    rank = torch.arange(1, m + 1, dtype=s.dtype, device=s.device)
    return (2 * (rank * s).sum(1) / (m * s.sum(1))) - (m + 1) / m


class LayerTarget:
    """A target read at ``layer`` through a forward hook, for the observations ``obs`` (N, ...): ``kind``
    ``"peak"``, each observation's most active unit of the layer at its clean observation (``units`` (N,) flat
    indices); ``"entropy"``, the entropy of the layer's maps (softmax outputs such as ``attention``) summed over
    heads and positions. ``with LayerTarget(...) as target:`` gives a
    :class:`~policylens.attribution.targets.PerObservation` target; the hook is removed on exit."""

    def __init__(self, agent, obs: torch.Tensor, layer: str, kind: str):
        if kind not in LAYER_TARGETS:
            raise ValueError(f"unknown layer target {kind!r}; expected one of {', '.join(LAYER_TARGETS)}")
        self.agent, self.layer, self.kind = agent, layer, kind
        self.units: Any = None  # (N,) for "peak"
        if kind == "peak":
            with torch.no_grad(), capture(agent, layer) as cache:
                agent(obs)
            self.units = cache[layer].reshape(obs.shape[0], -1).argmax(1)  # (N,)
        self.name = f"{layer} peak unit" if kind == "peak" else f"{layer} entropy"
        self._capture: Any = None
        self._cache: dict = {}

    def __enter__(self) -> PerObservation:
        self._capture = capture(self.agent, self.layer)
        self._cache = self._capture.__enter__()
        return PerObservation(self._read, self.name)

    def __exit__(self, *exc):
        done, self._capture = self._capture, None
        return done.__exit__(*exc)

    def _read(self, out, n) -> torch.Tensor:
        acts = self._cache[self.layer].reshape(n.shape[0], -1)  # (B, units)
        if self.kind == "peak":
            return acts[torch.arange(n.shape[0], device=acts.device), self.units.to(acts.device)[n]]  # (B,)
        p = acts.clamp_min(1e-12)
        return -(p * p.log()).sum(1)  # (B,)


def _stats(x: np.ndarray) -> dict:
    """Mean, std and quartiles over observations (axis 0) of (N, S), NaN rows of a column left out."""
    ok = ~np.isnan(x)
    col = lambda f: [float(f(x[ok[:, j], j])) if ok[:, j].any() else None for j in range(x.shape[1])]  # noqa: E731
    return {"mean": col(np.mean), "std": col(np.std), "q25": col(lambda v: np.quantile(v, 0.25)),
            "median": col(np.median), "q75": col(lambda v: np.quantile(v, 0.75)),
            "observations": [int(c) for c in ok.sum(0)]}


def washout(agent, obs, *, layer: str = "attention", target="peak", method: str = "smoothgrad",
            samples: Sequence[int] = SAMPLES, noise: float = 0.1, seed: int = 0, chunk_size=None) -> dict:
    """Entropy and Gini sparsity of ``method``'s input maps of ``target`` (at ``layer`` for ``"peak"`` /
    ``"entropy"``) for each number of ``samples``, over the observations ``obs`` (N, H, W, C). ``method``:
    ``smoothgrad`` or ``vargrad`` (or ``saliency``, the plain gradient: one entry, ``samples`` ignored).
    Returns ``{"samples", "entropy": stats, "gini": stats, "per_observation": {"entropy", "gini"}, "target",
    "layer", "method", "noise", "seed", "pixels"}``, each stats ``{"mean", "std", "q25", "median", "q75",
    "observations"}`` per sample count (see the module doc)."""
    if method not in ("smoothgrad", "vargrad", "saliency"):
        raise ValueError(f"washout method must be smoothgrad, vargrad or saliency, got {method!r}")
    counts = [1] if method == "saliency" else [int(n) for n in samples]
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"samples must be integers >= 1, got {list(samples)!r}")
    obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs).to(agent_device(agent))
    if obs.ndim != 4:
        raise ValueError(f"washout takes image observations (N, H, W, C), got {tuple(obs.shape)}")
    entropy, sparsity = np.full((len(obs), len(counts)), np.nan), np.full((len(obs), len(counts)), np.nan)
    reader = LayerTarget(agent, obs, layer, target) if target in LAYER_TARGETS else None
    with reader if reader is not None else nullcontext(resolve_target(target, agent)) as tgt:
        for j, n in enumerate(counts):
            options: dict = {} if method == "saliency" else dict(samples=n, noise=noise, seed=seed)
            attr = attribute(agent, obs, target=tgt, method=method, chunk_size=chunk_size, **options)  # (N, H, W, C)
            p = pixel_distribution(attr.detach())  # (N, pixels)
            entropy[:, j], sparsity[:, j] = normalised_entropy(p).cpu().numpy(), gini(p).cpu().numpy()
    return {"layer": layer if reader is not None else None, "target": tgt.name, "method": method,
            "samples": counts, "noise": noise if method != "saliency" else None, "seed": seed,
            "pixels": int(np.prod(obs.shape[1:3])), "entropy": _stats(entropy), "gini": _stats(sparsity),
            "per_observation": {"entropy": entropy.tolist(), "gini": sparsity.tolist()},
            "units": None if reader is None or reader.units is None else reader.units.tolist()}
