"""The decision-transformer suite: strategies, collection into the store (shares, RTG, the symbolic view,
resume), the model (causality, hooks, TransformerLens compatibility), training (resume bit-for-bit,
checkpoints, bad input) and calibration."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.dt import train as train_mod
from policylens.dt.calibrate import CalibrateConfig, calibrate
from policylens.dt.collect import CollectConfig, collect, observe_as
from policylens.dt.data import load_trajectories, returns_to_go, timesteps
from policylens.dt.strategies import Strategy, allocate, episode_plan, parse_strategies
from policylens.dt.train import DTTrainConfig, train
from policylens.envs import make

# the tiny untrained agents never reach the goal, so evaluating at positive RTGs warns (tested on its own below)
pytestmark = pytest.mark.filterwarnings("ignore:target RTG")
ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?max_steps=20"  # short timeouts keep the tests fast
STRATEGIES = ("greedy", "bottomk:1", "random", "temperature:2")
SHARES = ("3", "1", "1", "1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny untrained PPO-style agents: one on the symbolic view, one on RGB (so the DT view is extra)."""
    root = tmp_path_factory.mktemp("dt_runs")
    torch.manual_seed(0)
    for name, shape, spec in (("sym", [7, 7, 3], ENV), ("rgb", [56, 56, 3], ENV + "&obs=rgb")):
        cfg = {"arch": "cnn", "obs_shape": shape, "num_actions": 3, "obs_scale": 0.1 if name == "sym" else 1 / 255}
        agents.save_agent(agents.build(cfg), cfg, root / name / "agent", extra={"env": spec})
    return root


def _collect(run, out, **kw):
    cfg = {"episodes": 24, "strategies": STRATEGIES, "shares": SHARES, "num_envs": 4, "progress": False,
           "flush_seconds": 0.0, **kw}
    return collect(CollectConfig(run=str(run), out=str(out), **cfg))


@pytest.fixture(scope="module")
def rgb_store(runs):
    return rollouts.open(_collect(runs / "rgb", runs / "rgb" / "trajectories.zarr"))


@pytest.fixture(scope="module")
def sym_store(runs):
    return _collect(runs / "sym", runs / "sym" / "trajectories.zarr", episodes=40)


def _tiny(store, out, **kw) -> DTTrainConfig:
    cfg = {"layers": 1, "heads": 2, "d_model": 32, "d_mlp": 32, "context": 2, "steps": 30, "batch_size": 32,
           "warmup_steps": 5, "eval_every": 10, "checkpoint_every": 10, "eval_episodes": 2, "progress": False}
    return DTTrainConfig(store=str(store), out=str(out), **{**cfg, **kw})


@pytest.fixture(scope="module")
def trained(sym_store, runs):
    return train(_tiny(sym_store, runs / "dt"))


def _frames(store, name):
    return store.read(name, 0, store.num_frames)


# ------------------------------------------------------------------------------------------ strategies
def test_strategies_sample_as_defined():
    logits = torch.tensor([[2.0, 0.5, -1.0], [-1.0, 3.0, 0.0]]).repeat(3000, 1)  # (6000, 3)
    gen = torch.Generator().manual_seed(0)
    greedy = Strategy.parse("greedy").choose(logits, gen)
    assert torch.equal(greedy, logits.argmax(-1))
    assert torch.equal(Strategy.parse("bottomk:1").choose(logits, gen), logits.argmin(-1))
    top2 = Strategy.parse("topk:2").choose(logits, gen)
    assert not (top2 == logits.argmin(-1)).any() and len(set(top2[::2].tolist())) == 2  # both top actions occur
    bottom2 = Strategy.parse("bottomk:2").choose(logits, gen)
    assert not (bottom2 == logits.argmax(-1)).any()
    uniform = Strategy.parse("random").choose(logits, gen)
    np.testing.assert_allclose(np.bincount(uniform.numpy(), minlength=3) / len(uniform), 1 / 3, atol=0.025)
    hot = Strategy.parse("temperature:2").choose(logits, gen)[::2]  # rows with logits (2, 0.5, -1)
    freq = np.bincount(hot.numpy(), minlength=3) / len(hot)
    np.testing.assert_allclose(freq, torch.softmax(logits[0] / 2, -1).numpy(), atol=0.03)
    assert abs(freq[0] - torch.softmax(logits[0], -1)[0].item()) > 0.1  # the temperature really flattened it
    with pytest.raises(ValueError, match="greedy.*random"):
        Strategy.parse("softmax")
    with pytest.raises(ValueError, match="topk:2"):
        Strategy.parse("topk:x")


