"""Resumable trainer checkpoints: everything a PPO run needs to continue bit-for-bit.

``RUN/agent/`` holds ``config.json`` + ``weights.safetensors`` (a loadable agent) and, for resume,
``trainer.safetensors`` (optimizer moments, RNG state, the agent's hidden state, reward statistics) and
``trainer.json`` (update index, frames, env snapshot, param groups). The folder is swapped in whole, so a
kill at any moment leaves the previous checkpoint intact. Nothing is pickled.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..agents.checkpoint import check_finite, save_agent


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": v.detach().clone() for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, param_groups: list) -> None:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": param_groups})


def write_checkpoint(agent_dir: Path, weights: dict, agent_config: dict, extra: dict, tensors: dict, meta: dict) -> None:
    """Write a complete checkpoint into ``agent_dir`` atomically (build aside, then swap)."""
    agent_dir = Path(agent_dir)
    new, old = agent_dir.with_name(agent_dir.name + ".new"), agent_dir.with_name(agent_dir.name + ".old")
    shutil.rmtree(new, ignore_errors=True)

    class _Weights(torch.nn.Module):  # save_agent takes a module; this one just carries a state dict
        def state_dict(self, *a, **k):
            return weights

    save_agent(_Weights(), agent_config, new, extra=extra)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(new / "trainer.safetensors"))
    (new / "trainer.json").write_text(json.dumps(meta))
    shutil.rmtree(old, ignore_errors=True)
    if agent_dir.exists():
        os.replace(agent_dir, old)
    os.replace(new, agent_dir)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(agent_dir: Path) -> Path:
    """The newest complete checkpoint folder (``agent/``, or ``agent.old/`` if a swap was cut short)."""
    agent_dir = Path(agent_dir)
    for cand in (agent_dir, agent_dir.with_name(agent_dir.name + ".old")):
        if (cand / "trainer.json").is_file() and (cand / "weights.safetensors").is_file():
            return cand
    raise FileNotFoundError(f"nothing to resume: no complete checkpoint (trainer.json + weights) in {agent_dir}")


def read_checkpoint(agent_dir: Path) -> tuple[dict, dict, dict]:
    """``(weights, trainer tensors, trainer meta)`` of the newest complete checkpoint."""
    folder = checkpoint_dir(agent_dir)
    try:
        weights, tensors = load_file(str(folder / "weights.safetensors")), load_file(str(folder / "trainer.safetensors"))
        meta = json.loads((folder / "trainer.json").read_text())
    except Exception as e:
        raise ValueError(f"checkpoint in {folder} is corrupt: {e}") from None
    check_finite(weights, folder / "weights.safetensors")  # resuming from NaN or inf would train on nonsense
    check_finite(tensors, folder / "trainer.safetensors")
    return weights, tensors, meta


def truncate_csv(path: Path, last: int) -> None:
    """Drop the log rows after step ``last`` (first column), written by a run killed after its last checkpoint."""
    import csv

    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= last] if rows else [])


def check_settings(meta: dict, settings: dict, where) -> None:
    """Refuse to resume ``where`` when the checkpoint's ``meta["settings"]`` differ from ``settings``, naming
    each differing setting with its stored and current value."""
    if meta.get("settings") == settings:
        return
    stored = meta.get("settings", {})
    diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
    then, now = {k: stored.get(k) for k in diff}, {k: settings.get(k) for k in diff}
    raise ValueError(f"cannot resume {where}: it was trained with other settings ({', '.join(diff)}: "
                     f"{then} vs now {now})")
