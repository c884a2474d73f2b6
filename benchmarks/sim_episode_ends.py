"""Which episode ends a simulator flags: the held-out episode ends one step after the context, read teacher-forced
(every recorded frame through the posterior) and filtered (the context frames only, the prior after), against the
share of every episode end it flags teacher-forced.

    python -m benchmarks.sim_episode_ends --sim runs/minigrid-do8-recurrent/sim-priorstep [--windows 1024]

The windows are ``sim fidelity``'s held-out windows (the simulator's split, context + 32 frames); a flag is a
done logit above 0, at the recorded actions and latent means (``--draws N``: a mean episode-end probability above
0.5 over N rollouts with the latents drawn instead, to tell a head that hedges on the prior's mean from one that
misreads the state). Files the counts under ``runs[LABEL]`` (default: the
simulator folder's name) of ``results/sim_episode_ends.json``.
"""
from __future__ import annotations

import argparse

from .common import file_run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--sim", required=True, help="the simulator folder")
    parser.add_argument("--windows", type=int, default=1024)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--draws", type=int, default=0, help="0: latent means; N: average N rollouts' draws")
    parser.add_argument("--label", default="", help="the name to file the counts under (default: the folder's)")
    args = parser.parse_args(argv)
    from pathlib import Path

    import torch

    from policylens.sim.analyses.fidelity.cli import FidelityConfig, training_data, training_split
    from policylens.sim.analyses.fidelity.core import held_out_windows
    from policylens.sim.checkpoint import read_sim_config
    from policylens.sim.command import load_parts, resolve
    from policylens.sim.loop import rollout
    from policylens.sim.objective import seen_mask

    cfg = FidelityConfig(run=args.run, sim=args.sim, windows=args.windows, horizon=args.horizon, progress=False)
    paths = resolve(cfg, "fidelity")
    sim, frozen, _, _ = load_parts(cfg, paths)
    _, conf = read_sim_config(paths.sim)
    split, k = training_split(conf), sim.config.context_frames
    w, _ = held_out_windows(training_data(paths, conf, frozen), split["val_fraction"], split["seed"], k, args.horizon,
                            args.windows)
    steps, valid = w.obs.shape[1], w.mask.bool()
    context = seen_mask(w.mask, torch.full((len(w.mask),), k))  # (N, T) the context frames alone
    def flagged(seen):  # (N, T) episode ends flagged from the frames ``seen`` through the posterior
        if not args.draws:
            return rollout(sim, frozen, w.context(k), steps, actions=w.action, obs=w.obs, mask=seen,
                           latent="mean").done_logit > 0
        gen = torch.Generator().manual_seed(0)
        return sum(torch.sigmoid(rollout(sim, frozen, w.context(k), steps, actions=w.action, obs=w.obs, mask=seen,
                                         generator=gen).done_logit) for _ in range(args.draws)) / args.draws > 0.5

    with torch.no_grad():
        flags = {name: flagged(seen) for name, seen in (("teacher-forced", w.mask), ("filtered", context))}
    ends = w.done.bool() & valid  # (N, T)
    first = ends[:, k]  # (N,) ends one step after the context
    out = {"ends_one_step_after_context": int(first.sum()),
           **{f"flagged_{name}": int((f[:, k] & first).sum()) for name, f in flags.items()},
           "ends_in_windows": int(ends.sum()), "flagged_teacher_forced_all": int((flags["teacher-forced"] & ends).sum()),
           **{f"false_flags_{name}_one_step_after_context": int((f[:, k] & valid[:, k] & ~first).sum())
              for name, f in flags.items()}}
    print(out)
    label = args.label or Path(args.sim).name + (f" ({args.draws} draws)" if args.draws else "")
    file_run("sim_episode_ends", label, {"sim": args.sim, "windows": len(w.mask), "horizon": args.horizon,
                                         "latents": f"{args.draws} draws" if args.draws else "means", **out})
    return out


if __name__ == "__main__":
    main()
