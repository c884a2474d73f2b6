"""Atari 2600 games (the Arcade Learning Environment, through ale-py) behind the vector interface.

``atari:GAME`` takes any ROM ale-py ships, by its id (``breakout``, ``ms_pacman``) or a Gymnasium-style name
(``Breakout``, ``MsPacman``, ``ALE/MsPacman-v5``, ``MsPacmanNoFrameskip-v4``). ALE is driven frame by frame
here, and the preprocessing is CleanRL's and Stable-Baselines3's (``AtariWrapper``), step for step, each a spec
option (default first):

* ``noop_max=30``: each episode starts with 1..noop_max raw NOOP frames (0: none);
* ``frame_skip=4``: an action is repeated for this many frames, rewards summed; ``max_pool=true``: the frame
  shown is the pixel-wise max of the last two (Atari sprites flicker);
* ``size=84``, ``grey=true``: RGB -> grey (OpenCV's RGB2GRAY) and resized with area averaging;
* ``frame_stack=4``: observations ``(size, size, frame_stack)`` uint8, oldest frame first, newest last (as
  SB3's channel-last ``VecFrameStack``); on a new episode the first frame fills the stack;
* ``fire_reset=true``: where the game's action 1 is FIRE (Breakout, SpaceInvaders, ...), FIRE and then action 2
  are pressed after the no-ops (SB3's FireResetEnv) so the game starts;
* ``episodic_life=false`` (true for training, as CleanRL and SB3 train): a lost life ends the interface's
  episode (``done``); the game goes on from there after one NOOP step and the fire reset, and ``info["game"]``
  holds ``{"return", "length"}`` of the whole game on the step it really ends;
* ``one_life=false``: the game ends at its first lost life (cause: that life's), and the next episode is a new
  game on its own level seed: each episode is one life from a game's start, so episodes of two agents on the
  same levels are paired, as CoinRun's are (what an evaluation by cause of a blinded agent wants);
* ``clip_reward=false`` (true for training only): rewards returned as their sign; the episode records keep the
  game's own score;
* ``sticky=0.0``: the probability that the previous action is repeated at each frame (ALE v5's sticky actions
  use 0.25; the default is off as in CleanRL's and SB3's NoFrameskip-v4 set-up);
* ``full_action_space=false``: the game's minimal action set, or all 18 actions;
* ``max_frames=108000``: an episode is cut (cause ``timeout``) after this many frames (30 minutes of play);
* ``num_levels=0``, ``start_level=0``: episodes' level seeds drawn from ``[start_level, start_level + num_levels)``
  (0: any), so held-out episodes can be told from training ones as procgen's levels are;
* ``ground_truth=true``: a cause for every life lost and every episode end (:mod:`.atari_causes`);
  ``invisible=KIND`` hides the objects of that category from the frames while the game runs unchanged. Both need
  a game OCAtari covers; :meth:`AtariVecEnv.entities` (objects from RAM through OCAtari, :mod:`.atari_truth`)
  is there for every such game, and None for the others.

Levels: every episode gets a ``level_seed`` drawn from the env's seed; it fixes the episode's number of no-op
frames and its sticky-action draws, and with them the whole episode given the actions (the games themselves are
deterministic, whatever ALE's own seed). :meth:`AtariVecEnv.get_state` is ALE's ``cloneState`` plus everything
the wrapper keeps (frame stack, lives, the episode's random generator), so a replay from a restored state
equals the original frame for frame.
"""
from __future__ import annotations

import json
import re
import struct
import zlib

import numpy as np
from gymnasium import spaces

from .atari_game import _ale, _Game
from .base import EpisodeTracker, VecEnv
from .spec import EnvSpec

#: Spec options and their defaults (see the module docstring).
DEFAULTS = {"noop_max": 30, "frame_skip": 4, "max_pool": True, "size": 84, "grey": True, "frame_stack": 4,
            "fire_reset": True, "episodic_life": False, "one_life": False, "clip_reward": False, "sticky": 0.0,
            "full_action_space": False, "max_frames": 108000, "num_levels": 0, "start_level": 0,
            "ground_truth": False, "invisible": ""}
_MAGIC = b"PLATARI1"


