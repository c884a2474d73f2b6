"""``policylens dt collect RUN --episodes N``: a PPO agent's episodes, played with sampling strategies of
varied quality, recorded as decision-transformer training data.

The agent acts on the observations it was trained on (the zoo's MiniGrid agent sees RGB); every frame also
stores the env's symbolic 7x7x3 view (``--extra-obs symbolic``, field ``obs_symbolic``) for the DT. Per frame:
obs, obs_symbolic, action, logits, value, reward, done, level_seed, rtg (the sum of the rewards still to come
in the episode), strategy (index into the store's ``strategies`` attribute) and entities (ground truth, JSON);
per episode: cause (success / obstacle / wall / timeout ...), return, level seed.

Each started episode is assigned a strategy so the store ends with exactly ``allocate(shares, N)`` episodes
per strategy. Writing goes through :class:`~policylens.rollouts.StoreWriter`, so a killed collection keeps
every finished episode and re-running the same command with ``--resume`` tops the store up to exactly N
(episodes in flight at the kill are replaced by fresh ones of the strategies still missing); an existing store
is refused without ``--resume`` or ``--overwrite``.

Afterwards the RTG distribution (Decision Transformer Interpretability's Figure 4) is written beside the store:
``NAME_rtg.png`` and ``NAME_rtg.json`` (episodes, return and causes per strategy).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..agents import load_agent, read_config, resolve_run
from ..config import add_dataclass_args, from_args
from ..envs import CAUSES, make
from ..rollouts import StoreWriter, add_advantages, open as open_store
from ..rollouts.record import MAX_PENDING, EpisodeBuffer, check_same_settings
from ..runs import default_out, prepare_out, run_label, sha256
from .data import returns_to_go
from .strategies import episode_plan, parse_shares, parse_strategies

DEFAULT_ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"
# success (greedy .. topk), failure (bottomk:1, random, most of temperature:5) and timeouts (bottomk:2 turns in place)
DEFAULT_STRATEGIES = ("greedy", "sampled", "temperature:2", "temperature:5", "topk:2", "bottomk:1", "bottomk:2",
                      "random")


@dataclass
class CollectConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the PPO agent that plays"""
    episodes: int = 1000
    """number of complete episodes the store should hold (a resumed collection tops it up to this)"""
    env: str = ""
    """env spec to play in (default: the env in the run's config.json, e.g. MiniGrid-Dynamic-Obstacles-8x8 with RGB)"""
    strategies: tuple = DEFAULT_STRATEGIES
    """sampling strategies: greedy, sampled, temperature:T, topk:K, bottomk:K, random"""
    shares: tuple = ()
    """share of the episodes per strategy, in the order of --strategies (default: equal shares)"""
    extra_obs: str = "symbolic"
    """also store the env's view in this observation mode as field obs_MODE (symbolic | onehot | rgb; '' none)"""
    out: str = ""
    """store path (default: RUN/trajectories.zarr, or runs/NAME/trajectories.zarr for zoo:NAME)"""
    num_envs: int = 8
    """environments stepped in parallel"""
    seed: int = 0
    """seed of the envs, the strategy order and action sampling (a resumed collection uses seed + episodes stored)"""
    entities: bool = True
    """store ground-truth entities per frame (JSON)"""
    max_steps: int = 10000
    """guard: cut an episode after this many steps (stored with cause 'max_steps')"""
    flush_seconds: float = 2.0
    """commit finished episodes to the store at least this often"""
    device: str = "cpu"
    """torch device for the agent"""
    progress: bool = True
    """show a progress bar"""
    resume: bool = False
    """top up the store already at OUT to --episodes (collected with the same settings; e.g. after an interruption)"""
    overwrite: bool = False
    """replace the store already at OUT (and its RTG report)"""


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
    obs_shape, num_actions = tuple(probe.observation_space.shape), int(probe.action_space.n)
    agent_obs, agent_actions = tuple(getattr(agent, "obs_shape", obs_shape)), getattr(agent, "num_actions", num_actions)
    if agent_obs != obs_shape or agent_actions != num_actions:
        raise ValueError(f"agent {cfg.run} takes obs {agent_obs} and {agent_actions} actions, "
                         f"but env {env_spec} gives obs {obs_shape} and {num_actions} actions")
    extra = cfg.extra_obs if cfg.extra_obs and cfg.extra_obs != getattr(probe, "obs_mode", None) else ""
    has_entities = cfg.entities and probe.entities() is not None
    fields: dict[str, tuple]  # name -> (shape per frame, dtype)
    fields = {"obs": (obs_shape, "uint8"), "action": ((), "int32"), "logits": ((num_actions,), "float32"),
              "value": ((), "float32"), "reward": ((), "float32"), "done": ((), "bool"), "level_seed": ((), "int64"),
              "rtg": ((), "float32"), "strategy": ((), "int16")}
    if extra:
        fields[f"obs_{extra}"] = (tuple(observe_as(probe, extra).shape[1:]), "uint8")
    if has_entities:
        fields["entities"] = ((), str)
    action_names = list(probe.action_names)
    probe.close()
    init = getattr(agent, "initial_state", None)
    recurrent = callable(init) and init(1) is not None
    recording = {"env": str(env_spec), "agent_sha256": sha256(agent_dir / "weights.safetensors"),
                 "strategies": [str(s) for s in strategies], "shares": [float(x) for x in shares], "seed": cfg.seed,
                 "num_envs": cfg.num_envs, "extra_obs": extra, "entities": has_entities, "max_steps": cfg.max_steps}
    attrs = {"env": str(env_spec), "run": run_label(cfg.run), "agent": conf["agent"], "action_names": action_names,
             "obs_shape": list(obs_shape), "recurrent": recurrent, "causes": [*CAUSES, "max_steps"],
             "strategies": recording["strategies"], "recording": recording}
    with StoreWriter(out, fields, attrs) as writer:
        check_same_settings(writer, recording, "trajectory store")
        _collect_into(writer, agent, cfg, env_spec, strategies, shares, extra, has_entities)
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


