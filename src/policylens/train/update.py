"""One PPO update over a rollout: minibatches (of steps, or of BPTT sequences for a recurrent agent), the clipped
surrogate, the value loss (clipped as CleanRL does, or plain), the entropy bonus and rl-attention's penalty.

A rollout is held in a :class:`Rollout`, allocated once per run and filled in place every update.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..agents.nets import attention_entropy

STATS = ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "attention_entropy")


class TrainingStopped(RuntimeError):
    """Training cannot go on (a NaN loss, an update that made no step); the message says where and why."""


class Rollout:
    """The buffers of one rollout, time-major ``(T, N, ...)``, allocated once and overwritten each update."""

    def __init__(self, T: int, N: int, obs_shape: tuple, hidden: "int | None", obs_dtype=torch.uint8):
        self.obs = torch.zeros((T, N, *obs_shape), dtype=obs_dtype)  # (T, N, H, W, C) uint8 frames | (T, N, D) vectors
        self.act = torch.zeros((T, N), dtype=torch.long)
        self.logp, self.val, self.rew, self.done = (torch.zeros(T, N) for _ in range(4))
        self.first = torch.zeros((T, N), dtype=torch.bool)  # step t begins an episode (the GRU resets)
        self.state = torch.zeros((T, N, hidden)) if hidden else None  # (T, N, hidden) before step t
        self.adv, self.ret = torch.zeros(T, N), torch.zeros(T, N)


def autocast(cfg):
    if cfg.bf16:
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def minibatches(cfg, T: int, N: int, recurrent: bool, gen: torch.Generator) -> list:
    """One epoch's minibatches: flat step indices ``t * N + n``, or for a recurrent agent sequence indices
    ``chunk * N + n`` (``T // bptt`` chunks per env), shuffled by ``gen``. :func:`~.config.validate` has
    made sure ``bptt`` divides ``T`` and that there are at least ``num_minibatches`` of them."""
    count = N * (T // (cfg.bptt or T)) if recurrent else N * T
    size = count // cfg.num_minibatches
    perm = torch.randperm(count, generator=gen)
    return [perm[i:i + size] for i in range(0, count, size)]


def _forward_sequences(cfg, agent, buf: Rollout, mb: torch.Tensor, probe, device):
    """A recurrent agent over the minibatch's sequences, each from its stored start state; ``(logits, value,
    attention maps or None, (step, env) index)`` with the batch ordered time-major inside the minibatch."""
    T, N = buf.act.shape
    L = cfg.bptt or T
    envs_, starts = mb % N, (mb // N) * L
    steps = starts[None, :] + torch.arange(L)[:, None]  # (L, B)
    cols = envs_[None, :].expand(L, -1)  # (L, B)
    assert buf.state is not None, "sequences are for recurrent agents, whose rollouts hold their states"
    h = buf.state[starts, envs_].to(device)  # (B, hidden)
    idx = (steps.reshape(-1), cols.reshape(-1))
    if hasattr(agent, "forward_sequence"):  # the trunk once over all L*B frames, the GRU stepped alone
        o = agent.forward_sequence(buf.obs[steps, cols].to(device), h, buf.first[steps, cols].to(device))
        return o.logits, o.value, probe.maps, idx
    logits, values, maps = [], [], []
    for k in range(L):
        o = agent(buf.obs[steps[k], cols[k]].to(device), h, buf.first[steps[k], cols[k]].to(device))
        h = o.state
        logits.append(o.logits)
        values.append(o.value)
        if probe.maps is not None:
            maps.append(probe.maps)
    return torch.cat(logits), torch.cat(values), (torch.cat(maps) if maps else None), idx


def ppo_update(cfg, agent, optimizer, probe, gen, device, buf: Rollout, update: int,
               value_only: bool = False) -> dict:
    """PPO epochs over ``buf``; ``value_only``: the value loss alone, and only the value head steps. Returns the
    mean of each of :data:`STATS` over the minibatches. Raises :class:`TrainingStopped` on a non-finite loss."""
    T, N = buf.act.shape
    recurrent = buf.state is not None
    value_head = {id(p) for p in agent.v.parameters()}
    totals, count = dict.fromkeys(STATS, 0.0), 0
    for _ in range(cfg.update_epochs):
        for mb in minibatches(cfg, T, N, recurrent, gen):
            with autocast(cfg):
                if recurrent:
                    logits, value, attn, idx = _forward_sequences(cfg, agent, buf, mb, probe, device)
                else:
                    idx = (mb // N, mb % N)
                    o = agent(buf.obs[idx].to(device))
                    logits, value, attn = o.logits, o.value, probe.maps
            logits, value = logits.float(), value.float()
            b_act, b_logp, b_adv = buf.act[idx].to(device), buf.logp[idx].to(device), buf.adv[idx].to(device)
            b_ret, b_val = buf.ret[idx].to(device), buf.val[idx].to(device)
            logp_all = torch.log_softmax(logits, -1)
            new_logp = logp_all.gather(-1, b_act[:, None]).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            log_ratio = new_logp - b_logp
            ratio = log_ratio.exp()
            if cfg.norm_adv:
                b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
            pg_loss = torch.max(-b_adv * ratio, -b_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            if cfg.clip_vloss:
                v_clipped = b_val + (value - b_val).clamp(-cfg.clip_coef, cfg.clip_coef)
                v_loss = 0.5 * torch.max((value - b_ret) ** 2, (v_clipped - b_ret) ** 2).mean()
            else:
                v_loss = 0.5 * ((value - b_ret) ** 2).mean()
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            attn_ent = attention_entropy(attn.float()) if attn is not None else None
            if attn_ent is not None and cfg.attention_entropy_coef:
                loss = loss + cfg.attention_entropy_coef * attn_ent
            if not math.isfinite(loss.item()):
                raise TrainingStopped(
                    f"update {update + 1}: the loss is not finite (policy {pg_loss.item()}, value {v_loss.item()}, "
                    f"entropy {entropy.item()}); training stopped before the weights took it. Try a lower --lr "
                    f"or a smaller --max-grad-norm")
            optimizer.zero_grad(set_to_none=True)
            (cfg.vf_coef * v_loss if value_only else loss).backward()
            if value_only:  # a parameter without a gradient is left alone by Adam (no moment, no step)
                for p in agent.parameters():
                    if id(p) not in value_head:
                        p.grad = None
            grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            if not math.isfinite(grad_norm.item()):
                raise TrainingStopped(f"update {update + 1}: the gradient is not finite (norm {grad_norm.item()}); "
                                      "training stopped before the weights took it. Try a lower --lr")
            optimizer.step()
            with torch.no_grad():
                totals["pg_loss"] += pg_loss.item()
                totals["v_loss"] += v_loss.item()
                totals["entropy"] += entropy.item()
                totals["approx_kl"] += ((ratio - 1) - log_ratio).mean().item()
                totals["clipfrac"] += ((ratio - 1).abs() > cfg.clip_coef).float().mean().item()
                totals["attention_entropy"] += attn_ent.item() if attn_ent is not None else float("nan")
            count += 1
    if count == 0:
        raise TrainingStopped(f"update {update + 1} made no gradient step (no minibatch was built from a "
                              f"{T}x{N} rollout); nothing was trained")
    return {k: v / count for k, v in totals.items()}
