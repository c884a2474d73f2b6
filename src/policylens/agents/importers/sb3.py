"""Stable-Baselines3 zips (PPO, A2C, DQN; MlpPolicy and CnnPolicy) to policylens checkpoints, never unpickled.

A zip SB3 saves holds ``data`` (JSON; entries it cannot write as JSON are cloudpickled and base64-encoded under
``:serialized:``, beside a readable copy of their plain attributes), ``policy.pth`` (the policy's state dict),
``policy.optimizer.pth``, ``pytorch_variables.pth`` and ``_stable_baselines3_version``. The importer reads
``data``'s plain JSON only (the policy class's name, the spaces' types, shapes and sizes, ``policy_kwargs``'
``activation_fn`` / ``normalize_images`` / ``features_extractor_class`` as written there) and ``policy.pth``
with ``torch.load(weights_only=True)``; no ``:serialized:`` field is ever decoded, and the optimizer and
variables files are not opened. The architecture comes from the weights' names and shapes:

==========================================  ==============================================================
Stable-Baselines3                           policylens
==========================================  ==============================================================
``NatureCNN`` ``cnn.0/2/4``, ``linear.0``   ``nature``: ``conv1/2/3.conv``, ``fc.0`` (``fc_dim`` = features_dim)
``FlattenExtractor`` (no weights)           ``mlp`` with ``hidden_sizes=()``: the observation, flat
``vf_features_extractor`` unlike the pi's   ``separate_value``: ``value_trunk.*``
``mlp_extractor.policy_net.{0,2,..}``       ``pi_fc1, pi_fc2, ...`` (``pi_hidden``; ``activation_fn``: tanh by
``mlp_extractor.value_net.{0,2,..}``        ``v_fc1, ...``            default, relu for DQN)
``action_net`` / ``value_net``              ``pi`` / ``v``
DQN ``q_net.features_extractor``            the trunk, as above
DQN ``q_net.q_net.{0,2,..}``                ``pi_fc*`` then ``pi`` (Q-values as logits of the greedy policy),
                                            ``v`` = their maximum (``q_values=True``); ``q_net_target`` unused
==========================================  ==============================================================

Observations: SB3 transposes image observations to channel-first (``VecTransposeImage``) and divides them by 255
(``normalize_images``); a policylens agent takes them as the env gives them (``(H, W, C)`` uint8, e.g. SB3's
Atari frames stacked channel-last by ``VecFrameStack``) and permutes them itself, so the same weights give the
same outputs. A vector observation is used as is; a ``Discrete`` one one-hot, as SB3 does. The imported agent's
logits are SB3's ``action_net`` outputs (its ``Categorical`` normalises them) and its value ``value_net``'s.
"""
from __future__ import annotations

import ast
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..registry import AgentConfig
from .common import build_and_save, columns_hwc_to_chw, read_state_dict, sha256_bytes

#: Policy classes the importer handles (``module.Class`` as SB3 saves it) and what they are.
SUPPORTED = {
    "stable_baselines3.common.policies.ActorCriticPolicy": "PPO / A2C MlpPolicy",
    "stable_baselines3.common.policies.ActorCriticCnnPolicy": "PPO / A2C CnnPolicy",
    "stable_baselines3.dqn.policies.DQNPolicy": "DQN MlpPolicy",
    "stable_baselines3.dqn.policies.CnnPolicy": "DQN CnnPolicy",
}
ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu"}
NATURE = ((32, 8), (64, 4), (64, 3))  # NatureCNN's convs: (out channels, kernel) of cnn.0, cnn.2, cnn.4
NEEDED_FILES = ("data", "policy.pth")


