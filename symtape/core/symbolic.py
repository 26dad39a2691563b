"""Lazy ``.expr``: SymPy forms built from recorded lineage on first access, then memoized.

Materialization walks the lineage iteratively (no recursion, so deep computations are
fine) and visits only nodes not built yet. Chains of ``add``/``sub`` whose partial sums
nobody else uses are gathered into one n-ary ``Add``: a loop accumulating 10,000 terms
builds one ``Add`` of 10,000 arguments instead of 10,000 ever-longer ones.

The memo is the Tensor's ``_sym`` slot (and ``_thunk``, a gradient's deferred form), written
here: they are core-internal caches of :class:`~symtape.core.tensor.Tensor`, which the
modules of the core floor keep and no module above it touches (``tests/test_layers.py``).
The node itself is read through its public properties (``primitive``, ``inputs``, ...).
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from typing import Any, Callable

import numpy as np
import sympy
from sympy.core.parameters import distribute

from symtape.arrays import objarrays
from symtape.core import deepforms
from symtape.core.accumulate import toposort

__all__ = ["expr_of", "symbolic_value", "symbols_for", "factored", "recursion_headroom",
           "AutoName", "check_unambiguous", "bottom_up"]

class AutoName(str):
    """A name symtape chose (``v1``, ``c1``): its symbols never equal a user's symbols.

    Examples
    --------
    >>> auto = symbols_for(AutoName("v1"), ())
    >>> print(auto), auto == sympy.Symbol("v1", real=True)
    v1
    (None, False)
    """


class _AutoSymbol(sympy.Dummy):
    """The symbol of an automatically named source: unique, like a ``Dummy``, but printed
    as its plain name (a user's ``Symbol("v1")`` may print the same, yet never compares equal)."""

    def _sympystr(self, printer) -> str:
        return self.name


def bottom_up(root: sympy.Basic, done: dict, value_of: Callable) -> Any:
    """Give each distinct node of ``root``'s tree a value, arguments first, without
    recursion (trees may nest thousands deep): ``done`` maps nodes to values (known ones
    given, and kept), ``value_of(node, argument_values)`` makes the rest.

    Parameters
    ----------
    root : sympy.Basic
    done : dict
        Node to value: what is known beforehand (symbols' values, say); updated in place
        with every node valued, so later calls reuse them.
    value_of : callable
        ``value_of(node, argument_values)`` -> the value of ``node``.

    Returns
    -------
    object
        The value of ``root``.

    Examples
    --------
    >>> import sympy
    >>> x = sympy.Symbol("x")
    >>> bottom_up(sympy.sin(x) + x, {x: 2}, lambda node, args: (type(node).__name__, args))
    ('Add', [2, ('sin', [2])])
    """
    stack = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if node in done:
            continue
        if node.args and not ready:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if a not in done)
            continue
        done[node] = value_of(node, [done[a] for a in node.args])
    return done[root]


def symbols_for(name: str, shape: tuple[int, ...]):
    """The symbolic value of a source named ``name``: ``x``, or ``x[0], x[1], ...``.

    Parameters
    ----------
    name : str
        The source's name; an :class:`AutoName` (``v1``, ``c2``) gives symbols that print
        alike but never equal a user's symbol of the same name.
    shape : tuple of int

    Returns
    -------
    sympy.Symbol or numpy.ndarray of sympy.Symbol
        Real symbols: one for shape ``()``, else an object array of indexed ones.

    Examples
    --------
    >>> symbols_for("W", (1, 2))
    array([[W[0,0], W[0,1]]], dtype=object)
    """
    symbol = _AutoSymbol if isinstance(name, AutoName) else sympy.Symbol
    if shape == ():
        return symbol(str(name), real=True)
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = symbol(f"{name}[{','.join(map(str, index))}]", real=True)
    return out


def expr_of(tensor) -> sympy.Basic:
    """The public closed form of a Tensor: ``sympy.Expr`` or ``sympy.Array``."""
    return objarrays.to_sympy(symbolic_value(tensor))


