"""Matrix forms: values and derivatives as SymPy matrix expressions (``Tensor.matrix_expr``).

``.expr`` is entrywise: one scalar formula per entry, with the data's numbers written in.
``.matrix_expr`` is the same value written as a person writes it on paper: ``2*A.T*(A*x - b)``,
with ``MatrixSymbol``s named after the Variables and the named constants, and SymPy's own
matrix classes (``MatMul``, ``MatAdd``, ``Transpose``, ``HadamardProduct``, ``HadamardPower``,
``ElementwiseApplyFunction``, ``DiagMatrix``, ``OneMatrix``, ``Identity``, ``Trace``).

Mapping: a value of shape ``()`` is a SymPy scalar (a 1x1 product such as ``x.T*x`` is wrapped
in :class:`Entry`), shape ``(n,)`` an n x 1 matrix, ``(m, n)`` an m x n matrix. Higher ranks
have no matrix form.

Derivatives come from the same reverse sweep (:mod:`symtape.core.accumulate`) and the same rules
(:mod:`symtape.core.primitives`) as every other closed form, run in :class:`MatrixAlgebra`, whose
values are matrix expressions. A Jacobian (and so a Hessian) is one sweep whose cotangents are
*stacks*: the cotangent of a vector-like node is a ``size x n`` matrix, one column per entry of
the target, seeded with ``Identity(n)``.

Ops with no matrix form (indexing, slicing, reshapes other than vector <-> column/row, ``where``,
comparisons, ``reduce_max``, rank-3 values, ...) raise :class:`MatrixFormError`, naming the op
and pointing to ``.expr``: a matrix form is never an approximation.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

import numpy as np
import sympy
from sympy import (DiagMatrix, HadamardPower, HadamardProduct, Identity, MatAdd, MatMul,
                   MatrixExpr, MatrixSymbol, OneMatrix, Trace, Transpose, ZeroMatrix)
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from symtape.core import accumulate
from symtape.arrays import objarrays
from symtape.core.algebra import SymbolicAlgebra
from symtape.arrays.backends import to_host
from symtape.core.symbolic import recursion_headroom
from symtape.core.primitives import REGISTRY

__all__ = ["MatrixFormError", "Entry", "Elementwise", "Diag", "MatrixAlgebra", "matrix_expr_of",
           "DerivedForms"]


class MatrixFormError(ValueError):
    """A value or derivative that has no matrix form (its ``.expr`` still exists)."""


def _no_form(what: str) -> MatrixFormError:
    return MatrixFormError(f"matrix_expr: {what} has no matrix form; use .expr for the "
                           "entrywise closed form")


# ---------------------------------------------------------------- SymPy classes, as printed


class Entry(Trace):
    r"""The one entry of a 1x1 matrix expression (``x.T*x``), as a scalar.

    It is SymPy's ``Trace`` (of a 1x1 matrix, its entry), printed without ``tr``.

    Examples
    --------
    >>> x = sympy.MatrixSymbol("x", 3, 1)
    >>> e = Entry(x.T * x)
    >>> print(e)
    (x.T*x)
    >>> print(sympy.latex(2 * e**2))
    2 \left(x^{T} x\right)^{2}
    """

    def doit(self, **hints):
        # Trace.doit rebuilds a plain Trace (printed tr(...)): keep the entry an Entry
        arg = self.arg.doit(**hints) if hints.get("deep", True) else self.arg
        return arg[0, 0] if isinstance(arg, sympy.MatrixBase) else Entry(arg)

    def _latex(self, printer, exp=None):
        text = rf"\left({printer._print(self.arg)}\right)"
        return f"{text}^{{{exp}}}" if exp is not None else text

    def _sympystr(self, printer):
        return f"({printer._print(self.arg)})"


class Diag(DiagMatrix):
    """``DiagMatrix`` of a vector, printed ``diag(v)``.

    Examples
    --------
    >>> print(Diag(sympy.MatrixSymbol("v", 3, 1)))
    diag(v)
    """

    def doit(self, **hints):
        # DiagMatrix.doit does not evaluate its vector: do, so explicit data give a matrix
        vector = self.args[0].doit(**hints) if hints.get("deep", True) else self.args[0]
        out = DiagMatrix(vector).doit(**hints)
        return Diag(out.args[0]) if type(out) is DiagMatrix else out

    def _latex(self, printer, exp=None):
        return rf"\operatorname{{diag}}\left({printer._print(self.args[0])}\right)"

    def _sympystr(self, printer):
        return f"diag({printer._print(self.args[0])})"


class Ones(OneMatrix):
    r"""``OneMatrix``, printed as the vector of ones: ``1`` (``1.T`` as a row).

    Examples
    --------
    >>> print(Ones(1, 3) * sympy.MatrixSymbol("v", 3, 1))
    1.T*v
    >>> print(sympy.latex(Ones(3, 1)))
    \mathbf{1}
    """

    def _row(self) -> bool:
        return self.shape[0] == 1 and self.shape[1] != 1

    def _latex(self, printer, exp=None):
        return r"\mathbf{1}^{T}" if self._row() else r"\mathbf{1}"

    def _sympystr(self, printer):
        return "1.T" if self._row() else "1"


_D = sympy.Symbol("d", real=True)  # the variable of every entrywise function
_LATEX_NAMES = {"sigmoid": r"\sigma", "exp": r"\exp", "log": r"\log", "sin": r"\sin",
                "cos": r"\cos", "tan": r"\tan", "sinh": r"\sinh", "cosh": r"\cosh",
                "tanh": r"\tanh", "sqrt": r"\sqrt"}


_FUNCTION_NAMES: dict = {}  # Lambda -> primitive name, for printing


@functools.lru_cache(maxsize=None)
def _entrywise_function(name: str, **params) -> sympy.Lambda:
    """The primitive's own scalar form as a ``Lambda``: the registry stays the one definition."""
    function = sympy.Lambda(_D, REGISTRY[name].symbolic(_D, **params))
    _FUNCTION_NAMES.setdefault(function, name)
    return function




