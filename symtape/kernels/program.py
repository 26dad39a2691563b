"""Compiling a traced graph (:mod:`symtape.kernels.trace`) into one NumPy or CuPy kernel.

Each recorded op becomes part of a SymPy expression over *whole arrays*: a symbol stands
for an array value, so ``sin(a) * b`` prints as ``numpy.sin(a) * b`` and stays vectorized
(a length-10⁶ Rosenbrock gradient is a handful of array lines, not 10⁶ scalar expressions).

- Arithmetic and the standard functions are SymPy expressions (each primitive's
  ``printed`` form, :mod:`symtape.core.primitives`); SymPy folds the constants a sweep
  leaves behind (``1*g``) and SymPy's printers write the code.
- Other elementwise primitives (``sigmoid``, ``where``, comparisons, ...) are printed as
  calls of their own numeric forward, so the kernel computes exactly what the eager op
  computes (stable ``softplus``, ``log1p``; no SymPy-only branches).
- Structural ops (indexing, reductions, ``matmul``, ...) are calls of batch-aware forms
  (each primitive's ``batch`` rule): every argument may carry extra leading batch axes,
  and the kernel evaluates the whole batch in one call.
- The DAG's own sharing is the common-subexpression elimination: a value used twice is
  computed once into a temporary; single-use chains are inlined up to a bounded depth.

Kernels are cached by the structure of the graph (ops, parameters, shapes, dtypes,
constants), so tracing an identical function again compiles nothing.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import sympy
from sympy.core.function import UndefinedFunction

from symtape.arrays.dtypes import dtype_of
from symtape.arrays.backends import gpu_device_of, is_gpu_array
from symtape.kernels import regroup
from symtape.kernels.compile import (PRINTERS, Names, array_module_for, cached, fold_constants,
                             leading_batches, load, load_unpickled, body, freeze)
from symtape.kernels.settings import HOST_BACKENDS
from symtape.arrays.objarrays import exact_number
from symtape.core.accumulate import toposort
from symtape.core.primitives import expand_axes
from symtape.core.symbolic import recursion_headroom
from symtape.core.tensor import Tensor, Variable, arrays_of, on_device_with

__all__ = ["Program", "structure_key"]

_MAX_INLINE_DEPTH = 16  # deeper single-use chains are cut into temporaries


# ---------------------------------------------------------------- calls of primitives


def op_call(node: Tensor, ranks: list[int]) -> tuple[Callable, bool]:
    """``(call(xp, *values), batchable)``: a node's op as a kernel calls it, on values that may
    carry leading batch axes (an elementwise op's operands aligned by the caller; a structural
    op's by its primitive's ``batch`` rule, see :mod:`symtape.core.primitives`), and whether
    that is right for batched values."""
    prim = node.primitive
    if prim.batch is not None:
        return prim.batch(ranks, **node.params)
    # elementwise: NumPy broadcasts the aligned operands; a structural primitive without a
    # batch rule: right for unbatched calls only
    return functools.partial(call_numeric, prim.numeric, node.params), prim.elementwise


def call_numeric(numeric, params, xp, *values):
    return numeric(xp, *values, **params)


# ---------------------------------------------------------------- the graph


def walk(outputs: list[Tensor], resolve: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """Every node the outputs depend on, inputs first (iterative: graphs may be deep)."""
    return toposort([resolve(t) for t in outputs],
                    lambda node: () if node.primitive is None else [resolve(x) for x in node.inputs])


def _numbered(order: list[Tensor], resolve, same: dict) -> list[Tensor]:
    """Value numbering: an op applied again to the same inputs with the same parameters
    (a second sweep recomputes ``cos(x)``, a loop indexes ``x[i]`` twice) is computed
    once. Fills ``same`` and returns the order without the duplicates."""
    first: dict = {}
    kept = []
    for node in order:
        if node.primitive is not None:
            key = (node.primitive.name, freeze(node.params),
                   tuple(id(resolve(x)) for x in node.inputs))
            original = first.setdefault(key, node)
            if original is not node:
                same[id(node)] = original
                continue
        kept.append(node)
    return kept


class _Graph:
    """The nodes of a trace, classified: arguments, Variables read, constants, ops."""

    def __init__(self, arguments: list[Tensor], outputs: list[Tensor], aliases: dict):
        same: dict[int, Tensor] = {}  # duplicates -> the first node computing the same thing

        def resolve(t):
            while id(t) in aliases:
                t = aliases[id(t)]
            return same.get(id(t), t)

        self.resolve = resolve
        self.order = _numbered(walk(outputs, resolve), resolve, same)
        self.outputs = [resolve(t) for t in outputs]
        self.argument_index = {id(p): i for i, p in enumerate(arguments)}
        self.variables: list[Variable] = []
        variable_index: dict[int, int] = {}
        self.kinds: dict[int, tuple] = {}
        for node in self.order:
            source = node.source
            if node.primitive is not None:
                self.kinds[id(node)] = ("op",)
            elif id(node) in self.argument_index:
                self.kinds[id(node)] = ("arg", self.argument_index[id(node)])
            elif isinstance(source, Variable):
                if id(source) not in variable_index:
                    variable_index[id(source)] = len(self.variables)
                    self.variables.append(source)
                self.kinds[id(node)] = ("var", variable_index[id(source)])
            else:
                self.kinds[id(node)] = ("const",)

    def input_name(self, node: Tensor) -> str | None:
        """The generated kernel's local for an argument (``_a0``) or a Variable (``_v0``)."""
        kind = self.kinds[id(node)]
        return f"_a{kind[1]}" if kind[0] == "arg" else f"_v{kind[1]}" if kind[0] == "var" else None

    def prologue(self) -> list[str]:
        """The first lines of a kernel ``kernel(_args, _variables)``: the arguments the
        outputs read and the Variables, as the locals :meth:`input_name` names."""
        arguments = sorted({k[1] for k in self.kinds.values() if k[0] == "arg"})
        return ([f"    _a{i} = _args[{i}]" for i in arguments]
                + [f"    _v{j} = _variables[{j}]" for j in range(len(self.variables))])

    def key(self, backend: str) -> tuple:
        """What the kernel computes, independent of which objects computed it."""
        index = {id(node): n for n, node in enumerate(self.order)}
        items = []
        for node in self.order:
            kind = self.kinds[id(node)]
            value = node.array
            described = (dtype_of(value).str, tuple(np.shape(value)), bool(node.weak))
            if kind[0] == "op":
                items.append((node.primitive.name, freeze(node.params),
                              tuple(index[id(self.resolve(x))] for x in node.inputs)) + described)
            elif kind[0] == "const":  # only constants are compared by value (on the host)
                host = value.get() if hasattr(value, "__cuda_array_interface__") else value
                items.append(("const", np.asarray(host).tobytes()) + described)
            else:
                items.append(kind + described)
        return (backend, tuple(items), tuple(index[id(t)] for t in self.outputs))


