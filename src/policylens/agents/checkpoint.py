"""Checkpoints: a folder with ``config.json`` and ``weights.safetensors`` (+ ``optimizer.safetensors``).

Nothing here unpickles: tensors come from safetensors, everything else from JSON.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .base import ActorCritic
from .registry import AgentConfig, build
from .swapped import restore_swap

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".ckpt", ".bin")
REFUSE_PICKLE = (
    "{path} is a pickled PyTorch file; policylens never unpickles checkpoints (loading one can run arbitrary code). "
    "Import it once: `policylens import cleanrl PATH --script SCRIPT --env SPEC --out RUN` for a CleanRL agent "
    "(read with torch.load(weights_only=True), tensors only; a state dict in hand goes to "
    "`policylens.agents.convert.from_cleanrl_procgen(sd, OUT_DIR)` for ppo_procgen), "
    "`policylens import sb3 MODEL.zip --env SPEC --out RUN` for a Stable-Baselines3 zip, or "
    "`policylens.agents.wrap(module, ...)` for any other torch policy."
)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_agent(agent: nn.Module, config: "AgentConfig | dict", path, extra: dict | None = None) -> Path:
    """Write ``path/config.json`` (``{"agent": ..., **extra}``) and ``path/weights.safetensors``. The agent's
    ``policylens_edits`` (what out-of-place edits record) go into ``edits`` unless ``extra`` has its own."""
    path = Path(path)
    extra = dict(extra or {})
    edits = getattr(agent, "policylens_edits", None)
    if edits and "edits" not in extra:
        extra["edits"] = list(edits)
    path.mkdir(parents=True, exist_ok=True)
    cfg = config.to_dict() if isinstance(config, AgentConfig) else dict(config)
    tensors = {k: v.detach().contiguous().cpu() for k, v in agent.state_dict().items()}
    _atomic_write(path / "weights.safetensors", lambda p: save_file(tensors, str(p)))
    body = json.dumps({"agent": cfg, **extra}, indent=2, default=str)
    _atomic_write(path / "config.json", lambda p: p.write_text(body))
    return path


def read_config(path) -> dict:
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES and path.is_file():
        raise ValueError(REFUSE_PICKLE.format(path=path))
    file = path / "config.json"
    if not file.is_file():
        pickled = sorted(p for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
        if pickled:
            raise FileNotFoundError(f"no checkpoint at {path}: {file} is missing. " + REFUSE_PICKLE.format(path=pickled[0]))
        raise FileNotFoundError(f"no checkpoint at {path}: {file} is missing")
    try:
        cfg = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint config {file} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or "agent" not in cfg:
        raise ValueError(f"checkpoint config {file} has no 'agent' section")
    return cfg


def check_finite(tensors: dict, file) -> None:
    """Refuse tensors holding NaN or inf (a diverged run's checkpoint would evaluate to nonsense without a word),
    naming each such tensor and how many of its values are not finite."""
    bad = []
    for name, value in tensors.items():
        if torch.is_floating_point(value) or torch.is_complex(value):
            n = int((~torch.isfinite(value)).sum())
            if n:
                bad.append(f"{name} ({n} of {value.numel()} values)")
    if bad:
        raise ValueError(f"{file} holds NaN or inf in {len(bad)} tensor(s): {', '.join(bad)}; refusing to load it "
                         "(retrain, or resume from an earlier checkpoint)")


def load_weights(module: nn.Module, file) -> None:
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint weights missing: {file}")
    try:
        state = load_file(str(file))
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"checkpoint weights {file} are corrupt or not safetensors: {e}") from None
    check_finite(state, file)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the agent"
             for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint weights {file} do not match the architecture: missing {missing}, "
                         f"unexpected {unexpected}, wrong shapes [{'; '.join(wrong)}]")
    module.load_state_dict(state, strict=True)


def load_agent(path, device: "str | torch.device" = "cpu") -> ActorCritic:
    """Build the agent from ``path/config.json`` and load ``path/weights.safetensors``; the env's action
    names, when the checkpoint has them, become ``agent.action_names``."""
    cfg = read_config(path)
    agent = restore_swap(build(cfg["agent"]), cfg)
    load_weights(agent, Path(path) / "weights.safetensors")
    if cfg.get("action_names"):
        agent.action_names = list(cfg["action_names"])  # the env's names for the logits, e.g. "forward"
    return agent.to(device).eval()
