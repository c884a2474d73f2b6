"""rl-attention's washout claim, measured: SmoothGrad and VarGrad maps of the attention layer against the number of
noise samples ("the more samples we used, the more washed out the images became").

    nice -n 10 python -m benchmarks.attention_washout --run RUN --label NAME      # a trained attention agent
    nice -n 10 python -m benchmarks.attention_washout --untrained atari:breakout --label breakout-untrained
    python -m benchmarks.attention_washout --figure-only                          # redraw from the JSON

The agent plays its env (one env, seed ``--seed``, actions sampled from its policy with a seeded generator) and
every ``--every``-th of the first ``--frames`` x ``--every`` frames is kept. For each target read at layer
``attention`` (``peak``: each frame's most attended unit, head and position; ``entropy``: the maps' entropy
summed over the heads, what rl-attention penalises) and each method (the plain gradient once; SmoothGrad and
VarGrad with 1, 2, 4, ..., 256 samples at noise ``--noise`` of each frame's pixel range), the input map
(|attribution summed over channels|, normalised) is scored by its normalised entropy (1: uniform, washed out)
and Gini coefficient (higher: sparser) by :func:`policylens.attribution.washout`, with mean, std and quartiles over
the frames. Filed under ``runs[LABEL]`` of ``results/attention_washout.json`` (other labels are kept), with
``results/attention_washout.png`` (entropy against samples, one panel per run and target, one curve per method).
The write-up ran on attention agents trained on Breakout for 10M steps; a run filed here says what it ran on.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import common
from .common import file_run

METHODS = ("saliency", "smoothgrad", "vargrad")
NOTE = ("rl-attention measured SmoothGrad and VarGrad of the attention layer on attention agents trained on Atari "
        "Breakout (PPO, 10M steps); a run here is like for like only when its agent is one of those")


def play(agent, env_spec: str, frames: int, every: int, seed: int) -> np.ndarray:
    """``(frames, H, W, C)``: every ``every``-th observation of the agent playing one env (seeded)."""
    from policylens.envs import make

    env = make(env_spec, num_envs=1, seed=seed)
    g = torch.Generator().manual_seed(seed)
    obs, kept, state = env.reset(seed), [], None
    first = torch.ones(1, dtype=torch.bool)
    try:
        for t in range(frames * every):
            if t % every == 0:
                kept.append(obs[0].copy())
            with torch.no_grad():
                out = agent(torch.as_tensor(obs), state, first) if getattr(agent, "recurrent", False) else agent(
                    torch.as_tensor(obs))
            state = getattr(out, "state", None)
            action = torch.multinomial(torch.softmax(out.logits.float(), -1), 1, generator=g)[:, 0]
            obs, _, done, _ = env.step(action.numpy())
            first = torch.as_tensor(done)
    finally:
        env.close()
    return np.stack(kept)


def load_subject(args):
    """``(agent, env spec, description)`` for ``--run`` or ``--untrained ENV``."""
    from policylens.agents import build, load, read_config, resolve_run

    if args.run:
        agent_dir = resolve_run(args.run)
        config = read_config(agent_dir)
        info = {"run": str(args.run), "trained": True, "arch": config["agent"]["arch"],
                "options": config["agent"].get("options", {}), "env": config.get("env"),
                "train_frames": (config.get("train") or {}).get("total_frames"),
                "attention_entropy_coef": (config.get("train") or {}).get("attention_entropy_coef")}
        log = agent_dir.parent / "train.csv"
        if log.is_file():  # how far it learnt: the last tenth of its training log
            from policylens.sweep import tail_mean

            info.update({f"final_{k}": tail_mean(log, k) for k in ("return_mean", "success_rate", "attention_entropy")})
        return load(args.run).eval(), args.env or config.get("env"), info
    from policylens.envs import make

    env = make(args.untrained, num_envs=1, seed=0)
    shape, actions = env.observation_space.shape, int(env.action_space.n)
    env.close()
    base = "nature" if shape[0] >= 64 else "cnn"
    torch.manual_seed(0)
    agent = build(dict(arch="attention", obs_shape=tuple(shape), num_actions=actions, options={"base": base}))
    return agent.eval(), args.untrained, {"run": None, "trained": False, "arch": "attention",
                                          "options": {"base": base}, "env": args.untrained, "weights": "seed 0"}


def measure(args) -> dict:
    from policylens.attribution.washout import washout

    torch.set_num_threads(1)
    agent, env_spec, info = load_subject(args)
    started = time.perf_counter()
    obs = play(agent, env_spec, args.frames, args.every, args.seed)
    samples = [int(s) for s in args.samples.split(",")]
    targets: dict = {}
    for target in args.targets.split(","):
        targets[target] = {}
        for method in METHODS:
            curve = washout(agent, obs, layer="attention", target=target, method=method, samples=samples,
                            noise=args.noise, seed=args.seed)
            curve.pop("per_observation")
            curve.pop("units")
            targets[target][method] = curve
            print(f"{target:8s} {method:10s} entropy", [None if v is None else round(v, 3)
                                                        for v in curve["entropy"]["mean"]])
    return {**info, "note": NOTE, "env_played": env_spec, "frames": len(obs), "every": args.every,
            "seed": args.seed, "noise": args.noise, "samples": samples, "obs_shape": list(obs.shape[1:]),
            "targets": targets, "summary": summary(targets), "seconds": round(time.perf_counter() - started, 1)}


def summary(targets: dict) -> dict:
    """Per target and noisy method: mean entropy and Gini at the fewest samples that give a map and at the most,
    and the change (entropy up and Gini down: washed out)."""
    out: dict = {}
    for target, methods in targets.items():
        out[target] = {}
        for method in ("smoothgrad", "vargrad"):
            c = methods[method]
            have = [j for j, v in enumerate(c["entropy"]["mean"]) if v is not None]
            lo, hi = have[0], have[-1]
            out[target][method] = {
                "samples": [c["samples"][lo], c["samples"][hi]],
                "entropy": [c["entropy"]["mean"][lo], c["entropy"]["mean"][hi]],
                "entropy_change": c["entropy"]["mean"][hi] - c["entropy"]["mean"][lo],
                "gini": [c["gini"]["mean"][lo], c["gini"]["mean"][hi]],
                "gini_change": c["gini"]["mean"][hi] - c["gini"]["mean"][lo],
                "saliency_entropy": methods["saliency"]["entropy"]["mean"][0]}
    return out


def describe(run: dict) -> str:
    """What a filed run ran on, in a few words."""
    env = str(run.get("env_played") or run.get("env") or "").split("?")[0]
    if not run.get("trained"):
        return f"untrained attention agent ({run['options'].get('base')}), {env}"
    coef = run.get("attention_entropy_coef")
    return (f"attention agent ({run['options'].get('base', 'impala')}), {env}, trained {run.get('train_frames'):,} "
            f"frames, coefficient {coef:g}")


def table(result: dict) -> list:
    """Markdown rows: per run, target and noisy method, the mean normalised entropy and Gini of the input map at
    the fewest samples that give a map and at the most, beside the plain gradient's entropy."""
    rows = ["| agent (frames) | target | method | entropy, gradient | entropy, fewest -> most samples | "
            "Gini, fewest -> most samples |", "|---|---|---|---|---|---|"]
    for label, run in result["runs"].items():
        for j, (target, method, s) in enumerate([(t, m, s) for t, ms in run["summary"].items() for m, s in ms.items()]):
            agent = f"{describe(run)} ({run['frames']})" if j == 0 else ""
            rows.append(f"| {agent} | attention {target} | {method} | "
                        f"{s['saliency_entropy']:.3f} | {s['entropy'][0]:.3f} ({s['samples'][0]}) -> "
                        f"{s['entropy'][1]:.3f} ({s['samples'][1]}) | {s['gini'][0]:.3f} -> {s['gini'][1]:.3f} |")
    return rows


