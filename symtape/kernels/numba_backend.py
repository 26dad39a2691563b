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
    def _g0_loop(n, in0, in1, out0, out1, out2):   # the same over n points
        for i in range(n):
            out0[i], out1[i], out2[i] = _g0_point(in0[i], in1[i])

(``_g0_parallel`` is the same loop over ``numba.prange``, on every core, for large
batches.) Everything else (indexing, scatters, reductions, matrix products, elementwise
primitives without a scalar form, ``Primitive.scalar``) stays the NumPy code of the NumPy
backend, called between the groups by a plain Python ``kernel(_args, _variables)``: never
wrong, and BLAS where BLAS is fastest.

No ``fastmath``: the scalar forms are NumPy's own (``np.sin`` on a scalar is NumPy's loop
in Numba; ``error_model='numpy'``: ``1/0.0`` is inf, not an exception), comparisons and
``maximum`` treat NaN and signed zeros as NumPy does, and every result is cast to the
dtype the trace recorded. The loops run float32, float64 and bool values; ops on integer
values stay NumPy.

The generated module is imported from the disk cache (:mod:`symtape.kernels.diskcache`), so
Numba's machine-code cache (``cache=True``) works across processes.
"""

from __future__ import annotations

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
    prim = node._prim
    if not prim.elementwise or prim.scalar is None:
        return False
    shape = np.shape(node._value)
    if 0 in shape:
        return False
    out = dtype_of(node._value)
    traced = [dtype_of(x._value) for x in inputs]
    literal = [kinds[id(x)][0] == "const" and np.ndim(x._value) == 0 for x in inputs]
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
    form, out = node._prim.scalar, dtype_of(node._value)
    if isinstance(form, str):
        code = form.format(*args)
    else:
        code = form(_ScalarPrinter(out), *args, **node._params)
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
        if node._prim is None:
            level[id(node)] = 0
            continue
        inputs = [resolve(x) for x in node._inputs]
        if fusable[id(node)]:
            level[id(node)] = max([level[id(x)] + (0 if fusable.get(id(x)) else
                                                   1 if x._prim is not None else 0)
                                   for x in inputs], default=0)
            key = (tuple(np.shape(node._value)), dependent[id(node)], level[id(node)])
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
        if node._prim is None:
            continue
        unit = unit_of[id(node)]
        for x in node._inputs:
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
            inputs = [resolve(x) for x in node._inputs]
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
        whole = _whole_program(graph, ordered, self.names)
        if whole is not None:  # calls of exactly the traced shapes: one jitted function
            code, constants = whole
            self.module.append(code)
            exact = self.fresh("exact")
            self.namespace[exact] = _ExactCall(
                [None if p is None else tuple(np.shape(p._value)) for p in _arguments(graph)],
                constants)
            self.lines.insert(0, f"    if {exact}.applies(_args):")
            self.lines.insert(1, f"        return {exact}.call(_args, _variables)")
        if any(not isinstance(u, _Group) for u in ordered):
            # small batches through structural ops: NumPy's calls cost less than the loops'
            self.namespace["_small"] = _small
            at = 2 if whole is not None else 0
            self.lines.insert(at, "    if _small(_args):")
            self.lines.insert(at + 1, "        return _numpy_kernel(_args, _variables)")
        kernel = "\n".join(["def kernel(_args, _variables):"] + self.lines) + "\n"
        module = _PRELUDE + "".join(self.module)
        return kernel, module

    def mark_returned(self, ordered) -> None:
        outputs = {id(t) for t in self.graph.outputs}
        used_outside: set[int] = set(outputs)
        for node in self.graph.order:
            if node._prim is None:
                continue
            unit = self.unit_of[id(node)]
            for x in node._inputs:
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
            value = node._value
            if node._weak and np.ndim(value) == 0:
                value = value.item() if hasattr(value, "item") else value
            else:
                value = np.asarray(value)
            self.namespace[name] = value
        return name

    def other(self, node) -> None:
        """An op without a fused form: the NumPy backend's call."""
        from symtape.core.primitives import expand_axes

        graph = self.graph
        inputs = [graph.resolve(x) for x in node._inputs]
        args = [self.value(x) for x in inputs]
        ranks = [np.ndim(x._value) for x in inputs]
        prim = node._prim
        if prim.elementwise:
            r = np.ndim(node._value)
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
        dtype = dtype_of(node._value)
        self.namespace[fn] = functools.partial(_as_dtype, functools.partial(call, np), dtype)
        name = self.names[id(node)] = self.fresh("t")
        self.lines.append(f"    {name} = {fn}({', '.join(args)})")

    def group(self, group: _Group) -> None:
        graph = self.graph
        local: dict[int, str] = {}
        body: list[str] = []
        params: list[str] = []
        array_inputs, scalar_inputs = [], []
        loaded_inputs, static_inputs = [], []
        r = len(group.shape)
        for node in group.members:
            inputs = [graph.resolve(x) for x in node._inputs]
            codes = []
            others = [np.shape(x._value) for x in inputs]
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
                static = np.ndim(x._value) == 0 and not self.dependent[id(x)]
                entry = (self.value(x), np.ndim(x._value), self.dependent[id(x)])
                (scalar_inputs if static else array_inputs).append((parameter, entry))
                (static_inputs if static else loaded_inputs).append(x)
                local[id(x)] = parameter
                codes.append(parameter)
            name = f"t{len(local)}"
            body.append(f"    {name} = {_scalar_code(node, codes)}")
            local[id(node)] = name
        returned = [local[id(m)] for m in group.returned]
        g = f"_g{group.number}"
        group.point, group.parameters = f"{g}_point", loaded_inputs + static_inputs
        arrays = [p for p, _ in array_inputs]
        scalars = [p for p, _ in scalar_inputs]
        point_params = ", ".join(arrays + scalars)
        outs = [f"out{i}" for i in range(len(returned))]
        loads = ", ".join([f"{p}[i]" for p in arrays] + scalars)
        source = [f"\n\n@_jit\ndef {g}_point({point_params}):", *body,
                  f"    return {tuple_code(returned)}\n"]
        source += _loops(f"{g}_", arrays + scalars, loads, outs)
        self.module.append("\n".join(source))
        spec = self.fresh("spec")
        self.namespace[spec] = _GroupSpec(
            g, group.shape, [e for _, e in array_inputs],
            [dtype_of(m._value) for m in group.returned])
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
        value = x._value
        if np.ndim(value) == 0:
            return _literal(value.item() if hasattr(value, "item") else value)
        flat = np.asarray(value).reshape(-1)
        rest = [s for s, y in zip(others, node._inputs) if self.graph.resolve(y) is not x]
        if (flat == flat[0]).all() and rest and np.broadcast_shapes(*rest) == np.shape(node._value):
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
    module = [_PRELUDE, f"\n@_jit\ndef point({', '.join(params)}):",
              *emit(block, results, printer, names), ""]
    module += _loops("", params, ", ".join(p + "[i]" for p in params), outs)
    kernel = ["def kernel(*_args):", *[f"    {name} = {code}" for name, code in entries],
              f"    return _run_entries(_spec, ({', '.join(params)}{',' if len(params) == 1 else ''}),"
              f" {len(results)})"]
    return "\n".join(module) + "\n\n" + "\n".join(kernel) + "\n", frozenset()


