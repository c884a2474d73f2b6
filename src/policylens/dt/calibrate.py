"""``policylens dt calibrate RUN``: achieved return against target RTG (Decision Transformer
Interpretability's Figure 5) and the behaviours at RTG -1, 0 and 0.9 counted from ground truth (its Table 1).

Every target plays the same levels with the same env randomness (see :mod:`policylens.dt.play`). How each
episode ended is the env's cause, read from the grid: ``success`` (reached the goal), ``obstacle`` (walked
into a moving ball), ``wall`` (walked into a wall), ``timeout`` (survived to the step limit without reaching
the goal). Writes ``RUN/calibration.json``, ``RUN/calibration.png`` and ``RUN/behaviours.md`` (``runs/NAME/`` for a
zoo model: the zoo is read-only); ones already there are refused unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import add_dataclass_args, from_args

CALIBRATION_FILES = ("calibration.json", "calibration.png", "behaviours.md")  # what it writes in the run's folder
BEHAVIOURS = (("success", "reached the goal"), ("obstacle", "hit an obstacle"), ("wall", "walked into a wall"),
              ("timeout", "survived to the time limit"))


@dataclass
class CalibrateConfig:
    run: str = ""
    """run directory (or checkpoint folder) of a decision transformer"""
    rtgs: tuple = ("-1", "-0.5", "0", "0.5", "0.9", "1")
    """target RTGs of the calibration curve"""
    table_rtgs: tuple = ("-1", "0", "0.9")
    """target RTGs of the behaviour table (played too if not among --rtgs)"""
    episodes: int = 50
    """episodes per target RTG"""
    env: str = ""
    """env spec to play (default: the one the model was trained for)"""
    start_level: int = 1_000_000
    """first level (MiniGrid reset seed): episode k plays start_level + k at every target"""
    seed: int = 0
    """seed of the env randomness and action sampling"""
    policy: str = "sample"
    """how the model's logits become actions: sample | greedy | temperature"""
    temperature: float = 1.0
    """softmax temperature for policy=temperature"""
    batch: int = 64
    """episodes played side by side"""
    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar over the targets"""
    overwrite: bool = False
    """replace the calibration already written for RUN"""


def _floats(values, name: str) -> list:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')} {','.join(map(str, values))}: expected numbers, "
                         "e.g. -1,0,0.9") from None


def behaviour_counts(result: dict) -> dict:
    """``{"success", "obstacle", "wall", "timeout", "other"}`` episode counts of one target's summary."""
    causes = result["causes"]
    counts = {cause: int(causes.get(cause, 0)) for cause, _ in BEHAVIOURS}
    counts["other"] = int(sum(n for c, n in causes.items() if c not in counts))
    return counts