def _collect_into(writer, agent, cfg, env_spec, strategies, shares, extra, has_entities) -> None:
    from tqdm.auto import tqdm

    k = writer.num_episodes
    target = cfg.episodes - k
    if target <= 0:
        return
    plan = list(episode_plan(shares, cfg.episodes, _stored_counts(writer, len(strategies)), cfg.seed + k))
    n, seed = cfg.num_envs, cfg.seed + k
    env = make(env_spec, num_envs=n, seed=seed)
    obs = env.reset(seed)  # (n, H, W, C)
    views = observe_as(env, extra) if extra else None  # (n, ...) the extra view of obs
    gen = torch.Generator().manual_seed(seed)
    init = getattr(agent, "initial_state", None)
    state = init(n) if callable(init) else None
    first = torch.ones(n, dtype=torch.bool)
    assigned = np.full(n, -1)  # strategy of the counted episode each env plays; -1: not counted
    for i in range(min(n, target)):
        assigned[i] = plan.pop(0)
    buffers = [EpisodeBuffer() for _ in range(n)]
    pending, pending_frames, finished, last_flush = [], 0, 0, time.monotonic()
    bar = tqdm(total=cfg.episodes, initial=k, unit="ep", desc=f"collect {writer.path.name}", disable=not cfg.progress)
    step_guard, steps = (target + n) * cfg.max_steps, 0
    try:
        while finished < target:
            steps += 1
            if steps > step_guard:
                raise RuntimeError(f"collection stopped after {step_guard} steps with {finished}/{target} episodes")
            ents = env.entities() if has_entities else None
            with torch.no_grad():
                out = agent(torch.as_tensor(obs, device=cfg.device), state, first.to(cfg.device))
            state = out.state
            logits, value = out.logits.float().cpu(), out.value.float().cpu().numpy()  # (n, A), (n,)
            actions = logits.argmax(-1).numpy()  # (n,) envs not counted just play greedily
            for s in np.unique(assigned[assigned >= 0]):
                rows = np.flatnonzero(assigned == s)
                actions[rows] = strategies[s].choose(logits[rows], gen).numpy()
            next_obs, reward, done, info = env.step(actions)
            next_views = observe_as(env, extra) if extra else None
            first = torch.as_tensor(done)
            for i in np.flatnonzero(assigned >= 0):
                step = {"obs": obs[i], "action": np.int32(actions[i]), "logits": logits[i].numpy(), "value": value[i],
                        "reward": np.float32(reward[i]), "done": bool(done[i]), "strategy": np.int16(assigned[i])}
                if views is not None:
                    step[f"obs_{extra}"] = views[i]
                if ents is not None:
                    step["entities"] = json.dumps(ents[i], separators=(",", ":"))
                buffers[i].steps.append(step)
                episode = buffers[i].close_if_ended(done[i], info[i], cfg.max_steps)
                if episode is None:
                    continue
                pending.append(episode)
                pending[-1]["rtg"] = returns_to_go(pending[-1]["reward"], pending[-1]["done"])  # (T,)
                finished, pending_frames = finished + 1, pending_frames + len(pending[-1]["done"])
                assigned[i] = -1  # a cut env waits for its real episode to end before starting a counted one
                bar.update(1)
            for i in np.flatnonzero(done & (assigned < 0)):
                if plan and not buffers[i].steps:
                    assigned[i] = plan.pop(0)
            now = time.monotonic()
            due = finished >= target or pending_frames >= MAX_PENDING or now - last_flush >= cfg.flush_seconds
            if pending and due:
                writer.append(pending)
                pending, pending_frames, last_flush = [], 0, now
            obs, views = next_obs, next_views
    except KeyboardInterrupt:  # keep what finished; re-running the command with --resume continues from there
        writer.append(pending)
        raise
    finally:
        bar.close()
        env.close()


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


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="policylens dt collect", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of the PPO agent that plays")
    add_dataclass_args(parser, CollectConfig, skip=("run",))
    cfg = from_args(CollectConfig, parser.parse_args(argv))
    out = collect(cfg)
    print(format_summary(json.loads(report_paths(out)[0].read_text())))
    return out
