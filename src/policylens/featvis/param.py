"""Image parameterisations for feature visualisation: the image as a function of the tensor being optimised.

- ``pixel``: a sigmoid of per-pixel logits.
- ``fft`` (decorrelated, as Lucid's): the logits are the inverse FFT of a spectrum whose frequencies are scaled
  by 1 / frequency (natural images' power law, so that every frequency is about equally easy to change), times
  ``amplitude`` (a unit of the lowest frequency moves the logits by ``amplitude``), mixed through a channel
  basis, then squashed to [0, 1] by a sigmoid. The channel basis is the symmetric square root of the channels'
  covariance over ``reference_obs``, scaled to unit largest column norm (the identity without them): for RGB
  this is Lucid's colour decorrelation; for a grey frame stack (Atari's 4 frames) it decorrelates the frames
  of the stack, which are nearly copies of one another, so a change common to the stack is as easy to make as
  a change of one frame.

Shapes: images are channels-first ``(B, C, H, W)`` in [0, 1]; ``reference_obs`` is ``(N, H, W, C)`` uint8.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PARAMS = ("fft", "pixel")


def channel_basis(reference_obs=None, channels: int = 3) -> torch.Tensor:
    """(C, C) channel mixing for the fft parameterisation: the symmetric square root of the channel covariance
    of ``reference_obs`` (N, H, W, C) uint8, scaled to unit largest column norm; identity when None."""
    if reference_obs is None:
        return torch.eye(channels)
    ref = torch.as_tensor(np.asarray(reference_obs), dtype=torch.float64) / 255  # (N, H, W, C)
    if ref.ndim != 4 or ref.shape[-1] != channels or len(ref) < 1:
        raise ValueError(f"reference_obs must be (N, H, W, {channels}) observations, got shape {tuple(ref.shape)}")
    pixels = ref.reshape(-1, channels)  # (P, C)
    cov = torch.cov(pixels.T).reshape(channels, channels) + 1e-6 * torch.eye(channels, dtype=torch.float64)
    vals, vecs = torch.linalg.eigh(cov)
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T  # (C, C)
    return (root / root.norm(dim=0).max()).float()


def colour_basis(reference_obs=None) -> torch.Tensor:
    """(3, 3) :func:`channel_basis` of RGB observations."""
    return channel_basis(reference_obs, 3)


def frequency_scale(size: tuple) -> torch.Tensor:
    """(H, W//2+1) ``f_min / f`` of the ``rfft2`` bins (f in cycles per pixel, the DC bin taken as f_min)."""
    h, w = size
    fy = torch.fft.fftfreq(h)[:, None]  # (H, 1)
    fx = torch.fft.rfftfreq(w)[None, :]  # (1, W//2+1)
    freq = (fy.square() + fx.square()).sqrt().clamp_min(1.0 / max(h, w))
    return freq.min() / freq


class ImageParam:
    """The image as a function of optimisable tensors: ``image()`` -> (B, C, H, W) in [0, 1]."""

    def __init__(self, kind: str, batch: int, size: tuple, channels: int, gens: list, basis: torch.Tensor,
                 device, amplitude: float = 1.0):
        if kind not in PARAMS:
            raise ValueError(f"param must be one of {PARAMS}, got {kind!r}")
        if len(gens) != batch:
            raise ValueError(f"one generator per image: {len(gens)} for {batch}")
        self.kind, self.size, self.basis = kind, tuple(size), basis.to(device)
        h, w = size
        if kind == "pixel":
            init = torch.stack([torch.randn(channels, h, w, generator=g) * 0.1 for g in gens])  # (B, C, H, W)
        else:
            # ortho norm: a unit of the lowest frequency moves every logit by ``amplitude``
            self.freq_scale = (frequency_scale(size) * amplitude * math.sqrt(h * w)).to(device)  # (H, W//2+1)
            init = torch.stack([torch.randn(channels, h, w // 2 + 1, 2, generator=g) * 0.01 for g in gens])
        self.tensor = init.to(device).requires_grad_(True)  # (B, C, H, W) or (B, C, H, W//2+1, 2)

    def logits(self) -> torch.Tensor:
        if self.kind == "pixel":
            return self.tensor  # (B, C, H, W)
        spectrum = torch.view_as_complex(self.tensor) * self.freq_scale  # (B, C, H, W//2+1)
        decorrelated = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")  # (B, C, H, W)
        return torch.einsum("bchw,dc->bdhw", decorrelated, self.basis)  # (B, C, H, W)

    def image(self) -> torch.Tensor:
        return torch.sigmoid(self.logits())  # (B, C, H, W)
