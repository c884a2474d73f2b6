"""Converters from other codebases' checkpoints to policylens checkpoint folders.

CleanRL ``ppo_procgen``
-----------------------
CleanRL's ``Agent`` is ``network = Sequential(ConvSequence x3, Flatten, ReLU, Linear(->256), ReLU)``, then
``actor`` and ``critic`` linear heads; each ``ConvSequence`` is conv 3x3 -> max-pool 3/2 -> two residual
blocks (``res_block0``, ``res_block1``, each ``relu -> conv0 -> relu -> conv1 + input``). It scales obs by
``/ 255`` and permutes NHWC -> NCHW, as policylens' ``impala`` does. The keys map one to one:

=========================================  ===============================
CleanRL                                    policylens ``impala``
=========================================  ===============================
``network.{i}.conv.{weight,bias}``         ``block{i+1}.conv.*``
``network.{i}.res_block{j}.conv{k}.*``     ``block{i+1}.res{j+1}.conv{k}.*``
``network.5.*`` (the 256-unit dense)       ``fc.*``
``actor.*``                                ``pi.*``
``critic.*``                               ``v.*``
=========================================  ===============================

The file CleanRL saves is imported with ``policylens import cleanrl agent.pt --script ppo_procgen --env SPEC
--out RUN`` (read with ``torch.load(weights_only=True)``, which refuses anything but tensors), or from a state
dict you already hold::

    policylens.agents.convert.from_cleanrl_procgen(sd, "runs/coinrun_cleanrl/agent")

(if the file holds the whole module rather than its ``state_dict()``, ``weights_only=True`` refuses it:
save ``agent.state_dict()`` from the training script instead.) Then ``policylens.agents.load(OUT_DIR)``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from .checkpoint import save_agent
from .importers.common import strip_wrappers
from .registry import AgentConfig, build

CLEANRL_PROCGEN_DEFAULT_ENV = "procgen:coinrun?distribution_mode=easy"
_CONV = re.compile(r"network\.(\d+)\.conv\.(weight|bias)$")
_RES = re.compile(r"network\.(\d+)\.res_block(\d+)\.conv(\d)\.(weight|bias)$")
_HEADS = {"actor": "pi", "critic": "v"}


def cleanrl_procgen_key(key: str, n_blocks: int = 3) -> "str | None":
    """The policylens ``impala`` name of a CleanRL ppo_procgen state-dict key, or None if it has none."""
    if m := _CONV.match(key):
        i = int(m.group(1))
        return f"block{i + 1}.conv.{m.group(2)}" if i < n_blocks else None
    if m := _RES.match(key):
        i, j, k, p = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        return f"block{i + 1}.res{j + 1}.conv{k}.{p}" if i < n_blocks and j < 2 and k < 2 else None
    head, _, param = key.partition(".")
    if head in _HEADS and param in ("weight", "bias"):
        return f"{_HEADS[head]}.{param}"
    if key in (f"network.{n_blocks + 2}.weight", f"network.{n_blocks + 2}.bias"):  # after Flatten, ReLU
        return "fc." + key.rsplit(".", 1)[1]
    return None


def _cleanrl_name(ours: str, n_blocks: int) -> str:
    """Inverse of :func:`cleanrl_procgen_key`, for error messages."""
    if m := re.match(r"block(\d+)\.conv\.(\w+)$", ours):
        return f"network.{int(m.group(1)) - 1}.conv.{m.group(2)}"
    if m := re.match(r"block(\d+)\.res(\d+)\.conv(\d)\.(\w+)$", ours):
        return f"network.{int(m.group(1)) - 1}.res_block{int(m.group(2)) - 1}.conv{m.group(3)}.{m.group(4)}"
    head, _, param = ours.partition(".")
    inverse = {"pi": "actor", "v": "critic", "fc": f"network.{n_blocks + 2}"}
    return f"{inverse[head]}.{param}" if head in inverse else ours


def from_cleanrl_procgen(state_dict: dict, out_dir, env: str = CLEANRL_PROCGEN_DEFAULT_ENV,
                         obs_shape=(64, 64, 3), extra: "dict | None" = None) -> Path:
    """Convert a CleanRL ``ppo_procgen`` agent's ``state_dict()`` to a policylens ``impala`` checkpoint.

    Writes ``out_dir/config.json`` (with ``"env": env``) and ``out_dir/weights.safetensors`` and returns
    ``out_dir``. The number of actions, the channels and the hidden size are read from the weights;
    ``obs_shape`` (H, W, C) is procgen's 64x64x3 unless given, and is checked against the dense layer's
    input size. Missing or unexpected keys and wrong shapes raise a ValueError naming them. ``extra`` goes
    into ``config.json`` beside the env (``policylens import cleanrl`` records the file it came from there).
    """
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"expected a non-empty state dict (str -> tensor), got {type(state_dict).__name__}")
    sd = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            try:
                value = torch.as_tensor(value)
            except Exception:
                raise ValueError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor") from None
        sd[strip_wrappers(str(key))] = value

    n_blocks = len({int(m.group(1)) for k in sd if (m := _CONV.match(k))})
    needed = [f"network.{i}.conv.weight" for i in range(n_blocks)] + [
        f"network.{n_blocks + 2}.weight", "actor.weight"]
    absent = [k for k in needed if k not in sd]
    if n_blocks == 0 or absent:
        raise ValueError(
            "this does not look like a CleanRL ppo_procgen state dict: "
            f"missing {absent or ['network.0.conv.weight']}; got keys {sorted(sd)[:12]}{' ...' if len(sd) > 12 else ''}")

    channels = [int(sd[f"network.{i}.conv.weight"].shape[0]) for i in range(n_blocks)]
    in_channels = int(sd["network.0.conv.weight"].shape[1])
    hidden_dim, flat = (int(d) for d in sd[f"network.{n_blocks + 2}.weight"].shape)
    num_actions = int(sd["actor.weight"].shape[0])
    h, w, c = (int(d) for d in obs_shape)
    if c != in_channels:
        raise ValueError(f"the first conv takes {in_channels} channels but obs_shape {tuple(obs_shape)} has {c}")
    side_h, side_w = h, w
    for _ in range(n_blocks):
        side_h, side_w = math.ceil(side_h / 2), math.ceil(side_w / 2)
    if channels[-1] * side_h * side_w != flat:
        raise ValueError(
            f"the dense layer network.{n_blocks + 2} takes {flat} inputs, but obs_shape {tuple(obs_shape)} gives "
            f"{channels[-1]}x{side_h}x{side_w} = {channels[-1] * side_h * side_w}; pass the obs_shape it was trained on")

    options: dict = {}
    if tuple(channels) != (16, 32, 32):
        options["channels"] = channels
    if hidden_dim != 256:
        options["hidden_dim"] = hidden_dim
    config = AgentConfig(arch="impala", obs_shape=(h, w, c), num_actions=num_actions, obs_scale=1 / 255,
                         recurrent=False, options=options)
    agent = build(config)
    own = agent.state_dict()

    converted, unexpected = {}, []
    for key, value in sd.items():
        ours = cleanrl_procgen_key(key, n_blocks)
        if ours is None or ours not in own:
            unexpected.append(key)
        else:
            converted[ours] = value
    missing = [_cleanrl_name(k, n_blocks) for k in own if k not in converted]
    if missing or unexpected:
        raise ValueError(f"CleanRL ppo_procgen state dict does not match: missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    wrong = [f"{_cleanrl_name(k, n_blocks)}: {tuple(v.shape)}, expected {tuple(own[k].shape)}"
             for k, v in converted.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"CleanRL ppo_procgen state dict has wrong shapes: {'; '.join(wrong)}")
    agent.load_state_dict({k: v.detach().to(own[k].dtype) for k, v in converted.items()}, strict=True)
    return save_agent(agent, config, out_dir, extra={"env": env, "converted_from": "cleanrl ppo_procgen", **(extra or {})})
