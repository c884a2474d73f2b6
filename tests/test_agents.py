"""Agents: shapes, documented layers, hookable ReLUs, recurrent semantics, attention, clear errors."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from policylens.agents import AgentOutput, build, get_layer, layer_names, layer_shapes, nets
from policylens.agents.base import MaxQ
from policylens.agents.layers import HEAD_DOCS, describe_layers, format_layers
from policylens.agents.nets import attention_entropy

PROCGEN, GRID, GRID_SYM, GRID_RGB, ATARI = (64, 64, 3), (7, 7, 3), (7, 7, 20), (56, 56, 3), (84, 84, 4)
NUM_ACTIONS = 7

# (arch, obs shape, options): each architecture on the observations it is meant for
TYPICAL = [
    ("impala", PROCGEN, {}), ("impala", GRID_RGB, {}),
    ("clear", PROCGEN, {}), ("clear", GRID_RGB, {}),
    ("cnn", GRID, {}), ("cnn", GRID_SYM, {}), ("cnn", GRID_RGB, {}), ("cnn", PROCGEN, {}),
    ("mlp", GRID, {}), ("mlp", GRID_SYM, {}), ("mlp", GRID_RGB, {}),
    ("attention", PROCGEN, {}), ("attention", GRID_RGB, {}),
    ("attention", GRID, {"base": "cnn"}), ("attention", GRID_SYM, {"base": "cnn"}),
    ("nature", ATARI, {}), ("nature", PROCGEN, {}), ("attention", ATARI, {"base": "nature"}),
]
ARCHS_64 = [("impala", {}), ("clear", {}), ("cnn", {}), ("mlp", {}), ("attention", {})]


def make(arch, obs_shape=PROCGEN, recurrent=False, seed=0, **options):
    torch.manual_seed(seed)
    return build(dict(arch=arch, obs_shape=obs_shape, num_actions=NUM_ACTIONS, recurrent=recurrent,
                      options=options)).eval()


def random_obs(obs_shape, batch=3, seed=1, high=256):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (batch, *obs_shape), generator=g, dtype=torch.uint8)  # (B, H, W, C)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("recurrent", [False, True], ids=["ff", "gru"])
@pytest.mark.parametrize("arch,obs_shape,options", TYPICAL, ids=[f"{a}-{'x'.join(map(str, s))}" for a, s, _ in TYPICAL])
@pytest.mark.slow
def test_every_architecture_gives_logits_value_state(arch, obs_shape, options, recurrent):
    agent = make(arch, obs_shape, recurrent, **options)
    obs = random_obs(obs_shape, batch=3)
    with torch.no_grad():
        out = agent(obs)
    assert isinstance(out, AgentOutput)
    assert out.logits.shape == (3, NUM_ACTIONS)
    assert out.value.shape == (3,)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.value).all()
    if recurrent:
        assert out.state is not None and out.state.shape == (3, 64)
    else:
        assert out.state is None
    # the batch rows are independent: row 1 alone gives row 1 of the batch
    with torch.no_grad():
        alone = agent(obs[1:2])
    torch.testing.assert_close(alone.logits[0], out.logits[1], rtol=1e-5, atol=1e-5)


def test_clear_refuses_observations_too_small_for_its_pooling():
    with pytest.raises(ValueError, match=r"16x16.*\(7, 7, 3\)"):
        make("clear", GRID)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="impala.*clear.*cnn.*nature.*mlp.*attention"):
        build(dict(arch="resnet9000"))


def test_nature_is_the_dqn_nature_cnn_on_84x84_frames():
    """32x8x8/4, 64x4x4/2, 64x3x3/1 convs and a 512 dense layer: the parameter count of the published network
    (1,684,000 + heads), the documented 20/9/7 maps, and rl-attention's 7x7 attention maps over its last conv."""
    agent = make("nature", ATARI)
    trunk = sum(p.numel() for n, p in agent.named_parameters() if not n.startswith(("pi.", "v.")))
    assert trunk == (4 * 64 * 32 + 32) + (32 * 16 * 64 + 64) + (64 * 9 * 64 + 64) + (3136 * 512 + 512)
    assert {n: s for n, s in layer_shapes(agent).items()} == {
        "conv1": (32, 20, 20), "conv2": (64, 9, 9), "conv3": (64, 7, 7), "fc": (512,), "pi": (NUM_ACTIONS,),
        "v": (1,)}
    assert layer_shapes(make("attention", ATARI, base="nature"))["attention"] == (2, 7, 7)
    default = make("attention", ATARI)  # on 84x84 frames the trunk is the Nature CNN unless told otherwise
    assert type(default.trunk).__name__ == "Nature" and layer_shapes(default)["attention"] == (2, 7, 7)
    assert type(make("attention", PROCGEN).trunk).__name__ == "Impala"  # elsewhere IMPALA, as before
    with pytest.raises(ValueError, match="36x36.*\\(7, 7, 3\\)"):
        make("nature", GRID)
    with pytest.raises(ValueError, match="attention base 'vgg'.*impala, nature, cnn"):
        make("attention", ATARI, base="vgg")


