"""Why an Atari life (or point, or game) was lost: the category of the object that struck the player.

Rules per game (:data:`RULES`), from RAM through OCAtari (:mod:`.atari_truth`):

* ``breakout``: a life is lost only when the ball passes the paddle: ``ball``;
* ``pong``: a point conceded (reward -1) is a lost "life", by the ``ball``; a game the agent wins is a ``success``;
* ``ms_pacman`` (``ghost``, which one in ``culprit``: blinky, pinky, inky, sue), ``space_invaders`` (an invader's
  ``bullet``, or the ``alien`` invaders themselves reaching the player's row) and ``asterix`` (a lyre, ``enemy``):
  *touch* rules. Every step keeps ALE's state before it, the frames' actions and RAMs. When a life is lost, the
  last :data:`HISTORY` steps are searched backwards for runs of steps in which lethal objects came within
  :data:`REACH` pixels of the player (the candidates). Run by run, latest first, the steps are replayed from the
  saved state before the run with the same frame actions, each candidate moved out of the way by a RAM edit
  (:data:`REMOVE`): the first run in which removing a candidate saves the life settles it (during a death
  animation, objects left near the player do not, so the search reaches back to the collision). One candidate
  in that run: ``settled_by: "only one in reach"``; several, of which only one's removal saves the life:
  ``"replay"``; otherwise the nearest (``"nearest"``). Where no replay saves the life, the latest run's nearest
  candidate. With no lethal object in reach the cause is an honest ``other``.

Every life lost gives ``info["life"] = {"cause", "culprit", "settled_by", "lives"}``; the episode's cause is its
last life's (``timeout`` when ALE cuts it). Games without a rule give ``other``. The history of steps is not part of
an env's saved state: after ``set_state`` the search starts from there.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

#: Ms. Pac-Man's ghosts by OCAtari slot, named by the colour OCAtari's extraction gives each.
GHOST_NAMES = {1: "sue", 2: "inky", 3: "pinky", 4: "blinky"}

#: How close (screen pixels, around the player's box) a lethal object must come to be a candidate.
REACH = 4
#: Steps of history kept per env.
HISTORY = 80
#: Runs of steps with lethal objects in reach tried by replay, latest first.
MAX_RUNS = 4


def _shift_x(addr: int, lo: int = 0, hi: int = 160):
    """A RAM edit moving an object's x (at ``addr``) half the screen away."""
    def edit(ale) -> None:
        x = int(ale.getRAM()[addr])
        ale.setRAM(addr, lo + (x - lo + (hi - lo) // 2) % (hi - lo))
    return edit


def _set(addr: int, value: int):
    def edit(ale) -> None:
        ale.setRAM(addr, value)
    return edit


#: game -> (player category, {lethal category: slots or None for any}, fixed cause or None).
RULES: dict[str, tuple[str, dict[str, tuple[int, ...] | None], str | None]] = {
    "breakout": ("player", {}, "ball"),
    "pong": ("player", {}, "ball"),
    "ms_pacman": ("player", {"ghost": None}, None),
    "space_invaders": ("player", {"bullet": (4, 5), "alien": None}, None),  # slot 6 is the player's own shot
    "asterix": ("player", {"enemy": None}, None),
}
#: game -> {OCAtari slot: RAM edit that takes that object out of the player's way} (from OCAtari's RAM map).
REMOVE = {
    "ms_pacman": {k: _shift_x(5 + k, 13, 173) for k in range(1, 5)},  # ghost k's x is ram[5 + k]
    "space_invaders": {4: _set(81, 246), 5: _set(82, 246)},  # 246: no invader bullet in flight
    "asterix": {9 + i: _shift_x(42 + i) for i in range(8)},  # lane i's object x is ram[42 + i]
}


def _gap(a: tuple, b: tuple) -> float:
    """Pixels between two boxes ``(x, y, w, h)`` (0 when they overlap or touch)."""
    dx = max(a[0] - (b[0] + b[2]), b[0] - (a[0] + a[2]), 0)
    dy = max(a[1] - (b[1] + b[3]), b[1] - (a[1] + a[3]), 0)
    return float(max(dx, dy))


class Causes:
    """The history and the rules of one :class:`~.atari.AtariVecEnv`'s envs."""

    def __init__(self, rom: str, truth, num_envs: int):
        self.rom, self.truth = rom, truth
        self.rule = RULES.get(rom)
        self.history: list[deque[dict]] = [deque(maxlen=HISTORY) for _ in range(num_envs)]
        self._replayer = None
        self.last_run: tuple[list, dict] = ([], {})

    def new_episode(self, i: int) -> None:
        self.history[i].clear()

    def before_step(self, i: int, ale) -> None:
        if self.rule is not None and self.rule[1]:
            self.history[i].append({"state": ale.cloneState(include_rng=True)})

    def after_step(self, i: int, game, reward: float, life_lost: bool, game_over: bool) -> tuple:
        """``(life event or None, episode cause or None)`` for the step just taken by env ``i``."""
        if self.rule is None:
            if life_lost:
                return {"cause": "other", "culprit": None, "settled_by": "no rule for this game",
                        "lives": int(game.ale.lives())}, ("other" if game_over else None)
            return None, None
        if self.rule[1] and self.history[i]:
            self.history[i][-1].update(actions=list(game.step_actions), rams=[r for r in game.rams[1:]])
        lost = life_lost or (self.rom == "pong" and reward < 0)
        event = None
        if lost:
            event = self.life_cause(i) if self.rule[1] else {"cause": self.rule[2], "culprit": None,
                                                             "settled_by": "rule"}
            event["lives"] = int(game.ale.lives())
        end = None
        if game_over:
            end = self.end_cause(game, event)
        return event, end

    def end_cause(self, game, event) -> str:
        if self.rom == "pong":
            ram = game.ale.getRAM()
            return "success" if int(ram[14]) > int(ram[13]) else "ball"  # ram 14: the agent's score, 13: the CPU's
        if event is not None:
            return event["cause"]
        if self.rom == "space_invaders":
            ram = game.rams[-1]
            objs = self.truth.objects(ram)
            player = next((o for o in objs if o[1] == "player"), None)
            if player is not None and any(o[1] == "alien" and o[3] + o[5] >= player[3] for o in objs):
                return "alien"  # the invaders reached the ground
        return "other"

    # --- touch rules --------------------------------------------------------------------------------
    def in_reach(self, ram: np.ndarray) -> dict:
        """``{slot: (category, gap)}`` of the lethal objects within :data:`REACH` of the player in the screen
        ``ram`` describes."""
        assert self.rule is not None, "in_reach is asked only of games with a touch rule"
        player_cat, lethal, _ = self.rule
        objs = self.truth.objects(ram)
        if self.rom == "space_invaders":  # OCAtari pairs bullet i's y (ram[81 + i]) with x ram[83 + i], but the
            # game swaps its two x bytes from frame to frame: each invader bullet is looked for at both x's
            objs += [(k, c, int(ram[83 + (5 - k)]) - 2, y, w, h) for k, c, x, y, w, h in objs if k in (4, 5)]
        player = next((o for o in objs if o[1] == player_cat), None)
        if player is None:
            return {}
        found = {}
        for slot, cat, *box in objs:
            if cat in lethal and ((slots := lethal[cat]) is None or slot in slots):
                gap = _gap(tuple(player[2:]), tuple(box))
                if gap <= REACH:
                    found[slot] = (cat, gap)
        return found

    def _shown(self, step: dict) -> list:
        rams = [None] * self.truth.lag + step.get("rams", [])
        return [r for r in rams[:len(rams) - self.truth.lag] if r is not None] or step.get("rams", [])

    def runs(self, steps: list) -> list:
        """The runs of consecutive steps with lethal objects in reach, latest first: ``[(start, {slot: (category,
        gap)})]`` (each slot with its smallest gap in the run)."""
        out: list[list[Any]] = []  # [start, {slot: (category, gap)}] per run
        cur: list[Any] | None = None
        for s in range(len(steps) - 1, -1, -1):
            here: dict[int, tuple[str, float]] = {}
            for ram in self._shown(steps[s]):
                for slot, (cat, gap) in self.in_reach(ram).items():
                    here[slot] = (cat, min(gap, here.get(slot, (cat, 1e9))[1]))
            if not here:
                cur = None
                continue
            if cur is None:
                cur = [s, {}]
                out.append(cur)
            cur[0] = s
            for slot, (cat, gap) in here.items():
                cur[1][slot] = (cat, min(gap, cur[1].get(slot, (cat, 1e9))[1]))
        return [(start, cands) for start, cands in out]

    def life_cause(self, i: int) -> dict:
        """The cause of the life env ``i`` just lost (see the module docstring): going back run by run, the first
        run from whose start removing one candidate saves the life names it."""
        steps = list(self.history[i])
        runs = self.runs(steps)
        self.last_run = ([], {})  # for inspection: the steps and candidates the cause was settled on
        if not runs:
            return {"cause": "other", "culprit": None, "settled_by": "nothing in reach"}
        for start, cands in runs[:MAX_RUNS]:
            saved = [slot for slot in cands if self._survives(steps[start:], slot)]
            if saved:
                self.last_run = (steps[start:], cands)
                slot = min(saved, key=lambda k: (cands[k][1], k))
                how = "only one in reach" if len(cands) == 1 else "replay" if len(saved) == 1 else "nearest"
                return self._event(cands[slot][0], slot, how)
        start, cands = runs[0]  # no replay tells: the latest run's nearest object
        self.last_run = (steps[start:], cands)
        slot = min(cands, key=lambda k: (cands[k][1], k))
        return self._event(cands[slot][0], slot, "only one in reach" if len(cands) == 1 else "nearest")

    def _event(self, cat: str, slot: int, how: str) -> dict:
        culprit = f"{cat}{slot}"
        if self.rom == "ms_pacman" and cat == "ghost":
            culprit = GHOST_NAMES.get(slot, culprit)
        return {"cause": cat, "culprit": culprit, "settled_by": how}

    def replayer(self):
        """A private ALE of the same game, for counterfactual replays."""
        if self._replayer is None:
            from .atari_game import _Game

            self._replayer = _Game(self.rom, self.truth.opts).ale
        return self._replayer

    def _survives(self, steps: list, slot: int) -> bool:
        """Replaying ``steps`` from the state before the first with object ``slot`` moved away: is no life
        lost (and the game not over) by their end, nor in one step more?"""
        edit = REMOVE.get(self.rom, {}).get(slot)
        if edit is None or "actions" not in steps[-1]:
            return False
        return survives(self.replayer(), steps[0]["state"], [a for s in steps for a in s["actions"]], edit,
                        extra=len(steps[-1]["actions"]))


def survives(ale, state, frame_actions: list, edit=None, extra: int = 4) -> bool:
    """Load ``state`` into ``ale``, apply ``edit(ale)`` (a RAM edit) and play ``frame_actions`` (ALE actions) and
    ``extra`` NOOP frames: True when no life was lost and the game did not end."""
    ale.restoreState(state)
    lives = ale.lives()
    if edit is not None:
        edit(ale)
    noop = ale.getLegalActionSet()[0]
    for a in list(frame_actions) + [noop] * extra:
        ale.act(a)
        if ale.lives() < lives or ale.game_over():
            return False
    return True
