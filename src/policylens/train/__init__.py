"""PPO training: ``train(TrainConfig(...))`` or ``policylens train``."""
from .config import PRESETS, TrainConfig, resolve
from .ppo import gae, train

__all__ = ["TrainConfig", "PRESETS", "resolve", "train", "gae"]
