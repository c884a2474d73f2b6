"""Attribution: IG completeness, agreement with Captum, the folded pass against the repeated one, the
residual-block fallback, targets, errors, NaN detection, hooks and gradients left clean, chunking, the CLI."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Saliency,
)

from policylens import agents, rollouts
from policylens.agents import build, get_layer
from policylens.attribution import NotACutWarning, attribute, evaluate_rows, resolve_target
from policylens.attribution.cli import main as attribute_main
from policylens.attribution.results import load_attributions

GRID = (7, 7, 3)
ACTIONS = ["left", "right", "forward"]
TOL = dict(rtol=1e-4, atol=1e-6)


def make(arch="cnn", obs_shape=GRID, recurrent=False, seed=0, **options):
    torch.manual_seed(seed)
    agent = build(dict(arch=arch, obs_shape=obs_shape, num_actions=len(ACTIONS), obs_scale=0.1,
                       recurrent=recurrent, hidden=16, options=options)).eval()
    agent.action_names = list(ACTIONS)
    return agent


def small_impala(seed=0):
    return make("impala", (16, 16, 3), seed=seed, channels=(4, 8, 8), hidden_dim=32)


def random_obs(shape=GRID, n=4, seed=1, high=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (n, *shape), generator=g, dtype=torch.uint8)  # (N, H, W, C)


@pytest.fixture(scope="module")
def ff():
    return make()


@pytest.fixture(scope="module")
def rec():
    return make(recurrent=True)


@pytest.fixture(scope="module")
def obs():
    return random_obs()


@pytest.fixture(scope="module")
def state():
    return torch.randn(4, 16, generator=torch.Generator().manual_seed(2))  # (N, hidden)


@torch.no_grad()
def activation(agent, layer, obs, state=None):
    """The layer's output on ``obs`` (an independent forward hook, not the library's)."""
    seen = {}
    handle = get_layer(agent, layer).register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    try:
        agent(torch.as_tensor(obs), state)
    finally:
        handle.remove()
    return seen["a"]


@torch.no_grad()
def value_with(agent, layer, obs, replacement, state=None):
    """The value when ``layer``'s output is replaced by ``replacement`` (None: no replacement)."""
    if layer is None:
        return agent(torch.as_tensor(replacement if replacement is not None else obs), state).value
    handle = None
    if replacement is not None:
        handle = get_layer(agent, layer).register_forward_hook(lambda m, i, o: replacement)
    try:
        return agent(torch.as_tensor(obs), state).value
    finally:
        if handle is not None:
            handle.remove()


def hook_count(agent) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in agent.modules())


# ---------------------------------------------------------------- integrated gradients: completeness


CASES = [("ff", None), ("ff", "conv1"), ("ff", "fc"), ("rec", None), ("rec", "conv1"), ("rec", "fc"), ("rec", "hx")]


@pytest.mark.parametrize("kind,layer", CASES, ids=[f"{k}-{name or 'input'}" for k, name in CASES])
@pytest.mark.slow
def test_ig_sums_to_the_change_of_the_target_and_the_delta_is_exactly_that_gap(kind, layer, ff, rec, obs, state):
    agent = {"ff": ff, "rec": rec}[kind]
    st = state if kind == "rec" else None
    attr, delta = attribute(agent, obs, layer=layer, steps=400, state=st, return_delta=True)
    shape = obs.shape if layer is None else activation(agent, layer, obs, st).shape
    assert attr.shape == shape and delta.shape == (obs.shape[0],)
    zero = torch.zeros(shape)
    change = value_with(agent, layer, obs, None, st) - value_with(agent, layer, obs, zero, st)  # F(x) - F(0)
    total = attr.flatten(1).sum(1)  # (N,)
    torch.testing.assert_close(delta, total - change, rtol=0, atol=2e-6)  # the delta is the gap, exactly
    assert (delta.abs() <= 0.05 * change.abs() + 1e-7).all(), (delta, change)  # completeness with many steps
    _, coarse = attribute(agent, obs, layer=layer, steps=10, state=st, return_delta=True)
    assert delta.abs().sum() <= coarse.abs().sum() + 1e-6  # the right Riemann sum converges as steps grow