def _doc_shape(doc: str, namespace: dict) -> tuple:
    """``"(B, 32, H/8, W/8) post-ReLU"`` -> ``(32, 8, 8)`` with H = W = 64."""
    m = re.match(r"\(B, ([^)]*)\)", doc)
    assert m, f"doc {doc!r} does not start with its shape (B, ...)"
    dims = []
    for expr in m.group(1).split(","):
        value = eval(expr.strip(), {"__builtins__": {}}, dict(namespace))  # tiny arithmetic on known names
        assert float(value).is_integer(), (doc, expr, value)
        dims.append(int(value))
    return tuple(dims)


@pytest.mark.parametrize("recurrent", [False, True], ids=["ff", "gru"])
@pytest.mark.parametrize("arch,options", ARCHS_64, ids=[a for a, _ in ARCHS_64])
def test_documented_layers_exist_and_have_the_documented_shape_for_64x64(arch, options, recurrent):
    agent = make(arch, PROCGEN, recurrent, **options)
    assert agent.LAYERS, f"{arch} documents no layers"
    modules = dict(agent.named_modules())
    for name in agent.LAYERS:
        assert name in modules, f"LAYERS names {name!r}, which is not a submodule of {arch}"
    # an agent on another's conv trunk lists the trunk's layers it keeps first (attention: IMPALA without its fc)
    trunk = ["trunk.block1", "trunk.block2", "trunk.block3", "trunk.block3_relu"] if arch == "attention" else []
    expected_names = trunk + list(agent.LAYERS) + (["hx"] if recurrent else []) + ["pi", "v"]
    assert layer_names(agent) == expected_names
    # what the docs promise, evaluated for a 64x64 input (patch 8 for the grid CNN, impala trunk of attention)
    namespace = {"H": 64, "W": 64, "patch": 8, "heads": 2, "h": 8, "w": 8, "hidden": 64, "A": NUM_ACTIONS}
    shapes = layer_shapes(agent)
    rows = {row["name"]: row for row in describe_layers(agent)}
    assert list(rows) == expected_names
    # independently measured activation shapes (hooks written here, not layer_shapes)
    measured, handles = {}, []
    for name in expected_names:
        handles.append(modules[name].register_forward_hook(
            lambda m, i, o, name=name: measured.__setitem__(name, tuple(o.shape[1:]))))
    with torch.no_grad():
        agent(random_obs(PROCGEN, batch=2))
    for h in handles:
        h.remove()
    for name in expected_names:
        doc = agent.LAYERS.get(name) or (agent.trunk.LAYERS[name[6:]] if name.startswith("trunk.") else HEAD_DOCS[name])
        assert rows[name]["doc"] == doc
        assert rows[name]["kind"] == type(modules[name]).__name__
        assert measured[name] == _doc_shape(doc, namespace), (arch, name, doc)
        assert shapes[name] == measured[name] and rows[name]["shape"] == measured[name]


# ---------------------------------------------------------------- ReLUs are modules


FUNCTIONAL_RELU = re.compile(r"\b(F|functional|torch)\.relu\b|\.relu_\(|\bclamp\(min=0|\bclamp_min\(0|\.relu\(\)")


def test_no_functional_relu_in_agent_sources():
    pkg = Path(nets.__file__).parent
    for file in ("nets.py", "base.py"):
        text = (pkg / file).read_text()
        assert not FUNCTIONAL_RELU.search(text), f"functional ReLU in {file}: {FUNCTIONAL_RELU.search(text).group(0)}"
    # the pattern itself catches the usual spellings
    for bad in ("F.relu(x)", "nn.functional.relu(x)", "torch.relu(x)", "x.relu_()", "x.relu()", "x.clamp(min=0)"):
        assert FUNCTIONAL_RELU.search(bad), bad


