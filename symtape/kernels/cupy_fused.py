"""Fused CuPy kernels: each elementwise group of a CuPy kernel is one ``cupy.ElementwiseKernel``.

The CuPy backend prints one statement per value it keeps (:mod:`symtape.kernels.program`) or per
shared subexpression (:mod:`symtape.kernels.compile`). Printed as NumPy-style code, a statement like
``exp(-x*y)*sin(x) + x**2*log(1 + y**2)`` is seven CuPy calls, each a pass over memory.
Here each such statement is cut into its *elementwise group*, the largest part of it made
of elementwise operations only (arithmetic, the standard functions, comparisons, ``where``
and Piecewise, ``maximum``, casts, ``sigmoid``, ...), whose leaves are arrays, scalars and
the non-elementwise calls around it (reductions, ``matmul``, indexing stay CuPy's own calls).
A group of more than one operation becomes one call of a :class:`FusedKernel`:

- its body is CUDA C printed through SymPy's C99 code printer (``sinf`` for float32,
  ``sin`` for float64, literals with the ``F`` suffix in float32, casts written out where
  NumPy would promote);
- it computes what the NumPy-style code computes, operation by operation, in the dtypes NumPy
  would use: ``maximum``/``minimum`` propagate NaN and return the second operand on ties,
  ``sign(-0.0)`` is ``0.0``, ``heaviside`` keeps NaN, Piecewise is a chain of ternaries
  ending in NaN, ``x**2`` is ``x*x``, exact fractions are the double (or float) nearest to them;
- it is specialized when called, for the dtypes of its arguments (Python numbers count as
  NumPy's weak scalars); a signature the C printer does not cover (integer arithmetic,
  float16, complex) runs the NumPy-style code instead, which is what the kernel would
  have been without fusion.

Across the statements of a traced program (:meth:`_Fusion.program`), a temporary computed
elementwise from arrays and used only inside elementwise groups is not stored but recomputed
in each kernel that uses it, and the elementwise outputs of one shape become one kernel of
several outputs: the value and gradient of a function of arrays are one pass over memory.
Reductions, ``matmul`` and indexing stay CuPy's calls between the kernels.

Compiled ``ElementwiseKernel`` objects are kept in a bounded cache keyed by their parameters
and body; CuPy itself keeps their binaries on disk.

Examples
--------
>>> import sympy
>>> x, y = sympy.symbols("x y", real=True)
>>> group = FusedKernel(sympy.sin(x) * y + 1, (x, y), "", {})
>>> print(group.operation((np.dtype(np.float32), np.dtype(np.float32))))
out0 = 1.0F + in1 * sinf(in0);
"""

from __future__ import annotations

import collections
import hashlib
import re
import sys
import threading
from typing import Any, Callable

import numpy as np
import sympy
from sympy.codegen.ast import real
from sympy.core.function import AppliedUndef
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.printing.c import C99CodePrinter

from symtape.core.accumulate import itself, toposort
from symtape.core.primitives import REGISTRY

__all__ = ["FusedKernel", "fuse", "fusing", "kernel_counts"]

# SymPy functions printed as C99 math functions of the same name (SymPy's own table)
_MATH = frozenset({"exp", "log", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
                   "tanh", "asinh", "acosh", "atanh", "atan2", "erf", "floor", "ceiling"})
_RELATIONS = {sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
              sympy.GreaterThan: ">=", sympy.Equality: "==", sympy.Unequality: "!="}
_C_TYPES = {"b1": "bool", "f4": "float", "f8": "double", "i1": "signed char", "u1": "unsigned char",
            "i2": "short", "u2": "unsigned short", "i4": "int", "u4": "unsigned int",
            "i8": "long long", "u8": "unsigned long long"}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_BOOL = np.dtype(bool)


# ---------------------------------------------------------------- finding the groups


def fuse(expr, calls: dict, register: Callable[["FusedKernel"], Any], python: Callable) -> Any:
    """``expr`` with each elementwise group of more than one operation replaced by a call
    ``register(kernel)(*leaves)`` of its :class:`FusedKernel`.

    Parameters
    ----------
    expr : sympy.Basic
        A printed statement's expression, over array symbols.
    calls : dict
        ``function name -> (primitive name, params)`` for the applied undefined functions
        that stand for elementwise primitives (the rest are leaves).
    register : callable
        Gives the SymPy function that the kernel prints as (a namespace entry).
    python : callable
        ``(group, parameters) -> (source line, namespace)``: the group as the NumPy-style
        code it replaces, the kernel's fallback for signatures C does not cover.

    Examples
    --------
    >>> x, y = sympy.symbols("x y", real=True)
    >>> kernels = []
    >>> def register(kernel):
    ...     kernels.append(kernel)
    ...     return sympy.Function("fused")
    >>> fuse(sympy.exp(x) * y + x, {}, register, lambda e, p: ("", {})), len(kernels)
    (fused(x, y), 1)
    >>> print(kernels[0].operation((np.dtype(np.float64), np.dtype(np.float64))))
    out0 = in0 + in1 * exp(in0);
    >>> fuse(x + y, {}, register, lambda e, p: ("", {}))  # one operation: a CuPy call
    x + y
    """
    grouper = _Grouper(calls)
    return grouper.rewrite(expr, register, python)


