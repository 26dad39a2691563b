"""``backend='numba'``: a traced program as fused loops compiled by LLVM (through Numba).

The elementwise ops of a program (values and derivatives together) are grouped: ops of
one shape that do not depend on each other through a structural op (an index, a sum, a
matrix product) form one *group*, computed by one loop over its points with the shared
subexpressions as scalar locals::

    @_jit
    def _g0_point(x0, x1):          # straight-line scalar code: a call at one point
        t2 = -x0
        t3 = np.exp(t2*x1)
        ...
        return (t7, t9, t11)

    @_jit
    def _g0_loop(n, x0s, x1s, out0, out1, out2):   # the same code over n points
        for i in range(n):
            x0 = x0s[i]
            x1 = x1s[i]
            t2 = -x0
            ...
            out0[i] = t7
            ...

(``_g0_parallel`` is the same loop over ``numba.prange``, on every core, for large
batches.) Everything else (indexing, scatters, reductions, matrix products, elementwise
primitives without a scalar form, ``Primitive.scalar``) stays the NumPy code of the NumPy
backend, called between the groups by a plain Python ``kernel(_args, _variables)``: never
wrong, and BLAS where BLAS is fastest.

A call with arguments of exactly the traced shapes runs one jitted function, ``_whole``,
where every op has a loop form (:class:`_LoopProgram`): the groups' loops with their scalar
code inline, and indexing, reshapes, transposes, scatters and sums as loops over addresses
fixed when the code is generated, every intermediate array in a work array the caller
passes. Scalar loops compile in a fraction of the time NumPy-style array expressions take
Numba (about 0.2 s against 4 s for Rosenbrock's Hessian-vector product). A sparse Hessian
inlines that code once more, in a loop over the colours (:func:`fused_hessian`).

No ``fastmath``: the scalar forms are NumPy's own (``np.sin`` on a scalar is NumPy's loop
in Numba; ``error_model='numpy'``: ``1/0.0`` is inf, not an exception), comparisons and
``maximum`` treat NaN and signed zeros as NumPy does, and every result is cast to the
dtype the trace recorded. The loops run float32, float64 and bool values; ops on integer
values stay NumPy.

The generated module is imported from the disk cache (:mod:`symtape.kernels.diskcache`), so
Numba's machine-code cache (``cache=True``) works across processes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Callable

import numpy as np

from symtape.arrays.dtypes import dtype_of
from symtape.core.primitives import REGISTRY
from symtape.kernels.compile import tuple_code
from symtape.kernels.settings import require_numba

__all__ = ["generate", "FUSED_PRIMITIVES"]

_PARALLEL_FROM = 1 << 15  # points: below this, threads cost more than they save

# the primitives with a scalar form (``Primitive.scalar``): fused into the loops
FUSED_PRIMITIVES = frozenset(name for name, prim in REGISTRY.items() if prim.scalar is not None)

# scalar helpers with NumPy's treatment of NaN and signed zeros (compiled with the kernel)
_PRELUDE = '''\
import math

import numba
import numpy as np

_jit = numba.njit(cache=_CACHE, error_model="numpy")


@_jit
def _maximum(a, b):
    return a if (a > b or a != a) else b


@_jit
def _minimum(a, b):
    return a if (a < b or a != a) else b


@_jit
def _sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0 if x == 0 else x)


@_jit
def _heaviside(x, at_zero):
    return 0.0 if x < 0 else (1.0 if x > 0 else (at_zero if x == 0 else x))


@_jit
def _log_real(x):
    return np.log(x) if x > 0 else 0.0 * x if x == x else 0.0


@_jit
def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@_jit
def _softplus(x):
    return _maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


@_jit
def _power(a, b):
    return np.power(a, b)
'''


def _with_prelude(code: str) -> str:
    """A module of generated ``code`` after the imports and the helpers it calls (only those:
    each jitted function costs its module's import time, compiled or not)."""
    head, *helpers = _PRELUDE.split("\n\n\n@_jit\n")
    names = [h[len("def "):h.index("(")] for h in helpers]
    used, text = set(), code
    while True:  # helpers calling helpers (softplus calls maximum)
        more = {n for n in names if n + "(" in text} - used
        if not more:
            break
        used |= more
        text = "".join(h for n, h in zip(names, helpers) if n in more)
    return "".join([head] + ["\n\n\n@_jit\n" + h for n, h in zip(names, helpers) if n in used]
                   + [code])


def _literal(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    value = float(value)
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(value)


_FLOATS = {np.dtype(np.float64), np.dtype(np.float32)}
_BOOL = np.dtype(bool)


# ---------------------------------------------------------------- which ops are fused


def _fusable(node, inputs, kinds) -> bool:
    """Whether ``node`` has a scalar form for the dtypes it was traced with."""
    prim = node.primitive
    if not prim.elementwise or prim.scalar is None:
        return False
    shape = np.shape(node.array)
    if 0 in shape:
        return False
    out = dtype_of(node.array)
    traced = [dtype_of(x.array) for x in inputs]
    literal = [kinds[id(x)][0] == "const" and np.ndim(x.array) == 0 for x in inputs]
    signature = prim.signature
    if signature == "cast":
        return out in _FLOATS | {_BOOL} and traced[0] in _FLOATS | {_BOOL}
    if signature == "comparison":
        return out == _BOOL and all(d in _FLOATS or lit for d, lit in zip(traced, literal))
    if signature == "logical":
        return out == _BOOL and traced[0] == _BOOL
    if signature == "select":
        return (out in _FLOATS and traced[0] == _BOOL
                and all(d in _FLOATS or lit for d, lit in zip(traced[1:], literal[1:])))
    return out in _FLOATS and all(d in _FLOATS or (lit and d.kind in "fiu")
                                  for d, lit in zip(traced, literal))


class _ScalarPrinter:
    """What a primitive's scalar form (``Primitive.scalar``) is given: literals, and the
    conversion to float64 of a result that is not one by itself (a choice, a cast)."""

    def __init__(self, out: np.dtype):
        self.out = out

    literal = staticmethod(_literal)

    def float64(self, code: str) -> str:
        return f"np.float64({code})" if self.out == np.float64 else code


def _scalar_code(node, args: list[str]) -> str:
    """The code of one fused op on scalar locals, in the dtype the trace recorded."""
    form, out = node.primitive.scalar, dtype_of(node.array)
    if isinstance(form, str):
        code = form.format(*args)
    else:
        code = form(_ScalarPrinter(out), *args, **node.params)
    if out == np.float32:
        return f"np.float32({code})"
    return code


# ---------------------------------------------------------------- grouping


class _Group:
    """Fused ops of one shape and batch dependence, computed by one loop."""

    def __init__(self, number: int, shape: tuple, dependent: bool):
        self.number, self.shape, self.dependent = number, shape, dependent
        self.members: list = []
        self.inputs: list = []  # nodes from outside the group: (node, as a static scalar)
        self.input_ids: dict[int, int] = {}
        self.returned: list = []  # members used outside the group


def _partition(graph, fusable: dict[int, bool], dependent: dict[int, bool]):
    """Units in an order that computes every input first: a unit is a group of fused ops,
    or one other op node. Returns None when no such order exists (then nothing is fused)."""
    resolve = graph.resolve
    level: dict[int, int] = {}
    groups: dict[tuple, _Group] = {}
    unit_of: dict[int, Any] = {}
    units: list = []
    for node in graph.order:
        if node.primitive is None:
            level[id(node)] = 0
            continue
        inputs = [resolve(x) for x in node.inputs]
        if fusable[id(node)]:
            level[id(node)] = max([level[id(x)] + (0 if fusable.get(id(x)) else
                                                   1 if x.primitive is not None else 0)
                                   for x in inputs], default=0)
            key = (tuple(np.shape(node.array)), dependent[id(node)], level[id(node)])
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(len(groups), key[0], key[1])
                units.append(group)
            group.members.append(node)
            unit_of[id(node)] = group
        else:
            level[id(node)] = max([level[id(x)] for x in inputs], default=0)
            unit_of[id(node)] = node
            units.append(node)
    # topological order of the units (Kahn); a cycle means the grouping cannot run
    needs: dict[int, set] = {id(u): set() for u in units}
    users: dict[int, set] = {id(u): set() for u in units}
    for node in graph.order:
        if node.primitive is None:
            continue
        unit = unit_of[id(node)]
        for x in node.inputs:
            source = unit_of.get(id(resolve(x)))
            if source is not None and source is not unit:
                needs[id(unit)].add(id(source))
                users[id(source)].add(id(unit))
    by_id = {id(u): u for u in units}
    position = {id(u): n for n, u in enumerate(units)}
    ready = [u for u in units if not needs[id(u)]]
    ordered = []
    while ready:
        unit = ready.pop(0)
        ordered.append(unit)
        for user in sorted(users[id(unit)], key=position.__getitem__):
            needs[user].discard(id(unit))
            if not needs[user]:
                ready.append(by_id[user])
    if len(ordered) != len(units):
        return None
    return ordered, unit_of


# ---------------------------------------------------------------- code generation


class _Generator:
    def __init__(self, graph):
        from symtape.kernels.program import op_call  # the NumPy backend's calls

        self.graph = graph
        self.op_call = op_call
        self.namespace: dict[str, Any] = {}
        self.lines: list[str] = []  # the Python kernel's body
        self.module: list[str] = []  # the jitted functions
        self.batchable = True
        self.names: dict[int, str] = {}  # node -> its name in the Python kernel
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"_{prefix}{self.counter}"

    def build(self):
        graph = self.graph
        kinds = graph.kinds
        resolve = graph.resolve
        dependent: dict[int, bool] = {}
        fusable: dict[int, bool] = {}
        for node in graph.order:
            kind = kinds[id(node)]
            if kind[0] != "op":
                dependent[id(node)] = kind[0] == "arg"
                continue
            inputs = [resolve(x) for x in node.inputs]
            dependent[id(node)] = any(dependent[id(x)] for x in inputs)
            fusable[id(node)] = _fusable(node, inputs, kinds)
        self.dependent = dependent
        partition = _partition(graph, fusable, dependent)
        if partition is None:  # pragma: no cover - the levels make this unreachable
            fusable = dict.fromkeys(fusable, False)
            partition = _partition(graph, fusable, dependent)
        ordered, unit_of = partition
        self.unit_of = unit_of
        self.lines += graph.prologue()
        for node in graph.order:
            if kinds[id(node)][0] in ("arg", "var"):
                self.names[id(node)] = graph.input_name(node)
        self.mark_returned(ordered)
        for unit in ordered:
            if isinstance(unit, _Group):
                self.group(unit)
            else:
                self.other(unit)
        self.lines.append(f"    return {tuple_code([self.value(t) for t in graph.outputs])}")
        whole = _loop_program(graph, ordered)
        if whole is not None:  # calls of exactly the traced shapes: one jitted function
            self.module.append(_whole_source(whole))
            exact = self.fresh("exact")
            self.namespace[exact] = _ExactCall(
                [None if p is None else tuple(np.shape(p.array)) for p in _arguments(graph)],
                whole)
            self.lines.insert(0, f"    if {exact}.applies(_args):")
            self.lines.insert(1, f"        return {exact}.call(_args, _variables)")
        if any(not isinstance(u, _Group) for u in ordered):
            # small batches through structural ops: NumPy's calls cost less than the loops'
            self.namespace["_small"] = _small
            at = 2 if whole is not None else 0
            self.lines.insert(at, "    if _small(_args):")
            self.lines.insert(at + 1, "        return _numpy_kernel(_args, _variables)")
        kernel = "\n".join(["def kernel(_args, _variables):"] + self.lines) + "\n"
        module = _with_prelude("".join(self.module))
        return kernel, module

    def mark_returned(self, ordered) -> None:
        outputs = {id(t) for t in self.graph.outputs}
        used_outside: set[int] = set(outputs)
        for node in self.graph.order:
            if node.primitive is None:
                continue
            unit = self.unit_of[id(node)]
            for x in node.inputs:
                x = self.graph.resolve(x)
                if self.unit_of.get(id(x)) is not unit:
                    used_outside.add(id(x))
        for unit in ordered:
            if isinstance(unit, _Group):
                unit.returned = [m for m in unit.members if id(m) in used_outside]

    def value(self, node) -> str:
        """The Python kernel's name for a node's value (constants become namespace entries)."""
        name = self.names.get(id(node))
        if name is None:  # a constant
            name = self.names[id(node)] = self.fresh("k")
            value = node.array
            if node.weak and np.ndim(value) == 0:
                value = value.item() if hasattr(value, "item") else value
            else:
                value = np.asarray(value)
            self.namespace[name] = value
        return name

    def other(self, node) -> None:
        """An op without a fused form: the NumPy backend's call."""
        from symtape.core.primitives import expand_axes

        graph = self.graph
        inputs = [graph.resolve(x) for x in node.inputs]
        args = [self.value(x) for x in inputs]
        ranks = [np.ndim(x.array) for x in inputs]
        prim = node.primitive
        if prim.elementwise:
            r = np.ndim(node.array)
            aligned = []
            for arg, k, x in zip(args, ranks, inputs):
                if k < r and self.dependent[id(x)]:
                    align = self.fresh("align")
                    self.namespace[align] = functools.partial(expand_axes, np, r=r, k=k)
                    arg = f"{align}({arg})"
                aligned.append(arg)
            args = aligned
        call, batchable = self.op_call(node, ranks)
        self.batchable &= batchable
        fn = self.fresh(f"{prim.name}_")
        dtype = dtype_of(node.array)
        self.namespace[fn] = functools.partial(_as_dtype, functools.partial(call, np), dtype)
        name = self.names[id(node)] = self.fresh("t")
        self.lines.append(f"    {name} = {fn}({', '.join(args)})")

    def group(self, group: _Group) -> None:
        graph = self.graph
        local: dict[int, str] = {}
        body: list[str] = []
        params: list[str] = []
        array_inputs, scalar_inputs = [], []
        r = len(group.shape)
        for node in group.members:
            inputs = [graph.resolve(x) for x in node.inputs]
            codes = []
            others = [np.shape(x.array) for x in inputs]
            for x in inputs:
                if id(x) in local:
                    codes.append(local[id(x)])
                    continue
                literal = self.literal(x, node, others)
                if literal is not None:
                    codes.append(literal)
                    continue
                parameter = f"x{len(params)}"
                params.append(parameter)
                static = np.ndim(x.array) == 0 and not self.dependent[id(x)]
                entry = (self.value(x), np.ndim(x.array), self.dependent[id(x)])
                (scalar_inputs if static else array_inputs).append((parameter, entry))
                local[id(x)] = parameter
                codes.append(parameter)
            name = f"t{len(local)}"
            body.append(f"    {name} = {_scalar_code(node, codes)}")
            local[id(node)] = name
        returned = [local[id(m)] for m in group.returned]
        g = f"_g{group.number}"
        arrays = [p for p, _ in array_inputs]
        scalars = [p for p, _ in scalar_inputs]
        point_params = ", ".join(arrays + scalars)
        outs = [f"out{i}" for i in range(len(returned))]
        source = [f"\n\n@_jit\ndef {g}_point({point_params}):", *body,
                  f"    return {tuple_code(returned)}\n"]
        # the point's code inline in the loops (one function to compile, not two)
        source += _loops(f"{g}_", [f"{p}s" for p in arrays] + scalars, outs,
                         [f"    {p} = {p}s[i]" for p in arrays] + body, returned)
        self.module.append("\n".join(source))
        spec = self.fresh("spec")
        self.namespace[spec] = _GroupSpec(
            g, group.shape, [e for _, e in array_inputs],
            [dtype_of(m.array) for m in group.returned])
        targets = [self.fresh("t") for _ in group.returned]
        for member, target in zip(group.returned, targets):
            self.names[id(member)] = target
        left = ", ".join(targets) + ("," if len(targets) == 1 else "")
        array_names = [e[0] for _, e in array_inputs]
        scalar_names = [e[0] for _, e in scalar_inputs]
        if r == 0 and not any(e[1] for _, e in array_inputs):
            # points of shape (): Python floats go straight into the scalar code
            check = " and ".join(f"type({a}) is float" for a in array_names + scalar_names)
            call = f"{spec}.point({', '.join(array_names + scalar_names)})"
            if check:
                self.lines.append(f"    if {check}:")
                self.lines.append(f"        {left} = {call}")
                self.lines.append("    else:")
                indent = "        "
            else:
                indent = "    "
        else:
            indent = "    "
        self.lines.append(f"{indent}{left} = _run_group({spec}, ({', '.join(array_names)}"
                          f"{',' if len(array_names) == 1 else ''}), "
                          f"({', '.join(scalar_names)}{',' if len(scalar_names) == 1 else ''}))")
        self.namespace["_run_group"] = run_group

    def literal(self, x, node, others) -> str | None:
        """A constant operand as a number in the code, where that is exact."""
        if self.graph.kinds[id(x)][0] != "const":
            return None
        value = x.array
        if np.ndim(value) == 0:
            return _literal(value.item() if hasattr(value, "item") else value)
        flat = np.asarray(value).reshape(-1)
        rest = [s for s, y in zip(others, node.inputs) if self.graph.resolve(y) is not x]
        if (flat == flat[0]).all() and rest and np.broadcast_shapes(*rest) == np.shape(node.array):
            return _literal(flat[0].item())
        return None


def _as_dtype(call, dtype, *args):
    value = call(*args)
    return value if getattr(value, "dtype", None) == dtype else np.asarray(value).astype(dtype)[()]


class _GroupSpec:
    """What the Python kernel needs to run one group: its compiled functions and layout."""

    def __init__(self, name: str, shape: tuple, arrays: list, dtypes: list):
        self.name, self.shape, self.arrays, self.dtypes = name, shape, arrays, dtypes
        self.point = self.loop = self.parallel = None

    def bind(self, module) -> None:
        self.point = getattr(module, f"{self.name}_point")
        self.loop = getattr(module, f"{self.name}_loop")
        self.parallel = getattr(module, f"{self.name}_parallel")


def _small(values) -> bool:
    """Arguments with fewer entries, together, than a fused loop needs to pay off."""
    total = 0
    for value in values:
        total += np.size(value)
    return total < _PARALLEL_FROM


def _scalar(value):
    return value[()] if isinstance(value, np.ndarray) else value


def run_group(spec: _GroupSpec, arrays: tuple, scalars: tuple) -> tuple:
    """One group's loop over the broadcast shape of its inputs (batch axes included)."""
    from symtape.core.primitives import expand_axes

    r = len(spec.shape)
    shaped = []
    for value, (_, k, dependent) in zip(arrays, spec.arrays):
        value = np.asarray(value)
        if dependent and k < r and value.ndim > k:
            value = expand_axes(np, value, r=r, k=k)
        shaped.append(value)
    scalars = tuple(_scalar(s) for s in scalars)
    shapes = {v.shape for v in shaped}
    shape = (shapes.pop() if len(shapes) == 1 and len(shaped[0].shape) >= r else
             np.broadcast_shapes(spec.shape, *shapes))
    if shape == ():
        return spec.point(*[v[()] for v in shaped], *scalars)
    n = math.prod(shape)
    flat = [_flattened(v, shape) for v in shaped]
    outs = [np.empty(n, dtype) for dtype in spec.dtypes]
    (spec.parallel if n >= _PARALLEL_FROM else spec.loop)(n, *flat, *scalars, *outs)
    return tuple(o.reshape(shape) for o in outs)


def _flattened(value: np.ndarray, shape: tuple) -> np.ndarray:
    if value.shape != shape:
        value = np.broadcast_to(value, shape)
    return value.ravel()  # a view where the array is contiguous, else a copy


# ---------------------------------------------------------------- entry point


def generate(graph) -> tuple[str, dict, bool, str]:
    """``(kernel source, namespace, batchable, module source)`` of a traced graph; the
    namespace holds the jitted functions, imported from the disk cache."""
    require_numba()
    generator = _Generator(graph)
    kernel, module_source = generator.build()
    module = load_module_source(module_source)
    for value in generator.namespace.values():
        if isinstance(value, (_GroupSpec, _ExactCall)):
            value.bind(module)
    return kernel, generator.namespace, generator.batchable, module_source


def load_module_source(source: str):
    """Import generated jitted functions through the disk cache (``cache=True``)."""
    from symtape.kernels.diskcache import load_module

    return load_module(source.replace("cache=_CACHE", "cache=True"))


def program_kernel(graph) -> tuple[str, Callable, bool, tuple]:
    """What :class:`symtape.kernels.program.Program` keeps for ``backend='numba'``: the source (the
    jitted module, then the Python kernel that calls it), the kernel, whether it batches,
    and the recipe a worker rebuilds it from (the module's functions compile there in
    memory)."""
    from symtape.kernels.compile import load

    kernel, namespace, batchable, module_source = generate(graph)
    if "_numpy_kernel" in kernel:
        from symtape.kernels.program import generate_source

        namespace["_numpy_kernel"] = generate_source(graph, "numpy")[1]
    namespace["_CACHE"] = False  # a worker exec'ing the whole source: no file to cache in
    function = load(kernel, frozenset(), "numba", namespace)
    return module_source + "\n\n" + kernel, function, batchable, (namespace, frozenset())


# ---------------------------------------------------------------- st.compile(..., backend='numba')


def _expression_printer():
    from symtape.kernels.compile import PRINTERS

    class ScalarPrinter(PRINTERS["numpy"]):
        """The kernel printer, for scalar locals in jitted code (NumPy's scalar semantics)."""

        def _print_erf(self, expr):
            return f"math.erf({self._print(expr.args[0])})"

        def _choice(self, condition: str, value: str, otherwise: str) -> str:
            return f"({value} if {condition} else {otherwise})"

        def _extremum(self, name: str) -> str:
            return f"_{name}"  # the prelude's scalar maximum and minimum

        def _module_format(self, fqn, register=True):
            return "np." + fqn[len("numpy."):] if fqn.startswith("numpy.") else fqn

        def _print_Heaviside(self, expr):
            at_zero = expr.args[1] if len(expr.args) > 1 else 0.5
            return f"_heaviside({self._print(expr.args[0])}, {_literal(float(at_zero))})"

    return ScalarPrinter


def compile_source(layout, outputs: list, cse: bool) -> tuple[str, frozenset]:
    """``st.compile``'s kernel for ``backend='numba'``: the outputs' entries as scalar code
    in one jitted function, looped over the broadcast batch of the inputs."""
    from symtape.kernels.compile import Names, emit, straight_line

    names = Names()
    entries = layout.read(names)
    block, results = straight_line([e for array in outputs for e in array.reshape(-1)], names,
                                   cse)
    printer = _expression_printer()(names)
    params = [name for name, _ in entries]
    outs = [f"out{i}" for i in range(len(results))]
    module = [f"\n@_jit\ndef point({', '.join(params)}):",
              *emit(block, results, printer, names), ""]
    module += _loops("", params, outs,
                     [f"    r = point({', '.join(p + '[i]' for p in params)})"],
                     [f"r[{i}]" for i in range(len(outs))])
    kernel = ["def kernel(*_args):", *[f"    {name} = {code}" for name, code in entries],
              f"    return _run_entries(_spec, ({', '.join(params)}{',' if len(params) == 1 else ''}),"
              f" {len(results)})"]
    return (_with_prelude("\n".join(module)) + "\n\n" + "\n".join(kernel) + "\n",
            frozenset())


def _loops(prefix: str, params: list[str], outs: list[str], body: list[str],
           results: list[str]) -> list[str]:
    """The lines of ``{prefix}loop`` and ``{prefix}parallel`` (the same over
    ``numba.prange``), functions of ``n, *params, *outs``: at each of ``n`` points ``i``, the
    lines ``body`` (written at a function's indentation) compute ``results``, stored into
    the arrays ``outs``."""
    lines = []
    for variant, loop in (("loop", "range"), ("parallel", "numba.prange")):
        decorator = ("@_jit" if variant == "loop" else
                     '@numba.njit(cache=_CACHE, error_model="numpy", parallel=True)')
        lines += [f"\n{decorator}\ndef {prefix}{variant}({', '.join(['n', *params, *outs])}):",
                  f"    for i in {loop}(n):", *["    " + line for line in body],
                  *[f"        {out}[i] = {r}" for out, r in zip(outs, results)], ""]
    return lines


class _Entries:
    def __init__(self, module):
        self.point, self.loop, self.parallel = module.point, module.loop, module.parallel


def load_compiled(source: str) -> Callable:
    """The kernel function of :func:`compile_source`'s source (jitted part from the disk cache)."""
    from symtape.kernels.compile import load

    require_numba()
    module_source, _, kernel = source.rpartition("\n\ndef kernel(")
    module = load_module_source(module_source + "\n")
    namespace = {"_spec": _Entries(module), "_run_entries": run_entries}
    return load("def kernel(" + kernel, frozenset(), "numba", namespace)


def run_entries(spec: _Entries, entries: tuple, count: int) -> tuple:
    """One jitted point function over the broadcast batch of the input entries."""
    arrays = [np.asarray(e) for e in entries]
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    arrays = [a if a.dtype == dtype else a.astype(dtype) for a in arrays]
    shape = np.broadcast_shapes(*[a.shape for a in arrays])
    if shape == ():
        return tuple(np.asarray(r, dtype)[()] for r in spec.point(*[a[()] for a in arrays]))
    n = math.prod(shape)
    outs = [np.empty(n, dtype) for _ in range(count)]
    flat = [_flattened(a, shape) for a in arrays]
    (spec.parallel if n >= _PARALLEL_FROM else spec.loop)(n, *flat, *outs)
    return tuple(o.reshape(shape) for o in outs)


# ---------------------------------------------------------------- one jitted function


_STRUCTURAL_VIEWS = {"getitem", "reshape", "transpose", "broadcast_to"}  # each entry: one input's


def _arguments(graph) -> list:
    """The argument placeholders in call order (those the outputs depend on)."""
    found = {k[1]: node for node in graph.order for k in [graph.kinds[id(node)]] if k[0] == "arg"}
    return [found.get(i) for i in range(max(found, default=-1) + 1)]


class _Scalar:
    """A value every entry of which is one scalar expression (a local, a parameter, a literal)."""

    def __init__(self, code: str, shape: tuple = ()):
        self.code, self.shape = code, tuple(shape)


class _Buffer:
    """A value held in the flat array ``name``: its entries at ``addresses`` (integers of its
    shape), so that an index, a reshape or a transpose is new addresses, never a copy."""

    def __init__(self, name: str, addresses: np.ndarray):
        self.name, self.addresses = name, addresses
        self.shape = addresses.shape


class _LoopProgram:
    """A program as scalar loops over flat arrays, for arguments of exactly the traced shapes:
    ``lines`` (a function body) compute the ``outputs`` from ``params``: the arguments and the
    Variables (flat), the ``constants``, then one work array per dtype (``work``: name ->
    (dtype, size)), allocated by the caller, which holds every intermediate array and the
    outputs (``(work array, offset, shape)`` each). No NumPy function is compiled, not even
    ``np.empty``: an array expression costs Numba seconds to compile, these loops a fraction
    of one."""

    def __init__(self, graph):
        self.graph = graph
        self.lines: list[str] = []
        self.params: list[str] = []
        self.constants: list[np.ndarray] = []
        self.outputs: list[tuple[str, int, tuple]] = []
        self.work: dict[str, tuple[np.dtype, int]] = {}
        self.values: dict[int, Any] = {}
        self.indent = "    "
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    @contextlib.contextmanager
    def nest(self, shape: tuple):
        """A loop per axis of ``shape`` (indices ``i0``, ``i1``, ...) around what is emitted."""
        for k, n in enumerate(shape):
            self.emit(f"for i{k} in range({n}):")
            self.indent += "    "
        yield
        self.indent = self.indent[:len(self.indent) - 4 * len(shape)]

    def constant(self, array: np.ndarray) -> str:
        name = self.fresh("k")
        self.params.append(name)
        self.constants.append(np.ascontiguousarray(array).reshape(-1))
        return name

    def address(self, addresses: np.ndarray, shape: tuple) -> str:
        """The code of the address of entry ``(i0, i1, ...)`` of ``addresses`` broadcast to
        ``shape``: affine in the indices where it is (slices, transposes), else read from a
        table (integer-array indices)."""
        full = np.broadcast_to(addresses, shape)
        if not shape:
            return str(int(full))
        offset = int(full[(0,) * len(shape)])
        strides = []
        for k, n in enumerate(shape):
            unit = tuple(1 if j == k else 0 for j in range(len(shape)))
            strides.append(int(full[unit]) - offset if n > 1 else 0)
        affine = np.full(shape, offset, dtype=np.int64)
        for k, (stride, n) in enumerate(zip(strides, shape)):
            affine = affine + stride * np.arange(n).reshape((n,) + (1,) * (len(shape) - k - 1))
        if np.array_equal(affine, full):
            terms = [f"i{k}" if s == 1 else f"{s} * i{k}" for k, s in enumerate(strides) if s]
            return " + ".join(terms + ([str(offset)] if offset or not terms else []))
        return f"{self.constant(full.astype(np.int64))}[{self.flat(shape)}]"

    @staticmethod
    def flat(shape: tuple) -> str:
        terms = [f"i{k}" if math.prod(shape[k + 1:]) == 1 else f"{math.prod(shape[k + 1:])} * i{k}"
                 for k, n in enumerate(shape) if n > 1]
        return " + ".join(terms) or "0"

    def load(self, value, shape: tuple) -> str:
        if isinstance(value, _Scalar):
            return value.code
        return f"{value.name}[{self.address(value.addresses, shape)}]"

    def allocate(self, shape: tuple, dtype, zeros: bool = False) -> _Buffer:
        """Room for an array in the work array of its dtype (filled with zeros if asked)."""
        name = "w_" + dtype.name
        size = math.prod(shape)
        offset = self.work.get(name, (dtype, 0))[1]
        self.work[name] = (dtype, offset + size)
        if zeros:
            with self.nest((size,)):
                self.emit(f"{name}[{offset} + i0] = 0" if offset else f"{name}[i0] = 0")
        return _Buffer(name, np.arange(offset, offset + size).reshape(shape))

    def value(self, x):
        """An argument's, a Variable's or a constant's value (ops' are set as emitted)."""
        found = self.values.get(id(x))
        if found is not None:
            return found
        shape = tuple(np.shape(x.array))
        kind = self.graph.kinds[id(x)]
        if kind[0] == "const":
            flat = np.asarray(x.array).reshape(-1)
            if (flat == flat[0]).all() or not shape:  # one number (NaN never equals: an array)
                found = _Scalar(_literal(flat[0].item()), shape)
            else:
                found = _Buffer(self.constant(x.array), np.arange(math.prod(shape)).reshape(shape))
        else:  # an argument or a Variable: a parameter (the caller passes arrays raveled)
            name = f"{'a' if kind[0] == 'arg' else 'v'}{kind[1]}"
            found = (_Buffer(name, np.arange(math.prod(shape)).reshape(shape)) if shape else
                     _Scalar(name))
        self.values[id(x)] = found
        return found

    def group(self, group: _Group) -> None:
        """A fused group: one loop nest over its shape, its ops as scalar locals."""
        shape, resolve = tuple(group.shape), self.graph.resolve
        buffers = {id(m): self.allocate(shape, dtype_of(m.array)) for m in group.returned
                   if shape}
        local: dict[int, str] = {}
        with self.nest(shape):
            for node in group.members:
                codes = []
                for x in map(resolve, node.inputs):
                    if id(x) not in local:
                        value = self.value(x)
                        if isinstance(value, _Scalar):
                            codes.append(value.code)
                            continue
                        local[id(x)] = self.fresh("l")
                        self.emit(f"{local[id(x)]} = {self.load(value, shape)}")
                    codes.append(local[id(x)])
                name = local[id(node)] = self.fresh("t")
                self.emit(f"{name} = {_scalar_code(node, codes)}")
                if id(node) in buffers:
                    self.emit(f"{self.load(buffers[id(node)], shape)} = {name}")
        for member in group.returned:
            self.values[id(member)] = buffers[id(member)] if shape else _Scalar(local[id(member)])

    def structural(self, node) -> bool:
        """An index, reshape, transpose, broadcast, scatter or sum; False where it has no
        loop form here."""
        name, params = node.primitive.name, node.params
        shape, dtype = tuple(np.shape(node.array)), dtype_of(node.array)
        inputs = [self.value(x) for x in map(self.graph.resolve, node.inputs)]
        if name in _STRUCTURAL_VIEWS:
            (x,) = inputs
            if isinstance(x, _Scalar):
                self.values[id(node)] = _Scalar(x.code, shape)
                return True
            addresses = np.asarray(node.primitive.numeric(np, x.addresses, **params))
            if addresses.shape != shape:
                return False
            if shape:
                self.values[id(node)] = _Buffer(x.name, addresses)
            else:
                entry = self.fresh("e")
                self.emit(f"{entry} = {x.name}[{int(addresses)}]")
                self.values[id(node)] = _Scalar(entry)
            return True
        if dtype not in _FLOATS or (not shape and name != "reduce_sum"):
            return False  # (a scatter into a scalar: none is traced)
        if name in ("scatter", "scatter_add"):
            keys = [params["key"]] if name == "scatter" else list(params["keys"])
            buffer = self.allocate(shape, dtype, zeros=True)
            for key, x in zip(keys, inputs):
                targets = buffer.addresses[key]  # out[key] += x, x broadcast to what key selects
                with self.nest(targets.shape):
                    self.emit(f"{buffer.name}[{self.address(targets, targets.shape)}] += "
                              f"{self.load(x, targets.shape)}")
            self.values[id(node)] = buffer
            return True
        if name == "reduce_sum":
            (x,) = inputs
            axis, full = params["axis"], x.shape
            axes = (range(len(full)) if axis is None else
                    [a % len(full) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))])
            kept = tuple(1 if k in axes else n for k, n in enumerate(full))
            if not shape:
                total = self.fresh("s")
                self.emit(f"{total} = {'np.float32(0.0)' if dtype == np.float32 else '0.0'}")
                with self.nest(full):
                    self.emit(f"{total} += {self.load(x, full)}")
                self.values[id(node)] = _Scalar(total)
                return True
            buffer = self.allocate(shape, dtype, zeros=True)
            with self.nest(full):
                self.emit(f"{buffer.name}[{self.address(buffer.addresses.reshape(kept), full)}]"
                          f" += {self.load(x, full)}")
            self.values[id(node)] = buffer
            return True
        return False

    def output(self, node) -> tuple[str, int, tuple]:
        """An output as ``(work array, offset, shape)``: its entries in order in a work array
        (copied there when they are spread, or are an argument's or a constant's)."""
        value, shape = self.value(node), tuple(np.shape(node.array))
        if isinstance(value, _Buffer) and value.name.startswith("w_"):
            first = int(value.addresses.reshape(-1)[0])
            if np.array_equal(value.addresses.reshape(-1), first + np.arange(value.addresses.size)):
                return value.name, first, shape
        buffer = self.allocate(shape, dtype_of(node.array))
        with self.nest(shape):
            self.emit(f"{self.load(buffer, shape)} = {self.load(value, shape)}")
        return buffer.name, int(buffer.addresses.reshape(-1)[0]), shape


