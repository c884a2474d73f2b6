import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
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
    from policylens.train.config import bf16_is_fast

    # bf16 only where the hardware has it (emulated bf16 is ~9x slower than float32 on an AVX2 CPU)
    assert resolve(TrainConfig(preset="procgen-easy")).bf16 is bf16_is_fast("cpu")
    assert resolve(TrainConfig(preset="procgen-easy", bf16=True)).bf16 is True
    with pytest.raises(ValueError, match="procgen-easy"):
        resolve(TrainConfig(preset="nope"))


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_attention_entropy_penalty_sharpens_attention(tmp_path):
    kw = {**TINY, "env": "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?obs=rgb", "arch": "attention",
          "total_frames": 4 * 16 * 6}
    ents = {}
    for coef in (0.0, 1.0):
        run = tmp_path / f"c{coef}"
        train(TrainConfig(out=str(run), attention_entropy_coef=coef, **kw))
        ents[coef] = float(_rows(run)[-1]["attention_entropy"])
    assert ents[1.0] < ents[0.0] - 0.05, ents


@pytest.mark.slow
def test_ppo_learns_an_easy_task(tmp_path):
    run = tmp_path / "empty"
    train(TrainConfig(out=str(run), preset="minigrid", env="minigrid:MiniGrid-Empty-5x5-v0", arch="mlp",
                      num_envs=8, num_steps=64, total_frames=8 * 64 * 40, progress=False, threads=1))
    rows = _rows(run)
    late = rows[-5:]
    assert min(float(r["success_rate"]) for r in late) >= 0.9, late
    early = sum(float(r["return_mean"]) for r in rows[:3]) / 3
    assert sum(float(r["return_mean"]) for r in late) / len(late) > early + 0.25, (rows[:3], late)


@pytest.mark.slow
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


@pytest.mark.slow
def test_init_from_another_architecture_is_refused(tmp_path):
    first = tmp_path / "first"
    train(TrainConfig(out=str(first), total_frames=4 * 16, **TINY))
    with pytest.raises(ValueError, match="arch"):
        train(TrainConfig(out=str(tmp_path / "x"), total_frames=4 * 16, init_from=str(first),
                          **{**TINY, "arch": "cnn"}))


# ---- bad input, NaN losses, resume message ---------------------------------------------------------------------
REC = {**TINY, "recurrent": True}


@pytest.mark.parametrize("bptt, message", [(32, "--bptt 32 is longer than --num-steps 16"),
                                           (5, "--bptt 5 does not divide --num-steps 16: the last 1 steps")])
def test_a_bptt_that_would_train_nothing_or_drop_steps_is_refused(tmp_path, bptt, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(out=str(tmp_path / "run"), total_frames=64, bptt=bptt, **REC))
    assert not (tmp_path / "run" / "train.csv").exists()  # refused before anything was written


def test_the_cli_refuses_a_bad_bptt_by_name(tmp_path, capsys):
    from policylens.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--env", TINY["env"], "--arch", "mlp", "--recurrent", "true", "--num-steps", "16",
              "--bptt", "32", "--out", str(tmp_path / "x"), "--progress", "false"])
    assert e.value.code == 2 and "policylens train: error: --bptt 32 is longer" in capsys.readouterr().err


def test_too_many_minibatches_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--num-minibatches 100 is more than the 64 steps"):
        train(TrainConfig(out=str(tmp_path / "run"), total_frames=64, num_minibatches=100, **TINY))


def test_a_nan_loss_stops_training_and_keeps_the_weights_before_it(tmp_path, capsys):
    from policylens.train.cli import main
    from policylens.train.update import TrainingStopped

    run = tmp_path / "run"
    with pytest.raises(TrainingStopped, match="update 2: the (loss|policy.s logits|gradient) (is|are) not finite"):  # lr 1e30: weights blow up
        train(TrainConfig(out=str(run), total_frames=4 * 16 * 4, lr=1e30, num_minibatches=1, update_epochs=1,
                          **TINY))
    meta = json.loads((run / "agent" / "trainer.json").read_text())
    assert meta["update"] == 1 and all(torch.isfinite(w).all() for w in _weights(run).values())
    with pytest.raises(SystemExit) as e:  # the command says so and exits non-zero, no traceback
        main(["--env", TINY["env"], "--arch", "mlp", "--num-envs", "4", "--num-steps", "16", "--total-frames", "256",
              "--lr", "1e30", "--num-minibatches", "1", "--update-epochs", "1", "--out", str(tmp_path / "cli"),
              "--progress", "false"])
    assert e.value.code == 1 and "training stopped at update 2: the " in capsys.readouterr().err