class Elementwise(ElementwiseApplyFunction):
    """A scalar function applied to every entry, printed ``tanh(W*x)``.

    Examples
    --------
    >>> x = sympy.MatrixSymbol("x", 3, 1)
    >>> print(Elementwise(_entrywise_function("sigmoid"), x))
    sigmoid(x)
    >>> Elementwise(_entrywise_function("exp"), x).as_explicit()[0]
    exp(x[0, 0])
    """

    @property
    def _name(self) -> str:
        return _FUNCTION_NAMES.get(self.function, "f")

    def _latex(self, printer, exp=None):
        name = _LATEX_NAMES.get(self._name, rf"\operatorname{{{self._name}}}")
        return rf"{name}\left({printer._print(self.expr)}\right)"

    def _sympystr(self, printer):
        return f"{self._name}({printer._print(self.expr)})"


def _apply_function(name: str, expr, params: dict):
    if not isinstance(expr, MatrixExpr):
        return REGISTRY[name].symbolic(expr, **params)
    return Elementwise(_entrywise_function(name, **params), expr)


# ---------------------------------------------------------------- building, simplified
# Each builder returns the form a person would write: numbers in front, no 1s or identities,
# transposes pushed inward, like terms collected, common factors pulled out of sums.


def _is_matrix(e) -> bool:
    return isinstance(e, MatrixExpr)


def _coeff_and_factors(e) -> tuple[Any, list]:
    """``c, [M1, M2, ...]`` with ``e == c * M1 * M2 * ...``."""
    if isinstance(e, MatMul):
        coeff, factors = sympy.S.One, []
        for arg in e.args:
            if _is_matrix(arg):
                factors.append(arg)
            else:
                coeff = coeff * arg
        return coeff, factors
    return sympy.S.One, [e]


def matmul(*items):
    """A product of scalars and matrices, simplified (the matrices must be conformable)."""
    coeff, factors = sympy.S.One, []
    for item in items:
        if not _is_matrix(item):
            coeff = coeff * item
            continue
        c, fs = _coeff_and_factors(item)
        coeff = coeff * c
        factors.extend(fs)
    rows, cols = factors[0].shape[0], factors[-1].shape[1]
    if coeff == 0 or any(isinstance(f, ZeroMatrix) for f in factors):
        return ZeroMatrix(rows, cols)
    kept: list = []
    for f in factors:
        kept = _append_factor(kept, f)
    coeff = coeff * sympy.Mul(*[k for k in kept if not _is_matrix(k)])  # 1ᵀ1 = n
    kept = [k for k in kept if _is_matrix(k)]
    if not kept:
        kept = [Identity(rows)] if rows == cols else [Ones(rows, cols)]
    if coeff == 1:
        return kept[0] if len(kept) == 1 else MatMul(*kept)
    return MatMul(*sympy.Mul.make_args(coeff), *kept)  # 2*lam*x, not (2*lam)*x


def _append_factor(kept: list, f) -> list:
    """Multiply ``f`` onto the right of ``kept``, merging what a person would merge."""
    if isinstance(f, Identity) or (isinstance(f, OneMatrix) and f.shape == (1, 1)):
        return kept
    if kept:
        last = kept[-1]
        if isinstance(last, DiagMatrix) and isinstance(f, DiagMatrix):
            # diag(1 - s) diag(s) G: s applied first, so written first: s∘(1 - s)
            return kept[:-1] + [Diag(hadamard(_column(f.args[0]), _column(last.args[0])))]
        if isinstance(last, OneMatrix) and isinstance(f, OneMatrix):
            inner = last.shape[1]
            ones = Ones(last.shape[0], f.shape[1])  # 1 1ᵀ: a matrix of ones, times the length
            return kept[:-1] + ([inner] if inner != 1 else []) + ([ones] if ones.shape != (1, 1)
                                                                 else [])
    if isinstance(f, MatMul):  # a merged number: keep the product flat
        for g in f.args:
            kept = _append_factor(kept, g) if _is_matrix(g) else kept + [g]
        return kept
    return kept + [f]


def _column(v):
    """A vector (or a scalar) as a column."""
    return v if not _is_matrix(v) or v.shape[1] == 1 else transpose(v)


