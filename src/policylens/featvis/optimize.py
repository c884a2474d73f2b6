"""Optimisation-based feature visualisation: gradient ascent on an input image to raise a direction's score.

The objective is the direction's score (the layer's activations dotted with it along channels), averaged over
the layer's positions or taken at one ``position=(y, x)``. As in Understanding RL Vision's appendix:

- transformation robustness: before every step the image is randomly shifted by up to ``jitter`` pixels
  (wrapping around) and, if asked, scaled by a factor in ``[1 - scale, 1 + scale]`` and rotated by up to
  ``rotate`` degrees, so only features robust to these survive;
- a decorrelated parameterisation (``param="fft"``, :mod:`.param`): 1/f-scaled Fourier coefficients mixed
  through the square root of the channels' covariance over ``reference_obs`` (colours for RGB, the frames of a
  grey stack), through a sigmoid. ``param="pixel"``: a sigmoid of per-pixel logits;
- redirected ReLU gradients (Lucid's): for the first ``redirect`` steps, and on any step where an image's
  gradient vanishes, every ``nn.ReLU`` of the agent also passes the gradient through inactive units where it
  would raise them, so a direction whose units start dead (a post-ReLU layer at one position) gets going;
- the extremal-colour penalty: the paper saw clouds of the 8 extremal colours (every channel at 0 or 1);
  ``colour_penalty`` times the mean over pixels of ``relu(margin - d)^2 / margin^2``, with ``d`` the distance
  of the pixel's colour to the nearest extremal colour (a corner of the channel cube, for any channel count),
  pushes pixels away from them. (The paper itself penalised the first layer's activations instead; this acts
  on the pixels, which is what it aimed at.)

The defaults (``amplitude`` 0.25 as Lucid's fft image, ``jitter`` 2, ``redirect`` 32, 256 Adam steps at lr
0.05) are those ``python -m benchmarks.featvis_vs_examples`` measures against the best dataset examples; with
Lucid's unit amplitude and no redirection most pixels end at an extremal colour and dead directions stay at 0.

The agent sees the image as a float observation in [0, 255] of its own shape (NHWC, any channel count: RGB,
a grey frame stack). Gradients are taken with ``torch.autograd.grad`` with respect to the image parameters
only: the agent is not modified and every hook is removed. Each direction of a batch gets its own random
generator, seeded from ``seed`` and its index: the result is deterministic and does not depend on which other
directions are optimised alongside.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import agent_device
from .activations import layer_activations
from .param import PARAMS, ImageParam, channel_basis, colour_basis  # noqa: F401

STEPS, LR, JITTER, AMPLITUDE, REDIRECT = 256, 0.05, 2, 0.25, 32  # the defaults, measured by benchmarks.featvis_vs_examples


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
    """(B, C, H, W) in [0, 1] -> (B, H, W): Euclidean distance of each pixel's colour to the nearest extremal
    colour, a corner of the channel cube (for RGB the 8: black, white, red, green, blue, yellow, cyan, magenta)."""
    nearest = torch.minimum(rgb, 1 - rgb)  # (B, C, H, W) distance to 0 or 1 per channel
    return (nearest.square().sum(1) + 1e-12).sqrt()


def extremal_penalty(rgb: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """(B,) mean over pixels of ``relu(margin - d)^2 / margin^2``, d = :func:`extremal_distance`."""
    return (F.relu(margin - extremal_distance(rgb)).square() / margin ** 2).flatten(1).mean(1)


def extremal_share(images, margin: float = 0.1) -> float:
    """Share of pixels of uint8 images (..., H, W, C) within ``margin`` (in [0, 1] units) of an extremal colour."""
    rgb = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(-1, *np.shape(images)[-3:]) / 255
    return float((extremal_distance(rgb.permute(0, 3, 1, 2)) < margin).float().mean())


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


def draw_transforms(gens: list, jitter: int, scale, rotate) -> list:
    """Per image, from its own generator: ``(zoom factor, angle in radians, (dy, dx) shift)``."""
    out = []
    for g in gens:
        factor = 1 + float(torch.rand((), generator=g) * 2 - 1) * (scale or 0)
        angle = float(torch.rand((), generator=g) * 2 - 1) * math.radians(rotate or 0)
        shift = torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist() if jitter else [0, 0]
        out.append((factor, angle, shift))
    return out


def apply_transforms(image: torch.Tensor, transforms: list) -> torch.Tensor:
    """Per image (B, C, H, W): zoom and rotation about the centre (where asked), then a wrap-around shift."""
    factors = torch.tensor([t[0] for t in transforms])  # (B,)
    angles = torch.tensor([t[1] for t in transforms])  # (B,)
    if (factors != 1).any() or (angles != 0).any():
        cos, sin, zero = angles.cos() / factors, angles.sin() / factors, torch.zeros(len(transforms))
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(image), list(image.shape), align_corners=False)  # (B, H, W, 2)
        image = F.grid_sample(image, grid, padding_mode="reflection", align_corners=False)  # (B, C, H, W)
    if any(t[2] != [0, 0] for t in transforms):
        image = torch.stack([torch.roll(image[i], t[2], dims=(1, 2)) for i, t in enumerate(transforms)])
    return image


def random_transform(image: torch.Tensor, gens: list, jitter: int, scale, rotate) -> torch.Tensor:
    """Per image: optional scale and rotation (about the centre), then a wrap-around shift of <= ``jitter``."""
    return apply_transforms(image, draw_transforms(gens, jitter, scale, rotate))


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient also flows through inactive units of the images marked, where it would raise them
    (Lucid's redirected ReLU): an image whose objective starts dead still gets a way up."""

    @staticmethod
    def forward(ctx, z, marked):
        ctx.save_for_backward(z, marked)
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        z, marked = ctx.saved_tensors
        lift = marked.view(-1, *([1] * (z.ndim - 1))) & (grad < 0)  # a loss gradient < 0 raises the unit
        return grad * ((z > 0) | lift), None