class _Grouper:
    def __init__(self, calls: dict, fractions: bool = False):
        self.calls, self.fractions = calls, fractions

    def fusable(self, node) -> bool:
        if isinstance(node, AppliedUndef):
            # elementwise primitives printed as calls: fused where they have a CUDA C form
            call = self.calls.get(node.func.__name__)
            return call is not None and REGISTRY[call[0]].cuda is not None
        if node.is_Add or node.is_Mul or node.is_Pow:
            return True
        if isinstance(node, (sympy.Piecewise, ExprCondPair, Stored)):
            return True
        if isinstance(node, (sympy.Abs, sympy.sign, sympy.Max, sympy.Min, sympy.Heaviside)):
            return True
        if type(node) in _RELATIONS or isinstance(node, (sympy.And, sympy.Or, sympy.Not)):
            return True
        return isinstance(node, sympy.Function) and type(node).__name__ in _MATH

    def rewrite(self, expr, register, python):
        if expr.is_Atom:
            return expr
        if not self.fusable(expr) or expr == _NEGATIVE_ZERO:
            args = [self.rewrite(a, register, python) for a in expr.args]
            return expr if args == list(expr.args) else expr.func(*args)
        leaves: dict = {}
        body, operations = self.group(expr, leaves, register, python, {})
        if operations < 2:
            args = [self.rewrite(a, register, python) for a in expr.args]
            return expr if args == list(expr.args) else _rebuilt(expr, args)
        parameters = tuple(leaves.values())
        fallback = python(body, parameters)
        kernel = FusedKernel(body, parameters, *fallback, calls={
            name: self.calls[name] for name in _call_names(body)}, fractions=self.fractions)
        return register(kernel)(*leaves)

    def group(self, expr, leaves: dict, register, python, memo: dict) -> tuple[Any, int]:
        """(the group below ``expr`` over parameter symbols, how many operations it has);
        ``memo`` holds the subexpressions seen (shared ones are walked once)."""
        found = memo.get(expr)
        if found is None:
            found = memo[expr] = self._group(expr, leaves, register, python, memo)
        return found

    def _group(self, expr, leaves: dict, register, python, memo: dict) -> tuple[Any, int]:
        if expr.is_Number or expr in (sympy.true, sympy.false) or expr == _NEGATIVE_ZERO:
            return expr, 0
        if expr.is_Atom or not self.fusable(expr):
            leaf = self.rewrite(expr, register, python)
            if leaf not in leaves:
                leaves[leaf] = sympy.Dummy(f"in{len(leaves)}")
            return leaves[leaf], 0
        parts = [self.group(a, leaves, register, python, memo) for a in expr.args]
        operations = sum(n for _, n in parts) + max(1, len(expr.args) - 1)
        if expr.is_Mul and expr.args[0] is sympy.S.NegativeOne and len(expr.args) == 2:
            operations -= 1  # -x: a subtraction in its sum, or one negation on its own
        return _rebuilt(expr, [p for p, _ in parts]), operations


_NEGATIVE_ZERO = sympy.Mul._from_args((sympy.S.NegativeOne, sympy.Float(0.0)))


class Stored(sympy.Function):
    """A power with a negative exponent that the NumPy code stores in a temporary, recomputed
    here on its own: inside a product, ``a * x**-1`` would print as ``a / x`` (another
    rounding than the NumPy kernel's ``a * (1/x)``)."""

    nargs = 1


def _stored(value):
    return value


def fusing(printer, names, namespace: dict, calls: dict, register=None,
           fractions: bool = False) -> Callable:
    """The hook of a CuPy code generator: ``expr -> expr`` with its elementwise groups fused
    (:func:`fuse`); the kernels go into ``namespace`` (through ``register`` where given), their
    fallbacks are printed by ``printer`` (whose symbol names are ``names``); ``fractions``:
    products are laid out as SymPy's code printer lays them out (see :class:`FusedKernel`).

    Parameters
    ----------
    printer : sympy code printer
        Prints the fallback expressions; gets ``Stored`` and each fused kernel as known
        functions.
    names : Names
        The generator's names of symbols and temporaries.
    namespace : dict
        The generated module's globals: each kernel is added under a fresh name.
    calls : dict
        What the grouper may fuse into a kernel (see ``_Grouper``).
    register : callable, optional
        ``kernel -> function`` placing a kernel itself, instead of ``namespace``.
    fractions : bool, default False

    Returns
    -------
    callable
        ``expr -> expr`` with its elementwise groups replaced by kernel calls.
    """
    functions: dict = {}
    printer.known_functions["Stored"] = "_stored"

    def add(kernel: FusedKernel):
        if register is not None:
            return register(kernel)
        function = functions.get(kernel.key)
        if function is None:
            name = names.fresh("fused")
            namespace[name] = kernel
            printer.known_functions[name] = name  # printed as a call, as known functions are
            function = functions[kernel.key] = sympy.Function(name)
        return function

    def python(body, parameters) -> tuple[str, dict]:
        for i, parameter in enumerate(parameters):
            names.of[parameter] = f"_i{i}"
        used = {name: namespace[name] for name in _call_names(body) if name in namespace}
        used["_stored"] = _stored
        if isinstance(body, tuple):
            return "(" + ", ".join(map(printer.doprint, body)) + ",)", used
        return printer.doprint(body), used

    return _Fusion(_Grouper(calls, fractions), add, python, printer, names)