def _loop_program(graph, ordered: list) -> _LoopProgram | None:
    """The program as one function of loops over scalars, for calls of exactly the traced
    shapes, where its every unit has a loop form and no array is large enough for threads;
    else None."""
    if not any(not isinstance(u, _Group) for u in ordered):
        return None  # only fused groups: the kernel calls them directly already
    for node in graph.order:
        value = node.array
        if np.size(value) >= _PARALLEL_FROM or 0 in np.shape(value):
            return None
        if np.ndim(value) and dtype_of(value).name not in ("float64", "float32", "bool"):
            return None
    program = _LoopProgram(graph)
    program.params = [f"a{i}" for i in range(len(_arguments(graph)))]
    program.params += [f"v{j}" for j in range(len(graph.variables))]
    for unit in ordered:
        if isinstance(unit, _Group):
            program.group(unit)
        elif not program.structural(unit):
            return None
    program.outputs = [program.output(t) for t in graph.outputs]
    program.params += list(program.work)
    program.graph = program.values = None  # what is kept (in a kernel's namespace) is code
    return program


def _whole_source(program: _LoopProgram) -> str:
    """``_whole``: the loop program as a jitted function (its outputs in its work arrays)."""
    return ("\n\n@_jit\ndef _whole(" + ", ".join(program.params) + "):\n"
            + "\n".join(program.lines or ["    pass"]) + "\n")


