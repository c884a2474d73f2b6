"""Dataset-example feature visualisation (Understanding RL Vision, "Dataset example-based feature
visualization" and "Spatially-aware feature visualization").

``dataset_examples``: for each direction, the ``k`` (observation, position) pairs where the direction's score
(activations dotted with it along channels) is highest, at most ``max_per_obs`` from one observation so one
frame does not fill the row; each shown as the patch of the observation that position sees (its receptive
field), or the whole observation for a non-spatial layer.

``spatial_examples``: for each direction and each position of the layer, the observation scoring highest at
that position (optionally each observation reused at most ``max_reuse`` times); the cells of that position
from those observations tile one image of the observation's size, so the picture keeps the spatial layout.

Scores are streamed batch by batch: memory holds the observations and a few numbers per frame, never all
activations.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..factors import Directions
from .activations import check_obs, iter_activations
from .receptive import ReceptiveField, crop, receptive_field


def iter_scores(agent, obs, directions: Directions, state=None, batch_size: int = 256, progress: bool = False):
    """Yield ``(start, scores)``: each direction's score ``(B, K)`` or ``(B, K, h, w)`` for a batch of ``obs``."""
    if not isinstance(directions, Directions):
        raise ValueError(f"directions must be a policylens.factors.Directions, got {type(directions).__name__}")
    for start, acts in iter_activations(agent, directions.layer, obs, state, batch_size, progress):
        yield start, directions.scores(acts)


@dataclass
class DatasetExamples:
    """The top dataset examples of each direction (K directions, n <= k examples each, best first)."""

    patches: np.ndarray  # (K, n, ph, pw, C) uint8 receptive-field patches (whole obs for non-spatial layers)
    obs_index: np.ndarray  # (K, n) int64 index of each example's observation in the obs given
    position: np.ndarray  # (K, n, 2) int64 (y, x) position in the layer; -1 for non-spatial layers
    score: np.ndarray  # (K, n) float32 the direction's score there
    layer: str = ""
    labels: tuple = ()
    receptive_field: "ReceptiveField | None" = None  # None: non-spatial layer, or patch=False
    meta: dict = field(default_factory=dict)  # JSON-able extras (max_per_obs, frames of a store, ...)

    def save(self, folder, name: str = "examples") -> Path:
        """Write ``folder/NAME.npz`` (arrays) + ``folder/NAME.json`` (layer, labels, field, meta); returns the JSON."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / f"{name}.npz", patches=self.patches, obs_index=self.obs_index,
                            position=self.position, score=self.score)
        rf = self.receptive_field.to_dict() if self.receptive_field else None
        info = {"layer": self.layer, "labels": list(self.labels), "receptive_field": rf, "meta": self.meta,
                "shape": {"directions": int(self.score.shape[0]), "examples": int(self.score.shape[1])}}
        (folder / f"{name}.json").write_text(json.dumps(info, indent=1))
        return folder / f"{name}.json"

    @classmethod
    def load(cls, folder, name: str = "examples") -> "DatasetExamples":
        info, arrays = _read(folder, name)
        rf = info.get("receptive_field")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in rf.items()} if rf else {}
        rf = ReceptiveField(**fields) if rf else None
        return cls(arrays["patches"], arrays["obs_index"], arrays["position"], arrays["score"], info["layer"],
                   tuple(info["labels"]), rf, info.get("meta", {}))


@dataclass
class SpatialExamples:
    """Spatially-aware dataset examples: one composed image per direction."""

    images: np.ndarray  # (K, H, W, C) uint8 each cell taken from the best observation for that position
    obs_index: np.ndarray  # (K, h, w) int64 the observation each position's cell comes from
    score: np.ndarray  # (K, h, w) float32 the direction's score at that position in that observation
    cell_rows: np.ndarray  # (h + 1,) pixel row edges of the cells: position y covers rows [r[y], r[y + 1])
    cell_cols: np.ndarray  # (w + 1,) pixel column edges of the cells
    layer: str = ""
    labels: tuple = ()
    meta: dict = field(default_factory=dict)

    def strength(self) -> np.ndarray:
        """(K, h, w) in [0, 1]: each position's score over the direction's best score (negative -> 0), the
        transparency of a weak response in the paper's figure."""
        top = np.maximum(self.score.reshape(len(self.score), -1).max(1), 1e-12)[:, None, None]  # (K, 1, 1)
        return np.clip(self.score / top, 0.0, 1.0)

    def save(self, folder, name: str = "spatial") -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / f"{name}.npz", images=self.images, obs_index=self.obs_index, score=self.score,
                            cell_rows=self.cell_rows, cell_cols=self.cell_cols)
        info = {"layer": self.layer, "labels": list(self.labels), "meta": self.meta}
        (folder / f"{name}.json").write_text(json.dumps(info, indent=1))
        return folder / f"{name}.json"

    @classmethod
    def load(cls, folder, name: str = "spatial") -> "SpatialExamples":
        info, a = _read(folder, name)
        return cls(a["images"], a["obs_index"], a["score"], a["cell_rows"], a["cell_cols"], info["layer"],
                   tuple(info["labels"]), info.get("meta", {}))


