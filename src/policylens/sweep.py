"""``policylens sweep levels|attention``: one agent per setting, trained, evaluated and plotted.

- ``levels`` (Understanding RL Vision's diversity hypothesis): train on ``num_levels`` = each of ``--levels``
  (0: unlimited), then evaluate on the training levels and on held-out levels; the generalisation gap closes as
  the levels grow. On MiniGrid the levels are reset seeds.
- ``attention`` (rl-attention): train the ``attention`` agent with each ``--coefs`` attention-entropy
  coefficient and report return, held-out success and the attention entropy reached. The write-up, on Atari
  at 10M steps: "at 1e-3 the performance does not seem to be at all reduced but reduced entropy is only weakly
  incentivized. At 5e-3 entropy of the attention activation is strongly reduc[e]d but also reduces
  performance, with the exception of one run which performed as well as the unregularized models"; it
  settles "on a value between 1e-2 and 1e-3 as the region of interest".

Every setting is its own run directory under OUT (``levels-100/``, ``attention-0.005/``), trained by
``policylens train`` with ``--train-args`` on top of the setting, resumed if interrupted and skipped once done
(``sweep.json`` in it), so a sweep can be stopped and rerun with ``--resume`` (an existing OUT is refused without
it, or ``--overwrite`` to start again). ``OUT/sweep.json`` and ``OUT/sweep.png`` collect it; an attention sweep
also draws ``OUT/attention_strip.png``, each run's attention maps over the same frames (rl-attention's videos of
coefficient 0 beside 5e-3), when its runs recorded episodes for the scores.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import add_dataclass_args, from_args

KINDS = ("levels", "attention")


@dataclass
class SweepConfig:
    kind: str = "levels"
    """what varies: levels (num_levels per run) | attention (attention-entropy coefficient per run)"""
    env: Optional[str] = None
    """env spec (default: the preset's); its num_levels/start_level are set by the sweep"""
    levels: str = "100,1000,10000,0"
    """kind=levels: level counts to train on, comma-separated (0: unlimited)"""
    coefs: str = "0,0.001,0.005,0.01"
    """kind=attention: attention-entropy coefficients, comma-separated"""
    seeds: str = ""
    """training seeds, comma-separated: one run per setting and seed (default: the one seed of --train-args)"""
    train_args: str = "--preset minigrid"
    """options for every run's policylens train, e.g. "--preset minigrid --total-frames 200000" """
    episodes: int = 200
    """evaluation episodes per split (training levels, held-out levels)"""
    held_out_start: int = 1_000_000
    """first held-out level (far above any training level)"""
    out: str = "runs/sweep"
    """folder for one run per setting, sweep.json and sweep.png"""
    workers: int = 1
    """evaluation worker processes"""
    score_episodes: int = 8
    """episodes recorded per run to score its NMF directions against ground truth (0: skip the scores)"""
    score_k: int = 8
    """NMF directions per run for the scores"""
    progress: bool = True
    """progress bars"""
    resume: bool = False
    """continue the sweep already in OUT: finished settings are kept, an interrupted one resumes"""
    overwrite: bool = False
    """replace the sweep already in OUT"""


def parse_values(text: str, cast, name: str) -> list:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"--{name} is empty")
    return values


def settings(cfg: SweepConfig) -> list:
    """``[(run name, {train options})]`` for each value of the sweep, and each seed of ``--seeds`` (the name
    then ends in ``-seedS``), seed by seed: every value's first seed comes before any value's second, so a
    sweep stopped part way has covered every value once."""
    if cfg.kind == "levels":
        values = parse_values(cfg.levels, int, "levels")
        if any(v < 0 for v in values):
            raise ValueError(f"--levels must be >= 0 (0: unlimited), got {values}")
        base = [(f"levels-{v}", {"num_levels": v}) for v in values]
    elif cfg.kind == "attention":
        values = parse_values(cfg.coefs, float, "coefs")
        base = [(f"attention-{v:g}", {"arch": "attention", "attention_entropy_coef": v}) for v in values]
    else:
        raise ValueError(f"unknown sweep kind {cfg.kind!r}; expected one of {', '.join(KINDS)}")
    if not cfg.seeds.strip():
        return base
    seeds = parse_values(cfg.seeds, int, "seeds")
    return [(f"{name}-seed{s}", {**setting, "seed": s}) for s in seeds for name, setting in base]


