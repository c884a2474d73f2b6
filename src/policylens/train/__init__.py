"""PPO training: ``train(TrainConfig(...))`` or ``policylens train``."""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from ..gae import gae
    from .config import PRESETS, TrainConfig, resolve
    from .ppo import train

__all__ = ["TrainConfig", "PRESETS", "resolve", "train", "gae"]

lazy_exports(__name__)
