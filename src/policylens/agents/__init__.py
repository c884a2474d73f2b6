"""Agents: hookable nn.Module actor-critics, a registry of architectures, safe checkpoints.

``load(RUN)`` takes a run directory (its ``agent/`` checkpoint), a checkpoint folder, or ``zoo:NAME``.
"""
from __future__ import annotations

from pathlib import Path

from ..runs import zoo_dir
from .base import ActorCritic, AgentOutput, get_layer, layer_names
from .checkpoint import load_agent, read_config, save_agent
from .registry import ARCHITECTURES, AgentConfig, build, register


def __getattr__(name):  # imported on first use: wrap(module, ...) (any torch policy as an agent), layer shapes
    if name in ("wrap", "Wrapped"):
        from . import importers

        return getattr(importers, name)
    if name in ("layer_shapes", "spatial_layers"):
        from .. import hooks

        return getattr(hooks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_run(run) -> Path:
    """A RUN argument (run dir, checkpoint dir or ``zoo:NAME``) -> the folder holding ``config.json``."""
    text = str(run)
    if text.startswith("zoo:"):
        name = text[4:]
        path = zoo_dir() / name
        if not path.is_dir():
            names = sorted(p.name for p in zoo_dir().glob("*") if (p / "agent").is_dir() or (p / "config.json").is_file())
            raise FileNotFoundError(f"no zoo agent {name!r} in {zoo_dir()}; available: {', '.join(names) or 'none'}")
        run = path
    path = Path(run)
    if (path / "agent" / "config.json").is_file():
        return path / "agent"
    return path


def load(run, device="cpu"):
    """The agent of a run directory, checkpoint folder or ``zoo:NAME`` (never unpickles)."""
    return load_agent(resolve_run(run), device=device)


__all__ = ["ActorCritic", "AgentOutput", "AgentConfig", "ARCHITECTURES", "build", "register", "load",
           "load_agent", "save_agent", "read_config", "resolve_run", "layer_names", "layer_shapes", "get_layer", "spatial_layers",
           "wrap"]
