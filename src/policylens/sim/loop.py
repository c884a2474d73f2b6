"""The frozen agent inside the simulator: unroll from a latent, every step differentiable.

Each step t: the simulator decodes o_t from its state (h_t, s_t); the agent reads it with the state hx_t it
received and gives logits, value and hx_{t+1}; an action a_t (the agent's own, or a recorded one when
teacher-forced) drives h_{t+1} = GRU(h_t, [s_t, a_t]); reward and done of a_t are read from h_{t+1}; s_{t+1}
comes from the prior (imagined) or the posterior given the recorded o_{t+1} (teacher-forced).

>>> sim, agent = load_sim("runs/x")                              # Simulator, FrozenAgent
>>> z = torch.randn(8, sim.config.latent, requires_grad=True)
>>> r = rollout(sim, agent, z, steps=20, mode="modal")           # imagined, agent-driven
>>> r.value[:, 10].sum().backward()                              # gradients through time to z and every step
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..agents import ActorCritic, AgentOutput
from .model import Gaussian, Simulator
from .obs import agent_view

MODES = ("modal", "sample")
VIEWS = ("modal", "sample")  # what the agent sees: each cell's likeliest code, or one drawn from its distribution


def agent_sha256(agent: nn.Module) -> str:
    """sha256 of the agent's weights as safetensors bytes: equal to the sha256 of its ``weights.safetensors``
    file (the identity a rollouts store records as ``agent_sha256``)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in agent.state_dict().items()}
    return hashlib.sha256(safetensors_bytes(tensors)).hexdigest()


class FrozenAgent:
    """A deep copy of an agent in eval mode with ``requires_grad`` off on every parameter.

    Gradients flow through it to its inputs (observations, hidden state) but its parameters never get a
    ``.grad`` and never change; the agent given is not modified. Deliberately not an ``nn.Module``, so it
    is never registered inside the simulator's state dict, optimizer or DDP wrapper.

    ``guest``: an agent other than the one the simulator was trained with, driving it in that one's place
    (:func:`rollout`: the same observation and action spaces, any state; it starts from its own initial state,
    not the simulator's guess of the trained agent's). A guest may be feed-forward or scripted: its state is
    then an empty ``(B, 0)`` tensor. Without ``guest`` the agent must be recurrent (the simulator reads and
    predicts its hidden state).
    """

    def __init__(self, agent: nn.Module, guest: bool = False):
        init = getattr(agent, "initial_state", None)
        first = init(1) if callable(init) else None  # (1, hidden); None: a feed-forward agent
        recurrent = first is not None
        if not recurrent and not guest:
            raise ValueError(f"the simulator needs a recurrent agent (its hidden state hx is a training target and "
                             f"carries the agent's memory through the rollout); {type(agent).__name__} "
                             "has no recurrent state")
        self.guest, self.stateless = bool(guest), not recurrent
        self.sha256 = agent_sha256(agent)
        # any agent module; typed by the interface of policylens's actor-critics, which recurrent agents share
        self.net = cast(ActorCritic, copy.deepcopy(agent).eval())
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.obs_shape = tuple(getattr(agent, "obs_shape", ()))
        self.num_actions = int(getattr(agent, "num_actions", 0))
        self.hidden = int(first.shape[-1]) if first is not None else 0
        self.action_names = list(getattr(agent, "action_names", []))

    def __call__(self, obs: torch.Tensor, hx: torch.Tensor) -> AgentOutput:
        """``obs`` (B, H, W, C) float or uint8, ``hx`` (B, hidden) -> AgentOutput(logits, value, next hx)."""
        if self.stateless:
            out = self.net(obs)
            return AgentOutput(out.logits, out.value, hx)  # hx: (B, 0)
        return self.net(obs, hx)

    def initial_state(self, batch: int) -> torch.Tensor:
        if self.stateless:
            return torch.zeros(batch, 0)
        state = self.net.initial_state(batch)  # (B, hidden)
        assert state is not None, "a stateful agent has an initial state"
        return state.detach()

    @property
    def batches_time(self) -> bool:
        """Whether :meth:`sequence` can run the feature extractor once over all steps (an actor-critic with
        ``features``, a GRU cell and ``pi`` / ``v`` heads, as every policylens recurrent agent)."""
        net = self.net
        return not self.stateless and \
            all(callable(getattr(net, n, None)) for n in ("features", "pi", "v", "hx", "check_obs")) and \
            isinstance(getattr(net, "gru", None), nn.GRUCell)

    def sequence(self, obs: torch.Tensor, hx: torch.Tensor) -> tuple:
        """The agent over ``obs`` (B, T, H, W, C) from state ``hx`` (B, hidden), carrying its state: the same as
        T calls, with the convolutions run once over all B*T frames. Returns ``(logits (B, T, A), value (B, T),
        received (B, T, hidden), last (B, hidden))``; ``received[:, t]`` is the state the agent read at t."""
        b, t = obs.shape[:2]
        net = self.net
        net.check_obs(obs[:, 0])
        x = net.features(obs.reshape(b * t, *obs.shape[2:])).reshape(b, t, -1)  # (B, T, F)
        received, produced = [], []
        for k in range(t):
            received.append(hx)
            hx = net.hx(net.gru(x[:, k], hx))  # (B, hidden)
            produced.append(hx)
        out = torch.stack(produced, 1)  # (B, T, hidden)
        return net.pi(out), net.v(out).squeeze(-1), torch.stack(received, 1), hx

    def to(self, device) -> "FrozenAgent":
        self.net.to(device)
        return self