def read_zip(path) -> tuple:
    """``(data, state_dict, version, sha256)`` of an SB3 zip: ``data`` parsed as JSON (its ``:serialized:``
    strings left as they are), ``policy.pth`` via :func:`~.common.read_state_dict`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Stable-Baselines3 zip at {path}")
    raw = path.read_bytes()
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            absent = [n for n in NEEDED_FILES if n not in names]
            if absent:
                raise ValueError(f"{path} is not a Stable-Baselines3 zip: it has no {', '.join(absent)} "
                                 f"(it holds {sorted(names)[:8]})")
            data_text, policy = z.read("data"), z.read("policy.pth")
            version = z.read("_stable_baselines3_version").decode().strip() if "_stable_baselines3_version" in names else ""
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a zip file: {e}") from None
    try:
        data = json.loads(data_text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: its 'data' entry is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: its 'data' entry is not a JSON object")
    return data, read_state_dict(policy, f"{path.name}/policy.pth"), version, sha256_bytes(raw)


def policy_class(data: dict) -> str:
    """``module.Class`` of the saved policy, from the readable attributes SB3 writes beside the pickled class:
    ``__module__`` and the class's own methods, ``"<function Class.method at 0x...>"``."""
    entry = data.get("policy_class")
    if not isinstance(entry, dict) or "__module__" not in entry:
        raise ValueError("the zip's data names no policy class (no readable 'policy_class' entry)")
    names = {m.group(1) for v in entry.values() if isinstance(v, str) and (m := re.match(r"<function (\w+)\.\w+ at ", v))}
    if len(names) != 1:
        raise ValueError(f"cannot read the policy class's name from the zip's data (found {sorted(names) or 'none'})")
    return f"{entry['__module__']}.{names.pop()}"


def _plain(value):
    """A value as SB3 writes a plain attribute: JSON itself, or its ``str`` (``"False"``, ``"2"``)."""
    if isinstance(value, str):
        low = value.strip()
        if low in ("True", "False"):
            return low == "True"
        if re.fullmatch(r"-?\d+", low):
            return int(low)
    return value


def space(data: dict, key: str) -> dict:
    """``{"type": "Box" | "Discrete" | ..., "shape": tuple, "dtype": str, "n": int}`` of a saved space."""
    entry = data.get(key)
    if not isinstance(entry, dict) or ":type:" not in entry:
        raise ValueError(f"the zip's data has no readable {key!r}")
    kind = re.sub(r"['>]", "", str(entry[":type:"])).rsplit(".", 1)[-1]
    shape = entry.get("_shape", entry.get("shape", []))
    try:  # a JSON list, or its str: "[3, 84, 84]", "(4,)"
        shape = tuple(ast.literal_eval(shape) if isinstance(shape, str) else shape or ())
    except (ValueError, SyntaxError, TypeError):
        raise ValueError(f"the zip's {key} has no readable shape ({shape!r})") from None
    return {"type": kind, "shape": tuple(int(d) for d in shape), "dtype": str(entry.get("dtype", "")),
            "n": _plain(entry.get("n"))}


def _class_name(value) -> str:
    """``"<class 'torch.nn.modules.activation.ReLU'>"`` -> ``"ReLU"``."""
    return str(value).strip("<>").replace("class ", "").strip("'").rsplit(".", 1)[-1]


def _dense_layers(state: dict, prefix: str) -> list:
    """``[(key prefix, out, in)]`` of the Linear layers ``prefix.{i}.weight`` (a Sequential), in order."""
    found = sorted((int(m.group(1)), k) for k in state if (m := re.fullmatch(re.escape(prefix) + r"\.(\d+)\.weight", k)))
    return [(k[: -len(".weight")], *state[k].shape) for _, k in found if state[k].dim() == 2]


def _nature_keys(state: dict, prefix: str) -> "dict | None":
    """``{our key: their key}`` of a NatureCNN under ``prefix`` (None: no CNN there); a CNN of another layout
    is refused by name."""
    if f"{prefix}.cnn.0.weight" not in state:
        return None
    convs = [state.get(f"{prefix}.cnn.{i}.weight") for i in (0, 2, 4)]
    got = [(int(w.shape[0]), int(w.shape[-1])) if w is not None and w.dim() == 4 else None for w in convs]
    if tuple(got) != NATURE or f"{prefix}.linear.0.weight" not in state:
        raise ValueError(f"the features extractor {prefix} is not SB3's NatureCNN (convs (out, kernel) {got}, "
                         f"expected {list(NATURE)} and a linear.0): custom extractors are not supported")
    keys = {f"conv{j + 1}.conv.{p}": f"{prefix}.cnn.{i}.{p}" for j, i in enumerate((0, 2, 4)) for p in ("weight", "bias")}
    keys.update({f"fc.0.{p}": f"{prefix}.linear.0.{p}" for p in ("weight", "bias")})
    return keys


