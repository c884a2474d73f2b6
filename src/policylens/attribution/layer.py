"""The gradient of a target at many points built from each observation's layer activation, in one batched pass.

Every method here evaluates the target at ``R`` points per observation built from the observation's
activation ``a`` at a layer (integrated gradients: points on the path from a baseline to ``a``; SmoothGrad
and VarGrad: noisy copies of ``a``; saliency: ``a`` itself) and needs the target's gradient at each point.
:func:`evaluate_rows` lays those ``N * R`` points out as rows (row ``n * R + r`` is point ``r`` of
observation ``n``) and computes them in chunks of ``chunk_size`` rows:

- input (``layer=None``): the rows are (float) observations and go through the whole agent;
- folded: the agent runs up to the layer once on the observations of the chunk, without recording a graph;
  a forward hook on the layer replaces its output by the chunk's rows, and only the part above the layer
  sees the ``N * R``-row batch. A recurrent state goes in per row (consumed above the layer, e.g. ``fc``) or,
  if that fails, per observation (consumed below it, e.g. ``hx``).
- repeated: when the layer is not a cut of the graph (a skip connection carries the observation's tensors
  past it, e.g. a conv inside an IMPALA residual block), the folded pass fails on mismatched batch sizes;
  then each observation is repeated for each of its rows (Captum's way: correct, but the part below the
  layer runs ``R`` times), with a :class:`NotACutWarning`.

A lone observation under many rows would broadcast silently against them, so the folded pass always gives
the agent at least two observations. Hooks are removed on any exit; parameters' ``.grad`` are not touched
(``torch.autograd.grad``); the agent's train/eval mode is left alone.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..agents import get_layer
from .targets import PerObservation

# (activation rows (C, ...), observation index (C,), point index (C,)) -> the points (C, ...)
RowBuilder = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class NotACutWarning(UserWarning):
    """The layer is not a cut of the agent's graph: attribution used the slower repeated-observation pass."""


class _NotACut(Exception):
    """The folded pass cannot work for this layer (raised internally, answered by the next pass)."""


@dataclass
class Rows:
    acts: torch.Tensor  # (N, ...) each observation's activation at the layer (the float obs for the input)
    grads: torch.Tensor  # (N, R, ...) gradient of the target at each point
    values: torch.Tensor  # (N, R) the target at each point
    path: str  # "input" | "folded" | "folded-state-per-obs" | "repeated"


class LayerSwap:
    """Context manager: a forward hook on ``module`` hands its (detached) output to ``replace`` and returns
    what that gives instead; gradient recording is switched on from that point of the forward pass. The hook
    must fire exactly once per pass; it is removed on exit, also after an exception."""

    def __init__(self, module: nn.Module, name: str, replace: Callable[[torch.Tensor], torch.Tensor]):
        self.module, self.name, self.replace, self.calls = module, name, replace, 0

    def _hook(self, module, inputs, output):
        self.calls += 1
        if self.calls > 1:
            raise ValueError(f"layer {self.name!r} runs more than once in one forward pass; attribute to a layer "
                             "the agent calls once")
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            kind = output.dtype if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"layer {self.name!r} gives {kind}; attribution needs a layer whose output is a "
                             "floating-point tensor")
        torch.set_grad_enabled(True)  # the part above the layer records the graph (the caller's no_grad restores)
        return self.replace(output.detach())

    def __enter__(self):
        self.calls = 0
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False


def _where_not_finite(x: torch.Tensor) -> str:
    return "nan" if torch.isnan(x).any() else "inf"


def _resolve_state(agent, state, first, n: int, device):
    """The state each observation's forward starts from: ``first`` rows reset to the agent's initial state
    here, so the rows can carry it without ``first``. Returns ``(state (N, hidden) | None, first | None)``."""
    init = getattr(agent, "initial_state", None)
    h0 = init(n) if callable(init) else None
    if state is not None:
        state = torch.as_tensor(state, dtype=torch.float32, device=device).detach()
    if first is not None:
        first = torch.as_tensor(first, device=device).bool().reshape(-1)
        if first.shape[0] != n:
            raise ValueError(f"first must be (N,) = ({n},), got {tuple(first.shape)}")
    if h0 is None:  # not recurrent, or a foreign agent that handles `first` itself
        return state, first
    h0 = h0.detach().to(device)  # (N, hidden)
    if state is None:
        return h0, None
    if tuple(state.shape) != tuple(h0.shape):
        raise ValueError(f"state must be (N, hidden) = {tuple(h0.shape)} for this agent, got {tuple(state.shape)}")
    if first is not None:
        state = torch.where(first[:, None], h0, state)  # (N, hidden)
    return state, None


