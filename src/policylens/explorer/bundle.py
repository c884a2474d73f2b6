"""The explorer's content in memory (:class:`LayerView`, :class:`Trajectory`) and :func:`write_explorer`, which
lays it out as a folder that opens from disk:

    OUT/index.html, explorer.css, explorer.js, render.js, live.js    (copied from the package)
    OUT/data/manifest.js        run, env, action names, how frames are drawn (view), whether rewards are
                                predicted, layers (features: label, colour, thumbnail, stability), trajectories
    OUT/data/tI.js              trajectory I: PNG sprite sheet of its frames (and of the game's own pictures,
                                where recorded), value, action probabilities, sampled action, reward, done,
                                advantages, GAE bookmarks, saliency trees of some frames ({frame: tree})
    OUT/data/tI-lJ.js           trajectory I, layer J: per output, uint8 maps (T, signs, features, h, w),
                                deflated + base64, their scale, and each feature's total per frame and sign

Everything here is already computed (precompute and plot are separate); this module only encodes it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bookmarks import bookmarks
from .encode import deflate_b64, display_rgb, png_data_url, rounded, sprite_sheet, write_js
from .maps import quantise
from .views import display_frames, frame_view

if TYPE_CHECKING:
    from ..factors import Directions

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = ("index.html", "explorer.css", "explorer.js", "render.js", "live.js")
# feature colours (distinct on a faded observation); the residual is grey
FEATURE_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                  "#ffe119", "#469990", "#9a6324", "#800000", "#808000", "#000075")
RESIDUAL_COLOR = "#a0a0a0"
FORMAT = 1  # version of the data files' layout
SIGN_LABELS = ("good news (positive attribution)", "bad news (negative attribution)")


@dataclass(frozen=True)
class Output:
    """One network output whose attribution the explorer shows."""

    name: str  # key in the maps: "value", "action" (the sampled action's logit) or "attention"
    label: str  # shown in the output picker
    signs: tuple = SIGN_LABELS  # one overlay panel per sign, captioned so


@dataclass
class LayerView:
    """A layer as the explorer shows it: features (K directions + residual, or attention heads) per output."""

    name: str  # the agent's layer name
    kind: str  # "nmf" (attribution split over NMF directions + residual) or "attention" (attention maps)
    grid: tuple  # (h, w) spatial size of the layer
    labels: tuple  # one label per feature, the residual last for "nmf"
    outputs: tuple  # Output, ...
    thumbnails: "np.ndarray | None" = None  # (F, s, s, 3) uint8 legend images (None: none)
    meta: dict = field(default_factory=dict)  # JSON-able: method, steps, NMF residual share, ...
    directions: "Directions | None" = None  # the features' directions ("nmf"), kept for the live server

    def __post_init__(self):
        if self.kind not in ("nmf", "attention"):
            raise ValueError(f"layer view kind must be 'nmf' or 'attention', got {self.kind!r}")
        if not self.outputs or len({len(o.signs) for o in self.outputs}) != 1:
            raise ValueError(f"layer view {self.name!r}: outputs must be given and share one number of signs")

    @property
    def residual(self) -> bool:
        return self.kind == "nmf"

    @property
    def signs(self) -> int:
        return len(self.outputs[0].signs)


@dataclass
class Trajectory:
    """One recorded trajectory (T steps) and its maps per layer and output."""

    obs: np.ndarray  # (T, H, W, C) uint8
    value: np.ndarray  # (T,)
    logits: np.ndarray  # (T, A)
    action: np.ndarray  # (T,) the sampled action
    reward: np.ndarray  # (T,)
    done: np.ndarray  # (T,) bool
    advantages: np.ndarray  # (T,) GAE
    info: dict = field(default_factory=dict)  # episode, cause, return, level_seed
    maps: dict = field(default_factory=dict)  # {layer name: {output name: (T, S, F, h, w) float, >= 0}}
    state: "np.ndarray | None" = None  # (T, hidden) the state a recurrent agent received (not exported)
    trees: dict = field(default_factory=dict)  # {frame t: saliency tree (attribution.saliency_tree's dict)}
    masks: "dict | None" = None  # {entity kind: (T, H, W) bool} ground truth laid out like obs (not exported)
    render: "np.ndarray | None" = None  # (T, h, w, 3) uint8 the game's own picture of each step (Atari's screen)

    def __len__(self) -> int:
        return len(self.value)


def probabilities(logits) -> np.ndarray:
    """Softmax over the last axis, ``(T, A)``."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def feature_colors(view: LayerView) -> list:
    n = len(view.labels) - (1 if view.residual else 0)
    colors = [FEATURE_COLORS[k % len(FEATURE_COLORS)] for k in range(n)]
    return colors + ([RESIDUAL_COLOR] if view.residual else [])


