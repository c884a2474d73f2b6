"""The swap experiment inside the simulator (Saliency as causality ran its swaps there): the agent, the swapped agent and the
random control each drive the same imagined episodes (same starts, same latent and action noise), and each
imagined episode gets an outcome read from what the simulator shows, so the real-env statistics apply.

Outcomes (:func:`imagined_outcomes`): for MiniGrid views (symbolic / onehot) the first step where the agent
moves forward into a ball (``obstacle``), lava (``lava``) or the goal (``success``), the cell in front of it read
from the decoded view it saw (the agent stands at the bottom centre facing up); otherwise, and for pixel
simulators, the first step with a predicted episode end (``success`` when the predicted reward is positive, else
``ended``); ``timeout`` when nothing happens within the steps. Starts are encoded real episode beginnings.

How an imagined episode starts (``start``): ``filtered`` (the default for a simulator trained to predict from a
filtered context, as ``sim fidelity`` scores it) reads the K context frames through the posterior with their
recorded actions, gives the agents the recorded state at the first frame, and lets each agent act from the last
context frame on; outcomes count from there (what came before is the real history). ``z``: the agents act from
the first frame on, which is decoded from z alone. Decoded from z, the first frames of the zoo's MiniGrid
simulator show a goal in a third of episode starts whose real frames have none, and the swapped agent walked
towards it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .data import Windows

OBJECTS = {6: "obstacle", 8: "success", 9: "lava"}  # MiniGrid's object codes of ball, goal, lava


def forward_index(action_names, num_actions: int) -> "int | None":
    """The index of MiniGrid's ``forward`` action among ``action_names`` (MiniGrid's order without names), or None."""
    names = [str(n).lower() for n in action_names or ()]
    if "forward" in names:
        return names.index("forward")
    return 2 if num_actions >= 3 and not names else None  # MiniGrid's order: left, right, forward


def front_cells(r, cfg) -> "np.ndarray | None":
    """The object code of the cell in front of the agent in each view it saw, ``(B, T)`` (the agent stands at the
    bottom centre of MiniGrid's view facing up); None for pixel views."""
    if cfg.obs_kind not in ("symbolic", "onehot"):
        return None
    codes = r.obs[..., 0] if cfg.obs_kind == "symbolic" else r.obs[..., :cfg.planes[0]].argmax(-1)  # (B, T, W, H)
    w, h = codes.shape[2:4]
    return codes[:, :, w // 2, h - 2].round().long().cpu().numpy()  # (B, T) the cell ahead


def imagined_outcomes(r, cfg, action_names=(), first: int = 0) -> list:
    """One ``{"level": sample, "cause", "success", "step"}`` record per imagined episode of Rollout ``r``, from
    step ``first`` on (``step`` counts from there; earlier steps are history)."""
    b, t = r.value.shape
    action = r.action.argmax(-1).cpu().numpy()  # (B, T)
    ended = (r.done_logit > 0).cpu().numpy()  # (B, T)
    reward = r.reward.float().cpu().numpy()  # (B, T)
    events = np.full((b, t), "", dtype=object)
    forward, front = forward_index(action_names, cfg.num_actions), front_cells(r, cfg)
    if front is not None and forward is not None:
        for code, name in OBJECTS.items():
            events[(action == forward) & (front == code)] = name
    sim_end = ended & (events == "")
    events[sim_end] = np.where(reward[sim_end] > 0, "success", "ended")
    events[:, :first] = ""
    records = []
    for k in range(b):
        hits = np.flatnonzero(events[k] != "")
        cause, step = (events[k, hits[0]], int(hits[0]) - first) if len(hits) else ("timeout", t - first)
        records.append({"level": k, "cause": cause, "success": cause == "success", "step": step})
    return records


def episode_starts(data, samples: int, context: int, seed: int) -> Windows:
    """Windows of ``context`` frames at the beginnings of ``samples`` episodes of the store (seeded; with
    replacement only when the store has fewer episodes)."""
    picks = np.random.default_rng(seed).choice(data.num_episodes, samples, replace=data.num_episodes < samples)
    return data.windows(data.start[picks], context)


def imagined_start(windows, k: int, start: str) -> tuple:
    """``(rollout keywords, the step the agents take over)`` for imagined episodes from ``windows``' K context
    frames: ``filtered`` (:func:`~policylens.sim.loop.filtered_start`, the agents acting from the last context
    frame) or ``z`` (no keywords: the agents act from the first frame)."""
    from .loop import filtered_start

    if start not in ("filtered", "z"):
        raise ValueError(f"start {start!r}; expected filtered or z")
    return (filtered_start(windows, k), k - 1) if start == "filtered" else ({}, 0)


@torch.no_grad()
def simulated_swap(sim, agents: dict, data, samples: int, steps: int, seed: int = 0, action_names=(),
                   start: str = "filtered", view: str = "modal", batch_size: int = 256, device="cpu",
                   progress: bool = False) -> dict:
    """Each of ``agents`` (name -> agent module, the first the original) drives the same imagined episodes of
    K context frames + ``steps`` (the real episodes' horizon in ``sim swap``) from the same ``start``
    (``filtered``: :func:`~policylens.sim.loop.filtered_start`, or ``z``; see the module doc), each seeing the
    ``view`` of :func:`~policylens.sim.loop.rollout` (``sample``: a world drawn cell by cell, the same draws for
    every agent): ``{name: records}`` (:func:`imagined_outcomes`)."""
    from tqdm.auto import tqdm

    from .loop import FrozenAgent, Noise, rollout

    k = sim.config.context_frames
    starts = episode_starts(data, samples, k, seed).to(device)
    frozen = {name: FrozenAgent(agent).to(device) for name, agent in agents.items()}
    noise = Noise.draw(samples, k + steps, sim, torch.Generator().manual_seed(seed), device=device,
                       view=view == "sample")
    records: dict[str, list] = {name: [] for name in agents}
    for a in tqdm(range(0, samples, batch_size), desc="swap in the simulator", unit="batch", disable=not progress):
        part = slice(a, a + batch_size)
        windows = starts.rows(part)
        real, first = imagined_start(windows, k, start)
        for name, agent in frozen.items():
            r = rollout(sim, agent, windows.context(k), k + steps, mode="sample", noise=noise.rows(part), view=view,
                        **real)
            for rec in imagined_outcomes(r, sim.config, action_names, first):
                records[name].append({**rec, "level": rec["level"] + a})
    return records
