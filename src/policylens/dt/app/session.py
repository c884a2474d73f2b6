"""One game of MiniGrid played by a person or by the decision transformer, with the model's analysis of every
step: the state behind ``policylens dt app``.

Level ``L`` is MiniGrid's reset seed ``L``; obstacles move with the env's own generator, seeded by the level, so
the same level and the same actions replay the same game. The RTG fed at step t is the target minus the rewards
received before t, as in :func:`policylens.dt.play.play`, computed afresh from the target and the rewards' exact
sum at every step (one subtraction, so changing the target back and forth leaves no rounding behind). When an
episode ends its outcome (cause from the game's state) joins the history and the next level starts.

Every change is checked first and made whole or not at all: a setting whose analysis would not be finite is
refused, so the session always has a view to show.
"""
from __future__ import annotations

import json
import math
import threading
import time
import warnings

import numpy as np

from ...envs import make_minigrid, parse_spec
from ..analysis.inputs import inputs_from_env_state
from ..data import symbolic_env
from .analysis import step_analysis

POLICIES = ("greedy", "sample")
MODES = ("zero", "mean")
MAX_LEVEL = 2**31 - 1  # MiniGrid reset seeds
RTG_LIMIT = 10.0  # targets beyond +-10 (MiniGrid returns lie in [-1, 1]) are refused


