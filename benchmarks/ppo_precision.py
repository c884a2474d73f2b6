"""The conv nets' training step under float32, channels_last and bf16 autocast, on this machine's CPU.

    python -m benchmarks.ppo_precision [--threads 1] [--batch 256]

For the ``nature`` (84x84x4, Atari), ``impala`` (64x64x3, procgen) and ``cnn`` (56x56x3, MiniGrid RGB)
architectures: samples/s of one forward+backward+Adam step on a batch of random frames, in each of the four
settings, best of a few repeats, settings interleaved; and whether ``policylens.train`` turns bf16 on here
(``bf16_is_fast``). Writes ``results/ppo_precision.json``.
"""
from __future__ import annotations

import argparse
import time

import torch

from .common import write
from .ppo_runs import load_beside

NETS = {"nature": (84, 84, 4), "impala": (64, 64, 3), "cnn": (56, 56, 3)}
SETTINGS = {"fp32": (False, False), "fp32 channels_last": (False, True), "bf16": (True, False),
            "bf16 channels_last": (True, True)}


def step_rate(arch: str, shape: tuple, bf16: bool, channels_last: bool, batch: int, repeats: int) -> float:
    from policylens.agents import AgentConfig, build

    torch.manual_seed(0)
    agent = build(AgentConfig(arch=arch, obs_shape=shape, num_actions=15))
    if channels_last:
        agent = agent.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-6)
    obs = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = agent(obs)
        loss = out.logits.float().logsumexp(-1).mean() + out.value.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - t)
    return batch / best


def main(argv=None) -> None:
    from policylens.train.config import bf16_is_fast

    p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_precision", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rates = {arch: {name: [] for name in SETTINGS} for arch in NETS}
    for _ in range(2):  # two rounds, settings interleaved, best kept: load from other jobs hits all alike
        for arch, shape in NETS.items():
            for name, (bf16, cl) in SETTINGS.items():
                rates[arch][name].append(step_rate(arch, shape, bf16, cl, args.batch, args.repeats))
    table = {arch: {name: round(max(v), 1) for name, v in r.items()} for arch, r in rates.items()}
    for arch, row in table.items():
        row["bf16_speedup"] = round(row["bf16 channels_last"] / row["fp32"], 2)
        row["channels_last_speedup"] = round(row["fp32 channels_last"] / row["fp32"], 2)
        print(arch, row)
    write("ppo_precision", {"what": "samples/s of one forward+backward+Adam step, best of repeats",
                            "batch": args.batch, "threads": args.threads,
                            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "bf16_is_fast": bf16_is_fast("cpu"), "nets": table, "beside": load_beside()})


if __name__ == "__main__":
    main()
