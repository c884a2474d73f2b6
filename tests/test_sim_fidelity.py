"""Simulator fidelity (policylens sim fidelity): a model that unrolls the recorded frames scores perfectly, the
repeat reference equals a hand computation, padding is masked, models read only their context, the VAE+LSTM
baseline trains on the training split for its wall-time budget and round-trips through safetensors, the CLI end
to end (equal compute from the simulator's record, the training split), bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from minigrid.core.constants import IDX_TO_OBJECT, OBJECT_TO_IDX

from policylens import agents
from policylens.rollouts import RecordConfig, record
from policylens.rollouts.store import split_episodes
from policylens.sim.analyses.fidelity import cli as fidelity_cli
from policylens.sim.analyses.fidelity.core import (
    baseline_unroll,
    curve,
    held_out_windows,
    object_recall,
    repeat_unroll,
    resample_weights,
    score_models,
    scored_windows,
    simulator_unroll,
    summarize,
)
from policylens.sim.baseline import Prediction, VaeLstm, load_baseline, save_baseline, train_baseline
from policylens.sim.data import load_sim_data
from policylens.sim.obs import obs_score
from sim_runs import AGENT, ENV, tiny_parts

STEPS = 12  # steps after the context


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


@pytest.fixture(scope="module")
def parts(run):
    """The tiny simulator, its frozen agent, the store's data and windows of context + STEPS frames: one from each
    episode's start (whole) and one from 5 frames before each episode's end (padded past it)."""
    sim, frozen = tiny_parts(run)
    data = load_sim_data(run / "rollouts.zarr")
    k = sim.config.context_frames
    starts = np.concatenate([data.start, data.start + data.length - 5])
    windows = data.windows(starts, k + STEPS)
    assert not windows.mask.all() and windows.mask[:, :k + 1].all()
    return sim, frozen, data, windows


def _recorded_logits(obs: torch.Tensor, planes) -> torch.Tensor:
    """MiniGrid codes (..., 3) as logits 30 on the recorded category of each plane, 0 elsewhere."""
    codes = obs.long()
    return torch.cat([F.one_hot(codes[..., i], n) for i, n in enumerate(planes)], -1).float() * 30.0


def _recorded_model(planes, garbage_on_padding: bool = False):
    """Unrolls the recorded frames, rewards and episode ends; optionally nonsense where the window is padding."""

    def unroll(w, k):
        decoded = _recorded_logits(w.obs[:, k:], planes)  # (B, H, 7, 7, 20)
        reward, done = w.reward[:, k:].clone(), (w.done[:, k:] * 2 - 1) * 20.0  # (B, H)
        if garbage_on_padding:
            pad = ~w.mask[:, k:]  # (B, H)
            decoded[pad] = torch.randn_like(decoded[pad]) * 30
            reward[pad], done[pad] = 99.0, 20.0
        return Prediction(decoded, reward, done)

    return unroll


# -------------------------------------------------------------------------------------------------- scoring
@pytest.mark.slow
def test_unrolling_the_recorded_frames_scores_perfectly_even_with_nonsense_on_the_padding(parts):
    sim, frozen, _, w = parts
    k, planes = sim.config.context_frames, sim.config.planes
    models = {"clean": _recorded_model(planes), "padded": _recorded_model(planes, garbage_on_padding=True)}
    values, mask, objects = score_models(models, w, k, sim.config, frozen, batch_size=5)
    np.testing.assert_array_equal(mask, w.mask[:, k:].numpy())
    report = summarize(values, mask, bootstrap=50)
    kinds = w.obs[:, k:, ..., 0].numpy()  # (N, H, 7, 7) recorded object type (symbolic codes)
    for name, recall in object_recall(objects, mask).items():  # every recorded cell drawn, padding left out
        assert set(recall) == {IDX_TO_OBJECT[m] for m in np.unique(kinds[mask])}
        for m, r in recall.items():
            cells = [(kinds[mask[:, h], h] == OBJECT_TO_IDX[m]).sum() for h in range(STEPS)]
            assert r["cells"] == cells and r["recall"] == [1.0 if c else None for c in cells]
    for name in models:
        curves = report[name]["per_step"]
        reached = mask.sum(0) > 0
        assert curves["obs_score"]["count"] == mask.sum(0).tolist()
        for metric, perfect in (("obs_score", 1.0), ("action_agreement", 1.0), ("done_accuracy", 1.0)):
            assert [v for v, r in zip(curves[metric]["mean"], reached) if r] == [perfect] * reached.sum()
        for metric in ("value_error", "reward_error"):
            assert max(v for v, r in zip(curves[metric]["mean"], reached) if r) < 1e-5
        assert [v is None for v in curves["obs_score"]["mean"]] == (~reached).tolist()
    # the real agent, carried from the recorded state after the context, reproduces the recorded actions
    from policylens.sim.analyses.fidelity.core import agent_trace

    actions, _ = agent_trace(frozen, w.obs[:, k:], w.agent_state[:, k])
    valid = w.mask[:, k:]
    assert torch.equal(actions[valid], w.logits[:, k:].argmax(-1)[valid])


def test_pixel_views_are_scored_without_an_object_recall(parts):
    from dataclasses import replace

    sim, frozen, _, w = parts
    k = sim.config.context_frames
    pixels = replace(sim.config, obs_kind="pixels", planes=(), cells=())  # the recorded codes read as pixels
    values, mask, objects = score_models({"repeat": repeat_unroll(pixels)}, w, k, pixels, frozen)
    assert objects == {}
    last = w.obs[:, k - 1:k].float()  # (N, 1, 7, 7, 3) the frame repeated
    error = ((last - w.obs[:, k:].float()) / 255.0).pow(2).mean((-3, -2, -1))  # (N, H) on [0, 1]
    torch.testing.assert_close(torch.as_tensor(values["repeat"]["obs_score"])[w.mask[:, k:]], error[w.mask[:, k:]])


def test_the_repeat_reference_equals_a_hand_computation(parts):
    sim, frozen, _, w = parts
    k = sim.config.context_frames
    values, mask, objects = score_models({"repeat": repeat_unroll(sim.config)}, w, k, sim.config, frozen)
    curves = summarize(values, mask, bootstrap=20)["repeat"]["per_step"]
    recall = object_recall(objects, mask)["repeat"]
    obs, last = w.obs.numpy(), w.obs[:, k - 1].numpy()
    for h in range(STEPS):
        rows = np.flatnonzero(mask[:, h])
        same = [(obs[i, k + h] == last[i]).mean() for i in rows]  # share of (cell, plane) codes unchanged
        assert curves["obs_score"]["mean"][h] == pytest.approx(np.mean(same), abs=1e-6)
        kept = (obs[rows, k + h] == last[rows]).all(-1)  # (n, 7, 7) cells unchanged in every plane
        kind = obs[rows, k + h, ..., 0]  # (n, 7, 7)
        for name, r in recall.items():
            here = kind == OBJECT_TO_IDX[name]
            assert r["recall"][h] == (pytest.approx(kept[here].mean()) if here.any() else None)
        reward = np.abs(w.reward[rows, k + h].numpy()).mean()  # the reference predicts no reward
        assert curves["reward_error"]["mean"][h] == pytest.approx(reward, abs=1e-6)
        assert curves["done_accuracy"]["mean"][h] == pytest.approx((w.done[rows, k + h] == 0).float().mean().item())


def test_bootstrap_intervals_bracket_the_mean_and_differences_are_paired():
    rng = np.random.default_rng(0)
    values, mask = rng.normal(size=(200, 3)), np.ones((200, 3), bool)
    mask[:150, 2] = False
    weights = resample_weights(200, 400, seed=0)
    assert (weights.sum(1) == 200).all()
    c = curve(values, mask, weights)
    assert c["count"] == [200, 200, 50]
    for h in range(3):
        assert c["low"][h] < c["mean"][h] < c["high"][h]
        assert c["mean"][h] == pytest.approx(values[mask[:, h], h].mean())
    width = [c["high"][h] - c["low"][h] for h in range(3)]
    assert width[2] > 1.5 * width[0]  # 50 windows give a wider interval than 200
    offset = {"a": {"m": values}, "b": {"m": values + 0.25}}  # b = a + constant: a paired difference has no spread
    diff = summarize(offset, mask, bootstrap=100, reference="a")["b"]["a_minus_this"]
    assert diff["1"]["m"]["low"] == pytest.approx(-0.25) and diff["1"]["m"]["high"] == pytest.approx(-0.25)


def test_the_bootstrap_resamples_whole_episodes():
    rng = np.random.default_rng(1)
    values, mask = rng.normal(size=(100, 2)), np.ones((100, 2), bool)
    alone = resample_weights(100, 300, seed=5)
    assert np.array_equal(resample_weights(100, 300, seed=5, groups=np.arange(100) * 7), alone)  # one window each
    twice = np.repeat(values, 2, axis=0)  # every window twice, both copies in one episode
    grouped = curve(twice, np.repeat(mask, 2, axis=0), resample_weights(200, 300, seed=5, groups=np.repeat(
        np.arange(100), 2)))
    single = curve(values, mask, alone)
    for f in ("mean", "low", "high"):
        assert grouped[f] == pytest.approx(single[f])  # copies of one window add nothing
    loose = curve(twice, np.repeat(mask, 2, axis=0), resample_weights(200, 300, seed=5))
    assert loose["high"][0] - loose["low"][0] < 0.85 * (grouped["high"][0] - grouped["low"][0])  # too narrow
    with pytest.raises(ValueError, match="groups name 3 windows, not 4"):
        resample_weights(4, 10, 0, groups=np.arange(3))


@pytest.mark.slow
def test_models_read_only_their_context(parts):
    sim, frozen, _, w = parts
    k = sim.config.context_frames
    baseline = VaeLstm(sim.config, seed=0).eval()
    later = w.rows(slice(None))
    later.obs = w.obs.clone()
    later.obs[:, k:] = torch.flip(w.obs[:, k:], dims=[0])  # other windows' frames after the context
    later.reward, later.done = torch.rand_like(w.reward), torch.ones_like(w.done)
    earlier = w.rows(slice(None))
    earlier.obs = w.obs.clone()
    earlier.obs[:, k - 1] = torch.flip(w.obs[:, k - 1], dims=[0])
    for unroll in (baseline_unroll(baseline), simulator_unroll(sim, frozen), simulator_unroll(sim, frozen, True)):
        a, b, c = unroll(w, k), unroll(later, k), unroll(earlier, k)
        assert a.decoded.shape[:2] == (len(w.mask), STEPS)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert not torch.equal(a.decoded, c.decoded)  # it does read the context


# -------------------------------------------------------------------------------------------------- the baseline
def _spy_windows(data, monkeypatch) -> tuple:
    """``(seen, windows)``: ``data.windows`` now also appends the starts it is asked for to ``seen``; ``windows`` is
    the original."""
    seen, real_windows = [], data.windows
    monkeypatch.setattr(data, "windows", lambda starts, steps: seen.append(np.asarray(starts)) or
                        real_windows(starts, steps))
    return seen, real_windows


@pytest.mark.slow
def test_baseline_trains_on_the_training_split_for_its_budget_and_learns(parts, monkeypatch):
    sim, _, data, _ = parts
    train_eps, held_out = split_episodes(data.num_episodes, 0.34, 3)
    seen, real_windows = _spy_windows(data, monkeypatch)
    kw = dict(window=6, batch_size=4, lr=3e-3, seed=3, val_fraction=0.34)
    _, info = train_baseline(data, sim.config, seconds=0.4, **kw)
    # stopped at the budget: the step before the last began under it (seconds are recorded to the millisecond)
    assert info["seconds"] >= 0.4 and info["seconds"] - info["last_step_seconds"] < 0.4 + 1e-3
    assert info["steps"] == len(seen) >= 1
    episode = np.searchsorted(data.start, np.concatenate(seen), side="right") - 1
    assert set(episode) <= set(train_eps) and not set(episode) & set(held_out)
    first, _ = train_baseline(data, sim.config, steps=1, **kw)
    model, info = train_baseline(data, sim.config, steps=25, **kw)
    assert info["steps"] == 25
    batch = real_windows(data.window_starts(train_eps, 6)[:16], 6)
    losses = [m.loss(batch.obs, batch.action, batch.reward, batch.done, batch.mask)[0].item() for m in (first, model)]
    assert losses[1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="budget"):
        train_baseline(data, sim.config, **kw)


def test_baseline_with_tail_windows_draws_the_simulators_tail_windows(parts, monkeypatch):
    sim, _, data, _ = parts
    seen, _ = _spy_windows(data, monkeypatch)
    kw = dict(window=6, batch_size=8, seed=3, val_fraction=0.34)
    _, info = train_baseline(data, sim.config, steps=6, tail_windows=True, **kw)
    train_eps, _ = split_episodes(data.num_episodes, 0.34, 3)
    whole = set(data.window_starts(train_eps, 6).tolist())
    tail = set(data.window_starts(train_eps, 6, min_frames=sim.config.context_frames + 1).tolist())
    drawn = set(np.concatenate(seen).tolist())
    assert info["tail_windows"] and drawn <= tail and drawn - whole  # some windows run past their episode's end


def test_a_simulator_that_predates_tail_windows_gets_a_whole_window_baseline():
    from policylens.sim.analyses.fidelity.cli import training_split

    assert training_split({"train": {"seed": 0}})["tail_windows"] is False  # the default is on, but it was trained without
    assert training_split({"train": {"seed": 0, "tail_windows": True}})["tail_windows"] is True


def test_baseline_in_bf16_runs_under_autocast_as_the_simulator_was_trained(parts):
    from policylens.sim.analyses.fidelity.cli import training_split

    sim, _, data, _ = parts
    kw = dict(steps=1, window=6, batch_size=4, seed=3)
    _, info32 = train_baseline(data, sim.config, **kw)
    _, info16 = train_baseline(data, sim.config, bf16=True, **kw)
    assert (info32["bf16"], info16["bf16"]) == (False, True)
    a, b = info32["final_terms"], info16["final_terms"]  # one step: the same batch from the same weights
    assert a != b and all(abs(a[k] - b[k]) <= 0.05 * abs(a[k]) + 1e-3 for k in a)  # bf16 rounding, not another loss
    assert training_split({"train": {"seed": 0, "bf16": True}})["bf16"] is True  # a bf16 simulator gets a bf16 baseline
    assert training_split({"train": {"seed": 0}})["bf16"] is False


def test_baseline_save_load_round_trip(run, parts, tmp_path):
    sim, _, data, w = parts
    model, info = train_baseline(data, sim.config, steps=2, window=6, batch_size=4, latent=5, lstm=7)
    save_baseline(model, tmp_path / "b", info, data)
    loaded, conf = load_baseline(tmp_path / "b")
    assert (loaded.latent, loaded.width) == (5, 7) and conf["train"]["steps"] == 2
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    k = sim.config.context_frames
    assert all(torch.equal(x, y) for x, y in zip(model.unroll(w.obs[:, :k], w.action),
                                                 loaded.unroll(w.obs[:, :k], w.action)))
    with pytest.raises(FileNotFoundError, match="no baseline"):
        load_baseline(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a VAE\\+LSTM baseline"):
        load_baseline(run / "sim")  # a simulator folder


# -------------------------------------------------------------------------------------------------- the command
def _run_copy(run, tmp_path, **train) -> str:
    """A copy of the run whose simulator records a training section and trained_seconds."""
    root = tmp_path / "copy"
    shutil.copytree(run.parent, root)
    conf_file = root / "rnn" / "sim" / "config.json"
    conf = json.loads(conf_file.read_text())
    conf.update(trained_seconds=0.3, trained_steps=7, train={"val_fraction": 0.34, "seed": 3, "window": 6,
                                                             "batch_size": 4, "lr": 1e-3, **train})
    conf_file.write_text(json.dumps(conf))
    return str(root / "rnn")


@pytest.mark.slow
def test_cli_matches_the_simulators_compute_and_split_and_writes_json_and_figure(run, tmp_path, capsys):
    rnn = _run_copy(run, tmp_path)
    args = [rnn, "--horizon", "5", "--windows", "16", "--bootstrap", "50", "--progress", "false"]
    path = fidelity_cli.main(args)
    report = json.loads(path.read_text())
    assert list(report["models"]) == ["simulator", "simulator (filtered)", "baseline", "repeat"]
    ceiling = report["one_step_ceiling"]  # Empty-Random: nothing to draw again, so the ceiling is perfect
    assert ceiling["draws"] == 32 and ceiling["best"]["action_agreement"]["mean"] == 1.0
    sim_h1 = report["models"]["simulator"]["summary"]["1"]["obs_score"]["mean"]
    assert ceiling["best_minus"]["simulator"]["obs_score"]["mean"] == pytest.approx(1.0 - sim_h1)
    closed = report["closed_loop"]  # the agent acting on its own: 6 steps from the last context frame
    assert closed["draws"] == 32 and closed["steps"] == 6 and set(closed["summary"]) == {"1", "5"}
    assert closed["summary"]["1"]["a draw"]["mean"] == 1.0 == closed["summary"]["5"]["best guess"]["mean"]
    assert 0.0 <= closed["summary"]["1"]["simulator"]["mean"] <= 1.0
    assert (path.parent / "closed_loop.png").stat().st_size > 10_000
    assert report["settings"]["simulator_start"] == "z"  # auto, for a simulator trained before mixed starts
    base = report["models"]["baseline"]["training"]
    assert base["budget_seconds"] == 0.3 and base["seconds"] >= 0.3 and base["trained_now"]
    assert (base["window"], base["batch_size"], base["seed"], base["val_fraction"]) == (6, 4, 3, 0.34)
    assert report["models"]["simulator"]["training"]["seconds"] == 0.3
    split = report["settings"]["split"]
    _, held_out = split_episodes(6, 0.34, 3)
    assert set(split["scored_episodes"]) <= set(held_out.tolist()) and split["held_out_episodes"] == len(held_out)
    for model in report["models"].values():
        assert set(model["summary"]) == {"1", "5"}
        assert all(len(c["mean"]) == 5 for c in model["per_step"].values())
        assert max(model["per_step"]["obs_score"]["count"]) <= split["windows"] <= 16
        assert "wall" in model["object_recall"] and len(model["object_recall"]["wall"]["recall"]) == 5
    assert "simulator_minus_this" in report["models"]["baseline"]
    assert (path.parent / "fidelity.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "baseline" in out and "simulator" in out and "repeat" in out and "recall by object" in out
    assert "h=1, env drawn again" in out and "best - baseline" in out and "closed loop, 32 draws" in out
    args += ["--overwrite"]  # the runs below replace the first one's output
    again = json.loads(fidelity_cli.main(args + ["--plots", "false"]).read_text())  # auto: the saved one
    assert not again["models"]["baseline"]["training"]["trained_now"]
    assert again["models"]["baseline"]["per_step"] == report["models"]["baseline"]["per_step"]
    swapped = json.loads(fidelity_cli.main(args + ["--plots", "false", "--start", "filtered", "--baseline", "none",
                                                   "--ceiling-draws", "0", "--closed-loop-draws", "0"]).read_text())
    assert "one_step_ceiling" not in swapped and "closed_loop" not in swapped
    swapped = swapped["models"]
    assert list(swapped) == ["simulator", "simulator (z alone)", "repeat"]
    assert swapped["simulator"]["per_step"] == report["models"]["simulator (filtered)"]["per_step"]
    assert swapped["simulator (z alone)"]["per_step"] == report["models"]["simulator"]["per_step"]
    mixed = fidelity_cli.FidelityConfig(run="x")
    assert fidelity_cli._start(mixed, {"train": {"open_loop_start": "mixed"}}) == "filtered"
    assert fidelity_cli._start(mixed, {"train": {"open_loop_start": "z"}}) == fidelity_cli._start(mixed, {}) == "z"
    for term in ("prior_obs_weight", "prior_step_weight"):
        assert fidelity_cli._start(mixed, {"train": {term: 1.0}}) == "filtered"
        assert fidelity_cli._start(mixed, {"train": {term: 0.0}}) == "z"


@pytest.mark.slow
def test_bad_input_gives_clear_errors(run, tmp_path, capsys):
    rnn = str(run)
    quick = ["--horizon", "3", "--windows", "4", "--progress", "false", "--plots", "false"]

    def refused(args, text):
        with pytest.raises(SystemExit) as e:
            fidelity_cli.main(quick + args)  # the later option wins
        assert e.value.code == 2
        assert text in capsys.readouterr().err

    refused([rnn, "--baseline", "bogus"], "expected auto, train, none or a baseline folder")
    refused([rnn, "--out", str(tmp_path / "o")], "no trained_seconds")  # an untrained simulator: no budget known
    refused([rnn, "--horizon", "0"], "--horizon must be >= 1")
    refused([rnn, "--ceiling-draws", "-2"], "--ceiling-draws must be >= 0")
    refused([rnn, "--closed-loop-draws", "3"], "--closed-loop-draws must be 0 or >= 4")
    refused([rnn, "--reach", "4"], "--reach 4 is beyond --horizon 3")
    torch.manual_seed(0)
    agents.save_agent(agents.build(dict(AGENT, recurrent=False)), dict(AGENT, recurrent=False), tmp_path / "ff" /
                      "agent", extra={"env": ENV})
    ff_store = record(RecordConfig(run=str(tmp_path / "ff"), episodes=2, num_envs=2, progress=False))
    refused([rnn, "--store", str(ff_store), "--baseline", "none"], "no agent_state")
    rnn_copy = _run_copy(run, tmp_path)
    fidelity_cli.main([rnn_copy, "--baseline", "train", "--baseline-steps", "1"] + quick)
    conf_file = tmp_path / "copy" / "rnn" / "sim" / "config.json"
    conf = json.loads(conf_file.read_text())
    conf["train"]["seed"] = 4
    conf_file.write_text(json.dumps(conf))
    refused([rnn_copy, "--overwrite"], "retrain it with --baseline train")  # a baseline trained on another split


def test_held_out_windows_come_from_the_held_out_episodes_and_reach_past_the_context(parts, monkeypatch):
    _, _, data, _ = parts
    seen, _ = _spy_windows(data, monkeypatch)
    w, info = held_out_windows(data, 0.34, 3, context=2, horizon=4, count=1000)
    _, held_out = split_episodes(data.num_episodes, 0.34, 3)
    episode = np.searchsorted(data.start, seen[0], side="right") - 1
    assert set(episode) == set(held_out) == set(info["scored_episodes"])
    assert len(seen[0]) == sum(data.length[e] - 2 for e in held_out) == info["windows"]  # every start
    assert w.mask[:, :3].all()  # the context and at least one step after it
    few, _ = held_out_windows(data, 0.34, 3, context=2, horizon=4, count=5, seed=1)
    assert few.obs.shape[0] == 5


def test_reach_scores_only_windows_whose_steps_lie_in_their_episode(parts):
    _, _, data, _ = parts
    episodes = np.arange(data.num_episodes)
    reach = int(np.sort(data.length)[-2]) - 2  # the two longest episodes reach that far after 2 context frames
    w, info = scored_windows(data, episodes, context=2, horizon=reach, count=1000, reach=reach)
    long = [e for e in episodes if data.length[e] >= 2 + reach]
    assert len(long) >= 2 and info["scored_episodes"] == long
    assert info["windows"] == sum(data.length[e] - 1 - reach for e in long)  # every start that reaches
    assert w.mask.all()  # every step of every window lies in its episode
    everything, _ = scored_windows(data, episodes, context=2, horizon=reach, count=1000)
    assert not everything.mask.all()  # without it, the far steps are padding on most windows
    with pytest.raises(ValueError, match="reach in 1 .. horizon"):
        scored_windows(data, episodes, context=2, horizon=3, count=10, reach=4)
    with pytest.raises(ValueError, match="plus the"):
        scored_windows(data, episodes, context=2, horizon=1000, count=10, reach=1000)


@pytest.mark.slow
def test_the_training_logs_open_loop_scores_read_the_context_as_sim_fidelity_does(parts):
    from policylens.sim.objective import SimObjective, held_out_scores
    from policylens.sim.train import SimTrainConfig

    sim, frozen, _, w = parts
    k = sim.config.context_frames
    after = w.mask[:, k:].float()  # (B, H)
    loss = SimObjective(sim, frozen, SimTrainConfig(run="x", sim=sim.config))
    for filtered in (False, True):
        pred = simulator_unroll(sim, frozen, filtered)(w, k)
        want = float((obs_score(pred.decoded, w.obs[:, k:], sim.config) * after).sum() / after.sum())
        got = held_out_scores(loss, w, chunk=5, filtered=filtered)["open_obs_score"]
        assert got == pytest.approx(want, abs=1e-5), filtered
    z_alone, filtered = (held_out_scores(loss, w, filtered=f)["open_obs_score"] for f in (False, True))
    assert z_alone != pytest.approx(filtered, abs=1e-6)  # the two starts differ, so the log says which it read


@pytest.mark.slow
def test_a_store_recorded_apart_is_scored_whole_and_the_baseline_trains_on_every_store_the_simulator_did(
        run, tmp_path, capsys, monkeypatch):
    from policylens.sim.analyses.fidelity import core as fidelity

    rnn = _run_copy(run, tmp_path)
    test = record(RecordConfig(run=rnn, episodes=4, num_envs=2, seed=1000, out=str(tmp_path / "test.zarr"),
                               progress=False))
    more = record(RecordConfig(run=rnn, episodes=3, num_envs=2, seed=2000, out=str(tmp_path / "more.zarr"),
                               progress=False))
    quick = [rnn, "--horizon", "3", "--windows", "1000", "--bootstrap", "20", "--progress", "false", "--plots",
             "false", "--ceiling-draws", "0", "--closed-loop-draws", "0", "--baseline-steps", "1"]
    one = json.loads(fidelity_cli.main(quick).read_text())  # trained on its own store: a baseline of 6 episodes
    assert one["models"]["baseline"]["training"]["store_episodes"] == 6
    conf_file = tmp_path / "copy" / "rnn" / "sim" / "config.json"
    conf = json.loads(conf_file.read_text())
    conf["data"] = {"store": f"{rnn}/rollouts.zarr,{more}", "episodes": 9, "split_episodes": 6}
    conf_file.write_text(json.dumps(conf))  # now it says it also trained on `more`

    quick.append("--overwrite")  # the runs below replace the first one's output

    def refused(args, text):
        with pytest.raises(SystemExit) as e:
            fidelity_cli.main(quick + args)
        assert e.value.code == 2
        assert text in capsys.readouterr().err

    refused([], "retrain it with --baseline train")  # the saved baseline never saw `more`
    seen = []
    real = fidelity.scored_windows
    monkeypatch.setattr(fidelity, "scored_windows", lambda data, *a, **kw: seen.append(data) or real(data, *a, **kw))
    report = json.loads(fidelity_cli.main(quick + ["--baseline", "train", "--test-store", str(test)]).read_text())
    assert report["models"]["baseline"]["training"]["store_episodes"] == 9  # both of the simulator's stores
    split, scored = report["settings"]["split"], load_sim_data(test)
    assert seen[0].path == scored.path and split["test_store"] == str(test) and split["store_episodes"] == 4
    assert split["scored_episodes"] == [e for e in range(4) if scored.length[e] > 2]  # every one long enough
    assert split["windows"] == sum(scored.length[e] - 2 for e in split["scored_episodes"])
    assert "test-store" in split["source"]
    refused(["--test-store", f"{rnn}/rollouts.zarr"], "shares 6 level seed(s)")
    refused(["--test-store", str(more)], "shares 3 level seed(s)")
    other = record(RecordConfig(run=str(tmp_path / "copy" / "other"), episodes=2, num_envs=2, seed=3000,
                                out=str(tmp_path / "other.zarr"), progress=False))
    refused(["--test-store", str(other)], "not the simulator's")
    shutil.rmtree(more)
    refused([], "missing here")