def figure(result: dict) -> Path:
    """``results/attention_washout.png``: mean normalised entropy against samples (quartiles shaded), per run and
    target; the plain gradient dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    targets = list(dict.fromkeys(t for run in runs.values() for t in run["targets"]))
    fig, axes = plt.subplots(len(runs), len(targets), figsize=(4 * len(targets), 2.6 * len(runs)), dpi=110,
                             squeeze=False)
    for ax, (label, target) in zip(axes.flat, [(label, t) for label in runs for t in targets]):
        if target not in runs[label]["targets"]:
            ax.set_axis_off()
            continue
        methods = runs[label]["targets"][target]
        for method, color in (("smoothgrad", "tab:blue"), ("vargrad", "tab:orange")):
            c = methods[method]
            ok = [j for j, v in enumerate(c["entropy"]["mean"]) if v is not None]
            xs = [c["samples"][j] for j in ok]
            ax.plot(xs, [c["entropy"]["mean"][j] for j in ok], "o-", ms=3, color=color, label=method)
            ax.fill_between(xs, [c["entropy"]["q25"][j] for j in ok], [c["entropy"]["q75"][j] for j in ok],
                            color=color, alpha=0.2)
        ax.axhline(methods["saliency"]["entropy"]["mean"][0], ls="--", color="grey", label="gradient")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("samples")
        ax.set_title(f"{label}, target: attention {target}", fontsize=8)
        ax.set_ylabel("normalised entropy", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = common.RESULTS / "attention_washout.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--run", help="run directory, checkpoint folder or zoo:NAME of an attention agent")
    who.add_argument("--untrained", metavar="ENV", help="an untrained attention agent (seed 0) on this env spec")
    parser.add_argument("--label", help="name of this run in the JSON (default: the run's folder name)")
    parser.add_argument("--env", help="env to play (default: the run's own)")
    parser.add_argument("--frames", type=int, default=32, help="frames attributed")
    parser.add_argument("--every", type=int, default=4, help="keep every N-th frame of play")
    parser.add_argument("--samples", default="1,2,4,8,16,32,64,128,256", help="sample counts, comma-separated")
    parser.add_argument("--noise", type=float, default=0.1, help="noise std, a fraction of each frame's range")
    parser.add_argument("--targets", default="peak,entropy", help="attention targets: peak, entropy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure-only", action="store_true", help="redraw the figure from the filed JSON")
    args = parser.parse_args(argv)
    if not args.figure_only:
        if not (args.run or args.untrained):
            parser.error("give --run RUN or --untrained ENV (or --figure-only)")
        label = args.label or (Path(args.run).name if args.run else f"untrained-{args.untrained}")
        file_run("attention_washout", label, measure(args))
    figure(json.loads((common.RESULTS / "attention_washout.json").read_text()))


if __name__ == "__main__":
    main()
