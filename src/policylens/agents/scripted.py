"""Stand-in agents: scripted policies and untrained networks, for what a trained agent is compared against.

``scripted:ACTION`` always takes the action named ``ACTION`` (an action name of the env, e.g. ``forward``, or
an index); ``scripted:random`` puts equal mass on every action (random where actions are sampled, the first
action where the likeliest is taken). ``untrained:RUN`` is RUN's architecture with fresh weights drawn from a
seed. Both implement the Agent interface (``agent(obs, state, first) -> AgentOutput``), so evaluation, the
simulator's loop and everything else that takes an agent take them.

>>> agent = load_stand_in("scripted:forward", obs_shape=(7, 7, 3), action_names=["left", "right", "forward"])
>>> agent(torch.zeros(2, 7, 7, 3, dtype=torch.uint8)).logits.argmax(-1)     # tensor([2, 2])
"""
from __future__ import annotations

import torch
from torch import nn

from .base import AgentOutput

SCRIPTED, UNTRAINED = "scripted:", "untrained:"
RANDOM = "random"
OFF = -1e4  # the logit of an action a script never takes: exp(OFF - 0) is 0 in float32 and float64


def is_stand_in(text: str) -> bool:
    """Whether ``text`` names a stand-in (``scripted:...`` or ``untrained:...``) rather than a run."""
    return str(text).startswith((SCRIPTED, UNTRAINED))


class ScriptedAgent(nn.Module):
    """A policy without a network: every step the same action, or equal mass on all (``random``). Stateless
    (``initial_state`` is None); its value is 0. ``script``: an action name among ``action_names``, an index,
    or ``random``."""

    def __init__(self, script: str, obs_shape, num_actions: int, action_names=()):
        super().__init__()
        self.obs_shape, self.num_actions = tuple(obs_shape), int(num_actions)
        self.action_names = list(action_names)
        if self.num_actions < 1:
            raise ValueError(f"a scripted agent needs at least one action, got num_actions={num_actions}")
        if self.action_names and len(self.action_names) != self.num_actions:
            raise ValueError(f"{len(self.action_names)} action names for {self.num_actions} actions")
        self.script = str(script)
        self.action = None if self.script == RANDOM else self._index(self.script)
        self.recurrent = False

    def _index(self, script: str) -> int:
        names = [str(n).lower() for n in self.action_names]
        if script.lower() in names:
            return names.index(script.lower())
        if script.isdigit() and int(script) < self.num_actions:
            return int(script)
        known = ", ".join(self.action_names) if self.action_names else f"0..{self.num_actions - 1}"
        raise ValueError(f"scripted agent {script!r}: expected {RANDOM} or an action of the env ({known})")

    def initial_state(self, batch_size: int) -> None:
        return None

    def forward(self, obs: torch.Tensor, state=None, first=None) -> AgentOutput:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"observation shape {tuple(obs.shape[1:])} does not match the scripted agent's "
                             f"{self.obs_shape}")
        b = obs.shape[0]
        logits = torch.zeros(b, self.num_actions, device=obs.device)  # (B, A) uniform for random
        if self.action is not None:
            logits.fill_(OFF)
            logits[:, self.action] = 0.0  # all the mass on the scripted action
        return AgentOutput(logits, torch.zeros(b, device=obs.device), None)


def untrained_agent(run, seed: int = 0) -> nn.Module:
    """RUN's architecture (a run dir, checkpoint folder or ``zoo:NAME``) with fresh weights drawn from ``seed``
    (the global random state is left as it was); its action names as RUN's."""
    from . import read_config, resolve_run
    from .registry import build

    config = read_config(resolve_run(run))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        agent = build(config["agent"])
    if config.get("action_names"):
        agent.action_names = list(config["action_names"])
    return agent.eval()


def load_stand_in(text: str, obs_shape=(), action_names=(), num_actions: "int | None" = None, seed: int = 0,
                  device="cpu") -> nn.Module:
    """The agent ``text`` names: ``scripted:ACTION`` (for an env of ``obs_shape`` and ``action_names`` /
    ``num_actions``), ``untrained:RUN`` (weights from ``seed``), or else a run, checkpoint or ``zoo:NAME``."""
    from . import load

    text = str(text)
    if text.startswith(SCRIPTED):
        if not obs_shape:
            raise ValueError(f"{text}: a scripted agent needs the observation shape of its env")
        n = len(action_names) if num_actions is None else int(num_actions)
        return ScriptedAgent(text[len(SCRIPTED):], obs_shape, n, action_names).to(device)
    if text.startswith(UNTRAINED):
        if not text[len(UNTRAINED):]:
            raise ValueError(f"{text!r}: expected untrained:RUN, the run whose architecture to build")
        return untrained_agent(text[len(UNTRAINED):], seed).to(device)
    return load(text, device=device)
