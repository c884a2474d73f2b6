"""Weight initialisation for training from scratch.

``orthogonal`` is CleanRL's (and OpenAI baselines'): every conv and linear layer orthogonal with gain sqrt(2),
the policy head with gain 0.01 (near-uniform first actions), the value head with gain 1, biases zero; a GRU's
weights orthogonal with gain 1, biases zero. ``heads``: torch's default init but for those two heads (CleanRL's
``ppo_procgen``). ``default``: torch's own init everywhere.
"""
from __future__ import annotations

import math
from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def _orthogonal(layer: nn.Linear | nn.Conv2d, gain: float) -> None:
    nn.init.orthogonal_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def init_weights(agent: M, scheme: str) -> M:
    """Initialise ``agent`` in place by ``scheme`` (orthogonal | heads | default); returns it."""
    if scheme == "default":
        return agent
    if scheme not in ("orthogonal", "heads"):
        raise ValueError(f"init {scheme!r}: expected orthogonal, heads or default")
    if scheme == "orthogonal":
        for module in agent.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                _orthogonal(module, math.sqrt(2))
            elif isinstance(module, (nn.GRUCell, nn.GRU, nn.LSTMCell, nn.LSTM)):
                for name, p in module.named_parameters():
                    (nn.init.orthogonal_(p, 1.0) if "weight" in name else nn.init.zeros_(p))
    for name, gain in (("pi", 0.01), ("v", 1.0)):
        head = getattr(agent, name, None)
        if isinstance(head, nn.Linear):
            _orthogonal(head, gain)
    return agent