def _tower_keys(layers: list, tower: str) -> dict:
    return {f"{tower}_fc{k + 1}.0.{p}": f"{key}.{p}" for k, (key, _, _) in enumerate(layers) for p in ("weight", "bias")}


def obs_layout(obs: dict, env_shape: tuple, normalize: bool) -> tuple:
    """``(obs_scale, reads_hwc)`` for SB3's observation space against the env's obs shape: images must be the
    env's frames transposed channel-first (``reads_hwc`` False) or, where SB3 took them for channel-first, the
    env's frames as they are (``reads_hwc`` True: a dense layer reads them flattened height-first)."""
    env_shape = tuple(int(d) for d in env_shape)
    if obs["type"] == "Discrete":
        if env_shape != (int(obs["n"]),):
            raise ValueError(f"the model observes Discrete({obs['n']}) (one-hot), but the env gives {env_shape}")
        return 1.0, False
    if obs["type"] != "Box":
        raise ValueError(f"the model observes a {obs['type']} space: not supported (Box images or vectors, Discrete)")
    shape = obs["shape"]
    if obs["dtype"] == "uint8" and len(shape) == 3 and len(env_shape) == 3:
        scale = 1 / 255 if normalize else 1.0
        h, w, c = env_shape
        if shape == (c, h, w):
            return scale, False
        if shape == env_shape:
            return scale, True
    elif len(env_shape) == 1 and int(torch.tensor(shape).prod()) == env_shape[0]:
        return 1.0, False
    raise ValueError(f"the model observes {obs['type']}{shape} {obs['dtype']}, which does not match the env's "
                     f"observations {env_shape}: import it with the env (and wrappers) it was trained on")


def _obs_readers(options: dict) -> list:
    """The weights of an ``mlp`` agent without a trunk that read the flat observation: each tower's first
    layer, or the head itself where its tower is empty."""
    readers = ["pi_fc1.0.weight" if options.get("pi_hidden") else "pi.weight"]
    if not options.get("q_values"):
        readers.append("v_fc1.0.weight" if options.get("v_hidden") else "v.weight")
    return readers