def structure_key(arguments: list[Tensor], outputs: list[Tensor]) -> tuple:
    """What ``outputs`` compute from ``arguments`` (ops, parameters, shapes, dtypes, the values
    of constants), independent of which objects computed it: a key for caches of what is
    derived from a graph, as the kernel cache is keyed for kernels.

    Parameters
    ----------
    arguments : list of Tensor
        The traced arguments (placeholders), in order.
    outputs : list of Tensor
        Computed from them.

    Returns
    -------
    tuple
        Hashable; equal for two graphs that compute the same thing the same way.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.kernels.trace import placeholder
    >>> def key():
    ...     x = placeholder(np.ones(3), "x")
    ...     return structure_key([x], [st.reduce_sum(st.sin(x) * x)])
    >>> key() == key()
    True
    """
    return _Graph(arguments, outputs, {}).key("structure")


# ---------------------------------------------------------------- code generation


def fusing(*args, **kwargs):
    """:func:`symtape.kernels.cupy_fused.fusing`, imported when a CuPy kernel is first
    generated: CPU work never pays for loading the CUDA C printer."""
    from symtape.kernels.cupy_fused import fusing as fuse_elementwise

    return fuse_elementwise(*args, **kwargs)


class _Builder:
    """Turns the graph's nodes into SymPy expressions over array symbols, and those into code."""

    def __init__(self, graph: _Graph, backend: str):
        self.graph = graph
        self.backend = backend
        self.names = Names()
        self.namespace: dict[str, Any] = {}
        self.functions: dict[Any, UndefinedFunction] = {}
        self.batchable = True
        self.printer = _PROGRAM_PRINTERS[backend](self.names, allow_unknown_functions=True)
        self.elementwise: dict[str, tuple] = {}  # function name -> (primitive, params)
        self.statements: list[tuple] = []  # (temporary, expression), printed at the end
        self.fused = None if backend != "cupy" else fusing(
            self.printer, self.names, self.namespace, self.elementwise,
            lambda kernel: self.function(("fused", kernel.key), lambda: kernel, "fused_"))

    def function(self, key, make: Callable[[], Callable], prefix: str) -> UndefinedFunction:
        """A SymPy function printed as a call of a namespace entry (one per distinct key)."""
        fn = self.functions.get(key)
        if fn is None:
            name = self.names.fresh(prefix)
            self.namespace[name] = make()
            fn = self.functions[key] = sympy.Function(name)
        return fn

    def emit(self, expr, prefix: str = "t") -> sympy.Symbol:
        symbol = self.names.temporary(prefix)
        self.statements.append((symbol, fold_constants(expr)))
        return symbol

    def build(self) -> str:
        graph = self.graph
        consumers: dict[int, int] = {}
        for node in graph.order:
            if node.primitive is not None:
                for x in node.inputs:
                    consumers[id(graph.resolve(x))] = consumers.get(id(graph.resolve(x)), 0) + 1
        for t in graph.outputs:
            consumers[id(t)] = consumers.get(id(t), 0) + 1  # a returned value is a use too
        exprs: dict[int, Any] = {}
        depth: dict[int, int] = {}
        dependent: dict[int, bool] = {}
        for node in graph.order:
            expr, level, dep = self.node(node, exprs, depth, dependent)
            if expr.is_Atom:  # `1 * t` is `t`: nothing to compute
                level = 0
            if level > 0 and (consumers.get(id(node), 0) != 1 or level > _MAX_INLINE_DEPTH):
                expr, level = self.emit(expr), 0
            exprs[id(node)], depth[id(node)], dependent[id(node)] = expr, level, dep
        lines = body(self.statements, [fold_constants(exprs[id(t)]) for t in graph.outputs],
                     self.printer, self.names, self.fused,
                     [np.shape(t.array) for t in graph.outputs])
        return "\n".join(["def kernel(_args, _variables):"] + graph.prologue() + lines) + "\n"

    def node(self, node: Tensor, exprs, depth, dependent) -> tuple[Any, int, bool]:
        """(expression, inline depth, may carry batch axes) of one node."""
        kind = self.graph.kinds[id(node)]
        if kind[0] in ("arg", "var"):
            return self.input(self.graph.input_name(node)), 0, kind[0] == "arg"
        if kind[0] == "const":
            return self.constant(node), 0, False
        inputs = [self.graph.resolve(x) for x in node.inputs]
        args = [exprs[id(x)] for x in inputs]
        dep = any(dependent[id(x)] for x in inputs)
        level = 1 + max((depth[id(x)] for x in inputs), default=0)
        prim = node.primitive
        ranks = [np.ndim(x.array) for x in inputs]
        if not prim.elementwise:
            call, batchable = op_call(node, ranks)
            self.batchable &= batchable
            fn = self.function((prim.name, freeze(node.params), tuple(ranks)),
                               lambda: self.bind(call), f"{prim.name}_")
            return fn(*args), level, dep
        r = np.ndim(node.array)
        args = self.uniform_constants(node, inputs, args)
        args = [self.align(a, r, k) if k < r and dependent[id(x)] else a
                for a, k, x in zip(args, ranks, inputs)]
        if prim.printed is not None:  # arithmetic and SymPy's functions: printed as NumPy's
            if self.backend == "numpy" and prim.name in _FLOAT_LITERAL_OPS:
                args = _float_literals(node, inputs, args)
            expr = prim.printed(*args, **node.params)
        else:
            fn = self.function((prim.name, freeze(node.params)),
                               lambda: self.bind(op_call(node, ranks)[0]), f"{prim.name}_")
            self.elementwise[fn.__name__] = (prim.name, node.params)
            expr = fn(*args)
        return self.fix_dtype(expr, node, inputs, exprs), level, dep

    def uniform_constants(self, node: Tensor, inputs: list[Tensor], args: list) -> list:
        """A constant array of one repeated value (a broadcast cotangent seed) becomes that
        number, where the other operands already give the result its shape."""
        kinds = self.graph.kinds
        constant = [kinds[id(x)][0] == "const" and np.ndim(x.array) > 0 and _uniform(x.array)
                    for x in inputs]
        if not any(constant):
            return args
        others = [np.shape(x.array) for x, c in zip(inputs, constant) if not c]
        if np.broadcast_shapes(*others) != np.shape(node.array):
            return args
        return [exact_number(x.array.reshape(-1)[0].item()) if c else a
                for a, x, c in zip(args, inputs, constant)]

    def input(self, name: str) -> sympy.Symbol:
        symbol = sympy.Dummy(name)
        self.names.of[symbol] = name
        return symbol

    def constant(self, node: Tensor):
        value = node.array
        if np.ndim(value) == 0 and dtype_of(value).kind in "fiu":
            return exact_number(value.item())
        symbol = self.names.temporary("k")
        self.namespace[self.names.of[symbol]] = self.xp.asarray(value)
        return symbol

    @property
    def xp(self):
        return array_module_for(self.backend)

    def bind(self, call: Callable) -> Callable:
        return functools.partial(call, self.xp)

    def align(self, expr, r: int, k: int):
        fn = self.function(("align", r, k), lambda: self.bind(functools.partial(expand_axes, r=r, k=k)),
                           "expand_")
        return fn(expr)

    def fix_dtype(self, expr, node: Tensor, inputs: list[Tensor], exprs) -> Any:
        """Cast where NumPy's promotion of the printed operands differs from the traced dtype
        (a constant inlined as a Python number is weak; the traced one may not have been)."""
        operands = [_weak_stand_in(exprs[id(x)], x) for x in inputs]
        expected = _result_dtype(node.primitive, tuple(operands), freeze(node.params), node.params)
        actual = dtype_of(node.array)
        if expected == actual:
            return expr
        fn = self.function(("cast", actual.str),
                           lambda: self.bind(functools.partial(_astype, dtype=actual)), "as_")
        self.elementwise[fn.__name__] = ("cast", {"dtype": actual})
        return fn(expr)