@pytest.mark.slow
def test_ig_with_a_baseline_sums_to_the_change_from_that_baseline(ff, obs):
    base = activation(ff, "conv1", random_obs(seed=7))[:1]  # (1, 32, 7, 7) broadcast over the batch
    attr, delta = attribute(ff, obs, layer="conv1", steps=400, baseline=base, return_delta=True)
    change = value_with(ff, "conv1", obs, None) - value_with(ff, "conv1", obs, base.expand(4, -1, -1, -1))
    torch.testing.assert_close(attr.flatten(1).sum(1), change, rtol=0.01, atol=1e-5)
    torch.testing.assert_close(delta, attr.flatten(1).sum(1) - change, rtol=0, atol=2e-6)


# ---------------------------------------------------------------- agreement with Captum


@pytest.mark.parametrize("kind,layer", [("ff", "conv1"), ("ff", "fc"), ("rec", "conv1"), ("rec", "hx")])
def test_layer_ig_equals_captum_layer_integrated_gradients(kind, layer, ff, rec, obs, state):
    agent = {"ff": ff, "rec": rec}[kind]
    st = state if kind == "rec" else None
    x0 = random_obs(seed=9).float()  # Captum's baselines are inputs: the layer baseline is A(x0)
    captum = LayerIntegratedGradients(lambda o, s: agent(o, s).value, get_layer(agent, layer)).attribute(
        obs.float(), baselines=x0, additional_forward_args=(st,), n_steps=7, method="riemann_right")
    ours = attribute(agent, obs, layer=layer, steps=7, state=st, baseline=activation(agent, layer, x0, st))
    torch.testing.assert_close(ours, captum.detach(), **TOL)


def test_input_methods_equal_captum(rec, obs, state):
    def f(o, s):
        return rec(o, s).logits[:, 1]

    x = obs.float()
    ig = IntegratedGradients(f).attribute(x, additional_forward_args=(state,), n_steps=5, method="riemann_right")
    sal = Saliency(f).attribute(x.clone().requires_grad_(), additional_forward_args=(state,), abs=False)
    ixg = InputXGradient(f).attribute(x.clone().requires_grad_(), additional_forward_args=(state,))
    torch.testing.assert_close(attribute(rec, obs, target=1, steps=5, state=state), ig.detach(), **TOL)
    torch.testing.assert_close(attribute(rec, obs, target=1, method="saliency", state=state), sal, **TOL)
    torch.testing.assert_close(attribute(rec, obs, target=1, method="grad_x_act", state=state), ixg.detach(), **TOL)


def test_layer_grad_x_act_and_saliency_equal_captum(ff, obs):
    captum = LayerGradientXActivation(lambda o: ff(o).value, get_layer(ff, "conv2")).attribute(obs.float())
    torch.testing.assert_close(attribute(ff, obs, layer="conv2", method="grad_x_act"), captum.detach(), **TOL)
    plain = LayerGradientXActivation(lambda o: ff(o).value, get_layer(ff, "conv2"), multiply_by_inputs=False)
    torch.testing.assert_close(attribute(ff, obs, layer="conv2", method="saliency"),
                               plain.attribute(obs.float()).detach(), **TOL)


# ---------------------------------------------------------------- the folded pass


@pytest.mark.parametrize("kind,layer,expected", [("ff", "conv1", "folded"), ("rec", "fc", "folded"),
                                                  ("rec", "hx", "folded-state-per-obs")])
