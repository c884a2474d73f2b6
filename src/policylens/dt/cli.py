"""``policylens dt SUBCOMMAND``: the decision-transformer suite, one sub-command per step, each with ``--help``."""
from __future__ import annotations

import sys

from ..subcommands import dispatch

# name -> (module with main(argv), or "module:function", one-line help)
SUBCOMMANDS = {
    "collect": ("policylens.dt.collect_cli", "record a PPO agent's episodes with sampling strategies into a trajectory store"),
    "train": ("policylens.dt.train_cli", "train a decision transformer on a trajectory store (resumable)"),
    "calibrate": ("policylens.dt.calibrate", "achieved return against target RTG, and behaviours by RTG from ground truth"),
    "analyze": ("policylens.dt.analysis.analyze",
                "attribution, ablation table, patching, RTG scans, QK/OV circuits -> RUN/analysis, RUN/report.md"),
    "ablate": ("policylens.dt.analysis.analyze:ablate_main",
               "ablate heads/MLPs and compare behaviour by RTG with the unablated model"),
    "compare": ("policylens.dt.analysis.compare",
                "Decision Transformer Interpretability's findings side by side for analysed models -> JSON + markdown"),
    "app": ("policylens.dt.app.server", "play MiniGrid beside the model on 127.0.0.1: policy, attention, contributions, "
            "ablations live"),
}


EXAMPLES = [
    "policylens dt collect zoo:minigrid-do8-rgb --episodes 1000 --out runs/dt/trajectories.zarr",
    "policylens dt train --store runs/dt/trajectories.zarr --out runs/dt",
    "policylens dt calibrate runs/dt --rtgs -1,-0.5,0,0.5,0.9,1 --episodes 50",
    "policylens dt analyze runs/dt --episodes 100",
    "policylens dt ablate runs/dt --components blocks.0.attn.head0,blocks.0.attn.head1,blocks.0.mlp",
    "policylens dt compare zoo:dt-minigrid-do8 zoo:dt-minigrid-do8-raw --out runs/dt-compare",
    "policylens dt app zoo:dt-minigrid-do8",
]


def join_negative_values(argv, options) -> list:
    """``--rtgs -1,0`` -> ``--rtgs=-1,0``: argparse would otherwise read the negative list as an option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in options and arg.startswith("-") and not arg.startswith("--"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv=None):
    return dispatch("dt", SUBCOMMANDS, EXAMPLES, argv)


if __name__ == "__main__":
    main()
