"""Where the simulator's balls go: ball cells per view and ball recall, step by step from held-out windows.

    python -m benchmarks.sim_balls [--sim zoo/minigrid-do8-recurrent/sim] [--label defaults] [--windows 256]

MiniGrid-Dynamic-Obstacles' balls move at random every step. Each held-out window (the simulator's own split)
is read five ways, with the recorded actions driving every one: the recorded frames; the posterior
(teacher-forced: every recorded frame filtered, latent draws); and from the filtered context on, the prior at
its means (what ``sim fidelity`` scores), the prior drawn (what imagination draws), and the prior drawn with
each cell of the view drawn from the decoder's distribution (``rollout(view="sample")``). Per step: the mean
number of ball cells in the agent's view, and the share of the recorded ball cells drawn exactly (recall).
Filed under ``runs[LABEL]`` of ``results/sim_balls.json``.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from .common import file_run

BALL = 6  # MiniGrid's object code of a ball


def _per_step(obs: torch.Tensor, recorded: torch.Tensor, mask: torch.Tensor) -> dict:
    """Ball cells per view and recall of the recorded ones, per step over the windows' valid steps."""
    drawn, real = obs[..., 0].round() == BALL, recorded[..., 0] == BALL  # (B, T, H, W)
    valid = mask[..., None, None]  # (B, T, 1, 1)
    frames = mask.float().sum(0).clamp(min=1)  # (T,)
    hits, cells = (drawn & real & valid).sum((0, 2, 3)), (real & valid).sum((0, 2, 3))  # (T,)
    return {"balls_per_view": ((drawn & valid).sum((2, 3)).float().sum(0) / frames).tolist(),
            "recall": [float(h / c) if c else None for h, c in zip(hits.tolist(), cells.tolist())]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--sim", default="zoo/minigrid-do8-recurrent/sim")
    parser.add_argument("--label", default="the zoo's")
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12, help="steps after the context")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from policylens.sim.analyses.fidelity.cli import training_data, training_split
    from policylens.sim.analyses.fidelity.core import held_out_windows
    from policylens.sim.checkpoint import read_sim_config
    from policylens.sim.command import SimCommand, load_parts, resolve
    from policylens.sim.loop import rollout
    from policylens.sim.objective import context_posterior

    torch.set_num_threads(1)
    cfg = SimCommand(run=args.run, sim=args.sim, progress=False)
    paths = resolve(cfg, "balls")
    sim, frozen, _, _ = load_parts(cfg, paths)
    conf = read_sim_config(paths.sim)[1]
    split, k = training_split(conf), sim.config.context_frames
    w, _ = held_out_windows(training_data(paths, conf, frozen), split["val_fraction"], split["seed"], k, args.steps,
                            args.windows, args.seed)
    steps = w.obs.shape[1]

    def drawn(**kw) -> dict:  # the same draws for every way that draws
        return dict(latent="sample", generator=torch.Generator().manual_seed(args.seed), **kw)

    with torch.no_grad():
        ways = {"posterior (every frame filtered)": rollout(sim, frozen, w.context(k), steps, actions=w.action,
                                                           obs=w.obs, mask=w.mask, **drawn())}
        seen = context_posterior(w, k)
        for name, kw in (("prior, means", dict(latent="mean")), ("prior, drawn", drawn()),
                         ("prior, drawn, views drawn", drawn(view="sample"))):
            ways[name] = rollout(sim, frozen, w.context(k), steps, actions=w.action, **kw, **seen)
    result = {"simulator": str(paths.sim), "windows": int(w.obs.shape[0]), "context_frames": k,
              "recorded": _per_step(w.obs.float(), w.obs, w.mask),
              **{name: _per_step(r.obs, w.obs, w.mask) for name, r in ways.items()}}
    for name in ("recorded", *ways):
        row = np.array(result[name]["balls_per_view"])[[k, k + 2, k + 5, min(k + 9, steps - 1)]]
        print(f"{name:36s} balls per view at 1, 3, 6, 10 steps after the context: {np.round(row, 2).tolist()}")
    file_run("sim_balls", args.label, result)
    return result


if __name__ == "__main__":
    main()
