"""Import time: ``from_sb3`` (reads the zip's JSON and weights, never unpickles, writes a checkpoint) against
Stable-Baselines3's own ``ALGO.load`` of the same zip (which unpickles it), side by side; and ``from_cleanrl``
for a ppo_atari state dict. Medians of ``--repeat`` runs, one torch thread.

    python -m benchmarks.import_time [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .common import write

ATARI_LIKE = "gym:ALE/Breakout-v5?grey=true&resize=84&stack=4"  # (84, 84, 4) frames


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from stable_baselines3 import DQN, PPO

    from policylens.agents.importers import from_cleanrl, from_sb3
    from policylens.envs import gymnasium_env

    setups = {
        "ppo-mlp-cartpole": (lambda: PPO("MlpPolicy", "CartPole-v1", seed=0), PPO, "gym:CartPole-v1", (4,), 2),
        "ppo-cnn-atari": (lambda: PPO("CnnPolicy", gymnasium_env(ATARI_LIKE), seed=0), PPO, ATARI_LIKE, (84, 84, 4), 4),
        "dqn-cnn-atari": (lambda: DQN("CnnPolicy", gymnasium_env(ATARI_LIKE), buffer_size=10, seed=0), DQN, ATARI_LIKE,
                          (84, 84, 4), 4),
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (make, algo, spec, shape, n) in setups.items():
            path = tmp / f"{name}.zip"
            make().save(path)
            ours = median_seconds(lambda: from_sb3(path, tmp / name, env=spec, obs_shape=shape, num_actions=n,
                                                   overwrite=True), args.repeat)
            theirs = median_seconds(lambda: algo.load(path, device="cpu"), args.repeat)
            rows[name] = {"zip_bytes": path.stat().st_size, "policylens_import_s": round(ours, 4),
                          "sb3_load_s": round(theirs, 4), "ratio": round(ours / theirs, 3)}
            print(name, rows[name])
        from policylens.agents import build

        agent = build(dict(arch="nature", obs_shape=(84, 84, 4), num_actions=4))
        keys = {"conv1.conv": "network.0", "conv2.conv": "network.2", "conv3.conv": "network.4", "fc.0": "network.7",
                "pi": "actor", "v": "critic"}
        sd = {k.replace(ours, theirs, 1): v for k, v in agent.state_dict().items()
              for ours, theirs in keys.items() if k.startswith(ours + ".")}
        torch.save(sd, tmp / "ppo_atari.cleanrl_model")
        cleanrl = median_seconds(lambda: from_cleanrl(tmp / "ppo_atari.cleanrl_model", tmp / "cleanrl", script="ppo_atari",
                                                      env=ATARI_LIKE, obs_shape=(84, 84, 4), overwrite=True), args.repeat)
        rows["cleanrl-ppo_atari"] = {"policylens_import_s": round(cleanrl, 4)}
    write("import_time", {"repeat": args.repeat, "rows": rows,
                          "note": "import = read the zip's JSON and policy.pth (weights_only), build the agent, write "
                                  "config.json + weights.safetensors; SB3's load unpickles the zip and builds its policy"})


if __name__ == "__main__":
    main()
