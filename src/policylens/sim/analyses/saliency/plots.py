"""The figure of ``policylens sim saliency``: mean gradient norm against steps before t, per gradient."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import PROBES

LABELS = {"with_env": "with env", "without_env": "actions detached"}


def plot_norms(summary: dict, t: int, path: Path, title: str) -> Path:
    """Mean gradient norm (over samples; log scale) vs steps before t, one panel per gradient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lag = np.arange(t + 1)[::-1]  # steps before t of steps 0..t
    fig, axes = plt.subplots(1, len(PROBES), figsize=(2.8 * len(PROBES), 2.8), dpi=120, squeeze=False)
    for ax, probe in zip(axes[0], PROBES):
        for name, style in zip(summary, ("-", "--")):
            norms = np.asarray(summary[name]["norms"][probe])[:, :t + 1]  # (B, t+1)
            line, = ax.plot(lag, norms.mean(0), style, marker=".", label=LABELS[name])
            ax.fill_between(lag, norms.min(0), norms.max(0), color=line.get_color(), alpha=0.15)
        ax.set_yscale("log", nonpositive="mask")
        ax.invert_xaxis()
        ax.set_title(probe, fontsize=9)
        ax.set_xlabel("steps before t", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("gradient norm", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
