"""Zero and mean ablation of heads and MLPs named as TransformerLens names them, and its behavioural effect.

Components: ``"blocks.0.attn.head1"`` or ``("blocks.0.attn", 1)`` or ``("blocks.0.attn.hook_z", 1)`` (one head:
its ``hook_z`` slice, so it writes nothing and the shared ``b_O`` stays), ``"blocks.0.attn"`` (every head of
the layer), ``"blocks.0.mlp"`` (the MLP's whole output, ``blocks.0.hook_mlp_out``), or any hook name of the
model (its whole activation; ``("blocks.0.attn.hook_q", h)`` etc. take one head of a per-head hook).
Mean ablation replaces the activation by its mean over a dataset (:func:`component_means`), position by
position: a window shorter than the one the means came from takes the means of the last positions.

:func:`ablation_table` is Decision Transformer Interpretability's Figure 7 as numbers: each set of components
ablated while the model plays the same levels with the same env randomness at each target RTG as the unablated
model, so outcomes pair up level by level (McNemar's test, Holm over the causes) and rates get Wilson 95%
intervals.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .inputs import as_inputs

HEAD_DIM = {"hook_q": 2, "hook_k": 2, "hook_v": 2, "hook_z": 2, "hook_pattern": 1, "hook_attn_scores": 1}
OUTCOMES = ("success", "obstacle", "wall", "timeout")


@dataclass(frozen=True)
class Target:
    """One thing an ablation replaces: a hook's activation, or one head's slice of it."""

    hook: str
    head: Optional[int]
    label: str


def _head_dim(hook: str) -> Optional[int]:
    return HEAD_DIM.get(hook.rsplit(".", 1)[-1])


def _pos_dims(hook: str) -> tuple:
    """Position axes of the activation (batch first)."""
    return (2, 3) if hook.endswith(("hook_pattern", "hook_attn_scores")) else (1,)


def component_list(model) -> list:
    """The canonical component names: every head and every MLP."""
    names = []
    for layer, block in enumerate(model.blocks):
        names += [f"blocks.{layer}.attn.head{h}" for h in range(model.config.n_heads)]
        if not block.attn_only:
            names.append(f"blocks.{layer}.mlp")
    return names


def _unknown(model, component, why: str = "") -> KeyError:
    return KeyError(f"unknown component {component!r}{why}; components: {', '.join(component_list(model))}, "
                    f"'blocks.L.attn' (all heads of a layer), or any hook name (e.g. blocks.0.hook_resid_mid)")


def resolve(model, component) -> Target:
    """A component in any accepted spelling -> :class:`Target`; KeyError listing the names when unknown."""
    n_layers, n_heads = model.config.n_layers, model.config.n_heads
    if isinstance(component, (tuple, list)) and len(component) == 2 and isinstance(component[1], int):
        name, head = component
        hook = f"{name}.hook_z" if re.fullmatch(r"blocks\.\d+\.attn", str(name)) else str(name)
        if hook not in model.hook_dict or _head_dim(hook) is None:
            raise _unknown(model, component)
        if not 0 <= head < n_heads:
            raise _unknown(model, component, f" (the model has {n_heads} heads per layer)")
        return Target(hook, head, f"{hook.rsplit('.', 1)[0]}.head{head}" if hook.endswith("hook_z")
                      else f"{hook}[{head}]")
    if not isinstance(component, str):
        raise _unknown(model, component)
    m = re.fullmatch(r"blocks\.(\d+)\.(attn\.head(\d+)|attn|mlp)", component)
    if m and int(m.group(1)) < n_layers:
        layer = int(m.group(1))
        if m.group(3) is not None:
            return resolve(model, (f"blocks.{layer}.attn", int(m.group(3))))
        if m.group(2) == "attn":
            return Target(f"blocks.{layer}.attn.hook_z", None, component)
        if not model.blocks[layer].attn_only:
            return Target(f"blocks.{layer}.hook_mlp_out", None, component)
    if component in model.hook_dict:
        return Target(component, None, component)
    raise _unknown(model, component)


def resolve_all(model, components) -> list:
    """One component or a list of them -> [:class:`Target`] (a ``(name, head)`` pair is one component)."""
    single = isinstance(components, str) or (isinstance(components, (tuple, list)) and len(components) == 2
                                              and isinstance(components[1], int))
    return [resolve(model, c) for c in ([components] if single else components)]


def _fit(mean: torch.Tensor, act: torch.Tensor, hook: str) -> torch.Tensor:
    """The mean (activation shape without batch) cut to the activation's positions (the last ones)."""
    for dim in _pos_dims(hook):
        s = act.shape[dim]
        if mean.shape[dim - 1] < s:
            raise ValueError(f"means for {hook} cover {mean.shape[dim - 1]} positions; the input has {s}")
        mean = mean.narrow(dim - 1, mean.shape[dim - 1] - s, s)
    return mean.to(act.device, act.dtype).expand_as(act)