def behaviour_table(results: list, table_rtgs: list) -> str:
    """Markdown: counts per behaviour at each table RTG, and Decision Transformer Interpretability's Table 1 as
    avoidance shares."""
    rows = [r for t in table_rtgs for r in results if abs(r["target_rtg"] - t) < 1e-9]
    head = "| target RTG | episodes | " + " | ".join(label for _, label in BEHAVIOURS) + " | other | mean return |"
    lines = [head, "|" + "---|" * (len(BEHAVIOURS) + 4)]
    for r in rows:
        counts, n = behaviour_counts(r), r["episodes"]
        cells = [f"{counts[c]} ({counts[c] / n:.0%})" for c, _ in BEHAVIOURS]
        lines.append(f"| {r['target_rtg']:g} | {n} | " + " | ".join(cells)
                     + f" | {counts['other']} | {r['mean_return']:.3f} |")
    lines += ["", "Avoidance (share of episodes that did not end that way; Decision Transformer Interpretability's "
              "Table 1):", "",
              "| behaviour | " + " | ".join(f"RTG {r['target_rtg']:g}" for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for cause, name in (("wall", "wall avoidance"), ("obstacle", "obstacle avoidance"), ("success", "goal avoidance")):
        shares = (1 - behaviour_counts(r)[cause] / r["episodes"] for r in rows)
        lines.append(f"| {name} | " + " | ".join(f"{x:.0%}" for x in shares) + " |")
    return "\n".join(lines)


def calibrate(cfg: CalibrateConfig) -> dict:
    """Play every target RTG, write JSON + PNG + markdown under the run directory; returns the JSON dict."""
    from tqdm.auto import tqdm

    from ..runs import prepare_out, run_dir as run_dir_of
    from .checkpoint import dt_dir, load_dt
    from .play import play, summarize
    from .plots import plot_calibration

    if not cfg.run:
        raise ValueError("dt calibrate needs a RUN: the run directory of a decision transformer")
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    rtgs, table_rtgs = _floats(cfg.rtgs, "rtgs"), _floats(cfg.table_rtgs, "table_rtgs")
    if not rtgs:
        raise ValueError("--rtgs is empty; give the target RTGs, e.g. -1,0,0.9")
    model = load_dt(cfg.run, device=cfg.device)
    run_dir = prepare_out(run_dir_of(cfg.run, dt_dir(cfg.run)), what="calibration", overwrite=cfg.overwrite,
                          parts=CALIBRATION_FILES)
    env = cfg.env or model.env
    if not env:
        raise ValueError(f"{dt_dir(cfg.run) / 'config.json'} names no env; pass --env SPEC")
    targets = sorted(set(rtgs) | set(table_rtgs))
    results = []
    for target in tqdm(targets, desc="dt calibrate", unit="rtg", disable=not cfg.progress):
        records = play(model, env, target, cfg.episodes, start_level=cfg.start_level, seed=cfg.seed,
                       policy=cfg.policy, temperature=cfg.temperature, batch=cfg.batch)
        result = summarize(records, target)
        lo_hi = model.rtg_range
        result["outside_training_range"] = bool(lo_hi and not lo_hi[0] - 1e-6 <= target <= lo_hi[1] + 1e-6)
        results.append(result)
    run_dir.mkdir(parents=True, exist_ok=True)
    table = behaviour_table(results, table_rtgs)
    report = {"run": str(run_dir), "env": env, "episodes": cfg.episodes, "policy": cfg.policy,
              "temperature": cfg.temperature, "start_level": cfg.start_level, "seed": cfg.seed,
              "rtg_range": list(model.rtg_range) if model.rtg_range else None, "results": results,
              "behaviours": [{"target_rtg": r["target_rtg"], "episodes": r["episodes"], **behaviour_counts(r)}
                             for t in table_rtgs for r in results if abs(r["target_rtg"] - t) < 1e-9]}
    (run_dir / "calibration.json").write_text(json.dumps(report, indent=2))
    plot_calibration(results, run_dir / "calibration.png", model.rtg_range)
    (run_dir / "behaviours.md").write_text(table + "\n")
    return report


def format_results(report: dict) -> str:
    lines = [f"{'target':>7}{'return':>9}   95% CI            {'success':>8}   causes"]
    for r in report["results"]:
        causes = ", ".join(f"{c} {n}" for c, n in sorted(r["causes"].items(), key=lambda kv: -kv[1]))
        flag = "  (outside the trained RTGs)" if r.get("outside_training_range") else ""
        lines.append(f"{r['target_rtg']:>7g}{r['mean_return']:>9.3f}   [{r['ci95'][0]:6.3f}, {r['ci95'][1]:6.3f}]"
                     f"{r['success_rate']:>9.2f}   {causes}{flag}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    from .cli import join_negative_values

    parser = argparse.ArgumentParser(prog="policylens dt calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory (or checkpoint folder) of a decision transformer")
    add_dataclass_args(parser, CalibrateConfig, skip=("run",))
    cfg = from_args(CalibrateConfig, parser.parse_args(join_negative_values(argv, ("--rtgs", "--table-rtgs"))))
    report = calibrate(cfg)
    print(format_results(report))
    print()
    print((Path(report["run"]) / "behaviours.md").read_text())
    print(f"wrote {', '.join(str(Path(report['run']) / name) for name in CALIBRATION_FILES)}")
    return report
