"""Blind an agent to one kind of entity, chosen by ground truth (model editing by cause).

Seed 001 found a buzzsaw feature by eye among NMF directions and projected it out. Here the choice is
measured: NMF of a layer's activations over recorded frames, each direction scored against the entity masks
(:func:`policylens.scores.direction_entity_scores`), and the direction that best locates the entity
(highest normalised mutual information) is projected out. With ``keep_others`` (default) the projection is
oblique (:func:`policylens.edit.project.projector`): the other NMF directions pass unchanged, so entities
that share channels with the chosen one (a ball and a wall, say) are not disturbed; with
``keep_others=False`` it is seed 001's orthogonal projection.
"""
from __future__ import annotations

import numpy as np
import torch

from .project import project_out


def choose(agent, obs, masks: dict, entity: str, *, layer: str, k: int = 8, state=None, seed: int = 0) -> tuple:
    """``(directions, chosen index, scores)``: NMF (``k``) of ``layer`` over ``obs``, and the direction whose
    firing best locates ``entity`` (highest normalised mutual information with its masks)."""
    from ..scores import score_layer

    if entity not in masks:
        raise KeyError(f"no masks for entity {entity!r}; have: {', '.join(sorted(masks))}")
    directions, scores, _ = score_layer(agent, torch.as_tensor(np.asarray(obs)), masks, layer, k, seed=seed,
                                        state=state)
    chosen = max(range(len(directions)), key=lambda j: scores["directions"][j]["entities"][entity]["nmi"])
    return directions, chosen, scores


def blind(agent, obs, masks: dict, entity: str, *, layer: str, k: int = 8, keep_others: bool = True,
          state=None, seed: int = 0):
    """``(edited agent, info)``: ``agent`` without the NMF direction of ``layer`` that best locates ``entity``.

    ``obs`` (N, H, W, C) recorded frames; ``masks`` ``{kind: (N, H, W) bool}`` for those frames (e.g. from
    :func:`policylens.scores.episode_masks`); ``state`` the recorded agent state for recurrent agents.
    ``info``: ``directions`` (the NMF :class:`Directions`), ``chosen`` (index), ``scores`` (every direction's
    entity scores), ``edit`` (the edit record).
    """
    directions, chosen, scores = choose(agent, obs, masks, entity, layer=layer, k=k, state=state, seed=seed)
    others = directions.select([j for j in range(len(directions)) if j != chosen])
    edited = project_out(agent, layer, directions.select([chosen]), keep=others if keep_others else None,
                         obs=torch.as_tensor(np.asarray(obs[:64])))
    return edited, {"directions": directions, "chosen": chosen, "scores": scores,
                    "edit": edited.policylens_edits[-1]}
