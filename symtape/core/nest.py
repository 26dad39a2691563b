"""Flattening nested structures (lists, tuples, dicts) of Tensors, and rebuilding them."""

from __future__ import annotations

import operator
from typing import Any, Callable

__all__ = ["flatten", "builder", "expression"]


def flatten(structure: Any) -> tuple[list, Callable[[list], Any]]:
    """Return the leaves of ``structure`` in order, and a function that rebuilds its shape.

    Examples
    --------
    >>> leaves, rebuild = flatten({"a": [1, 2], "b": (3,)})
    >>> leaves
    [1, 2, 3]
    >>> rebuild([10, 20, 30])
    {'a': [10, 20], 'b': (30,)}
    """
    leaves: list = []
    template = _collect(structure, leaves)
    return leaves, lambda values: _fill(template, iter(values))


_LEAF = object()


def _collect(node, leaves: list):
    if isinstance(node, dict):
        return (dict, [(k, _collect(v, leaves)) for k, v in node.items()])
    if isinstance(node, (list, tuple)) and not hasattr(node, "_fields"):
        return (type(node), [_collect(v, leaves) for v in node])
    leaves.append(node)
    return _LEAF


def _fill(template, values):
    if template is _LEAF:
        return next(values)
    kind, children = template
    if kind is dict:
        return {k: _fill(t, values) for k, t in children}
    return kind(_fill(t, values) for t in children)


def builder(structure: Any) -> Callable[[list], Any]:
    """A function that builds ``structure``'s shape from a list of leaves, made once: what
    ``flatten``'s rebuild does, at a fraction of the cost, for structures rebuilt on every
    call (a compiled function's outputs).

    Examples
    --------
    >>> build = builder((1, [2, 3], {"a": 4}, ()))
    >>> build(["p", "q", "r", "s"])
    ('p', ['q', 'r'], {'a': 's'}, ())
    """
    leaves: list = []
    return _builder(_collect(structure, leaves), iter(range(len(leaves))))


def _builder(template, positions) -> Callable[[list], Any]:
    if template is _LEAF:
        return operator.itemgetter(next(positions))
    kind, children = template
    if kind is dict:
        items = [(k, _builder(t, positions)) for k, t in children]
        return lambda values: {k: build(values) for k, build in items}
    if all(t is _LEAF for t in children):  # a flat list or tuple (of many outputs, often)
        start = next(positions, 0) if children else 0
        for _ in children[1:]:
            next(positions)
        stop = start + len(children)
        return lambda values: kind(values[start:stop])
    parts = [_builder(t, positions) for t in children]
    if len(parts) == 2:  # a pair, (value, gradient) say: no comprehension on every call
        first, second = parts
        return lambda values: kind((first(values), second(values)))
    if kind is tuple:
        return lambda values: tuple([build(values) for build in parts])
    return lambda values: kind([build(values) for build in parts])


def expression(structure: Any, leaf: Callable[[int], str]) -> str | None:
    """The Python expression that builds ``structure``'s shape, leaf ``i`` written
    ``leaf(i)``: for code generated once and run on every call (a compiled function's
    outputs, built without a call per level).

    Parameters
    ----------
    structure : object
        Nested tuples and lists; anything else in them is a leaf.
    leaf : callable
        ``leaf(i)``: the code of leaf ``i`` (in the order :func:`flatten` gives them).

    Returns
    -------
    str or None
        The expression; None unless the structure is made of plain tuples and lists.

    Examples
    --------
    >>> expression((1, [2, 3], ()), lambda i: f"v[{i}]")
    '(v[0], [v[1], v[2]], ())'
    >>> expression({"a": 1}, lambda i: f"v[{i}]") is None
    True
    """
    leaves: list = []
    return _expression(_collect(structure, leaves), iter(range(len(leaves))), leaf)


def _expression(template, positions, leaf) -> str | None:
    if template is _LEAF:
        return leaf(next(positions))
    kind, children = template
    if kind is not tuple and kind is not list:
        return None
    parts = [_expression(t, positions, leaf) for t in children]
    if None in parts:
        return None
    inside = ", ".join(parts) + ("," if kind is tuple and len(parts) == 1 else "")
    return f"({inside})" if kind is tuple else f"[{inside}]"
