"""``policylens dt collect RUN --episodes N``: a PPO agent's episodes, played with sampling strategies of
varied quality, recorded as decision-transformer training data.

The options are :class:`~policylens.dt.collect_config.CollectConfig`'s; what is recorded, resuming and the RTG
report beside the store are described in :mod:`policylens.dt.collect`, imported once the options are parsed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import add_dataclass_args, from_args
from .collect_config import CollectConfig


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="policylens dt collect", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the PPO agent that plays")
    add_dataclass_args(parser, CollectConfig, skip=("run",))
    cfg = from_args(CollectConfig, parser.parse_args(argv))
    from .collect import collect, format_summary, report_paths

    out = collect(cfg)
    print(format_summary(json.loads(report_paths(out)[0].read_text())))
    return out


if __name__ == "__main__":
    main()
