"""Agents inside the simulator against the same agents in the environment: has the simulator learnt the
environment, or the habits of the agent it was trained with?

From the same starts (Saliency as causality drives its simulator with a trained, an untrained and a scripted
agent): each agent plays episode k on level ``start_level + k`` of the environment, its actions drawn with
evaluate's per-episode streams (:func:`play_real`); the simulator then reads the first K frames of that real
episode through its posterior with the agent's own first K - 1 actions (a filtered start,
:func:`~policylens.sim.imagined.imagined_start`) and the agent, seeing the decoded view, plays on from the last
context frame until the horizon (the env's step limit) with the same noise for every agent (:func:`play_imagined`).

An imagined episode ends where the simulator's episode-end head first fires (``done_logit > 0``), and its cause
is read as the environment reads a real one (:func:`ended_outcomes`, after ``envs.minigrid``'s causes): success
when the predicted reward is positive, else, when the agent moved forward, what the view it saw showed ahead
(lava, obstacle, wall), else other; timeout when no end comes within the horizon. Beside it, the end as its
view alone shows it (what the agent walked into, the goal included), for a simulator that ends an episode in the
right place but predicts the wrong reward. The simulator must predict
the end itself: no rule of the environment ends an imagined episode. Real episodes that end within the first
K - 1 actions were decided in the shared history and are counted apart (``in_context``); the others are paired
(:func:`paired_table`).
"""
from __future__ import annotations

import numpy as np
import torch

from ...imagined import forward_index, front_cells

VIEW_CAUSES = {2: "wall", 6: "obstacle", 8: "success", 9: "lava"}  # MiniGrid's codes of what walking into ends it
ORDER = ("success", "obstacle", "wall", "lava", "other", "timeout")


# ------------------------------------------------------------------------------------------------ the world
@torch.no_grad()
def play_real(agent, spec, episodes: int, start_level: int = 0, seed: int = 0, policy: str = "sample",
              batch: int = 64, device="cpu") -> list:
    """Episode k = 0..episodes-1 on level ``start_level + k``, played once by ``agent`` (any Agent: a module
    taking ``(obs, state, first)``), batch episodes at a time in step. Actions are drawn as
    :func:`policylens.evaluate.run.play` draws them (its per-episode seeds and streams; ``policy`` sample or
    greedy). One record per episode: evaluate's ``episode``, ``level``, ``return``, ``length``, ``cause``,
    ``success``, plus ``obs`` (length, H, W, C) uint8, the frames the agent saw, and ``actions`` (length,)."""
    from ....envs import make
    from ....evaluate.run import episode_plan, episode_seed, eval_spec, pick_actions

    if policy not in ("sample", "greedy"):
        raise ValueError(f"policy {policy!r}; expected sample or greedy")
    spec, plan, records = eval_spec(spec), episode_plan(episodes, start_level), []
    init = getattr(agent, "initial_state", None)
    for a in range(0, len(plan), batch):
        part = plan[a:a + batch]
        seeds = [episode_seed(seed, k) for k, _ in part]
        envs = [make(spec.replace(start_level=int(level), num_levels=1), num_envs=1, seed=s)
                for (_, level), s in zip(part, seeds)]
        obs = [env.reset(s)[0] for env, s in zip(envs, seeds)]  # each (H, W, C)
        frames = [[o] for o in obs]
        actions: list[list[int]] = [[] for _ in part]
        gens = [np.random.default_rng(s) for s in seeds]
        ends: list = [None] * len(part)  # each env's episode record, once its episode ended
        state = init(len(part)) if callable(init) else None
        first = torch.ones(len(part), dtype=torch.bool)
        while any(e is None for e in ends):
            out = agent(torch.as_tensor(np.stack(obs), device=device), state, first.to(device))
            live = [g if e is None else None for g, e in zip(gens, ends)]
            chosen = pick_actions(out.logits.float().cpu(), policy, 1.0, live)  # (B,)
            state, first[:] = out.state, False
            for i, env in enumerate(envs):
                if ends[i] is not None:
                    continue
                nxt, _, done, info = env.step(chosen[i:i + 1])
                actions[i].append(int(chosen[i]))
                if done[0]:
                    ends[i] = info[0]["episode"]
                    env.close()
                else:
                    obs[i] = nxt[0]
                    frames[i].append(nxt[0])
        for (k, level), ep, f, act in zip(part, ends, frames, actions):
            records.append({"episode": int(k), "level": int(level), "return": float(ep["return"]),
                            "length": int(ep["length"]), "cause": str(ep["cause"]), "success": bool(ep["success"]),
                            "obs": np.stack(f), "actions": np.asarray(act, np.int64)})
    return records


# ------------------------------------------------------------------------------------------------ imagination
def context_windows(records: list, k: int, agent_state: torch.Tensor, num_actions: int):
    """:class:`~policylens.sim.data.Windows` of the first ``k`` frames and actions of real episodes (each at least
    ``k`` long), the trained agent's state at their first frame ``agent_state`` (hidden,) (its initial state: they
    are episode beginnings); rewards, ends and logits zero (unread by a filtered start)."""
    from ...data import Windows

    b = len(records)
    obs = torch.from_numpy(np.stack([r["obs"][:k] for r in records]))  # (B, K, H, W, C)
    action = torch.from_numpy(np.stack([r["actions"][:k] for r in records]))  # (B, K)
    zeros = torch.zeros(b, k)
    return Windows(obs=obs, action=action, reward=zeros, done=zeros, logits=torch.zeros(b, k, num_actions),
                   agent_state=agent_state.detach().float().cpu().expand(b, k, -1).clone(),
                   mask=torch.ones(b, k, dtype=torch.bool), start=torch.arange(b))


