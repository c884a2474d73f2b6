"""Agents inside the zoo's MiniGrid simulator against the same agents in the environment: has the simulator
learnt the environment or the habits of the agent it was trained with? (Saliency as causality drives its
simulator with a trained, an untrained and a scripted agent.)

    nice -n 10 python -m benchmarks.sim_agents          # 500 episodes per agent, real and imagined (~30 min)
    python -m benchmarks.sim_agents --quick             # 6 episodes, a short horizon: the smoke test

``policylens sim agents`` (:func:`policylens.sim.agents_cli.run_agents`) on ``zoo:minigrid-do8-recurrent`` with
its zoo simulator: the trained agent, an untrained one (its architecture, weights from seed 0), "always
forward" and "always turn left" each play the same levels in the environment and, from each real episode's
first frames, in the simulator. Writes ``results/sim_agents.json`` (the settings; per agent the real and
imagined outcome rates by cause with Wilson intervals, the imagined ends as their views show them, the share of
paired episodes that agree, the mean steps to the end), ``results/sim_agents.png`` and the videos (real beside
imagined) into ``--video-dir`` (default ``docs/simulator-agents``). ``--quick`` files ``sim_agents_quick`` and
keeps its videos in its temporary folder.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from . import common

AGENTS = "trained,untrained,scripted:forward,scripted:left"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--agents", default=AGENTS)
    parser.add_argument("--episodes", type=int, default=500, help="per agent, real and imagined")
    parser.add_argument("--videos", type=int, default=4, help="paired episodes per agent in its video")
    parser.add_argument("--video-dir", default=str(DOCS / "simulator-agents"))
    parser.add_argument("--quick", action="store_true", help="6 episodes, horizon 24: the smoke test")
    args = parser.parse_args(argv)
    from policylens.sim.agents_cli import AgentsConfig, run_agents

    name = "sim_agents_quick" if args.quick else "sim_agents"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = AgentsConfig(run=args.run, agents=args.agents, episodes=6 if args.quick else args.episodes,
                           horizon=24 if args.quick else 0, videos=1 if args.quick else args.videos,
                           out=str(Path(tmp) / "agents"), progress=not args.quick)
        t0 = time.perf_counter()
        result = run_agents(cfg)
        seconds = time.perf_counter() - t0
        out = Path(result["out"])
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "agents.png", common.RESULTS / f"{name}.png")
        videos = {}
        for agent, row in result["agents"].items():
            row.pop("per_episode")
            if row.get("video") and not args.quick:
                target = Path(args.video_dir) / Path(row["video"]).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / row["video"], target)
                videos[agent] = target.name
            row.pop("video", None)
    result.pop("out")
    result["config"].pop("out")
    result.update(videos=videos, figure=f"{name}.png", seconds=round(seconds, 1))
    common.write(name, result)
    return result


if __name__ == "__main__":
    main()
