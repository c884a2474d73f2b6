"""``policylens dt analyze RUN``: every analysis of a trained decision transformer into ``RUN/analysis/``
(JSON + PNG) and its section of ``RUN/report.md``; ``policylens dt ablate RUN``: one ablation table.

``analyze`` reads windows from the run's trajectory store (``--store``, default the one it was trained on, else
the windows a previous analysis saved, see :mod:`.windows`) and saves them (``windows.safetensors``):
mean activations for mean ablation (``means.safetensors``), attribution by situation (``situations.json``),
one example window per entity in front of the agent (contributions, a per-cell state map and an RTG scan
each), RTG patching on the obstacle example (``patching.json``), QK/OV circuits and embedding projections
(``circuits.json``), and the ablation table played in the env (``ablation.json``). Figures are drawn from
those files. A zoo model's analyses go to ``runs/NAME/`` (the zoo is read-only); an analysis already there is
refused unless ``--resume`` or ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...config import add_dataclass_args, from_args
from ...runs import prepare_out
from .windows import FILE as WINDOWS_FILE, load_windows, model_folder, save_windows

TABLE_FORMAT = 2  # an ablation table cached in another format (2: goal entries by side) is played again


@dataclass
class AnalyzeConfig:
    run: str = ""
    """run directory of a decision transformer (policylens dt train --out RUN)"""
    store: str = ""
    """trajectory store to read windows from (default: the store the model was trained on)"""
    episodes: int = 100
    """episodes per target RTG and per ablation in the ablation table (0: skip it)"""
    rtgs: tuple = ("-1", "0", "0.9")
    """target RTGs of the ablation table and of attribution by situation"""
    mode: str = "mean"
    """ablation: mean (means over the store's windows, as Decision Transformer Interpretability) | zero"""
    components: tuple = ()
    """ablation sets, '+' joining components of one set (default: each head and each MLP alone)"""
    windows: int = 2000
    """windows drawn from the store for means and attribution by situation"""
    preference: tuple = ("forward", "right")
    """the preference (action minus action) that figures and the report read (the paper's forward - right)"""
    start_level: int = 1_000_000
    """first level of the ablation episodes (the same levels for every ablation and RTG)"""
    seed: int = 0
    """seed of the window sample, the env randomness and action sampling"""
    policy: str = "sample"
    """how logits become actions in the env: sample | greedy | temperature"""
    batch: int = 64
    """episodes played side by side"""
    fresh: bool = False
    """with --resume: replay the ablation table even when ablation.json already holds one for these weights and settings"""
    resume: bool = False
    """write over the analysis already there, reusing its ablation table when it was played by these weights with these settings"""
    overwrite: bool = False
    """replace the analysis already there (RUN/analysis and RUN/report.md)"""
    progress: bool = True
    """show progress"""


@dataclass
class AblateConfig:
    run: str = ""
    """run directory of a decision transformer"""
    components: tuple = ()
    """ablation sets, comma-separated; '+' joins the components of one set (blocks.0.attn.head0+blocks.0.mlp)"""
    episodes: int = 100
    """episodes per target RTG and per ablation"""
    rtgs: tuple = ("-1", "0", "0.9")
    """target RTGs"""
    mode: str = "mean"
    """mean (means over the store's windows) | zero"""
    store: str = ""
    """trajectory store for the means (default: the store the model was trained on)"""
    windows: int = 2000
    """windows drawn from the store for the means"""
    out: str = ""
    """folder for ablation.json and ablation.png (default: RUN/ablate, runs/NAME/ablate for a zoo model)"""
    start_level: int = 1_000_000
    """first level (the same levels for every ablation and RTG)"""
    seed: int = 0
    """seed of the env randomness and action sampling"""
    policy: str = "sample"
    """sample | greedy | temperature"""
    batch: int = 64
    """episodes played side by side"""
    progress: bool = True
    """show progress"""
    overwrite: bool = False
    """replace the ablation table already in OUT"""


def outputs(run) -> Path:
    """Where the analyses of RUN go: its run directory, ``runs/NAME`` for a zoo model (the zoo is read-only)."""
    from ...runs import run_dir

    return run_dir(run, model_folder(run))


def _floats(values, name: str) -> list:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--{name} {','.join(map(str, values))}: expected numbers, e.g. -1,0,0.9") from None


def load_means(run) -> dict:
    """The mean activations ``policylens dt analyze`` saved for mean ablation (``analysis/means.safetensors`` of
    the run's outputs, else of the model's own folder: the zoo ships them)."""
    from safetensors.torch import load_file

    paths = [folder / "analysis" / "means.safetensors" for folder in (outputs(run), model_folder(run))]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{paths[0]} does not exist; run `policylens dt analyze {run}` first, or compute "
                                "means with component_means(model, batch)")
    return load_file(str(path))


def parse_sets(model, components) -> list:
    """CLI ablation sets (``"a+b"`` strings) -> lists of components; default: each head and each MLP alone."""
    from .ablation import component_list

    return [s.split("+") for s in components] if components else [[c] for c in component_list(model)]


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path