class _ExactCall:
    """The whole program's jitted function, for arguments of exactly the traced shapes; it
    keeps the loop program's code (not its graph), which a fused sparse Hessian inlines."""

    def __init__(self, shapes: list, program: _LoopProgram):
        self.shapes, self.constants = shapes, program.constants
        self.params, self.lines, self.outputs = program.params, program.lines, program.outputs
        self.work = list(program.work.values())  # (dtype, size) per work array, in params' order
        names = list(program.work)
        self.returned = [(names.index(w), offset, offset + math.prod(shape), shape)
                         for w, offset, shape in program.outputs]
        self.function = None

    def bind(self, module) -> None:
        self.function = module._whole

    def applies(self, values) -> bool:
        for value, shape in zip(values, self.shapes):
            if shape is None:  # an argument the outputs do not read
                continue
            if type(value) is float:
                if shape:
                    return False
            elif np.shape(value) != shape:
                return False
        return True

    def call(self, values, variables) -> tuple:
        values = values[:len(self.shapes)]  # trailing arguments the outputs do not read: not passed
        work = [np.empty(size, dtype) for dtype, size in self.work]
        self.function(*map(_raveled, values), *map(_raveled, variables), *self.constants, *work)
        return tuple(work[w][start] if not shape else work[w][start:stop].reshape(shape)
                     for w, start, stop, shape in self.returned)


