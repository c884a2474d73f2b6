"""The differentiable simulator (Saliency as causality): a recurrent state-space model of the
agent's environment with the frozen agent inside, so gradients flow through time and through the environment.

>>> from policylens import sim
>>> sim.train_sim(sim.SimTrainConfig(run="zoo:minigrid-do8-recurrent", store="runs/rec/rollouts.zarr",
...                                  out="runs/rec/sim"))
>>> model, agent = sim.load_sim("runs/rec/sim")                 # Simulator (eval), FrozenAgent
>>> z = torch.randn(8, model.config.latent, requires_grad=True)
>>> r = sim.rollout(model, agent, z, steps=20, mode="modal")    # Rollout: obs, logits, value, hx, h, s, ...
>>> r.value[:, -1].sum().backward()                              # d value at the last step / d z

Modules, the model core: :mod:`~policylens.sim.config` (SimConfig), :mod:`~policylens.sim.model` (Simulator),
:mod:`~policylens.sim.obs` (observation encoder/decoder and what the agent sees), :mod:`~policylens.sim.loop`
(FrozenAgent, rollout), :mod:`~policylens.sim.data` (windows from a store), :mod:`~policylens.sim.objective`,
:mod:`~policylens.sim.train`, :mod:`~policylens.sim.checkpoint`, :mod:`~policylens.sim.baseline` (Saliency as
causality's VAE+LSTM), :mod:`~policylens.sim.targets` (what to explain or optimise), :mod:`~policylens.sim.sample`,
:mod:`~policylens.sim.imagined` (imagined episodes: starts, outcomes read from the views, several agents on the same
ones), :mod:`~policylens.sim.guests` (any agent with the simulator's spaces inside it: another run, untrained,
scripted), :mod:`~policylens.sim.video`, :mod:`~policylens.sim.command` (what the commands share). The analyses,
one package each (``core``, ``cli``, ``plots``): :mod:`policylens.sim.analyses` (fidelity, sample, optimize,
saliency, behaviours, agents, report); the hidden-state ones (hx, swap) are in :mod:`policylens.hidden`. Names load
on first use; ``train`` is exported as ``train_sim``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {  # exported name -> (module, relative to this package or absolute, name there)
    **{n: (".config", n) for n in ("SimConfig", "for_data", "obs_kind")},
    **{n: (".model", n) for n in ("Simulator", "Gaussian", "kl_divergence", "balanced_kl")},
    **{n: (".obs", n) for n in ("agent_view", "obs_loss", "obs_score")},
    **{n: (".loop", n) for n in ("FrozenAgent", "Context", "Noise", "Rollout", "rollout", "choose_action",
                                 "agent_sha256", "filtered_start")},
    **{n: (".data", n) for n in ("SimData", "Windows", "load_sim_data")},
    **{n: (".checkpoint", n) for n in ("load_sim", "save_sim", "read_sim_config", "sim_dir")},
    "SimTrainConfig": (".train_config", "SimTrainConfig"), "train_sim": (".train", "train"),
    **{n: ("policylens.hidden.hx.core", n) for n in ("HxAnalysis", "analyze", "project", "store_frames",
                                                     "simulated_frames", "save_analysis", "load_analysis", "zscore")},
    "HxConfig": ("policylens.hidden.hx.cli", "HxConfig"), "run_hx": ("policylens.hidden.hx.cli", "run_hx"),
    **{n: ("policylens.hidden.swap.core", n) for n in ("random_control", "parse_swaps")},
    **{n: ("policylens.hidden.swap.cli", n) for n in ("SwapConfig", "swap_experiment")},
    "simulated_swap": (".imagined", "simulated_swap"), "imagined_outcomes": (".imagined", "imagined_outcomes"),
    **{n: (".targets", n) for n in ("Target", "make_target", "direction_readout", "produced_hx")},
    **{n: (".sample", n) for n in ("sample", "to_trajectories", "write_videos")},
    **{n: (".analyses.sample.cli", n) for n in ("SampleConfig", "run_sample")},
    **{n: (".analyses.optimize.core", n) for n in ("optimize_latents", "Optimized", "load_latents", "save_latents")},
    **{n: (".analyses.optimize.cli", n) for n in ("OptimizeConfig", "run_optimize")},
    **{n: (".analyses.saliency.core", n) for n in ("Saliency", "saliency", "at_step")},
    **{n: (".analyses.saliency.cli", n) for n in ("SaliencyConfig", "run_saliency")},
    **{n: (".baseline", n) for n in ("VaeLstm", "train_baseline", "save_baseline", "load_baseline")},
    **{n: (".analyses.fidelity.core", n) for n in ("score_models", "summarize", "simulator_unroll", "baseline_unroll",
                                                   "repeat_unroll", "held_out_windows", "scored_windows")},
    **{n: (".analyses.fidelity.cli", n) for n in ("FidelityConfig", "run_fidelity")},
    **{n: (".analyses.behaviours.core", n) for n in ("Readout", "jacobians", "simulate", "lagged_xcorr",
                                                     "sign_consistency")},
    **{n: (".analyses.behaviours.cli", n) for n in ("BehavioursConfig", "run_behaviours")},
    "sim_demo": (".demo", "sim_demo"),
    "load_guest": (".guests", "load_guest"), "check_spaces": (".guests", "check_spaces"),
    **{n: (".analyses.agents.core", n) for n in ("play_real", "play_imagined", "ended_outcomes", "paired_table")},
    **{n: (".analyses.agents.cli", n) for n in ("AgentsConfig", "run_agents")},
}


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