def ended_outcomes(r, cfg, action_names=(), first: int = 0) -> list:
    """One ``{"cause", "success", "step", "view"}`` per imagined episode of Rollout ``r``: its end is the first step
    at or after ``first`` where the episode-end head fires, its cause as the module doc reads it; ``step`` counts
    from ``first`` (the horizon, ``T - first``, for a timeout). ``view``: the end as the view alone shows it, the
    reward left aside (what the agent moved forward into: success for the goal, obstacle, wall, lava; else other)."""
    b, t = r.value.shape
    ended = (r.done_logit > 0).cpu().numpy()  # (B, T)
    reward = r.reward.float().cpu().numpy()  # (B, T)
    action = r.action_index.cpu().numpy()  # (B, T)
    front, forward = front_cells(r, cfg), forward_index(action_names, cfg.num_actions)
    records = []
    for i in range(b):
        hits = np.flatnonzero(ended[i, first:])
        if not len(hits):
            records.append({"cause": "timeout", "success": False, "step": t - first, "view": "timeout"})
            continue
        step = int(hits[0]) + first
        view = "other"
        if front is not None and forward is not None and action[i, step] == forward:  # it moved ahead
            view = VIEW_CAUSES.get(int(front[i, step]), "other")
        cause = "success" if reward[i, step] > 0 else view if view != "success" else "other"
        records.append({"cause": cause, "success": cause == "success", "step": step - first, "view": view})
    return records


@torch.no_grad()
def play_imagined(sim, agent, records: list, horizon: int, noise, agent_state: torch.Tensor, action_names=(),
                  mode: str = "sample", view: str = "modal", batch: int = 128, keep: int = 0, device="cpu") -> list:
    """The imagined rest of each real episode in ``records`` (each at least K = context_frames long), driven by
    ``agent`` (a :class:`~policylens.sim.loop.FrozenAgent`) for ``horizon`` steps in all; ``noise`` a
    :class:`~policylens.sim.loop.Noise` with a row per episode number (the same draws for every agent).
    Returns :func:`ended_outcomes`' records with ``episode``; the first ``keep`` also hold ``obs`` (the frames
    the agent saw up to the end, env format) and ``actions``."""
    from ...imagined import imagined_start
    from ...loop import rollout
    from ...sample import env_obs

    k = sim.config.context_frames
    out = []
    for a in range(0, len(records), batch):
        part = records[a:a + batch]
        windows = context_windows(part, k, agent_state, sim.config.num_actions).to(device)
        real, first = imagined_start(windows, k, "filtered")
        rows = torch.tensor([r["episode"] for r in part])
        r = rollout(sim, agent, windows.context(k), horizon, mode=mode, noise=noise.rows(rows).to(device),
                    view=view, **real)
        seen = env_obs(r.decoded, sim.config) if a < keep else None  # (B, T, H, W, C)
        for i, (rec, got) in enumerate(zip(part, ended_outcomes(r, sim.config, action_names, first))):
            got = {"episode": rec["episode"], **got}
            if seen is not None and a + i < keep:
                end = first + got["step"] + (got["cause"] != "timeout")
                got.update(obs=seen[i, :end], actions=r.action_index[i, :end].cpu().numpy())
            out.append(got)
    return out


# ------------------------------------------------------------------------------------------------ tables
def steps_after(record: dict, k: int, horizon: int) -> int:
    """The actions a real episode took from the last context frame through its end, at most to the horizon."""
    return min(record["length"], horizon) - (k - 1)


def rates(causes: list, order=ORDER) -> dict:
    """``{cause: {"count", "rate", "ci95"}}`` over ``causes`` (Wilson 95%), every cause of ``order`` included."""
    from ....evaluate.stats import wilson_interval

    n, counts = len(causes), {c: causes.count(c) for c in list(order) + sorted(set(causes) - set(order))}
    return {c: {"count": m, "rate": m / n, "ci95": list(wilson_interval(m, n))} for c, m in counts.items()}


def paired_table(real: list, imagined: list, k: int, horizon: int) -> dict:
    """Real against imagined outcomes of one agent: the real episodes decided within the context apart
    (``in_context``: count and causes), and over the paired rest each cause's count, rate and interval in both
    (``imagined_view``: the imagined ends as their views show them), the share where both agree, and the mean
    steps from the last context frame to the end."""
    from ....evaluate.stats import wilson_interval
    from ....hidden.swap.core import cut_at_horizon

    by_episode = {r["episode"]: r for r in imagined}
    paired = [r for r in cut_at_horizon(real, horizon) if r["episode"] in by_episode]
    early = [r["cause"] for r in real if r["episode"] not in by_episode]
    if not paired:
        raise ValueError(f"no real episode outlived the {k} context frames: nothing to imagine")
    twins = [by_episode[r["episode"]] for r in paired]
    same = sum(r["cause"] == i["cause"] for r, i in zip(paired, twins))
    real_steps = [steps_after(r, k, horizon) for r in paired]
    imagined_steps = [i["step"] + (i["cause"] != "timeout") for i in twins]
    return {"episodes": len(real), "paired": len(paired),
            "in_context": {"count": len(early), "causes": {c: early.count(c) for c in sorted(set(early))}},
            "real": rates([r["cause"] for r in paired]), "imagined": rates([i["cause"] for i in twins]),
            "imagined_view": rates([i["view"] for i in twins]),
            "agree": {"count": same, "rate": same / len(paired), "ci95": list(wilson_interval(same, len(paired)))},
            "steps": {"real": float(np.mean(real_steps)), "imagined": float(np.mean(imagined_steps))}}
