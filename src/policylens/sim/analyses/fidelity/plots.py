"""What ``sim fidelity`` shows of its report (``fidelity.json``): the figures (one panel per metric against the
horizon, with the one-step ceiling's marks; the closed-loop agreement) and the text tables it prints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .core import METRICS

TABLE = {"obs_score": "obs", "action_agreement": "action", "value_error": "value err", "reward_error": "reward err",
         "done_accuracy": "done acc"}


def plot_fidelity(report_path, path=None) -> Path:
    """``fidelity.png`` from ``fidelity.json``: one panel per metric against the horizon, a line per model with
    its 95% band; the last panel names each model's training budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(Path(report_path).read_text())
    pixels = report["settings"]["obs_kind"] == "pixels"
    labels = {**TABLE, "obs_score": "pixel MSE (lower is better)" if pixels else "obs cell accuracy",
              "action_agreement": "action agreement (sim vs real frames)", "value_error": "|value sim - value real|",
              "reward_error": "|reward error|", "done_accuracy": "episode-end accuracy"}
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), dpi=110)
    for ax, metric in zip(axes.flat, METRICS):
        for k, (name, model) in enumerate(report["models"].items()):
            c = {f: np.array(model["per_step"][metric][f], dtype=float) for f in ("mean", "low", "high")}
            h = np.arange(1, len(c["mean"]) + 1)
            colour = "grey" if name == "repeat" else f"C{k}"
            ax.plot(h, c["mean"], label=name, lw=1.5, color=colour, ls="--" if name == "repeat" else "-")
            ax.fill_between(h, c["low"], c["high"], alpha=0.2, color=colour)
        ceiling = report.get("one_step_ceiling") or {}
        for way, marker, fill in (("best", "*", "black"), ("sampled", "o", "none")):
            if metric in ceiling.get(way, {}):
                c = ceiling[way][metric]
                ax.errorbar([1], [c["mean"]], yerr=[[c["mean"] - c["low"]], [c["high"] - c["mean"]]], color="black",
                            marker=marker, mfc=fill, ms=9 if marker == "*" else 6, ls="none", capsize=2,
                            label=f"environment drawn again, {'best guess' if way == 'best' else 'a draw'} (h=1)")
        ax.set_title(labels[metric], fontsize=9)
        ax.set_xlabel("steps after the context", fontsize=8)
        ax.grid(alpha=0.3)
    legend = axes.flat[-1]
    legend.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    legend.legend(handles, names, loc="upper left", fontsize=9)
    lines = [f"{name}: {t.get('steps') or '?'} steps, {t.get('seconds') or '?'} s of training" for name, t in
             ((n, m.get("training") or {}) for n, m in report["models"].items()) if t]
    s = report["settings"]
    counts = next(iter(report["models"].values()))["per_step"]["obs_score"]["count"]
    reach = ", ".join(f"{counts[h - 1]} at {h}" for h in sorted({1, 10, 32, len(counts)}) if h <= len(counts))
    lines.append(f"{s['split']['windows']} held-out windows, {s['context_frames']} context frames;\n"
                 f"windows reaching step h: {reach}")
    legend.text(0.0, 0.45, "\n".join(lines), fontsize=8, va="top", transform=legend.transAxes)
    fig.suptitle(f"simulator fidelity: {s['run']}", fontsize=10)
    fig.tight_layout()
    out = Path(path) if path else Path(report_path).with_suffix(".png")
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_closed_loop(report_path, path=None) -> Path:
    """``closed_loop.png`` from ``fidelity.json``: closed-loop agreement against the step, a line and band per way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(Path(report_path).read_text())
    closed = report["closed_loop"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for way, c in closed["per_step"].items():
        x = np.arange(len(c["mean"]))
        style = {"simulator": ("C0", "-"), "a draw": ("black", ":"), "best guess": ("black", "--")}[way]
        ax.plot(x, c["mean"], color=style[0], ls=style[1], label=way if way == "simulator" else
                f"the environment: {way}")
        ax.fill_between(x, c["low"], c["high"], color=style[0], alpha=0.15)
    ax.set_xlabel("the agent's action, steps from the last context frame", fontsize=8)
    ax.set_ylabel("agreement with the environment's draws", fontsize=8)
    ax.set_title(f"closed loop: the agent acting on its own ({closed['draws']} draws of the environment, "
                 f"{report['settings']['split']['windows']} windows)", fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path) if path else Path(report_path).with_name("closed_loop.png")
    fig.savefig(out)
    plt.close(fig)
    return out


def table(report: dict) -> str:
    """The summary as a short text table, one row per model and horizon."""
    lines = [f"{'model':<24} {'h':>3} " + " ".join(f"{v:>10}" for v in TABLE.values())]
    for name, model in report["models"].items():
        for h, metrics in model["summary"].items():
            cells = [metrics[k]["mean"] for k in TABLE]
            lines.append(f"{name:<24} {h:>3} " + " ".join(f"{'-' if v is None else f'{v:.3f}':>10}" for v in cells))
    return "\n".join(lines)


def ceiling_table(report: dict) -> str:
    """The one-step ceiling (MiniGrid) as text: each way's scores, then the headroom best guess - model; empty
    when the report has none."""
    ceiling = report.get("one_step_ceiling")
    if not ceiling:
        return ""
    names = list(ceiling["best"])
    lines = [f"{'h=1, env drawn again':<24} {ceiling['draws']:>3} " + " ".join(f"{TABLE[n]:>10}" for n in names)]
    rows = [(way, ceiling[way]) for way in ("sampled", "best")]
    rows += [(f"best - {model}", diff) for model, diff in ceiling["best_minus"].items()]
    for label, cells in rows:
        lines.append(f"{label:<28} " + " ".join(f"{cells[n]['mean']:>10.3f}" for n in names))
    return "\n".join(lines)


def recall_at(report: dict, h: int) -> tuple:
    """``(object names, {model: [recall at step h or None per object]})`` from a report's object recall (MiniGrid
    views; no names for pixels)."""
    models = {n: m["object_recall"] for n, m in report["models"].items() if "object_recall" in m}
    names = list(next(iter(models.values()), {}))

    def at(r: list):
        return r[h - 1] if h <= len(r) else None

    return names, {model: [at(recall[n]["recall"]) if n in recall else None for n in names]
                   for model, recall in models.items()}


def recall_table(report: dict, horizons=(1, 10)) -> str:
    """Object recall (MiniGrid views) as a short text table, one row per model and horizon; empty for pixels."""
    names, _ = recall_at(report, 1)
    if not names:
        return ""
    lines = [f"{'recall by object':<24} {'h':>3} " + " ".join(f"{n:>8}" for n in names)]
    for h in horizons:
        for model, cells in recall_at(report, h)[1].items():
            lines.append(f"{model:<24} {h:>3} " + " ".join(f"{'-' if v is None else f'{v:.3f}':>8}" for v in cells))
    return "\n".join(lines)