def _check(view: LayerView, traj: Trajectory, i: int) -> None:
    t = len(traj)
    for name in ("obs", "logits", "action", "reward", "done", "advantages", "render"):
        if getattr(traj, name) is not None and len(getattr(traj, name)) != t:
            raise ValueError(f"trajectory {i}: {name} has {len(getattr(traj, name))} steps, value has {t}")
    if view.name not in traj.maps:
        raise ValueError(f"trajectory {i} has no maps for layer {view.name!r}; it has {', '.join(traj.maps) or 'none'}")
    for out in view.outputs:
        maps = traj.maps[view.name].get(out.name)
        want = (t, len(out.signs), len(view.labels), *view.grid)
        if maps is None or tuple(np.shape(maps)) != want:
            got = None if maps is None else tuple(np.shape(maps))
            raise ValueError(f"trajectory {i}, layer {view.name!r}, output {out.name!r}: maps of shape {got}, "
                             f"expected (T, signs, features, h, w) = {want}")


def _clear_data(data: Path) -> None:
    """Remove the data files of an earlier export (only ours: manifest.js and t*.js)."""
    if (data / "manifest.js").is_file():
        for f in [data / "manifest.js", *data.glob("t*.js")]:
            f.unlink()


def _plain(info: dict) -> dict:
    """numpy scalars -> Python numbers, for JSON."""
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in info.items()}


def sheet_payload(frames: np.ndarray) -> dict:
    """``(T, h, w, 3)`` uint8 pictures -> ``{"sheet": PNG data URL, "columns", "tile": [h, w]}``."""
    sheet, columns = sprite_sheet(frames)
    return {"sheet": png_data_url(sheet), "columns": columns, "tile": list(frames.shape[1:3])}


def strip_stack(obs, env: str) -> int:
    """The frames per observation when each observation's stack is exactly the newest frames of the steps up to
    it (the first frame repeated before the start), so the page draws the stack as a strip from the frames it
    has; else 1."""
    from ..envs.render import newest_frame, stack_frames

    stack = frame_view(env, np.shape(obs)[1:])["stack"] if np.ndim(obs) == 4 else 1
    if stack <= 1:
        return 1
    frames, newest = stack_frames(obs, stack), newest_frame(obs, stack)  # (T, stack, H, W, c), (T, H, W, c)
    t = np.arange(len(obs))
    for j in range(stack):
        if not np.array_equal(frames[:, j], newest[np.maximum(0, t - (stack - 1 - j))]):
            return 1
    return stack


def trajectory_payload(i: int, traj: Trajectory, marks: np.ndarray, env: str = "") -> dict:
    frames, display = display_frames(traj.obs, env)
    adv = np.asarray(traj.advantages, np.float64)
    return {
        "id": i, "length": len(traj),
        "frames": {**sheet_payload(frames), "display": display, "stack": strip_stack(traj.obs, env)},
        "render": None if traj.render is None else sheet_payload(np.asarray(traj.render, np.uint8)),
        "value": rounded(traj.value), "probs": np.round(probabilities(traj.logits), 3).tolist(),
        "action": [int(a) for a in traj.action], "reward": rounded(traj.reward),
        "done": [int(bool(d)) for d in traj.done], "advantages": rounded(adv),
        "bookmarks": [{"t": int(t), "advantage": float(f"{adv[t]:.5g}")} for t in marks],
        "info": _plain(traj.info),
        "trees": {str(int(t)): rounded_tree(tree) for t, tree in sorted(traj.trees.items())},
    }


