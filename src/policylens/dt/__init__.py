"""Decision transformers on MiniGrid (Decision Transformer Interpretability): trajectories, a
TransformerLens-hooked model, training, calibration.

>>> from policylens import dt
>>> dt.collect_trajectories(dt.CollectConfig(run="zoo:minigrid-do8-rgb", episodes=1000,
...                                           out="runs/dt/trajectories.zarr"))
>>> dt.train_dt(dt.DTTrainConfig(store="runs/dt/trajectories.zarr", out="runs/dt"))
>>> model = dt.load_dt("runs/dt")                       # DecisionTransformer, a HookedRootModule
>>> logits, cache = model.run_with_cache(states, actions, rtgs, timesteps)   # (B, K, A), ActivationCache
>>> cache["blocks.0.attn.hook_pattern"]                  # (B, heads, 3K-1, 3K-1)
>>> dt.calibrate_dt(dt.CalibrateConfig(run="runs/dt"))      # RUN/calibration.json, .png, behaviours.md

Interfaces for analyses: :mod:`policylens.dt.model` (the model, its hook names and token layout),
:mod:`policylens.dt.data` (windows from a store: :class:`~policylens.dt.data.Batch`), :mod:`policylens.dt.play`
(playing at a target RTG with common random numbers). Importing the model pulls in transformer_lens (~20 s),
so the names below load on first use. The functions of the ``collect``, ``train``, ``calibrate`` and ``play``
modules are exported as ``collect_trajectories``, ``train_dt``, ``calibrate_dt`` and ``play_episodes`` (the
bare names are the submodules).
"""
from __future__ import annotations

import importlib

_EXPORTS = {  # exported name -> (module, name there)
    **{n: ("model", n) for n in ("DecisionTransformer", "DTConfig", "ARCH")},
    **{n: ("data", n) for n in ("Trajectories", "Batch", "load_trajectories", "returns_to_go")},
    **{n: ("strategies", n) for n in ("Strategy", "parse_strategies", "allocate")},
    **{n: ("collect", n) for n in ("observe_as", "rtg_report")}, "CollectConfig": ("collect_config", "CollectConfig"),
    **{n: ("checkpoint", n) for n in ("load_dt", "save_dt", "read_dt_config")},
    "collect_trajectories": ("collect", "collect"), "train_dt": ("train", "train"),
    "DTTrainConfig": ("train_config", "DTTrainConfig"),
    "calibrate_dt": ("calibrate", "calibrate"), "CalibrateConfig": ("calibrate", "CalibrateConfig"),
    "play_episodes": ("play", "play"), "summarize": ("play", "summarize"), "dt_demo": ("demo", "dt_demo"),
}


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
