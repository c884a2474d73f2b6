"""The saliency tree's peak detection (``select="peaks"``): a constructed map's known peaks, a brute-force
reference on random maps, every child of a real agent's tree a local maximum of an independently recomputed
attribution, ragged levels in a batch, and the explorer's option."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from policylens.agents import build
from policylens.attribution import attribute, saliency_tree, saliency_trees, tree_nodes
from policylens.attribution.peaks import peak_mask, select_units
from policylens.attribution.targets import resolve_target
from policylens.attribution.tree import UnitTarget


def test_a_constructed_map_gives_exactly_its_peaks():
    """Channel 0: peaks 9 at (1, 1) and -8 (|.|) at (4, 4) on the border, a 6 plateau (two equal neighbours: no
    strict maximum), 3 below half the layer's largest; channel 1: a peak 5 at (0, 5) in a corner, and 7 at (2, 2)
    beside channel 0's 9 (channels are taken on their own)."""
    m = torch.zeros(1, 2, 5, 6)
    m[0, 0, 1, 1], m[0, 0, 4, 4] = 9, -8
    m[0, 0, 1, 4] = m[0, 0, 1, 5] = 6  # plateau
    m[0, 0, 3, 1] = 3  # a local maximum below 0.5 * 9
    m[0, 0, 2, 1] = 1  # a shoulder of the 9
    m[0, 1, 0, 5], m[0, 1, 2, 2] = 5, 7
    flat = lambda c, y, x: int(np.ravel_multi_index((c, y, x), (2, 5, 6)))  # noqa: E731
    expected = [flat(0, 1, 1), flat(0, 4, 4), flat(1, 2, 2), flat(1, 0, 5)]  # by |attribution|
    assert select_units(m, k=10, select="peaks", threshold=0.5) == [expected]
    assert select_units(m, k=2, select="peaks", threshold=0.5) == [expected[:2]]  # capped at k, largest first
    assert select_units(m, k=10, select="peaks", threshold=0.3) == [[*expected, flat(0, 3, 1)]]  # 3 >= 2.7
    assert select_units(m, k=3, select="topk") == [[flat(0, 1, 1), flat(0, 4, 4), flat(1, 2, 2)]]
    assert select_units(torch.zeros(1, 2, 5, 6), k=3, select="peaks") == [[]]  # nothing to dig into


def test_ties_and_flat_layers():
    """Equal peaks come lowest flat index first; a flat layer's peaks are the units at least threshold * max."""
    m = torch.zeros(1, 1, 5, 5)
    m[0, 0, 3, 3] = m[0, 0, 0, 0] = m[0, 0, 0, 3] = 4
    assert select_units(m, k=5, select="peaks") == [[0, 3, 18]]
    flat = torch.tensor([[0.1, -2.0, 0.9, 1.0, 2.0, 0.0], [0.0] * 6])
    assert select_units(flat, k=5, select="peaks", threshold=0.5) == [[1, 4, 3], []]
    assert select_units(flat, k=5, select="peaks", threshold=0.0) == [[1, 4, 3, 2, 0], []]


def brute_force_peaks(a: np.ndarray, threshold: float) -> np.ndarray:
    """(C, h, w): strictly above every in-map neighbour of its channel, >= threshold * max over the layer, not 0."""
    mag, out = np.abs(a), np.zeros(a.shape, bool)
    top = mag.max()
    for c, y, x in itertools.product(*map(range, a.shape)):
        around = [mag[c, y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy or dx)
                  and 0 <= y + dy < a.shape[1] and 0 <= x + dx < a.shape[2]]
        out[c, y, x] = mag[c, y, x] > 0 and mag[c, y, x] >= threshold * top and all(mag[c, y, x] > v for v in around)
    return out