@dataclass
class Context:
    """What the encoder reads: the first K frames of a window and the agent's state at the first."""

    obs: torch.Tensor  # (B, K, H, W, C) recorded observations
    agent_state: torch.Tensor  # (B, hidden) the state the agent received at the first frame
    mask: "torch.Tensor | None" = None  # (B, K) bool, False on padding past an episode's end

    def rows(self, index) -> "Context":
        """The contexts of some batch rows."""
        return Context(self.obs[index], self.agent_state[index], None if self.mask is None else self.mask[index])


@dataclass
class Noise:
    """Standard draws for one rollout, fixed up front so a rollout is a function of its inputs alone."""

    z: torch.Tensor  # (B, latent) for z ~ q(z | context)
    s: torch.Tensor  # (B, T, stoch) for s_t, t >= 1 (index 0 unused: s_0 comes from the converter)
    gumbel: torch.Tensor  # (B, T, A) Gumbel(0, 1) noise for mode="sample"
    view: "torch.Tensor | None" = None  # (B, T, H, W, planes) uniforms for view="sample"

    @classmethod
    def draw(cls, batch: int, steps: int, sim: Simulator, generator: "torch.Generator | None" = None,
             device="cpu", view: bool = False) -> "Noise":
        """Every draw up front; ``view``: also the uniforms of sampled views (drawn last, so z, s and the Gumbel
        noise are the same with or without them)."""
        cfg = sim.config
        z = torch.randn(batch, cfg.latent, generator=generator)
        s = torch.randn(batch, steps, cfg.stoch, generator=generator)
        u = torch.rand(batch, steps, cfg.num_actions, generator=generator).clamp(1e-10, 1 - 1e-7)
        cells = torch.rand(batch, steps, *cfg.obs_shape[:2], len(cfg.planes), generator=generator) if view else None
        return cls(z, s, -torch.log(-torch.log(u)), cells).to(device)

    def rows(self, index) -> "Noise":
        """The draws of some batch rows (e.g. one DDP rank's share of a global batch)."""
        return Noise(self.z[index], self.s[index], self.gumbel[index], None if self.view is None else self.view[index])

    def to(self, device) -> "Noise":
        return Noise(self.z.to(device), self.s.to(device), self.gumbel.to(device),
                     None if self.view is None else self.view.to(device))