def test_folded_pass_equals_the_repeated_observation_pass(kind, layer, expected, ff, rec, obs, state):
    agent = {"ff": ff, "rec": rec}[kind]
    st = state if kind == "rec" else None
    tgt = resolve_target("value", agent)
    half = lambda a, n, r: a * (r + 1).reshape(-1, *[1] * (a.ndim - 1)) / 3  # noqa: E731  three path points
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotACutWarning)  # a cut never falls back
        folded = evaluate_rows(agent, obs, tgt, half, 3, layer=layer, state=st)
    repeated = evaluate_rows(agent, obs, tgt, half, 3, layer=layer, state=st, paths=("repeated",))
    assert folded.path == expected and repeated.path == "repeated"
    torch.testing.assert_close(folded.grads, repeated.grads, **TOL)
    torch.testing.assert_close(folded.values, repeated.values, **TOL)
    torch.testing.assert_close(folded.acts, repeated.acts, **TOL)


def test_a_layer_inside_a_residual_block_falls_back_to_the_repeated_pass_with_a_warning():
    agent, x = small_impala(), random_obs((16, 16, 3), n=3, high=256)
    layer = "block2.res1.conv0"  # the skip connection carries the block's input past this conv
    with pytest.warns(NotACutWarning, match="not a cut"):
        attr = attribute(agent, x, layer=layer, steps=5)
    captum = LayerIntegratedGradients(lambda o: agent(o).value, get_layer(agent, layer)).attribute(
        x.float(), baselines=torch.zeros_like(x, dtype=torch.float32), n_steps=5, method="riemann_right")
    base = activation(agent, layer, torch.zeros_like(x))
    with pytest.warns(NotACutWarning):
        ours = attribute(agent, x, layer=layer, steps=5, baseline=base)
    torch.testing.assert_close(ours, captum.detach(), **TOL)
    assert attr.shape == base.shape
    tgt = resolve_target("value", agent)
    ident = lambda a, n, r: a * (r + 1).reshape(-1, 1, 1, 1) / 2  # noqa: E731
    forced = evaluate_rows(agent, x, tgt, ident, 2, layer=layer, paths=("repeated",))
    with pytest.warns(NotACutWarning):
        auto = evaluate_rows(agent, x, tgt, ident, 2, layer=layer)
    assert auto.path == "repeated"
    torch.testing.assert_close(auto.grads, forced.grads, rtol=0, atol=0)
    with warnings.catch_warnings():  # the block's output is a cut: folded, no warning
        warnings.simplefilter("error", NotACutWarning)
        assert evaluate_rows(agent, x, tgt, ident, 2, layer="block2").path == "folded"


def test_one_observation_under_many_rows_is_still_caught_by_the_fallback():
    """A lone observation would broadcast against the rows; the pass must still see the skip connection."""
    agent, x = small_impala(), random_obs((16, 16, 3), n=1, high=256)
    layer = "block2.res1.conv0"
    with pytest.warns(NotACutWarning):
        attr = attribute(agent, x, layer=layer, steps=4)
    captum = LayerIntegratedGradients(lambda o: agent(o).value, get_layer(agent, layer)).attribute(
        x.float(), baselines=torch.zeros_like(x, dtype=torch.float32), n_steps=4, method="riemann_right")
    base = activation(agent, layer, torch.zeros_like(x))
    for chunk in (None, 2, 3):  # two rows pair with a padded [x, x]: correct even without the fallback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotACutWarning)
            ours = attribute(agent, x, layer=layer, steps=4, baseline=base, chunk_size=chunk)
        torch.testing.assert_close(ours, captum.detach(), **TOL)
    assert attr.shape == base.shape


@pytest.mark.parametrize("layer", [None, "conv1", "hx"])
def test_chunked_equals_unchunked(layer, rec, obs, state):
    first = torch.tensor([True, False, False, True])
    whole = attribute(rec, obs, layer=layer, steps=6, state=state, first=first)
    for chunk in (1, 5, 7):  # rows of the folded batch, not multiples of steps
        torch.testing.assert_close(attribute(rec, obs, layer=layer, steps=6, state=state, first=first,
                                             chunk_size=chunk), whole, **TOL)
    sg = dict(layer=layer, method="smoothgrad", samples=3, noise=0.2, seed=5, state=state)
    torch.testing.assert_close(attribute(rec, obs, chunk_size=4, **sg), attribute(rec, obs, **sg), **TOL)


