"""A traced program over many scalars, regrouped into array ops (SLP vectorization).

A function over a thousand scalar Variables, written as the tutorials write it (a Python loop
of scalar ops), traces to thousands of scalar nodes. Printed one expression per node, its
kernel is Python float arithmetic: some 15 ns an op, and a gradient over n Variables costs a
dozen ops per Variable. But nodes at the same depth of the graph that apply the same primitive
with the same parameters do not depend on each other, so one NumPy call computes all of them
on a vector (a compiler's superword-level parallelism, done on the trace):

- every value lives in one register array ``_R``: the Variables first, then the constants
  (a template copied per call), then each group's results in a contiguous range;
- a group reads each operand as a slice of ``_R`` where the operands' registers run evenly
  (a loop over ``i`` reading ``x[i + 1]`` reads a slice), as one register where all read the
  same, as a Python number where that is a constant, else as a gather by an index array;
- the outputs are one gather at the end.

Each group is one call of the primitive's numeric forward on arrays: the value computed is
the eager op's, as in every other kernel. The regrouped kernel is generated only where it is
cheaper than the scalar one (:func:`plan` estimates both: a NumPy call on a vector costs about
what 80 ops of Python float arithmetic cost, or 4 NumPy calls on Python floats), so small
programs and programs whose depths hold few nodes each (a long chain of sums) keep the
scalar kernel.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import sympy

from symtape.arrays.dtypes import dtype_of
from symtape.kernels.compile import freeze

__all__ = ["plan", "regrouped_source"]

#: the cost model, in units of one op of Python float arithmetic in the straight-line kernel
#: (~20 ns; measured on NumPy 2.4, CPython 3.11): an op printed as a NumPy call on a Python
#: float (``numpy.sin(x)``) costs about 20 of them; a group's NumPy call on a vector (its
#: operands' slices or gathers, the op, the store) about 80, and an element of it a tenth;
#: the register array's set-up and the outputs' gather about 100; reading a float64 Variable
#: as a Python float (the scalar kernel's way) 1.5
_ARITHMETIC, _SCALAR_CALL, _GROUP, _ELEMENT, _SET_UP, _FLOAT_READ = 1.0, 20.0, 80.0, 0.1, 100.0, 1.5


class Plan:
    """How a scalar program regroups: its groups of nodes, by depth, and each node's register.

    Attributes
    ----------
    dtype : numpy.dtype
        The one float dtype of every value.
    groups : list of (primitive, params, members)
        In an order that computes every operand before its use.
    register : dict
        ``id(node) -> index`` into the register array.
    constants : list
        The constants' values, in register order after the Variables.
    """

    def __init__(self, dtype, groups, register, constants, size):
        self.dtype, self.groups, self.register = dtype, groups, register
        self.constants, self.size = constants, size


def plan(graph) -> Plan | None:
    """The regrouping of a traced program (a :class:`symtape.kernels.program._Graph`), or None
    where it does not apply or would not be faster: any argument, a value not of shape (), values
    of more than one dtype or not floats, a primitive that is not elementwise, or groups too
    small for a NumPy call each to pay.

    Parameters
    ----------
    graph : symtape.kernels.program._Graph
        The program's nodes, inputs first, classified (``graph.kinds``).

    Returns
    -------
    Plan or None

    Examples
    --------
    >>> import symtape as st
    >>> xs = [st.Variable(float(i)) for i in range(300)]
    >>> @st.function
    ... def gradient():  # some 1500 scalar ops, at a few depths
    ...     with st.GradientTape() as tape:
    ...         f = sum(st.sin(a) * b for a, b in zip(xs, xs[1:]))
    ...     return tape.gradient(f, xs)
    >>> gradient.get_concrete_function().source.count(" = _f")  # a NumPy call per group
    5
    >>> small = st.function(lambda: st.sin(xs[0]))  # one op: the scalar kernel wins
    >>> "_R" in small.get_concrete_function().source
    False
    """
    order = graph.order
    ops = [node for node in order if graph.kinds[id(node)][0] == "op"]
    if not ops:
        return None
    dtype = dtype_of(order[0].array)
    if dtype.kind != "f":
        return None
    for node in order:
        value = node.array
        if np.ndim(value) != 0 or dtype_of(value) != dtype or graph.kinds[id(node)][0] == "arg":
            return None
        if node.primitive is not None and not node.primitive.elementwise:
            return None
    resolve = graph.resolve
    chains = _chains(graph, ops)
    depth: dict[int, int] = {}
    groups: dict[tuple, list] = {}
    for node in order:
        if node.primitive is None:
            depth[id(node)] = 0
            continue
        terms = chains.get(id(node))
        if terms is False:  # inside a chain of sums: computed by the chain's last node
            continue
        inputs = terms or [resolve(x) for x in node.inputs]
        level = depth[id(node)] = 1 + max(depth[id(x)] for x in inputs)
        key = ((level, "chain", len(terms)) if terms else
               (level, node.primitive.name, freeze(node.params), len(inputs)))
        groups.setdefault(key, []).append(node)
    scalar = (sum(_scalar_cost(node) for node in ops)
              + _FLOAT_READ * len(graph.variables))
    if _SET_UP + _GROUP * len(groups) + _ELEMENT * len(ops) >= scalar:
        return None
    register: dict[int, int] = {}  # the Variables first (_R[:n], in the kernel's order)
    constants: list = []
    by_value: dict[bytes, int] = {}  # the constants, each value once (-0.0 is not 0.0)
    for node in order:
        kind = graph.kinds[id(node)]
        if kind[0] == "var":
            register[id(node)] = kind[1]
        elif kind[0] == "const":
            key = node.array.tobytes()
            if key not in by_value:
                by_value[key] = len(graph.variables) + len(constants)
                constants.append(node.array.item())
            register[id(node)] = by_value[key]
    size = len(graph.variables) + len(constants)
    ordered = []
    for key, members in sorted(groups.items(), key=lambda item: item[0][0]):
        for node in members:
            register[id(node)] = size
            size += 1
        terms = [chains[id(node)] for node in members] if key[1] == "chain" else None
        ordered.append((members[0].primitive, members[0].params, members, terms))
    return Plan(dtype, ordered, register, constants, size)


def _chains(graph, ops: list) -> dict:
    """The chains of sums ``((a + b) + c) + d`` (Python's ``sum()`` of terms) whose inner sums
    nothing else reads: ``id(last sum) -> [a, b, c, d]``, and ``id(inner sum) -> False``. A
    chain is one NumPy call, a running sum over its terms in their order (``add.accumulate``
    rounds as the chain does), however deep it is."""
    resolve = graph.resolve
    uses: dict[int, int] = {}
    for node in ops:
        for x in node.inputs:
            uses[id(resolve(x))] = uses.get(id(resolve(x)), 0) + 1
    for t in graph.outputs:
        uses[id(t)] = uses.get(id(t), 0) + 1

    def is_sum(node) -> bool:
        return node.primitive is not None and node.primitive.terms == (1, 1)

    inner: dict[int, bool] = {}  # sums read once, as the left operand of another sum
    for node in ops:
        left = resolve(node.inputs[0]) if is_sum(node) else None
        if left is not None and is_sum(left) and uses[id(left)] == 1:
            inner[id(left)] = False
    chains: dict = dict(inner)
    for node in ops:
        if not is_sum(node) or id(node) in inner:
            continue
        terms, t = [], node
        while t is node or id(t) in inner:
            terms.append(resolve(t.inputs[1]))
            t = resolve(t.inputs[0])
        terms.append(t)
        if len(terms) >= 3:  # else a single sum: an op as any other
            chains[id(node)] = terms[::-1]
    return chains


def sequential_sums(rows):
    """Each row of ``rows`` summed left to right, as a chain of ``+`` rounds (``np.sum``
    would sum pairwise, and round otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.array([[1e16, 1.0, -1e16], [1.0, 2.0, 3.0]])
    >>> sequential_sums(rows), ((1e16 + 1.0) - 1e16)
    (array([0., 6.]), 0.0)
    """
    return np.add.accumulate(rows, axis=1)[:, -1]


def _scalar_cost(node) -> float:
    """What one op costs in the straight-line kernel: Python float arithmetic where the
    primitive is printed as an operator (``+``, ``*``, ``**``), else a NumPy call."""
    prim, params = node.primitive, node.params
    key = (prim.name, freeze(params), len(node.inputs))
    cost = _SCALAR_COSTS.get(key)
    if cost is None:
        operands = sympy.symbols(f"a:{len(node.inputs)}")
        printed = prim.printed(*operands, **params) if prim.printed is not None else None
        arithmetic = isinstance(printed, (sympy.Add, sympy.Mul, sympy.Pow))
        cost = _SCALAR_COSTS[key] = _ARITHMETIC if arithmetic else _SCALAR_CALL
    return cost


_SCALAR_COSTS: dict = {}  # (primitive, parameters) -> cost; small, bounded by the registry


def regrouped_source(graph, plan: Plan) -> tuple[str, dict]:
    """The kernel ``kernel(_args, _variables)`` computing ``graph``'s outputs group by group
    on the register array, and the namespace it runs in.

    Parameters
    ----------
    graph : symtape.kernels.program._Graph
        The program.
    plan : Plan
        Its regrouping, from :func:`plan`.

    Returns
    -------
    (str, dict)
        The source and its namespace (index arrays, the constants' template, the forwards).

    Examples
    --------
    >>> import symtape as st
    >>> xs = [st.Variable(float(i)) for i in range(400)]
    >>> products = st.function(lambda: [st.sin(a) * b for a, b in zip(xs, xs[1:])])
    >>> print(products.get_concrete_function().source)
    def kernel(_args, _variables):
        _R = _template.copy()
        _R[:400] = _variables
        _R[400:799] = _f0(_R[0:399])
        _R[799:1198] = _f1(_R[400:799], _R[1:400])
        return _R[799:1198]
    <BLANKLINE>
    """
    register = plan.register
    resolve = graph.resolve
    namespace: dict[str, Any] = {}
    template = np.zeros(plan.size, plan.dtype)
    nv = len(graph.variables)
    template[nv:nv + len(plan.constants)] = plan.constants
    namespace["_template"] = template
    constant = {register[id(n)]: n.array.item() for n in graph.order
                if graph.kinds[id(n)][0] == "const"}
    lines = ["def kernel(_args, _variables):", "    _R = _template.copy()"]
    if nv:
        lines.append(f"    _R[:{nv}] = _variables")

    def read(indices: list[int]) -> str:
        first = indices[0]
        if all(i == first for i in indices):
            if first in constant and plan.dtype == np.float64 and math.isfinite(constant[first]):
                return repr(constant[first])  # a Python float: exactly the float64 constant
            return f"_R[{first}]"
        return _slice_or_gather(indices, namespace)

    for k, (prim, params, members, terms) in enumerate(plan.groups):
        name = f"_f{k}"
        start = register[id(members[0])]
        if terms is not None:  # chains of sums, one per row
            rows = [register[id(t)] for row in terms for t in row]
            namespace[name] = sequential_sums
            code = _slice_or_gather(rows, namespace, (len(members), len(terms[0])))
            lines.append(f"    _R[{start}:{start + len(members)}] = {name}({code})")
            continue
        namespace[name] = functools.partial(prim.numeric, np, **params)
        operands = [read([register[id(resolve(node.inputs[i]))] for node in members])
                    for i in range(len(members[0].inputs))]
        lines.append(f"    _R[{start}:{start + len(members)}] = {name}({', '.join(operands)})")
    outputs = [register[id(t)] for t in graph.outputs]
    lines.append(f"    return {_slice_or_gather(outputs, namespace)}")
    return "\n".join(lines) + "\n", namespace


def _slice_or_gather(indices: list[int], namespace: dict, shape: tuple | None = None) -> str:
    """``_R[a:b:s]`` where the registers run evenly, else a gather by an index array; of
    ``shape`` where given (rows of a chain's terms)."""
    first, n = indices[0], len(indices)
    step = indices[1] - first if n > 1 else 1
    if step > 0 and all(i == first + step * j for j, i in enumerate(indices)):
        stop = first + step * (n - 1) + 1
        code = f"_R[{first}:{stop}]" if step == 1 else f"_R[{first}:{stop}:{step}]"
        return code if shape is None else f"{code}.reshape{shape}"
    name = f"_i{sum(key.startswith('_i') for key in namespace)}"
    namespace[name] = np.array(indices, dtype=np.intp).reshape(shape or (n,))
    return f"_R[{name}]"
