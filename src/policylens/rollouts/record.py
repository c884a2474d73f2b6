"""Record an agent's episodes into a rollouts store; resumable after any interruption.

    python -m policylens.rollouts RUN --episodes 1000 [--out STORE] [--env SPEC] [--policy greedy]
    policylens record --verify STORE        # read every chunk: is the store whole?

Episodes are played in ``num_envs`` parallel envs by :func:`policylens.rollouts.loop.record_vector` (the loop
``policylens dt collect`` runs too). Each env's current episode is buffered and appended only
when it finishes, so the store never shows half an episode. The recorded episodes are the first N *started*
ones (an env starts a counted episode only while fewer than N have been started), so the sample is not
biased towards short episodes. Finished episodes are committed every ``flush_seconds`` (and at the end);
a kill loses at most the ones finished since the last commit. ``max_steps`` cuts a runaway episode: it is
stored with cause ``max_steps`` and ``done`` on its last stored frame, and its env joins again once its
real episode ends. Per frame: obs, action, logits, value, reward, done, level_seed, agent_state (recurrent
agents: the state the agent received), entities (JSON, where the env gives them), render (the game's own RGB
picture, where the env draws one: Atari), env_state (optional);
per episode: cause, return, level seed. Afterwards ``advantages``/``returns`` are computed (GAE).

An existing store is refused unless the command says what to do with it: ``--overwrite`` replaces it,
``--resume`` tops it up. Resuming: re-running the same command with ``--resume`` on a store holding K < N
episodes keeps those K untouched and records N - K more with envs and action sampling seeded by ``seed + K``. "Same result" therefore means: exactly N
complete episodes, the K recorded before the interruption byte-for-byte unchanged, and the rest a
deterministic function of (command, K); it does not reproduce the episodes an uninterrupted run would have
recorded after the K-th (those in flight at the kill are replayed from fresh seeds). The recording settings
(agent weights, env, policy, seed, num_envs, ...) must match the store's, else it refuses to append.

``--backend process|ray --workers W`` records by episode plan instead (:mod:`policylens.rollouts.plan`): episode
k on level ``start_level + k`` with seeds of its own, on W local processes or Ray workers, appended in episode
order; the store is the same for any W and either backend, and a resumed recording equals an uninterrupted one.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..agents import resolve_run
from ..config import add_dataclass_args, clear_errors, from_args
from ..runs import default_out, prepare_out, sha256


@dataclass
class RecordConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of the agent to record"""
    episodes: int = 100
    """number of complete episodes the store should hold (a resumed recording tops it up to this)"""
    out: str = ""
    """store path (default: RUN/rollouts.zarr, or runs/NAME/rollouts.zarr for zoo:NAME)"""
    env: str = ""
    """env spec to record in (default: the env in the run's config.json)"""
    num_envs: int = 8
    """environments stepped in parallel"""
    policy: str = "sample"
    """action selection: sample | greedy | temperature"""
    temperature: float = 1.0
    """softmax temperature when policy is temperature"""
    seed: int = 0
    """seed of the envs and of action sampling (a resumed recording uses seed + episodes already stored)"""
    save_state: bool = False
    """also store every frame's env state bytes (envs whose get_state gives bytes, e.g. procgen)"""
    entities: bool = True
    """store ground-truth entities per frame (JSON) where the env gives them"""
    render: bool = True
    """store the game's own picture of every frame (field render) where the env draws one (Atari: the 210x160 RGB screen, shown beside the agent's frames by the explorer)"""
    max_steps: int = 10000
    """guard: cut an episode after this many steps (stored with cause 'max_steps')"""
    gamma: float = 0.999
    """discount for the advantages/returns fields computed after recording"""
    gae_lambda: float = 0.95
    """GAE lambda for the advantages field"""
    flush_seconds: float = 2.0
    """commit finished episodes to the store at least this often (0: as soon as they finish)"""
    device: str = "cpu"
    """torch device for the agent"""
    backend: str = "vector"
    """vector: num_envs envs stepped together here, their levels drawn from the seed; process | ray: episode k on level start_level + k with seeds of its own (as evaluate plays it), recorded by --workers local processes or Ray tasks and appended in episode order: the store is the same for any workers and either backend"""
    workers: int = 1
    """workers recording episodes for backend process | ray (1 with process: in this process)"""
    batch: int = 8
    """backend process | ray: episodes a worker plays side by side, one agent forward for all (the store depends on it)"""
    start_level: Optional[int] = None
    """backend process | ray: level of episode 0 (default: the env spec's start_level, else 0)"""
    num_levels: Optional[int] = None
    """backend process | ray: cycle through levels [start_level, start_level + num_levels) (default: the env spec's num_levels; 0: a new level per episode)"""
    ray_address: Optional[str] = None
    """Ray cluster address for backend ray (default: start a local Ray)"""
    progress: bool = True
    """show a progress bar (episodes done, frames/s)"""
    resume: bool = False
    """top up the store already at OUT to --episodes (recorded with the same settings; e.g. after an interruption)"""
    overwrite: bool = False
    """replace the store already at OUT"""
    verify: str = ""
    """instead of recording: read every chunk of the store at this path and report each missing or corrupt one by episode and field (exit status 1 if any)"""


