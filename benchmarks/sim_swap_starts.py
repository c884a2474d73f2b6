"""What the agents see and do inside the simulator in the swap experiment, by how imagined episodes start.

    python -m benchmarks.sim_swap_starts --swap-dir runs/minigrid-do8-recurrent/analysis/swap-ic1-ic3

For ``sim swap``'s two starts (``z``: the agents act from the first frame, decoded from z alone; ``filtered``:
the real context frames through the posterior, the agents acting from the last one), the same imagined episode
beginnings and noise for the agent, the swapped agent and the random control (``SWAP_DIR/swapped`` and
``SWAP_DIR/control``, written by ``sim swap``): the share of context frames showing a goal (the real frames'
share beside it), the share of forward among the agents' own actions, the ball cells per view at some steps,
and the outcomes within the horizon. MiniGrid symbolic views only (object codes 6 ball, 8 goal).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .common import write

BALL, GOAL, FORWARD = 6, 8, 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--sim", default="auto", help="the simulator folder (auto: the run's)")
    parser.add_argument("--store", default="", help="rollouts store of the starts (default: the run's)")
    parser.add_argument("--swap-dir", required=True, help="a sim swap output folder (its swapped/ and control/)")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=32, help="imagined steps after the context")
    parser.add_argument("--name", default="sim_swap_starts")
    args = parser.parse_args(argv)
    from policylens.agents import load
    from policylens.sim.checkpoint import load_sim
    from policylens.sim.command import SimCommand, resolve
    from policylens.sim.data import load_sim_data
    from policylens.sim.imagined import episode_starts, imagined_outcomes, imagined_start
    from policylens.sim.loop import FrozenAgent, Noise, rollout

    torch.set_num_threads(1)
    paths = resolve(SimCommand(run=args.run, sim=args.sim, store=args.store, progress=False), "benchmark")
    agent = load(args.run)
    sim, _ = load_sim(paths.sim, agent=agent)
    k = sim.config.context_frames
    windows = episode_starts(load_sim_data(paths.store), args.samples, k, 0)
    noise = Noise.draw(args.samples, k + args.steps, sim, torch.Generator().manual_seed(0))
    agents = {"original": agent, **{n: load(Path(args.swap_dir) / n / "agent") for n in ("swapped", "control")}}
    real_goal = (windows.obs[..., 0] == GOAL).flatten(2).any(-1).float().mean(0)  # (K,)
    result = {"run": args.run, "simulator": str(paths.sim), "samples": args.samples, "steps": args.steps,
              "real_context_goal_share": [round(float(x), 3) for x in real_goal], "starts": {}}
    probes = sorted(t for t in {k - 1, k + 1, k + 5, k + args.steps - 1} if t < k + args.steps)  # views counted
    for start in ("z", "filtered"):
        real, first = imagined_start(windows, k, start)
        rows = {}
        for name, model in agents.items():
            with torch.no_grad():
                r = rollout(sim, FrozenAgent(model), windows.context(k), k + args.steps, mode="sample",
                            noise=noise, **real)
            codes = r.obs[..., 0].round()  # (B, T, W, H)
            own = r.action_index[:, first:]  # (B, T - first) the agent's own actions
            records = imagined_outcomes(r, sim.config, getattr(model, "action_names", ()), first)
            causes = sorted({x["cause"] for x in records})
            rows[name] = {
                "context_goal_share": [round(float(x), 3) for x in
                                       (codes[:, :k] == GOAL).flatten(2).any(-1).float().mean(0)],
                "forward_share": round(float((own == FORWARD).float().mean()), 3),
                "ball_cells_per_view": {t: round(float((codes[:, t] == BALL).flatten(1).sum(-1).float().mean()), 2)
                                        for t in probes},
                "outcomes": {c: round(sum(x["cause"] == c for x in records) / len(records), 3) for c in causes}}
            print(start, name, rows[name])
        result["starts"][start] = rows
    write(args.name, result)
    return result


if __name__ == "__main__":
    main()
