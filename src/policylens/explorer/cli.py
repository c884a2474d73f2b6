"""``policylens explore RUN [--store STORE] [--episodes 0-7] [--steps 512] [--layer L] [--k 8] [--out DIR]
[--serve [--port 8000]]``."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from ..config import add_dataclass_args, from_args


@dataclass
class ExploreConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent"""
    store: Optional[str] = None
    """rollouts store to read (default: RUN/rollouts.zarr, recorded first if it does not exist)"""
    episodes: str = "0-7"
    """episodes of the store to show: indices and ranges (0-7, 0,3,5-6) or all"""
    steps: int = 512
    """show at most this many steps of each episode (from its start)"""
    layer: Optional[str] = None
    """layer(s) to attribute to, comma-separated (default: conv2b for the clear architecture as in the paper, else the last spatial layer; attention agents add their attention maps)"""
    k: int = 8
    """number of NMF features (a residual feature is added)"""
    out: Optional[str] = None
    """folder to write index.html and its data into (default: RUN/explorer)"""
    ig_steps: int = 10
    """integrated-gradients steps (alpha = 1/steps ... 1, as in Understanding RL Vision)"""
    nmf_frames: int = 1024
    """frames (spread over the trajectories) whose value attributions the NMF is fitted on"""
    bookmarks: int = 10
    """GAE bookmarks per trajectory (steps with the most extreme advantages)"""
    bookmark_separation: int = 3
    """bookmarks of one trajectory are at least this many steps apart"""
    thumbnail: int = 32
    """legend thumbnail size in pixels"""
    map_size: int = 16
    """store maps of wider layers summed over blocks of positions, at most this many cells a side (0: the layer's own resolution; the overlays are smoothed over about a cell anyway)"""
    tree_k: int = 2
    """saliency tree (rl-attention) of the value at each trajectory's first frame and its bookmarks: top-k units per layer (0: none)"""
    tree_select: str = "topk"
    """how a tree node's children are chosen: topk (the tree-k largest |attribution|) | peaks (rl-attention's peak detection: at most tree-k local maxima of |attribution|, each at least half the layer's largest)"""
    batch: int = 64
    """frames per attribution pass (bounds memory)"""
    seed: int = 0
    """seed of the NMF (and of recording, when the store is recorded first)"""
    device: str = "cpu"
    """torch device for the agent"""
    workers: int = 1
    """worker processes (or Ray tasks) analysing trajectories (attribution maps, saliency trees); the export does not depend on it"""
    backend: str = "process"
    """where workers run: process (local processes) | ray (a Ray cluster)"""
    ray_address: Optional[str] = None
    """Ray cluster address for backend=ray (default: start a local Ray)"""
    reuse: bool = True
    """keep an explorer already in OUT that was written with the same agent weights, store and settings instead of
    recomputing it (false: always recompute)"""
    overwrite: bool = False
    """replace an explorer already in OUT (one not kept by --reuse)"""
    serve: bool = False
    """after writing, serve the explorer on 127.0.0.1 with a live panel (play the game, see each new frame's attribution)"""
    port: int = 8000
    """port of the local server (0: any free port)"""
    progress: bool = True
    """show a progress bar on stderr"""


EXPORT_FIELDS = ("store", "episodes", "steps", "k", "out", "ig_steps", "nmf_frames", "bookmarks",
                 "bookmark_separation", "thumbnail", "map_size", "tree_k", "tree_select", "batch", "seed", "device", "progress", "reuse",
                 "overwrite", "workers", "backend", "ray_address")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens explore", description=(
        "Write the trajectory explorer (Understanding RL Vision's interface) for recorded episodes: "
        "observation video, attribution of the value and of the sampled action to a hidden layer split over NMF "
        "features (good news / bad news, with a residual), a legend of feature thumbnails, a timeline with "
        "value, action probabilities and advantages, and GAE bookmarks. RUN/explorer/index.html opens from disk."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent")
    add_dataclass_args(parser, ExploreConfig, skip=("run",))
    return parser


def run_config(cfg: ExploreConfig) -> dict:
    """Export as ``cfg`` says; returns :func:`~policylens.explorer.export.export`'s summary."""
    from .export import export

    return export(cfg.run, layers=cfg.layer, **{name: getattr(cfg, name) for name in EXPORT_FIELDS})


def print_by_entity(out) -> None:
    """Each layer's attribution by object (its ``meta["attribution_by_entity"]``), where the store had ground truth:
    the share of |attribution| on each entity against the share of the layer's cells it covers."""
    from .encode import read_js

    for layer in read_js(out / "data" / "manifest.js")[1]["layers"]:
        shares = layer.get("meta", {}).get("attribution_by_entity")
        if not shares:
            continue
        print(f"attribution by object, layer {layer['name']} ({layer['meta'].get('nmf_on', 'value attributions')} "
              f"of {layer['meta'].get('nmf_frames')} frames): share of |attribution| / share of the cells")
        for kind, row in sorted(shares.items(), key=lambda kv: -kv[1]["mass"]):
            print(f"  {kind:<12} {row['mass']:7.1%} / {row['area']:7.1%}   ({row['ratio']:.2f}x its area)")


def main(argv=None) -> dict:
    parser = build_parser()
    cfg = from_args(ExploreConfig, parser.parse_args(argv))
    if not cfg.run:
        raise ValueError("explore needs a RUN: a run directory, checkpoint folder or zoo:NAME")
    try:
        summary = run_config(cfg)
    except ImportError as e:  # --backend ray without Ray: say so, no traceback
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    kept = "kept: written before with the same agent, store and settings; " if summary.get("reused") else ""
    print(f"{summary['index']}  ({kept}{summary['bytes'] / 1e6:.1f} MB in {summary['files']} files; layers "
          f"{', '.join(summary['layers'])}; open it in a browser)")
    print_by_entity(summary["index"].parent)
    if cfg.serve:
        from .server import serve

        serve(cfg.run, summary["index"].parent, port=cfg.port, device=cfg.device)
    return summary