@pytest.mark.slow
def test_a_resumed_run_says_where_it_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(out=str(run), total_frames=4 * 16 * 2, **TINY))
    capsys.readouterr()
    train(TrainConfig(out=str(run), total_frames=4 * 16 * 3, resume=True, **TINY))
    assert f"resuming {run} from update 2 of 3, frame 128" in capsys.readouterr().out


# ---- initialisation, architecture options, early stop ------------------------------------------------------------
def test_orthogonal_init_is_cleanrls():
    from policylens.agents import AgentConfig, build
    from policylens.train.init import init_weights

    torch.manual_seed(0)
    agent = init_weights(build(AgentConfig(arch="cnn", obs_shape=(7, 7, 3), num_actions=3, recurrent=True)),
                         "orthogonal")
    w = agent.fc[0].weight  # (256, 3136): rows orthonormal times sqrt(2)
    assert torch.allclose(w @ w.T, 2 * torch.eye(256), atol=1e-4)
    assert torch.allclose(agent.pi.weight @ agent.pi.weight.T, 1e-4 * torch.eye(3), atol=1e-8)
    assert torch.allclose(agent.v.weight.norm(), torch.tensor(1.0))
    assert all(float(b.detach().abs().max()) == 0 for n, b in agent.named_parameters() if n.endswith("bias") or "bias_" in n)
    out = agent(torch.randint(0, 10, (64, 7, 7, 3), dtype=torch.uint8))
    assert float(torch.softmax(out.logits.detach(), -1).max()) < 0.4  # near-uniform first actions over 3


@pytest.mark.slow
def test_arch_options_reach_the_agent_and_bad_ones_are_refused(tmp_path):
    from policylens.agents import load
    from policylens.train.config import parse_options

    run = tmp_path / "run"
    train(TrainConfig(out=str(run), total_frames=64, arch_options="hidden_sizes=[64,64],activation=tanh", **TINY))
    agent = load(run)
    assert agent.fc1[0].out_features == 64 and isinstance(agent.fc1[1], torch.nn.Tanh)
    assert parse_options("a=1, b=0.5,c=x,d=[64, 32],e=[]") == {"a": 1, "b": 0.5, "c": "x", "d": [64, 32], "e": []}
    with pytest.raises(ValueError, match="key=value"):
        parse_options("hidden_sizes")
    with pytest.raises(ValueError, match="a list"):
        parse_options("hidden_sizes=[64,64")
    with pytest.raises(ValueError, match="activation 'gelu'"):
        train(TrainConfig(out=str(tmp_path / "bad"), total_frames=64, arch_options="activation=gelu", **TINY))


@pytest.mark.slow
def test_stop_success_ends_training_once_the_last_100_episodes_succeed(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(out=str(run), env="minigrid:MiniGrid-Empty-5x5-v0", arch="mlp", num_envs=8, num_steps=64,
                      total_frames=8 * 64 * 60, stop_success=0.9, progress=False, threads=1))
    rows = _rows(run)
    assert len(rows) < 60 and float(rows[-1]["success_100"]) >= 0.9
    seen = np.cumsum([int(r["episodes"]) for r in rows])  # the window holds 100 episodes once 100 have ended
    assert all(float(r["success_100"]) < 0.9 for r, n in zip(rows[:-1], seen) if n >= 100)
    assert json.loads((run / "agent" / "trainer.json").read_text())["update"] == len(rows)