class AppSession:
    """The live game and the model's view of it; every public method is thread-safe and returns :meth:`view`.

    ``model`` a :class:`~policylens.dt.DecisionTransformer` with ``action_names`` (as :func:`~policylens.dt.load_dt`
    gives it); ``means`` the mean activations for mean ablation (``policylens dt analyze`` saves them) or None.
    """

    def __init__(self, model, env: "str | None" = None, *, level: int = 1_000_000, target_rtg: float = 0.9,
                 policy: str = "greedy", seed: int = 0, means: "dict | None" = None, history: int = 20):
        spec = env or getattr(model, "env", "")
        if not spec:
            raise ValueError("the model names no env to play; pass env='minigrid:...'")
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}; expected one of {POLICIES}")
        self.model, self.means, self.policy, self.history_size = model, means, policy, history
        self.spec = symbolic_env(spec)
        self.env = make_minigrid(parse_spec(self.spec), 1, seed=seed)
        self.names = list(model.action_names)
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.target_rtg, self.mode = _rtg(target_rtg), "zero"
        self.ablation: list = []  # the ablated components
        self.preference: tuple | None = None  # two action names, or None
        self.outcomes: list[dict] = []  # the latest episodes' outcomes, newest first
        self.last: dict | None = None  # the last step taken
        self._start(_level(level))

    # ------------------------------------------------------------------------------------------ game
    def _start(self, level: int) -> None:
        """A new episode on ``level`` (MiniGrid reset seed), through the env's own state interface."""
        state = json.loads(self.env.get_state()[0])
        state.update(level_seed=level, actions=[])
        self.env.set_state([json.dumps(state).encode()])
        self.level, self.t = level, 0
        self.rewards: list[float] = []
        self.views = [self.env.observe()[0]]  # the last `context` symbolic views, (7, 7, 3) each
        self.before = [0.0]  # per view of the window: the exact sum of the rewards received before it
        self.actions: list[int] = []
        self.analysis, self.note = self._analyse(self.target_rtg, self.ablation, self.mode, self.preference)

    @property
    def received(self) -> float:
        return math.fsum(self.rewards)

    def _window(self, target: float):
        rtgs = [target - before for before in self.before]  # (T,) target minus rewards so far, one subtraction
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            window = inputs_from_env_state(self.model, np.stack(self.views), rtgs, self.actions, step=self.t)
        return window, (str(caught[0].message) if caught else "")

    def _analyse(self, target: float, ablation, mode: str, preference) -> tuple:
        """``(analysis, note)`` of the current window under these settings; ValueError (changing nothing) when
        the analysis is not finite."""
        window, note = self._window(target)
        analysis = step_analysis(self.model, window, ablation=ablation, mode=mode, means=self.means,
                                 preference=preference)
        try:
            json.dumps(analysis, allow_nan=False)
        except ValueError:
            raise ValueError(f"the model's analysis at target RTG {target} is not finite (NaN or infinite); "
                             "choose a target nearer the training data's RTGs") from None
        return analysis, note

    def _action(self, action) -> int:
        if action is None:  # the model's choice, under the current ablation
            policy = self.analysis["policy"]
            if self.policy == "greedy":
                return policy["preferred"]
            probs = np.asarray(policy["probs"], np.float64)
            return int(self.rng.choice(len(probs), p=probs / probs.sum()))
        if isinstance(action, str) and action in self.names:
            return self.names.index(action)
        if isinstance(action, (int, np.integer)) and not isinstance(action, bool) and 0 <= action < len(self.names):
            return int(action)
        raise ValueError(f"action {action!r}; expected one of {self.names}, an index below {len(self.names)}, "
                         "or null for the model's choice")

    def act(self, action=None) -> dict:
        """Take ``action`` (a name, an index, or None: the model's choice) and analyse the new step."""
        with self.lock:
            start = time.perf_counter()
            a = self._action(action)
            obs, reward, done, info = self.env.step(np.array([a]))
            self.rewards.append(float(reward[0]))
            self.last = {"t": self.t, "action": self.names[a], "by": "model" if action is None else "you",
                         "reward": float(reward[0]), "done": bool(done[0])}
            if done[0]:
                episode = info[0]["episode"]
                outcome = {"level": self.level, "cause": episode["cause"], "return": round(float(episode["return"]), 4),
                           "length": int(episode["length"]), "target_rtg": self.target_rtg}
                self.last.update(cause=outcome["cause"], outcome=outcome)
                self.outcomes = ([outcome] + self.outcomes)[:self.history_size]
                self._start(self.level + 1 if self.level < MAX_LEVEL else 0)
            else:
                context = self.model.config.context
                self.t += 1
                self.views = (self.views + [obs[0]])[-context:]
                self.actions = (self.actions + [a])[-(context - 1):] if context > 1 else []
                self.before = (self.before + [self.received])[-context:]
                self.analysis, self.note = self._analyse(self.target_rtg, self.ablation, self.mode, self.preference)
            return self._view(start)

    def reset(self, level: "int | None" = None) -> dict:
        """Restart the current level, or start ``level``."""
        level = self.level if level is None else _level(level)
        with self.lock:
            start = time.perf_counter()
            self.last = None
            self._start(level)
            return self._view(start)

    def configure(self, *, rtg=None, ablation=None, mode=None, preference=None) -> dict:
        """Change the target RTG (this episode's RTGs follow it), the ablated components and mode, or the
        preference pair the contributions split (``None`` leaves a setting; ``preference=[]`` goes back to the
        model's top two actions). Bad values raise ValueError/KeyError and change nothing."""
        from ..analysis.ablation import resolve_all

        with self.lock:
            start = time.perf_counter()
            new_rtg = self.target_rtg if rtg is None else _rtg(rtg)
            if ablation is not None and (not isinstance(ablation, (list, tuple))
                                         or not all(isinstance(c, str) for c in ablation)):
                raise ValueError(f"ablation {ablation!r}: expected a list of component names")
            new_ablation = self.ablation if ablation is None else list(ablation)
            new_mode = self.mode if mode is None else mode
            if new_mode not in MODES:
                raise ValueError(f"ablation mode {new_mode!r}; expected 'zero' or 'mean'")
            if new_mode == "mean" and self.means is None:
                raise ValueError("mode 'mean': mean ablation needs the means `policylens dt analyze RUN` saves "
                                 "(RUN/analysis/means.safetensors); this run has none, use zero ablation")
            resolve_all(self.model, new_ablation)  # KeyError listing the components when one is unknown
            new_pref = self.preference
            if preference is not None:
                if not isinstance(preference, (list, tuple)):
                    raise ValueError(f"preference {preference!r}: expected two of {self.names}, or []")
                new_pref = tuple(preference) or None
                if new_pref is not None and (len(new_pref) != 2 or any(p not in self.names for p in new_pref)
                                             or new_pref[0] == new_pref[1]):
                    raise ValueError(f"preference {list(preference)!r}; expected two of {self.names}")
            self.analysis, self.note = self._analyse(new_rtg, new_ablation, new_mode, new_pref)  # raises: no change
            self.target_rtg, self.ablation, self.mode, self.preference = new_rtg, new_ablation, new_mode, new_pref
            return self._view(start)

    def view(self) -> dict:
        with self.lock:
            return self._view(time.perf_counter())

    # ------------------------------------------------------------------------------------------ answer
    def _view(self, start: float) -> dict:
        env = self.env.envs[0]
        grid = env.grid.encode()  # (W, H, 3) object, colour, state per cell
        return {"level": self.level, "t": self.t, "target_rtg": self.target_rtg,
                "rtg": self.target_rtg - self.before[-1], "received": self.received, "grid": grid.tolist(),
                "agent": {"x": int(env.agent_pos[0]), "y": int(env.agent_pos[1]), "dir": int(env.agent_dir)},
                "view": self.views[-1].tolist(), "last": self.last, "outcomes": self.outcomes, "note": self.note,
                "policy_mode": self.policy, "analysis": self.analysis,
                "ms": round(1000 * (time.perf_counter() - start), 2)}

    def describe(self) -> dict:
        """What the page needs once: the model, the env, the actions, the components, the code tables."""
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

        c = self.model.config
        return {"env": self.spec, "action_names": self.names, "rtg_range": list(getattr(self.model, "rtg_range", (-1, 1))),
                "rtg_limit": RTG_LIMIT,
                "model": {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model, "context": c.context,
                          "state_embedding": c.state_embedding, "layer_norm": c.layer_norm},
                "components": self.analysis["ablation"]["available"], "mean_ablation": self.means is not None,
                "objects": {str(i): n for n, i in OBJECT_TO_IDX.items()},
                "colours": {str(i): n for n, i in COLOR_TO_IDX.items()}}


def _rtg(x) -> float:
    """A target RTG: a finite number (not a bool, not a string) within +-RTG_LIMIT."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"rtg {x!r}: expected a number in [{-RTG_LIMIT}, {RTG_LIMIT}]")
    value = float(x)
    if not (math.isfinite(value) and -RTG_LIMIT <= value <= RTG_LIMIT):
        raise ValueError(f"rtg {x!r}: expected a finite number in [{-RTG_LIMIT}, {RTG_LIMIT}]")
    return value


def _level(x) -> int:
    """A level: a MiniGrid reset seed, an integer in [0, MAX_LEVEL]."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= x <= MAX_LEVEL:
        raise ValueError(f"level {x!r}: expected a non-negative integer (a MiniGrid reset seed) up to {MAX_LEVEL}")
    return int(x)