def group(rows: list, key: str) -> list:
    """The runs of one setting (every seed) together: per split, the mean success over seeds, each seed's
    success, the range over seeds and the envelope of the seeds' 95% intervals; the interpretable share
    likewise, its envelope taken over seeds and NMF restarts. One entry per value of ``key``, in the order
    of the sweep."""
    values = list(dict.fromkeys(r[key] for r in rows))
    out = []
    for v in values:
        runs = [r for r in rows if r[key] == v]
        entry: dict = {key: v, "runs": [r["name"] for r in runs], "seeds": [r.get("seed") for r in runs]}
        for split in ("train", "held_out"):
            rates = [r[split]["success_rate"] for r in runs]
            entry[split] = {"success_rate": sum(rates) / len(rates), "per_seed": rates,
                            "range": [min(rates), max(rates)],
                            "ci95_envelope": [min(r[split]["ci95"][0] for r in runs),
                                              max(r[split]["ci95"][1] for r in runs)]}
        scored = [r for r in runs if r.get("interpretability")]
        if scored:
            shares = [r["interpretability"]["interpretable_share"] for r in scored]
            entry["interpretable_share"] = {"mean": sum(shares) / len(shares), "per_seed": shares,
                                            "range": [min(shares), max(shares)],
                                            "restart_envelope": [min(_spread(r, "min") for r in scored),
                                                                 max(_spread(r, "max") for r in scored)]}
        out.append(entry)
    return out


def train_config(cfg: SweepConfig, run_dir: Path, setting: dict):
    """The TrainConfig of one setting: ``--train-args`` parsed like ``policylens train``, then the setting."""
    from dataclasses import replace

    from .envs import parse_spec
    from .train.config import TrainConfig, resolve
    from .train.state import checkpoint_dir

    parser = argparse.ArgumentParser(prog="policylens sweep --train-args")
    add_dataclass_args(parser, TrainConfig)
    tc = resolve(from_args(TrainConfig, parser.parse_args(shlex.split(cfg.train_args))))
    spec = parse_spec(cfg.env or tc.env)
    if "num_levels" in setting:
        spec = spec.replace(num_levels=setting["num_levels"], start_level=0)
    extra = {k: v for k, v in setting.items() if k != "num_levels"}
    try:  # an interrupted run of this setting: continue it
        checkpoint_dir(run_dir / "agent")
        resume = True
    except FileNotFoundError:
        resume = False
    return replace(tc, env=str(spec), out=str(run_dir), resume=resume, progress=cfg.progress, **extra)


def tail_mean(csv_path: Path, column: str, share: float = 0.1) -> "float | None":
    """Mean of ``column`` over the last ``share`` of the training log's rows (None if never logged)."""
    with csv_path.open() as f:
        values = [float(r[column]) for r in csv.DictReader(f) if r.get(column)]
    if not values:
        return None
    n = max(1, int(len(values) * share))
    return sum(values[-n:]) / n


def interpretability(run_dir: Path, cfg: SweepConfig) -> "dict | None":
    """Record a few episodes of the run on unseen levels and score NMF directions of its first spatial layer
    against the entity masks (:func:`policylens.scores.score_layer`): the objective version of Understanding RL
    Vision's share of interpretable features, with its spread over NMF restarts. None when the env has no
    ground truth or the agent no spatial layer."""
    from .agents import load, read_config, spatial_layers
    from .envs import parse_spec
    from .rollouts import open as open_store
    from .rollouts.record import RecordConfig, record
    from .scores import score_layer, store_frames

    agent = load(run_dir)
    spatial = list(spatial_layers(agent))
    if not spatial:
        return None
    spec = parse_spec(read_config(run_dir / "agent")["env"]).replace(num_levels=None, start_level=1_000_000)
    store_path = record(RecordConfig(run=str(run_dir), episodes=cfg.score_episodes, out=str(run_dir / "rollouts.zarr"),
                                     save_state=spec.family == "procgen", env=str(spec), progress=False,
                                     resume=True))  # a sweep's own store, topped up when the sweep is resumed
    try:
        obs, masks = store_frames(open_store(store_path))
    except ValueError:  # no ground truth for this env
        return None
    scores = score_layer(agent, obs, masks, spatial[0], cfg.score_k).scores
    best = {r["label"]: r["best_entity"] for r in scores["directions"] if r["interpretable"]}
    return {"layer": spatial[0], "k": cfg.score_k, "frames": len(obs),
            "interpretable_share": scores["interpretable_share"], "interpretable": best,
            "interpretable_share_spread": scores["interpretable_share_spread"],
            "stability": {r["label"]: r["stability"] for r in scores["directions"]}}


