"""The package's layering, checked by reading its source (an AST scan, nothing imported).

``symtape/`` is in floors, bottom to top (see ``docs/architecture.md``)::

    arrays      dtypes, array modules and devices, object arrays
    core        Tensor, the primitive registry, ops, tape, algebras
    kernels     traced programs, code generation, compiled kernels
    transforms  st.function, grad/jacobian/hessian, sparse, vmap
    (top)       the tools: config, check, optimizers, optimize, parsing, chunked, cli, ...

A module imports only from its own floor or the floors below; no two modules import each other,
directly or round a longer circle; and no module takes another module's private (``_name``) names.
A Tensor's node fields are read through their public properties (``primitive``, ``inputs``,
``params``, ``source``, ``weak``, ``symbolic``, ``array``) everywhere outside ``core/tensor.py``.
The few imports that must reach up are deferred hooks (inside a function, run only when an
optional path is taken) and are listed in ``UPWARD_HOOKS`` below, each with its reason, so that a
new one is a decision, not an accident.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "symtape"
LAYERS = ["arrays", "core", "kernels", "transforms", "top"]

#: (importer, imported) pairs allowed to import upward (or back within a floor), inside a
#: function only
UPWARD_HOOKS = {
    # a dask array as argument hands the call to symtape.chunked (dask is optional)
    ("symtape.kernels.compile", "symtape.chunked"),
    ("symtape.transforms.functional", "symtape.chunked"),
    # names given to st.compile are checked against the op registry's names by the parser
    ("symtape.kernels.compile", "symtape.parsing"),
    # Tensor.expr and Tensor's matrix view (the symbolic and matrix algebras sit above Tensor)
    ("symtape.core.tensor", "symtape.core.symbolic"),
    ("symtape.core.tensor", "symtape.core.matrix"),
    # backend='numba' hands generation and loading to the Numba generator, which builds on
    # these two modules (Numba is optional: nothing imports it until asked for)
    ("symtape.kernels.compile", "symtape.kernels.numba_backend"),
    ("symtape.kernels.program", "symtape.kernels.numba_backend"),
    # a fused CuPy kernel's NumPy-style fallback is loaded as every kernel is
    ("symtape.kernels.cupy_fused", "symtape.kernels.compile"),
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if len(parts) == 2 and parts[1] in LAYERS:  # a subpackage's __init__
        return LAYERS.index(parts[1])
    return LAYERS.index("top")


def _resolve(base: str, name: str | None) -> str | None:
    """The symtape module that ``from base import name`` (or ``import base``) reads."""
    if name is not None and f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    return base if base in MODULES else None


class _Imports(ast.NodeVisitor):
    """Every import of a symtape module in one file: (imported, names, deferred, line)."""

    def __init__(self):
        self.found: list[tuple[str, list[str], bool, int]] = []
        self.aliases: dict[str, str] = {}  # local name -> symtape module
        self.depth = 0

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == "symtape" and alias.name in MODULES:
                self.found.append((alias.name, [], self.depth > 0, node.lineno))
                if alias.asname:
                    self.aliases[alias.asname] = alias.name

    def visit_ImportFrom(self, node):
        if node.level or not node.module or node.module.split(".")[0] != "symtape":
            return
        for alias in node.names:
            target = _resolve(node.module, alias.name)
            if target is None:
                continue
            if target == node.module:  # a name from a module
                self.found.append((target, [alias.name], self.depth > 0, node.lineno))
            else:  # a module from a package
                self.found.append((target, [], self.depth > 0, node.lineno))
                self.aliases[alias.asname or alias.name] = target


def scan(path: pathlib.Path) -> _Imports:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    visitor = _Imports()
    visitor.visit(tree)
    visitor.tree = tree
    return visitor


SCANS = {name: scan(path) for name, path in MODULES.items()}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_scan_sees_the_package():
    assert "symtape.core.tensor" in MODULES and "symtape.kernels.compile" in MODULES
    assert layer("symtape.arrays.backends") < layer("symtape.core.tensor") < layer(
        "symtape.kernels.program") < layer("symtape.transforms.functional") < layer("symtape.check")
    imports = {target for target, _, _, _ in SCANS["symtape.core.tape"].found}
    assert "symtape.core.tensor" in imports and "symtape.arrays.backends" in imports


def test_no_module_takes_another_modules_private_names():
    offences = []
    for name, found in SCANS.items():
        for target, names, _, line in found.found:
            offences += [f"{name}:{line} imports {target}.{n}" for n in names
                         if target != name and _private(n)]
        for node in ast.walk(found.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in found.aliases and _private(node.attr)
                    and found.aliases[node.value.id] != name):
                offences.append(f"{name}:{node.lineno} reads "
                                f"{found.aliases[node.value.id]}.{node.attr}")
    assert offences == []


def test_every_import_comes_from_the_same_floor_or_below():
    offences = []
    for name, found in SCANS.items():
        for target, _, deferred, line in found.found:
            if layer(target) > layer(name) and not (deferred and (name, target) in UPWARD_HOOKS):
                offences.append(f"{name}:{line} imports {target} from a higher floor")
    assert offences == []


def test_the_upward_hooks_are_still_needed():
    used = {(name, target) for name, found in SCANS.items() for target, _, deferred, _ in found.found
            if deferred}
    assert UPWARD_HOOKS - used == set()


def _graph() -> dict[str, set[str]]:
    """Import edges between modules, upward hooks left out (they run after both are loaded)."""
    graph = {name: set() for name in MODULES}
    for name, found in SCANS.items():
        for target, _, _, _ in found.found:
            if target != name and (name, target) not in UPWARD_HOOKS and target != "symtape":
                graph[name].add(target)
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_find_circle_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle():
    assert find_circle(_graph()) is None


@pytest.mark.parametrize("sub", LAYERS[:-1])
def test_each_floor_is_a_folder(sub):
    assert (PACKAGE / sub / "__init__.py").is_file()


def test_the_scan_sees_private_names_and_deferred_imports():
    visitor = _Imports()
    visitor.visit(ast.parse("from symtape.core.tensor import _hidden\n"
                            "from symtape.core import tape as t\n"
                            "def f():\n    from symtape.chunked import call_kernel\n"))
    assert visitor.found == [("symtape.core.tensor", ["_hidden"], False, 1),
                             ("symtape.core.tape", [], False, 2),
                             ("symtape.chunked", ["call_kernel"], True, 4)]
    assert visitor.aliases == {"t": "symtape.core.tape"}
    assert _private("_hidden") and not _private("__all__") and not _private("public")


# -- the node API: Tensor's and Variable's fields are read through their public properties

#: the slots ``symtape/core/tensor.py`` makes public as read-only properties
#: (``_value`` -> ``array``, ``_prim`` -> ``primitive``, ``_inputs`` -> ``inputs``, ...)
NODE_FIELDS = {"_value", "_prim", "_inputs", "_params", "_source", "_weak", "_symbolic"}

#: (module, function) allowed to use those names, and why
NODE_FIELD_EXCEPTIONS = {
    # check's own method `_Columns._value` (the function checked, at a point), called there
    ("symtape.check", "_Columns.value"): "not a node's field: the method _Columns._value",
    ("symtape.check", "_Columns.finite_differences"): "not a node's field: _Columns._value",
    # the reverse sweep's inner loops read the slots: a dozen reads per node, where a
    # property's call each costs ~8% of a scalar gradient (benchmarks/bench_tape.py)
    ("symtape.core.accumulate", "plan.expand"): "the reverse sweep's plan",
    ("symtape.core.accumulate", "_mark_relevant"): "the reverse sweep's plan",
    ("symtape.core.accumulate", "sweep"): "the reverse sweep",
    ("symtape.core.algebra", "NumericAlgebra.forward"): "the numeric sweep's forward values",
}


def _tensor_privates() -> set[str]:
    """The private names Tensor, Variable and their base class define: slots and methods."""
    names = set()
    for node in ast.walk(SCANS["symtape.core.tensor"].tree):
        if isinstance(node, ast.ClassDef) and node.name in {"Operators", "Tensor", "Variable"}:
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(item.name)
                elif (isinstance(item, ast.Assign) and isinstance(item.value, ast.Tuple)
                        and any(getattr(t, "id", None) == "__slots__" for t in item.targets)):
                    names.update(elt.value for elt in item.value.elts)
    return {name for name in names if _private(name)}


class _NodeFieldUses(ast.NodeVisitor):
    """Each ``owner.name`` of ``names`` in a module, with the function it is in."""

    def __init__(self, names: set[str]):
        self.names, self.scope, self.found = names, [], []

    def visit_FunctionDef(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Attribute(self, node):
        if node.attr in self.names:
            owner = node.value.id if isinstance(node.value, ast.Name) else ast.unparse(node.value)
            self.found.append((".".join(self.scope), f"{owner}.{node.attr}", node.lineno))
        self.generic_visit(node)


def node_field_uses(name: str, tree: ast.AST, privates: set[str]) -> list[str]:
    """Where module ``name`` reads or writes a Tensor's or Variable's private name: a node
    field (public as a property) anywhere outside ``core/tensor.py``, any other private name
    (the closed-form memo ``_sym``, ``_thunk``, the label ``_name``, a Variable's read cache,
    ``_read``) outside the ``core`` floor, whose modules keep those caches for the Tensor."""
    visitor = _NodeFieldUses(privates)
    visitor.visit(tree)
    in_core = name.startswith("symtape.core.")
    return [f"{name}:{line} {use} in {scope or 'the module'}"
            for scope, use, line in visitor.found
            if (name, scope) not in NODE_FIELD_EXCEPTIONS
            and (use.rsplit(".", 1)[1] in NODE_FIELDS or not in_core)]


def test_the_node_fields_are_read_through_their_public_names():
    privates = _tensor_privates()
    assert NODE_FIELDS <= privates and {"_sym", "_thunk", "_name", "_read"} <= privates
    offences = []
    for name, found in SCANS.items():
        if name != "symtape.core.tensor":
            offences += node_field_uses(name, found.tree, privates)
    assert offences == [], ("use the public properties (node.primitive, .inputs, .params, "
                            ".source, .weak, .symbolic, .array) or a function of "
                            "symtape.core.tensor (make_symbol, swap_array)")


def test_the_node_field_scan_sees_reads_and_writes():
    tree = ast.parse("a = node._prim\nv._value = 1\nclass C:\n    def f(self, x):\n"
                     "        return x._sym, self._value()\n")
    privates = {"_prim", "_value", "_sym"}
    assert node_field_uses("symtape.kernels.program", tree, privates) == [
        "symtape.kernels.program:1 node._prim in the module",
        "symtape.kernels.program:2 v._value in the module",
        "symtape.kernels.program:5 x._sym in C.f", "symtape.kernels.program:5 self._value in C.f"]
    # the core floor keeps the closed-form memo; the node fields are public there too
    assert node_field_uses("symtape.core.symbolic", tree, privates) == [
        "symtape.core.symbolic:1 node._prim in the module",
        "symtape.core.symbolic:2 v._value in the module",
        "symtape.core.symbolic:5 self._value in C.f"]
    # an exception names the function
    assert node_field_uses("symtape.core.algebra", ast.parse(
        "class NumericAlgebra:\n    def forward(self, node):\n        return node._value\n"),
        privates) == []


def test_the_node_field_exceptions_are_still_needed():
    privates = _tensor_privates()
    used = set()
    for name, found in SCANS.items():
        visitor = _NodeFieldUses(privates)
        visitor.visit(found.tree)
        used |= {(name, scope) for scope, _, _ in visitor.found}
    assert set(NODE_FIELD_EXCEPTIONS) - used == set()