def _count_relu_calls(agent, obs):
    calls, handles = {}, []
    for name, mod in agent.named_modules():
        if isinstance(mod, nn.ReLU):
            calls[name] = 0
            handles.append(mod.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls[name] + 1)))
    try:
        with torch.no_grad():
            agent(obs)
    finally:
        for h in handles:
            h.remove()
    return calls


@pytest.mark.parametrize("arch,options", ARCHS_64, ids=[a for a, _ in ARCHS_64])
def test_every_relu_module_is_used_in_the_forward_pass(arch, options):
    agent = make(arch, PROCGEN, **options)
    calls = _count_relu_calls(agent, random_obs(PROCGEN, batch=2))
    assert calls and all(n >= 1 for n in calls.values()), {k: v for k, v in calls.items() if v == 0}


def test_impala_rectifies_exactly_where_impala_does():
    # 3 conv sequences x 2 residual blocks x 2 ReLUs, then the ReLU before and after the dense layer
    calls = _count_relu_calls(make("impala", PROCGEN), random_obs(PROCGEN, batch=2))
    assert sum(calls.values()) == 3 * 2 * 2 + 2


@pytest.mark.parametrize("arch,obs_shape", [("mlp", GRID_SYM), ("cnn", GRID)])
@pytest.mark.slow
def test_all_nonlinearity_lives_in_relu_modules(arch, obs_shape):
    """With every nn.ReLU module turned into the identity, an MLP / conv net without pooling is affine in
    the observation, so f(midpoint) is the mean of f at the ends; a functional ReLU would break that."""
    agent = make(arch, obs_shape)
    a = random_obs(obs_shape, batch=4, seed=2, high=128) * 2  # even values: the midpoint is exact in uint8
    b = random_obs(obs_shape, batch=4, seed=3, high=128) * 2
    mid = (a.int() + b.int()).div(2).to(torch.uint8)

    def outputs():
        with torch.no_grad():
            return [torch.cat([o.logits, o.value[:, None]], 1) for o in (agent(a), agent(b), agent(mid))]

    fa, fb, fm = outputs()
    assert not torch.allclose(fm, (fa + fb) / 2, atol=1e-4)  # with ReLUs: not affine (the check has teeth)
    handles = [m.register_forward_hook(lambda m, i, o: i[0]) for m in agent.modules() if isinstance(m, nn.ReLU)]
    try:
        fa, fb, fm = outputs()
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(fm, (fa + fb) / 2, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- recurrence


@pytest.mark.parametrize("arch,obs_shape,options", [("cnn", GRID, {}), ("impala", GRID_RGB, {}),
                                                    ("attention", GRID, {"base": "cnn"})])
@pytest.mark.slow
def test_recurrent_first_resets_to_learned_h0_and_otherwise_carries(arch, obs_shape, options):
    agent = make(arch, obs_shape, recurrent=True, **options)
    with torch.no_grad():
        agent.h0.normal_()  # a learned, non-zero initial state
    obs = random_obs(obs_shape, batch=4)
    state = torch.randn(4, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fresh = agent(obs)
        reset = agent(obs, state, first=torch.ones(4, dtype=torch.bool))
        carry = agent(obs, state, first=torch.zeros(4, dtype=torch.bool))
        carry_none = agent(obs, state)
        mixed = agent(obs, state, first=torch.tensor([True, False, True, False]))
        feats = agent.features(obs)
        from_h0 = agent.gru(feats, agent.h0.expand(4, -1))
        from_zero = agent.gru(feats, torch.zeros(4, 64))
        from_state = agent.gru(feats, state)
    # a fresh start begins from h0 (not from zeros)
    torch.testing.assert_close(fresh.state, from_h0)
    assert not torch.allclose(fresh.state, from_zero, atol=1e-3)
    # first=True: identical to a fresh start whatever state is passed
    for a, b in zip(reset, fresh):
        torch.testing.assert_close(a, b)
    # first=False: the state is carried, and that changes the output
    torch.testing.assert_close(carry.state, from_state)
    assert not torch.allclose(carry.logits, fresh.logits, atol=1e-4)
    for a, b in zip(carry, carry_none):
        torch.testing.assert_close(a, b)
    # per row
    torch.testing.assert_close(mixed.logits[[0, 2]], fresh.logits[[0, 2]])
    torch.testing.assert_close(mixed.logits[[1, 3]], carry.logits[[1, 3]])
    # gradients reach h0 through a reset (it is learned)
    agent.zero_grad()
    agent(obs, state, first=torch.ones(4, dtype=torch.bool)).value.sum().backward()
    assert agent.h0.grad is not None and agent.h0.grad.abs().sum() > 0


def test_recurrent_batched_sequence_equals_per_env_step_loop():
    """Stepping B envs together over T steps with episode starts mid-sequence equals stepping each env
    alone and restarting it (state=None) where its episode starts."""
    agent = make("cnn", GRID, recurrent=True)
    with torch.no_grad():
        agent.h0.normal_()
    T, B = 6, 3
    obs = torch.stack([random_obs(GRID, batch=B, seed=10 + t) for t in range(T)])  # (T, B, H, W, C)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[0] = True
    first[2, 0] = first[4, 1] = first[3, 2] = first[4, 2] = True
    batched_logits, batched_states = [], []
    with torch.no_grad():
        state = torch.randn(B, 64)  # garbage: every env starts an episode at t=0
        for t in range(T):
            out = agent(obs[t], state, first[t])
            state = out.state
            batched_logits.append(out.logits)
            batched_states.append(out.state)
        for b in range(B):
            s = None
            for t in range(T):
                out = agent(obs[t, b:b + 1], None if first[t, b] else s)
                s = out.state
                torch.testing.assert_close(out.logits[0], batched_logits[t][b], rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(out.state[0], batched_states[t][b], rtol=1e-5, atol=1e-5)
    # and the restarts mattered: env 0 at t=2 differs from carrying its state on
    with torch.no_grad():
        carried = agent(obs[2, 0:1], batched_states[1][0:1])
    assert not torch.allclose(carried.logits[0], batched_logits[2][0], atol=1e-4)


@pytest.mark.parametrize("arch,obs_shape,options,recurrent", [("cnn", GRID, {}, True), ("mlp", GRID_SYM, {}, True),
                                                              ("attention", GRID, {"base": "cnn"}, True),
                                                              ("cnn", GRID, {}, False),
                                                              ("mlp", GRID_SYM, {"pi_hidden": (8,), "v_hidden": (4,)}, True)])
def test_forward_sequence_equals_stepping_forward(arch, obs_shape, options, recurrent):
    """PPO's recurrent update runs the trunk once over a whole sequence and steps only the GRU: the same outputs
    and states as calling forward step by step, episode starts included."""
    agent = make(arch, obs_shape, recurrent=recurrent, **options)
    if recurrent:
        with torch.no_grad():
            agent.h0.normal_()
    L, B = 5, 3
    obs = torch.stack([random_obs(obs_shape, batch=B, seed=20 + t) for t in range(L)])  # (L, B, H, W, C)
    first = torch.zeros(L, B, dtype=torch.bool)
    first[2, 0] = first[3, 1] = True
    state = torch.randn(B, 64) if recurrent else None
    with torch.no_grad():
        seq = agent.forward_sequence(obs, state, first)
        steps, s = [], state
        for k in range(L):
            out = agent(obs[k], s, first[k])
            s = out.state
            steps.append(out)
    torch.testing.assert_close(seq.logits, torch.cat([o.logits for o in steps]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seq.value, torch.cat([o.value for o in steps]), rtol=1e-5, atol=1e-5)
    if recurrent:
        torch.testing.assert_close(seq.state, torch.cat([o.state for o in steps]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- attention


def test_attention_maps_sum_to_one_per_map():
    agent = make("attention", PROCGEN, heads=3)
    maps = {}
    handle = get_layer(agent, "attention").register_forward_hook(lambda m, i, o: maps.__setitem__("a", o))
    with torch.no_grad():
        agent(random_obs(PROCGEN, batch=2))
    handle.remove()
    a = maps["a"]  # (B, K, h, w)
    assert a.shape == (2, 3, 8, 8)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum((-1, -2)), torch.ones(2, 3))
    assert not torch.allclose(a, torch.full_like(a, 1 / 64))  # not trivially uniform


def test_attention_entropy_equals_hand_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g) * 2
    maps = torch.softmax(logits.flatten(2), -1).reshape(2, 3, 4, 5)
    total = 0.0
    for b in range(2):
        for k in range(3):
            total += -sum(p * math.log(p) for p in maps[b, k].flatten().tolist())
    assert attention_entropy(maps).item() == pytest.approx(total / 2, rel=1e-5)
    uniform = torch.full((1, 2, 4, 4), 1 / 16)
    assert attention_entropy(uniform).item() == pytest.approx(2 * math.log(16), rel=1e-6)
    one_hot = torch.zeros(1, 1, 3, 3)
    one_hot[0, 0, 1, 2] = 1
    assert attention_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- clear errors


def test_wrong_obs_shape_names_both_shapes():
    agent = make("impala", PROCGEN)
    with pytest.raises(ValueError) as err:
        agent(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))  # NCHW instead of NHWC
    assert "(3, 64, 64)" in str(err.value) and "(64, 64, 3)" in str(err.value)
    with pytest.raises(ValueError, match=r"\(7, 7, 3\).*\(7, 7, 20\)"):
        make("cnn", GRID_SYM)(torch.zeros(1, 7, 7, 3, dtype=torch.uint8))


def test_unknown_layer_is_a_key_error_listing_the_valid_names():
    agent = make("clear", PROCGEN, recurrent=True)
    with pytest.raises(KeyError) as err:
        get_layer(agent, "block2")
    text = str(err.value)
    assert "'block2'" in text
    for name in list(agent.LAYERS) + ["hx", "pi", "v"]:
        assert name in text
    with pytest.raises(KeyError):
        get_layer(agent, "")
    assert get_layer(agent, "conv2b") is agent.conv2b


# ---------------------------------------------------------------- foreign modules


class ForeignAgent(nn.Module):
    """Someone else's agent: same forward interface, no LAYERS, no obs_shape, an nn.GRU returning a tuple."""

    def __init__(self, num_actions=5):
        super().__init__()
        self.torso = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 3, 32), nn.ReLU())
        self.core = nn.GRU(32, 16, batch_first=True)
        self.policy = nn.Linear(16, num_actions)
        self.value = nn.Linear(16, 1)
        self.unused = nn.Linear(2, 2)

    def forward(self, obs, state=None, first=None):
        x = self.torso(obs.float() / 255)  # (B, 32)
        y, h = self.core(x[:, None])  # (B, 1, 16)
        y = y[:, 0]
        return AgentOutput(self.policy(y), self.value(y).squeeze(-1), None)


def test_foreign_module_works_with_layer_shapes_and_describe_layers():
    agent = ForeignAgent()
    with pytest.raises(ValueError, match="obs_shape"):
        layer_shapes(agent)
    shapes = layer_shapes(agent, (4, 4, 3))
    assert shapes == {"torso": (32,), "torso.0": (48,), "torso.1": (32,), "torso.2": (32,),
                      "core": (1, 16), "policy": (5,), "value": (1,)}
    rows = describe_layers(agent, obs_shape=(4, 4, 3))
    assert [r["name"] for r in rows] == ["torso", "torso.0", "torso.1", "torso.2", "core", "policy", "value", "unused"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["core"]["kind"] == "GRU" and by_name["torso.2"]["kind"] == "ReLU"
    assert by_name["unused"]["shape"] is None  # never reached by the forward pass
    assert all(r["doc"] == "" for r in rows)
    table = format_layers(agent, obs_shape=(4, 4, 3))
    assert "ForeignAgent" in table and "(4, 4, 3)" in table
    assert re.search(r"^core\s+\(B, 1, 16\)\s+GRU", table, re.M)
    assert re.search(r"^unused\s+-\s+Linear", table, re.M)


def test_format_layers_lists_every_documented_layer_with_its_shape():
    agent = make("impala", PROCGEN, recurrent=True)
    table = format_layers(agent)
    lines = table.splitlines()
    assert lines[0].startswith("Impala") and "(64, 64, 3)" in lines[0]
    assert lines[1].split() == ["layer", "shape", "kind", "doc"]
    expected = {"block1": "(B, 16, 32, 32)", "block2": "(B, 32, 16, 16)", "block3": "(B, 32, 8, 8)",
                "block3_relu": "(B, 32, 8, 8)", "fc_relu": "(B, 256)", "hx": "(B, 64)", "pi": "(B, 7)", "v": "(B, 1)"}
    body = lines[3:]
    assert [line.split()[0] for line in body] == list(expected)
    for line in body:
        name = line.split()[0]
        assert line[len(name):].strip().startswith(expected[name]), line
    # the rows API and a table from rows agree
    assert format_layers(describe_layers(agent)) == "\n".join(lines[1:])
    # every submodule on request
    everything = [r["name"] for r in describe_layers(agent, all_modules=True)]
    assert "block1.res2.conv1" in everything and "gru" in everything


# ---------------------------------------------------------------- layouts of agents trained elsewhere


def test_mlp_takes_float_vectors_with_towers_and_tanh():
    """Vector observations (B, D) go straight in (no permute); hidden_sizes=() leaves them flat; the policy and
    value towers are separate named layers, each Linear -> Tanh; every documented layer has its documented shape."""
    agent = build(dict(arch="mlp", obs_shape=(4,), num_actions=NUM_ACTIONS, obs_scale=1.0, options=dict(
        hidden_sizes=(), pi_hidden=(64, 64), v_hidden=(32,), activation="tanh")))
    assert layer_names(agent) == ["pi_fc1", "pi_fc2", "v_fc1", "pi", "v"]
    assert layer_shapes(agent) == {"pi_fc1": (64,), "pi_fc2": (64,), "v_fc1": (32,), "pi": (7,), "v": (1,)}
    assert all(isinstance(get_layer(agent, n)[1], nn.Tanh) for n in ("pi_fc1", "pi_fc2", "v_fc1"))
    obs = torch.randn(5, 4)  # float32, e.g. CartPole's
    out = agent(obs)
    assert out.logits.shape == (5, NUM_ACTIONS) and out.value.shape == (5,)
    with torch.no_grad():  # the towers are what they say: logits from pi_fc*, value from v_fc1
        hand_pi = agent.pi(agent.pi_fc2(agent.pi_fc1(obs)))
        hand_v = agent.v(agent.v_fc1(obs))[:, 0]
    torch.testing.assert_close(out.logits, hand_pi)
    torch.testing.assert_close(out.value, hand_v)
    with torch.no_grad():  # the value tower does not feed the logits, and the policy tower not the value
        agent.v_fc1[0].weight.add_(1.0)
        after = agent(obs)
    assert torch.equal(after.logits, out.logits) and not torch.allclose(after.value, out.value)


def test_mlp_hidden_sizes_and_activation_are_options():
    agent = make("mlp", (6,), hidden_sizes=(8, 16, 4))
    assert layer_shapes(agent) == {"fc1": (8,), "fc2": (16,), "fc3": (4,), "pi": (7,), "v": (1,)}
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*relu, tanh"):
        make("mlp", (6,), activation="gelu")


def test_q_values_agent_reads_q_as_logits_and_max_q_as_value():
    agent = make("mlp", (4,), hidden_sizes=(16,), q_values=True)
    obs = torch.randn(6, 4)
    out = agent(obs)
    assert torch.equal(out.value, out.logits.max(-1).values)
    assert isinstance(agent.v, MaxQ) and layer_shapes(agent)["v"] == (1,)
    with pytest.raises(ValueError, match="no value tower"):
        make("mlp", (4,), q_values=True, v_hidden=(8,))


def test_separate_value_trunk_feeds_the_value_alone():
    agent = make("nature", ATARI, separate_value=True)
    names = layer_names(agent)
    assert names[:4] == ["conv1", "conv2", "conv3", "fc"]
    assert [n for n in names if n.startswith("value_trunk.")] == [f"value_trunk.{n}" for n in nets.Nature.LAYERS]
    shapes = layer_shapes(agent)
    assert shapes["value_trunk.conv3"] == shapes["conv3"] == (64, 7, 7)
    assert not hasattr(agent.value_trunk, "pi") and not hasattr(agent.value_trunk, "v")
    obs = random_obs(ATARI, batch=2)
    with torch.no_grad():
        before = agent(obs)
        agent.conv1.conv.weight.mul_(-1)  # the policy's trunk: logits move, the value does not
        mid = agent(obs)
        agent.value_trunk.conv1.conv.weight.mul_(-1)  # the value's trunk: the value moves, the logits do not
        after = agent(obs)
    assert torch.equal(mid.value, before.value) and not torch.allclose(mid.logits, before.logits)
    assert torch.equal(after.logits, mid.logits) and not torch.allclose(after.value, mid.value)
