"""Project a direction out of a layer, out of place (Understanding RL Vision, Appendix A).

``edited = project_out(agent, "conv1", v)`` returns a deep copy whose ``conv1`` output has lost its
component along ``v`` (for several directions: their span), ``P = I - v v^T / |v|^2``. The original agent
is untouched. The edit is made one of two ways, and ``edited.policylens_edits[-1]["how"]`` says which:

- ``"fold"`` (the paper's method): the layers that consume the activation (a conv taking it as input, a
  linear or GRU cell taking it or its flattening) get their input weights right-multiplied by ``P`` over the
  channel axis, ``W' = W P`` (the paper's "we left-multiply each [c x d] matrix in the kernel by P" in its HWCD layout).
  Consumers are found by tracing one forward pass with hooks; the fold is then checked against an exact
  projection of the layer's output with a random direction on probe observations (this catches a use of the
  activation the hooks cannot see, such as a residual sum, or a state carried to the next step). A folded
  agent is an ordinary agent: its checkpoint carries the edit.
- ``"hook"``: when no such consumer exists or the check fails (e.g. a ReLU, a pooling layer or a residual
  add comes next, or the layer is the recurrent state ``hx``), a permanent forward hook on the copy's layer
  projects its output. Still out of place, but a checkpoint cannot carry it. ``"reason"`` says why.
"""
from __future__ import annotations

import copy
from typing import TypeVar, cast

import torch
from torch import nn

from ..agents import get_layer
from ..factors.project import channel_matmul
from ..hooks import agent_device, capture
from .ablate import ablate, as_directions

M = TypeVar("M", bound=nn.Module)

FOLDABLE = (nn.Conv2d, nn.Linear, nn.RNNCellBase)


class ProjectOutHook:
    """Forward hook: ``out -> P out`` on the channel axis (dim 1), ``P`` ``(C, C)``."""

    def __init__(self, projector: torch.Tensor):
        self.projector = projector.float()

    def __call__(self, module, inputs, out):
        return channel_matmul(out, self.projector)


def projector(basis: torch.Tensor, keep: "torch.Tensor | None" = None) -> torch.Tensor:
    """The ``(C, C)`` projection that removes the span of ``basis`` ``(r, C)`` (orthonormal rows).

    Without ``keep``: the orthogonal projection ``I - Q^T Q`` of Understanding RL Vision. With ``keep`` ``(m, C)`` (vectors
    that must come through unchanged, e.g. the other NMF directions): the oblique projection
    ``M = I - V (U^T V)^-1 U^T`` where ``U`` is ``V`` minus its part in span(keep); ``M V = 0`` and ``M k = k``
    for every ``k`` in span(keep), so a direction shared with the kept ones is removed without disturbing them.
    With ``keep`` empty it is the orthogonal projection again.
    """
    v = basis.double().T  # (C, r)
    eye = torch.eye(v.shape[0], dtype=torch.float64)
    if keep is None or len(keep) == 0:
        return eye - v @ v.T
    k = keep.double()  # (m, C)
    _, s, vh = torch.linalg.svd(k, full_matrices=False)
    q = vh[: int((s > 1e-6 * s.max()).sum())].T  # (C, m') orthonormal basis of span(keep)
    u = v - q @ (q.T @ v)  # (C, r) the part of the directions outside span(keep)
    if torch.linalg.svdvals(u).min() < 1e-4:  # v has orthonormal columns: u's scale is absolute
        raise ValueError("the directions to project out lie (almost) in the span of the ones to keep: "
                         "no projection can remove one and keep the other")
    return eye - v @ torch.linalg.solve(u.T @ v, u.T)  # u^T v = u^T u (r, r), invertible here


def probe_obs(agent: nn.Module, obs=None) -> torch.Tensor:
    """Observations to trace and check the edit with: ``obs`` if given, else 4 random uint8 frames."""
    device = agent_device(agent)
    if obs is not None:
        return torch.as_tensor(obs).to(device)
    shape = getattr(agent, "obs_shape", None)
    if shape is None:
        raise ValueError(f"{type(agent).__name__} has no obs_shape attribute; pass obs=... (a few observations)")
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, *shape), generator=g, dtype=torch.uint8).to(device)  # (4, H, W, C)


def _input_weight(module: nn.Module) -> torch.Tensor:
    """The weight applied to the module's input (a conv's, a linear layer's, an RNN cell's ``weight_ih``)."""
    return module.weight_ih if isinstance(module, nn.RNNCellBase) else cast(torch.Tensor, module.weight)


def _how_fed(acts: torch.Tensor, inp, module: nn.Module) -> "str | None":
    """``"channels"`` if ``module`` takes ``acts`` itself with channels as its input features, ``"flat"`` if it
    takes ``acts.flatten(1)`` (channel-major, whatever the memory format), else None. Matched by value, as a
    flatten of a channels-last activation is a copy; :func:`check_fold` guards against a chance match."""
    if not isinstance(inp, torch.Tensor) or inp.shape[0] != acts.shape[0]:
        return None
    channels, weight = acts.shape[1], _input_weight(module)
    if inp.shape == acts.shape and (inp is acts or torch.equal(inp, acts)):
        if isinstance(module, nn.Conv2d):
            ok = acts.ndim == 4 and module.groups == 1 and module.in_channels == channels
        else:
            ok = acts.ndim == 2 and weight.shape[1] == channels
        return "channels" if ok else None
    flat = acts[0].numel()
    if (not isinstance(module, nn.Conv2d) and acts.ndim > 2 and inp.shape == (acts.shape[0], flat)
            and weight.shape[1] == flat and torch.equal(inp, acts.flatten(1))):
        return "flat"
    return None


