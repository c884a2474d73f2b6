"""Edits: projecting a one-hot direction out equals zeroing that channel, on every architecture and both
ways an edit is made (folded into the next layer's weights, or a hook); out of place; idempotent; ablations
remove their hooks; the edit command writes a checkpoint that loads and evaluates as the in-memory edit."""
from __future__ import annotations

import json

import pytest
import torch

from policylens import agents
from policylens.edit import ablate, cli as edit_cli, project_out
from policylens.evaluate import evaluate
from policylens.factors import Directions
from policylens.hooks import capture

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"
GRID, PROCGEN = (7, 7, 3), (64, 64, 3)


def make(arch, obs_shape, recurrent=False, seed=0):
    torch.manual_seed(seed)
    cfg = {"arch": arch, "obs_shape": list(obs_shape), "num_actions": 5, "recurrent": recurrent, "hidden": 16,
           "obs_scale": 0.1 if obs_shape == GRID else 1 / 255,
           "options": {"base": "cnn"} if arch == "attention" else {}}
    return agents.build(cfg).eval(), cfg


def observations(obs_shape, n=4, seed=1):
    return torch.randint(0, 256, (n, *obs_shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def run(agent, obs, state=None) -> torch.Tensor:
    """Everything the agent returns (logits, value, state) as one vector."""
    with torch.no_grad():
        out = agent(obs, state)
    return torch.cat([t.flatten() for t in out if t is not None])


def weights(agent) -> dict:
    return {k: v.detach().clone() for k, v in agent.state_dict().items()}


def layer_output(agent, layer, obs) -> torch.Tensor:
    """The layer's output as the rest of the network sees it (the capture hook is registered last, so it
    runs after any ablation hook already on the layer)."""
    with capture(agent, layer) as cache, torch.no_grad():
        agent(obs)
    return cache[layer]


def most_active_channel(agent, layer, obs) -> int:
    acts = layer_output(agent, layer, obs)  # (B, C, ...)
    return int(acts.abs().movedim(1, 0).reshape(acts.shape[1], -1).mean(1).argmax())


# (arch, obs shape, recurrent, layer, how the edit is made)
CASES = [
    ("cnn", GRID, False, "embed", "fold"), ("cnn", GRID, False, "conv1", "fold"),
    ("cnn", GRID, False, "conv2", "fold"),  # into the dense layer, through the flatten
    ("cnn", GRID, False, "fc", "fold"),  # into both heads
    ("cnn", GRID, True, "fc", "fold"),  # into the GRU cell's input weights
    ("cnn", GRID, True, "hx", "hook"),  # the state is carried to the next step: no weights to fold into
    ("impala", PROCGEN, False, "block1", "fold"), ("impala", PROCGEN, False, "block2", "fold"),
    ("impala", PROCGEN, False, "block3", "hook"),  # a ReLU comes next
    ("impala", PROCGEN, False, "block3_relu", "fold"), ("impala", PROCGEN, False, "fc_relu", "fold"),
    ("clear", PROCGEN, False, "pool1", "fold"), ("clear", PROCGEN, False, "fc1", "fold"),
    ("clear", PROCGEN, False, "conv2b", "hook"),  # L2 pooling comes next (not linear)
    # the attention logits conv takes it, but it is also multiplied by the attention maps: the check sees that
    ("attention", GRID, False, "trunk.conv2", "hook"),
]


@pytest.mark.parametrize("arch,obs_shape,recurrent,layer,how", CASES,
                         ids=[f"{a}{'-gru' if r else ''}-{layer}" for a, _, r, layer, _ in CASES])
def test_projecting_out_a_one_hot_direction_equals_zeroing_that_channel(arch, obs_shape, recurrent, layer, how):
    agent, _ = make(arch, obs_shape, recurrent)
    obs = observations(obs_shape)
    state = torch.randn(4, 16, generator=torch.Generator().manual_seed(2)) if recurrent else None
    c = most_active_channel(agent, layer, obs)
    num_channels = agents.layer_shapes(agent, names=[layer])[layer][0]
    before = weights(agent)
    edited = project_out(agent, layer, torch.eye(num_channels)[c])
    record = edited.policylens_edits[-1]
    assert record["how"] == how, record["reason"]
    with ablate(agent, layer, channels=[c]):
        zeroed = run(agent, obs, state)
    original = run(agent, obs, state)
    torch.testing.assert_close(run(edited, obs, state), zeroed, atol=1e-5, rtol=1e-5)
    assert (zeroed - original).abs().max() > 1e-6  # the channel mattered: the comparison has teeth
    # out of place: the original's weights, hooks and outputs are untouched
    for k, v in weights(agent).items():
        assert torch.equal(v, before[k]), k
    assert not any(m._forward_hooks for m in agent.modules())
    assert not hasattr(agent, "policylens_edits")
    changed = {k for k, v in weights(edited).items() if not torch.equal(v, before[k])}
    if how == "fold":  # exactly the consumers' input weights changed, and no hook is left behind
        assert changed == {f"{name}.{'weight_ih' if name == 'gru' else 'weight'}" for name in record["into"]}
        assert not any(m._forward_hooks for m in edited.modules())
    else:
        assert not changed and record["into"] == [layer] and record["reason"]


def test_projection_equals_an_independent_computation_for_a_mixed_direction():
    agent, _ = make("cnn", GRID)
    obs = observations(GRID)
    v = torch.randn(64, generator=torch.Generator().manual_seed(3))
    edited = project_out(agent, "conv2", Directions(v, "conv2", ("mix",), "nmf"))
    with torch.no_grad():
        feats = agent.conv2(agent.conv1(agent.embed(agent.scale(obs))))  # (B, 64, 7, 7)
        along = torch.einsum("bchw,c->bhw", feats, v) / v.dot(v)  # (B, 7, 7)
        projected = feats - along[:, None] * v[None, :, None, None]
        hidden = agent.fc(projected.flatten(1))
        expected = torch.cat([agent.pi(hidden).flatten(), agent.v(hidden).flatten()])
    torch.testing.assert_close(run(edited, obs), expected, atol=1e-5, rtol=1e-5)
    assert edited.policylens_edits[-1]["labels"] == ["mix"] and edited.policylens_edits[-1]["into"] == ["fc.0"]


@pytest.mark.parametrize("layer", ["conv1", "hx"])
def test_projecting_out_twice_equals_once(layer):
    agent, _ = make("cnn", GRID, recurrent=True)
    obs = observations(GRID)
    channels = agents.layer_shapes(agent, names=[layer])[layer][0]
    v = torch.randn(channels, generator=torch.Generator().manual_seed(4))
    once = project_out(agent, layer, v)
    twice = project_out(once, layer, v)
    torch.testing.assert_close(run(twice, obs), run(once, obs), atol=1e-5, rtol=1e-5)
    assert len(twice.policylens_edits) == 2 and len(once.policylens_edits) == 1
    assert not torch.allclose(run(once, obs), run(agent, obs), atol=1e-5)


def test_a_direction_orthogonal_to_every_activation_changes_nothing():
    agent, _ = make("cnn", GRID)
    with torch.no_grad():  # channels 2 and 5 of conv1 are dead: always zero after the ReLU
        agent.conv1.conv.weight[[2, 5]] = 0
        agent.conv1.conv.bias[[2, 5]] = -1
    obs = observations(GRID, n=8)
    dead = torch.zeros(32)
    dead[2], dead[5] = 1.0, -2.0
    edited = project_out(agent, "conv1", dead)
    assert edited.policylens_edits[-1]["how"] == "fold"
    assert not torch.equal(edited.conv2.conv.weight, agent.conv2.conv.weight)  # the weights did change ...
    torch.testing.assert_close(run(edited, obs), run(agent, obs), atol=1e-6, rtol=1e-6)  # ... the outputs not
    live = dead.clone()
    live[2], live[7] = 0.0, 1.0  # a direction with a live channel in it does change them
    assert not torch.allclose(run(project_out(agent, "conv1", live), obs), run(agent, obs), atol=1e-6)


def test_several_directions_are_projected_out_as_their_span():
    agent, _ = make("cnn", GRID)
    obs = observations(GRID)
    a, b = most_active_channel(agent, "conv1", obs), 0
    b = 1 if a == 0 else 0
    vectors = torch.zeros(2, 32)
    vectors[0, a], vectors[0, b] = 1.0, 1.0  # e_a + e_b and e_a - 2 e_b: not one-hot, same span
    vectors[1, a], vectors[1, b] = 1.0, -2.0
    edited = project_out(agent, "conv1", vectors)
    with ablate(agent, "conv1", channels=[a, b]):
        zeroed = run(agent, obs)
    torch.testing.assert_close(run(edited, obs), zeroed, atol=1e-5, rtol=1e-5)
    with ablate(agent, "conv1", directions=vectors):
        torch.testing.assert_close(run(agent, obs), zeroed, atol=1e-5, rtol=1e-5)


def test_project_out_errors_are_clear():
    agent, _ = make("cnn", GRID)
    with pytest.raises(ValueError, match=r"32 channels.*'conv2' outputs 64"):
        project_out(agent, "conv2", torch.ones(32))
    with pytest.raises(ValueError, match="of layer 'conv1', not 'conv2'"):
        project_out(agent, "conv2", Directions(torch.ones(32), "conv1"))
    with pytest.raises(KeyError, match="conv9"):
        project_out(agent, "conv9", torch.ones(32))
    with pytest.raises(ValueError, match="all zero"):
        project_out(agent, "conv1", torch.zeros(32))


# ---------------------------------------------------------------- ablations


def test_zero_ablation_equals_a_hand_computation():
    agent, _ = make("cnn", GRID)
    obs = observations(GRID)
    with torch.no_grad():
        feats = agent.conv2(agent.conv1(agent.embed(agent.scale(obs))))  # (B, 64, 7, 7)
        feats[:, [3, 10]] = 0
        expected = agent.pi(agent.fc(feats.flatten(1)))
        with ablate(agent, "conv2", channels=[3, 10]) as same:
            assert same is agent
            got = agent(obs).logits
    torch.testing.assert_close(got, expected)


def test_ablate_removes_its_hook_after_an_exception():
    agent, _ = make("cnn", GRID)
    obs = observations(GRID)
    original = run(agent, obs)
    with pytest.raises(RuntimeError, match="inside"):
        with ablate(agent, "conv1", channels=[0, 1, 2]):
            assert agent.conv1._forward_hooks
            raise RuntimeError("inside the block")
    assert not agent.conv1._forward_hooks
    torch.testing.assert_close(run(agent, obs), original)
    with pytest.raises(ValueError, match="out of range"):  # an error raised by the hook itself
        with ablate(agent, "conv1", channels=[40]):
            agent(obs)
    assert not agent.conv1._forward_hooks
    with pytest.raises(ValueError, match="exactly one"):
        with ablate(agent, "conv1"):
            pass
    with pytest.raises(ValueError, match="needs mean"):
        with ablate(agent, "conv1", channels=[0], mode="mean"):
            pass


@pytest.mark.parametrize("spatial", [False, True], ids=["per-channel-mean", "per-position-mean"])
def test_mean_ablation_of_channels_puts_the_given_mean_there(spatial):
    agent, _ = make("cnn", GRID)
    obs = observations(GRID)
    mean = torch.rand(32, 7, 7) if spatial else torch.rand(32)
    original = layer_output(agent, "conv1", obs)  # (B, 32, 7, 7)
    with ablate(agent, "conv1", channels=[4, 9], mode="mean", mean=mean):
        replaced = layer_output(agent, "conv1", obs)
    expected = mean[[4, 9]] if spatial else mean[[4, 9]][:, None, None]
    torch.testing.assert_close(replaced[:, [4, 9]], expected.expand(4, 2, 7, 7))
    keep = [c for c in range(32) if c not in (4, 9)]
    torch.testing.assert_close(replaced[:, keep], original[:, keep])
    with pytest.raises(ValueError, match=r"\(32,\) or \(32, 7, 7\)"):
        with ablate(agent, "conv1", channels=[0], mode="mean", mean=torch.zeros(5)):
            agent(obs)


def test_mean_ablation_of_a_direction_replaces_only_its_component():
    agent, _ = make("cnn", GRID)
    obs = observations(GRID)
    v = torch.rand(32)
    unit = v / v.norm()
    mean = torch.rand(32) * 3
    original = layer_output(agent, "conv1", obs)  # (B, 32, 7, 7)
    with ablate(agent, "conv1", directions=v, mode="mean", mean=mean):
        replaced = layer_output(agent, "conv1", obs)
    along = torch.einsum("bchw,c->bhw", replaced, unit)
    torch.testing.assert_close(along, torch.full_like(along, float(mean @ unit)), atol=1e-5, rtol=1e-5)
    rest = lambda x: x - torch.einsum("bhw,c->bchw", torch.einsum("bchw,c->bhw", x, unit), unit)  # noqa: E731
    torch.testing.assert_close(rest(replaced), rest(original), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- the edit command


@pytest.fixture(scope="module")
def grid_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit_runs")
    for name, recurrent in (("ff", False), ("rnn", True)):
        agent, cfg = make("cnn", GRID, recurrent)
        cfg["num_actions"] = 3
        agent = agents.build(cfg)
        agents.save_agent(agent, cfg, root / name / "agent", extra={"env": ENV, "action_names": ["l", "r", "f"]})
    dirs = Directions(torch.rand(2, 32, generator=torch.Generator().manual_seed(5)), "conv1", ("wall", "ball"), "nmf")
    dirs.save(root / "dirs" / "conv1-nmf")
    return root


@pytest.mark.slow
def test_edit_command_writes_a_checkpoint_equal_to_the_in_memory_edit(grid_runs, capsys):
    new = grid_runs / "edited"
    assert edit_cli.main([str(grid_runs / "ff"), "--directions", str(grid_runs / "dirs" / "conv1-nmf.json"),
                          "--direction", "ball", "--out", str(new)]) == 0
    assert "ball" in capsys.readouterr().out
    agent = agents.load(grid_runs / "ff")
    expected = project_out(agent, "conv1", Directions.load(grid_runs / "dirs" / "conv1-nmf").select(["ball"]))
    loaded = agents.load(new)
    obs = observations(GRID)
    torch.testing.assert_close(run(loaded, obs), run(expected, obs))
    assert not torch.allclose(run(loaded, obs), run(agent, obs), atol=1e-6)
    config = json.loads((new / "agent" / "config.json").read_text())
    assert config["env"] == ENV and config["action_names"] == ["l", "r", "f"]
    (edit,) = config["edits"]
    assert edit["layer"] == "conv1" and edit["labels"] == ["ball"] and edit["how"] == "fold"
    assert edit["edited_from"] == str(grid_runs / "ff")
    # `policylens evaluate NEW_RUN` plays exactly as the edited agent in memory does
    on_disk = evaluate(str(new), episodes=3, seed=0)["per_episode"]
    in_memory = evaluate(expected, ENV, episodes=3, seed=0)["per_episode"]
    assert on_disk == in_memory
    with pytest.raises(SystemExit):  # no silent overwrite
        edit_cli.main([str(grid_runs / "ff"), "--layer", "conv1", "--channel", "0", "--out", str(new)])
    assert "--overwrite" in capsys.readouterr().err


def test_edit_command_with_a_channel_equals_zeroing_it(grid_runs):
    new = grid_runs / "no-channel-3"
    assert edit_cli.main([str(grid_runs / "ff"), "--layer", "embed", "--channel", "3", "--out", str(new)]) == 0
    agent, obs = agents.load(grid_runs / "ff"), observations(GRID)
    with ablate(agent, "embed", channels=[3]):
        zeroed = run(agent, obs)
    torch.testing.assert_close(run(agents.load(new), obs), zeroed, atol=1e-5, rtol=1e-5)


def test_edit_command_refuses_an_edit_a_checkpoint_cannot_carry(grid_runs, capsys):
    with pytest.raises(SystemExit) as e:
        edit_cli.main([str(grid_runs / "rnn"), "--layer", "hx", "--channel", "0", "--out", str(grid_runs / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "hook" in err and "'hx'" in err
    assert not (grid_runs / "x" / "agent").exists()
    with pytest.raises(SystemExit):
        edit_cli.main([str(grid_runs / "ff"), "--directions", str(grid_runs / "dirs" / "conv1-nmf"),
                       "--out", str(grid_runs / "y")])
    assert "--direction" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        edit_cli.main([str(grid_runs / "ff"), "--directions", str(grid_runs / "dirs" / "nope"), "--direction", "0",
                       "--out", str(grid_runs / "y")])
    assert "nope.json" in capsys.readouterr().err


def test_oblique_projector_removes_the_direction_and_passes_the_kept_ones():
    from policylens.edit.project import projector

    g = torch.Generator().manual_seed(7)
    keep = torch.rand(3, 10, generator=g).double()  # (3, C)
    v = (keep[0] + 0.3 * keep[1] + 0.2 * torch.rand(10, generator=g)).double()  # overlaps the kept span
    basis = (v / v.norm())[None]
    m = projector(basis.float(), keep.float())
    torch.testing.assert_close(m @ v, torch.zeros_like(v), atol=1e-6, rtol=0)
    torch.testing.assert_close(m @ keep.T, keep.T, atol=1e-6, rtol=0)
    torch.testing.assert_close(m @ m, m, atol=1e-6, rtol=0)  # a projection
    orthogonal = projector(basis.float())
    torch.testing.assert_close(projector(basis.float(), torch.zeros(0, 10)), orthogonal)
    assert (orthogonal @ keep.T - keep.T).abs().max() > 0.1  # the plain projection disturbs the kept ones
    with pytest.raises(ValueError, match="span"):
        projector((keep[0] / keep[0].norm())[None].float(), keep.float())


def test_edit_command_keep_others_folds_the_oblique_projection(grid_runs):
    new = grid_runs / "ball-keep-wall"
    dirs = Directions.load(grid_runs / "dirs" / "conv1-nmf")
    assert edit_cli.main([str(grid_runs / "ff"), "--directions", str(grid_runs / "dirs" / "conv1-nmf"),
                          "--direction", "ball", "--keep", "others", "--out", str(new)]) == 0
    agent, obs = agents.load(grid_runs / "ff"), observations(GRID)
    expected = project_out(agent, "conv1", dirs.select(["ball"]), keep=dirs.select(["wall"]))
    torch.testing.assert_close(run(agents.load(new), obs), run(expected, obs))
    # the kept direction passes: an activation along "wall" reaches conv2 exactly as before
    wall = dirs["wall"][None, :, None, None].expand(1, 32, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(agents.load(new).conv2(wall), agent.conv2(wall), atol=1e-5, rtol=1e-5)
        assert (agents.load(new).conv2(dirs["ball"][None, :, None, None].expand(1, 32, 7, 7))
                - agent.conv2.conv.bias[None, :, None, None].relu()).abs().max() < 1e-4
