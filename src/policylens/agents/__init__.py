"""Agents: hookable nn.Module actor-critics, a registry of architectures, safe checkpoints.

``load(RUN)`` takes a run directory (its ``agent/`` checkpoint), a checkpoint folder, or ``zoo:NAME``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from ..runs import zoo_dir

if TYPE_CHECKING:  # imported on first use (see policylens.lazy); wrap(module, ...): any torch policy as an agent
    from ..hooks import layer_shapes, spatial_layers
    from .base import ActorCritic, AgentOutput, get_layer, layer_names
    from .checkpoint import load_agent, read_config, save_agent
    from .importers import Wrapped, wrap
    from .registry import ARCHITECTURES, AgentConfig, build, register


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
    from .checkpoint import load_agent

    return load_agent(resolve_run(run), device=device)


__all__ = ["ActorCritic", "AgentOutput", "AgentConfig", "ARCHITECTURES", "build", "register", "load",
           "load_agent", "save_agent", "read_config", "resolve_run", "layer_names", "layer_shapes", "get_layer", "spatial_layers",
           "wrap", "Wrapped"]

lazy_exports(__name__)