def transpose(e):
    """``e.T`` with the transpose pushed inward (onto the symbols)."""
    if not _is_matrix(e):
        return e
    if isinstance(e, Transpose):
        return e.arg
    if isinstance(e, MatrixSymbol):
        return Transpose(e)
    if isinstance(e, (OneMatrix, ZeroMatrix)):
        return type(e)(e.shape[1], e.shape[0])
    if isinstance(e, (Identity, DiagMatrix)):
        return e
    if isinstance(e, MatMul):
        coeff, factors = _coeff_and_factors(e)
        return matmul(coeff, *[transpose(f) for f in reversed(factors)])
    if isinstance(e, MatAdd):
        return add(*[transpose(t) for t in e.args])
    if isinstance(e, HadamardProduct):
        return hadamard(*[transpose(f) for f in e.args])
    if isinstance(e, HadamardPower):
        return HadamardPower(transpose(e.base), e.exp)
    if isinstance(e, ElementwiseApplyFunction):
        return Elementwise(e.function, transpose(e.expr))
    return Transpose(e)


def add(*terms):
    """A sum of matrices (or of scalars), like terms collected, common factors pulled out."""
    if not any(_is_matrix(t) for t in terms):
        return sympy.Add(*terms)
    shape = next(t.shape for t in terms if _is_matrix(t))
    collected: dict = {}
    for term in _flat_terms(terms):
        coeff, factors = _coeff_and_factors(term)
        key = tuple(factors)
        collected[key] = collected.get(key, sympy.S.Zero) + coeff
    parts = [(c, list(k)) for k, c in collected.items() if c != 0]
    if not parts:
        return ZeroMatrix(*shape)
    if len(parts) == 1:
        return matmul(parts[0][0], *parts[0][1])
    return _factor_common(parts)


def _flat_terms(terms):
    for t in terms:
        if isinstance(t, MatAdd):
            yield from _flat_terms(t.args)
        elif not isinstance(t, ZeroMatrix):
            yield t


def _common_coeff(coeffs: list):
    """The symbolic factors every coefficient has (``1/(x.T*x)``), numbers aside."""
    first = [f for f in sympy.Mul.make_args(coeffs[0]) if not f.is_number]
    return sympy.Mul(*[f for f in first if all(f in sympy.Mul.make_args(c) for c in coeffs[1:])])


def _factor_common(parts: list):
    """Common factors out of a sum of ``(coefficient, factors)`` terms.

    ``A*x + B*x`` -> ``(A + B)*x``, ``x*A + x*B`` -> ``x*(A + B)``, ``c*A + c*B`` -> ``c*(A + B)``.
    """
    common = _common_coeff([c for c, _ in parts])
    if common != 1:
        return matmul(common, _factor_common([(c / common, fs) for c, fs in parts]))
    for side in (-1, 0):
        first = parts[0][1][side]
        if all(len(fs) > 1 and fs[side] == first for _, fs in parts):
            rest = [matmul(c, *(fs[:-1] if side == -1 else fs[1:])) for c, fs in parts]
            inner = add(*rest)
            return matmul(inner, first) if side == -1 else matmul(first, inner)
    return MatAdd(*[matmul(c, *fs) for c, fs in parts])


def hadamard(*factors):
    """The entrywise product of same-shaped matrices, simplified."""
    coeff, kept = sympy.S.One, []
    shape = factors[0].shape
    for f in factors:
        c, fs = _coeff_and_factors(f)
        f = fs[0] if len(fs) == 1 else MatMul(*fs)
        coeff = coeff * c
        if isinstance(f, ZeroMatrix):
            return ZeroMatrix(*shape)
        if isinstance(f, OneMatrix):
            continue
        kept.extend(f.args if isinstance(f, HadamardProduct) else [f])
    kept = _hadamard_merge(kept)
    if not kept:
        return matmul(coeff, Ones(*shape))
    return matmul(coeff, _hadamard_of(kept, shape))


def _hadamard_merge(kept: list) -> list:
    """Identical factors as powers (``h∘h`` -> ``h^∘2``); broadcast vectors as diagonals."""
    powers: dict = {}
    for f in kept:
        base, exp = (f.base, f.exp) if isinstance(f, HadamardPower) else (f, sympy.S.One)
        powers[base] = powers.get(base, sympy.S.Zero) + exp
    out = [b if e == 1 else HadamardPower(b, e) for b, e in powers.items() if e != 0]
    return out


def _pull_broadcasts(kept: list) -> tuple[list, list, list]:
    """Split ``v*1.T`` (a column broadcast over columns) and ``1*r`` factors out of a product:
    ``M ∘ (v 1ᵀ) = diag(v) M`` and ``M ∘ (1 r) = M diag(r)``."""
    left, right, rest = [], [], []
    for f in kept:
        if isinstance(f, MatMul) and len(f.args) == 2 and isinstance(f.args[1], OneMatrix) \
                and f.args[0].shape[1] == 1:
            left.append(f.args[0])
        elif isinstance(f, MatMul) and len(f.args) == 2 and isinstance(f.args[0], OneMatrix) \
                and f.args[1].shape[0] == 1:
            right.append(transpose(f.args[1]))
        else:
            rest.append(f)
    return left, right, rest


