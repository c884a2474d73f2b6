"""The simulator: a recurrent state-space model (RSSM) of the agent's environment, unrolled from a latent.

Parts (each a named submodule, so hooks and analyses can reach them):

- ``obs_encoder``: one observation -> embedding (shared by the context encoder and the posterior).
- ``context_encoder``: ``context_frames`` frames + the agent's state at the first frame -> Gaussian q(z).
- ``to_sim_state`` (converter): z -> the first simulator state (h_0, s_0); ``to_agent_state``: z -> the
  agent's first hidden state hx_0.
- ``step_input`` + ``cell``: the deterministic path h_{t+1} = GRU(h_t, [s_t, onehot(a_t)]).
- ``prior``: p(s_{t+1} | h_{t+1}); ``posterior``: q(s_{t+1} | h_{t+1}, embed(o_{t+1})); both Gaussian with a
  softplus standard deviation above ``min_std`` (DreamerV1's parameterisation; Gaussian rather than
  DreamerV2's categorical so gradients w.r.t. z and every step are smooth, which the latent optimisation
  and saliency items need, and the state needs no straight-through estimator).
- ``obs_decoder``: (h_t, s_t) -> observation o_t; ``reward_head`` and ``done_head``: h_{t+1} -> the reward
  and episode end of the action a_t. They read the deterministic state after the action, a function of
  (h_t, s_t, a_t) alone, so no posterior sample of the next frame can leak whether the episode went on.

The frozen agent is not part of this module (see :mod:`policylens.sim.loop`): the simulator's state dict,
optimizer and DDP wrapper hold only the environment model.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import SimConfig
from .obs import ObsDecoder, ObsEncoder


class Gaussian(NamedTuple):
    """A diagonal Gaussian: ``mean`` and ``std`` of shape (..., D)."""

    mean: torch.Tensor
    std: torch.Tensor

    def sample(self, noise: "torch.Tensor | None") -> torch.Tensor:
        """``mean + std * noise`` (reparameterised); the mean when ``noise`` is None."""
        return self.mean if noise is None else self.mean + self.std * noise

    def detach(self) -> "Gaussian":
        return Gaussian(self.mean.detach(), self.std.detach())

    def where(self, keep: torch.Tensor, other: "Gaussian") -> "Gaussian":
        """This distribution where ``keep`` (B,) is True, ``other`` elsewhere."""
        k = keep[:, None]  # (B, 1)
        return Gaussian(torch.where(k, self.mean, other.mean), torch.where(k, self.std, other.std))


def kl_divergence(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over the last dimension: (...,)."""
    var_ratio = (q.std / p.std).pow(2)
    mahalanobis = ((q.mean - p.mean) / p.std).pow(2)
    return 0.5 * (var_ratio + mahalanobis - 1 - var_ratio.log()).sum(-1)


def balanced_kl(q: Gaussian, p: Gaussian, balance: float = 0.8, free_nats: float = 0.0) -> torch.Tensor:
    """DreamerV2's KL balancing, (...,): ``balance`` * KL(sg(q) || p) trains the prior towards the posterior,
    (1 - ``balance``) * KL(q || sg(p)) regularises the posterior; each term counts at least ``free_nats``
    (clamped per element, so a sum over DDP ranks equals one process's)."""
    lhs = kl_divergence(q.detach(), p).clamp(min=free_nats)
    rhs = kl_divergence(q, p.detach()).clamp(min=free_nats)
    return balance * lhs + (1 - balance) * rhs


def standard_normal_kl(q: Gaussian) -> torch.Tensor:
    """KL(q || N(0, I)), summed over the last dimension: (...,)."""
    return 0.5 * (q.std.pow(2) + q.mean.pow(2) - 1 - 2 * q.std.log()).sum(-1)


