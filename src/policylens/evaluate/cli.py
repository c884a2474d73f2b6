"""``policylens evaluate RUN --episodes N [--start-level S --num-levels L] [--json]``."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Optional

from ..config import add_dataclass_args, clear_errors, from_args


@dataclass
class EvalConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent to evaluate"""
    episodes: int = 100
    """number of episodes to play, one per level"""
    start_level: Optional[int] = None
    """first level: episode k plays level start_level + k (default: the env spec's start_level, else 0)"""
    num_levels: Optional[int] = None
    """if > 0, cycle through levels [start_level, start_level + num_levels): episode k plays start_level + (k mod num_levels)"""
    env: Optional[str] = None
    """env spec to evaluate on instead of the one the agent was trained on (level options are replaced)"""
    policy: str = "sample"
    """how actions are picked from the logits: sample | greedy | temperature"""
    temperature: float = 1.0
    """softmax temperature for policy=temperature"""
    workers: int = 1
    """worker processes (or Ray tasks) playing shards of the levels; the result does not depend on it"""
    backend: str = "process"
    """where workers run: process (local processes) | ray (a Ray cluster)"""
    ray_address: Optional[str] = None
    """Ray cluster address for backend=ray (default: start a local Ray)"""
    batch: int = 8
    """episodes each worker plays side by side with one agent forward; results are exactly reproducible for a fixed batch"""
    seed: int = 0
    """seed of the env and action randomness (episode k uses a hash of seed and k)"""
    device: str = "cpu"
    """torch device for the agent"""
    json: bool = False
    """print exactly one JSON object on stdout instead of a table"""
    per_episode: bool = False
    """include every episode's record (level, return, length, cause) in the JSON"""
    progress: bool = True
    """show a progress bar on stderr"""


def run_config(cfg: EvalConfig) -> dict:
    """Evaluate as ``cfg`` says; returns :func:`~policylens.evaluate.evaluate`'s dict."""
    from .run import evaluate

    return evaluate(cfg.run, cfg.env, cfg.episodes, start_level=cfg.start_level, num_levels=cfg.num_levels,
                    policy=cfg.policy, temperature=cfg.temperature, seed=cfg.seed, workers=cfg.workers,
                    backend=cfg.backend, batch=cfg.batch, device=cfg.device, progress=cfg.progress,
                    ray_address=cfg.ray_address)


def format_table(result: dict) -> str:
    """A readable report of an evaluation result."""
    setup, timing, n = result["setup"], result["timing"], result["episodes"]
    last = setup["start_level"] + (min(n, setup["num_levels"]) if setup["num_levels"] else n) - 1
    lo, hi = result["ci95"]
    lines = [
        f"agent        {setup['run'] or '(module)'}",
        f"env          {setup['env']}",
        f"levels       {setup['start_level']}..{last}   policy {setup['policy']}   seed {setup['seed']}",
        f"episodes     {n}",
        f"success      {result['success_rate']:.3f}   95% CI [{lo:.3f}, {hi:.3f}] (Wilson)",
        f"return       {result['mean_return']:.3f} mean   {result['return_std']:.3f} std",
        f"length       {result['mean_length']:.1f} mean   {result['length_std']:.1f} std",
        f"speed        {timing['episodes_per_s']:.2f} episodes/s   {timing['frames_per_s']:.0f} frames/s   "
        f"({timing['seconds']:.1f} s, {timing['workers']} {timing['backend']} worker(s))",
        "",
        f"{'cause':<10}{'count':>7}{'rate':>8}   95% CI",
    ]
    for cause, r in result["cause_rates"].items():
        lines.append(f"{cause:<10}{r['count']:>7}{r['rate']:>8.3f}   [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens evaluate", description=(
        "Play an agent on N levels (train or held-out) and report its success rate with a 95% Wilson "
        "interval, mean return and length, and how episodes ended (counts by cause)."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent to evaluate")
    add_dataclass_args(parser, EvalConfig, skip=("run",))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    cfg = from_args(EvalConfig, parser.parse_args(argv))
    # Only the result goes to stdout: anything a library prints goes to stderr.
    with clear_errors(parser, also=(ImportError,)), contextlib.redirect_stdout(sys.stderr):
        result = run_config(cfg)
    if cfg.json:
        if not cfg.per_episode:
            result.pop("per_episode")
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0
