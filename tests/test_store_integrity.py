"""A rollouts store tells a missing or corrupt chunk from data: reading it raises naming the episode and the
field (other episodes still read), ``policylens record --verify`` reports every damaged chunk, all-fill chunks
(zero rewards) are written and read back, and attribute refuses damaged frames instead of attributing black ones."""
from __future__ import annotations

import contextlib
import shutil

import numpy as np
import pytest
import torch

from policylens import agents
from policylens.cli import main as pl
from policylens.rollouts import RecordConfig, StoreWriter, open as open_store, record, writer as writer_mod
from policylens.rollouts.integrity import StoreDamage, chunk_file
from policylens.rollouts.verify import verify

ENV = "minigrid:MiniGrid-Empty-Random-5x5-v0?num_actions=3"  # a random agent wanders: episodes of tens of steps
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real recording (6 episodes) whose obs chunks hold 16 frames, so episodes span several chunks."""
    root = tmp_path_factory.mktemp("integrity")
    torch.manual_seed(0)
    agents.save_agent(agents.build(AGENT), AGENT, root / "run" / "agent", extra={"env": ENV})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer_mod, "OBS_CHUNK", 16)
        record(RecordConfig(run=str(root / "run"), episodes=6, num_envs=2, progress=False))
    return root / "run"


@pytest.fixture
def store_copy(recorded, tmp_path):
    shutil.copytree(recorded, tmp_path / "run")
    return tmp_path / "run" / "rollouts.zarr"


def _obs_chunk_of(store, frame: int):
    arr = store._arrays["obs"]
    return int(frame // arr.chunks[0]), chunk_file(store.path / "obs", arr, int(frame // arr.chunks[0]))


def _episodes_touching(store, chunk: int) -> set:
    size = store._arrays["obs"].chunks[0]
    frames = np.arange(chunk * size, min((chunk + 1) * size, store.num_frames))
    return set(store.episode_of(frames).tolist())


@pytest.mark.slow
def test_a_whole_store_writes_every_chunk_and_verifies(recorded):
    store = open_store(recorded / "rollouts.zarr")
    report = verify(store.path)
    assert report["problems"] == [] and report["episodes"] == 6 and report["chunks"] > 10
    for name in ("obs", "reward", "done", "action", "value"):
        arr = store._arrays[name]
        for i in range(-(-store.num_frames // arr.chunks[0])):
            assert chunk_file(store.path / name, arr, i).is_file(), (name, i)  # even all-zero reward chunks


@pytest.mark.slow
def test_a_deleted_obs_chunk_names_the_episode_and_field_and_the_others_still_read(store_copy):
    store = open_store(store_copy)
    last = store.episode(len(store) - 1)
    chunk, path = _obs_chunk_of(store, last.start)  # the chunk where the last episode begins
    before = {e: store.episode(e)["obs"].copy() for e in range(len(store))}
    path.unlink()
    store = open_store(store_copy)
    damaged = _episodes_touching(store, chunk)
    for e in range(len(store)):
        if e in damaged:
            with pytest.raises(StoreDamage, match=rf"field 'obs' of episode {e} is damaged .*missing"):
                store.episode(e)["obs"]
        else:
            np.testing.assert_array_equal(store.episode(e)["obs"], before[e])
    assert any(e not in damaged for e in range(len(store)))
    np.testing.assert_array_equal(store.episode(0)["reward"], open_store(store_copy).episode(0)["reward"])
    with pytest.raises(StoreDamage, match="field 'obs'"):  # a batch over the whole store names it too
        list(store.batches(("obs",), batch_size=8))


@pytest.mark.slow
def test_a_corrupt_chunk_is_an_error_and_verify_reports_both(store_copy, capsys):
    store = open_store(store_copy)
    chunk, path = _obs_chunk_of(store, 0)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    reward = chunk_file(store.path / "reward", store._arrays["reward"], 0)
    reward.unlink()
    store = open_store(store_copy)
    with pytest.raises(StoreDamage, match=r"field 'obs' of episode 0 is damaged .*corrupt"):
        store.episode(0)["obs"]
    with pytest.raises(StoreDamage, match=r"field 'reward' of episode 0 is damaged .*missing"):
        store.episode(0)["reward"]
    report = verify(store_copy)
    found = {(p["field"], p["problem"].split(":")[0]): p for p in report["problems"]}
    assert set(found) == {("obs", "corrupt"), ("reward", "missing")}
    assert found[("obs", "corrupt")]["episodes"] == sorted(_episodes_touching(store, chunk))
    assert found[("reward", "missing")]["episodes"] == list(range(len(store)))  # one reward chunk holds them all
    with pytest.raises(SystemExit) as e:
        pl(["record", "--verify", str(store_copy)])
    out = capsys.readouterr().out
    assert e.value.code == 1 and "2 damaged chunk(s)" in out and "obs of episode" in out and "reward of" in out


@pytest.mark.slow
def test_verify_says_a_whole_store_is_whole(recorded, capsys):
    pl(["record", "--verify", str(recorded / "rollouts.zarr")])
    assert "the store is whole" in capsys.readouterr().out


def test_attribute_refuses_a_store_with_a_missing_obs_chunk(store_copy, capsys):
    store = open_store(store_copy)
    _obs_chunk_of(store, 0)[1].unlink()
    with pytest.raises(SystemExit) as e:
        pl(["attribute", str(store_copy.parent), "--method", "saliency", "--episodes", "0",
            "--out", str(store_copy.parent / "a.npz"), "--progress", "false"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "field 'obs' of episode 0 is damaged" in err and "Traceback" not in err
    assert not (store_copy.parent / "a.npz").exists()


SYNTHETIC = {"obs": ((2, 2, 3), "uint8"), "reward": ((), "float32"), "done": ((), "bool")}


def _episodes(n: int, length: int = 40) -> list:
    return [{"obs": np.full((length, 2, 2, 3), 1 + e, np.uint8), "reward": np.zeros(length, np.float32),
             "done": np.arange(length) == length - 1, "level_seed": np.full(length, e), "cause": "timeout",
             "return": 0.0} for e in range(n)]


@pytest.mark.slow
def test_all_zero_reward_chunks_are_written_and_read_also_after_reopening(tmp_path):
    path = tmp_path / "zeros.zarr"
    with StoreWriter(path, {**SYNTHETIC, "level_seed": ((), "int64")}, {"env": "synthetic"}) as w:
        w.append(_episodes(2))
    with StoreWriter(path) as w:  # a reopened writer writes every chunk too
        w.append(_episodes(3)[2:])
    store = open_store(path)
    assert chunk_file(path / "reward", store._arrays["reward"], 0).is_file()
    assert all(store.episode(e)["reward"].sum() == 0 for e in range(3)) and verify(path)["problems"] == []


def test_a_store_without_checksums_may_lack_fill_value_chunks_and_still_reads(tmp_path, monkeypatch):
    """Arrays made without the checksum (older stores) skip all-fill chunks: those read as zeros, as written."""
    from zarr.codecs import BloscCodec

    monkeypatch.setattr(writer_mod, "codecs_for", lambda dtype: [BloscCodec(cname="zstd", clevel=5)])
    monkeypatch.setattr(writer_mod, "WRITE_ALL", {"write_empty_chunks": False})
    monkeypatch.setattr(writer_mod, "writing", contextlib.nullcontext)
    path = tmp_path / "old.zarr"
    with StoreWriter(path, {**SYNTHETIC, "level_seed": ((), "int64")}, {"env": "synthetic"}) as w:
        w.append(_episodes(2))
    store = open_store(path)
    assert not chunk_file(path / "reward", store._arrays["reward"], 0).exists()  # zarr left the zero chunk out
    assert store.episode(1)["reward"].sum() == 0 and verify(path)["problems"] == []
    chunk_file(path / "obs", store._arrays["obs"], 0).unlink()  # obs is checked even there
    with pytest.raises(StoreDamage, match="field 'obs' of episode 0"):
        open_store(path).episode(0)["obs"]