def _hadamard_of(kept: list, shape):
    left, right, rest = _pull_broadcasts(kept)
    if not (left or right):
        return HadamardProduct(*rest) if len(rest) > 1 else rest[0]
    core = _hadamard_of(rest, shape) if rest else Ones(*shape)
    lefts = [Diag(hadamard(*left))] if left else []
    rights = [Diag(hadamard(*right))] if right else []
    if not rest and left and not right:  # diag(v) 1 = v 1ᵀ: the broadcast itself
        return matmul(hadamard(*left), Ones(1, shape[1]))
    return matmul(*lefts, core, *rights)


# ---------------------------------------------------------------- values in the algebra


def _matrix_shape(shape: tuple[int, ...], what: str = "a value") -> tuple[int, int]:
    if len(shape) > 2:
        raise _no_form(f"{what} of shape {shape} (rank {len(shape)})")
    return (tuple(shape) + (1, 1))[:2] if len(shape) < 2 else tuple(shape)


def _vector_like(shape) -> bool:
    return len(shape) <= 2 and sum(n != 1 for n in shape) <= 1


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _to_scalar(e):
    """A 1x1 matrix expression as a scalar: ``x.T*x`` -> ``Entry(x.T*x)``, ``2*I_1`` -> 2."""
    if not _is_matrix(e):
        return e
    if isinstance(e, ZeroMatrix):
        return sympy.S.Zero
    coeff, factors = _coeff_and_factors(e)
    factors = [f for f in factors if f.shape != (1, 1) or not isinstance(f, (Identity, OneMatrix))]
    if not factors:
        return coeff
    if len(factors) == 1 and isinstance(factors[0], Entry):
        return coeff * factors[0]
    return coeff * Entry(matmul(*factors))


class _Value:
    """A value in the matrix algebra: its matrix expression and the node's array shape.

    ``batch`` is None for a plain value; for a stack of ``batch`` cotangents (a Jacobian's
    rows) ``expr`` is ``size x batch``, column ``j`` the j-th cotangent as a column.
    """

    __slots__ = ("expr", "shape", "batch")

    def __init__(self, expr, shape: tuple[int, ...], batch: int | None = None):
        if batch is None and _size(shape) == 1:
            expr = _to_scalar(expr)
        self.expr = expr
        self.shape = tuple(shape)
        self.batch = batch

    def matrix(self):
        """As a matrix of its matrix shape (a scalar becomes 1x1)."""
        if self.batch is not None or _is_matrix(self.expr):
            return self.expr
        if isinstance(self.expr, Entry):
            return self.expr.arg
        return matmul(self.expr, Ones(1, 1)) if self.expr != 0 else ZeroMatrix(1, 1)

    def column(self):
        """A vector-like plain value as a column (its entries in order)."""
        m = self.matrix()
        return m if m.shape[1] == 1 else transpose(m)

    def __add__(self, other):
        return _OPS["add"](self, _wrap(other))

    def __radd__(self, other):
        return _OPS["add"](_wrap(other), self)

    def __sub__(self, other):
        return _OPS["sub"](self, _wrap(other))

    def __rsub__(self, other):
        return _OPS["sub"](_wrap(other), self)

    def __mul__(self, other):
        return _OPS["mul"](self, _wrap(other))

    def __rmul__(self, other):
        return _OPS["mul"](_wrap(other), self)

    def __truediv__(self, other):
        return _OPS["div"](self, _wrap(other))

    def __rtruediv__(self, other):
        return _OPS["div"](_wrap(other), self)

    def __neg__(self):
        return _OPS["neg"](self)


def _wrap(x) -> _Value:
    return x if isinstance(x, _Value) else _Value(objarrays.exact_number(x), ())


def _broadcast_shape(a: _Value, b: _Value) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(a.shape, b.shape))


def _spread(v: _Value, shape: tuple[int, ...]):
    """``v`` broadcast to ``shape``: a scalar stays a scalar; vectors become ``v*1ᵀ``/``1*v``."""
    if _size(v.shape) == 1:
        return v.expr
    if v.shape == shape:
        return v.expr
    rows, cols = _matrix_shape(shape)
    m = v.matrix()
    if len(v.shape) == 1 or v.shape[0] == 1:  # a row: (n,) and (1, n) broadcast down
        row = m if m.shape[0] == 1 else transpose(m)
        return row if rows == 1 else MatMul(Ones(rows, 1), row)
    return m if cols == 1 else MatMul(m, Ones(1, cols))  # (m, 1) across


def _elementwise(name: str, combine: Callable, a: _Value, b: _Value) -> _Value:
    if a.batch is not None or b.batch is not None:
        return _batched_elementwise(name, a, b)
    shape = _broadcast_shape(a, b)
    _matrix_shape(shape)
    if _size(a.shape) == 1 and _size(b.shape) == 1:
        return _Value(REGISTRY[name].symbolic(a.expr, b.expr), shape)
    return _Value(combine(_spread(a, shape), _spread(b, shape), _matrix_shape(shape)), shape)


def _add2(x, y, shape):
    return add(_full(x, shape), _full(y, shape))


def _full(x, shape):
    return x if _is_matrix(x) else matmul(x, Ones(*shape))


def _mul2(x, y, shape):
    if not _is_matrix(x) or not _is_matrix(y):
        return matmul(x, y)
    return hadamard(x, y)


