"""The fidelity baseline: Saliency as causality's first architecture, a per-frame Gaussian VAE with an action-conditioned LSTM
over its latents (World Models' V + M), trained on the same windows as the simulator for the same wall time.

Parts (named submodules): ``obs_encoder`` and ``obs_decoder`` are the simulator's own frame coder
(:class:`~policylens.sim.obs.ObsEncoder` / :class:`~policylens.sim.obs.ObsDecoder`), so a comparison with the
simulator isolates the dynamics; ``posterior`` maps an embedding to q(x_t | o_t), a Gaussian over the frame's
latent x_t; ``lstm`` reads [x_t, onehot(a_t)]; ``next_latent`` predicts a Gaussian over x_{t+1} from its output;
``reward_head`` and ``done_head`` read the same output (the reward and episode end of a_t).

Training (:func:`train_baseline`), one loss per window: the VAE's reconstruction + KL(q(x_t | o_t) || N(0, I)),
and, on the VAE's latent means with the gradient stopped (the LSTM models the VAE's code, as World Models' M
models V's), the Gaussian negative log-likelihood of x_{t+1}, squared reward error and the episode end's
cross-entropy. Open-loop unroll (:meth:`VaeLstm.unroll`): encode the context frames, run the LSTM over them with
the recorded actions, then feed back its predicted latent means, decoding each.

Saved as ``config.json`` + ``weights.safetensors`` (default folder ``RUN/sim/baseline``), never pickled.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import SimConfig
from .data import SimData
from .model import Gaussian, GaussianHead, mlp, standard_normal_kl
from .obs import ObsDecoder, ObsEncoder, obs_loss

FORMAT = "policylens.sim.baseline/1"


class Prediction(NamedTuple):
    """What a model predicts for the H frames after its context."""

    decoded: torch.Tensor  # (B, H, h, w, channels) the decoder's output: categorical logits or pixels
    reward: torch.Tensor  # (B, H) reward of the recorded action at each of those frames
    done_logit: torch.Tensor  # (B, H) logit that the action ended the episode


class VaeLstm(nn.Module):
    """``VaeLstm(cfg, latent=0, lstm=0, seed=None)``: ``latent`` the per-frame VAE latent size (0: ``cfg.stoch``),
    ``lstm`` the LSTM's width (0: ``cfg.deter``). See the module doc."""

    def __init__(self, cfg: SimConfig, latent: int = 0, lstm: int = 0, seed: "int | None" = None):
        super().__init__()
        cfg.check()
        self.config, self.latent, self.width = cfg, int(latent or cfg.stoch), int(lstm or cfg.deter)
        if self.latent < 1 or self.width < 1:
            raise ValueError(f"baseline sizes must be >= 1, got latent {latent}, lstm {lstm}")
        with torch.random.fork_rng(devices=[]):  # initial weights from ``seed`` alone
            if seed is not None:
                torch.manual_seed(seed)
            self.obs_encoder = ObsEncoder(cfg)
            self.posterior = GaussianHead([cfg.embed, cfg.hidden, self.latent], min_std=1e-4)
            self.obs_decoder = ObsDecoder(cfg, self.latent)
            self.lstm = nn.LSTM(self.latent + cfg.num_actions, self.width, batch_first=True)
            self.next_latent = GaussianHead([self.width, cfg.hidden, self.latent], cfg.min_std)
            self.reward_head = mlp([self.width, cfg.hidden, 1])
            self.done_head = mlp([self.width, cfg.hidden, 1])

    def sizes(self) -> dict:
        return {"latent": self.latent, "lstm": self.width}

    def encode(self, obs: torch.Tensor) -> Gaussian:
        """q(x_t | o_t) of recorded frames (B, T, H, W, C): a Gaussian over (B, T, latent)."""
        lead = obs.shape[:-3]
        embed = self.obs_encoder(obs.reshape(-1, *obs.shape[-3:]))  # (B*T, embed)
        q = self.posterior(embed)
        return Gaussian(q.mean.reshape(*lead, -1), q.std.reshape(*lead, -1))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (B, T, latent) -> the decoder's output (B, T, H, W, channels)."""
        out = self.obs_decoder(x.reshape(-1, self.latent))  # (B*T, H, W, channels)
        return out.reshape(*x.shape[:-1], *out.shape[1:])

    def step(self, x: torch.Tensor, action: torch.Tensor, state=None) -> tuple:
        """The LSTM over latents ``x`` (B, T, latent) and action indices (B, T): ``(outputs (B, T, lstm), state)``."""
        onehot = F.one_hot(action.long(), self.config.num_actions).to(x.dtype)  # (B, T, A)
        return self.lstm(torch.cat([x, onehot], -1), state)

    def heads(self, out: torch.Tensor) -> tuple:
        """LSTM outputs (B, T, lstm) -> (reward (B, T), done logit (B, T))."""
        return self.reward_head(out).squeeze(-1), self.done_head(out).squeeze(-1)

    def loss(self, obs, action, reward, done, mask, noise: "torch.Tensor | None" = None) -> tuple:
        """Mean loss over a batch of windows (obs (B, T, H, W, C), action / reward / done / mask (B, T)) and its
        terms; ``noise`` (B, T, latent) standard draws for the VAE's sample (None: its mean)."""
        keep = mask.float()  # (B, T)
        q = self.encode(obs)  # (B, T, latent)
        terms = {"obs": obs_loss(self.decode(q.sample(noise)), obs, self.config), "vae_kl": standard_normal_kl(q)}
        code = q.mean.detach()  # (B, T, latent) the LSTM models the VAE's code
        out, _ = self.step(code, action)  # (B, T, lstm)
        pred = self.next_latent(out[:, :-1])  # (B, T-1, latent) for x_{t+1}
        nll = (((code[:, 1:] - pred.mean) / pred.std).pow(2) / 2 + pred.std.log() + math.log(2 * math.pi) / 2)
        r, d = self.heads(out)
        sums = {k: (v * keep).sum() for k, v in terms.items()}
        sums["latent_nll"] = (nll.sum(-1) * keep[:, 1:]).sum()
        sums["reward"] = ((r - reward).pow(2) * keep).sum()
        sums["done"] = (F.binary_cross_entropy_with_logits(d, done, reduction="none") * keep).sum()
        steps = keep.sum().clamp(min=1)
        return sum(sums.values()) / steps, {k: float(v.detach()) / float(steps) for k, v in sums.items()}

    @torch.no_grad()
    def unroll(self, context: torch.Tensor, actions: torch.Tensor) -> Prediction:
        """Open loop from ``context`` (B, K, H, W, C) recorded frames with ``actions`` (B, K + H) recorded action
        indices: predictions for the H frames after the context (the LSTM is fed its own predicted means)."""
        b, k = context.shape[:2]
        steps = actions.shape[1] - k
        if steps < 1:
            raise ValueError(f"actions must cover the {k} context frames and at least one more, got "
                             f"{tuple(actions.shape)}")
        out, state = self.step(self.encode(context).mean, actions[:, :k])  # (B, K, lstm)
        x = self.next_latent(out[:, -1:]).mean  # (B, 1, latent) predicted code of frame K
        decoded, reward, done = [], [], []
        for t in range(k, k + steps):
            decoded.append(self.decode(x))  # (B, 1, H, W, channels)
            out, state = self.step(x, actions[:, t:t + 1], state)  # (B, 1, lstm)
            r, d = self.heads(out)
            reward.append(r)
            done.append(d)
            x = self.next_latent(out).mean
        return Prediction(torch.cat(decoded, 1), torch.cat(reward, 1), torch.cat(done, 1))


