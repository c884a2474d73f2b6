"""Figures of a saved hidden-state analysis (precompute and plot are separate: these read only the files
:func:`policylens.hidden.hx.core.save_analysis` wrote, and write PNGs beside them).

- ``pcs.png``: PC1-PC2 and PC3-PC4 scatters, one column per colour variable (value, action, entropy, reward,
  progress through the episode);
- ``variance.png``: each component's share of the z-variance and the cumulative share;
- ``tsne.png``: the t-SNE embedding coloured the same way and by k-means cluster;
- ``loadings.png``: the PCA and ICA directions' weight on every unit;
- ``simulated.png`` (:func:`plot_simulated`): simulated states projected onto the real PC and IC planes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .core import COLOURS, FRAMES_FILE, SUMMARY_FILE

CONTINUOUS_MAPS = {"value": "viridis", "entropy": "magma", "reward": "coolwarm", "progress": "plasma"}
POINT = dict(s=3, alpha=0.6, linewidths=0, rasterized=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read(folder) -> tuple:
    folder = Path(folder)
    for name in (FRAMES_FILE, SUMMARY_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no hidden-state analysis at {folder}: {folder / name} is missing")
    with np.load(folder / FRAMES_FILE, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((folder / SUMMARY_FILE).read_text())


def _scatter(fig, ax, x, y, values, name: str, labels=()) -> None:
    """Points coloured by ``values``: categories (action, cluster) with a legend, else a colour bar."""
    import matplotlib

    if name in ("action", "cluster"):
        cmap = matplotlib.colormaps["tab10" if values.max(initial=0) < 10 else "tab20"]
        for c in np.unique(values):
            pick = values == c
            text = labels[c] if name == "action" and c < len(labels) else f"{name} {c}"
            ax.scatter(x[pick], y[pick], color=cmap(int(c) % cmap.N), label=text, **POINT)
        ax.legend(fontsize=6, markerscale=3, loc="best", frameon=False)
    else:
        order = np.argsort(values, kind="stable")  # high values drawn on top
        dots = ax.scatter(x[order], y[order], c=values[order], cmap=CONTINUOUS_MAPS.get(name, "viridis"), **POINT)
        fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    ax.set_title(f"coloured by {name}", fontsize=8)
    ax.tick_params(labelsize=6)


def _colour_names(arrays: dict) -> list:
    return [c for c in COLOURS if c in arrays]


def _plane(coefs: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns i and i + 1 of ``(N, k)`` coefficients (zeros for a missing second one when k = 1)."""
    return coefs[:, i], coefs[:, i + 1] if i + 1 < coefs.shape[1] else np.zeros(len(coefs))


def _axis(prefix: str, i: int, ratio=None) -> str:
    return f"{prefix}{i + 1}" + (f" ({100 * ratio[i]:.1f}%)" if ratio is not None and i < len(ratio) else "")


def plot_pcs(folder, path=None) -> Path:
    """PC1-PC2 and PC3-PC4 (where k >= 4) scatters, one panel per colour variable."""
    plt = _pyplot()
    arrays, summary = _read(folder)
    pcs, ratio = arrays["pca"], summary["pca"]["explained_variance_ratio"]
    firsts = [i for i in (0, 2) if i == 0 or i + 1 < pcs.shape[1]]  # PC1-PC2, and PC3-PC4 where k >= 4
    names = _colour_names(arrays) or ["cluster"]
    fig, axes = plt.subplots(len(firsts), len(names), figsize=(3.2 * len(names), 2.9 * len(firsts)), dpi=120,
                             squeeze=False)
    for row, i in enumerate(firsts):
        for col, name in enumerate(names):
            ax = axes[row, col]
            _scatter(fig, ax, *_plane(pcs, i), arrays[name], name, summary.get("action_names", ()))
            ax.set_xlabel(_axis("PC", i, ratio), fontsize=7)
            ax.set_ylabel(_axis("PC", i + 1, ratio), fontsize=7)
    fig.suptitle(f"{summary['layer']}: principal components of the z-scored states ({summary['frames']} frames)",
                 fontsize=9)
    return _save(plt, fig, path or Path(folder) / "pcs.png")