@torch.no_grad()
def trace_consumers(agent: nn.Module, layer: str, obs: torch.Tensor):
    """One forward pass -> ``(acts, [(module name, "channels" | "flat")], reason)``: the layer's output and
    the conv / linear / RNN-cell modules fed by it; ``reason`` says why the list is empty."""
    fed, handles = [], []
    for name, module in agent.named_modules():
        if isinstance(module, FOLDABLE):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: fed.append((name, m, args[0] if args else None))))
    try:
        with capture(agent, layer) as cache:
            agent(obs)
    finally:
        for h in handles:
            h.remove()
    acts = cache.get(layer)
    if not isinstance(acts, torch.Tensor) or acts.ndim < 2:
        raise ValueError(f"layer {layer!r} does not output a (B, C, ...) tensor in the forward pass")
    if cache.calls[layer] != 1:
        return acts, [], f"layer {layer!r} runs {cache.calls[layer]} times per forward pass"
    consumers = [(name, how) for name, m, inp in fed if (how := _how_fed(acts, inp, m))]
    reason = "" if consumers else f"no conv, linear or RNN cell takes {layer!r}'s output directly"
    return acts, consumers, reason


def fold(agent: nn.Module, consumers, proj: torch.Tensor) -> None:
    """In place: each consumer's input weight ``W`` becomes ``W P`` over the channel axis."""
    for name, how in consumers:
        module = get_layer(agent, name)
        weight = _input_weight(module)
        w, proj_here = weight.detach().double(), proj.to(weight.device)
        if isinstance(module, nn.Conv2d):
            new = torch.einsum("dc...,ce->de...", w, proj_here)  # (D, C, kh, kw)
        elif how == "channels":
            new = w @ proj_here  # (D, C)
        else:
            per_channel = w.reshape(w.shape[0], proj.shape[0], -1)  # (D, C, S)
            new = torch.einsum("dcs,ce->des", per_channel, proj_here).reshape(w.shape)  # (D, C*S)
        with torch.no_grad():
            weight.copy_(new.to(weight.dtype))


def _outputs(agent: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """Every tensor the agent returns (logits, value, state), flattened into one vector."""
    with torch.no_grad():
        out = agent(obs)
    return torch.cat([t.detach().double().flatten() for t in out if isinstance(t, torch.Tensor)])


def check_fold(agent: nn.Module, layer: str, consumers, num_channels: int, obs: torch.Tensor) -> str:
    """'' if folding into ``consumers`` equals projecting ``layer``'s output (tested with a random direction on
    ``obs``), else the reason it does not."""
    v = torch.randn(1, num_channels, generator=torch.Generator().manual_seed(0))  # (1, C)
    original = _outputs(agent, obs)
    with ablate(agent, layer, directions=v):
        exact = _outputs(agent, obs)
    trial = copy.deepcopy(agent)
    fold(trial, consumers, projector(as_directions(v, layer).basis()))
    folded = _outputs(trial, obs)
    scale = float(original.abs().max()) + 1.0
    effect, error = float((exact - original).abs().max()), float((folded - exact).abs().max())
    if effect <= 1e-6 * scale:
        return f"the probe observations do not exercise {layer!r} (projecting it changes no output); pass obs=..."
    if error > 1e-3 * effect + 1e-6 * scale:
        names = ", ".join(n for n, _ in consumers)
        return (f"folding into {names} does not reproduce the projection of {layer!r} (its output is also used "
                f"elsewhere, e.g. a residual sum or the recurrent state)")
    return ""


def project_out(agent: M, layer: str, directions, *, keep=None, obs=None) -> M:
    """A copy of ``agent`` in which ``layer``'s output loses its component along ``directions``
    (``Directions`` of that layer, or a ``(C,)`` / ``(K, C)`` tensor; several: their span).

    ``keep`` (``Directions`` or ``(M, C)``): directions that must pass unchanged; the projection is then the
    oblique one of :func:`projector` (removes ``directions`` even where they overlap the kept ones).

    ``obs``: observations to trace and check the edit with (default: random frames of ``agent.obs_shape``).
    Appends to ``edited.policylens_edits`` a record ``{"op", "layer", "how": "fold" | "hook", "into",
    "reason", "method", "labels", "vectors"}`` (see the module doc for fold vs hook).
    """
    dirs = as_directions(directions, layer)
    kept = None if keep is None else as_directions(keep, layer)
    proj = projector(dirs.basis(), None if kept is None else kept.vectors)  # (C, C)
    obs = probe_obs(agent, obs)
    acts, consumers, reason = trace_consumers(agent, layer, obs)
    if acts.shape[1] != dirs.channels:
        raise ValueError(f"directions have {dirs.channels} channels; layer {layer!r} outputs {acts.shape[1]}")
    if consumers:
        reason = check_fold(agent, layer, consumers, dirs.channels, obs)
    edited = copy.deepcopy(agent)
    if consumers and not reason:
        fold(edited, consumers, proj)
        how, into = "fold", [name for name, _ in consumers]
    else:
        get_layer(edited, layer).register_forward_hook(ProjectOutHook(proj))
        how, into = "hook", [layer]
    record = {"op": "project_out", "layer": layer, "how": how, "into": into, "reason": reason,
              "method": dirs.method, "labels": list(dirs.labels), "vectors": dirs.vectors.tolist(),
              "keep": None if kept is None else kept.vectors.tolist()}
    setattr(edited, "policylens_edits", [*getattr(agent, "policylens_edits", []), record])  # any module
    return edited
