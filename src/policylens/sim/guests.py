"""Any agent inside the simulator: an agent with the simulator's observation and action spaces drives it in place
of the one it was trained with (Saliency as causality shows its simulator with a trained, an untrained and a
scripted "jump right" agent inside).

What the guest sees is the simulator's decoded view (as the trained agent sees it,
:func:`~policylens.sim.obs.agent_view`); its actions drive the dynamics; it starts from its own initial state
(:class:`~policylens.sim.loop.FrozenAgent` with ``guest=True``). An agent is named as a RUN is, or:

- ``trained``: the run the simulator was trained with (the agent the simulator knows: not a guest);
- ``untrained``: that run's architecture with fresh weights from the seed (``untrained:RUN`` for another run's);
- ``scripted:ACTION``: always the action named ACTION (``scripted:forward``, ``scripted:left``), or
  ``scripted:random`` (:mod:`policylens.agents.scripted`).

>>> module, frozen, label = load_guest("scripted:forward", "zoo:minigrid-do8-recurrent", sim, action_names)
"""
from __future__ import annotations

from ..agents.scripted import SCRIPTED, UNTRAINED, ScriptedAgent, load_stand_in

TRAINED = "trained"


def expand(text: str, run: str) -> str:
    """``trained`` -> ``run``, ``untrained`` -> ``untrained:run``; anything else as it is."""
    text = str(text).strip()
    if not text:
        raise ValueError("an empty agent name; expected trained, untrained, scripted:ACTION, untrained:RUN or a run")
    return run if text == TRAINED else f"{UNTRAINED}{run}" if text == UNTRAINED.rstrip(":") else text


def label(text: str) -> str:
    """A file-name-safe label of an agent name: ``scripted:forward`` -> ``scripted-forward``."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "agent"


def check_spaces(agent, cfg, action_names=(), name: str = "the agent") -> None:
    """Refuse an agent whose observation shape, number of actions or action names differ from the simulator's
    (``cfg``: its :class:`~policylens.sim.config.SimConfig`), naming both."""
    obs_shape = tuple(getattr(agent, "obs_shape", ()) or ())
    num_actions = int(getattr(agent, "num_actions", 0) or 0)
    if obs_shape and obs_shape != tuple(cfg.obs_shape):
        raise ValueError(f"agent {name} takes observations of shape {obs_shape}; the simulator shows "
                         f"{tuple(cfg.obs_shape)} (an agent in the simulator needs its observation space)")
    if num_actions != cfg.num_actions:
        raise ValueError(f"agent {name} has {num_actions} actions; the simulator takes {cfg.num_actions} "
                         "(an agent in the simulator needs its action space)")
    names = [str(n) for n in getattr(agent, "action_names", []) or []]
    if names and action_names and names != [str(n) for n in action_names]:
        raise ValueError(f"agent {name}'s actions are {names}; the simulator's are {list(action_names)}")


def load_guest(text: str, run: str, sim, action_names=(), trained_sha256: str = "", seed: int = 0,
               device="cpu") -> tuple:
    """``(agent module, FrozenAgent, label)`` for the agent ``text`` names (module doc) in simulator ``sim``
    trained with ``run``'s agent. An agent with the weights the simulator was trained with (``trained_sha256``,
    its config's ``agent.sha256``) is that agent, not a guest; ``untrained`` weights come from ``seed``. Spaces
    are checked (:func:`check_spaces`)."""
    from .loop import FrozenAgent

    name = expand(text, run)
    cfg = sim.config
    module = load_stand_in(name, cfg.obs_shape, action_names, cfg.num_actions, seed, device)
    check_spaces(module, cfg, action_names, name)
    frozen = FrozenAgent(module, guest=True)
    if trained_sha256 and frozen.sha256 == trained_sha256 and not isinstance(module, ScriptedAgent):
        frozen = FrozenAgent(module)  # the agent the simulator was trained with
    return module, frozen.to(device), label(text)


def is_scripted(text: str) -> bool:
    return str(text).startswith(SCRIPTED)