def test_first_resets_the_state_to_the_initial_state(rec, obs, state):
    first = torch.tensor([True, False, True, False])
    reset = torch.where(first[:, None], rec.initial_state(4).detach(), state)
    torch.testing.assert_close(attribute(rec, obs, layer="hx", state=state, first=first),
                               attribute(rec, obs, layer="hx", state=reset), rtol=0, atol=0)


# ---------------------------------------------------------------- targets


def test_every_target_form_attributes_the_right_scalar(ff, obs):
    def sal(target):
        return attribute(ff, obs, layer="conv2", method="saliency", target=target)

    logit = [sal(i) for i in range(3)]
    torch.testing.assert_close(sal("action:right"), logit[1])
    torch.testing.assert_close(sal(np.int64(2)), logit[2])
    torch.testing.assert_close(sal("action:left-action:forward"), logit[0] - logit[2], **TOL)
    torch.testing.assert_close(sal((0, 2)), logit[0] - logit[2], **TOL)
    torch.testing.assert_close(sal(("left", "forward")), logit[0] - logit[2], **TOL)
    torch.testing.assert_close(sal(lambda out: out.logits[:, 1] + 2 * out.value), logit[1] + 2 * sal("value"), **TOL)
    assert not torch.allclose(logit[0], logit[1])
    x = obs.float().requires_grad_()  # "value" against plain autograd on the input
    (grad,) = torch.autograd.grad(ff(x).value.sum(), x)
    torch.testing.assert_close(attribute(ff, obs, method="saliency"), grad, **TOL)


@pytest.mark.parametrize("kind,layer,method", [("ff", "conv2", "ig"), ("rec", "fc", "ig"), ("ff", None, "ig"),
                                               ("ff", "conv1", "grad_x_act"), ("rec", "hx", "smoothgrad")])