def run_setting(cfg: SweepConfig, name: str, setting: dict) -> dict:
    """Train (or resume, or skip if done) and evaluate one setting; returns its row of the sweep."""
    from .evaluate import evaluate
    from .train.ppo import train

    run_dir = Path(cfg.out) / name
    done = run_dir / "sweep.json"
    if done.is_file():
        return json.loads(done.read_text())
    tc = train_config(cfg, run_dir, setting)
    train(tc)
    pick = lambda r: {k: r[k] for k in ("episodes", "success_rate", "ci95", "mean_return", "return_std", "causes")}  # noqa: E731
    held_out = evaluate(run_dir, episodes=cfg.episodes, start_level=cfg.held_out_start, workers=cfg.workers,
                        progress=cfg.progress)
    row = {"name": name, **setting, "seed": tc.seed, "env": tc.env, "frames": tc.total_frames, "held_out": pick(held_out)}
    levels = setting.get("num_levels")
    if levels:  # a finite training set: evaluate on it too (level k mod num_levels)
        train_split = evaluate(run_dir, episodes=cfg.episodes, start_level=0, num_levels=levels,
                               workers=cfg.workers, progress=cfg.progress)
        row["train"] = pick(train_split)
    else:
        row["train"] = row["held_out"]  # unlimited levels: every level is a training-distribution level
    if cfg.score_episodes > 0:
        row["interpretability"] = interpretability(run_dir, cfg)
    log = run_dir / "train.csv"
    row["final_return"] = tail_mean(log, "return_mean")
    row["final_attention_entropy"] = tail_mean(log, "attention_entropy")
    done.write_text(json.dumps(row, indent=1))
    return row


def plot(result: dict, path) -> Path:
    """levels: success on training vs held-out levels against the level count; attention: return, success
    and attention entropy against the coefficient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["runs"]
    if result["kind"] == "levels":
        fig, (ax, ax_i) = plt.subplots(1, 2, figsize=(9.5, 3.6), dpi=120)
        finite = sorted({r["num_levels"] for r in rows if r["num_levels"]})
        inf_x = (finite[-1] * 10) if finite else 1
        x_of = lambda n: n or inf_x  # noqa: E731 (unlimited levels drawn one decade past the largest count)
        groups = sorted(group(rows, "num_levels"), key=lambda g: x_of(g["num_levels"]))  # one home for the means
        levels = [g["num_levels"] for g in groups]
        xs = [x_of(n) for n in levels]
        for split, style, colour in (("train", "o-", "tab:blue"), ("held_out", "s--", "tab:orange")):
            means = [g[split]["success_rate"] for g in groups]
            low = [m - g[split]["ci95_envelope"][0] for m, g in zip(means, groups)]
            high = [g[split]["ci95_envelope"][1] - m for m, g in zip(means, groups)]
            ax.errorbar(xs, means, yerr=[low, high], fmt=style, capsize=3, color=colour,
                        label=split.replace("_", "-") + " levels (mean over seeds)")
            ax.scatter([x_of(r["num_levels"]) for r in rows], [r[split]["success_rate"] for r in rows],
                       s=10, color=colour, alpha=0.5)
        ax.set_ylabel("success rate")
        ax.set_title("Generalisation (bars: every seed's 95% interval)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        scored = [g for g in groups if "interpretable_share" in g]
        if scored:
            shares = [g["interpretable_share"] for g in scored]
            means = [s["mean"] for s in shares]
            ax_i.errorbar([x_of(g["num_levels"]) for g in scored], means,
                          yerr=[[max(0.0, m - s["restart_envelope"][0]) for m, s in zip(means, shares)],
                                [max(0.0, s["restart_envelope"][1] - m) for m, s in zip(means, shares)]],
                          fmt="^-", capsize=3, color="tab:green", label="mean over seeds")
            ax_i.scatter([x_of(r["num_levels"]) for r in rows if r.get("interpretability")],
                         [r["interpretability"]["interpretable_share"] for r in rows if r.get("interpretability")],
                         s=10, color="tab:green", alpha=0.5)
            ax_i.legend(fontsize=7, loc="lower right")
        ax_i.set_ylim(0, 1.05)
        ax_i.set_ylabel("share of NMF directions matching an entity")
        ax_i.set_title("Interpretability (bars: range over seeds and NMF restarts)", fontsize=9)
        for a in (ax, ax_i):
            a.set_xscale("log")
            a.set_xticks([x_of(n) for n in levels], [str(n or "unlimited") for n in levels])
            a.minorticks_off()
            a.set_xlabel("training levels")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120)
        labels = [f"{r['attention_entropy_coef']:g}" for r in rows]
        axes[0].bar(labels, [r["held_out"]["success_rate"] for r in rows])
        axes[0].set_ylabel("held-out success")
        axes[1].bar(labels, [r["final_attention_entropy"] or 0 for r in rows], color="tab:orange")
        axes[1].set_ylabel("attention entropy (end of training)")
        for ax in axes:
            ax.set_xlabel("attention-entropy coefficient")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _spread(row: dict, side: str) -> float:
    """One end (``min``/``max``) of a run's interpretable share over NMF restarts (its share if not measured)."""
    i = row["interpretability"]
    v = (i.get("interpretable_share_spread") or {}).get(side)
    return i["interpretable_share"] if v is None else v