_FLOAT_LITERAL_OPS = frozenset({"add", "sub", "mul", "div"})


def _float_literals(node: Tensor, inputs: list[Tensor], args: list) -> list:
    """An integer literal meeting float operands in a float op is printed as a float
    (``200.0*x``, not ``200*x``): CPython's arithmetic has a fast path for two floats only.
    The same numbers and dtypes: Python and NumPy convert such an integer to the float
    operand's type, exactly where it is at most 2**53 (NumPy's weak scalars, NEP 50, keep
    float32 float32 either way). 0 stays an integer, and 1 in products (``1*g`` is dropped)."""
    least = 1 if node.primitive.name in ("mul", "div") else 0
    integers = [isinstance(a, sympy.Integer) and least < abs(int(a)) <= 2 ** 53 for a in args]
    if not any(integers) or dtype_of(node.array).kind != "f":
        return args
    others = [x for x, a in zip(inputs, args) if not isinstance(a, sympy.Integer)]
    if not others or any(dtype_of(x.array).kind != "f" for x in others):
        return args
    return [sympy.Float(int(a)) if i else a for a, i in zip(args, integers)]


def _uniform(value) -> bool:
    first = value.reshape(-1)[0]
    return bool((value == first).all())


_MINUS_ONE = sympy.S.NegativeOne
_MUL = functools.partial(sympy.Mul._from_args, is_commutative=True)  # no canonicalization


