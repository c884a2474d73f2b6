"""The decision-transformer section of the demo: collect -> train -> calibrate -> analyze -> a report section.

``dt_demo(out)`` writes everything under ``OUT/dt/`` and returns the markdown section (links relative to
``OUT``, for ``OUT/report.md``): the data, the model, its calibration and behaviours, then the analysis
(ablation table, attribution by situation, the QK/OV reading of obstacle avoidance, RTG scans, patching).
The defaults fit in a few minutes on a 2-core CPU.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path


def dt_demo(out, agent: str = "zoo:minigrid-do8-rgb", episodes: int = 480, steps: int = 2000,
            calibration_episodes: int = 30, ablation_episodes: int = 30, seed: int = 0, fresh: bool = True) -> str:
    """Run the suite on small sizes; returns the report section (markdown). ``ablation_episodes`` 0 skips
    the analysis."""
    from .analysis.analyze import AnalyzeConfig, analyze
    from .analysis.report import analysis_section
    from .calibrate import CalibrateConfig, behaviour_table, calibrate
    from .collect import collect, report_paths
    from .collect_config import CollectConfig
    from .train import train
    from .train_config import DTTrainConfig

    root = Path(out) / "dt"
    if fresh:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    times = {}
    t = time.time()
    store = collect(CollectConfig(run=agent, episodes=episodes, out=str(root / "trajectories.zarr"), seed=seed,
                                  progress=False))
    times["collect"] = time.time() - t
    print(f"[demo] dt: collected {episodes} episodes -> {store}")
    t = time.time()
    train(DTTrainConfig(store=str(store), out=str(root), steps=steps, eval_every=max(steps // 3, 1),
                        checkpoint_every=steps, eval_episodes=8, seed=seed, progress=False, resume=not fresh
                        and (root / "agent" / "config.json").is_file()))
    times["train"] = time.time() - t
    print("[demo] dt: trained")
    t = time.time()
    report = calibrate(CalibrateConfig(run=str(root), episodes=calibration_episodes, seed=seed, progress=False))
    times["calibrate"] = time.time() - t
    analysis = ""
    if ablation_episodes > 0:
        t = time.time()
        # RTG 0 is left out of the demo's ablation table: its episodes mostly run to the time limit (slow)
        result = analyze(AnalyzeConfig(run=str(root), episodes=ablation_episodes, rtgs=("-1", "0.9"), windows=1000,
                                       seed=seed, progress=False))
        times["analyze"] = time.time() - t
        print("[demo] dt: analysed")
        analysis = analysis_section(result, prefix="dt/", calibration=False, level=3)
    summary = json.loads(report_paths(store)[0].read_text())
    return "\n".join(_section(summary, report, root, times, behaviour_table) + ([analysis, ""] if analysis else []))


def _section(summary: dict, report: dict, root: Path, times: dict, behaviour_table) -> list:
    conf = json.loads((root / "agent" / "config.json").read_text())
    arch, data = conf["agent"], conf["data"]
    rows = [f"| {name} | {s['episodes']} | {s['mean_return']:.3f} | "
            + ", ".join(f"{c} {n}" for c, n in sorted(s["causes"].items(), key=lambda kv: -kv[1])) + " |"
            for name, s in summary["strategies"].items()]
    table_rtgs = [b["target_rtg"] for b in report["behaviours"]]
    return [
        "## Decision transformer",
        "",
        f"Trajectories: {summary['episodes']} episodes ({summary['frames']} frames) of the PPO agent with a mixture "
        "of sampling strategies, recorded with the symbolic 7x7x3 view the decision transformer reads:",
        "",
        "| strategy | episodes | mean return | how episodes ended |",
        "|---|---|---|---|",
        *rows,
        "",
        f"![RTG distribution](dt/{Path(summary['png']).name})",
        "",
        f"Model: {arch['n_layers']} layer(s), {arch['n_heads']} heads, d_model {arch['d_model']}, context "
        f"{arch['context']} timestep(s), `{arch['state_embedding']}` state embedding, LayerNorm "
        f"{'on' if arch['layer_norm'] else 'off'}; trained on {data['train_episodes']} episodes, "
        f"{data['val_episodes']} held out.",
        "",
        "![training curve](dt/curve.png)",
        "",
        f"Calibration ({report['episodes']} episodes per target, the same held-out levels at every target):",
        "",
        "![calibration](dt/calibration.png)",
        "",
        f"Behaviours at RTG {', '.join(f'{t:g}' for t in table_rtgs)} from ground truth:",
        "",
        behaviour_table(report["results"], table_rtgs),
        "",
        "Time: " + " | ".join(f"{k} {v:.0f} s" for k, v in times.items()),
        "",
    ]
