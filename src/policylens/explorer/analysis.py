"""What the explorer computes for a layer (:func:`analyse_layer`) and the saliency trees (:func:`add_saliency_trees`).

Per layer: integrated-gradients attribution of the value and of the sampled action's logit to the layer, split
over ``k`` NMF directions of value attributions (fitted on frames sampled evenly from the trajectories, positive
and negative parts stacked as Understanding RL Vision does) plus a residual, per sign (:mod:`.maps`); a legend
thumbnail per direction (its top dataset example) and labels from ground truth (:mod:`.labels`). Attention
layers show their attention maps.

Where the time goes, and what is done about it (``benchmarks/explorer_export.py`` measures it):

- attribution: both outputs come from one pass per batch of frames (:func:`~policylens.attribution.attribute_many`:
  the part below the layer runs once, the IG points above it once, then one backward pass per output), and every
  frame's attributions are kept (up to :data:`CACHE_BYTES`), so the NMF's sample is taken from them instead of
  being attributed a second time;
- the NMF: its restarts and bootstrap fits run side by side, in float32 (:data:`NMF_DTYPE`; the directions
  agree with float64's to float32 precision), with :data:`NMF_BOOTSTRAP` resamples for the stability scores,
  all recorded in the layer's ``meta``;
- the saliency trees of a trajectory come from one forward pass and a backward pass per node slot
  (:func:`~policylens.attribution.saliency_trees`);
- torch runs on one thread per computation (:func:`torch_thread`): the explorer's numbers then do not
  depend on the machine's thread count, and the many small operations of a pass do not wait on each other's
  threads (on two busy cores, two threads made attribution two to six times slower); instead trajectories are
  attributed side by side (:func:`each_trajectory`), here in as many threads as torch was given, each with its
  own copy of the agent (attribution hooks its modules), or on the worker processes or Ray tasks of a
  :class:`~.dispatch.TrajectoryMap` (``explore --backend process|ray --workers W``), each on one thread too:
  every trajectory's analysis is one module-level function of its own data, so the explorer's files are the
  same byte for byte wherever it ran.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .bundle import LayerView, Output, Trajectory
from .maps import attention_maps, feature_maps, pool_factor, pool_sum

OUTPUTS = (Output("value", "value"), Output("action", "sampled action's logit"))
CACHE_BYTES = 1 << 29  # attributions of every frame kept between the NMF fit and the maps, at most (else redone)
NMF_RESTARTS = 5  # seeded NMF restarts; the stable choice among them is shown
NMF_BOOTSTRAP = 2  # fits to resampled frames behind each direction's stability score (with the other restarts)
NMF_DTYPE = "float32"  # the NMF solver's arithmetic


def candidate_layers(agent) -> list:
    """The agent's documented layers, plus its attention trunk's (``trunk.NAME``) when it has one."""
    from ..agents import layer_names

    modules = dict(agent.named_modules())
    names = [n for n in layer_names(agent) if n in modules]
    trunk = getattr(agent, "trunk", None)
    if trunk is not None and getattr(trunk, "LAYERS", None):
        names += [f"trunk.{n}" for n in trunk.LAYERS if f"trunk.{n}" in modules]
    return names


def is_attention(agent, layer: str) -> bool:
    from ..agents import get_layer
    from ..agents.nets import SpatialSoftmax

    return isinstance(get_layer(agent, layer), SpatialSoftmax)


def check_layer(agent, layer: str) -> tuple:
    """The layer's activation shape as ``(C, h, w)``: a flat layer ``(C,)`` is drawn as one position,
    ``(C, 1, 1)``. KeyError for an unknown layer, ValueError for any other shape."""
    from ..agents import get_layer, layer_shapes, spatial_layers

    get_layer(agent, layer)  # KeyError listing the layers
    shape = layer_shapes(agent, names=[layer]).get(layer)
    if shape is not None and len(shape) == 1:
        return (int(shape[0]), 1, 1)
    if shape is None or len(shape) != 3:
        raise ValueError(f"layer {layer!r} gives activations of shape {shape}, but the explorer draws spatial "
                         f"(C, h, w) or flat (C,) layers; spatial layers: "
                         f"{', '.join(spatial_layers(agent, candidate_layers(agent)))}")
    return tuple(shape)


@contextlib.contextmanager
def torch_thread():
    """torch limited to one thread inside the block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def each_trajectory(agent, fn, items, *common, over=None, progress=None) -> list:
    """``[fn(agent, *item, *common) for item in items]`` (``fn`` a module-level function): on the workers of
    ``over`` (a :class:`~.dispatch.TrajectoryMap` with processes or Ray), else here in up to
    ``torch.get_num_threads()`` threads (torch on one thread each), every thread with its own copy of
    ``agent``. The results do not depend on where or how many run at once. ``progress(1)`` after each item."""
    import copy
    import threading
    from concurrent.futures import ThreadPoolExecutor

    items = [tuple(item) for item in items]
    if over is not None and not over.pool.local:
        return over(fn, items, *common, progress=progress)
    workers = max(1, min(len(items), torch.get_num_threads()))  # read before torch_thread() sets it to 1

    def call(model, item):
        out = fn(model, *item, *common)
        progress and progress(1)
        return out

    with torch_thread():
        if workers == 1:
            return [call(agent, item) for item in items]
        spare, local, lock = [agent] + [copy.deepcopy(agent) for _ in range(workers - 1)], threading.local(), \
            threading.Lock()

        def take():
            with lock:
                local.agent = spare.pop()

        with ThreadPoolExecutor(workers, initializer=take) as pool:
            return list(pool.map(lambda item: call(local.agent, item), items))


