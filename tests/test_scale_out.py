"""record, attribute and explore on workers: local processes and a local Ray give what one process gives here --
the same store field for field, the same attributions, the same explorer files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.attribution.cli import AttributeConfig, run_config
from policylens.attribution.results import load_attributions
from policylens.cli import main as pl
from policylens.rollouts import RecordConfig, record
from policylens.rollouts.verify import verify

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1, "recurrent": True, "hidden": 16}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A recurrent agent (so agent_state is stored and attributed with) whose value and logits move a lot."""
    root = tmp_path_factory.mktemp("scale")
    torch.manual_seed(0)
    agent = agents.build(AGENT)
    with torch.no_grad():
        agent.v.weight.mul_(30.0)
        agent.pi.weight.mul_(10.0)
    agents.save_agent(agent, AGENT, root / "run" / "agent", extra={"env": ENV})
    return root / "run"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'policylens[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# -- record ------------------------------------------------------------------------------------------------
PLAN = dict(episodes=6, batch=3, max_steps=6, save_state=True, start_level=40, progress=False)


@pytest.fixture(scope="module")
def here(run):
    """Recorded by episode plan in this process: the reference."""
    return record(RecordConfig(run=str(run), backend="process", out=str(run / "here.zarr"), **PLAN))


def _fields(store) -> dict:
    data = {f: store.read(f, 0, store.num_frames) for f in store.fields}
    if "env_state" in data:
        data["env_state"] = list(data["env_state"])  # bytes per frame
    return data


def assert_same_store(a, b):
    """Every frame field, the episode index and the attributes are equal."""
    a, b = rollouts.open(a), rollouts.open(b)
    assert len(a) == len(b) and a.num_frames == b.num_frames and a.fields == b.fields
    fa, fb = _fields(a), _fields(b)
    for name in a.fields:
        if name == "env_state":
            assert fa[name] == fb[name]
        else:
            np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)
    for name in a.index:
        np.testing.assert_array_equal(a.index[name], b.index[name], err_msg=f"episodes/{name}")
    assert a.metadata == b.metadata


@pytest.mark.slow
def test_a_plan_store_holds_what_the_agent_saw_and_did(run, here):
    """Independently of how it was recorded: episode k replays on level 40 + k from its own seed, the stored
    logits and values are the agent's on the stored obs and input states, saved states restore the frames."""
    from policylens.envs import make, parse_spec
    from policylens.evaluate.run import episode_seed

    store, agent = rollouts.open(here), agents.load(run)
    for k, ep in enumerate(store):
        assert ep.info["level_seed"] == 40 + k and (ep["level_seed"] == 40 + k).all()
        assert ep["done"][-1] and not ep["done"][:-1].any() and ep.length <= 6
        env = make(parse_spec(ENV).replace(start_level=40 + k, num_levels=1), num_envs=1, seed=episode_seed(0, k))
        obs = env.reset(episode_seed(0, k))
        for t in range(ep.length):
            np.testing.assert_array_equal(ep["obs"][t], obs[0])
            env.set_state([ep["env_state"][t]])
            np.testing.assert_array_equal(env.observe()[0], obs[0])
            obs, reward, done, info = env.step(ep["action"][t:t + 1])
            assert reward[0] == ep["reward"][t]
        assert ep.info["cause"] == (info[0]["episode"]["cause"] if done[0] else "max_steps")
        with torch.no_grad():
            out = agent(torch.as_tensor(ep["obs"]), torch.as_tensor(ep["agent_state"]))
        np.testing.assert_allclose(ep["logits"], out.logits.numpy(), atol=1e-5)
        np.testing.assert_allclose(ep["value"], out.value.numpy(), atol=1e-4, rtol=1e-5)


@pytest.mark.slow
def test_record_on_ray_workers_equals_recording_here(run, here, local_ray):
    on_ray = record(RecordConfig(run=str(run), backend="ray", workers=2, out=str(run / "ray.zarr"), **PLAN))
    assert_same_store(here, on_ray)
    store = rollouts.open(on_ray)
    assert list(store.index["level_seed"]) == list(range(40, 46))  # episode k on level start_level + k
    assert "max_steps" in set(store.index["cause"]) and {"agent_state", "entities", "env_state"} <= set(store.fields)
    assert verify(on_ray)["problems"] == []  # every chunk written and checksummed
    recording = store.metadata["recording"]
    assert recording["order"] == "episode plan" and recording["batch"] == 3 and "num_envs" not in recording


