"""The array module of the symbolic world: NumPy object arrays of SymPy expressions.

A symbolic value is a SymPy expression for shape ``()`` and an object ``ndarray`` of
SymPy expressions otherwise, so structural ops (reshape, transpose, indexing, concat,
broadcasting) are NumPy's own. What NumPy would do quadratically on objects — sums
built by repeated ``+`` — is done here with one n-ary ``sympy.Add`` per entry.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import sympy

from symtape.arrays.backends import to_host

__all__ = ["as_sympy", "exact_number", "NEGATIVE_ZERO", "exact_array", "normalize", "to_sympy",
           "add_many", "reduce_add", "reduce_max", "reduce_min", "matmul", "zeros", "full",
           "shape_of"]

_SHORT_DECIMAL_DIGITS = 12  # a float whose shortest repr has at most this many digits is a decimal


def exact_number(value: Any) -> sympy.Basic:
    """Return the exact SymPy number for one scalar value.

    Floats whose shortest round-trip decimal is short are taken to mean that decimal
    (``0.1`` -> ``1/10``); other floats keep their binary value as a ``sympy.Float``.

    Examples
    --------
    >>> exact_number(0.5), exact_number(2.0), exact_number(0.1), exact_number(3)
    (1/2, 2, 1/10, 3)
    """
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, (bool, np.bool_)):
        return sympy.true if value else sympy.false
    if isinstance(value, (int, np.integer)):
        return sympy.Integer(int(value))
    if isinstance(value, (float, np.floating)):
        return _exact_float(value)
    if isinstance(value, (complex, np.complexfloating)):
        return _exact_float(value.real) + sympy.I * _exact_float(value.imag)
    raise TypeError(f"cannot turn {type(value).__name__} {value!r} into a SymPy number")


def as_sympy(value: Any, where: str = "expected a SymPy expression") -> sympy.Basic:
    """Return ``value`` as a SymPy object without ever reading a string as Python.

    SymPy objects pass through and numbers (Python's and NumPy's) become SymPy numbers.
    Anything else raises ``TypeError``: ``sympy.sympify`` would evaluate a string as
    Python code, so strings are refused here and belong to ``st.parse``.

    Parameters
    ----------
    value : sympy.Basic or number
    where : str, default 'expected a SymPy expression'
        How the error message begins: what the caller expected.

    Returns
    -------
    sympy.Basic

    Raises
    ------
    TypeError
        If ``value`` is a string, bytes, or neither SymPy nor a number.

    Examples
    --------
    >>> as_sympy(2.5), as_sympy(3)
    (2.50000000000000, 3)
    >>> as_sympy("x + 1")
    Traceback (most recent call last):
    ...
    TypeError: expected a SymPy expression, got the string 'x + 1': strings are not parsed here (sympify would run them as Python); build the expression with st.parse('x + 1') or SymPy
    """
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, (str, bytes)):
        text = value if isinstance(value, str) else value.decode(errors="replace")
        raise TypeError(f"{where}, got the string {text!r}: strings are not parsed here "
                        f"(sympify would run them as Python); build the expression with "
                        f"st.parse({text!r}) or SymPy")
    if isinstance(value, (bool, np.bool_, int, float, complex, np.number)):
        return sympy.sympify(value)  # a number: nothing to evaluate
    raise TypeError(f"{where}, got {type(value).__name__} {value!r}")


# -0.0 is not 0 everywhere (atan2(-0.0, -1) = -pi, 1/-0.0 = -inf), and SymPy's numbers have
# no signed zero: it is kept as the unevaluated product -1*0.0, which code prints as -0.0
NEGATIVE_ZERO = sympy.Mul._from_args((sympy.S.NegativeOne, sympy.Float(0.0)))


def _exact_float(value) -> sympy.Basic:
    as_float = float(value)
    if as_float == 0 and math.copysign(1.0, as_float) < 0:
        return NEGATIVE_ZERO
    if math.isnan(as_float):
        return sympy.nan
    if math.isinf(as_float):
        return sympy.oo if as_float > 0 else -sympy.oo
    if as_float.is_integer() and abs(as_float) < 2.0 ** 53:
        return sympy.Integer(int(as_float))
    # the shortest repr in the value's own precision: float32(0.1) reads '0.1'
    scalar = value if isinstance(value, np.floating) else np.float64(as_float)
    text = np.format_float_positional(scalar, unique=True, trim="-")
    digits = text.replace("-", "").replace(".", "").strip("0")
    if len(digits) <= _SHORT_DECIMAL_DIGITS:
        return sympy.Rational(text)
    return sympy.Float(as_float)  # 53 bits: the binary value itself


def exact_array(value: Any):
    """Return the symbolic value of a numeric value: a SymPy number or an object array.

    Examples
    --------
    >>> import numpy as np
    >>> exact_array(np.array([0.5, 0.25]))
    array([1/2, 1/4], dtype=object)
    """
    array = to_host(value)  # a GPU value's closed form is read from a host copy
    if array.ndim == 0:
        return exact_number(array[()])
    flat = [exact_number(v) for v in array.ravel().tolist()]
    out = np.empty(array.size, dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def normalize(value: Any):
    """A symbolic value in canonical form: a SymPy object for shape (), else an object array.

    Examples
    --------
    >>> import numpy as np
    >>> normalize(np.array(3, dtype=object))
    3
    """
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return normalize(value[()])
        if value.dtype != object:
            return exact_array(value)
        return value
    if isinstance(value, sympy.Basic):
        return value
    return exact_number(value)


def to_sympy(value: Any):
    """Return the public form: a ``sympy.Expr`` for scalars, an immutable ``sympy.Array`` else.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> to_sympy(np.array([sympy.Integer(1), 2], dtype=object))
    [1, 2]
    """
    value = normalize(value)
    if not isinstance(value, np.ndarray):
        return value
    flat = [v if isinstance(v, sympy.Basic) else exact_number(v) for v in value.ravel().tolist()]
    return sympy.ImmutableDenseNDimArray(flat, value.shape)


def shape_of(value: Any) -> tuple[int, ...]:
    """Shape of a symbolic value (or of anything with a ``.shape``)."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else ()


