"""Playing an agent on a fixed list of levels, and :func:`evaluate` over it.

Levels: episode ``k`` plays level ``start_level + k`` (or ``start_level + k % num_levels`` when a level
range is given), in procgen and MiniGrid alike (a MiniGrid level is its reset seed). Each episode gets its
own single-env vector env made with ``start_level=LEVEL&num_levels=1`` (about 1 ms to make in both
families) and its own random streams seeded from ``(seed, k)``, so an episode's outcome depends only on
the agent, the level, ``seed``, ``k`` and the batch size -- not on which worker played it or what played
beside it. Two agents evaluated with the same levels and seed face the same levels and the same env
randomness (common random numbers, which is what a paired comparison wants).

Batching: each worker keeps ``batch`` episodes in flight and runs one agent forward for all of them, always
on exactly ``batch`` rows (idle slots are zero-padded). CPU kernels give a row bitwise-identical results
for a fixed batch shape whatever the other rows hold, but not across batch shapes, so results are exactly
reproducible -- across workers, backends and thread counts -- for a fixed ``batch``.
"""
from __future__ import annotations

import importlib.util
import time
from typing import NamedTuple

import numpy as np
import torch

from ..agents import load, read_config, resolve_run
from ..agents.policy import POLICIES
from ..envs import make, parse_spec
from ..parallel import Progress, agent_files, check_backend, is_local, pmap, with_agent
from .stats import summarize


def episode_plan(episodes: int, start_level: int = 0, num_levels: "int | None" = None) -> list:
    """``[(k, level)]`` for episodes ``k = 0..episodes-1``: level ``start_level + k``, or cycling through
    ``[start_level, start_level + num_levels)`` when ``num_levels`` is given (> 0)."""
    if not isinstance(episodes, (int, np.integer)) or episodes <= 0:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if start_level < 0:
        raise ValueError(f"start_level must be >= 0, got {start_level}")
    if num_levels is not None and num_levels < 0:
        raise ValueError(f"num_levels must be >= 0 (0 or unset: a new level per episode), got {num_levels}")
    if num_levels:
        return [(k, start_level + k % num_levels) for k in range(episodes)]
    return [(k, start_level + k) for k in range(episodes)]


def episode_seed(seed: int, k: int) -> int:
    """The seed of episode ``k``'s env and action sampling: a hash of ``(seed, k)`` in ``[0, 2**31)``."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0]) % 2**31


def eval_spec(spec) -> "object":
    """The spec episodes are played on: without level options; CoinRun labels causes (``ground_truth``), and so
    do the Atari games OCAtari covers, played whole (no episodic life) with their own scores (no clipping)."""
    spec = parse_spec(spec).replace(start_level=None, num_levels=None)
    if (spec.family == "procgen" and spec.name == "coinrun" and "ground_truth" not in spec.options
            and importlib.util.find_spec("policylens.envs.coinrun") is not None):
        spec = spec.replace(ground_truth=True)
    if spec.family == "atari":
        from ..envs.atari import rom_id
        from ..envs.atari_truth import unavailable

        spec = spec.replace(episodic_life=None, clip_reward=None)
        if "ground_truth" not in spec.options and unavailable(rom_id(spec.name)) is None:
            spec = spec.replace(ground_truth=True)
    return spec


def run_env_spec(run) -> str:
    """The env spec a run's agent was trained on (top-level ``env`` of its ``config.json``)."""
    path = resolve_run(run)
    cfg = read_config(path)
    if not cfg.get("env"):
        raise ValueError(f"{path / 'config.json'} names no env the agent was trained on; pass an env spec (--env)")
    return str(cfg["env"])


def pick_actions(logits: torch.Tensor, policy: str, temperature: float, rngs: list) -> np.ndarray:
    """``(B, A)`` logits -> ``(B,)`` actions, row i drawn with its own episode's generator ``rngs[i]``
    (rows whose generator is None are skipped), so a row's action never depends on the other rows."""
    if policy == "greedy":
        return logits.argmax(-1).numpy()
    if policy == "temperature":
        logits = logits / temperature
    cdf = torch.softmax(logits.double(), -1).cumsum(-1).numpy()  # (B, A)
    actions = np.zeros(len(cdf), np.int64)
    for i, rng in enumerate(rngs):
        if rng is not None:
            actions[i] = min(np.searchsorted(cdf[i], rng.random() * cdf[i, -1], side="right"), cdf.shape[1] - 1)
    return actions


