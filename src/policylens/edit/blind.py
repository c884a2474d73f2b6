"""Blind an agent to one kind of entity, chosen by ground truth (model editing by cause).

Understanding RL Vision found a buzzsaw feature by eye among NMF directions and projected it out. Here the choice is
measured: NMF of a layer's activations over recorded frames, each direction scored against the entity masks
(:func:`policylens.scores.direction_entity_scores`), and the direction that best locates the entity
(highest normalised mutual information) is projected out, or the ``top`` best, or all whose best entity it is. With ``keep_others`` (default) the projection is
oblique (:func:`policylens.edit.project.projector`): the other NMF directions pass unchanged, so entities
that share channels with the chosen one (a ball and a wall, say) are not disturbed; with
``keep_others=False`` it is the paper's orthogonal projection.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .project import project_out

if TYPE_CHECKING:
    from ..factors import Directions

MIN_NMI = 0.1
"""``--blind`` refuses when no direction locates the entity at least this well (the interpretable criterion's
NMI), unless forced"""


class Choice(NamedTuple):
    """What :func:`choose` found: the NMF directions, the ones chosen (best first), every direction's scores,
    and every NMF restart's directions and scores (for the spread of a finding over restarts)."""
    directions: Directions  # of the chosen restart
    chosen: list  # indices into directions, best first
    scores: dict  # direction_entity_scores, with stability per direction
    restarts: list  # per NMF restart: (Directions, scores), the chosen restart's being directions and scores


def choose(agent, obs, masks: dict, entity: str, *, layer: str, k: int = 8, state=None, seed: int = 0,
           top="1", restarts: int = 5, force: bool = False) -> Choice:
    """NMF (``k``, the stable choice among ``restarts``) of ``layer`` over ``obs``, and the directions whose
    firing best locates ``entity`` (normalised mutual information with its masks), best first: the ``top``
    best (an int), or ``"all"``: every direction whose best entity it is (at least the best one). NMF often
    splits one entity over several directions (a ball seen in two ways), and blinding needs all of them.

    Refused when no direction reaches ``MIN_NMI`` for the entity (no direction locates it: projecting one out
    would blind the agent to something else), unless ``force``."""
    from ..scores import score_layer

    if entity not in masks:
        raise KeyError(f"no masks for entity {entity!r}; have: {', '.join(sorted(masks))}")
    parse_top(top)
    found = score_layer(agent, torch.as_tensor(np.asarray(obs)), masks, layer, k, seed=seed, state=state,
                        restarts=restarts)
    return select_entity(found, entity, top, force)


def select_entity(found, entity: str, top="1", force: bool = False) -> Choice:
    """:func:`choose` on scores already made (:func:`policylens.scores.score_layer`'s ``LayerScores``)."""
    rows = found.scores["directions"]
    if not rows or entity not in rows[0]["entities"]:
        raise KeyError(f"no masks for entity {entity!r}; have: {', '.join(sorted(rows[0]['entities'] if rows else ()))}")
    chosen = pick(rows, entity, top)
    best = rows[chosen[0]]
    nmi = best["entities"][entity]["nmi"]
    if nmi < MIN_NMI and not force:
        raise ValueError(f"no NMF direction of layer {found.directions.layer!r} locates {entity!r}: the best is "
                         f"direction {best['label']} with NMI {nmi:.3f} (its own best entity is "
                         f"{best['best_entity']!r}), below the threshold {MIN_NMI}; choose another layer, or pass "
                         "--force to project it out anyway")
    return Choice(found.directions, chosen, found.scores, found.restarts)


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
          state=None, seed: int = 0, top="1", restarts: int = 5, force: bool = False):
    """``(edited agent, info)``: ``agent`` without the NMF directions of ``layer`` that best locate ``entity``
    (``top``, as :func:`choose`).

    ``obs`` (N, H, W, C) recorded frames; ``masks`` ``{kind: (N, H, W) bool}`` for those frames (e.g. from
    :func:`policylens.scores.episode_masks`); ``state`` the recorded agent state for recurrent agents.
    ``info``: ``directions`` (the NMF :class:`Directions`), ``chosen`` (indices, best first), ``scores`` (every
    direction's entity scores and stability), ``restarts`` (every NMF restart's directions and scores),
    ``edit`` (the edit record).
    """
    found = choose(agent, obs, masks, entity, layer=layer, k=k, state=state, seed=seed, top=top,
                   restarts=restarts, force=force)
    edited = edit_chosen(agent, found.directions, found.chosen, keep_others, obs)
    return edited, {"directions": found.directions, "chosen": found.chosen, "scores": found.scores,
                    "restarts": found.restarts, "edit": edited.policylens_edits[-1]}


def edit_chosen(agent, directions, chosen: list, keep_others: bool, obs):
    """``agent`` with ``directions[chosen]`` projected out of their layer; with ``keep_others`` obliquely, the
    other directions passing unchanged (else the orthogonal projection of Understanding RL Vision)."""
    others = directions.select([j for j in range(len(directions)) if j not in chosen])
    keep = others if keep_others and len(others) else None
    return project_out(agent, directions.layer, directions.select(chosen), keep=keep,
                       obs=torch.as_tensor(np.asarray(obs[:64])))
