"""The windows an analysis of a decision transformer reads, and where they come from.

``policylens dt analyze`` draws its windows from a trajectory store (``--store``, default the one the model was
trained on) and saves the draw beside its results, ``RUN/analysis/windows.safetensors`` (with the store's
episode causes in the metadata), so the analysis can be redone without the store. ``dt analyze`` and
``dt ablate`` read windows from, in order: ``--store``; the training store, when it is there; the windows an
earlier analysis saved (in the run's outputs, ``runs/NAME/analysis`` for a zoo model); the ``windows.safetensors``
a model ships beside its ``agent/`` (the zoo's ``dt-minigrid-do8`` does, as its 5 MB store is not committed).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

FILE = "windows.safetensors"
FORMAT = "policylens.dt.windows/1"
FIELDS = ("states", "actions", "rtgs", "timesteps", "mask")


def model_folder(run) -> Path:
    """The folder of the model itself (the zoo's entry for a zoo model): where it ships its analysis."""
    from ..checkpoint import dt_dir

    folder = dt_dir(run)
    return folder.parent if folder.name == "agent" else folder


def saved_windows(run) -> "Path | None":
    """The windows saved for RUN: an earlier analysis's ``analysis/windows.safetensors`` (of the run's outputs,
    then of the model's folder), else the ``windows.safetensors`` the model ships beside its ``agent/``; None."""
    from ...runs import run_dir

    folder = model_folder(run)
    for path in (run_dir(run, folder) / "analysis" / FILE, folder / "analysis" / FILE, folder / FILE):
        if path.is_file():
            return path
    return None


def save_windows(path, inputs, source: dict) -> Path:
    """Write ``inputs`` (DTInputs) and ``source`` (JSON-able: store, data_causes, seed, ...) to ``path``."""
    from safetensors.torch import save_file

    tensors = {name: getattr(inputs, name).contiguous() for name in FIELDS if getattr(inputs, name) is not None}
    save_file(tensors, str(path), metadata={"format": FORMAT, "source": json.dumps(source)})
    return Path(path)


def read_windows(path) -> tuple:
    """``(DTInputs, source dict)`` from a file :func:`save_windows` wrote."""
    from safetensors import safe_open

    from .inputs import DTInputs

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved window sample of a decision-transformer analysis "
                             f"(format {meta.get('format')!r}, expected {FORMAT!r})")
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    missing = [name for name in FIELDS[:4] if name not in tensors]
    if missing:
        raise ValueError(f"{path} lacks the window field(s) {', '.join(missing)}")
    inputs = DTInputs(tensors["states"], tensors["actions"], tensors["rtgs"], tensors["timesteps"], tensors.get("mask"))
    return inputs, json.loads(meta.get("source", "{}"))


def data_causes(store) -> dict:
    """How the store's episodes ended: ``{cause: episodes}``."""
    from collections import Counter

    from ...rollouts import open as open_store

    return dict(Counter(str(c) for c in open_store(Path(store)).index["cause"]))


def load_windows(model, run, store: str, n: int, seed: int) -> tuple:
    """``(DTInputs, source)``: ``n`` random windows (seeded) of the model's context from ``store`` (default: its
    training store when it is there, else the saved windows, see the module's doc); ``source`` names where they
    came from (``store``, ``data_causes``, ``saved`` for a saved sample)."""
    from ..checkpoint import read_dt_config
    from ..data import load_trajectories
    from .inputs import as_inputs

    trained_on = read_dt_config(run)[1].get("data", {}).get("store", "")
    if not store and trained_on and Path(trained_on).exists():
        store = trained_on
    if store:
        traj = load_trajectories(store)
        frames = np.random.default_rng(seed).choice(traj.num_frames, size=min(n, traj.num_frames), replace=False)
        inputs = as_inputs(traj.windows(np.sort(frames), model.config.context))
        return inputs, {"store": str(store), "data_causes": data_causes(store), "seed": seed, "windows": n}
    saved = saved_windows(run)
    if saved is None:
        raise FileNotFoundError(
            f"the store this model was trained on ({trained_on or 'not recorded'}) is not there, and no saved "
            f"windows ({FILE}) lie beside the model; make the store with `policylens dt collect AGENT --episodes N "
            f"--out {trained_on or 'STORE'}` (AGENT: the PPO agent the model learnt from) or pass --store STORE")
    inputs, source = read_windows(saved)
    if inputs.context != model.config.context:
        raise ValueError(f"{saved} holds windows of {inputs.context} timestep(s); the model reads "
                         f"{model.config.context}")
    if (source.get("seed"), source.get("windows")) != (seed, n):
        print(f"[dt] the training store is not there; using the {inputs.batch_size} windows saved in {saved} "
              f"(seed {source.get('seed')}), not a new draw of {n} with seed {seed}", file=sys.stderr)
    return inputs.select(list(range(min(n, inputs.batch_size)))), {**source, "saved": str(saved)}