_MAX_FUSED_DEPTH = 100  # deeper inlined chains keep their temporaries (printing recurses)
_MAX_FUSED_SIZE = 2000  # distinct operations in one kernel, bounding CUDA compile time
_MAX_OUTPUTS = 8  # outputs merged into one kernel (a chunk of a long gradient: one kernel)
_MAX_PARAMETERS = 64  # CUDA's 4 KiB of kernel parameters hold about 64 CuPy arrays


class _Fusion:
    """A generator's fusion hook: called on one expression, it fuses its groups
    (:func:`fuse`); :meth:`program` fuses a whole program's statements across each other."""

    def __init__(self, grouper: _Grouper, add: Callable, python: Callable, printer, names):
        self.grouper = grouper
        self.add, self.python, self.printer, self.names = add, python, printer, names

    def __call__(self, expr):
        return self.grouper.rewrite(expr, self.add, self.python)

    def program(self, statements: list, outputs: list, shapes: list) -> list[str]:
        """The lines of a program body (``symbol = expr`` statements, then the returned
        ``outputs`` of the traced ``shapes``): a temporary computed by elementwise operations
        of arrays and used only inside elementwise groups is not stored but recomputed where
        it is used, and the elementwise outputs of one shape are one kernel of several outputs
        (so a value and its gradient are one pass over memory)."""
        structural = self._structural_uses(statements, outputs)
        inlined: dict = {}
        kept = []
        for symbol, expr in statements:
            expr = _substituted(expr, inlined) if inlined else expr
            if symbol not in structural and self._inlinable(expr):
                inlined[symbol] = Stored(expr) if _denominator(expr) else expr
            else:
                kept.append((symbol, expr))
        outputs = [_substituted(o, inlined) if inlined else o for o in outputs]
        lines = [f"    {self.names.of[s]} = {self.printer.doprint(self(e))}" for s, e in kept]
        returned = list(outputs)
        by_shape: dict = {}
        for k, (expr, shape) in enumerate(zip(outputs, shapes)):
            if not expr.is_Atom and self.grouper.fusable(expr) and expr != _NEGATIVE_ZERO:
                by_shape.setdefault(tuple(shape), []).append(k)
        for members in by_shape.values():
            for start in range(0, len(members) if len(members) > 1 else 0, _MAX_OUTPUTS):
                chunk = members[start:start + _MAX_OUTPUTS]
                call, results = self._several([outputs[k] for k in chunk])
                lines.append(f"    {', '.join(results)} = {self.printer.doprint(call)}")
                for k, name in zip(chunk, results):
                    returned[k] = name
        printed = [r if isinstance(r, str) else self.printer.doprint(self(r)) for r in returned]
        lines.append(f"    return ({', '.join(printed)}{',' if printed else ''})")
        return lines

    def _several(self, exprs: list) -> tuple[Any, list[str]]:
        """One kernel computing every expression of ``exprs`` (of one shape)."""
        leaves: dict = {}
        memo: dict = {}
        bodies = tuple(self.grouper.group(e, leaves, self.add, self.python, memo)[0]
                       for e in exprs)
        parameters = tuple(leaves.values())
        calls = self.grouper.calls
        bodies = bodies if len(bodies) > 1 else bodies[0]  # the last of 9: one array, no tuple
        kernel = FusedKernel(bodies, parameters, *self.python(bodies, parameters), calls={
            name: calls[name] for name in _call_names(bodies)},
            fractions=self.grouper.fractions)
        return self.add(kernel)(*leaves), [self.names.fresh("r") for _ in exprs]

    def _structural_uses(self, statements: list, outputs: list) -> set:
        """Symbols used other than inside an elementwise group: as an argument of a
        structural call, or as a whole statement or output."""
        used = {e for e in outputs if e.is_Symbol}
        stack, seen = [e for _, e in statements] + list(outputs), set()
        while stack:
            node = stack.pop()
            if node in seen or node.is_Atom:
                continue
            seen.add(node)
            if not self.grouper.fusable(node):
                used.update(a for a in node.args if a.is_Symbol)
            stack.extend(node.args)
        return used

    def _inlinable(self, expr) -> bool:
        """Elementwise operations of symbols and numbers only, not too deep or large."""
        if expr.is_Atom or not self.grouper.fusable(expr):
            return False
        depth: dict = {}
        for node in _postorder(expr):
            if node.is_Atom:
                depth[node] = 0
                continue
            if not self.grouper.fusable(node):
                return False
            depth[node] = 1 + max(depth[a] for a in node.args)
            if depth[node] > _MAX_FUSED_DEPTH or len(depth) > _MAX_FUSED_SIZE:
                return False
        return True


