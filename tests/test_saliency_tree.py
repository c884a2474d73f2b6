"""The saliency tree: a hand-built agent whose path is known, an independent gradient x activation reference,
batching that does not change the tree, k / depth / shares, hooks gone after an exception, real agents."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from policylens.agents import AgentOutput, build
from policylens.attribution import saliency_tree, tree_nodes
from policylens.attribution.tree import UnitTarget

H = W = 5


class Wired(nn.Module):
    """obs (B, 5, 5, 2) -> ``conv_a`` 1x1 (3 ch, ReLU) -> ``conv_b`` 3x3 (2 ch, ReLU) -> value = sum(readout *
    conv_b[:, 0]). Channel 1 of conv_a copies obs channel 0; conv_b's channel 0 reads conv_a's channel 1 mostly
    one column to the LEFT (weight 3); the readout weighs position (2, 3) heavily. So the value is driven by
    conv_b[0, 2, 3] <- conv_a[1, 2, 2] <- pixel (2, 2)."""

    LAYERS = {"conv_a": "(B, 3, 5, 5)", "conv_b": "(B, 2, 5, 5)"}

    def __init__(self, fail_on_batch: int = 0):
        super().__init__()
        self.fail_on_batch = fail_on_batch
        self.conv_a = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU())
        self.conv_b = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU())
        with torch.no_grad():
            a, b = self.conv_a[0], self.conv_b[0]
            a.weight.fill_(0.05)
            a.bias.zero_()
            a.weight[1, 0, 0, 0] = 1.0  # conv_a ch 1 = obs ch 0
            b.weight.fill_(0.02)
            b.bias.zero_()
            b.weight[0, 1, 1, 0] = 3.0  # conv_b ch 0 at (y, x) reads conv_a ch 1 at (y, x - 1)
        readout = torch.full((H, W), 0.1)
        readout[2, 3] = 5.0
        self.register_buffer("readout", readout)
        self.pi = nn.Linear(1, 2)

    def forward(self, obs, state=None, first=None):
        if self.fail_on_batch and obs.shape[0] >= self.fail_on_batch:
            raise RuntimeError("boom")
        x = obs.permute(0, 3, 1, 2).float() / 255  # (B, 2, H, W)
        b = self.conv_b(self.conv_a(x))  # (B, 2, H, W)
        value = (b[:, 0] * self.readout).flatten(1).sum(1)  # (B,)
        return AgentOutput(self.pi(value[:, None]), value, None)


def wired_obs(seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 60, (1, H, W, 2), generator=g, dtype=torch.uint8)  # (1, H, W, 2)
    obs[0, 2, 2, 0] = 200
    obs[0, 0, 0, 0] = 255  # the brightest pixel, but it reaches the value only weakly
    return obs


def test_tree_follows_the_wired_path_down_to_the_pixel():
    agent = Wired()
    tree = saliency_tree(agent, wired_obs(), k=2)
    assert tree["layers"] == ["conv_b", "conv_a", "input"]
    top = tree["children"][0]
    assert (top["layer"], top["unit"]) == ("conv_b", [0, 2, 3])
    child = top["children"][0]
    assert (child["layer"], child["unit"]) == ("conv_a", [1, 2, 2])
    pixel = child["children"][0]
    assert (pixel["layer"], pixel["unit"]) == ("input", [2, 2])
    assert pixel["box"] == [2, 2, 3, 3] and child["box"] == [2, 2, 3, 3]
    assert pixel["children"] == []
    with torch.no_grad():
        assert tree["activation"] == pytest.approx(float(agent(wired_obs()).value[0]), rel=1e-6)


def test_scores_match_an_independent_gradient_times_activation():
    """Child scores of conv_b[0, 2, 3] equal d conv_b[0, 2, 3] / d conv_a * conv_a from a separate autograd pass."""
    agent, obs = Wired(), wired_obs(1)
    tree = saliency_tree(agent, obs, k=3, depth=2)
    top = tree["children"][0]
    x = obs.permute(0, 3, 1, 2).float() / 255
    a = agent.conv_a(x).detach().requires_grad_()  # (1, 3, H, W)
    c, y, xx = top["unit"]
    (grad,) = torch.autograd.grad(agent.conv_b(a)[0, c, y, xx], a)
    reference = (grad * a)[0].detach()  # (3, H, W)
    for child in top["children"]:
        assert child["score"] == pytest.approx(float(reference[tuple(child["unit"])]), rel=1e-5, abs=1e-7)
        assert child["activation"] == pytest.approx(float(a[0].detach()[tuple(child["unit"])]), rel=1e-6)
        assert child["share"] == pytest.approx(abs(child["score"]) / float(reference.abs().sum()), rel=1e-5)
    # the top level: value = sum(readout * conv_b[0]) so grad x act = readout * activation
    b = agent.conv_b(a)[0, 0].detach()  # (H, W)
    for node in tree["children"]:
        _, y, x = node["unit"]
        assert node["score"] == pytest.approx(float(agent.readout[y, x] * b[y, x]), rel=1e-5)


def check_structure(tree, k, levels):
    """Every node above the last level has k children (or all units), shares in [0, 1] summing to <= 1."""
    def walk(node, depth):
        if depth == levels:
            assert node["children"] == []
            return depth
        assert 1 <= len(node["children"]) <= k
        shares = [c["share"] for c in node["children"]]
        assert all(0.0 <= s <= 1.0 for s in shares)
        assert sum(shares) <= 1.0 + 1e-6
        assert shares == sorted(shares, reverse=True)  # ranked by |attribution|
        return max(walk(c, depth + 1) for c in node["children"])

    assert walk(tree, 0) == levels


@pytest.mark.parametrize("k,depth", [(1, None), (3, None), (2, 1), (4, 2)])
def test_k_and_depth_are_respected(k, depth):
    tree = saliency_tree(Wired(), wired_obs(), k=k, depth=depth)
    levels = 3 if depth is None else depth
    check_structure(tree, k, levels)
    assert len(tree_nodes(tree)) == sum(k ** d for d in range(levels + 1))


def test_batching_the_parents_does_not_change_the_tree():
    agent, _ = small("cnn")
    obs = torch.randint(0, 256, (1, 7, 7, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    batched = saliency_tree(agent, obs, k=2, depth=3)
    one_by_one = saliency_tree(agent, obs, k=2, depth=3, max_batch=1)
    for a, b in zip(tree_nodes(batched), tree_nodes(one_by_one)):
        assert (a["layer"], a["unit"]) == (b["layer"], b["unit"])
        assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("fail_on,method", [(1, "grad_x_act"), (2, "ig")], ids=["one-pass", "per-level"])
def test_hooks_are_removed_after_an_exception(fail_on, method):
    """The agent fails in the tree's one recorded pass (gradient x activation), or on the second level's k = 2
    parents attributed in one batch (IG): either way no hook is left behind."""
    agent = Wired(fail_on_batch=fail_on)
    with pytest.raises(RuntimeError, match="boom"):
        saliency_tree(agent, wired_obs(), k=2, method=method)
    assert all(not m._forward_hooks for m in agent.modules())
    with pytest.raises(ValueError, match="inside"):
        with UnitTarget(agent, "conv_a", [0]):
            raise ValueError("inside")
    assert all(not m._forward_hooks for m in agent.modules())


def small(arch, recurrent=False, obs_shape=(7, 7, 3), **options):
    torch.manual_seed(0)
    cfg = dict(arch=arch, obs_shape=obs_shape, num_actions=3, recurrent=recurrent, options=options)
    return build(cfg).eval(), cfg


@pytest.mark.parametrize("arch,obs_shape,options,recurrent,expected", [
    ("cnn", (7, 7, 3), {}, False, ["fc", "conv2", "conv1", "embed", "input"]),
    ("impala", (16, 16, 3), {}, False, ["fc_relu", "block3_relu", "block3", "block2", "block1", "input"]),
    ("attention", (7, 7, 3), {"base": "cnn"}, False,  # down through the attention layer into its conv trunk
     ["fc", "attention", "attention_logits", "trunk.conv2", "trunk.conv1", "trunk.embed", "input"]),
    ("cnn", (7, 7, 3), {}, True, ["hx", "fc", "conv2", "conv1", "embed", "input"]),
], ids=["cnn", "impala", "attention", "cnn-gru"])
def test_real_agents_give_a_well_formed_tree(arch, obs_shape, options, recurrent, expected):
    agent, _ = small(arch, recurrent, obs_shape, **options)
    obs = torch.randint(0, 256, (1, *obs_shape), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    state = torch.randn(1, 64, generator=torch.Generator().manual_seed(2)) if recurrent else None
    tree = saliency_tree(agent, obs, k=2, state=state, target="action:1" if arch == "attention" else "value")
    assert tree["layers"] == expected
    check_structure(tree, 2, len(expected))
    with torch.no_grad():
        out = agent(obs, state)
    root_expected = out.logits[0, 1] if arch == "attention" else out.value[0]
    assert tree["activation"] == pytest.approx(float(root_expected), rel=1e-5)
    for node in tree_nodes(tree)[1:]:
        if node["layer"] == "input":
            y, x = node["unit"]
            assert 0 <= y < obs_shape[0] and 0 <= x < obs_shape[1] and node["box"] == [y, x, y + 1, x + 1]
        elif len(node["unit"]) == 3:
            y0, x0, y1, x1 = node["box"]
            assert 0 <= y0 < y1 <= obs_shape[0] and 0 <= x0 < x1 <= obs_shape[1]
    if recurrent:  # the state is used: another state gives another root
        other = saliency_tree(agent, obs, k=1, depth=1, state=torch.zeros(1, 64))
        assert other["activation"] != pytest.approx(tree["activation"], rel=1e-4)


@pytest.mark.parametrize("arch,obs_shape,options,recurrent", [
    ("cnn", (7, 7, 3), {}, False), ("impala", (16, 16, 3), {}, False), ("attention", (7, 7, 3), {"base": "cnn"}, False),
    ("cnn", (7, 7, 3), {}, True), ("nature", (84, 84, 4), {}, False)], ids=["cnn", "impala", "attention", "cnn-gru",
                                                                          "nature"])
@pytest.mark.parametrize("method", ["grad_x_act", "saliency"])
def test_one_recorded_pass_gives_the_tree_a_pass_per_parent_gives(arch, obs_shape, options, recurrent, method):
    """Saliency and gradient x activation trees come from one forward pass with batched backward passes; the same
    tree, unit for unit and score for score, as attributing every level's parents through attribute() (which an
    attribute option, here chunk_size, selects)."""
    agent, _ = small(arch, recurrent, obs_shape, **options)
    obs = torch.randint(0, 256, (1, *obs_shape), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    state = torch.randn(1, 64, generator=torch.Generator().manual_seed(5)) if recurrent else None
    fast = saliency_tree(agent, obs, k=2, state=state, method=method)
    slow = saliency_tree(agent, obs, k=2, state=state, method=method, chunk_size=1 << 20)
    assert len(tree_nodes(fast)) == len(tree_nodes(slow)) > 3
    for a, b in zip(tree_nodes(fast), tree_nodes(slow)):
        assert (a["layer"], a["unit"], a["box"]) == (b["layer"], b["unit"], b["box"])
        assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-6)
        assert a["share"] == pytest.approx(b["share"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("method", ["grad_x_act", "ig"])
@pytest.mark.slow
def test_trees_of_a_batch_are_the_trees_of_each_observation(method):
    """saliency_trees does several observations at once (one pass for the batch): each tree is the one
    saliency_tree gives for that observation alone, its state included."""
    from policylens.attribution import saliency_trees

    agent, _ = small("cnn", True)
    obs = torch.randint(0, 256, (3, 7, 7, 3), generator=torch.Generator().manual_seed(6), dtype=torch.uint8)
    state = torch.randn(3, 64, generator=torch.Generator().manual_seed(7))
    kw = dict(k=2, method=method, **({"steps": 4} if method == "ig" else {}))
    batch = saliency_trees(agent, obs, state=state, **kw)
    assert len(batch) == 3 and batch[0] != batch[1]
    for i, tree in enumerate(batch):
        alone = saliency_tree(agent, obs[i:i + 1], state=state[i:i + 1], **kw)
        for a, b in zip(tree_nodes(tree), tree_nodes(alone), strict=True):
            assert (a["layer"], a["unit"]) == (b["layer"], b["unit"])
            assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-6)


def test_patches_sum_the_pixels_of_each_block():
    agent, obs = Wired(), wired_obs()
    pixels = saliency_tree(agent, obs, k=H * W, layers=["conv_a"])["children"]  # input leaves under conv_a
    patches = saliency_tree(agent, obs, k=9, layers=["conv_a"], patch=2)["children"]
    for parent_px, parent_pa in zip(pixels, patches):
        scores = np.zeros((H, W))
        for leaf in parent_px["children"]:
            scores[tuple(leaf["unit"])] = leaf["score"]
        for leaf in parent_pa["children"]:
            y, x = leaf["unit"]
            assert leaf["score"] == pytest.approx(scores[y:y + 2, x:x + 2].sum(), rel=1e-5, abs=1e-8)
            assert leaf["box"] == [y, x, min(y + 2, H), min(x + 2, W)]


def test_bad_input_is_a_clear_error():
    agent = Wired()
    with pytest.raises(KeyError, match="no layer 'nope'.*conv_a"):
        saliency_tree(agent, wired_obs(), layers=["nope"])
    with pytest.raises(ValueError, match="one observation"):
        saliency_tree(agent, torch.cat([wired_obs(), wired_obs()]))
    with pytest.raises(ValueError, match="k .*>= 1"):
        saliency_tree(agent, wired_obs(), k=0)
    with pytest.raises(ValueError, match="unknown method"):
        saliency_tree(agent, wired_obs(), method="magic")
