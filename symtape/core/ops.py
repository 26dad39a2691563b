"""Ops in TensorFlow's spelling, and Python's operators on Tensors and Variables.

Each op converts its arguments, checks dtypes and shapes with errors that say how to fix
them, and applies a primitive from :mod:`symtape.core.primitives`. Composites (``square``,
``reduce_mean``, ``stack``, ``tensordot``) are built from primitives and need no
derivative rule of their own.

Dtypes follow TensorFlow: two Tensors must have the same dtype (``st.cast`` converts);
Python numbers and NumPy arrays take the dtype of the Tensor they meet.

Every op accepts TensorFlow's ``name=``, a label for its result: ``st.sin(x, name="s").name``
is ``'s'``. A label never changes ``.expr``: a value computed from a Variable or a watched
Tensor stays the expression it was computed as. A name means no more than the name of a
:func:`~symtape.core.tensor.constant`: a result computed from constants alone is a constant,
so a tape that watches it makes it a symbol of that name, and ``.matrix_expr`` names it so
where it names constants. An op that would return an operand as it is (a cast to its own
dtype, a reshape to its own shape) returns a new Tensor for the label, so the operand keeps
its own name. A name that is not a non-empty ``str`` raises ``TypeError``.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import math
from typing import Sequence

import numpy as np

from symtape.arrays import dtypes
from symtape.core.primitives import REGISTRY
from symtape.core.tensor import (Tensor, TensorLike, Variable, Operators, to_array, is_traced,
                                 apply, convert_to_tensor, new_constant, weak_constant)

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "pow", "square", "sqrt", "exp", "log",
    "log1p", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf",
    "sigmoid", "relu", "softplus", "abs", "sign", "maximum", "minimum", "where", "less",
    "less_equal", "greater", "greater_equal", "equal", "not_equal", "logical_not", "cast",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reshape", "transpose", "concat",
    "stack", "matmul", "tensordot", "one_hot", "zeros", "ones", "range",
]

_P = REGISTRY
_NUMBERS = (float, int)


# ---------------------------------------------------------------- argument conversion


def _strong(x) -> Tensor | None:
    """``x`` as a Tensor if it fixes a dtype (a Tensor or Variable), else None."""
    if isinstance(x, Tensor):
        return None if x.weak else x
    if isinstance(x, Variable):
        return x._read()
    return None


def _like(x, dtype: np.dtype, op: str) -> Tensor:
    """Convert a Python number, array or weak constant to ``dtype``."""
    if type(x) in _NUMBERS and dtype.kind == "f":
        return Tensor(dtype.type(x), weak=True)
    if isinstance(x, Tensor):
        if x.source is not None or x.primitive is not None:  # a traced Python-number argument
            return x if x.array.dtype == dtype else apply(_P["cast"], (x,), {"dtype": dtype})
        # a weak constant (an exact constant from a derivative rule)
        return weak_constant(x.array, dtype, x._sym)
    try:
        return Tensor(to_array(x, dtype, what=op), weak=True)
    except TypeError as err:
        raise TypeError(f"{err}; or convert the Tensor operand with st.cast") from None


def _common(args: Sequence, op: str) -> list[Tensor]:
    """Give all operands one dtype, TensorFlow's way: Tensors must agree, numbers follow."""
    strong = [_strong(a) for a in args]
    fixed = [t for t in strong if t is not None]
    if fixed:
        dtype = fixed[0].dtype
        for t in fixed[1:]:
            if t.dtype != dtype:
                raise _mixed_dtypes(op, dtype, t.dtype)
    else:
        arrays = [a.array if isinstance(a, Tensor) else np.asarray(a) for a in args]
        dtype = _default_result_dtype(arrays)
    return [s if s is not None else _like(a, dtype, op) for a, s in zip(args, strong)]


def _mixed_dtypes(op: str, first: np.dtype, second: np.dtype) -> TypeError:
    return TypeError(f"{op}: operands have dtypes {first} and {second}; symtape does not mix "
                     f"dtypes silently — convert one with st.cast(x, st.{second}) or "
                     f"st.cast(y, st.{first})")


def _default_result_dtype(arrays) -> np.dtype:
    kinds = {a.dtype.kind for a in arrays}
    if "f" in kinds:
        return builtins.max((a.dtype for a in arrays if a.dtype.kind == "f"),
                            key=lambda d: d.itemsize)
    if kinds & {"i", "u"}:
        return dtypes.int64
    return dtypes.bool


