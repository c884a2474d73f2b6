"""Optimisation-based feature visualisation: gradient ascent on an input image to raise a direction's score.

The objective is the direction's score (the layer's activations dotted with it along channels), averaged over
the layer's positions or taken at one ``position=(y, x)``. As in Understanding RL Vision's appendix:

- transformation robustness: before every step the image is randomly shifted by up to ``jitter`` pixels
  (wrapping around) and, if asked, scaled by a factor in ``[1 - scale, 1 + scale]`` and rotated by up to
  ``rotate`` degrees, so only features robust to these survive;
- a decorrelated parameterisation (``param="fft"``): the image is the inverse FFT of a spectrum whose
  frequencies are scaled by 1 / frequency (natural images' power law, so every frequency is equally easy to
  change), mixed through a colour basis (the square root of the colour covariance of ``reference_obs``, or
  the identity), then squashed to [0, 1] by a sigmoid. ``param="pixel"``: a sigmoid of per-pixel logits;
- the extremal-colour penalty: the paper saw clouds of the 8 extremal colours (every channel at 0 or 1);
  ``colour_penalty`` times the mean over pixels of ``relu(margin - d)^2 / margin^2``, with ``d`` the distance
  of the pixel's colour to the nearest extremal colour, pushes pixels away from them. (The paper itself
  penalised the first layer's activations instead; this acts on the pixels, which is what it aimed at.)

The agent sees the image as a float observation in [0, 255] of its own shape (NHWC). Gradients are taken
with ``torch.autograd.grad`` with respect to the image parameters only: the agent is not modified. Each
direction of a batch gets its own random generator, seeded from ``seed`` and its index: the result is
deterministic and does not depend on which other directions are optimised alongside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..hooks import agent_device
from .activations import layer_activations

PARAMS = ("fft", "pixel")


@dataclass
class Optimized:
    images: np.ndarray  # (K, H, W, 3) uint8 the optimised images
    objective: np.ndarray  # (K,) the objective of each final (untransformed, quantised) image
    history: np.ndarray  # (steps, K) the objective at each step (on the transformed image)


def direction_objective(agent, layer: str, obs: torch.Tensor, direction, position=None, state=None) -> torch.Tensor:
    """The direction's score for each observation: ``(B,)``, differentiable.

    ``obs`` (B, H, W, C) (float in [0, 255] or uint8); ``direction`` (C',) or one per observation (B, C');
    the score is averaged over the layer's positions, or taken at ``position=(y, x)`` of a spatial layer.
    """
    acts = layer_activations(agent, layer, obs, state)  # (B, C') or (B, C', h, w)
    d = torch.as_tensor(direction, dtype=acts.dtype, device=acts.device)
    d = d.expand(acts.shape[0], -1) if d.ndim == 1 else d  # (B, C')
    if d.shape != acts.shape[:2]:
        raise ValueError(f"direction has shape {tuple(d.shape)}; layer {layer!r} has {acts.shape[1]} channels "
                         f"(activations {tuple(acts.shape)})")
    score = torch.einsum("bc...,bc->b...", acts, d)  # (B,) or (B, h, w)
    if position is not None:
        if score.ndim != 3:
            raise ValueError(f"position={position} needs a spatial layer; {layer!r} gives {tuple(acts.shape)}")
        y, x = position
        if not (0 <= y < score.shape[1] and 0 <= x < score.shape[2]):
            raise ValueError(f"position {position} outside layer {layer!r}'s grid {tuple(score.shape[1:])}")
        return score[:, y, x]  # (B,)
    return score.flatten(1).mean(1) if score.ndim > 1 else score  # (B,)


def extremal_distance(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, H, W): Euclidean distance of each pixel's colour to the nearest of the 8
    extremal colours (black, white, red, green, blue, yellow, cyan, magenta)."""
    nearest = torch.minimum(rgb, 1 - rgb)  # (B, 3, H, W) distance to 0 or 1 per channel
    return (nearest.square().sum(1) + 1e-12).sqrt()


