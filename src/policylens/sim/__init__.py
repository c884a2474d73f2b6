"""The differentiable simulator (Saliency as causality): a recurrent state-space model of the
agent's environment with the frozen agent inside, so gradients flow through time and through the environment.

>>> from policylens import sim
>>> sim.train_sim(sim.SimTrainConfig(run="zoo:minigrid-do8-recurrent", store="runs/rec/rollouts.zarr",
...                                  out="runs/rec/sim"))
>>> model, agent = sim.load_sim("runs/rec/sim")                 # Simulator (eval), FrozenAgent
>>> z = torch.randn(8, model.config.latent, requires_grad=True)
>>> r = sim.rollout(model, agent, z, steps=20, mode="modal")    # Rollout: obs, logits, value, hx, h, s, ...
>>> r.value[:, -1].sum().backward()                              # d value at the last step / d z

Modules: :mod:`~policylens.sim.config` (SimConfig), :mod:`~policylens.sim.model` (Simulator),
:mod:`~policylens.sim.obs` (observation encoder/decoder and what the agent sees), :mod:`~policylens.sim.loop`
(FrozenAgent, rollout), :mod:`~policylens.sim.data` (windows from a store), :mod:`~policylens.sim.train`,
:mod:`~policylens.sim.checkpoint`, :mod:`~policylens.sim.hx` (hidden-state analysis: PCA/ICA/NMF, k-means,
t-SNE; simulated states on the real components), :mod:`~policylens.sim.swap` (hidden-state direction swaps with
paired statistics and a random control, in the env and in the simulator), :mod:`~policylens.sim.targets` (what to
explain or optimise), :mod:`~policylens.sim.sample`, :mod:`~policylens.sim.optimize` (generative visualisation),
:mod:`~policylens.sim.saliency` (saliency through time), :mod:`~policylens.sim.fidelity` (against
:mod:`~policylens.sim.baseline`, Saliency as causality's VAE+LSTM), :mod:`~policylens.sim.behaviours`, :mod:`~policylens.sim.video`,
:mod:`~policylens.sim.command` (what the commands share), :mod:`~policylens.sim.guests` (any agent with the
simulator's spaces inside it: another run, untrained, scripted), :mod:`~policylens.sim.compare_agents` (those
agents in the simulator against the environment, ``sim agents``). Names load on first use; ``train`` is exported as
``train_sim``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {  # exported name -> (module, name there)
    **{n: ("config", n) for n in ("SimConfig", "for_data", "obs_kind")},
    **{n: ("model", n) for n in ("Simulator", "Gaussian", "kl_divergence", "balanced_kl")},
    **{n: ("obs", n) for n in ("agent_view", "obs_loss", "obs_score")},
    **{n: ("loop", n) for n in ("FrozenAgent", "Context", "Noise", "Rollout", "rollout", "choose_action",
                                "agent_sha256", "filtered_start")},
    **{n: ("data", n) for n in ("SimData", "Windows", "load_sim_data")},
    **{n: ("checkpoint", n) for n in ("load_sim", "save_sim", "read_sim_config", "sim_dir")},
    "SimTrainConfig": ("train", "SimTrainConfig"), "train_sim": ("train", "train"),
    **{n: ("hx", n) for n in ("HxAnalysis", "analyze", "project", "store_frames", "simulated_frames",
                              "save_analysis", "load_analysis", "zscore")},
    "HxConfig": ("hx_cli", "HxConfig"), "run_hx": ("hx_cli", "run_hx"),
    **{n: ("swap", n) for n in ("SwapConfig", "swap_experiment", "random_control", "parse_swaps")},
    "simulated_swap": ("swap_sim", "simulated_swap"), "imagined_outcomes": ("swap_sim", "imagined_outcomes"),
    **{n: ("targets", n) for n in ("Target", "make_target", "direction_readout", "produced_hx")},
    **{n: ("sample", n) for n in ("sample", "to_trajectories", "write_videos", "SampleConfig", "run_sample")},
    **{n: ("optimize", n) for n in ("optimize_latents", "Optimized", "load_latents", "save_latents")},
    "OptimizeConfig": ("optimize_cli", "OptimizeConfig"), "run_optimize": ("optimize_cli", "run_optimize"),
    **{n: ("saliency", n) for n in ("Saliency", "saliency", "at_step")},
    "SaliencyConfig": ("saliency_cli", "SaliencyConfig"), "run_saliency": ("saliency_cli", "run_saliency"),
    **{n: ("baseline", n) for n in ("VaeLstm", "train_baseline", "save_baseline", "load_baseline")},
    **{n: ("fidelity", n) for n in ("score_models", "summarize", "simulator_unroll", "baseline_unroll",
                                    "repeat_unroll", "held_out_windows", "scored_windows")},
    "FidelityConfig": ("fidelity_cli", "FidelityConfig"), "run_fidelity": ("fidelity_cli", "run_fidelity"),
    **{n: ("behaviours", n) for n in ("Readout", "jacobians", "simulate", "lagged_xcorr", "sign_consistency")},
    "BehavioursConfig": ("behaviours_cli", "BehavioursConfig"), "run_behaviours": ("behaviours_cli", "run_behaviours"),
    "sim_demo": ("demo", "sim_demo"),
    "load_guest": ("guests", "load_guest"), "check_spaces": ("guests", "check_spaces"),
    **{n: ("compare_agents", n) for n in ("play_real", "play_imagined", "ended_outcomes", "paired_table")},
    "AgentsConfig": ("agents_cli", "AgentsConfig"), "run_agents": ("agents_cli", "run_agents"),
}


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
