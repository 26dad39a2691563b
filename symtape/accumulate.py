"""Reverse-mode accumulation over a recorded DAG, in any algebra.

:func:`plan` walks the recorded lineage once (iteratively) from the targets: the nodes
in topological order, and which of them lie on a path to a requested source. :func:`sweep`
then runs the derivative rules backwards over that plan in one algebra — numeric,
symbolic or Tensor (see :mod:`symtape.algebra`). One plan serves every sweep of a
gradient, a Jacobian's rows, and the lazy closed form of each.

Cost is one rule application per edge on a path to a source, like autograd; no SymPy
is involved in a numeric sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from symtape import dtypes

__all__ = ["Plan", "plan", "sweep", "source_key"]


def source_key(leaf) -> int:
    """The identity a leaf's cotangent is collected under: its Variable's, or its own."""
    source = leaf._source
    return id(source) if source is not None else id(leaf)


@dataclass
class Plan:
    """What one backward sweep needs to know about the recorded DAG."""

    targets: list
    order: list = field(default_factory=list)  # interior nodes, inputs before consumers
    relevant: set = field(default_factory=set)  # ids of nodes on a path to a source
    leaves: dict = field(default_factory=dict)  # id -> leaf node reached
    wanted: set = field(default_factory=set)  # ids of the sources asked for


def plan(targets: Sequence, source_ids: set[int], recorded: dict[int, Any]) -> Plan:
    """Topologically order the recorded nodes reachable from ``targets``.

    A node is interior if the tape recorded it; anything else the walk reaches is a
    leaf (a constant for this tape, or a watched source).
    """
    result = Plan(list(targets), wanted=set(source_ids))
    visited: set[int] = set()
    stack = [(t, False) for t in reversed(result.targets)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            result.order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        if node._prim is None or id(node) not in recorded:
            result.leaves[id(node)] = node
            continue
        stack.append((node, True))
        for x in node._inputs:
            if id(x) not in visited:
                stack.append((x, False))
    _mark_relevant(result)
    return result


def _mark_relevant(p: Plan) -> None:
    """Nodes whose cotangent can reach a wanted source, with a float (differentiable) dtype."""
    relevant = p.relevant
    for key, leaf in p.leaves.items():
        if (key in p.wanted or source_key(leaf) in p.wanted) and dtypes.is_floating(leaf.dtype):
            relevant.add(key)
    for node in p.order:
        if not dtypes.is_floating(node._value.dtype):
            continue
        if id(node) in p.wanted or any(id(x) in relevant for x in node._inputs):
            relevant.add(id(node))


def sweep(p: Plan, seeds: Sequence[Any], A) -> dict[int, Any]:
    """Run the rules backwards from ``seeds`` (one per target); cotangents by source id.

    Sources the seeds do not reach are absent from the result.
    """
    cts: dict[int, list] = {}
    for target, seed in zip(p.targets, seeds):
        if id(target) in p.relevant:
            cts.setdefault(id(target), []).append(seed)
    found: dict[int, list] = {}
    relevant = p.relevant
    for node in reversed(p.order):
        parts = cts.pop(id(node), None)
        if parts is None:
            continue
        g = A.add_n(parts)
        prim = node._prim
        shape = node._value.shape
        if not prim.elementwise or id(node) in p.wanted:
            g = A.expand(g, shape)  # only elementwise rules take a smaller, broadcastable g
        if id(node) in p.wanted:
            found.setdefault(id(node), []).append(g)
        per_argument = A.lazy_forward
        if not per_argument:
            out, xs = A.forward(node)
        for argnum, x in enumerate(node._inputs):
            if id(x) not in relevant:
                continue
            rule = prim.rule(argnum)
            if rule is None:
                continue
            if per_argument:
                out, xs = A.forward(node, argnum)
            ct = rule(A, g, out, *xs, **node._params)
            if ct is not None:
                cts.setdefault(id(x), []).append(A.reduce_to(ct, x._value.shape))
    shapes = {}
    for key, parts in cts.items():
        leaf = p.leaves.get(key)
        if leaf is not None:
            found.setdefault(source_key(leaf), []).extend(parts)
            shapes[source_key(leaf)] = leaf._value.shape
    return {key: A.expand(A.add_n(parts), shapes.get(key, ())) if key in shapes else
            A.add_n(parts) for key, parts in found.items()}