def _check_finite(x: torch.Tensor, n: torch.Tensor, what: str, where: Callable[[int], str]) -> None:
    if torch.isfinite(x.sum()):  # nan and inf reach the sum: a quick test for the usual case (overflow: look)
        return
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)  # (C,)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{what} is {_where_not_finite(x[i])} for observation {int(n[i])} ({where(i)})")


class _Pass:
    """One attribution job: the agent, its inputs, the target and how rows are built."""

    def __init__(self, agent, obs, target, build: RowBuilder, reps: int, layer: Optional[str], state, first,
                 describe: Callable[[int], str]):
        self.agent, self.obs, self.target, self.build, self.reps, self.layer = agent, obs, target, build, reps, layer
        self.state, self.first, self.describe = state, first, describe
        self.module = None if layer is None else get_layer(agent, layer)
        self.where = "the input" if layer is None else f"layer {layer!r}"
        self.acts = obs.float() if layer is None else None  # (N, ...) filled chunk by chunk for a layer

    def _inputs(self, idx: torch.Tensor):
        def pick(x):
            return None if x is None else x[idx]

        return pick(self.state), pick(self.first)

    def _gradient(self, out, rows: torch.Tensor, n, r, batch_of_obs: int):
        """The target at each row (C,) and its gradient w.r.t. the rows (C, ...); for a tuple of T targets,
        (C, T) and (C, T, ...), from the one forward pass."""
        many = isinstance(self.target, tuple)
        targets = self.target if many else (self.target,)
        values_all, grads_all = [], []
        for j, target in enumerate(targets):
            values = target(out, n) if isinstance(target, PerObservation) else target(out)
            c = rows.shape[0]
            if not isinstance(values, torch.Tensor) or values.ndim != 1 or values.shape[0] != c:
                shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                if isinstance(values, torch.Tensor) and values.ndim == 1 and values.shape[0] == batch_of_obs != c:
                    raise _NotACut(f"the output has the observations' batch {batch_of_obs}, not the rows' {c}")
                raise ValueError(f"target {target.name} must give one value per observation, shape (B,) for a "
                                 f"batch of B; got {shape} for B = {c}")
            where = lambda i: f"{self.describe(int(r[i]))}, forward pass through {self.where}"  # noqa: E731
            _check_finite(values.detach(), n, f"the target {target.name}", where)
            grads = None
            if values.requires_grad:
                (grads,) = torch.autograd.grad(values.sum(), rows, allow_unused=True,
                                               retain_graph=j < len(targets) - 1)
            grads = torch.zeros_like(rows) if grads is None else grads  # the target does not depend on the layer
            where = lambda i: self.describe(int(r[i]))  # noqa: E731
            _check_finite(grads, n, f"the gradient of {target.name} w.r.t. {self.where}", where)
            values_all.append(values.detach())
            grads_all.append(grads.detach())
        if not many:
            return values_all[0], grads_all[0]
        return torch.stack(values_all, 1), torch.stack(grads_all, 1)  # (C, T), (C, T, ...)

    def input_chunk(self, n, r):
        rows = self.build(self.acts[n], n, r).detach().requires_grad_()  # (C, H, W, C_obs)
        state, first = self._inputs(n)
        with torch.enable_grad():
            out = self.agent(rows, state, first)
            return self._gradient(out, rows, n, r, -1)

    def layer_chunk(self, mode: str, n, r):
        assert self.module is not None and self.layer is not None, "a pass through a layer"
        c = n.shape[0]
        if mode == "repeated":
            obs_idx, src = n, torch.arange(c, device=n.device)
        else:
            obs_idx = torch.arange(int(n[0]), int(n[-1]) + 1, device=n.device)  # rows are n-major: contiguous
            if obs_idx.shape[0] == 1 and c > 1:
                obs_idx = obs_idx.repeat(2)  # a lone observation would broadcast silently against the rows
            src = n - n[0]
        state, first = self._inputs(n if mode in ("folded", "repeated") else obs_idx)
        made = {}

        def replace(output):  # output (len(obs_idx), ...)
            if output.shape[0] != obs_idx.shape[0]:
                raise _NotACut(f"layer output has batch {output.shape[0]}, expected {obs_idx.shape[0]}")
            made["acts"] = output
            made["rows"] = self.build(output.index_select(0, src), n, r).detach().requires_grad_()  # (C, ...)
            return made["rows"]

        with torch.enable_grad(), LayerSwap(self.module, self.layer, replace) as swap:
            with torch.no_grad():  # below the layer: no graph (the hook switches recording on)
                out = self.agent(self.obs[obs_idx], state, first)
            if swap.calls == 0:
                raise ValueError(f"layer {self.layer!r} is not reached by the agent's forward pass")
            _check_finite(made["acts"], obs_idx, f"the activation of {self.where}", lambda i: "before any change")
            values, grads = self._gradient(out, made["rows"], n, r, obs_idx.shape[0])
        if self.acts is None:
            self.acts = made["acts"].new_zeros((self.obs.shape[0], *made["acts"].shape[1:]))  # (N, ...)
        self.acts[obs_idx] = made["acts"]
        return values, grads


