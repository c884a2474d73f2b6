"""Behaviours (Saliency as causality, "Identifying causal stories for behaviours"): cluster simulated agent+environment
dynamics into behaviours, then compare, per behaviour, how the hidden-state directions *co-vary* (lagged
cross-correlation) with how they *cause* each other (gradients: "cross-causation"), with and without the
gradient paths that run through the environment.

Simulated samples (:func:`simulate`): N rollouts of T steps with the frozen agent inside the simulator. The
directions' coefficient series ``ic(t)`` (B, T, K) reads the state the agent *received* at step t (= the one it
produced at t - 1): that is the state ``intervene("hx")`` perturbs, and a change there reaches the agent's
action at t, so the environment can carry it on.

- Cross-causation: ``J[t, lag, i, j] = d ic_j(t + lag) / d ic_i(t)``. A zero probe ``p`` (B, K) per step is added
  to the received state along the directions, ``hx + p @ (V * std)`` (V the z-space vectors, std the z-scoring),
  so ``d ic / d p = V @ readout = I`` at lag 0. One backward per target (t', j) gives the gradients w.r.t. the
  probes of all i at steps t' - lag at once (per sample: the samples of a batch are independent).
- With the environment (``env=True``): every path, including agent -> action -> simulator -> observation ->
  agent. Without (Saliency as causality's "without passing gradients through the environment"): only the agent's
  own recurrence, by ``cut="actions"`` (the actions driving the simulator carry no gradient, ``detach_actions``) or
  ``cut="obs"`` (the observations the agent reads carry none). The agent reaches the simulator only through its
  actions and the simulator reaches the agent only through its observations, so both cuts give the same
  Jacobian (a test checks it). At lags 0 and 1 the two agree by construction (the first environment path from a
  probe at t is a_t -> o_{t+1} -> the state received at t + 2).
- ``actions="straight_through"`` (default): modal one-hot actions forward, softmax gradients backward (how the
  simulator trains). Its environment gradient is a surrogate: the hard rollout is piecewise constant in the
  actions, so its exact derivative is the own-recurrence one. ``actions="soft"``: the agent's softmax policy
  drives the simulator and the agent sees the decoder's expected observation (no argmax anywhere), so both
  Jacobians are exact derivatives of a smooth rollout (checked against finite differences).

Behaviours (:func:`analyze`): every sample is cut into windows of L steps (stride ``stride``); a window's
features are its joint state sequence ``[hx z-scored with the real analysis' mean/std, simulator h, s]``
flattened, each block scaled to unit total variance (so the agent's and the simulator's states weigh equally
whatever their sizes); k-means (scikit-learn, seeded, 10 inits) clusters the windows into B behaviours (k-means
rather than agglomerative: it scales to thousands of windows and gives centroids, whose nearest window is the
behaviour's representative). Per behaviour (and for all windows, "all"):

- ``C[lag][i, j] = corr(ic_i(t), ic_j(t + lag))``, Pearson over the (window, t) pairs of its windows;
- ``G[lag][i, j]`` the mean of ``J[t, lag, i, j]`` over its windows' t with t + lag inside the window, env and own;
- sign consistency at lags >= 1: among (i, j) with ``|C| >= corr_min`` and ``|G| >= grad_min`` (off the diagonal
  unless ``diagonal``), the share where sign(C) == sign(G), beside a null: the same entries with G's values
  shuffled among them (``draws`` times: mean, 95% interval, one-sided p).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...data import Windows
from ...loop import Context, FrozenAgent, Noise, rollout

CUTS, ACTION_PATHS = ("actions", "obs"), ("straight_through", "soft")
JSON_FILE, ARRAYS_FILE, VIDEO_FILE = "behaviours.json", "behaviours.npz", "behaviours.gif"  # what sim behaviours writes
PATHS = ("env", "own")  # Jacobians with the environment's gradient paths, and the agent's own recurrence alone


@dataclass(frozen=True)
class Readout:
    """The linear map between raw hidden states and direction coefficients (K directions, D units):
    ``ic = (((hx - mean) / std) - offset) @ unmix`` and the hx-space step ``shift`` that moves one coefficient."""

    mean: torch.Tensor  # (D,) z-scoring mean of the raw states
    std: torch.Tensor  # (D,) z-scoring std
    offset: torch.Tensor  # (D,) z-space offset the coefficients are taken around
    unmix: torch.Tensor  # (D, K) z -> coefficients
    shift: torch.Tensor  # (K, D) hx-space change that adds 1 to one coefficient: V * std
    labels: tuple = ()

    @classmethod
    def from_directions(cls, directions) -> "Readout":
        """From hidden-state :class:`~policylens.factors.Directions` (``policylens sim hx``: z-space, ``meta``
        std / zscore_mean); the vectors must invert the readout (``V @ unmix = I``), as ICA's mixing does."""
        from ...targets import direction_readout

        parts = [direction_readout(directions, k) for k in range(len(directions))]
        mean, std, offset = parts[0][:3]
        unmix = torch.stack([p[3] for p in parts], 1)  # (D, K)
        v = directions.vectors.float()  # (K, D)
        gap = float((v @ unmix - torch.eye(len(directions))).abs().max())
        if gap > 1e-3:
            raise ValueError(f"{directions.method} directions of layer {directions.layer!r}: their vectors do not "
                             f"invert their readout (|V @ readout - I| up to {gap:.3g}), so a probe along one "
                             "direction would move the others; use ICA or PCA directions from `policylens sim hx`")
        return cls(mean, std, offset, unmix, v * std, tuple(directions.labels))

    def __len__(self) -> int:
        return self.unmix.shape[1]

    def zscore(self, hx: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D) with the real analysis' mean and std."""
        return (hx - self.mean.to(hx)) / self.std.to(hx)

    def coefficients(self, hx: torch.Tensor) -> torch.Tensor:
        """(..., D) raw states -> (..., K) coefficients, differentiable."""
        return (self.zscore(hx) - self.offset.to(hx)) @ self.unmix.to(hx)

    def probe(self, hx: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``hx`` (B, D) moved by ``p`` (B, K) along the directions: coefficients + p."""
        return hx + p @ self.shift.to(hx)  # (B, D)


class _Policy(FrozenAgent):
    """The frozen agent (same network, not copied) remembering its last logits, for soft actions."""

    def __init__(self, agent: FrozenAgent):
        self.__dict__.update(agent.__dict__)
        self.logits = None

    def __call__(self, obs, hx):
        out = super().__call__(obs, hx)
        self.logits = out.logits  # (B, A)
        return out


def _check_paths(cut: str, actions: str) -> None:
    if cut not in CUTS:
        raise ValueError(f"cut {cut!r}; expected one of {', '.join(CUTS)}")
    if actions not in ACTION_PATHS:
        raise ValueError(f"actions {actions!r}; expected one of {', '.join(ACTION_PATHS)}")


def jacobians(sim, agent: FrozenAgent, readout: Readout, start, steps: int, max_lag: int, *, env: bool = True,
              cut: str = "actions", actions: str = "straight_through", latent: str = "sample",
              noise: "Noise | None" = None, intervene=None, recorded: "dict | None" = None) -> tuple:
    """One rollout with a zero probe on the received hx at every step and its Jacobians (module doc).

    Returns ``(Rollout detached, J (B, T, max_lag + 1, K, K))`` with ``J[b, t, lag, i, j] = d ic_j(t + lag) /
    d ic_i(t)`` (NaN where t + lag >= T). ``intervene`` (name, t, tensor) is applied before the probes and cuts.
    ``recorded``: a recorded prefix for :func:`~policylens.sim.loop.rollout` (``actions``, ``obs``, ``mask`` and
    ``agent_state``: a filtered start's).
    """
    _check_paths(cut, actions)
    if not 0 <= max_lag < steps:
        raise ValueError(f"max_lag must be in [0, {steps - 1}] for rollouts of {steps} steps, got {max_lag}")
    policy = _Policy(agent)
    batch = start.obs.shape[0] if isinstance(start, Context) else start.shape[0]
    dtype, device = next(sim.parameters()).dtype, next(sim.parameters()).device
    probes = [torch.zeros(batch, len(readout), dtype=dtype, device=device, requires_grad=True) for _ in range(steps)]
    own = not env

    def tap(name, t, x):
        x = intervene(name, t, x) if intervene is not None else x
        if name == "hx":
            return readout.probe(x, probes[t])
        if name == "obs" and own and cut == "obs":
            return x.detach()
        if name == "action":
            if actions == "soft":
                x = F.softmax(policy.logits, -1).to(x.dtype)  # (B, A) the policy itself drives the simulator
            return x.detach() if own and cut == "actions" else x
        return x

    with torch.enable_grad():
        r = rollout(sim, policy, start, steps, mode="modal", detach_actions=own and cut == "actions", latent=latent,
                    noise=noise, straight_through=False if actions == "soft" else None, intervene=tap,
                    **(recorded or {}))
        ic = readout.coefficients(r.hx)  # (B, T, K)
        jac = torch.full((batch, steps, max_lag + 1, len(readout), len(readout)), float("nan"), dtype=dtype)
        for later in range(steps):
            first = max(0, later - max_lag)
            for j in range(len(readout)):
                grads = torch.autograd.grad(ic[:, later, j].sum(), probes[first:later + 1], retain_graph=True,
                                            allow_unused=True)
                for t, g in zip(range(first, later + 1), grads):
                    jac[:, t, later - t, :, j] = 0.0 if g is None else g.detach().cpu()  # (B, K) over i
    return r.detach(), jac


@torch.no_grad()
def _frames(r, readout: Readout) -> dict:
    """Per-step arrays of one detached rollout, (B, T, ...) numpy."""
    from ....hidden.hx.core import entropy

    b, t = r.value.shape
    return {"ic": readout.coefficients(r.hx), "hx_z": readout.zscore(r.hx), "h": r.h, "s": r.s, "value": r.value,
            "reward": r.reward, "action": r.action_index, "obs": r.obs.round().clamp(0, 255).to(torch.uint8),
            "entropy": torch.from_numpy(entropy(r.logits.reshape(b * t, -1).cpu().numpy()).reshape(b, t))}


def simulate(sim, agent: FrozenAgent, readout: Readout, samples: int, steps: int, max_lag: int, *, seed: int = 0,
             starts: "Context | Windows | None" = None, batch_size: int = 64, cut: str = "actions",
             actions: str = "straight_through", latent: str = "sample", progress: bool = False) -> dict:
    """``samples`` rollouts of ``steps`` steps (from z ~ N(0, I); from the encoded ``starts`` with ``samples``
    rows, a :class:`Context`; or from their filtered start, :class:`~policylens.sim.data.Windows` of the context
    frames: :func:`~policylens.sim.loop.filtered_start`, the agent acting from the last), modal actions, noise
    seeded. Returns numpy arrays: ``ic`` (N, T, K), ``hx_z`` (N, T, D), ``h``, ``s``, ``value``, ``reward``,
    ``entropy``, ``action`` (N, T), ``obs`` (N, T, H, W, C) uint8 (rounded, for drawing), ``jacobian_env`` /
    ``jacobian_own`` (N, T, max_lag + 1, K, K)."""
    from tqdm.auto import tqdm

    from ...loop import check_starts, windows_start

    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    check_starts(starts, samples)
    generator = torch.Generator().manual_seed(seed)
    device = next(sim.parameters()).device
    k = sim.config.context_frames
    parts = []
    for a in tqdm(range(0, samples, batch_size), desc="behaviour samples", unit="batch", disable=not progress):
        b = min(batch_size, samples - a)
        noise = Noise.draw(b, steps, sim, generator, device=device)
        start: "torch.Tensor | Context" = noise.z
        real: dict = {}
        if isinstance(starts, Context):
            start = Context(starts.obs[a:a + b].to(device), starts.agent_state[a:a + b].to(device),
                            None if starts.mask is None else starts.mask[a:a + b].to(device))
        elif starts is not None:  # Windows: the filtered start (with the recorded state at the first frame)
            start, real = windows_start(starts, slice(a, a + b), k, device)
        out = {}
        for path in PATHS:
            r, out[f"jacobian_{path}"] = jacobians(sim, agent, readout, start, steps, max_lag, env=path == "env",
                                                   cut=cut, actions=actions, latent=latent, noise=noise,
                                                   recorded=real)
        parts.append({**{k: v.cpu() for k, v in _frames(r, readout).items()}, **out})
    return {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}


# ---------------------------------------------------------------------------------------------- behaviours
def window_features(blocks: dict, window: int, stride: int) -> tuple:
    """Windows of ``window`` steps every ``stride`` steps of each sample's joint state sequence.

    ``blocks``: ``{name: (N, T, F)}`` (e.g. hx_z, h, s). Returns ``(features (M, window * sum F), index (M, 2) of
    [sample, first step], {name: scale})``; each block's flattened windows are divided by the square root of
    their total variance (``scale``) so every block weighs the same in the distances."""
    arrays = [np.asarray(x, np.float64) for x in blocks.values()]
    if not arrays or any(x.ndim != 3 or x.shape[:2] != arrays[0].shape[:2] for x in arrays):
        raise ValueError("blocks must be (N, T, F) arrays of the same samples and steps, got shapes "
                         f"{[np.shape(x) for x in blocks.values()]}")
    n, steps = arrays[0].shape[:2]
    if not 1 <= window <= steps or stride < 1:
        raise ValueError(f"window must be in [1, {steps}] and stride >= 1, got window {window}, stride {stride}")
    first = np.arange(0, steps - window + 1, stride)  # (W,)
    index = np.stack(np.meshgrid(np.arange(n), first, indexing="ij"), -1).reshape(-1, 2)  # (M, 2)
    steps_of = index[:, 1:] + np.arange(window)  # (M, L)
    features, scales = [], {}
    for name, x in zip(blocks, arrays):
        flat = x[index[:, :1], steps_of].reshape(len(index), -1)  # (M, L * F)
        scale = float(np.sqrt(flat.var(0).sum()))
        scales[name] = scale
        features.append(flat / scale if scale > 0 else flat)
    return np.concatenate(features, 1), index, scales


def cluster_windows(features: np.ndarray, behaviours: int, seed: int = 0) -> tuple:
    """k-means of the windows: ``(labels (M,), centres (B, F), representative (B,) window nearest each centre)``."""
    from ....factors.stable import kmeans

    if not 1 <= behaviours <= len(features):
        raise ValueError(f"behaviours={behaviours}: must be in [1, {len(features)}] for {len(features)} windows")
    labels, centres = kmeans(features, behaviours, seed)
    distance = np.linalg.norm(features - centres[labels], axis=1)  # (M,)
    representative = np.array([np.flatnonzero(labels == b)[np.argmin(distance[labels == b])]
                               for b in range(behaviours)])
    return labels, centres, representative


def lagged_xcorr(series: np.ndarray, max_lag: int) -> np.ndarray:
    """``C[lag, i, j] = corr(x_i(t), x_j(t + lag))`` pooled over sequences and t, ``series`` (M, L, K) ->
    (max_lag + 1, K, K); a direction that does not move has correlation 0."""
    x = np.asarray(series, np.float64)
    if x.ndim != 3 or not 0 <= max_lag < x.shape[1]:
        raise ValueError(f"series must be (M, L, K) with max_lag < L; got shape {x.shape}, max_lag {max_lag}")
    out = np.zeros((max_lag + 1, x.shape[2], x.shape[2]))
    for lag in range(max_lag + 1):
        a = x[:, :x.shape[1] - lag].reshape(-1, x.shape[2])  # (P, K) at t
        b = x[:, lag:].reshape(-1, x.shape[2])  # (P, K) at t + lag
        a, b = a - a.mean(0), b - b.mean(0)
        norm = np.sqrt(np.outer((a ** 2).sum(0), (b ** 2).sum(0)))  # (K, K)
        out[lag] = np.divide(a.T @ b, norm, out=np.zeros_like(norm), where=norm > 0)
    return out


def window_jacobians(jac: np.ndarray, index: np.ndarray, window: int) -> np.ndarray:
    """Per window, the mean of ``jac`` (N, T, lags, K, K) over its steps t with t + lag inside the window:
    (M, lags, K, K)."""
    lags = jac.shape[2]
    if lags > window:
        raise ValueError(f"lags up to {lags - 1} do not fit windows of {window} steps")
    out = np.empty((len(index), lags, *jac.shape[3:]))
    for lag in range(lags):
        t = index[:, 1:] + np.arange(window - lag)  # (M, L - lag)
        out[:, lag] = jac[index[:, :1], t, lag].mean(1)
    return out


def sign_consistency(c: np.ndarray, g: np.ndarray, *, corr_min: float = 0.1, grad_min: float = 0.01,
                     diagonal: bool = False, draws: int = 1000, seed: int = 0) -> dict:
    """How often sign(C) == sign(G) over the (i, j) entries of two (K, K) matrices that are both large enough,
    beside the share when G's values are shuffled among those entries (module doc)."""
    c, g = np.asarray(c, np.float64), np.asarray(g, np.float64)
    if c.shape != g.shape or c.ndim != 2:
        raise ValueError(f"C and G must be (K, K) matrices of one shape, got {c.shape} and {g.shape}")
    keep = (np.abs(c) >= corr_min) & (np.abs(g) >= grad_min) & np.isfinite(c) & np.isfinite(g)
    if not diagonal:
        keep &= ~np.eye(len(c), dtype=bool)
    sc, sg = np.sign(c[keep]), np.sign(g[keep])
    out: dict[str, Any] = {"entries": int(keep.sum()), "share": None, "null_mean": None, "null_low": None,
                           "null_high": None, "p": None}
    if not len(sc):
        return out
    share = float((sc == sg).mean())
    rng = np.random.default_rng(seed)
    null = np.array([(sc == sg[rng.permutation(len(sg))]).mean() for _ in range(draws)]) if draws else np.array([])
    out["share"] = share
    if len(null):
        # the mean lies within the draws' range; summing in floating point can leave it just outside (a constant
        # null of 1/3 averages to 0.33333333333333326), below its own 2.5% quantile
        mean = float(np.clip(null.mean(), null.min(), null.max()))
        out.update(null_mean=mean, null_low=float(np.quantile(null, 0.025)),
                   null_high=float(np.quantile(null, 0.975)), p=float((1 + (null >= share).sum()) / (1 + len(null))))
    return out


def _behaviour_row(b: int, members: np.ndarray, samples: dict, steps_of: np.ndarray, rep: int, index, names) -> dict:
    who, when = index[members, :1], steps_of[members]  # (m, 1), (m, L)
    counts = np.bincount(samples["action"][who, when].ravel(), minlength=len(names))
    mean = {k: float(samples[k][who, when].mean()) for k in ("value", "entropy", "reward")}
    return {"behaviour": b, "size": int(len(members)), "share": float(len(members) / len(index)),
            **{f"mean_{k}": v for k, v in mean.items()},
            "actions": {(names[a] if a < len(names) else str(a)): int(n) for a, n in enumerate(counts)},
            "representative": {"window": int(rep), "sample": int(index[rep, 0]), "start": int(index[rep, 1])}}


def analyze(samples: dict, *, window: int = 8, stride: int = 0, behaviours: int = 6, max_lag: int = 4,
            seed: int = 0, corr_min: float = 0.1, grad_min: float = 0.01, diagonal: bool = False,
            draws: int = 1000, blocks=("hx_z", "h", "s"), action_names=(), labels=()) -> tuple:
    """Behaviours of :func:`simulate`'s samples (module doc). Returns ``(summary (JSON-able), arrays)``; the
    arrays hold the windows (``index``, ``label``, ``ic`` (M, L, K), ``jacobian_env/own`` (M, lags, K, K)), the
    behaviours' ``mean_ic`` (B, L, K), ``representative`` (B,) and the matrices ``xcorr``, ``xcaus_env``,
    ``xcaus_own`` (B + 1, lags, K, K), the last row over all windows."""
    stride = stride or window
    if not 0 <= max_lag < window:
        raise ValueError(f"max_lag must be in [0, {window - 1}] for windows of {window} steps, got {max_lag}")
    missing = [k for k in (*blocks, "ic", "jacobian_env", "jacobian_own", "action") if k not in samples]
    if missing:
        raise KeyError(f"samples lack {', '.join(missing)}; they come from "
                       "policylens.sim.analyses.behaviours.core.simulate")
    features, index, scales = window_features({k: samples[k] for k in blocks}, window, stride)
    label, _, rep = cluster_windows(features, behaviours, seed)
    steps_of = index[:, 1:] + np.arange(window)  # (M, L)
    ic = samples["ic"][index[:, :1], steps_of]  # (M, L, K)
    jac = {p: window_jacobians(samples[f"jacobian_{p}"][:, :, :max_lag + 1], index, window) for p in PATHS}
    groups = [np.flatnonzero(label == b) for b in range(behaviours)] + [np.arange(len(index))]
    xcorr = np.stack([lagged_xcorr(ic[g], max_lag) for g in groups])  # (B + 1, lags, K, K)
    xcaus = {p: np.stack([jac[p][g].mean(0) for g in groups]) for p in PATHS}
    consistency = {p: [[{"lag": lag, **sign_consistency(xcorr[b, lag], xcaus[p][b, lag], corr_min=corr_min,
                                                         grad_min=grad_min, diagonal=diagonal, draws=draws,
                                                         seed=seed + lag)}
                        for lag in range(1, max_lag + 1)] for b in range(behaviours + 1)] for p in PATHS}
    names = list(action_names) or [str(a) for a in range(int(samples["action"].max()) + 1)]
    mean_ic = np.stack([ic[g].mean(0) for g in groups[:-1]])  # (B, L, K)
    rows = [{**_behaviour_row(b, groups[b], samples, steps_of, rep[b], index, names), "mean_ic": mean_ic[b].tolist()}
            for b in range(behaviours)]
    gap = np.abs(samples["jacobian_env"] - samples["jacobian_own"])[:, :, :max_lag + 1]  # (N, T, lags, K, K)
    summary = {
        "samples": int(samples["ic"].shape[0]), "steps": int(samples["ic"].shape[1]), "window": window,
        "stride": stride, "windows": int(len(index)), "k": int(ic.shape[2]), "labels": list(labels),
        "action_names": names, "lags": list(range(max_lag + 1)), "blocks": list(blocks), "block_scales": scales,
        "settings": {"behaviours": behaviours, "seed": seed, "corr_min": corr_min, "grad_min": grad_min,
                     "diagonal": diagonal, "draws": draws, "clustering": "k-means (10 inits) of block-scaled "
                     "flattened windows"},
        "behaviours": rows, "groups": [f"behaviour {b}" for b in range(behaviours)] + ["all"],
        "env_minus_own": [float(np.nanmean(gap[:, :, lag])) for lag in range(max_lag + 1)],
        "xcorr": xcorr.tolist(), "xcaus_env": xcaus["env"].tolist(), "xcaus_own": xcaus["own"].tolist(),
        "consistency": consistency,
    }
    arrays = {"index": index, "label": label, "ic": ic, "jacobian_env": jac["env"], "jacobian_own": jac["own"],
              "mean_ic": mean_ic, "representative": rep, "xcorr": xcorr,
              "xcaus_env": xcaus["env"], "xcaus_own": xcaus["own"]}
    return summary, arrays
