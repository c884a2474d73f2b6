"""``policylens attribute RUN --store STORE --layer L --target value --method ig --steps 10 [--episodes 0,1]
[--out RUN/analysis/attribution/NAME.zarr|.npz]``: attributions for recorded episodes, saved with metadata.

Observations come from the rollouts store; a recurrent agent gets the state it received at each recorded
step (the store's ``agent_state``). The result (see :mod:`.results`) holds one attribution per frame plus
``episode``/``step``/``frame`` indices, and for IG the completeness deltas, summarised in the metadata as
``max |delta|`` and ``max |delta| / |F(x) - F(baseline)|``.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import add_dataclass_args, clear_errors, from_args
from ..parallel import agent_files, is_local, pmap, with_agent
from .method_names import METHODS
from .results import check_path, save_attributions


@dataclass
class AttributeConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent"""
    store: str = ""
    """rollouts store with the observations (default: the run's rollouts.zarr)"""
    layer: str = ""
    """layer to attribute to (`policylens layers RUN` lists them); empty: the input pixels"""
    target: str = "value"
    """what to explain: value | an action index | action:NAME | action:A-action:B (a logit difference)"""
    method: str = "ig"
    """saliency | grad_x_act | ig | smoothgrad | vargrad"""
    steps: int = 10
    """integrated-gradients points on the path (alpha = 1/steps .. 1)"""
    samples: int = 16
    """noisy copies per frame for smoothgrad / vargrad"""
    noise: float = 0.1
    """smoothgrad / vargrad noise std as a fraction of each frame's activation range"""
    seed: int = 0
    """seed of the smoothgrad / vargrad noise (a frame's noise depends on the seed and its place in its batch)"""
    episodes: tuple = ()
    """episode indices to attribute (default: every episode in the store)"""
    out: str = ""
    """output .zarr or .npz (default: RUN/analysis/attribution/LAYER-METHOD-TARGET.zarr)"""
    batch: int = 64
    """frames per attribution call"""
    chunk_size: Optional[int] = None
    """rows (frames x points) in one forward/backward pass, to bound memory (default: a whole batch)"""
    device: str = "cpu"
    """torch device for the agent"""
    workers: int = 1
    """worker processes (or Ray tasks) attributing batches of frames; the result does not depend on it (to float precision)"""
    backend: str = "process"
    """where workers run: process (local processes) | ray (a Ray cluster)"""
    ray_address: Optional[str] = None
    """Ray cluster address for backend=ray (default: start a local Ray)"""
    overwrite: bool = False
    """replace the attributions already at OUT"""
    progress: bool = True
    """show a progress bar (frames/s, ETA) on stderr"""


EXECUTION = ("workers", "backend", "ray_address")  # how it ran (metadata "execution"), not what it computed


def _target(text: str):
    return int(text) if re.fullmatch(r"\d+", text.strip()) else text


def _default_out(cfg: AttributeConfig, agent_dir: Path, target_name: str) -> Path:
    from ..runs import run_dir

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.layer or 'input'}-{cfg.method}-{target_name}").strip("_")
    return run_dir(cfg.run, agent_dir) / "analysis" / "attribution" / f"{name}.zarr"


def _episodes(cfg: AttributeConfig, store) -> list:
    try:
        episodes = [int(e) for e in cfg.episodes] if cfg.episodes else list(range(len(store)))
    except ValueError:
        raise ValueError(f"--episodes must be comma-separated integers, got {','.join(cfg.episodes)}") from None
    bad = [e for e in episodes if not 0 <= e < len(store)]
    if bad:
        raise ValueError(f"episodes {bad} out of range: {store.path} holds {len(store)} episodes (0..{len(store) - 1})")
    return episodes