# ---------------------------------------------------------------- printing recorded arithmetic

_ADD_LEVEL, _MUL_LEVEL, _POW_LEVEL, _ATOM_LEVEL = 40, 50, 60, 1000


def _level(expr) -> int:
    """Python precedence of an expression as printed (read off its type: SymPy's own
    ``precedence`` asks whether a minus sign can be extracted, which costs more than the
    rest of printing)."""
    if expr.is_Add:
        return _ADD_LEVEL
    if expr.is_Mul:
        first = expr.args[0]
        return _ADD_LEVEL if first.is_Number and first.is_negative else _MUL_LEVEL
    if expr.is_Pow:
        return _POW_LEVEL
    if expr.is_Number:
        if expr.is_negative:
            return _ADD_LEVEL
        return _MUL_LEVEL if expr.is_Rational and not expr.is_Integer else _ATOM_LEVEL
    return _ATOM_LEVEL


def _program_printer(base):
    class ProgramPrinter(base):
        """Prints the unevaluated binary nodes of a recorded graph as the ops they are, in
        order: ``a + (b + c)`` keeps its parentheses, so the kernel rounds as the eager op did."""

        def parenthesize(self, item, level, strict=False):
            # SymPy's meaning of `strict`, which its inherited printers (Pow: `(x**3)**-1`)
            # rely on: not strict parenthesizes an operand of equal precedence too
            code = self._print(item)
            below = _level(item)
            return f"({code})" if below < level or (not strict and below == level) else code

        def _print_Add(self, expr):
            first, *rest = expr.args
            code = self._print(first)
            for term in rest:
                if term.is_Mul and term.args[0] is _MINUS_ONE:
                    code += " - " + self.parenthesize(_MUL(term.args[1:]) if len(term.args) > 2
                                                      else term.args[1], _ADD_LEVEL)
                elif term.is_Number and term.is_negative:
                    code += " - " + self._print(-term)
                else:
                    code += " + " + self.parenthesize(term, _ADD_LEVEL)
            return code

        def _print_Mul(self, expr):
            first, *rest = expr.args
            if first is _MINUS_ONE:
                inner = rest[0] if len(rest) == 1 else _MUL(tuple(rest))
                return "-" + self.parenthesize(inner, _MUL_LEVEL, strict=True)
            code = self.parenthesize(first, _MUL_LEVEL, strict=True)
            for factor in rest:
                if factor.is_Pow and factor.exp is _MINUS_ONE:
                    code += "/" + self.parenthesize(factor.base, _MUL_LEVEL)
                else:
                    code += "*" + self.parenthesize(factor, _MUL_LEVEL)
            return code

    return ProgramPrinter