def rounded_tree(node: dict) -> dict:
    """A saliency tree with its numbers at 4 significant digits (smaller files; the page shows 3)."""
    out = {key: (float(f"{v:.4g}") if isinstance(v, float) else v) for key, v in node.items() if key != "children"}
    out["children"] = [rounded_tree(c) for c in node.get("children", [])]
    return out


def maps_payload(i: int, j: int, view: LayerView, traj: Trajectory) -> dict:
    outputs = {}
    for out in view.outputs:
        maps = np.asarray(traj.maps[view.name][out.name], np.float32)  # (T, S, F, h, w)
        q, scale = quantise(maps)
        outputs[out.name] = {"scale": scale, "data": deflate_b64(q), "totals": rounded(maps.sum((-2, -1)), 4)}
    return {"trajectory": i, "layer": j, "shape": [len(traj), view.signs, len(view.labels), *view.grid],
            "outputs": outputs}


def _features(view: LayerView) -> list:
    """The manifest's features of a layer: label, colour, thumbnail (a PNG data URL or None) and the direction's
    stability across decomposition restarts when its ``Directions.meta["stability"]`` has one (else None)."""
    thumbs = display_rgb(view.thumbnails)[0] if view.thumbnails is not None else []
    stability = list((getattr(view.directions, "meta", None) or {}).get("stability") or [])
    return [{"label": str(label), "color": color, "thumbnail": png_data_url(thumbs[f]) if f < len(thumbs) else None,
             "stability": float(stability[f]) if f < len(stability) and stability[f] is not None else None}
            for f, (label, color) in enumerate(zip(view.labels, feature_colors(view)))]


def write_explorer(out, layers, trajectories, *, title: str, env: str = "", run: str = "", action_names=(),
                   bookmark_count: int = 10, bookmark_separation: int = 3, meta: "dict | None" = None,
                   predicted: bool = False) -> dict:
    """Write the explorer for ``trajectories`` (list of :class:`Trajectory`) with the ``layers`` (list of
    :class:`LayerView`) into folder ``out``; returns ``{"index": path, "bytes": total size, "files": count}``.
    Frames are drawn as ``env`` draws its views (:func:`~policylens.explorer.views.display_frames`).
    ``predicted``: the trajectories' rewards, returns and ends are a model's predictions (a simulator's heads),
    and the page says so wherever it shows them."""
    out = Path(out)
    layers, trajectories = list(layers), list(trajectories)
    if not layers:
        raise ValueError("the explorer needs at least one layer view")
    for i, traj in enumerate(trajectories):
        for view in layers:
            _check(view, traj, i)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    _clear_data(data)
    for name in STATIC_FILES:
        shutil.copyfile(STATIC / name, out / name)
    entries = []
    for i, traj in enumerate(trajectories):
        marks = bookmarks(traj.advantages, bookmark_count, separation=bookmark_separation)
        write_js(data / f"t{i}.js", "trajectory", trajectory_payload(i, traj, marks, env))
        for j, view in enumerate(layers):
            write_js(data / f"t{i}-l{j}.js", "maps", maps_payload(i, j, view, traj))
        entries.append({"id": i, "length": len(traj), "file": f"data/t{i}.js",
                        "maps": [f"data/t{i}-l{j}.js" for j in range(len(layers))],
                        **_plain(traj.info)})
    manifest = {
        "format": FORMAT, "title": title, "env": env, "run": run, "action_names": [str(a) for a in action_names],
        "view": frame_view(env, np.shape(trajectories[0].obs)[1:] if trajectories else ()),
        "predicted": bool(predicted),
        "layers": [{"name": v.name, "kind": v.kind, "grid": list(v.grid), "meta": v.meta,
                    "features": _features(v),
                    "outputs": [{"name": o.name, "label": o.label, "signs": list(o.signs)} for o in v.outputs]}
                   for v in layers],
        "trajectories": entries, "meta": meta or {},
    }
    write_js(data / "manifest.js", "manifest", manifest)
    return explorer_summary(out)


def explorer_summary(out) -> dict:
    """``{"index": path, "bytes": total size, "files": count}`` of the explorer written in folder ``out``."""
    out = Path(out)
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"index": out / "index.html", "bytes": sum(p.stat().st_size for p in files), "files": len(files)}