def _elementwise(name: str, x, y) -> Tensor:
    """Apply a binary elementwise primitive: the hot path of every Python operator."""
    a, b = _strong(x), _strong(y)
    if a is not None and b is not None:
        if a.array.dtype != b.array.dtype:
            raise _mixed_dtypes(name, a.array.dtype, b.array.dtype)
    elif a is not None:
        b = _like(y, a.array.dtype, name)
    elif b is not None:
        a = _like(x, b.array.dtype, name)
    else:
        a, b = _common([x, y], name)
    try:
        return apply(_P[name], (a, b))
    except ValueError:
        raise ValueError(
            f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together (each trailing "
            "dimension must match or be 1); reshape or transpose one operand") from None


def _unary(name: str, doc: str):
    prim = _P[name]

    def op(x: TensorLike, name: str | None = None) -> Tensor:
        return apply(prim, (convert_to_tensor(x),))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


# ---------------------------------------------------------------- arithmetic


def add(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """``x + y`` with broadcasting.

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy. Two Tensors (or Variables)
        must have the same dtype; Python numbers and NumPy arrays take the dtype of the
        Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x + y``, of the operands' common dtype and broadcast shape.

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.add(st.Variable(1.0, name="a"), 2).expr
    a + 2
    """
    return _elementwise("add", x, y)


def subtract(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """``x - y`` with broadcasting.

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy. Two Tensors (or Variables)
        must have the same dtype; Python numbers and NumPy arrays take the dtype of the
        Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x - y``, of the operands' common dtype and broadcast shape.

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.subtract(1.0, st.Variable(0.5, name="b")).expr
    1 - b
    """
    return _elementwise("sub", x, y)


def multiply(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """``x * y`` with broadcasting.

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy. Two Tensors (or Variables)
        must have the same dtype; Python numbers and NumPy arrays take the dtype of the
        Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x * y``, of the operands' common dtype and broadcast shape.

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.multiply([1.0, 2.0], 3.0).numpy()
    array([3., 6.])
    """
    return _elementwise("mul", x, y)


def divide(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """``x / y`` (true division; integer operands give float64, as in NumPy).

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy. Two Tensors (or Variables)
        must have the same dtype; Python numbers and NumPy arrays take the dtype of the
        Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x / y``; float64 for integer operands, else their common dtype.

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.divide(st.Variable(1.0, name="p"), 4).expr
    p/4
    """
    return _elementwise("div", x, y)


def negative(x: TensorLike, name: str | None = None) -> Tensor:
    """``-x``.

    Parameters
    ----------
    x : Tensor, Variable or array-like
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``-x``, of the dtype and shape of ``x``.

    Examples
    --------
    >>> import symtape as st
    >>> st.negative(st.Variable(2.0, name="q")).expr
    -q
    """
    return apply(_P["neg"], (convert_to_tensor(x),))


def pow(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """``x ** y``. A constant exponent stays exact in ``.expr`` (``x ** 0.5`` is ``sqrt(x)``).

    Parameters
    ----------
    x : Tensor, Variable or array-like
        The base.
    y : Tensor, Variable, number or array-like
        The exponent. A Python or NumPy number (or a constant scalar Tensor) is kept as an
        exact constant, so ``x ** 2`` differentiates to ``2*x``; any other exponent is an
        operand like ``x``, broadcast against it and differentiated too (``log(x)*x**y``).
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x ** y``.

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.pow(st.Variable(4.0, name="x"), 0.5).expr
    sqrt(x)
    """
    exponent = _constant_scalar(y)
    if exponent is not None:
        if isinstance(y, (Tensor, Variable)):  # a constant Tensor exponent still has a dtype
            base = _common([x, y], "pow")[0]
        else:
            base = (convert_to_tensor(x) if isinstance(x, (Tensor, Variable))
                    else _common([x], "pow")[0])
        return apply(_P["powc"], (base,), {"exponent": exponent})
    return _elementwise("pow", x, y)


def _constant_scalar(y):
    """The Python number of a constant scalar exponent, or None if it is symbolic or an array."""
    if type(y) in _NUMBERS or isinstance(y, np.number):
        return y.item() if isinstance(y, np.number) else y
    if isinstance(y, Tensor) and not y.symbolic and y.shape == () and y._sym is None:
        return y.array.item()
    return None


def square(x: TensorLike, name: str | None = None) -> Tensor:
    """``x ** 2``.

    Parameters
    ----------
    x : Tensor, Variable or array-like
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x ** 2`` (the exponent an exact 2).

    Examples
    --------
    >>> import symtape as st
    >>> st.square(st.Variable(3.0, name="x")).expr
    x**2
    """
    return pow(x, 2)


# name, summary, and the closed form shown for st.<name>(x) with x a Variable named "x"
_UNARY = [
    ("sqrt", "Square root.", "sqrt(x)"),
    ("exp", "``e ** x``.", "exp(x)"),
    ("log", "Natural logarithm.", "log(x)"),
    ("log1p", "``log(1 + x)``, accurate for small ``x``.", "log(x + 1)"),
    ("sin", "Sine.", "sin(x)"),
    ("cos", "Cosine.", "cos(x)"),
    ("tan", "Tangent.", "tan(x)"),
    ("asin", "Inverse sine.", "asin(x)"),
    ("acos", "Inverse cosine.", "acos(x)"),
    ("atan", "Inverse tangent.", "atan(x)"),
    ("sinh", "Hyperbolic sine.", "sinh(x)"),
    ("cosh", "Hyperbolic cosine.", "cosh(x)"),
    ("tanh", "Hyperbolic tangent.", "tanh(x)"),
    ("erf", "The error function.", "erf(x)"),
    ("sigmoid", "The logistic function ``1 / (1 + exp(-x))`` (computed without overflow).",
     "1/(1 + exp(-x))"),
    ("softplus", "``log(1 + exp(x))`` (computed without overflow).", "log(exp(x) + 1)"),
    ("relu", "``max(x, 0)``; its derivative at 0 is taken as 0.", "Max(0, x)"),
    ("abs", "Absolute value; its derivative at 0 is taken as 0 (``sign(0)``).", "Abs(x)"),
    ("sign", "Sign (-1, 0 or 1); its derivative is 0.", "sign(x)"),
]


def _documented_unary(name: str, summary: str, shows: str):
    return _unary(name, f"""{summary}

    Parameters
    ----------
    x : Tensor, Variable or array-like
        Python numbers and lists convert as ``st.constant`` converts them.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The op applied entry by entry, of the shape of ``x`` (and its dtype, for a
        float ``x``).

    Examples
    --------
    >>> import symtape as st
    >>> st.{name}(st.Variable(0.5, name="x")).expr
    {shows}
    """)


(sqrt, exp, log, log1p, sin, cos, tan, asin, acos, atan, sinh, cosh, tanh, erf, sigmoid,
 softplus, relu, abs, sign) = [_documented_unary(*row) for row in _UNARY]
logical_not = _unary("logical_not", """Elementwise not of a bool Tensor.

    Parameters
    ----------
    x : Tensor or array-like of bool
    name : str, optional
        A label for the result (its ``.name``).

    Returns
    -------
    Tensor
        A bool Tensor of the shape of ``x``.

    Examples
    --------
    >>> import symtape as st
    >>> st.logical_not(st.constant([True, False])).numpy()
    array([False,  True])
    """)


def atan2(y: TensorLike, x: TensorLike, name: str | None = None) -> Tensor:
    """The angle of the point ``(x, y)``, in ``(-pi, pi]``.

    Parameters
    ----------
    y, x : Tensor, Variable or array-like
        The coordinates (``y`` first, as in NumPy and TensorFlow), broadcast against each
        other; two Tensors must have the same dtype.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The angle in radians.

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.atan2(st.Variable(1.0, name="y"), st.Variable(1.0, name="x")).expr
    atan2(y, x)
    """
    return _elementwise("atan2", y, x)


def maximum(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """Elementwise maximum; on ties the gradient goes to ``x``.

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy. Two Tensors (or Variables)
        must have the same dtype; Python numbers and NumPy arrays take the dtype of the
        Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The larger entry of ``x`` and ``y`` (``Max`` in ``.expr``).

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.maximum(st.Variable(1.0, name="a"), 0.0).expr
    Max(0, a)
    """
    return _elementwise("maximum", x, y)


def minimum(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """Elementwise minimum; on ties the gradient goes to ``x``.

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy. Two Tensors (or Variables)
        must have the same dtype; Python numbers and NumPy arrays take the dtype of the
        Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The smaller entry of ``x`` and ``y`` (``Min`` in ``.expr``).

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.minimum(st.Variable(1.0, name="a"), 0.0).expr
    Min(0, a)
    """
    return _elementwise("minimum", x, y)


def where(condition: TensorLike, x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
    """``x`` where ``condition`` holds, else ``y`` (a ``Piecewise`` in ``.expr``).

    Parameters
    ----------
    condition : Tensor or array-like of bool
        Where to take ``x``; a comparison such as ``a > 0``. It has no gradient.
    x, y : Tensor, Variable or array-like
        The values chosen from, of one dtype (numbers take the dtype of the Tensor).
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The shape of ``condition``, ``x`` and ``y`` broadcast together. The gradient flows to
        ``x`` where ``condition`` holds and to ``y`` elsewhere.

    Raises
    ------
    TypeError
        If ``condition`` is not bool, or ``x`` and ``y`` are Tensors of different dtypes.
    ValueError
        If the three shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> a = st.Variable(2.0, name="a")
    >>> st.where(a > 0, a, -a).expr
    Piecewise((a, a > 0), (-a, True))
    """
    cond = convert_to_tensor(condition)
    if cond.dtype != dtypes.bool:
        raise TypeError(f"where: condition must have dtype bool, not {cond.dtype}; "
                        "compare first, e.g. st.where(x > 0, ...)")
    a, b = _common([x, y], "where")
    try:
        return apply(_P["where"], (cond, a, b))
    except ValueError:
        raise ValueError(f"where: shapes {cond.shape}, {a.shape} and {b.shape} cannot be "
                         "broadcast together; reshape one operand") from None


def _comparison(prim_name: str, symbol: str):
    def op(x: TensorLike, y: TensorLike, name: str | None = None) -> Tensor:
        return _elementwise(prim_name, x, y)

    op.__name__ = op.__qualname__ = prim_name
    op.__doc__ = f"""Elementwise ``x {symbol} y`` (a bool Tensor; it has no gradient).

    Parameters
    ----------
    x, y : Tensor, Variable or array-like
        The operands, broadcast against each other as in NumPy; two Tensors must have the
        same dtype, numbers take the dtype of the Tensor they meet.
    name : str, optional
        A label for the result (its ``.name``).

    Returns
    -------
    Tensor
        A bool Tensor of the broadcast shape (``{symbol}`` of SymPy in ``.expr``).

    Raises
    ------
    TypeError
        If the operands are Tensors of different dtypes (convert one with ``st.cast``).
    ValueError
        If the shapes cannot be broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> st.{prim_name}(st.constant([1.0, 2.0]), 1.5).numpy()
    array({np.array2string(_P[prim_name].numeric(np, np.array([1.0, 2.0]), 1.5), separator=', ')})
    """
    return op


less = _comparison("less", "<")
less_equal = _comparison("less_equal", "<=")
greater = _comparison("greater", ">")
greater_equal = _comparison("greater_equal", ">=")
equal = _comparison("equal", "==")
not_equal = _comparison("not_equal", "!=")


def cast(x: TensorLike, dtype, name: str | None = None) -> Tensor:
    """Convert to ``dtype``; the gradient flows back through float-to-float casts.

    Parameters
    ----------
    x : Tensor, Variable or array-like
    dtype : dtype or str
        ``st.float32``, ``"float64"``, ``st.int32``, ... (see ``st.as_dtype``).
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        ``x`` in ``dtype`` (``x`` itself if it already has that dtype and no name is given).
        Casting to an integer or bool dtype cuts the gradient.

    Raises
    ------
    TypeError
        If ``dtype`` is not one of symtape's dtypes.

    Examples
    --------
    >>> import symtape as st
    >>> st.cast(st.constant([1, 2]), st.float32)
    <st.Tensor: shape=(2,), dtype=float32, numpy=[1., 2.]>
    """
    tensor = convert_to_tensor(x)
    dtype = dtypes.as_dtype(dtype)
    if tensor.dtype == dtype:
        return tensor
    return apply(_P["cast"], (tensor,), {"dtype": dtype})


# ---------------------------------------------------------------- reductions


def _axes(axis, ndim: int, op: str) -> tuple[int, ...] | None:
    if axis is None:
        return None
    items = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in items:
        if not -ndim <= int(a) < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} axes")
        out.append(int(a) % builtins.max(ndim, 1))
    return tuple(sorted(set(out)))


def _reduce(prim_name: str, x, axis, keepdims: bool, op: str) -> Tensor:
    tensor = convert_to_tensor(x)
    axes = _axes(axis, tensor.ndim, op)
    if op in ("reduce_max", "reduce_min"):
        _check_not_empty(tensor.shape, axes, op)
    return apply(_P[prim_name], (tensor,), {"axis": axes, "keepdims": bool(keepdims)})


def _check_not_empty(shape: tuple, axes, op: str) -> None:
    """The max or min of no numbers is undefined: refuse it (NumPy's error names no op)."""
    empty = [a for a in (builtins.range(len(shape)) if axes is None else axes) if shape[a] == 0]
    if empty or (axes is None and 0 in shape):
        raise ValueError(f"{op}: the tensor of shape {shape} is empty along axis {empty[0]}, "
                         "and the extremum of no numbers is undefined; reduce a non-empty "
                         "tensor or over other axes")


def reduce_sum(input_tensor: TensorLike, axis=None, keepdims: bool = False,
               name: str | None = None) -> Tensor:
    """Sum over ``axis`` (all axes by default).

    Parameters
    ----------
    input_tensor : Tensor, Variable or array-like
        The values to reduce.
    axis : int, sequence of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1, so the result broadcasts against the input.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The sum, of the input's dtype.

    Raises
    ------
    ValueError
        If an axis is out of range for the input's number of axes.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable([1.0, 2.0], name="x")
    >>> st.reduce_sum(x * x).expr
    x[0]**2 + x[1]**2
    """
    return _reduce("reduce_sum", input_tensor, axis, keepdims, "reduce_sum")


def reduce_mean(input_tensor: TensorLike, axis=None, keepdims: bool = False,
                name: str | None = None) -> Tensor:
    """Mean over ``axis``: ``reduce_sum / count`` (integer input gives a float mean).

    Parameters
    ----------
    input_tensor : Tensor, Variable or array-like
        The values to reduce.
    axis : int, sequence of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1, so the result broadcasts against the input.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The mean; float64 for integer input.

    Raises
    ------
    ValueError
        If an axis is out of range for the input's number of axes.

    Examples
    --------
    >>> import symtape as st
    >>> st.reduce_mean(st.constant([[1.0, 2.0], [3.0, 5.0]]), axis=0).numpy()
    array([2. , 3.5])
    """
    tensor = convert_to_tensor(input_tensor)
    total = reduce_sum(tensor, axis, keepdims)
    axes = _axes(axis, tensor.ndim, "reduce_mean")
    count = math.prod(tensor.shape[a] for a in (builtins.range(tensor.ndim) if axes is None else axes))
    return total / count


def reduce_max(input_tensor: TensorLike, axis=None, keepdims: bool = False,
               name: str | None = None) -> Tensor:
    """Maximum over ``axis``; tied entries share the gradient equally.

    Parameters
    ----------
    input_tensor : Tensor, Variable or array-like
        The values to reduce.
    axis : int, sequence of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1, so the result broadcasts against the input.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The maximum, of the input's dtype.

    Raises
    ------
    ValueError
        If an axis is out of range for the input's number of axes.
        Also if a reduced axis is empty (the extremum of no numbers is undefined).

    Examples
    --------
    >>> import symtape as st
    >>> st.reduce_max(st.constant([1.0, 3.0, 2.0])).numpy()
    array(3.)
    """
    return _reduce("reduce_max", input_tensor, axis, keepdims, "reduce_max")


def reduce_min(input_tensor: TensorLike, axis=None, keepdims: bool = False,
               name: str | None = None) -> Tensor:
    """Minimum over ``axis``; tied entries share the gradient equally.

    Parameters
    ----------
    input_tensor : Tensor, Variable or array-like
        The values to reduce.
    axis : int, sequence of int, or None, default None
        The axes to reduce (negative ones count from the end); None reduces all of them.
    keepdims : bool, default False
        Keep each reduced axis with length 1, so the result broadcasts against the input.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The minimum, of the input's dtype.

    Raises
    ------
    ValueError
        If an axis is out of range for the input's number of axes.
        Also if a reduced axis is empty (the extremum of no numbers is undefined).

    Examples
    --------
    >>> import symtape as st
    >>> st.reduce_min(st.constant([[1.0, 3.0], [0.0, 4.0]]), axis=1).numpy()
    array([1., 0.])
    """
    return _reduce("reduce_min", input_tensor, axis, keepdims, "reduce_min")


# ---------------------------------------------------------------- shapes


def reshape(tensor: TensorLike, shape, name: str | None = None) -> Tensor:
    """Give the entries a new shape (one dimension may be -1).

    Parameters
    ----------
    tensor : Tensor, Variable or array-like
    shape : int or sequence of int
        The new shape, with as many entries as ``tensor``; one dimension may be -1, which
        takes the size that makes the counts agree.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The entries of ``tensor`` in row-major order under the new shape.

    Raises
    ------
    ValueError
        If the entry counts differ, or more than one dimension is -1.

    Examples
    --------
    >>> import symtape as st
    >>> st.reshape(st.range(6), (2, -1)).shape
    (2, 3)
    """
    x = convert_to_tensor(tensor)
    target = _resolve_shape(x.shape, shape)
    if target == x.shape:
        return x
    return apply(_P["reshape"], (x,), {"shape": target})


def _resolve_shape(old: tuple[int, ...], shape) -> tuple[int, ...]:
    new = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    size = math.prod(old)
    known = math.prod(n for n in new if n != -1)
    if new.count(-1) > 1:
        raise ValueError(f"reshape: at most one dimension may be -1, got {new}")
    if -1 in new:
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {old} ({size} entries) "
                             f"into {new}")
        new = tuple(size // known if n == -1 else n for n in new)
    if math.prod(new) != size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {old} ({size} entries) into "
                         f"{new} ({math.prod(new)} entries)")
    return new


def transpose(a: TensorLike, perm=None, name: str | None = None) -> Tensor:
    """Permute the axes (reverse them by default).

    Parameters
    ----------
    a : Tensor, Variable or array-like
    perm : sequence of int, optional
        Axis ``i`` of the result is axis ``perm[i]`` of ``a``; default: the axes reversed.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If ``perm`` is not a permutation of ``a``'s axes.

    Examples
    --------
    >>> import symtape as st
    >>> st.transpose(st.zeros((2, 3))).shape
    (3, 2)
    """
    x = convert_to_tensor(a)
    perm = tuple(builtins.range(x.ndim - 1, -1, -1)) if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(builtins.range(x.ndim)):
        raise ValueError(f"transpose: perm {perm} is not a permutation of the {x.ndim} axes of a "
                         f"tensor of shape {x.shape}")
    return apply(_P["transpose"], (x,), {"perm": perm})


def concat(values: Sequence[TensorLike], axis: int, name: str | None = None) -> Tensor:
    """Join tensors along an existing ``axis``.

    Parameters
    ----------
    values : sequence of Tensor, Variable or array-like
        At least one tensor, all of one dtype and with equal shapes outside ``axis``.
    axis : int
        The existing axis to join along (negative counts from the end).
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If ``values`` is empty, holds scalars (use ``st.stack``), or the shapes differ
        outside ``axis``.

    Examples
    --------
    >>> import symtape as st
    >>> st.concat([st.ones((1, 2)), st.zeros((2, 2))], axis=0).shape
    (3, 2)
    """
    tensors = _common(list(values), "concat")
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ValueError("concat: scalars have no axis to join along; use st.stack")
    axis = _axes(axis, ndim, "concat")[0]
    for t in tensors:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape))
                                 if i != axis):
            shapes = ", ".join(str(u.shape) for u in tensors)
            raise ValueError(f"concat: shapes {shapes} differ outside axis {axis}; only the "
                             "concatenation axis may differ")
    if len(tensors) == 1:
        return tensors[0]
    return apply(_P["concat"], tuple(tensors), {"axis": axis})


def stack(values: Sequence[TensorLike], axis: int = 0, name: str | None = None) -> Tensor:
    """Join same-shaped tensors along a new ``axis``.

    Parameters
    ----------
    values : sequence of Tensor, Variable or array-like
        At least one tensor, all of one shape and dtype.
    axis : int, default 0
        Where the new axis goes in the result (negative counts from the end).
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        One more axis than the inputs, of length ``len(values)``.

    Raises
    ------
    ValueError
        If ``values`` is empty or the shapes differ.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(1.0, name="x")
    >>> st.stack([x, 2 * x]).expr
    [x, 2*x]
    """
    tensors = _common(list(values), "stack")
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shape = tensors[0].shape
    if any(t.shape != shape for t in tensors):
        raise ValueError(f"stack: all shapes must be equal, got {[t.shape for t in tensors]}")
    axis = _axes(axis, len(shape) + 1, "stack")[0]
    expanded = shape[:axis] + (1,) + shape[axis:]
    pieces = [reshape(t, expanded) for t in tensors]
    return pieces[0] if len(pieces) == 1 else apply(_P["concat"], tuple(pieces), {"axis": axis})


def matmul(a: TensorLike, b: TensorLike, transpose_a: bool = False, transpose_b: bool = False,
           name: str | None = None) -> Tensor:
    """Matrix product (batched over leading axes; 1-D operands as in NumPy).

    Parameters
    ----------
    a, b : Tensor, Variable or array-like
        At least one axis each, of one dtype. The last two axes are the matrices, the
        leading ones batch axes that broadcast; a 1-D ``a`` is a row, a 1-D ``b`` a column,
        and that axis is dropped from the result, as in NumPy.
    transpose_a, transpose_b : bool, default False
        Swap the last two axes of ``a`` (``b``) before multiplying.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If an operand is a scalar, the inner dimensions differ, or the batch axes cannot be
        broadcast together.

    Examples
    --------
    >>> import symtape as st
    >>> W = st.Variable([[1.0, 2.0]], name="W")
    >>> (W @ st.constant([[3.0], [4.0]])).expr
    [[3*W[0,0] + 4*W[0,1]]]
    """
    x, y = _common([a, b], "matmul")
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one axis, got shapes {x.shape} and "
                         f"{y.shape}; use * for scalars")
    if transpose_a:
        x = _swap_last(x)
    if transpose_b:
        y = _swap_last(y)
    vector_a, vector_b = x.ndim == 1, y.ndim == 1
    if vector_a:
        x = reshape(x, (1,) + x.shape)
    if vector_b:
        y = reshape(y, y.shape + (1,))
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(
            f"matmul: a.shape={x.shape} and b.shape={y.shape} do not align "
            f"({x.shape[-1]} != {y.shape[-2]}); did you mean st.transpose(b)?")
    try:
        out = apply(_P["matmul"], (x, y))
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of a.shape={x.shape} and b.shape={y.shape} "
                         "cannot be broadcast together") from None
    if vector_a or vector_b:
        shape = out.shape[:-2] + (() if vector_a else out.shape[-2:-1]) + (
            () if vector_b else out.shape[-1:])
        out = reshape(out, shape)
    return out


def _swap_last(x: Tensor) -> Tensor:
    if x.ndim < 2:
        return x
    return transpose(x, tuple(builtins.range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


def tensordot(a: TensorLike, b: TensorLike, axes, name: str | None = None) -> Tensor:
    """Sum of products over ``axes`` (an int: the last/first ``axes`` axes; or two lists).

    Parameters
    ----------
    a, b : Tensor, Variable or array-like
        Operands of one dtype.
    axes : int or pair of sequences of int
        An int ``n`` contracts the last ``n`` axes of ``a`` with the first ``n`` of ``b``;
        a pair ``(axes_a, axes_b)`` contracts those axes pairwise.
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        The free axes of ``a`` followed by the free axes of ``b``.

    Raises
    ------
    ValueError
        If contracted axes have different lengths.

    Examples
    --------
    >>> import symtape as st
    >>> st.tensordot(st.ones((2, 3)), st.ones((3, 4)), axes=1).shape
    (2, 4)
    """
    x, y = _common([a, b], "tensordot")
    if isinstance(axes, (int, np.integer)):
        axes_a = list(builtins.range(x.ndim - int(axes), x.ndim))
        axes_b = list(builtins.range(int(axes)))
    else:
        axes_a, axes_b = ([int(i) for i in _as_list(ax)] for ax in axes)
    axes_a = [i % x.ndim for i in axes_a]
    axes_b = [i % y.ndim for i in axes_b]
    if [x.shape[i] for i in axes_a] != [y.shape[i] for i in axes_b]:
        raise ValueError(f"tensordot: contracted dimensions differ: a.shape={x.shape} axes "
                         f"{axes_a} vs b.shape={y.shape} axes {axes_b}")
    free_a = [i for i in builtins.range(x.ndim) if i not in axes_a]
    free_b = [i for i in builtins.range(y.ndim) if i not in axes_b]
    inner = math.prod(x.shape[i] for i in axes_a)
    left = reshape(transpose(x, free_a + axes_a), (-1, inner))
    right = reshape(transpose(y, axes_b + free_b), (inner, -1))
    return reshape(matmul(left, right), tuple(x.shape[i] for i in free_a) +
                   tuple(y.shape[i] for i in free_b))


def _as_list(ax):
    return [ax] if isinstance(ax, (int, np.integer)) else list(ax)


def _getitem(x, key) -> Tensor:
    tensor = convert_to_tensor(x)
    key = _normalize_key(key, tensor.shape)
    return apply(_P["getitem"], (tensor,), {"key": key})


def _normalize_key(key, shape):
    """Index keys as NumPy understands them; boolean masks become integer positions."""
    items = key if isinstance(key, tuple) else (key,)
    out = []
    for item in items:
        if isinstance(item, (Tensor, Variable)):
            if is_traced(item):
                raise TypeError(
                    "indexing with a Tensor that is an argument of a compiled function (or "
                    "computed from one): the positions would be frozen into the kernel. Keep "
                    "index arrays out of the traced arguments: close over them, as in "
                    "`st.grad(lambda x: f(x, index))`")
            item = item.numpy()
        if isinstance(item, list):
            item = np.asarray(item)
        if isinstance(item, np.ndarray) and item.dtype == bool:
            out.extend(np.nonzero(item))
            continue
        if isinstance(item, np.integer):
            item = int(item)
        out.append(item)
    try:
        np.broadcast_to(np.int8(0), shape)[tuple(out)]  # validates without allocating
    except IndexError as err:
        raise IndexError(f"index {key!r} is invalid for a tensor of shape {shape}: {err}") from None
    return tuple(out) if isinstance(key, tuple) or len(out) != 1 else out[0]


# ---------------------------------------------------------------- constructors


def one_hot(indices: TensorLike, depth: int, on_value=1.0, off_value=0.0, axis: int = -1,
            dtype=dtypes.float64, name: str | None = None) -> Tensor:
    """One-hot encoding of integer ``indices`` along a new ``axis`` (a constant).

    Parameters
    ----------
    indices : Tensor or array-like of int
        Positions to switch on; one outside ``[0, depth)`` gives a row of ``off_value``.
    depth : int
        The length of the new axis.
    on_value, off_value : number, default 1.0 and 0.0
    axis : int, default -1
        Where the new axis goes in the result.
    dtype : dtype, default st.float64
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        A constant of shape ``indices.shape`` with an axis of length ``depth`` inserted.

    Raises
    ------
    TypeError
        If ``indices`` are not integers.

    Examples
    --------
    >>> import symtape as st
    >>> st.one_hot([0, 2], 3).numpy()
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    idx = np.asarray(convert_to_tensor(indices).numpy())
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got {idx.dtype}")
    dtype = dtypes.as_dtype(dtype)
    hot = np.expand_dims(idx, -1) == np.arange(int(depth))
    values = np.where(hot, on_value, off_value).astype(dtype)
    if axis != -1:
        values = np.moveaxis(values, -1, axis)
    return new_constant(values)


def zeros(shape, dtype=dtypes.float64, name: str | None = None) -> Tensor:
    """A constant of zeros.

    Parameters
    ----------
    shape : int or sequence of int
    dtype : dtype, default st.float64
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        A constant, on the current device (``st.device``).

    Examples
    --------
    >>> import symtape as st
    >>> st.zeros((2,)).numpy()
    array([0., 0.])
    """
    value = np.zeros(shape, dtypes.as_dtype(dtype))
    return new_constant(value)


def ones(shape, dtype=dtypes.float64, name: str | None = None) -> Tensor:
    """A constant of ones.

    Parameters
    ----------
    shape : int or sequence of int
    dtype : dtype, default st.float64
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        A constant, on the current device (``st.device``).

    Examples
    --------
    >>> import symtape as st
    >>> st.ones((2,), dtype=st.int32).numpy()
    array([1, 1], dtype=int32)
    """
    value = np.ones(shape, dtypes.as_dtype(dtype))
    return new_constant(value)


def range(start, limit=None, delta=1, dtype=None, name: str | None = None) -> Tensor:  # noqa: A001
    """``start, start + delta, ...`` below ``limit`` (``range(n)`` counts from 0), as a constant.

    Parameters
    ----------
    start : number
        The first value; with ``limit`` None, the limit instead, counting from 0.
    limit : number, optional
        The end, not included.
    delta : number, default 1
        The step.
    dtype : dtype, optional
        Default: int64 if every argument is an int, else NumPy's choice (float64 for
        Python floats).
    name : str, optional
        A label for the result (its ``.name``); ``.expr`` is the same without it.

    Returns
    -------
    Tensor
        A 1-D constant, as ``numpy.arange(start, limit, delta)``.

    Examples
    --------
    >>> import symtape as st
    >>> st.range(3).numpy()
    array([0, 1, 2])
    >>> st.range(0.0, 1.0, 0.5).numpy()
    array([0. , 0.5])
    """
    if limit is None:
        start, limit = 0, start
    value = np.arange(start, limit, delta)
    if dtype is not None:
        value = value.astype(dtypes.as_dtype(dtype))
    elif value.dtype.kind in "iu":
        value = value.astype(dtypes.int64)
    return new_constant(value)


# ---------------------------------------------------------------- Python operators


def _install_operators() -> None:
    def reflected(op):
        return lambda self, other: op(other, self)

    def comparing(op):
        def compare(self, other):
            try:
                return op(self, other)
            except TypeError:
                return NotImplemented

        return compare

    table = {
        "__add__": add, "__radd__": reflected(add), "__sub__": subtract,
        "__rsub__": reflected(subtract), "__mul__": multiply, "__rmul__": reflected(multiply),
        "__truediv__": divide, "__rtruediv__": reflected(divide), "__pow__": pow,
        "__rpow__": reflected(pow), "__matmul__": matmul, "__rmatmul__": reflected(matmul),
        "__neg__": negative, "__pos__": convert_to_tensor, "__abs__": abs,
        "__lt__": less, "__le__": less_equal, "__gt__": greater, "__ge__": greater_equal,
        "__eq__": comparing(equal), "__ne__": comparing(not_equal), "__getitem__": _getitem,
    }
    for dunder, fn in table.items():
        setattr(Operators, dunder, fn)


_install_operators()


# ---------------------------------------------------------------- name=


def takes_name(op):
    """``op``, labelling its result with its ``name=`` argument (see the module notes).

    Every op of ``__all__`` is wrapped so, and so are ``st.random``'s constructors; ``op``
    must have a ``name`` parameter.

    Examples
    --------
    >>> labelled = takes_name(lambda x, name=None: convert_to_tensor(x) * 2)
    >>> labelled(1.5, name="twice").name
    'twice'
    """
    position = list(inspect.signature(op).parameters).index("name")

    @functools.wraps(op)
    def labelled(*args, **kwargs):
        name = args[position] if len(args) > position else kwargs.get("name")
        if name is None:
            return op(*args, **kwargs)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{op.__name__}: name must be a non-empty str (a label for the "
                            f"result), got {name!r}")
        result = op(*args, **kwargs)
        if _is_operand(result, (*args, *kwargs.values())):
            # an operand returned as it is: label a node of its own (an identity reshape, as
            # Variable.read_value makes), not the operand
            result = apply(_P["reshape"], (result,), {"shape": result.shape})
        result._name = name  # core keeps Tensor's label and memo slots (tests/test_layers.py)
        return result

    return labelled


def _is_operand(result: Tensor, operands: tuple) -> bool:
    """Whether ``result`` existed before the op: an operand, or the read of a Variable."""
    if result.primitive is None and result.source is not None:
        return True  # a Variable's read or a watched constant: never made by an op
    for operand in operands:
        items = operand if isinstance(operand, (list, tuple)) else (operand,)
        if any(item is result for item in items):
            return True
    return False


# The Python operators installed above stay the plain ops: they take no name.
for _op in __all__:
    globals()[_op] = takes_name(globals()[_op])
del _op
