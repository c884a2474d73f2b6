"""Record an agent's episodes into a rollouts store; resumable after any interruption.

    python -m policylens.rollouts RUN --episodes 1000 [--out STORE] [--env SPEC] [--policy greedy]
    policylens record --verify STORE        # read every chunk: is the store whole?

Episodes are played in ``num_envs`` parallel envs. Each env's current episode is buffered and appended only
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
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..agents import resolve_run
from ..config import add_dataclass_args, clear_errors, from_args
from ..envs import CAUSES, make
from ..runs import default_out, prepare_out, run_label, sha256
from .gae import add_advantages
from .store import open as open_store
from .writer import StoreWriter

MAX_PENDING = 8192  # frames of finished episodes held in memory before a commit is forced


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


def check_same_settings(writer: "StoreWriter", recording: dict, what: str = "rollouts store") -> None:
    """An existing store is only appended to with the settings it was made with (else resume would mix them)."""
    stored = writer.group.attrs.get("recording", {})
    if stored != recording:
        diff = sorted(k for k in set(stored) | set(recording) if stored.get(k) != recording.get(k))
        raise ValueError(f"{what} {writer.path} was recorded with other settings ({', '.join(diff)}: "
                         f"{ {k: stored.get(k) for k in diff} } vs now { {k: recording.get(k) for k in diff} }); "
                         "use another --out or the same settings")


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


class EpisodeBuffer:
    """The frames of one env's episode in progress."""

    def __init__(self):
        self.steps = []  # one dict of per-step values per frame

    def finish(self, cause: str, ret: float, level_seed: int) -> dict:
        """The episode as ``{field: (T, ...)}`` plus ``cause`` and ``return``; empties the buffer."""
        ep = {}
        for key in self.steps[0]:
            values = [s[key] for s in self.steps]
            if key == "render":
                values = [v.unpack() for v in values]
            ep[key] = values if key == "env_state" else np.array(values, dtype=object if key == "entities" else None)
        ep["done"][-1] = True  # already so unless cut by max_steps
        ep["level_seed"] = np.full(len(self.steps), level_seed, np.int64)  # (T,)
        self.steps = []
        return {**ep, "cause": cause, "return": float(ret)}

    def close_if_ended(self, done: bool, info: dict, max_steps: int) -> "dict | None":
        """The episode if the env ended it (with its cause) or it reached ``max_steps`` (cause ``max_steps``,
        the guard against envs that never end), else None."""
        if done:
            ep = info["episode"]
            return self.finish(ep["cause"], ep["return"], ep["level_seed"])
        if len(self.steps) >= max_steps:
            return self.finish("max_steps", float(sum(s["reward"] for s in self.steps)), info["level_seed"])
        return None