def _raveled(value):
    """An argument as the loop programs take it: a scalar, or a flat array."""
    if type(value) is float or not isinstance(value, np.ndarray) or value.ndim == 1:
        return value
    return value[()] if value.ndim == 0 else value.ravel()


# ---------------------------------------------------------------- sparse Hessians


class FusedHessian:
    """A sparse Hessian's values by one jitted function: for each colour of the columns, the
    Hessian-vector product with that colour's seed (the product program's loops, inlined),
    its entries written straight into the nonzeros of that colour (see
    :func:`fused_hessian`)."""

    def __init__(self, exact: _ExactCall, function, variables: list, seeds: list,
                 layout: tuple, nnz: int, dtype, size: int):
        self.exact, self.function, self.variables = exact, function, variables
        self.seeds, self.layout, self.nnz, self.dtype = seeds, layout, nnz, dtype
        self.size = size  # differentiated entries: the length of a product

    def __call__(self, values: list) -> np.ndarray | None:
        """The nonzeros (CSR order) at arguments ``values``; None where they are not of the
        traced shapes (then the batched product kernel computes them)."""
        if not self.exact.applies(values):
            return None
        out = np.empty(self.nnz, self.dtype)
        work = [np.empty(size, dtype) for dtype, size in self.exact.work]
        products = [np.empty(self.size)] if len(self.exact.outputs) > 1 else []
        self.function(*map(_raveled, values), *self.seeds,
                      *[_raveled(v.array) for v in self.variables],
                      *self.exact.constants, *work, *self.layout, out, *products)
        return out


