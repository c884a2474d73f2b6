"""A PPO agent's episodes, played with sampling strategies of varied quality, recorded as decision-transformer
training data: what ``policylens dt collect`` (:mod:`.collect_cli`, settings in :mod:`.collect_config`) runs.

The agent acts on the observations it was trained on (the zoo's MiniGrid agent sees RGB); every frame also
stores the env's symbolic 7x7x3 view (``--extra-obs symbolic``, field ``obs_symbolic``) for the DT. Per frame:
obs, obs_symbolic, action, logits, value, reward, done, level_seed, rtg (the sum of the rewards still to come
in the episode), strategy (index into the store's ``strategies`` attribute), agent_state (recurrent agents: the
state the agent received) and entities (ground truth, JSON); per episode: cause (success / obstacle / wall /
timeout ...), return, level seed. The episodes are played by the loop ``policylens record`` runs
(:func:`policylens.rollouts.loop.record_vector`); what is particular here is the strategy per episode, the
extra view and the RTG.

Each started episode is assigned a strategy so the store ends with exactly ``allocate(shares, N)`` episodes
per strategy. Writing goes through :class:`~policylens.rollouts.StoreWriter`, so a killed collection keeps
every finished episode and re-running the same command with ``--resume`` tops the store up to exactly N
(episodes in flight at the kill are replaced by fresh ones of the strategies still missing); an existing store
is refused without ``--resume`` or ``--overwrite``.

Afterwards the RTG distribution (Decision Transformer Interpretability's Figure 4) is written beside the store:
``NAME_rtg.png`` and ``NAME_rtg.json`` (episodes, return and causes per strategy).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..agents import load_agent, read_config, resolve_run
from ..envs import make
from ..rollouts import StoreWriter, add_advantages, open as open_store
from ..rollouts.loop import Extras, check_same_settings, describe, frame_fields, record_vector, store_attrs
from ..runs import default_out, prepare_out, sha256
from .collect_config import DEFAULT_ENV, CollectConfig
from .data import returns_to_go
from .strategies import episode_plan, parse_shares, parse_strategies


def observe_as(env, mode: str) -> np.ndarray:
    """Every env's current view ``(N, ...)`` exactly as a MiniGrid env made with ``obs=MODE`` would give it."""
    if not hasattr(env, "obs_mode") or not hasattr(env, "observe"):
        raise ValueError(f"--extra-obs {mode!r} needs a MiniGrid env (it renders the other view from the grid)")
    saved = env.obs_mode
    env.obs_mode = mode
    try:
        return env.observe()
    finally:
        env.obs_mode = saved


