"""What ``policylens layers RUN`` prints: an agent's analysable layers with their shapes and docs.

``describe_layers(agent)`` -> ``[{"name", "shape", "doc", "kind"}, ...]``: for a policylens agent its
documented ``LAYERS`` (plus ``hx``, ``pi``, ``v``), or with ``all_modules=True`` every named submodule; for a
foreign ``nn.Module`` (no ``LAYERS``) every named submodule, which needs ``obs_shape`` unless the module has
an ``obs_shape`` attribute. Shapes come from one dummy forward pass with hooks (``layer_shapes``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

HEAD_DOCS = {
    "hx": "(B, hidden) GRU state",
    "pi": "(B, A) policy logits",
    "v": "(B, 1) value",
}


def describe_layers(agent: nn.Module, obs_shape=None, all_modules: bool = False) -> list:
    """``[{"name", "shape", "doc", "kind"}]``, one per layer in the order the agent lists them.

    ``shape`` is the activation shape without the batch dimension (a tuple), or None for a module the
    forward pass does not reach; ``doc`` is the documented meaning ("" if none); ``kind`` the module's class.
    """
    from ..hooks import layer_shapes
    from .base import ActorCritic, get_layer, layer_names

    names = [n for n, _ in agent.named_modules() if n] if all_modules else layer_names(agent)
    shapes = layer_shapes(agent, obs_shape, names=names)
    docs = {}
    if getattr(agent, "LAYERS", None) or isinstance(agent, ActorCritic):
        trunk, inner = getattr(agent, "value_trunk", None), getattr(agent, "trunk", None)
        docs = {**HEAD_DOCS, **(getattr(agent, "LAYERS", {}) or {}), **(getattr(agent, "head_layers", {}) or {}),
                **{f"value_trunk.{k}": f"{v}, value trunk" for k, v in (getattr(trunk, "LAYERS", None) or {}).items()},
                **{f"trunk.{k}": v for k, v in (getattr(inner, "LAYERS", None) or {}).items()}}
    rows = []
    for name in names:
        module = get_layer(agent, name)
        rows.append({"name": name, "shape": shapes.get(name), "doc": docs.get(name, ""),
                     "kind": type(module).__name__})
    return rows


def format_shape(shape) -> str:
    """``(16, 32, 32)`` -> ``"(B, 16, 32, 32)"``; None -> ``"-"`` (not reached by the forward pass)."""
    if shape is None:
        return "-"
    return "(" + ", ".join(["B", *(str(d) for d in shape)]) + ")"


def format_layers(layers, obs_shape=None, all_modules: bool = False) -> str:
    """A plain-text table of ``describe_layers`` rows (or of an agent, described first)."""
    from torch import nn

    title = ""
    if isinstance(layers, nn.Module):
        agent = layers
        shape = obs_shape or getattr(agent, "obs_shape", None)
        axes = "(H, W, C)" if shape is None or len(shape) == 3 else "(D,)" if len(shape) == 1 else "shape"
        title = f"{type(agent).__name__}, obs {axes} = {tuple(shape) if shape else '?'}\n"
        layers = describe_layers(agent, obs_shape, all_modules=all_modules)
    header = ("layer", "shape", "kind", "doc")
    table = [header] + [(r["name"], format_shape(r["shape"]), r["kind"], r["doc"]) for r in layers]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = []
    for k, row in enumerate(table):
        cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ---")
    return title + "\n".join(lines)


def main(argv=None) -> None:
    """``policylens layers RUN``: the table of an agent's layers."""
    import argparse

    from . import load

    parser = argparse.ArgumentParser(prog="policylens layers",
                                     description="List an agent's named layers (hook points) with activation shapes.")
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME")
    parser.add_argument("--all", action="store_true", help="every named submodule, not only the documented layers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    agent = load(args.run)
    if args.json:
        import json

        rows = describe_layers(agent, all_modules=args.all)
        print(json.dumps([{**r, "shape": list(r["shape"]) if r["shape"] else None} for r in rows]))
    else:
        print(format_layers(agent, all_modules=args.all))
