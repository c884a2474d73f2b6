"""Feature visualisation: dataset examples (plain and spatially aware) and optimisation-based images.

>>> from policylens.featvis import dataset_examples, spatial_examples, optimize, thumbnails, save_grid
>>> ex = dataset_examples(agent, obs, directions, k=8, max_per_obs=1)   # ex.patches (K, k, h, w, 3)
>>> sp = spatial_examples(agent, obs, directions)                        # sp.images (K, H, W, 3)
>>> img = optimize(agent, "conv2", directions[0], steps=256)             # (H, W, 3) uint8
>>> save_grid("legend.png", thumbnails(ex), directions.labels)

From the shell: ``policylens featvis RUN --layer L [--directions PATH | --channels 0,1,2] [--optimize]``
writes arrays + JSON + PNGs under ``RUN/analysis/featvis/LAYER/``.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .activations import collect_activations, iter_activations, layer_activations
    from .examples import DatasetExamples, SpatialExamples, dataset_examples, spatial_examples
    from .optimize import Optimized, direction_objective, extremal_penalty, extremal_share, optimize, optimize_batch
    from .receptive import ReceptiveField, crop, receptive_field
    from .thumbnails import plot_examples, plot_images, plot_spatial, resize, save_grid, thumbnails

__all__ = ["collect_activations", "iter_activations", "layer_activations", "DatasetExamples",
           "SpatialExamples", "dataset_examples", "spatial_examples", "Optimized", "direction_objective",
           "extremal_penalty", "extremal_share", "optimize", "optimize_batch", "ReceptiveField", "crop",
           "receptive_field", "plot_examples", "plot_images", "plot_spatial", "resize", "save_grid", "thumbnails"]

lazy_exports(__name__)