def record(cfg: RecordConfig) -> Path:
    """Record ``cfg.episodes`` complete episodes of the run's agent into a rollouts store; returns its path."""
    from ..agents import load_agent, read_config
    from .plan import plan_levels, record_plan

    _check(cfg)
    agent_dir = resolve_run(cfg.run)
    conf = read_config(agent_dir)
    agent = load_agent(agent_dir, device=cfg.device)
    env_spec = cfg.env or conf.get("env")
    if not env_spec:
        raise ValueError(f"{agent_dir / 'config.json'} names no env the agent was trained on; pass --env SPEC")
    out = prepare_out(Path(cfg.out) if cfg.out else default_out(cfg.run, agent_dir), what="rollouts store",
                      resume=cfg.resume, overwrite=cfg.overwrite)
    first_state = agent.initial_state(1) if hasattr(agent, "initial_state") else None  # (1, hidden) if recurrent
    recurrent = first_state is not None

    # a throwaway 1-env instance tells the fields' shapes and what the env offers
    probe = make(env_spec, num_envs=1, seed=cfg.seed)
    obs_shape, num_actions = tuple(probe.observation_space.shape), int(probe.action_space.n)
    obs_dtype = str(probe.observation_space.dtype)  # uint8 frames, float32 vectors (gym:)
    agent_obs, agent_actions = tuple(getattr(agent, "obs_shape", obs_shape)), getattr(agent, "num_actions", num_actions)
    if agent_obs != obs_shape or agent_actions != num_actions:
        raise ValueError(f"agent {cfg.run} takes obs {agent_obs} and {agent_actions} actions, "
                         f"but env {env_spec} gives obs {obs_shape} and {num_actions} actions")
    has_entities = cfg.entities and probe.entities() is not None
    screen = probe.render() if cfg.render else None  # (1, h, w, 3) the game's own picture, or None
    if cfg.save_state and not all(isinstance(s, bytes) for s in probe.get_state()):
        raise ValueError(f"env {env_spec} gives no byte state to save (--save-state needs an env whose get_state "
                         "returns bytes, e.g. procgen)")
    action_names = list(probe.action_names)
    probe.close()

    fields: dict[str, tuple]  # name -> (shape per frame, dtype)
    fields = {"obs": (obs_shape, obs_dtype), "action": ((), "int32"), "logits": ((num_actions,), "float32"),
              "value": ((), "float32"), "reward": ((), "float32"), "done": ((), "bool"), "level_seed": ((), "int64")}
    if first_state is not None:
        fields["agent_state"] = ((int(first_state.shape[-1]),), "float32")
    if has_entities:
        fields["entities"] = ((), str)
    if screen is not None:
        fields["render"] = (tuple(screen.shape[1:]), "uint8")
    if cfg.save_state:
        fields["env_state"] = ((), "bytes")
    recording = {"env": str(env_spec), "agent_sha256": sha256(agent_dir / "weights.safetensors"),
                 "policy": cfg.policy, "temperature": cfg.temperature, "seed": cfg.seed, "num_envs": cfg.num_envs,
                 "save_state": cfg.save_state, "entities": has_entities, "max_steps": cfg.max_steps,
                 **({"render": True} if screen is not None else {})}
    if cfg.backend != "vector":  # by episode plan: what the store is a function of (not workers or backend)
        from ..evaluate.run import episode_plan

        start_level, num_levels = plan_levels(cfg, env_spec)
        del recording["num_envs"]
        recording.update(order="episode plan", start_level=start_level, num_levels=num_levels, batch=cfg.batch)
    attrs = {"env": str(env_spec), "run": run_label(cfg.run), "agent": conf["agent"], "action_names": action_names,
             "obs_shape": list(obs_shape), "recurrent": recurrent, "causes": [*CAUSES, "max_steps"],
             "recording": recording}

    with StoreWriter(out, fields, attrs) as writer:
        check_same_settings(writer, recording)
        if cfg.backend == "vector":
            _record_into(writer, agent, cfg, env_spec, has_entities, recurrent, screen is not None)
        else:
            settings = {"spec": str(env_spec), "policy": cfg.policy, "temperature": cfg.temperature,
                        "seed": cfg.seed, "batch": cfg.batch, "device": str(cfg.device), "max_steps": cfg.max_steps,
                        "entities": has_entities, "render": screen is not None, "save_state": cfg.save_state,
                        "recurrent": recurrent}
            record_plan(writer, agent, agent_dir, cfg, settings, episode_plan(cfg.episodes, start_level, num_levels))
    add_advantages(out, cfg.gamma, cfg.gae_lambda)
    return out


class Packed:
    """A frame's picture held deflated while its episode is buffered (an Atari screen: 100 KB raw, a few KB)."""

    def __init__(self, image: np.ndarray):
        self.shape, self.data = image.shape, zlib.compress(np.ascontiguousarray(image, np.uint8).tobytes(), 1)

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), np.uint8).reshape(self.shape)


