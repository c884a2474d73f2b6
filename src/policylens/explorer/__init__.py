"""The trajectory explorer (Understanding RL Vision's interface): ``policylens explore RUN``.

>>> from policylens.explorer import export, bookmarks
>>> export("runs/demo", episodes="0-7", steps=512, k=8)     # -> runs/demo/explorer/index.html (opens from disk)
>>> bookmarks(store.episode(0)["advantages"], k=10)        # timesteps with the most extreme advantages

``policylens explore RUN --serve`` serves the same page on 127.0.0.1 with a live panel (:mod:`.server`).
Layout of the written folder: :mod:`.bundle`; what is computed: :mod:`.export`; maps: :mod:`.maps`; how frames and
legend images are drawn: :mod:`.views`; legend labels from ground truth: :mod:`.labels`.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .bookmarks import bookmarks
    from .bundle import LayerView, Output, Trajectory, write_explorer
    from .export import analyse_layer, default_layers, export, load_trajectories, parse_episodes
    from .maps import dequantise, feature_maps, quantise

__all__ = ["bookmarks", "export", "write_explorer", "LayerView", "Output", "Trajectory", "analyse_layer",
           "default_layers", "load_trajectories", "parse_episodes", "feature_maps", "quantise", "dequantise"]

lazy_exports(__name__)
