"""What made our PPO fail on Dynamic-Obstacles-8x8 where the reference succeeds: one change at a time, same seeds.

``python -m benchmarks.ppo_ablation`` trains, on MiniGrid-Dynamic-Obstacles-8x8 with the one-hot view, (a) the
reference (``benchmarks.reference_ppo``: CleanRL's ppo.py algorithm with the hyperparameters the issue's
60-line reference used) with one of our former defaults put in at a time, and (b) our trainer with its former
defaults, with one of the reference's settings put in at a time; each on seeds 1, 2, 3, one thread, until the last
100 training episodes succeed 95% of the time or the frame budget is spent. Writes
``results/ppo_ablation.json`` (rows are kept across invocations, so ``--only`` re-runs some of them).
"""
from __future__ import annotations

import argparse
import json

from . import common
from .common import write
from .ppo_runs import DO8, TARGET_SUCCESS, load_beside, run_ours, run_reference

ONEHOT = DO8 + "?obs=onehot"
#: The reference: CleanRL's ppo.py algorithm (separate 64-64 tanh actor and critic, orthogonal init, clipped value
#: loss, Adam eps 1e-5, grad norm 0.5) with the issue's 60-line reference's settings: one-hot view, 16 envs x 128
#: steps, minibatch 256, 4 epochs, lr 1e-3 constant, gamma 0.99, lambda 0.95, clip 0.2, ent 0.01, no reward
#: normalisation and no advantage normalisation.
REFERENCE = dict(env=ONEHOT, num_envs=16, num_steps=128, num_minibatches=8, lr=1e-3, anneal_lr=False,
                 norm_adv=False, norm_reward=False)
#: Our trainer's former MiniGrid defaults on the same view: a shared 256-256 ReLU MLP with torch's init, lr 5e-4
#: annealed, minibatch 512, reward normalisation, per-minibatch advantage normalisation.
OURS_BEFORE = dict(preset="minigrid", env=ONEHOT, arch="mlp", arch_options="", init="default", lr=5e-4,
                   anneal_lr=True, num_minibatches=4, norm_reward=True, norm_adv=True, clip_vloss=True)

ROWS = [  # (label, trainer, changes from that trainer's base)
    ("reference", "reference", {}),
    ("reference + advantage normalisation", "reference", dict(norm_adv=True)),
    ("reference + reward normalisation", "reference", dict(norm_reward=True)),
    ("reference + torch's default init", "reference", dict(init="torch")),
    ("reference - value-loss clipping", "reference", dict(clip_vloss=False)),
    ("reference + lr 5e-4", "reference", dict(lr=5e-4)),
    ("reference + lr annealed", "reference", dict(anneal_lr=True)),
    ("reference + minibatch 512", "reference", dict(num_minibatches=4)),
    ("reference + 256-256 ReLU", "reference", dict(hidden=256, activation="relu")),
    ("reference + integer symbolic view", "reference", dict(env=DO8 + "?obs=symbolic")),
    ("ours before", "ours", {}),
    ("ours before - advantage normalisation", "ours", dict(norm_adv=False)),
    ("ours before - reward normalisation", "ours", dict(norm_reward=False)),
    ("ours before - both normalisations", "ours", dict(norm_adv=False, norm_reward=False)),
    ("ours before + orthogonal init", "ours", dict(init="orthogonal")),
    ("ours before + the reference's settings", "ours",
     dict(norm_adv=False, norm_reward=False, init="orthogonal", lr=1e-3, anneal_lr=False, num_minibatches=8,
          arch_options="hidden_sizes=[64,64],activation=tanh")),
    ("ours, defaults (--preset minigrid-mlp: one-hot view)", "ours_default", {}),
    ("ours, defaults with the integer symbolic view", "ours_default", dict(env=DO8 + "?obs=symbolic")),
]


def run_row(label: str, trainer: str, changes: dict, seeds, frames: int) -> dict:
    runs = []
    for seed in seeds:
        if trainer == "reference":
            r = run_reference(seed, frames, TARGET_SUCCESS, **{**REFERENCE, **changes})
        else:
            base = OURS_BEFORE if trainer == "ours" else dict(preset="minigrid-mlp")
            r = run_ours(seed, frames, TARGET_SUCCESS, **{**base, **changes})
        r["curve"] = [[c["frames"], c["success_100"]] for c in r["curve"]]  # (frames, success of the last 100)
        runs.append({"seed": seed, **r})
        print(f"  seed {seed}: frames to 95% {r['frames_to_95']}, final success {r['final_success_100']}, "
              f"{r['fps']:.0f} frames/s", flush=True)
    reached = [r["frames_to_95"] for r in runs if r["frames_to_95"] is not None]
    return {"label": label, "trainer": "reference" if trainer == "reference" else "ours", "changes": changes,
            "seeds_reaching_95": f"{len(reached)}/{len(runs)}",
            "median_frames_to_95": sorted(reached)[len(reached) // 2] if len(reached) * 2 > len(runs) else None,
            "runs": runs}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_ablation", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=120_000, help="frame budget of each run")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--only", default="", help="comma-separated row numbers (0-based) to run; the others are kept")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    path = common.RESULTS / "ppo_ablation.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    rows = {r["label"]: r for r in old.get("rows", [])}
    wanted = {int(i) for i in args.only.split(",") if i} or set(range(len(ROWS)))
    for i, (label, trainer, changes) in enumerate(ROWS):
        if i not in wanted:
            continue
        print(f"[{i}] {label}", flush=True)
        rows[label] = {**run_row(label, trainer, changes, seeds, args.frames), "frame_budget": args.frames,
                       "beside": load_beside()}
        ordered = [rows[lbl] for lbl, _, _ in ROWS if lbl in rows]
        write("ppo_ablation", {"env": ONEHOT, "target": f"last 100 training episodes >= {TARGET_SUCCESS:.0%} success",
                               "reference": REFERENCE, "ours_before": OURS_BEFORE, "threads": 1, "rows": ordered})


if __name__ == "__main__":
    main()
