"""PPO training: ``train(TrainConfig(...))`` or ``policylens train``."""
from .config import PRESETS, TrainConfig, resolve
from ..gae import gae
from .ppo import train

__all__ = ["TrainConfig", "PRESETS", "resolve", "train", "gae"]
