"""Legend labels from ground truth: each NMF feature named by the entity its attribution lies on.

A feature's map over frames (its good plus bad news at each position of the layer, as the explorer draws it) is
scored against the entity masks of the same frames with :func:`policylens.scores.direction_entity_scores`
(normalised mutual information, lift; the project's criterion for "interpretable"). An interpretable feature
reads ``"ball, NMI 0.93"``; another ``"NMF 3 (best: goal, NMI 0.04)"``; without ground truth ``"NMF 3"``.

Masks come from the rollouts store's ground truth (MiniGrid entities, CoinRun state: what ``edit --blind``
scores against) or, for frames without it (a simulator's), from a MiniGrid view's own cell codes.
"""
from __future__ import annotations

import numpy as np

NOT_ENTITIES = ("unseen", "empty", "wall", "agent")  # cell codes that are no entity (walls are none in MiniGrid's)


def code_masks(obs, kind: str) -> dict:
    """``{object: (N, H, W) bool}`` of the objects MiniGrid views ``(N, H, W, C)`` show (``kind`` symbolic or
    onehot), laid out like the observation."""
    from minigrid.core.constants import OBJECT_TO_IDX

    from ..envs.render import minigrid_codes

    objects = minigrid_codes(obs, kind)[..., 0]  # (N, H, W)
    return {name: objects == i for name, i in OBJECT_TO_IDX.items()
            if name not in NOT_ENTITIES and (objects == i).any()}


def frame_masks(trajectories, sample, env: str) -> "dict | None":
    """``{kind: (n, H, W) bool}`` for the frames ``sample`` (``[(trajectory, frame indices)]``) takes: each
    trajectory's ``masks``, else the cell codes of a tiled MiniGrid view; None when some frame has neither."""
    from .views import frame_view

    parts = []
    for traj, frames in sample:
        if traj.masks is not None:
            parts.append({k: np.asarray(m)[frames] for k, m in traj.masks.items()})
            continue
        view = frame_view(env, np.shape(traj.obs)[1:])
        if not view["tiles"]:
            return None
        parts.append(code_masks(np.asarray(traj.obs)[frames], view["kind"]))
    kinds = sorted({k for p in parts for k in p})
    if not parts or not kinds:
        return None
    blank = [np.zeros((len(frames), *np.shape(traj.obs)[1:3]), bool) for traj, frames in sample]
    return {k: np.concatenate([p.get(k, b) for p, b in zip(parts, blank)]) for k in kinds}


def feature_labels(attr, directions, masks: "dict | None") -> tuple:
    """``(labels, scores)`` of the NMF ``directions``: ``attr`` ``(n, C, h, w)`` the value attributions of the
    frames ``masks`` ``{kind: (n, H, W) bool}`` describe (None: no ground truth, ``("NMF 1", ...)`` and None)."""
    from ..scores import direction_entity_scores, pool_masks
    from .maps import feature_maps

    k = len(directions)
    plain = tuple(f"NMF {j + 1}" for j in range(k))
    if not masks:
        return plain, None
    maps = feature_maps(attr, directions)[:, :, :k].sum(1).numpy()  # (n, K, h, w) good + bad news
    scores = direction_entity_scores(maps, pool_masks(masks, maps.shape[-2:]), labels=plain)
    labels = []
    for name, row in zip(plain, scores["directions"]):
        best = row["best_entity"]
        nmi = row["entities"][best]["nmi"]
        labels.append(f"{best}, NMI {nmi:.2f}" if row["interpretable"] else f"{name} (best: {best}, NMI {nmi:.2f})")
    return tuple(labels), scores