def _state(traj: Trajectory):
    return None if traj.state is None else torch.as_tensor(traj.state)  # (T, hidden)


def _rows(x, frames):
    return None if x is None else x[frames]


# ------------------------------------------------------------------------------------------------ attribution
def _spatial(attr: torch.Tensor) -> torch.Tensor:
    attr = attr.detach().cpu()
    return attr[:, :, None, None] if attr.ndim == 2 else attr  # a flat layer: one position


def attributions(agent, obs, state, layer: str, target, ig_steps: int = 10, batch: int = 64) -> tuple:
    """IG attribution of ``target`` to ``layer`` for observations ``(n, H, W, C)`` (recurrent agents: their
    input ``state`` ``(n, hidden)``), ``batch`` frames per pass: ``(n, C, h, w)`` and the completeness gaps
    ``(n,)``."""
    return _ig(agent, obs, state, layer, [target], ig_steps, batch)[0]


def layer_attributions(agent, obs, state, actions, layer: str, ig_steps: int = 10, batch: int = 64) -> tuple:
    """IG attribution of the value and of each frame's sampled action's logit (``actions`` ``(n,)``) to
    ``layer``, both from one pass per ``batch`` frames: ``((value (n, C, h, w), gaps (n,)), (action ..., gaps))``."""
    from ..attribution import own_actions

    obs, actions = torch.as_tensor(obs), torch.as_tensor(np.asarray(actions), dtype=torch.long)
    parts = [_ig(agent, obs[a:a + batch], _rows(state, slice(a, a + batch)), layer,
                 ["value", own_actions(actions[a:a + batch])], ig_steps, len(obs)) for a in range(0, len(obs), batch)]
    return tuple((torch.cat([p[j][0] for p in parts]), torch.cat([p[j][1] for p in parts])) for j in range(2))


def _ig(agent, obs, state, layer: str, targets: list, ig_steps: int, batch: int) -> list:
    """``[(attr (n, C, h, w), gaps (n,))]`` per target, ``batch`` frames per pass."""
    from ..attribution import attribute_many

    obs = torch.as_tensor(obs)
    parts = [attribute_many(agent, obs[a:a + batch], targets, layer=layer, method="ig", steps=ig_steps,
                            state=_rows(state, slice(a, a + batch)), return_delta=True)
             for a in range(0, len(obs), batch)]
    return [(torch.cat([_spatial(p[j][0]) for p in parts]), torch.cat([p[j][1].detach().cpu() for p in parts]))
            for j in range(len(targets))]


def action_attributions(agent, obs, state, actions, layer: str, ig_steps: int = 10, batch: int = 64) -> tuple:
    """IG attribution of each frame's sampled action's logit to ``layer``: ``(n, C, h, w)`` and the largest
    completeness gap."""
    from ..attribution import own_actions

    obs = torch.as_tensor(obs)
    actions = torch.as_tensor(np.asarray(actions), dtype=torch.long)
    parts = [_ig(agent, obs[a:a + batch], _rows(state, slice(a, a + batch)), layer,
                 [own_actions(actions[a:a + batch])], ig_steps, batch)[0] for a in range(0, len(obs), batch)]
    return torch.cat([p[0] for p in parts]), max([0.0] + [float(p[1].abs().max()) for p in parts])


def sample_attributions(agent, obs, state, actions, frames, layer: str, ig_steps: int, batch: int, keep: bool) -> tuple:
    """One trajectory's share of the NMF sample: ``(kept, (value, action))``, the IG attributions of the value
    and of the sampled action's logit to ``layer`` at ``frames`` ``(f, C, h, w)``. With ``keep`` the whole
    trajectory is attributed and kept (``kept``: :func:`layer_attributions`' result, its maps then need no
    second pass), else only ``frames`` (``kept`` None)."""
    if keep:
        both = layer_attributions(agent, obs, state, actions, layer, ig_steps, batch)
        return both, (both[0][0][frames], both[1][0][frames])
    (value, _), (action, _) = layer_attributions(agent, obs[frames], _rows(state, frames), np.asarray(actions)[frames],
                                                 layer, ig_steps, batch)
    return None, (value, action)


