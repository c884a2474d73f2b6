"""MiniGrid Dynamic-Obstacles-8x8 from scratch, no curriculum, each preset at its defaults: time to 95% success.

    python -m benchmarks.minigrid_time_to_95 [--setups mlp,rgb,recurrent] [--threads 2] [--seed 1]
    python -m benchmarks.minigrid_time_to_95 --quick          # a smoke test of the plumbing (a few updates)

For each setup, ``policylens train --preset P`` runs until the last 100 training episodes succeed
``--stop-success`` of the time (or its frame cap), writing ``runs/time_to_95/SETUP``; then the agent plays 200
held-out levels (``policylens evaluate RUN --episodes 200 --start-level 1000000``). Recorded: frames and seconds
(wall and CPU) until training success first reached 95% and until the stop, the held-out success with its 95%
interval, and the curve. The reference (``benchmarks.reference_ppo``, CleanRL's algorithm) trains beside it on the
same env and seed for the figure where it has the network (MLP; the RGB CNN as ours with CleanRL's init).
Timings depend on the machine and what else runs on it: the JSON says how many threads and what else was
loaded. Writes ``results/minigrid_time_to_95.json`` and ``results/minigrid_time_to_95.png``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from . import common
from .common import file_run
from .ppo_runs import DO8, TARGET_SUCCESS, first_reaching, load_beside, run_ours, run_reference

RUNS = Path("runs/time_to_95")
#: setup -> (preset, the target minutes on 2 cores, frame cap)
SETUPS = {
    "mlp": dict(preset="minigrid-mlp", minutes=2, cap=400_000),
    "rgb": dict(preset="minigrid", minutes=10, cap=800_000),
    "recurrent": dict(preset="minigrid-recurrent", minutes=5, cap=600_000),
}
HELD_OUT = dict(episodes=200, start_level=1_000_000)


def reference_for(preset: str, quick: bool) -> "dict | None":
    """The reference's overrides for a preset: our resolved hyperparameters, its algorithm; None where CleanRL's
    algorithm has no counterpart here (recurrent)."""
    from policylens.train import TrainConfig, resolve

    from .ppo_vs_reference import SHARED

    cfg = resolve(TrainConfig(preset=preset))
    if cfg.recurrent:
        return None
    shared = {k: getattr(cfg, k) for k in SHARED}
    if quick:
        shared.update(num_envs=4, num_steps=16, num_minibatches=2)
    return {**shared, "variant": "ppo", "net": "mlp" if cfg.arch == "mlp" else f"policylens:{cfg.arch}"}


def run_setup(name: str, threads: int, seed: int, stop: float, quick: bool, with_reference: bool = True) -> dict:
    from policylens.evaluate import evaluate

    load_before = load_beside()
    setup = SETUPS[name]
    out = RUNS / name
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(num_envs=4, num_steps=16, num_minibatches=2) if quick else {}
    cap = 4 * 16 * 2 if quick else setup["cap"]
    ours = run_ours(seed, cap, stop, keep=str(out), preset=setup["preset"], threads=threads, **extra)
    hit = first_reaching(ours["curve"], "success_100", TARGET_SUCCESS)
    held = evaluate(str(out), episodes=4 if quick else HELD_OUT["episodes"], start_level=HELD_OUT["start_level"])
    result = {"preset": setup["preset"], "command": f"policylens train --preset {setup['preset']} --seed {seed} "
              f"--stop-success {stop} --threads {threads} --out {out}", "target_minutes": setup["minutes"],
              "threads": threads, "seed": seed, "stop_success": stop,
              "frames_to_95": hit and hit["frames"], "seconds_to_95": hit and hit["seconds"],
              "frames_at_stop": ours["frames"], "wall_seconds_at_stop": ours["wall_seconds"],
              "cpu_seconds_at_stop": ours["cpu_seconds"],
              "held_out": {**HELD_OUT, "episodes": held["episodes"], "success_rate": held["success_rate"],
                           "ci95": held["ci95"], "causes": held["causes"]},
              "met": bool(held["success_rate"] >= TARGET_SUCCESS and ours["wall_seconds"] <= 60 * setup["minutes"]),
              "curve": [[c["frames"], c["seconds"], c["return_100"], c["success_100"]] for c in ours["curve"]]}
    reference = reference_for(setup["preset"], quick) if with_reference else None
    if reference is not None:
        ref = run_reference(seed, ours["frames"], 0.0, threads=threads, **reference)
        result["reference"] = {"config": reference, "fps": ref["fps"], "frames_to_95": ref["frames_to_95"],
                               "seconds_to_95": ref["seconds_to_95"],
                               "curve": [[c["frames"], c["seconds"], c["return_100"], c["success_100"]]
                                         for c in ref["curve"]]}
    elif not with_reference:
        result["reference_note"] = "run apart (benchmarks.ppo_vs_reference)"
    result["beside"] = {"before": load_before, "after": load_beside()}  # the machine is shared: its load
    return result


def plot(filed: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = filed["runs"]
    fig, axes = plt.subplots(len(runs), 2, figsize=(9, 2.6 * len(runs)), dpi=110, squeeze=False)
    for row, (name, r) in zip(axes, runs.items()):
        for ax, x, label in ((row[0], 0, "frames"), (row[1], 1, "seconds (wall)")):
            for who, data, style in (("ours", r, "-"), ("reference", r.get("reference"), "--")):
                if data:
                    pts = [c for c in data["curve"] if c[2] is not None]
                    ax.plot([c[x] for c in pts], [c[2] for c in pts], style, label=f"{who}")
            ax.axhline(0.8, color="grey", lw=0.6, ls=":")
            ax.set_xlabel(label)
            ax.set_ylabel("return (last 100 episodes)")
            ax.set_title(f"{name}: --preset {r['preset']} (held-out {r['held_out']['success_rate']:.0%})", fontsize=8)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.minigrid_time_to_95", description=__doc__.split("\n")[0])
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stop-success", type=float, default=0.97, help="training stops once the last 100 episodes "
                   "succeed this often (above 0.95, so that 200 held-out levels clear 95%%)")
    p.add_argument("--quick", action="store_true", help="smoke test: two small updates per setup, 4 held-out levels")
    p.add_argument("--no-reference", action="store_true", help="train ours only (the reference's curves come from "
                   "benchmarks.ppo_vs_reference)")
    args = p.parse_args(argv)
    names = [s for s in args.setups.split(",") if s]
    if set(names) - set(SETUPS):
        p.error(f"--setups: expected some of {', '.join(SETUPS)}")
    name_json = "minigrid_time_to_95_quick" if args.quick else "minigrid_time_to_95"
    for name in names:
        t = time.time()
        result = run_setup(name, args.threads, args.seed, args.stop_success, args.quick, not args.no_reference)
        print(f"{name}: {result['frames_to_95']} frames / {result['seconds_to_95']} s to 95% training success; "
              f"held-out {result['held_out']['success_rate']:.3f}; {time.time() - t:.0f} s in all", flush=True)
        file_run(name_json, name, result, target=TARGET_SUCCESS, env=DO8)
    plot(json.loads((common.RESULTS / f"{name_json}.json").read_text()), common.RESULTS / f"{name_json}.png")


if __name__ == "__main__":
    main()