def _reciprocal(y):
    return 1 / y if not _is_matrix(y) else _power(y, -1)


def _power(m, exponent):
    if not _is_matrix(m):
        return m ** exponent
    if isinstance(m, HadamardPower):
        return _power(m.base, m.exp * exponent)
    coeff, factors = _coeff_and_factors(m)
    if coeff != 1:
        return matmul(coeff ** exponent, _power(matmul(*factors), exponent))
    return m if exponent == 1 else HadamardPower(m, exponent)


def _div2(x, y, shape):
    return _mul2(x, _reciprocal(y), shape)


def _batched_elementwise(name: str, a: _Value, b: _Value) -> _Value:
    """A stack of cotangents times (or over, plus) a plain value: what rules do to ``g``."""
    if name == "add" or name == "sub":
        if a.batch is None or b.batch is None:  # a zero from a rule meets a stack
            zero = a if a.batch is None else b
            if zero.expr != 0 and not isinstance(zero.expr, ZeroMatrix):
                raise _no_form(f"{name} of a Jacobian's rows and a value")
            stack = b if zero is a else a
            return stack if name == "add" or zero is b else _OPS["neg"](stack)
        shape = _broadcast_shape(a, b)  # a uniform cotangent may meet a full one
        a, b = _broadcast_to(a, shape), _broadcast_to(b, shape)
        other = b.expr if name == "add" else matmul(-1, b.expr)
        return _Value(add(a.expr, other), shape, a.batch)
    if name not in ("mul", "div") or (name == "div" and b.batch is not None):
        raise _no_form(f"{name} of a Jacobian's rows")
    stack, plain = (a, b) if a.batch is not None else (b, a)
    factor = plain.expr if name == "mul" else _reciprocal(plain.expr)
    shape = _broadcast_shape(a, b)
    if _size(plain.shape) == 1:
        return _Value(matmul(factor, stack.expr), shape, stack.batch)
    if _size(stack.shape) == 1:  # one cotangent entry spread over a vector
        return _Value(matmul(_column(factor), stack.expr), shape, stack.batch)
    if _size(shape) != _size(stack.shape) or _size(plain.shape) != _size(shape):
        raise _no_form(f"{name} broadcasting {plain.shape} against a Jacobian's rows of shape "
                       f"{stack.shape}")
    return _Value(matmul(Diag(_column(factor)), stack.expr), shape, stack.batch)


def _unary_function(name: str):
    def op(x: _Value, **params) -> _Value:
        if x.batch is not None:
            raise _no_form(f"{name} of a Jacobian's rows")
        return _Value(_apply_function(name, x.expr, params), x.shape)

    return op


def _neg(x: _Value) -> _Value:
    return _Value(matmul(-1, x.expr) if _is_matrix(x.expr) else -x.expr, x.shape, x.batch)


def _powc(x: _Value, exponent) -> _Value:
    if x.batch is not None:
        raise _no_form("a power of a Jacobian's rows")
    return _Value(_power(x.expr, objarrays.exact_number(exponent)), x.shape)


def _pow(a: _Value, b: _Value) -> _Value:
    if a.batch is not None or b.batch is not None or _size(b.shape) != 1:
        raise _no_form("pow with an array exponent")
    return _Value(_power(a.expr, b.expr), np.broadcast_shapes(a.shape, b.shape))


def _cast(x: _Value, dtype) -> _Value:
    if np.dtype(dtype).kind != "f":
        raise _no_form(f"cast to {np.dtype(dtype)}")
    return x


def _transpose(x: _Value, perm) -> _Value:
    shape = tuple(x.shape[p] for p in perm)
    if x.batch is not None or len(perm) < 2 or list(perm) == sorted(perm):
        return _Value(x.expr, shape, x.batch)  # a vector's entries keep their order
    _matrix_shape(x.shape, "transpose")
    return _Value(transpose(x.expr), shape)


def _reshape(x: _Value, shape) -> _Value:
    shape = tuple(shape)
    if shape == x.shape or _size(shape) == 1:
        return _Value(x.expr, shape, x.batch)
    vector = sum(n != 1 for n in shape) <= 1 and sum(n != 1 for n in x.shape) <= 1
    if not vector or len(shape) > 2:
        raise _no_form(f"reshape from {x.shape} to {shape}")
    if x.batch is not None:
        return _Value(x.expr, shape, x.batch)  # a stack holds columns of entries, in order
    rows, _ = _matrix_shape(shape)
    column = x.column()
    return _Value(column if rows != 1 else transpose(column), shape)


def _broadcast_to(x: _Value, shape) -> _Value:
    shape = tuple(shape)
    if shape == x.shape:
        return x
    _matrix_shape(shape, "broadcast_to")
    if x.batch is None:
        return _Value(_full(_spread(x, shape), _matrix_shape(shape)), shape)
    if _size(x.shape) != 1 and _size(x.shape) != _size(shape):
        raise _no_form(f"broadcast_to {shape} of a Jacobian's rows of shape {x.shape}")
    if _size(x.shape) == 1:
        return _Value(matmul(Ones(_size(shape), 1), x.expr), shape, x.batch)
    return _Value(x.expr, shape, x.batch)


