"""SymPy expressions evaluated at a point with mpmath, in time polynomial in their DAG size.

``expr.evalf(subs=...)`` walks the expression as a tree and, at every function, evaluates
the argument again at a higher precision when it needs more digits: its cost doubles with
each level of nesting (``sin`` nested 16 deep: minutes), and ``exp(exp(exp(10)))`` asks for
an argument reduction of ten thousand digits. Here every distinct subexpression is
evaluated once, bottom-up, at one fixed working precision (well beyond the digits asked
for), and magnitudes are bounded: a value beyond ``2**MAX_EXPONENT`` is infinite, a
function argument too large to reduce gives ``nan``. The reference values of
:func:`symtape.check_grads` and the values the command line prints come from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import mpmath
import sympy

from symtape.arrays.objarrays import as_sympy
from symtape.core.symbolic import bottom_up

__all__ = ["evaluate", "distinct_nodes", "MAX_EXPONENT"]

MAX_EXPONENT = 2**22  # |log2(value)| beyond this is overflow (inf) or underflow (0)
_MAX_REDUCED = 2**12  # log2 of the largest argument a periodic function is reduced for
_GUARD_DIGITS = 30  # working digits beyond those asked for: cancellation may eat them


def _exp(ctx, x):
    if _real(x) and abs(x) > MAX_EXPONENT * math.log(2):
        return ctx.inf if x > 0 else ctx.zero
    return ctx.exp(x)


def _saturating(function: Callable, limit: float, at_limit: Callable) -> Callable:
    """``function``, except beyond ``|x| > limit`` where ``at_limit(x)`` is exact to any
    working precision (``tanh(1e5)`` is 1 to 80000 digits) and mpmath would work hard."""
    def apply(ctx, x):
        return at_limit(ctx, x) if _real(x) and abs(x) > limit else function(ctx, x)
    return apply


def _periodic(name: str) -> Callable:
    def apply(ctx, x):
        if ctx.isfinite(x) and x != 0 and ctx.mag(x) > _MAX_REDUCED:
            return ctx.nan  # its reduction modulo pi would need thousands of digits
        return getattr(ctx, name)(x)
    return apply


def _real(x) -> bool:
    return type(x).__name__ == "mpf"  # of the context's own class (a clone has its own)


def _sign(ctx, x):
    return ctx.sign(x) if _real(x) else ctx.nan


_EXPONENTIAL_LIMIT = MAX_EXPONENT * math.log(2)
_UNARY: dict[type, Callable] = {
    sympy.exp: _exp,
    sympy.log: lambda ctx, x: ctx.log(x),
    sympy.sin: _periodic("sin"), sympy.cos: _periodic("cos"), sympy.tan: _periodic("tan"),
    sympy.asin: lambda ctx, x: ctx.asin(x), sympy.acos: lambda ctx, x: ctx.acos(x),
    sympy.atan: lambda ctx, x: ctx.atan(x),
    sympy.sinh: _saturating(lambda ctx, x: ctx.sinh(x), _EXPONENTIAL_LIMIT,
                            lambda ctx, x: ctx.inf if x > 0 else -ctx.inf),
    sympy.cosh: _saturating(lambda ctx, x: ctx.cosh(x), _EXPONENTIAL_LIMIT,
                            lambda ctx, x: ctx.inf),
    sympy.tanh: _saturating(lambda ctx, x: ctx.tanh(x), 1e5, _sign),
    sympy.erf: _saturating(lambda ctx, x: ctx.erf(x), 1e5, _sign),
    sympy.Abs: lambda ctx, x: abs(x),
    sympy.sign: _sign,
}


def _power(ctx, base, exponent):
    if base == 0 or exponent == 0 or not (_real(base) and _real(exponent)):
        return ctx.power(base, exponent)
    if ctx.isfinite(base) and ctx.isfinite(exponent):
        size = float(abs(exponent)) * abs(float(ctx.log(abs(base), 2)))
        if size > MAX_EXPONENT:  # overflow or underflow: mpmath would build the number
            grows = (abs(base) > 1) == (exponent > 0)
            if not grows:
                return ctx.zero
            odd = ctx.isint(exponent) and int(exponent) % 2
            return -ctx.inf if base < 0 and odd else (
                ctx.inf if base > 0 or ctx.isint(exponent) else ctx.nan)
    return ctx.power(base, exponent)


def _piecewise(ctx, *pairs):
    for value, condition in pairs:
        if condition is ctx.nan:
            return ctx.nan
        if condition:
            return value
    return ctx.nan


_COMPARE: dict[type, Callable] = {
    sympy.StrictGreaterThan: lambda a, b: a > b, sympy.GreaterThan: lambda a, b: a >= b,
    sympy.StrictLessThan: lambda a, b: a < b, sympy.LessThan: lambda a, b: a <= b,
    sympy.Equality: lambda a, b: a == b, sympy.Unequality: lambda a, b: a != b,
}


def _node(ctx, expr: sympy.Basic, args: list):
    """The value of one node from its arguments' values."""
    if expr.is_Add:
        return ctx.fsum(args)
    if expr.is_Mul:
        return ctx.fprod(args)
    if expr.is_Pow:
        return _power(ctx, *args)
    if type(expr) in _UNARY:
        return _UNARY[type(expr)](ctx, args[0])
    if type(expr) in _COMPARE:
        return _COMPARE[type(expr)](*args) if all(map(_real, args)) else ctx.nan
    if isinstance(expr, sympy.Piecewise):
        return _piecewise(ctx, *args)
    if isinstance(expr, sympy.functions.elementary.piecewise.ExprCondPair):
        return tuple(args)
    if isinstance(expr, (sympy.Max, sympy.Min)):
        pick = max if isinstance(expr, sympy.Max) else min
        return pick(args) if all(map(_real, args)) and not any(map(ctx.isnan, args)) else ctx.nan
    if isinstance(expr, sympy.atan2):
        return ctx.atan2(*args)
    if isinstance(expr, sympy.Heaviside):
        x, at_zero = args if len(args) == 2 else (args[0], ctx.mpf(0.5))
        return ctx.one if x > 0 else ctx.zero if x < 0 else at_zero
    if isinstance(expr, (sympy.And, sympy.Or, sympy.Not)):
        return {sympy.And: all, sympy.Or: any, sympy.Not: lambda a: not a[0]}[expr.func](args)
    # anything else: SymPy's own evaluation of this one node, its arguments being numbers
    return _atom(ctx, expr.func(*[sympy.Float(a, ctx.dps) if _real(a) else a for a in args]))