def _replace(targets: list, mode: str, means: "dict | None"):
    """A hook function replacing every target of one hook (zero or mean)."""
    def hook_fn(act, hook):
        fill = torch.zeros_like(act) if mode == "zero" else _fit(means[targets[0].hook], act, targets[0].hook)
        if any(t.head is None for t in targets):
            return fill.clone()
        out, dim = act.clone(), _head_dim(targets[0].hook)
        for t in targets:
            out.select(dim, t.head).copy_(fill.select(dim, t.head))
        return out
    return hook_fn


@contextmanager
def ablate(model, components, mode: str = "zero", means: "dict | None" = None):
    """Context manager: inside it, ``model`` runs with ``components`` ablated (zero, or ``mean`` from
    ``means`` = :func:`component_means`). The hooks are removed on exit, also after an exception."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation mode {mode!r}; expected 'zero' or 'mean'")
    targets = resolve_all(model, components)
    if mode == "mean":
        if means is None:
            raise ValueError("mean ablation needs means: component_means(model, batch) over a dataset")
        missing = sorted({t.hook for t in targets} - set(means))
        if missing:
            raise KeyError(f"means lack {', '.join(missing)}; compute them with component_means(model, batch, "
                           f"hooks={missing})")
    by_hook: dict[str, list] = {}
    for t in targets:
        by_hook.setdefault(t.hook, []).append(t)
    added = []
    try:
        for hook, group in by_hook.items():
            point = model.hook_dict[hook]
            added.append((point, point.add_hook(_replace(group, mode, means), dir="fwd")))
        yield model
    finally:
        for point, handle in added:
            handle.hook.remove()
            if handle in point.fwd_hooks:
                point.fwd_hooks.remove(handle)


def default_hooks(model) -> list:
    """Hooks the canonical components ablate: every layer's ``attn.hook_z`` and ``hook_mlp_out``."""
    return sorted({resolve(model, c).hook for c in component_list(model)})


def _real(n: int, tokens: torch.Tensor, part, hook: str) -> torch.Tensor:
    """(B, n) True where the position is a real token: the axis holds tokens (3K - 1), timesteps (K) or the
    actions that enter (K - 1)."""
    steps = part.mask if part.mask is not None else torch.ones(part.batch_size, part.context, dtype=torch.bool)
    for size, keep in ((part.seq_len, tokens), (part.context, steps), (part.context - 1, steps[:, :-1])):
        if n == size:
            return keep
    raise ValueError(f"cannot tell the positions of {hook} ({n} along its position axis) in windows of "
                     f"{part.context} steps")


@torch.no_grad()
def component_means(model, batch, hooks=None, chunk: int = 1024) -> dict:
    """``{hook: mean activation}`` over the windows of ``batch`` (DTInputs or dt.data.Batch), position by
    position over the real (unpadded) tokens; each mean has the activation's shape without the batch axis."""
    inputs = as_inputs(batch)
    hooks = list(hooks or default_hooks(model))
    unknown = [h for h in hooks if h not in model.hook_dict]
    if unknown:
        raise KeyError(f"unknown hook(s) {', '.join(unknown)}; the model's hooks: {', '.join(model.hook_dict)}")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for lo in range(0, inputs.batch_size, chunk):
        part = inputs.select(list(range(lo, min(lo + chunk, inputs.batch_size))))
        _, cache = model.run_with_cache(*part.args(), names_filter=lambda n: n in hooks)
        tokens = (torch.ones(part.batch_size, part.seq_len, dtype=torch.bool) if part.mask is None
                  else part.mask.repeat_interleave(3, 1)[:, :-1])  # (B, S)
        for hook in hooks:
            act = cache[hook]
            dim = _pos_dims(hook)[0]
            keep = _real(act.shape[dim], tokens, part, hook)  # (B, P)
            shape = [keep.shape[0]] + [1] * (act.dim() - 1)
            shape[dim] = keep.shape[1]
            w = keep.reshape(shape).to(act.dtype)
            sums[hook] = sums.get(hook, 0) + (act * w).sum(0)
            counts[hook] = counts.get(hook, 0) + w.sum(0)
    return {h: (sums[h] / counts[h].clamp(min=1)).cpu() for h in hooks}


# ------------------------------------------------------------------------------------------ behaviour
def _as_sets(components_sets) -> list:
    """Each entry one component or a list of them -> a list of lists."""
    out = []
    for entry in components_sets:
        single = isinstance(entry, str) or (isinstance(entry, (tuple, list)) and len(entry) == 2
                                            and isinstance(entry[1], int))
        out.append([entry] if single else list(entry))
    if not out:
        raise ValueError("ablation_table needs at least one set of components to ablate")
    return out