_PROGRAM_PRINTERS = {name: _program_printer(cls) for name, cls in PRINTERS.items()}


def _astype(xp, x, *, dtype):
    return xp.asarray(x).astype(dtype)


def _weak_stand_in(expr, node: Tensor):
    """What NumPy sees for an operand: a Python number for inlined constants, else its dtype."""
    if isinstance(expr, sympy.Number):
        return 0.5 if dtype_of(node.array).kind == "f" else 1
    if node.weak and np.ndim(node.array) == 0:
        return 0.5 if dtype_of(node.array).kind == "f" else 1
    return dtype_of(node.array).str


def _result_dtype(prim, operands: tuple, frozen_params, params) -> np.dtype:
    key = (prim.name, operands, frozen_params)
    cached = _DTYPES.get(key)
    if cached is None:
        values = [o if isinstance(o, (int, float)) else np.ones((), dtype=o) for o in operands]
        with np.errstate(all="ignore"):
            cached = _DTYPES[key] = np.asarray(prim.numeric(np, *values, **params)).dtype
    return cached


_DTYPES: dict = {}  # (primitive, operand dtypes, parameters) -> result dtype; small, bounded
_BULK_OUTPUTS = 16  # from this many scalar outputs on, one np.array beats a scalar each


# ---------------------------------------------------------------- the compiled program


