"""``policylens featvis RUN --layer L [--directions PATH | --channels 0,1,2] [--optimize]``.

Samples frames evenly from the run's rollouts store, finds each direction's dataset examples (receptive-field
patches, at most ``--max-per-obs`` per frame), its spatially-aware examples (spatial layers) and, with
``--optimize``, an optimised image; writes arrays (npz) + JSON, then the figures (PNG) drawn from them, under
``RUN/analysis/featvis/LAYER/`` (``runs/NAME/...`` for ``zoo:NAME``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import rollouts
from ..agents import resolve_run
from ..config import add_dataclass_args, clear_errors, from_args
from ..envs.render import frame_stack
from ..runs import default_out as default_store, prepare_out, run_dir

if TYPE_CHECKING:
    from ..factors import Directions


@dataclass
class FeatvisConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent"""
    store: str = ""
    """rollouts store to take observations from (default: RUN/rollouts.zarr, runs/NAME/rollouts.zarr for zoo:NAME)"""
    layer: str = ""
    """layer to visualise (`policylens layers RUN` lists them; default: the layer of --directions)"""
    directions: str = ""
    """Directions file (NAME.json or NAME.safetensors) to visualise, e.g. from NMF"""
    channels: tuple = ()
    """channels of --layer to visualise as one-hot directions, e.g. 0,1,2 (default: all, when no --directions)"""
    max_frames: int = 4000
    """frames sampled evenly from the store"""
    k: int = 8
    """dataset examples per direction"""
    max_per_obs: int = 1
    """at most this many of a direction's examples come from one frame (0: no cap)"""
    max_reuse: int = 0
    """spatial examples: at most this many cells of one image come from one frame (0: no cap)"""
    spatial: bool = True
    """also make spatially-aware examples (spatial layers only)"""
    optimize: bool = False
    """also make an optimisation-based image per direction"""
    steps: int = 256
    """optimisation steps"""
    lr: float = 0.05
    """optimisation learning rate (Adam)"""
    param: str = "fft"
    """image parameterisation: fft (decorrelated) | pixel"""
    jitter: int = 2
    """random shift in pixels before each step (0 suits MiniGrid's cnn: its 8-pixel cells do not survive shifts)"""
    position: str = "centre"
    """where the optimised image raises the direction: centre (the layer's middle position, as the paper), mean
    (over all positions) or Y,X; a non-spatial layer is taken whole"""
    amplitude: float = 0.25
    """logit scale of the fft image (a unit of its lowest frequency); larger saturates to extremal colours"""
    redirect: int = 32
    """steps of redirected ReLU gradients at the start (later only for images whose gradient vanished; 0: off)"""
    scale: float = 0.0
    """random relative zoom before each step, e.g. 0.1 (0: off)"""
    rotate: float = 0.0
    """random rotation in degrees before each step (0: off)"""
    colour_penalty: float = 0.0
    """weight of the penalty on pixels near the 8 extremal colours"""
    thumbnail: int = 32
    """size in pixels of the legend thumbnails"""
    seed: int = 0
    """seed of the optimisation (and of the receptive-field probe)"""
    batch_size: int = 256
    """observations per forward pass"""
    out: str = ""
    """output folder (default: RUN/analysis/featvis/LAYER)"""
    device: str = "cpu"
    """torch device for the agent"""
    overwrite: bool = False
    """replace the feature visualisation already in OUT"""
    progress: bool = True
    """show progress bars on stderr"""


def default_out(run: str, agent_dir: Path, layer: str) -> Path:
    """``RUN/analysis/featvis/LAYER`` (``runs/NAME/analysis/featvis/LAYER`` for ``zoo:NAME``)."""
    return run_dir(run, agent_dir) / "analysis" / "featvis" / layer


def parse_channels(values) -> list:
    """``("0", "3")`` (the comma-separated option) -> ``[0, 3]``."""
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"--channels must be integers separated by commas, got {','.join(values)!r}") from None


def pick_directions(cfg: FeatvisConfig, agent) -> Directions:
    """The directions to visualise: a Directions file, or one-hot channels of ``cfg.layer``."""
    import torch

    from ..agents import layer_shapes
    from ..factors import Directions

    if cfg.directions and cfg.channels:
        raise ValueError("give either --directions or --channels, not both")
    if cfg.directions:
        directions = Directions.load(cfg.directions)
        if cfg.layer and cfg.layer != directions.layer:
            raise ValueError(f"--layer {cfg.layer!r} differs from the layer of {cfg.directions} ({directions.layer!r})")
        return directions
    if not cfg.layer:
        raise ValueError("featvis needs --layer (or --directions, whose layer is used)")
    shape = layer_shapes(agent, names=[cfg.layer]).get(cfg.layer)  # KeyError listing the layers
    if shape is None:
        raise ValueError(f"layer {cfg.layer!r} is not reached by the agent's forward pass")
    n = shape[0]
    channels = parse_channels(cfg.channels) if cfg.channels else list(range(n))
    bad = [c for c in channels if not 0 <= c < n]
    if bad:
        raise ValueError(f"channels {bad} out of range: layer {cfg.layer!r} has {n} channels")
    return Directions(torch.eye(n)[channels], cfg.layer, tuple(f"ch{c}" for c in channels), "channel",
                      {"channels": channels})


