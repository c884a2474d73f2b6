"""PPO: vectorised rollouts, GAE, reward normalisation, recurrent truncated BPTT, attention-entropy penalty.

One entry point, :func:`train`, driven by :class:`~policylens.train.config.TrainConfig`. It writes
``OUT/agent/`` (a loadable, resumable checkpoint), ``OUT/train.csv`` (one row per update) and
``OUT/curve.png``. ``resume=True`` continues from the last checkpoint and, with the same config, reaches
exactly the weights an uninterrupted run reaches; without it (or ``overwrite``) an OUT holding them is refused.
"""
from __future__ import annotations

import csv
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import envs
from ..agents import AgentConfig, build
from ..agents.policy import select_actions
from ..gae import gae
from ..runs import prepare_out
from .config import TrainConfig, parse_options, resolve, validate
from .init import init_weights
from .state import load_optimizer, optimizer_tensors, read_checkpoint, truncate_csv, write_checkpoint
from .update import Rollout, TrainingStopped, autocast, ppo_update

RUN_FILES = ("agent", "train.csv", "curve.png")  # what a training run writes in OUT (refused if there, unless told)
CSV_FIELDS = ["update", "frames", "seconds", "fps", "episodes", "return_mean", "length_mean", "success_rate",
              "return_100", "success_100", "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "attention_entropy", "lr"]


class RewardNormalizer:
    """Divide rewards by the running std of each env's discounted return; clip to +-``clip``."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.ret = np.zeros(num_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        b_mean, b_var, b = self.ret.mean(), self.ret.var(), len(self.ret)
        delta, total = b_mean - self.mean, self.count + b
        self.mean += delta * b / total
        self.var = (self.var * self.count + b_var * b + delta**2 * self.count * b / total) / total
        self.count = total
        self.ret[done] = 0.0
        return np.clip(reward / np.sqrt(self.var + self.eps), -self.clip, self.clip)

    def state(self) -> dict:
        return {"ret": self.ret.tolist(), "mean": self.mean, "var": self.var, "count": self.count}

    def load(self, s: dict) -> None:
        self.ret = np.asarray(s["ret"], dtype=np.float64)
        self.mean, self.var, self.count = s["mean"], s["var"], s["count"]


class _AttentionProbe:
    """Collects the output of a layer named ``attention`` during forward passes (if the agent has one)."""

    def __init__(self, agent: nn.Module):
        self.maps: torch.Tensor | None = None
        layer = dict(agent.named_modules()).get("attention")
        self.handle = layer.register_forward_hook(self._hook) if layer is not None else None

    def _hook(self, module, inputs, output):
        self.maps = output

    def close(self):
        if self.handle is not None:
            self.handle.remove()


def train(cfg: TrainConfig) -> Path:
    cfg = resolve(cfg)
    validate(cfg)
    out = prepare_out(cfg.out, what="run", resume=cfg.resume, overwrite=cfg.overwrite, parts=RUN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    N, T = cfg.num_envs, cfg.num_steps
    num_updates = max(1, cfg.total_frames // (N * T))

    env = envs.make(cfg.env, num_envs=N, seed=cfg.seed, workers=cfg.env_workers)
    agent_cfg = AgentConfig(arch=cfg.arch, obs_shape=tuple(env.observation_space.shape),
                            num_actions=int(env.action_space.n), obs_scale=env.obs_scale, recurrent=cfg.recurrent,
                            options=parse_options(cfg.arch_options))
    torch.manual_seed(cfg.seed)
    agent = init_weights(build(agent_cfg), cfg.init).to(device)
    if cfg.init_from and not cfg.resume:
        _init_from(agent, agent_cfg, cfg.init_from)
    if cfg.channels_last:
        # torch's type stubs leave out the memory_format keyword that Module.to takes
        agent = agent.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    gen = torch.Generator().manual_seed(cfg.seed)
    norm = RewardNormalizer(N, cfg.gamma)
    extra = {"env": str(env.spec), "action_names": env.action_names, "train": cfg.to_dict()}

    # ---- start or resume ---------------------------------------------------------------------------
    obs = env.reset(cfg.seed)
    state = agent.initial_state(N)
    first = torch.ones(N, dtype=torch.bool)
    start_update, frames = 0, 0
    recent: deque[list] = deque(maxlen=100)  # [return, length, success] of the last finished episodes
    if cfg.resume:
        weights, tensors, meta = read_checkpoint(out / "agent")
        agent.load_state_dict(weights)
        load_optimizer(optimizer, tensors, meta["param_groups"])
        gen.set_state(tensors["rng.generator"])
        norm.load(meta["reward_norm"])
        obs = env.restore(meta["env"])
        state = tensors["agent.state"].to(device) if "agent.state" in tensors else None
        first = tensors["agent.first"].bool()
        start_update, frames = meta["update"], meta["frames"]
        recent.extend(meta["recent"])
        truncate_csv(out / "train.csv", start_update)
        print(f"resuming {out} from update {start_update} of {num_updates}, frame {frames:,}", flush=True)

    def capture(update: int) -> dict:
        """Everything at an update boundary, copied, so it can be written at any later moment."""
        tensors, groups = optimizer_tensors(optimizer)
        tensors["rng.generator"] = gen.get_state().clone()
        tensors["agent.first"] = first.to(torch.uint8).clone()
        if state is not None:
            tensors["agent.state"] = state.detach().cpu().clone()
        meta = {"update": update, "frames": frames, "param_groups": groups, "reward_norm": norm.state(),
                "env": env.snapshot(), "recent": list(recent), "seconds": elapsed()}
        weights = {k: v.detach().cpu().clone() for k, v in agent.state_dict().items()}
        return {"weights": weights, "tensors": tensors, "meta": meta}

    def save(snap: dict) -> None:
        write_checkpoint(out / "agent", snap["weights"], agent_cfg.to_dict(),
                         {**extra, "frames": snap["meta"]["frames"]}, snap["tensors"], snap["meta"])

    buf = Rollout(T, N, tuple(obs.shape[1:]), state.shape[-1] if state is not None else None,
                  obs_dtype=torch.from_numpy(np.asarray(obs)).dtype)  # uint8 frames | float vectors
    probe = _AttentionProbe(agent)
    csv_file = open(out / "train.csv", "a", newline="")
    writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
    if csv_file.tell() == 0:
        writer.writeheader()
    bar = tqdm(total=num_updates * N * T, initial=frames, unit="frame", unit_scale=True, disable=not cfg.progress,
               desc=f"train {cfg.arch}{'-rec' if cfg.recurrent else ''}", dynamic_ncols=True)
    snap: dict | None = None
    t_start, frames_at_start = time.time(), frames
    seconds_before = meta.get("seconds", 0.0) if cfg.resume else 0.0  # train.csv's clock goes on across resumes

    def elapsed() -> float:
        return seconds_before + time.time() - t_start

    restore_sigterm = _sigterm_as_interrupt()
    try:
        for update in range(start_update, num_updates):
            snap = capture(update)
            if update > start_update and update % cfg.checkpoint_every == 0:
                save(snap)
            if cfg.anneal_lr:
                for g in optimizer.param_groups:
                    g["lr"] = cfg.lr * (1.0 - update / num_updates)
            t0 = time.time()
            # ---- rollout -------------------------------------------------------------------------
            ended = []
            for t in range(T):
                obs_t = buf.obs[t]
                obs_t.copy_(torch.from_numpy(obs))
                buf.first[t] = first
                if state is not None and buf.state is not None:
                    buf.state[t] = state.detach()
                with torch.no_grad(), autocast(cfg):
                    o = agent(obs_t.to(device), state, first.to(device))
                logits = o.logits.float().cpu()
                if not torch.isfinite(logits).all():
                    raise TrainingStopped(f"update {update + 1}: the policy's logits are not finite (the weights "
                                          "diverged); try a lower --lr or a smaller --max-grad-norm")
                action = select_actions(logits, "sample", generator=gen)  # (N,)
                buf.act[t] = action
                buf.logp[t] = torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)
                buf.val[t] = o.value.float()
                state = o.state.float() if o.state is not None else None
                obs, reward, done, info = env.step(action.numpy())
                buf.rew[t] = torch.from_numpy(np.asarray(norm(reward, done) if cfg.norm_reward else reward))
                buf.done[t] = torch.from_numpy(done)
                first = torch.from_numpy(done)
                ended += [i["episode"] for i in info if "episode" in i]
            frames += N * T
            with torch.no_grad(), autocast(cfg):
                next_value = agent(torch.from_numpy(obs).to(device), state, first.to(device)).value.float().cpu()
            adv, ret = gae(buf.rew.numpy(), buf.val.numpy(), buf.done.numpy(), cfg.gamma, cfg.gae_lambda,
                           last_value=next_value.numpy())  # (T, N) each
            buf.adv.copy_(torch.from_numpy(adv))
            buf.ret.copy_(torch.from_numpy(ret))
            # ---- update --------------------------------------------------------------------------
            stats = ppo_update(cfg, agent, optimizer, probe, gen, device, buf, update,
                               value_only=update < cfg.value_warmup)
            recent.extend([e["return"], e["length"], e["success"]] for e in ended)
            row = _row(update + 1, frames, elapsed(), N * T / (time.time() - t0), ended, stats,
                       optimizer.param_groups[0]["lr"])
            r = np.asarray(recent, dtype=float).reshape(-1, 3)  # (<= 100, [return, length, success])
            if len(r):
                row.update(return_100=r[:, 0].mean(), success_100=r[:, 2].mean())
            writer.writerow(row)
            csv_file.flush()
            bar.update(N * T)
            if len(r):
                bar.set_postfix(ret=f"{r[:, 0].mean():.2f}", success=f"{r[:, 2].mean():.2f}",
                                fps=f"{(frames - frames_at_start) / (time.time() - t_start):.0f}")
            if cfg.stop_success and len(r) == recent.maxlen and r[:, 2].mean() >= cfg.stop_success:
                bar.write(f"stopping at update {update + 1}, frame {frames:,}: the last {len(r)} episodes "
                          f"succeeded {r[:, 2].mean():.0%} of the time (--stop-success {cfg.stop_success})")
                break
        else:
            update = num_updates - 1
        snap = capture(update + 1)
        save(snap)
    except KeyboardInterrupt:
        if snap is not None:
            save(snap)
        bar.write(f"interrupted: checkpoint at update {snap['meta']['update'] if snap else 0} saved in {out / 'agent'}; "
                  "rerun with --resume to continue")
        raise
    except TrainingStopped as e:
        assert snap is not None  # captured at the start of the update that stopped
        save(snap)  # the weights before the failing update
        raise TrainingStopped(f"training stopped at {e}; the checkpoint of update {snap['meta']['update']} "
                              f"(before it) is saved in {out / 'agent'}") from None
    finally:
        restore_sigterm()
        probe.close()
        csv_file.close()
        bar.close()
        env.close()
    from .plot import plot_curve

    plot_curve(out / "train.csv", out / "curve.png", title=f"{cfg.arch} on {cfg.env}")
    return out


def _sigterm_as_interrupt():
    """Make SIGTERM (``kill PID``, a scheduler's stop) end training as Ctrl-C does, saving the checkpoint of the
    update under way: a shell starts background runs with SIGINT ignored, so Ctrl-C cannot reach them. Returns
    the function that puts the previous handler back (nothing to do off the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _init_from(agent: nn.Module, agent_cfg: AgentConfig, run: str) -> None:
    from ..agents import read_config, resolve_run
    from ..agents.checkpoint import load_weights

    folder = resolve_run(run)
    theirs = read_config(folder)["agent"]
    mine = agent_cfg.to_dict()
    differ = {k: (theirs.get(k), mine[k]) for k in ("arch", "obs_shape", "num_actions", "recurrent", "hidden")
              if theirs.get(k) != mine[k]}
    if differ:
        raise ValueError(f"init_from {run}: its agent differs from the one being trained in {differ} (theirs, ours)")
    load_weights(agent, folder / "weights.safetensors")


def _row(update, frames, seconds, fps, ended, stats, lr) -> dict:
    row = {"update": update, "frames": frames, "seconds": round(seconds, 2), "fps": round(fps, 1),
           "episodes": len(ended), "lr": lr}
    if ended:
        row["return_mean"] = float(np.mean([e["return"] for e in ended]))
        row["length_mean"] = float(np.mean([e["length"] for e in ended]))
        row["success_rate"] = float(np.mean([e["success"] for e in ended]))
    for k, v in stats.items():
        row[k] = "" if v != v else v  # NaN -> empty
    return row