def _substituted(expr, mapping: dict):
    """``expr`` with symbols replaced, rebuilt without evaluation: SymPy's ``xreplace`` would
    reorder sums and products (another rounding) and cancel ``t - t`` (which is NaN at inf)."""
    rebuilt: dict = {}
    for node in _postorder(expr):
        if node in mapping:
            rebuilt[node] = mapping[node]
        elif node.args:
            args = [rebuilt[a] for a in node.args]
            rebuilt[node] = node if all(a is b for a, b in zip(args, node.args)) else _rebuilt(
                node, args)
        else:
            rebuilt[node] = node
    return rebuilt[expr]


def _postorder(expr) -> list:
    """Each distinct subexpression once, after its arguments."""
    return toposort([expr], lambda node: node.args[::-1], key=itself)


def _rebuilt(expr, args):
    if expr.is_Add or expr.is_Mul:
        return expr._new_rawargs(*args)  # the printed order (and rounding) is kept
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*args, evaluate=False)
    if isinstance(expr, ExprCondPair):
        return ExprCondPair(*args)
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


def _call_names(expr) -> set:
    roots = expr if isinstance(expr, tuple) else (expr,)
    return {node.func.__name__ for root in roots for node in _postorder(root)
            if isinstance(node, AppliedUndef)}


# ---------------------------------------------------------------- the kernel


class FusedKernel:
    """One elementwise group: an ``ElementwiseKernel`` per signature of argument dtypes.

    Parameters
    ----------
    body : sympy.Basic or tuple of them
        The group over ``parameters``; a tuple is a kernel of several outputs (``out0, out1,
        ...``) of one shape, called for a tuple of arrays.
    parameters : tuple of sympy.Dummy
        One per argument, in call order (``in0, in1, ...`` in the CUDA code).
    fallback : str
        The group as NumPy-style code (an expression over the parameters' printed names; a
        tuple of them for several outputs).
    namespace : dict
        What ``fallback`` calls.
    calls : dict
        ``function name -> (primitive name, params)`` for the primitives in ``body``.
    fractions : bool
        Products as SymPy's code printer writes them (``st.compile``): the factors with
        negative exponents are one denominator (``x/(y*y)``, ``x/sqrt(y)``); otherwise each
        factor in turn (``x*pow(y, -2.0)``), as traced programs print them.
    """

    def __init__(self, body, parameters: tuple, fallback: str, namespace: dict,
                 calls: dict | None = None, fractions: bool = False):
        self.fractions = fractions
        self.body, self.parameters = body, tuple(parameters)
        self.outputs = body if isinstance(body, tuple) else (body,)
        self.fallback, self.namespace = fallback, dict(namespace)
        self.calls = dict(calls or {})
        self._specialized: dict = {}
        self._python = None

    def __getstate__(self) -> dict:  # CUDA kernels and compiled code are rebuilt, not sent
        return {**self.__dict__, "_specialized": {}, "_python": None}

    @property
    def key(self) -> tuple:
        """What the kernel computes: two equal groups share one namespace entry."""
        # the parameters are Dummies named in0, in1, ... in order: their indices do not count
        body = re.sub(r", dummy_index=\d+", "", sympy.srepr(self.body))
        return (body, self.fractions, tuple(p.name for p in self.parameters),
                tuple(sorted((k, repr(v)) for k, v in self.calls.items())))

    def operation(self, kinds: tuple) -> str | None:
        """The CUDA C body for arguments of these dtypes (``float``, ``int``, ``bool`` for
        Python numbers), or None where C does not cover the signature."""
        try:
            return _CudaPrinter(self, kinds).operation()
        except _Unsupported:
            return None

    def __call__(self, *args):
        cupy = sys.modules["cupy"]  # loaded: a CuPy kernel runs only after cupy_module()
        kinds = tuple(_kind(a, cupy) for a in args)
        launch = self._specialized.get(kinds)
        if launch is None:
            launch = self._specialized[kinds] = self._specialize(kinds, cupy)
        if launch is False:
            return self._run_python(args)
        kernel, out_dtypes = launch
        _COUNTS["launched"] += 1
        if not any(isinstance(a, (cupy.ndarray, np.ndarray)) for a in args):  # a loop size
            return kernel(*args, *[cupy.empty((), dtype) for dtype in out_dtypes])
        return kernel(*args)

    def _specialize(self, kinds: tuple, cupy):
        if len(kinds) + len(self.outputs) > _MAX_PARAMETERS:
            return False  # more arrays than a kernel's parameters hold: CuPy's calls
        try:
            printer = _CudaPrinter(self, kinds)
            operation = printer.operation()
        except _Unsupported:
            return False
        inputs = ", ".join(f"{_param_dtype(k)} in{i}" for i, k in enumerate(kinds))
        dtypes = printer.out_dtypes
        output = ", ".join(f"{dtype.name} out{k}" for k, dtype in enumerate(dtypes))
        return _kernel(cupy, inputs, output, operation), dtypes

    def _run_python(self, args):
        if self._python is None:
            from symtape.kernels.compile import load

            names = ", ".join(f"_i{i}" for i in range(len(self.parameters)))
            source = f"def kernel({names}):\n    return {self.fallback}\n"
            self._python = load(source, frozenset(), "cupy", self.namespace)
        return self._python(*args)

    def __repr__(self) -> str:
        return f"<FusedKernel {self.body} over {len(self.parameters)} arguments>"