class Program:
    """A compiled trace: call it with argument values (batch axes allowed) for the outputs.

    Parameters
    ----------
    arguments : list of Tensor
        The placeholders (:func:`symtape.kernels.trace.placeholder`), in call order.
    outputs : list of Tensor
        What the kernel returns, in order.
    aliases : dict
        ``id(read) -> Tensor`` from the trace: reads that stand for assigned values.
    backend : {'numpy', 'cupy'}

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.kernels.trace import placeholder
    >>> x = placeholder(np.array([1.0, 2.0]), "x")
    >>> p = Program([x], [st.reduce_sum(st.sin(x) * x)], {})
    >>> p([np.zeros((4, 2))])[0].shape
    (4,)
    """

    def __init__(self, arguments: list[Tensor], outputs: list[Tensor], aliases: dict,
                 backend: str = "numpy"):
        graph = _Graph(arguments, outputs, aliases)
        if any(is_gpu_array(v.array) for v in graph.variables):
            backend = "cupy"  # a kernel that reads GPU Variables runs on the GPU
        self.backend = backend
        self.variables = graph.variables
        self.argument_shapes = [tuple(np.shape(p.array)) for p in arguments]
        self.output_shapes = [tuple(np.shape(t.array)) for t in graph.outputs]
        self.output_dtypes = [dtype_of(t.array) for t in graph.outputs]
        # a program over many scalars may run as array ops over groups of them
        groups = regroup.plan(graph) if backend in HOST_BACKENDS else None
        # scalar float64 Variables are read as Python floats: the kernel's scalar arithmetic
        # runs about twice as fast on them (and call_with_numpy_arithmetic keeps NumPy's rules);
        # a regrouped kernel stores them into an array, which takes NumPy scalars as fast
        self._floats_read = groups is None and bool(self.variables) and all(
            np.ndim(v.array) == 0 and dtype_of(v.array) == np.float64 for v in self.variables)
        self.source, self._function, self.batchable, self._recipe = cached(
            graph.key(backend), lambda: generate_source(graph, backend, groups))
        self._portable = None
        # call_exact's finishing: outputs all of shape () need no shape checks, and many
        # of one float dtype (a gradient over scalar Variables) convert in one NumPy call
        self._scalar_outputs = all(shape == () for shape in self.output_shapes)
        dtypes = set(self.output_dtypes)
        self._bulk_dtype = (self.output_dtypes[0] if self._scalar_outputs and len(dtypes) == 1
                            and self.output_dtypes[0].kind == "f"
                            and len(self.output_dtypes) >= _BULK_OUTPUTS else None)

    def __call__(self, values: list) -> list:
        return run_kernel(self, self._function, values, arrays_of(self.variables))

    def call_exact(self, values, scalars: bool = False) -> list:
        """A NumPy kernel on host arguments of exactly the traced shapes: no batch axes to
        find, no device to choose (the compiled functions' fast path). With ``scalars``,
        outputs of shape () come as NumPy scalars rather than 0-d arrays."""
        return self.exact_caller(scalars)(values)

    def exact_caller(self, scalars: bool = False,
                     then: Callable[[list], Any] | None = None,
                     layout: Callable[[Callable[[int], str]], str | None] | None = None
                     ) -> Callable[[Any], Any]:
        """:meth:`call_exact` as a function of the values alone, made once for a caller
        that runs it on every call; ``then`` is applied to the outputs inside it, which
        saves that caller a Python call of its own (a repeated call costs microseconds).
        ``layout``, where given, is what ``then`` builds, as code: ``layout(leaf)`` is the
        expression building it with output ``i`` written ``leaf(i)`` (or None), see
        :func:`symtape.core.nest.expression`; outputs all of shape () are then converted
        and placed in one generated expression.

        Examples
        --------
        >>> import numpy as np, symtape as st
        >>> from symtape.kernels.trace import placeholder
        >>> x = placeholder(np.float64(1.0), "x")
        >>> program = Program([x], [st.sin(x) * x, x + 1], {})
        >>> program.exact_caller()([0.5])
        [array(0.23971277), array(1.5)]
        >>> program.exact_caller(scalars=True, then=tuple)([0.5])
        (np.float64(0.2397127693021015), np.float64(1.5))
        """
        function, dtypes = self._function, self.output_dtypes
        read = self._variable_values if self.variables else None
        finish = None if self._scalar_outputs and not scalars else self._exact_finish(scalars)
        then = then or (lambda outputs: outputs)
        built = (_built_outputs(layout, dtypes) if finish is None and layout is not None
                 else None)
        if built is not None:  # the common small case: no list, no map, no rebuild
            def call_built(values):
                variables = read() if read is not None else ()
                try:
                    return built(function(values, variables))
                except ArithmeticError:
                    return built(numpy_arithmetic_retry(function, values, variables))

            return call_built

        def call(values):
            variables = read() if read is not None else ()
            try:
                results = function(values, variables)
            except ArithmeticError:
                results = numpy_arithmetic_retry(function, values, variables)
            if finish is None:  # every output of shape (), as 0-d arrays: the common case
                return then(list(map(np.asarray, results, dtypes)))
            return then(finish(results))

        return call

    def _exact_finish(self, scalars: bool) -> Callable[[Any], list]:
        """How :meth:`exact_caller` makes the kernel's results outputs, where some have a
        shape or scalars are asked for."""
        if not self._scalar_outputs:
            return lambda results: self._exact_arrays(results, scalars)
        if self._bulk_dtype is not None:  # many NumPy scalars of one dtype (a regrouped
            # kernel returns them as one array, converted without a copy)
            return lambda results: list(np.asarray(results, self._bulk_dtype))
        dtypes = self.output_dtypes
        return lambda results: [dtype.type(value) for value, dtype in zip(results, dtypes)]

    def _variable_values(self) -> list:
        """The Variables' current values in one pass; scalar float64 ones as Python floats
        (the kernel's scalar arithmetic runs about twice as fast on them, and
        :func:`numpy_arithmetic_retry` keeps NumPy's rules)."""
        values = arrays_of(self.variables)
        return list(map(float, values)) if self._floats_read else values

    def _exact_arrays(self, results, scalars: bool) -> list:
        """``call_exact``'s outputs where some have a shape: arrays of the traced dtypes, a
        constant broadcast to its traced shape."""
        out = []
        for value, shape, dtype in zip(results, self.output_shapes, self.output_dtypes):
            if scalars and not shape:
                out.append(dtype.type(value))
                continue
            value = np.asarray(value, dtype)  # an array of the right dtype passes as it is
            out.append(value if value.shape == shape else np.array(np.broadcast_to(value, shape)))
        return out

    def portable(self) -> "PortableProgram":
        """This kernel without the trace: picklable (its source and namespace), for workers."""
        if self._portable is None:  # one per program: its digest is computed once
            namespace, modules = self._recipe
            self._portable = PortableProgram(
                self.source, namespace, modules, self.backend, self.batchable,
                self.argument_shapes, self.output_shapes, self.output_dtypes)
        return self._portable

    def batch_shape(self, values: list) -> tuple[int, ...]:
        """The common leading (batch) shape of the arguments; () for a plain call."""
        return batch_shape(self, values)