def _keep_sum(u):
    """``u.T`` for a product's first factor; a sum stays whole: ``(A*x - b).T*(A*x - b)``."""
    return Transpose(u) if isinstance(u, MatAdd) else transpose(u)


def _sum_entries(m):
    """The sum of all entries, as a person writes it: ``u.T*u``, ``y.T*X*w``, ``tr(X.T*A*X)``."""
    coeff, factors = _coeff_and_factors(m)
    if coeff != 1:
        return coeff * _sum_entries(matmul(*factors))
    rows, cols = m.shape
    vector = rows == 1 or cols == 1
    pair = None
    if isinstance(m, HadamardPower) and m.exp == 2:
        pair = (m.base, m.base)
    elif isinstance(m, HadamardProduct) and len(m.args) == 2:
        pair = m.args
    if isinstance(m, OneMatrix):
        return sympy.Integer(rows * cols)
    if pair is not None:
        u, w = (_column(p) for p in pair) if vector else pair
        product = matmul(_keep_sum(u), w)
        return Entry(product) if vector else Trace(product)
    return _to_scalar(matmul(Ones(1, rows), m, Ones(cols, 1)))


def _reduce_sum(x: _Value, axis, keepdims) -> _Value:
    axes = tuple(range(len(x.shape))) if axis is None else tuple(axis)
    shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape)) if keepdims else \
        tuple(n for i, n in enumerate(x.shape) if i not in axes)
    if all(x.shape[i] == 1 for i in axes):
        return _Value(x.expr, shape, x.batch)
    if x.batch is not None:
        if _size(shape) != 1:
            raise _no_form(f"reduce_sum over axes {axes} of a Jacobian's rows of shape {x.shape}")
        return _Value(matmul(Ones(1, _size(x.shape)), x.expr), shape, x.batch)
    _matrix_shape(x.shape, "reduce_sum")
    if _size(shape) == 1:
        return _Value(_sum_entries(x.matrix()), shape)
    m = x.matrix()
    if axes == (0,):  # down the columns: 1ᵀ M, a row
        summed = matmul(Ones(1, m.shape[0]), m)
        return _Value(summed if len(shape) == 2 else transpose(summed), shape)
    return _Value(matmul(m, Ones(m.shape[1], 1)), shape)


def _matmul(a: _Value, b: _Value) -> _Value:
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise _no_form(f"a batched matmul of shapes {a.shape} and {b.shape}")
    shape = (a.shape[0], b.shape[1])
    if a.batch is None and b.batch is None:
        return _Value(matmul(a.matrix(), b.matrix()), shape)
    if b.batch is not None and a.batch is None:
        if b.shape[1] == 1:
            return _Value(matmul(a.matrix(), b.expr), shape, b.batch)
        if a.shape == (1, 1):
            return _Value(matmul(a.expr, b.expr), shape, b.batch)
    if a.batch is not None and b.batch is None:
        if a.shape[0] == 1:
            return _Value(matmul(transpose(b.matrix()), a.expr), shape, a.batch)
        if b.shape == (1, 1):
            return _Value(matmul(b.expr, a.expr), shape, a.batch)
    raise _no_form(f"a Jacobian through matmul of shapes {a.shape} and {b.shape} (a matrix of "
                   "rows per entry)")


_OPS: dict[str, Callable[..., _Value]] = {
    "add": lambda a, b: _elementwise("add", _add2, a, b),
    "sub": lambda a, b: _elementwise("sub", lambda x, y, s: _add2(x, _neg_expr(y), s), a, b),
    "mul": lambda a, b: _elementwise("mul", _mul2, a, b),
    "div": lambda a, b: _elementwise("div", _div2, a, b),
    "neg": _neg, "powc": _powc, "pow": _pow, "cast": _cast, "transpose": _transpose,
    "reshape": _reshape, "broadcast_to": _broadcast_to, "reduce_sum": _reduce_sum,
    "matmul": _matmul,
}
for _name in ("exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
              "cosh", "tanh", "erf", "sigmoid", "softplus", "relu", "abs", "sign", "heaviside",
              "log_real"):
    _OPS[_name] = _unary_function(_name)

_DESCRIBED = {"getitem": "indexing or slicing (getitem)", "scatter": "the gradient of indexing "
              "(scatter)", "scatter_add": "the gradient of indexing (scatter_add)",
              "concat": "concat (or stack)", "where": "where", "reduce_max": "reduce_max",
              "reduce_min": "reduce_min"}


def _neg_expr(y):
    return matmul(-1, y) if _is_matrix(y) else -y


def _refused(name: str):
    def op(*xs, **params):
        if all(isinstance(x, _Value) and x.batch is None and _size(x.shape) == 1 for x in xs) \
                and REGISTRY[name].elementwise:  # on scalars every elementwise op has its form
            return _Value(REGISTRY[name].symbolic(*[x.expr for x in xs], **params),
                          np.broadcast_shapes(*[x.shape for x in xs]))
        default = f"the comparison {name}" if REGISTRY[name].vjp is None else f"the op {name}"
        raise _no_form(_DESCRIBED.get(name, default))

    return op


# ---------------------------------------------------------------- the algebra


_auto_names = itertools.count(1)


