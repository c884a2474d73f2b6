"""One game of MiniGrid played by a person or by the decision transformer, with the model's analysis of every
step: the state behind ``policylens dt app``.

Level ``L`` is MiniGrid's reset seed ``L``; obstacles move with the env's own generator, seeded by the level, so
the same level and the same actions replay the same game. The RTG fed at step t is the target minus the rewards
received so far, as in :func:`policylens.dt.play.play`. When an episode ends its outcome (cause from the game's
state) joins the history and the next level starts.
"""
from __future__ import annotations

import json
import threading
import time
import warnings

import numpy as np

from ...envs import make, parse_spec
from ..analysis.inputs import inputs_from_env_state
from ..data import symbolic_env
from .analysis import step_analysis

POLICIES = ("greedy", "sample")


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
        self.env = make(parse_spec(self.spec), 1, seed=seed)
        self.names = list(model.action_names)
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.target_rtg, self.ablation, self.mode, self.preference = float(target_rtg), [], "zero", None
        self.outcomes, self.last = [], None
        self._start(int(level))

    # ------------------------------------------------------------------------------------------ game
    def _start(self, level: int) -> None:
        """A new episode on ``level`` (MiniGrid reset seed), through the env's own state interface."""
        state = json.loads(self.env.get_state()[0])
        state.update(level_seed=level, actions=[])
        self.env.set_state([json.dumps(state).encode()])
        self.level, self.t, self.received = level, 0, 0.0
        self.views = [self.env.observe()[0]]  # the last `context` symbolic views, (7, 7, 3) each
        self.rtgs, self.actions = [self.target_rtg], []
        self._analyse()

    def _window(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            window = inputs_from_env_state(self.model, np.stack(self.views), self.rtgs, self.actions, step=self.t)
        self.note = str(caught[0].message) if caught else ""
        return window

    def _analyse(self) -> None:
        self.analysis = step_analysis(self.model, self._window(), ablation=self.ablation, mode=self.mode,
                                      means=self.means, preference=self.preference)

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
            self.received += float(reward[0])
            self.last = {"t": self.t, "action": self.names[a], "by": "model" if action is None else "you",
                         "reward": float(reward[0]), "done": bool(done[0])}
            if done[0]:
                episode = info[0]["episode"]
                outcome = {"level": self.level, "cause": episode["cause"], "return": round(float(episode["return"]), 4),
                           "length": int(episode["length"]), "target_rtg": self.target_rtg}
                self.last.update(cause=outcome["cause"], outcome=outcome)
                self.outcomes = ([outcome] + self.outcomes)[:self.history_size]
                self._start(self.level + 1)
            else:
                context = self.model.config.context
                self.t += 1
                self.views = (self.views + [obs[0]])[-context:]
                self.actions = (self.actions + [a])[-(context - 1):] if context > 1 else []
                self.rtgs = (self.rtgs + [self.target_rtg - self.received])[-context:]
                self._analyse()
            return self._view(start)

    def reset(self, level: "int | None" = None) -> dict:
        """Restart the current level, or start ``level``."""
        with self.lock:
            start = time.perf_counter()
            if level is not None and (not isinstance(level, int) or isinstance(level, bool) or level < 0):
                raise ValueError(f"level {level!r}; expected a non-negative integer (a MiniGrid reset seed)")
            self.last = None
            self._start(self.level if level is None else level)
            return self._view(start)

    def configure(self, *, rtg=None, ablation=None, mode=None, preference=None) -> dict:
        """Change the target RTG (this episode's RTGs shift with it), the ablated components and mode, or the
        preference pair the contributions split (``None`` leaves a setting; ``preference=[]`` goes back to the
        model's top two actions). Bad values raise ValueError/KeyError and change nothing."""
        from ..analysis.ablation import resolve_all

        with self.lock:
            start = time.perf_counter()
            new_rtg = self.target_rtg if rtg is None else _number(rtg, "rtg")
            new_ablation = self.ablation if ablation is None else [str(c) for c in ablation]
            new_mode = self.mode if mode is None else str(mode)
            if new_mode not in ("zero", "mean"):
                raise ValueError(f"ablation mode {new_mode!r}; expected 'zero' or 'mean'")
            if new_mode == "mean" and self.means is None:
                raise ValueError("mean ablation needs the means `policylens dt analyze RUN` saves "
                                 "(RUN/analysis/means.safetensors); this run has none, use zero ablation")
            resolve_all(self.model, new_ablation)  # KeyError listing the components when one is unknown
            new_pref = self.preference
            if preference is not None:
                new_pref = tuple(preference) or None
                if new_pref is not None and (len(new_pref) != 2 or any(p not in self.names for p in new_pref)):
                    raise ValueError(f"preference {list(preference)!r}; expected two of {self.names}")
            shift = new_rtg - self.target_rtg
            self.target_rtg, self.ablation, self.mode, self.preference = new_rtg, new_ablation, new_mode, new_pref
            self.rtgs = [r + shift for r in self.rtgs]
            self._analyse()
            return self._view(start)

    def view(self) -> dict:
        with self.lock:
            return self._view(time.perf_counter())

    # ------------------------------------------------------------------------------------------ answer
    def _view(self, start: float) -> dict:
        env = self.env.envs[0]
        grid = env.grid.encode()  # (W, H, 3) object, colour, state per cell
        return {"level": self.level, "t": self.t, "target_rtg": self.target_rtg, "rtg": self.rtgs[-1],
                "received": self.received, "grid": grid.tolist(),
                "agent": {"x": int(env.agent_pos[0]), "y": int(env.agent_pos[1]), "dir": int(env.agent_dir)},
                "view": self.views[-1].tolist(), "last": self.last, "outcomes": self.outcomes, "note": self.note,
                "policy_mode": self.policy, "analysis": self.analysis,
                "ms": round(1000 * (time.perf_counter() - start), 2)}

    def describe(self) -> dict:
        """What the page needs once: the model, the env, the actions, the components, the code tables."""
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

        c = self.model.config
        return {"env": self.spec, "action_names": self.names, "rtg_range": list(getattr(self.model, "rtg_range", (-1, 1))),
                "model": {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model, "context": c.context,
                          "state_embedding": c.state_embedding, "layer_norm": c.layer_norm},
                "components": self.analysis["ablation"]["available"], "mean_ablation": self.means is not None,
                "objects": {str(i): n for n, i in OBJECT_TO_IDX.items()},
                "colours": {str(i): n for n, i in COLOR_TO_IDX.items()}}


def _number(x, what: str) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {x!r}; expected a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{what} {x!r}; expected a finite number")
    return value