def _loops(prefix: str, params: list[str], loads: str, outs: list[str]) -> list[str]:
    """The lines of ``{prefix}loop`` and ``{prefix}parallel`` (the same over
    ``numba.prange``): ``{prefix}point`` at each of ``n`` points, called on ``loads`` (the
    parameters read at point ``i``), its results stored into the arrays ``outs``."""
    lines = []
    for variant, loop in (("loop", "range"), ("parallel", "numba.prange")):
        decorator = ("@_jit" if variant == "loop" else
                     '@numba.njit(cache=_CACHE, error_model="numpy", parallel=True)')
        lines += [f"\n{decorator}\ndef {prefix}{variant}({', '.join(['n', *params, *outs])}):",
                  f"    for i in {loop}(n):",
                  f"        r = {prefix}point({loads})",
                  *[f"        {out}[i] = r[{i}]" for i, out in enumerate(outs)], ""]
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


_WHOLE_STRUCTURAL = {"getitem", "scatter", "scatter_add", "reduce_sum", "reshape", "broadcast_to"}


def _arguments(graph) -> list:
    """The argument placeholders in call order (those the outputs depend on)."""
    found = {k[1]: node for node in graph.order for k in [graph.kinds[id(node)]] if k[0] == "arg"}
    return [found.get(i) for i in range(max(found, default=-1) + 1)]


def _key_code(key) -> str | None:
    """A basic index (integers and slices) as code, or None."""
    items = key if isinstance(key, tuple) else (key,)
    parts = []
    for item in items:
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            parts.append(str(int(item)))
        elif isinstance(item, slice) and all(v is None or isinstance(v, (int, np.integer))
                                              for v in (item.start, item.stop, item.step)):
            start, stop = ("" if v is None else str(int(v)) for v in (item.start, item.stop))
            parts.append(f"{start}:{stop}" + ("" if item.step is None else f":{int(item.step)}"))
        else:
            return None
    return ", ".join(parts) if parts else None


def _numba_dtype(dtype: np.dtype) -> str:
    return {"float64": "np.float64", "float32": "np.float32", "bool": "np.bool_"}[dtype.name]