def _check(cfg: CollectConfig) -> None:
    if not cfg.run:
        raise ValueError("dt collect needs a RUN: a run directory, checkpoint folder or zoo:NAME of a PPO agent")
    for name in ("episodes", "num_envs", "max_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.extra_obs not in ("", "symbolic", "onehot", "rgb"):
        raise ValueError(f"extra_obs {cfg.extra_obs!r}; expected symbolic, onehot, rgb or ''")


def collect(cfg: CollectConfig) -> Path:
    """Record ``cfg.episodes`` episodes into the store (resuming it); returns the store's path."""
    _check(cfg)
    strategies = parse_strategies(cfg.strategies)
    shares = parse_shares(cfg.shares, len(strategies))
    agent_dir = resolve_run(cfg.run)
    conf = read_config(agent_dir)
    agent = load_agent(agent_dir, device=cfg.device)
    env_spec = cfg.env or conf.get("env") or DEFAULT_ENV
    out = Path(cfg.out) if cfg.out else default_out(cfg.run, agent_dir, "trajectories.zarr")
    prepare_out(out.parent, what="trajectory store", resume=cfg.resume, overwrite=cfg.overwrite,
                parts=(out.name, *(p.name for p in report_paths(out))))

    probe = make(env_spec, num_envs=1, seed=cfg.seed)
    info = describe(probe, agent, cfg.run, env_spec, entities=cfg.entities)
    extra = cfg.extra_obs if cfg.extra_obs and cfg.extra_obs != getattr(probe, "obs_mode", None) else ""
    dt_fields: dict[str, tuple] = {"rtg": ((), "float32"), "strategy": ((), "int16")}
    if extra:
        dt_fields[f"obs_{extra}"] = (tuple(observe_as(probe, extra).shape[1:]), "uint8")
    probe.close()
    recording = {"env": str(env_spec), "agent_sha256": sha256(agent_dir / "weights.safetensors"),
                 "strategies": [str(s) for s in strategies], "shares": [float(x) for x in shares], "seed": cfg.seed,
                 "num_envs": cfg.num_envs, "extra_obs": extra, "entities": info.entities, "max_steps": cfg.max_steps}
    attrs = store_attrs(env_spec, cfg.run, conf, info, recording, strategies=recording["strategies"])
    with StoreWriter(out, frame_fields(info, dt_fields), attrs) as writer:
        check_same_settings(writer, recording, "trajectory store")
        if writer.num_episodes < cfg.episodes:  # each episode still to record gets a strategy (its label)
            plan = episode_plan(shares, cfg.episodes, _stored_counts(writer, len(strategies)),
                                cfg.seed + writer.num_episodes)
            views = {f"obs_{extra}": lambda env: observe_as(env, extra)} if extra else {}
            extras = Extras(entities=info.entities, views=views, labels=[int(s) for s in plan],
                            label_field="strategy", finish=add_rtg)
            record_vector(writer, agent, cfg, env_spec, strategy_chooser(strategies), extras, what="collect")
    add_advantages(out)
    rtg_report(out)
    return out


def report_paths(store_path) -> tuple:
    """``(NAME_rtg.json, NAME_rtg.png)`` beside the store ``NAME.zarr``."""
    path = Path(store_path)
    base = path.with_name(path.name.removesuffix(".zarr"))
    return Path(f"{base}_rtg.json"), Path(f"{base}_rtg.png")


def _stored_counts(writer: StoreWriter, n_strategies: int) -> np.ndarray:
    """Episodes already in the store per strategy, (S,)."""
    if writer.num_episodes == 0:
        return np.zeros(n_strategies, np.int64)
    per_frame = np.asarray(writer.array("strategy")[: writer.num_frames])  # (F,)
    return np.bincount(per_frame[writer.index["start"]], minlength=n_strategies).astype(np.int64)


def strategy_chooser(strategies: list):
    """:func:`~policylens.rollouts.loop.record_vector`'s ``choose``: each env plays the strategy its episode was
    assigned (its label); an env whose episode is not counted plays greedily (drawing no random numbers)."""
    def choose(logits, labels, generator):
        actions = logits.argmax(-1).numpy()  # (n,)
        for s in np.unique(labels[labels >= 0]):
            rows = np.flatnonzero(labels == s)
            actions[rows] = strategies[s].choose(logits[rows], generator).numpy()
        return actions
    return choose


def add_rtg(episode: dict) -> None:
    """Field ``rtg`` of a finished episode: the sum of the rewards still to come at each step, (T,)."""
    episode["rtg"] = returns_to_go(episode["reward"], episode["done"])


def rtg_report(store_path) -> dict:
    """The RTG distribution of a trajectory store: ``NAME_rtg.json`` (per strategy: episodes, mean return,
    causes; per-frame RTG histogram) and ``NAME_rtg.png`` (Decision Transformer Interpretability's Figure 4) beside
    the store."""
    from .plots import plot_rtg_distribution

    store = open_store(store_path)
    names = list(store.metadata.get("strategies", ["(one policy)"]))
    starts = store.index["start"]  # (E,)
    per_episode = (np.asarray(store.read("strategy", 0, store.num_frames))[starts] if "strategy" in store.fields
                   else np.zeros(len(store), np.int64))  # (E,)
    returns, causes = store.index["return"], store.index["cause"]  # (E,), (E,)
    rtg = store.read("rtg", 0, store.num_frames) if "rtg" in store.fields else None  # (F,)
    summary = {"store": str(store_path), "episodes": len(store), "frames": store.num_frames, "strategies": {}}
    for s, name in enumerate(names):
        sel = per_episode == s
        if not sel.any():
            continue
        summary["strategies"][name] = {
            "episodes": int(sel.sum()), "mean_return": float(returns[sel].mean()),
            "causes": {c: int(m) for c, m in zip(*np.unique(causes[sel], return_counts=True))}}
    edges = np.linspace(-1.0, 1.0, 21)
    if rtg is not None:
        summary["frame_rtg_histogram"] = {"edges": edges.tolist(),
                                          "counts": np.histogram(np.clip(rtg, -1, 1), edges)[0].tolist()}
    json_path, png_path = report_paths(store_path)
    summary["png"] = str(png_path)
    json_path.write_text(json.dumps(summary, indent=2))
    plot_rtg_distribution(returns, per_episode, names, rtg, png_path)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['store']}: {summary['episodes']} episodes, {summary['frames']} frames",
             f"{'strategy':<16}{'episodes':>9}{'return':>9}   causes"]
    for name, s in summary["strategies"].items():
        causes = ", ".join(f"{c} {m}" for c, m in sorted(s["causes"].items(), key=lambda kv: -kv[1]))
        lines.append(f"{name:<16}{s['episodes']:>9}{s['mean_return']:>9.3f}   {causes}")
    lines.append(f"RTG distribution: {summary['png']}")
    return "\n".join(lines)