def _read(folder, name: str):
    folder = Path(folder)
    for f in (folder / f"{name}.json", folder / f"{name}.npz"):
        if not f.is_file():
            raise FileNotFoundError(f"feature visualisation file missing: {f}")
    with np.load(folder / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads((folder / f"{name}.json").read_text()), arrays


# ------------------------------------------------------------------------------------------------ dataset examples


def dataset_examples(agent, obs, directions: Directions, *, k: int = 8, patch: bool = True,
                     max_per_obs: "int | None" = 1, state=None, batch_size: int = 256,
                     progress: bool = False) -> DatasetExamples:
    """Top-``k`` (observation, position) pairs per direction of ``directions`` (in ``directions.layer``).

    ``obs`` (N, H, W, C) uint8; ``state`` (N, hidden) the recorded input state of each frame (recurrent agents).
    ``max_per_obs``: at most this many examples from one observation (None: no cap). ``patch=False`` shows
    whole observations also for spatial layers. Fewer than ``k`` examples when the observations cannot give
    ``k`` under the cap.
    """
    check_obs(obs)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if max_per_obs is not None and max_per_obs < 1:
        raise ValueError(f"max_per_obs must be >= 1 (or None for no cap), got {max_per_obs}")
    batch_values, batch_where = [], []  # per batch: (B, K, m) best scores of each obs and their flat positions
    spatial_grid = None
    for _, scores in iter_scores(agent, obs, directions, state, batch_size, progress):
        if scores.ndim == 4:
            spatial_grid = tuple(scores.shape[2:])
        flat = scores.reshape(scores.shape[0], scores.shape[1], -1)  # (B, K, h*w) or (B, K, 1)
        m = flat.shape[2] if max_per_obs is None else min(max_per_obs, flat.shape[2])
        top = flat.topk(m, dim=2)  # within each obs: only its m best positions can ever be picked
        batch_values.append(top.values)
        batch_where.append(top.indices)
    values, where = torch.cat(batch_values), torch.cat(batch_where)  # (N, K, m)
    n_obs, n_dirs, m = values.shape
    n = min(k, n_obs * m)
    per_dir = values.permute(1, 0, 2).reshape(n_dirs, -1)  # (K, N*m) ordered by obs, then rank within obs
    order = torch.sort(per_dir, dim=1, descending=True, stable=True).indices[:, :n]  # (K, n)
    obs_index = (order // m).numpy().astype(np.int64)  # (K, n)
    flat_pos = where.permute(1, 0, 2).reshape(n_dirs, -1).gather(1, order).numpy()  # (K, n)
    score = per_dir.gather(1, order).numpy().astype(np.float32)  # (K, n)
    rf = None
    if spatial_grid is None:
        position = np.full((n_dirs, n, 2), -1, np.int64)
    else:
        position = np.stack(np.divmod(flat_pos, spatial_grid[1]), axis=-1).astype(np.int64)  # (K, n, 2)
        if patch:
            rf = receptive_field(agent, directions.layer, obs_shape=np.asarray(obs[:1]).shape[1:])
    patches = np.stack([np.stack([
        crop(np.asarray(obs[i]), rf, *position[d, j]) if rf is not None else np.asarray(obs[i])
        for j, i in enumerate(obs_index[d])]) for d in range(n_dirs)])  # (K, n, ph, pw, C)
    return DatasetExamples(patches, obs_index, position, score, directions.layer, directions.labels, rf,
                           {"k": k, "max_per_obs": max_per_obs, "num_obs": int(n_obs), "patch": bool(patch)})


# ------------------------------------------------------------------------------------------------ spatial examples


def cell_edges(pixels: int, cells: int) -> np.ndarray:
    """(cells + 1,) edges splitting ``pixels`` into ``cells`` near-equal cells."""
    return np.round(np.linspace(0, pixels, cells + 1)).astype(np.int64)


def spatial_examples(agent, obs, directions: Directions, *, max_reuse: "int | None" = None, state=None,
                     batch_size: int = 256, progress: bool = False) -> SpatialExamples:
    """For each direction and position ``(y, x)`` of the (spatial) layer, the observation with the highest score
    there; its cell ``(y, x)`` of pixels goes into a composed image ``(H, W, C)`` per direction.

    ``max_reuse``: each observation supplies at most this many cells of one direction's image (positions are
    served in order of their best score, each taking its best observation not yet used up); needs
    ``len(obs) * max_reuse >= h * w``. None: plain argmax per position.
    """
    check_obs(obs)
    if max_reuse is not None and max_reuse < 1:
        raise ValueError(f"max_reuse must be >= 1 (or None for no cap), got {max_reuse}")
    n_obs = len(obs)
    best_val = best_idx = None  # (K, h*w, T) running top-T observations per position
    grid = None
    for start, scores in iter_scores(agent, obs, directions, state, batch_size, progress):
        if scores.ndim != 4:
            raise ValueError(f"spatial examples need a spatial layer; {directions.layer!r} gives scores "
                             f"{tuple(scores.shape)}, expected (B, K, h, w)")
        grid = tuple(scores.shape[2:])
        if best_val is None:
            cells = grid[0] * grid[1]
            if max_reuse is not None and n_obs * max_reuse < cells:
                raise ValueError(f"max_reuse={max_reuse} with {n_obs} observations cannot fill the "
                                 f"{grid[0]}x{grid[1]} positions of layer {directions.layer!r}")
            # the position served r-th finds at most r // max_reuse of its candidates used up
            depth = 1 if max_reuse is None else min(n_obs, (cells - 1) // max_reuse + 1)
        vals = scores.flatten(2).permute(1, 2, 0)  # (K, h*w, B)
        idx = torch.arange(start, start + scores.shape[0]).expand_as(vals)  # (K, h*w, B)
        if best_val is not None and best_idx is not None:
            vals, idx = torch.cat([best_val, vals], 2), torch.cat([best_idx, idx], 2)
        top = vals.topk(min(depth, vals.shape[2]), dim=2)  # ties: the earlier observation
        best_val, best_idx = top.values, idx.gather(2, top.indices)
    assert best_val is not None and best_idx is not None and grid is not None, "no observations"
    chosen = best_idx[:, :, 0].clone()  # (K, h*w)
    if max_reuse is not None:
        chosen = _assign_with_reuse_cap(best_val, best_idx, max_reuse)
    score = best_val.gather(2, _rank_of(best_idx, chosen)).squeeze(2)  # (K, h*w)
    h, w = grid
    rows, cols = cell_edges(obs.shape[1], h), cell_edges(obs.shape[2], w)
    chosen_np = chosen.numpy().reshape(-1, h, w)
    images = np.zeros((len(chosen_np), *obs.shape[1:]), np.uint8)  # (K, H, W, C)
    for d, y, x in np.ndindex(*chosen_np.shape):
        src = np.asarray(obs[chosen_np[d, y, x]])
        images[d, rows[y]:rows[y + 1], cols[x]:cols[x + 1]] = src[rows[y]:rows[y + 1], cols[x]:cols[x + 1]]
    return SpatialExamples(images, chosen_np.astype(np.int64), score.numpy().reshape(-1, h, w).astype(np.float32),
                           rows, cols, directions.layer, directions.labels,
                           {"max_reuse": max_reuse, "num_obs": int(n_obs)})


def _rank_of(candidates: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(K, P, 1) the slot of ``chosen`` (K, P) among ``candidates`` (K, P, T)."""
    return (candidates == chosen.unsqueeze(2)).int().argmax(2, keepdim=True)


def _assign_with_reuse_cap(values: torch.Tensor, candidates: torch.Tensor, max_reuse: int) -> torch.Tensor:
    """Greedy: positions in order of their best score take their best candidate used < ``max_reuse`` times.
    ``values``/``candidates`` (K, P, T) sorted best first -> chosen observation per position (K, P)."""
    chosen = torch.empty(candidates.shape[:2], dtype=torch.int64)
    for d in range(values.shape[0]):
        used: dict[int, int] = {}
        for p in torch.argsort(values[d, :, 0], descending=True, stable=True).tolist():
            pick = next(int(c) for c in candidates[d, p].tolist() if used.get(int(c), 0) < max_reuse)
            used[pick] = used.get(pick, 0) + 1
            chosen[d, p] = pick
    return chosen
