"""``Directions``: a named set of vectors in one layer's channel space, the currency shared by factors,
featvis, edit, sim and the explorer.

A layer's activations are ``(N, C)`` or ``(N, C, H, W)``; a direction is a ``(C,)`` vector in that channel
space. NMF, PCA, ICA, a probe or a hand-written one-hot all give the same object. Saved as
``NAME.safetensors`` (the vectors) + ``NAME.json`` (layer, labels, method, meta); loading never unpickles.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

# meta entries holding one item per direction (kept in step by ``select``)
PER_DIRECTION_META = ("unmixing", "explained_variance_ratio", "explained_variance", "positive_share", "channels",
                      "stability", "stability_restarts", "stability_bootstrap", "unstable", "positive_share_spread")


@dataclass(frozen=True)
class Directions:
    vectors: torch.Tensor  # (K, C) one row per direction, in the layer's channel space
    layer: str  # the layer these vectors live in (an agent layer name, e.g. "block2" or "hx")
    labels: tuple = ()  # one label per direction; default "0", "1", ...
    method: str = "manual"  # where they came from: nmf | pca | ica | probe | manual ...
    meta: dict = field(default_factory=dict)  # JSON-able extras (explained variance, residual, source)

    def __post_init__(self):
        v = torch.as_tensor(self.vectors, dtype=torch.float32)
        if v.ndim == 1:
            v = v.unsqueeze(0)
        if v.ndim != 2:
            raise ValueError(f"Directions.vectors must be (K, C); got shape {tuple(v.shape)}")
        object.__setattr__(self, "vectors", v.detach().cpu())
        labels = tuple(str(x) for x in self.labels) or tuple(str(k) for k in range(v.shape[0]))
        if len(labels) != v.shape[0]:
            raise ValueError(f"Directions has {v.shape[0]} vectors but {len(labels)} labels")
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def channels(self) -> int:
        return self.vectors.shape[1]

    def index(self, key) -> int:
        """Position of a direction given its index or its label."""
        if isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(self):
                raise IndexError(f"direction {key} out of range: layer {self.layer!r} has {len(self)} directions, "
                                 f"numbered 0 to {len(self) - 1}")
            return key
        if key in self.labels:
            return self.labels.index(key)
        raise KeyError(f"no direction {key!r}; labels: {', '.join(self.labels)}")

    def __getitem__(self, key) -> torch.Tensor:
        return self.vectors[self.index(key)]  # (C,)

    def select(self, keys) -> "Directions":
        """A new ``Directions`` with only ``keys`` (indices or labels), in that order; the per-direction
        entries of ``meta`` (``PER_DIRECTION_META``, e.g. ICA's unmixing rows) are selected alike."""
        idx = [self.index(k) for k in keys]
        meta = dict(self.meta)
        for key in PER_DIRECTION_META:
            if isinstance(meta.get(key), list) and len(meta[key]) == len(self):
                meta[key] = [meta[key][i] for i in idx]
        return Directions(self.vectors[idx], self.layer, tuple(self.labels[i] for i in idx), self.method, meta)

    @classmethod
    def one_hot(cls, layer: str, channels, num_channels: int) -> "Directions":
        """Unit vectors ``e_c`` for each channel ``c`` of a ``num_channels``-channel layer, labelled ``"channel c"``."""
        channels = [int(c) for c in channels]
        bad = [c for c in channels if not 0 <= c < num_channels]
        if not channels or bad:
            raise ValueError(f"channels {bad or channels} out of range: layer {layer!r} has {num_channels} channels")
        vectors = torch.zeros(len(channels), num_channels)  # (K, C)
        vectors[torch.arange(len(channels)), torch.tensor(channels)] = 1.0
        return cls(vectors, layer, tuple(f"channel {c}" for c in channels), "one-hot", {"channels": channels})

    def basis(self, tol: float = 1e-6) -> torch.Tensor:
        """An orthonormal basis of the directions' span, ``(r, C)`` with ``r <= K`` (r < K when they are
        linearly dependent). Raises ValueError when every direction is zero."""
        v = self.vectors.double()  # (K, C)
        _, s, vh = torch.linalg.svd(v, full_matrices=False)  # s (min(K, C),), vh (min(K, C), C)
        rank = int((s > tol * s.max().clamp_min(1e-300)).sum()) if s.numel() and s.max() > 0 else 0
        if rank == 0:
            raise ValueError(f"directions {', '.join(self.labels)} of layer {self.layer!r} are all zero: "
                             f"nothing to span")
        return vh[:rank].float()  # (r, C)

    def normalized(self) -> "Directions":
        """Unit-norm vectors (zero vectors stay zero)."""
        norms = self.vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (K, 1)
        return Directions(self.vectors / norms, self.layer, self.labels, self.method, dict(self.meta))

    def scores(self, acts: torch.Tensor) -> torch.Tensor:
        """Dot product of activations with each direction along the channel axis (dim 1):
        ``(N, C) -> (N, K)`` or ``(N, C, H, W) -> (N, K, H, W)``."""
        if acts.shape[1] != self.channels:
            raise ValueError(f"activations have {acts.shape[1]} channels on dim 1; "
                             f"directions of layer {self.layer!r} have {self.channels}")
        v = self.vectors.to(acts.device, acts.dtype)
        return torch.einsum("nc...,kc->nk...", acts, v)

    def save(self, path) -> Path:
        """Write ``path.safetensors`` + ``path.json`` (``path`` without a suffix); returns the JSON path."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": self.vectors.contiguous()}, str(path.with_suffix(".safetensors")))
        info = {"layer": self.layer, "labels": list(self.labels), "method": self.method, "meta": self.meta}
        path.with_suffix(".json").write_text(json.dumps(info, indent=1))
        return path.with_suffix(".json")

    @classmethod
    def load(cls, path) -> "Directions":
        """Read what :meth:`save` wrote (``path`` with or without a suffix)."""
        from safetensors.torch import load_file

        from ..agents.checkpoint import check_finite

        path = Path(path)
        path = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
        meta_file, tensor_file = path.with_suffix(".json"), path.with_suffix(".safetensors")
        for f in (meta_file, tensor_file):
            if not f.is_file():
                raise FileNotFoundError(f"directions file missing: {f}")
        try:
            info = json.loads(meta_file.read_text())
            if not isinstance(info, dict) or not isinstance(info.get("layer"), str):
                raise ValueError("expected a JSON object with a 'layer' string")
        except Exception as e:  # corrupt file: name it
            raise ValueError(f"cannot read directions file {meta_file}: {e}") from None
        try:
            vectors = load_file(str(tensor_file))["vectors"]
        except Exception as e:
            raise ValueError(f"cannot read directions file {tensor_file} (expected safetensors with a 'vectors' "
                             f"tensor): {e!r}") from None
        check_finite({"vectors": vectors}, tensor_file)
        try:
            return cls(vectors, info["layer"], tuple(info.get("labels", ())), info.get("method", "manual"),
                       info.get("meta", {}))
        except ValueError as e:
            raise ValueError(f"directions {path} are inconsistent ({meta_file} vs {tensor_file}): {e}") from None