def symbolic_value(tensor) -> Any:
    """The memoized symbolic value of a Tensor (a SymPy object or an object array)."""
    if tensor._sym is not None:
        return tensor._sym
    if tensor._thunk is not None:  # a gradient: its sweep sets up its own context, once
        tensor._sym = objarrays.normalize(tensor._thunk())
        if not _INSIDE.get():
            _allow_printing(tensor._sym)
        return tensor._sym
    if _INSIDE.get():  # nested inside a build already: skip the context manager's cost
        return _materialize(tensor)
    with factored():  # flipping SymPy's flag clears its cache: once per materialization
        value = _materialize(tensor)
    try:
        check_unambiguous([tensor])
    except ValueError:
        tensor._sym = None  # asked again, it must fail again
        raise
    _allow_printing(value)
    return value


@contextlib.contextmanager
def factored():
    """The setting every symbolic build runs under.

    Numeric factors stay outside sums (``200*(x1 - x0**2)``, not ``200*x1 - 200*x0**2``):
    that is how a person writes a chain-rule result, and it spares SymPy rebuilding every
    sum a coefficient meets (about half of the cost of a symbolic sweep).
    """
    if _INSIDE.get():
        yield
        return
    token = _INSIDE.set(True)
    try:
        with recursion_headroom(), distribute(False), deepforms.memo():
            yield
    finally:
        _INSIDE.reset(token)


_INSIDE: ContextVar[bool] = ContextVar("symtape_inside_factored", default=False)