def train_baseline(data: SimData, cfg: SimConfig, *, seconds: "float | None" = None, steps: "int | None" = None,
                   window: int = 16, batch_size: int = 32, lr: float = 3e-4, seed: int = 0, val_fraction: float = 0.1,
                   latent: int = 0, lstm: int = 0, max_grad_norm: float = 10.0, tail_windows: bool = False,
                   bf16: bool = False, device="cpu", progress: bool = False) -> tuple:
    """Train a :class:`VaeLstm` on the windows ``sim train`` draws from (the same split by ``val_fraction`` and
    ``seed``; held-out episodes excluded) until ``seconds`` of optimizer-step wall time (equal compute: the
    simulator's ``trained_seconds``, timed the same way) or ``steps`` steps, whichever comes first. ``bf16``:
    bfloat16 autocast for the forward pass, as ``sim train --bf16`` (equal compute at equal arithmetic).
    Returns ``(model in eval mode, info {steps, seconds, last_step_seconds, ...})``."""
    from tqdm.auto import tqdm

    if seconds is None and steps is None:
        raise ValueError("train_baseline needs a budget: seconds (equal wall time) or steps")
    if (seconds is not None and seconds <= 0) or (steps is not None and steps < 1):
        raise ValueError(f"baseline budget must be positive, got seconds={seconds}, steps={steps}")
    if window < 2 or batch_size < 1:
        raise ValueError(f"baseline window must be >= 2 and batch_size >= 1, got {window}, {batch_size}")
    train_eps, _ = data.split(val_fraction, seed)
    tail = cfg.context_frames + 1 if tail_windows else 0  # a frame after the context, as scored
    starts = data.window_starts(train_eps, window, min_frames=tail)
    if len(starts) == 0:
        raise ValueError(f"rollouts store {data.path}: no training episodes after holding out {val_fraction:.0%}")
    model = VaeLstm(cfg, latent, lstm, seed=seed).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    spent, step, last = 0.0, 0, 0.0
    bar = tqdm(total=steps, unit="step", desc="baseline", disable=not progress)
    while (steps is None or step < steps) and (seconds is None or spent < seconds):
        began = time.perf_counter()
        rng = np.random.default_rng([seed, step])  # step s's windows and noise from (seed, s) alone, as sim train
        picks = starts[rng.choice(len(starts), size=batch_size)]
        w = data.windows(picks, window).to(device)
        noise = torch.randn(batch_size, window, model.latent, generator=torch.Generator().manual_seed(
            int(rng.integers(2 ** 62)))).to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss, terms = model.loss(w.obs, w.action, w.reward, w.done, w.mask, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        last = time.perf_counter() - began
        spent, step = spent + last, step + 1
        bar.update(1)
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    info = {"steps": step, "seconds": round(spent, 3), "last_step_seconds": round(last, 6),
            "budget_seconds": seconds, "budget_steps": steps, "window": window, "batch_size": batch_size, "lr": lr,
            "seed": seed, "val_fraction": val_fraction, "tail_windows": bool(tail_windows),
            "store_episodes": data.num_episodes, "device": str(device), "bf16": bool(bf16),
            "final_terms": terms}
    return model.eval(), info


def save_baseline(model: VaeLstm, path, info: dict, data: "SimData | None" = None) -> Path:
    """Write ``path/config.json`` (format, the SimConfig, the sizes, the training ``info``, the data's agent)
    and ``path/weights.safetensors``."""
    from ..agents import save_agent

    agent = {"run": data.run, "sha256": data.agent_sha256} if data is not None else {}
    body = {"format": FORMAT, "sim": model.config.to_dict(), "baseline": model.sizes(), "train": info}
    if data is not None:
        body["data"] = {"store": data.path, "episodes": data.num_episodes}
    return save_agent(model, agent, path, extra=body)


def load_baseline(path, device="cpu") -> tuple:
    """``(VaeLstm in eval mode, its config.json)`` from a folder written by :func:`save_baseline`."""
    from ..agents.checkpoint import load_weights

    file = Path(path) / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"no baseline at {path}: {file} is missing (train one with `policylens sim fidelity "
                                "RUN --baseline train`)")
    conf = json.loads(file.read_text())
    if not isinstance(conf, dict) or conf.get("format") != FORMAT:
        raise ValueError(f"{file} is not a VAE+LSTM baseline (expected format {FORMAT!r})")
    model = VaeLstm(SimConfig.from_dict(conf["sim"]), **conf["baseline"])
    load_weights(model, Path(path) / "weights.safetensors")
    return model.to(device).eval(), conf