def _kind(value, cupy):
    if isinstance(value, cupy.ndarray) or isinstance(value, (np.ndarray, np.generic)):
        return np.dtype(value.dtype)
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    return type(value)  # anything else: the Python fallback


def _param_dtype(kind) -> str:
    return {float: "float64", int: "int64", bool: "bool"}[kind] if _weak(kind) else kind.name


_KERNELS: collections.OrderedDict = collections.OrderedDict()  # bounded: at most 256
_KERNELS_LOCK = threading.Lock()
_COUNTS = {"built": 0, "launched": 0}  # debug counters (kernel_counts)


def _kernel(cupy, inputs: str, output: str, operation: str):
    key = (inputs, output, operation)
    with _KERNELS_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is not None:
            _KERNELS.move_to_end(key)
            return kernel
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    kernel = cupy.ElementwiseKernel(inputs, output, operation, f"symtape_fused_{digest}")
    with _KERNELS_LOCK:
        _KERNELS[key] = kernel
        _COUNTS["built"] += 1
        while len(_KERNELS) > 256:
            _KERNELS.popitem(last=False)
    return kernel


def kernel_counts() -> dict[str, int]:
    """Debug counters of this process: ``built``, the ``ElementwiseKernel`` objects made,
    ``launched``, the fused kernels called (each one pass over memory on the GPU).

    Examples
    --------
    >>> sorted(kernel_counts())
    ['built', 'launched']
    """
    return dict(_COUNTS)


# ---------------------------------------------------------------- dtypes, as NumPy has them


class _Unsupported(Exception):
    """A signature the C printer does not cover: the group runs as NumPy-style code."""


def _weak(kind) -> bool:
    """A Python number's kind (``np.dtype(float) == float``: compared by identity)."""
    return kind is float or kind is int or kind is bool


def _sample(kind):
    """A NumPy stand-in for ``np.result_type``: Python numbers stay weak."""
    if _weak(kind):
        return {float: 0.0, int: 0, bool: False}[kind]
    return np.dtype(kind)


def _number_kind(expr):
    if expr in (sympy.true, sympy.false):
        return bool
    return int if expr.is_Integer else float


def _promoted(*kinds) -> np.dtype:
    try:
        return np.result_type(*map(_sample, kinds))
    except TypeError:
        raise _Unsupported from None


def _float(dtype: np.dtype) -> np.dtype:
    if dtype not in _FLOATS:
        raise _Unsupported
    return dtype


def _selected(dtype: np.dtype) -> np.dtype:
    """The dtype of a choice between values (``where(c, 1, 0)`` is int64): no arithmetic, so
    any C type will do."""
    if dtype.str[1:] not in _C_TYPES:
        raise _Unsupported
    return dtype


# ---------------------------------------------------------------- printing CUDA C