@contextmanager
def redirected_relus(agent: nn.Module, marked: torch.Tensor):
    """Every (not in-place) ``nn.ReLU`` of ``agent`` redirects its gradient for the images ``marked`` (B,) bool;
    the hooks are removed on exit."""
    def hook(module, inputs, output):
        z = inputs[0]
        if module.inplace or not isinstance(z, torch.Tensor) or z.ndim < 1 or z.shape[0] != len(marked):
            return None
        return _RedirectedReLU.apply(z, marked.to(z.device))

    handles = [m.register_forward_hook(hook) for m in agent.modules() if isinstance(m, nn.ReLU)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _obs_window(image: torch.Tensor, obs_hw: tuple) -> torch.Tensor:
    """Centre crop of the canvas (B, C, Hc, Wc) to the agent's (H, W), as an NHWC float obs in [0, 255]."""
    top, left = (image.shape[2] - obs_hw[0]) // 2, (image.shape[3] - obs_hw[1]) // 2
    window = image[:, :, top:top + obs_hw[0], left:left + obs_hw[1]]  # (B, C, H, W)
    return window.permute(0, 2, 3, 1) * 255  # (B, H, W, C)


def image_shape(agent, size=None) -> tuple:
    """``((H, W) of the observation, C)`` for an image-observing agent (``size`` stands in for an agent without
    ``obs_shape``, taken as RGB)."""
    obs_shape = tuple(getattr(agent, "obs_shape", None) or ())
    if not obs_shape:
        if size is None:
            raise ValueError(f"{type(agent).__name__} has no obs_shape; pass size=(H, W)")
        return tuple(size), 3
    if len(obs_shape) != 3:
        raise ValueError(f"optimize makes images (H, W, C); the agent's observations are {obs_shape}")
    return tuple(obs_shape[:2]), int(obs_shape[2])


def optimize_position(agent, layer: str, where: str = "centre"):
    """``--position`` as :func:`optimize_batch` takes it: ``"centre"`` -> the layer's middle ``(h // 2, w // 2)``,
    ``"mean"`` -> None (the mean over positions), ``"Y,X"`` -> ``(Y, X)``; None for a non-spatial layer."""
    from ..hooks import layer_shapes

    shape = layer_shapes(agent, names=[layer]).get(layer)
    if where not in ("centre", "mean"):
        try:
            y, x = (int(v) for v in where.split(","))
        except ValueError:
            raise ValueError(f"position must be centre, mean or Y,X (integers), got {where!r}") from None
    if shape is None or len(shape) != 3 or where == "mean":
        return None
    return (shape[1] // 2, shape[2] // 2) if where == "centre" else (y, x)


def optimize_batch(agent, layer: str, directions, *, steps: int = STEPS, lr: float = LR, size=None,
                   jitter: int = JITTER, scale: "float | None" = None, rotate: "float | None" = None,
                   colour_penalty: float = 0.0, penalty_margin: float = 0.25, seed: int = 0, param: str = "fft",
                   amplitude: float = AMPLITUDE, redirect: int = REDIRECT, position=None,
                   reference_obs=None, progress: bool = False) -> Optimized:
    """Optimise one image per direction (``directions`` (K, C')) together; see :func:`optimize`."""
    obs_hw, channels = image_shape(agent, size)
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
    basis = channel_basis(reference_obs, channels)  # (C, C)
    image = ImageParam(param, len(d), canvas, channels, gens, basis, device, amplitude)
    opt = Adam(image.tensor, lr)
    history = np.zeros((steps, len(d)), np.float32)
    none = torch.zeros(len(d), dtype=torch.bool)
    everyone = ~none
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"optimize {layer}", unit="step")

    def ascent(transforms, marked):
        """(objective (K,), the gradient of the loss on the image tensor)."""
        with redirected_relus(agent, marked):
            x = image.image()  # (K, C, Hc, Wc)
            objective = direction_objective(agent, layer, _obs_window(apply_transforms(x, transforms), obs_hw),
                                            d, position)  # (K,)
            loss = -objective.sum()
            if colour_penalty:
                loss = loss + colour_penalty * extremal_penalty(x, penalty_margin).sum()
            (grad,) = torch.autograd.grad(loss, [image.tensor])
        return objective.detach(), grad

    for step in bar:
        transforms = draw_transforms(gens, jitter, scale, rotate)
        objective, grad = ascent(transforms, everyone if step < redirect else none)
        dead = grad.flatten(1).abs().amax(1).cpu() == 0  # (K,) images whose gradient vanished (dead units)
        if redirect and dead.any():  # take the redirected gradient instead
            grad = torch.where(dead.to(device).view(-1, *[1] * (grad.ndim - 1)), ascent(transforms, dead)[1], grad)
        opt.step(grad)
        history[step] = objective.cpu().numpy()
    with torch.no_grad():
        images = (image.image() * 255).round().to(torch.uint8)  # (K, C, Hc, Wc)
        final = direction_objective(agent, layer, _obs_window(images.float() / 255, obs_hw), d, position)  # (K,)
    return Optimized(images.permute(0, 2, 3, 1).cpu().numpy(), final.cpu().numpy(), history)


def optimize(agent, layer: str, direction, **kw) -> np.ndarray:
    """An image maximising ``direction``'s score in ``layer``: uint8 ``(H, W, C)`` (``(K, H, W, C)`` for
    directions ``(K, C')`` or a :class:`~policylens.factors.Directions` of ``layer``), C the observation's.

    ``direction``: a (C',) vector or a channel index (one-hot). Keywords as :func:`optimize_batch`: ``steps``,
    ``lr`` (Adam); ``size`` (H, W): the canvas, at least the observation; the agent sees its centre (default:
    the observation's size). ``jitter`` pixels of random shift, ``scale`` (relative, e.g. 0.1) and ``rotate``
    (degrees) of random zoom and rotation per step; ``colour_penalty``: weight of the extremal-colour penalty;
    ``param``: "fft" | "pixel"; ``amplitude``: the fft image's logit scale; ``redirect``: steps of redirected
    ReLU gradients for every image at the start, later only for an image whose gradient vanished (0: off);
    ``position=(y, x)``: maximise at that position of the layer instead of the mean; ``reference_obs``:
    observations whose channel covariance the fft parameterisation decorrelates. Deterministic given ``seed``.
    """
    d = direction_vectors(agent, layer, direction)
    single = d.ndim == 1
    out = optimize_batch(agent, layer, d.unsqueeze(0) if single else d, **kw)
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