def test_several_targets_from_one_pass_equal_each_attributed_alone(kind, layer, method, ff, rec, obs, state):
    """attribute_many reads the value, a logit and each observation's own action's logit from the same forward
    passes: each equals attribute() of that target alone, deltas included (own actions: grouped by action)."""
    from policylens.attribution import attribute_many, own_actions

    agent, st = (ff, None) if kind == "ff" else (rec, state)
    actions = np.array([2, 0, 2, 1])
    kw = dict(layer=layer, method=method, state=st, **({"return_delta": True} if method == "ig" else {}))
    value, logit, own = attribute_many(agent, obs, ["value", "action:right", own_actions(actions)], **kw)
    alone = attribute(agent, obs, target="value", **kw), attribute(agent, obs, target=1, **kw)
    pick = lambda x: x[0] if method == "ig" else x  # noqa: E731
    torch.testing.assert_close(pick(value), pick(alone[0]), **TOL)
    torch.testing.assert_close(pick(logit), pick(alone[1]), **TOL)
    for a in np.unique(actions):
        rows = np.flatnonzero(actions == a)
        each = attribute(agent, obs[rows], target=int(a), layer=layer, method=method,
                         state=None if st is None else st[rows], **({"return_delta": True} if method == "ig" else {}))
        if method == "smoothgrad":  # the noise of an observation depends on its place in the batch: compare IG only
            continue
        torch.testing.assert_close(pick(own)[rows], pick(each), **TOL)
        if method == "ig":
            torch.testing.assert_close(own[1][rows], each[1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(pick(value), pick(logit))


def test_bad_targets_layers_and_arguments_get_clear_errors(ff, obs):
    with pytest.raises(ValueError, match="no action 'jump'; actions: left, right, forward"):
        attribute(ff, obs, target="action:jump")
    with pytest.raises(ValueError, match="target must be 'value', an action"):
        attribute(ff, obs, target="speed")
    with pytest.raises(ValueError, match="no action 3; actions: left, right, forward"):
        attribute(ff, obs, target=3)
    with pytest.raises(ValueError, match="no action 'up'"):
        attribute(ff, obs, target="action:left-action:up")
    with pytest.raises(ValueError, match=r"one value per observation, shape \(B,\).*got \(40, 3\) for B = 40"):
        attribute(ff, obs, target=lambda out: out.logits)
    with pytest.raises(KeyError, match="no layer 'conv9'; layers: embed, conv1, conv2, fc"):
        attribute(ff, obs, layer="conv9")
    with pytest.raises(ValueError, match="unknown method 'gradcam'; expected one of saliency"):
        attribute(ff, obs, method="gradcam")
    with pytest.raises(ValueError, match="baseline of shape \\(5,\\) does not broadcast"):
        attribute(ff, obs, layer="fc", baseline=torch.zeros(5))
    with pytest.raises(ValueError, match="obs must be a batch of images"):
        attribute(ff, obs[0])
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        attribute(ff, obs, steps=0)


# ---------------------------------------------------------------- non-finite values, hooks, gradients, modes


def test_nan_or_inf_raises_naming_where(ff, obs):
    broken = copy.deepcopy(ff)
    with torch.no_grad():
        broken.v.weight[0, 0] = float("nan")
    for layer in (None, "conv1"):
        with pytest.raises(ValueError, match="target value is nan for observation 0"):
            attribute(broken, obs, layer=layer)
    with torch.no_grad():
        broken = copy.deepcopy(ff)
        broken.embed.conv.bias.fill_(float("inf"))
    with pytest.raises(ValueError, match="activation of layer 'conv1' is (nan|inf) for observation 0"):
        attribute(broken, obs, layer="conv1")
    with pytest.raises(ValueError, match=r"target value is nan for observation 0 \(alpha=0.1, forward pass through "
                                         "layer 'fc'"):
        attribute(ff, obs, layer="fc", baseline=torch.full((256,), float("inf")))


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, RuntimeError])
@pytest.mark.parametrize("layer", [None, "conv1"])
def test_hooks_removed_after_an_exception_inside_the_agent(error, layer, obs):
    agent = make()

    def explode(module, inputs, output):
        raise error("boom")

    handle = get_layer(agent, "fc").register_forward_hook(explode)  # above the attributed layer
    before = hook_count(agent)
    with pytest.raises(error, match="boom"):
        attribute(agent, obs, layer=layer, steps=3)
    assert hook_count(agent) == before  # only the test's own hook is left
    handle.remove()
    assert hook_count(agent) == 0
    attribute(agent, obs, layer=layer, steps=3)  # still usable
    assert hook_count(agent) == 0


def test_parameter_grads_train_mode_and_grad_mode_are_left_alone(obs):
    agent = make(recurrent=True).train()
    marks = {name: torch.full_like(p, 0.5) for name, p in agent.named_parameters()}
    for name, p in agent.named_parameters():
        p.grad = marks[name].clone()
    before = copy.deepcopy(agent.state_dict())
    with torch.no_grad():  # a caller inside no_grad still gets attributions
        for layer in (None, "conv1", "hx"):
            for method in ("ig", "smoothgrad"):
                attribute(agent, obs, layer=layer, method=method, samples=2, steps=2)
        assert not torch.is_grad_enabled()
    assert all(m.training for m in agent.modules())
    for name, p in agent.named_parameters():
        assert torch.equal(p.grad, marks[name]), name
        assert torch.equal(p.detach(), before[name]), name


# ---------------------------------------------------------------- SmoothGrad / VarGrad