def mlp(sizes: list, last_act: bool = False) -> nn.Sequential:
    """Linear layers with ELU between them (and after the last one if ``last_act``)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or last_act:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """input -> MLP -> Gaussian over ``size`` dims with std = softplus(.) + ``min_std``."""

    def __init__(self, sizes: list, min_std: float):
        super().__init__()
        self.net, self.min_std = mlp(sizes[:-1] + [2 * sizes[-1]]), min_std

    def forward(self, x: torch.Tensor) -> Gaussian:
        mean, raw = self.net(x).chunk(2, -1)  # (B, D), (B, D)
        return Gaussian(mean, F.softplus(raw) + self.min_std)


class Simulator(nn.Module):
    """The environment model. ``Simulator(cfg, seed)``; see the module doc for its parts and
    :func:`policylens.sim.loop.rollout` for unrolling it with the frozen agent inside."""

    def __init__(self, cfg: SimConfig, seed: "int | None" = None):
        super().__init__()
        cfg.check()
        self.config = cfg
        with torch.random.fork_rng(devices=[]):  # initial weights from ``seed`` alone; the global RNG is untouched
            if seed is not None:
                torch.manual_seed(seed)
            self._build(cfg)

    def _build(self, cfg: SimConfig) -> None:
        k, e, hid = cfg.context_frames, cfg.embed, cfg.hidden
        self.obs_encoder = ObsEncoder(cfg)
        self.context_encoder = GaussianHead([k * e + k + cfg.agent_hidden, hid, hid, cfg.latent], min_std=1e-4)
        self.to_sim_state = mlp([cfg.latent, hid, hid, cfg.deter + cfg.stoch])
        self.to_agent_state = mlp([cfg.latent, hid, hid, cfg.agent_hidden])
        self.step_input = mlp([cfg.stoch + cfg.num_actions, hid], last_act=True)
        self.cell = nn.GRUCell(hid, cfg.deter)
        self.prior = GaussianHead([cfg.deter, hid, cfg.stoch], cfg.min_std)
        self.posterior = GaussianHead([cfg.deter + e, hid, cfg.stoch], cfg.min_std)
        self.obs_decoder = ObsDecoder(cfg, cfg.deter + cfg.stoch)
        self.reward_head = mlp([cfg.deter, hid, 1])
        self.done_head = mlp([cfg.deter, hid, 1])

    # ----------------------------------------------------------------------------------------------
    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """Recorded observations (..., H, W, C) -> embeddings (..., embed)."""
        lead = obs.shape[:-3]
        flat = self.obs_encoder(obs.reshape(-1, *obs.shape[-3:]))  # (N, embed)
        return flat.reshape(*lead, -1)

    def encode(self, obs: torch.Tensor, agent_state: torch.Tensor, mask: "torch.Tensor | None" = None) -> Gaussian:
        """q(z | context): ``obs`` (B, K, H, W, C) the first K = ``context_frames`` frames, ``agent_state``
        (B, agent_hidden) the state the agent received at the first, ``mask`` (B, K) False where a frame is
        padding (an episode shorter than K)."""
        b, k = obs.shape[:2]
        if k != self.config.context_frames:
            raise ValueError(f"the simulator's encoder reads {self.config.context_frames} context frames, got {k} "
                             f"(obs of shape {tuple(obs.shape)})")
        if tuple(obs.shape[2:]) != tuple(self.config.obs_shape):
            raise ValueError(f"context observations of shape {tuple(obs.shape[2:])}; the simulator was built for "
                             f"{tuple(self.config.obs_shape)}")
        mask = torch.ones(b, k, dtype=torch.bool, device=obs.device) if mask is None else mask.bool()
        frames = self.embed(obs) * mask[..., None]  # (B, K, embed), padding zeroed
        x = torch.cat([frames.flatten(1), mask.float(), agent_state.float()], -1)  # (B, K*embed + K + hidden)
        return self.context_encoder(x)

    def initial(self, z: torch.Tensor) -> tuple:
        """The converters: z (B, latent) -> (h_0 (B, deter), s_0 (B, stoch), hx_0 (B, agent_hidden))."""
        h0, s0 = self.to_sim_state(z).split([self.config.deter, self.config.stoch], -1)
        return torch.tanh(h0), s0, self.to_agent_state(z)

    def transition(self, h: torch.Tensor, s: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """h_{t+1} = GRU(h_t, [s_t, a_t]); ``action`` (B, A) one-hot (or straight-through one-hot)."""
        return self.cell(self.step_input(torch.cat([s, action.to(s.dtype)], -1)), h)  # (B, deter)

    def decode_obs(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """(h_t, s_t) -> the decoder's output for o_t, (B, H, W, channels) (see :mod:`policylens.sim.obs`)."""
        return self.obs_decoder(torch.cat([h, s], -1))

    def reward(self, h_next: torch.Tensor) -> torch.Tensor:
        """Reward of the action that led to ``h_next`` (B, deter): (B,)."""
        return self.reward_head(h_next).squeeze(-1)

    def done_logit(self, h_next: torch.Tensor) -> torch.Tensor:
        """Logit that the action that led to ``h_next`` ended the episode: (B,)."""
        return self.done_head(h_next).squeeze(-1)
