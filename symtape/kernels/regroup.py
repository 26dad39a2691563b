"""A traced program over many scalars, regrouped into array ops (SLP vectorization).

A function over a thousand scalar Variables, written as the tutorials write it (a Python loop
of scalar ops), traces to thousands of scalar nodes. Printed one expression per node, its
kernel is Python float arithmetic: some 20 ns an op, and a gradient over n Variables costs a
dozen ops per Variable. But nodes at the same depth of the graph that apply the same primitive
with the same parameters do not depend on each other, so one NumPy call computes all of them
on a vector (a compiler's superword-level parallelism, done on the trace):

- every value lives in a register array, one per dtype (``_R`` for the commonest, float64 as
  a rule; ``_R1`` for an optimizer's int64 step count, ...): the Variables first, then the
  constants, then each group's results in a contiguous range;
- a group reads each operand as a slice of ``_R`` where the operands' registers run evenly
  (a loop over ``i`` reading ``x[i + 1]`` reads a slice), as one register where all read the
  same, as a Python number where that is a constant, else as a gather by an index array;
- a group's result is stored into its register array, which casts it to the traced dtype;
- the outputs are one gather at the end (one per register array they come from).

Each group is one call of the primitive's numeric forward on arrays: the value computed is
the eager op's, as in every other kernel. The regrouped kernel is generated only where it is
cheaper than the scalar one (:func:`plan` estimates both: a NumPy call on a vector costs about
what 80 ops of Python float arithmetic cost, or 4 NumPy calls on Python floats), so small
programs and programs whose depths hold few nodes each (a recurrence) keep the scalar kernel.
A chain of sums, one at each depth (Python's ``sum()`` of a loss's terms), is not such a
program: it is one running sum over its terms (:func:`sequential_sums`).
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
#: chains of sums of up to this many terms are summed a column at a time (an add per term, on
#: the terms' slices: ``add.accumulate`` along rows of three takes 20 us per thousand rows)
_COLUMNS = 16


class Group:
    """Nodes at one depth applying one primitive (with the same parameters, on operands of
    the same dtypes): one NumPy call computes them all.

    Attributes
    ----------
    primitive, params
        What each member applies.
    members : list of Tensor
        The nodes, in trace order; their registers are a contiguous range of one array.
    operands : list of list of Tensor
        ``operands[k][i]``: member ``i``'s operand ``k`` (resolved); for a chain of sums, its
        term ``k`` (see :func:`sequential_columns`).
    chain : bool
        Whether the members are chains of sums.
    """

    def __init__(self, primitive, params: dict, members: list, operands: list, chain: bool):
        self.primitive, self.params, self.members = primitive, params, members
        self.operands, self.chain = operands, chain


class Plan:
    """How a scalar program regroups: its groups, in an order that computes every operand
    before its use, and where each value lives.

    Attributes
    ----------
    groups : list of Group
    dtypes : list of numpy.dtype
        One register array per dtype, the commonest first (``_R``, then ``_R1``, ...).
    register : dict
        ``id(node) -> (array number, index)``.
    constants : list of list
        Each array's constants, stored after its Variables.
    variables : list of list of int
        Each array's Variables, as indices into the kernel's ``_variables``.
    sizes : list of int
        Each array's length.
    """

    def __init__(self, groups, dtypes, register, constants, variables, sizes):
        self.groups, self.dtypes, self.register = groups, dtypes, register
        self.constants, self.variables, self.sizes = constants, variables, sizes


def plan(graph) -> Plan | None:
    """The regrouping of a traced program (a :class:`symtape.kernels.program._Graph`), or None
    where it does not apply or would not be faster: any argument, a value not of shape () or
    not a number, a primitive that is not elementwise, or groups too small for a NumPy call
    each to pay.

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
    order, kinds, resolve = graph.order, graph.kinds, graph.resolve
    dtype: dict[int, np.dtype] = {}  # read once per node: the walks below are the cost
    inputs: dict[int, list] = {}
    counts: dict = {}
    for node in order:
        value = node.array
        d = dtype[id(node)] = dtype_of(value)
        if getattr(value, "ndim", 1) != 0 or d.kind not in "biuf" or kinds[id(node)][0] == "arg":
            return None
        if node.primitive is not None:
            if not node.primitive.elementwise:
                return None
            inputs[id(node)] = [resolve(x) for x in node.inputs]
        counts[d] = counts.get(d, 0) + 1
    ops = [node for node in order if node.primitive is not None]
    if not ops:
        return None
    chains = _chains(ops, inputs, dtype, graph.outputs)
    depth: dict[int, int] = {}
    groups: dict[tuple, list] = {}
    for node in order:
        if node.primitive is None:
            depth[id(node)] = 0
            continue
        terms = chains.get(id(node))
        if terms is False:  # inside a chain of sums: computed by the chain's last node
            continue
        operands = terms or inputs[id(node)]
        level = depth[id(node)] = 1 + max(depth[id(x)] for x in operands)
        if terms:
            key = (level, "chain", len(terms), dtype[id(node)])
        else:
            key = (level, node.primitive.name, freeze(node.params) if node.params else (),
                   dtype[id(node)], tuple(dtype[id(x)] for x in operands))
        groups.setdefault(key, []).append(node)
    inner = len(ops) - sum(len(members) for members in groups.values())  # chained sums
    scalar = (sum(len(members) * _scalar_cost(members[0]) for members in groups.values())
              + _ARITHMETIC * inner + _FLOAT_READ * len(graph.variables))
    calls = sum(1 + min(key[2], _COLUMNS) / 4 if key[1] == "chain" else 1 for key in groups)
    if _SET_UP * len(counts) + _GROUP * calls + _ELEMENT * len(ops) >= scalar:
        return None
    banks = sorted(counts, key=lambda d: -counts[d])  # stable: the commonest dtype first
    bank = {d: b for b, d in enumerate(banks)}
    register: dict[int, tuple[int, int]] = {}
    ordered = []
    for key, members in sorted(groups.items(), key=lambda item: item[0][0]):
        chain = key[1] == "chain"
        rows = [chains[id(node)] if chain else inputs[id(node)] for node in members]
        ordered.append(Group(members[0].primitive, members[0].params, members,
                             [list(column) for column in zip(*rows)], chain))
    variables = _variable_order(graph, ordered, bank)
    position = {j: i for reads in variables for i, j in enumerate(reads)}
    sizes = [len(reads) for reads in variables]
    constants: list[list] = [[] for _ in banks]
    by_value: dict[tuple, int] = {}  # each constant once (-0.0 is not 0.0)
    for node in order:
        kind = kinds[id(node)]
        b = bank[dtype[id(node)]]
        if kind[0] == "var":
            register[id(node)] = (b, position[kind[1]])
        elif kind[0] == "const":
            key = (b, node.array.tobytes())
            if key not in by_value:
                by_value[key] = sizes[b]
                sizes[b] += 1
                constants[b].append(node.array.item())
            register[id(node)] = (b, by_value[key])
    for group in ordered:
        b = bank[dtype[id(group.members[0])]]
        for node in group.members:
            register[id(node)] = (b, sizes[b])
            sizes[b] += 1
    return Plan(ordered, banks, register, constants, variables, sizes)