def extremal_penalty(rgb: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """(B,) mean over pixels of ``relu(margin - d)^2 / margin^2``, d = :func:`extremal_distance`."""
    return (F.relu(margin - extremal_distance(rgb)).square() / margin ** 2).flatten(1).mean(1)


def extremal_share(images, margin: float = 0.1) -> float:
    """Share of pixels of uint8 images (..., H, W, 3) within ``margin`` (in [0, 1] units) of an extremal colour."""
    rgb = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(-1, *np.shape(images)[-3:]) / 255
    return float((extremal_distance(rgb.permute(0, 3, 1, 2)) < margin).float().mean())


def colour_basis(reference_obs=None) -> torch.Tensor:
    """(3, 3) colour mixing for the fft parameterisation: the symmetric square root of the colour covariance
    of ``reference_obs`` (N, H, W, 3) uint8, scaled to unit largest column norm; identity when None."""
    if reference_obs is None:
        return torch.eye(3)
    pixels = torch.as_tensor(np.asarray(reference_obs), dtype=torch.float64).reshape(-1, 3) / 255  # (P, 3)
    cov = torch.cov(pixels.T) + 1e-6 * torch.eye(3, dtype=torch.float64)  # (3, 3)
    vals, vecs = torch.linalg.eigh(cov)
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T  # (3, 3)
    return (root / root.norm(dim=0).max()).float()


class ImageParam:
    """The image as a function of optimisable tensors: ``rgb()`` -> (B, 3, H, W) in [0, 1]."""

    def __init__(self, kind: str, batch: int, size: tuple, gens: list, colour: torch.Tensor, device):
        if kind not in PARAMS:
            raise ValueError(f"param must be one of {PARAMS}, got {kind!r}")
        self.kind, self.size, self.colour = kind, size, colour.to(device)
        h, w = size
        if kind == "pixel":
            init = torch.stack([torch.randn(3, h, w, generator=g) * 0.1 for g in gens])  # (B, 3, H, W)
        else:
            fy = torch.fft.fftfreq(h)[:, None]  # (H, 1) cycles per pixel
            fx = torch.fft.rfftfreq(w)[None, :]  # (1, W//2+1)
            freq = (fy.square() + fx.square()).sqrt().clamp_min(1.0 / max(h, w))  # (H, W//2+1)
            # 1/f, normalised so a unit of the lowest frequency moves the image by a unit, as a pixel logit does
            self.freq_scale = (freq.min() / freq * math.sqrt(h * w)).to(device)  # (H, W//2+1)
            init = torch.stack([torch.randn(3, h, w // 2 + 1, 2, generator=g) * 0.01 for g in gens])
        self.tensor = init.to(device).requires_grad_(True)  # (B, 3, H, W) or (B, 3, H, W//2+1, 2)

    def rgb(self) -> torch.Tensor:
        if self.kind == "pixel":
            return torch.sigmoid(self.tensor)  # (B, 3, H, W)
        spectrum = torch.view_as_complex(self.tensor) * self.freq_scale  # (B, 3, H, W//2+1)
        decorrelated = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")  # (B, 3, H, W) energy-preserving
        mixed = torch.einsum("bchw,dc->bdhw", decorrelated, self.colour)  # (B, 3, H, W)
        return torch.sigmoid(mixed)


class Adam:
    """Adam on one tensor (torch.optim's would import torch._dynamo: seconds of start-up for a few steps)."""

    def __init__(self, tensor: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.tensor, self.lr, self.betas, self.eps, self.t = tensor, lr, betas, eps, 0
        self.m, self.v = torch.zeros_like(tensor), torch.zeros_like(tensor)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v / (1 - b2 ** self.t)).sqrt_().add_(self.eps)
        self.tensor.addcdiv_(self.m, denom, value=-self.lr / (1 - b1 ** self.t))


def random_transform(rgb: torch.Tensor, gens: list, jitter: int, scale, rotate) -> torch.Tensor:
    """Per image: optional scale and rotation (about the centre), then a wrap-around shift of <= ``jitter``."""
    b = rgb.shape[0]
    if scale or rotate:
        factors = torch.stack([1 + (torch.rand((), generator=g) * 2 - 1) * (scale or 0) for g in gens])  # (B,)
        angles = torch.stack([(torch.rand((), generator=g) * 2 - 1) * math.radians(rotate or 0) for g in gens])
        cos, sin = angles.cos() / factors, angles.sin() / factors  # (B,)
        zero = torch.zeros(b)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(rgb), list(rgb.shape), align_corners=False)  # (B, H, W, 2)
        rgb = F.grid_sample(rgb, grid, padding_mode="reflection", align_corners=False)  # (B, 3, H, W)
    if jitter:
        shifts = [torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist() for g in gens]
        rgb = torch.stack([torch.roll(rgb[i], s, dims=(1, 2)) for i, s in enumerate(shifts)])  # (B, 3, H, W)
    return rgb


def _obs_window(rgb: torch.Tensor, obs_hw: tuple) -> torch.Tensor:
    """Centre crop of the canvas (B, 3, Hc, Wc) to the agent's (H, W), as an NHWC float obs in [0, 255]."""
    top, left = (rgb.shape[2] - obs_hw[0]) // 2, (rgb.shape[3] - obs_hw[1]) // 2
    window = rgb[:, :, top:top + obs_hw[0], left:left + obs_hw[1]]  # (B, 3, H, W)
    return window.permute(0, 2, 3, 1) * 255  # (B, H, W, 3)


def optimize_batch(agent, layer: str, directions, *, steps: int = 256, lr: float = 0.05, size=None,
                   jitter: int = 4, scale: "float | None" = None, rotate: "float | None" = None,
                   colour_penalty: float = 0.0, penalty_margin: float = 0.25, seed: int = 0, param: str = "fft",
                   position=None, reference_obs=None, progress: bool = False) -> Optimized:
    """Optimise one image per direction (``directions`` (K, C')) together; see :func:`optimize`."""
    obs_shape = tuple(getattr(agent, "obs_shape", None) or ())
    if len(obs_shape) != 3 and size is None:
        raise ValueError(f"{type(agent).__name__} has no obs_shape; pass size=(H, W)")
    obs_hw = tuple(obs_shape[:2]) if len(obs_shape) == 3 else tuple(size)
    if len(obs_shape) == 3 and obs_shape[2] != 3:
        raise ValueError(f"optimize makes RGB images; the agent's observations are {obs_shape}, expected (H, W, 3)")
    canvas = tuple(size) if size is not None else obs_hw
    if len(canvas) != 2 or canvas[0] < obs_hw[0] or canvas[1] < obs_hw[1]:
        raise ValueError(f"size {canvas} must be (H, W) at least the observation's {obs_hw}")
    if steps < 0 or jitter < 0:
        raise ValueError(f"steps and jitter must be >= 0, got steps={steps}, jitter={jitter}")
    device = agent_device(agent)
    d = torch.as_tensor(directions).detach().float().to(device)  # (K, C')
    if d.ndim != 2:
        raise ValueError(f"directions must be (K, C'), got shape {tuple(d.shape)}")
    gens = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in range(len(d))]
    image = ImageParam(param, len(d), canvas, gens, colour_basis(reference_obs), device)
    opt = Adam(image.tensor, lr)
    history = np.zeros((steps, len(d)), np.float32)
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"optimize {layer}", unit="step")
    for step in bar:
        rgb = image.rgb()  # (K, 3, Hc, Wc)
        obs = _obs_window(random_transform(rgb, gens, jitter, scale, rotate), obs_hw)  # (K, H, W, 3)
        objective = direction_objective(agent, layer, obs, d, position)  # (K,)
        loss = -objective.sum()
        if colour_penalty:
            loss = loss + colour_penalty * extremal_penalty(rgb, penalty_margin).sum()
        (grad,) = torch.autograd.grad(loss, [image.tensor])
        opt.step(grad)
        history[step] = objective.detach().cpu().numpy()
    with torch.no_grad():
        images = (image.rgb() * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # (K, Hc, Wc, 3)
        final = direction_objective(agent, layer, _obs_window(images.permute(0, 3, 1, 2).float() / 255, obs_hw),
                                    d, position)  # (K,)
    return Optimized(images.cpu().numpy(), final.cpu().numpy(), history)


def optimize(agent, layer: str, direction, *, steps: int = 256, lr: float = 0.05, size=None, jitter: int = 4,
             scale: "float | None" = None, rotate: "float | None" = None, colour_penalty: float = 0.0,
             seed: int = 0, param: str = "fft", position=None, reference_obs=None) -> np.ndarray:
    """An image maximising ``direction``'s score in ``layer``: uint8 ``(H, W, 3)`` (``(K, H, W, 3)`` for
    directions ``(K, C')`` or a :class:`~policylens.factors.Directions` of ``layer``).

    ``direction``: a (C',) vector or a channel index (one-hot). ``size`` (H, W): the canvas, at least the
    observation; the agent sees its centre (default: the observation's size). ``jitter`` pixels of random
    shift, ``scale`` (relative, e.g. 0.1) and ``rotate`` (degrees) of random zoom and rotation per step;
    ``colour_penalty``: weight of the extremal-colour penalty; ``param``: "fft" | "pixel"; ``position=(y, x)``:
    maximise at that position of the layer instead of the mean; ``reference_obs``: observations whose colour
    covariance decorrelates the fft parameterisation. Deterministic given ``seed``.
    """
    d = direction_vectors(agent, layer, direction)
    single = d.ndim == 1
    out = optimize_batch(agent, layer, d.unsqueeze(0) if single else d, steps=steps, lr=lr, size=size,
                         jitter=jitter, scale=scale, rotate=rotate, colour_penalty=colour_penalty, seed=seed,
                         param=param, position=position, reference_obs=reference_obs)
    return out.images[0] if single else out.images


def direction_vectors(agent, layer: str, direction) -> torch.Tensor:
    """``direction`` as float vectors on the CPU: a channel index -> one-hot (C',); a Directions of ``layer`` ->
    (K, C'); a vector or matrix as it is."""
    from ..factors import Directions

    if isinstance(direction, Directions):
        if direction.layer != layer:
            raise ValueError(f"directions live in layer {direction.layer!r}, not {layer!r}")
        return direction.vectors
    if isinstance(direction, (int, np.integer)):
        shape = getattr(agent, "obs_shape", None)
        if shape is None:
            raise ValueError("a channel index needs an agent with obs_shape; pass the one-hot vector instead")
        channels = layer_activations(agent, layer, torch.zeros((1, *shape), device=agent_device(agent))).shape[1]
        if not 0 <= direction < channels:
            raise ValueError(f"channel {direction} out of range: layer {layer!r} has {channels} channels")
        return F.one_hot(torch.tensor(int(direction)), channels).float()
    return torch.as_tensor(direction).detach().float().cpu()
