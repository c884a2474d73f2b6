"""``policylens sim SUBCOMMAND``: the differentiable simulator, one sub-command per step, each with ``--help``."""
from __future__ import annotations

from ..subcommands import dispatch

A, H = "policylens.sim.analyses.", "policylens.hidden."  # the analyses' packages

# name -> (module with main(argv), or "module:function", one-line help)
SUBCOMMANDS = {
    "train": ("policylens.sim.train_cli", "train the simulator of a recurrent agent's environment on its rollouts (resumable)"),
    "fidelity": (A + "fidelity.cli", "fidelity on held-out episodes against a VAE+LSTM baseline at equal "
                 "wall time and a repeat-the-last-frame reference: obs, action, value, reward, done per step "
                 "(-> RUN/analysis/fidelity)"),
    "sample": (A + "sample.cli", "imagined rollouts from the latent prior or encoded real starts: arrays, "
               "captioned videos, the trajectory explorer (-> RUN/analysis/sample)"),
    "optimize": (A + "optimize.cli", "generative visualisation: optimise latents to maximise or minimise "
                 "value, a value drop, actions, a hidden unit or direction, kept on the prior; videos and curves "
                 "(-> RUN/analysis/optimize/NAME)"),
    "saliency": (A + "saliency.cli", "saliency through time: gradients of a target at step t w.r.t. "
                 "obs, hx, the simulator's state and actions at every earlier step, with and without the "
                 "environment; SmoothGrad in latent space; blue/red videos (-> RUN/analysis/saliency)"),
    "hx": (H + "hx.cli", "hidden-state analysis: z-scored hx -> PCA/ICA/NMF, k-means, t-SNE, figures; "
           "simulated hx on the real components (-> RUN/analysis/hx)"),
    "behaviours": (A + "behaviours.cli", "cluster simulated agent+simulator dynamics into behaviours; "
                   "lagged cross-correlation vs cross-causation (gradient) matrices of hx directions with and "
                   "without the environment, sign consistency against a shuffled null (-> RUN/analysis/behaviours)"),
    "swap": (H + "swap.cli", "swap hidden-state directions: the agent, the swap and a random control on the "
             "same levels (and imagined episodes in the simulator), failures by cause with paired tests"),
    "agents": (A + "agents.cli", "other agents inside the simulator (untrained, scripted:forward, any run "
               "with its spaces) against the same agents in the environment from the same starts: outcomes by "
               "cause, real against imagined, with intervals; videos (-> RUN/analysis/agents)"),
    "report": (A + "report.cli", "one markdown report of what the sim commands found on a run, figures "
               "copied beside it (-> RUN/analysis/report)"),
}

EXAMPLES = [
    "policylens record zoo:minigrid-do8-recurrent --episodes 2000",
    "policylens sim train zoo:minigrid-do8-recurrent      # -> runs/minigrid-do8-recurrent/sim",
    "policylens sim fidelity zoo:minigrid-do8-recurrent",
    "policylens sim sample zoo:minigrid-do8-recurrent --n 8 --start real",
    "policylens sim optimize zoo:minigrid-do8-recurrent --target value --minimize true",
    "policylens sim saliency zoo:minigrid-do8-recurrent --target value --t 12 --samples 0-3",
    "policylens sim hx zoo:minigrid-do8-recurrent",
    "policylens sim behaviours zoo:minigrid-do8-recurrent",
    "policylens sim sample zoo:minigrid-do8-recurrent --agent scripted:forward --n 8",
    "policylens sim agents zoo:minigrid-do8-recurrent --agents trained,untrained,scripted:forward,scripted:left "
    "--episodes 500",
    "policylens sim swap zoo:minigrid-do8-recurrent --directions runs/minigrid-do8-recurrent/analysis/hx/ica "
    "--swap 0:1 --episodes 1000",
]


def main(argv=None):
    return dispatch("sim", SUBCOMMANDS, EXAMPLES, argv)


if __name__ == "__main__":
    main()