def kept_maps(agent, kept, directions, pool: int) -> tuple:
    """:func:`nmf_maps`' result from attributions already made (:func:`sample_attributions`' ``kept``); the
    agent is not used."""
    (value, value_gap), (action, action_gap) = kept
    return maps_of(value, action, directions, pool), {"value": float(value_gap.abs().max()),
                                                      "action": float(action_gap.abs().max())}


def maps_of(value, action, directions, pool: int) -> dict:
    """``{"value": maps, "action": maps}`` of attributions ``(n, C, h, w)`` over ``directions``, maps ``(n, 2,
    K + 1, h', w')`` summed over ``pool`` x ``pool`` blocks of positions."""
    return {"value": pool_sum(feature_maps(value, directions).numpy(), pool),
            "action": pool_sum(feature_maps(action, directions).numpy(), pool)}


def nmf_maps(agent, obs, state, actions, directions, ig_steps: int = 10, batch: int = 64, pool: int = 1) -> tuple:
    """For observations ``(n, H, W, C)`` and the sampled ``actions`` ``(n,)``: ``({"value": maps, "action":
    maps}, {output: largest completeness gap})``, maps ``(n, 2, K + 1, h, w)`` over ``directions``, summed
    over ``pool`` x ``pool`` blocks of positions."""
    (value, gap), (action, action_gap) = layer_attributions(agent, obs, state, actions, directions.layer, ig_steps,
                                                             batch)
    return maps_of(value, action, directions, pool), {"value": float(gap.abs().max()),
                                                       "action": float(action_gap.abs().max())}


def attention_layer_maps(agent, obs, state, layer: str, pool: int = 1) -> dict:
    """``{"attention": (n, 1, heads, h, w)}``: an attention layer's maps for observations ``(n, H, W, C)``
    (summed over ``pool`` x ``pool`` blocks of positions)."""
    from ..factors import collect_activations

    return {"attention": pool_sum(attention_maps(collect_activations(agent, obs, layer, state=state)).numpy(), pool)}