def run_featvis(cfg: FeatvisConfig) -> dict:
    """Compute, save and plot as ``cfg`` says; returns ``{what: path}`` of the files written."""
    from ..agents import load_agent
    from .examples import dataset_examples, spatial_examples
    from .optimize import optimize_batch, optimize_position
    from .sample import sample_frames
    from .thumbnails import plot_examples, plot_images, plot_spatial, thumbnails

    if not cfg.run:
        raise ValueError("featvis needs a RUN: a run directory, checkpoint folder or zoo:NAME")
    cfg = replace(cfg, channels=tuple(parse_channels(cfg.channels)))
    agent_dir = resolve_run(cfg.run)
    agent = load_agent(agent_dir, device=cfg.device)
    directions = pick_directions(cfg, agent)
    store = rollouts.open(cfg.store or default_store(cfg.run, agent_dir))
    obs_shape = tuple(store.metadata.get("obs_shape", ()))
    if obs_shape and tuple(getattr(agent, "obs_shape", obs_shape)) != obs_shape:
        raise ValueError(f"rollouts store {store.path} holds obs {obs_shape}; the agent takes {tuple(agent.obs_shape)}")
    recurrent = bool(getattr(agent, "recurrent", False))
    out = prepare_out(Path(cfg.out) if cfg.out else default_out(cfg.run, agent_dir, directions.layer),
                      what="feature visualisation", overwrite=cfg.overwrite)
    sample = sample_frames(store, cfg.max_frames, with_state=recurrent, progress=cfg.progress)
    written = {"directions": directions.save(out / "directions")}
    source = {"run": str(cfg.run), "store": str(store.path), "config": asdict(cfg)}

    examples = dataset_examples(agent, sample.obs, directions, k=cfg.k, max_per_obs=cfg.max_per_obs or None,
                                state=sample.state, batch_size=cfg.batch_size, progress=cfg.progress)
    examples.meta.update(source, frame=sample.frames[examples.obs_index].tolist(),
                         episode=sample.episodes[examples.obs_index].tolist())
    written["examples"] = examples.save(out)
    legend = thumbnails(examples, cfg.thumbnail)  # (K, t, t, C)
    np.savez_compressed(out / "thumbnails.npz", thumbnails=legend)
    stack = frame_stack(store.env)  # an Atari stack is drawn as its newest frame
    written["examples.png"] = plot_examples(examples, out / "examples.png", stack)
    written["thumbnails.png"] = plot_images(legend, directions.labels, out / "thumbnails.png",
                                            f"legend, layer {directions.layer}", stack)

    if cfg.spatial and examples.receptive_field is not None:
        spatial = spatial_examples(agent, sample.obs, directions, max_reuse=cfg.max_reuse or None,
                                   state=sample.state, batch_size=cfg.batch_size, progress=cfg.progress)
        spatial.meta.update(source, frame=sample.frames[spatial.obs_index].tolist())
        written["spatial"] = spatial.save(out)
        written["spatial.png"] = plot_spatial(spatial, out / "spatial.png", stack)

    if cfg.optimize:
        where = optimize_position(agent, directions.layer, cfg.position)
        result = optimize_batch(agent, directions.layer, directions.vectors, steps=cfg.steps, lr=cfg.lr,
                                jitter=cfg.jitter, scale=cfg.scale or None, rotate=cfg.rotate or None,
                                colour_penalty=cfg.colour_penalty, seed=cfg.seed, param=cfg.param,
                                amplitude=cfg.amplitude, redirect=cfg.redirect, position=where,
                                reference_obs=sample.obs[:1024], progress=cfg.progress)
        np.savez_compressed(out / "optimized.npz", images=result.images, objective=result.objective,
                            history=result.history)
        (out / "optimized.json").write_text(json.dumps({"layer": directions.layer, "labels": list(directions.labels),
                                                        "position": where, "objective": result.objective.tolist(),
                                                        **source}, indent=1))
        written["optimized"] = out / "optimized.json"
        written["optimized.png"] = plot_images(result.images, directions.labels, out / "optimized.png",
                                               f"optimised images, layer {directions.layer}", stack)
    summary = {"layer": directions.layer, "labels": list(directions.labels), "frames": int(len(sample.frames)),
               "files": {k: str(v) for k, v in written.items()}, **source}
    (out / "featvis.json").write_text(json.dumps(summary, indent=1))
    written["summary"] = out / "featvis.json"
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens featvis", description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the agent")
    add_dataclass_args(parser, FeatvisConfig, skip=("run",))
    return parser


def main(argv=None) -> dict:
    parser = build_parser()
    cfg = from_args(FeatvisConfig, parser.parse_args(argv))
    with clear_errors(parser):
        written = run_featvis(cfg)
    for what, path in written.items():
        print(f"{what:<15} {path}")
    return written