def _outcomes(records: list) -> dict:
    """Episode counts per outcome (success, obstacle, wall, timeout, other)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    counts["other"] = 0
    for r in records:
        counts[r["cause"] if r["cause"] in OUTCOMES else "other"] += 1
    return counts


def _cause(r: dict) -> str:
    return r["cause"] if r["cause"] in OUTCOMES else "other"


def _paired(base: list, records: list, events: dict, alpha: float) -> dict:
    """McNemar tests, paired by level, of each event (``{name: record -> bool}``) that happened in either run,
    Holm-corrected over those events:
    ``{name: {delta, only_unablated, only_ablated, p_value, p_holm, significant}}``."""
    from ...evaluate.compare import holm, mcnemar_exact

    tests, pvalues = {}, {}
    for name, happened in events.items():
        was, now = [happened(r) for r in base], [happened(r) for r in records]
        if not any(was) and not any(now):
            continue
        only_base = sum(a and not b for a, b in zip(was, now))
        only_ablated = sum(b and not a for a, b in zip(was, now))
        pvalues[name] = mcnemar_exact(only_base, only_ablated)
        tests[name] = {"delta": (sum(now) - sum(was)) / len(records), "only_unablated": only_base,
                       "only_ablated": only_ablated, "p_value": pvalues[name]}
    for name, p in holm(pvalues).items():
        tests[name].update(p_holm=p, significant=p < alpha)
    return tests


def _rates(counts: dict, n: int) -> dict:
    from ...evaluate.stats import wilson_interval

    return {k: {"rate": c / n, "ci95": list(wilson_interval(c, n))} for k, c in counts.items()}


def _row(rtg: float, label: str, records: list, base: "list | None", alpha: float) -> dict:
    """One row: outcome counts and rates; the goal entries by the side the agent came from (Decision Transformer
    Interpretability's "from the top", "from the left"); paired tests against the unablated ``base``."""
    from ..play import ENTERED_FROM

    n, counts = len(records), _outcomes(records)
    goal = {side: sum(r["cause"] == "success" and r.get("entered_from") == side for r in records)
            for side in ENTERED_FROM}
    row: dict[str, Any] = {"rtg": rtg, "ablation": label, "episodes": n, "counts": counts, "rates": _rates(counts, n),
                           "goal_entered_from": {"counts": goal, "rates": _rates(goal, n)}}
    if base is not None:
        if [r["level"] for r in base] != [r["level"] for r in records]:
            raise ValueError("the ablated and unablated runs did not play the same levels; cannot pair them")
        row["vs_unablated"] = _paired(base, records, {o: (lambda r, o=o: _cause(r) == o) for o in counts}, alpha)
        row["goal_entered_from"]["vs_unablated"] = _paired(
            base, records, {s: (lambda r, s=s: r["cause"] == "success" and r.get("entered_from") == s)
                            for s in ENTERED_FROM}, alpha)
    return row


def ablation_table(model, env_spec: str, components_sets, rtgs=(-1, 0, 0.9), episodes: int = 100, *,
                   mode: str = "zero", means: "dict | None" = None, start_level: int = 1_000_000, seed: int = 0,
                   policy: str = "sample", temperature: float = 1.0, batch: int = 64, alpha: float = 0.05,
                   progress: bool = False) -> dict:
    """Behaviour (success / obstacle / wall / timeout rates, Wilson 95% CIs, and the goal entries by the side the
    agent came from) at each target RTG of the model and of each ablated copy, on the same levels; paired
    McNemar tests against the unablated model, Holm-corrected over the outcomes (and over the sides) of a row.
    ``components_sets``: e.g. ``["blocks.0.attn.head0", "blocks.0.attn.head1", "blocks.0.mlp",
    ["blocks.0.attn.head0", "blocks.0.attn.head1"]]``."""
    from tqdm.auto import tqdm

    from ..play import play

    sets = _as_sets(components_sets)
    labels = ["+".join(t.label for t in resolve_all(model, s)) for s in sets]  # validates every name first
    if mode == "mean" and means is None:
        raise ValueError("mean ablation needs means: component_means(model, batch) over a dataset")
    kwargs: dict[str, Any] = dict(start_level=start_level, seed=seed, policy=policy, temperature=temperature,
                                  batch=batch)
    rows = []
    bar = tqdm(total=len(rtgs) * (len(sets) + 1), desc="dt ablate", unit="run", disable=not progress)
    for rtg in [float(r) for r in rtgs]:
        base = play(model, env_spec, rtg, episodes, **kwargs)
        rows.append(_row(rtg, "none", base, None, alpha))
        bar.update(1)
        for comps, label in zip(sets, labels):
            with ablate(model, comps, mode, means):
                records = play(model, env_spec, rtg, episodes, **kwargs)
            rows.append(_row(rtg, label, records, base, alpha))
            bar.update(1)
    bar.close()
    return {"env": env_spec, "episodes": episodes, "mode": mode, "rtgs": [float(r) for r in rtgs],
            "ablations": labels, "components": [[str(c) for c in s] for s in sets], "policy": policy,
            "seed": seed, "start_level": start_level, "alpha": alpha,
            "test": "McNemar exact, paired by level, Holm over the outcomes of each row", "rows": rows}
