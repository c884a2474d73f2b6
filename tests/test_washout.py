"""rl-attention's washout measure: entropy and Gini of known distributions, the attention-layer targets against an
independent autograd pass, chunking that changes nothing, VarGrad's empty one-sample map, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policylens.agents import build
from policylens.agents.nets import attention_entropy
from policylens.attribution.washout import LayerTarget, gini, normalised_entropy, pixel_distribution, washout
from policylens.hooks import capture


def test_entropy_and_gini_of_known_distributions():
    m = 16
    one = torch.zeros(1, m, dtype=torch.float64)
    one[0, 3] = 1
    uniform = torch.full((1, m), 1 / m, dtype=torch.float64)
    half = torch.zeros(1, m, dtype=torch.float64)
    half[0, :8] = 1 / 8
    p = torch.cat([one, uniform, half])
    np.testing.assert_allclose(normalised_entropy(p).numpy(), [0, 1, math.log(8) / math.log(16)], atol=1e-12)
    np.testing.assert_allclose(gini(p).numpy(), [1 - 1 / m, 0, 0.5], atol=1e-12)


def test_pixel_distribution_sums_channels_before_the_absolute_value():
    attr = torch.zeros(2, 2, 2, 3)
    attr[0, 0, 0] = torch.tensor([1.0, -1.0, 2.0])  # sums to 2
    attr[0, 1, 1] = torch.tensor([-3.0, 1.0, 0.0])  # sums to -2
    p = pixel_distribution(attr)
    np.testing.assert_allclose(p[0].numpy(), [0.5, 0, 0, 0.5])
    assert torch.isnan(p[1]).all()  # zero everywhere: no distribution


@pytest.fixture(scope="module")
def agent_obs():
    torch.manual_seed(0)
    agent = build(dict(arch="attention", obs_shape=(14, 14, 3), num_actions=3, recurrent=False,
                       options={"base": "cnn"})).eval()
    obs = torch.randint(0, 256, (3, 14, 14, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return agent, obs


def independent_map_entropy(agent, obs, kind):
    """The plain gradient of the attention peak unit (or the attention entropy) w.r.t. the input, by autograd."""
    x = obs.float().requires_grad_()
    with capture(agent, "attention") as cache:
        agent(x)
    maps = cache["attention"]  # (N, heads, h, w)
    if kind == "peak":
        flat = maps.flatten(1)
        top = flat.detach().argmax(1)
        value = flat[torch.arange(len(obs)), top].sum()
    else:
        value = attention_entropy(maps) * len(obs)  # the mean over the batch, times N: the sum of each row's
    (grad,) = torch.autograd.grad(value, x)
    mass = grad.sum(-1).abs().flatten(1).double()
    p = mass / mass.sum(1, keepdim=True)
    return (-(p * p.clamp_min(1e-300).log()).sum(1) / math.log(p.shape[1])).numpy()


@pytest.mark.parametrize("kind", ["peak", "entropy"])
def test_the_attention_targets_match_an_independent_gradient(agent_obs, kind):
    agent, obs = agent_obs
    got = washout(agent, obs, target=kind, method="saliency")
    np.testing.assert_allclose(np.asarray(got["per_observation"]["entropy"])[:, 0],
                               independent_map_entropy(agent, obs, kind), rtol=1e-5)
    assert got["samples"] == [1] and got["pixels"] == 14 * 14
    if kind == "peak":
        with torch.no_grad(), capture(agent, "attention") as cache:
            agent(obs)
        assert got["units"] == cache["attention"].flatten(1).argmax(1).tolist()
    assert all(not m._forward_hooks for m in agent.modules())


def test_chunking_and_observation_order_do_not_change_the_curve(agent_obs):
    """Each row reads its own observation's peak unit, however the rows are chunked."""
    agent, obs = agent_obs
    whole = washout(agent, obs, method="smoothgrad", samples=(1, 4), noise=0.2, seed=3)
    chunked = washout(agent, obs, method="smoothgrad", samples=(1, 4), noise=0.2, seed=3, chunk_size=3)
    np.testing.assert_allclose(whole["per_observation"]["entropy"], chunked["per_observation"]["entropy"], rtol=1e-5)
    alone = washout(agent, obs[2:], method="smoothgrad", samples=(1, 4), noise=0.2, seed=3)
    assert alone["units"] == whole["units"][2:]
    entropy = np.asarray(whole["per_observation"]["entropy"])
    assert not np.allclose(entropy[:, 0], entropy[:, 1])  # more samples: another map


def test_vargrad_of_one_sample_has_no_map_and_is_left_out(agent_obs):
    agent, obs = agent_obs
    got = washout(agent, obs, method="vargrad", samples=(1, 2), noise=0.2)
    assert got["entropy"]["observations"] == [0, 3] and got["entropy"]["mean"][0] is None
    assert 0 < got["entropy"]["mean"][1] < 1 and 0 < got["gini"]["mean"][1] < 1
    assert got["entropy"]["q25"][1] <= got["entropy"]["median"][1] <= got["entropy"]["q75"][1]


def test_bad_input_is_a_clear_error(agent_obs):
    agent, obs = agent_obs
    with pytest.raises(ValueError, match="washout method must be"):
        washout(agent, obs, method="ig")
    with pytest.raises(ValueError, match="samples must be integers >= 1"):
        washout(agent, obs, samples=(0, 2))
    with pytest.raises(ValueError, match="unknown layer target 'mean'"):
        LayerTarget(agent, obs, "attention", "mean")
    with pytest.raises(KeyError, match="nope"):
        washout(agent, obs, layer="nope")


@pytest.mark.slow
def test_the_benchmark_files_a_run_its_table_and_figure(tmp_path, monkeypatch):
    """``benchmarks.attention_washout`` on an untrained agent, a few frames and sample counts: the run is filed
    beside the others, its table rows are its summary, the figure is drawn."""
    import json

    from benchmarks import attention_washout, common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    env = "minigrid:MiniGrid-Empty-5x5-v0?obs=rgb"
    for label, seed in (("other", "1"), ("tiny", "0")):
        attention_washout.main(["--untrained", env, "--label", label, "--frames", "2", "--every", "1",
                                "--samples", "1,2,4", "--targets", "peak", "--seed", seed])
    filed = json.loads((tmp_path / "attention_washout.json").read_text())
    assert filed["runs"]["other"]["seed"] == 1  # filed beside the other run
    run = filed["runs"]["tiny"]
    assert run["trained"] is False and run["frames"] == 2 and "Breakout" in run["note"]
    vargrad = run["summary"]["peak"]["vargrad"]
    assert vargrad["samples"] == [2, 4]  # one sample gives no VarGrad map
    assert vargrad["entropy"] == [run["targets"]["peak"]["vargrad"]["entropy"]["mean"][j] for j in (1, 2)]
    del filed["runs"]["other"]
    rows = attention_washout.table(filed)
    assert len(rows) == 2 + 2 and "| attention peak | vargrad |" in rows[3]
    assert f"{vargrad['entropy'][0]:.3f} (2) -> {vargrad['entropy'][1]:.3f} (4)" in rows[3]
    assert (tmp_path / "attention_washout.png").stat().st_size > 1000
