"""rl-attention on its own game: the ``attention`` agent on Breakout at four attention-entropy coefficients.

    nice -n 5 python -m benchmarks.atari_attention_sweep [--coefs 0,0.001,0.005,0.01] [--seeds 1,2,3]
                                                         [--frames 10000000] [--out runs/atari_attention_sweep]
    python -m benchmarks.atari_attention_sweep --report      # file the runs finished so far, train nothing
    python -m benchmarks.atari_attention_sweep --quick       # a smoke run

One ``policylens sweep attention``: the agent of the write-up (stable-baselines' Nature CNN with a 1x1-conv
attention layer of 7x7x2 spatial-softmax maps over its last conv features, ``--arch attention --arch-options
base=nature``), trained by the ``atari`` preset (CleanRL ``ppo_atari``'s hyperparameters) with the penalty
``c * sum(-A log A)`` on the maps, ``c`` in ``--coefs``; each run is scored on ``--episodes`` whole games of
held-out episodes (no episodic life, unclipped reward). Runs go seed by seed (every coefficient's seed 1 before
any seed 2), each checkpointed and resumed, so the sweep is stopped and rerun at will; ``--report`` files what
has finished. Written to ``results/atari_attention_sweep.json`` (one entry per run: coef, seed, frames, score,
attention_entropy) with ``results/atari_attention_sweep.png`` (score against the attention entropy reached, one
point per run: the write-up's scatter) and ``results/atari_attention_strip.png`` (the maps over the same frames,
a row per run, when the runs recorded their scoring episodes).

``--frames`` counts emulator frames (frame skip 4: an agent step is 4 frames). The write-up's scatter is at
"10M steps" of stable-baselines PPO, which counts agent steps (40M frames); the default here, 10M frames, is a
quarter of that, as CleanRL's own Breakout figures are at 10M steps.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from . import common

ENV = "atari:breakout?episodic_life=true&clip_reward=true"
FRAME_SKIP = 4

#: The write-up's own words about its sweep (Breakout, stable-baselines PPO, 10M steps), quoted exactly.
PAPER = {
    "source": "rl-attention write-up, section on the attention loss",
    "loss": "L = c * sum_A -A_ij log A_ij, over the final attention layer A of shape 7x7x2",
    "region": "settling on a value between 1e-2 and 1e-3 as the region of interest.",
    "findings": "Our results show that at 1e-3 the performance does not seem to be at all reduced but reduced "
                "entropy is only weakly incentivized. At 5e-3 entropy of the attention activation is strongly "
                "reducd but also reduces performance, with the exception of one run which performed as well as "
                "the unregularized models.",
    "figure": "Scatter plot of score at 10M steps, attention loss",
}


def entries(rows: list) -> list:
    """One entry per finished run, in the result's schema."""
    out = []
    for r in rows:
        h = r["held_out"]
        out.append({"name": r["name"], "coef": r["attention_entropy_coef"], "seed": r["seed"],
                    "frames": r["frames"] * FRAME_SKIP, "agent_steps": r["frames"], "score": h["mean_return"],
                    "score_std": h.get("return_std"), "games": h["episodes"],
                    "attention_entropy": r.get("final_attention_entropy"), "train_return": r.get("final_return")})
    return out


def scatter(runs: list, path: Path) -> Path:
    """Score against the attention entropy at the end of training, one point per run, a colour per coefficient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    coefs = sorted({r["coef"] for r in runs})
    for i, c in enumerate(coefs):
        pts = [r for r in runs if r["coef"] == c and r["attention_entropy"] is not None]
        ax.scatter([r["attention_entropy"] for r in pts], [r["score"] for r in pts], s=28, color=f"C{i}",
                   label=f"c = {c:g} ({len(pts)} run{'s' if len(pts) != 1 else ''})")
        for r in pts:
            ax.annotate(f"s{r['seed']}", (r["attention_entropy"], r["score"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_xlabel("attention entropy, sum over the 2 maps (end of training)")
    ax.set_ylabel("score (mean over held-out games)")
    frames = sorted({r["frames"] for r in runs})
    ax.set_title(f"Breakout, attention agent at {', '.join(f'{f:,}' for f in frames)} frames", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None):
    from policylens.sweep import SweepConfig, attention_figure, finished, run_setting, settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coefs", default="0,0.001,0.005,0.01", help="attention-entropy coefficients")
    parser.add_argument("--seeds", default="1,2,3", help="training seeds per coefficient")
    parser.add_argument("--frames", type=int, default=10_000_000, help="emulator frames per run (4 per agent step)")
    parser.add_argument("--episodes", type=int, default=30, help="held-out games scored per run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--out", default="runs/atari_attention_sweep", help="the sweep's folder (resumed if present)")
    parser.add_argument("--report", action="store_true", help="file the finished runs only; train nothing")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 coefficients, 1 seed, tiny runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.coefs, args.seeds, args.frames, args.episodes = "0,0.005", "1", 4 * 512, 2
    train_args = (f"--preset atari --arch-options base=nature --total-frames {args.frames // FRAME_SKIP} "
                  f"--threads {args.threads}")
    if args.quick:
        train_args += " --num-envs 2 --num-steps 64 --num-minibatches 2 --update-epochs 1"
    cfg = SweepConfig(kind="attention", env=ENV, coefs=args.coefs, seeds=args.seeds, train_args=train_args,
                      episodes=args.episodes, out=args.out, score_episodes=1, score_k=4)
    out = Path(args.out)
    todo = settings(cfg)
    if not args.report:
        out.mkdir(parents=True, exist_ok=True)
        for name, setting in todo:
            run_setting(cfg, name, setting)
    rows = finished(cfg)
    if not rows:
        sys.exit(f"no finished run in {out}: nothing to file")
    name = "atari_attention_sweep_quick" if args.quick else "atari_attention_sweep"
    given = sys.argv[1:] if argv is None else argv
    runs = entries(rows)
    result = {"command": " ".join(["python -m benchmarks.atari_attention_sweep", *map(shlex.quote, given)]),
              "env": ENV, "train_args": train_args, "planned": [n for n, _ in todo], "runs": runs,
              "paper": PAPER}
    common.write(name, result)
    scatter(runs, common.RESULTS / f"{name}.png")
    strip = attention_figure(out, rows)
    if strip is not None:
        shutil.copyfile(strip, common.RESULTS / f"{name.replace('sweep', 'strip')}.png")


if __name__ == "__main__":
    main()
