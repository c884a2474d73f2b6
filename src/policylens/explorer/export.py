"""Compute what the explorer shows for recorded trajectories, and write it (``policylens explore RUN``).

    >>> from policylens.explorer import export
    >>> export("runs/demo", episodes="0-7", steps=512, k=8)      # -> runs/demo/explorer/index.html

Per trajectory: frames (a frame stack's newest frame, and the game's own pictures where the store has them),
value, action probabilities, sampled action, reward, done, GAE advantages and bookmarks (from the rollouts
store). Per exported layer: integrated-gradients attribution of the value and of the sampled action's logit to
the layer, split over ``k`` NMF directions of value attributions plus a residual, per sign, with a legend
thumbnail per direction (its top dataset example); attention agents also get their attention maps as a layer.
The first frame and the bookmarked frames of each trajectory get the value's saliency tree
(:func:`~policylens.attribution.saliency_tree`). All analysis calls sit in :mod:`.analysis` (:func:`analyse_layer`
and :func:`add_saliency_trees`, where the time goes and how it is kept short).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .analysis import (  # noqa: F401 (the API)
    NMF_BOOTSTRAP,
    NMF_DTYPE,
    NMF_RESTARTS,
    OUTPUTS,
    action_attributions,
    add_saliency_trees,
    analyse_layer,
    attention_layer_maps,
    attributions,
    candidate_layers,
    check_layer,
    is_attention,
    layer_attributions,
    nmf_maps,
    nmf_sample,
    tree_frames,
)
from .bundle import Trajectory, explorer_summary, write_explorer
from .dispatch import TrajectoryMap

PREFERRED_LAYER = {"Clear": "conv2b"}  # the paper's layer 2b
RECORD_ALL = 8  # episodes recorded for --episodes all when the run has no store yet


# ------------------------------------------------------------------------------------------------ choosing
def parse_episodes(text, available: int) -> list:
    """``"0-7"``, ``"0,3,5-6"`` or ``"all"`` -> episode indices, checked against ``available``."""
    if str(text).strip() == "all":
        return list(range(available))
    chosen: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"episodes {text!r}: expected indices and ranges like 0-7 or 0,3,5-6, or 'all'")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise ValueError(f"episodes {text!r}: range {a}-{b} runs backwards")
        seen = set(chosen)
        chosen += [e for e in range(a, b + 1) if e not in seen]
    if chosen and max(chosen) >= available:
        raise ValueError(f"episodes {text!r} asks for episode {max(chosen)}, but the store holds {available} "
                         f"(0..{available - 1}); record more with `policylens record RUN --episodes N`")
    return chosen


def spatial_layers(agent) -> dict:
    """``{name: (C, h, w)}`` of the candidate layers whose activations are spatial."""
    from ..agents import spatial_layers as spatial

    return spatial(agent, candidate_layers(agent))


def default_layers(agent) -> list:
    """The layers exported when none are named: the paper's layer for its architecture, else the last
    spatial layer that is not attention; plus the attention maps of an attention agent."""
    spatial = spatial_layers(agent)
    attention = [n for n in spatial if is_attention(agent, n)]
    plain = [n for n in spatial if n not in attention and not n.startswith("attention")]
    if not plain:  # an MLP (vector observations): its last shared hidden layer (one position per frame), else
        flat = flat_layers(agent)  # the value tower's last (the NMF is of value attributions)
        shared = [n for n in flat if n in (getattr(agent, "LAYERS", None) or {})]
        if flat:
            return [(shared or flat)[-1]]
        raise ValueError(f"{type(agent).__name__} has no hidden layer to attribute to (layers: "
                         f"{', '.join(candidate_layers(agent))}); the explorer needs a (C, h, w) or (C,) layer")
    preferred = PREFERRED_LAYER.get(type(agent).__name__)
    return [preferred if preferred in plain else plain[-1], *attention]


def flat_layers(agent) -> list:
    """The candidate layers with flat ``(C,)`` activations, heads (``pi``, ``v``) and ``hx`` left out."""
    from ..agents import layer_shapes

    names = [n for n in candidate_layers(agent) if n not in ("pi", "v", "hx")]
    return [n for n, s in layer_shapes(agent, names=names).items() if len(s) == 1]


# ------------------------------------------------------------------------------------------------ trajectories
def load_trajectories(store, episodes, steps: int) -> list:
    """The first ``steps`` frames of each chosen episode of a rollouts store, as :class:`Trajectory`."""
    from ..gae import gae

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    trajectories = []
    for e in episodes:
        ep = store.episode(e)
        t = min(ep.length, steps)
        field = lambda name: np.asarray(store.read(name, ep.start, ep.start + t))  # noqa: E731  (t, ...)
        reward, value, done = field("reward"), field("value"), field("done")
        if "advantages" in store.fields:
            advantages = field("advantages")
        else:  # a store written before advantages were added: compute them with the recording defaults
            advantages = gae(np.asarray(ep["reward"]), np.asarray(ep["value"]), np.asarray(ep["done"]))[0][:t]
        info = {"episode": int(e), "cause": ep.info["cause"], "return": float(ep.info["return"]),
                "level_seed": int(ep.info["level_seed"]), "steps_recorded": int(ep.length)}
        state = field("agent_state") if "agent_state" in store.fields else None  # (T, hidden) input state
        render = field("render") if "render" in store.fields else None  # (T, h, w, 3) the game's own pictures
        trajectories.append(Trajectory(field("obs"), value, field("logits"), field("action"), reward, done,
                                       advantages, info, state=state, masks=_masks(store, e, t), render=render))
    return trajectories


def _masks(store, e: int, t: int) -> "dict | None":
    """The ground-truth entity masks of the first ``t`` frames of episode ``e`` (None: the store has none)."""
    from ..scores import episode_masks

    try:
        return {kind: m[:t] for kind, m in episode_masks(store, e).items()}
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ the command
def run_paths(run, store=None, out=None) -> tuple:
    """``(agent dir, store path, explorer folder)`` for a RUN (zoo runs write under ``runs/NAME``)."""
    from ..agents import resolve_run
    from ..runs import run_dir

    agent_dir = resolve_run(run)
    store_path = Path(store) if store else run_dir(run, agent_dir) / "rollouts.zarr"
    out = Path(out) if out else run_dir(run, agent_dir) / "explorer"
    return agent_dir, store_path, out


def export_key(agent_dir: Path, data, settings: dict) -> dict:
    """What an export is a function of: the agent's weights (sha256), the store ``data`` (sha256 of its
    attributes, its episode and frame counts) and the export's settings. Two exports with equal keys write the
    same explorer."""
    from ..runs import sha256

    return {"agent_sha256": sha256(Path(agent_dir) / "weights.safetensors"),
            "store": {"attributes_sha256": sha256(Path(data.path) / "zarr.json"), "episodes": len(data),
                      "frames": data.num_frames}, "settings": settings}


def written_key(out: Path) -> "dict | None":
    """The :func:`export_key` the explorer in ``out`` was written with (None: none there, or an older one)."""
    from .encode import read_js

    manifest = out / "data" / "manifest.js"
    if not manifest.is_file():
        return None
    try:
        return read_js(manifest)[1].get("meta", {}).get("key")
    except ValueError:
        return None


def export(run, *, store=None, episodes="0-7", steps: int = 512, layers=None, k: int = 8, out=None,
           ig_steps: int = 10, nmf_frames: int = 1024, bookmarks: int = 10, bookmark_separation: int = 3,
           thumbnail: int = 32, map_size: int = 16, batch: int = 64, seed: int = 0, device: str = "cpu",
           tree_k: int = 2, tree_select: str = "topk", progress: bool = True, reuse: bool = False, overwrite: bool = False,
           backend: str = "process", workers: int = 1, ray_address: "str | None" = None) -> dict:
    """Write the explorer for ``episodes`` of the run's rollouts store (recorded first when the store does
    not exist). ``layers``: names (a list or a comma-separated string; default :func:`default_layers`).
    ``tree_k``: children per node of the saliency trees of each trajectory's first frame and bookmarks
    (0: no trees), ``tree_select`` how they are chosen (topk | peaks). ``reuse``: when ``out`` already holds an explorer written with the same agent weights,
    store and settings (:func:`export_key`), keep it instead of recomputing it (``"reused": True``); any other
    explorer in ``out`` is refused unless ``overwrite``. ``backend``, ``workers``: where trajectories are analysed.
    Returns :func:`~policylens.explorer.bundle.write_explorer`'s summary plus ``layers``, ``store``, ``reused``."""
    from tqdm.auto import tqdm

    from .. import rollouts
    from ..agents import load_agent
    from ..attribution.peaks import check_select
    from ..runs import prepare_out

    agent_dir, store_path, out = run_paths(run, store, out)
    if not reuse:
        prepare_out(out, what="explorer", overwrite=overwrite)
    agent = load_agent(agent_dir, device=device).eval()
    over = TrajectoryMap(agent, agent_dir, backend, workers, ray_address, device)  # workers start when needed
    names = [n.strip() for n in layers.split(",")] if isinstance(layers, str) else list(layers or [])
    names = [n for n in names if n] or default_layers(agent)
    for name in names:
        check_layer(agent, name)
    if k < 1:
        raise ValueError(f"k (NMF directions) must be >= 1, got {k}")
    if tree_k < 0:
        raise ValueError(f"tree_k (children per saliency-tree node) must be >= 0 (0: no trees), got {tree_k}")
    check_select(tree_select, 0.5)
    chosen = {"tree_select": tree_select} if tree_select != "topk" else {}  # topk: the keys of earlier exports
    if not (store_path / "zarr.json").is_file():
        if store:
            raise FileNotFoundError(f"no rollouts store at {store_path}")
        needed = RECORD_ALL if str(episodes).strip() == "all" else max(parse_episodes(episodes, 1 << 62)) + 1
        rollouts.record(rollouts.RecordConfig(run=str(run), episodes=needed, out=str(store_path), seed=seed,
                                              progress=progress, device=device))
    settings = {"episodes": str(episodes), "steps": steps, "layers": names, "k": k, "ig_steps": ig_steps,
                "nmf_frames": nmf_frames, "bookmarks": bookmarks, "bookmark_separation": bookmark_separation,
                "thumbnail": thumbnail, "map_size": map_size, "tree_k": tree_k, **chosen, "seed": seed,
                "nmf": {"restarts": NMF_RESTARTS, "bootstrap": NMF_BOOTSTRAP, "dtype": NMF_DTYPE}}
    data = rollouts.open(store_path)
    key = json.loads(json.dumps(export_key(agent_dir, data, settings)))  # as the manifest stores it
    if reuse and written_key(out) == key:
        return {**explorer_summary(out), "layers": names, "store": store_path, "reused": True}
    prepare_out(out, what="explorer (of other weights, store or settings)" if reuse else "explorer",
                overwrite=overwrite)
    trajectories = load_trajectories(data, parse_episodes(episodes, len(data)), steps)
    bar = tqdm(total=len(trajectories) * len(names), desc="explore", unit="traj", disable=not progress)
    try:
        views = [analyse_layer(agent, trajectories, name, k=k, ig_steps=ig_steps, nmf_frames=nmf_frames,
                               thumbnail=thumbnail, map_size=map_size, batch=batch, seed=seed, env=data.env,
                               progress=bar.update, over=over)
                 for name in names]
        if tree_k:
            bar.total += len(trajectories)
            add_saliency_trees(agent, trajectories, lambda tr: tree_frames(tr, bookmarks, bookmark_separation),
                               k=tree_k, select=tree_select, progress=bar.update, over=over)
    finally:
        over.close()
        bar.close()
    for j, view in enumerate(views):
        if view.directions is not None:
            view.directions.save(out / "directions" / f"l{j}")
    action_names = data.action_names or list(getattr(agent, "action_names", []) or [])
    title = f"{Path(str(run)).name if not str(run).startswith('zoo:') else run} - {data.env}"
    summary = write_explorer(out, views, trajectories, title=title, env=data.env, run=str(data.run or run),
                             action_names=action_names, bookmark_count=bookmarks,
                             bookmark_separation=bookmark_separation,
                             meta={"store": str(store_path), "steps": steps, "episodes": str(episodes),
                                   "tree_k": tree_k, **chosen, "key": key})
    return {**summary, "layers": names, "store": store_path, "reused": False}
