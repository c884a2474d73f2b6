"""The simulator's training objective and held-out scores.

Teacher-forced: the recorded actions drive the dynamics and s_t comes from the posterior given the recorded
o_t, while the frozen agent reads the *decoded* observations with its own rolled hidden state. Terms, each
summed over a batch's valid steps (sums, not means, so that DDP's average over ranks equals one process's
loss on the global batch; the loss divides by the batch's window steps, padding included):

- ``obs``: cross-entropy of the recorded categories (symbolic, onehot) or squared error on [0, 1] (pixels),
  summed over cells / pixels;
- ``reward``: squared error; ``done``: binary cross-entropy of the episode's end;
- ``hx``: squared error between the agent-in-the-loop's hidden state and the recorded ``agent_state``,
  summed over units; ``logits``: KL(recorded policy || policy of the agent in the loop);
- ``kl``: DreamerV2's balanced KL between posterior and prior (:func:`policylens.sim.model.balanced_kl`);
- ``z_kl``: KL(q(z | context) || N(0, I)), per window;
- ``prior_obs`` (off by default): each recorded frame decoded from the prior one step after the teacher-forced
  state before it, the frame a filtered start draws first after its context;
- ``prior_step`` (off by default): the whole of that first step, scored on the ``obs``, ``reward`` and ``done``
  terms with their weights: the frame decoded from the prior, and the reward and episode end of the recorded
  action taken from that prior state (what a filtered start predicts one step after its context);
- ``open_loop``: the same z unrolled on the prior with the recorded actions (what imagination does), scored on
  the five per-step terms above with their weights (PlaNet's observation overshooting). Each window may first
  read some of its context frames through the posterior (``seen``: frames 0 .. seen-1, where frame 0 is never
  read, s_0 comes from z): with ``open_loop_start="mixed"`` training draws seen from 1 .. context_frames, so
  the prior learns to unroll from z alone (seen=1, how ``sim sample`` and ``sim optimize`` imagine) and from
  the filtered context (seen=K, how ``sim fidelity`` scores a simulator trained so). ``open_loop_detaches``
  names the readouts it reads with their weights detached (:data:`DETACHABLE`): with the decoder detached it
  trains the dynamics to unroll onto states the decoder already decodes, and cannot teach the decoder to hedge
  where the future is uncertain (a moving ball's cell several steps ahead).

Why ``open_loop``: with teacher forcing alone the posterior carries each frame and the prior lags far behind.
On the MiniGrid recurrent zoo agent's store, 600 steps of teacher forcing reached 0.966 per-cell accuracy
teacher-forced but open loop stayed at 0.838 (every imagined frame alike; the agent in the loop took one action
throughout, agreeing with the recorded one 29% of the time), while the same 600 steps with the open-loop term
reached 0.895 and 59% with the teacher-forced scores unchanged (0.966), at about twice the cost per step;
after the default 2000 steps, 0.931 and 67% (held-out windows, frames after the context).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import SimConfig
from .data import Windows
from .loop import FrozenAgent, Noise, Rollout, rollout
from .model import Simulator, balanced_kl, standard_normal_kl
from .obs import obs_loss, obs_score

if TYPE_CHECKING:
    from .train_config import SimTrainConfig

TERMS = ("obs", "reward", "done", "hx", "logits", "kl", "z_kl", "open_loop", "prior_obs", "prior_step")
PRIOR_STEP_TERMS = ("obs", "reward", "done")
OPEN_LOOP_STARTS = ("z", "mixed")


class SimObjective(nn.Module):
    """The training objective as a module (so DistributedDataParallel can wrap it): ``forward(windows, noise,
    seen=None)`` -> ``(loss, sums)``, the teacher-forced terms and the open-loop one; ``seen`` (B,) long: the
    frames of each window the open-loop unroll reads through the posterior first (None: 1, z alone). The frozen
    agent rides along unregistered; only ``self.sim`` has parameters."""

    def __init__(self, sim: Simulator, agent: FrozenAgent, cfg: "SimTrainConfig",
                 obs_weights: "torch.Tensor | None" = None):
        super().__init__()
        self.sim, self.agent, self.cfg = sim, agent, cfg
        self.obs_weights = obs_weights  # (categories,) on the batches' device, or None: every cell alike (obs_loss)

    def forward(self, batch: Windows, noise: "Noise | None" = None, latent: str = "sample",
                seen: "torch.Tensor | None" = None):
        steps = batch.obs.shape[1]
        r = rollout(self.sim, self.agent, batch.context(self.sim.config.context_frames), steps,
                    actions=batch.action, obs=batch.obs, mask=batch.mask, latent=latent, noise=noise)
        w = self.obs_weights
        sums = step_sums(r, batch, self.sim.config, self.cfg, w)
        if self.cfg.open_loop_weight > 0:  # the same z unrolled on the prior, with the recorded actions
            posterior: dict[str, Any] = {}
            if seen is not None and bool((seen > 1).any()):  # the first seen frames through the posterior
                posterior = {"obs": batch.obs, "mask": seen_mask(batch.mask, seen)}
            args = (self.agent, r.z, steps)
            kw: dict[str, Any] = dict(actions=batch.action, latent=latent, noise=noise, **posterior)
            detached = DETACHABLE[self.cfg.open_loop_detaches]
            imagined = (torch.func.functional_call(_Unroll(self.sim), readouts_detached(self.sim, "sim.", detached),
                                                   args, kw) if detached else rollout(self.sim, *args, **kw))
            terms = per_step_terms(imagined, batch, self.sim.config, w)
            sums["open_loop"] = sum(getattr(self.cfg, f"{k}_weight") * (v * batch.mask).sum() for k, v in terms.items())
        else:
            sums["open_loop"] = torch.zeros((), device=batch.mask.device)
        sums.update(prior_sums(self.sim, r, batch, noise if latent == "sample" else None, self.cfg, w))
        b, t = batch.mask.shape
        weights = {k: getattr(self.cfg, f"{k}_weight") for k in TERMS}
        loss = sum(weights[k] * sums[k] for k in TERMS if k != "z_kl") / (b * t) + weights["z_kl"] * sums["z_kl"] / b
        return loss, sums


def prior_step_terms(sim: Simulator, r: Rollout, batch: Windows, noise: "Noise | None",
                     readouts: bool = True, latent: str = "sample", obs_weights=None) -> dict:
    """One prior step after each teacher-forced state, scored against the recorded window: ``{obs, reward, done}``,
    each (B, T-1) for t >= 1. ``obs``: o_t decoded from ``(h_t, s_t ~ p(s_t | h_t))`` (the prior's mean without
    ``noise``; the draws are the rollout's own), h_t after the posterior state at t-1; ``reward`` / ``done``: those
    of the recorded a_t, read from ``GRU(h_t, [s_t, a_t])``. ``readouts=False``: the decoder and the reward and
    episode-end heads are read with their weights detached, so these terms train the dynamics alone.
    ``latent="mean"``: s_t is the prior's mean even with ``noise``, what ``sim fidelity``'s filtered start reads."""
    b, t = batch.mask.shape
    h = r.h[:, 1:].flatten(0, 1)  # (B*(T-1), deter)
    draws = None if noise is None or latent == "mean" else noise.s[:, 1:]
    s = r.prior.sample(draws).flatten(0, 1)  # (B*(T-1), stoch)
    decoded = _apply(sim.obs_decoder, torch.cat([h, s], -1), readouts)  # (B*(T-1), H, W, channels)
    action = F.one_hot(batch.action[:, 1:].flatten().long(), sim.config.num_actions)  # (B*(T-1), A)
    h_next = sim.transition(h, s, action)  # (B*(T-1), deter)
    reward = _apply(sim.reward_head, h_next, readouts).reshape(b, t - 1)
    done = _apply(sim.done_head, h_next, readouts).reshape(b, t - 1)
    return {"obs": obs_loss(decoded.reshape(b, t - 1, *decoded.shape[1:]), batch.obs[:, 1:], sim.config, obs_weights),
            "reward": (reward.float() - batch.reward[:, 1:]).pow(2),
            "done": F.binary_cross_entropy_with_logits(done.float(), batch.done[:, 1:], reduction="none")}


READOUTS = ("obs_decoder", "reward_head", "done_head")
DETACHABLE = {"none": (), "decoder": ("obs_decoder",), "readouts": READOUTS}
"""What ``open_loop_detaches`` may name: the readouts the open-loop term reads with their weights detached."""


class _Unroll(nn.Module):
    """:func:`rollout` of ``sim`` as a module's forward, so ``torch.func.functional_call`` can swap its weights."""

    def __init__(self, sim: Simulator):
        super().__init__()
        self.sim = sim

    def forward(self, *args, **kwargs) -> Rollout:
        return rollout(self.sim, *args, **kwargs)


def detached_weights(module: nn.Module, prefix: str = "") -> dict:
    """``{prefix + name: weight.detach()}`` of ``module``: read through ``torch.func.functional_call``, a term does
    not train those weights (gradients still reach what they read)."""
    return {f"{prefix}{k}": v.detach() for k, v in module.named_parameters()}


def readouts_detached(sim: Simulator, prefix: str, modules) -> dict:
    """:func:`detached_weights` of the simulator's submodules ``modules`` (names from :data:`DETACHABLE`), keyed as
    ``functional_call`` on a module holding ``sim`` under ``prefix`` expects."""
    return {k: v for m in modules for k, v in detached_weights(getattr(sim, m), f"{prefix}{m}.").items()}


def _apply(module: nn.Module, x: torch.Tensor, train: bool) -> torch.Tensor:
    """``module(x)``; with its weights detached unless ``train`` (gradients still reach ``x``)."""
    return module(x) if train else torch.func.functional_call(module, detached_weights(module), (x,))


def prior_sums(sim: Simulator, r: Rollout, batch: Windows, noise: "Noise | None", cfg: "SimTrainConfig",
               obs_weights=None) -> dict:
    """``{prior_obs, prior_step}`` summed over the valid steps (zero when off, or for windows of one frame):
    the observation of :func:`prior_step_terms`, and all three with their weights."""
    zero = torch.zeros((), device=batch.mask.device)
    if batch.mask.shape[1] < 2 or (cfg.prior_obs_weight <= 0 and cfg.prior_step_weight <= 0):
        return {"prior_obs": zero, "prior_step": zero}
    terms = prior_step_terms(sim, r, batch, noise, cfg.prior_trains_readouts, cfg.prior_step_latent, obs_weights)
    terms = {k: v * batch.mask[:, 1:] for k, v in terms.items()}  # (B, T-1)
    return {"prior_obs": terms["obs"].sum() if cfg.prior_obs_weight > 0 else zero,
            "prior_step": sum(getattr(cfg, f"{k}_weight") * terms[k].sum() for k in PRIOR_STEP_TERMS)
            if cfg.prior_step_weight > 0 else zero}


def seen_mask(mask: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: True at the frames ``t < seen[b]`` of each window that lie in its episode (``mask``), the
    frames a rollout reads through the posterior."""
    t = torch.arange(mask.shape[1], device=mask.device)  # (T,)
    return (t[None] < seen[:, None]) & mask.bool()  # (B, T)


def context_posterior(windows: Windows, k: int) -> dict:
    """:func:`rollout` keywords that read each window's first ``k`` frames through the posterior (the prior after
    them): the filtered context ``sim fidelity`` scores from and ``train.csv``'s open-loop columns read."""
    reads = torch.full((windows.mask.shape[0],), k, device=windows.mask.device)  # (B,)
    return {"obs": windows.obs, "mask": seen_mask(windows.mask, reads)}


def per_step_terms(r: Rollout, batch: Windows, sim_cfg: SimConfig, obs_weights=None) -> dict:
    """The terms a rollout is scored on at each step against the recorded window: ``{name: (B, T)}``
    (``obs_weights``: :func:`~policylens.sim.obs.obs_loss`'s)."""
    recorded = F.log_softmax(batch.logits, -1)  # (B, T, A)
    return {
        "obs": obs_loss(r.decoded, batch.obs, sim_cfg, obs_weights),
        "reward": (r.reward.float() - batch.reward).pow(2),
        "done": F.binary_cross_entropy_with_logits(r.done_logit.float(), batch.done, reduction="none"),
        "hx": (r.hx.float() - batch.agent_state).pow(2).sum(-1),
        "logits": (recorded.exp() * (recorded - F.log_softmax(r.logits.float(), -1))).sum(-1),
    }


def step_sums(r: Rollout, batch: Windows, sim_cfg: SimConfig, cfg: "SimTrainConfig", obs_weights=None) -> dict:
    """Each loss term summed over the batch's valid steps (z_kl over its windows), plus counts and scores.
    Sums, not means, so that DDP's average over ranks equals one process's loss on the global batch."""
    mask = batch.mask.float()  # (B, T)
    sums = {k: (v * mask).sum() for k, v in per_step_terms(r, batch, sim_cfg, obs_weights).items()}
    assert r.posterior is not None and r.z_dist is not None, "a teacher-forced rollout from a context"
    kl = balanced_kl(r.posterior, r.prior, cfg.kl_balance, cfg.free_nats)  # (B, T-1)
    sums["kl"] = (kl * mask[:, 1:]).sum()
    sums["z_kl"] = standard_normal_kl(r.z_dist).sum()
    with torch.no_grad():
        sums["steps"], sums["transitions"] = mask.sum(), mask[:, 1:].sum()
        sums["windows"] = torch.tensor(float(mask.shape[0]))
        sums["obs_score"] = (obs_score(r.decoded, batch.obs, sim_cfg) * mask).sum()
        sums["action_acc"] = ((r.logits.argmax(-1) == batch.logits.argmax(-1)).float() * mask).sum()
    return sums


def means(sums: dict, cfg: "SimTrainConfig") -> dict:
    """Means of accumulated sums (per valid step; kl per transition, z_kl per window), and ``loss``: the
    weighted sum of the terms' means."""
    counts = {k: max(float(sums.get(k, 0.0)), 1.0) for k in ("steps", "transitions", "windows")}
    per = {"kl": counts["transitions"], "z_kl": counts["windows"]}
    out = {k: float(v) / per.get(k, counts["steps"]) for k, v in sums.items() if k not in counts}
    return {"loss": sum(getattr(cfg, f"{k}_weight") * out[k] for k in TERMS), **out}


def trained_start(conf: dict) -> str:
    """``filtered`` when the simulator (its ``config.json``) was trained to predict from a filtered context: mixed
    open-loop starts, or a term on the prior step after each posterior state; else ``z`` (a simulator trained
    before these existed)."""
    train = conf.get("train") or {}
    filtered = train.get("open_loop_start", "z") == "mixed" or max(train.get("prior_obs_weight", 0.0),
                                                                      train.get("prior_step_weight", 0.0)) > 0
    return "filtered" if filtered else "z"


@torch.no_grad()
def held_out_scores(loss: SimObjective, batch: Windows, chunk: int = 128, filtered: bool = False) -> dict:
    """Teacher-forced terms (latent means) and open-loop fidelity on held-out windows: the recorded actions drive
    the prior from z alone (``filtered``: from the context frames read through the posterior, the start ``sim
    fidelity`` scores a simulator trained for it from); obs score, agreement of the agent's argmax with the
    recorded one, and hx error on the frames after the context."""
    k = loss.sim.config.context_frames
    total: dict[str, float] = {}
    open_sums = {"obs_score": 0.0, "action_acc": 0.0, "hx": 0.0, "steps": 0.0}
    for a in range(0, batch.mask.shape[0], chunk):
        part = batch.rows(slice(a, a + chunk))
        _, sums = loss(part, latent="mean")
        total = {n: total.get(n, 0.0) + float(v) for n, v in sums.items()}
        seen = context_posterior(part, k) if filtered else {}
        r = rollout(loss.sim, loss.agent, part.context(k), part.mask.shape[1], actions=part.action, latent="mean",
                    **seen)
        after = part.mask[:, k:].float()  # (B, T-K)
        open_sums["steps"] += float(after.sum())
        open_sums["obs_score"] += float((obs_score(r.decoded[:, k:], part.obs[:, k:], loss.sim.config) * after).sum())
        agree = (r.logits[:, k:].argmax(-1) == part.logits[:, k:].argmax(-1)).float()  # (B, T-K)
        open_sums["action_acc"] += float((agree * after).sum())
        open_sums["hx"] += float(((r.hx[:, k:] - part.agent_state[:, k:]).pow(2).sum(-1) * after).sum())
    out = {f"val_{n}": v for n, v in means(total, loss.cfg).items()}
    n = open_sums.pop("steps")  # no frame after the context in any window: no open-loop score
    return {**out, **{f"open_{name}": v / n if n else float("nan") for name, v in open_sums.items()}}
