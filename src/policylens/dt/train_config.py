"""The settings of ``policylens dt train`` (:class:`DTTrainConfig`), apart from the training loop
(:mod:`policylens.dt.train`) so the command's ``--help`` needs no torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DTTrainConfig:
    store: str = ""
    """trajectory store to learn from (policylens dt collect)"""
    out: str = ""
    """run directory: writes OUT/agent, OUT/train.csv, OUT/curve.png"""
    layers: int = 1
    """transformer blocks"""
    heads: int = 2
    """attention heads per block"""
    d_model: int = 128
    """residual stream width"""
    d_mlp: int = 256
    """MLP hidden width (0: attention only)"""
    context: int = 1
    """timesteps per window (Decision Transformer Interpretability: 1, 3 or 9)"""
    state_embedding: str = "grid"
    """grid (linear on the one-hot view) | raw (linear on the integer encoding, the paper's first model) | cnn"""
    layer_norm: bool = False
    """LayerNorm in the blocks and before the unembedding"""
    act_fn: str = "relu"
    """MLP activation: relu | gelu"""
    steps: int = 3000
    """optimizer steps (raise it with --resume to train on)"""
    batch_size: int = 128
    """windows per step"""
    lr: float = 1e-3
    """peak learning rate"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    warmup_steps: int = 100
    """linear warm-up of the learning rate from 0 over this many steps"""
    max_grad_norm: float = 1.0
    """gradient clipping (0: off)"""
    final_step_weight: float = 1.0
    """how many times more often an episode's last step is drawn (the paper oversampled final steps)"""
    val_fraction: float = 0.1
    """share of the episodes held out for the validation loss"""
    eval_every: int = 500
    """steps between CSV rows (validation loss and evaluation in the env)"""
    eval_rtgs: tuple = ("0.9", "0")
    """target RTGs the model plays at each evaluation"""
    eval_episodes: int = 16
    """episodes per target RTG at each evaluation (0: no env evaluation)"""
    eval_start_level: int = 1_000_000
    """first level (MiniGrid reset seed) of the evaluation episodes"""
    checkpoint_every: int = 500
    """steps between checkpoints"""
    seed: int = 0
    """seed of the initial weights, the split and the batches"""
    resume: bool = False
    """continue from OUT/agent's last checkpoint"""
    overwrite: bool = False
    """replace the model, train.csv and curve.png already in OUT (without it, or --resume, they are refused)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar with loss and accuracy"""
