"""Small legend images per direction, and matplotlib figures of feature visualisations.

Figures only read results (:class:`DatasetExamples`, :class:`SpatialExamples`, optimised images); nothing
here computes activations. Every figure is a matplotlib PNG (Agg backend, no display needed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .examples import DatasetExamples, SpatialExamples


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w, C) uint8 -> (N, size, size, C): nearest-neighbour when enlarging (keeps pixel art sharp),
    area averaging when shrinking."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"resize expects images (N, h, w, C), got shape {images.shape}")
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float()  # (N, C, h, w)
    mode = "nearest" if size >= max(images.shape[1:3]) else "area"
    out = F.interpolate(x, size=(size, size), mode=mode)  # (N, C, size, size)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def thumbnails(examples: DatasetExamples, size: int = 32) -> np.ndarray:
    """One legend image per direction: its best dataset-example patch resized to ``(size, size)``;
    ``(K, size, size, C)`` uint8."""
    if examples.patches.shape[1] == 0:
        raise ValueError("no dataset examples to make thumbnails from")
    return resize(examples.patches[:, 0], size)


def stripes(height: int, width: int, period: int = 6) -> np.ndarray:
    """(height, width, 3) uint8 diagonal light stripes: the background revealed by a weak response."""
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    light = ((yy + xx) // max(1, period // 2)) % 2 == 0
    return np.repeat(np.where(light, 235, 205).astype(np.uint8)[:, :, None], 3, axis=2)


def fade(spatial: SpatialExamples, stack: int = 1) -> np.ndarray:
    """(K, H, W, 3) uint8: each composed image blended over stripes by its per-position strength (weak ->
    transparent), as in the paper's spatially-aware figure (a frame stack drawn as its newest frame)."""
    strength = spatial.strength()  # (K, h, w)
    rows, cols = spatial.cell_rows, spatial.cell_cols
    alpha = np.repeat(np.repeat(strength, np.diff(rows), axis=1), np.diff(cols), axis=2)[..., None]  # (K, H, W, 1)
    back = stripes(*spatial.images.shape[1:3])[None].astype(np.float32)  # (1, H, W, 3)
    front = _rgb(spatial.images, stack).astype(np.float32)
    return (alpha * front + (1 - alpha) * back).round().astype(np.uint8)


def _rgb(images: np.ndarray, stack: int = 1) -> np.ndarray:
    """Images (..., C) as RGB for display: a stack of ``stack`` > 1 frames (Atari) as its newest frame
    (:func:`policylens.envs.render.stack_picture`), else the first 3 channels (grey for 1 channel)."""
    if stack > 1:
        from ..envs.render import stack_picture

        return stack_picture(images, stack)
    c = images.shape[-1]
    if c == 3:
        return images
    if c == 1:
        return np.repeat(images, 3, axis=-1)
    return images[..., :3]


def save_grid(path, images, labels=None, *, title: "str | None" = None, cell: float = 1.2,
              captions=None, columns: int = 8, stack: int = 1) -> Path:
    """Write a PNG grid and return its path (images that stack ``stack`` > 1 frames drawn as their newest).

    ``images`` (K, h, w, C): K images, each titled by ``labels[k]``, wrapped into rows of ``columns``;
    or (K, n, h, w, C): K rows of n images, ``labels[k]`` naming row k. ``captions``: optional text under each
    image, shaped like the images' leading axes ((K,) or (K, n)).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim not in (4, 5):
        raise ValueError(f"save_grid expects images (K, h, w, C) or (K, n, h, w, C), got shape {images.shape}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} " + ("rows" if images.ndim == 5 else "images"))
    if images.ndim == 5:
        rows, cols = images.shape[:2]
        cells = [(r, c, images[r, c], None, captions[r][c] if captions is not None else None)
                 for r in range(rows) for c in range(cols)]
    else:
        cols = max(1, min(columns, len(images)))
        rows = -(-len(images) // cols)
        cells = [(k // cols, k % cols, images[k], labels[k] if labels is not None else None,
                  captions[k] if captions is not None else None) for k in range(len(images))]
    row_labels = labels if images.ndim == 5 and labels is not None else None
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell + (1.2 if row_labels else 0), rows * cell + 0.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, c, image, label, caption in cells:
        ax = axes[r, c]
        ax.axis("on")
        ax.imshow(_rgb(image, stack), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if label is not None:
            ax.set_title(str(label), fontsize=8)
        if caption is not None:
            ax.set_xlabel(str(caption), fontsize=6)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(str(label), fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_examples(examples: DatasetExamples, path, stack: int = 1) -> Path:
    """Rows of dataset-example patches, one row per direction, each captioned with its score (``stack``: frames
    per observation, :func:`policylens.envs.render.frame_stack`)."""
    captions = [[f"{s:.2f}" for s in row] for row in examples.score]
    return save_grid(path, examples.patches, examples.labels, captions=captions,
                     title=f"dataset examples, layer {examples.layer}", stack=stack)


def plot_spatial(spatial: SpatialExamples, path, stack: int = 1) -> Path:
    """The spatially-aware images of all directions in one row (weak positions faded to stripes)."""
    return save_grid(path, fade(spatial, stack), spatial.labels,
                     title=f"spatially-aware examples, layer {spatial.layer}", cell=2.0)


def plot_images(images, labels, path, title: str, stack: int = 1) -> Path:
    """One row of images (e.g. thumbnails or optimised images) with their labels."""
    return save_grid(path, images, labels, title=title, cell=1.6, stack=stack)
