"""One dataclass per entry point; the CLI is generated from it.

Each field's one-line doc is the string literal right after it (CleanRL style), read from the source, so
``--help`` shows it. ``add_dataclass_args(parser, Cls)`` adds ``--field-name`` options; ``from_args`` builds
the dataclass back from the parsed namespace.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from functools import lru_cache


@lru_cache(maxsize=None)
def field_docs(cls) -> dict:
    """``{field: doc}`` from the string literal that follows each field in the class body, a base dataclass's
    fields included (a subclass's doc wins)."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls) -> dict:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    klass = tree.body[0]
    if not isinstance(klass, ast.ClassDef):
        return {}
    body = klass.body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value).strip()
    return docs


def _bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kind = hints.get(f.name, str)
        origin = typing.get_origin(kind)
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            kind = args[0]  # Optional[X] / X | None
        opt = "--" + f.name.replace("_", "-")
        doc = docs.get(f.name, "")
        # a doc that states its own default ("default: the preset's") is not followed by "(default: None)"
        help_text = (doc if "default" in doc else f"{doc} (default: {default})").replace("%", "%%")
        if kind is bool:
            parser.add_argument(opt, type=_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help_text)
        elif kind in (int, float, str):
            parser.add_argument(opt, type=kind, default=default, help=help_text)
        elif typing.get_origin(kind) in (tuple, list) or kind in (tuple, list):
            parser.add_argument(opt, type=str, default=default, help=help_text + " (comma-separated)")
        else:
            parser.add_argument(opt, type=str, default=default, help=help_text)


def from_args(cls, ns: argparse.Namespace, **overrides):
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(ns, f.name):
            v = getattr(ns, f.name)
            if isinstance(v, str) and isinstance(f.default, (tuple, list)):
                v = tuple(x.strip() for x in v.split(",") if x.strip())
            values[f.name] = v
    values.update(overrides)
    return cls(**values)


BAD_INPUT = (FileNotFoundError, FileExistsError, ValueError, KeyError)  # FileExistsError: an output not to be replaced


def error_message(e: BaseException) -> str:
    """The text of a bad-input error (a KeyError's message without the quotes ``str`` adds)."""
    return str(e.args[0] if isinstance(e, KeyError) and e.args else e)


class clear_errors:
    """``with clear_errors(parser):`` bad input raised inside exits 2 with ``PROG: error: message``, no traceback.
    ``also``: more exception types that mean bad input for this command."""

    def __init__(self, parser: argparse.ArgumentParser, also: tuple = ()):
        self.parser, self.kinds = parser, BAD_INPUT + tuple(also)

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is not None and isinstance(e, self.kinds):
            self.parser.exit(2, f"{self.parser.prog}: error: {error_message(e)}\n")
        return False