def attention_figure(out: Path, rows: list, frames: int = 6) -> "Path | None":
    """``OUT/attention_strip.png``: every run's attention maps (:func:`~policylens.attention_strip.attention_strip`)
    over ``frames`` frames spread over episode 0 of the first run's recorded store, a row per coefficient; None
    when that run recorded no store (``--score-episodes 0``)."""
    import numpy as np

    from .agents import load
    from .attention_strip import attention_strip
    from .rollouts import open as open_store

    store_path = out / rows[0]["name"] / "rollouts.zarr"
    if not (store_path / "zarr.json").is_file():
        return None
    obs = open_store(store_path).episode(0)["obs"]  # (T, H, W, C)
    picked = np.unique(np.linspace(0, len(obs) - 1, min(frames, len(obs))).round().astype(int))
    seeds = len({r.get("seed") for r in rows}) > 1
    agents = {f"coef {r['attention_entropy_coef']:g}" + (f", seed {r['seed']}" if seeds else ""): load(out / r["name"])
              for r in rows}
    return attention_strip(agents, obs[picked], out / "attention_strip.png",
                           title=f"attention over frames {picked.tolist()} of {rows[0]['name']}'s episode 0")


def finished(cfg: SweepConfig) -> list:
    """The rows of the sweep's runs that have finished (each run's own ``sweep.json``), in the sweep's order."""
    out = Path(cfg.out)
    return [json.loads((out / n / "sweep.json").read_text()) for n, _ in settings(cfg)
            if (out / n / "sweep.json").is_file()]


def collect(cfg: SweepConfig, rows: list) -> dict:
    """The sweep's result over ``rows``: every run, the groups per setting, and the runs planned."""
    key = "num_levels" if cfg.kind == "levels" else "attention_entropy_coef"
    return {"kind": cfg.kind, "train_args": cfg.train_args, "episodes": cfg.episodes,
            "planned": [n for n, _ in settings(cfg)], "runs": rows, "groups": group(rows, key) if rows else []}


def sweep(cfg: SweepConfig) -> dict:
    from .runs import prepare_out

    out = prepare_out(cfg.out, what="sweep", resume=cfg.resume, overwrite=cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    result = collect(cfg, [run_setting(cfg, name, setting) for name, setting in settings(cfg)])
    (out / "sweep.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "sweep.png")
    if cfg.kind == "attention":
        attention_figure(out, result["runs"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="policylens sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS, help="levels: the diversity sweep; attention: the entropy sweep")
    add_dataclass_args(parser, SweepConfig, skip=("kind",))
    cfg = from_args(SweepConfig, parser.parse_args(argv))
    result = sweep(cfg)
    for r in result["runs"]:
        line = (f"{r['name']:<20} train {r['train']['success_rate']:.3f}  held-out {r['held_out']['success_rate']:.3f}"
                f"  return {r['final_return'] if r['final_return'] is not None else float('nan'):.2f}")
        if r.get("interpretability"):
            line += f"  interpretable {r['interpretability']['interpretable_share']:.2f}"
        if r.get("final_attention_entropy") is not None:
            line += f"  attention entropy {r['final_attention_entropy']:.3f}"
        print(line)
    print(f"wrote {Path(cfg.out) / 'sweep.json'} and {Path(cfg.out) / 'sweep.png'}")
    return 0
