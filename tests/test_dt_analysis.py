"""Decision-transformer analyses: attribution (completeness, TransformerLens agreement, per-cell split),
ablation (hand computation, hooks removed, means), patching (0% / 100%), RTG scans, circuits (factored
products, agreement with forward passes), the ablation table and the CLI on a tiny trained run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policylens import agents
from policylens.dt.analysis import (
    DTInputs,
    ablate,
    ablation_table,
    circuit_maps,
    component_means,
    full_ov,
    full_qk,
    inputs_from_env_state,
    logit_contributions,
    patch,
    patched_share,
    preference_direction,
    rtg_scan,
    state_contribution_map,
)
from policylens.dt.analysis.circuits import ENTITIES, entity_vectors, front_cell

pytestmark = pytest.mark.filterwarnings("ignore:target RTG")
ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?max_steps=20"
ACTIONS = ["left", "right", "forward"]


def _model(emb="grid", ln=False, context=3, d_mlp=32, seed=1):
    """A tiny DT with every parameter (LayerNorm and biases included) perturbed away from its init."""
    from policylens.dt.model import DecisionTransformer, DTConfig

    model = DecisionTransformer(DTConfig(d_model=32, d_mlp=d_mlp, context=context, state_embedding=emb,
                                         layer_norm=ln, max_timestep=64), seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    model.action_names = list(ACTIONS)
    return model


def _inputs(b=4, k=3, seed=0) -> DTInputs:
    g = torch.Generator().manual_seed(seed)
    states = torch.randint(0, 9, (b, k, 7, 7, 3), generator=g).to(torch.uint8)  # (B, K, 7, 7, 3)
    return DTInputs(states, torch.randint(0, 3, (b, k), generator=g), torch.rand(b, k, generator=g) * 2 - 1,
                    torch.arange(k).expand(b, k) + 5)


# ------------------------------------------------------------------------------------------ attribution
@pytest.mark.parametrize("emb,ln", [("grid", False), ("grid", True), ("raw", True), ("cnn", False)])
def test_contributions_sum_to_the_logits_and_heads_split_over_their_sources(emb, ln):
    model, inputs = _model(emb, ln), _inputs()
    with torch.no_grad():
        logits = model(*inputs.args())  # (B, K, A)
    for position in (-1, 0):
        c = logit_contributions(model, inputs, position=position)
        assert c.values.shape == (len(c.components), 4, 3)
        torch.testing.assert_close(c.values.sum(0), logits[:, position], atol=1e-4, rtol=1e-4)
        heads = torch.stack([c[h] for h in c.heads])  # (H, B, A)
        torch.testing.assert_close(c.sources.sum(2), heads, atol=1e-5, rtol=1e-5)
    single = logit_contributions(model, inputs.select(2))
    assert single.values.shape == (len(single.components), 3)
    torch.testing.assert_close(single.values.sum(0), logits[2, -1], atol=1e-4, rtol=1e-4)
    assert not single["embed.rtg"].any() and not single["embed.action"].any()  # they sit at other positions


def test_contributions_agree_with_transformer_lens_logit_attrs():
    model, inputs = _model(ln=True), _inputs()
    with torch.no_grad():  # TransformerLens's logit_attrs assumes the final LayerNorm's weight and bias folded in
        model.ln_final.w.fill_(1.0)
        model.ln_final.b.zero_()
    _, cache = model.run_with_cache(*inputs.args())
    p = int(model.state_positions(3)[-1])
    stack, labels = cache.decompose_resid(return_labels=True)  # embed, pos_embed, 0_attn_out, 0_mlp_out
    theirs = cache.logit_attrs(stack[:, :, p], tokens="forward", incorrect_tokens="right", pos_slice=p)  # (4, B)
    ours = logit_contributions(model, inputs).preference("forward", "right")  # (C, B)
    names = logit_contributions(model, inputs).components
    attn = [names.index(n) for n in names if n.startswith("blocks.0.attn")]
    grouped = torch.stack([ours[names.index("embed.state")], ours[names.index("embed.time")], ours[attn].sum(0),
                           ours[names.index("blocks.0.mlp")]])
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out"]
    torch.testing.assert_close(grouped, theirs, atol=1e-4, rtol=1e-4)


def test_preference_is_the_difference_of_contributions_and_reads_the_residual():
    model, inputs = _model(ln=False), _inputs()
    c = logit_contributions(model, inputs)
    pref = c.preference("forward", "left")  # (C, B)
    torch.testing.assert_close(pref, c.values[..., 2] - c.values[..., 0])
    torch.testing.assert_close(pref.sum(0), c.logits[:, 2] - c.logits[:, 0], atol=1e-4, rtol=1e-4)
    _, cache = model.run_with_cache(*inputs.args())
    resid = cache["blocks.0.hook_resid_post"][:, -1]  # (B, d) at the last state token
    direction = preference_direction(model, "forward", "left")  # (d,)
    torch.testing.assert_close(resid @ direction + model.b_U[2] - model.b_U[0], pref.sum(0), atol=1e-4, rtol=1e-4)
    with pytest.raises(KeyError, match="left, right, forward"):
        preference_direction(model, "jump", "left")


@pytest.mark.parametrize("emb,ln", [("grid", False), ("raw", False), ("grid", True)])
def test_state_map_sums_to_the_state_tokens_contribution(emb, ln):
    model, window = _model(emb, ln), _inputs().select(1)
    state = logit_contributions(model, window)
    targets = ((("forward", "right"), state.preference("forward", "right")), ("left", state.values[:, 0]))
    for target, expected in targets:
        m = state_contribution_map(model, window, target)
        assert m.cells.shape == (7, 7) and m.planes.shape == (3, 7, 7)
        np.testing.assert_allclose(m.planes.sum(0), m.cells, atol=1e-6)
        assert m.total == pytest.approx(float(expected[state.index("embed.state")]), abs=1e-4)
    with pytest.raises(ValueError, match="linear state embedding"):
        state_contribution_map(_model("cnn"), window)


# ------------------------------------------------------------------------------------------ ablation
def test_zero_ablating_a_head_equals_zeroing_its_z_by_hand_and_hooks_are_removed():
    model, inputs = _model(), _inputs()
    with torch.no_grad():
        clean = model(*inputs.args())

        def zero_head1(z, hook):
            z = z.clone()
            z[:, :, 1] = 0
            return z

        by_hand = model.run_with_hooks(*inputs.args(), fwd_hooks=[("blocks.0.attn.hook_z", zero_head1)])
        for spelling in ("blocks.0.attn.head1", ("blocks.0.attn", 1), ("blocks.0.attn.hook_z", 1)):
            with ablate(model, spelling):
                torch.testing.assert_close(model(*inputs.args()), by_hand)
        assert (by_hand - clean).abs().max() > 1e-3
        with pytest.raises(RuntimeError, match="inside"):
            with ablate(model, ["blocks.0.attn.head0", "blocks.0.mlp"]):
                raise RuntimeError("inside")
    assert all(not hp.fwd_hooks and not hp._forward_hooks for hp in model.hook_dict.values())
    torch.testing.assert_close(model(*inputs.args()), clean)
    with pytest.raises(KeyError, match=r"blocks\.0\.attn\.head0, blocks\.0\.attn\.head1, blocks\.0\.mlp"):
        with ablate(model, "blocks.0.attn.head7"):
            pass


def test_zero_ablating_a_head_of_an_attention_only_model_removes_exactly_its_contribution():
    model, inputs = _model(d_mlp=0), _inputs()
    c = logit_contributions(model, inputs)
    with torch.no_grad(), ablate(model, "blocks.0.attn.head0"):
        ablated = model(*inputs.args())[:, -1]  # (B, A)
    torch.testing.assert_close(ablated, c.logits - c["blocks.0.attn.head0"], atol=1e-4, rtol=1e-4)


def test_mean_ablation_uses_the_given_means_and_component_means_average_real_tokens():
    model, inputs = _model(context=2), _inputs(k=2)
    s, g = inputs.seq_len, torch.Generator().manual_seed(3)
    means = {"blocks.0.attn.hook_z": torch.randn(s + 3, 2, 16, generator=g),  # longer: the last s positions apply
             "blocks.0.hook_mlp_out": torch.randn(s + 3, 32, generator=g)}
    with ablate(model, ["blocks.0.attn.head0", "blocks.0.mlp"], mode="mean", means=means):
        _, cache = model.run_with_cache(*inputs.args())
    _, plain = model.run_with_cache(*inputs.args())
    torch.testing.assert_close(cache["blocks.0.attn.hook_z"][:, :, 0],
                               means["blocks.0.attn.hook_z"][-s:, 0].expand(4, -1, -1))
    torch.testing.assert_close(cache["blocks.0.attn.hook_z"][:, :, 1], plain["blocks.0.attn.hook_z"][:, :, 1])
    torch.testing.assert_close(cache["blocks.0.hook_mlp_out"], means["blocks.0.hook_mlp_out"][-s:].expand(4, -1, -1))
    with pytest.raises(KeyError, match="means lack blocks.0.hook_mlp_out"):
        with ablate(model, "blocks.0.mlp", mode="mean", means={"blocks.0.attn.hook_z": means["blocks.0.attn.hook_z"]}):
            pass
    masked = DTInputs(*inputs.args()[:4], mask=torch.tensor([[False, True], [True, True], [False, True], [True, True]]))
    computed = component_means(model, masked, chunk=3)  # two chunks
    _, cache = model.run_with_cache(*masked.args())
    z = cache["blocks.0.attn.hook_z"]  # (B, S, H, dh)
    torch.testing.assert_close(computed["blocks.0.attn.hook_z"][:2], z[[1, 3], :2].mean(0))  # step 0: real in rows 1, 3
    torch.testing.assert_close(computed["blocks.0.attn.hook_z"][3:], z[:, 3:].mean(0))


# ------------------------------------------------------------------------------------------ patching, scan
def test_patching_the_whole_residual_restores_all_and_nothing_restores_none():
    model, window = _model(context=1), _inputs(k=1).select(0)
    clean, corrupt = window.with_rtg([0.9]), window.with_rtg([-1.0])
    result = patch(model, clean, corrupt, "blocks.0.hook_resid_pre", preference=("forward", "right"))
    assert result.restored_all == pytest.approx(1.0, abs=1e-5)
    assert result.positions == ["R0", "s0"]
    # only the RTG token differs, so it alone restores everything and the state token nothing
    np.testing.assert_allclose(result.restored, [1.0, 0.0], atol=1e-5)
    assert patched_share(model, clean, corrupt, "blocks.0.hook_resid_pre", positions=[],
                         preference=("forward", "right")) == pytest.approx(0.0, abs=1e-9)
    heads = patch(model, clean, corrupt, "blocks.0.attn.hook_z", preference=("forward", "right"))
    assert heads.restored.shape == (2, 2) and heads.heads == ["head0", "head1"]
    with pytest.raises(ValueError, match="nothing to restore"):
        patch(model, clean, clean, "blocks.0.hook_resid_pre", preference=("forward", "right"))


def test_rtg_scan_equals_direct_forward_passes():
    model, window = _model(ln=True), _inputs().select(0)
    for rtgs in ([0.3], [-1.0, 0.0, 0.9]):
        scan = rtg_scan(model, window, rtgs)
        for i, r in enumerate(rtgs):
            rt = window.rtgs - window.rtgs[:, -1:] + r  # the whole window shifted, states fixed
            with torch.no_grad():
                direct = model(window.states, window.actions, rt, window.timesteps)[0, -1]
            np.testing.assert_allclose(scan.logits[i], direct.numpy(), atol=1e-5)
            np.testing.assert_allclose(scan.contributions[:, i].sum(0), direct.numpy(), atol=1e-4)
        assert scan.preferences["forward - left"] == pytest.approx(scan.logits[:, 2] - scan.logits[:, 0])


# ------------------------------------------------------------------------------------------ circuits
def test_factored_circuits_equal_explicit_matrix_products():
    model = _model(ln=True)
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(6, 32, generator=g), torch.randn(4, 32, generator=g)
    block = model.blocks[0]
    ln = lambda x: (x - x.mean(-1, keepdim=True)) * block.ln1.w  # noqa: E731
    scores = torch.einsum("qd,hde,hfe,kf->hqk", ln(q), block.attn.W_Q, block.attn.W_K, ln(k))
    scores = scores + torch.einsum("qd,hde,he->hq", ln(q), block.attn.W_Q, block.attn.b_K)[..., None]
    torch.testing.assert_close(full_qk(model, q, k).AB, scores / 4.0, atol=1e-4, rtol=1e-4)  # sqrt(d_head = 16)
    g_u = model.ln_final.w[:, None] * model.W_U
    unembed = g_u - g_u.mean(0)
    explicit = torch.einsum("nd,hde,hef,fa->hna", ln(q), block.attn.W_V, block.attn.W_O, unembed)
    torch.testing.assert_close(full_ov(model, q).AB, explicit, atol=1e-4, rtol=1e-4)


def test_circuit_maps_agree_with_forward_passes_on_edited_views():
    model, window = _model(context=1), _inputs(k=1).select(0)
    states = window.states.clone()
    states[0, 0, :, :] = torch.tensor(ENTITIES["empty"], dtype=torch.uint8)  # an empty view
    x, y = front_cell(model)
    maps = circuit_maps(model, ("forward", "right"), rtg=0.7, key_time=5)
    base_inputs = DTInputs(states, window.actions, torch.tensor([[0.7]]), torch.tensor([[5]]))
    base = logit_contributions(model, base_inputs)
    _, base_cache = model.run_with_cache(*base_inputs.args())
    for e, name in enumerate(ENTITIES):
        edited = states.clone()
        edited[0, 0, x, y] = torch.tensor(ENTITIES[name], dtype=torch.uint8)
        inputs = DTInputs(edited, window.actions, torch.tensor([[0.7]]), torch.tensor([[5]]))
        c = logit_contributions(model, inputs)
        i = c.index("embed.state")
        change = float(c.preference("forward", "right")[i] - base.preference("forward", "right")[i])
        assert maps["direct"][e, x, y] == pytest.approx(change, abs=1e-4)
        _, cache = model.run_with_cache(*inputs.args())
        scores = "blocks.0.attn.hook_attn_scores"
        score = cache[scores][0, :, 1, 0] - base_cache[scores][0, :, 1, 0]  # (H,) state -> RTG
        np.testing.assert_allclose(maps["qk_to_rtg"][:, e, x, y], score.numpy(), atol=1e-4)
    vectors = entity_vectors(model)  # (E, H, W, d)
    assert vectors.shape == (4, 7, 7, 32)


def test_putting_an_entity_ahead_changes_the_preference_as_forward_passes_do():
    from policylens.dt.analysis.situations import edit_ahead

    model, inputs = _model(context=2), _inputs(b=6, k=2)
    x, y = front_cell(model)
    inputs.states[:3, -1, x, y] = torch.tensor(ENTITIES["empty"], dtype=torch.uint8)  # rows 0-2: empty cell ahead
    inputs.states[3:, -1, x, y] = torch.tensor(ENTITIES["wall"], dtype=torch.uint8)
    result = edit_ahead(model, inputs, "goal", 0.4)
    assert result["windows"] == 3
    rt = inputs.rtgs - inputs.rtgs[:, -1:] + 0.4
    edited = inputs.states.clone()
    edited[:, -1, x, y] = torch.tensor(ENTITIES["goal"], dtype=torch.uint8)
    with torch.no_grad():
        before = model(inputs.states, inputs.actions, rt, inputs.timesteps)[:3, -1]  # (3, A)
        after = model(edited, inputs.actions, rt, inputs.timesteps)[:3, -1]
    expected = ((after[:, 2] - after[:, 1]) - (before[:, 2] - before[:, 1])).mean()
    assert result["preference"] == pytest.approx(float(expected), abs=1e-4)


# ------------------------------------------------------------------------------------------ a trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny PPO-style agent's episodes and a tiny DT trained on them (as tests/test_dt.py makes them)."""
    from policylens.dt.collect import CollectConfig, collect
    from policylens.dt.train import DTTrainConfig, train

    root = tmp_path_factory.mktemp("dt_analysis")
    torch.manual_seed(0)
    cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
    agents.save_agent(agents.build(cfg), cfg, root / "ppo" / "agent", extra={"env": ENV})
    store = collect(CollectConfig(run=str(root / "ppo"), out=str(root / "traj.zarr"), episodes=24, num_envs=4,
                                  strategies=("greedy", "random", "bottomk:1"), progress=False, flush_seconds=0.0))
    return train(DTTrainConfig(store=str(store), out=str(root / "dt"), d_model=32, d_mlp=32, context=2, steps=20,
                               batch_size=32, warmup_steps=5, eval_every=20, checkpoint_every=20, eval_episodes=0,
                               progress=False))