def _record_into(writer: StoreWriter, agent, cfg: RecordConfig, env_spec: str, has_entities: bool, recurrent: bool,
                 has_render: bool = False):
    import torch
    from tqdm.auto import tqdm

    from ..agents.policy import AgentStepper

    k = writer.num_episodes
    target = cfg.episodes - k  # episodes still to record
    if target <= 0:
        return
    n, seed = cfg.num_envs, cfg.seed + k
    env = make(env_spec, num_envs=n, seed=seed)
    obs = env.reset(seed)  # (n, H, W, C)
    stepper = AgentStepper(agent, n, policy=cfg.policy, temperature=cfg.temperature, seed=seed, device=cfg.device)
    h0 = agent.initial_state(n).detach() if recurrent else None  # (n, hidden)
    counted = np.zeros(n, bool)  # env i is playing an episode that will be stored
    started = min(n, target)
    counted[:started] = True
    buffers = [EpisodeBuffer() for _ in range(n)]
    pending, pending_frames, finished, frames = [], 0, 0, 0
    last_flush = t0 = time.monotonic()
    bar = tqdm(total=cfg.episodes, initial=k, unit="ep", desc=f"record {Path(writer.path).name}", disable=not cfg.progress)
    step_guard, steps = (target + n) * cfg.max_steps, 0
    try:
        while finished < target:
            steps += 1
            if steps > step_guard:
                raise RuntimeError(f"recording stopped after {step_guard} steps with {finished}/{target} episodes; "
                                   "envs never ended their episodes (lower --max-steps?)")
            ents = env.entities() if has_entities else None
            screens = env.render() if has_render else None  # (n, h, w, 3)
            states = env.get_state() if cfg.save_state else None
            state_in = None  # what a recurrent agent receives: its last state, or h0 where an episode begins
            if h0 is not None and stepper.state is not None:
                first = stepper.first.to(h0.device)[:, None]  # (n, 1)
                state_in = torch.where(first, h0, stepper.state).detach().cpu().numpy()  # (n, hidden)
            out, actions = stepper.act(obs)
            next_obs, reward, done, info = env.step(actions)
            stepper.observe_done(done)
            logits, value = out.logits.float().cpu().numpy(), out.value.float().cpu().numpy()  # (n, A), (n,)
            frames += int(counted.sum())
            for i in np.flatnonzero(counted):
                step = {"obs": obs[i], "action": np.int32(actions[i]), "logits": logits[i], "value": value[i],
                        "reward": np.float32(reward[i]), "done": bool(done[i])}
                if state_in is not None:
                    step["agent_state"] = state_in[i]
                if ents is not None:
                    step["entities"] = json.dumps(ents[i], separators=(",", ":"))
                if screens is not None:
                    step["render"] = Packed(screens[i])
                if states is not None:
                    step["env_state"] = states[i]
                buffers[i].steps.append(step)
                episode = buffers[i].close_if_ended(done[i], info[i], cfg.max_steps)
                if episode is None:
                    continue
                pending.append(episode)
                finished += 1
                pending_frames += len(pending[-1]["done"])
                counted[i] = False  # a truncated env waits for its episode to end before starting a counted one
                bar.update(1)
            for i in np.flatnonzero(done & ~counted):
                if started < target and not buffers[i].steps:
                    counted[i], started = True, started + 1
            now = time.monotonic()
            if pending and (finished >= target or pending_frames >= MAX_PENDING or now - last_flush >= cfg.flush_seconds):
                frames_done = writer.num_frames + pending_frames
                writer.append(pending)
                pending, pending_frames, last_flush = [], 0, now
                bar.set_postfix(frames=frames_done, fps=f"{frames / max(now - t0, 1e-9):.0f}")
            obs = next_obs
    except KeyboardInterrupt:  # keep what finished; re-running the command with --resume continues from there
        writer.append(pending)
        raise
    finally:
        bar.close()
        env.close()


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
    print(f"wrote {out}: {len(open_store(out))} episodes")
    return out


if __name__ == "__main__":
    main()
