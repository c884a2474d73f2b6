"""The ``policylens`` command: one sub-command per pipeline step, each with its own ``--help``."""
from __future__ import annotations

import importlib
import os
import sys

from .config import BAD_INPUT, error_message

# name -> (module with main(argv), one-line help). These names are the interface.
COMMANDS = {
    "train": ("policylens.train.cli", "train an agent with PPO (presets: minigrid, minigrid-mlp, minigrid-recurrent, classic, procgen-easy, procgen-hard-rec, atari)"),
    "record": ("policylens.rollouts.record", "record episodes of an agent into a rollout store (zarr)"),
    "evaluate": ("policylens.evaluate", "success rate with a 95% CI, return, length and failure causes over N levels"),
    "attribute": ("policylens.attribution.cli", "saliency / grad x act / integrated gradients / SmoothGrad / VarGrad of recorded frames"),
    "factorize": ("policylens.factors.cli", "NMF / PCA / ICA directions of a layer's activations or attributions"),
    "featvis": ("policylens.featvis.cli", "feature visualisation: dataset examples, spatial examples, optimised images, thumbnails"),
    "explore": ("policylens.explorer.cli", "trajectory explorer (HTML): attribution over NMF features, timeline, GAE bookmarks; --serve for live play"),
    "edit": ("policylens.edit.cli", "project directions out of an agent's layer into a new run (Understanding RL Vision's model editing)"),
    "compare": ("policylens.evaluate.compare", "two agents on the same levels: failure rate by cause, paired tests, bar chart"),
    "sweep": ("policylens.sweep", "one agent per level count (diversity) or attention-entropy coefficient, evaluated and plotted"),
    "dt": ("policylens.dt.cli", "decision transformer: collect, train, calibrate, analyze, ablate (policylens dt --help)"),
    "sim": ("policylens.sim.cli", "differentiable simulator with the frozen agent inside: train, hx, swap (policylens sim --help)"),
    "layers": ("policylens.agents.layers", "list an agent's named layers with their shapes"),
    "import": ("policylens.import_cli", "an agent trained elsewhere (Stable-Baselines3 zip, CleanRL state dict), never unpickled"),
    "demo": ("policylens.demo", "the main job: agent -> record -> evaluate -> report on MiniGrid"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return ("usage: policylens COMMAND [options]   (policylens COMMAND --help for its options;"
            " policylens --version)\n\n"
            "commands:\n" + "\n".join(lines) + "\n\nA RUN argument is a run directory or zoo:NAME.")


def version() -> str:
    """The installed distribution's version; in a source tree that is not installed, pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("policylens")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "unknown"


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    if argv[0] in ("-V", "--version"):
        print(f"policylens {version()}")
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"policylens: unknown command {name!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    module = importlib.import_module(COMMANDS[name][0])
    try:
        module.main(rest)
    except BAD_INPUT as e:  # bad input: a clear message, no stack trace
        print(f"policylens {name}: error: {error_message(e)}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
