"""What every ``policylens sim`` analysis command shares: where a RUN's store, simulator and outputs live, the
options that name them (:class:`SimCommand`, the base of each command's config), and loading the simulator
with its frozen agent.

A RUN is a run directory, a checkpoint folder or ``zoo:NAME``; a zoo agent's outputs go under ``runs/NAME``
(the zoo stays read-only, :mod:`policylens.runs`), its simulator is ``runs/NAME/sim`` or, when the zoo ships one,
``zoo/NAME/sim``. A command's output folder that already holds something is refused unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import add_dataclass_args, clear_errors, from_args


@dataclass
class SimCommand:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the recurrent agent"""
    store: str = ""
    """rollouts store of that agent (default: RUN/rollouts.zarr, runs/NAME/rollouts.zarr for zoo:NAME)"""
    sim: str = "auto"
    """simulator folder (auto: RUN/sim, or the zoo's NAME/sim)"""
    out: str = ""
    """output folder (default: RUN/analysis/COMMAND, runs/NAME/analysis/COMMAND for zoo:NAME)"""
    seed: int = 0
    """seed of everything random (latents, noise, subsamples)"""
    device: str = "cpu"
    """torch device for the agent and the simulator"""
    progress: bool = True
    """show progress on stderr"""
    overwrite: bool = False
    """replace what this command wrote before in its output folder"""


@dataclass(frozen=True)
class SimPaths:
    agent_dir: Path  # the agent's checkpoint folder
    run_dir: Path  # where the run's outputs live (runs/NAME for zoo:NAME)
    store: Path  # its rollouts store
    sim: "Path | None"  # the simulator folder (None: none found and none required)
    out: Path  # this command's output folder


def resolve(cfg: SimCommand, command: str, require_sim: bool = True, claim: bool = True) -> SimPaths:
    """The paths ``cfg`` names, defaults filled in; ``require_sim``: a clear error when there is no simulator;
    ``claim``: the output folder is checked for writing (:func:`claim`; False when the command writes into a
    folder under it and claims that one)."""
    from ..agents import resolve_run
    from ..runs import run_dir as outputs_of
    from .checkpoint import sim_dir

    if not cfg.run:
        raise ValueError(f"sim {command} needs a RUN: a run directory, checkpoint folder or zoo:NAME of a "
                         "recurrent agent")
    agent_dir = resolve_run(cfg.run)
    run_dir = outputs_of(cfg.run, agent_dir)
    store = Path(cfg.store) if cfg.store else run_dir / "rollouts.zarr"
    out = Path(cfg.out) if cfg.out else run_dir / "analysis" / command
    if cfg.sim == "none":
        sim = None
    elif cfg.sim == "auto":
        candidates = [run_dir / "sim", sim_dir(cfg.run)]
        sim = next((c for c in candidates if (c / "config.json").is_file()), None)
        if sim is None and require_sim:
            raise FileNotFoundError(f"no simulator for {cfg.run}: looked in {', '.join(map(str, candidates))}; "
                                    f"train one with `policylens sim train {cfg.run}` or pass --sim DIR")
    else:
        sim = Path(cfg.sim)
    if sim is None and require_sim:
        raise ValueError(f"sim {command} needs a simulator; --sim none leaves it without one")
    if claim:
        out = claim_out(cfg, out, command)
    return SimPaths(agent_dir, run_dir, store, sim, out)


def claim_out(cfg: SimCommand, out, command: str) -> Path:
    """``out``, checked for writing: refused inside the zoo, or when it holds an earlier output and
    ``--overwrite`` was not given (then the earlier output is removed)."""
    from ..runs import prepare_out

    return prepare_out(out, what=f"the output of sim {command}", overwrite=cfg.overwrite)


def load_parts(cfg: SimCommand, paths: SimPaths) -> tuple:
    """``(Simulator in eval mode, FrozenAgent, the agent module, action names)`` for the resolved paths; the
    simulator must have been trained with this agent (else refused, naming both)."""
    from ..agents import load_agent
    from .checkpoint import load_sim, read_sim_config

    agent = load_agent(paths.agent_dir, device=cfg.device).eval()
    sim, frozen = load_sim(paths.sim, agent=agent, device=cfg.device)
    names = list(getattr(agent, "action_names", []) or read_sim_config(paths.sim)[1].get("action_names", []) or [])
    return sim, frozen, agent, names or [str(a) for a in range(sim.config.num_actions)]


def read_saved(folder, summary_file: str, arrays_file: str, what: str, command: str) -> tuple:
    """``(arrays, summary)`` that a sim command saved in ``folder`` (an ``.npz`` and a ``.json``); a clear error
    naming the missing file and the command that writes it."""
    import json

    import numpy as np

    folder = Path(folder)
    for name in (summary_file, arrays_file):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {what} at {folder}: {folder / name} is missing (run `policylens sim "
                                    f"{command} RUN` first)")
    with np.load(folder / arrays_file, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, json.loads((folder / summary_file).read_text())


def shown(path) -> str:
    """``path`` as a report shows it: relative to the working directory when it lies inside it (the zoo's
    simulators resolve to absolute paths), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def say(cfg: SimCommand, text: str) -> None:
    """A progress line on stderr, unless ``--progress false``."""
    if cfg.progress:
        print(text, file=sys.stderr, flush=True)


def command_main(cls, run, description: str, argv=None, prog: str = ""):
    """The usual ``main(argv)`` of a sim command: RUN positional, the dataclass's options, bad input a clean
    ``PROG: error: ...`` exit 2; returns ``run(config)``."""
    parser = argparse.ArgumentParser(prog=prog or None, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the recurrent agent")
    add_dataclass_args(parser, cls, skip=("run",))
    cfg = from_args(cls, parser.parse_args(argv))
    with clear_errors(parser, also=(ImportError, IndexError)):
        return run(cfg)