def _built_outputs(layout, dtypes: list) -> Callable[[Any], Any] | None:
    """Scalar kernel results as 0-d arrays of the traced dtypes, placed in the structure
    ``layout`` writes (see :meth:`Program.exact_caller`), by one generated expression."""
    if len(dtypes) > _BULK_OUTPUTS:
        return None
    code = layout(lambda i: f"_asarray(_r[{i}], _d{i})")
    if code is None:
        return None
    namespace = {"_asarray": np.asarray, **{f"_d{i}": d for i, d in enumerate(dtypes)}}
    return load(f"def kernel(_r):\n    return {code}\n", frozenset(), "numpy", namespace)


def batch_shape(program, values: list) -> tuple[int, ...]:
    """The common leading (batch) shape of the arguments of a :class:`Program` or
    :class:`PortableProgram`; () for a plain call."""
    batches = [lead for lead in leading_batches(
        values, program.argument_shapes,
        lambda i, shape, core: f"argument {i} has shape {shape}; this trace takes shape "
                               f"{core} (optionally with extra leading batch axes)") if lead]
    if not batches:
        return ()
    if not program.batchable:
        raise ValueError("this function indexes with several separated integer arrays, "
                         "which has no batched form; st.vmap cannot map it: call it once "
                         "per point")
    try:
        return tuple(np.broadcast_shapes(*batches))
    except ValueError:
        raise ValueError(f"the arguments' batch shapes {batches} do not broadcast together"
                         ) from None