@dataclass
class Rollout:
    """Per-step tensors of one unroll, all differentiable (T = steps, s_t and h_t the state o_t comes from)."""

    z: torch.Tensor  # (B, latent) the latent it unrolled from
    obs: torch.Tensor  # (B, T, H, W, C) float, what the agent saw
    decoded: torch.Tensor  # (B, T, H, W, channels) the decoder's output: categorical logits or pixels
    logits: torch.Tensor  # (B, T, A) the agent's policy logits
    value: torch.Tensor  # (B, T) the agent's value
    hx: torch.Tensor  # (B, T, hidden) the state the agent received at t (as the store's agent_state)
    hx_last: torch.Tensor  # (B, hidden) the agent's state after the last step
    action: torch.Tensor  # (B, T, A) one-hot (straight-through) action that drove the dynamics
    h: torch.Tensor  # (B, T, deter) deterministic simulator state
    s: torch.Tensor  # (B, T, stoch) stochastic simulator state
    reward: torch.Tensor  # (B, T) predicted reward of a_t
    done_logit: torch.Tensor  # (B, T) predicted logit that a_t ended the episode
    prior: Gaussian  # (B, T-1, stoch) p(s_t | h_t) for t >= 1
    posterior: "Gaussian | None"  # (B, m-1, stoch) q(s_t | h_t, o_t) for 1 <= t < m, the m recorded frames given
    z_dist: "Gaussian | None"  # (B, latent) q(z | context) when started from a context

    @property
    def done(self) -> torch.Tensor:
        """(B, T) predicted probability that a_t ended the episode."""
        return torch.sigmoid(self.done_logit)

    @property
    def action_index(self) -> torch.Tensor:
        """(B, T) long."""
        return self.action.argmax(-1)

    def detach(self) -> "Rollout":
        def cut(v):
            if isinstance(v, Gaussian):
                return v.detach()
            return v.detach() if isinstance(v, torch.Tensor) else v

        return Rollout(**{f.name: cut(getattr(self, f.name)) for f in fields(self)})


def choose_action(logits: torch.Tensor, mode: str, gumbel: "torch.Tensor | None" = None,
                  temperature: float = 1.0) -> torch.Tensor:
    """A one-hot action (B, A) from logits (B, A), differentiable by straight-through.

    ``modal``: the argmax one-hot forward, softmax(logits) backward. ``sample``: straight-through
    Gumbel-softmax: argmax of logits + ``gumbel`` forward, softmax((logits + gumbel) / temperature) backward.
    """
    if mode not in MODES:
        raise ValueError(f"action mode {mode!r}; expected one of {MODES}")
    if mode == "sample":
        if gumbel is None:
            raise ValueError("mode='sample' needs Gumbel noise")
        logits = logits + gumbel
    soft = F.softmax(logits / (temperature if mode == "sample" else 1.0), -1)  # (B, A)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)  # (B, A)
    return hard + (soft - soft.detach())  # exactly the one-hot forward


def _start(sim: Simulator, start, latent: str, noise: "Noise | None") -> tuple:
    """``(z, q(z) or None)`` from a latent tensor or a :class:`Context` (``noise``: drawn for ``latent="sample"``)."""
    if isinstance(start, Context):
        q = sim.encode(start.obs, start.agent_state, start.mask)
        return q.sample(noise.z if latent == "sample" and noise is not None else None), q
    if isinstance(start, torch.Tensor):
        if start.dim() != 2 or start.shape[1] != sim.config.latent:
            raise ValueError(f"z must be (B, {sim.config.latent}), got {tuple(start.shape)}")
        return start, None
    raise ValueError(f"rollout starts from a latent z (B, latent) tensor or a Context, got {type(start).__name__}")


