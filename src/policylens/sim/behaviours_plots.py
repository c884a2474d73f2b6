"""Figures of a saved behaviour analysis (they read only ``behaviours.json`` and ``behaviours.npz`` and write PNGs
beside them):

- ``clusters.png``: per behaviour its size, mean value and entropy, its actions, and its mean direction
  coefficients over the window (directions x steps);
- ``matrices.png``: at one lag, per behaviour (and all windows) the cross-correlation beside the cross-causation
  with and without the environment, one symmetric colour scale per column;
- ``consistency.png``: per lag, the sign-consistency share of every behaviour with and without the environment,
  its shuffled-pairing null (mean and 95% interval) drawn over each bar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MATRICES = (("xcorr", "cross-correlation"), ("xcaus_env", "cross-causation, with env"),
            ("xcaus_own", "cross-causation, own recurrence"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read(folder) -> tuple:
    from .behaviours_cli import ARRAYS_FILE, JSON_FILE
    from .command import read_saved

    return read_saved(folder, JSON_FILE, ARRAYS_FILE, "behaviour analysis", "behaviours")


def _labels(summary: dict) -> list:
    return summary["labels"] or [f"IC{k + 1}" for k in range(summary["k"])]


def plot_clusters(arrays: dict, summary: dict, path) -> Path:
    plt = _pyplot()
    rows, labels = summary["behaviours"], _labels(summary)
    count = len(rows)
    fig = plt.figure(figsize=(max(6.0, 2.0 * count), 7.5), layout="constrained")
    grid = fig.add_gridspec(3, count, height_ratios=[1, 1, 1.3])
    x = np.arange(count)
    ax = fig.add_subplot(grid[0, :])
    ax.bar(x, [r["size"] for r in rows], color="0.6")
    ax.set_ylabel("windows", fontsize=8)
    twin = ax.twinx()
    twin.plot(x, [r["mean_value"] for r in rows], "o-", color="tab:green", label="mean value")
    twin.plot(x, [r["mean_entropy"] for r in rows], "s--", color="tab:purple", label="mean entropy")
    twin.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_xticks(x, [f"B{r['behaviour']}" for r in rows])
    ax.set_title("behaviours: size, mean value and policy entropy", fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    names = list(rows[0]["actions"])
    counts = np.array([[r["actions"][n] for n in names] for r in rows], np.float64)  # (B, A)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    bottom = np.zeros(count)
    for a, name in enumerate(names):
        ax.bar(x, shares[:, a], bottom=bottom, label=name)
        bottom += shares[:, a]
    ax.set_xticks(x, [f"B{r['behaviour']}" for r in rows])
    ax.set_ylabel("share of steps", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    top = float(np.abs(arrays["mean_ic"]).max()) or 1.0
    for b in range(count):
        ax = fig.add_subplot(grid[2, b])
        image = ax.imshow(arrays["mean_ic"][b].T, cmap="RdBu_r", vmin=-top, vmax=top, aspect="auto")
        ax.set_title(f"B{b} mean coefficients", fontsize=7)
        ax.set_xlabel("step in window", fontsize=7)
        ax.set_yticks(range(len(labels)), labels if b == 0 else [""] * len(labels), fontsize=6)
        ax.tick_params(labelsize=6)
    fig.colorbar(image, ax=fig.axes[-count:], shrink=0.8).ax.tick_params(labelsize=6)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_matrices(arrays: dict, summary: dict, lag: int, path) -> Path:
    plt = _pyplot()
    groups, labels = summary["groups"], _labels(summary)
    if not 0 <= lag < arrays["xcorr"].shape[1]:
        raise ValueError(f"lag {lag} was not computed: lags 0-{arrays['xcorr'].shape[1] - 1}")
    fig, axes = plt.subplots(len(groups), 3, figsize=(9.5, 2.8 * len(groups)), squeeze=False, layout="constrained")
    causes = float(np.nanmax(np.abs(np.stack([arrays["xcaus_env"][:, lag], arrays["xcaus_own"][:, lag]])))) or 1.0
    for col, (key, title) in enumerate(MATRICES):
        m = arrays[key][:, lag]  # (B + 1, K, K)
        top = 1.0 if key == "xcorr" else causes  # both cross-causations on one scale
        for row, name in enumerate(groups):
            ax = axes[row, col]
            image = ax.imshow(m[row], cmap="RdBu_r", vmin=-top, vmax=top)
            ax.set_title(f"{name}: {title}", fontsize=7)
            ax.set_xticks(range(len(labels)), labels, fontsize=5, rotation=90)
            ax.set_yticks(range(len(labels)), labels, fontsize=5)
            ax.set_xlabel(f"j at t + {lag}", fontsize=6)
            ax.set_ylabel("i at t", fontsize=6)
        fig.colorbar(image, ax=axes[:, col], location="bottom", shrink=0.8, aspect=30).ax.tick_params(labelsize=6)
    fig.suptitle(f"lag {lag}: corr(ic_i(t), ic_j(t+{lag})) vs d ic_j(t+{lag}) / d ic_i(t)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_consistency(summary: dict, path) -> Path:
    plt = _pyplot()
    groups = summary["groups"]
    lags = [c["lag"] for c in summary["consistency"]["env"][0]]
    fig, axes = plt.subplots(1, max(len(lags), 1), figsize=(max(4.0, 0.6 * len(groups) * len(lags) + 2), 3.4),
                             squeeze=False, sharey=True)
    x, width = np.arange(len(groups)), 0.38
    for k, lag in enumerate(lags):
        ax = axes[0, k]
        for offset, (name, colour) in zip((-width / 2, width / 2), (("env", "tab:red"), ("own", "tab:blue"))):
            cells = [summary["consistency"][name][g][k] for g in range(len(groups))]
            share = [np.nan if c["share"] is None else c["share"] for c in cells]
            ax.bar(x + offset, share, width, color=colour, alpha=0.8,
                   label="with env" if name == "env" else "own recurrence")
            for xi, c in zip(x + offset, cells):
                if c["null_mean"] is not None:
                    # a skewed null's mean may lie outside its 95% interval: that side's bar is then empty
                    ax.errorbar(xi, c["null_mean"], yerr=[[max(0.0, c["null_mean"] - c["null_low"])],
                                                          [max(0.0, c["null_high"] - c["null_mean"])]], fmt="_",
                                color="k", ms=8, lw=1, capsize=2)
        ax.axhline(0.5, color="0.7", lw=0.8, ls=":")
        ax.set_xticks(x, [g.replace("behaviour ", "B") for g in groups], fontsize=7)
        ax.set_title(f"lag {lag}", fontsize=8)
        ax.set_ylim(0, 1.05)
    axes[0, 0].set_ylabel("share of entries with sign(xcorr) = sign(xcaus)", fontsize=7)
    axes[0, 0].legend(fontsize=6, frameon=False, loc="lower left")
    fig.suptitle("sign consistency (black: shuffled-pairing null, mean and 95% interval)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_all(folder, lag: int = 2) -> list:
    """All three figures of the analysis in ``folder``; ``lag`` for ``matrices.png`` (clipped to the lags there)."""
    folder = Path(folder)
    arrays, summary = _read(folder)
    lag = min(lag, arrays["xcorr"].shape[1] - 1)
    return [plot_clusters(arrays, summary, folder / "clusters.png"),
            plot_matrices(arrays, summary, lag, folder / "matrices.png"),
            plot_consistency(summary, folder / "consistency.png")]
