"""What the sim commands found on a run, as markdown: :func:`report_lines` reads the simulator (``config.json``,
``train.csv``) and whatever the commands wrote under ``RUN/analysis`` (fidelity, hx, sample, optimize, saliency,
behaviours, swap folders; a part that was not run is left out). ``policylens sim report``
(:mod:`.cli`) writes it as ``OUT/report.md``; the demo's report uses the same text.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...command import shown
from ..fidelity.plots import recall_at

METRICS = ("obs_score", "action_agreement", "value_error")


def _json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def row(labels: list, values: list) -> str:
    """One markdown table row: the labels as they are, then the values to 3 decimals ("–" for None)."""
    return "| " + " | ".join([*map(str, labels), *("–" if v is None else f"{v:.3f}" for v in values)]) + " |"


def fidelity_rows(report: dict) -> list:
    """Markdown rows ``| model | step | obs | action | value error |`` at the report's horizons."""
    return [row([name, h], [m[k]["mean"] for k in METRICS])
            for name, model in report["models"].items() for h, m in model["summary"].items()]


DIFFERENCE_HEADER = ["| | step | obs | action agreement | value error |", "|---|---|---|---|---|"]


def difference_rows(report: dict, other: str = "baseline") -> list:
    """Markdown rows ``| simulator - OTHER | step | d [low, high] ... |`` of the paired differences at the report's
    horizons, bold where the 95% interval lies on the simulator's better side."""
    diffs, higher = report["models"].get(other, {}).get("simulator_minus_this", {}), report["higher_is_better"]
    cells = []
    for h, m in diffs.items():
        if not any(m[k]["count"] for k in METRICS):
            continue
        text = []
        for k in METRICS:
            d = m[k]
            better = d["low"] > 0 if higher[k] else d["high"] < 0
            value = f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" if d["count"] else "–"
            text.append(f"**{value}**" if d["count"] and better else value)
        count = max(m[k]["count"] for k in METRICS)
        cells.append(f"| simulator − {other} | {h} ({count} windows) | " + " | ".join(text) + " |")
    return cells


def fidelity_source(report: dict) -> str:
    """What the report scored: the held-out windows of the training split, or those of a store recorded apart."""
    split = report["settings"]["split"]
    reach = (report["settings"].get("config") or {}).get("reach", 1)
    what = (f"{split['windows']} windows of a store recorded apart (`{split['test_store']}`, "
            f"{len(split['scored_episodes'])} of its {split['store_episodes']} episodes scored)"
            if split.get("test_store") else f"{split['windows']} held-out windows")
    return what + (f" with {reach} frames after the context in their episode" if reach > 1 else "")


def baseline_budget(training: dict) -> str:
    """How the baseline's compute was set: the same wall time as the simulator's, or a number of steps."""
    if str(training.get("budget", "")).startswith("--baseline-steps"):
        return f"for {training.get('steps', '?')} steps ({training.get('seconds') or 0:.0f} s)"
    return f"for the same wall time ({training.get('steps', '?')} steps)"


def ceiling_rows(report: dict) -> list:
    """Markdown rows of the one-step ceiling (MiniGrid: the environment drawn again), as :func:`fidelity_rows`."""
    c = report.get("one_step_ceiling")
    if not c:
        return []
    return [row([f"environment drawn again, {label} ({c['draws']} draws)", 1], [c[way][k]["mean"] for k in METRICS])
            for way, label in (("sampled", "a draw"), ("best", "best guess"))]


