"""The rollouts store: recording real MiniGrid episodes into real zarr, resuming after kill -9, lazy reads, GAE."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from policylens import agents, rollouts
from policylens.envs import CAUSES, make
from policylens.rollouts import RecordConfig, StoreWriter, add_advantages, gae, record, store as store_mod

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two busy cores: torch's thread pool only adds contention for these tiny nets."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    for name, extra in (("ff", {}), ("rnn", {"recurrent": True, "hidden": 16})):
        cfg = {**AGENT, **extra}
        agents.save_agent(agents.build(cfg), cfg, root / name / "agent", extra={"env": ENV})
    return root


def _cfg(run, **kw) -> RecordConfig:
    return RecordConfig(run=str(run), **{"episodes": 12, "num_envs": 3, "progress": False, **kw})


@pytest.fixture(scope="module")
def ff_store(runs):
    return record(_cfg(runs / "ff"))


@pytest.fixture(scope="module")
def rnn_store(runs):
    return record(_cfg(runs / "rnn", episodes=8))


def _all(store, name):
    return store.read(name, 0, store.num_frames)


def _check_structure(store, n):
    """Exactly n whole episodes: contiguous index, done exactly on each last frame, per-frame seeds match."""
    assert len(store) == n
    length, start = store.index["length"], store.index["start"]
    assert length.sum() == store.num_frames and (length > 0).all()
    np.testing.assert_array_equal(start, np.concatenate([[0], np.cumsum(length)[:-1]]))
    np.testing.assert_array_equal(np.flatnonzero(_all(store, "done")), start + length - 1)
    np.testing.assert_array_equal(_all(store, "level_seed"), np.repeat(store.index["level_seed"], length))
    ep_of_frame = np.repeat(np.arange(n), length)
    returns = np.bincount(ep_of_frame, weights=_all(store, "reward").astype(np.float64), minlength=n)
    np.testing.assert_allclose(store.index["return"], returns, atol=1e-5)


def _episode(store, i):
    ep = store.episode(i)
    return {k: ep[k] for k in store._frame_fields} | {"info": ep.info}


def _snapshot(store, n):
    return [_episode(store, i) for i in range(n)]


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if k == "info":
            assert a[k] == b[k]
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_record_holds_n_whole_episodes(ff_store, runs):
    store = rollouts.open(ff_store)
    assert ff_store == runs / "ff" / "rollouts.zarr"  # default out: RUN/rollouts.zarr
    _check_structure(store, 12)
    assert set(store.index["cause"]) <= set(CAUSES)
    assert store.env == ENV and store.run == str((runs / "ff").resolve())
    assert store.action_names == ["left", "right", "forward"]
    assert set(store.fields) == {"obs", "action", "logits", "value", "reward", "done", "level_seed", "entities",
                                 "advantages", "returns"}  # feed-forward: no agent_state
    ep = store.episode(3)
    assert ep["obs"].dtype == np.uint8 and ep["obs"].shape == (ep.length, 7, 7, 3)
    assert ep.info["cause"] == store.index["cause"][3]


@pytest.mark.slow
def test_stored_logits_and_values_equal_a_fresh_forward_pass(ff_store, runs):
    store, agent = rollouts.open(ff_store), agents.load(runs / "ff")
    with torch.no_grad():
        out = agent(torch.as_tensor(_all(store, "obs")))  # (F, A), (F,)
    np.testing.assert_allclose(_all(store, "logits"), out.logits.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_all(store, "value"), out.value.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_greedy_actions_are_the_argmax_of_the_stored_logits(runs, tmp_path):
    store = rollouts.open(record(_cfg(runs / "ff", episodes=4, policy="greedy", out=str(tmp_path / "g.zarr"))))
    np.testing.assert_array_equal(_all(store, "action"), _all(store, "logits").argmax(-1))


@pytest.mark.slow
def test_recurrent_agent_state_is_the_input_state(rnn_store, runs):
    store, agent = rollouts.open(rnn_store), agents.load(runs / "rnn")
    assert "agent_state" in store.fields
    with torch.no_grad():
        for ep in store:
            obs, hx_in = torch.as_tensor(ep["obs"]), ep["agent_state"]  # (T, 7, 7, 3), (T, 16)
            np.testing.assert_allclose(hx_in[0], agent.initial_state(1)[0].numpy(), atol=1e-6)
            state = None
            for t in range(ep.length):  # the episode replayed step by step from h0
                out = agent(obs[t:t + 1], state)
                np.testing.assert_allclose(ep["logits"][t], out.logits[0].numpy(), atol=1e-5)
                if t + 1 < ep.length:
                    np.testing.assert_allclose(hx_in[t + 1], out.state[0].numpy(), atol=1e-5)
                state = out.state
            out = agent(obs, torch.as_tensor(hx_in))  # batched, from the stored input states
            np.testing.assert_allclose(ep["logits"], out.logits.numpy(), atol=1e-5)
            np.testing.assert_allclose(ep["value"], out.value.numpy(), atol=1e-5)


@pytest.mark.slow
def test_replaying_the_actions_reproduces_obs_entities_and_causes(runs, tmp_path):
    store = rollouts.open(record(_cfg(runs / "ff", episodes=6, num_envs=1, seed=5, out=str(tmp_path / "r.zarr"))))
    env = make(ENV, num_envs=1, seed=5)
    obs = env.reset(5)
    for ep in store:
        for t in range(ep.length):
            np.testing.assert_array_equal(ep["obs"][t], obs[0])
            assert json.loads(ep["entities"][t]) == env.entities()[0]
            obs, reward, done, info = env.step(ep["action"][t:t + 1])
            assert reward[0] == ep["reward"][t] and done[0] == ep["done"][t]
        assert info[0]["episode"]["cause"] == ep.info["cause"]
        assert info[0]["episode"]["level_seed"] == ep.info["level_seed"]
        assert info[0]["episode"]["return"] == pytest.approx(ep.info["return"])


@pytest.mark.slow
def test_saved_env_states_restore_the_stored_frames(runs, tmp_path):
    store = rollouts.open(record(_cfg(runs / "ff", episodes=4, save_state=True, out=str(tmp_path / "s.zarr"))))
    assert "env_state" in store.fields
    env = make(ENV, num_envs=1, seed=123)
    for ep in store:
        states, obs = ep["env_state"], ep["obs"]  # (T,) bytes, (T, 7, 7, 3)
        assert len(states) == ep.length and all(isinstance(s, bytes) for s in states)
        for t in range(ep.length):
            env.set_state([states[t]])
            np.testing.assert_array_equal(env.observe()[0], obs[t])


@pytest.mark.slow
def test_max_steps_cuts_episodes(runs, tmp_path):
    store = rollouts.open(record(_cfg(runs / "ff", episodes=10, max_steps=2, out=str(tmp_path / "m.zarr"))))
    _check_structure(store, 10)
    assert store.index["length"].max() <= 2
    cut = store.index["cause"] == "max_steps"
    assert cut.any() and (store.index["length"][cut] == 2).all()


# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_then_resume_keeps_finished_episodes_and_ends_with_n(runs, tmp_path):
    n, out = 100, tmp_path / "k.zarr"
    args = [str(runs / "ff"), "--out", str(out), "--episodes", str(n), "--num-envs", "4", "--seed", "3",
            "--flush-seconds", "0.05", "--progress", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(rollouts.__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "policylens.rollouts", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, before = time.monotonic() + 90, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "episodes" / "zarr.json").is_file() and len(rollouts.open(out)) >= 5:
                live = rollouts.open(out)
                before = _snapshot(live, len(live))  # read while the recording runs
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"recording ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and before is not None
    killed = rollouts.open(out)
    k = len(killed)
    assert len(before) <= k < n
    at_kill = _snapshot(killed, k)
    _check_structure(killed, k)

    shutil.copytree(out, tmp_path / "copy.zarr")
    cfg = dict(episodes=n, num_envs=4, seed=3, flush_seconds=0.05)
    resumed = rollouts.open(record(_cfg(runs / "ff", out=str(out), resume=True, **cfg)))
    _check_structure(resumed, n)
    for i, ep in enumerate(at_kill):
        _assert_same(ep, _episode(resumed, i))
    for i, ep in enumerate(before):
        _assert_same(ep, at_kill[i])
    assert len(set(resumed.index["level_seed"])) == n  # no episode stored twice
    np.testing.assert_allclose(_all(resumed, "advantages"),
                               gae(_all(resumed, "reward"), _all(resumed, "value"), _all(resumed, "done"))[0], atol=1e-5)

    # a resume is deterministic: the same store resumed by the same command gives the same episodes
    again = rollouts.open(record(_cfg(runs / "ff", out=str(tmp_path / "copy.zarr"), resume=True, **cfg)))
    for a, b in zip(_snapshot(resumed, n), _snapshot(again, n)):
        _assert_same(a, b)


@pytest.mark.slow
def test_torn_append_is_invisible_and_truncated_on_resume(ff_store, runs, tmp_path):
    out = tmp_path / "t.zarr"
    shutil.copytree(ff_store, out)
    original = rollouts.open(out)
    e, f = len(original), original.num_frames
    snap = _snapshot(original, e)
    group = zarr.open_group(str(out), mode="a")  # an append killed after frames and part of the index
    for name in ("obs", "action", "done", "level_seed"):
        arr = group[name]
        arr.resize((f + 7, *arr.shape[1:]))
        arr[f:] = 1
    for name in ("start", "length", "level_seed"):
        arr = group["episodes"][name]
        arr.resize((e + 2,))
        arr[e:] = [f, f + 3] if name == "start" else 3
    (out / "obs" / "c" / "0" / "0" / "0" / "0.1234.partial").write_bytes(b"half a chunk")  # a killed zarr write
    torn = rollouts.open(out)
    assert (len(torn), torn.num_frames) == (e, f)
    for i in range(e):
        _assert_same(snap[i], _episode(torn, i))
    with StoreWriter(out) as w:  # a writer cuts the torn tail away
        assert (w.num_episodes, w.num_frames) == (e, f)
        assert w.array("obs").shape[0] == w.array("done").shape[0] == f and w.array("episodes/length").shape[0] == e
        assert w.array("logits").shape[0] == f  # untouched by the torn append
    assert not list(out.rglob("*.partial"))

    resumed = rollouts.open(record(_cfg(runs / "ff", out=str(out), episodes=e + 4, resume=True)))
    _check_structure(resumed, e + 4)
    for i in range(e):
        _assert_same(snap[i], _episode(resumed, i))


@pytest.mark.slow
def test_errors_name_the_store_file_or_field(ff_store, runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no rollouts store at .*nowhere"):
        rollouts.open(tmp_path / "nowhere.zarr")
    store = rollouts.open(ff_store)
    with pytest.raises(KeyError, match="no field 'hx'.*obs, action"):
        store.episode(0)["hx"]
    with pytest.raises(KeyError, match="no field 'pixels'"):
        next(store.batches(fields=("pixels",)))
    with pytest.raises(IndexError, match="12 episodes"):
        store.episode(12)
    with pytest.raises(ValueError, match="other settings.*policy"):
        record(_cfg(runs / "ff", policy="greedy", resume=True))
    with pytest.raises(ValueError, match=r"obs \(7, 7, 3\).*obs \(56, 56, 3\)"):
        record(_cfg(runs / "ff", env=ENV + "?obs=rgb", out=str(tmp_path / "x.zarr")))

    with StoreWriter(ff_store), pytest.raises(RuntimeError, match="another process is writing"):
        StoreWriter(ff_store)  # one writer at a time

    bad = tmp_path / "bad.zarr"  # a commit claiming more episodes than the index holds
    shutil.copytree(ff_store, bad)
    zarr.open_group(str(bad / "episodes"), mode="a").attrs.update({"num_episodes": 20})
    with pytest.raises(ValueError, match=r"corrupt episode index: .*episodes/start"):
        rollouts.open(bad)
    bad2 = tmp_path / "bad2.zarr"  # a garbled index chunk
    shutil.copytree(ff_store, bad2)
    (bad2 / "episodes" / "length" / "c" / "0").write_bytes(b"not blosc")
    with pytest.raises(ValueError, match=r"episodes/length"):
        rollouts.open(bad2)
    bad3 = tmp_path / "bad3.zarr"  # a frame array gone
    shutil.copytree(ff_store, bad3)
    (bad3 / "logits" / "zarr.json").unlink()
    with pytest.raises(ValueError, match=r"bad3.zarr/logits"):
        rollouts.open(bad3)


# --------------------------------------------------------------------------------------------------
def test_gae_matches_a_hand_computation(ff_store):
    reward, value, done = [1.0, 0.0, 2.0, 1.0], [0.5, 0.2, 0.1, 0.3], [False, False, True, True]
    # gamma 0.9, lam 0.8 (gamma * lam = 0.72), backwards:
    # t3: 1 - 0.3 = 0.7 | t2: 2 - 0.1 = 1.9 | t1: 0 + 0.9*0.1 - 0.2 + 0.72*1.9 = 1.258 | t0: 1 + 0.9*0.2 - 0.5 + 0.72*1.258
    expected = np.array([0.68 + 0.72 * 1.258, 1.258, 1.9, 0.7])
    adv, ret = gae(reward, value, done, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    np.testing.assert_allclose(ret, expected + value, rtol=1e-6)
    adv2, _ = gae(np.stack([reward, reward], 1), np.stack([value, value], 1), np.stack([done, done], 1), 0.9, 0.8)
    np.testing.assert_allclose(adv2, np.stack([expected, expected], 1), rtol=1e-6)  # time-major (T, N)
    np.testing.assert_allclose(gae([1.0], [0.5], [False], 0.9, 0.8, last_value=2.0)[0], [1 + 0.9 * 2 - 0.5], rtol=1e-6)

    out = ff_store.parent / "gae.zarr"
    shutil.copytree(ff_store, out)
    add_advantages(out, gamma=0.9, lam=0.8)
    store = rollouts.open(out)
    assert {"advantages", "returns"} <= set(store.fields)
    for ep in store:  # episodes are independent: the per-episode computation is the same
        adv, ret = gae(ep["reward"], ep["value"], ep["done"], 0.9, 0.8)
        np.testing.assert_allclose(ep["advantages"], adv, atol=1e-6)
        np.testing.assert_allclose(ep["returns"], ret, atol=1e-6)
    assert zarr.open_array(str(out / "advantages"), mode="r").attrs["gamma"] == 0.9


# --------------------------------------------------------------------------------------------------
SYNTHETIC = {"obs": ((4, 4, 3), "uint8"), "value": ((), "float32"), "reward": ((), "float32"),
             "done": ((), "bool"), "level_seed": ((), "int64")}


def _synthetic_episode(e, length=100, state=False):
    """Episode e of a synthetic store: value = global frame index, obs = index mod 251, env_state = its bytes."""
    idx = np.arange(e * length, (e + 1) * length)  # (T,)
    ep = {"obs": np.broadcast_to((idx % 251).astype(np.uint8)[:, None, None, None], (length, 4, 4, 3)),
          "value": idx.astype(np.float32), "reward": np.zeros(length, np.float32),
          "done": idx == idx[-1], "level_seed": np.full(length, e), "cause": "other", "return": 0.0}
    if state:
        ep["env_state"] = [str(i).encode() * (1 + i % 3) for i in idx]
    return ep


def _synthetic(path, n_eps=10, length=100, state=False):
    fields = {**SYNTHETIC, "env_state": ((), "bytes")} if state else SYNTHETIC
    with StoreWriter(path, fields, {"env": "synthetic"}) as w:
        for e in range(n_eps):
            w.append([_synthetic_episode(e, length, state)])
    return path


@pytest.mark.slow
def test_an_append_dying_midway_keeps_the_previous_commit(tmp_path, monkeypatch):
    path = _synthetic(tmp_path / "s.zarr", n_eps=2, length=10, state=True)
    before = _snapshot(rollouts.open(path), 2)
    write, writes = StoreWriter.write_at, []
    counting = staticmethod(lambda arr, at, data: (writes.append(1), write(arr, at, data)))
    monkeypatch.setattr(StoreWriter, "write_at", counting)
    with StoreWriter(tmp_path / "count.zarr", {**SYNTHETIC, "env_state": ((), "bytes")}) as w:
        w.append([_synthetic_episode(0, 10, True)])
    assert len(writes) == 12  # 5 frame arrays + 2 env-state arrays, then 5 index arrays
    for k in range(len(writes)):  # die before the (k+1)-th array write of the append
        calls = []

        def dying(arr, at, data, k=k, calls=calls):
            calls.append(1)
            if len(calls) > k:
                raise OSError("killed")
            write(arr, at, data)

        monkeypatch.setattr(StoreWriter, "write_at", staticmethod(dying))
        with StoreWriter(path) as w, pytest.raises(OSError, match="killed"):
            w.append([_synthetic_episode(2, 10, True), _synthetic_episode(3, 10, True)])
        store = rollouts.open(path)
        assert (len(store), store.num_frames) == (2, 20)
        for a, b in zip(before, _snapshot(store, 2)):
            _assert_same(a, b)
    monkeypatch.setattr(StoreWriter, "write_at", staticmethod(write))
    with StoreWriter(path) as w:
        w.append([_synthetic_episode(2, 10, True)])
    store = rollouts.open(path)
    assert len(store) == 3
    np.testing.assert_array_equal(_all(store, "value"), np.arange(30))
    assert list(store.episode(2)["env_state"]) == _synthetic_episode(2, 10, True)["env_state"]


@pytest.mark.slow
def test_reads_are_lazy_and_per_episode(tmp_path):
    path = _synthetic(tmp_path / "s.zarr")  # 1000 frames: obs chunks of 256 frames
    for chunk in (path / "obs" / "c").iterdir():  # garble every obs chunk but the first (frames 0-255)
        if chunk.name != "0":
            shutil.rmtree(chunk) if chunk.is_dir() else chunk.unlink()
            (chunk / "0" / "0").mkdir(parents=True)
            (chunk / "0" / "0" / "0").write_bytes(b"garbage")
    store = rollouts.open(path)  # opening reads no frames
    assert len(store) == 10 and store.num_frames == 1000
    ep = store.episode(1)  # frames 100-199 lie in the intact chunk
    assert ep["obs"].shape == (100, 4, 4, 3)
    np.testing.assert_array_equal(ep["obs"][:, 0, 0, 0], np.arange(100, 200) % 251)
    late = store.episode(7)  # building the episode reads nothing; its scalars come from the index
    np.testing.assert_array_equal(late["value"], np.arange(700, 800))
    with pytest.raises(ValueError, match=r"s.zarr: field 'obs' of episode 7 is damaged .*obs/c/2/0/0/0 is corrupt"):
        late["obs"]


@pytest.mark.slow
def test_batches_cover_every_frame_once(tmp_path, monkeypatch):
    store = rollouts.open(_synthetic(tmp_path / "s.zarr"))
    monkeypatch.setattr(store_mod, "BLOCK_FRAMES", 256)  # several blocks, batches straddling them
    for shuffle in (False, True):
        batches = list(store.batches(fields=("obs", "value"), batch_size=96, shuffle=shuffle, seed=1))
        assert [len(b["frame"]) for b in batches] == [96] * 10 + [40]
        frames = np.concatenate([b["frame"] for b in batches])
        np.testing.assert_array_equal(np.sort(frames), np.arange(1000))
        assert (not shuffle) == np.array_equal(frames, np.arange(1000))
        for b in batches:
            np.testing.assert_array_equal(b["value"], b["frame"])  # each row is its frame's data
            np.testing.assert_array_equal(b["obs"][:, 1, 2, 0], b["frame"] % 251)
            np.testing.assert_array_equal(b["episode"], b["frame"] // 100)
    assert len(list(store.batches(batch_size=96, drop_last=True))) == 10


@pytest.mark.slow
def test_env_state_bytes_round_trip(tmp_path):
    store = rollouts.open(_synthetic(tmp_path / "s.zarr", n_eps=3, length=5, state=True))
    assert "env_state" in store.fields
    ep = store.episode(2)
    assert list(ep["env_state"]) == [str(i).encode() * (1 + i % 3) for i in range(10, 15)]


def test_cli_help_shows_the_field_docs(capsys):
    with pytest.raises(SystemExit):
        rollouts.main(["--help"])
    text = capsys.readouterr().out
    assert "--flush-seconds" in text and "commit finished episodes" in text and "--save-state" in text