# ---- Atari: CleanRL ppo_atari's preset, the Nature CNN's update --------------------------------------------------
def test_the_atari_preset_is_cleanrl_ppo_atari():
    a = resolve(TrainConfig(preset="atari"))
    assert a.env.startswith("atari:") and a.arch == "nature" and a.recurrent is False
    assert (a.num_envs, a.num_steps, a.lr, a.anneal_lr, a.num_minibatches, a.update_epochs) == (8, 128, 2.5e-4, True, 4, 4)
    assert (a.gamma, a.gae_lambda, a.clip_coef, a.ent_coef, a.vf_coef, a.max_grad_norm) == (0.99, 0.95, 0.1, 0.01, 0.5, 0.5)
    assert (a.norm_adv, a.clip_vloss, a.norm_reward, a.init) == (True, True, False, "orthogonal")
    assert a.total_frames == 10_000_000
    # CleanRL trains with EpisodicLifeEnv and ClipRewardEnv (NoFrameskip-v4: no sticky actions): the preset's env
    # parses to those options and runs as an 84x84x4 env
    from policylens import envs
    from policylens.envs.atari import options
    from policylens.envs.spec import parse_spec

    opts = options(parse_spec(a.env))
    assert (opts["episodic_life"], opts["clip_reward"], opts["sticky"], opts["noop_max"]) == (True, True, 0.0, 30)
    assert (opts["frame_skip"], opts["frame_stack"], opts["size"], opts["fire_reset"]) == (4, 4, 84, True)
    env = envs.make(a.env, num_envs=1, seed=0)
    assert env.reset(0).shape == (1, 84, 84, 4)
    env.close()


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.slow
def test_one_ppo_update_of_a_nature_agent_on_84x84x4_frames(bf16):
    from policylens.agents import AgentConfig, build
    from policylens.train.init import init_weights
    from policylens.train.ppo import _AttentionProbe
    from policylens.train.update import Rollout, autocast, ppo_update

    T, N = 8, 4
    cfg = resolve(TrainConfig(preset="atari", bf16=bf16, num_envs=N, num_steps=T, num_minibatches=1, update_epochs=1))
    assert cfg.channels_last is bf16
    torch.manual_seed(0)
    agent = init_weights(build(AgentConfig(arch="nature", obs_shape=(84, 84, 4), num_actions=4)), "orthogonal")
    if cfg.channels_last:
        agent = agent.to(memory_format=torch.channels_last)
    buf = Rollout(T, N, (84, 84, 4), None)
    buf.obs.copy_(torch.randint(0, 256, buf.obs.shape, dtype=torch.uint8))
    with torch.no_grad(), autocast(cfg):
        o = agent(buf.obs.reshape(T * N, 84, 84, 4))
    logp = torch.log_softmax(o.logits.float(), -1)  # (T*N, 4)
    buf.act.copy_(torch.randint(0, 4, (T, N)))
    buf.logp.copy_(logp.gather(-1, buf.act.reshape(-1, 1)).reshape(T, N))
    buf.val.copy_(o.value.float().reshape(T, N))
    buf.adv.copy_(torch.randn(T, N))
    buf.ret.copy_(buf.adv + buf.val)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    stats = ppo_update(cfg, agent, optimizer, _AttentionProbe(agent), torch.Generator().manual_seed(0), "cpu", buf, 0)
    # one minibatch of the whole rollout, taken by the weights that acted: ratio 1, nothing clipped, no KL
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6) and stats["clipfrac"] == 0.0
    assert all(v == v and abs(v) < 1e3 for k, v in stats.items() if k != "attention_entropy")
    with torch.no_grad(), autocast(cfg):
        after = torch.log_softmax(agent(buf.obs.reshape(T * N, 84, 84, 4)).logits.float(), -1)
    moved = after.gather(-1, buf.act.reshape(-1, 1)).squeeze(-1) - buf.logp.reshape(-1)  # (T*N,)
    adv = (buf.adv.reshape(-1) - buf.adv.mean()) / buf.adv.std()
    assert float((adv * moved).sum()) > 0  # actions with positive advantage became likelier
