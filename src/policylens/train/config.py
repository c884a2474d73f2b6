"""PPO's configuration and the presets for the standard setups."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Optional


@dataclass
class TrainConfig:
    out: str = "runs/train"
    """run directory to write (agent/, train.csv, curve.png)"""
    preset: str = "minigrid"
    """starting hyperparameters: minigrid | classic | procgen-easy | procgen-hard-rec (other options override them)"""
    env: Optional[str] = None
    """env spec string (default: the preset's)"""
    arch: Optional[str] = None
    """agent architecture: impala | clear | cnn | nature | mlp | attention (mlp for vector observations) (default: the preset's)"""
    recurrent: Optional[bool] = None
    """put a GRU (64 hidden, learned initial state) before the heads (default: the preset's)"""
    total_frames: Optional[int] = None
    """environment frames to train for (default: the preset's)"""
    num_envs: Optional[int] = None
    """parallel environments (default: the preset's)"""
    num_steps: Optional[int] = None
    """steps per env per rollout (default: the preset's)"""
    lr: Optional[float] = None
    """Adam learning rate (default: the preset's)"""
    anneal_lr: Optional[bool] = None
    """linearly anneal the learning rate to 0 (default: the preset's)"""
    num_minibatches: Optional[int] = None
    """minibatches per epoch (default: the preset's)"""
    update_epochs: Optional[int] = None
    """PPO epochs per rollout (default: the preset's)"""
    gamma: Optional[float] = None
    """discount (default: the preset's)"""
    gae_lambda: Optional[float] = None
    """GAE lambda (default: the preset's)"""
    clip_coef: float = 0.2
    """PPO clip range"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value-loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    norm_reward: bool = True
    """scale rewards by the running std of the discounted return (clipped to +-10)"""
    attention_entropy_coef: float = 0.0
    """rl-attention's penalty on the entropy of layer 'attention' (their "region of interest": 1e-3 to 1e-2)"""
    bptt: int = 0
    """recurrent agents: truncated-BPTT segment length (0: the whole rollout)"""
    seed: int = 1
    """seeds the envs, the initialisation, sampling and minibatch order"""
    checkpoint_every: int = 10
    """save a resumable checkpoint every this many updates (and at the end)"""
    init_from: str = ""
    """start from this run's / zoo agent's weights (same architecture), e.g. for a curriculum over env sizes"""
    value_warmup: int = 0
    """the first updates train the value head alone, every other weight held (for init_from: the value fits this run's reward scale before its advantages move the policy)"""
    resume: bool = False
    """continue from OUT/agent's last checkpoint (same seed: same weights as an uninterrupted run)"""
    overwrite: bool = False
    """replace the agent, train.csv and curve.png already in OUT (without it, or --resume, an existing run is refused)"""
    bf16: Optional[bool] = None
    """bfloat16 autocast + channels_last (about 2x faster for procgen CNNs on CPU) (default: the preset's)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar"""

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # MiniGrid Dynamic Obstacles from RGB, fast on a CPU.
    "minigrid": dict(env="minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb", arch="cnn", total_frames=1_000_000,
                     num_envs=16, num_steps=128, lr=5e-4, num_minibatches=4, update_epochs=4, gamma=0.99,
                     gae_lambda=0.95, anneal_lr=True),
    # CartPole from its 4 numbers (any gym: env with vector observations): an MLP, a short run.
    "classic": dict(env="gym:CartPole-v1", arch="mlp", total_frames=100_000, num_envs=16, num_steps=128, lr=5e-4,
                    num_minibatches=4, update_epochs=4, gamma=0.99, gae_lambda=0.95, anneal_lr=True),
    # CleanRL ppo_procgen's hyperparameters.
    "procgen-easy": dict(env="procgen:coinrun?distribution_mode=easy&use_backgrounds=false&num_levels=0",
                         arch="impala", total_frames=25_000_000, num_envs=64, num_steps=256, lr=5e-4,
                         num_minibatches=8, update_epochs=3, gamma=0.999, gae_lambda=0.95, anneal_lr=True, bf16=True),
    # interpreting-rl-behavior's hard-rec: 256 envs, minibatch 2048 (8 envs x 256 steps), recurrent.
    "procgen-hard-rec": dict(env="procgen:coinrun?distribution_mode=hard&num_levels=0", arch="impala",
                             recurrent=True, total_frames=200_000_000, num_envs=256, num_steps=256, lr=5e-4,
                             num_minibatches=32, update_epochs=3, gamma=0.999, gae_lambda=0.95, bf16=True),
}


#: Values of the preset-able fields that a preset leaves unset.
FALLBACK = dict(anneal_lr=False, recurrent=False, bf16=False)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill every unset (None) field from the preset, then from FALLBACK; explicit values win."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; expected one of {', '.join(PRESETS)}")
    merged = {**FALLBACK, **PRESETS[cfg.preset]}
    return replace(cfg, **{k: v for k, v in merged.items() if getattr(cfg, k) is None})
