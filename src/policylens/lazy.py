"""Packages that import their parts on first use, so that ``policylens CMD --help`` never imports torch.

A package lists its exports as ordinary imports under ``if TYPE_CHECKING:`` (what type checkers and readers see)
and ends with ``lazy_exports(__name__)``; each name is then imported from its module on first access.
"""
from __future__ import annotations

import ast
import importlib
import sys
from types import ModuleType


def _exports(path: str) -> dict:
    """name -> relative module, from the ``from .x import a, b`` lines under ``if TYPE_CHECKING:``."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for item in node.body:
                if isinstance(item, ast.ImportFrom) and item.level:
                    for alias in item.names:
                        found[alias.asname or alias.name] = "." * item.level + (item.module or "")
    return found


def lazy_exports(name: str) -> None:
    """Make the package ``name`` import each name of its ``TYPE_CHECKING`` block on first access."""
    package = sys.modules[name]
    assert package.__file__ is not None, f"{name} is a regular package (an __init__.py)"
    exports = _exports(package.__file__)

    class LazyPackage(ModuleType):
        def __getattr__(self, attr):
            if attr not in exports:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            value = getattr(importlib.import_module(exports[attr], name), attr)
            ModuleType.__setattr__(self, attr, value)
            return value

        def __setattr__(self, attr, value):
            # importing the submodule ``name.attr`` must not hide the export of the same name (record, blind, ...)
            if attr in exports and isinstance(value, ModuleType) and value.__name__ == f"{name}.{attr}":
                return
            ModuleType.__setattr__(self, attr, value)

        def __dir__(self):
            return sorted(set(ModuleType.__dir__(self)) | set(exports))

    package.__class__ = LazyPackage