def curve(sim_folder: Path, path: Path) -> "Path | None":
    """The simulator's training curve (held-out losses and open-loop scores) from its ``train.csv``."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader((sim_folder / "train.csv").open())) if (sim_folder / "train.csv").is_file() else []
    if not rows:
        return None
    step = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=110)
    for key in ("loss", "val_loss"):
        axes[0].plot(step, [float(r[key]) for r in rows], label=key.replace("_", " "))
    axes[0].set_yscale("log")
    for key in [k for k in rows[0] if k.startswith("open_obs") or k == "open_action_acc" or k == "val_action_acc"]:
        axes[1].plot(step, [float(r[key]) for r in rows], label=key.replace("_", " "))
    for ax, title in zip(axes, ("loss (teacher-forced + open loop)", "held-out scores")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def report_lines(run_dir: Path, sim_folder: "Path | None", link, heading: str = "##", hypothesis: str = "",
                 swaps: str = "swap*") -> list:
    """The report's markdown lines; ``link(path) -> str`` turns a figure's path into the link to write (the
    report copies, the demo points into the run)."""
    analysis = run_dir / "analysis"
    sub = heading + "#"
    lines = []
    conf = _json(sim_folder / "config.json") if sim_folder else None
    if conf and sim_folder is not None:
        c = conf["sim"]
        seconds = conf.get("trained_seconds")
        lines += [f"{sub} Simulator", "",
                  f"`{shown(sim_folder)}`: {conf.get('trained_steps')} steps"
                  + (f", {seconds:.0f} s of optimizer steps" if seconds else "")
                  + f" on {conf['data']['train_episodes']} episodes ({conf['data']['frames']} frames, "
                  f"{conf['data']['val_episodes']} held out) of `{conf['env']}`; latent {c['latent']}, deter "
                  f"{c['deter']}, stoch {c['stoch']}, {c['obs_kind']} observations.", ""]
        png = curve(sim_folder, analysis / "report" / "curve.png")
        if png:
            lines += [f"![training curve]({link(png)})", ""]
    fid = _json(analysis / "fidelity" / "fidelity.json")
    if fid:
        train = {m: v.get("training") or {} for m, v in fid["models"].items()}
        lines += [f"{sub} Fidelity", "",
                  f"{fidelity_source(fid)}, {fid['settings']['context_frames']} context frames; Saliency as causality's "
                  f"VAE+LSTM trained on the same episodes {baseline_budget(train.get('baseline', {}))} and a model "
                  "that repeats the last frame. Action agreement and value error: the real agent on simulated "
                  "against real frames.", "",
                  f"| model | step | {'obs MSE (lower is better)' if fid['settings']['obs_kind'] == 'pixels' else 'obs cell accuracy'} | action agreement | value error |",
                  "|---|---|---|---|---|",
                  *fidelity_rows(fid), *(ceiling := ceiling_rows(fid)), ""]
        if ceiling:
            lines += ["The last two rows draw the world again from each window's start, in the environment itself, one "
                      "step after the context (the first frame is a fair draw; later recorded actions were chosen for "
                      "the recorded world): what a perfect simulator scores when it samples, and what the best guess of "
                      "the world's distribution scores (the commonest code per cell, the agent's commonest action, the "
                      "median value across the draws). No model can expect much more than the best guess one step "
                      "out.", ""]
        if diffs := difference_rows(fid):
            lines += ["Paired differences, simulator minus baseline, with 95% bootstrap intervals over the scored "
                      "episodes (bold: the simulator is better with the interval clear of zero):", "",
                      *DIFFERENCE_HEADER, *diffs, ""]
        names, recall = recall_at(fid, 1)
        if names:
            lines += ["Recall by object one step after the context: the share of the recorded cells of each object "
                      "type drawn exactly (the agent's action often hangs on the goal or an obstacle).", "",
                      "| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                      *(row([m], values) for m, values in recall.items()), ""]
        lines += [f"![fidelity]({link(analysis / 'fidelity' / 'fidelity.png')})", ""]
        closed = fid.get("closed_loop")
        if closed and (analysis / "fidelity" / "closed_loop.png").is_file():
            at = closed["summary"]
            lines += ["Closed loop: the agent acting on its own from each window's filtered start, inside the simulator "
                      f"and in {closed['draws']} draws of the environment replayed to the same frame; per step the "
                      "share of draws whose outcome (the action, or ended) the simulator's matches, against what a "
                      "draw of the environment and the best guess of its spread score"
                      + "".join(f"; step {h}: {v['simulator']['mean']:.2f} (a draw {v['a draw']['mean']:.2f}, best "
                                f"guess {v['best guess']['mean']:.2f})" for h, v in at.items()) + ".", "",
                      f"![closed loop]({link(analysis / 'fidelity' / 'closed_loop.png')})", ""]
    for folder in sorted(analysis.glob("fidelity-*")):  # further scorings: a larger store, a far horizon
        more = _json(folder / "fidelity.json")
        if more and (diffs := difference_rows(more)):
            lines += [f"Scored again (`{folder.name}`): {fidelity_source(more)}; simulator minus baseline:", "",
                      *DIFFERENCE_HEADER, *diffs, ""]

    def figure(title: str, text: str, png: Path, alt: str) -> list:
        return [f"{sub} {title}", "", text, "", f"![{alt}]({link(png)})", ""]

    hx = _json(analysis / "hx" / "summary.json")
    if hx:
        lines += figure("Hidden states", f"{hx['frames']} frames of the agent's {hx['units']}-unit state; the top "
                        f"{hx['k']} principal components hold {100 * hx['pca']['cumulative'][-1]:.1f}% of the "
                        "z-scored variance.", analysis / "hx" / "pcs.png", "hidden states")
    if _json(analysis / "saliency" / "saliency.json"):
        lines += figure("Saliency through time", "Gradient norms of the target at step t against the steps before "
                        "it, with and without gradients through the environment (videos in `analysis/saliency/`):",
                        analysis / "saliency" / "norms.png", "saliency")
    if _json(analysis / "behaviours" / "behaviours.json"):
        lines += figure("Behaviours", "Cross-correlation against cross-causation of the ICA directions per "
                        "behaviour; the share of entries whose signs agree, against a shuffled null:",
                        analysis / "behaviours" / "consistency.png", "sign consistency")
    for folder in sorted(p for p in analysis.glob(swaps) if (p / "swap.md").is_file()):
        text = (folder / "swap.md").read_text().replace("### Hidden-state swap:", f"{sub} Swap")
        for png in sorted(folder.glob("swap*.png")):
            text = text.replace(f"]({png.name})", f"]({link(png)})")
        head, _, body = text.partition("\n")
        said = f"Hypothesis from ground truth: {hypothesis}." if hypothesis else ""
        lines += [f"{head} (`{folder.name}`)", "", said, body, ""]
    return lines
