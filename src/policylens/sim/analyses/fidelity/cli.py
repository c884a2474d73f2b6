"""``policylens sim fidelity RUN [--horizon 32] [--windows 512] [--baseline auto|train|none|DIR]``.

How well the simulator predicts held-out episodes, step by step after its context, against Saliency as causality's first
architecture (a Gaussian VAE with an action-conditioned LSTM, :mod:`policylens.sim.baseline`) trained for the
same wall time, and against repeating the last context frame (:mod:`policylens.sim.analyses.fidelity.core` says
how each metric is scored). On MiniGrid the environment itself is drawn again one step after each window's context
(:mod:`policylens.sim.analyses.fidelity.reroll`): what a perfect simulator scores there when it samples, and what
the best guess of the world's distribution scores, so readers see how much of the observation, action and value
scores is in reach at all one step out. And the agent acts on its own (closed loop,
:mod:`policylens.sim.analyses.fidelity.closed_loop`): from each window's filtered start inside the simulator and in
draws of the environment replayed to the same frame, its outcome step by step (the action, or ended) compared with
the draws, beside what a draw and the best guess of the environment's spread score. The windows come from the
episodes ``sim train`` held out (its ``val_fraction`` and ``seed`` in ``RUN/sim/config.json``), so neither model
has trained on them.

``--baseline auto`` loads the baseline beside the simulator (``RUN/sim/baseline``; ``runs/NAME/sim/baseline``
for a simulator shipped in the zoo) when it exists (refused if it was trained on another split), else trains one
for the simulator's recorded ``trained_seconds`` (optimizer-step wall time; ``--baseline-seconds`` when the
simulator predates that record, ``--baseline-steps`` to match steps instead) on the simulator's training
windows, batch size and learning rate, and saves it there; ``train`` always trains (and overwrites); ``none``
scores the simulator and the reference alone.

Writes ``OUT/fidelity.json`` (default ``RUN/analysis/fidelity``): per model, per-step curves (mean, bootstrap
95% interval, count) of every metric, the summary at horizons 1, 10 and 32 (and the last), the paired
difference simulator minus each other model there, each model's training steps and seconds, for MiniGrid views
each model's recall per object type and step (the share of the recorded goal / ball / wall cells it draws
exactly); and ``OUT/fidelity.png`` (one panel per metric against the horizon, a line and band per model); on
MiniGrid also the one-step ceiling and the closed-loop agreement (``OUT/closed_loop.png``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...command import SimCommand, command_main, load_parts, resolve, say

FORMAT = "policylens.sim.fidelity/1"


@dataclass
class FidelityConfig(SimCommand):
    horizon: int = 32
    """steps scored after the context frames"""
    windows: int = 512
    """held-out windows scored (a seeded subsample when there are more)"""
    reach: int = 1
    """score only windows with at least this many frames after the context inside their episode (horizon: every
    step of every window is scored; on MiniGrid, where episodes last 16.5 frames, the far horizon exists only in
    its few long episodes, so pair it with a large --test-store)"""
    test_store: str = ""
    """score the episodes of this rollouts store instead of the training store's held-out ones: a store recorded
    apart by the same agent in the same env (`policylens record RUN --seed 1000000 --out PATH`), for more scored
    episodes and tighter intervals; refused when it shares a level seed with what the simulator trained on"""
    start: str = "auto"
    """how the simulator scored as "simulator" reads its context: filtered (the context frames through the
    posterior, then the prior: what the baseline reads), z (the prior from z alone, how sim sample imagines), or
    auto (filtered when it was trained for it: a prior_obs or prior_step term, sim train's default, or
    open_loop_start mixed; else z);
    the other way is a second row"""
    baseline: str = "auto"
    """VAE+LSTM baseline: auto (RUN/sim/baseline, trained there if missing), train, none, or a baseline folder"""
    baseline_seconds: float = 0.0
    """training wall time of a new baseline (0: the simulator's recorded trained_seconds)"""
    baseline_steps: int = 0
    """train a new baseline for this many steps instead (0: by wall time)"""
    baseline_latent: int = 0
    """per-frame latent size of a new baseline (0: the simulator's stoch)"""
    baseline_lstm: int = 0
    """LSTM width of a new baseline (0: the simulator's deter)"""
    ceiling_draws: int = -1
    """draws of the world one step after each window's context, replayed in the environment, for the one-step
    ceiling (a perfect sampler's score and the best guess's); -1: 32 where the env replays (MiniGrid), 0: none"""
    closed_loop_draws: int = -1
    """draws of the environment for closed-loop fidelity (the agent acting on its own from each window's filtered
    start, in the simulator and in the environment replayed and drawn again, compared step by step); -1: 32 where
    the env replays (MiniGrid), 0: none"""
    batch_size: int = 128
    """windows per forward pass"""
    bootstrap: int = 1000
    """bootstrap resamples of the held-out episodes (each with its windows) for the 95% intervals"""
    plots: bool = True
    """write fidelity.png beside the JSON"""


def _check(cfg: FidelityConfig) -> None:
    for name in ("horizon", "windows", "batch_size", "bootstrap", "reach"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("ceiling_draws", "closed_loop_draws"):
        if getattr(cfg, name) < -1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0 (or -1: auto), got {getattr(cfg, name)}")
    if cfg.reach > cfg.horizon:
        raise ValueError(f"--reach {cfg.reach} is beyond --horizon {cfg.horizon}: a window is scored {cfg.horizon} "
                         "steps after its context")
    if 0 < cfg.closed_loop_draws < 4:
        raise ValueError(f"--closed-loop-draws must be 0 or >= 4 (the best guess is drawn from half of them), got "
                         f"{cfg.closed_loop_draws}")
    if cfg.start not in ("auto", *STARTS):
        raise ValueError(f"--start {cfg.start!r}; expected auto, {' or '.join(STARTS)}")
    for name in ("baseline_seconds", "baseline_steps", "baseline_latent", "baseline_lstm"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")


def training_split(conf: dict) -> dict:
    """How ``sim train`` split the store: its val_fraction and seed (the defaults when it recorded none)."""
    from ...train import SimTrainConfig, split_seed

    train = conf.get("train") or {}
    default = SimTrainConfig()
    keys = ("val_fraction", "window", "batch_size", "lr", "max_grad_norm", "device", "threads", "bf16")
    out = {k: train.get(k, getattr(default, k)) for k in keys}
    out["tail_windows"] = bool(train.get("tail_windows", False))  # absent: trained before them, on whole windows
    out["seed"] = split_seed(train)
    out["source"] = "the simulator's training config" if train else "defaults: the simulator's config.json has " \
                                                                     "no train section"
    return out


STARTS = {"filtered": "simulator (filtered)", "z": "simulator (z alone)"}


def _start(cfg: FidelityConfig, conf: dict) -> str:
    """``filtered`` or ``z``: ``--start``, or for auto :func:`~policylens.sim.objective.trained_start`."""
    from ...objective import trained_start

    return cfg.start if cfg.start != "auto" else trained_start(conf)


def training_data(paths, conf: dict, frozen):
    """Every episode the simulator trained on, as it saw them: the store's first ``data.episodes`` (so the split is
    rebuilt), then the further stores ``sim train --store A,B`` joined (``--store`` here, else the ones its config
    records), whose episodes all train. The held-out episodes come from the first store alone, so a baseline
    trained here sees the simulator's data."""
    from ...data import join_sim_data, load_sim_data, store_paths

    data_conf, train = conf.get("data") or {}, conf.get("train") or {}
    first_episodes = int(data_conf.get("split_episodes", data_conf.get("episodes", 0)))
    stores = store_paths(paths.store)
    further = stores[1:] or store_paths(data_conf.get("store", ""))[1:]
    data = load_sim_data(stores[0], max_episodes=first_episodes)
    if first_episodes and data.num_episodes < first_episodes:
        raise ValueError(f"rollouts store {stores[0]} holds {data.num_episodes} episodes; the simulator was "
                         f"trained on {first_episodes}, so its held-out split cannot be rebuilt from this store")
    if data.agent_sha256 and data.agent_sha256 != frozen.sha256:
        raise ValueError(f"rollouts store {stores[0]} was recorded with agent {data.run or '?'} (weights sha256 "
                         f"{data.agent_sha256[:12]}), not the simulator's (sha256 {frozen.sha256[:12]})")
    if not further:
        return data
    missing = [p for p in further if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"simulator {paths.sim} also trained on {', '.join(further)}; missing here: "
                                f"{', '.join(missing)} (pass every store with --store A,B, the first first)")
    data = join_sim_data([data] + [load_sim_data(p, int(train.get("max_episodes", 0))) for p in further])
    trained = int(data_conf.get("episodes", 0))
    if trained and data.num_episodes != trained:
        raise ValueError(f"rollouts stores {data.path} hold {data.num_episodes} episodes; the simulator trained on "
                         f"{trained}")
    return data


def _test_data(cfg: FidelityConfig, data, frozen):
    """The store ``--test-store`` names, checked: the simulator's agent and env, and no level seed in common with
    ``data`` (every episode the simulator trained on, or held out)."""
    from ...data import load_sim_data

    test = load_sim_data(cfg.test_store)
    if test.agent_sha256 != frozen.sha256:
        raise ValueError(f"--test-store {cfg.test_store} was recorded with agent {test.run or '?'} (weights sha256 "
                         f"{(test.agent_sha256 or '?')[:12]}), not the simulator's (sha256 {frozen.sha256[:12]})")
    if test.env != data.env:
        raise ValueError(f"--test-store {cfg.test_store} was recorded in {test.env!r}; the simulator's store in "
                         f"{data.env!r}")
    shared = np.intersect1d(test.level_seed, data.level_seed)
    if len(shared):
        raise ValueError(f"--test-store {cfg.test_store} shares {len(shared)} level seed(s) with the simulator's "
                         f"stores {data.path} (e.g. {shared[0]}): record it with another --seed")
    return test


def _check_baseline(bconf: dict, where, sim_cfg, split: dict, data) -> None:
    """Refuse a baseline for other observations or trained on another split (its held-out windows would not be
    held out)."""
    from ...config import SimConfig

    mine = SimConfig.from_dict(bconf["sim"])
    if (mine.obs_shape, mine.obs_kind, mine.num_actions) != (sim_cfg.obs_shape, sim_cfg.obs_kind, sim_cfg.num_actions):
        raise ValueError(f"baseline {where} models {mine.obs_kind} obs {mine.obs_shape} with {mine.num_actions} "
                         f"actions; the simulator {sim_cfg.obs_kind} obs {sim_cfg.obs_shape} with "
                         f"{sim_cfg.num_actions}")
    train = bconf.get("train", {})
    theirs = (train.get("val_fraction"), train.get("seed"), train.get("store_episodes"))
    ours = (split["val_fraction"], split["seed"], data.num_episodes)
    if theirs != ours:
        raise ValueError(f"baseline {where} was trained on the split (val_fraction, seed, episodes) {theirs}; the "
                         f"simulator's is {ours} ({data.path}), so its held-out windows would not be held out from "
                         "the baseline, or it saw other data; retrain it with --baseline train")


def baseline_dir(paths) -> Path:
    """Where ``--baseline auto|train`` keeps the baseline: beside the simulator it is matched to
    (``RUN/sim/baseline``), or ``RUN/sim/baseline`` of the run's outputs when the simulator ships in the read-only
    zoo."""
    from ....agents import zoo_dir

    inside_zoo = Path(paths.sim).resolve().is_relative_to(zoo_dir().resolve())
    return (paths.run_dir / "sim" if inside_zoo else Path(paths.sim)) / "baseline"


def _baseline(cfg: FidelityConfig, paths, conf: dict, sim_cfg, split: dict, data) -> tuple:
    """``(VaeLstm, its training info)`` as ``--baseline`` asks, or ``(None, None)``."""
    from ...baseline import load_baseline, save_baseline, train_baseline

    choice, folder = cfg.baseline, baseline_dir(paths)
    if choice == "none":
        return None, None
    if choice not in ("auto", "train"):
        folder = Path(choice)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"--baseline {choice!r}: expected auto, train, none or a baseline folder; "
                                    f"{folder / 'config.json'} does not exist")
    if choice != "train" and (folder / "config.json").is_file():
        model, bconf = load_baseline(folder, cfg.device)
        _check_baseline(bconf, folder, sim_cfg, split, data)
        say(cfg, f"baseline: {folder} ({bconf['train'].get('steps')} steps, {bconf['train'].get('seconds')} s)")
        return model, {**bconf["train"], "folder": str(folder), "trained_now": False}
    steps, seconds = cfg.baseline_steps or None, cfg.baseline_seconds or None
    budget = "--baseline-steps" if steps else "--baseline-seconds"
    if steps is None and seconds is None:
        seconds, budget = conf.get("trained_seconds"), "equal wall time: the simulator's trained_seconds"
        if not seconds:
            raise ValueError(f"simulator {paths.sim}: its config.json records no trained_seconds (trained before "
                             f"`sim train` recorded its wall time; trained_steps {conf.get('trained_steps', '?')}), "
                             "so the baseline's equal-compute budget is unknown: pass --baseline-seconds S or "
                             "--baseline-steps N")
    say(cfg, f"training the VAE+LSTM baseline ({budget}: {steps or seconds} {'steps' if steps else 's'})")
    model, info = train_baseline(data, sim_cfg, seconds=seconds, steps=steps, window=split["window"],
                                 batch_size=split["batch_size"], lr=split["lr"], seed=split["seed"],
                                 val_fraction=split["val_fraction"], latent=cfg.baseline_latent,
                                 lstm=cfg.baseline_lstm, max_grad_norm=split["max_grad_norm"],
                                 tail_windows=split["tail_windows"], bf16=split["bf16"], device=cfg.device,
                                 progress=cfg.progress)
    info["budget"] = budget
    save_baseline(model, folder, info, data)
    return model, {**info, "folder": str(folder), "trained_now": True}


def _draws(cfg: FidelityConfig, data, name: str) -> int:
    """How many draws of the environment ``--ceiling-draws`` or ``--closed-loop-draws`` (``name``) takes; asking for
    draws on an env that cannot replay is refused."""
    from .reroll import can_reroll

    asked = getattr(cfg, name)
    if asked > 0 and not can_reroll(data.env):
        raise ValueError(f"--{name.replace('_', '-')} {asked}: the store's env {data.env!r} cannot be replayed and "
                         f"drawn again (MiniGrid can); pass --{name.replace('_', '-')} 0")
    return 32 if asked == -1 and can_reroll(data.env) else max(asked, 0)


def closed_loop_report(per_window: dict, draws: int, horizons, bootstrap: int, seed: int, groups=None) -> dict:
    """Closed-loop agreement (:func:`~.closed_loop.closed_loop`) per step, each way's curve with its
    bootstrap interval over episodes, and the summary at ``horizons`` (the step's action index from the last context
    frame: 1 is the action on the first frame after the context)."""
    from .core import curve, resample_weights

    first = next(iter(per_window.values()))
    mask = np.ones(first.shape, bool)
    weights = resample_weights(first.shape[0], bootstrap, seed, groups)
    curves = {way: curve(v, mask, weights) for way, v in per_window.items()}
    return {"draws": draws, "steps": first.shape[1], "per_step": curves,
            "summary": {str(h): {way: {f: c[f][h] for f in ("mean", "low", "high")} for way, c in curves.items()}
                        for h in horizons if h < first.shape[1]},
            "about": "the agent acting on its own from each window's filtered start, in the simulator (modal actions, "
                     "latent means) and in draws of the environment; per step the share of draws whose outcome "
                     "(the action, or ended) the simulator's matches, the share of pairs of draws that match (a "
                     "draw), and the share one half's commonest outcome matches in the other (best guess)"}


def ceiling_report(ceiling: dict, values: dict, mask, draws: int, bootstrap: int, seed: int, groups=None) -> dict:
    """The one-step ceiling's per-window scores (:func:`~.reroll.one_step_ceiling`) summarised like
    the models at h=1: each way's mean with its bootstrap interval, and the paired difference best guess minus each
    model (the headroom left to it one step out)."""
    from .core import curve, resample_weights
    from .reroll import WAYS

    first = mask[:, :1]  # (N, 1)
    weights = resample_weights(first.shape[0], bootstrap, seed, groups)

    def one(v):
        return {f: x[0] for f, x in curve(v[:, None], first, weights).items()}

    return {"draws": draws, "horizon": 1, "ways": WAYS,
            "why": "only the first frame after the context is a fair draw: every later recorded action was chosen "
                   "for the recorded world",
            **{way: {k: one(v) for k, v in metrics.items()} for way, metrics in ceiling.items()},
            "best_minus": {name: {k: one(ceiling["best"][k] - v[k][:, 0]) for k in ceiling["best"]}
                           for name, v in values.items()}}


def run_fidelity(cfg: FidelityConfig) -> Path:
    """Score the simulator, the baseline and the repeat reference as ``cfg`` says; returns ``OUT/fidelity.json``."""
    from ...checkpoint import read_sim_config
    from .core import (
        METRICS,
        baseline_unroll,
        held_out_windows,
        object_recall,
        repeat_unroll,
        report_horizons,
        score_models,
        scored_windows,
        simulator_unroll,
        summarize,
    )

    _check(cfg)
    paths = resolve(cfg, "fidelity")
    sim, frozen, _, _ = load_parts(cfg, paths)
    _, conf = read_sim_config(paths.sim)
    split, k = training_split(conf), sim.config.context_frames
    data = training_data(paths, conf, frozen)
    # asking for draws on an env that cannot replay is refused here, before the baseline trains
    ceiling_draws, closed_draws = (_draws(cfg, data, name) for name in ("ceiling_draws", "closed_loop_draws"))
    if cfg.test_store:
        episodes_from = _test_data(cfg, data, frozen)
        windows, split_info = scored_windows(episodes_from, np.arange(episodes_from.num_episodes), k, cfg.horizon,
                                             cfg.windows, cfg.seed, "episode of the test store", cfg.reach)
        split_info = {"test_store": cfg.test_store, "store_episodes": episodes_from.num_episodes, **split_info}
        split["source"] = "every episode of a store recorded apart (--test-store)"
    else:
        episodes_from = data
        windows, split_info = held_out_windows(data, split["val_fraction"], split["seed"], k, cfg.horizon,
                                               cfg.windows, cfg.seed, cfg.reach)
    baseline, baseline_info = _baseline(cfg, paths, conf, sim.config, split, data)
    start = _start(cfg, conf)
    other = "z" if start == "filtered" else "filtered"
    models = {"simulator": simulator_unroll(sim, frozen, start == "filtered"),
              STARTS[other]: simulator_unroll(sim, frozen, other == "filtered")}
    if baseline is not None:
        models["baseline"] = baseline_unroll(baseline.to(cfg.device))
    models["repeat"] = repeat_unroll(sim.config)
    say(cfg, f"scoring {len(models)} models on {split_info['windows']} held-out windows, {cfg.horizon} steps")
    episodes = episodes_from.episode_of(windows.start.numpy())  # (N,) the bootstrap resamples whole episodes
    windows = windows.to(cfg.device)
    values, mask, objects = score_models(models, windows, k, sim.config, frozen, cfg.batch_size, cfg.progress)
    scored = summarize(values, mask, cfg.bootstrap, cfg.seed, reference="simulator", groups=episodes)
    ceiling = None
    if ceiling_draws:
        from .reroll import one_step_ceiling

        say(cfg, f"drawing the world again {ceiling_draws} times one step after each window's context")
        per_window = one_step_ceiling(episodes_from, windows, k, sim.config, frozen, ceiling_draws, cfg.seed,
                                      progress=cfg.progress)
        ceiling = ceiling_report(per_window, values, mask, ceiling_draws, cfg.bootstrap, cfg.seed, episodes)
    closed = None
    if closed_draws:
        from .closed_loop import closed_loop

        say(cfg, f"the agent acting on its own: the simulator against {closed_draws} draws of the environment")
        per_window = closed_loop(sim, frozen, episodes_from, windows, k, cfg.horizon + 1, closed_draws, cfg.seed,
                                 cfg.batch_size, cfg.progress)
        closed = closed_loop_report(per_window, closed_draws, report_horizons(cfg.horizon), cfg.bootstrap, cfg.seed,
                                    episodes)
    for name, recall in object_recall(objects, mask).items():
        scored[name]["object_recall"] = recall
    scored["simulator"]["training"] = {"steps": conf.get("trained_steps"), "seconds": conf.get("trained_seconds"),
                                       "device": split["device"], "threads": split["threads"], "folder": str(paths.sim)}
    if baseline is not None:
        scored["baseline"]["training"] = baseline_info
    scored["repeat"]["training"] = None
    higher = {k: not (k.endswith("_error") or (k == "obs_score" and sim.config.obs_kind == "pixels")) for k in METRICS}
    report = {"format": FORMAT, "metrics": METRICS, "higher_is_better": higher, "models": scored, "settings": {
        "run": cfg.run, "store": str(paths.store), "simulator": str(paths.sim), "context_frames": k,
        "horizon": cfg.horizon, "simulator_start": start, "obs_kind": sim.config.obs_kind, "split": {**split_info, "source": split["source"]},
        "bootstrap": cfg.bootstrap, "bootstrap_unit": "held-out episodes", "config": asdict(cfg)}}
    if ceiling:
        report["one_step_ceiling"] = ceiling
    if closed:
        report["closed_loop"] = closed
    paths.out.mkdir(parents=True, exist_ok=True)
    path = paths.out / "fidelity.json"
    path.write_text(json.dumps(report, indent=1))
    if cfg.plots:
        from .plots import plot_closed_loop, plot_fidelity

        plot_fidelity(path)
        if closed:
            plot_closed_loop(path)
    return path


def main(argv=None) -> Path:
    path = command_main(FidelityConfig, run_fidelity, __doc__.split("\n\n")[1], argv, prog="policylens sim fidelity")
    from .plots import ceiling_table, recall_table, table

    report = json.loads(path.read_text())
    s = report["settings"]
    train = {m: v.get("training") or {} for m, v in report["models"].items()}
    print(f"wrote {path.parent}: {s['split']['windows']} held-out windows, {s['context_frames']} context frames + "
          f"{s['horizon']} steps; simulator {train['simulator'].get('steps')} steps / "
          f"{train['simulator'].get('seconds')} s" + (f", baseline {train['baseline'].get('steps')} steps / "
                                                      f"{train['baseline'].get('seconds')} s" if "baseline" in train
                                                      else ""))
    print(table(report))
    if ceiling := ceiling_table(report):
        print(ceiling)
    if closed := report.get("closed_loop"):
        print(f"closed loop, {closed['draws']} draws   " + "  ".join(
            f"step {h}: " + " / ".join(f"{v['mean']:.3f}" for v in ways.values()) for h, ways in
            closed["summary"].items()) + "   (simulator / a draw / best guess)")
    if recall := recall_table(report):
        print(recall)
    return path


if __name__ == "__main__":
    main()
