"""policylens.hooks: the one capture of named layers. The cache holds what the layers computed, in the order the
pass reached them; ``stop`` ends the pass after the last layer asked for; hooks are gone after any exit."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from policylens import agents
from policylens.hooks import agent_device, capture, layer_shapes, run_with_cache

AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}


def tiny(**kw):
    torch.manual_seed(0)
    return agents.build({**AGENT, **kw}).eval()


def obs(n=5, seed=1):
    return torch.randint(0, 256, (n, 7, 7, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def no_hooks(agent) -> bool:
    return all(not m._forward_hooks for m in agent.modules())


@torch.no_grad()
def test_run_with_cache_holds_the_layers_computed_by_hand_in_forward_order():
    agent, x = tiny(), obs()
    out, cache = run_with_cache(agent, x, ["pi", "conv2", "conv1"])  # asked out of order
    conv1 = agent.conv1(agent.embed(agent.scale(x)))  # (5, C, 7, 7)
    torch.testing.assert_close(cache["conv1"], conv1)
    torch.testing.assert_close(cache["conv2"], agent.conv2(conv1))
    torch.testing.assert_close(cache["pi"], out.logits)
    assert list(cache) == ["conv1", "conv2", "pi"]  # the order the pass reached them
    assert cache.calls == {"pi": 1, "conv2": 1, "conv1": 1}
    assert no_hooks(agent)


@torch.no_grad()
def test_stop_ends_the_pass_once_every_layer_asked_for_has_run():
    agent, x = tiny(), obs()
    out, cache = run_with_cache(agent, x, "conv1", stop=True)
    assert out is None and set(cache) == {"conv1"}
    with capture(agent, ["conv1", "conv2", "pi"]) as seen:  # records what a stopped pass did not reach
        run_with_cache(agent, x, "conv2", stop=True)
    assert seen.calls == {"conv1": 1, "conv2": 1, "pi": 0}
    assert no_hooks(agent)


def test_hooks_are_removed_after_an_error_and_unknown_layers_are_named():
    agent = tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with capture(agent, ["conv1", "pi"]):
            raise RuntimeError("boom")
    with pytest.raises(ValueError):  # the agent refuses the wrong observation shape, inside the block
        run_with_cache(agent, torch.zeros(2, 7, 7, 20, dtype=torch.uint8), "conv1")
    assert no_hooks(agent)
    with pytest.raises(KeyError, match="nope.*conv1"):
        capture(agent, ["conv1", "nope"]).__enter__()
    assert no_hooks(agent)  # the name is checked before any hook is registered


class TupleOut(nn.Module):
    """A foreign agent whose layer gives a tuple, as nn.GRU does."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, obs):
        return self.gru(obs.float())


@torch.no_grad()
def test_a_tuple_output_is_cached_as_its_first_tensor_unless_whole():
    agent, x = TupleOut(), torch.rand(2, 5, 3)
    out, cache = run_with_cache(agent, x, "gru")
    torch.testing.assert_close(cache["gru"], out[0])
    with capture(agent, "gru", whole=True) as whole:
        agent(x)
    assert isinstance(whole["gru"], tuple) and len(whole["gru"]) == 2
    assert agent_device(agent) == torch.device("cpu") and agent_device(nn.ReLU()) == torch.device("cpu")


def test_layer_shapes_match_the_cached_activations():
    agent = tiny(recurrent=True, hidden=16)
    shapes = layer_shapes(agent)
    _, cache = run_with_cache(agent, obs(2), list(shapes))
    assert shapes == {n: tuple(a.shape[1:]) for n, a in cache.items()}
    assert shapes["hx"] == (16,) and agents.layer_shapes is layer_shapes  # the agents package forwards it