class Step(NamedTuple):
    """One env step of an episode played by :func:`play_steps`."""

    k: int  # the episode (its place in the plan)
    level: int  # the level it was meant for
    obs: np.ndarray  # (H, W, C) what the agent saw
    action: int  # what it did
    logits: "np.ndarray | None"  # (A,) float32 (with capture "outputs")
    value: "float | None"  # (with capture "outputs")
    state: "np.ndarray | None"  # (hidden,) the state a recurrent agent received (with capture "outputs")
    reward: float
    done: bool  # the env ended the episode with this step
    info: dict  # the env's info of this step (``episode`` on the last)
    entities: "list | None"  # the env's ground-truth entities before the step (with capture "entities")
    env_state: "bytes | None"  # the env's state before the step (with capture "env_state")
    end: "str | None"  # None, "done" (the env ended it) or "max_steps" (cut after max_steps steps)
    render: "np.ndarray | None" = None  # (h, w, 3) the game's own picture of obs (with capture "render")


@torch.no_grad()
def play_steps(agent, spec, plan: list, policy: str = "sample", temperature: float = 1.0, seed: int = 0,
               batch: int = 8, device="cpu", max_steps: "int | None" = None, capture: tuple = ()):
    """Play each ``(k, level)`` of ``plan`` once, yielding a :class:`Step` per env step; episode k's steps come
    in order, interleaved with the other episodes in flight. ``capture`` names what else each step carries:
    ``"outputs"`` (logits, value, the state received), ``"entities"``, ``"render"``, ``"env_state"``.
    ``max_steps`` cuts an episode the env has not ended by then (``end="max_steps"``) and starts the next."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    if policy == "temperature" and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    spec = parse_spec(spec)
    if spec.family == "procgen" and "num_threads" not in spec.options:
        spec = spec.replace(num_threads=0)  # one env per gym3 instance: stepping in this thread is fastest
    pending = list(plan)[::-1]  # popped from the end, so in plan order
    envs: list = [None] * batch  # per slot: its one-env VecEnv, None once the plan is done
    episodes: list = [None] * batch  # per slot: (k, level) of the episode it plays
    gens: list = [None] * batch
    obs: list = [None] * batch
    steps = [0] * batch
    first = torch.ones(batch, dtype=torch.bool)

    def start(i: int) -> None:
        if not pending:
            envs[i] = episodes[i] = None
            return
        k, level = pending.pop()
        s = episode_seed(seed, k)
        envs[i] = make(spec.replace(start_level=int(level), num_levels=1), num_envs=1, seed=s)
        obs[i] = envs[i].reset(s)[0]  # (H, W, C)
        episodes[i], gens[i], first[i], steps[i] = (k, level), np.random.default_rng(s), True, 0

    for i in range(batch):
        start(i)
    if envs[0] is None:
        return
    blank = np.zeros_like(obs[0])
    init = getattr(agent, "initial_state", None)
    state = init(batch) if callable(init) else None
    h0 = None if state is None else state.detach().clone()  # (B, hidden)
    outputs = "outputs" in capture
    while any(e is not None for e in envs):
        batch_obs = np.stack([o if e is not None else blank for o, e in zip(obs, envs)])  # (B, H, W, C)
        out = agent(torch.as_tensor(batch_obs, device=device), state, first.to(device))
        live_rngs = [g if e is not None else None for g, e in zip(gens, envs)]
        actions = pick_actions(out.logits.cpu(), policy, temperature, live_rngs)  # (B,)
        logits = values = state_in = None
        if outputs:
            logits, values = out.logits.float().cpu().numpy(), out.value.float().cpu().numpy()  # (B, A), (B,)
            if state is not None and h0 is not None:  # recurrent
                # what each row received: its last state, or h0 where an episode begins
                state_in = torch.where(first.to(h0.device)[:, None], h0, state).float().cpu().numpy()
        state = out.state
        for i, env in enumerate(envs):
            if env is None:
                continue
            ents = env.entities() if "entities" in capture else None
            screen = env.render()[0] if "render" in capture else None  # (h, w, 3)
            env_state = env.get_state()[0] if "env_state" in capture else None
            next_obs, reward, done, info = env.step(actions[i:i + 1])
            steps[i] += 1
            end = "done" if done[0] else "max_steps" if max_steps and steps[i] >= max_steps else None
            k, level = episodes[i]
            yield Step(int(k), int(level), obs[i], int(actions[i]), None if logits is None else logits[i],
                       None if values is None else values[i], None if state_in is None else state_in[i],
                       float(reward[0]), bool(done[0]), info[0], None if ents is None else ents[0], env_state, end,
                       screen)
            if end:
                env.close()
                start(i)
            else:
                obs[i] = next_obs[0]
                first[i] = False


def play(agent, spec, plan: list, policy: str = "sample", temperature: float = 1.0, seed: int = 0,
         batch: int = 8, device="cpu", on_episode=None) -> list:
    """Play each ``(k, level)`` of ``plan`` once; returns one record per episode, in plan order.

    A record: ``episode`` (k), ``level``, ``return``, ``length``, ``cause``, ``success``.
    ``on_episode(record)`` is called as each episode ends (progress).
    """
    records = []
    for step in play_steps(agent, spec, plan, policy, temperature, seed, batch, device):
        if not step.end:
            continue
        ep = step.info["episode"]
        rec = {"episode": step.k, "level": int(ep["level_seed"]), "return": float(ep["return"]),
               "length": int(ep["length"]), "cause": str(ep["cause"]), "success": bool(ep["success"])}
        if rec["level"] != step.level:
            raise RuntimeError(f"episode {step.k} was meant for level {step.level} but the env played {rec['level']}")
        records.append(rec)
        if on_episode is not None:
            on_episode(rec)
    return sorted(records, key=lambda r: r["episode"])


def play_task(context: dict, plan: list) -> list:
    """:func:`~policylens.parallel.pmap` task: :func:`play` a shard of the plan on the worker's agent."""
    return play(context["agent"], context["spec"], plan, policy=context["policy"],
                temperature=context["temperature"], seed=context["seed"], batch=context["batch"],
                device=context["device"])