def _batches(store, episodes: list, recurrent: bool, batch: int):
    """Yield ``{"obs", "state", "episode", "step", "frame"}`` with up to ``batch`` frames, across episodes."""
    keys = ("obs", "state", "episode", "step", "frame")
    pending: dict[str, list] = {k: [] for k in keys}
    size = 0
    for i, e in enumerate(episodes):
        ep = store.episode(e)
        pending["obs"].append(ep["obs"])  # (T, H, W, C)
        pending["state"].append(ep["agent_state"] if recurrent else np.zeros((ep.length, 0), np.float32))
        pending["episode"].append(np.full(ep.length, e, np.int64))
        pending["step"].append(np.arange(ep.length, dtype=np.int64))
        pending["frame"].append(ep.start + np.arange(ep.length, dtype=np.int64))
        size += ep.length
        while size >= batch or (i == len(episodes) - 1 and size):
            joined = {k: np.concatenate(v) for k, v in pending.items()}
            yield {k: v[:batch] for k, v in joined.items()}
            pending = {k: [v[batch:]] for k, v in joined.items()}
            size = max(size - batch, 0)


def run_config(cfg: AttributeConfig) -> Path:
    """Attribute every frame of the chosen episodes as ``cfg`` says; returns the output path."""
    from tqdm.auto import tqdm

    from .. import rollouts
    from ..agents import get_layer, load_agent, resolve_run
    from ..runs import default_out, prepare_out
    from .targets import resolve_target

    if not cfg.run:
        raise ValueError("attribute needs a RUN: a run directory, checkpoint folder or zoo:NAME")
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; expected one of {', '.join(METHODS)}")
    if cfg.batch < 1:
        raise ValueError(f"batch must be >= 1, got {cfg.batch}")
    agent_dir = resolve_run(cfg.run)
    agent = load_agent(agent_dir, device=cfg.device)
    store = rollouts.open(cfg.store or default_out(cfg.run, agent_dir))
    stored_shape, agent_shape = tuple(store.metadata.get("obs_shape", ())), tuple(getattr(agent, "obs_shape", ()))
    if stored_shape and agent_shape and stored_shape != agent_shape:
        raise ValueError(f"store {store.path} holds observations {stored_shape}, but the agent takes {agent_shape}")
    recurrent = getattr(agent, "recurrent", False)
    if recurrent and "agent_state" not in store.fields:
        raise ValueError(f"the agent is recurrent but store {store.path} has no agent_state field")
    if cfg.layer:
        get_layer(agent, cfg.layer)  # a KeyError listing the layers
    target = resolve_target(_target(cfg.target), agent)
    out = check_path(cfg.out) if cfg.out else _default_out(cfg, agent_dir, target.name)
    prepare_out(out, what="attributions", overwrite=cfg.overwrite)
    episodes = _episodes(cfg, store)
    total = int(sum(store.episode(e).length for e in episodes))
    settings = {"target": _target(cfg.target), "layer": cfg.layer or None, "method": cfg.method,
                "options": method_options(cfg), "device": str(cfg.device)}
    local = is_local(cfg.backend, cfg.workers)
    shared = None if local else {**settings, "agent": agent_files(agent_dir)}
    parts: dict[str, list] = {"attribution": [], "delta": [], "episode": [], "step": [], "frame": []}

    def tasks():  # read here, batch by batch, as workers free up
        for b in _batches(store, episodes, recurrent, cfg.batch):
            for k in ("episode", "step", "frame"):
                parts[k].append(b[k])
            yield {"obs": b["obs"], "state": b["state"] if recurrent else None}

    bar = tqdm(total=total, unit="frame", disable=not cfg.progress,
               desc=f"attribute {cfg.layer or 'input'}" + (f" ({cfg.workers} {cfg.backend} workers)" * (not local)))
    results = pmap(attribute_task, tasks(), shared, setup=attribute_setup,
                   context={**settings, "agent": agent, "target": target} if local else None, backend=cfg.backend,
                   workers=cfg.workers, ray_address=cfg.ray_address, what="attribution batch",
                   on_done=lambda i, r: bar.update(len(r["attribution"])))
    try:
        for result in results:
            parts["attribution"].append(result["attribution"])
            if result["delta"] is not None:
                parts["delta"].append(result["delta"])
    finally:
        results.close()
        bar.close()
    arrays = {k: np.concatenate(v) for k, v in parts.items() if v}
    meta_config = {**asdict(cfg), "episodes": episodes}
    execution = {name: meta_config.pop(name) for name in EXECUTION}
    meta: dict[str, Any] = {"run": str(cfg.run), "store": str(store.path), "layer": cfg.layer or None,
                            "target": target.name, "method": cfg.method, "episodes": episodes, "frames": total,
                            "shape": list(arrays["attribution"].shape[1:]), "config": meta_config,
                            "execution": execution}
    if cfg.method == "ig":
        meta.update(steps=cfg.steps, baseline="zero", delta=delta_summary(arrays["attribution"], arrays["delta"]))
    elif cfg.method in ("smoothgrad", "vargrad"):
        meta.update(samples=cfg.samples, noise=cfg.noise, seed=cfg.seed)
    return save_attributions(out, arrays, meta)