@pytest.mark.slow
def test_record_resumed_on_other_workers_equals_one_go(run, here, local_ray, capsys):
    out = run / "resumed.zarr"
    args = ["record", str(run), "--out", str(out), "--batch", "3", "--max-steps", "6", "--save-state", "true",
            "--start-level", "40", "--progress", "false"]
    pl([*args, "--episodes", "2", "--backend", "process", "--workers", "2"])  # an interrupted recording
    assert "wrote" in capsys.readouterr().out and len(rollouts.open(out)) == 2
    first_two = {k: v[:2] for k, v in rollouts.open(out).index.items()}
    pl([*args, "--episodes", "6", "--backend", "ray", "--workers", "2", "--resume"])
    assert_same_store(here, out)
    for name, values in first_two.items():
        np.testing.assert_array_equal(rollouts.open(out).index[name][:2], values)


def _children(pid: int) -> list:
    """Processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.slow
def test_kill_9_during_a_recording_on_workers_then_resume_equals_one_go(run, tmp_path):
    """The driver killed while two worker processes record: the episodes committed stay, the workers go, and
    --resume (here, in this process) ends with the store one uninterrupted recording writes."""
    n, out = 40, tmp_path / "k.zarr"
    plan = dict(episodes=n, batch=2, max_steps=4, start_level=7, progress=False)
    args = [str(run), "--out", str(out), "--episodes", str(n), "--batch", "2", "--max-steps", "4", "--start-level",
            "7", "--flush-seconds", "0", "--backend", "process", "--workers", "2", "--progress", "false"]
    env = {**os.environ, "PYTHONPATH": str(Path(rollouts.__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "policylens.rollouts", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, workers = time.monotonic() + 120, []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "episodes" / "zarr.json").is_file() and len(rollouts.open(out)) >= 4:
                workers = [p for p in _children(proc.pid) if p not in _children(1)]
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"recording ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    k = len(rollouts.open(out))
    assert 4 <= k < n and len(workers) >= 2
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in workers):
        assert time.monotonic() < deadline, "worker processes outlived their driver"
        time.sleep(0.2)
    record(RecordConfig(run=str(run), out=str(out), resume=True, backend="process", **plan))
    one_go = record(RecordConfig(run=str(run), out=str(tmp_path / "one.zarr"), backend="process", **plan))
    assert_same_store(one_go, out)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


@pytest.mark.slow
def test_record_refuses_mixed_orders_and_bad_backends(run, tmp_path, monkeypatch, capsys):
    vector = record(RecordConfig(run=str(run), episodes=2, num_envs=2, out=str(tmp_path / "v.zarr"), progress=False))
    with pytest.raises(ValueError, match="other settings.*num_envs.*order"):
        record(RecordConfig(run=str(run), episodes=3, backend="ray", workers=2, out=str(vector), resume=True,
                            progress=False))
    with pytest.raises(ValueError, match="--workers 2 records with --backend process or ray"):
        record(RecordConfig(run=str(run), episodes=2, workers=2, out=str(tmp_path / "w.zarr")))
    with pytest.raises(ValueError, match="unknown backend 'dask'"):
        record(RecordConfig(run=str(run), episodes=2, backend="dask", out=str(tmp_path / "d.zarr")))
    monkeypatch.setitem(sys.modules, "ray", None)  # as without Ray installed
    with pytest.raises(SystemExit) as exit_info:
        pl(["record", str(run), "--episodes", "2", "--backend", "ray", "--workers", "2", "--out",
            str(tmp_path / "r.zarr"), "--progress", "false"])
    assert exit_info.value.code == 2
    assert "policylens record: error: backend='ray' needs Ray: pip install 'policylens[ray]'" in capsys.readouterr().err


# -- attribute ---------------------------------------------------------------------------------------------
def _attribute(run, store, out, **kw):
    cfg = AttributeConfig(run=str(run), store=str(store), layer="conv2", out=str(out), batch=8, steps=8,
                          progress=False, **kw)
    return load_attributions(run_config(cfg))


def _same_attributions(a, b, rtol=1e-5, atol=1e-6):
    (arrays_a, meta_a), (arrays_b, meta_b) = a, b
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        np.testing.assert_allclose(arrays_b[name], arrays_a[name], rtol=rtol, atol=atol, err_msg=name)
    drop = lambda m: {k: v for k, v in m.items() if k not in ("execution", "delta", "config")}  # noqa: E731
    assert drop(meta_a) == drop(meta_b)
    assert {**meta_a["config"], "out": None} == {**meta_b["config"], "out": None}
    if "delta" in meta_a:  # integrated gradients: the completeness summary agrees too
        assert meta_b["delta"] == pytest.approx(meta_a["delta"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("method", ["ig", "smoothgrad"])
@pytest.mark.slow
def test_attribute_on_ray_equals_attributing_here(run, here, local_ray, tmp_path, method):
    ref = _attribute(run, here, tmp_path / "here.zarr", method=method, samples=4)
    got = _attribute(run, here, tmp_path / "ray.zarr", method=method, samples=4, backend="ray", workers=2)
    _same_attributions(ref, got)
    assert got[1]["execution"] == {"workers": 2, "backend": "ray", "ray_address": None}
    frames = rollouts.open(here).num_frames
    assert len(got[0]["attribution"]) == frames > 8  # several batches, in store order
    np.testing.assert_array_equal(got[0]["frame"], np.arange(frames))
    if method == "ig":  # completeness holds on the workers' results: sum of attribution = F(x) - F(0) - delta
        assert got[1]["delta"]["max_rel"] < 0.2


@pytest.mark.slow  # fast: attribute's split over workers on Ray above, two worker processes from the command line
# in test_record_resumed_on_other_workers_equals_one_go
def test_attribute_on_two_processes_equals_attributing_here_from_the_command(run, here, tmp_path, capsys):
    ref = _attribute(run, here, tmp_path / "here.npz")
    pl(["attribute", str(run), "--store", str(here), "--layer", "conv2", "--batch", "8", "--steps", "8",
        "--out", str(tmp_path / "two.npz"), "--backend", "process", "--workers", "2", "--progress", "false"])
    assert "wrote" in capsys.readouterr().out
    _same_attributions(ref, load_attributions(tmp_path / "two.npz"))


# -- explore -----------------------------------------------------------------------------------------------
EXPLORE = ["--store", None, "--episodes", "0-3", "--steps", "8", "--k", "3", "--ig-steps", "8", "--nmf-frames",
           "24", "--bookmarks", "2", "--bookmark-separation", "1", "--map-size", "4", "--progress", "false"]


def _explore(run, store, out, *extra) -> dict:
    args = [a if a is not None else str(store) for a in EXPLORE]
    pl(["explore", str(run), *args, "--out", str(out), *extra])
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ray", "process"])
def test_explore_on_workers_writes_the_same_files(run, here, local_ray, tmp_path, backend, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same kernels, so the same bits
    try:
        ref = _explore(run, here, tmp_path / "here")
    finally:
        torch.set_num_threads(threads)
    got = _explore(run, here, tmp_path / backend, "--backend", backend, "--workers", "2")
    assert "index.html" in capsys.readouterr().out
    assert got.keys() == ref.keys() and any(name.startswith("data/t3-l0") for name in got)
    different = [name for name in ref if got[name] != ref[name]]
    assert different == []  # byte for byte: maps, saliency trees, legend, manifest (the key holds no backend)


# -- the benchmark -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_scale_out_benchmark_quick(local_ray, tmp_path, monkeypatch):
    import json

    import benchmarks.common as common
    from benchmarks import scale_out

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    scale_out.main(["--quick", "--workers", "2"])
    filed = json.loads((tmp_path / "scale_out_quick.json").read_text())
    rows = [(r["backend"], r["workers"]) for r in filed["record"]]
    assert rows == [("vector", 1), ("process", 1), ("process", 2), ("ray", 2)]
    assert len({r["frames"] for r in filed["record"][1:]}) == 1  # the same store (checked field for field there)
    assert [r["ratio_to_one_process"] for r in filed["record"] if r["backend"] == "process" and r["workers"] == 1] == [1.0]
    assert [(r["backend"], r["workers"]) for r in filed["attribute"]][-2:] == [("process", 2), ("ray", 2)]
    assert all(r["frames_per_s"] > 0 for r in filed["record"] + filed["attribute"])
    assert set(filed["startup_s"]) == {"process-2", "ray-2"}