def fused_hessian(program, seeds: np.ndarray, take: np.ndarray, dtypes: list,
                  dtype) -> FusedHessian | None:
    """The fused values of a sparse Hessian whose Hessian-vector products ``program`` (a
    ``backend='numba'`` :class:`~symtape.kernels.program.Program`) computes: its arguments
    are the function's, then one seed per differentiated argument (``dtypes`` theirs).
    ``seeds`` holds a row per colour over all differentiated entries; nonzero ``k`` is entry
    ``take[k] % n`` of the product with seed ``take[k] // n``. None where the program has no
    loop form (then its batched kernel computes the products)."""
    exact = next((v for v in program.portable().namespace.values()
                  if isinstance(v, _ExactCall)), None)
    if exact is None or not len(take):
        return None
    colours, size = seeds.shape
    first_seed = len(program.argument_shapes) - len(dtypes)  # the function's arguments first
    shapes = program.argument_shapes[first_seed:]
    if first_seed < 0 or sum(math.prod(s) for s in shapes) != size:
        return None
    blocks, start = [], 0
    for shape, seed_dtype in zip(shapes, dtypes):  # a (colours, entries) block per argument
        end = start + math.prod(shape)
        blocks.append(np.ascontiguousarray(seeds[:, start:end], dtype=seed_dtype))
        start = end
    colour, row = np.divmod(np.asarray(take, dtype=np.int64), size)
    slots = np.argsort(colour, kind="stable")  # the nonzeros, colour by colour
    starts = np.searchsorted(colour[slots], np.arange(colours + 1))
    module = load_module_source(_hessian_source(exact, first_seed, size))
    blocks = blocks[:len(exact.shapes) - first_seed]  # trailing seeds the products do not read
    return FusedHessian(exact, module.hessian_values, program.variables, blocks,
                        (row[slots], slots, starts), len(take), dtype, size)


