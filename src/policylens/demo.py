"""``policylens demo``: the main job on the embedded default, MiniGrid Dynamic-Obstacles-8x8 from RGB.

agent (the zoo's, or trained here) -> record episodes -> evaluate with causes -> ``OUT/report.md`` with the
training curve. Later suites add their analyses as further sections.

An OUT that already exists is refused unless ``--overwrite`` (which replaces it; ``make demo`` passes it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .config import add_dataclass_args, from_args

DEFAULT_ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb"


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    """run directory the demo writes"""
    agent: str = "zoo:minigrid-do8-rgb"
    """the agent to analyse (a run dir or zoo:NAME); ignored when train_frames > 0"""
    train_frames: int = 0
    """train a fresh agent for this many frames instead of taking the zoo's (0: take the zoo's)"""
    record_episodes: int = 16
    """episodes recorded into OUT/rollouts.zarr"""
    eval_episodes: int = 200
    """episodes (levels) of the evaluation"""
    eval_start_level: int = 1_000_000
    """first evaluation level (MiniGrid reset seed): held out from training's random seeds"""
    workers: int = 2
    """evaluation worker processes"""
    seed: int = 0
    """seed of training, recording and evaluation"""
    vision: bool = True
    """add the vision analyses: NMF directions scored against ground truth, attribution, the editing experiment"""
    dt: bool = False
    """add the decision-transformer section: collect -> train -> calibrate -> analyse (about 4 more minutes)"""
    sim: bool = False
    """add the simulator section on the zoo's recurrent agent: record -> sim train -> fidelity, hx, sample,
    optimize, saliency, behaviours, swap (OUT/recurrent)"""
    overwrite: bool = False
    """replace the demo already in OUT (without it an existing OUT is refused; `make demo` passes it, so it runs again)"""


FALLBACK_FRAMES = 100_000  # trained here when the zoo's agent is missing (a few minutes on 2 cores)


def _take_agent(cfg: DemoConfig, out: Path) -> dict:
    from .agents import resolve_run
    from .agents.files import copy_agent

    if cfg.train_frames <= 0:
        try:
            resolve_run(cfg.agent)
        except FileNotFoundError as e:
            print(f"[demo] {e}; training a fresh agent for {FALLBACK_FRAMES} frames instead")
            cfg.train_frames = FALLBACK_FRAMES
    if cfg.train_frames > 0:
        from .train import TrainConfig, train

        train(TrainConfig(out=str(out), preset="minigrid", env=DEFAULT_ENV, total_frames=cfg.train_frames,
                          seed=cfg.seed))
        return {"source": f"trained here for {cfg.train_frames} frames"}
    src = copy_agent(cfg.agent, out)
    run_dir = src.parent if src.name == "agent" else src
    for name in ("train.csv", "curve.png"):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out / name)
    return {"source": f"taken from {cfg.agent}"}


def run_demo(cfg: DemoConfig) -> Path:
    from .agents import load, read_config
    from .agents.layers import format_layers
    from .evaluate import evaluate
    from .rollouts import open as open_store
    from .rollouts.record import RecordConfig, record
    from .runs import prepare_out

    out = prepare_out(cfg.out, what="demo run", overwrite=cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t = time.time()
    origin = _take_agent(cfg, out)
    times["agent"] = time.time() - t
    print(f"[demo] agent: {origin['source']}")

    t = time.time()
    store_path = out / "rollouts.zarr"
    shutil.rmtree(store_path, ignore_errors=True)
    record(RecordConfig(run=str(out), episodes=cfg.record_episodes, out=str(store_path), seed=cfg.seed))
    times["record"] = time.time() - t
    print(f"[demo] recorded {cfg.record_episodes} episodes -> {store_path}")

    t = time.time()
    result = evaluate(str(out), episodes=cfg.eval_episodes, start_level=cfg.eval_start_level,
                      workers=cfg.workers, seed=cfg.seed, progress=True)
    (out / "evaluation.json").write_text(json.dumps({k: v for k, v in result.items() if k != "per_episode"}, indent=2))
    times["evaluate"] = time.time() - t
    print(f"[demo] success {result['success_rate']:.3f} (95% CI {result['ci95'][0]:.3f}-{result['ci95'][1]:.3f})")

    config = read_config(out / "agent")
    store = open_store(store_path)
    vision = []
    if cfg.vision:
        from .demo_vision import vision_section

        print("[demo] vision: directions, scores, attribution, editing")
        vision, more = vision_section(out, store, load(out), result, cfg)
        times.update(more)
    if cfg.dt:
        from .dt import dt_demo

        print("[demo] decision transformer: collect, train, calibrate, analyse")
        t = time.time()
        vision = vision + ["", dt_demo(out, seed=cfg.seed), ""]
        times["decision transformer"] = time.time() - t
    if cfg.sim:
        from .sim.demo import sim_demo

        print("[demo] simulator: record, train, fidelity, hx, sample, optimize, saliency, behaviours, swap")
        t = time.time()
        vision = vision + ["", sim_demo(out, seed=cfg.seed), ""]
        times["simulator"] = time.time() - t
    report = _report(cfg, origin, config, result, store, format_layers(load(out)), times, vision)
    (out / "report.md").write_text(report)
    print(f"[demo] report: {out / 'report.md'}")
    return out


def _report(cfg, origin, config, result, store, layers: str, times: dict, vision: list) -> str:
    agent = config["agent"]
    lo, hi = result["ci95"]
    causes = "\n".join(f"| {c} | {n} | {n / result['episodes']:.1%} |"
                       for c, n in sorted(result["causes"].items(), key=lambda kv: -kv[1]) if n)
    frames = sum(len(store.episode(i)["reward"]) for i in range(len(store)))
    lines = [
        "# policylens demo",
        "",
        f"Environment: `{config.get('env')}`. Agent: `{agent['arch']}`"
        f"{' (recurrent)' if agent.get('recurrent') else ''}, {origin['source']}"
        f"{' (' + format(config['frames'], ',') + ' training frames)' if config.get('frames') else ''}.",
        "",
        "## Training curve",
        "",
        "![training curve](curve.png)" if (Path(cfg.out) / "curve.png").is_file() else "(no training curve)",
        "",
        "## Evaluation",
        "",
        f"{result['episodes']} episodes on held-out levels {cfg.eval_start_level}..{cfg.eval_start_level + result['episodes'] - 1}"
        f" (sampled actions):",
        "",
        "| metric | value |",
        "|---|---|",
        f"| success rate | {result['success_rate']:.3f} (95% CI {lo:.3f} to {hi:.3f}) |",
        f"| mean return | {result['mean_return']:.3f} |",
        f"| mean length | {result['mean_length']:.1f} |",
        "",
        "Episode ends by cause (read from the grid, not from pixels):",
        "",
        "| cause | episodes | share |",
        "|---|---|---|",
        causes,
        "",
        "## Recorded rollouts",
        "",
        f"`rollouts.zarr`: {len(store)} episodes, {frames} frames, fields: {', '.join(store.fields)}.",
        "",
        *vision,
        "## The agent's layers (hook points)",
        "",
        "```",
        layers,
        "```",
        "",
        "## Time",
        "",
        " | ".join(f"{k}: {v:.1f} s" for k, v in times.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="policylens demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, DemoConfig)
    out = run_demo(from_args(DemoConfig, parser.parse_args(argv)))
    print(f"[demo] wrote {out}")
