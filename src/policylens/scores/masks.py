"""Entity masks for recorded frames, in observation pixels or pooled onto a layer's spatial grid.

Masks are laid out like the observation (MiniGrid symbolic obs are ``[x, y]``-indexed, and so are the agent's
conv maps over them), so they line up with attributions and activations without any transposition.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F


def episode_masks(store, i: int, kinds=None) -> dict:
    """``{kind: (T, H, W) bool}`` for episode ``i`` of a rollout store, from its ground truth.

    MiniGrid and Atari stores read the per-frame ``entities`` JSON; CoinRun stores need the ``env_state`` field
    (``policylens record --save-state``). Kinds absent from every frame are left out unless asked for. An
    observation that stacks frames (Atari's ``frame_stack``) shows each entity in every frame of its stack, so
    its masks are those of the frames it stacks: steps ``t - stack + 1 .. t`` of the episode (the first frame
    before its start, as the env fills the stack).
    """
    from ..envs.masks import coinrun_masks, minigrid_masks
    from ..envs.render import frame_stack

    ep = store.episode(i)
    env = str(store.env)
    obs_shape = tuple(store.metadata.get("obs_shape") or ep["obs"].shape[1:])
    if env.startswith("minigrid:"):
        if "entities" not in ep:
            raise ValueError(f"store {store.path} has no 'entities' field; record with entities to get masks")
        frames = [minigrid_masks(json.loads(e), obs_shape) for e in ep["entities"]]
    elif env.startswith("procgen:coinrun"):
        if "env_state" not in ep:
            raise ValueError(f"store {store.path} has no 'env_state' field; CoinRun masks need "
                             "`policylens record --save-state true`")
        frames = [coinrun_masks(bytes(s), obs_shape) for s in ep["env_state"]]
    elif env.startswith("atari:") and "entities" in ep:
        from ..envs.atari_truth import entity_masks

        frames = [entity_masks(json.loads(e), obs_shape) for e in ep["entities"]]
    else:
        raise ValueError(f"no ground truth (entity masks) for env {env!r}: MiniGrid, CoinRun and the Atari games "
                         "OCAtari covers have it")
    kinds = kinds or sorted({k for f in frames for k in f})
    empty = np.zeros(obs_shape[:2], bool)
    masks = {k: np.stack([f.get(k, empty) for f in frames]) for k in kinds}  # (T, H, W) each
    return {k: stacked(m, frame_stack(env)) for k, m in masks.items()}


def stacked(masks: np.ndarray, stack: int) -> np.ndarray:
    """Per-frame masks ``(T, H, W)`` -> those of observations stacking ``stack`` frames: frame t's mask or'ed
    with those of the ``stack - 1`` frames before it (the first frame's before the start)."""
    out = masks.copy()
    for back in range(1, stack):
        out |= masks[np.maximum(np.arange(len(masks)) - back, 0)]
    return out


def pool_masks(masks: dict, size: tuple) -> dict:
    """Pixel masks ``{kind: (N, H, W) bool}`` -> the share of each cell of an ``(h, w)`` grid they cover
    ``{kind: (N, h, w) float}`` (area averaging, as a layer's position sees its patch of the observation)."""
    out = {}
    for kind, m in masks.items():
        t = torch.as_tensor(np.asarray(m), dtype=torch.float32).unsqueeze(1)  # (N, 1, H, W)
        out[kind] = F.adaptive_avg_pool2d(t, size).squeeze(1).numpy()  # (N, h, w)
    return out


def store_frames(store, kinds=None, episodes=None) -> tuple:
    """Frames of a store and their entity masks: ``(obs (N, H, W, C), {kind: (N, H, W) bool})`` over
    ``episodes`` (default all); ``kinds`` default to every kind seen in any of them."""
    episodes = list(range(len(store)) if episodes is None else episodes)
    per = [episode_masks(store, i) for i in episodes]
    kinds = list(kinds or sorted({k for m in per for k in m}))
    obs = [store.episode(i)["obs"] for i in episodes]
    empty = lambda o: np.zeros(o.shape[:3], bool)  # noqa: E731  (T, H, W)
    return np.concatenate(obs), {k: np.concatenate([m.get(k, empty(o)) for m, o in zip(per, obs)]) for k in kinds}