def test_allocate_gives_exact_counts_and_the_plan_tops_up_what_is_missing():
    for total in (1, 7, 24, 101):
        counts = allocate(np.array([0.5, 0.25, 0.25]), total)
        assert counts.sum() == total and np.all(np.abs(counts - total * np.array([0.5, 0.25, 0.25])) < 1)
    stored = np.array([2, 0, 1])
    plan = episode_plan(np.array([1, 1, 1]) / 3, 12, stored, seed=3)
    assert len(plan) == 9 and np.array_equal(np.bincount(plan, minlength=3) + stored, [4, 4, 4])
    over = np.array([5, 0, 1])  # more of one strategy than the target (a store begun with other shares)
    final = np.bincount(episode_plan(np.array([1, 1, 1]) / 3, 12, over, seed=3), minlength=3) + over
    assert final.sum() == 12 and np.abs(final - 4).max() == 1


def test_returns_to_go_and_timesteps_on_known_episodes():
    reward = np.array([0, 0, 0.8, 0, -1, 0, 0, 0.5], np.float32)
    done = np.array([0, 0, 1, 0, 1, 0, 0, 0], bool)  # the last episode is unfinished
    np.testing.assert_allclose(returns_to_go(reward, done), [0.8, 0.8, 0.8, -1, -1, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(timesteps(done), [0, 1, 2, 0, 1, 0, 1, 2])


# ------------------------------------------------------------------------------------------ collect
@pytest.mark.slow
def test_each_episode_plays_its_strategy_in_the_requested_shares(rgb_store):
    names = rgb_store.metadata["strategies"]
    assert names == list(STRATEGIES)
    strategy, action, logits = _frames(rgb_store, "strategy"), _frames(rgb_store, "action"), _frames(rgb_store, "logits")
    per_episode = strategy[rgb_store.index["start"]]
    np.testing.assert_array_equal(np.bincount(per_episode, minlength=4), allocate(np.array([3, 1, 1, 1]), 24))
    np.testing.assert_array_equal(strategy, np.repeat(per_episode, rgb_store.index["length"]))  # one per episode
    greedy, bottom = strategy == 0, strategy == 1
    np.testing.assert_array_equal(action[greedy], logits[greedy].argmax(-1))
    np.testing.assert_array_equal(action[bottom], logits[bottom].argmin(-1))
    rand = strategy == 2
    assert (action[rand] != logits[rand].argmax(-1)).any()


@pytest.mark.slow
def test_rtg_per_step_is_the_sum_of_future_rewards(rgb_store):
    for i in range(len(rgb_store)):
        ep = rgb_store.episode(i)
        reward, rtg = ep["reward"].astype(np.float64), ep["rtg"]
        expected = [reward[t:].sum() for t in range(len(reward))]
        np.testing.assert_allclose(rtg, expected, atol=1e-6)
        assert abs(rtg[0] - ep.info["return"]) < 1e-6


@pytest.mark.slow
def test_symbolic_view_is_what_a_symbolic_env_shows_and_the_agent_saw_rgb(rgb_store, runs):
    assert rgb_store.fields[:1] == ("obs",) and "obs_symbolic" in rgb_store.fields and "entities" in rgb_store.fields
    agent = agents.load(runs / "rgb")
    for i in (0, 5):
        ep = rgb_store.episode(i)
        env = make(f"{ENV}&start_level={ep.info['level_seed']}&num_levels=1", 1, seed=0)
        views = [env.reset(0)[0]]
        for a in ep["action"][:-1]:
            views.append(env.step(np.array([a]))[0][0])
        np.testing.assert_array_equal(np.stack(views), ep["obs_symbolic"])
        with torch.no_grad():
            np.testing.assert_allclose(agent(torch.as_tensor(ep["obs"])).logits.numpy(), ep["logits"], atol=1e-5)
    causes = set(rgb_store.index["cause"])
    assert causes <= {"success", "obstacle", "wall", "timeout"}


@pytest.mark.slow
def test_interrupted_collection_resumes_to_exactly_n_with_exact_shares(runs, tmp_path, monkeypatch):
    out, n = tmp_path / "k.zarr", 30
    real_step, calls = type(make(ENV, 1)).step, {"n": 0}

    def dying_step(self, actions):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return real_step(self, actions)

    monkeypatch.setattr(type(make(ENV, 1)), "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        _collect(runs / "sym", out, episodes=n)
    monkeypatch.undo()
    killed = rollouts.open(out)
    k = len(killed)
    assert 0 < k < n
    before = [killed.episode(i)["action"] for i in range(k)]
    resumed = rollouts.open(_collect(runs / "sym", out, episodes=n, resume=True))
    assert len(resumed) == n
    for i in range(k):
        np.testing.assert_array_equal(resumed.episode(i)["action"], before[i])
    per_episode = _frames(resumed, "strategy")[resumed.index["start"]]
    np.testing.assert_array_equal(np.bincount(per_episode, minlength=4), allocate(np.array([3, 1, 1, 1]), n))
    with pytest.raises(ValueError, match="strategies"):
        _collect(runs / "sym", out, episodes=n + 1, strategies=("greedy",), shares=(), resume=True)


@pytest.mark.slow
def test_rtg_report_and_observe_as_the_env_mode(rgb_store):
    summary = json.loads(Path(str(rgb_store.path).replace(".zarr", "_rtg.json")).read_text())
    assert sum(s["episodes"] for s in summary["strategies"].values()) == len(rgb_store)
    assert Path(summary["png"]).stat().st_size > 1000
    env = make(ENV + "&obs=rgb", 2, seed=1)
    env.reset(1)
    sym = make(ENV, 2, seed=1)
    np.testing.assert_array_equal(observe_as(env, "symbolic"), sym.reset(1))
    assert env.obs_mode == "rgb" and env.observe().shape == (2, 56, 56, 3)


# ------------------------------------------------------------------------------------------ model
@pytest.fixture(scope="module")
def tiny_models():
    from policylens.dt.model import DecisionTransformer, DTConfig

    return {emb: DecisionTransformer(DTConfig(d_model=32, d_mlp=32, context=3, state_embedding=emb,
                                              layer_norm=emb == "grid", max_timestep=64), seed=1).eval()
            for emb in ("grid", "raw", "cnn")}


def _window(b=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = torch.randint(0, 9, (b, k, 7, 7, 3), generator=g).to(torch.uint8)  # (B, K, 7, 7, 3)
    actions = torch.randint(0, 3, (b, k), generator=g)  # (B, K)
    rtgs = torch.rand(b, k, generator=g) * 2 - 1  # (B, K)
    steps = torch.arange(k).expand(b, k) + 5  # (B, K)
    return states, actions, rtgs, steps


def _dependence(model, hook: str, t: int, window) -> torch.Tensor:
    """Gradient norm of each step's logits (K,) with respect to the ``hook`` embedding of step t."""
    nudge = None

    def add(x, hook):
        nonlocal nudge
        nudge = torch.zeros_like(x[:, t], requires_grad=True)
        return torch.cat([x[:, :t], (x[:, t] + nudge)[:, None], x[:, t + 1:]], 1)

    logits = model.run_with_hooks(*window, fwd_hooks=[(hook, add)])  # (B, K, A)
    return torch.stack([torch.autograd.grad(logits[:, k].sum(), nudge, retain_graph=True)[0].norm()
                        for k in range(logits.shape[1])])


@pytest.mark.parametrize("emb", ["grid", "raw", "cnn"])
def test_shapes_and_causality(tiny_models, emb):
    model = tiny_models[emb]
    window = states, actions, rtgs, steps = _window()
    with torch.no_grad():
        base = model(*window)  # (B, K, A)
        assert base.shape == (4, 3, 3)
        later = states.clone()
        later[:, 2] = (later[:, 2] + 1) % 9
        assert torch.equal(model(later, actions, rtgs, steps)[:, :2], base[:, :2])  # later states change nothing earlier
        other = actions.clone()
        other[:, 1] = (other[:, 1] + 1) % 3
        assert torch.equal(model(states, other, rtgs, steps)[:, :2], base[:, :2])  # step t does not see action t
        other[:, 2] = (other[:, 2] + 1) % 3
        assert torch.equal(model(states, other, rtgs, steps), model(states, other[:, :2], rtgs, steps))  # never enters
    for hook, t, first_seen in (("hook_state_embed", 1, 1), ("hook_rtg_embed", 1, 1), ("hook_action_embed", 0, 1),
                                ("hook_action_embed", 1, 2)):
        dep = _dependence(model, hook, t, window)
        assert torch.all(dep[:first_seen] == 0) and torch.all(dep[first_seen:] > 0), (hook, t, dep)


def test_left_padding_with_a_mask_equals_the_shorter_window(tiny_models):
    model = tiny_models["grid"]
    states, actions, rtgs, steps = _window(k=3)
    mask = torch.tensor([[False, True, True]]).expand(4, 3)
    junk = states.clone()
    junk[:, 0] = 7  # whatever the padded slot holds is ignored
    with torch.no_grad():
        padded = model(junk, actions, rtgs * mask, steps, mask)
        short = model(states[:, 1:], actions[:, 1:], rtgs[:, 1:], steps[:, 1:])
    torch.testing.assert_close(padded[:, 1:], short, atol=1e-5, rtol=1e-5)


def test_transformer_lens_hooks_cache_and_logit_attribution(tiny_models):
    model = tiny_models["grid"]  # with LayerNorm: attribution must use the cached scale
    model.action_names = ["left", "right", "forward"]
    states, actions, rtgs, steps = _window()
    logits, cache = model.run_with_cache(states, actions, rtgs, steps)
    assert cache["blocks.0.attn.hook_pattern"].shape == (4, 2, 8, 8)
    for name in ("blocks.0.hook_resid_post", "blocks.0.attn.hook_z", "blocks.0.mlp.hook_post", "hook_embed",
                 "hook_pos_embed", "ln_final.hook_scale", "embed_state.hook_features"):
        assert name in cache.keys(), name
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(4, 2, 8)) and pattern.triu(1).abs().max() == 0
    stack, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out"]
    last = int(model.state_positions(3)[-1])
    attrs = cache.logit_attrs(stack[:, :, last], tokens="forward", incorrect_tokens="right", pos_slice=last)  # (4, B)
    torch.testing.assert_close(attrs.sum(0), logits[:, -1, 2] - logits[:, -1, 1], atol=1e-4, rtol=1e-4)
    heads = cache.stack_head_results()  # (H, B, S, d)
    torch.testing.assert_close(heads.sum(0) + model.blocks[0].attn.b_O, cache["blocks.0.hook_attn_out"],
                               atol=1e-5, rtol=1e-5)
    assert model.OV.shape == (1, 2, 32, 32) and model.QK.shape == (1, 2, 32, 32)

    def zero_head0(pattern, hook):
        pattern[:, 0] = 0
        return pattern

    ablated = model.run_with_hooks(states, actions, rtgs, steps, fwd_hooks=[("blocks.0.attn.hook_pattern", zero_head0)])
    assert (ablated - logits).abs().max() > 1e-5

    def broken(tensor, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        model.run_with_hooks(states, actions, rtgs, steps, fwd_hooks=[("blocks.0.hook_resid_post", broken)])
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())  # removed after the exception
    torch.testing.assert_close(model(states, actions, rtgs, steps), logits)


def test_model_refuses_bad_input(tiny_models):
    model = tiny_models["raw"]
    states, actions, rtgs, steps = _window(k=3)
    with pytest.raises(ValueError, match=r"\(B, K, 7, 7, 3\)"):
        model(torch.zeros(4, 3, 56, 56, 3, dtype=torch.uint8), actions, rtgs, steps)
    states4, actions4, rtgs4, steps4 = _window(k=4)
    with pytest.raises(ValueError, match="longer than the model's context of 3"):
        model(states4, actions4, rtgs4, steps4)
    with pytest.raises(ValueError, match="timesteps must lie in"):
        model(states, actions, rtgs, steps + 100)
    with pytest.raises(ValueError, match="rtgs of shape"):
        model(states, actions, rtgs[:, :2], steps)


# ------------------------------------------------------------------------------------------ train
@pytest.mark.slow
def test_loss_decreases_and_the_run_has_its_outputs(sym_store, tmp_path):
    out = train(_tiny(sym_store, tmp_path / "run", steps=80, eval_every=20, checkpoint_every=80, eval_episodes=0,
                      lr=3e-3, val_fraction=0.0))
    rows = list(csv.DictReader(open(out / "train.csv")))
    assert [int(r["step"]) for r in rows] == [20, 40, 60, 80]
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])
    assert (out / "curve.png").is_file() and (out / "agent" / "weights.safetensors").is_file()


@pytest.mark.slow
def test_resume_after_an_interruption_equals_an_uninterrupted_run_bitwise(sym_store, trained, tmp_path, monkeypatch):
    real, calls = train_mod.sample_frames, []

    def interrupted(seed, step, probs, batch_size):
        calls.append(step)
        if step == 25:
            raise KeyboardInterrupt
        return real(seed, step, probs, batch_size)

    monkeypatch.setattr(train_mod, "sample_frames", interrupted)
    cfg = _tiny(sym_store, tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_mod, "sample_frames", real)
    cfg.resume = True
    train(cfg)
    from safetensors.torch import load_file

    a, b = (load_file(str(p / "agent" / "weights.safetensors")) for p in (trained, tmp_path / "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (trained / "train.csv").read_text() == (tmp_path / "resumed" / "train.csv").read_text()
    with pytest.raises(FileExistsError, match="decision transformer already exists.*--resume.*--overwrite"):
        train(_tiny(sym_store, tmp_path / "resumed"))
    with pytest.raises(ValueError, match="other settings.*lr"):
        train(_tiny(sym_store, tmp_path / "resumed", lr=0.5, resume=True))


@pytest.mark.slow
def test_checkpoint_round_trip_and_refusals(trained, sym_store, runs):
    from policylens.dt.checkpoint import load_dt, save_dt

    model = load_dt(trained)
    conf = json.loads((trained / "agent" / "config.json").read_text())
    assert conf["agent"]["arch"] == "decision_transformer" and model.action_names == ["left", "right", "forward"]
    traj = load_trajectories(sym_store)
    assert model.rtg_range[0] >= traj.rtg.min() and model.rtg_range[1] <= traj.rtg.max()
    batch = traj.windows(np.arange(20), 2)
    save_dt(model, runs / "copy" / "agent", extra={"env": conf["env"]})
    again = load_dt(runs / "copy")
    with torch.no_grad():
        torch.testing.assert_close(again(batch.states, batch.actions, batch.rtgs, batch.timesteps, batch.mask),
                                   model(batch.states, batch.actions, batch.rtgs, batch.timesteps, batch.mask),
                                   rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a decision transformer"):
        load_dt(runs / "sym")
    with pytest.warns(UserWarning, match="outside the RTGs"):
        from policylens.dt.play import play

        play(model, ENV, 5.0, 1)


@pytest.mark.slow
def test_training_refuses_stores_a_dt_cannot_read(runs, tmp_path):
    rgb_only = rollouts.record(rollouts.RecordConfig(run=str(runs / "rgb"), episodes=2, out=str(tmp_path / "r.zarr"),
                                                     progress=False))
    with pytest.raises(ValueError, match=r"\(56, 56, 3\).*symbolic"):
        train(_tiny(rgb_only, tmp_path / "a"))
    fields = {"obs": ((7, 7, 3), "uint8"), "action": ((), "int32"), "done": ((), "bool"), "level_seed": ((), "int64")}
    with rollouts.StoreWriter(tmp_path / "noreward.zarr", fields, {"env": ENV}) as w:
        w.append([{"obs": np.zeros((2, 7, 7, 3), np.uint8), "action": np.zeros(2, np.int32),
                   "done": np.array([False, True]), "level_seed": np.zeros(2, np.int64), "cause": "timeout",
                   "return": 0.0}])
    with pytest.raises(ValueError, match="lacks the field.*reward"):
        train(_tiny(tmp_path / "noreward.zarr", tmp_path / "b"))
    with pytest.raises(FileNotFoundError):
        train(_tiny(tmp_path / "missing.zarr", tmp_path / "c"))


# ------------------------------------------------------------------------------------------ calibrate, CLI
@pytest.mark.slow
def test_calibration_covers_every_rtg_and_behaviours_add_up(trained):
    report = calibrate(CalibrateConfig(run=str(trained), rtgs=("-1", "0.5"), table_rtgs=("-1", "0", "0.9"),
                                       episodes=4, progress=False))
    saved = json.loads((trained / "calibration.json").read_text())
    assert [r["target_rtg"] for r in saved["results"]] == [-1.0, 0.0, 0.5, 0.9]
    assert [b["target_rtg"] for b in saved["behaviours"]] == [-1.0, 0.0, 0.9]
    for b in saved["behaviours"]:
        assert sum(b[k] for k in ("success", "obstacle", "wall", "timeout", "other")) == b["episodes"] == 4
    for r in saved["results"]:
        assert sum(r["causes"].values()) == 4 and r["ci95"][0] <= r["mean_return"] <= r["ci95"][1]
    assert report["results"] == saved["results"]
    assert (trained / "calibration.png").stat().st_size > 1000
    assert "walked into a wall" in (trained / "behaviours.md").read_text()


def test_cli_help_and_dispatch(capsys):
    from policylens.dt.cli import join_negative_values, main

    main(["--help"])
    assert "usage: policylens dt" in capsys.readouterr().out
    for sub, option in (("collect", "--strategies"), ("train", "--context"), ("calibrate", "--rtgs")):
        with pytest.raises(SystemExit):
            main([sub, "--help"])
        text = capsys.readouterr().out
        assert f"policylens dt {sub}" in text and option in text
    with pytest.raises(ValueError, match="collect, train, calibrate"):
        main(["trian"])
    assert join_negative_values(["R", "--rtgs", "-1,0"], ("--rtgs",)) == ["R", "--rtgs=-1,0"]
    assert parse_strategies("greedy,topk:2") == [Strategy("greedy"), Strategy("topk", 2)]
