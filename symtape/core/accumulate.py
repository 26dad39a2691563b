"""Reverse-mode accumulation over a recorded DAG, in any algebra.

:func:`plan` walks the recorded lineage once (iteratively) from the targets: the nodes
in topological order, and which of them lie on a path to a requested source. :func:`sweep`
then runs the derivative rules backwards over that plan in one algebra — numeric,
symbolic or Tensor (see :mod:`symtape.core.algebra`). One plan serves every sweep of a
gradient, a Jacobian's rows, and the lazy closed form of each.

Cost is one rule application per edge on a path to a source, like autograd; no SymPy
is involved in a numeric sweep. For that, the plan and the sweep read a Tensor's slots
(``node._inputs``, ``node._value``, ...) rather than its public properties (``inputs``,
``array``): about a dozen reads per node, where a property's call each would cost ~8% of a
scalar gradient. They are the core floor's, listed in ``tests/test_layers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["Plan", "plan", "sweep", "source_key", "toposort", "itself"]


def toposort(roots: Sequence, expand: Callable[[Any], Sequence | None],
             key: Callable[[Any], Any] = id) -> list:
    """The nodes reachable from ``roots``, each after the nodes it depends on (post-order).

    ``expand(node)`` is called once per node reached and returns the nodes to visit from it,
    in the order to visit them, or None for a node to leave out of the result (a leaf it
    has recorded elsewhere).
    Iterative, so graphs of any depth walk without recursion.

    Parameters
    ----------
    roots : sequence
        Where the walk starts; they come last in the result, in this order.
    expand : callable
        ``expand(node)`` -> the nodes ``node`` depends on, or None (see above).
    key : callable, default id
        ``key(node)`` says which nodes are one: ``id`` (the default) tells a graph's objects
        apart by identity, so they need not be hashable; :func:`itself` compares the nodes
        themselves (SymPy trees: equal subtrees are one).

    Returns
    -------
    list
        Every node reached and not left out, each after its dependencies.

    Examples
    --------
    >>> graph = {"loss": ["y", "x"], "y": ["x"], "x": []}
    >>> toposort(["loss"], graph.get)
    ['x', 'y', 'loss']
    """
    order: list = []
    seen: set = set()
    stack = [(node, False) for node in reversed(roots)]
    pop, push = stack.pop, stack.append
    while stack:
        node, expanded = pop()
        if expanded:
            order.append(node)
            continue
        identity = key(node)
        if identity in seen:
            continue
        seen.add(identity)
        children = expand(node)
        if children is None:
            continue
        push((node, True))
        for x in reversed(children):
            if key(x) not in seen:
                push((x, False))
    return order


def itself(node):
    """The node itself: :func:`toposort`'s ``key`` for trees whose equal nodes are one."""
    return node


def source_key(leaf) -> int:
    """The identity a leaf's cotangent is collected under: its Variable's, or its own."""
    source = leaf.source
    return id(source) if source is not None else id(leaf)


@dataclass
class Plan:
    """What one backward sweep needs to know about the recorded DAG."""

    targets: list
    order: list = field(default_factory=list)  # interior nodes, inputs before consumers
    relevant: set = field(default_factory=set)  # ids of nodes on a path to a source
    leaves: dict = field(default_factory=dict)  # id -> leaf node reached
    wanted: set = field(default_factory=set)  # ids of the sources asked for
    # per relevant node, consumers first: (node, [(argnum, input, rule), ...])
    steps: list = field(default_factory=list)


def plan(targets: Sequence, source_ids: set[int], recorded: dict[int, Any]) -> Plan:
    """Topologically order the recorded nodes reachable from ``targets``.

    A node is interior if the tape recorded it; anything else the walk reaches is a
    leaf (a constant for this tape, or a watched source).

    Parameters
    ----------
    targets : sequence of Tensor
        What is differentiated; the sweep starts from them.
    source_ids : set of int
        The ids of the sources asked for (a Variable's own id, or a watched Tensor's):
        their cotangents are collected even where they are interior nodes.
    recorded : dict of int to Tensor
        The nodes a tape recorded, by id; other nodes reached are leaves.

    Returns
    -------
    Plan
        The interior nodes in order, the leaves, and per relevant node the rules to run.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(3.0, name="x")
    >>> with st.GradientTape() as tape:
    ...     y = x * x + x
    >>> p = plan([y], {id(x)}, tape._recorded)
    >>> [node.primitive.name for node in p.order]
    ['mul', 'add']
    """
    result = Plan(list(targets), wanted=set(source_ids))
    leaves = result.leaves

    def expand(node):
        key = id(node)
        if node._prim is None or key not in recorded:
            leaves[key] = node
            return None
        return node._inputs[::-1]  # pushed last first: as the sweep has always visited them

    result.order = toposort(result.targets, expand)
    _mark_relevant(result)
    return result