@pytest.mark.parametrize("seed,threshold", [(0, 0.5), (1, 0.0), (2, 0.8)])
def test_peak_mask_matches_a_brute_force_reference(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(3, 2, 6, 7, generator=g).round(decimals=1)  # rounding makes equal neighbours (plateaus)
    got = peak_mask(m, threshold).numpy()
    for p in range(3):
        np.testing.assert_array_equal(got[p], brute_force_peaks(m[p].numpy(), threshold))
    assert got.any()


def small_attention():
    torch.manual_seed(0)
    return build(dict(arch="attention", obs_shape=(7, 7, 3), num_actions=3, recurrent=False,
                      options={"base": "cnn"})).eval()


def recomputed(agent, obs, node_layer, parent, shapes):
    """The attribution (gradient x activation) to ``node_layer`` of ``parent`` (the root or a node), through
    attribute() and UnitTarget: independent of the tree's one recorded pass. Input pixels summed over colours."""
    layer = None if node_layer == "input" else node_layer
    if parent["layer"] == "output":
        attr = attribute(agent, obs, target=resolve_target("action:1", agent), layer=layer, method="grad_x_act")
    else:
        unit = int(np.ravel_multi_index(parent["unit"], shapes[parent["layer"]]))
        with UnitTarget(agent, parent["layer"], [unit]) as target:
            attr = attribute(agent, obs, target=target, layer=layer, method="grad_x_act")
    return attr[0].sum(-1) if layer is None else attr[0]  # (H, W) or the layer's (...)


def test_every_peak_child_of_a_real_agent_is_a_local_maximum():
    agent = small_attention()
    obs = torch.randint(0, 256, (1, 7, 7, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    k, threshold = 3, 0.5
    tree = saliency_tree(agent, obs, k=k, target="action:1", select="peaks", peak_threshold=threshold)
    assert tree["select"] == "peaks" and tree["peak_threshold"] == threshold
    assert tree["layers"] == ["fc", "attention", "attention_logits", "trunk.conv2", "trunk.conv1", "trunk.embed", "input"]
    with torch.no_grad():
        from policylens.hooks import capture
        with capture(agent, tree["layers"][:-1], whole=True) as acts:  # every layer of the tree but the input
            agent(obs)
        shapes = {n: tuple(a.shape[1:]) for n, a in acts.items()}
    checked = 0
    for parent in tree_nodes(tree):
        if not parent["children"]:
            continue
        layer = parent["children"][0]["layer"]
        attr = recomputed(agent, obs, layer, parent, shapes).abs()  # (...)
        chosen = [tuple(c["unit"]) for c in parent["children"]]
        assert len(chosen) <= k and len(set(chosen)) == len(chosen)
        for c in parent["children"]:
            value = float(attr[tuple(c["unit"])])
            assert abs(c["score"]) == pytest.approx(value, rel=1e-4, abs=1e-8)
            assert value >= threshold * float(attr.max()) * (1 - 1e-5) and value > 0
            if attr.ndim >= 2:  # spatial: strictly above its 8 neighbours in its channel
                *ch, y, x = c["unit"]
                plane = attr[tuple(ch)] if ch else attr  # (h, w)
                window = plane[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
                assert int((window >= plane[y, x] * (1 - 1e-6)).sum()) == 1
            checked += 1
        if len(chosen) < k:  # fewer than k: these were all the peaks
            mask = peak_mask(attr[None], threshold)[0]
            assert int(mask.sum()) == len(chosen)
    assert checked >= 4


@pytest.mark.parametrize("method", ["grad_x_act", "ig"])
@pytest.mark.slow
def test_ragged_peak_levels_in_a_batch_are_each_observations_own_tree(method):
    """Observations whose nodes have different numbers of peaks share one pass (slots padded): each tree is the
    one saliency_tree gives alone."""
    agent = small_attention()
    obs = torch.randint(0, 256, (4, 7, 7, 3), generator=torch.Generator().manual_seed(6), dtype=torch.uint8)
    kw = dict(k=4, select="peaks", peak_threshold=0.3, target="value", **({"steps": 3} if method == "ig" else {}))
    batch = saliency_trees(agent, obs, **kw)
    sizes = [len(tree_nodes(t)) for t in batch]
    assert len(set(sizes)) > 1  # ragged indeed
    for i, tree in enumerate(batch):
        alone = saliency_tree(agent, obs[i:i + 1], **kw)
        for a, b in zip(tree_nodes(tree), tree_nodes(alone), strict=True):
            assert (a["layer"], a["unit"]) == (b["layer"], b["unit"])
            assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-6)


def test_bad_select_is_a_clear_error():
    agent = small_attention()
    obs = torch.zeros(1, 7, 7, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown select 'kmeans'.*topk, peaks"):
        saliency_tree(agent, obs, select="kmeans")
    with pytest.raises(ValueError, match=r"peak_threshold must be in \[0, 1\]"):
        saliency_tree(agent, obs, select="peaks", peak_threshold=1.5)


def test_the_explorer_takes_the_selection():
    """``policylens explore --tree-select peaks`` reaches the export, whose trees are saliency_trees' peaks trees."""
    from policylens.config import from_args
    from policylens.explorer.analysis import trajectory_trees
    from policylens.explorer.cli import EXPORT_FIELDS, ExploreConfig, build_parser

    cfg = from_args(ExploreConfig, build_parser().parse_args(["RUN", "--tree-select", "peaks"]))
    assert cfg.tree_select == "peaks" and "tree_select" in EXPORT_FIELDS
    agent = small_attention()
    obs = torch.randint(0, 256, (3, 7, 7, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    trees = trajectory_trees(agent, obs, None, [0, 2], 3, "peaks")
    direct = saliency_trees(agent, obs[[0, 2]], target="value", k=3, select="peaks")
    assert [trees[0], trees[2]] == direct and trees[0]["select"] == "peaks"
