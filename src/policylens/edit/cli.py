"""``policylens edit RUN --directions PATH --direction K --out NEW_RUN`` (or ``--layer L --channel C``).

Projects the chosen directions (or one-hot channels) out of a layer by folding the projection into the
next layer's weights (:func:`~policylens.edit.project_out`) and writes ``NEW_RUN/agent/`` (config.json +
weights.safetensors) with the original's config plus an ``edits`` record, so every command that takes a RUN
(``policylens evaluate NEW_RUN``, ``record``, ...) uses the edited agent. An edit that cannot be folded into
weights (it would need a forward hook) is refused: a checkpoint cannot carry a hook.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..agents import layer_shapes, load_agent, read_config, resolve_run, save_agent
from ..config import add_dataclass_args, clear_errors, from_args
from ..factors import Directions
from .project import project_out


@dataclass
class EditConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent to edit"""
    out: str = ""
    """new run directory; the edited checkpoint goes to OUT/agent"""
    layer: str = ""
    """layer whose output loses the directions (default: the directions' layer)"""
    directions: str = ""
    """directions file (PATH, PATH.json or PATH.safetensors, e.g. from policylens factorize)"""
    direction: str = ""
    """which of them to project out: indices or labels, comma-separated, or 'all'"""
    channel: str = ""
    """instead of --directions: channel indices (one-hot directions), comma-separated"""
    keep: str = ""
    """directions to pass unchanged (oblique projection): indices or labels, or 'others' = every direction of the file not projected out"""
    overwrite: bool = False
    """replace a checkpoint already at OUT/agent"""


def _split(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


def chosen_directions(cfg: EditConfig, agent) -> Directions:
    """The directions the config names, in the layer they belong to."""
    if bool(cfg.directions) == bool(cfg.channel):
        raise ValueError("edit needs exactly one of --directions PATH (with --direction) or --channel C")
    if cfg.channel:
        if not cfg.layer:
            raise ValueError("--channel needs --layer")
        shapes = layer_shapes(agent, names=[cfg.layer])
        if cfg.layer not in shapes:
            raise ValueError(f"layer {cfg.layer!r} is not reached by the agent's forward pass")
        try:
            channels = [int(c) for c in _split(cfg.channel)]
        except ValueError:
            raise ValueError(f"--channel takes channel indices, comma-separated; got {cfg.channel!r}") from None
        return Directions.one_hot(cfg.layer, channels, shapes[cfg.layer][0])
    dirs = Directions.load(cfg.directions)
    if cfg.layer and cfg.layer != dirs.layer:
        raise ValueError(f"directions {cfg.directions} are of layer {dirs.layer!r}, not --layer {cfg.layer!r}")
    if not cfg.direction:
        raise ValueError(f"say which directions to project out with --direction (indices or labels of "
                         f"{', '.join(dirs.labels)}), or --direction all")
    if cfg.direction == "all":
        return dirs
    return dirs.select(_keys(cfg.direction))


def _keys(text: str) -> list:
    return [int(k) if k.lstrip("-").isdigit() else k for k in _split(text)]


def kept_directions(cfg: EditConfig, chosen: Directions) -> "Directions | None":
    """The directions ``--keep`` names (from the same file), or None."""
    if not cfg.keep:
        return None
    if not cfg.directions:
        raise ValueError("--keep needs --directions PATH (the directions to keep come from that file)")
    dirs = Directions.load(cfg.directions)
    if cfg.keep == "others":
        chosen_rows = {tuple(v.tolist()) for v in chosen.vectors}
        rest = [i for i in range(len(dirs)) if tuple(dirs.vectors[i].tolist()) not in chosen_rows]
        if not rest:
            raise ValueError("--keep others: every direction of the file is projected out; nothing to keep")
        return dirs.select(rest)
    return dirs.select(_keys(cfg.keep))


def edit(cfg: EditConfig) -> Path:
    """Write the edited checkpoint ``cfg`` describes; returns its folder (``OUT/agent``)."""
    if not cfg.run or not cfg.out:
        raise ValueError("edit needs a RUN and --out NEW_RUN")
    agent_dir = resolve_run(cfg.run)
    config = read_config(agent_dir)
    target = Path(cfg.out) / "agent"
    if (target / "config.json").exists() and not cfg.overwrite:
        raise ValueError(f"{target} already holds a checkpoint; pass --overwrite to replace it")
    agent = load_agent(agent_dir)
    dirs = chosen_directions(cfg, agent)
    edited = project_out(agent, dirs.layer, dirs, keep=kept_directions(cfg, dirs))
    record = edited.policylens_edits[-1]
    if record["how"] != "fold":
        raise ValueError(f"projecting out of layer {dirs.layer!r} cannot be folded into the next layer's weights "
                         f"({record['reason']}); a checkpoint cannot carry the forward hook it would need. "
                         f"Edit a layer whose output feeds a conv or linear layer directly, or use "
                         f"policylens.edit.project_out in Python")
    record = {**record, "directions": cfg.directions or None, "selected": cfg.direction or cfg.channel,
              "kept": cfg.keep or None}
    extra = {k: v for k, v in config.items() if k != "agent"}
    extra["edits"] = [*config.get("edits", []), {**record, "edited_from": cfg.run}]
    return save_agent(edited, config["agent"], target, extra=extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens edit", description=(
        "Make an agent blind to directions of a layer (Understanding RL Vision, Appendix A): fold the "
        "projection P = I - v v^T / |v|^2 into the next layer's weights and save a new checkpoint. With "
        "--keep, the projection is oblique: it removes the directions while passing the kept ones (e.g. the "
        "other NMF directions) unchanged, so an edit of a shared direction does not disturb the others."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent to edit")
    add_dataclass_args(parser, EditConfig, skip=("run",))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    cfg = from_args(EditConfig, parser.parse_args(argv))
    with clear_errors(parser, also=(IndexError,)):
        path = edit(cfg)
    record = read_config(path)["edits"][-1]
    print(f"wrote {path}: {', '.join(record['labels'])} projected out of {record['layer']!r}, folded into "
          f"{', '.join(record['into'])}")
    return 0