def _atom(ctx, expr: sympy.Basic):
    if expr.is_Rational:
        return ctx.mpf(expr.p) / expr.q
    if expr is sympy.true or expr is sympy.false:
        return bool(expr)
    if expr in (sympy.zoo, sympy.nan):
        return ctx.nan
    value = sympy.N(expr, ctx.dps)
    if value.is_Float:
        return ctx.mpf(value._mpf_)
    number = complex(value)
    return ctx.mpc(number.real, number.imag) if number.imag else ctx.mpf(number.real)


def _bounded(ctx, value):
    """Values beyond ``2**MAX_EXPONENT`` are infinite (so later steps stay cheap)."""
    if isinstance(value, tuple):  # a Piecewise's (value, condition) pair
        return value
    if _real(value) and ctx.isfinite(value) and value != 0:
        if ctx.mag(value) > MAX_EXPONENT:
            return ctx.inf if value > 0 else -ctx.inf
        if ctx.mag(value) < -MAX_EXPONENT:
            return ctx.zero
    return value


def evaluate(exprs: Iterable[sympy.Basic], point: dict, digits: int = 30) -> list:
    """The values of ``exprs`` with the symbols at ``point`` (exact or float numbers), as
    Python floats, complex numbers for complex values, ``nan`` where undefined.

    Parameters
    ----------
    exprs : iterable of sympy.Basic
    point : dict
        Symbol to value (SymPy or Python numbers); every free symbol of ``exprs`` needs one.
    digits : int, default 30
        Significant digits of the working precision (a few guard digits are added), so
        deep nestings evaluate without cancelling to noise.

    Returns
    -------
    list of float or complex
        One per expression; ``inf`` where a value overflows a float.

    Examples
    --------
    >>> x = sympy.Symbol("x", real=True)
    >>> e = x
    >>> for _ in range(40):
    ...     e = sympy.sin(e)
    >>> [round(v, 12) for v in evaluate([e, sympy.diff(e, x)], {x: sympy.Rational(1, 2)})]
    [0.23812809128, 0.103623966893]
    >>> evaluate([sympy.exp(sympy.exp(sympy.exp(x))), sympy.log(1 - x)], {x: 10})
    [inf, (2.1972245773362196+3.141592653589793j)]
    """
    ctx = mpmath.mp.clone()
    ctx.dps = digits + _GUARD_DIGITS
    values: dict = {symbol: _atom(ctx, as_sympy(value)) for symbol, value in point.items()}
    results = []
    for root in exprs:
        value = bottom_up(root, values, lambda expr, args: _value_of(ctx, expr, args))
        results.append(_python(ctx, value, digits))
    return results


def _value_of(ctx, expr: sympy.Basic, args: list):
    try:
        return _bounded(ctx, _node(ctx, expr, args) if expr.args else _atom(ctx, expr))
    except (ArithmeticError, ValueError, TypeError, AttributeError):  # 1/0, log(0)
        return ctx.nan


def _python(ctx, value, digits: int):
    if isinstance(value, bool):
        return float(value)
    if type(value).__name__ == "mpc":
        if abs(value.imag) <= ctx.mpf(10) ** -digits * max(abs(value.real), 1):
            return float(value.real)
        return complex(value)
    return float(value)


def distinct_nodes(expr: sympy.Basic) -> list:
    """Every distinct subexpression of ``expr``, once each (``preorder_traversal`` visits a
    shared subtree once per occurrence: exponentially often in a recorded DAG).

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> sorted(map(str, distinct_nodes(sympy.sin(x) * sympy.sin(x) ** 2)))
    ['3', 'sin(x)', 'sin(x)**3', 'x']
    """
    seen, stack = {expr}, [expr]
    while stack:
        for arg in stack.pop().args:
            if arg not in seen:
                seen.add(arg)
                stack.append(arg)
    return list(seen)
