"""A compact, faithful re-implementation of CleanRL's PPO on policylens's envs: the yardstick for our trainer.

Written from CleanRL's published description and hyperparameters (docs.cleanrl.dev/rl-algorithms/ppo), sharing no
code with ``policylens.train``; only the env (``policylens.envs.make``) is ours, so both trainers see identical
observations. Three variants, as CleanRL's three scripts:

- ``ppo`` (``ppo.py``): separate actor and critic MLPs (64-64 tanh), orthogonal init with gain sqrt(2) on hidden
  layers, 0.01 on the policy head, 1 on the value head, zero biases; Adam (eps 1e-5) with linear lr annealing;
  GAE; per-minibatch advantage normalisation; clipped surrogate; clipped value loss; entropy bonus; gradient-norm
  clipping; no reward normalisation.
- ``ppo_atari`` (``ppo_atari.py``): a shared Nature CNN trunk (obs / 255), 8 envs, lr 2.5e-4, clip 0.1.
- ``ppo_procgen`` (``ppo_procgen.py``): a shared IMPALA CNN trunk (torch's default init, CleanRL's init on the two
  heads), 64 envs x 256 steps, lr 5e-4 not annealed, gamma 0.999, 8 minibatches, 3 epochs, reward normalisation.

``net`` may also name a policylens architecture (``policylens:cnn``): its trunk with CleanRL's init on every layer,
to compare trainers on one network. Observations are stored as the env gives them (uint8) and scaled by the net.

    python -m benchmarks.reference_ppo --env "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=onehot" --lr 1e-3 \\
        --num-envs 16 --num-minibatches 8 --total-frames 100000
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Optional

import numpy as np
import torch
from torch import nn

from policylens import envs
from policylens.agents.base import AgentOutput
from policylens.config import add_dataclass_args, from_args


@dataclass
class RefConfig:
    env: str = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=onehot"
    """env spec"""
    variant: str = "ppo"
    """the CleanRL script whose defaults fill the unset fields: ppo | ppo_atari | ppo_procgen"""
    net: Optional[str] = None
    """mlp | nature | impala | policylens:ARCH (default: the variant's)"""
    total_frames: int = 100_000
    """environment frames"""
    num_envs: Optional[int] = None
    """parallel envs (default: the variant's)"""
    num_steps: Optional[int] = None
    """steps per env per rollout (default: the variant's)"""
    lr: Optional[float] = None
    """Adam learning rate (default: the variant's)"""
    anneal_lr: Optional[bool] = None
    """anneal the lr linearly to 0 (default: the variant's)"""
    gamma: Optional[float] = None
    """discount (default: the variant's)"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: Optional[int] = None
    """minibatches per epoch (default: the variant's)"""
    update_epochs: Optional[int] = None
    """epochs per rollout (default: the variant's)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: Optional[float] = None
    """surrogate (and value) clip range (default: the variant's)"""
    clip_vloss: bool = True
    """clip the value loss as the surrogate"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """value-loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient-norm clip"""
    target_kl: float = 0.0
    """stop an update's epochs once approx KL exceeds this (0: never)"""
    norm_reward: Optional[bool] = None
    """divide rewards by the running std of the discounted return, clip to +-10 (default: the variant's)"""
    hidden: int = 64
    """MLP width (net mlp)"""
    activation: str = "tanh"
    """MLP activation: tanh | relu (net mlp)"""
    init: str = "cleanrl"
    """cleanrl (orthogonal, gains sqrt(2) / 0.01 / 1, zero bias) | torch (PyTorch's default init; net mlp)"""
    seed: int = 1
    """seeds torch, numpy and the envs"""
    threads: int = 1
    """torch threads"""


_COMMON = dict(num_steps=128, anneal_lr=True, gamma=0.99, num_minibatches=4, update_epochs=4, norm_reward=False)
VARIANTS = {
    "ppo": dict(_COMMON, net="mlp", num_envs=4, lr=2.5e-4, clip_coef=0.2),
    "ppo_atari": dict(_COMMON, net="nature", num_envs=8, lr=2.5e-4, clip_coef=0.1),
    "ppo_procgen": dict(net="impala", num_envs=64, num_steps=256, lr=5e-4, anneal_lr=False, gamma=0.999,
                        num_minibatches=8, update_epochs=3, clip_coef=0.2, norm_reward=True),
}


def resolve(cfg: RefConfig) -> RefConfig:
    """Every unset (None) field from the variant; explicit values win."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; expected one of {', '.join(VARIANTS)}")
    return replace(cfg, **{k: v for k, v in VARIANTS[cfg.variant].items() if getattr(cfg, k) is None})


def layer_init(layer: nn.Module, std: float = np.sqrt(2)) -> nn.Module:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class Actor_Critic(nn.Module):
    """``ppo.py``'s agent: two separate MLPs on the flattened, scaled observation."""

    def __init__(self, n_in: int, n_act: int, scale: float, hidden: int, activation: str, init: str):
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        li = layer_init if init == "cleanrl" else (lambda layer, std=None: layer)
        self.scale = scale
        self.critic = nn.Sequential(li(nn.Linear(n_in, hidden)), act(), li(nn.Linear(hidden, hidden)), act(),
                                    li(nn.Linear(hidden, 1), std=1.0))
        self.actor = nn.Sequential(li(nn.Linear(n_in, hidden)), act(), li(nn.Linear(hidden, hidden)), act(),
                                   li(nn.Linear(hidden, n_act), std=0.01))

    def forward(self, obs, state=None, first=None) -> AgentOutput:
        x = obs.flatten(1).float() * self.scale  # (B, H*W*C)
        return AgentOutput(self.actor(x), self.critic(x).squeeze(-1), None)


class SharedTrunk(nn.Module):
    """``ppo_atari.py`` / ``ppo_procgen.py``'s agent: one trunk (uint8 obs -> features), a policy and a value head."""

    def __init__(self, trunk: nn.Module, feat: int, n_act: int):
        super().__init__()
        self.trunk = trunk
        self.actor, self.critic = layer_init(nn.Linear(feat, n_act), 0.01), layer_init(nn.Linear(feat, 1), 1.0)

    def forward(self, obs, state=None, first=None) -> AgentOutput:
        h = self.trunk(obs)  # (B, F)
        return AgentOutput(self.actor(h), self.critic(h).squeeze(-1), None)


class _CHW(nn.Module):
    """(B, H, W, C) uint8 -> (B, C, H, W) float times ``scale``."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, obs):
        return obs.permute(0, 3, 1, 2).float() * self.scale


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c0, self.c1 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.c1(torch.relu(self.c0(torch.relu(x))))


def _impala(c: int, h: int, w: int) -> list:
    layers = []
    for out in (16, 32, 32):
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.MaxPool2d(3, 2, padding=1), _Res(out), _Res(out)]
        c, h, w = out, (h + 1) // 2, (w + 1) // 2
    return layers + [nn.Flatten(), nn.ReLU(), nn.Linear(c * h * w, 256), nn.ReLU()]


def _nature(c: int, h: int, w: int) -> list:
    convs = [layer_init(nn.Conv2d(c, 32, 8, 4)), nn.ReLU(), layer_init(nn.Conv2d(32, 64, 4, 2)), nn.ReLU(),
             layer_init(nn.Conv2d(64, 64, 3, 1)), nn.ReLU(), nn.Flatten()]
    with torch.no_grad():
        flat = nn.Sequential(*convs)(torch.zeros(1, c, h, w)).shape[1]
    return convs + [layer_init(nn.Linear(flat, 512)), nn.ReLU()]


class _PolicylensTrunk(nn.Module):
    """A policylens architecture's feature trunk (its ``features``), every conv/linear with CleanRL's init."""

    def __init__(self, arch: str, obs_shape, n_act: int, scale: float):
        super().__init__()
        from policylens.agents import AgentConfig, build

        net = build(AgentConfig(arch=arch, obs_shape=tuple(obs_shape), num_actions=n_act, obs_scale=scale))
        del net.pi, net.v
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                layer_init(m)
        self.net = net

    def forward(self, obs):  # (B, H, W, C) uint8 -> (B, F)
        return self.net.features(obs)


def make_agent(cfg: RefConfig, env) -> nn.Module:
    shape, n_act, scale = tuple(env.observation_space.shape), int(env.action_space.n), float(env.obs_scale)
    h, w, c = shape
    if cfg.net == "mlp":
        return Actor_Critic(h * w * c, n_act, scale, cfg.hidden, cfg.activation, cfg.init)
    if cfg.net in ("nature", "impala"):
        trunk = nn.Sequential(_CHW(scale), *(_nature if cfg.net == "nature" else _impala)(c, h, w))
    elif cfg.net.startswith("policylens:"):
        trunk = _PolicylensTrunk(cfg.net.split(":", 1)[1], shape, n_act, scale)
    else:
        raise ValueError(f"unknown net {cfg.net!r}; expected mlp, nature, impala or policylens:ARCH")
    with torch.no_grad():
        feat = trunk(torch.zeros((1, *shape), dtype=torch.uint8)).shape[1]
    return SharedTrunk(trunk, feat, n_act)


class _ReturnScale:
    """Running variance of each env's discounted return; rewards divided by its std, clipped to +-10."""

    def __init__(self, n: int, gamma: float):
        self.g, self.ret, self.mean, self.var, self.count = gamma, np.zeros(n), 0.0, 1.0, 1e-4

    def __call__(self, r: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.g + r
        m, v, n = self.ret.mean(), self.ret.var(), len(self.ret)
        d, tot = m - self.mean, self.count + n
        self.mean, self.var = self.mean + d * n / tot, (self.var * self.count + v * n + d * d * self.count * n / tot) / tot
        self.count = tot
        self.ret[done] = 0.0
        return np.clip(r / np.sqrt(self.var + 1e-8), -10, 10)


def train_reference(cfg: RefConfig, on_update=None) -> dict:
    """Train; returns ``{"config", "curve": [{update, frames, seconds, episodes, return_mean, success_rate,
    return_100, success_100}], "episodes": [[frames, seconds, return, success], ...], "fps", "agent"}`` (``*_100``:
    over the last 100 finished episodes). ``on_update(row, episodes)`` returning true stops training there."""
    cfg = resolve(cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    N, T = cfg.num_envs, cfg.num_steps
    env = envs.make(cfg.env, num_envs=N, seed=cfg.seed)
    agent = make_agent(cfg, env)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    batch, mb = N * T, (N * T) // cfg.num_minibatches
    iterations = cfg.total_frames // batch
    obs_b = torch.zeros((T, N, *env.observation_space.shape), dtype=torch.uint8)
    act_b, logp_b, rew_b, done_b, val_b = (torch.zeros(T, N) for _ in range(5))
    scale = _ReturnScale(N, cfg.gamma) if cfg.norm_reward else None
    next_obs, next_done = torch.as_tensor(env.reset(cfg.seed)), torch.zeros(N)
    curve, episodes, frames, t0 = [], [], 0, time.perf_counter()
    for it in range(iterations):
        if cfg.anneal_lr:
            opt.param_groups[0]["lr"] = cfg.lr * (1.0 - it / iterations)
        ended = []
        for t in range(T):
            obs_b[t], done_b[t] = next_obs, next_done  # done_b[t]: obs_b[t] begins a new episode
            with torch.no_grad():
                logits, value, _ = agent(next_obs)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            act_b[t], logp_b[t], val_b[t] = action, dist.log_prob(action), value
            o, r, d, info = env.step(action.numpy())
            rew_b[t] = torch.as_tensor(scale(r, d) if scale else r, dtype=torch.float32)
            next_obs, next_done = torch.as_tensor(o), torch.as_tensor(d, dtype=torch.float32)
            frames += N
            ended += [i["episode"] for i in info if "episode" in i]
        seconds = time.perf_counter() - t0
        episodes += [[frames, seconds, e["return"], bool(e["success"])] for e in ended]
        with torch.no_grad():  # GAE, CleanRL's convention: a step does not bootstrap across the next 'done'
            next_value = agent(next_obs).value
            adv, last = torch.zeros(T, N), torch.zeros(N)
            for t in reversed(range(T)):
                nonterminal = 1.0 - (next_done if t == T - 1 else done_b[t + 1])
                nv = next_value if t == T - 1 else val_b[t + 1]
                delta = rew_b[t] + cfg.gamma * nv * nonterminal - val_b[t]
                adv[t] = last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
            ret = adv + val_b
        b_obs, b_act, b_logp = obs_b.reshape(batch, *obs_b.shape[2:]), act_b.reshape(-1).long(), logp_b.reshape(-1)
        b_adv, b_ret, b_val = adv.reshape(-1), ret.reshape(-1), val_b.reshape(-1)
        inds = np.arange(batch)
        for _ in range(cfg.update_epochs):
            rng.shuffle(inds)
            for s in range(0, batch, mb):
                i = torch.as_tensor(inds[s:s + mb])
                logits, value, _ = agent(b_obs[i])
                dist = torch.distributions.Categorical(logits=logits)
                logratio = dist.log_prob(b_act[i]) - b_logp[i]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                a = b_adv[i]
                if cfg.norm_adv:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                if cfg.clip_vloss:
                    vc = b_val[i] + (value - b_val[i]).clamp(-cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * torch.max((value - b_ret[i]) ** 2, (vc - b_ret[i]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((value - b_ret[i]) ** 2).mean()
                loss = pg - cfg.ent_coef * dist.entropy().mean() + cfg.vf_coef * v_loss
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                opt.step()
            if cfg.target_kl and approx_kl > cfg.target_kl:
                break
        last = episodes[-100:]
        row = {"update": it + 1, "frames": frames, "seconds": round(time.perf_counter() - t0, 3),
               "episodes": len(ended),
               "return_mean": float(np.mean([e["return"] for e in ended])) if ended else None,
               "success_rate": float(np.mean([e["success"] for e in ended])) if ended else None,
               "return_100": float(np.mean([e[2] for e in last])) if last else None,
               "success_100": float(np.mean([e[3] for e in last])) if last else None}
        curve.append(row)
        if on_update is not None and on_update(row, episodes):
            break
    env.close()
    seconds = time.perf_counter() - t0
    return {"config": asdict(cfg), "curve": curve, "episodes": episodes, "fps": frames / seconds,
            "frames": frames, "seconds": seconds, "agent": agent}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference_ppo", description=__doc__.split("\n")[0])
    add_dataclass_args(parser, RefConfig)
    cfg = from_args(RefConfig, parser.parse_args(argv))
    out = train_reference(cfg)
    for row in out["curve"]:
        print(json.dumps(row))
    print(f"{out['frames']} frames in {out['seconds']:.1f} s ({out['fps']:.0f} frames/s)")


if __name__ == "__main__":
    main()
