"""PPO's configuration and the presets for the standard setups."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Optional, cast


@dataclass
class TrainConfig:
    out: str = "runs/train"
    """run directory to write (agent/, train.csv, curve.png)"""
    preset: str = "minigrid"
    """starting hyperparameters: minigrid | minigrid-mlp | minigrid-recurrent | classic | procgen-easy | procgen-hard-rec | atari (other options override them)"""
    env: Optional[str] = None
    """env spec string (default: the preset's)"""
    arch: Optional[str] = None
    """agent architecture: impala | clear | cnn | nature | mlp | attention (mlp for vector observations) (default: the preset's)"""
    recurrent: Optional[bool] = None
    """put a GRU (64 hidden, learned initial state) before the heads (default: the preset's)"""
    total_frames: Optional[int] = None
    """environment steps to train for, summed over the envs (an Atari step is frame_skip=4 emulator frames) (default: the preset's)"""
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
    clip_coef: Optional[float] = None
    """PPO clip range, of the policy ratio and (with clip_vloss) of the value's change (default: the preset's)"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value-loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    norm_reward: Optional[bool] = None
    """scale rewards by the running std of the discounted return (clipped to +-10) (default: the preset's)"""
    norm_adv: Optional[bool] = None
    """normalise advantages to mean 0, std 1 in each minibatch (default: the preset's)"""
    clip_vloss: Optional[bool] = None
    """clip the value loss as CleanRL does: the worse of the plain and the clipped error (default: the preset's)"""
    init: Optional[str] = None
    """weight init: orthogonal (CleanRL's: gain sqrt(2), 0.01 on the policy head, 1 on the value head, zero biases) | heads (torch's default, orthogonal heads only) | default (torch's) (default: the preset's)"""
    arch_options: Optional[str] = None
    """architecture options, comma-separated key=value, e.g. hidden_sizes=[64,64],activation=tanh for mlp (default: the preset's)"""
    attention_entropy_coef: float = 0.0
    """rl-attention's penalty on the entropy of layer 'attention' (their "region of interest": 1e-3 to 1e-2)"""
    bptt: Optional[int] = None
    """recurrent agents: truncated-BPTT segment length, a divisor of num_steps (0: the whole rollout) (default: the preset's)"""
    stop_success: float = 0.0
    """stop once the last 100 finished episodes succeed at least this often, e.g. 0.95 (0: train all total_frames)"""
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
    """bfloat16 autocast of the agent's forward passes: faster for CNNs on hardware with native bf16 (AVX512-BF16/AMX CPUs, recent GPUs), about 9x slower without it (default: the preset's; the CNN presets turn it on where the hardware has it)"""
    channels_last: Optional[bool] = None
    """store conv weights channels_last (NHWC), the layout the env's frames already have (default: bf16's value)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    env_workers: int = 1
    """processes stepping the envs where they step in Python (MiniGrid, gym:), with the same results whatever the number: more than 1 pays where the machine has physical cores to spare"""
    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar"""

    def to_dict(self) -> dict:
        return asdict(self)


if TYPE_CHECKING:
    class ResolvedTrainConfig(TrainConfig):
        """A :class:`TrainConfig` after :func:`resolve` (for the type checker only: at run time it is the same
        class): every field that says "default: the preset's" holds a value."""

        env: str
        arch: str
        recurrent: bool
        total_frames: int
        num_envs: int
        num_steps: int
        lr: float
        anneal_lr: bool
        num_minibatches: int
        update_epochs: int
        gamma: float
        gae_lambda: float
        clip_coef: float
        norm_reward: bool
        norm_adv: bool
        clip_vloss: bool
        init: str
        arch_options: str
        bptt: int
        bf16: bool
        channels_last: bool


#: What Dynamic-Obstacles-8x8 needs from scratch (benchmarks/README.md, "PPO: MiniGrid from scratch"): no reward or advantage
#: normalisation (a -1 penalty before any goal is seen, scaled up by either, drives the policy to turn in place),
#: CleanRL's orthogonal init, a constant learning rate, minibatches of 256; and, without pixels, the one-hot
#: view: in the integer view the goal (8) reads as "more of" a ball (6) or wall (2), the penalty for walking
#: into those generalises to the goal, and the agent never steps onto it.
_MINIGRID = dict(num_envs=16, num_steps=128, num_minibatches=8, update_epochs=4, gamma=0.99, gae_lambda=0.95,
                 anneal_lr=False, norm_adv=False, norm_reward=False, clip_vloss=True, init="orthogonal")
_DO8 = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"
PRESETS: dict[str, dict[str, Any]] = {
    # MiniGrid Dynamic Obstacles from the RGB view, a small CNN.
    "minigrid": dict(_MINIGRID, env=_DO8 + "?obs=rgb", arch="cnn", lr=5e-4, total_frames=1_000_000),
    # The symbolic grid one-hot encoded (7x7x20), CleanRL ppo.py's 64-64 tanh MLP.
    "minigrid-mlp": dict(_MINIGRID, env=_DO8 + "?obs=onehot", arch="mlp",
                         arch_options="hidden_sizes=[64,64],activation=tanh", lr=1e-3, total_frames=500_000),
    # The one-hot view, the CNN with a GRU before the heads, truncated BPTT over 16 steps (minibatches of 16
    # sequences from all envs rather than 2 whole-rollout sequences).
    "minigrid-recurrent": dict(_MINIGRID, env=_DO8 + "?obs=onehot", arch="cnn", recurrent=True, bptt=16, lr=1e-3,
                               total_frames=1_000_000),
    # CartPole from its 4 numbers (any gym: env with vector observations): an MLP, a short run.
    "classic": dict(env="gym:CartPole-v1", arch="mlp", total_frames=100_000, num_envs=16, num_steps=128, lr=5e-4,
                    num_minibatches=4, update_epochs=4, gamma=0.99, gae_lambda=0.95, anneal_lr=True),
    # CleanRL ppo_procgen's hyperparameters.
    "procgen-easy": dict(env="procgen:coinrun?distribution_mode=easy&use_backgrounds=false&num_levels=0",
                         arch="impala", total_frames=25_000_000, num_envs=64, num_steps=256, lr=5e-4,
                         num_minibatches=8, update_epochs=3, gamma=0.999, gae_lambda=0.95, anneal_lr=True, bf16="auto"),
    # CleanRL ppo_atari's hyperparameters with its Nature CNN: 84x84x4 grey frames, and as it trains, a lost life
    # ends the episode for the learner and rewards are clipped to their sign (episode records keep the score).
    "atari": dict(env="atari:breakout?episodic_life=true&clip_reward=true", arch="nature", total_frames=10_000_000, num_envs=8, num_steps=128,
                  lr=2.5e-4, anneal_lr=True, num_minibatches=4, update_epochs=4, gamma=0.99, gae_lambda=0.95,
                  clip_coef=0.1, norm_adv=True, clip_vloss=True, norm_reward=False, init="orthogonal", bf16="auto"),
    # interpreting-rl-behavior's hard-rec: 256 envs, minibatch 2048 (8 envs x 256 steps), recurrent.
    "procgen-hard-rec": dict(env="procgen:coinrun?distribution_mode=hard&num_levels=0", arch="impala",
                             recurrent=True, total_frames=200_000_000, num_envs=256, num_steps=256, lr=5e-4,
                             num_minibatches=32, update_epochs=3, gamma=0.999, gae_lambda=0.95, bf16="auto"),
}


#: Values of the preset-able fields that a preset leaves unset.
FALLBACK: dict[str, Any] = dict(anneal_lr=False, recurrent=False, bf16=False, bptt=0, clip_coef=0.2, norm_reward=True,
                                norm_adv=True, clip_vloss=True, init="default", arch_options="")
INITS = ("orthogonal", "heads", "default")


def resolve(cfg: TrainConfig) -> ResolvedTrainConfig:
    """Fill every unset (None) field from the preset, then from FALLBACK; explicit values win. ``channels_last``
    left unset follows ``bf16``."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; expected one of {', '.join(PRESETS)}")
    merged = {**FALLBACK, **PRESETS[cfg.preset]}
    cfg = replace(cfg, **{k: v for k, v in merged.items() if getattr(cfg, k) is None})
    if cfg.bf16 == "auto":
        cfg = replace(cfg, bf16=bf16_is_fast(cfg.device))
    return cast("ResolvedTrainConfig", replace(cfg, channels_last=cfg.bf16) if cfg.channels_last is None else cfg)


def bf16_is_fast(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (oneDNN's check). Elsewhere bf16 autocast is emulated and several times slower than float32."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")


def _split_items(text: str) -> list:
    """Split on the commas outside brackets: ``"a=[1,2],b=3"`` -> ``["a=[1,2]", "b=3"]``."""
    items, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(text[start:k])
            start = k + 1
    return [t.strip() for t in items + [text[start:]] if t.strip()]


def _option_value(key: str, value: str):
    """An int, a float, a list of them in brackets (``[64,64]``, ``[]``), else the string."""
    value = value.strip()
    if value.startswith("["):
        if not value.endswith("]"):
            raise ValueError(f"arch_options {key}={value!r}: expected a list such as [64,64]")
        return [_option_value(key, v) for v in value[1:-1].split(",") if v.strip()]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_options(text: str) -> dict:
    """``"hidden_sizes=[64,64],activation=tanh"`` -> ``{"hidden_sizes": [64, 64], "activation": "tanh"}`` (ints,
    floats and bracketed lists parsed)."""
    out = {}
    for item in _split_items(text or ""):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"arch_options item {item!r}: expected key=value (e.g. hidden_sizes=[64,64],activation=tanh)")
        out[key.strip()] = _option_value(key.strip(), value)
    return out


def validate(cfg: ResolvedTrainConfig) -> None:
    """Refuse settings that would train on nothing or on part of each rollout, naming the option."""
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "total_frames"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.env_workers < 1:
        raise ValueError(f"--env-workers must be >= 1, got {cfg.env_workers}")
    if cfg.init not in INITS:
        raise ValueError(f"--init {cfg.init!r}: expected one of {', '.join(INITS)}")
    if cfg.bptt < 0:
        raise ValueError(f"--bptt must be >= 0 (0: the whole rollout), got {cfg.bptt}")
    if cfg.recurrent and cfg.bptt:
        if cfg.bptt > cfg.num_steps:
            raise ValueError(f"--bptt {cfg.bptt} is longer than --num-steps {cfg.num_steps}: no sequence fits in a "
                             f"rollout, so nothing would be trained; use a divisor of {cfg.num_steps} or 0 (the whole rollout)")
        if cfg.num_steps % cfg.bptt:
            divisors = [d for d in range(1, cfg.num_steps + 1) if cfg.num_steps % d == 0]
            raise ValueError(f"--bptt {cfg.bptt} does not divide --num-steps {cfg.num_steps}: the last "
                             f"{cfg.num_steps % cfg.bptt} steps of every rollout would never be trained on; "
                             f"use one of {divisors}")
    samples = cfg.num_envs * (cfg.num_steps // (cfg.bptt or cfg.num_steps) if cfg.recurrent else cfg.num_steps)
    if cfg.num_minibatches > samples:
        kind = "sequences" if cfg.recurrent else "steps"
        raise ValueError(f"--num-minibatches {cfg.num_minibatches} is more than the {samples} {kind} of a rollout")