def _check(cfg: RecordConfig) -> None:
    from ..agents.policy import POLICIES
    from .plan import PLAN_BACKENDS

    if not cfg.run:
        raise ValueError("record needs a RUN: a run directory, checkpoint folder or zoo:NAME")
    if cfg.policy not in POLICIES:
        raise ValueError(f"policy {cfg.policy!r}; expected one of {POLICIES}")
    for name in ("episodes", "num_envs", "max_steps", "workers", "batch"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.backend not in ("vector", *PLAN_BACKENDS):
        raise ValueError(f"unknown backend {cfg.backend!r}; expected vector, {' or '.join(PLAN_BACKENDS)}")
    if cfg.backend == "vector" and cfg.workers != 1:
        raise ValueError(f"--workers {cfg.workers} records with --backend process or ray (backend vector steps "
                         "its --num-envs envs in this process)")
    for name in ("start_level", "num_levels"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")


def record(cfg: RecordConfig) -> Path:
    """Record ``cfg.episodes`` complete episodes of the run's agent into a rollouts store; returns its path."""
    from ..agents import load_agent, read_config
    from ..envs import make
    from .gae import add_advantages
    from .loop import Extras, check_same_settings, describe, frame_fields, record_vector, store_attrs
    from .plan import plan_levels, record_plan
    from .writer import StoreWriter

    _check(cfg)
    agent_dir = resolve_run(cfg.run)
    conf = read_config(agent_dir)
    agent = load_agent(agent_dir, device=cfg.device)
    env_spec = cfg.env or conf.get("env")
    if not env_spec:
        raise ValueError(f"{agent_dir / 'config.json'} names no env the agent was trained on; pass --env SPEC")
    out = prepare_out(Path(cfg.out) if cfg.out else default_out(cfg.run, agent_dir), what="rollouts store",
                      resume=cfg.resume, overwrite=cfg.overwrite)

    probe = make(env_spec, num_envs=1, seed=cfg.seed)  # a throwaway 1-env instance tells what the env offers
    info = describe(probe, agent, cfg.run, env_spec, entities=cfg.entities, render=cfg.render)
    if cfg.save_state and not all(isinstance(s, bytes) for s in probe.get_state()):
        raise ValueError(f"env {env_spec} gives no byte state to save (--save-state needs an env whose get_state "
                         "returns bytes, e.g. procgen)")
    probe.close()
    has_render = info.screen is not None
    recording = {"env": str(env_spec), "agent_sha256": sha256(agent_dir / "weights.safetensors"),
                 "policy": cfg.policy, "temperature": cfg.temperature, "seed": cfg.seed, "num_envs": cfg.num_envs,
                 "save_state": cfg.save_state, "entities": info.entities, "max_steps": cfg.max_steps,
                 **({"render": True} if has_render else {})}
    if cfg.backend != "vector":  # by episode plan: what the store is a function of (not workers or backend)
        from ..evaluate.run import episode_plan

        start_level, num_levels = plan_levels(cfg, env_spec)
        del recording["num_envs"]
        recording.update(order="episode plan", start_level=start_level, num_levels=num_levels, batch=cfg.batch)
    fields = frame_fields(info, save_state=cfg.save_state)
    with StoreWriter(out, fields, store_attrs(env_spec, cfg.run, conf, info, recording)) as writer:
        check_same_settings(writer, recording)
        if cfg.backend == "vector":
            record_vector(writer, agent, cfg, env_spec, policy_chooser(cfg.policy, cfg.temperature),
                          Extras(entities=info.entities, render=has_render, save_state=cfg.save_state))
        else:
            settings = {"spec": str(env_spec), "policy": cfg.policy, "temperature": cfg.temperature,
                        "seed": cfg.seed, "batch": cfg.batch, "device": str(cfg.device), "max_steps": cfg.max_steps,
                        "entities": info.entities, "render": has_render, "save_state": cfg.save_state,
                        "recurrent": info.recurrent}
            record_plan(writer, agent, agent_dir, cfg, settings, episode_plan(cfg.episodes, start_level, num_levels))
    add_advantages(out, cfg.gamma, cfg.gae_lambda)
    return out


def policy_chooser(policy: str, temperature: float = 1.0):
    """:func:`~policylens.rollouts.loop.record_vector`'s ``choose`` for one policy (sample | greedy | temperature)
    played in every env, counted episode or not."""
    from ..agents.policy import select_actions

    def choose(logits, labels, generator):
        return select_actions(logits, policy, temperature, generator).numpy()  # (n,)
    return choose


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``RUN`` positional + one ``--option`` per :class:`RecordConfig` field."""
    parser.add_argument("run", nargs="?", default="",
                        help="run directory, checkpoint folder or zoo:NAME of the agent to record (none with --verify)")
    add_dataclass_args(parser, RecordConfig, skip=("run",))
    return parser


def main(argv=None) -> Path:
    parser = add_arguments(argparse.ArgumentParser(prog="policylens record", description=__doc__.split("\n")[0]))
    cfg = from_args(RecordConfig, parser.parse_args(argv))
    if cfg.verify:
        from .verify import format_verify, verify

        report = verify(cfg.verify)
        print(format_verify(report))
        if report["problems"]:
            raise SystemExit(1)
        return Path(cfg.verify)
    with clear_errors(parser, also=(ImportError,)):  # ImportError: --backend ray without Ray
        out = record(cfg)
    from .store import open as open_store

    print(f"wrote {out}: {len(open_store(out))} episodes")
    return out


if __name__ == "__main__":
    main()