def _hessian_source(exact: _ExactCall, first_seed: int, size: int) -> str:
    """The module of :func:`fused_hessian`: the product program's body inside a loop over
    the colours, each colour's seed a row of the seed arguments ``s<j>``."""
    seeds = {f"a{j}": f"s{j}" for j in range(first_seed, len(exact.shapes))}
    params = [seeds.get(p, p) for p in exact.params] + ["rows", "slots", "starts", "out"]
    body = ["    for c in range(starts.shape[0] - 1):"]
    body += [f"        {a} = {s}[c]" if exact.shapes[int(a[1:])] else f"        {a} = {s}[c, 0]"
             for a, s in seeds.items()]  # a row of the block; a scalar argument's one entry
    body += ["    " + line for line in exact.lines]
    if len(exact.outputs) == 1:
        work, offset, _ = exact.outputs[0]
        product = f"{work}[{offset} + rows[k]]" if offset else f"{work}[rows[k]]"
    else:  # a product per differentiated argument: one after another in `p`
        at = 0
        for work, offset, shape in exact.outputs:
            body += [f"        for q in range({math.prod(shape)}):",
                     f"            p[{at} + q] = {work}[{offset} + q]"]
            at += math.prod(shape)
        params.append("p")
        product = "p[rows[k]]"
    body += ["        for k in range(starts[c], starts[c + 1]):",
             f"            out[slots[k]] = {product}"]
    code = f"\n\n@_jit\ndef hessian_values({', '.join(params)}):\n" + "\n".join(body) + "\n"
    return _with_prelude(code)
