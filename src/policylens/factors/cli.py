"""``policylens factorize RUN --layer L --method nmf|pca|ica --k 8 [--on activations|attributions] [--out PATH]``.

Reads frames of the run's rollouts store, takes the layer's activations (or, with ``--on attributions``,
integrated-gradients attributions of ``--target`` to the layer), factorises them and writes
``PATH.safetensors`` + ``PATH.json`` (default ``RUN/analysis/directions/LAYER-METHOD-ON``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import add_dataclass_args, clear_errors, from_args

if TYPE_CHECKING:
    import torch

ON = ("activations", "attributions")


@dataclass
class FactorizeConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent"""
    layer: str = ""
    """layer to factorise (policylens layers RUN lists them)"""
    method: str = "nmf"
    """nmf | pca | ica"""
    k: int = 8
    """number of directions"""
    on: str = "activations"
    """activations | attributions (signed; NMF splits them into positive and negative parts)"""
    store: str = ""
    """rollouts store to read frames from (default: RUN/rollouts.zarr, runs/NAME/rollouts.zarr for zoo:NAME)"""
    out: str = ""
    """output path without suffix (default: RUN/analysis/directions/LAYER-METHOD-ON)"""
    max_frames: int = 2048
    """use at most this many frames, spread evenly over the store (0: all)"""
    every: int = 1
    """take every n-th frame before the max_frames cap"""
    target: str = "value"
    """with --on attributions: the output attributed (value, or an action's name or index)"""
    steps: int = 10
    """with --on attributions: integrated-gradients steps"""
    seed: int = 0
    """seed of the factorisation's restarts"""
    restarts: int = 5
    """NMF / ICA restarts (seeded); the stable choice among them is kept (lowest error, then most agreed on)"""
    bootstrap: int = 5
    """fits to bootstrap resamples of the frames for each direction's stability score (0: restarts only)"""
    max_iter: int = 1000
    """iteration cap of NMF / ICA"""
    batch_size: int = 256
    """frames per forward pass"""
    device: str = "cpu"
    """torch device for the agent"""
    overwrite: bool = False
    """replace the directions already at OUT"""


def _paths(cfg: FactorizeConfig):
    """``(agent dir, store path, output path)`` with the defaults filled in."""
    from ..agents import resolve_run
    from ..runs import run_dir as outputs_of

    agent_dir = resolve_run(cfg.run)
    run_dir = outputs_of(cfg.run, agent_dir)
    store = Path(cfg.store) if cfg.store else run_dir / "rollouts.zarr"
    out = Path(cfg.out) if cfg.out else run_dir / "analysis" / "directions" / f"{cfg.layer}-{cfg.method}-{cfg.on}"
    return agent_dir, store, out


def _check(cfg: FactorizeConfig) -> None:
    from .decompose import METHODS

    if not cfg.run:
        raise ValueError("factorize needs a RUN: a run directory, checkpoint folder or zoo:NAME")
    if not cfg.layer:
        raise ValueError("factorize needs --layer (policylens layers RUN lists the agent's layers)")
    if cfg.method not in METHODS:
        raise ValueError(f"method {cfg.method!r}; expected one of {', '.join(METHODS)}")
    if cfg.on not in ON:
        raise ValueError(f"--on {cfg.on!r}; expected one of {', '.join(ON)}")
    if cfg.on == "attributions" and cfg.method != "nmf":
        raise ValueError("--on attributions is factorised with NMF of their positive and negative parts; "
                         "use --method nmf")