class _CudaPrinter(C99CodePrinter):
    """Prints a group as CUDA C: one ``const`` local per value used twice, then ``out0 = ...``.

    Every value has the dtype NumPy gives it (inferred on the way, from the argument kinds);
    operands of another dtype are cast explicitly, so C's implicit conversions never decide."""

    def __init__(self, kernel: FusedKernel, kinds: tuple):
        super().__init__({"type_aliases": {real: sympy.codegen.ast.float64}})
        self.kernel = kernel
        self.kinds = dict(zip(kernel.parameters, kinds))
        self.names = {p: f"in{i}" for i, p in enumerate(kernel.parameters)}
        self.types: dict = {}
        self.lines: list[str] = []
        self.locals: dict = {}
        self.uses = _uses(kernel.outputs)

    # -- dtypes

    def dtype(self, node) -> np.dtype:
        cached = self.types.get(node)
        if cached is None:
            cached = self.types[node] = self._dtype(node)
        return cached

    def _kind(self, node):
        """The argument's kind for NumPy's promotion: weak for numbers."""
        if node.is_Number or node == _NEGATIVE_ZERO or node in (sympy.true, sympy.false):
            return _number_kind(node) if node != _NEGATIVE_ZERO else float
        if node in self.kinds:
            return self.kinds[node]
        return self.dtype(node)

    def _dtype(self, node) -> np.dtype:
        if node in self.kinds:
            kind = self.kinds[node]
            if not (_weak(kind) or isinstance(kind, np.dtype) and kind.str[1:] in _C_TYPES):
                raise _Unsupported  # float16, complex, ...
            return _promoted(kind)
        if node.is_Number or node == _NEGATIVE_ZERO:
            return _promoted(self._kind(node))
        if isinstance(node, AppliedUndef):
            return self._call_dtype(node)
        if type(node) in _RELATIONS or isinstance(node, (sympy.And, sympy.Or, sympy.Not)):
            if not isinstance(node, (sympy.And, sympy.Or, sympy.Not)):
                self.comparison_type(*node.args)
            elif any(self.dtype(a) != _BOOL for a in node.args):
                raise _Unsupported
            return _BOOL
        if isinstance(node, sympy.Piecewise):
            for _, condition in node.args:
                if condition != sympy.true and self.dtype(condition) != _BOOL:
                    raise _Unsupported
            return _selected(_promoted(*(self._kind(e) for e, _ in node.args)))
        return _float(_promoted(*(self._kind(a) for a in node.args)))

    def _call_dtype(self, node) -> np.dtype:
        name, params = self.kernel.calls[node.func.__name__]
        args, signature = node.args, REGISTRY[name].signature
        if signature == "comparison":
            self.comparison_type(*args)
            return _BOOL
        if signature == "logical":
            self.dtype(args[0])
            return _BOOL
        if signature == "cast":
            target = np.dtype(params["dtype"])
            source = self.dtype(args[0])
            if target == _BOOL or (target in _FLOATS and source.kind in "biuf"):
                return target
            raise _Unsupported
        if signature == "select":
            if self.dtype(args[0]) != _BOOL:
                raise _Unsupported
            return _selected(_promoted(self._kind(args[1]), self._kind(args[2])))
        extra = (float,) if signature == "float_literal" else ()
        return _float(_promoted(*(self._kind(a) for a in args), *extra))

    def comparison_type(self, a, b) -> np.dtype:
        common = _promoted(self._kind(a), self._kind(b))
        if common.str[1:] not in _C_TYPES and common != _BOOL:
            raise _Unsupported
        return common

    @property
    def out_dtypes(self) -> list[np.dtype]:
        return [self.dtype(body) for body in self.kernel.outputs]

    # -- code

    def operation(self) -> str:
        results = [self.value(body, dtype)
                   for body, dtype in zip(self.kernel.outputs, self.out_dtypes)]
        return "\n".join(self.lines + [f"out{k} = {_bare(result)};"
                                       for k, result in enumerate(results)])

    def value(self, node, dtype: np.dtype) -> str:
        """``node`` as C code of type ``dtype``."""
        if _is_number(node):
            return self.literal(node, dtype)
        code, own = self.code(node), self.dtype(node)
        if own == dtype:
            return code
        if dtype == _BOOL:
            return f"({code} != {self.literal(sympy.S.Zero, own)})"
        return f"(({_c_type(dtype)}){code})"

    def code(self, node) -> str:
        """``node`` as C code of its own type: a name, a literal, a call or parenthesized."""
        if node in self.names:
            return self.names[node]
        if node in self.locals:
            return self.locals[node]
        code = self._code(node)
        if self.uses[node] > 1:
            return self.local(node, code)
        return code

    def local(self, node, code: str) -> str:
        name = f"t{len(self.lines)}"
        self.lines.append(f"const {_c_type(self.dtype(node))} {name} = {_bare(code)};")
        self.locals[node] = name
        return name

    def let(self, node) -> str:
        """``node`` as a name or literal: its code is used more than once."""
        code = self.code(node)
        if node in self.locals or node in self.names:
            return code
        return self.local(node, code)

    def literal(self, number, dtype: np.dtype) -> str:
        if dtype == _BOOL:
            return "true" if bool(number) else "false"
        try:
            value = -0.0 if number == _NEGATIVE_ZERO else float(number) if number not in (
                sympy.true, sympy.false) else float(bool(number))
        except TypeError:  # complex infinity: not a C number
            raise _Unsupported from None
        if dtype.kind in "iu":
            if value != int(value):
                raise _Unsupported
            return f"(({_c_type(dtype)}){int(value)})"
        if dtype == np.float32:
            with np.errstate(over="ignore"):
                value = float(np.float32(value))  # NumPy's conversion of a weak Python float
        if np.isnan(value) or np.isinf(value):
            return _special(value, dtype)
        text = repr(value) if dtype == np.float64 else str(np.float32(value))
        if "." not in text and "e" not in text:
            text += ".0"
        return text + ("F" if dtype == np.float32 else "")

    def math(self, name: str, args, dtype: np.dtype) -> str:
        """A C99 math function, named for ``dtype`` by SymPy's printer (``sinf`` in float32)."""
        self.type_aliases[real] = (sympy.codegen.ast.float32 if dtype == np.float32
                                   else sympy.codegen.ast.float64)
        function = self.known_functions.get(name, name)
        if not isinstance(function, str):
            function = function[0][1]
        suffix = self._get_func_suffix(real)
        return f"{function}{suffix}({', '.join(_bare(self.value(a, dtype)) for a in args)})"

    def _code(self, node) -> str:
        dtype = self.dtype(node)
        if node.is_Add:
            return self._add(node, dtype)
        if node.is_Mul:
            return self._mul(node, dtype)
        if node.is_Pow:
            return self._pow(node, dtype)
        if isinstance(node, AppliedUndef):
            return self._call(node, dtype)
        if type(node) in _RELATIONS:
            return self.compare(_RELATIONS[type(node)], *node.args)
        if isinstance(node, sympy.Not):
            return f"(!{self.value(node.args[0], _BOOL)})"
        if isinstance(node, (sympy.And, sympy.Or)):
            joint = " && " if isinstance(node, sympy.And) else " || "
            return "(" + joint.join(self.value(a, _BOOL) for a in node.args) + ")"
        if isinstance(node, sympy.Piecewise):
            return self._piecewise(node, dtype)
        if isinstance(node, (sympy.Max, sympy.Min)):
            code = self.let_as(node.args[0], dtype)
            for arg in node.args[1:]:
                code = self.extremum(isinstance(node, sympy.Max), code, arg, dtype)
            return code
        if isinstance(node, sympy.Abs):
            return self.math("Abs", node.args, dtype)
        if isinstance(node, Stored):
            return self.value(node.args[0], dtype)
        if isinstance(node, sympy.sign):
            return self._sign(node.args[0], dtype)
        if isinstance(node, sympy.Heaviside):
            at_zero = node.args[1] if len(node.args) > 1 else sympy.Rational(1, 2)
            return self.heaviside(node.args[0], at_zero, dtype)
        return self.math(type(node).__name__, node.args, dtype)

    def _add(self, node, dtype) -> str:
        first, *rest = node.args
        code = self.value(first, dtype)
        code = _bare(code) if first.is_Mul and first.args[0] is not sympy.S.NegativeOne else code
        for term in rest:
            if term.is_Mul and term.args[0] is sympy.S.NegativeOne:
                negated = term.args[1] if len(term.args) == 2 else term._new_rawargs(
                    *term.args[1:])
                code += " - " + self.value(negated, dtype)
            elif term.is_Number and term.is_negative:
                code += " - " + self.literal(-term, dtype)
            elif term.is_Mul and term.args[0].is_Number and term.args[0].is_negative:
                negated = term._new_rawargs(-term.args[0], *term.args[1:])  # exact: a - b
                code += " - " + self.value(negated, dtype)
            elif term.is_Mul:  # binds tighter than +: no parentheses
                code += " + " + _bare(self.value(term, dtype))
            else:
                code += " + " + self.value(term, dtype)
        return f"({code})"

    def _mul(self, node, dtype) -> str:
        if self.kernel.fractions:
            return self._fraction(node, dtype)
        first, *rest = node.args
        if first is sympy.S.NegativeOne:
            inner = rest[0] if len(rest) == 1 else node._new_rawargs(*rest)
            return f"(-{self.value(inner, dtype)})"
        code = self.value(first, dtype)
        for factor in rest:
            if factor.is_Pow and factor.exp is sympy.S.NegativeOne:
                code += " / " + self.value(factor.base, dtype)
            else:
                code += " * " + self.value(factor, dtype)
        return f"({code})"

    def _fraction(self, node, dtype) -> str:
        """SymPy's code printer's product: the sign, the other factors in order, then one
        denominator of the factors with negative exponents (negation is exact: where the
        printed minus sits does not change the value)."""
        factors = list(node.args)
        negative = factors[0].is_Number and factors[0].is_negative
        if negative:
            factors[0] = -factors[0]
            if factors[0] == 1:
                factors.pop(0)
        numerator = [f for f in factors if not _denominator(f)]
        denominator = [sympy.Pow(f.base, -f.exp, evaluate=False) for f in factors
                       if _denominator(f)]
        code = " * ".join(self.value(f, dtype) for f in numerator) or self.literal(
            sympy.S.One, dtype)
        if len(denominator) == 1:
            code = f"{code} / {self.value(denominator[0], dtype)}"
        elif denominator:
            code = f"{code} / ({' * '.join(self.value(f, dtype) for f in denominator)})"
        return f"(-({code}))" if negative else f"({code})"

    def _pow(self, node, dtype) -> str:
        base, exponent = node.args
        one = self.literal(sympy.S.One, dtype)
        if exponent == 2:  # NumPy squares: x*x, exactly
            name = self.let_as(base, dtype)
            return f"({name} * {name})"
        if exponent == -1:
            return f"({one} / {self.value(base, dtype)})"
        if exponent == sympy.S.Half:
            return self.math("sqrt", [base], dtype)
        if exponent == -sympy.S.Half:
            return f"({one} / {self.math('sqrt', [base], dtype)})"
        if exponent == 1:
            return self.value(base, dtype)
        if exponent == 0:
            return one
        return f"pow{self._suffix(dtype)}({_bare(self.value(base, dtype))}, " \
               f"{_bare(self.value(exponent, dtype))})"

    def let_as(self, node, dtype) -> str:
        """``node`` converted to ``dtype``, as a name or a literal (used more than once)."""
        if _is_number(node):
            return self.literal(node, dtype)
        if self.dtype(node) == dtype:
            return self.let(node)
        code = self.value(node, dtype)
        if code.isidentifier():
            return code
        name = f"t{len(self.lines)}"
        self.lines.append(f"const {_c_type(dtype)} {name} = {_bare(code)};")
        return name

    def _suffix(self, dtype) -> str:
        return "f" if dtype == np.float32 else ""

    def compare(self, operator: str, a, b) -> str:
        common = self.comparison_type(a, b)
        return f"({self.value(a, common)} {operator} {self.value(b, common)})"

    def _piecewise(self, node, dtype) -> str:
        *pieces, (last, condition) = node.args
        if condition != sympy.true:
            pieces.append((last, condition))
            code = _special(float("nan"), dtype)
        else:
            code = self.value(last, dtype)
        for value, condition in reversed(pieces):
            code = f"({self.value(condition, _BOOL)} ? {self.value(value, dtype)} : {code})"
        return code

    def extremum(self, maximum: bool, a: str, b_node, dtype) -> str:
        """NumPy's maximum/minimum: NaN wins, a tie gives the second operand."""
        b = self.let_as(b_node, dtype)
        if not (a.isidentifier() or _LITERAL.fullmatch(a)):
            name = f"t{len(self.lines)}"
            self.lines.append(f"const {_c_type(dtype)} {name} = {_bare(a)};")
            a = name
        nan = "" if _LITERAL.fullmatch(a) else f" || {a} != {a}"  # a literal is never NaN
        return f"(({a} {'>' if maximum else '<'} {b}{nan}) ? {a} : {b})"

    def _sign(self, arg, dtype) -> str:
        x = self.let_as(arg, dtype)
        one, zero = self.literal(sympy.S.One, dtype), self.literal(sympy.S.Zero, dtype)
        minus = self.literal(sympy.S.NegativeOne, dtype)
        # sign(-0.0) is 0.0, sign(nan) is nan
        return f"({x} > {zero} ? {one} : ({x} < {zero} ? {minus} : ({x} == {zero} ? {zero} : {x})))"

    def heaviside(self, arg, at_zero, dtype) -> str:
        x = self.let_as(arg, dtype)
        one, zero = self.literal(sympy.S.One, dtype), self.literal(sympy.S.Zero, dtype)
        h = self.value(at_zero if isinstance(at_zero, sympy.Basic) else sympy.Float(at_zero),
                       dtype)
        return f"({x} < {zero} ? {zero} : ({x} > {zero} ? {one} : ({x} == {zero} ? {h} : {x})))"

    def _call(self, node, dtype) -> str:
        """An elementwise primitive printed as a call: its CUDA C form (``Primitive.cuda``)."""
        name, params = self.kernel.calls[node.func.__name__]
        return REGISTRY[name].cuda(self, dtype, *node.args, **params)

    def named(self, function: str, code: str, dtype) -> str:
        """A C math function of code, named for ``dtype`` (``expf`` in float32)."""
        return f"{function}{self._suffix(dtype)}({code})"

    def constant(self, code: str, dtype) -> str:
        """A ``const`` local holding ``code`` (of ``dtype``): its name."""
        name = f"t{len(self.lines)}"
        self.lines.append(f"const {_c_type(dtype)} {name} = {_bare(code)};")
        return name