class MatrixAlgebra(SymbolicAlgebra):
    """The derivative rules' world where values are matrix expressions (see the module doc).

    One instance serves one matrix form: it memoizes the forward forms of the nodes it meets.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable([1.0, 2.0], name="x")
    >>> MatrixAlgebra().value(st.exp(x)).expr
    exp(x)
    """

    lazy_forward = True

    def __init__(self):  # noqa: D107 (not SymbolicAlgebra's forms: ours, by name)
        self._values: dict[int, _Value] = {}
        self._names: dict[str, int] = {}
        self._arrays: list = []  # (MatrixSymbol, value) of the named constants met
        for name in REGISTRY:
            setattr(self, name, _OPS.get(name) or _refused(name))

    # -- what rules and the sweep ask of an algebra
    def const(self, value, exact=None):
        return _Value(exact if exact is not None else objarrays.exact_number(value), ())

    def shape(self, x) -> tuple[int, ...]:
        return x.shape if isinstance(x, _Value) else ()

    def dtype(self, x):
        return np.dtype("float64")

    def zeros_like(self, x):
        return self.zeros(self.shape(x), None, getattr(x, "batch", None))

    def zeros(self, shape, dtype, batch: int | None = None):
        if batch is not None:
            return _Value(ZeroMatrix(_size(shape), batch), shape, batch)
        return _Value(ZeroMatrix(*_matrix_shape(shape)) if _size(shape) != 1 else 0, shape)

    def add_n(self, parts):
        return functools.reduce(lambda a, b: a + b, parts)

    def scatter(self, g, key, shape):
        raise _no_form(_DESCRIBED["getitem"])

    def forward(self, node, argnum: int | None = None):
        prim = node.primitive
        reads = prim.reads[argnum] if argnum is not None and prim.reads else None
        value = self._shape_only if prim.linear else self.value
        if reads is None:
            return value(node), [value(x) for x in node.inputs]
        return (value(node) if -1 in reads else None,
                [value(x) if i in reads else None for i, x in enumerate(node.inputs)])

    @staticmethod
    def _shape_only(node) -> _Value:
        return _Value(None, node.array.shape, None) if _size(node.array.shape) != 1 else \
            _Value(0, node.array.shape)

    def seed(self, shape, dtype, index: int | None = None, tensor=None):
        if tensor is not None:
            return self.value(tensor)
        if index is not None:
            raise _no_form("a one-entry seed")
        return _Value(Ones(*_matrix_shape(shape)) if _size(shape) != 1 else 1, shape)

    # -- forward forms
    def value(self, tensor) -> _Value:
        """The matrix form of a Tensor's value, from its recorded lineage (memoized)."""
        done = self._values
        if id(tensor) in done:
            return done[id(tensor)]
        self.meet([tensor])
        return done[id(tensor)]

    def meet(self, tensors, strict: bool = True) -> None:
        """Convert the lineages of ``tensors``; not ``strict``: only the leaves that have a
        matrix form (a sweep meets its leaves before it asks for any)."""
        done = self._values
        order = _postorder(tensors, done)
        leaves = [node for node in order if node.primitive is None]
        # named leaves first: an unnamed constant a rule derived from one (A.T) is found by value
        for node in sorted(leaves, key=lambda n: n._name is None and n.source is None):
            try:
                done[id(node)] = self._leaf(node)
            except MatrixFormError:
                if strict:
                    raise
        if not strict:
            return
        for node in order:
            if node.primitive is not None:
                done[id(node)] = getattr(self, node.primitive.name)(
                    *[done[id(x)] for x in node.inputs], **node.params)

    def _leaf(self, node) -> _Value:
        shape = node.array.shape
        if node._thunk is not None:
            return _derived_value(node, self)
        source = node.source
        if source is not None:  # a Variable's read, or a watched constant
            return self._symbol(source._name, id(source), shape)
        if node._name is not None:
            named = self._symbol(node._name, id(node), shape)
            if _is_matrix(named.expr):
                self._arrays.append((named.expr, np.asarray(to_host(node.array))))
            return named
        if node._sym is not None and shape == ():  # an exact number from a rule
            return _Value(node._sym, shape)
        return self._constant(node)

    def _named_value(self, value: np.ndarray) -> _Value | None:
        """A named matrix constant, or its transpose, equal to ``value``: constants that a
        gradient recorded on Tensors computed from named ones (``A.T`` in ``A.T @ g``)."""
        for symbol, array in self._arrays:
            if array.shape == value.shape and np.array_equal(array, value):
                return _Value(symbol, value.shape)
            if _vector_like(array.shape) and _vector_like(value.shape) and \
                    array.size == value.size and np.array_equal(array.ravel(), value.ravel()):
                column = _column(symbol)  # a vector reshaped (matmul's x -> (n, 1))
                rows, _ = _matrix_shape(value.shape)
                return _Value(column if rows == value.size else transpose(column), value.shape)
            if len(value.shape) == 2 and array.shape == value.shape[::-1] and \
                    np.array_equal(array.T, value):
                return _Value(transpose(symbol), value.shape)
        return None

    def _symbol(self, name: str, owner: int, shape, value=None) -> _Value:
        if self._names.setdefault(name, owner) != owner:
            raise ValueError(f"two different sources are both named {name!r}, so their symbols "
                             "would be the same in .matrix_expr; give each its own name")
        if _size(shape) == 1 and len(shape) == 0:
            return _Value(sympy.Symbol(name, real=True), shape)
        return _Value(MatrixSymbol(name, *_matrix_shape(shape)), shape)

    def _constant(self, node) -> _Value:
        """An unnamed constant: a number, ``c*1``, ``I``, or a symbol of an automatic name."""
        value = np.asarray(to_host(node.array))
        shape = value.shape
        if value.size == 1:
            return _Value(objarrays.exact_number(value.reshape(-1)[0]), shape)
        _matrix_shape(shape, "a constant")
        first = value.reshape(-1)[0]
        if value.size and np.all(value == first):
            filled = Ones(*_matrix_shape(shape))
            return _Value(matmul(objarrays.exact_number(first), filled), shape)
        if len(shape) == 2 and shape[0] == shape[1] and np.array_equal(value, np.eye(shape[0])):
            return _Value(Identity(shape[0]), shape)
        known = self._named_value(value)
        if known is not None:
            return known
        node._name = f"C{next(_auto_names)}"  # as tape.watch names an unnamed constant
        return self._symbol(node._name, id(node), shape)