def _structural_code(node, args: list[str]) -> str | None:
    """An indexing, scatter or sum as Numba code (whole arrays of the traced shapes)."""
    name, params = node._prim.name, node._params
    if name in ("reshape", "broadcast_to"):
        shape = tuple(int(n) for n in np.shape(node._value))
        scalar_in = np.ndim(node._inputs[0]._value) == 0
        if not shape:
            return args[0] if scalar_in else f"np.ascontiguousarray({args[0]}).ravel()[0]"
        if scalar_in:
            return f"np.full({shape!r}, {args[0]})"
        if name == "reshape":
            return f"np.ascontiguousarray({args[0]}).reshape({shape!r})"
        return f"np.ascontiguousarray(np.broadcast_to({args[0]}, {shape!r}))"
    if name == "getitem":
        key = _key_code(params["key"])
        return None if key is None else f"{args[0]}[{key}]"
    if name == "reduce_sum":
        axis = params["axis"]
        if isinstance(axis, (tuple, list)) and len(axis) == 1:
            axis = axis[0]
        if params["keepdims"] or np.ndim(node._inputs[0]._value) == 0:
            return None
        if axis is None or (isinstance(axis, (tuple, list)) and
                            len(axis) == np.ndim(node._inputs[0]._value)):
            return f"np.sum({args[0]})"
        if isinstance(axis, (int, np.integer)):
            return f"np.sum({args[0]}, axis={int(axis) % np.ndim(node._inputs[0]._value)})"
        return None
    keys = [params["key"]] if name == "scatter" else list(params["keys"])
    codes = [_key_code(k) for k in keys]
    if any(c is None for c in codes) or not params["shape"]:
        return None
    dtype = _numba_dtype(dtype_of(node._value))
    lines = [f"np.zeros({tuple(params['shape'])!r}, {dtype})"]
    lines += [f"[{code}] += {arg}" for code, arg in zip(codes, args)]
    return "\n".join(lines)


def _whole_program(graph, ordered: list, names: dict) -> tuple[str, list] | None:
    """The program as one jitted function for calls of exactly the traced shapes, where its
    every unit has a Numba form and no array is large enough for threads; else None."""
    kinds, resolve = graph.kinds, graph.resolve
    if not any(not isinstance(u, _Group) for u in ordered):
        return None  # only fused groups: the kernel calls them directly already
    for node in graph.order:
        value = node._value
        if np.size(value) >= _PARALLEL_FROM or 0 in np.shape(value):
            return None
        if np.ndim(value) and dtype_of(value).name not in ("float64", "float32", "bool"):
            return None
    code: dict[int, str] = {}
    constants: list = []
    params = []
    for i, node in enumerate(_arguments(graph)):
        params.append(f"a{i}")
        if node is not None:
            code[id(node)] = f"a{i}"
    for j in range(len(graph.variables)):
        params.append(f"v{j}")
    lines: list[str] = []
    counter = [0]

    def fresh(prefix):
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def operand(x) -> str:
        if id(x) in code:
            return code[id(x)]
        kind = kinds[id(x)]
        if kind[0] == "var":
            return f"v{kind[1]}"
        value = x._value
        if np.ndim(value) == 0:
            return _literal(value.item() if hasattr(value, "item") else value)
        name = code[id(x)] = fresh("k")
        constants.append(np.ascontiguousarray(value))
        params.append(name)
        return name

    for unit in ordered:
        if not isinstance(unit, _Group):
            args = [operand(resolve(x)) for x in unit._inputs]
            structural = (_structural_code(unit, args) if unit._prim.name in _WHOLE_STRUCTURAL
                          else None)
            if structural is None:
                return None
            name = code[id(unit)] = fresh("n")
            first, *updates = structural.split("\n")
            lines.append(f"    {name} = {first}")
            lines += [f"    {name}{update}" for update in updates]
            continue
        shape = unit.shape
        loads, prepared = [], []
        for x in unit.parameters:
            value = operand(x)
            if np.ndim(x._value) == 0:
                loads.append(value)
            else:
                flat = fresh("f")
                source = (value if tuple(np.shape(x._value)) == shape else
                          f"np.broadcast_to({value}, {shape!r})")
                prepared.append(f"    {flat} = np.ascontiguousarray({source}).ravel()")
                loads.append(f"{flat}[i]")
        targets = [fresh("n") for _ in unit.returned]
        for member, target in zip(unit.returned, targets):
            code[id(member)] = target
        if not shape:
            result = fresh("r")
            lines.append(f"    {result} = {unit.point}({', '.join(loads)})")
            lines += [f"    {t} = {result}[{k}]" for k, t in enumerate(targets)]
            continue
        size = math.prod(shape)
        outs = [fresh("o") for _ in targets]
        lines += prepared
        lines += [f"    {o} = np.empty({size}, {_numba_dtype(dtype_of(m._value))})"
                  for o, m in zip(outs, unit.returned)]
        lines.append(f"    for i in range({size}):")
        lines.append(f"        r = {unit.point}({', '.join(loads)})")
        lines += [f"        {o}[i] = r[{k}]" for k, o in enumerate(outs)]
        lines += [f"    {t} = {o}.reshape({shape!r})" for t, o in zip(targets, outs)]
    lines.append(f"    return {tuple_code([operand(t) for t in graph.outputs])}")
    return "\n\n@_jit\ndef _whole(" + ", ".join(params) + "):\n" + "\n".join(lines) + "\n", \
        constants


class _ExactCall:
    """The whole program's jitted function, for arguments of exactly the traced shapes."""

    def __init__(self, shapes: list, constants: list):
        self.shapes, self.constants = shapes, constants
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
        return self.function(*[_scalar(v) for v in values], *[_scalar(v) for v in variables],
                             *self.constants)
