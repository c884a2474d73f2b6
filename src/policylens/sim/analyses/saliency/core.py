"""Saliency through time (Saliency as causality, "Saliency as causality"): the gradient of a target at step t of a simulated
rollout with respect to what the agent saw, the state it received, the simulator's state and the action at every
step 0..t, so one sees how far back the cause of a value or an action lies.

Each step's tensor gets a zero probe through :func:`~policylens.sim.loop.rollout`'s ``intervene``
(``tensor + probe``): the probe's gradient is the gradient w.r.t. that step's tensor. Two ways to count causes:

- ``through_env=True``: the actions the agent takes carry gradients into the simulator, so an observation at step
  k also matters through where the agent then went and what it saw next (the action's gradient is the
  straight-through surrogate, softmax(logits), not the derivative of the argmax, which is zero);
- ``through_env=False``: the actions are detached (``detach_actions``): only the agent's own memory and the
  simulator's autonomous dynamics carry the cause forward.

SmoothGrad in latent space: the mean of the gradients at ``smooth`` latents ``z + sigma * eps`` (eps ~ N(0, I)),
and VarGrad their variance (without Bessel's correction, as :mod:`policylens.attribution.methods`; its noise is a
fraction of an activation's range, here the latent's prior is N(0, I) so ``sigma`` is an absolute std).

>>> s = saliency(sim, agent, z, steps=21, target=make_target("value"), t=20, smooth=8)
>>> s.grads["obs"].shape            # (B, 21, H, W, C); zero after step 20
>>> s.norms()["hx"]                 # (B, 21) per-step gradient norms: how far back the cause lies

The hidden state a step's ``hx`` gradient refers to is the one the agent *received* there; the state it produced
at t is the one received at t + 1, so a target that reads the hidden state at t (neuron, direction) has a gradient
at hx step t + 1 too (the readout itself) and none later.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from ...loop import Context, Noise, Rollout, rollout
from ...targets import Target

PROBES = ("obs", "hx", "h", "s", "action")  # every step's tensors a gradient is taken w.r.t.


@dataclass
class Saliency:
    """Gradients of one target at step ``t`` of rollouts of ``T`` steps (B samples)."""

    grads: dict  # name -> (B, T, ...) d target / d that step's tensor (the SmoothGrad mean when smooth > 0)
    vargrad: "dict | None"  # name -> (B, T, ...) the gradients' variance over the noised latents (smooth > 0)
    z_grad: torch.Tensor  # (B, latent) d target / d z (mean over the noised latents when smooth > 0)
    target: torch.Tensor  # (B,) the target at the un-noised latents
    rollout: Rollout  # detached, unrolled from the un-noised latents (what the gradients are drawn over)
    t: int
    through_env: bool
    smooth: int = 0
    sigma: float = 0.0
    latent_noise: "torch.Tensor | None" = None  # (smooth, B, latent) eps: SmoothGrad's latents are z + sigma * eps

    def norms(self) -> dict:
        """Per-step L2 norms of each gradient: name -> (B, T)."""
        return {name: g.flatten(2).norm(dim=2) for name, g in self.grads.items()}


def at_step(target, t: int, steps: int):
    """``target`` read at step ``t``: a :class:`Target`'s window becomes ``[t, t + 1)`` (``value_drop``: from its
    own start to t; ``actions``: the sequence that ends at t); any other callable ``Rollout -> (B,)`` as it is."""
    if isinstance(target, Target):
        if target.kind == "value_drop":
            if not target.start < t:
                raise ValueError(f"a value_drop target at t={t} needs its start before t, got start {target.start}")
            return replace(target, stop=t + 1)
        if target.kind == "actions":
            first = t + 1 - len(target.sequence)
            if first < 0:
                raise ValueError(f"an action sequence of {len(target.sequence)} cannot end at step t={t}")
            return replace(target, start=first, stop=t + 1)
        return replace(target, start=t, stop=t + 1)
    if isinstance(target, str) or not callable(target):
        raise ValueError(f"target must be a policylens.sim.targets.Target (make_target('value'), ...) or a callable "
                         f"Rollout -> (B,), got {type(target).__name__} {target!r}")
    return target


def _check(steps: int, t: int, smooth: int, sigma: float) -> None:
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not isinstance(t, numbers.Integral) or not 0 <= t < steps:
        raise ValueError(f"t must be a step of the rollout, 0 <= t < steps = {steps}, got {t!r}")
    if not isinstance(smooth, numbers.Integral) or smooth < 0:
        raise ValueError(f"smooth must be an integer >= 0 (noised latents; 0: the plain gradient), got {smooth!r}")
    if not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite std >= 0 of the latent noise, got {sigma!r}")


def _batch(sim, start) -> int:
    """Samples in ``start`` (a latent z (B, latent) or a Context); anything else refused."""
    if isinstance(start, Context):
        return start.obs.shape[0]
    if isinstance(start, torch.Tensor) and start.dim() == 2 and start.shape[1] == sim.config.latent:
        return start.shape[0]
    shape = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
    raise ValueError(f"saliency starts from a latent z (B, {sim.config.latent}) or a Context, got {shape}")


def _latent(sim, start, latent: str, noise: Noise) -> torch.Tensor:
    """The latent z (B, latent) a rollout from ``start`` unrolls from, detached (a Context is encoded)."""
    if isinstance(start, Context):
        with torch.no_grad():
            return sim.encode(start.obs, start.agent_state, start.mask).sample(None if latent == "mean" else noise.z)
    return start.detach()


def _gradients(sim, agent, z: torch.Tensor, steps: int, target, run: dict) -> tuple:
    """``(grads {name: (B, T, ...)}, d target / d z (B, latent), target (B,), detached Rollout)`` at ``z``."""
    probes: dict[str, list[torch.Tensor]] = {name: [] for name in PROBES}

    def probe(name, step, x):
        p = torch.zeros_like(x, requires_grad=True)
        probes[name].append(p)
        return x + p

    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        r = rollout(sim, agent, z, steps, intervene=probe, **run)
        value = target(r)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (z.shape[0],):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"the target must give one number per sample, shape ({z.shape[0]},); got {shape}")
        if not torch.isfinite(value).all():
            raise ValueError(f"the target is not finite: {value.detach().cpu().tolist()}")
        leaves = [z] + [p for name in PROBES for p in probes[name]]
        raw = torch.autograd.grad(value.sum(), leaves, allow_unused=True)
    found = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, raw)]
    grads, k = {}, 1
    for name in PROBES:
        grads[name] = torch.stack(found[k:k + steps], 1)  # (B, T, ...)
        k += steps
    return grads, found[0], value.detach(), r.detach()


def saliency(sim, agent, start, steps: int, target, t: int, *, through_env: bool = True, smooth: int = 0,
             sigma: float = 0.1, mode: str = "modal", latent: str = "sample", noise: "Noise | None" = None,
             seed: int = 0, straight_through: "bool | None" = None, progress: bool = False) -> Saliency:
    """Gradients of ``target`` at step ``t`` w.r.t. ``obs`` (B, T, H, W, C), ``hx`` (B, T, hidden), ``h``
    (B, T, deter), ``s`` (B, T, stoch) and ``action`` (B, T, A) at every step of a ``steps``-step rollout of
    ``sim`` with the FrozenAgent ``agent`` from ``start`` (a latent z (B, latent) or a Context); zero after t.

    ``target``: a :class:`~policylens.sim.targets.Target` (read at t, see :func:`at_step`) or any callable
    ``Rollout -> (B,)``. ``through_env``: False detaches the actions (no gradient through the environment).
    ``smooth`` > 0: SmoothGrad over that many latents ``z + sigma * eps`` (and VarGrad). ``mode``, ``latent``,
    ``straight_through``: as in :func:`~policylens.sim.loop.rollout`; its random draws are ``noise`` or drawn from
    ``seed``, and the same for every noised latent and both ``through_env`` settings (the same ``seed``).
    ``progress``: a progress bar over the noised latents.
    """
    _check(steps, t, smooth, sigma)
    target = at_step(target, t, steps)
    generator = torch.Generator().manual_seed(int(seed))
    device = next(sim.parameters()).device
    batch = _batch(sim, start)
    if noise is None:
        noise = Noise.draw(batch, steps, sim, generator, device=device)
    z = _latent(sim, start, latent, noise)
    run = dict(mode=mode, detach_actions=not through_env, latent=latent, noise=noise,
               straight_through=straight_through)
    grads, z_grad, value, r = _gradients(sim, agent, z, steps, target, run)
    common = dict(target=value, rollout=r, t=int(t), through_env=bool(through_env))
    if smooth == 0:
        return Saliency(grads, None, z_grad, **common)
    eps = torch.randn(smooth, *z.shape, generator=generator).to(z)  # (smooth, B, latent)
    mean = {**{k: torch.zeros_like(v) for k, v in grads.items()}, "z": torch.zeros_like(z_grad)}
    m2 = {k: torch.zeros_like(v) for k, v in mean.items()}  # Welford: running mean, sum of squared deviations
    for n in tqdm(range(smooth), desc="SmoothGrad", unit="latent", disable=not progress):
        g, g_z, _, _ = _gradients(sim, agent, z + sigma * eps[n], steps, target, run)
        for k, x in {**g, "z": g_z}.items():
            delta = x - mean[k]
            mean[k] += delta / (n + 1)
            m2[k] += delta * (x - mean[k])
    z_mean = mean.pop("z")
    m2.pop("z")
    return Saliency(mean, {k: v / smooth for k, v in m2.items()}, z_mean, smooth=int(smooth), sigma=float(sigma),
                    latent_noise=eps, **common)