def _examples(model, inputs, preference) -> dict:
    """One window per entity in front of the agent (the first in the sample): contributions at RTG 0.9 and -1,
    the state map, an RTG scan."""
    from .attribution import logit_contributions, state_contribution_map
    from .scan import rtg_scan
    from .situations import front_entities

    groups, out = front_entities(model, inputs.states), {}
    linear = model.config.state_embedding in ("grid", "raw")
    for entity in ("obstacle", "goal", "wall", "empty"):
        if entity not in groups:
            continue
        window = inputs.select(groups.index(entity))
        contributions = {f"{r:g}": logit_contributions(model, window.with_rtg([r])).to_dict() for r in (0.9, -1.0)}
        state_map = state_contribution_map(model, window.with_rtg([0.9]), preference) if linear else None
        out[entity] = {"contributions": contributions, "state_map": state_map.to_dict() if state_map else None,
                       "rtg_scan": rtg_scan(model, window).to_dict()}
    return out


def _patching(model, inputs, preference) -> dict:
    """RTG patching on the obstacle example (else the first window): clean at RTG 0.9, corrupt at RTG -1."""
    from .patching import patch
    from .situations import front_entities

    groups = front_entities(model, inputs.states)
    window = inputs.select(groups.index("obstacle") if "obstacle" in groups else 0)
    clean, corrupt = window.with_rtg([0.9]), window.with_rtg([-1.0])
    out = {"example": "obstacle" if "obstacle" in groups else groups[0], "clean_rtg": 0.9, "corrupt_rtg": -1.0}
    for hook in ("blocks.0.hook_resid_pre", "blocks.0.attn.hook_z"):
        try:
            out[hook] = patch(model, clean, corrupt, hook, preference=preference).to_dict()
        except ValueError as e:  # the RTG changes nothing in this window
            out[hook] = {"skipped": str(e)}
    return out


def _ablation(cfg: AnalyzeConfig, model, rtgs: list, means: dict, path: Path) -> dict:
    """The ablation table, reused from ``path`` when it was played by these weights with these settings."""
    import hashlib

    from ..checkpoint import dt_dir
    from .ablation import ablation_table

    weights = hashlib.sha256((dt_dir(cfg.run) / "weights.safetensors").read_bytes()).hexdigest()
    sets = parse_sets(model, cfg.components)
    key = {"format": TABLE_FORMAT, "weights_sha256": weights, "env": model.env, "episodes": cfg.episodes,
           "rtgs": rtgs, "mode": cfg.mode,
           "components": [[str(c) for c in s] for s in sets], "start_level": cfg.start_level, "seed": cfg.seed,
           "policy": cfg.policy, "windows": cfg.windows, "store": cfg.store}
    if not cfg.fresh and path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("cache_key") == key:
            return cached
    if not model.env:
        raise ValueError(f"{dt_dir(cfg.run)} names no env to play the ablation table in")
    table = ablation_table(model, model.env, sets, rtgs, cfg.episodes, mode=cfg.mode, means=means,
                           start_level=cfg.start_level, seed=cfg.seed, policy=cfg.policy, batch=cfg.batch,
                           progress=cfg.progress)
    table["cache_key"] = key
    _write(path, table)
    return table