def rom_id(name: str) -> str:
    """ale-py's ROM id of a game named ``breakout``, ``Breakout``, ``MsPacman``, ``ms_pacman``,
    ``ALE/MsPacman-v5`` or ``MsPacmanNoFrameskip-v4``; a clear error (with close matches) otherwise."""
    ids = _ale().roms.get_all_rom_ids()
    base = re.sub(r"^ALE/", "", str(name).strip())
    base = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", base)
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()
    by_key = {i.replace("_", ""): i for i in ids}
    found = snake if snake in ids else by_key.get(snake.replace("_", ""))
    if found is None:
        import difflib

        close = difflib.get_close_matches(snake, ids, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"unknown Atari game {name!r}; {hint}ale-py has {len(ids)} games: {', '.join(ids)}")
    return found


def options(spec: EnvSpec) -> dict:
    """The spec's options merged over :data:`DEFAULTS`, typed and checked."""
    unknown = sorted(set(spec.options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown atari option(s) {unknown}; expected any of {', '.join(DEFAULTS)}")
    opts = {**DEFAULTS, **spec.options}
    for k, v in DEFAULTS.items():
        if isinstance(v, bool) and not isinstance(opts[k], bool):
            raise ValueError(f"atari option {k}={opts[k]!r}; expected true or false")
    for k in ("noop_max", "frame_skip", "size", "frame_stack", "max_frames", "num_levels", "start_level"):
        lo = 0 if k in ("noop_max", "num_levels", "start_level") else 1
        if not isinstance(opts[k], int) or isinstance(opts[k], bool) or opts[k] < lo:
            raise ValueError(f"atari option {k}={opts[k]!r}; expected an integer >= {lo}")
    if not isinstance(opts["sticky"], (int, float)) or not 0 <= opts["sticky"] < 1:
        raise ValueError(f"atari option sticky={opts['sticky']!r}; expected a probability in [0, 1)")
    return opts


def preprocess(screen: np.ndarray, size: int, grey: bool) -> np.ndarray:
    """One RGB screen ``(210, 160, 3)`` -> ``(size, size, 1|3)`` uint8 as SB3's WarpFrame makes it."""
    import cv2

    if grey:
        screen = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
    out = cv2.resize(screen, (size, size), interpolation=cv2.INTER_AREA)
    return out[..., None] if grey else out  # (size, size, C)


class AtariVecEnv(VecEnv):
    def __init__(self, spec: EnvSpec, num_envs: int = 1, seed: int | None = None):
        self.rom = rom_id(spec.name)
        self.opts = opts = options(spec)
        self.spec, self.num_envs = spec, num_envs
        self.games = [_Game(self.rom, opts) for _ in range(num_envs)]
        names = [a.name for a in self.games[0].actions]
        self.action_names = names
        self.action_space = spaces.Discrete(len(names))
        self.fire = bool(opts["fire_reset"]) and len(names) >= 3 and names[1] == "FIRE"
        self.channels = 1 if opts["grey"] else 3
        size = int(opts["size"])
        self.observation_space = spaces.Box(0, 255, (size, size, self.channels * opts["frame_stack"]), np.uint8)
        self.truth = None
        if opts["ground_truth"] or opts["invisible"]:
            from .atari_truth import Truth

            self.truth = Truth(self.rom, opts, num_envs, required=True)
        self._tracker = EpisodeTracker(num_envs)
        self.reset(seed)

    # --- one env ------------------------------------------------------------------------------------
    def _frame(self, g: _Game, a: int) -> float:
        """One emulator frame with action index ``a`` (sticky: the previous action again with p = sticky)."""
        if self.opts["sticky"] > 0 and g.rng.random() < self.opts["sticky"]:
            a = g.last_action
        g.last_action = a
        g.step_actions.append(g.actions[a])
        reward = float(g.ale.act(g.actions[a]))
        g.rams.append(g.ale.getRAM())
        return reward

    def _skip(self, i: int, a: int) -> tuple:
        """One agent step: ``frame_skip`` frames of action ``a``; returns ``(reward, frame (size, size, C))``."""
        g, opts = self.games[i], self.opts
        skip, reward = int(opts["frame_skip"]), 0.0
        pooled: list[np.ndarray] = []
        g.rams, g.step_actions = g.rams[-1:], []
        if opts["max_pool"] and skip == 1:
            pooled.append(g.last_screen)
        for k in range(skip):
            reward += self._frame(g, a)
            if k >= skip - 2 or g.ale.game_over():
                pooled.append(self._screen(i))
            if g.ale.game_over():
                break
        g.last_screen = pooled[-1]
        g.screen = g.ale.getScreenRGB() if self.truth is not None and self.truth.invisible else pooled[-1]
        screen = np.maximum(pooled[-2], pooled[-1]) if opts["max_pool"] and len(pooled) > 1 else pooled[-1]
        return reward, preprocess(screen, int(opts["size"]), bool(opts["grey"]))

    def _screen(self, i: int) -> np.ndarray:
        """The current RGB screen ``(210, 160, 3)``, with the ``invisible`` objects painted over."""
        g = self.games[i]
        screen = g.ale.getScreenRGB()
        if self.truth is not None and self.truth.invisible:
            screen = self.truth.hide(i, self.truth.shown_rams(g.rams, 1)[-1] if len(g.rams) > self.truth.lag
                                     else g.rams[0], screen)
        return screen

    def _push(self, g: _Game, frame: np.ndarray, fill: bool = False) -> np.ndarray:
        if fill:  # every game starts with a filled stack
            g.stack = np.concatenate([frame] * int(self.opts["frame_stack"]), axis=-1)
        else:
            g.stack = np.concatenate([g.stack[..., self.channels:], frame], axis=-1)
        return g.stack

    def _start(self, i: int, new_game: bool) -> np.ndarray:
        """Begin an episode: a new game (no-ops, fire) or, under ``episodic_life``, the next life (one NOOP step
        and the fire reset, as EpisodicLifeEnv and FireResetEnv do). Returns the first observation."""
        g = self.games[i]
        if new_game:
            n = int(self.opts["num_levels"])
            g.level_seed = int(self.opts["start_level"]) + int(self._rngs[i].integers(n)) if n \
                else int(self._rngs[i].integers(2**31 - 1))
            g.rng = np.random.default_rng(g.level_seed)
            g.last_action, g.score, g.length = 0, 0.0, 0
            g.ale.reset_game()
            g.rams = [g.ale.getRAM()]
            if self.truth is not None:
                self.truth.new_episode(i)
            for _ in range(int(g.rng.integers(1, self.opts["noop_max"] + 1)) if self.opts["noop_max"] else 0):
                self._frame(g, 0)
                if g.ale.game_over():
                    g.ale.reset_game()
            g.last_screen = self._screen(i)
            g.screen = g.ale.getScreenRGB()
            frame = preprocess(g.last_screen, int(self.opts["size"]), bool(self.opts["grey"]))
        else:
            frame = self._skip(i, 0)[1]
        for a in ((1, 2) if self.fire else ()):
            if g.ale.game_over():
                break
            frame = self._skip(i, a)[1]
        g.lives = g.ale.lives()
        return self._push(g, frame, fill=True)

    # --- the vector interface ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        self._rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(self.num_envs)]
        self._tracker = EpisodeTracker(self.num_envs)
        return np.stack([self._start(i, True).copy() for i in range(self.num_envs)])

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_envs)
        n = self.num_envs
        obs, rewards, dones = [], np.zeros(n, np.float32), np.zeros(n, bool)
        causes, ended_seeds, info = [None] * n, [g.level_seed for g in self.games], [{} for _ in range(n)]
        scores = np.zeros(n, np.float32)
        for i, g in enumerate(self.games):
            a = int(actions[i])
            if not 0 <= a < len(g.actions):
                raise ValueError(f"action {a} for env {i}; {self.rom} has actions 0..{len(g.actions) - 1}")
            causes_of = self.truth.causes if self.truth is not None else None
            if causes_of is not None:
                causes_of.before_step(i, g.ale)
            reward, frame = self._skip(i, a)
            g.score, g.length, scores[i] = g.score + reward, g.length + 1, reward
            rewards[i] = np.sign(reward) if self.opts["clip_reward"] else reward
            game_over, truncated = g.ale.game_over(), g.ale.game_truncated()
            lives = g.ale.lives()
            life_lost = lives < g.lives
            g.lives = lives
            event, end = causes_of.after_step(i, g, reward, life_lost, game_over and not truncated) \
                if causes_of is not None else (None, None)
            if event is not None:
                info[i]["life"] = event
            game_over = game_over or (life_lost and self.opts["one_life"])
            if game_over or (life_lost and self.opts["episodic_life"]):
                dones[i] = True
                causes[i] = "timeout" if truncated else end or (event or {}).get("cause") or "other"
                if game_over:
                    info[i]["game"] = {"return": g.score, "length": g.length}
                obs.append(self._start(i, new_game=game_over).copy())
            else:
                obs.append(self._push(g, frame).copy())
        for i, g in enumerate(self.games):
            info[i]["level_seed"] = g.level_seed
        self._tracker.update(scores, dones, info, causes, ended_seeds)
        return np.stack(obs), rewards, dones, info

    def observe(self) -> np.ndarray:
        return np.stack([g.stack.copy() for g in self.games])

    def render(self) -> np.ndarray:
        """The current step's last emulator frame as the game draws it, ``(N, 210, 160, 3)`` uint8 RGB: full
        resolution and colour, not max-pooled, with the ``invisible`` objects shown (the agent does not see them)."""
        return np.stack([g.screen for g in self.games])

    # --- state ------------------------------------------------------------------------------------------
    def get_state(self) -> list:
        """Per env, bytes: ALE's ``cloneState`` (emulator, RAM, frame counters) and the wrapper's own state
        (level seed, lives, the episode's generator, the seed generator, frame stack, last screens)."""
        out = []
        for i, g in enumerate(self.games):
            head = {"rom": self.rom, "level_seed": g.level_seed, "lives": g.lives, "last_action": g.last_action,
                    "score": g.score, "length": g.length, "rng": g.rng.bit_generator.state,
                    "seeds": self._rngs[i].bit_generator.state,
                    "truth": self.truth.state(i) if self.truth is not None else None}
            ale = g.ale.cloneState(include_rng=True).serialize()
            arrays = [g.stack, g.last_screen, np.stack(g.rams[-3:]), g.screen]
            blobs = [json.dumps(head).encode(), ale] + [np.ascontiguousarray(x).tobytes() for x in arrays]
            body = b"".join(struct.pack("<I", len(b)) + b for b in blobs)
            out.append(_MAGIC + zlib.compress(body, 1))
        return out

    def set_state(self, states: list) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"set_state got {len(states)} states for {self.num_envs} envs")
        ale_py = _ale()
        for i, raw in enumerate(states):
            g = self.games[i]
            try:
                if not bytes(raw[:len(_MAGIC)]) == _MAGIC:
                    raise ValueError("it does not start with the Atari state marker")
                body, blobs, off = zlib.decompress(bytes(raw[len(_MAGIC):])), [], 0
                while off < len(body):
                    (n,) = struct.unpack_from("<I", body, off)
                    blobs.append(body[off + 4:off + 4 + n])
                    off += 4 + n
                head = json.loads(blobs[0])
                if head["rom"] != self.rom:
                    raise ValueError(f"it is a state of {head['rom']!r}, this env plays {self.rom!r}")
                g.ale.restoreState(ale_py.ALEState(blobs[1]))
                g.stack = np.frombuffer(blobs[2], np.uint8).reshape(self.observation_space.shape).copy()
                g.last_screen = np.frombuffer(blobs[3], np.uint8).reshape(210, 160, 3).copy()
                g.rams = list(np.frombuffer(blobs[4], np.uint8).reshape(-1, 128).copy())
                g.screen = np.frombuffer(blobs[5], np.uint8).reshape(210, 160, 3).copy() if len(blobs) > 5 \
                    else g.last_screen
            except (ValueError, KeyError, TypeError, IndexError, zlib.error, struct.error) as e:
                raise ValueError(f"not an Atari env state of {self.rom} (env {i}): {e}") from None
            g.level_seed, g.lives, g.last_action = head["level_seed"], head["lives"], head["last_action"]
            g.score, g.length = head["score"], head["length"]
            g.rng.bit_generator.state = head["rng"]
            self._rngs[i].bit_generator.state = head["seeds"]
            if self.truth is not None:
                self.truth.load(i, head["truth"])

    def entities(self) -> list | None:
        """Per env, the objects the observation shows, from RAM through OCAtari (:meth:`.atari_truth.Truth.entities`:
        ``type``, ``id``, ``box`` and ``pooled`` boxes in observation pixels); None where OCAtari does not cover
        the game."""
        truth = self._ground_truth()
        if truth is None:
            return None
        pooled = 2 if self.opts["max_pool"] else 1
        return [truth.entities(g.rams, pooled) for g in self.games]

    def _ground_truth(self):
        """The env's :class:`~.atari_truth.Truth`, made on first use; None where OCAtari does not cover the game
        (:func:`~.atari_truth.unavailable` says why)."""
        if self.truth is None and not getattr(self, "_no_truth", False):
            from .atari_truth import Truth

            truth = Truth(self.rom, {**self.opts, "ground_truth": False, "invisible": ""}, self.num_envs, False)
            if truth.available:
                self.truth = truth
            self._no_truth = not truth.available
        return self.truth
