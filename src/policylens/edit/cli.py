"""``policylens edit RUN --directions PATH --direction K --out NEW_RUN`` (or ``--layer L --channel C``, or
``--layer L --blind ENTITY``: the NMF direction of L that best locates ENTITY in the run's recorded frames).

Projects the chosen directions (or one-hot channels) out of a layer by folding the projection into the
next layer's weights (:func:`~policylens.edit.project_out`) and writes ``NEW_RUN/agent/`` (config.json +
weights.safetensors) with the original's config plus an ``edits`` record, so every command that takes a RUN
(``policylens evaluate NEW_RUN``, ``record``, ...) uses the edited agent. An edit that cannot be folded into
weights (it would need a forward hook) is refused: a checkpoint cannot carry a hook.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..agents import resolve_run
from ..config import add_dataclass_args, clear_errors, from_args
from ..runs import prepare_out

if TYPE_CHECKING:
    from ..factors import Directions

EDIT_FILES = ("agent", "blind.json", "blind-directions.json", "blind-directions.safetensors")  # what edit writes in OUT


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
    blind: str = ""
    """instead of --directions: an entity of the env's ground truth (e.g. ball, saw); the NMF direction of --layer that best locates it in the recorded frames is projected out (model editing by cause)"""
    keep: str = ""
    """directions to pass unchanged (oblique projection): indices or labels, or 'others' = every direction of the file (or of --blind's NMF) not projected out"""
    store: str = ""
    """with --blind: rollouts store with ground truth whose frames choose the direction (default: RUN/rollouts.zarr, runs/NAME/rollouts.zarr for zoo:NAME)"""
    k: int = 8
    """with --blind: number of NMF directions to choose from"""
    top: str = "1"
    """with --blind: how many directions to project out: the N that best locate the entity, or 'all' whose best entity it is (NMF often splits one entity over two directions)"""
    max_frames: int = 2048
    """with --blind: frames of the store to factorise (whole episodes from the first, trimmed evenly to this)"""
    seed: int = 0
    """with --blind: seed of the NMF restarts"""
    restarts: int = 5
    """with --blind: NMF restarts; the stable choice among them is used, and each direction's stability reported"""
    force: bool = False
    """with --blind: project out the best direction even when none locates the entity (NMI below the threshold)"""
    overwrite: bool = False
    """replace the edit already in OUT (its agent/ and blind files)"""