@pytest.mark.slow
def test_ablation_table_pairs_levels_and_its_counts_add_up(trained):
    from policylens.dt.checkpoint import load_dt

    model = load_dt(trained)
    table = ablation_table(model, ENV, ["blocks.0.attn.head0", ["blocks.0.attn.head1", "blocks.0.mlp"]],
                           rtgs=(-1, 0.9), episodes=5, mode="zero", batch=3)
    assert table["ablations"] == ["blocks.0.attn.head0", "blocks.0.attn.head1+blocks.0.mlp"]
    assert [(r["rtg"], r["ablation"]) for r in table["rows"]][:3] == [
        (-1.0, "none"), (-1.0, "blocks.0.attn.head0"), (-1.0, "blocks.0.attn.head1+blocks.0.mlp")]
    for row in table["rows"]:
        assert sum(row["counts"].values()) == row["episodes"] == 5
        for o, rate in row["rates"].items():
            assert rate["ci95"][0] <= rate["rate"] == row["counts"][o] / 5 <= rate["ci95"][1]
        for o, test in row.get("vs_unablated", {}).items():
            base = next(r for r in table["rows"] if r["rtg"] == row["rtg"] and r["ablation"] == "none")
            assert test["only_ablated"] - test["only_unablated"] == row["counts"][o] - base["counts"][o]
    with pytest.raises(KeyError, match="unknown component 'blocks.0.mlp2'"):
        ablation_table(model, ENV, ["blocks.0.mlp2"], episodes=1)
    with pytest.raises(ValueError, match="needs means"):
        ablation_table(model, ENV, ["blocks.0.mlp"], episodes=1, mode="mean")


