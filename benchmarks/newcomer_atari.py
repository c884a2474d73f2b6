"""The path a newcomer takes with an Atari agent trained elsewhere, timed, with the commands docs/atari.md gives.

    python -m benchmarks.newcomer_atari [--train-steps 1024] [--compare-episodes 30] [--quick]

1. Timed apart (the newcomer arrives with it): Stable-Baselines3 trains a PPO ``CnnPolicy`` on ``atari:breakout``
   through policylens's Gymnasium view for ``--train-steps`` steps and saves its zip.
2. Timed, each a ``policylens`` command in a fresh process, as typed in a shell::

       policylens import sb3 breakout.zip --env atari:breakout --out RUN
       policylens explore RUN        # records 8 games first; prints the attribution by object
       policylens edit RUN --layer conv3 --blind ball --force --out RUN-blind
       policylens compare RUN RUN-blind --invisible ball --episodes 30

An agent trained a thousand steps may have no direction that locates the ball (``edit`` then refuses, naming
the best one's NMI); ``--force`` projects the best one out whatever its NMI, so the path runs to its end, and the
JSON keeps that NMI and whether it reaches ``edit``'s threshold.
Reported in ``results/newcomer_atari.json``: seconds per command, to the explorer (import and explore: the
issue's goal is an explorer within 5 minutes, ``within_budget``) and for the whole path, on 2 cores; the
machine's load average, what the explorer holds (episodes, frames, the attribution by object of its
layer) and the comparison (failures by cause for the agent, the edited agent and the control). ``--quick``: a
smoke run of the same commands on short games (``max_frames=1600``), 2 games recorded and compared, written to
``results/newcomer_atari_quick.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from policylens import rollouts
from policylens.edit.blind import MIN_NMI
from policylens.explorer.encode import read_js

from .common import write

BUDGET_S = 300  # the 5 minutes from the zip to its explorer
GAME = "atari:breakout"


def train(zip_path: Path, steps: int, game: str = GAME) -> dict:
    """A PPO CnnPolicy trained ``steps`` steps by Stable-Baselines3 on policylens's Gymnasium view, saved."""
    from stable_baselines3 import PPO

    from policylens.envs import gymnasium_env

    t = time.perf_counter()
    model = PPO("CnnPolicy", gymnasium_env(game, seed=0), n_steps=256, batch_size=64, n_epochs=2, seed=0, verbose=0)
    model.learn(steps)
    model.save(zip_path)
    return {"library": "stable-baselines3", "algorithm": "PPO", "policy": "CnnPolicy", "steps": steps,
            "seconds": round(time.perf_counter() - t, 1)}


def policylens(args: list, src: str) -> dict:
    """Run ``policylens ARGS`` in a fresh interpreter; its seconds, the command as typed, and its output."""
    env = {**os.environ, "PYTHONPATH": src, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "policylens.cli", *map(str, args)], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"policylens {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return {"command": "policylens " + " ".join(shlex.quote(str(a)) for a in args), "seconds": round(seconds, 1),
            "output": done.stdout.strip().splitlines()[-12:]}


def measure(args, game: str, explore: list, root: Path) -> dict:
    """Train the zip, time the four commands in ``root``, and read what they left."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    zip_path, run, blind = root / "breakout.zip", root / "sb3-breakout", root / "sb3-breakout-blind"
    trained = train(zip_path, args.train_steps, game)
    print(f"SB3 trained {trained['steps']} steps in {trained['seconds']} s (not counted)")
    steps = [["import", "sb3", zip_path, "--env", game, "--out", run],
             ["explore", run, *explore, "--progress", "false"],
             ["edit", run, "--layer", "conv3", "--blind", "ball", "--force", "--out", blind],
             ["compare", run, blind, "--invisible", "ball", "--episodes", args.compare_episodes, "--out",
              root / "compare", "--progress", "false"]]
    load = os.getloadavg()[0]
    done = []
    for step in steps:
        done.append(policylens(step, src))
        print(f"{done[-1]['seconds']:7.1f} s  {done[-1]['command']}")
    total = sum(d["seconds"] for d in done)
    to_explorer = done[0]["seconds"] + done[1]["seconds"]  # import, explore
    layer = read_js(run / "explorer" / "data" / "manifest.js")[1]["layers"][0]
    store = rollouts.open(run / "rollouts.zarr")
    compare = json.loads((root / "compare" / "compare.json").read_text())
    blind_info = json.loads((blind / "blind.json").read_text())
    nmi = [d["nmi"] for d in blind_info["directions"] if d["label"] in blind_info["chosen"].split(",")]
    return {
        "env": game, "quick": args.quick, "zip": trained, "budget_s": BUDGET_S,
        "to_explorer_s": round(to_explorer, 1), "within_budget": to_explorer <= BUDGET_S, "total_s": round(total, 1), "load_average": [round(load, 1), round(os.getloadavg()[0], 1)],
        "commands": {s[0]: {"command": d["command"].replace(str(root) + "/", ""), "seconds": d["seconds"]}
                     for s, d in zip(steps, done)},
        "explorer": {"episodes": len(store), "frames_recorded": store.num_frames, "layer": layer["name"],
                     "attribution_by_entity": layer["meta"].get("attribution_by_entity"),
                     "labels": [f["label"] for f in layer["features"]]},
        "blind": {"entity": blind_info["entity"], "chosen": blind_info["chosen"], "nmi": nmi,
                  "min_nmi": MIN_NMI, "located": max(nmi) >= MIN_NMI},
        "compare": {"episodes": compare["episodes"], "causes": compare["causes"],
                    "control": {k: compare["control"][k] for k in ("env", "causes", "blindness")}},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-steps", type=int, default=1024, help="SB3 training steps before the timed part")
    parser.add_argument("--compare-episodes", type=int, default=30, help="games compare plays per agent")
    parser.add_argument("--quick", action="store_true", help="a smoke run on short games (not the figures)")
    parser.add_argument("--zip-only", metavar="ZIP", help="only train the SB3 agent and save its zip to ZIP "
                        "(how the zoo's sb3-breakout was made), then stop")
    args = parser.parse_args(argv)
    if args.zip_only:
        trained = train(Path(args.zip_only), args.train_steps)
        print(json.dumps(trained))
        return
    game, explore = GAME, []
    if args.quick:
        game, explore = GAME + "?max_frames=1600", ["--episodes", "0-1", "--steps", 64, "--nmf-frames", 64]
        args.train_steps, args.compare_episodes = min(args.train_steps, 256), min(args.compare_episodes, 2)
    with tempfile.TemporaryDirectory(prefix="newcomer-") as root:
        result = measure(args, game, explore, Path(root))
    print(f"{result['to_explorer_s']} s to the explorer (goal {BUDGET_S} s), {result['total_s']} s for every command")
    write("newcomer_atari_quick" if args.quick else "newcomer_atari", result)


if __name__ == "__main__":
    main()