def plot_variance(folder, path=None) -> Path:
    """Every principal component's share of the z-variance (bars) and the cumulative share (line)."""
    plt = _pyplot()
    arrays, summary = _read(folder)
    ratio = arrays["variance_ratio"]
    n = np.arange(1, len(ratio) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=120)
    ax.bar(n, ratio, color="tab:blue", label="per component")
    ax.plot(n, np.cumsum(ratio), color="tab:orange", marker=".", label="cumulative")
    ax.axvline(summary["k"] + 0.5, color="grey", ls=":", lw=1, label=f"k = {summary['k']} kept")
    ax.set_xlabel("principal component")
    ax.set_ylabel("share of variance explained")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{summary['layer']}: variance explained ({summary['units']} units, {summary['frames']} frames)",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path or Path(folder) / "variance.png")


def plot_tsne(folder, path=None) -> "Path | None":
    """The t-SNE embedding, one panel per colour variable plus one by cluster (None if no t-SNE was made)."""
    plt = _pyplot()
    arrays, summary = _read(folder)
    coords, index = arrays["tsne"], arrays["tsne_index"]
    if len(index) == 0:
        return None
    names = _colour_names(arrays) + ["cluster"]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), dpi=120, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        _scatter(fig, ax, coords[:, 0], coords[:, 1], arrays[name][index], name, summary.get("action_names", ()))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{summary['layer']}: t-SNE of {len(index)} frames (perplexity "
                 f"{summary['tsne']['perplexity']:.0f}, seed {summary['tsne']['seed']})", fontsize=9)
    return _save(plt, fig, path or Path(folder) / "tsne.png")


def plot_loadings(folder, path=None) -> Path:
    """Heatmaps of the PCA and ICA directions (rows) over the units (columns), in z-space."""
    from ...factors import Directions

    plt = _pyplot()
    folder = Path(folder)
    _, summary = _read(folder)
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.09 * summary["units"] + 2), 1.2 + 0.5 * summary["k"] * 2),
                             dpi=120, squeeze=False)
    for ax, method in zip(axes[:, 0], ("pca", "ica")):
        dirs = Directions.load(folder / method).normalized()
        v = dirs.vectors.numpy()  # (k, D)
        lim = float(np.abs(v).max()) or 1.0
        image = ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(dirs)), dirs.labels, fontsize=6)
        ax.set_xlabel("unit", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(f"{method.upper()} directions (unit norm, z-space)", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="loading").ax.tick_params(labelsize=6)
    return _save(plt, fig, path or folder / "loadings.png")


def plot_simulated(real_folder, sim_frames: dict, path, names=("progress", "value")) -> Path:
    """Simulated states projected onto the real PC1-PC2 and IC1-IC2 planes: the real frames in grey behind
    them, the simulated ones coloured by each of ``names``. ``sim_frames``: :func:`~.core.project`'s
    output plus colour variables."""
    plt = _pyplot()
    arrays, summary = _read(real_folder)
    names = [n for n in names if n in sim_frames] or ["cluster"]
    methods = ("pca", "ica")
    fig, axes = plt.subplots(len(methods), len(names), figsize=(3.4 * len(names), 3.0 * len(methods)), dpi=120,
                             squeeze=False)
    for row, method in enumerate(methods):
        prefix, ratio = ("PC", summary["pca"]["explained_variance_ratio"]) if method == "pca" else ("IC", None)
        for col, name in enumerate(names):
            ax = axes[row, col]
            ax.scatter(*_plane(arrays[method], 0), color="0.8", label="real", **POINT)
            _scatter(fig, ax, *_plane(sim_frames[method], 0), np.asarray(sim_frames[name]), name,
                     summary.get("action_names", ()))
            ax.set_xlabel(_axis(prefix, 0, ratio), fontsize=7)
            ax.set_ylabel(_axis(prefix, 1, ratio), fontsize=7)
            ax.set_title(f"simulated, coloured by {name}; real in grey", fontsize=8)
    fig.suptitle(f"{len(sim_frames['pca'])} simulated states in the real {summary['layer']} components", fontsize=9)
    return _save(plt, fig, path)


def plot_all(folder) -> list:
    """Every figure of a saved analysis; returns the PNG paths written."""
    paths = [plot_pcs(folder), plot_variance(folder), plot_tsne(folder), plot_loadings(folder)]
    return [p for p in paths if p is not None]


def _save(plt, fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