def _check(sim: Simulator, agent: FrozenAgent, steps: int, mode: str, latent: str, view: str) -> None:
    if not isinstance(agent, FrozenAgent):
        raise ValueError(f"rollout needs a FrozenAgent (policylens.sim.FrozenAgent(agent)), got {type(agent).__name__}")
    cfg = sim.config
    wrong_obs = bool(agent.obs_shape) and tuple(agent.obs_shape) != tuple(cfg.obs_shape)
    if agent.guest and (wrong_obs or agent.num_actions != cfg.num_actions):
        raise ValueError(f"agent takes obs {agent.obs_shape} and {agent.num_actions} actions; the simulator was built "
                         f"for obs {tuple(cfg.obs_shape)} and {cfg.num_actions} actions (an agent in the simulator "
                         "needs the same observation and action spaces)")
    if not agent.guest and (wrong_obs or agent.num_actions != cfg.num_actions or agent.hidden != cfg.agent_hidden):
        raise ValueError(f"agent takes obs {agent.obs_shape}, {agent.num_actions} actions, hidden {agent.hidden}; the "
                         f"simulator was built for obs {tuple(cfg.obs_shape)}, {cfg.num_actions} actions, "
                         f"hidden {cfg.agent_hidden}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if mode not in MODES:
        raise ValueError(f"action mode {mode!r}; expected one of {MODES}")
    if latent not in ("sample", "mean"):
        raise ValueError(f"latent {latent!r}; expected 'sample' (draw s_t and z) or 'mean' (their means)")
    if view not in VIEWS:
        raise ValueError(f"view {view!r}; expected one of {VIEWS}")
    if view == "sample" and cfg.obs_kind == "pixels":
        raise ValueError("view='sample' draws each cell's code from a categorical decoder; this simulator decodes "
                         "pixels")


def rollout(sim: Simulator, agent: FrozenAgent, start, steps: int, mode: str = "modal", detach_actions: bool = False,
            *, actions: "torch.Tensor | None" = None, obs: "torch.Tensor | None" = None,
            mask: "torch.Tensor | None" = None, latent: str = "sample", noise: "Noise | None" = None,
            generator: "torch.Generator | None" = None, temperature: float = 1.0,
            straight_through: "bool | None" = None, view: str = "modal", intervene=None,
            agent_state: "torch.Tensor | None" = None) -> Rollout:
    """Unroll the simulator with the frozen agent inside for ``steps`` steps from ``start``.

    ``start``: a latent z (B, latent) (e.g. ``torch.randn`` or a tensor being optimised) or a
    :class:`Context` (encoded to q(z | context), then sampled or its mean).
    Imagined (default): the agent's action (``mode`` ``modal`` or ``sample``, straight-through) drives the
    dynamics and s_t comes from the prior. Teacher-forced: ``actions`` (B, T) recorded action indices drive
    the dynamics instead, and with ``obs`` (B, T, H, W, C) recorded observations s_t comes from the
    posterior given o_t (``mask`` (B, T) False where a window runs past its episode: the prior there).
    A recorded prefix: ``actions`` (B, n) with n < T drive the first n steps and the agent the rest; ``obs``
    (B, m, ...) with m <= n + 1 filter s_1 .. s_{m-1} (the agent takes over from a filtered real start).
    ``detach_actions``: the action fed to the dynamics carries no gradient (cuts the environment path from
    the agent's logits back through the simulator). ``latent="mean"``: z and every s_t are their
    distributions' means (deterministic); else they are drawn with ``noise`` (or fresh from ``generator``).
    ``straight_through``: overrides the config's choice of hard categorical observations for the agent.
    ``view``: what the agent sees of a categorical decoder: ``modal`` (each cell's likeliest code) or ``sample``
    (a code drawn from each cell's distribution with ``noise.view``; hard, straight-through gradients): a
    sampled world, where the modal view drops what the simulator spreads over several cells (a moving ball).
    ``intervene(name, t, tensor) -> tensor``: called on ``"h"``, ``"s"`` (the simulator's state), ``"obs"`` (what
    the agent sees), ``"hx"`` (the state it receives) and ``"action"`` (what drives the dynamics) at every step
    before they are used; what it returns is used and recorded. For edits (swap a hidden-state direction) and
    gradient probes (return ``tensor + probe`` with a zero ``probe`` that requires grad: its gradient is the
    gradient w.r.t. that step's tensor).
    ``agent_state`` (B, hidden): the state the agent receives at the first step in place of the converter's hx_0
    (a real start's recorded state, :func:`filtered_start`). A guest agent (``FrozenAgent(agent, guest=True)``)
    ignores it and the converter's: it starts from its own initial state.
    """
    _check(sim, agent, steps, mode, latent, view)
    agent_acts = actions is None or actions.dim() != 2 or actions.shape[1] < steps  # the agent picks some action
    if noise is None and (latent == "sample" or (mode == "sample" and agent_acts) or view == "sample"):
        batch = start.obs.shape[0] if isinstance(start, Context) else start.shape[0]
        noise = Noise.draw(batch, steps, sim, generator, device=next(sim.parameters()).device,
                           view=view == "sample")
    draws = noise.view if view == "sample" and noise is not None else None  # (B, T, H, W, planes)
    if view == "sample" and draws is None:
        raise ValueError("view='sample' needs noise drawn with its view uniforms: Noise.draw(..., view=True)")
    z, z_dist = _start(sim, start, latent, noise)
    forced = _recorded_steps(z.shape[0], steps, actions, obs)
    h, s, hx = sim.initial(z)  # (B, deter), (B, stoch), (B, hidden)
    if agent.guest:  # its own first state: the converter's and a recorded one are the trained agent's
        hx = agent.initial_state(z.shape[0]).to(device=h.device, dtype=h.dtype)  # (B, its hidden)
    elif agent_state is not None:
        hx = agent_state.to(device=h.device, dtype=h.dtype)  # (B, hidden)
    embeds = sim.embed(obs[:, 1:steps]) if obs is not None and min(steps, obs.shape[1]) > 1 else None  # (B, m-1, E)
    keep = mask.bool() if mask is not None else None  # (B, m)
    if forced == steps and intervene is None and not detach_actions and agent.batches_time:
        return _recorded(sim, agent, z, z_dist, (h, s, hx), steps, actions, embeds, keep, latent, noise,
                         straight_through, draws)
    out: dict[str, list] = {k: [] for k in ("obs", "decoded", "logits", "value", "hx", "action", "h", "s", "reward",
                                            "done_logit", "prior_mean", "prior_std", "post_mean", "post_std")}
    tap = intervene or (lambda name, t, x: x)
    for t in range(steps):
        h, s = tap("h", t, h), tap("s", t, s)
        decoded = sim.decode_obs(h, s)  # (B, H, W, channels)
        draw = None if draws is None else draws[:, t]  # (B, H, W, planes)
        seen = tap("obs", t, agent_view(decoded, sim.config, straight_through, draw))  # (B, H, W, C)
        hx = tap("hx", t, hx)
        step = agent(seen, hx)
        if actions is not None and t < forced:
            action = F.one_hot(actions[:, t].long(), sim.config.num_actions).to(seen.dtype)  # (B, A)
        else:
            gumbel = noise.gumbel[:, t] if mode == "sample" and noise is not None else None  # (B, A)
            action = choose_action(step.logits, mode, gumbel, temperature)  # (B, A)
        if detach_actions:
            action = action.detach()
        action = tap("action", t, action)
        h_next = sim.transition(h, s, action)  # (B, deter)
        for key, value in (("obs", seen), ("decoded", decoded), ("logits", step.logits), ("value", step.value),
                           ("hx", hx), ("action", action), ("h", h), ("s", s), ("reward", sim.reward(h_next)),
                           ("done_logit", sim.done_logit(h_next))):
            out[key].append(value)
        hx = step.state
        if t + 1 == steps:
            break
        h, s = h_next, _next_stochastic(sim, h_next, t, embeds, keep, latent, noise, out)

    return _assemble(sim, z, z_dist, out, hx, embeds is not None)


def _recorded_steps(batch: int, steps: int, actions, obs) -> int:
    """How many leading steps recorded ``actions`` drive (0: none), checking the shapes of a recorded prefix."""
    if actions is None:
        if obs is not None:
            raise ValueError("teacher forcing with recorded obs needs the recorded actions too")
        return 0
    if actions.dim() != 2 or actions.shape[0] != batch or not 1 <= actions.shape[1] <= steps:
        raise ValueError(f"recorded actions must be (B, n) with 1 <= n <= steps: B = {batch}, steps = {steps}; got "
                         f"{tuple(actions.shape)}")
    if obs is not None and obs.shape[1] > actions.shape[1] + 1:
        raise ValueError(f"{obs.shape[1]} recorded frames need the {obs.shape[1] - 1} recorded actions between them; "
                         f"got {actions.shape[1]}")
    return int(actions.shape[1])


def _next_stochastic(sim: Simulator, h_next, t: int, embeds, keep, latent: str, noise, out: dict) -> torch.Tensor:
    """s_{t+1} (B, stoch): from the prior p(s | h_{t+1}), or teacher-forced from the posterior given the recorded
    o_{t+1} (``embeds``, while there are recorded frames; the prior past an episode's end, where ``keep`` is
    False); the distributions are appended to ``out``."""
    dist = prior = sim.prior(h_next)
    if embeds is not None and t < embeds.shape[1]:
        posterior = sim.posterior(torch.cat([h_next, embeds[:, t]], -1))
        if keep is not None:  # past the episode's end there is no o_{t+1}: the prior
            posterior = posterior.where(keep[:, t + 1], prior)
        out["post_mean"].append(posterior.mean)
        out["post_std"].append(posterior.std)
        dist = posterior
    out["prior_mean"].append(prior.mean)
    out["prior_std"].append(prior.std)
    return dist.sample(None if latent == "mean" else noise.s[:, t + 1])


def _assemble(sim: Simulator, z, z_dist, out: dict, hx_last, teacher_forced: bool) -> Rollout:
    """The :class:`Rollout` from per-step lists (or ready (B, T, ...) tensors) in ``out``."""

    def stacked(key, empty_dim=None):
        if isinstance(out[key], torch.Tensor):
            return out[key]
        if not out[key]:
            return z.new_zeros(z.shape[0], 0, empty_dim) if empty_dim else None
        return torch.stack(out[key], 1)

    stoch = sim.config.stoch
    prior = Gaussian(stacked("prior_mean", stoch), stacked("prior_std", stoch))
    posterior = Gaussian(stacked("post_mean", stoch), stacked("post_std", stoch)) if teacher_forced else None
    return Rollout(z=z, obs=stacked("obs"), decoded=stacked("decoded"), logits=stacked("logits"),
                   value=stacked("value"), hx=stacked("hx"), hx_last=hx_last, action=stacked("action"),
                   h=stacked("h"), s=stacked("s"), reward=stacked("reward"), done_logit=stacked("done_logit"),
                   prior=prior, posterior=posterior, z_dist=z_dist)


def _recorded(sim: Simulator, agent: FrozenAgent, z, z_dist, state: tuple, steps: int, actions, embeds, keep,
              latent: str, noise, straight_through, draws=None) -> Rollout:
    """:func:`rollout` driven by recorded actions, batched over time: with the actions given, the simulator's
    states do not depend on what the agent sees, so they are unrolled first (small GRU and MLP steps) and the
    decoder, the agent's convolutions and the heads then run once over all B*T steps. Equal to the step-by-step
    loop up to float rounding (tested); several times faster on a CPU."""
    h, s, hx = state
    b = z.shape[0]
    onehot = F.one_hot(actions.long(), sim.config.num_actions).to(h.dtype)  # (B, T, A)
    out: dict[str, Any] = {k: [] for k in ("h", "s", "h_next", "prior_mean", "prior_std", "post_mean", "post_std")}
    for t in range(steps):
        out["h"].append(h)
        out["s"].append(s)
        h_next = sim.transition(h, s, onehot[:, t])  # (B, deter)
        out["h_next"].append(h_next)
        if t + 1 == steps:
            break
        h, s = h_next, _next_stochastic(sim, h_next, t, embeds, keep, latent, noise, out)
    hs, ss, nexts = (torch.stack(out.pop(k), 1) for k in ("h", "s", "h_next"))  # (B, T, deter | stoch | deter)
    decoded = sim.decode_obs(hs.flatten(0, 1), ss.flatten(0, 1))  # (B*T, H, W, channels)
    seen = agent_view(decoded, sim.config, straight_through,
                      None if draws is None else draws[:, :steps].flatten(0, 1))  # (B*T, H, W, C)
    decoded, seen = decoded.reshape(b, steps, *decoded.shape[1:]), seen.reshape(b, steps, *seen.shape[1:])
    logits, value, received, last = agent.sequence(seen, hx)
    flat = nexts.flatten(0, 1)  # (B*T, deter)
    out.update(obs=seen, decoded=decoded, logits=logits, value=value, hx=received, action=onehot, h=hs, s=ss,
               reward=sim.reward(flat).reshape(b, steps), done_logit=sim.done_logit(flat).reshape(b, steps))
    return _assemble(sim, z, z_dist, out, last, embeds is not None)


def filtered_start(windows, k: int) -> dict:
    """:func:`rollout` keywords for a start filtered through the K real context frames of ``windows``
    (:class:`~policylens.sim.data.Windows`): their recorded actions up to the last (the agent acts from the last
    context frame on), the frames for the posterior, and the recorded agent state at the first frame in place of
    the converter's. Frames decoded from z alone can show what is not there (on the zoo's MiniGrid simulator, a
    goal in a third of the episode starts), and an agent acting on them walks towards it."""
    real = dict(agent_state=windows.agent_state[:, 0])  # (B, hidden)
    if k > 1:
        real.update(actions=windows.action[:, :k - 1], obs=windows.obs[:, :k], mask=windows.mask[:, :k])
    return real


def check_starts(starts, samples: int) -> None:
    """Refuse real starts (anything with ``obs`` rows) whose count is not ``samples``."""
    if starts is not None and starts.obs.shape[0] != samples:
        raise ValueError(f"{starts.obs.shape[0]} real starts for {samples} samples")


def windows_start(windows, rows: slice, k: int, device) -> tuple:
    """Rows ``rows`` of real ``windows`` as a start: ``(their K-frame context, the filtered start's
    :func:`rollout` keywords)`` on ``device``."""
    part = windows.rows(rows).to(device)
    return part.context(k), filtered_start(part, k)