_LITERAL = re.compile(r"-?[0-9.]+(e[-+]?[0-9]+)?F?|true|false")


def _is_number(node) -> bool:
    return node.is_Number or node == _NEGATIVE_ZERO or node in (sympy.true, sympy.false)


def _denominator(factor) -> bool:
    return factor.is_Pow and factor.exp.is_Rational and factor.exp.is_negative


def _uses(roots) -> collections.Counter:
    """How many times each distinct subexpression is an argument (or a root): each distinct
    node is walked once, however often it is shared."""
    uses: collections.Counter = collections.Counter(roots)
    stack, seen = list(set(roots)), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for arg in node.args:
            uses[arg] += 1
            stack.append(arg)
    return uses


def _c_type(dtype: np.dtype) -> str:
    return _C_TYPES[np.dtype(dtype).str[1:]]


def _bare(code: str) -> str:
    """Outer parentheses are not needed where a whole expression stands (an argument)."""
    if code.startswith("(") and code.endswith(")"):
        depth = 0
        for i, char in enumerate(code):
            depth += char == "("
            depth -= char == ")"
            if depth == 0 and i < len(code) - 1:
                return code
        return code[1:-1]
    return code


def _special(value: float, dtype: np.dtype) -> str:
    """inf and nan by their bits (CUDA's intrinsics: no header needed)."""
    if dtype == np.float32:
        bits = int(np.array(abs(value) if not np.isnan(value) else np.nan, np.float32)
                   .view(np.uint32))
        code = f"__int_as_float(0x{bits:08x})"
    else:
        bits = int(np.array(abs(value) if not np.isnan(value) else np.nan, np.float64)
                   .view(np.uint64))
        code = f"__longlong_as_double(0x{bits:016x}LL)"
    return f"(-{code})" if value < 0 else code
