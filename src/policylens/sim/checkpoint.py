"""Simulator checkpoints: ``RUN/sim/config.json`` + ``weights.safetensors``; safetensors and JSON, never pickle.

``config.json`` = ``{"format", "sim": SimConfig, "agent": {"run", "sha256", "config"}, "env", "action_names",
"data": {...}, "train": {...}}``: the simulator is tied to the agent it was trained with (its run and the
sha256 of its weights file) and to the env, and loading it with another agent or env is refused, naming
both. Training keeps its resume state in ``RUN/sim/trainer/`` (a complete copy of the weights plus the
optimizer moments, swapped in whole by :func:`policylens.train.state.write_checkpoint`), so a kill at any
moment leaves a consistent state to resume from, while ``train.csv`` and later reports live beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..agents import load as load_agent, save_agent, zoo_dir
from ..agents.checkpoint import load_weights
from ..envs import parse_spec
from .config import SimConfig
from .loop import FrozenAgent, agent_sha256
from .model import Simulator

FORMAT = "policylens.sim/1"


def sim_dir(run) -> Path:
    """The folder holding a simulator's ``config.json``: ``RUN/sim`` (``zoo:NAME`` -> the zoo's ``NAME/sim``),
    or the folder itself when it holds a ``config.json`` and no ``sim/``."""
    text = str(run)
    path = zoo_dir() / text[4:] if text.startswith("zoo:") else Path(run)
    return path if (path / "config.json").is_file() and not (path / "sim").is_dir() else path / "sim"


def read_sim_config(run) -> tuple:
    """``(SimConfig, whole config.json)``; a clear error when there is no simulator there."""
    folder = sim_dir(run)
    file = folder / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"no simulator at {folder}: {file} is missing (train one with "
                                f"`policylens sim train RUN`)")
    try:
        conf = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"simulator config {file} is not valid JSON: {e}") from None
    if not isinstance(conf, dict) or conf.get("format") != FORMAT or "sim" not in conf:
        raise ValueError(f"{file} is not a simulator checkpoint (expected format {FORMAT!r}); simulators are "
                         "written by `policylens sim train RUN`")
    return SimConfig.from_dict(conf["sim"]), conf


def check_match(conf: dict, where, agent_sha: "str | None" = None, agent_name: str = "", env: "str | None" = None):
    """Refuse a simulator trained for another agent (by weights sha256) or env, naming both."""
    recorded = conf.get("agent", {})
    if agent_sha is not None and recorded.get("sha256") != agent_sha:
        raise ValueError(f"simulator {where} was trained with agent {recorded.get('run', '?')} (weights sha256 "
                         f"{str(recorded.get('sha256'))[:12]}), not {agent_name or 'the agent given'} (sha256 "
                         f"{agent_sha[:12]}); train a simulator for that agent with `policylens sim train RUN`")
    if env is not None and str(parse_spec(env)) != str(parse_spec(conf.get("env", "") or env)):
        raise ValueError(f"simulator {where} was trained on env {conf.get('env')!r}, not {env!r}")


def save_sim(sim: Simulator, path, extra: dict) -> Path:
    """Write ``path/config.json`` (``{"format", "sim", **extra}``; ``extra`` holds ``agent`` and ``env``) and
    ``path/weights.safetensors``, each file atomically."""
    body = {k: v for k, v in extra.items() if k != "agent"}
    return save_agent(sim, extra["agent"], path, extra={"format": FORMAT, "sim": sim.config.to_dict(), **body})


def load_sim(run, agent=None, env: "str | None" = None, device="cpu") -> tuple:
    """``(Simulator in eval mode, FrozenAgent)`` from ``RUN/sim`` (or a simulator folder).

    ``agent``: None loads the agent recorded in the config; a RUN / ``zoo:NAME`` / ``nn.Module`` is used if its
    weights are the ones the simulator was trained with, else refused naming both. ``env``: if given, it
    must be the simulator's env.
    """
    config, conf = read_sim_config(run)
    folder = sim_dir(run)
    if agent is None:
        agent = conf.get("agent", {}).get("run")
        if not agent:
            raise ValueError(f"{folder / 'config.json'} names no agent run; pass agent=")
    name = str(agent) if isinstance(agent, (str, Path)) else type(agent).__name__
    module = load_agent(agent) if isinstance(agent, (str, Path)) else agent
    check_match(conf, folder, agent_sha256(module), name, env)
    sim = Simulator(config)
    load_weights(sim, folder / "weights.safetensors")
    return sim.to(device).eval(), FrozenAgent(module).to(device)