def gather(cfg: FactorizeConfig, agent, store) -> torch.Tensor:
    """The layer's activations or attributions for the chosen frames of the store, ``(N, *layer shape)``."""
    import torch

    from ..attribution import attribute
    from .collect import choose_frames, collect_activations, iter_store

    frames = choose_frames(store.num_frames, cfg.max_frames or None, cfg.every)
    target = int(cfg.target) if cfg.target.lstrip("-").isdigit() else cfg.target
    parts = []
    for batch in iter_store(agent, store, frames, cfg.batch_size):
        obs, state = batch["obs"].to(cfg.device), batch["state"]
        state = None if state is None else state.to(cfg.device)
        if cfg.on == "activations":
            parts.append(collect_activations(agent, obs, cfg.layer, state=state, batch_size=cfg.batch_size))
        else:
            attr = attribute(agent, obs, target=target, layer=cfg.layer, method="ig", steps=cfg.steps, state=state)
            parts.append(torch.as_tensor(attr).detach().float().cpu())
    if not parts:
        raise ValueError(f"rollouts store {store.path} has no frames to factorise")
    return torch.cat(parts)


def factorize(cfg: FactorizeConfig) -> Path:
    """Run the factorisation ``cfg`` describes; returns the JSON path written."""
    from ..agents import load_agent
    from ..runs import prepare_out
    from .collect import open_store
    from .decompose import METHODS, nmf_attributions
    from .directions import Directions

    _check(cfg)
    agent_dir, store_path, out = _paths(cfg)
    agent = load_agent(agent_dir, device=cfg.device)
    store = open_store(store_path)
    prepare_out(out.parent, what="directions", overwrite=cfg.overwrite,
                parts=(out.with_suffix(".json").name, out.with_suffix(".safetensors").name))
    data = gather(cfg, agent, store)  # (N, C, ...)
    kwargs: dict[str, Any] = {"layer": cfg.layer, "seed": cfg.seed, "bootstrap": cfg.bootstrap}
    if cfg.method != "pca":
        kwargs.update(max_iter=cfg.max_iter, restarts=cfg.restarts)
    if cfg.on == "attributions":
        dirs = nmf_attributions(data, cfg.k, **kwargs)
    else:
        dirs = METHODS[cfg.method](data, cfg.k, **kwargs)
    source = {"run": cfg.run, "store": str(store_path), "frames": int(data.shape[0]), "config": asdict(cfg)}
    dirs = Directions(dirs.vectors, dirs.layer, dirs.labels, dirs.method, {**dirs.meta, "source": source})
    return dirs.save(out)


def stability_lines(labels, meta: dict) -> str:
    """One line per direction: its stability and the unstable flag, and what the flag means."""
    from .stable import UNSTABLE

    rows = [f"  {label}: stability {s:.3f}{'  UNSTABLE' if bad else ''}"
            for label, s, bad in zip(labels, meta["stability"], meta["unstable"])]
    n_bad = sum(meta["unstable"])
    note = (f"{n_bad} of {len(labels)} directions are unstable (median matched cosine across restarts and "
            f"resampled frames below {UNSTABLE}): findings resting on them should be reported over restarts"
            if n_bad else f"every direction is stable (>= {UNSTABLE})")
    if meta.get("k_requested"):
        note += (f"; {len(labels)} of the {meta['k_requested']} directions asked for: the data have rank "
                 f"{len(labels)}")
    return "\n".join(["stability (best-matched cosine over restarts and bootstrap resamples, median):", *rows,
                      note])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens factorize", description=(
        "Directions in a layer's channel space from the run's recorded frames: NMF (activations, or "
        "attributions split into positive and negative parts), PCA or ICA. Spatial positions count as samples."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent")
    add_dataclass_args(parser, FactorizeConfig, skip=("run",))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    cfg = from_args(FactorizeConfig, parser.parse_args(argv))
    with clear_errors(parser, also=(ImportError, IndexError)):
        path = factorize(cfg)
    info = json.loads(path.read_text())
    meta = info["meta"]
    summary = f"residual {meta['residual']:.4f}"
    if "explained_variance_ratio" in meta:
        summary += f", explained variance {sum(meta['explained_variance_ratio']):.4f}"
    print(f"wrote {path} (+ .safetensors): {len(info['labels'])} {info['method']} directions of layer "
          f"{info['layer']!r} on {cfg.on} of {meta['source']['frames']} frames, {summary}")
    print(stability_lines(info["labels"], meta))
    return 0
