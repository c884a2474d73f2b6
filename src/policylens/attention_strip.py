"""rl-attention's "activation of the final attention layer plotted over the input frames", for several runs side
by side (their figure: coefficient 0 beside 5e-3).

    >>> from policylens.attention_strip import attention_maps, attention_strip
    >>> maps = attention_maps(agent, obs)                       # (T, h, w), each map sums to 1
    >>> attention_strip({"coef 0": a0, "coef 5e-3": a5}, obs, "strip.png")   # a row per run, a column per frame

Each cell is a frame as the agent sees it (RGB pixels as they are, a frame stack as its newest frame) with the
layer's map, averaged over the heads, stretched over the whole frame (each map cell covers its share of the
frame, as the trunk's last conv grid does), coloured by its share of the attention (one scale per row); each
panel is titled with the averaged map's entropy in nats (rl-attention penalises the sum of each head's).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .hooks import capture


def attention_maps(agent, obs, layer: str = "attention") -> np.ndarray:
    """``(T, h, w)``: ``layer``'s maps ``(T, heads, h, w)`` for the observations ``obs`` ``(T, H, W, C)``,
    averaged over the heads (each head's map sums to 1, so does the average)."""
    obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
    with torch.no_grad(), capture(agent, layer) as cache:
        agent(obs)
    maps = cache[layer]
    if maps.ndim != 4:
        raise ValueError(f"layer {layer!r} gives {tuple(maps.shape)}; an attention map is (T, heads, h, w)")
    return maps.float().mean(1).cpu().numpy()


def frame_pictures(obs) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: RGB frames as they are, a frame stack (or any other channel count) as its newest
    frame in grey."""
    from .envs.render import stack_picture
    from .explorer.encode import display_rgb

    obs = np.asarray(obs)
    if obs.ndim != 4:
        raise ValueError(f"observations must be images (T, H, W, C), got shape {obs.shape}")
    return display_rgb(obs)[0] if obs.shape[-1] in (1, 3) else stack_picture(obs, obs.shape[-1])


def attention_strip(agents: dict, obs, path, *, layer: str = "attention", title: str = "") -> Path:
    """Draw ``{label: agent}``'s attention maps over the frames ``obs`` ``(T, H, W, C)``: a row per agent, a
    column per frame; returns ``path`` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not agents:
        raise ValueError("attention_strip needs at least one agent")
    pictures = frame_pictures(obs)  # (T, H, W, 3)
    t = len(pictures)
    fig, axes = plt.subplots(len(agents), t, figsize=(1.6 * t, 1.9 * len(agents)), dpi=120, squeeze=False)
    for row, (label, agent) in zip(axes, agents.items()):
        maps = attention_maps(agent, obs, layer)  # (T, h, w)
        top = float(maps.max())
        for ax, picture, m in zip(row, pictures, maps):
            h, w = picture.shape[:2]
            ax.imshow(picture, extent=(0, w, h, 0))
            ax.imshow(m, extent=(0, w, h, 0), cmap="inferno", alpha=0.55, vmin=0, vmax=top, interpolation="nearest")
            entropy = float(-(m * np.log(np.clip(m, 1e-12, None))).sum())
            ax.set_title(f"H = {entropy:.2f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