def _variable_order(graph, groups: list, bank: dict) -> list[list[int]]:
    """Each register array's Variables (indices into the kernel's ``_variables``), in the
    order the groups first read them: a loop's ``x[i]`` then reads a slice, where the order
    the trace met them in (``x[1]`` before ``x[0]`` in ``x[1] - x[0]**2``) would need gathers."""
    kinds = graph.kinds
    seen: dict[int, None] = {}
    for group in groups:
        for column in group.operands:
            for node in column:
                kind = kinds[id(node)]
                if kind[0] == "var":
                    seen.setdefault(kind[1], None)
    for j in range(len(graph.variables)):  # read by no op (returned as they are)
        seen.setdefault(j, None)
    variables: list[list[int]] = [[] for _ in bank]
    for j in seen:
        variables[bank[dtype_of(graph.variables[j].array)]].append(j)
    return variables


def _chains(ops: list, inputs: dict, dtype: dict, outputs: list) -> dict:
    """The chains of sums ``((a + b) + c) + d`` (Python's ``sum()`` of terms) whose inner sums
    nothing else reads: ``id(last sum) -> [a, b, c, d]``, and ``id(inner sum) -> False``. A
    chain is one NumPy call, a running sum over its terms in their order (``add.accumulate``
    rounds as the chain does), however deep it is. ``inputs`` and ``dtype`` are each op's
    resolved inputs and each node's dtype, by id."""
    uses: dict[int, int] = {}
    for node in ops:
        for x in inputs[id(node)]:
            uses[id(x)] = uses.get(id(x), 0) + 1
    for t in outputs:
        uses[id(t)] = uses.get(id(t), 0) + 1
    sums = {id(node) for node in ops if node.primitive.terms == (1, 1)  # of its own dtype
            and all(dtype[id(x)] == dtype[id(node)] for x in inputs[id(node)])}
    inner: dict[int, bool] = {}  # sums read once, as the left operand of another sum
    for node in ops:
        if id(node) in sums:
            left = inputs[id(node)][0]
            if id(left) in sums and uses[id(left)] == 1:
                inner[id(left)] = False
    chains: dict = dict(inner)
    for node in ops:
        if id(node) not in sums or id(node) in inner:
            continue
        terms, t = [], node
        while t is node or id(t) in inner:
            left, right = inputs[id(t)]
            terms.append(right)
            t = left
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