def nmf_sample(trajectories, frames: int) -> list:
    """``[(trajectory, frame indices)]``: about ``frames`` frames spread evenly over all trajectories."""
    total = sum(len(t) for t in trajectories)
    every = max(1, -(-total // max(1, frames)))
    return [(t, np.arange(0, len(t), every)) for t in trajectories]


# ------------------------------------------------------------------------------------------------ a layer
def analyse_layer(agent, trajectories, layer: str, *, k: int = 8, ig_steps: int = 10, nmf_frames: int = 1024,
                  thumbnail: int = 32, map_size: int = 16, batch: int = 64, seed: int = 0, env: str = "",
                  progress=None, over=None) -> LayerView:
    """Fill ``traj.maps[layer]`` of every trajectory and return the layer's view: attribution, NMF of value
    attributions (frames sampled evenly), maps over the directions, dataset-example thumbnails (drawn as the
    ``env`` draws its views), labels from ground truth (:mod:`.labels`). Maps of a layer wider than ``map_size``
    are stored summed over blocks of positions (0: never). ``over``: workers for the trajectories
    (:func:`each_trajectory`; default: threads here)."""
    from ..factors import nmf_attributions
    from ..featvis import dataset_examples
    from .labels import feature_labels, frame_masks
    from .views import legend_images

    c, gh, gw = check_layer(agent, layer)
    pool = pool_factor((gh, gw), map_size)
    grid = (-(-gh // pool), -(-gw // pool))
    shape = {"layer_grid": [int(gh), int(gw)], "pool": pool}
    if is_attention(agent, layer):
        for traj, maps in zip(trajectories, each_trajectory(agent, attention_layer_maps, [(t.obs, _state(t)) for t in
                                                                                          trajectories],
                                                            layer, pool, over=over, progress=progress)):
            traj.maps[layer] = maps
        heads = trajectories[0].maps[layer]["attention"].shape[2]
        return LayerView(layer, "attention", grid, tuple(f"head {h + 1}" for h in range(heads)),
                         (Output("attention", "attention maps", ("attention",)),), None,
                         {"method": "attention", **shape})

    chosen = nmf_sample(trajectories, nmf_frames)
    keep = 2 * 4 * c * gh * gw * sum(len(t) for t in trajectories) <= CACHE_BYTES  # float32, two outputs
    # with keep, each trajectory's work is done here (the maps of kept attributions take no agent)
    kept, sample = zip(*each_trajectory(agent, sample_attributions, [(t.obs, _state(t), t.action, f) for t, f in
                                                                       chosen],
                                        layer, ig_steps, batch, keep, over=over, progress=progress if keep else None))
    nmf_on, fitted = "value attributions", torch.cat([v for v, _ in sample])
    if not fitted.any():  # the value does not read this layer (a separate value trunk)
        nmf_on = "sampled-action logit attributions (the value does not read this layer)"
        fitted = torch.cat([a for _, a in sample])
    directions = nmf_attributions(fitted, k, layer=layer, seed=seed, restarts=NMF_RESTARTS, bootstrap=NMF_BOOTSTRAP,
                                  dtype=NMF_DTYPE)  # (k, C)
    masks = frame_masks(trajectories, chosen, env)
    labels, scores = feature_labels(fitted, directions, masks)

    if keep:  # here: the attributions are here already
        mapped = each_trajectory(agent, kept_maps, [(both,) for both in kept], directions, pool)
    else:
        mapped = each_trajectory(agent, nmf_maps, [(t.obs, _state(t), t.action) for t in trajectories], directions,
                                 ig_steps, batch, pool, over=over, progress=progress)
    del kept
    gaps = {"value": 0.0, "action": 0.0}  # largest IG completeness gap |sum(attr) - (F(x) - F(0))|
    for traj, (maps, gap) in zip(trajectories, mapped):
        traj.maps[layer] = maps
        gaps = {name: max(gaps[name], gap[name]) for name in gaps}
    obs = np.concatenate([t.obs for t in trajectories])  # (N, H, W, C)
    states = [_state(t) for t in trajectories]
    state = None if states[0] is None else torch.cat(states)
    with torch_thread():
        examples = dataset_examples(agent, obs, directions, k=1, state=state)
    meta = {"method": "ig", "ig_steps": ig_steps, "k": k, "nmf_on": nmf_on, "nmf_frames": int(len(fitted)),
            "nmf_residual": directions.meta.get("residual"), "nmf_restarts": NMF_RESTARTS,
            "nmf_bootstrap": NMF_BOOTSTRAP, "nmf_dtype": NMF_DTYPE, "ig_completeness_gap": gaps,
            "entities": scores, "attribution_by_entity": by_entity(fitted, masks), **shape}
    return LayerView(layer, "nmf", grid, labels + ("residual",), OUTPUTS, legend_images(examples, obs, env, thumbnail),
                     meta, directions)


def by_entity(attr, masks: "dict | None") -> "dict | None":
    """Attribution by object: the share of ``|attr|`` ``(n, C, h, w)`` that falls on each ground-truth entity
    (masks ``{kind: (n, H, W)}`` pooled onto the layer's grid) against the share of the cells it covers
    (:func:`policylens.scores.attribution_entity_mass`); None without ground truth."""
    from ..scores import attribution_entity_mass, pool_masks

    if not masks:
        return None
    return attribution_entity_mass(np.asarray(attr), pool_masks(masks, tuple(attr.shape[-2:])))


# ------------------------------------------------------------------------------------------------ saliency trees
def tree_frames(traj: Trajectory, bookmark_count: int, separation: int) -> list:
    """The frames that get a saliency tree: the first frame and the GAE bookmarks (as the page lists them)."""
    from .bookmarks import bookmarks

    marks: "np.ndarray | list" = (bookmarks(traj.advantages, bookmark_count, separation=separation)
                                  if bookmark_count > 0 else [])
    return sorted({0, *(int(t) for t in marks)})


def trajectory_trees(agent, obs, state, frames, k: int = 2, select: str = "topk") -> dict:
    """``{t: the value's saliency tree at frame t}`` for the ``frames`` of one trajectory's ``obs`` ``(T, ...)``
    (``state`` ``(T, hidden)``: what a recurrent agent received, else None), from one recorded pass
    (:func:`~policylens.attribution.saliency_trees`; ``select``: topk | peaks)."""
    from ..attribution import saliency_trees

    frames = [int(t) for t in frames]
    return dict(zip(frames, saliency_trees(agent, obs[frames], target="value", k=k, select=select,
                                             state=_rows(state, frames))))


def add_saliency_trees(agent, trajectories, frames_of, *, k: int = 2, select: str = "topk", progress=None,
                       over=None) -> None:
    """Fill ``traj.trees`` with the saliency tree of the value (gradient x activation, ``k`` children per
    node, or at most ``k`` peaks with ``select="peaks"``, down to the input pixels) at the frames ``frames_of(traj)`` of every trajectory (``over``: as
    :func:`analyse_layer`)."""
    items = [(t.obs, _state(t), list(frames_of(t))) for t in trajectories]
    for traj, trees in zip(trajectories, each_trajectory(agent, trajectory_trees, items, k, select, over=over,
                                                         progress=progress)):
        traj.trees.update(trees)
