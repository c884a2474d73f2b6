"""Recording by episode plan, on workers: ``policylens record RUN --episodes N --backend process|ray --workers W``.

Episode ``k`` plays level ``start_level + k`` (cycling through ``num_levels`` when given) in an env of its own
with its own seeds, exactly as ``evaluate`` plays it (:func:`policylens.evaluate.run.play_steps`): what an
episode holds depends only on the agent, its level, the seed, ``k`` and ``batch`` (the rows of each agent
forward) -- not on the worker that played it or what played beside it. Workers record consecutive pieces of
``batch`` episodes and send them back (:mod:`policylens.parallel`); here they are appended in episode order as
they arrive, through the one :class:`~policylens.rollouts.writer.StoreWriter` (checksums, every chunk written,
one commit per append). So the store is the same, field for field, whatever the number of workers or the
backend, and a recording resumed with K episodes in the store records episodes K..N-1: the store an
uninterrupted recording writes.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from ..envs import parse_spec
from ..parallel import agent_files, chunks, is_local, pmap, with_agent
from .loop import MAX_PENDING, EpisodeBuffer, Packed

PLAN_BACKENDS = ("process", "ray")


def plan_levels(cfg, env_spec) -> tuple:
    """``(start_level, num_levels or None)``: the config's, else the env spec's (else 0 and None)."""
    options = parse_spec(env_spec).options
    start = cfg.start_level if cfg.start_level is not None else int(options.get("start_level", 0))
    num = cfg.num_levels if cfg.num_levels is not None else int(options.get("num_levels", 0))
    return int(start), (int(num) or None)


def episodes_of(agent, plan: list, s: dict):
    """Yield ``(k, episode)`` as each episode of ``plan`` ends (episodes as the store appends them); ``s``: the
    recording settings (spec, policy, temperature, seed, batch, device, max_steps, entities, render, save_state,
    recurrent)."""
    from ..evaluate.run import play_steps

    render = s.get("render", False)
    capture = ("outputs",) + ("entities",) * s["entities"] + ("render",) * render + ("env_state",) * s["save_state"]
    buffers: dict = {}
    for st in play_steps(agent, s["spec"], plan, s["policy"], s["temperature"], s["seed"], s["batch"], s["device"],
                         max_steps=s["max_steps"], capture=capture):
        step = {"obs": st.obs, "action": np.int32(st.action), "logits": st.logits, "value": st.value,
                "reward": np.float32(st.reward), "done": st.done}
        if s["recurrent"]:
            step["agent_state"] = st.state
        if s["entities"]:
            step["entities"] = json.dumps(st.entities, separators=(",", ":"))
        if render:
            step["render"] = Packed(st.render)
        if s["save_state"]:
            step["env_state"] = st.env_state
        buffer = buffers.setdefault(st.k, EpisodeBuffer())
        buffer.steps.append(step)
        if st.end:
            episode = buffer.close_if_ended(st.done, st.info, s["max_steps"])
            del buffers[st.k]
            if int(episode["level_seed"][0]) != st.level:
                raise RuntimeError(f"episode {st.k} was meant for level {st.level} but the env played "
                                   f"{int(episode['level_seed'][0])}")
            yield st.k, episode


def in_plan_order(pairs, plan: list):
    """Episodes from ``(k, episode)`` pairs, yielded in ``plan``'s order as soon as each is next."""
    order, ready, due = [k for k, _ in plan], {}, 0
    for k, episode in pairs:
        ready[k] = episode
        while due < len(order) and order[due] in ready:
            yield ready.pop(order[due])
            due += 1
    if due != len(order):
        raise RuntimeError(f"recording ended with episodes {order[due:]} missing")


def record_task(context: dict, plan: list) -> list:
    """:func:`~policylens.parallel.pmap` task: the episodes of a piece of the plan, in plan order."""
    return list(in_plan_order(episodes_of(context["agent"], plan, context), plan))


def record_plan(writer, agent, agent_dir, cfg, settings: dict, plan: list) -> None:
    """Record the episodes of ``plan`` not yet in ``writer``'s store (the first ``writer.num_episodes`` are) and
    append them in order, committing at least every ``cfg.flush_seconds``."""
    from tqdm.auto import tqdm

    todo = plan[writer.num_episodes:]
    if not todo:
        return
    local = is_local(cfg.backend, cfg.workers)
    bar = tqdm(total=len(plan), initial=len(plan) - len(todo), unit="ep", disable=not cfg.progress,
               desc=f"record {writer.path.name} ({cfg.workers} {cfg.backend} worker{'s' * (cfg.workers > 1)})")
    threads = torch.get_num_threads()
    if local:  # one play over the whole plan, streamed in order; one thread, as in each worker
        torch.set_num_threads(1)
        source = in_plan_order(episodes_of(agent, todo, settings), todo)
        episodes = source
    else:
        source = pmap(record_task, chunks(todo, cfg.batch), {**settings, "agent": agent_files(agent_dir)},
                      setup=with_agent, backend=cfg.backend, workers=cfg.workers, ray_address=cfg.ray_address,
                      what="recording task")
        episodes = (episode for part in source for episode in part)
    pending, frames, last = [], 0, time.monotonic()
    try:
        for episode in episodes:
            pending.append(episode)
            frames += len(episode["done"])
            bar.update(1)
            if frames >= MAX_PENDING or time.monotonic() - last >= cfg.flush_seconds:
                writer.append(pending)
                pending, frames, last = [], 0, time.monotonic()
        writer.append(pending)
    except KeyboardInterrupt:  # keep what finished in order; --resume continues from there
        writer.append(pending)
        raise
    finally:
        source.close()  # stops the workers
        bar.close()
        torch.set_num_threads(threads)
