"""``policylens sim hx RUN [--store STORE] [--out DIR] [--k 8] [--clusters 8] [--sim auto|none|DIR]``.

Hidden-state analysis of a recurrent agent on its recorded rollouts (:mod:`.core`): z-scored
``hx`` -> PCA, ICA, NMF, k-means, t-SNE, written to ``OUT`` (default ``RUN/analysis/hx``)::

    pca|ica|nmf.json + .safetensors   Directions of layer "hx" in z-space (meta: std, zscore_mean)
    frames.npz                        per frame: states, pca/ica/nmf coefficients, cluster, tsne (+ tsne_index),
                                      value, action, entropy, reward, progress, done, episode, t
    summary.json                      variance explained, clusters (size, mean value / entropy), settings
    pcs.png variance.png tsne.png loadings.png
    sim/                              with a simulator (RUN/sim, or --sim DIR):
      projected.npz                   simulated hx z-scored and projected onto the real components
      summary.json simulated.png      how much of them the real components hold; cluster occupancy
      state/                          the same analysis of the simulator's own state [h, s]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...config import add_dataclass_args, clear_errors, from_args
from ...sim.command import SimCommand, resolve, say

COLOUR_FIELDS = ("value", "action", "entropy", "reward", "progress")


@dataclass
class HxConfig(SimCommand):
    sim: str = "auto"
    """simulator to compare: auto (RUN/sim when it exists), none, or a simulator folder"""
    k: int = 8
    """directions kept per method (PCA, ICA, NMF)"""
    clusters: int = 8
    """k-means clusters"""
    max_frames: int = 20000
    """analyse whole episodes from the start of the store up to this many frames (0: all)"""
    tsne_frames: int = 3000
    """t-SNE embeds a seeded subsample of at most this many frames (0: no t-SNE)"""
    perplexity: float = 30.0
    """t-SNE perplexity (lowered to (frames - 1) / 3 for few frames)"""
    tsne_iter: int = 1000
    """t-SNE optimisation steps (at least 250)"""
    std_floor: float = 1e-6
    """smallest per-unit standard deviation used in z-scoring (a unit that never moves gets z = 0)"""
    max_iter: int = 1000
    """iteration cap of ICA and NMF"""
    sim_samples: int = 256
    """simulated rollouts, one latent z ~ N(0, 1) each"""
    sim_steps: int = 20
    """steps per simulated rollout"""
    sim_start: str = "prior"
    """where simulated rollouts start: prior (z ~ N(0, 1)) or filtered (real context frames of the store through
    the posterior, the agent acting from the last, as sim swap and sim fidelity start)"""
    plots: bool = True
    """write the PNG figures beside the arrays"""
    batch_size: int = 256
    """frames per agent forward pass"""


def _check(cfg: HxConfig) -> None:
    for name in ("k", "clusters", "sim_samples", "sim_steps", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.sim_start not in ("prior", "filtered"):
        raise ValueError(f"--sim-start {cfg.sim_start!r}; expected prior or filtered")


def _analyze(cfg: HxConfig, states, colours: dict, out: Path, layer: str, action_names, source: dict,
             k: int, clusters: int) -> tuple:
    """The pipeline on ``states`` with the CLI's settings, saved (and plotted) in ``out``: ``(summary path,
    HxAnalysis)``."""
    from .core import analyze, save_analysis

    analysis = analyze(states, colours, k=k, clusters=clusters, tsne_frames=cfg.tsne_frames,
                       perplexity=cfg.perplexity, tsne_iter=cfg.tsne_iter, seed=cfg.seed, max_iter=cfg.max_iter,
                       std_floor=cfg.std_floor, layer=layer, action_names=action_names)
    path = save_analysis(analysis, out, {"source": source})
    if cfg.plots:
        from .plots import plot_all

        plot_all(out)
    return path, analysis


def compare_simulated(cfg: HxConfig, sim_folder: Path, agent, analysis, out: Path, action_names,
                      store: "Path | None" = None) -> Path:
    """Simulated hx projected onto the real components (``out/sim``) and the simulator's own state analysed
    (``out/sim/state``); returns ``out/sim/summary.json``. ``store``: where ``--sim-start filtered`` draws its
    real contexts."""
    from ...sim.checkpoint import load_sim
    from .core import project, simulated_frames

    sim, frozen = load_sim(sim_folder, agent=agent, device=cfg.device)
    starts = None
    if cfg.sim_start == "filtered":
        from ...sim.data import load_sim_data
        from ...sim.sample import real_windows

        k = sim.config.context_frames
        starts, _ = real_windows(load_sim_data(store), cfg.sim_samples, k, cfg.seed, context_frames=k)
    frames = simulated_frames(sim, frozen, samples=cfg.sim_samples, steps=cfg.sim_steps, seed=cfg.seed,
                              starts=starts)
    colours = {name: frames[name] for name in (*COLOUR_FIELDS, "sample", "t")}
    projected = project(frames["hx"], analysis)
    folder = out / "sim"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "projected.npz", hx=frames["hx"], **projected, **colours)
    real_share, sim_share = (np.bincount(labels, minlength=len(analysis.centroids)) / len(labels)
                             for labels in (analysis.frames["cluster"], projected["cluster"]))  # (clusters,)
    z = projected["z"]
    summary = {
        "simulator": str(sim_folder), "samples": cfg.sim_samples, "steps": cfg.sim_steps, "seed": cfg.seed,
        "start": cfg.sim_start,
        # share of the squared z-norm around the real mean that the real top-k PCs hold: real vs simulated
        "pca_share_real": float(sum(analysis.summary["pca"]["explained_variance_ratio"])),
        "pca_share_simulated": float((projected["pca"] ** 2).sum() / max((z ** 2).sum(), 1e-30)),
        "mean_abs_z_simulated": float(np.abs(z).mean()),
        "cluster_share_real": real_share.tolist(), "cluster_share_simulated": sim_share.tolist(),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    source = {"simulator": str(sim_folder), "state": "[h, s]: deterministic and stochastic simulator state"}
    n, d = frames["sim_state"].shape  # the simulator's state may have fewer units than k
    _analyze(cfg, frames["sim_state"], colours, folder / "state", "sim_state", action_names, source,
             min(cfg.k, n, d), min(cfg.clusters, n))
    if cfg.plots:
        from .plots import plot_simulated

        plot_simulated(out, {**projected, **colours}, folder / "simulated.png")
    return folder / "summary.json"


def run_hx(cfg: HxConfig) -> tuple:
    """Run the analysis ``cfg`` describes; returns ``(the real analysis' summary.json, the simulator comparison's
    summary.json or None)``."""
    from ...agents import load_agent
    from .core import store_frames

    _check(cfg)
    paths = resolve(cfg, "hx", require_sim=False)
    agent_dir, store_path, out, sim_folder = paths.agent_dir, paths.store, paths.out, paths.sim
    agent = load_agent(agent_dir, device=cfg.device).eval()
    say(cfg, f"reading hidden states from {store_path}")
    frames = store_frames(store_path, agent, max_frames=cfg.max_frames, batch_size=cfg.batch_size,
                          device=cfg.device, progress=cfg.progress)
    action_names = list(getattr(agent, "action_names", []) or [])
    if not action_names:
        from ...rollouts import open as open_store

        action_names = open_store(store_path).action_names
    colours = {name: frames[name] for name in (*COLOUR_FIELDS, "done", "episode", "t")}
    source = {"run": cfg.run, "store": str(store_path), "hx": "produced: the agent's state after its GRU at each "
              "frame (recomputed from obs and the received agent_state)", "config": asdict(cfg)}
    say(cfg, f"analysing {len(frames['hx'])} frames: PCA, ICA, NMF, k-means, t-SNE")
    path, analysis = _analyze(cfg, frames["hx"], colours, out, "hx", action_names, source, cfg.k, cfg.clusters)
    if sim_folder is None:
        return path, None
    say(cfg, f"comparing with the simulator at {sim_folder}")
    return path, compare_simulated(cfg, sim_folder, agent, analysis, out, action_names, store_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policylens sim hx", description=(
        "Hidden-state analysis of a recurrent agent on its rollouts: z-scored hx -> PCA (variance explained), "
        "ICA, NMF, k-means, t-SNE, figures coloured by value, action, entropy, reward and episode progress; "
        "with a simulator, its imagined hx projected onto the real components and its own state analysed."))
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the recurrent agent")
    add_dataclass_args(parser, HxConfig, skip=("run",))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    cfg = from_args(HxConfig, parser.parse_args(argv))
    from ...factors.stable import UNSTABLE

    with clear_errors(parser, also=(ImportError, IndexError)):
        path, sim_path = run_hx(cfg)
    s = json.loads(path.read_text())
    sizes = ", ".join(str(c["size"]) for c in s["clusters"])
    print(f"wrote {path.parent}: {s['frames']} frames of {s['units']}-unit hx; top {s['k']} PCs explain "
          f"{100 * s['pca']['cumulative'][-1]:.1f}% of the z-variance; ICA converged {s['ica']['converged']}, "
          f"NMF residual {s['nmf']['residual']:.3f}; {len(s['clusters'])} clusters of {sizes} frames")
    unstable = [lab for m in ("pca", "ica", "nmf") for lab in s[m]["unstable"]]
    print(f"unstable directions (stability below {UNSTABLE}, see summary.json): {', '.join(unstable)}" if unstable
          else f"every direction is stable (stability >= {UNSTABLE}, in summary.json)")
    if sim_path is not None:
        c = json.loads(sim_path.read_text())
        print(f"wrote {sim_path.parent}: {c['samples']} x {c['steps']} simulated states; the real top PCs hold "
              f"{100 * c['pca_share_simulated']:.1f}% of their z-norm (real states: {100 * c['pca_share_real']:.1f}%)")
    return 0