def shards(plan: list, n: int) -> list:
    """Split ``plan`` into ``n`` interleaved shards (episode k goes to shard k % n), dropping empty ones."""
    return [s for s in (plan[i::n] for i in range(n)) if s]


def evaluate(agent_or_run, env_spec=None, episodes: int = 100, *, start_level: "int | None" = None,
             num_levels: "int | None" = None, policy: str = "sample", temperature: float = 1.0, seed: int = 0,
             workers: int = 1, backend: str = "process", batch: int = 8, device="cpu", progress: bool = False,
             ray_address: "str | None" = None) -> dict:
    """Evaluate an agent (a module, or a run dir / checkpoint / ``zoo:NAME``) on ``episodes`` levels.

    ``env_spec`` defaults to the run's training env; ``start_level`` to the spec's (else 0). Returns the
    :func:`~policylens.evaluate.stats.summarize` keys (``episodes``, ``success_rate``, ``ci95``,
    ``mean_return``, ``mean_length``, ``causes``, ...) plus ``per_episode`` (records in episode order),
    ``setup`` (what determines the result) and ``timing`` (what does not).
    """
    check_backend(backend, workers)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    is_module = isinstance(agent_or_run, torch.nn.Module)
    checkpoint = None if is_module else resolve_run(agent_or_run)
    if checkpoint is not None:
        read_config(checkpoint)  # a clear error naming the path if there is no checkpoint there
    if env_spec is None:
        if is_module:
            raise ValueError("evaluate(agent, ...) of an agent module needs env_spec")
        env_spec = run_env_spec(agent_or_run)
    given = parse_spec(env_spec)
    if start_level is None:
        start_level = int(given.options.get("start_level", 0))
    plan = episode_plan(episodes, start_level, num_levels)
    spec = eval_spec(given)
    workers = min(workers, episodes)
    setup = {"run": None if is_module else str(agent_or_run), "env": str(spec), "start_level": start_level,
             "num_levels": num_levels or None, "policy": policy, "temperature": temperature, "seed": seed,
             "batch": batch}
    t0 = time.perf_counter()
    with Progress(episodes, progress, desc="evaluate") as bar:
        if is_local(backend, workers):
            agent = agent_or_run if is_module else load(checkpoint, device=device)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as in each worker: small batches run faster on one thread
            try:
                records = play(agent, spec, plan, policy, temperature, seed, batch, device,
                               lambda r: bar.advance(1, r["length"]))
            finally:
                torch.set_num_threads(threads)
        else:
            if is_module:
                raise ValueError(f"workers={workers} / backend={backend!r} load the agent in each worker from "
                                 "its checkpoint: pass a run dir or checkpoint path, not an agent module "
                                 "(save it first with policylens.agents.save_agent)")
            shared = {"agent": agent_files(checkpoint), "spec": str(spec), "policy": policy,
                      "temperature": temperature, "seed": seed, "batch": batch, "device": str(device)}
            parts = pmap(play_task, shards(plan, workers * 4), shared, setup=with_agent, backend=backend,
                         workers=workers, ray_address=ray_address, what="evaluation shard",
                         on_done=lambda i, part: bar.advance(len(part), sum(r["length"] for r in part)))
            records = sorted((r for part in parts for r in part), key=lambda r: r["episode"])
            if [r["episode"] for r in records] != [k for k, _ in plan]:
                raise RuntimeError("workers returned an incomplete set of episodes")
    seconds = time.perf_counter() - t0
    result = summarize(records)
    frames = sum(r["length"] for r in records)
    result.update(per_episode=records, setup=setup, timing={
        "workers": workers, "backend": backend, "seconds": seconds, "frames": frames,
        "episodes_per_s": len(records) / seconds, "frames_per_s": frames / seconds})
    return result
