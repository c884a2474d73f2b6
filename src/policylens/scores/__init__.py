"""Quantitative interpretability: directions and attributions scored against ground truth, and faithfulness.

- :mod:`.masks`: entity masks of recorded frames (MiniGrid entities, CoinRun state bytes), pooled to a layer;
- :mod:`.entities`: per direction, precision / lift / normalised MI with each entity kind and the share of
  interpretable directions; attribution mass on entities against background;
- :mod:`.faithfulness`: sparsity (top-10 share), deletion/insertion curves, parameter-randomisation check.
"""
from .entities import attribution_entity_mass, direction_entity_scores, mutual_information, score_layer
from .faithfulness import deletion_insertion, randomisation_check, sparsity
from .masks import episode_masks, pool_masks, store_frames

__all__ = ["episode_masks", "pool_masks", "store_frames", "score_layer", "direction_entity_scores", "attribution_entity_mass",
           "mutual_information", "sparsity", "deletion_insertion", "randomisation_check"]
