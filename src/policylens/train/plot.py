"""The training-curve figure, read from ``train.csv`` (precompute and plot are separate)."""
from __future__ import annotations

import csv
from pathlib import Path


def plot_curve(csv_path, png_path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("return_mean")]
    frames = [int(r["frames"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=120)
    ax.plot(frames, [float(r["return_mean"]) for r in rows], color="tab:blue", label="mean return")
    ax.set_xlabel("frames")
    ax.set_ylabel("mean episode return", color="tab:blue")
    if rows and rows[0].get("success_rate", "") != "":
        ax2 = ax.twinx()
        ax2.plot(frames, [float(r["success_rate"]) for r in rows], color="tab:green", alpha=0.8, label="success")
        ax2.set_ylabel("success rate", color="tab:green")
        ax2.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