def _mark_relevant(p: Plan) -> None:
    """Nodes whose cotangent can reach a wanted source (float dtypes only), and their steps."""
    relevant, wanted = p.relevant, p.wanted
    for key, leaf in p.leaves.items():
        if (key in wanted or source_key(leaf) in wanted) and leaf._value.dtype.kind == "f":
            relevant.add(key)
    for node in p.order:
        if node._value.dtype.kind != "f":
            continue
        if id(node) in wanted or any(id(x) in relevant for x in node._inputs):
            relevant.add(id(node))
    for node in reversed(p.order):
        if id(node) not in relevant:
            continue
        prim = node._prim
        edges = [(argnum, x, prim.rule(argnum)) for argnum, x in enumerate(node._inputs)
                 if id(x) in relevant]
        p.steps.append((node, [edge for edge in edges if edge[2] is not None]))


def sweep(p: Plan, seeds: Sequence[Any], A) -> dict[int, Any]:
    """Run the rules backwards from ``seeds`` (one per target); cotangents by source id.

    Sources the seeds do not reach are absent from the result.

    Parameters
    ----------
    p : Plan
        From :func:`plan`.
    seeds : sequence
        One cotangent per target of the plan, of the target's shape, in ``A``'s kind
        (``A.seed(shape, dtype)`` gives ones).
    A : algebra
        What the rules compute with: ``numeric_algebra(xp)`` for arrays, ``SYMBOLIC`` for
        SymPy closed forms, ``TENSOR`` for recorded Tensors (:mod:`symtape.core.algebra`).

    Returns
    -------
    dict of int to cotangent
        Keyed by :func:`source_key` (a Variable's id for its reads), of the source's shape.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.core.algebra import SYMBOLIC, numeric_algebra
    >>> x = st.Variable(3.0, name="x")
    >>> with st.GradientTape() as tape:
    ...     y = x * x + x
    >>> p = plan([y], {id(x)}, tape._recorded)
    >>> A = numeric_algebra(np)
    >>> float(sweep(p, [A.seed((), np.float64)], A)[id(x)])
    7.0
    >>> sweep(p, [SYMBOLIC.seed((), np.float64)], SYMBOLIC)[id(x)]
    2*x + 1
    """
    cts: dict[int, list] = {}
    for target, seed in zip(p.targets, seeds):
        if id(target) in p.relevant:
            cts.setdefault(id(target), []).append(seed)
    found: dict[int, list] = {}
    wanted, per_argument = p.wanted, A.lazy_forward
    add_n, expand, reduce_to, forward = A.add_n, A.expand, A.reduce_to, A.forward
    for node, edges in p.steps:
        parts = cts.pop(id(node), None)
        if parts is None:
            continue
        g = add_n(parts)
        if not node._prim.elementwise or id(node) in wanted:
            g = expand(g, node._value.shape)  # only elementwise rules take a smaller g
            if id(node) in wanted:
                found.setdefault(id(node), []).append(g)
        if not per_argument:
            out, xs = forward(node)
        params = node._params
        for argnum, x, rule in edges:
            if per_argument:
                out, xs = forward(node, argnum)
            ct = A.vjp(rule, g, out, xs, params)
            if ct is not None:
                ct = reduce_to(ct, x._value.shape)
                parts = cts.get(id(x))
                if parts is None:
                    cts[id(x)] = [ct]
                else:
                    parts.append(ct)
    shapes = {}
    for key, parts in cts.items():
        leaf = p.leaves.get(key)
        if leaf is not None:
            found.setdefault(source_key(leaf), []).extend(parts)
            shapes[source_key(leaf)] = leaf._value.shape
    return {key: expand(add_n(parts), shapes[key]) if key in shapes else add_n(parts)
            for key, parts in found.items()}