@contextlib.contextmanager
def recursion_headroom():
    """Let SymPy recurse as deep as an expression is nested (our own walks are iterative)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _SYMPY_RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _allow_printing(value) -> None:
    """Let SymPy's printers (``str``, ``pretty``, ``latex``), which recurse about three
    frames a level, print ``value``: the interpreter's recursion limit is raised for good
    (never lowered, and at most to ``_SYMPY_RECURSION_LIMIT``), as the expression is deep."""
    needed = min(_SYMPY_RECURSION_LIMIT, _PRINT_MARGIN + _FRAMES_PER_LEVEL * _depth(value))
    if needed > sys.getrecursionlimit():
        sys.setrecursionlimit(needed)


_PRINT_MARGIN, _FRAMES_PER_LEVEL = 1000, 4


def _depth(value) -> int:
    """The nesting depth of a symbolic value (iterative; shared subexpressions once)."""
    roots = value.ravel().tolist() if isinstance(value, np.ndarray) else [value]
    depths: dict[int, int] = {}
    stack = [(root, False) for root in roots if isinstance(root, sympy.Basic)]
    while stack:
        expr, expanded = stack.pop()
        if expanded:
            depths[id(expr)] = 1 + max((depths[id(a)] for a in expr.args), default=0)
        elif id(expr) not in depths:
            stack.append((expr, True))
            stack.extend((a, False) for a in expr.args if id(a) not in depths)
    return max((depths[id(r)] for r in roots if isinstance(r, sympy.Basic)), default=0)


# Deep enough for expressions nested a few thousand levels. Higher limits let SymPy overflow
# the C stack on deeper ones (a crash instead of a RecursionError; from ~16,000 here).
_SYMPY_RECURSION_LIMIT = 10_000


def _materialize(tensor) -> Any:
    order, consumers = _unbuilt_nodes(tensor)
    deferred: dict[int, list] = {}
    for node in order:
        if node._sym is not None:  # a thunk run earlier in this loop may have built it
            continue
        prim = node.primitive
        if prim is None:
            node._sym = _leaf_value(node)
        elif prim.terms is not None:  # a sum: merged with the sums it is a term of
            terms = _sum_terms(node, deferred)
            if node is not tensor and consumers.get(id(node)) == (1, True):
                deferred[id(node)] = terms  # its only consumer is a sum: merge into it
            else:
                node._sym = _sum(terms)
        else:
            args = [symbolic_value(x) if x._sym is None else x._sym for x in node.inputs]
            node._sym = objarrays.normalize(_form(prim, args, node.params))
    return tensor._sym


def _scalars(values) -> bool:
    return all(isinstance(v, sympy.Expr) for v in values)


def _sum(terms: list):
    # deep terms (a gradient's chain-rule products, taken as a Hessian's forward values)
    # are not sorted: SymPy's compare walks them as deep as they are alike (deepforms)
    if _scalars(terms) and sum(map(deepforms.is_deep, terms)) > 1:
        return deepforms.total(terms)
    return objarrays.add_many(terms)


def _form(prim, args: list, params: dict):
    if prim.name == "mul" and _scalars(args):
        return deepforms.product(*args)  # a product of deep factors stays nested
    return prim.symbolic(*args, **params)


def _unbuilt_nodes(target) -> tuple[list, dict[int, tuple[int, bool]]]:
    """Nodes without a symbolic value, inputs first, and per node (consumers, all are sums)."""
    consumers: dict[int, tuple[int, bool]] = {}

    def expand(node):
        if node.primitive is None:
            return ()
        is_sum = node.primitive.terms is not None
        for x in node.inputs:
            count, all_sums = consumers.get(id(x), (0, True))
            consumers[id(x)] = (count + 1, all_sums and is_sum)
        return [x for x in reversed(node.inputs) if x._sym is None]  # the order always used

    return toposort([target], expand), consumers


def _sum_terms(node, deferred: dict[int, list]) -> list:
    """The terms of a sum (``add``, ``sub``: its primitive's ``terms`` signs), stealing its
    inputs' deferred term lists."""
    parts = []
    for x, sign in zip(node.inputs, node.primitive.terms):
        terms = deferred.pop(id(x), None) or [_built(x)]
        if sign < 0:
            # SymPy's -t of a deep product re-sorts its factors; -0.0 must stay a Float
            terms = [deepforms.product(sympy.S.NegativeOne, t) if deepforms.is_deep(t) else -t
                     for t in terms]
        parts.append(terms)
    longest = max(parts, key=len)  # extended: linear over a whole chain
    for terms in parts:
        if terms is not longest:
            longest.extend(terms)
    return longest


def _built(node):
    return node._sym if node._sym is not None else symbolic_value(node)


def _leaf_value(node):
    if node._thunk is not None:
        return objarrays.normalize(node._thunk())
    source = node.source
    if source is None:
        return objarrays.exact_array(node.array)
    if source is node:  # a watched constant is its own source
        if node._sym is None:
            node._sym = symbols_for(node._name, node.shape)
        symbols = node._sym
    else:
        if source._symbols is None:
            source._symbols = symbols_for(source._name, source.shape)
        symbols = source._symbols
    _claim(symbols, node)
    return symbols


# Which leaf first built each symbol (a Variable's read stands for one value of it), and the
# symbols more than one leaf built: two Variables named alike, or one Variable assigned
# between reads. A closed form that meets two leaves of one symbol would be silently wrong.
_OWNERS: dict[sympy.Symbol, int] = {}
_CONTESTED: set[sympy.Symbol] = set()


def _first_symbol(symbols):
    if isinstance(symbols, np.ndarray):
        return symbols.flat[0] if symbols.size else None
    return symbols


def _claim(symbols, node) -> None:
    key = _first_symbol(symbols)  # sources of one name share all entries or none
    if key is not None and _OWNERS.setdefault(key, id(node)) != id(node):
        _CONTESTED.add(key)


def check_unambiguous(tensors) -> None:
    """Raise ``ValueError`` if the closed forms of ``tensors`` give one symbol two meanings.

    Only symbols that more than one leaf has built are looked for, through the whole
    lineage (memoized parts included): nothing to do in the usual case.
    """
    if not _CONTESTED:
        return
    seen: dict[sympy.Symbol, Any] = {}
    for leaf in _leaves(tensors):
        source = leaf.source
        symbols = leaf._sym if source is leaf else source._symbols
        key = None if symbols is None else _first_symbol(symbols)
        if key in _CONTESTED and seen.setdefault(key, leaf) is not leaf:
            raise ValueError(_ambiguity(seen[key], leaf))


def _leaves(tensors):
    """The symbol leaves (Variable reads, watched constants) of the lineage of ``tensors``."""
    stack, visited = list(tensors), set()
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if node.primitive is not None:
            stack.extend(node.inputs)
        elif node.source is not None and node._thunk is None:
            yield node


def _ambiguity(first, second) -> str:
    name = second.source._name
    if first.source is second.source:
        return (f"Variable {name!r} was assigned between reads that this value depends on, so "
                f"its symbol would stand for two different values in .expr; take the closed "
                f"form before the assign, or hold the new value in a Variable of its own")
    return (f"two different sources are both named {name!r}, so their symbols would be the "
            "same in .expr; give each Variable (or watched constant) its own name")
