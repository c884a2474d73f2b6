"""Blind an agent to one kind of entity, chosen by ground truth (model editing by cause).

Seed 001 found a buzzsaw feature by eye among NMF directions and projected it out. Here the choice is
measured: NMF of a layer's activations over recorded frames, each direction scored against the entity masks
(:func:`policylens.scores.direction_entity_scores`), and the direction that best locates the entity
(highest normalised mutual information) is projected out, or the ``top`` best, or all whose best entity it is. With ``keep_others`` (default) the projection is
oblique (:func:`policylens.edit.project.projector`): the other NMF directions pass unchanged, so entities
that share channels with the chosen one (a ball and a wall, say) are not disturbed; with
``keep_others=False`` it is seed 001's orthogonal projection.
"""
from __future__ import annotations

import numpy as np
import torch

from .project import project_out


def choose(agent, obs, masks: dict, entity: str, *, layer: str, k: int = 8, state=None, seed: int = 0,
           top="1") -> tuple:
    """``(directions, chosen indices, scores)``: NMF (``k``) of ``layer`` over ``obs``, and the directions whose
    firing best locates ``entity`` (normalised mutual information with its masks), best first: the ``top`` best
    (an int), or ``"all"``: every direction whose best entity it is (at least the best one). NMF often splits
    one entity over several directions (a ball seen in two ways), and blinding needs all of them."""
    from ..scores import score_layer

    if entity not in masks:
        raise KeyError(f"no masks for entity {entity!r}; have: {', '.join(sorted(masks))}")
    top = parse_top(top)
    directions, scores, _ = score_layer(agent, torch.as_tensor(np.asarray(obs)), masks, layer, k, seed=seed,
                                        state=state)
    return directions, pick(scores["directions"], entity, top), scores


def pick(rows: list, entity: str, top="1") -> list:
    """Indices of the directions ``rows`` (scores per direction) that best locate ``entity``, best first:
    the ``top`` best, or with ``"all"`` every one whose best entity it is (at least the best one)."""
    top = parse_top(top)
    order = sorted(range(len(rows)), key=lambda j: -rows[j]["entities"][entity]["nmi"])
    if top == "all":
        return [j for j in order if rows[j]["best_entity"] == entity] or order[:1]
    if top > len(rows) - 1:
        raise ValueError(f"top={top}: only {len(rows)} NMF directions, and one at least must stay")
    return order[:top]


def parse_top(top) -> "int | str":
    """``top`` as :func:`choose` takes it: a positive int, or ``"all"``."""
    if str(top) == "all":
        return "all"
    try:
        n = int(top)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(top).strip():
        raise ValueError(f"top={top!r}: expected a positive number of directions, or 'all' (every direction "
                         "whose best entity it is)")
    return n


def blind(agent, obs, masks: dict, entity: str, *, layer: str, k: int = 8, keep_others: bool = True,
          state=None, seed: int = 0, top="1"):
    """``(edited agent, info)``: ``agent`` without the NMF directions of ``layer`` that best locate ``entity``
    (``top``, as :func:`choose`).

    ``obs`` (N, H, W, C) recorded frames; ``masks`` ``{kind: (N, H, W) bool}`` for those frames (e.g. from
    :func:`policylens.scores.episode_masks`); ``state`` the recorded agent state for recurrent agents.
    ``info``: ``directions`` (the NMF :class:`Directions`), ``chosen`` (indices, best first), ``scores`` (every
    direction's entity scores), ``edit`` (the edit record).
    """
    directions, chosen, scores = choose(agent, obs, masks, entity, layer=layer, k=k, state=state, seed=seed,
                                        top=top)
    others = directions.select([j for j in range(len(directions)) if j not in chosen])
    edited = project_out(agent, layer, directions.select(chosen), keep=others if keep_others else None,
                         obs=torch.as_tensor(np.asarray(obs[:64])))
    return edited, {"directions": directions, "chosen": chosen, "scores": scores,
                    "edit": edited.policylens_edits[-1]}
