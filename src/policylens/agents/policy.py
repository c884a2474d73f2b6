"""Turning an agent's logits into actions, and stepping an agent along a vector env."""
from __future__ import annotations

import numpy as np
import torch

POLICIES = ("sample", "greedy", "temperature")


def select_actions(logits: torch.Tensor, policy: str = "sample", temperature: float = 1.0,
                   generator: "torch.Generator | None" = None) -> torch.Tensor:
    """``(B, A)`` logits -> ``(B,)`` actions: ``sample`` from softmax, ``greedy`` argmax, or ``temperature``
    (sample from softmax(logits / temperature))."""
    if policy == "greedy":
        return logits.argmax(-1)
    if policy == "temperature":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        logits = logits / temperature
    elif policy != "sample":
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    probs = torch.softmax(logits.float(), -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class AgentStepper:
    """Keeps a (possibly recurrent) agent's state across vector-env steps, and a seeded generator for sampling.

    >>> stepper = AgentStepper(agent, num_envs, seed=0)
    >>> out = stepper.forward(obs)                        # before env.step(actions)
    >>> actions = select_actions(out.logits.cpu(), "sample", generator=stepper.generator)
    >>> stepper.observe_done(done)                        # after: episodes that ended restart from h0
    """

    def __init__(self, agent, num_envs: int, seed: int | None = None, device="cpu"):
        self.agent, self.device = agent, device
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(0 if seed is None else int(seed))
        init = getattr(agent, "initial_state", None)
        self.state = init(num_envs) if callable(init) else None
        self.first = torch.ones(num_envs, dtype=torch.bool)

    @torch.no_grad()
    def forward(self, obs: np.ndarray):
        """The agent's output on ``obs`` ``(N, ...)``, its state carried over from the last step."""
        out = self.agent(torch.as_tensor(obs, device=self.device), self.state, self.first.to(self.device))
        self.state = out.state
        return out

    def observe_done(self, done: np.ndarray) -> None:
        self.first = torch.as_tensor(np.asarray(done, bool))
