"""Decision Transformer Interpretability's findings on the zoo's two decision transformers, side by side.

    python -m benchmarks.dt_models [--runs zoo:dt-minigrid-do8,zoo:dt-minigrid-do8-raw] [--ablation-episodes 200]
                                   [--calibration-episodes 100] [--quick]

For each model: ``policylens dt calibrate`` (``--calibration-episodes`` per target RTG, the same levels for both),
then ``policylens dt analyze`` (``--ablation-episodes`` per ablation row, mean ablation, the same 2,000 windows of
the trajectory store for both; an ablation table already played with these settings is reused), both into
``runs/NAME/``; then ``policylens dt compare`` of the models into ``runs/dt-models/``, ``results/dt_models.json``
(what docs/decision-transformer-models.md quotes) and ``results/dt_models.png``. The store both were trained on
(``runs/dt/trajectories.zarr``, see zoo/README.md) must be there, or the windows each zoo model ships are used.

``--quick``: the same pipeline on tiny inputs, end to end: an untrained agent's 24 episodes of
Dynamic-Obstacles-5x5, a `grid` and a `raw` model trained 20 steps, a few episodes each; everything under
``--work`` (default ``runs/bench-dt-models-quick``), nothing into ``results/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .common import RESULTS, write

QUICK_ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?max_steps=20"


def _calibrated_with(root: Path, episodes: int) -> bool:
    path = root / "calibration.json"
    return path.is_file() and json.loads(path.read_text()).get("episodes") == episodes


def analyse(run: str, calibration_episodes: int, ablation_episodes: int, windows: int, batch: int,
            rtgs=("-1", "-0.5", "0", "0.5", "0.9", "1")) -> None:
    """Calibrate (unless done with these episodes) and analyse RUN into its outputs."""
    from policylens.dt.analysis.analyze import AnalyzeConfig, analyze, outputs
    from policylens.dt.calibrate import CalibrateConfig, calibrate

    root = outputs(run)
    if not _calibrated_with(root, calibration_episodes):
        calibrate(CalibrateConfig(run=run, rtgs=tuple(rtgs), episodes=calibration_episodes, batch=batch,
                                  progress=False, overwrite=True))
    analyze(AnalyzeConfig(run=run, episodes=ablation_episodes, windows=windows, batch=batch, progress=False,
                          resume=(root / "analysis").is_dir()))


def quick_runs(work: Path) -> list:
    """Two tiny models (``grid`` and ``raw``) trained on an untrained agent's episodes; their run directories."""
    import torch

    from policylens import agents
    from policylens.dt.collect import CollectConfig, collect
    from policylens.dt.train import DTTrainConfig, train

    torch.manual_seed(0)
    cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
    agents.save_agent(agents.build(cfg), cfg, work / "ppo" / "agent", extra={"env": QUICK_ENV})
    store = collect(CollectConfig(run=str(work / "ppo"), out=str(work / "traj.zarr"), episodes=24, num_envs=4,
                                  strategies=("greedy", "random", "bottomk:1"), progress=False, flush_seconds=0.0,
                                  resume=True))
    runs = []
    for embedding in ("grid", "raw"):
        out = work / f"dt-{embedding}"
        train(DTTrainConfig(store=str(store), out=str(out), d_model=32, d_mlp=32, steps=20, batch_size=32,
                            warmup_steps=5, eval_every=20, checkpoint_every=20, eval_episodes=0, progress=False,
                            state_embedding=embedding, overwrite=True))
        runs.append(str(out))
    return runs


def main(argv=None) -> dict:
    from policylens.dt.analysis.compare import CompareConfig, compare

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="zoo:dt-minigrid-do8,zoo:dt-minigrid-do8-raw",
                        help="comma-separated decision transformers (run directories or zoo:NAME)")
    parser.add_argument("--ablation-episodes", type=int, default=200, help="episodes per ablation row")
    parser.add_argument("--calibration-episodes", type=int, default=100, help="episodes per target RTG")
    parser.add_argument("--windows", type=int, default=2000, help="windows for means and attribution")
    parser.add_argument("--batch", type=int, default=64, help="episodes played side by side")
    parser.add_argument("--out", default="runs/dt-models", help="folder for compare.json and compare.md")
    parser.add_argument("--quick", action="store_true", help="tiny models and episodes, end to end, under --work")
    parser.add_argument("--work", default="runs/bench-dt-models-quick", help="folder of the --quick run")
    args = parser.parse_args(argv)
    if args.quick:
        work = Path(args.work)
        runs, out = quick_runs(work), work / "compare"
        settings = dict(calibration_episodes=3, ablation_episodes=2, windows=64, batch=4)
    else:
        runs, out = [r for r in args.runs.split(",") if r], Path(args.out)
        settings = dict(calibration_episodes=args.calibration_episodes, ablation_episodes=args.ablation_episodes,
                        windows=args.windows, batch=args.batch)
    for run in runs:
        print(f"== {run}")
        analyse(run, **settings)
    result = compare(CompareConfig(runs=tuple(runs), out=str(out), overwrite=True))
    result = {"settings": settings, **result}
    if args.quick:
        (Path(args.work) / "dt_models.json").write_text(json.dumps(result, indent=1))
    else:
        write("dt_models", result)
        shutil.copyfile(out / "compare.png", RESULTS / "dt_models.png")
    print((out / "compare.md").read_text().split("\n## ")[0])
    return result


if __name__ == "__main__":
    main()