def from_sb3(zip_path, out_dir, *, env: str, obs_shape, num_actions: "int | None" = None,
             action_names=None, activation: "str | None" = None, overwrite: bool = False) -> Path:
    """Convert the Stable-Baselines3 zip ``zip_path`` to a policylens checkpoint folder ``out_dir`` for the env
    spec ``env``, whose observations have shape ``obs_shape`` (``(H, W, C)`` or ``(D,)``) and which has
    ``num_actions`` discrete actions. ``activation`` (relu | tanh) overrides the one the zip names (or SB3's
    default). Returns ``out_dir``; ValueError names what does not fit (see the module doc)."""
    data, state, version, digest = read_zip(zip_path)
    name = policy_class(data)
    if name not in SUPPORTED:
        listed = "; ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
        raise ValueError(f"policy class {name} is not supported; supported: {listed}")
    acts = space(data, "action_space")
    if acts["type"] != "Discrete":
        what = "a continuous action space" if acts["type"] == "Box" else f"a {acts['type']} action space"
        raise ValueError(f"the model has {what} ({acts['type']}{acts['shape']}): not supported yet (policylens "
                         "agents take Discrete actions)")
    n = int(acts["n"])
    if num_actions is not None and int(num_actions) != n:
        raise ValueError(f"the model has {n} actions but env {env} has {num_actions}")
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else {}
    extractor = _class_name(kwargs["features_extractor_class"]) if "features_extractor_class" in kwargs else ""
    if extractor and extractor not in ("NatureCNN", "FlattenExtractor"):
        raise ValueError(f"features extractor {extractor} is not supported (NatureCNN, FlattenExtractor)")
    is_dqn = name.startswith("stable_baselines3.dqn.")
    if activation is None:
        given = _class_name(kwargs["activation_fn"]) if "activation_fn" in kwargs else ("ReLU" if is_dqn else "Tanh")
        if given not in ACTIVATIONS:
            raise ValueError(f"activation_fn {given} is not supported; supported: {', '.join(ACTIVATIONS)}")
        activation = ACTIVATIONS[given]
    scale, reads_hwc = obs_layout(space(data, "observation_space"), obs_shape, _plain(kwargs.get("normalize_images", True)))

    keys: dict[str, str] = {}
    options: dict[str, Any] = {"activation": activation}
    if is_dqn:
        trunk = _nature_keys(state, "q_net.features_extractor")
        layers = _dense_layers(state, "q_net.q_net")
        if not layers:
            raise ValueError(f"{Path(zip_path).name}/policy.pth has no q_net.q_net layers: not a DQN policy's weights")
        *hidden, (head, _, _) = layers
        keys.update(_tower_keys(hidden, "pi"))
        keys.update({f"pi.{p}": f"{head}.{p}" for p in ("weight", "bias")})
        options.update(pi_hidden=[int(o) for _, o, _ in hidden], q_values=True)
    else:
        pi_prefix = "pi_features_extractor" if "pi_features_extractor.cnn.0.weight" in state else "features_extractor"
        trunk = _nature_keys(state, pi_prefix)
        if trunk is not None and (vf := _nature_keys(state, "vf_features_extractor")) is not None:
            if any(not torch.equal(state[vf[k]], state[trunk[k]]) for k in trunk):  # shared ones are equal
                options["separate_value"] = True
                keys.update({f"value_trunk.{ours}": theirs for ours, theirs in vf.items()})
        pi_layers = _dense_layers(state, "mlp_extractor.policy_net")
        v_layers = _dense_layers(state, "mlp_extractor.value_net")
        keys.update(_tower_keys(pi_layers, "pi"))
        keys.update(_tower_keys(v_layers, "v"))
        keys.update({f"{ours}.{p}": f"{theirs}.{p}" for ours, theirs in (("pi", "action_net"), ("v", "value_net"))
                     for p in ("weight", "bias")})
        options.update(pi_hidden=[int(o) for _, o, _ in pi_layers], v_hidden=[int(o) for _, o, _ in v_layers])
    if trunk is None:
        arch = "mlp"
        options["hidden_sizes"] = []
    else:
        arch = "nature"
        keys.update(trunk)
        options["fc_dim"] = int(state[trunk["fc.0.weight"]].shape[0])
    absent = sorted(theirs for theirs in keys.values() if theirs not in state)
    if absent:
        raise ValueError(f"{Path(zip_path).name}/policy.pth lacks {absent}")
    mapped = {ours: (theirs, state[theirs]) for ours, theirs in keys.items()}
    if reads_hwc:  # SB3 took (H, W, C) frames for channel-first: it flattened them height-first
        if arch != "mlp":
            raise ValueError(f"SB3 took the env's {tuple(obs_shape)} frames for channel-first and ran its CNN on "
                             "them so: not supported")
        for ours in _obs_readers(options):  # policylens flattens frames channel-first: re-order their columns
            theirs, t = mapped[ours]
            mapped[ours] = (theirs, columns_hwc_to_chw(t, obs_shape))
    config = AgentConfig(arch=arch, obs_shape=tuple(obs_shape), num_actions=n, obs_scale=scale, options=options)
    algorithm = "DQN" if is_dqn else "PPO" if "clip_range" in data else "A2C" if "RMSprop" in str(
        kwargs.get("optimizer_class", "")) else "on-policy actor-critic"
    extra = {"env": str(env), "imported_from": {
        "library": "stable-baselines3", "version": version, "algorithm": algorithm, "policy_class": name,
        "file": Path(zip_path).name, "sha256": digest,
        "value": "max Q-value (the greedy policy's value)" if is_dqn else "value_net"}}
    if action_names:
        extra["action_names"] = list(action_names)
    return build_and_save(config, mapped, out_dir, f"{Path(zip_path).name}/policy.pth", extra, overwrite)