@pytest.mark.slow
def test_inputs_from_env_state_rebuild_the_training_window(trained):
    from policylens.dt.checkpoint import load_dt
    from policylens.dt.data import load_trajectories

    model = load_dt(trained)
    traj = load_trajectories(json.loads((trained / "agent" / "config.json").read_text())["data"]["store"])
    e = int(np.argmax(traj.length))
    start, n = int(traj.start[e]), int(traj.length[e])
    for t in (0, n - 1):
        frames = slice(start, start + t + 1)
        live = inputs_from_env_state(model, traj.obs[frames], traj.rtg[frames], traj.action[start:start + t])
        want = traj.windows(np.array([start + t]), model.config.context)
        k = live.context
        assert k == min(t + 1, 2)
        torch.testing.assert_close(live.states, want.states[:, -k:])
        torch.testing.assert_close(live.rtgs, want.rtgs[:, -k:])
        torch.testing.assert_close(live.timesteps, want.timesteps[:, -k:])
        torch.testing.assert_close(live.actions[:, :-1], want.actions[:, -k:-1])
    with pytest.raises(ValueError, match="need 2 RTGs and 1 actions"):
        inputs_from_env_state(model, traj.obs[start:start + 2], [0.5], [])


@pytest.mark.slow
def test_cli_analyze_and_ablate_on_a_tiny_run(trained, capsys):
    from policylens.dt.analysis.paper import quote
    from policylens.dt.analysis.report import write_report
    from policylens.dt.cli import main

    args = ["analyze", str(trained), "--episodes", "2", "--windows", "64", "--progress", "false", "--batch", "4"]
    summary = main(args)
    out = trained / "analysis"
    for name in ("situations.json", "examples.json", "circuits.json", "ablation.json", "patching.json",
                 "means.safetensors", "ablation.png", "circuits.png", "embeddings.png", "situations.png"):
        assert (out / name).is_file(), name
    table = json.loads((out / "ablation.json").read_text())
    assert table["ablations"] == ["blocks.0.attn.head0", "blocks.0.attn.head1", "blocks.0.mlp"]
    assert table["mode"] == "mean" and {r["rtg"] for r in table["rows"]} == {-1.0, 0.0, 0.9}
    report = (trained / "report.md").read_text()
    assert "## Decision-transformer analysis" in report and quote("head1") in report
    write_report(trained, summary)  # writing again replaces the section instead of appending another
    assert (trained / "report.md").read_text().count("## Decision-transformer analysis") == 1
    assert summary["examples"] and set(summary["examples"]) <= set(ENTITIES)
    from policylens.dt.analysis import load_means

    saved = load_means(trained)
    assert set(saved) == {"blocks.0.attn.hook_z", "blocks.0.hook_mlp_out"} and saved["blocks.0.attn.hook_z"].shape[0] == 5
    capsys.readouterr()
    main(["ablate", str(trained), "--components", "blocks.0.attn.head0+blocks.0.mlp", "--episodes", "2",
          "--rtgs", "-1", "--mode", "zero", "--progress", "false"])
    printed = capsys.readouterr().out
    assert "blocks.0.attn.head0+blocks.0.mlp" in printed and "| -1 | none |" in printed
    with pytest.raises(KeyError, match="unknown component"):
        main(["ablate", str(trained), "--components", "blocks.3.mlp", "--episodes", "1", "--mode", "zero",
              "--progress", "false"])
