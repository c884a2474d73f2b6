"""Generative visualisation (Saliency as causality, "Optimising generated samples"): optimise the simulator's latent so the
rollouts it unrolls to maximise or minimise a target (:mod:`policylens.sim.targets`) over a window, kept on the
prior by a penalty.

For each of ``samples`` starting latents z ~ N(0, I) (and the per-step noise of the stochastic state, drawn with
the same ``seed``), Adam minimises, per sample,

    loss = -sign * target(rollout(z, noise)) + prior_weight * penalty(z)      (+ prior_weight * penalty(noise)
                                                                                 when the noise is optimised too)

with ``prior="map"``: penalty 0.5 |z|^2, i.e. ``-sign * target - prior_weight * log N(z; 0, I)`` up to a constant,
a MAP estimate under the prior; ``prior="typical"``: penalty (|z| - sqrt(d))^2, which keeps z's norm where draws
of N(0, I) lie and leaves its direction free (:func:`prior_penalty`). Each
sample's loss depends on its own latent alone (the rows of a rollout never mix), so one batch holds independent
optimisations. The iterate with the lowest loss seen is kept (straight-through actions make the loss jump).
The default ``prior_weight`` 0.001 comes from the MiniGrid Dynamic-Obstacles zoo agent's simulator (2000 training
steps), minimising the value of steps 8-15 of four samples over 40 Adam steps: with 0.01 (and 0.1 in a longer run)
the penalty won: log N(z; 0, I) rose from -87 to -60, near its maximum -58.8 at the mode z = 0 (a typical draw has
-90.8), and the value *rose*; with 0.001 the latents stayed typical (-81) and the value fell by up to 0.04 in three samples, about as much as
with no penalty (the fourth never beat its start). A target's gradient through straight-through observations is
small and rough, so a weight that suits one simulator and target may not suit another: the result records
log N(z; 0, I) and where a draw from the prior would lie (:func:`prior_percentile`), so a user sees whether the
latents stayed typical. The penalty pulls towards the prior's mode (z = 0), itself atypical in many dimensions: a
large weight gives bland samples.

    >>> target = make_target("value", start=10, num_actions=sim.config.num_actions)
    >>> result = optimize_latents(sim, agent, target, samples=8, steps=24, maximize=False)
    >>> result.before, result.after           # (8,) the target at the starting and optimised latents
    >>> result.log_prior_after                # (8,) log N(z; 0, I): did it stay on the prior?
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .loop import Noise, Rollout, rollout


def log_prior(x: torch.Tensor) -> torch.Tensor:
    """Standard normal log-density of each row of ``x`` ``(B, ...)``, summed over the rest: ``(B,)``."""
    flat = x.detach().flatten(1).double()  # (B, D)
    return (-0.5 * flat.pow(2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)).float()


PRIORS = ("map", "typical")


def prior_penalty(x: torch.Tensor, prior: str) -> torch.Tensor:
    """Per-row penalty keeping ``x`` (S, D) on the standard normal prior: ``map`` 0.5 |x|^2 (-log N(x; 0, I) up
    to a constant: pulls towards the mode x = 0, itself atypical in many dimensions), ``typical`` (|x| - sqrt(D))^2
    (keeps the norm on the shell where nearly all of the prior's draws lie, free in direction)."""
    if prior == "typical":
        return (x.norm(dim=1) - math.sqrt(x.shape[1])).pow(2)
    return 0.5 * x.pow(2).sum(1)


def typical_log_prior(size: int) -> float:
    """The expected log-density of a draw from N(0, I) in ``size`` dimensions: -size/2 (1 + log 2 pi)."""
    return -0.5 * size * (1 + math.log(2 * math.pi))


def prior_percentile(z: torch.Tensor) -> torch.Tensor:
    """Share of draws from N(0, I) closer to the origin than each row of ``z`` ``(B, D)``: the chi-squared CDF of
    |z|^2 with D degrees of freedom, ``(B,)`` (about 0.5 for a typical draw, near 1 far out in the tails)."""
    from scipy.stats import chi2

    sq = z.detach().double().pow(2).sum(1).cpu().numpy()  # (B,)
    return torch.as_tensor(chi2.cdf(sq, z.shape[1]), dtype=torch.float32)


def check_fits(target, steps: int) -> None:
    """A clear error when ``target``'s window (or action sequence) does not fit a rollout of ``steps`` steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    span = target.window(steps)
    if target.kind == "actions" and span.start + len(target.sequence) > steps:
        raise ValueError(f"an action sequence of {len(target.sequence)} from step {span.start} does not fit a "
                         f"rollout of {steps} steps")


@dataclass
class Optimized:
    """What :func:`optimize_latents` found; tensors on the CPU, S = samples, I = iterations."""

    z_start: torch.Tensor  # (S, latent) the starting latents
    z: torch.Tensor  # (S, latent) the optimised latents (lowest loss seen)
    noise_start: Noise  # the per-step draws of the starting rollouts
    noise: Noise  # the per-step draws of the optimised rollouts (== noise_start unless the noise was optimised)
    before: torch.Tensor  # (S,) target at the start
    after: torch.Tensor  # (S,) target at the optimised latents
    log_prior_before: torch.Tensor  # (S,) log N(z; 0, I) at the start
    log_prior_after: torch.Tensor  # (S,)
    noise_log_prior_before: "torch.Tensor | None"  # (S,) log N(noise; 0, I) of the optimised noise (None: fixed)
    noise_log_prior_after: "torch.Tensor | None"
    curve: torch.Tensor  # (I + 1, S) target at every iterate
    log_prior_curve: torch.Tensor  # (I + 1, S) log N(z; 0, I) at every iterate
    loss_curve: torch.Tensor  # (I + 1, S) the loss minimised
    best_iteration: torch.Tensor  # (S,) long, the iterate kept
    start_rollout: Rollout  # detached rollouts of the starting latents
    rollout: Rollout  # detached rollouts of the optimised latents


def optimize_latents(sim, agent, target, *, samples: int = 8, steps: int = 24, iterations: int = 100,
                     lr: float = 0.05, maximize: bool = True, prior_weight: float = 0.001, prior: str = "map",
                     optimize_noise: bool = False, mode: str = "modal", latent: str = "sample", seed: int = 0,
                     z_start: "torch.Tensor | None" = None, progress: bool = False) -> Optimized:
    """Optimise ``samples`` latents (see the module doc) for ``iterations`` Adam steps of ``lr``.

    ``target``: a :class:`~policylens.sim.targets.Target` (a callable Rollout -> (S,)). ``maximize`` False
    minimises it. ``optimize_noise``: the per-step standard draws of the stochastic state are optimised too (with
    the same penalty); else they stay as drawn from ``seed``. ``mode``: the agent's actions, ``modal`` or
    ``sample`` (Gumbel draws fixed by ``seed``). ``latent="mean"``: the stochastic states are their means (no
    noise to optimise). ``z_start`` (S, latent): start there instead of z ~ N(0, I)."""
    from tqdm.auto import tqdm

    if samples < 1 or iterations < 0:
        raise ValueError(f"samples must be >= 1 and iterations >= 0, got {samples} and {iterations}")
    if not lr > 0 or prior_weight < 0:
        raise ValueError(f"lr must be > 0 and prior_weight >= 0, got {lr} and {prior_weight}")
    if prior not in PRIORS:
        raise ValueError(f"prior {prior!r}; expected one of {', '.join(PRIORS)}")
    if optimize_noise and latent == "mean":
        raise ValueError("optimize_noise needs latent='sample': with latent='mean' the stochastic states use no noise")
    check_fits(target, steps)
    device = next(sim.parameters()).device
    drawn = Noise.draw(samples, steps, sim, torch.Generator().manual_seed(seed), device=device)
    if z_start is not None:
        if tuple(z_start.shape) != (samples, sim.config.latent):
            raise ValueError(f"z_start must be (samples, latent) = ({samples}, {sim.config.latent}), "
                             f"got {tuple(z_start.shape)}")
        drawn = Noise(z_start.detach().to(device).float(), drawn.s, drawn.gumbel)
    z = drawn.z.clone().requires_grad_(True)  # (S, latent)
    s = drawn.s.clone().requires_grad_(optimize_noise)  # (S, T, stoch); s[:, 0] is never used
    params = [z, s] if optimize_noise else [z]
    adam = torch.optim.Adam(params, lr=lr)
    sign = 1.0 if maximize else -1.0
    best_loss = torch.full((samples,), math.inf, device=device)
    best = [p.detach().clone() for p in params]
    best_iteration = torch.zeros(samples, dtype=torch.long)
    curve, prior_curve, loss_curve = [], [], []
    for it in tqdm(range(iterations + 1), desc="optimise", unit="it", disable=not progress):
        r = rollout(sim, agent, z, steps, mode, latent=latent, noise=Noise(z, s, drawn.gumbel))
        value = target(r)  # (S,)
        penalty = prior_penalty(z, prior)  # (S,)
        if optimize_noise:
            penalty = penalty + prior_penalty(s[:, 1:].flatten(1), prior)
        loss = -sign * value + prior_weight * penalty  # (S,)
        curve.append(value.detach().cpu())
        prior_curve.append(log_prior(z).cpu())
        loss_curve.append(loss.detach().cpu())
        better = loss.detach() < best_loss  # (S,)
        best_loss = torch.where(better, loss.detach(), best_loss)
        best_iteration[better.cpu()] = it
        for kept, p in zip(best, params):
            kept[better] = p.detach()[better]
        if it == iterations:
            break
        grads = torch.autograd.grad(loss.sum(), params)  # the simulator's parameters get no .grad
        for p, g in zip(params, grads):
            p.grad = g
        adam.step()
    z_best = best[0]
    noise_best = Noise(z_best, best[1] if optimize_noise else drawn.s, drawn.gumbel)
    with torch.no_grad():
        first = rollout(sim, agent, drawn.z, steps, mode, latent=latent, noise=drawn).detach()
        final = rollout(sim, agent, z_best, steps, mode, latent=latent, noise=noise_best).detach()
        before, after = target(first).cpu(), target(final).cpu()

    def noise_prior(n: Noise):
        return log_prior(n.s[:, 1:]).cpu() if optimize_noise else None

    cpu = lambda n: n.to("cpu")  # noqa: E731
    return Optimized(z_start=drawn.z.cpu(), z=z_best.cpu(), noise_start=cpu(drawn), noise=cpu(noise_best),
                     before=before, after=after, log_prior_before=log_prior(drawn.z).cpu(),
                     log_prior_after=log_prior(z_best).cpu(), noise_log_prior_before=noise_prior(drawn),
                     noise_log_prior_after=noise_prior(noise_best), curve=torch.stack(curve),
                     log_prior_curve=torch.stack(prior_curve), loss_curve=torch.stack(loss_curve),
                     best_iteration=best_iteration, start_rollout=first, rollout=final)


# ------------------------------------------------------------------------------------------------ saving
def save_latents(result: Optimized, path) -> None:
    """``path`` (safetensors): z_start, z, and each rollout's draws (s_start, s, gumbel), enough to unroll both
    again: ``rollout(sim, agent, z, steps, mode, noise=Noise(z, s, gumbel))``."""
    from safetensors.torch import save_file

    tensors = {"z_start": result.z_start, "z": result.z, "s_start": result.noise_start.s, "s": result.noise.s,
               "gumbel": result.noise.gumbel}
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(path))  # no shared storage


def load_latents(path) -> tuple:
    """``(z_start, z, Noise of the start, Noise of the optimised latents)`` from :func:`save_latents`' file."""
    from pathlib import Path

    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no latents file at {path}")
    t = load_file(str(path))
    return t["z_start"], t["z"], Noise(t["z_start"], t["s_start"], t["gumbel"]), Noise(t["z"], t["s"], t["gumbel"])
