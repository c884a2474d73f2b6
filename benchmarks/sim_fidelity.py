"""Simulator fidelity against Saliency as causality's VAE+LSTM at equal compute, at horizons 1, 10 and 32.

    python -m benchmarks.sim_fidelity [--run zoo:minigrid-do8-recurrent] [--windows 1024] [--horizon 32]
    python -m benchmarks.sim_fidelity --sim DIR --lever "z_kl_weight 0.1" --baseline runs/.../sim/baseline

Runs ``policylens sim fidelity`` on the run's trained simulator (``policylens sim train RUN`` first): the baseline
is trained (or reused, ``--baseline auto``) for the simulator's own ``trained_seconds`` on the same split, windows
and batch size, then
both are scored on the same held-out windows with the agent read on simulated and on real frames. The result
keeps, per model and horizon, the mean with its bootstrap interval and count, and the paired difference
simulator - baseline; ``better_everywhere`` says whether the simulator wins on every metric at every horizon
the windows reach (intervals of the paired difference above zero for higher-is-better metrics), and for MiniGrid
views each model's recall by object type at horizons 1 and 10, and the one-step ceiling (the environment drawn
again one step after the context: a perfect sampler's score, the best guess's, and the headroom it leaves each
model) and the closed-loop agreement (the agent acting on its own in the simulator and in draws of the environment).

``--test-store STORE`` scores every episode of a store recorded apart (``policylens record RUN --seed 1000000
--out STORE``) instead of the held-out split: more episodes, tighter intervals (``--windows 4096``).

``--lever LABEL`` scores another simulator (``--sim DIR``, trained with one setting changed) the same way and
files the result under ``runs[LABEL]`` of ``results/sim_fidelity_levers.json`` instead, beside the other levers.
"""
from __future__ import annotations

import argparse
import json
import shutil

from .common import RESULTS, file_run, write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--windows", type=int, default=1024)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/bench-sim-fidelity")
    parser.add_argument("--sim", default="auto", help="the simulator folder (auto: the run's)")
    parser.add_argument("--start", default="auto", help="how the simulator scored as 'simulator' reads its "
                        "context: auto, filtered or z (sim fidelity --start)")
    parser.add_argument("--lever", default="", help="file the result as this lever in sim_fidelity_levers.json")
    parser.add_argument("--baseline", default="auto", help="auto: reuse RUN/sim/baseline when it was trained at equal "
                        "time on the same split, else train it (train: always retrain)")
    parser.add_argument("--baseline-steps", type=int, default=0, help="train a new baseline for this many steps "
                        "instead of the simulator's wall time (sim fidelity --baseline-steps)")
    parser.add_argument("--test-store", default="", help="score every episode of this store, recorded apart, "
                        "instead of the held-out split (sim fidelity --test-store)")
    parser.add_argument("--ceiling-draws", type=int, default=-1, help="sim fidelity --ceiling-draws (0: skip the "
                        "one-step ceiling, which does not depend on the model)")
    parser.add_argument("--closed-loop-draws", type=int, default=-1, help="sim fidelity --closed-loop-draws (0: "
                        "skip the closed loop)")
    parser.add_argument("--reach", type=int, default=1, help="score only windows with this many frames after the "
                        "context in their episode (sim fidelity --reach; --horizon: the far horizon on every window)")
    args = parser.parse_args(argv)
    from policylens.sim import fidelity_cli
    from policylens.sim.fidelity_plots import recall_at

    shutil.rmtree(args.out, ignore_errors=True)
    path = fidelity_cli.main([args.run, "--windows", str(args.windows), "--horizon", str(args.horizon),
                              "--baseline", args.baseline, "--device", args.device, "--out", args.out,
                              "--sim", args.sim, "--start", args.start, "--progress", "false",
                              "--baseline-steps", str(args.baseline_steps), "--test-store", args.test_store,
                              "--ceiling-draws", str(args.ceiling_draws), "--reach", str(args.reach),
                              "--closed-loop-draws", str(args.closed_loop_draws)])
    report = json.loads(path.read_text())
    higher = report["higher_is_better"]
    models = report["models"]
    summary = {name: {"training": m.get("training"), "summary": m["summary"]} for name, m in models.items()}
    diffs = models.get("baseline", {}).get("simulator_minus_this", {})
    wins = {}
    for h, metrics in diffs.items():
        for k, d in metrics.items():
            if d["count"] and k in ("obs_score", "action_agreement", "value_error"):
                low, high = d["low"], d["high"]
                wins[f"{k}@{h}"] = bool(low > 0) if higher[k] else bool(high < 0)
    recall = {}
    for h in (1, 10):
        names, rows = recall_at(report, h)
        if names:
            recall[f"h={h}"] = {model: dict(zip(names, row)) for model, row in rows.items()}
    result = {"run": args.run, "settings": report["settings"], "models": summary, "simulator_minus_baseline": diffs,
              "wins": wins, "better_everywhere": bool(wins) and all(wins.values()), "object_recall": recall,
              "one_step_ceiling": report.get("one_step_ceiling"), "closed_loop": report.get("closed_loop")}
    if args.lever:
        return file_lever(args.lever, result)
    png = RESULTS / "sim_fidelity.png"
    shutil.copyfile(path.with_suffix(".png"), png)
    if (path.parent / "closed_loop.png").is_file():
        shutil.copyfile(path.parent / "closed_loop.png", RESULTS / "sim_closed_loop.png")
    write("sim_fidelity", result)
    return result


def file_lever(label: str, result: dict) -> dict:
    """Put ``result`` under ``runs[label]`` of results/sim_fidelity_levers.json, keeping the other levers."""
    file_run("sim_fidelity_levers", label, result)
    return result


if __name__ == "__main__":
    main()
