"""No import cycles among policylens' modules, counting the imports inside functions too.

The graph: one node per module under ``src/policylens`` (a package is its ``__init__.py``), parsed with ``ast``
(nothing is imported). Every ``import policylens...`` and ``from ... import ...`` naming a policylens module is an
edge, wherever it stands: at module level, inside a function, under ``if TYPE_CHECKING``. Relative imports are
resolved against the importing module's package. ``from P import n`` is an edge to ``P.n`` when that is a module;
otherwise, when ``P``'s ``__init__`` re-exports ``n`` from its own submodule ``P.s`` (``from .s import n`` at its
module level, or inside its lazy ``__getattr__``), an edge to ``P.s``, the module that defines ``n``; otherwise an
edge to ``P`` itself. So using a facade is depending on what it forwards, not on everything it holds.

What is not an edge: a package's lazy re-exports (imports inside its own module-level ``__getattr__`` of its own
submodules, and ``importlib`` tables such as ``policylens.sim``'s), because they run only when a client asks for
that name and the client's edge already goes to the submodule; and the parent packages that importing
``P.s`` executes implicitly. A package's eager re-exports (``from .s import n`` at its module level) stay edges
``P -> P.s``: importing ``P`` runs them, so a submodule that imports something ``P`` defines itself (or ``P`` as
a module) closes a real cycle and is reported.

``ALLOWED`` lists the edges of cycles left on purpose, each with the reason; a cycle that needs any other edge
fails the test, and an allowed edge that no longer exists fails it too (so the list only shrinks).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# (importer, imported): edges of known cycles left on purpose, each with its reason (none at present)
ALLOWED: set = set()


def modules(src: Path = SRC) -> dict:
    """``{dotted name: (path, is_package, ast)}`` of every module under ``src/policylens``."""
    out = {}
    for path in sorted((src / "policylens").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        out[name] = (path, is_package, ast.parse(path.read_text(), str(path)))
    return out


def imports(name: str, mods: dict) -> list:
    """``(module, imported name or None, line, enclosing top-level function or None)`` of each policylens import
    in module ``name``, relative imports resolved."""
    path, is_package, tree = mods[name]
    package = name if is_package else name.rpartition(".")[0]
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and function is None:
                inner = child.name
            if isinstance(child, ast.Import):
                found.extend((a.name, None, child.lineno, function) for a in child.names
                             if a.name.split(".")[0] == "policylens")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    if not base:
                        raise ValueError(f"{path}:{child.lineno}: relative import beyond the top package")
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                if module.split(".")[0] == "policylens":
                    found.extend((module, a.name, child.lineno, function) for a in child.names)
            visit(child, inner)

    visit(tree, None)
    return found


def reexports(mods: dict) -> dict:
    """``{package: {name: submodule}}``: what each package's ``__init__`` forwards from its own submodules."""
    table = {}
    for name, (_, is_package, _) in mods.items():
        if is_package:
            table[name] = {n: module for module, n, _, function in imports(name, mods)
                           if n and module.startswith(name + ".") and module in mods
                           and function in (None, "__getattr__")}
    return table


def graph(mods: dict) -> dict:
    """``{module: {imported module: first line}}`` by the rules in the module docstring."""
    forwarded = reexports(mods)
    edges = {name: {} for name in mods}
    for name, (_, is_package, _) in mods.items():
        for module, n, line, function in imports(name, mods):
            if n is not None and f"{module}.{n}" in mods:
                target = f"{module}.{n}"
            elif n is not None and module != name and n in forwarded.get(module, {}):
                target = forwarded[module][n]
            else:
                target = module
            if target not in mods or target == name:
                continue
            if is_package and function == "__getattr__" and target.startswith(name + "."):
                continue  # a lazy re-export
            edges[name].setdefault(target, line)
    return edges


def cycles(edges: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            strong(v)
    return found


def describe(component: list, edges: dict, mods: dict) -> str:
    lines = [" <-> ".join(component)]
    for a in component:
        for b, line in edges[a].items():
            if b in component:
                lines.append(f"    {mods[a][0].relative_to(SRC)}:{line}: {a} imports {b}")
    return "\n".join(lines)


@pytest.mark.slow
def test_policylens_has_no_import_cycles():
    mods = modules()
    edges = graph(mods)
    missing = sorted(e for e in ALLOWED if e[1] not in edges.get(e[0], {}))
    assert not missing, f"allowed edges that no longer exist (remove them from ALLOWED): {missing}"
    kept = {a: {b: line for b, line in out.items() if (a, b) not in ALLOWED} for a, out in edges.items()}
    found = cycles(kept)
    assert not found, "import cycles:\n" + "\n".join(describe(c, kept, mods) for c in found)


def _tree(tmp_path: Path, files: dict) -> dict:
    for rel, text in files.items():
        path = tmp_path / "policylens" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(tmp_path)


def test_the_graph_sees_function_level_relative_and_facade_imports(tmp_path):
    mods = _tree(tmp_path, {
        "a/__init__.py": "from .x import thing\n",
        "a/x.py": "def f():\n    from ..b import y\n",
        "a/z.py": "from . import thing\n",  # through the facade: an edge to a.x, where thing is defined
        "b/__init__.py": "",
        "b/y.py": "from policylens.a import thing\n",
    })
    edges = graph(mods)
    assert "policylens.b.y" in edges["policylens.a.x"]  # function level, relative, `from pkg import module`
    assert set(edges["policylens.a.z"]) == {"policylens.a.x"}
    assert set(edges["policylens.a"]) == {"policylens.a.x"}  # an eager re-export stays an edge
    assert cycles(edges) == [["policylens.a.x", "policylens.b.y"]]


def test_a_submodule_importing_what_its_package_defines_is_a_cycle_and_a_lazy_reexport_is_not(tmp_path):
    mods = _tree(tmp_path, {
        "p/__init__.py": "from .s import n\n\ndef helper():\n    pass\n",
        "p/s.py": "def n():\n    from . import helper\n",
        "q/__init__.py": "def __getattr__(name):\n    from . import t\n    return getattr(t, name)\n",
        "q/t.py": "def g():\n    from policylens.q import something\n",
    })
    edges = graph(mods)
    assert cycles(edges) == [["policylens.p", "policylens.p.s"]]
    assert "policylens.q.t" not in edges["policylens.q"]
