import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from policylens.train import TrainConfig, gae, resolve, train

TINY = dict(preset="minigrid", env="minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0", arch="mlp", num_envs=4,
            num_steps=16, progress=False, threads=1)


def _weights(run):
    return load_file(str(run / "agent" / "weights.safetensors"))


def _rows(run):
    with open(run / "train.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("seconds", "fps")} for r in csv.DictReader(f)]


def test_gae_matches_hand_computation():
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [1.0], [0.2]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    nv = torch.tensor([3.0])
    g, lam = 0.9, 0.8
    # t=2: delta = 2 + .9*3 - .2 = 4.5;  t=1 (episode ends): delta = 0 - 1 = -1;  t=0: delta = 1 + .9*1 - .5 = 1.4
    a2 = 4.5
    a1 = -1.0
    a0 = 1.4 + g * lam * a1
    adv, ret = gae(r.numpy(), v.numpy(), d.numpy(), g, lam, last_value=nv.numpy())
    assert torch.allclose(torch.from_numpy(adv)[:, 0], torch.tensor([a0, a1, a2]))
    assert torch.allclose(torch.from_numpy(ret), torch.from_numpy(adv) + v)


def test_presets_carry_the_published_hyperparameters():
    easy = resolve(TrainConfig(preset="procgen-easy"))
    assert (easy.num_envs, easy.num_steps, easy.lr, easy.num_minibatches, easy.update_epochs) == (64, 256, 5e-4, 8, 3)
    assert (easy.gamma, easy.gae_lambda, easy.clip_coef, easy.ent_coef, easy.arch) == (0.999, 0.95, 0.2, 0.01, "impala")
    hard = resolve(TrainConfig(preset="procgen-hard-rec"))
    assert hard.recurrent and hard.num_envs == 256 and hard.num_envs * hard.num_steps // hard.num_minibatches == 2048
    assert resolve(TrainConfig(preset="minigrid", num_envs=3)).num_envs == 3  # explicit values win
    assert resolve(TrainConfig(preset="procgen-easy", bf16=False, anneal_lr=False)).bf16 is False
    assert resolve(TrainConfig(preset="procgen-easy")).bf16 is True
    with pytest.raises(ValueError, match="procgen-easy"):
        resolve(TrainConfig(preset="nope"))


def test_writes_a_loadable_checkpoint_csv_and_curve(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(out=str(run), total_frames=4 * 16 * 2, **TINY))
    from policylens.agents import load

    agent = load(run)
    cfg = json.loads((run / "agent" / "config.json").read_text())
    assert cfg["env"].startswith("minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0") and cfg["frames"] == 128
    out = agent(torch.zeros(2, 7, 7, 3, dtype=torch.uint8))
    assert out.logits.shape == (2, 3)
    assert [int(r["update"]) for r in _rows(run)] == [1, 2]
    assert (run / "curve.png").stat().st_size > 1000


def _start(run, extra, total):
    # each checkpoint is followed by a pause (the run's numbers do not change), so the signal lands mid-run even when
    # a busy machine starves the test process of CPU; Ctrl-C raises KeyboardInterrupt even where the test was started
    # in the background by a shell (which starts it with SIGINT ignored, inherited by the child)
    code = ("import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "import policylens.train.ppo as ppo; write = ppo.write_checkpoint; "
            "ppo.write_checkpoint = lambda *a, **k: (write(*a, **k), time.sleep(0.3)); "
            "from policylens.train import TrainConfig, train; "
            f"train(TrainConfig(out={str(run)!r}, total_frames={total}, checkpoint_every=1, **{extra!r}))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_update(run, update, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        meta = run / "agent" / "trainer.json"
        if meta.is_file():
            try:
                if json.loads(meta.read_text())["update"] >= update:
                    return
            except (ValueError, KeyError):
                pass
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    raise TimeoutError("training made no checkpoint")


@pytest.mark.parametrize("recurrent, sig", [(True, signal.SIGKILL), (False, signal.SIGINT), (False, signal.SIGTERM)])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, recurrent, sig):
    extra = {**TINY, "recurrent": recurrent, "bptt": 8}
    total = 4 * 16 * 8  # 8 updates
    whole = tmp_path / "whole"
    train(TrainConfig(out=str(whole), total_frames=total, checkpoint_every=1, **extra))

    cut = tmp_path / "cut"
    proc = _start(cut, extra, total)
    _wait_for_update(cut, 2, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    done = json.loads((cut / "agent" / "trainer.json").read_text())["update"]
    assert proc.returncode != 0 and done < 8, "the run finished before it was interrupted; nothing was tested"
    if sig != signal.SIGKILL:  # Ctrl-C and kill both stop it the same way: the update under way saved, said so
        assert "interrupted: checkpoint at update" in proc.stdout.read().decode()

    train(TrainConfig(out=str(cut), total_frames=total, checkpoint_every=1, resume=True, **extra))
    a, b = _weights(whole), _weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _rows(whole) == _rows(cut)


def test_resume_without_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="agent"):
        train(TrainConfig(out=str(tmp_path / "none"), total_frames=64, resume=True, **TINY))


def test_attention_entropy_penalty_sharpens_attention(tmp_path):
    kw = {**TINY, "env": "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?obs=rgb", "arch": "attention",
          "total_frames": 4 * 16 * 6}
    ents = {}
    for coef in (0.0, 1.0):
        run = tmp_path / f"c{coef}"
        train(TrainConfig(out=str(run), attention_entropy_coef=coef, **kw))
        ents[coef] = float(_rows(run)[-1]["attention_entropy"])
    assert ents[1.0] < ents[0.0] - 0.05, ents


def test_ppo_learns_an_easy_task(tmp_path):
    run = tmp_path / "empty"
    train(TrainConfig(out=str(run), preset="minigrid", env="minigrid:MiniGrid-Empty-5x5-v0", arch="mlp",
                      num_envs=8, num_steps=64, total_frames=8 * 64 * 40, progress=False, threads=1))
    rows = _rows(run)
    late = rows[-5:]
    assert min(float(r["success_rate"]) for r in late) >= 0.9, late
    early = sum(float(r["return_mean"]) for r in rows[:3]) / 3
    assert sum(float(r["return_mean"]) for r in late) / len(late) > early + 0.25, (rows[:3], late)


def test_init_from_with_value_warmup_holds_everything_but_the_value_head(tmp_path):
    first = tmp_path / "first"
    train(TrainConfig(out=str(first), total_frames=2 * 4 * 16, **TINY))
    start = _weights(first)
    warm = tmp_path / "warm"  # one update, inside the warm-up: only v.* moves
    train(TrainConfig(out=str(warm), total_frames=4 * 16, init_from=str(first), value_warmup=1, **TINY))
    after = _weights(warm)
    moved = {k for k in start if not torch.equal(start[k], after[k])}
    assert moved and moved <= {k for k in start if k.startswith("v.")}, moved
    on = tmp_path / "on"  # the update after the warm-up moves the policy too
    train(TrainConfig(out=str(on), total_frames=2 * 4 * 16, init_from=str(first), value_warmup=1, **TINY))
    assert any(not torch.equal(start[k], v) for k, v in _weights(on).items() if k.startswith("pi."))


def test_init_from_another_architecture_is_refused(tmp_path):
    first = tmp_path / "first"
    train(TrainConfig(out=str(first), total_frames=4 * 16, **TINY))
    with pytest.raises(ValueError, match="arch"):
        train(TrainConfig(out=str(tmp_path / "x"), total_frames=4 * 16, init_from=str(first),
                          **{**TINY, "arch": "cnn"}))
