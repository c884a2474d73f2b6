"""Closed-loop fidelity: the agent acting on its own, inside the simulator and in the environment drawn again.

``sim fidelity``'s scores drive every model with the recorded actions. Imagination (``sim swap``, ``sim sample``)
lets the agent act instead, and there the question is whether the agent does in the simulator what it does in
the world. From each held-out window's filtered start (:func:`~policylens.sim.loop.filtered_start`), the agent
drives the simulator (its likeliest action on the latent means: the simulator's best guess), and it drives D
draws of the environment, each replayed to the window's last context frame and reseeded
(:func:`~.reroll.replay_to`). At each step from the last context frame on the outcome is the
agent's action, or :data:`ENDED` once its episode has ended (in the simulator, as ``sim swap`` reads it:
:func:`~policylens.sim.imagined.imagined_outcomes`). Per window and step (:func:`agreement`): the share of the
environment's draws whose outcome the simulator's matches, the share of pairs of draws that match each other
(what a perfect simulator that samples scores), and the share of the draws one half's commonest outcome matches
in the other half (what the best guess of the environment's spread scores; from half the draws it slightly
undershoots).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ...data import SimData, Windows
from .reroll import check_replayable, replay_to

ENDED = -1  # the outcome of a step after the episode ended
WAYS = ("simulator", "a draw", "best guess")


@torch.no_grad()
def drawn_outcomes(data: SimData, starts: np.ndarray, context: int, steps: int, agent, draws: int,
                   seed: int = 0) -> np.ndarray:
    """The agent's outcome at each of ``steps`` steps from the last context frame of the windows starting at
    ``starts`` (B,), in ``draws`` reseeded draws of the environment each (seeded by ``(seed, start, draw)``), the
    agent starting from its recorded state there and taking its likeliest action: (B, D, steps) int64."""
    from ....envs import make_minigrid

    check_replayable(data)
    one, worlds = make_minigrid(data.env, num_envs=1, seed=0), make_minigrid(data.env, num_envs=draws, seed=0)
    out = np.full((len(starts), draws, steps), ENDED, np.int64)  # (B, D, H)
    for i, first in enumerate(np.asarray(starts, np.int64)):
        frame, branch, _ = replay_to(one, data, int(first), context)
        for k in range(draws):
            worlds.envs[k] = copy.deepcopy(one.envs[0])
            worlds.envs[k].np_random = np.random.default_rng([seed, int(first), k])
        obs = torch.from_numpy(np.repeat(frame[None], draws, 0))  # (D, h, w, C)
        hx = torch.from_numpy(data.agent_state[branch][None]).float().repeat(draws, 1)  # (D, hidden)
        running = np.ones(draws, bool)
        for j in range(steps):
            step = agent(obs, hx)
            action = step.logits.argmax(-1).cpu().numpy()  # (D,)
            out[i, running, j] = action[running]
            nxt, _, done, _ = worlds.step(action)
            running &= ~done
            if not running.any():
                break
            obs, hx = torch.from_numpy(nxt), step.state
    return out


@torch.no_grad()
def imagined_outcomes_per_step(sim, agent, windows: Windows, context: int, steps: int, action_names=()) -> np.ndarray:
    """The agent's outcome at each of ``steps`` steps from the last context frame inside the simulator, from the
    filtered start of ``windows`` (their ``context`` frames), modal actions on the latent means: (B, steps)."""
    from ...imagined import imagined_outcomes, imagined_start
    from ...loop import rollout

    real, first = imagined_start(windows, context, "filtered")
    r = rollout(sim, agent, windows.context(context), first + steps, mode="modal", latent="mean", **real)
    out = r.action[:, first:].argmax(-1).cpu().numpy().astype(np.int64)  # (B, H)
    for i, rec in enumerate(imagined_outcomes(r, sim.config, action_names, first)):
        out[i, rec["step"] + 1:] = ENDED  # the action at "step" ended it
    return out


def agreement(simulated: np.ndarray, drawn: np.ndarray) -> dict:
    """Per window and step, ``{way: (B, H)}`` for :data:`WAYS`, from the simulator's outcomes ``simulated`` (B, H)
    and the environment's ``drawn`` (B, D, H), D >= 4."""
    d = drawn.shape[1]
    if d < 4:
        raise ValueError(f"closed-loop agreement needs at least 4 draws of the environment, got {d}")
    symbols = np.unique(np.concatenate([drawn.ravel(), simulated.ravel()]))
    counts = np.stack([(drawn == s).sum(1) for s in symbols], -1)  # (B, H, S)
    pairs = (counts * (counts - 1)).sum(-1) / (d * (d - 1))  # (B, H) two draws agree

    def commonest(part):  # (B, h, H) -> (B, H) the commonest outcome of these draws
        return symbols[np.stack([(part == s).sum(1) for s in symbols], -1).argmax(-1)]

    halves = (drawn[:, :d // 2], drawn[:, d // 2:])
    best = np.mean([(other == commonest(one)[:, None]).mean(1) for one, other in (halves, halves[::-1])], 0)
    return {"simulator": (drawn == simulated[:, None]).mean(1), "a draw": pairs, "best guess": best}


def closed_loop(sim, agent, data: SimData, windows: Windows, context: int, steps: int, draws: int = 32,
                seed: int = 0, batch_size: int = 128, progress: bool = False) -> dict:
    """:func:`agreement` of the simulator with ``draws`` draws of the environment over ``steps`` steps from the
    last context frame of each of ``windows`` (which must come from ``data``): ``{way: (N, H)}``."""
    from tqdm.auto import tqdm

    parts: dict[str, list] = {way: [] for way in WAYS}
    n = windows.obs.shape[0]
    for a in tqdm(range(0, n, batch_size), desc="closed loop", unit="batch", disable=not progress):
        part = windows.rows(slice(a, a + batch_size))
        simulated = imagined_outcomes_per_step(sim, agent, part, context, steps, data.action_names)
        drawn = drawn_outcomes(data, part.start.cpu().numpy(), context, steps, agent, draws, seed)
        for way, v in agreement(simulated, drawn).items():
            parts[way].append(v)
    return {way: np.concatenate(v) for way, v in parts.items()}