def method_options(cfg: AttributeConfig) -> dict:
    """The keyword arguments of :func:`~policylens.attribution.attribute` that ``cfg.method`` takes."""
    noisy = dict(samples=cfg.samples, noise=cfg.noise, seed=cfg.seed)
    by_method: dict[str, dict] = {"ig": dict(steps=cfg.steps, return_delta=True), "smoothgrad": noisy, "vargrad": noisy}
    return {"chunk_size": cfg.chunk_size, **by_method.get(cfg.method, {})}


def attribute_setup(shared: dict) -> dict:
    """A worker's context: the agent loaded and the target resolved on it."""
    from .targets import resolve_target

    context = with_agent(shared)
    return {**context, "target": resolve_target(context["target"], context["agent"])}


def attribute_task(context: dict, batch: dict) -> dict:
    """:func:`~policylens.parallel.pmap` task: ``{"attribution": (B, ...) float32, "delta": (B,) float32 or None}``
    for a batch ``{"obs": (B, ...), "state": (B, hidden) or None}`` (the state a recurrent agent received)."""
    import torch

    from .methods import attribute

    state = None if batch["state"] is None else torch.as_tensor(batch["state"])  # (B, hidden)
    result = attribute(context["agent"], batch["obs"], state=state, target=context["target"], layer=context["layer"],
                       method=context["method"], **context["options"])
    attr, delta = result if context["method"] == "ig" else (result, None)
    return {"attribution": attr.detach().cpu().numpy().astype(np.float32),
            "delta": None if delta is None else delta.detach().cpu().numpy().astype(np.float32)}


def delta_summary(attribution: np.ndarray, delta: np.ndarray) -> dict:
    """``max |delta|`` and ``max |delta| / |F(x) - F(baseline)|`` (frames where that difference is not ~0)."""
    change = attribution.reshape(len(attribution), -1).sum(1, dtype=np.float64) - delta  # F(x) - F(b) (F,)
    moved = np.abs(change) > 1e-6
    rel = np.abs(delta[moved]) / np.abs(change[moved])
    return {"max_abs": float(np.abs(delta).max(initial=0.0)), "max_rel": float(rel.max(initial=0.0)),
            "mean_abs_change": float(np.abs(change).mean()) if len(change) else 0.0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens attribute", description=(
        "Attribute an agent's value or action logits to a layer (or the input) for recorded episodes: "
        f"{', '.join(METHODS)}. Saves arrays + JSON metadata (.zarr or .npz)."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent")
    add_dataclass_args(parser, AttributeConfig, skip=("run",))
    return parser


def main(argv=None) -> Path:
    parser = build_parser()
    cfg = from_args(AttributeConfig, parser.parse_args(argv))
    with clear_errors(parser, also=(ImportError,)):  # ImportError: --backend ray without Ray
        out = run_config(cfg)
    print(f"wrote {out}")
    return out
