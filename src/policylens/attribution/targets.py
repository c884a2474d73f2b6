"""What an attribution explains: a scalar per observation read from the agent's output.

``resolve_target(target, agent)`` turns any accepted form into a :class:`Target` (a function
``AgentOutput -> (B,)`` plus a readable name for metadata):

- ``"value"``: the value head;
- an action index ``3`` or ``"action:NAME"`` (``NAME`` from ``agent.action_names``, or a number): that logit;
- a logit difference ``"action:A-action:B"`` or a pair ``(a, b)`` (each an index or a name);
- any callable ``f(AgentOutput) -> (B,)``;
- :func:`own_actions` ``(actions)``: each observation's own action's logit (e.g. the action it took), a
  :class:`PerObservation` target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

FORMS = ("target must be 'value', an action index, 'action:NAME', a logit difference 'action:A-action:B' or "
         "(a, b), or a callable f(AgentOutput) -> (N,)")


@dataclass(frozen=True)
class Target:
    fn: Callable  # AgentOutput -> (B,)
    name: str  # e.g. "value", "action:left", "action:left-action:right", "callable:f"

    def __call__(self, out) -> torch.Tensor:
        return self.fn(out)


@dataclass(frozen=True)
class PerObservation(Target):
    """A target read differently for each observation: ``fn(out, n) -> (B,)``, ``n`` (B,) the index of the
    observation each row of ``out`` belongs to (attribution lays several rows per observation)."""

    def __call__(self, out, n=None) -> torch.Tensor:
        if n is None:
            n = torch.arange(out.logits.shape[0], device=out.logits.device)
        return self.fn(out, n)


def own_actions(actions, name: str = "action taken") -> PerObservation:
    """The logit of each observation's own action ``actions`` ``(N,)`` (indices), as one target."""
    actions = torch.as_tensor(actions, dtype=torch.long).reshape(-1)  # (N,)

    def logit(out, n):
        return out.logits.gather(1, actions.to(out.logits.device)[n][:, None])[:, 0]  # (B,)

    return PerObservation(logit, name)


def _action_names(agent) -> list:
    return [str(a) for a in (getattr(agent, "action_names", None) or [])]


def action_index(agent, action) -> int:
    """An action given by index or name -> its logit index; errors name the valid actions."""
    names = _action_names(agent)
    num = getattr(agent, "num_actions", None) or (len(names) or None)
    listing = f"actions: {', '.join(names)}" if names else f"actions are indices 0..{num - 1}" if num else ""
    if isinstance(action, str) and not action.strip().lstrip("-").isdigit():
        if action not in names:
            why = "the agent has no action_names; give an index" if not names else listing
            raise ValueError(f"no action {action!r}; {why}")
        return names.index(action)
    if isinstance(action, bool) or not isinstance(action, (int, str)) and not hasattr(action, "__index__"):
        raise ValueError(f"an action must be an index or a name, got {action!r}; {FORMS}")
    index = int(action)
    if index < 0 or (num is not None and index >= num):
        raise ValueError(f"no action {index}; {listing or 'index must be >= 0'}")
    return index


def _logit(index: int):
    return lambda out: out.logits[:, index]  # (B,)


def _logit_difference(a: int, b: int):
    return lambda out: out.logits[:, a] - out.logits[:, b]  # (B,)


def _label(agent, index: int) -> str:
    names = _action_names(agent)
    return f"action:{names[index]}" if index < len(names) else f"action:{index}"


def resolve_target(target, agent) -> Target:
    """Any accepted target form -> a :class:`Target`; a clear ValueError for anything else."""
    if isinstance(target, Target):
        return target
    if callable(target):
        return Target(target, f"callable:{getattr(target, '__name__', type(target).__name__)}")
    if isinstance(target, str):
        if target == "value":
            return Target(lambda out: out.value, "value")
        if target.startswith("action:"):
            body = target[len("action:"):]
            if "-action:" in body:
                first, second = body.split("-action:", 1)
                return resolve_target((first, second), agent)
            index = action_index(agent, body)
            return Target(_logit(index), _label(agent, index))
        raise ValueError(f"unknown target {target!r}; {FORMS}")
    if isinstance(target, (tuple, list)) and len(target) == 2:
        a, b = (action_index(agent, x) for x in target)
        return Target(_logit_difference(a, b), f"{_label(agent, a)}-{_label(agent, b)}")
    if hasattr(target, "__index__") and not isinstance(target, bool):  # int, numpy or 0-d torch integer
        index = action_index(agent, target)
        return Target(_logit(index), _label(agent, index))
    raise ValueError(f"unknown target {target!r}; {FORMS}")
