"""Hidden-state direction swaps (seed 000's validation by control), against hand computations.

The reference code's two bugs are what these would catch: its "to" loop used the "from" direction (the swap
would be a no-op or a collapse), and it returned the change instead of the new state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policylens.agents import build, load_agent, save_agent
from policylens.edit import swap_directions, swap_matrix
from policylens.factors import Directions

CONFIG = dict(arch="cnn", obs_shape=(7, 7, 3), num_actions=3, recurrent=True, hidden=6)


def pca(vectors, **meta) -> Directions:
    return Directions(torch.tensor(vectors, dtype=torch.float32), "hx", ("saw", "box", "coin")[:len(vectors)], "pca",
                      meta)


@pytest.mark.parametrize("swaps, expected", [
    ([(0, 1)], [0, 3, 3]),            # c0 = 1 joins c1 = 2 on e1
    ([(0, None)], [0, 2, 3]),         # collapsed into the nullspace of e0
    ([(0, 1), (1, 0)], [2, 1, 3]),    # exchanged
    ([("saw", "box")], [0, 3, 3]),    # by label
])
def test_orthonormal_swaps_by_hand(swaps, expected):
    directions = pca([[1, 0, 0], [0, 1, 0]])
    delta = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(delta @ swap_matrix(directions, swaps), torch.tensor([expected], dtype=torch.float32))


def test_oblique_directions_move_coefficients_not_coordinates():
    v = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    directions = Directions(v, "hx", ("a", "b"), "probe", {})
    delta = 2 * v[0] + 3 * v[1] + torch.tensor([0.0, 0.0, 5.0])  # (2, 5, 5): c = (2, 3) + a part outside
    moved = delta[None] @ swap_matrix(directions, [(0, 1)])
    assert torch.allclose(moved[0], 5 * v[1] + torch.tensor([0.0, 0.0, 5.0]), atol=1e-6)  # c = (0, 5), rest kept


def test_z_scored_directions_swap_in_z_space():
    directions = pca([[1, 0, 0], [0, 1, 0]], std=[2.0, 1.0, 1.0])
    delta = torch.tensor([[2.0, 2.0, 3.0]])  # z: (1, 2, 3) -> (0, 3, 3) -> raw (0, 3, 3)
    assert torch.allclose(delta @ swap_matrix(directions, [(0, 1)]), torch.tensor([[0.0, 3.0, 3.0]]))


def _agent():
    torch.manual_seed(0)
    return build(CONFIG).eval()


def _directions():
    q, _ = torch.linalg.qr(torch.randn(6, 3, generator=torch.Generator().manual_seed(1)))
    return pca(q.T.tolist())


def _episode(steps=5):
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, 10, (steps, 1, 7, 7, 3), generator=g).to(torch.uint8)  # (T, B, H, W, C)


def test_swapped_agent_continues_from_the_edited_state_and_leaves_the_original_alone():
    agent, directions = _agent(), _directions()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    swapped = swap_directions(agent, directions, [(0, 2), (1, None)])
    m = swap_matrix(directions, [(0, 2), (1, None)])
    with torch.no_grad():
        h_ref, h = agent.initial_state(1), None
        for obs in _episode():
            out = swapped(obs, h)
            gru = agent.gru(agent.features(obs), h_ref)  # the unedited cell from the edited state
            h_ref = h_ref + (gru - h_ref) @ m  # the new state, not the change
            assert torch.allclose(out.state, h_ref, atol=1e-5)
            assert torch.allclose(out.logits, agent.pi(h_ref), atol=1e-5)
            h = out.state
    assert all(torch.equal(before[k], v) for k, v in agent.state_dict().items())
    assert not hasattr(agent, "policylens_edits") and type(agent.gru) is torch.nn.GRUCell


def test_identity_swap_changes_nothing_and_swaps_compose():
    agent, directions = _agent(), _directions()
    same = swap_directions(agent, directions, [(1, 1)])
    twice = swap_directions(swap_directions(agent, directions, [(0, 1)]), directions, [(1, 2)])
    with torch.no_grad():
        obs = _episode()[0]
        assert torch.allclose(same(obs).logits, agent(obs).logits, atol=1e-6)
        expected = swap_matrix(directions, [(0, 1)]) @ swap_matrix(directions, [(1, 2)])
        assert torch.allclose(twice.gru.swap, expected, atol=1e-6)


def test_a_swapped_agent_saves_and_loads_as_itself(tmp_path):
    agent, directions = _agent(), _directions()
    swapped = swap_directions(agent, directions, [(0, 2)])
    save_agent(swapped, CONFIG, tmp_path / "agent")
    loaded = load_agent(tmp_path / "agent")
    with torch.no_grad():
        h1 = h2 = None
        for obs in _episode():
            a, b = swapped(obs, h1), loaded(obs, h2)
            assert torch.equal(a.logits, b.logits)
            h1, h2 = a.state, b.state
    assert not np.allclose(swapped.gru.swap.numpy(), np.eye(6))


@pytest.mark.parametrize("swaps, error, message", [
    ([("saw", "lava")], KeyError, "no direction labelled 'lava'; labels: saw, box, coin"),
    ([(0, 7)], KeyError, "direction 7 does not exist: there are 3"),
    ([], ValueError, "at least one"),
])
def test_bad_swaps_name_the_problem(swaps, error, message):
    with pytest.raises(error, match=message):
        swap_directions(_agent(), _directions(), swaps)


def test_swap_needs_a_recurrent_agent_and_hidden_state_directions():
    with pytest.raises(ValueError, match="needs a recurrent agent"):
        swap_directions(build({**CONFIG, "recurrent": False}), _directions(), [(0, 1)])
    other = Directions(torch.eye(6)[:2], "conv1", (), "pca", {})
    with pytest.raises(ValueError, match="layer 'conv1'"):
        swap_directions(_agent(), other, [(0, 1)])
