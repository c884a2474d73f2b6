"""What a decision transformer reads: one or more K-step windows, as a small dataclass.

Every analysis takes :class:`DTInputs` (or anything :func:`as_inputs` turns into one: a
:class:`~policylens.dt.data.Batch` or the tuple ``(states, actions, rtgs, timesteps[, mask])``).
:func:`inputs_from_env_state` builds the window of one live step from the views, RTGs and actions so far.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import torch


@dataclass
class DTInputs:
    """Windows for ``model(states, actions, rtgs, timesteps, mask)``.

    ``states`` (B, K, H, W, 3) symbolic views; ``actions`` (B, K - 1) (or (B, K), last column ignored);
    ``rtgs`` (B, K); ``timesteps`` (B, K) episode steps; ``mask`` (B, K) bool, False on left padding, or None.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rtgs: torch.Tensor
    timesteps: torch.Tensor
    mask: Optional[torch.Tensor] = None

    def __post_init__(self):
        self.states, self.actions, self.rtgs, self.timesteps = (
            torch.as_tensor(x) for x in (self.states, self.actions, self.rtgs, self.timesteps))
        if self.mask is not None:
            self.mask = torch.as_tensor(self.mask).bool()
        if self.states.dim() != 5:
            raise ValueError(f"DTInputs.states of shape {tuple(self.states.shape)}; expected (B, K, H, W, 3) "
                             "windows of symbolic views")

    @property
    def batch_size(self) -> int:
        return int(self.states.shape[0])

    @property
    def context(self) -> int:
        """Timesteps K in each window."""
        return int(self.states.shape[1])

    @property
    def seq_len(self) -> int:
        """Tokens in each window: 3K - 1."""
        return 3 * self.context - 1

    def args(self) -> tuple:
        """``(states, actions, rtgs, timesteps, mask)`` for the model's forward."""
        return self.states, self.actions, self.rtgs, self.timesteps, self.mask

    def _apply(self, f: Callable[[torch.Tensor], torch.Tensor]) -> "DTInputs":
        """``f`` of every field (of the mask too, where there is one)."""
        return DTInputs(f(self.states), f(self.actions), f(self.rtgs), f(self.timesteps),
                        None if self.mask is None else f(self.mask))

    def to(self, device) -> "DTInputs":
        return self._apply(lambda x: x.to(device))

    def select(self, rows) -> "DTInputs":
        """The windows at ``rows`` (an int keeps a batch of one)."""
        rows = [rows] if isinstance(rows, int) else rows
        return self._apply(lambda x: x[rows])

    def repeat(self, n: int) -> "DTInputs":
        """Each window ``n`` times in a row: (B * n, ...)."""
        return self._apply(lambda x: x.repeat_interleave(n, 0))

    def with_rtg(self, values) -> "DTInputs":
        """One window (B = 1) repeated for each RTG in ``values`` (R,): the last step's RTG becomes the value and
        earlier steps keep their differences to it (the rewards between them), so states stay fixed. (R, ...)."""
        if self.batch_size != 1:
            raise ValueError(f"with_rtg varies the RTG of one window; got a batch of {self.batch_size}")
        values = torch.as_tensor(np.asarray(values, np.float32)).reshape(-1)  # (R,)
        shifted = self.rtgs.float() - self.rtgs.float()[:, -1:] + values[:, None]  # (R, K)
        return replace(self.repeat(len(values)), rtgs=shifted)


def as_inputs(x) -> DTInputs:
    """:class:`DTInputs`, a :class:`~policylens.dt.data.Batch` or a tuple ``(states, actions, rtgs, timesteps[,
    mask])`` -> :class:`DTInputs`."""
    if isinstance(x, DTInputs):
        return x
    if all(hasattr(x, f) for f in ("states", "actions", "rtgs", "timesteps")):
        return DTInputs(x.states, x.actions, x.rtgs, x.timesteps, getattr(x, "mask", None))
    if isinstance(x, (tuple, list)) and len(x) in (4, 5):
        return DTInputs(*x)
    raise ValueError(f"cannot read decision-transformer inputs from {type(x).__name__}; expected DTInputs, a "
                     "dt.data.Batch or (states, actions, rtgs, timesteps[, mask])")


def inputs_from_env_state(model, observations, rtgs, actions=(), *, step: "int | None" = None) -> DTInputs:
    """The window for the model's next action in a live episode (batch of one).

    ``observations`` (T, H, W, 3) the symbolic views so far, the current one last (or one view (H, W, 3));
    ``rtgs`` (T,) the RTG fed at each of those steps (a float when T = 1); ``actions`` (T - 1,) the actions
    taken after each view but the last; ``step`` the episode step of the current view (default T - 1).
    Keeps the last ``min(T, context)`` steps. Warns when the current RTG lies outside the training data's.
    """
    from ..play import check_target

    obs = np.asarray(observations)
    obs = obs[None] if obs.ndim == 3 else obs  # (T, H, W, 3)
    if obs.ndim != 4 or obs.shape[-1] != 3:
        raise ValueError(f"observations of shape {obs.shape}; expected (T, H, W, 3) symbolic views")
    t = len(obs)
    rtg = np.broadcast_to(np.asarray(rtgs, np.float32), (t,)) if np.ndim(rtgs) == 0 else np.asarray(rtgs, np.float32)
    act = np.asarray(actions, np.int64).reshape(-1)
    if rtg.shape != (t,) or act.shape != (t - 1,):
        raise ValueError(f"{t} observation(s) need {t} RTGs and {t - 1} actions; got {rtg.shape[0]} RTGs and "
                         f"{act.shape[0]} actions")
    step = t - 1 if step is None else int(step)
    if step < t - 1:
        raise ValueError(f"step {step} is before the {t} observations given could have happened")
    k = min(t, model.config.context)
    check_target(model, float(rtg[-1]))
    window = DTInputs(states=torch.as_tensor(obs[-k:][None].astype(np.uint8)),
                      actions=torch.as_tensor(np.append(act, 0)[-k:][None]),
                      rtgs=torch.as_tensor(rtg[-k:][None].copy()),
                      timesteps=torch.arange(step - k + 1, step + 1)[None])
    return window.to(next(model.parameters()).device)
