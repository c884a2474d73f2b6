"""Agents trained elsewhere, as policylens agents: Stable-Baselines3 zips (:func:`from_sb3`), CleanRL state
dicts (:func:`from_cleanrl`) and any torch policy with a small adapter (:func:`wrap`). Nothing here unpickles:
foreign ``.pth`` / ``.pt`` files are read with ``torch.load(weights_only=True)`` only
(:func:`~.common.read_state_dict`), and an SB3 zip's pickled fields are never decoded."""
from __future__ import annotations

from .cleanrl import SCRIPTS, from_cleanrl
from .sb3 import SUPPORTED, from_sb3
from .wrapper import Wrapped, wrap

__all__ = ["from_sb3", "from_cleanrl", "wrap", "Wrapped", "SCRIPTS", "SUPPORTED"]
