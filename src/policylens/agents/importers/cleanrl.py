"""CleanRL agents (the state dict a script saves with ``torch.save(agent.state_dict(), path)``) to policylens
checkpoints. The file is read with ``torch.load(weights_only=True)`` only; the layout comes from ``script``:

=====================  ===========================================================  ==========================
script                 CleanRL's network (keys)                                     policylens
=====================  ===========================================================  ==========================
``ppo_atari``,         ``network`` = conv 32x8/4, 64x4/2, 64x3/1 (``network.0/2/4``),  ``nature``: ``conv1/2/3``,
``ppo_atari_envpool``  Flatten, dense 512 (``network.7``); heads ``actor``,          ``fc``, ``pi``, ``v``
                       ``critic``; obs ``x / 255``
``dqn_atari``          the same trunk, then ``network.9`` the Q-values               ``nature``, ``pi`` = Q,
                                                                                     ``v`` = max Q
``ppo``                ``actor`` and ``critic``, each dense 64 -> tanh -> 64 -> tanh  ``mlp``: ``pi_fc1/2``,
                       -> head (``actor.0/2/4``, ``critic.0/2/4``); obs as is         ``v_fc1/2``, ``pi``, ``v``
``ppo_procgen``        IMPALA CNN (see :mod:`policylens.agents.convert`)            ``impala``
=====================  ===========================================================  ==========================

CleanRL's Atari scripts see frames stacked channel-first, ``(4, 84, 84)``; a policylens agent takes them as the
env gives them, ``(84, 84, 4)``, and permutes them itself, so the same weights give the same outputs (up to
float rounding: CleanRL divides by 255 where policylens multiplies by 1/255). Widths are read from the weights.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..registry import AgentConfig
from .common import build_and_save, read_state_dict, sha256_bytes

SCRIPTS = ("ppo_atari", "ppo_atari_envpool", "ppo_procgen", "ppo", "dqn_atari")
_NATURE_CONVS = {"conv1.conv": "network.0", "conv2.conv": "network.2", "conv3.conv": "network.4", "fc.0": "network.7"}


def _params(pairs) -> dict:
    """``{our module: their module}`` -> ``{our key: their key}`` for weight and bias."""
    return {f"{ours}.{p}": f"{theirs}.{p}" for ours, theirs in pairs for p in ("weight", "bias")}


def _sequential_linears(sd: dict, prefix: str) -> list:
    """The dense layers ``prefix.{i}`` of a Sequential, in order: ``[(module key, out_features)]``."""
    found = sorted((int(m.group(1)), k) for k in sd if (m := re.fullmatch(re.escape(prefix) + r"\.(\d+)\.weight", k)))
    return [(k[: -len(".weight")], int(sd[k].shape[0])) for _, k in found if sd[k].dim() == 2]


def layout(script: str, sd: dict) -> tuple:
    """``(arch, obs_scale, options, {our key: their key}, num_actions)`` of a CleanRL ``script``'s state dict."""
    if script in ("ppo_atari", "ppo_atari_envpool", "dqn_atari"):
        head = "network.9" if script == "dqn_atari" else "actor"
        keys = _params(list(_NATURE_CONVS.items()) + ([("pi", "network.9")] if script == "dqn_atari" else
                                                      [("pi", "actor"), ("v", "critic")]))
        _require(script, sd, keys.values())
        convs = [(int(w.shape[0]), int(w.shape[-1])) for w in (sd[f"network.{i}.weight"] for i in (0, 2, 4))]
        if convs != [(32, 8), (64, 4), (64, 3)]:
            raise ValueError(f"CleanRL {script}: convs (out, kernel) {convs}, expected the Nature CNN's "
                             "[(32, 8), (64, 4), (64, 3)]")
        options: dict[str, Any] = {"fc_dim": int(sd["network.7.weight"].shape[0])}
        if script == "dqn_atari":
            options["q_values"] = True
        return "nature", 1 / 255, options, keys, int(sd[f"{head}.weight"].shape[0])
    if script == "ppo":
        actor, critic = _sequential_linears(sd, "actor"), _sequential_linears(sd, "critic")
        if not actor or not critic:
            raise ValueError(f"CleanRL ppo: expected actor.N and critic.N dense layers; got keys {sorted(sd)[:10]}")
        keys = _params([(f"pi_fc{k + 1}.0", m) for k, (m, _) in enumerate(actor[:-1])] + [("pi", actor[-1][0])]
                       + [(f"v_fc{k + 1}.0", m) for k, (m, _) in enumerate(critic[:-1])] + [("v", critic[-1][0])])
        options = {"hidden_sizes": [], "activation": "tanh", "pi_hidden": [w for _, w in actor[:-1]],
                   "v_hidden": [w for _, w in critic[:-1]]}
        return "mlp", 1.0, options, keys, actor[-1][1]
    raise ValueError(f"unknown CleanRL script {script!r}; expected one of {', '.join(SCRIPTS)}")


def _require(script: str, sd: dict, needed) -> None:
    absent = sorted(k for k in needed if k not in sd)
    if absent:
        raise ValueError(f"this does not look like CleanRL {script}'s state dict: missing {absent}; "
                         f"it has {sorted(sd)[:10]}{' ...' if len(sd) > 10 else ''}")


def from_cleanrl(source, out_dir, *, script: str, env: str, obs_shape, num_actions: "int | None" = None,
                 action_names=None, overwrite: bool = False) -> Path:
    """Convert a CleanRL ``script``'s saved state dict (a ``.pt`` / ``.pth`` / ``.cleanrl_model`` path, read with
    ``torch.load(weights_only=True)``, or the dict itself) to a policylens checkpoint ``out_dir`` for env spec
    ``env`` with observations ``obs_shape`` (as the env gives them). Returns ``out_dir``."""
    if script not in SCRIPTS:
        raise ValueError(f"unknown CleanRL script {script!r}; expected one of {', '.join(SCRIPTS)}")
    name = Path(source).name if isinstance(source, (str, Path)) else "state dict"
    digest = sha256_bytes(Path(source).read_bytes()) if isinstance(source, (str, Path)) and Path(source).is_file() else ""
    sd = read_state_dict(source, name) if isinstance(source, (str, Path)) else dict(source)
    extra: dict[str, Any] = {"env": str(env), "imported_from": {"library": "cleanrl", "script": script, "file": name,
                                                                 "sha256": digest}}
    if action_names:
        extra["action_names"] = list(action_names)
    if script == "ppo_procgen":
        from ..convert import from_cleanrl_procgen

        if (Path(out_dir) / "config.json").exists() and not overwrite:
            raise ValueError(f"{out_dir} already holds a checkpoint; pass --overwrite to replace it")
        return from_cleanrl_procgen(sd, out_dir, env=env, obs_shape=tuple(obs_shape), extra=extra)
    arch, scale, options, keys, n = layout(script, sd)
    if num_actions is not None and int(num_actions) != n:
        raise ValueError(f"CleanRL {script} agent has {n} actions but env {env} has {num_actions}")
    unknown = sorted(k for k in sd if k not in set(keys.values()))
    if unknown:
        raise ValueError(f"CleanRL {script}: tensors {unknown} have no place in its network")
    mapped = {ours: (theirs, sd[theirs]) for ours, theirs in keys.items()}
    if options.get("q_values"):
        extra["imported_from"]["value"] = "max Q-value (the greedy policy's value)"
    config = AgentConfig(arch=arch, obs_shape=tuple(obs_shape), num_actions=n, obs_scale=scale, options=options)
    return build_and_save(config, mapped, out_dir, f"{name} (CleanRL {script})", extra, overwrite)
