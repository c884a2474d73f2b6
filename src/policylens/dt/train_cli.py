"""``policylens dt train --store STORE --out RUN``: a decision transformer on recorded trajectories.

The options are :class:`~policylens.dt.train_config.DTTrainConfig`'s; the training loop, its outputs and
resuming are described in :mod:`policylens.dt.train`, imported once the options are parsed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_dataclass_args, from_args
from .cli import join_negative_values
from .train_config import DTTrainConfig


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="policylens dt train", description=__doc__.split("\n\n")[0])
    add_dataclass_args(parser, DTTrainConfig)
    cfg = from_args(DTTrainConfig, parser.parse_args(join_negative_values(argv, ("--eval-rtgs",))))
    from .train import train

    out = train(cfg)
    print(f"decision transformer: {out / 'agent'}; training curve: {out / 'curve.png'}")
    return out


if __name__ == "__main__":
    main()
