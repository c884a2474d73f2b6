"""Figures of the decision-transformer suite, drawn from arrays, CSV and JSON already written (precompute and
plot are separate): the RTG distribution of the data, the training curve, the calibration curve."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CAUSE_COLOURS = {"success": "tab:green", "timeout": "tab:gray", "obstacle": "tab:blue", "wall": "tab:brown",
                 "lava": "tab:orange", "other": "tab:purple", "max_steps": "black"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rtg_distribution(returns: np.ndarray, strategy: np.ndarray, names: list, frame_rtg, png) -> Path:
    """Left: episode returns (= RTG at the first step) stacked by strategy; right: RTG of every frame (what
    the DT is trained on). ``returns`` (E,), ``strategy`` (E,) indices into ``names``, ``frame_rtg`` (F,) or None."""
    plt = _pyplot()
    edges = np.linspace(-1.05, 1.05, 43)
    fig, axes = plt.subplots(1, 2 if frame_rtg is not None else 1, figsize=(10, 3.6), dpi=120, squeeze=False)
    ax = axes[0, 0]
    groups = [returns[strategy == s] for s in range(len(names))]
    used = [i for i, g in enumerate(groups) if len(g)]
    ax.hist([groups[i] for i in used], bins=edges, stacked=True, label=[names[i] for i in used])
    ax.set_xlabel("episode return (RTG at t = 0)")
    ax.set_ylabel("episodes")
    ax.set_title(f"{len(returns)} episodes by sampling strategy", fontsize=9)
    ax.legend(fontsize=7)
    if frame_rtg is not None:
        ax = axes[0, 1]
        ax.hist(frame_rtg, bins=edges, color="tab:gray")
        ax.set_yscale("log")
        ax.set_xlabel("return-to-go")
        ax.set_ylabel("frames (log)")
        ax.set_title(f"RTG of the {len(frame_rtg)} training frames", fontsize=9)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def plot_training(csv_path, png) -> Path:
    """Loss and accuracy (train, held-out) and the in-env return at each evaluated target RTG, per step."""
    plt = _pyplot()
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    step = [int(r["step"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    for key, style in (("loss", "-"), ("val_loss", "--")):
        ax1.plot(step, [float(r[key]) if r[key] else np.nan for r in rows], style, color="tab:blue", label=key)
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy", color="tab:blue")
    twin = ax1.twinx()
    for key, style in (("acc", "-"), ("val_acc", "--")):
        twin.plot(step, [float(r[key]) if r[key] else np.nan for r in rows], style, color="tab:green", label=key)
    twin.set_ylabel("action accuracy", color="tab:green")
    twin.set_ylim(0, 1)
    ax1.legend(loc="upper center", fontsize=7)
    evaluated = [k for k in (rows[0] if rows else {}) if k.startswith("return@") and any(r[k] for r in rows)]
    for key in evaluated:
        ax2.plot(step, [float(r[key]) if r[key] else np.nan for r in rows], marker="o", label=f"target RTG {key[7:]}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("mean return in the env")
    ax2.set_ylim(-1.05, 1.05)
    ax2.axhline(0, color="black", lw=0.5)
    if evaluated:
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "no evaluation in the env", ha="center", transform=ax2.transAxes)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def plot_calibration(results: list, png, rtg_range=None) -> Path:
    """Left: achieved return against target RTG with 95% intervals and the diagonal (Decision Transformer
    Interpretability's Figure 5); right: how the episodes ended at each target. ``results``:
    :func:`~policylens.dt.calibrate.summarize` dicts."""
    plt = _pyplot()
    targets = np.array([r["target_rtg"] for r in results])
    means = np.array([r["mean_return"] for r in results])
    ci = np.array([r["ci95"] for r in results])  # (R, 2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    if rtg_range is not None:
        ax1.axvspan(rtg_range[0], rtg_range[1], color="tab:green", alpha=0.07, label="RTGs in the training data")
    ax1.plot([-1, 1], [-1, 1], color="gray", lw=0.8, ls="--", label="calibrated")
    ax1.errorbar(targets, means, yerr=[means - ci[:, 0], ci[:, 1] - means], marker="o", capsize=3,
                 color="tab:blue", label="achieved (mean, 95% CI)")
    ax1.set_xlabel("target return-to-go")
    ax1.set_ylabel("achieved return")
    ax1.set_xlim(-1.1, 1.1)
    ax1.set_ylim(-1.1, 1.1)
    ax1.legend(fontsize=7, loc="upper left")
    ax1.set_title(f"calibration ({results[0]['episodes']} episodes per target)", fontsize=9)
    causes = [c for c in CAUSE_COLOURS if any(r["causes"].get(c) for r in results)]
    bottom = np.zeros(len(results))
    labels = [f"{t:g}" for t in targets]
    for cause in causes:
        share = np.array([r["causes"].get(cause, 0) / r["episodes"] for r in results])
        ax2.bar(labels, share, bottom=bottom, color=CAUSE_COLOURS[cause], label=cause)
        bottom += share
    ax2.set_xlabel("target return-to-go")
    ax2.set_ylabel("share of episodes")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    ax2.set_title("how episodes ended (ground truth)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)
