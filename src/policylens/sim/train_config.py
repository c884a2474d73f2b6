"""The settings of ``policylens sim train`` (:class:`SimTrainConfig`), apart from the training loop
(:mod:`policylens.sim.train`) so the objective (:mod:`policylens.sim.objective`) can name them without importing it."""
from __future__ import annotations

from dataclasses import dataclass, field

from .config import SimConfig


@dataclass
class SimTrainConfig:
    run: str = ""
    """the recurrent agent's run directory, checkpoint folder or zoo:NAME"""
    store: str = ""
    """rollouts store of that agent (default: RUN/rollouts.zarr, runs/NAME/rollouts.zarr for zoo:NAME); several, comma-separated, train together (e.g. its own play and a higher-temperature policy's), held-out episodes drawn from the first"""
    out: str = ""
    """simulator folder (default: RUN/sim, runs/NAME/sim for zoo:NAME)"""
    window: int = 16
    """frames per training window (the first context_frames of them also feed the encoder)"""
    steps: int = 2000
    """optimizer steps (raise it with --resume to train on)"""
    seconds: float = 0.0
    """also stop once the optimizer steps have taken this many seconds, summed over resumed runs (0: no time limit;
    the rule the VAE+LSTM baseline's equal-time budget follows, so both can be given the same seconds)"""
    batch_size: int = 32
    """windows per step, over all ranks (a multiple of the number of ranks)"""
    lr: float = 3e-4
    """AdamW learning rate"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 10.0
    """gradient clipping (0: off)"""
    ema: float = 0.998
    """decay of an exponential moving average of the weights, which is what is saved, scored and used by the other
    commands (0: off, the last step's weights); it warms up as min(ema, (1 + step) / (10 + step))"""
    kl_balance: float = 0.8
    """DreamerV2's KL balancing: weight of KL(sg(posterior) || prior), the rest on KL(posterior || sg(prior))"""
    free_nats: float = 1.0
    """each step's KL term counts at least this many nats (no gradient below it)"""
    kl_weight: float = 1.0
    """weight of the balanced posterior-prior KL"""
    z_kl_weight: float = 1.0
    """weight of KL(q(z | context) || N(0, I))"""
    obs_weight: float = 1.0
    """weight of the observation loss"""
    reward_weight: float = 1.0
    """weight of the reward loss"""
    done_weight: float = 1.0
    """weight of the episode-end loss"""
    hx_weight: float = 1.0
    """weight of the loss between the agent-in-the-loop's hidden state and the recorded one"""
    logits_weight: float = 1.0
    """weight of KL(recorded policy || policy of the agent in the loop)"""
    open_loop_weight: float = 0.25
    """weight of the same windows unrolled open-loop (prior only, from z, recorded actions), scored with the
    weights above (observation overshooting; a second unroll per step; 0: teacher forcing alone); what it trains
    is set by open_loop_detaches"""
    prior_obs_weight: float = 0.0
    """weight of the observation loss of each recorded frame decoded from the prior one step after the posterior
    state before it (decode(h_t, s_t from p(s_t | h_t), as prior_step_latent says) against o_t): trains the
    decoder on the states a filtered start predicts one step after its context (0: off; prior_step_weight scores
    the whole step)"""
    prior_step_weight: float = 1.0
    """weight of that whole first prior step, scored on the obs, reward and done terms with their weights: the frame
    decoded from the prior, and the reward and episode end of the recorded action taken from that prior state (what
    a filtered start predicts one step after its context; 0: off, and sim fidelity then reads from z alone)"""
    prior_trains_readouts: bool = True
    """the prior_obs and prior_step terms also train the decoder and the reward and episode-end heads (false: they
    read them with their weights detached and train the dynamics alone, so the readouts learn from the posterior's
    states and are not taught to hedge on the prior's)"""
    open_loop_detaches: str = "decoder"
    """the readouts the open-loop term reads with their weights detached, so that it does not train them: none,
    decoder (the reward and episode-end heads still learn from the prior's states) or readouts (decoder and both
    heads: the term trains the dynamics alone). With the decoder detached it learns from the posterior's states
    and is not taught to hedge on frames the prior cannot foresee, such as where a moving ball will be; with the
    heads detached too, the reward and episode-end heads learn from the posterior's states alone and drift from
    the prior's over long unrolls"""
    obs_balance: float = 0.0
    """weight each cell of the observation loss by (share of its object type in the store's frames) ** -this,
    normalised to a mean of 1 (0: every cell alike; categorical views). MiniGrid's moving balls are a few cells of a
    view and vanish from the simulator's frames"""
    prior_step_latent: str = "mean"
    """the prior state s_t the prior_obs and prior_step terms read: mean (the prior's mean, what sim fidelity's
    filtered start reads one step after its context) or sample (a draw with the step's noise, so the heads are
    trained on draws but read the mean in a filtered start)"""
    open_loop_start: str = "z"
    """where that open-loop unroll starts: z (the prior from z alone, as imagination starts) or mixed (each window
    first reads 0 to context_frames-1 of its context frames after the first through the posterior, drawn
    uniformly, so unrolls from z alone and from the filtered context are both trained)"""
    tail_windows: bool = True
    """also train on windows that run past their episode's end (padded; at least one frame after the context left),
    as sim fidelity scores them (false: whole windows inside an episode alone, where an episode ends only in a
    window's last frames, and the episode-end head can learn the step count instead of the goal)"""
    val_fraction: float = 0.1
    """share of the episodes held out"""
    val_windows: int = 256
    """held-out windows scored at each CSV row"""
    max_episodes: int = 0
    """read only the store's first N episodes (0: all)"""
    eval_every: int = 100
    """steps between CSV rows"""
    checkpoint_every: int = 500
    """steps between checkpoints"""
    seed: int = 0
    """seed of the initial weights, the windows and the noise (and of the split, unless split_seed is set)"""
    split_seed: int = -1
    """seed of the held-out split and of its scored windows (-1: seed); runs that differ in seed alone but share it
    hold out the same episodes, so sim fidelity scores them against one baseline"""
    resume: bool = False
    """continue from OUT/trainer, the last checkpoint"""
    overwrite: bool = False
    """replace the simulator already in OUT (without it, or --resume, it is refused)"""
    bf16: bool = False
    """bfloat16 autocast for the forward pass"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    device: str = "cpu"
    """torch device (cuda: each rank takes cuda:LOCAL_RANK)"""
    progress: bool = True
    """show a progress bar with the loss"""
    sim: SimConfig = field(default_factory=SimConfig)
    """the simulator's architecture (its fields are options of their own)"""
