"""PPO: vectorised rollouts, GAE, reward normalisation, recurrent truncated BPTT, attention-entropy penalty.

One entry point, :func:`train`, driven by :class:`~policylens.train.config.TrainConfig`. It writes
``OUT/agent/`` (a loadable, resumable checkpoint), ``OUT/train.csv`` (one row per update) and
``OUT/curve.png``. ``resume=True`` continues from the last checkpoint and, with the same config, reaches
exactly the weights an uninterrupted run reaches; without it (or ``overwrite``) an OUT holding them is refused.
"""
from __future__ import annotations

import contextlib
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
from ..agents.nets import attention_entropy
from ..agents.policy import select_actions
from ..gae import gae
from ..runs import prepare_out
from .config import TrainConfig, resolve
from .state import load_optimizer, optimizer_tensors, read_checkpoint, truncate_csv, write_checkpoint

RUN_FILES = ("agent", "train.csv", "curve.png")  # what a training run writes in OUT (refused if there, unless told)
CSV_FIELDS = ["update", "frames", "seconds", "fps", "episodes", "return_mean", "length_mean", "success_rate",
              "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "attention_entropy", "lr"]


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
        self.maps = None
        layer = dict(agent.named_modules()).get("attention")
        self.handle = layer.register_forward_hook(self._hook) if layer is not None else None

    def _hook(self, module, inputs, output):
        self.maps = output

    def close(self):
        if self.handle is not None:
            self.handle.remove()


def _autocast(cfg: TrainConfig):
    if cfg.bf16:
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(cfg: TrainConfig) -> Path:
    cfg = resolve(cfg)
    out = prepare_out(cfg.out, what="run", resume=cfg.resume, overwrite=cfg.overwrite, parts=RUN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    N, T = cfg.num_envs, cfg.num_steps
    num_updates = max(1, cfg.total_frames // (N * T))

    env = envs.make(cfg.env, num_envs=N, seed=cfg.seed)
    agent_cfg = AgentConfig(arch=cfg.arch, obs_shape=tuple(env.observation_space.shape),
                            num_actions=int(env.action_space.n), obs_scale=env.obs_scale, recurrent=cfg.recurrent)
    torch.manual_seed(cfg.seed)
    agent = build(agent_cfg).to(device)
    if cfg.init_from and not cfg.resume:
        _init_from(agent, agent_cfg, cfg.init_from)
    if cfg.bf16:
        agent = agent.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    gen = torch.Generator().manual_seed(cfg.seed)
    norm = RewardNormalizer(N, cfg.gamma)
    extra = {"env": str(env.spec), "action_names": env.action_names, "train": cfg.to_dict()}

    # ---- start or resume ---------------------------------------------------------------------------
    obs = env.reset(cfg.seed)
    state = agent.initial_state(N)
    first = torch.ones(N, dtype=torch.bool)
    start_update, frames, recent = 0, 0, deque(maxlen=100)
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

    probe = _AttentionProbe(agent)
    csv_file = open(out / "train.csv", "a", newline="")
    writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
    if csv_file.tell() == 0:
        writer.writeheader()
    bar = tqdm(total=num_updates * N * T, initial=frames, unit="frame", unit_scale=True, disable=not cfg.progress,
               desc=f"train {cfg.arch}{'-rec' if cfg.recurrent else ''}", dynamic_ncols=True)
    snap, t_start, frames_at_start = None, time.time(), frames
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
            obs_buf = torch.zeros((T, N, *obs.shape[1:]), dtype=torch.as_tensor(obs).dtype)  # uint8 frames | float vectors
            act_buf, logp_buf = torch.zeros((T, N), dtype=torch.long), torch.zeros(T, N)
            val_buf, rew_buf, done_buf = torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N)
            first_buf = torch.zeros((T, N), dtype=torch.bool)
            state_buf = torch.zeros((T, N, state.shape[-1])) if state is not None else None
            ended = []
            for t in range(T):
                obs_t = torch.as_tensor(obs)
                obs_buf[t], first_buf[t] = obs_t, first
                if state is not None:
                    state_buf[t] = state.detach().float().cpu()
                with torch.no_grad(), _autocast(cfg):
                    o = agent(obs_t.to(device), state, first.to(device))
                logits = o.logits.float().cpu()
                action = select_actions(logits, "sample", generator=gen)  # (N,)
                act_buf[t] = action
                logp_buf[t] = torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)
                val_buf[t] = o.value.float().cpu()
                state = o.state.float() if o.state is not None else None
                obs, reward, done, info = env.step(action.numpy())
                rew_buf[t] = torch.as_tensor(norm(reward, done) if cfg.norm_reward else reward, dtype=torch.float32)
                done_buf[t] = torch.as_tensor(done, dtype=torch.float32)
                first = torch.as_tensor(done)
                ended += [i["episode"] for i in info if "episode" in i]
            frames += N * T
            with torch.no_grad(), _autocast(cfg):
                next_value = agent(torch.as_tensor(obs).to(device), state, first.to(device)).value.float().cpu()
            adv = torch.from_numpy(gae(rew_buf.numpy(), val_buf.numpy(), done_buf.numpy(), cfg.gamma,
                                       cfg.gae_lambda, last_value=next_value.numpy())[0])  # (T, N)
            ret = adv + val_buf
            # ---- update --------------------------------------------------------------------------
            stats = _update(cfg, agent, optimizer, probe, gen, device, obs_buf, act_buf, logp_buf, val_buf,
                            adv, ret, first_buf, state_buf, value_only=update < cfg.value_warmup)
            recent.extend([e["return"], e["length"], e["success"]] for e in ended)
            row = _row(update + 1, frames, elapsed(), N * T / (time.time() - t0), ended, stats,
                       optimizer.param_groups[0]["lr"])
            writer.writerow(row)
            csv_file.flush()
            bar.update(N * T)
            if recent:
                r = np.asarray(recent, dtype=float)
                bar.set_postfix(ret=f"{r[:, 0].mean():.2f}", success=f"{r[:, 2].mean():.2f}",
                                fps=f"{(frames - frames_at_start) / (time.time() - t_start):.0f}")
        snap = capture(num_updates)
        save(snap)
    except KeyboardInterrupt:
        if snap is not None:
            save(snap)
        bar.write(f"interrupted: checkpoint at update {snap['meta']['update'] if snap else 0} saved in {out / 'agent'}; "
                  "rerun with --resume to continue")
        raise
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


def _update(cfg, agent, optimizer, probe, gen, device, obs_buf, act_buf, logp_buf, val_buf, adv, ret,
            first_buf, state_buf, value_only: bool = False) -> dict:
    """PPO epochs over one rollout; ``value_only``: the value loss alone, and only the value head steps."""
    T, N = act_buf.shape
    value_head = {id(p) for p in agent.v.parameters()}
    recurrent = state_buf is not None
    L = (cfg.bptt or T) if recurrent else 1
    if recurrent:
        chunks = T // L  # sequences: (env, chunk) pairs, each L steps starting from the stored state
        seq_ids = torch.arange(N * chunks)
        mb_seqs = max(1, len(seq_ids) // cfg.num_minibatches)
    else:
        flat_ids = torch.arange(T * N)
        mb_size = max(1, len(flat_ids) // cfg.num_minibatches)
    totals = {k: 0.0 for k in ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "attention_entropy")}
    count = 0
    for _ in range(cfg.update_epochs):
        if recurrent:
            perm = seq_ids[torch.randperm(len(seq_ids), generator=gen)]
            batches = [perm[i:i + mb_seqs] for i in range(0, len(perm), mb_seqs)]
        else:
            perm = flat_ids[torch.randperm(len(flat_ids), generator=gen)]
            batches = [perm[i:i + mb_size] for i in range(0, len(perm), mb_size)]
        for mb in batches:
            with _autocast(cfg):
                if recurrent:
                    envs_, starts = mb % N, (mb // N) * L
                    steps = starts[None, :] + torch.arange(L)[:, None]  # (L, B)
                    cols = envs_[None, :].expand(L, -1)  # (L, B)
                    h = state_buf[starts, envs_].to(device)  # (B, hidden)
                    logits_l, values_l, attn_l = [], [], []
                    for k in range(L):
                        o = agent(obs_buf[steps[k], cols[k]].to(device), h, first_buf[steps[k], cols[k]].to(device))
                        h = o.state
                        logits_l.append(o.logits)
                        values_l.append(o.value)
                        if probe.maps is not None:
                            attn_l.append(probe.maps)
                    logits, value = torch.cat(logits_l).float(), torch.cat(values_l).float()
                    idx = (steps.reshape(-1), cols.reshape(-1))
                    attn = torch.cat(attn_l) if attn_l else None
                else:
                    idx = (mb // N, mb % N)
                    o = agent(obs_buf[idx].to(device))
                    logits, value, attn = o.logits.float(), o.value.float(), probe.maps
            b_act, b_logp, b_adv = act_buf[idx].to(device), logp_buf[idx].to(device), adv[idx].to(device)
            b_ret, b_val = ret[idx].to(device), val_buf[idx].to(device)
            logp_all = torch.log_softmax(logits, -1)
            new_logp = logp_all.gather(-1, b_act[:, None]).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            log_ratio = new_logp - b_logp
            ratio = log_ratio.exp()
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
            pg_loss = torch.max(-b_adv * ratio, -b_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            v_clipped = b_val + (value - b_val).clamp(-cfg.clip_coef, cfg.clip_coef)
            v_loss = 0.5 * torch.max((value - b_ret) ** 2, (v_clipped - b_ret) ** 2).mean()
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            attn_ent = attention_entropy(attn.float()) if attn is not None else None
            if attn_ent is not None and cfg.attention_entropy_coef:
                loss = loss + cfg.attention_entropy_coef * attn_ent
            optimizer.zero_grad(set_to_none=True)
            (cfg.vf_coef * v_loss if value_only else loss).backward()
            if value_only:  # a parameter without a gradient is left alone by Adam (no moment, no step)
                for p in agent.parameters():
                    if id(p) not in value_head:
                        p.grad = None
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                totals["pg_loss"] += pg_loss.item()
                totals["v_loss"] += v_loss.item()
                totals["entropy"] += entropy.item()
                totals["approx_kl"] += ((ratio - 1) - log_ratio).mean().item()
                totals["clipfrac"] += ((ratio - 1).abs() > cfg.clip_coef).float().mean().item()
                totals["attention_entropy"] += attn_ent.item() if attn_ent is not None else float("nan")
            count += 1
    return {k: v / max(count, 1) for k, v in totals.items()}


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