def _split(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


def chosen_directions(cfg: EditConfig, agent) -> Directions:
    """The directions the config names, in the layer they belong to."""
    from ..agents import layer_shapes
    from ..factors import Directions

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
    from ..factors import Directions

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


def blind_frames(store, agent, max_frames: int) -> tuple:
    """``(obs (N, H, W, C), {kind: (N, H, W) bool}, agent state (N, hidden) or None)``: whole episodes of
    ``store`` from the first until ``max_frames`` are reached, then trimmed evenly to ``max_frames``."""
    import numpy as np

    from ..factors.collect import choose_frames, is_recurrent
    from ..scores import store_frames

    if len(store) == 0:
        raise ValueError(f"rollouts store {store.path} holds no episodes")
    lengths = np.cumsum(store.index["length"])  # (E,)
    n = int(np.searchsorted(lengths, max_frames)) + 1 if max_frames else len(store)
    episodes = list(range(min(n, len(store))))
    obs, masks = store_frames(store, episodes=episodes)
    state = None
    if is_recurrent(agent):
        if "agent_state" not in store.fields:
            raise ValueError(f"the agent is recurrent but rollouts store {store.path} has no 'agent_state' field")
        state = np.concatenate([store.episode(i)["agent_state"] for i in episodes])
    keep = choose_frames(len(obs), max_frames or None)
    return obs[keep], {k: m[keep] for k, m in masks.items()}, None if state is None else state[keep]


def blind_directions(cfg: EditConfig, agent, agent_dir: Path) -> tuple:
    """``(chosen, kept or None, found)`` for ``--blind``: the NMF directions of ``--layer`` that best locate the
    entity (``--top``), the other NMF directions when ``--keep others``, and what was found (directions, scores, frames)."""
    from ..factors.collect import open_store
    from ..runs import default_out
    from .blind import choose, parse_top

    if not cfg.layer:
        raise ValueError("--blind needs --layer: the layer whose NMF directions are searched "
                         "(policylens layers RUN lists them)")
    if cfg.direction:
        raise ValueError("--blind chooses the direction itself; drop --direction")
    if cfg.keep not in ("", "others"):
        raise ValueError(f"with --blind, --keep takes only 'others' (the other NMF directions); got {cfg.keep!r}")
    parse_top(cfg.top)  # refused before anything is read
    store = open_store(Path(cfg.store) if cfg.store else default_out(cfg.run, agent_dir))
    obs, masks, state = blind_frames(store, agent, cfg.max_frames)
    found = choose(agent, obs, masks, cfg.blind, layer=cfg.layer, k=cfg.k, state=state, seed=cfg.seed,
                   top=cfg.top, restarts=cfg.restarts, force=cfg.force)
    directions, chosen = found.directions, found.chosen
    rest = [j for j in range(len(directions)) if j not in chosen]
    kept = directions.select(rest) if cfg.keep == "others" and rest else None
    return directions.select(chosen), kept, {"directions": directions, "chosen": chosen, "scores": found.scores,
                                             "frames": len(obs), "store": str(store.path)}


def write_blind(cfg: EditConfig, found: dict) -> dict:
    """Save what ``--blind`` chose beside the new checkpoint: ``OUT/blind-directions.{json,safetensors}``
    (every NMF direction) and ``OUT/blind.json`` (each direction's score for the entity); returns the record."""
    directions = found["directions"]
    chosen = ",".join(directions.labels[j] for j in found["chosen"])  # best first, as --direction takes them
    path = directions.save(Path(cfg.out) / "blind-directions")
    rows = [{"label": label, "nmi": d["entities"][cfg.blind]["nmi"], "best_entity": d["best_entity"],
             "stability": d["stability"], "unstable": d["unstable"]}
            for label, d in zip(directions.labels, found["scores"]["directions"])]
    unstable = [rows[j]["label"] for j in found["chosen"] if rows[j]["unstable"]]
    info = {"entity": cfg.blind, "layer": cfg.layer, "chosen": chosen, "top": cfg.top, "k": len(directions),
            "frames": found["frames"], "store": found["store"], "seed": cfg.seed, "restarts": cfg.restarts,
            "chosen_unstable": unstable, "directions": rows}
    (Path(cfg.out) / "blind.json").write_text(json.dumps(info, indent=1))
    return {"directions": str(path), "selected": chosen, "blind": cfg.blind, "unstable": unstable}


def edit(cfg: EditConfig) -> Path:
    """Write the edited checkpoint ``cfg`` describes; returns its folder (``OUT/agent``)."""
    from ..agents import load_agent, read_config, save_agent
    from .project import project_out

    if not cfg.run or not cfg.out:
        raise ValueError("edit needs a RUN and --out NEW_RUN")
    agent_dir = resolve_run(cfg.run)
    config = read_config(agent_dir)
    if cfg.top != "1" and not cfg.blind:
        raise ValueError("--top chooses among --blind's NMF directions; without --blind name them with --direction")
    if bool(cfg.directions) + bool(cfg.channel) + bool(cfg.blind) != 1:
        raise ValueError("edit needs exactly one of --directions PATH (with --direction), --channel C or "
                         "--blind ENTITY")
    target = prepare_out(cfg.out, what="edited run", overwrite=cfg.overwrite, parts=EDIT_FILES) / "agent"
    agent = load_agent(agent_dir)
    if cfg.blind:
        dirs, kept, found = blind_directions(cfg, agent, agent_dir)
    else:
        dirs = chosen_directions(cfg, agent)
        kept, found = kept_directions(cfg, dirs), None
    edited = project_out(agent, dirs.layer, dirs, keep=kept)
    record = edited.policylens_edits[-1]
    if record["how"] != "fold":
        raise ValueError(f"projecting out of layer {dirs.layer!r} cannot be folded into the next layer's weights "
                         f"({record['reason']}); a checkpoint cannot carry the forward hook it would need. "
                         f"Edit a layer whose output feeds a conv or linear layer directly, or use "
                         f"policylens.edit.project_out in Python")
    record = {**record, "directions": cfg.directions or None, "selected": cfg.direction or cfg.channel,
              "kept": cfg.keep or None}
    if found is not None:
        record.update(write_blind(cfg, found))
    extra = {k: v for k, v in config.items() if k != "agent"}
    extra["edits"] = [*config.get("edits", []), {**record, "edited_from": cfg.run}]
    return save_agent(edited, config["agent"], target, extra=extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens edit", description=(
        "Make an agent blind to directions of a layer (Understanding RL Vision, Appendix A): fold the "
        "projection P = I - v v^T / |v|^2 into the next layer's weights and save a new checkpoint. With "
        "--keep, the projection is oblique: it removes the directions while passing the kept ones (e.g. the "
        "other NMF directions) unchanged, so an edit of a shared direction does not disturb the others. "
        "--blind ENTITY picks the direction by ground truth: NMF of --layer over the run's recorded frames, "
        "each direction scored against the entity's masks, the best one projected out (--keep others: oblique)."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent to edit")
    add_dataclass_args(parser, EditConfig, skip=("run",))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    cfg = from_args(EditConfig, parser.parse_args(argv))
    from ..agents import read_config
    from ..factors.stable import UNSTABLE

    with clear_errors(parser, also=(IndexError,)):
        path = edit(cfg)
    record = read_config(path)["edits"][-1]
    print(f"wrote {path}: {', '.join(record['labels'])} projected out of {record['layer']!r}, folded into "
          f"{', '.join(record['into'])}")
    if record.get("unstable"):
        print(f"warning: direction(s) {', '.join(record['unstable'])} are unstable (stability below "
              f"{UNSTABLE} over NMF restarts and resampled frames, see {Path(cfg.out) / 'blind.json'}): another "
              "draw of the decomposition may choose differently; report the edit's effect over restarts")
    return 0