def generate_source(graph: _Graph, backend: str,
                    groups: regroup.Plan | None = None) -> tuple[str, Callable, bool]:
    if groups is not None:  # many scalars: NumPy calls over groups of them (on either CPU
        # backend: LLVM takes minutes over thousands of scalar statements, and gains little)
        source, namespace = regroup.regrouped_source(graph, groups)
        return source, load(source, frozenset(), backend, namespace), True, (namespace,
                                                                             frozenset())
    if backend == "numba":  # fused loops compiled by LLVM
        from symtape.kernels.numba_backend import program_kernel

        return program_kernel(graph)
    with recursion_headroom():
        builder = _Builder(graph, backend)
        source = builder.build()
    modules = frozenset(builder.printer.module_imports)
    function = load(source, modules, backend, builder.namespace)
    return source, function, builder.batchable, (builder.namespace, modules)


def run_kernel(program, function: Callable, values: list, variables: list) -> list:
    """Call a :class:`Program`'s (or :class:`PortableProgram`'s) generated ``function``: a
    CuPy kernel runs on its arguments' GPU, host arguments copied over."""
    if program.backend == "cupy":
        with gpu_device_of(values + variables):
            return run_kernel_here(program, function,
                                   on_device_with(array_module_for("cupy"), values), variables)
    return run_kernel_here(program, function, values, variables)


def run_kernel_here(program, function: Callable, values: list, variables: list) -> list:
    """``function`` called on the current device, its outputs finished."""
    return finish_outputs(program, batch_shape(program, values),
                          call_with_numpy_arithmetic(function, values, variables))


def call_with_numpy_arithmetic(function: Callable, values: list, variables: list):
    """``function(values, variables)``, with NumPy's arithmetic for Python floats too:
    where Python raises (``1/0.0``, overflow) the call runs again on NumPy scalars, which
    give inf or nan as the eager ops and batched calls do."""
    try:
        return function(values, variables)
    except ArithmeticError:
        return numpy_arithmetic_retry(function, values, variables)


def numpy_arithmetic_retry(function: Callable, values: list, variables: list):
    """``function`` again, after Python's float arithmetic raised, on NumPy scalars."""
    return function(*[[np.float64(v) if type(v) is float else v for v in part]
                      for part in (values, variables)])


def finish_outputs(program, batch: tuple, results) -> list:
    """A kernel's results as arrays of the traced dtypes, broadcast to the batch shape."""
    xp = array_module_for(program.backend)
    out = []
    for value, shape, dtype in zip(results, program.output_shapes, program.output_dtypes):
        value = xp.asarray(value)
        if value.dtype != dtype:
            value = value.astype(dtype)
        if value.shape != batch + shape:  # a constant output, or one no argument reaches
            value = xp.array(xp.broadcast_to(value, batch + shape))
        out.append(value)
    return out


class PortableProgram:
    """A :class:`Program`'s kernel as source and namespace: it pickles (to Dask workers),
    and unpickling compiles it once per process (see :mod:`symtape.chunked`)."""

    def __init__(self, source: str, namespace: dict, modules: frozenset, backend: str,
                 batchable: bool, argument_shapes, output_shapes, output_dtypes):
        self.source, self.namespace, self.modules = source, namespace, modules
        self.backend, self.batchable = backend, batchable
        self.argument_shapes = list(argument_shapes)
        self.output_shapes, self.output_dtypes = list(output_shapes), list(output_dtypes)
        self.digest: str | None = None  # of source and namespace: the key of a process's cache
        self._function = None

    def __call__(self, values: list, variables: list) -> list:
        return run_kernel(self, self._compiled(), values, variables)

    def _compiled(self) -> Callable:
        if self._function is None:  # unpickled (it has a digest): once per process
            code = (self.source, self.modules, self.backend, self.namespace)
            self._function = load_unpickled(self.digest, *code) if self.digest else load(*code)
        return self._function

    def __getstate__(self) -> dict:
        if self.digest is None:
            import hashlib

            import cloudpickle  # Dask's own pickler (the namespace holds modules, lambdas)

            payload = cloudpickle.dumps((self.source, self.backend, sorted(self.namespace.items())))
            self.digest = hashlib.sha1(payload).hexdigest()
        return {**self.__dict__, "_function": None}  # the compiled code is rebuilt, not sent