@pytest.mark.parametrize("layer", [None, "conv2"])
def test_smoothgrad_without_noise_is_saliency_and_vargrad_is_zero(layer, ff, obs):
    sal = attribute(ff, obs, layer=layer, method="saliency", target="action:left")
    sg = attribute(ff, obs, layer=layer, method="smoothgrad", samples=4, noise=0.0, target="action:left")
    vg = attribute(ff, obs, layer=layer, method="vargrad", samples=4, noise=0.0, target="action:left")
    # equal up to rounding: a batch of 4 copies may take another kernel path than one frame (seen on some CPUs)
    torch.testing.assert_close(sg, sal, rtol=1e-4, atol=1e-6 * float(sal.abs().max()))
    assert torch.equal(vg, torch.zeros_like(vg))


def test_smoothgrad_noise_is_seeded_scaled_and_harmless_where_the_target_is_linear(ff, obs):
    kw = dict(method="smoothgrad", samples=5, noise=0.3)
    a, b = attribute(ff, obs, seed=1, **kw), attribute(ff, obs, seed=1, **kw)
    assert torch.equal(a, b) and not torch.equal(a, attribute(ff, obs, seed=2, **kw))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(attribute(ff, obs, generator=g1, **kw), attribute(ff, obs, generator=g2, **kw))
    assert (attribute(ff, obs, method="vargrad", samples=5, noise=0.3) > 0).any()
    # the value is linear in `fc` (one Linear head): noise cannot change its gradient there
    sal = attribute(ff, obs, layer="fc", method="saliency")
    torch.testing.assert_close(attribute(ff, obs, layer="fc", **kw), sal, **TOL)
    torch.testing.assert_close(attribute(ff, obs, layer="fc", method="vargrad", samples=5, noise=0.3),
                               torch.zeros_like(sal), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def recorded(pair):
    return {name: pair / name for name in ("ff", "rnn")}


@pytest.mark.parametrize("name,suffix", [("ff", ".npz"), ("rnn", ".zarr")])
@pytest.mark.slow
def test_cli_attributes_recorded_episodes_and_saves_metadata(name, suffix, recorded, tmp_path):
    run = recorded[name]
    out = tmp_path / f"attr{suffix}"
    attribute_main([str(run), "--store", str(run / "rollouts.zarr"), "--layer", "conv1", "--steps", "4",
                    "--episodes", "0,2", "--out", str(out), "--batch", "5", "--progress", "false"])
    arrays, meta = load_attributions(out)
    store = rollouts.open(run / "rollouts.zarr")
    agent = agents.load(run)
    assert meta["layer"] == "conv1" and meta["method"] == "ig" and meta["steps"] == 4
    assert meta["target"] == "value" and meta["episodes"] == [0, 2]
    for e in (0, 2):
        ep = store.episode(e)
        mine = arrays["episode"] == e
        np.testing.assert_array_equal(arrays["step"][mine], np.arange(ep.length))
        np.testing.assert_array_equal(arrays["frame"][mine], ep.start + np.arange(ep.length))
        state = torch.as_tensor(ep["agent_state"]) if name == "rnn" else None
        attr, delta = attribute(agent, ep["obs"], layer="conv1", steps=4, state=state, return_delta=True)
        np.testing.assert_allclose(arrays["attribution"][mine], attr.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(arrays["delta"][mine], delta.numpy(), rtol=1e-4, atol=1e-6)
    assert set(np.unique(arrays["episode"])) == {0, 2}
    assert meta["delta"]["max_abs"] == pytest.approx(float(np.abs(arrays["delta"]).max()), rel=1e-5)


@pytest.mark.slow
def test_cli_default_output_and_clean_errors(recorded, capsys):
    run = recorded["ff"]
    path = attribute_main([str(run), "--method", "saliency", "--target", "1", "--progress", "false"])
    assert path == run / "analysis" / "attribution" / "input-saliency-action_1.zarr"
    arrays, meta = load_attributions(path)
    assert arrays["attribution"].shape[1:] == GRID and "delta" not in arrays
    with pytest.raises(SystemExit):
        attribute_main([str(run), "--layer", "nope", "--progress", "false"])
    assert "no layer 'nope'; layers: embed" in capsys.readouterr().err