def full(shape: Sequence[int], fill: sympy.Basic):
    """A symbolic value of the given shape, every entry ``fill``.

    Parameters
    ----------
    shape : sequence of int
    fill : sympy.Basic

    Returns
    -------
    sympy.Basic or numpy.ndarray of object
        ``fill`` itself for shape ``()``, else an object array.

    Examples
    --------
    >>> import sympy
    >>> full((2,), sympy.Symbol("x"))
    array([x, x], dtype=object)
    """
    if tuple(shape) == ():
        return fill
    out = np.empty(tuple(shape), dtype=object)
    out.fill(fill)
    return out


def zeros(shape: Sequence[int]):
    """A symbolic zero of the given shape."""
    return full(shape, sympy.S.Zero)


def add_many(terms: Sequence[Any]):
    """Sum many symbolic values (broadcasting) with one n-ary ``Add`` per entry: linear, not quadratic.

    Examples
    --------
    >>> import sympy
    >>> x = sympy.Symbol("x")
    >>> add_many([x, 2 * x, 1])
    3*x + 1
    """
    if len(terms) == 1:
        return terms[0]
    if not any(isinstance(t, np.ndarray) for t in terms):
        return _add(terms)
    arrays = np.broadcast_arrays(*[np.asarray(t, dtype=object) for t in terms])
    stacked = np.stack([a.ravel() for a in arrays], axis=-1)
    out = np.empty(stacked.shape[0], dtype=object)
    out[:] = [_add(row) for row in stacked.tolist()]
    return normalize(out.reshape(arrays[0].shape))


def _add(terms: list):
    # u + -0.0 is u, also for u = +-0.0: SymPy would keep a stray 0 term (x + 0) instead
    kept = [t for t in terms if t is not NEGATIVE_ZERO]
    return sympy.Add(*kept) if kept else NEGATIVE_ZERO


def _reduce(value, axis, keepdims: bool, combine):
    array = np.asarray(value, dtype=object)
    axes = tuple(range(array.ndim)) if axis is None else tuple(
        a % array.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    kept = [a for a in range(array.ndim) if a not in axes]
    moved = np.transpose(array, kept + list(axes))
    kept_shape = moved.shape[:len(kept)]
    rows = moved.reshape(kept_shape + (-1,))
    flat = rows.reshape(-1, rows.shape[-1]) if rows.size else rows.reshape(-1, 0)
    out = np.empty(flat.shape[0], dtype=object)
    out[:] = [combine(*row) for row in flat.tolist()]
    out = out.reshape(kept_shape)
    if keepdims:
        out = out.reshape(tuple(1 if a in axes else n for a, n in enumerate(array.shape)))
    return normalize(out)


def reduce_add(value, axis=None, keepdims: bool = False):
    """Symbolic ``sum`` over ``axis`` (one ``Add`` per output entry).

    Parameters
    ----------
    value : SymPy expression or array-like of them
    axis : int, tuple of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1.

    Returns
    -------
    sympy.Basic or numpy.ndarray of object
        A SymPy object for shape ``()``, else an object array.

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> reduce_add(np.array([[x, y], [1, 2]], dtype=object), axis=1)
    array([x + y, 3], dtype=object)
    """
    return _reduce(value, axis, keepdims, sympy.Add)


def reduce_max(value, axis=None, keepdims: bool = False):
    """Symbolic ``max`` over ``axis`` (``sympy.Max``).

    Parameters
    ----------
    value : SymPy expression or array-like of them
    axis : int, tuple of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1.

    Returns
    -------
    sympy.Basic or numpy.ndarray of object
        A SymPy object for shape ``()``, else an object array.

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> reduce_max([x, y, 1])
    Max(1, x, y)
    """
    return _reduce(value, axis, keepdims, sympy.Max)


def reduce_min(value, axis=None, keepdims: bool = False):
    """Symbolic ``min`` over ``axis`` (``sympy.Min``).

    Parameters
    ----------
    value : SymPy expression or array-like of them
    axis : int, tuple of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1.

    Returns
    -------
    sympy.Basic or numpy.ndarray of object
        A SymPy object for shape ``()``, else an object array.

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> reduce_min([x, y, 1])
    Min(1, x, y)
    """
    return _reduce(value, axis, keepdims, sympy.Min)


def matmul(a, b):
    """Symbolic batched matrix product (both operands at least 2-D), one ``Add`` per entry.

    Parameters
    ----------
    a, b : array-like of SymPy expressions
        Shapes ``(..., n, k)`` and ``(..., k, m)``; the leading axes broadcast.

    Returns
    -------
    numpy.ndarray of object
        Shape ``(..., n, m)``.

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> matmul(np.array([[x, y]], dtype=object), np.array([[1], [2]], dtype=object))
    array([[x + 2*y]], dtype=object)
    """
    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    products = a[..., :, :, None] * b[..., None, :, :]  # (..., n, k, m)
    return reduce_add(products, axis=-2)
