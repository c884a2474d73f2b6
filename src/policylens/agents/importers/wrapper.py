"""Any torch policy as a policylens agent, through a small adapter: :func:`wrap`.

    >>> import torch
    >>> from torch import nn
    >>> from policylens.agents import wrap
    >>> from policylens.attribution import attribute
    >>> class Net(nn.Module):                         # someone's policy: NCHW floats in [0, 1], (logits, value) out
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU())
    ...         self.policy, self.value = nn.Linear(32, 5), nn.Linear(32, 1)
    ...     def forward(self, x):
    ...         h = self.body(x)
    ...         return self.policy(h), self.value(h)
    >>> agent = wrap(Net(), obs_shape=(8, 8, 3), num_actions=5, layout="nchw", scale=1 / 255,
    ...              layers={"body.1": "(B, 8, 6, 6) post-ReLU", "body.4": "(B, 32) post-ReLU"})
    >>> obs = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)   # as the env gives them
    >>> out = agent(obs)
    >>> out.logits.shape, out.value.shape
    (torch.Size([4, 5]), torch.Size([4]))
    >>> attribute(agent, obs, target="value", layer="policy.body.1").shape
    torch.Size([4, 8, 6, 6])

The wrapped module is ``agent.policy``, so its layers are ``policy.NAME``; ``layers`` documents the ones worth
looking at (``policylens layers`` and the explorer list them, with ``pi`` and ``v``, the logits and value
as hook points). Feed-forward policies only (no recurrent state). A wrapped agent lives in Python (attribution,
factors, feature visualisation, editing with ``project_out``); the ``policylens`` commands read saved runs,
which hold safe weights and a JSON config, not code: bring SB3 and CleanRL agents with ``policylens import``.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

from torch import nn

from ..base import AgentOutput

LAYOUTS = ("nhwc", "nchw", "flat")


def _pair(out):
    logits, value = out[0], out[1]
    return logits, value


def _q_values(out):
    return out, out.max(dim=-1).values


OUTPUTS = {"pair": _pair, "q": _q_values}


class Wrapped(nn.Module):
    """A foreign policy behind the agent interface: ``agent(obs) -> AgentOutput(logits, value, None)``."""

    def __init__(self, module: nn.Module, obs_shape, num_actions: int, layout: str, scale: float,
                 outputs: Callable, layers: dict):
        super().__init__()
        self.policy, self.obs_shape, self.num_actions = module, tuple(obs_shape), int(num_actions)
        self.layout, self.obs_scale, self.outputs = layout, float(scale), outputs
        self.pi, self.v = nn.Identity(), nn.Identity()  # hook points: (B, A) logits, (B, 1) value
        self.LAYERS = {f"policy.{name}": doc for name, doc in layers.items()}
        self.recurrent = False

    def initial_state(self, batch_size: int):
        return None

    def forward(self, obs, state=None, first=None) -> AgentOutput:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"observation shape {tuple(obs.shape[1:])} does not match the wrapped agent's "
                             f"{self.obs_shape} (as the env gives them)")
        x = obs.float() * self.obs_scale
        if self.layout == "nchw" and x.dim() == 4:
            x = x.permute(0, 3, 1, 2)  # (B, C, H, W)
        elif self.layout == "flat":
            x = x.flatten(1)  # (B, D)
        logits, value = self.outputs(self.policy(x))
        logits = self.pi(logits)  # (B, A)
        if logits.shape[1:] != (self.num_actions,):
            raise ValueError(f"the adapter gave logits of shape {tuple(logits.shape)}, expected (B, {self.num_actions})")
        value = self.v(value.reshape(-1, 1))  # (B, 1)
        return AgentOutput(logits, value[:, 0], None)


def wrap(module: nn.Module, *, obs_shape, num_actions: int, layout: str = "nhwc", scale: float = 1.0,
         outputs: Union[str, Callable] = "pair", layers: Optional[dict] = None) -> Wrapped:
    """``module`` as a policylens agent (see the module doc for an example).

    ``obs_shape``: one observation as the env gives it, ``(H, W, C)`` or ``(D,)``; ``layout``: what the module
    takes, ``nhwc`` (as given), ``nchw`` (images permuted channel-first) or ``flat`` (flattened); ``scale``:
    the factor from the env's observations to the module's input (1/255 for uint8 frames into [0, 1]);
    ``outputs``: ``"pair"`` (the module returns ``(logits, value)``), ``"q"`` (it returns Q-values: logits of
    the greedy policy, value their maximum) or a function ``output -> (logits (B, A), value (B,) or (B, 1))``;
    ``layers``: ``{module name: shape doc}`` of the module's layers worth analysing.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if isinstance(outputs, str):
        if outputs not in OUTPUTS:
            raise ValueError(f"outputs {outputs!r}: expected one of {', '.join(OUTPUTS)} or a function")
        outputs = OUTPUTS[outputs]
    names = dict(module.named_modules())
    unknown = sorted(set(layers or {}) - set(names))
    if unknown:
        raise KeyError(f"the module has no layer {', '.join(map(repr, unknown))}; its layers: "
                       f"{', '.join(n for n in names if n)}")
    return Wrapped(module, obs_shape, num_actions, layout, scale, outputs, dict(layers or {}))
