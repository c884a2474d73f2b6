"""``policylens sim train RUN``: train the simulator of a recurrent agent's environment on its rollouts store.

The options are :class:`~policylens.sim.train_config.SimTrainConfig`'s and the architecture's
(:class:`~policylens.sim.config.SimConfig`); the training, its outputs and resuming are described in
:mod:`policylens.sim.train`, imported once the options are parsed. Several processes:
``torchrun --nproc_per_node N -m policylens.sim.train_cli RUN`` (or any launcher that sets RANK / WORLD_SIZE).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import add_dataclass_args, clear_errors, from_args
from .config import DERIVED, SimConfig
from .train_config import SimTrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``RUN`` positional, one ``--option`` per :class:`SimTrainConfig` field and per architecture field."""
    parser.add_argument("run", help="the recurrent agent's run directory, checkpoint folder or zoo:NAME")
    add_dataclass_args(parser, SimTrainConfig, skip=("run", "sim"))
    add_dataclass_args(parser, SimConfig, skip=DERIVED)
    return parser


def main(argv=None) -> Path:
    parser = add_arguments(argparse.ArgumentParser(prog="policylens sim train", description=__doc__.split("\n\n")[0]))
    ns = parser.parse_args(argv)
    cfg = from_args(SimTrainConfig, ns, sim=from_args(SimConfig, ns))
    import torch.distributed as dist

    from .train import distributed, train

    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized()
    if launched:  # torchrun and friends: one process per rank
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    rank = distributed()[0]
    try:
        with clear_errors(parser):
            out = train(cfg)
    finally:
        if launched:
            dist.destroy_process_group()
    if rank == 0:
        print(f"simulator: {out} (log: {out / 'train.csv'})")
    return out


if __name__ == "__main__":
    main()
