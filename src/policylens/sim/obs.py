"""Observations in the simulator: the conv encoder and decoder, what the agent sees, and the loss.

Three kinds (:data:`policylens.sim.config.OBS_KINDS`), chosen from the env spec:

- ``symbolic``: MiniGrid's (H, W, 3) integer codes (object, colour, state). The decoder gives categorical
  logits per cell and plane, (..., H, W, 11 + 6 + 3); the agent is shown the expected code of each plane
  (softmax-weighted code values), or with ``straight_through`` the argmax code in the forward pass and the
  expected code's gradient. Loss: cross-entropy, summed over cells and planes.
- ``onehot``: MiniGrid's (H, W, 20) 0/1 planes: the same categorical logits; the agent is shown the
  softmax probabilities (straight-through: the one-hot argmax).
- ``pixels``: RGB (H, W, 3) uint8. The decoder gives sigmoid * 255; the agent sees those floats (agents take
  float obs of their uint8 shape and scale inside). Loss: squared error on [0, 1], summed over pixels.

Spatial layout: stride-2 4x4 convs halve the image while both sides are even and above 8 (56 -> 28 -> 14 -> 7,
64 -> 32 -> 16 -> 8; a 7x7 MiniGrid view keeps its size with 3x3 convs); the decoder mirrors them.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import SimConfig


def downsamplings(height: int, width: int, most: int = 4) -> int:
    """How many times the conv stack halves an image of this size."""
    n = 0
    while n < most and height % 2 == 0 and width % 2 == 0 and min(height, width) > 8:
        height, width, n = height // 2, width // 2, n + 1
    return n


def channels_of(cfg: SimConfig) -> int:
    """Channels of the network-side observation: one per category for symbolic/onehot, 3 for pixels."""
    return sum(cfg.planes) if cfg.obs_kind != "pixels" else cfg.obs_shape[-1]


def network_input(obs: torch.Tensor, cfg: SimConfig) -> torch.Tensor:
    """Recorded observations (..., H, W, C) (uint8 or float of the same values) -> (..., H, W, channels) float:
    one-hot codes for symbolic, as is for onehot, [0, 1] for pixels."""
    if cfg.obs_kind == "symbolic":
        codes = obs.long()  # (..., H, W, 3)
        return torch.cat([F.one_hot(codes[..., k], n) for k, n in enumerate(cfg.planes)], -1).float()
    if cfg.obs_kind == "onehot":
        return obs.float()
    return obs.float() / 255.0


class ObsEncoder(nn.Module):
    """(B, H, W, C) recorded observation -> (B, embed)."""

    def __init__(self, cfg: SimConfig):
        super().__init__()
        self.cfg = cfg
        h, w, _ = cfg.obs_shape
        n, ch = downsamplings(h, w), cfg.channels
        layers, cin = [], channels_of(cfg)
        if n == 0:
            for cout in (ch, 2 * ch):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ELU()]
                cin = cout
        for k in range(n):
            layers += [nn.Conv2d(cin, ch * 2 ** k, 4, stride=2, padding=1), nn.ELU()]
            cin = ch * 2 ** k
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(cin * (h >> n) * (w >> n), cfg.embed), nn.ELU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = network_input(obs, self.cfg).permute(0, 3, 1, 2)  # (B, channels, H, W)
        return self.fc(self.convs(x).flatten(1))  # (B, embed)


class ObsDecoder(nn.Module):
    """(B, features) -> (B, H, W, channels): categorical logits (symbolic, onehot) or pixels in [0, 255]."""

    def __init__(self, cfg: SimConfig, features: int):
        super().__init__()
        self.cfg = cfg
        h, w, _ = cfg.obs_shape
        n, ch = downsamplings(h, w), cfg.channels
        top = 2 * ch if n == 0 else ch * 2 ** (n - 1)
        self.top = (top, h >> n, w >> n)
        self.fc = nn.Sequential(nn.Linear(features, top * (h >> n) * (w >> n)), nn.ELU())
        layers, cin, cout_last = [], top, channels_of(cfg)
        if n == 0:
            layers = [nn.Conv2d(top, ch, 3, padding=1), nn.ELU(), nn.Conv2d(ch, cout_last, 3, padding=1)]
        for k in range(n - 1, -1, -1):
            cout = ch * 2 ** (k - 1) if k > 0 else cout_last
            layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            if k > 0:
                layers.append(nn.ELU())
            cin = cout
        self.deconvs = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.fc(features).view(-1, *self.top)  # (B, top, h, w)
        out = self.deconvs(x).permute(0, 2, 3, 1)  # (B, H, W, channels)
        return torch.sigmoid(out) * 255.0 if self.cfg.obs_kind == "pixels" else out


def _plane_probs(pred: torch.Tensor, planes) -> list:
    """Softmax of each plane's logits: a list of (..., H, W, n_k)."""
    return [p.float().softmax(-1) for p in pred.split(list(planes), -1)]


