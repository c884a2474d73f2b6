"""What every importer shares: reading foreign weights without unpickling, loading them by an explicit key
map with errors that name the tensor, and writing the policylens checkpoint.

The one place a ``.pth`` / ``.pt`` file is opened: :func:`read_state_dict`, with
``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: tensors and plain containers only; a file
holding anything else, such as code to run, is refused before any of it is built).
"""
from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import save_agent
from ..registry import AgentConfig, build

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # nn.DataParallel / torch.compile


def strip_wrappers(key: str) -> str:
    """A state-dict key without the prefixes ``nn.DataParallel`` (``module.``) and ``torch.compile``
    (``_orig_mod.``) add."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def read_state_dict(source, what: str) -> dict:
    """``{name: tensor}`` from a ``.pth`` / ``.pt`` file (a path, or its bytes), read with
    ``torch.load(weights_only=True)``; ``what`` names it in errors. Anything but a flat state dict of tensors
    (a pickled module, an object to build, code to run) is refused with a ValueError."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no such file {path}")
        source = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(source), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{what} is not a file of tensors that torch.load(weights_only=True) accepts (it was "
                         f"not unpickled): {first}") from None
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return {strip_wrappers(str(k)): v for k, v in state.items()}
    kind = type(state).__name__
    keys = f" with keys {sorted(map(str, state))[:8]}" if isinstance(state, dict) else ""
    raise ValueError(f"{what} holds a {kind}{keys}, not a state dict of tensors (name -> tensor); save "
                     "model.state_dict() with torch.save")


def load_mapped(agent: nn.Module, mapped: dict, source: str) -> None:
    """Load ``mapped`` = ``{our key: (their key, tensor)}`` into ``agent``: every parameter filled, each
    shape checked. A tensor that does not fit is named with both shapes (``source`` says where it came from)."""
    own = agent.state_dict()
    wrong = [f"{theirs} has shape {tuple(t.shape)} but the inferred architecture needs {tuple(own[ours].shape)} "
             f"(for {ours})" for ours, (theirs, t) in mapped.items() if ours in own and t.shape != own[ours].shape]
    if wrong:
        raise ValueError(f"{source}: weights do not fit the architecture inferred from them: {'; '.join(wrong)}")
    missing = [k for k in own if k not in mapped]
    unknown = [theirs for ours, (theirs, _) in mapped.items() if ours not in own]
    if missing or unknown:
        raise ValueError(f"{source}: weights do not fit the architecture inferred from them: the agent's "
                         f"{missing} have no tensor, and {unknown} have no place in it")
    agent.load_state_dict({ours: t.detach().to(own[ours].dtype) for ours, (_, t) in mapped.items()}, strict=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_and_save(config: AgentConfig, mapped: dict, out_dir, source: str, extra: dict,
                   overwrite: bool = False) -> Path:
    """Build ``config``'s agent, load ``mapped`` into it (:func:`load_mapped`) and write the checkpoint
    ``out_dir`` (refused when one is there, unless ``overwrite``). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and not overwrite:
        raise ValueError(f"{out_dir} already holds a checkpoint; pass --overwrite to replace it")
    agent = build(config)
    load_mapped(agent, mapped, source)
    return save_agent(agent, config, out_dir, extra=extra)


def columns_hwc_to_chw(weight: torch.Tensor, shape) -> torch.Tensor:
    """The weight of a dense layer that read an ``(H, W, C)`` observation flattened as is, re-ordered to read it
    flattened channel-first, as policylens agents flatten images: ``(out, H*W*C)`` -> ``(out, C*H*W)``."""
    h, w, c = shape
    return weight.reshape(weight.shape[0], h, w, c).permute(0, 3, 1, 2).reshape(weight.shape[0], -1)
