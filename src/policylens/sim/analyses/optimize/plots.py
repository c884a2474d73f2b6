"""The figure of ``policylens sim optimize``: the target and log N(z; 0, I) against the optimisation step."""
from __future__ import annotations

from pathlib import Path


def plot_curves(result, label: str, path: Path) -> None:
    """The target and log N(z; 0, I) against the optimisation step: one thin line per sample, the mean thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .core import typical_log_prior

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, values, title in ((axes[0], result.curve, label), (axes[1], result.log_prior_curve, "log N(z; 0, I)")):
        ax.plot(values.numpy(), color="tab:blue", alpha=0.3, linewidth=0.8)
        ax.plot(values.mean(1).numpy(), color="tab:blue", linewidth=2, label="mean over samples")
        ax.set_xlabel("optimisation step")
        ax.set_title(title)
    axes[1].axhline(typical_log_prior(result.z.shape[1]), color="grey", linestyle="--", label="typical draw")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