def sequential_columns(first, second, *rest):
    """``first + second + ...`` left to right, elementwise: chains of sums, a column of terms
    at a time (a column all of one constant is a number; the sums broadcast).

    Examples
    --------
    >>> import numpy as np
    >>> sequential_columns(np.array([1e16, 1.0]), 1.0, np.array([-1e16, 2.0]))
    array([0., 4.])
    >>> sequential_columns(1.0, 2.0, np.array([1.0, 2.0]))
    array([4., 5.])
    """
    total = first + second
    for column in rest:
        total = total + column
    return total


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
    on the register arrays, and the namespace it runs in.

    Parameters
    ----------
    graph : symtape.kernels.program._Graph
        The program.
    plan : Plan
        Its regrouping, from :func:`plan`.

    Returns
    -------
    (str, dict)
        The source and its namespace (index arrays, the constants, the forwards).

    Examples
    --------
    >>> import symtape as st
    >>> xs = [st.Variable(float(i)) for i in range(400)]
    >>> products = st.function(lambda: [st.sin(a) * b for a, b in zip(xs, xs[1:])])
    >>> print(products.get_concrete_function().source)
    def kernel(_args, _variables):
        _R = _empty(1198, _d0)
        _R[:400] = _numbers(_variables, _d0, 400)
        _R[400:799] = _f0(_R[0:399])
        _R[799:1198] = _f1(_R[400:799], _R[1:400])
        return _R[799:1198]
    <BLANKLINE>
    """
    register = plan.register
    names = ["_R"] + [f"_R{b}" for b in range(1, len(plan.dtypes))]
    namespace: dict[str, Any] = {}
    lines = ["def kernel(_args, _variables):"]
    constant: dict[tuple[int, int], Any] = {}
    namespace["_empty"] = np.empty  # every register is written before it is read
    for b, dtype in enumerate(plan.dtypes):
        namespace[f"_d{b}"] = dtype
        lines.append(f"    {names[b]} = _empty({plan.sizes[b]}, _d{b})")
        start, values = len(plan.variables[b]), plan.constants[b]
        constant.update(((b, start + i), v) for i, v in enumerate(values))
        if values:
            namespace[f"_k{b}"] = np.array(values, dtype)
            lines.append(f"    {names[b]}[{start}:{start + len(values)}] = _k{b}")
    nv = len(graph.variables)
    namespace["_numbers"] = np.fromiter  # the Variables as one array
    for b, reads in enumerate(plan.variables):
        if sorted(reads) == list(range(nv)):  # every Variable: one conversion, in place
            values = f"_numbers(_variables, _d{b}, {nv})"
            if reads == list(range(nv)):
                lines.append(f"    {names[b]}[:{nv}] = {values}")
            else:  # _perm[j]: the register of the kernel's Variable j
                namespace[f"_perm{b}"] = np.argsort(np.array(reads, dtype=np.intp))
                lines.append(f"    {names[b]}[_perm{b}] = {values}")
        elif reads:
            lines.append(f"    {names[b]}[:{len(reads)}] = "
                         f"[{', '.join(f'_variables[{j}]' for j in reads)}]")

    def place(nodes: list, shape: tuple | None = None, literal: bool = False) -> str:
        """The values of ``nodes`` (all in one array) as an operand; one float64 constant as
        a Python number where ``literal`` (weak: it must meet float64 operands only)."""
        b, first = register[id(nodes[0])]
        indices = [register[id(x)][1] for x in nodes]
        if shape is None and all(i == first for i in indices):
            value = constant.get((b, first))
            if (literal and value is not None and plan.dtypes[b] == np.float64
                    and math.isfinite(value)):
                return repr(value)  # a Python float: exactly the float64 constant
            return f"{names[b]}[{first}]"
        return _slice_or_gather(names[b], indices, namespace, shape)

    for k, group in enumerate(plan.groups):
        name, members = f"_f{k}", group.members
        b, start = register[id(members[0])]
        target = f"{names[b]}[{start}:{start + len(members)}]"
        operands = group.operands
        literal = all(dtype_of(column[0].array) == np.float64 for column in operands)
        if group.chain and len(operands) > _COLUMNS:  # long chains: a row of terms each
            namespace[name] = sequential_sums
            rows = [column[i] for i in range(len(members)) for column in operands]
            codes = [place(rows, (len(members), len(operands)))]
        else:  # an op, or a short chain summed a column of terms at a time
            namespace[name] = (sequential_columns if group.chain else
                               functools.partial(group.primitive.numeric, np, **group.params))
            codes = [place(column, literal=literal) for column in operands]
        lines.append(f"    {target} = {name}({', '.join(codes)})")
    runs: list[list] = []  # the outputs, in runs from one array each
    for t in graph.outputs:
        if runs and register[id(runs[-1][-1])][0] == register[id(t)][0]:
            runs[-1].append(t)
        else:
            runs.append([t])
    gathers = [_slice_or_gather(names[register[id(run[0])][0]],
                                [register[id(t)][1] for t in run], namespace) for run in runs]
    lines.append(f"    return {gathers[0]}" if len(gathers) == 1 else
                 f"    return [{', '.join('*' + g for g in gathers)}]")
    return "\n".join(lines) + "\n", namespace


def _slice_or_gather(array: str, indices: list[int], namespace: dict,
                     shape: tuple | None = None) -> str:
    """``_R[a:b:s]`` where the registers run evenly, else a gather by an index array; of
    ``shape`` where given (rows of a chain's terms)."""
    first, n = indices[0], len(indices)
    step = indices[1] - first if n > 1 else 1
    if step > 0 and all(i == first + step * j for j, i in enumerate(indices)):
        stop = first + step * (n - 1) + 1
        code = f"{array}[{first}:{stop}]" if step == 1 else f"{array}[{first}:{stop}:{step}]"
        return code if shape is None else f"{code}.reshape{shape}"
    name = f"_i{sum(key.startswith('_i') for key in namespace)}"
    namespace[name] = np.array(indices, dtype=np.intp).reshape(shape or (n,))
    return f"{array}[{name}]"