def cell_choice(pred: torch.Tensor, cfg: SimConfig) -> tuple:
    """Symbolic views with known cell codes: each cell's likeliest code among ``cfg.cells`` (the sum of its planes'
    log-probabilities). Returns ``(codes (..., H, W, 3) long, probabilities over the codes (..., H, W, M),
    the codes (M, 3))``."""
    codes = torch.as_tensor(cfg.cells, dtype=torch.long, device=pred.device)  # (M, 3)
    logp = [p.float().log_softmax(-1) for p in pred.split(list(cfg.planes), -1)]  # (..., H, W, n_k)
    score = sum(lp[..., codes[:, k]] for k, lp in enumerate(logp))  # (..., H, W, M)
    return codes[score.argmax(-1)], score.softmax(-1), codes


def agent_view(pred: torch.Tensor, cfg: SimConfig, straight_through: "bool | None" = None,
               draw: "torch.Tensor | None" = None) -> torch.Tensor:
    """The decoded observation (..., H, W, channels) as the agent takes it: (..., H, W, C) float, differentiable.
    Forward: the argmax code (straight-through) or the expected code; symbolic views with ``cfg.cells`` choose
    among the codes the env shows (:func:`cell_choice`), others plane by plane. ``draw`` (..., H, W, planes)
    uniforms in [0, 1): the hard code is drawn from each cell's distribution instead of taken at its mode (one
    uniform per cell for ``cfg.cells``, the first plane's; one per plane otherwise), so a ball the simulator
    spreads over several cells shows in one of them, as often as it gives it; gradients as for the argmax."""
    if cfg.obs_kind == "pixels":
        return pred
    hard = draw is not None or (cfg.straight_through_obs if straight_through is None else straight_through)
    if cfg.obs_kind == "symbolic" and cfg.cells:
        sharp, probs, codes = cell_choice(pred, cfg)
        if draw is not None:
            sharp = codes[drawn_index(probs, draw[..., 0])]  # (..., H, W, 3)
        soft = probs @ codes.to(probs.dtype)  # (..., H, W, 3) the expected code
        return sharp.to(soft.dtype) + (soft - soft.detach()) if hard else soft
    views = []
    for k, probs in enumerate(_plane_probs(pred, cfg.planes)):
        n = probs.shape[-1]
        pick = probs.argmax(-1) if draw is None else drawn_index(probs, draw[..., k])  # (...,) the hard category
        if cfg.obs_kind == "symbolic":
            soft = (probs * torch.arange(n, device=probs.device, dtype=probs.dtype)).sum(-1, keepdim=True)  # (..., 1)
            sharp = pick.unsqueeze(-1).to(probs.dtype)  # (..., 1) the code
        else:
            soft, sharp = probs, F.one_hot(pick, n).to(probs.dtype)  # (..., n)
        views.append(sharp + (soft - soft.detach()) if hard else soft)  # exactly sharp forward
    return torch.cat(views, -1)  # (..., H, W, C)