def analyze(cfg: AnalyzeConfig) -> dict:
    """Run every analysis, write ``RUN/analysis/*`` and the report section; returns the summary dict."""
    import torch
    from safetensors.torch import save_file

    from ..checkpoint import load_dt
    from . import plots
    from .ablation import component_means
    from .circuits import circuit_maps, embedding_projections
    from .findings import informative
    from .report import write_report
    from .situations import by_situation

    if not cfg.run:
        raise ValueError("dt analyze needs a RUN: the run directory of a decision transformer")
    if cfg.mode not in ("mean", "zero"):
        raise ValueError(f"--mode {cfg.mode!r}; expected mean or zero")
    rtgs, preference = _floats(cfg.rtgs, "rtgs"), tuple(cfg.preference)
    if len(preference) != 2:
        raise ValueError(f"--preference {','.join(preference)}: expected two actions, e.g. forward,right")
    model = load_dt(cfg.run)
    for action in preference:
        if action not in model.action_names:
            raise KeyError(f"--preference: unknown action {action!r}; actions: {', '.join(model.action_names)}")
    inputs, source = load_windows(model, cfg.run, cfg.store, cfg.windows, cfg.seed)  # before an --overwrite
    root = prepare_out(outputs(cfg.run), what="analysis", resume=cfg.resume, overwrite=cfg.overwrite,
                       parts=("analysis", "report.md"))
    out = root / "analysis"
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    save_windows(out / WINDOWS_FILE, inputs, {**{k: v for k, v in source.items() if k != "saved"},
                                              "windows": inputs.batch_size})
    say = print if cfg.progress else (lambda *a, **k: None)
    means = component_means(model, inputs)
    save_file({k: v.contiguous() for k, v in means.items()}, str(out / "means.safetensors"))
    summary = {"run": str(root), "store": source["store"], "windows": inputs.batch_size,
               **({"windows_from": source["saved"]} if "saved" in source else {}), "preference": list(preference),
               "data_causes": source["data_causes"],
               "config": model.config.to_dict(), "action_names": list(model.action_names),
               "rtg_range": list(model.rtg_range) if model.rtg_range else None}
    situations = by_situation(model, inputs, rtgs, preference)
    _write(out / "situations.json", situations)
    first = situations["rows"][f"{rtgs[0]:g}"][situations["entities"][0]]["components"]
    plots.plot_situations(situations, out / "situations.png", informative(first))
    say("[dt analyze] attribution by situation")
    examples = _examples(model, inputs, preference)
    _write(out / "examples.json", examples)
    for entity, ex in examples.items():
        plots.plot_contributions(ex["contributions"]["0.9"], out / f"contributions_{entity}.png", preference)
        plots.plot_rtg_scan(ex["rtg_scan"], out / f"rtg_scan_{entity}.png", preference)
        if ex["state_map"]:
            plots.plot_state_map(ex["state_map"], out / f"state_map_{entity}.png")
    patching = _patching(model, inputs, preference)
    _write(out / "patching.json", patching)
    for hook in ("blocks.0.hook_resid_pre", "blocks.0.attn.hook_z"):
        if "restored" in patching[hook]:
            plots.plot_patching(patching[hook], out / f"patching_{hook.replace('.', '_')}.png")
    say("[dt analyze] examples, RTG scans, patching")
    circuits = {"embeddings": embedding_projections(model)}
    if model.config.state_embedding in ("grid", "raw"):
        maps = circuit_maps(model, preference, key_time=int(inputs.timesteps[:, -1].median()))
        circuits["maps"] = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in maps.items()}
        plots.plot_circuits(circuits["maps"], out / "circuits.png")
    _write(out / "circuits.json", circuits)
    plots.plot_embeddings(circuits["embeddings"], out / "embeddings.png")
    say("[dt analyze] circuits")
    table = None
    if cfg.episodes > 0:
        table = _ablation(cfg, model, rtgs, means, out / "ablation.json")
        plots.plot_ablation(table, out / "ablation.png")
    summary.update(situations=situations, examples=sorted(examples), patching=patching, ablation=table,
                   circuits=circuits)
    report = write_report(root, summary)
    _write(out / "summary.json", {k: v for k, v in summary.items() if k not in ("circuits", "situations")})
    summary["report"] = str(report)
    return summary


def ablate_main(argv=None) -> dict:
    """``policylens dt ablate RUN --components ... --episodes N``."""
    from ..cli import join_negative_values

    parser = argparse.ArgumentParser(prog="policylens dt ablate", description=(
        "Ablate heads/MLPs (TransformerLens names) while the decision transformer plays the same levels at each "
        "target RTG as the unablated model: outcome rates with Wilson 95% CIs and paired McNemar tests."))
    parser.add_argument("run", help="run directory of a decision transformer")
    add_dataclass_args(parser, AblateConfig, skip=("run",))
    cfg = from_args(AblateConfig, parser.parse_args(join_negative_values(argv, ("--rtgs",))))
    from ..checkpoint import load_dt
    from .ablation import ablation_table, component_means, resolve_all
    from .plots import plot_ablation
    from .report import ablation_markdown

    if cfg.mode not in ("mean", "zero"):
        raise ValueError(f"--mode {cfg.mode!r}; expected mean or zero")
    model = load_dt(cfg.run)
    if not model.env:
        raise ValueError(f"{model_folder(cfg.run)} names no env to play in (its agent/config.json has no 'env')")
    sets = parse_sets(model, cfg.components)
    for components in sets:  # an unknown name is refused before anything is written
        resolve_all(model, components)
    out = prepare_out(Path(cfg.out) if cfg.out else outputs(cfg.run) / "ablate", what="ablation table",
                      overwrite=cfg.overwrite, parts=("ablation.json", "ablation.png"))
    means = None
    if cfg.mode == "mean":
        inputs, _ = load_windows(model, cfg.run, cfg.store, cfg.windows, cfg.seed)
        means = component_means(model, inputs)
    table = ablation_table(model, model.env, sets, _floats(cfg.rtgs, "rtgs"), cfg.episodes, mode=cfg.mode,
                           means=means, start_level=cfg.start_level, seed=cfg.seed, policy=cfg.policy,
                           batch=cfg.batch, progress=cfg.progress)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "ablation.json", table)
    plot_ablation(table, out / "ablation.png")
    print(ablation_markdown(table))
    print(f"\nwrote {out / 'ablation.json'} and {out / 'ablation.png'}")
    return table


def main(argv=None) -> dict:
    """``policylens dt analyze RUN [--store STORE]``."""
    from ..cli import join_negative_values

    parser = argparse.ArgumentParser(prog="policylens dt analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory of a decision transformer")
    add_dataclass_args(parser, AnalyzeConfig, skip=("run",))
    summary = analyze(from_args(AnalyzeConfig, parser.parse_args(join_negative_values(argv, ("--rtgs",)))))
    print(f"analysis: {Path(summary['run']) / 'analysis'}; report: {summary['report']}")
    return summary