def evaluate_rows(agent, obs: torch.Tensor, target, build: RowBuilder, reps: int, *, layer: Optional[str] = None,
                  state=None, first=None, chunk_size: Optional[int] = None,
                  describe: Callable[[int], str] = lambda r: f"point {r}", paths: Optional[tuple] = None) -> Rows:
    """The target and its gradient at ``reps`` points per observation, built by ``build`` from each
    observation's activation at ``layer`` (the float observation when ``layer`` is None).

    ``obs`` (N, H, W, C) on the agent's device; ``target`` a :class:`~policylens.attribution.targets.Target`
    (or a tuple of them: all read from the same forward passes, ``Rows.values`` (N, R, T) and ``Rows.grads``
    (N, R, T, ...));
    ``state``/``first`` the recurrent inputs for each observation; ``chunk_size`` bounds the rows of one pass;
    ``describe(r)`` names point ``r`` in error messages; ``paths`` the passes to try for a layer, in order
    (default: folded, folded-state-per-obs, repeated). Returns :class:`Rows`.
    """
    n_obs = obs.shape[0]
    state, first = _resolve_state(agent, state, first, n_obs, obs.device)
    job = _Pass(agent, obs, target, build, reps, layer, state, first, describe)
    total = n_obs * reps
    chunk = total if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1 (rows of the folded batch), got {chunk_size}")
    value_chunks, grad_chunks, path = [], [], None
    for start in range(0, total, chunk):
        g = torch.arange(start, min(start + chunk, total), device=obs.device)  # (C,) rows of this chunk
        n, r = g // reps, g % reps
        if layer is None:
            path, (v, gr) = "input", job.input_chunk(n, r)
        elif path is None:
            path, (v, gr) = _first_layer_chunk(job, n, r, paths)
        else:
            v, gr = job.layer_chunk(path, n, r)
        value_chunks.append(v)
        grad_chunks.append(gr)
    grads = grad_chunks[0] if len(grad_chunks) == 1 else torch.cat(grad_chunks)  # (N*R, ...) consecutive rows
    values = value_chunks[0] if len(value_chunks) == 1 else torch.cat(value_chunks)  # (N*R,)
    assert job.acts is not None and path is not None  # every row was evaluated
    return Rows(job.acts, grads.reshape(n_obs, reps, *grads.shape[1:]), values.reshape(n_obs, reps, *values.shape[1:]),
                path)


PATHS = ("folded", "folded-state-per-obs", "repeated")


def _first_layer_chunk(job: _Pass, n, r, paths=None):
    """Find the fastest pass that works for this layer on the first chunk: folded (state per row), folded
    (state per observation), else repeated with a warning."""
    paths = tuple(paths or PATHS)
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown passes {unknown}; expected some of {PATHS}")
    if job.state is None and job.first is None:
        paths = tuple(p for p in paths if p != "folded-state-per-obs") or paths
    reasons = []
    for mode in paths:
        try:
            result = job.layer_chunk(mode, n, r)
        except (_NotACut, RuntimeError) as e:
            if mode == paths[-1]:
                if isinstance(e, _NotACut):
                    raise ValueError(f"cannot attribute to layer {job.layer!r} with the {mode} pass: {e}") from None
                raise
            reasons.append(f"{mode}: {e}".split("\n")[0])
            continue
        if mode == "repeated" and reasons and job.reps > 1:
            warnings.warn(f"layer {job.layer!r} is not a cut of the agent's graph (the part above it also sees "
                          f"tensors from below: {'; '.join(reasons)}); used the repeated-observation pass, correct "
                          f"but the part below the layer runs {job.reps} times per observation", NotACutWarning,
                          stacklevel=4)
        return mode, result
