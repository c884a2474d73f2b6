"""Our PPO beside the CleanRL reference (``benchmarks.reference_ppo``), same env, same frames, same seeds.

    python -m benchmarks.ppo_vs_reference [--setups minigrid-mlp,minigrid-cnn,coinrun-impala,atari-nature] [--seeds 1,2,3]
    python -m benchmarks.ppo_vs_reference --quick      # a smoke test: two short updates of each, one seed

For each setup, ours runs with its preset's defaults and the reference with the same hyperparameters (CleanRL's
algorithm and, where CleanRL has one, its network: ppo.py's separate 64-64 tanh MLPs, ppo_procgen's IMPALA,
ppo_atari's Nature CNN; the MiniGrid CNN is ours with CleanRL's init), seeds interleaved (ours 1, reference 1, ours 2, ...) so both see the
same machine load. Per run: return of the last 100 training episodes against frames, and frames/s. Bounds measured
in the same run: the env alone with random actions, and the network alone (the rollout's forward passes plus the
update's forward+backward+Adam passes, per frame, at each trainer's precision). Writes
``results/ppo_vs_reference.json`` (setups run apart are kept side by side).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from .common import file_run
from .ppo_overhead import raw_steps_per_s
from .ppo_runs import load_beside, run_ours, run_reference

COINRUN = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false&num_levels=0"
SETUPS = {
    "minigrid-mlp": dict(frames=150_000, ours=dict(preset="minigrid-mlp"),
                         reference=dict(variant="ppo", net="mlp")),
    "minigrid-cnn": dict(frames=150_000, ours=dict(preset="minigrid"),
                         reference=dict(variant="ppo", net="policylens:cnn")),
    "coinrun-impala": dict(frames=200_000, ours=dict(preset="procgen-easy", env=COINRUN, num_envs=64, num_steps=64),
                           reference=dict(variant="ppo_procgen", net="impala")),
    "atari-nature": dict(frames=100_000, ours=dict(preset="atari"), reference=dict(variant="ppo_atari", net="nature")),
}
#: Hyperparameters the reference takes from our resolved config (its algorithm and network are its own).
SHARED = ("env", "num_envs", "num_steps", "lr", "anneal_lr", "gamma", "gae_lambda", "num_minibatches",
          "update_epochs", "norm_adv", "clip_coef", "clip_vloss", "ent_coef", "vf_coef", "max_grad_norm", "norm_reward")


def configs(setup: dict, quick: bool = False) -> tuple:
    """``(ours, reference, frames)``: our resolved TrainConfig overrides and the matching RefConfig overrides."""
    from policylens.train import TrainConfig, resolve

    ours = dict(setup["ours"])
    if quick:
        ours.update(num_envs=4, num_steps=16)
    cfg = resolve(TrainConfig(**ours))
    reference = {**setup["reference"], **{k: getattr(cfg, k) for k in SHARED}}
    frames = 2 * cfg.num_envs * cfg.num_steps if quick else setup["frames"]
    return ours, reference, frames, cfg


def net_frames_per_s(agent, cfg, bf16: bool, obs_shape, repeats: int = 2) -> float:
    """Frames/s of the network alone in one PPO iteration: ``T`` forward passes of ``N`` observations, then
    ``epochs x minibatches`` forward+backward+Adam steps; random observations."""
    N, T, mbs = cfg.num_envs, cfg.num_steps, cfg.num_minibatches
    mb = N * T // mbs
    opt = torch.optim.Adam(agent.parameters(), lr=1e-6)
    obs = torch.randint(0, 256, (max(N, mb), *obs_shape), dtype=torch.uint8)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.no_grad(), cast():
            for _ in range(T):
                agent(obs[:N])
        for _ in range(cfg.update_epochs * mbs):
            with cast():
                o = agent(obs[:mb])
            loss = o.logits.float().logsumexp(-1).mean() + o.value.float().pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - t)
    return N * T / best


def bounds(cfg, reference: dict, threads: int) -> dict:
    from policylens import envs
    from policylens.agents import AgentConfig, build
    from policylens.train.config import parse_options

    from .reference_ppo import RefConfig, make_agent, resolve as ref_resolve

    torch.set_num_threads(threads)
    env = envs.make(cfg.env, num_envs=1, seed=0)
    shape = tuple(env.observation_space.shape)
    ours = build(AgentConfig(arch=cfg.arch, obs_shape=shape, num_actions=int(env.action_space.n),
                             obs_scale=env.obs_scale, recurrent=cfg.recurrent,
                             options=parse_options(cfg.arch_options)))
    if cfg.channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    theirs = make_agent(ref_resolve(RefConfig(**reference)), env)
    env.close()
    out = {"env_random_actions": raw_steps_per_s(cfg.env, cfg.num_envs, max(8, min(cfg.num_steps, 128))),
           "net_ours": net_frames_per_s(ours, cfg, cfg.bf16, shape),
           "net_reference": net_frames_per_s(theirs, cfg, False, shape)}
    for who in ("ours", "reference"):
        out[f"combined_{who}"] = 1 / (1 / out["env_random_actions"] + 1 / out[f"net_{who}"])
    return {k: round(v, 1) for k, v in out.items()}


def _final(run: dict):
    return run["final_return_100"]


def run_setup(name: str, seeds, quick: bool, threads: int, frames_scale: float) -> dict:
    ours, reference, frames, cfg = configs(SETUPS[name], quick)
    frames = int(frames * frames_scale) if not quick else frames
    runs = {"ours": [], "reference": []}
    for seed in seeds:
        for who in ("ours", "reference"):
            r = (run_ours(seed, frames, threads=threads, **ours) if who == "ours"
                 else run_reference(seed, frames, threads=threads, **reference))
            r["curve"] = [[c["frames"], c["return_100"]] for c in r["curve"]]  # (frames, return of the last 100)
            runs[who].append({"seed": seed, **r})
            print(f"{name} {who} seed {seed}: return {_final(r)}, {r['fps']:.0f} frames/s", flush=True)
    b = bounds(cfg, reference, threads)
    fps = {who: float(np.mean([r["fps"] for r in rs])) for who, rs in runs.items()}
    finals = {who: [_final(r) for r in rs if _final(r) is not None] for who, rs in runs.items()}
    summary = {"frames": frames, "frames_scale": frames_scale, "full_frames": SETUPS[name]["frames"],
               "seeds": list(seeds), "threads": threads,
               "fps_ours": round(fps["ours"], 1), "fps_reference": round(fps["reference"], 1),
               "fps_ratio_ours_over_reference": round(fps["ours"] / fps["reference"], 2),
               "ours_share_of_its_bound": round(fps["ours"] / b["combined_ours"], 2),
               "reference_share_of_its_bound": round(fps["reference"] / b["combined_reference"], 2),
               "final_return_ours": finals["ours"], "final_return_reference": finals["reference"]}
    if finals["ours"] and finals["reference"]:
        summary["ours_mean_within_or_above_reference_spread"] = bool(np.mean(finals["ours"]) >= min(finals["reference"]))
    return {"ours_config": ours, "reference_config": reference, "bounds_frames_per_s": b, "summary": summary,
            "runs": runs, "beside": load_beside()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_vs_reference", description=__doc__.split("\n")[0])
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both trainers")
    p.add_argument("--frames-scale", type=float, default=1.0, help="multiply each setup's frames (e.g. 0.25)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 small updates, seed 1, into ppo_vs_reference_quick")
    args = p.parse_args(argv)
    names = [s for s in args.setups.split(",") if s]
    unknown = set(names) - set(SETUPS)
    if unknown:
        p.error(f"--setups {', '.join(sorted(unknown))}: expected some of {', '.join(SETUPS)}")
    seeds = [1] if args.quick else [int(s) for s in args.seeds.split(",")]
    for name in names:
        result = run_setup(name, seeds, args.quick, args.threads, args.frames_scale)
        print(name, result["summary"], result["bounds_frames_per_s"])
        file_run("ppo_vs_reference_quick" if args.quick else "ppo_vs_reference", name, result)


if __name__ == "__main__":
    main()
