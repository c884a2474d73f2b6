"""Decision-transformer checkpoints: ``RUN/agent/config.json`` + ``weights.safetensors``, as the PPO agents'.

``config.json`` = ``{"agent": {"arch": "decision_transformer", ...DTConfig}, "env": symbolic env spec,
"action_names": [...], "data": {"store", "rtg_min", "rtg_max", ...}, "train": {...}}``. Training adds
``trainer.safetensors``/``trainer.json`` (optimizer moments, step) for ``--resume``. Nothing is unpickled.
"""
from __future__ import annotations

from pathlib import Path

from ..agents import read_config, resolve_run, save_agent
from ..agents.checkpoint import load_weights
from .model import ARCH, DTConfig


def dt_dir(run) -> Path:
    """The folder holding a DT's ``config.json``: ``RUN/agent`` or the checkpoint folder itself."""
    return resolve_run(run)


def read_dt_config(run) -> tuple:
    """``(DTConfig, whole config.json)``; a clear error when the checkpoint is not a decision transformer."""
    folder = dt_dir(run)
    conf = read_config(folder)
    if conf["agent"].get("arch") != ARCH:
        raise ValueError(f"{folder / 'config.json'} holds a {conf['agent'].get('arch')!r} agent, not a decision "
                         f"transformer (those are written by `policylens dt train --store STORE --out RUN`)")
    return DTConfig.from_dict(conf["agent"]), conf


def save_dt(model, path, extra: "dict | None" = None) -> Path:
    """Write ``path/config.json`` and ``path/weights.safetensors`` (atomically, file by file)."""
    return save_agent(model, model.config.to_dict(), path, extra=extra)


def load_dt(run, device="cpu"):
    """The decision transformer of a run directory or checkpoint folder, in eval mode, with
    ``action_names`` and ``rtg_range`` (the training data's RTGs) from its config."""
    from .model import DecisionTransformer

    config, conf = read_dt_config(run)
    model = DecisionTransformer(config)
    load_weights(model, dt_dir(run) / "weights.safetensors")
    if conf.get("action_names"):
        model.action_names = list(conf["action_names"])
    data = conf.get("data", {})
    if "rtg_min" in data:
        model.rtg_range = (float(data["rtg_min"]), float(data["rtg_max"]))
    model.env = conf.get("env", "")
    return model.to(device).eval()