def drawn_index(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The category drawn from ``probs`` (..., n) by the uniforms ``u`` (...,): the first whose cumulative
    probability exceeds u (inverse CDF), (...,) long."""
    cdf = probs.detach().float().cumsum(-1)  # (..., n)
    return (cdf <= u.float().unsqueeze(-1) * cdf[..., -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def categorical_targets(obs: torch.Tensor, cfg: SimConfig) -> torch.Tensor:
    """Recorded obs (..., H, W, C) -> the category of each plane, (..., H, W, planes) long."""
    if cfg.obs_kind == "symbolic":
        return obs.long()
    return torch.stack([p.argmax(-1) for p in obs.split(list(cfg.planes), -1)], -1)


def obs_loss(pred: torch.Tensor, obs: torch.Tensor, cfg: SimConfig,
             weights: "torch.Tensor | None" = None) -> torch.Tensor:
    """Per-frame loss of the decoded ``pred`` (..., H, W, channels) against recorded ``obs`` (..., H, W, C): (...,).
    ``weights`` (categories of the first plane,): each cell's loss times the weight of its recorded first-plane
    category (the object type of MiniGrid views; :func:`object_weights`)."""
    if cfg.obs_kind == "pixels":
        return ((pred.float() - obs.float()) / 255.0).pow(2).flatten(-3).sum(-1)
    target = categorical_targets(obs, cfg)  # (..., H, W, planes)
    planes = pred.float().split(list(cfg.planes), -1)
    total = planes[0].new_zeros(())  # () until the first plane's term broadcasts it to (..., H, W)
    for k, logits in enumerate(planes):
        total = total - logits.log_softmax(-1).gather(-1, target[..., k:k + 1]).squeeze(-1)  # (..., H, W)
    if weights is not None:
        total = total * weights[target[..., 0]]  # (..., H, W)
    return total.flatten(-2).sum(-1)


def object_weights(obs: np.ndarray, cfg: SimConfig, balance: float) -> "torch.Tensor | None":
    """Cell weights by first-plane category for :func:`obs_loss`: (share of the category among the cells of
    ``obs`` (N, H, W, C)) ** -``balance``, normalised to a mean of 1 over those cells, so rare objects (MiniGrid's
    moving balls: a few cells of a view) weigh more; None for ``balance`` 0 or pixel views."""
    if balance == 0 or cfg.obs_kind == "pixels":
        return None
    if balance < 0:
        raise ValueError(f"obs balance must be >= 0, got {balance}")
    codes = categorical_targets(torch.as_tensor(np.asarray(obs)), cfg)[..., 0].flatten()  # (cells,)
    share = torch.bincount(codes, minlength=cfg.planes[0]).double() / codes.numel()  # (categories,)
    weights = torch.where(share > 0, share.clamp_min(1e-12) ** -balance, torch.zeros_like(share))
    return (weights / (weights * share).sum()).float()


def obs_score(pred: torch.Tensor, obs: torch.Tensor, cfg: SimConfig) -> torch.Tensor:
    """Per-frame fidelity: share of (cell, plane) categories decoded exactly (symbolic, onehot), or the mean
    squared error on [0, 1] (pixels); (...,)."""
    if cfg.obs_kind == "pixels":
        return ((pred.float() - obs.float()) / 255.0).pow(2).flatten(-3).mean(-1)
    return (decoded_categories(pred, cfg) == categorical_targets(obs, cfg)).float().flatten(-3).mean(-1)


def decoded_categories(pred: torch.Tensor, cfg: SimConfig) -> torch.Tensor:
    """The category of each plane a categorical decoder's output (..., H, W, channels) decodes to, as the agent is
    shown it: (..., H, W, planes) long (symbolic views with known cell codes: the likeliest code, else plane by
    plane)."""
    if cfg.obs_kind == "symbolic" and cfg.cells:
        return cell_choice(pred, cfg)[0]  # (..., H, W, 3)
    return torch.stack([p.argmax(-1) for p in pred.split(list(cfg.planes), -1)], -1)  # (..., H, W, planes)
