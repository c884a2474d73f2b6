"""How blind each edit makes the zoo's MiniGrid agent, against Understanding RL Vision's control (balls
invisible).

``python -m benchmarks.edit_blindness [--episodes 1000]`` records the demo's episodes of
``zoo:minigrid-do8-rgb``, fits NMF (8 directions asked; the stable choice among 5 restarts) of ``embed`` over
them, and plays the original, the demo's three edits (the best ball direction out obliquely and as the paper
projected it; every ball direction out, obliquely) and the original with balls invisible on the same held-out
levels, for the chosen NMF and for every restart's. Filed in ``results/edit_blindness.json``: deaths by cause,
each edit's blindness share (its rise in obstacle deaths over the control's, paired bootstrap 95%) and the
share's median and range over the restarts. The paper's buzzsaw edit reached 0.39 of its own control. The
CoinRun rows are ``zoo/coinrun-clear/edit/compare-*.json`` (``policylens compare ... --invisible saw``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from . import common
from .common import write

AGENT, LAYER, K = "zoo:minigrid-do8-rgb", "embed", 8


def figure(result: dict) -> Path:
    """``results/edit_blindness.png``: each group's rate of episodes ended by each cause (Wilson 95%)."""
    from policylens.evaluate.compare import plot_rates
    from policylens.evaluate.stats import wilson_interval

    n = result["setup"]["episodes"]
    groups = [("original", result["original"]["deaths"]),
              *[(name, e["deaths"]) for name, e in result["edits"].items()],
              ("balls invisible (control)", result["control"]["deaths"])]
    causes = sorted({c for _, d in groups for c, x in d.items() if x and c != "success"})
    rows = [(name, {c: {"rate": d.get(c, 0) / n, "ci95": list(wilson_interval(d.get(c, 0), n))} for c in causes})
            for name, d in groups]
    return plot_rates(rows, causes, causes, f"Episodes ended by each cause, {n} paired held-out levels",
                      common.RESULTS / "edit_blindness.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1000, help="held-out levels each agent plays")
    parser.add_argument("--record-episodes", type=int, default=16, help="episodes whose frames choose the directions")
    parser.add_argument("--start-level", type=int, default=1_000_000, help="first held-out level")
    parser.add_argument("--figure-only", action="store_true", help="redraw the figure from the filed JSON")
    args = parser.parse_args(argv)
    if args.figure_only:
        figure(json.loads((common.RESULTS / "edit_blindness.json").read_text()))
        return
    torch.set_num_threads(1)

    from policylens.agents import load
    from policylens.demo import DemoConfig
    from policylens.demo_vision import ENTITIES, blind_experiment
    from policylens.evaluate import evaluate
    from policylens.evaluate.run import run_env_spec
    from policylens.factors.collect import open_store
    from policylens.rollouts import RecordConfig, record
    from policylens.scores import score_layer, store_frames

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "analysis").mkdir()
        store = record(RecordConfig(run=AGENT, episodes=args.record_episodes, out=str(out / "rollouts.zarr"),
                                    seed=0, progress=False))
        obs, masks = store_frames(open_store(store), kinds=list(ENTITIES))
        agent = load(AGENT)
        original = evaluate(agent, run_env_spec(AGENT), args.episodes, start_level=args.start_level, seed=0)
        cfg = DemoConfig(eval_start_level=args.start_level, seed=0)  # the demo's experiment, on more levels
        found = score_layer(agent, obs, masks, LAYER, K)
        results = blind_experiment(agent, obs, found, out, original, cfg)
    control = results["keep-others"]["compare"]["control"]
    rows = {name: {"chosen": r["chosen"], "nmi": r["nmi"], "success": r["compare"]["success"]["b"],
                   "deaths": {c: x["b"]["count"] for c, x in r["compare"]["causes"].items()},
                   "p_holm": {c: x["p_holm"] for c, x in r["compare"]["causes"].items()},
                   "blindness_share": r["compare"]["control"]["blindness"].get("ball"),
                   "stability": r["stability"], "share_spread": r["share_spread"], "restarts": r["restarts"]}
            for name, r in results.items()}
    path = write("edit_blindness", {
        "setup": {"agent": AGENT, "layer": LAYER, "k": K, "k_fitted": len(found.directions),
                  "restarts": len(found.restarts), "episodes": args.episodes, "start_level": args.start_level,
                  "record_episodes": args.record_episodes, "frames": len(obs), "seconds": round(time.time() - t0, 1)},
        "original": {"success": original["success_rate"], "deaths": dict(original["causes"])},
        "control": {"env": control["env"], "success": control["success"]["b"],
                    "deaths": {c: x["b"]["count"] for c, x in control["causes"].items()}},
        "directions": [{k: d[k] for k in ("label", "best_entity", "stability", "unstable")} | {
            "nmi": d["entities"][d["best_entity"]]["nmi"]} for d in found.scores["directions"]],
        "edits": rows, "paper_share": round((12.76 - 0.37) / (32.20 - 0.37), 3)})
    figure(json.loads(path.read_text()))
    for name, r in rows.items():
        s = r["blindness_share"] or {}
        share = "n/a (the control does not raise obstacle deaths)" if s.get("share") is None else \
            f"{s['share']:.2f}" + (f" [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]" if s["ci95"] else "")
        spread = r["share_spread"]
        over = "" if spread["median"] is None else \
            f"  over restarts {spread['median']:.2f} [{spread['min']:.2f}, {spread['max']:.2f}]"
        print(f"{name:<22} success {r['success']:.3f}  deaths {r['deaths']}  share {share}{over}")


if __name__ == "__main__":
    main()