def _postorder(tensors, done: dict) -> list:
    """The lineages of ``tensors`` not converted yet, inputs before the ops that use them."""
    def expand(node):
        if id(node) in done:
            return None
        return () if node.primitive is None else node.inputs[::-1]

    return accumulate.toposort(list(tensors)[::-1], expand)


# ---------------------------------------------------------------- tape results


class DerivedForms:
    """What a tape call needs to give its results matrix forms later: its plan, and how to seed.

    ``kind`` is ``"gradient"`` (``seeds(A)`` gives one seed per target) or ``"jacobian"``
    (one target; the sweep is seeded with ``Identity``); None for results with no matrix form.
    """

    def __init__(self, plan: accumulate.Plan, sources: list, kind: str | None,
                 seeds: Callable | None = None):
        self._plan = plan
        self._sources = sources
        self._kind = kind
        self._seeds = seeds

    def thunk(self, entrywise: Callable, index: int) -> "_Derived":
        """The ``_thunk`` of result ``index``: called, its entrywise form; and its matrix form."""
        return _Derived(entrywise, self, index)

    def matrix_value(self, index: int, A: MatrixAlgebra) -> _Value:
        source = self._sources[index]
        A.meet(self._plan.leaves.values(), strict=False)
        if self._kind == "gradient":
            found = accumulate.sweep(self._plan, self._seeds(A), A).get(id(source))
            return found if found is not None else A.zeros(source.shape, None)
        if self._kind == "jacobian":
            return self._jacobian(source, A)
        raise _no_form("a batch_jacobian")

    def _jacobian(self, source, A: MatrixAlgebra) -> _Value:
        (target,) = self._plan.targets
        shape = target.shape + source.shape
        _matrix_shape(shape, "the Jacobian")
        if _size(target.shape) == 1:
            seed = A.seed(target.shape, None)
        else:
            if sum(n != 1 for n in target.shape) > 1:
                raise _no_form(f"a Jacobian of a matrix (shape {target.shape})")
            n = _size(target.shape)
            seed = _Value(Identity(n), target.shape, n)
        found = accumulate.sweep(self._plan, [seed], A).get(id(source))
        if found is None:
            return A.zeros(shape, None)
        if found.batch is None:
            return _Value(found.expr, shape)
        rows = transpose(found.expr)  # row i: the gradient of target entry i
        wanted = _matrix_shape(shape)
        return _Value(rows if rows.shape == wanted else transpose(rows), shape)


class _Derived:
    """A tape result's ``_thunk``: calling it builds ``.expr``, ``matrix_value`` its matrix form."""

    __slots__ = ("_entrywise", "_forms", "_index")

    def __init__(self, entrywise: Callable, forms: DerivedForms, index: int):
        self._entrywise = entrywise
        self._forms = forms
        self._index = index

    def __call__(self):
        return self._entrywise()

    def matrix_value(self, A: MatrixAlgebra) -> _Value:
        return self._forms.matrix_value(self._index, A)


def _derived_value(tensor, A: MatrixAlgebra) -> _Value:
    derived = tensor._thunk
    if not isinstance(derived, _Derived):
        raise _no_form("this result (it was not made by a GradientTape)")
    return derived.matrix_value(A)


def matrix_expr_of(tensor) -> sympy.Basic:
    """The public matrix form of a Tensor (``Tensor.matrix_expr``).

    Examples
    --------
    >>> import symtape as st
    >>> A = st.constant([[1.0, 2.0], [3.0, 4.0]], name="A")
    >>> x = st.Variable([1.0, 1.0], name="x")
    >>> with st.GradientTape() as tape:
    ...     y = st.reduce_sum(st.square(A @ x))
    >>> y.matrix_expr
    (x.T*A.T*A*x)
    >>> tape.gradient(y, x).matrix_expr
    2*A.T*A*x
    """
    with recursion_headroom():
        return MatrixAlgebra().value(tensor).expr
