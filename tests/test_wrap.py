"""``policylens.agents.wrap``: any torch policy as an agent, through a small adapter."""
from __future__ import annotations

import doctest
import sys

import pytest
import torch
from torch import nn

import policylens.agents.importers.wrapper  # noqa: F401  (the module, for its doctest)
from policylens.agents import layer_names, layer_shapes, wrap
from policylens.attribution import attribute


class TwoHeads(nn.Module):
    """Someone's policy: NCHW floats in [0, 1] -> (logits, value (B, 1))."""

    def __init__(self, num_actions=5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU())
        self.policy, self.value = nn.Linear(32, num_actions), nn.Linear(32, 1)

    def forward(self, x):
        h = self.body(x)
        return self.policy(h), self.value(h)


def frames(n=4, seed=0):
    return torch.randint(0, 256, (n, 8, 8, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_the_docstring_example_runs():
    result = doctest.testmod(sys.modules["policylens.agents.importers.wrapper"])
    assert result.attempted >= 8 and result.failed == 0


def test_wrapped_outputs_are_the_modules_own():
    torch.manual_seed(0)
    net = TwoHeads().eval()
    agent = wrap(net, obs_shape=(8, 8, 3), num_actions=5, layout="nchw", scale=1 / 255,
                 layers={"body.1": "(B, 8, 6, 6) post-ReLU", "body.4": "(B, 32) post-ReLU"})
    obs = frames()
    with torch.no_grad():
        logits, value = net(obs.permute(0, 3, 1, 2).float() * (1 / 255))
        out = agent(obs)
    assert torch.equal(out.logits, logits) and torch.equal(out.value, value[:, 0])
    assert layer_names(agent) == ["policy.body.1", "policy.body.4", "pi", "v"]
    assert layer_shapes(agent) == {"policy.body.1": (8, 6, 6), "policy.body.4": (32,), "pi": (5,), "v": (1,)}
    # integrated gradients through the wrapper: completeness holds on the module's own layer
    attr, delta = attribute(agent, obs, target="value", layer="policy.body.1", method="ig", steps=64,
                            return_delta=True)
    assert attr.shape == (4, 8, 6, 6) and delta.abs().max() < 1e-3 * (value.abs().max() + 1)


def test_a_q_network_and_a_custom_adapter():
    torch.manual_seed(1)
    q = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    agent = wrap(q, obs_shape=(4,), num_actions=3, outputs="q")
    x = torch.randn(6, 4)
    out = agent(x)
    assert torch.equal(out.logits, q(x)) and torch.equal(out.value, q(x).max(-1).values)
    doubled = wrap(q, obs_shape=(4,), num_actions=3, outputs=lambda o: (2 * o, o.mean(-1)))
    assert torch.equal(doubled(x).logits, 2 * q(x))


def test_bad_adapters_are_named():
    net = TwoHeads()
    with pytest.raises(KeyError, match="no layer 'body.9'.*body.1"):
        wrap(net, obs_shape=(8, 8, 3), num_actions=5, layers={"body.9": ""})
    with pytest.raises(ValueError, match="layout 'hwc'"):
        wrap(net, obs_shape=(8, 8, 3), num_actions=5, layout="hwc")
    with pytest.raises(ValueError, match="outputs 'logits'"):
        wrap(net, obs_shape=(8, 8, 3), num_actions=5, outputs="logits")
    agent = wrap(net, obs_shape=(8, 8, 3), num_actions=4, layout="nchw")
    with pytest.raises(ValueError, match=r"logits of shape \(4, 5\), expected \(B, 4\)"):
        agent(frames())
    with pytest.raises(ValueError, match=r"observation shape \(8, 8, 4\) does not match"):
        agent(torch.zeros(2, 8, 8, 4, dtype=torch.uint8))


def test_the_docs_example_runs():
    """docs/import.md's wrap example, executed as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "import.md").read_text()
    block = text.split("## Any torch policy", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(block, "docs/import.md", "exec"), scope)
    assert scope["out"].logits.shape == (4, 5) and scope["attr"].shape == (4, 8, 6, 6)
