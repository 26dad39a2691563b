"""From a SymPy expression to a function of Tensors that computes it with symtape's ops.

This is how a closed form a user already has (typed on the command line, parsed by
``st.parse``, or built with SymPy) gets symtape's derivatives: the function records on a
``GradientTape`` like any other, so its gradient and Hessian come from symtape's own rules
and can be checked against ``sympy.diff`` and finite differences. Exact numbers stay exact:
``x/3`` records a multiplication by a constant whose closed form is ``1/3``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy

from symtape.core import ops
from symtape.arrays.dtypes import float64
from symtape.core.tensor import Tensor, weak_constant

__all__ = ["tensor_function"]

_FLOAT_MAX = sympy.Integer(int(np.finfo(np.float64).max))
_UNARY: dict[type, Callable[[Tensor], Tensor]] = {
    sympy.exp: ops.exp, sympy.log: ops.log, sympy.sin: ops.sin, sympy.cos: ops.cos,
    sympy.tan: ops.tan, sympy.asin: ops.asin, sympy.acos: ops.acos, sympy.atan: ops.atan,
    sympy.sinh: ops.sinh, sympy.cosh: ops.cosh, sympy.tanh: ops.tanh, sympy.erf: ops.erf,
    sympy.Abs: ops.abs, sympy.sign: ops.sign,
}
_COMPARISONS: dict[type, Callable[[Tensor, Tensor], Tensor]] = {
    sympy.StrictGreaterThan: ops.greater, sympy.GreaterThan: ops.greater_equal,
    sympy.StrictLessThan: ops.less, sympy.LessThan: ops.less_equal,
    sympy.Equality: ops.equal, sympy.Unequality: ops.not_equal,
}


def _number(expr: sympy.Expr):
    """Integers and floats as Python numbers; other exact numbers keep their closed form."""
    if expr.is_Rational and abs(expr) > _FLOAT_MAX:
        raise ValueError(f"the constant {sympy.Float(expr, 3)} is beyond the float64 range "
                         "(1.8e308) that symtape computes in; rescale the expression")
    if expr.is_Integer:
        return int(expr)
    if expr.is_Float:
        return float(expr)
    value = complex(expr.evalf(20))
    if value.imag != 0:
        raise ValueError(f"the constant {expr} is not real")
    return weak_constant(value.real, float64, expr)


class _Lowering:
    def __init__(self, symbols: Sequence[sympy.Symbol], arguments: Sequence):
        self.values: dict[sympy.Basic, object] = dict(zip(symbols, arguments))

    def __call__(self, expr: sympy.Basic):
        known = self.values.get(expr)
        if known is None:
            known = self.values[expr] = self.lower(expr)
        return known

    def lower(self, expr: sympy.Basic):
        if expr.is_Symbol:
            raise ValueError(f"the expression has the free symbol {expr}, which is not one of "
                             "the arguments; list it among the variables")
        if not expr.free_symbols and expr.is_number and not expr.is_Relational:
            return _number(expr)
        args = expr.args
        if expr.is_Add:
            return self.fold(ops.add, args)
        if expr.is_Mul:
            if args[0] == -1:
                return ops.negative(self.fold(ops.multiply, args[1:]))
            return self.fold(ops.multiply, args)
        if expr.is_Pow:
            return self.power(*args)
        if type(expr) in _UNARY:
            return _UNARY[type(expr)](self(args[0]))
        if isinstance(expr, (sympy.Max, sympy.Min)):
            return self.fold(ops.maximum if isinstance(expr, sympy.Max) else ops.minimum, args)
        if isinstance(expr, sympy.atan2):
            return ops.atan2(self(args[0]), self(args[1]))
        if type(expr) in _COMPARISONS:
            return _COMPARISONS[type(expr)](self(args[0]), self(args[1]))
        if isinstance(expr, sympy.Piecewise):
            return self.piecewise(args)
        if isinstance(expr, sympy.Heaviside):
            x = self(args[0])
            at_zero = self(args[1]) if len(args) > 1 else 0.5
            return ops.where(ops.greater(x, 0), 1.0, ops.where(ops.less(x, 0), 0.0, at_zero))
        raise ValueError(f"symtape has no op for {type(expr).__name__} (in {expr}); write it "
                         "with the elementwise ops (exp, log, sin, ..., maximum, where)")

    def fold(self, op, args):
        result = self(args[0])
        for arg in args[1:]:
            result = op(result, self(arg))
        return result

    def power(self, base, exponent):
        if exponent == sympy.S.Half:
            return ops.sqrt(self(base))
        if exponent.is_Integer or exponent.is_Float:
            return ops.pow(self(base), _number(exponent))
        return ops.pow(self(base), self(exponent))

    def piecewise(self, pieces):
        *conditional, (otherwise, last) = pieces
        if last is not sympy.true:
            raise ValueError(f"the Piecewise {sympy.Piecewise(*pieces)} has no otherwise "
                             "branch (a last condition True); add one")
        result = self(otherwise)
        for value, condition in reversed(conditional):
            if isinstance(condition, (sympy.And, sympy.Or, sympy.Not)):
                raise ValueError(f"the condition {condition} combines comparisons; nest the "
                                 "Piecewise instead")
            result = ops.where(self(condition), self(value), result)
        return result


def tensor_function(expr: sympy.Basic, symbols: Sequence[sympy.Symbol]) -> Callable[..., Tensor]:
    """A function of Tensors computing ``expr``; argument ``i`` stands for ``symbols[i]``.

    The result records on tapes and traces like any function written with symtape's ops,
    so ``tape.gradient``, ``st.grad`` and ``st.check_grads`` apply to it.

    Parameters
    ----------
    expr : sympy.Basic
    symbols : sequence of sympy.Symbol
        The arguments, in order; every free symbol of ``expr`` must be among them.

    Returns
    -------
    callable
        Takes ``len(symbols)`` Tensors (or numbers), returns a Tensor.

    Raises
    ------
    TypeError
        If ``expr`` is not SymPy (and, at a call, for the wrong number of arguments).
    ValueError
        If ``expr`` has free symbols that are not in ``symbols``.

    Examples
    --------
    >>> import symtape as st
    >>> x, y = sympy.symbols("x y", real=True)
    >>> f = tensor_function(x**2 * sympy.sin(y) + x / 3, [x, y])
    >>> a, b = st.Variable(2.0, name="x"), st.Variable(0.0, name="y")
    >>> with st.GradientTape() as tape:
    ...     value = f(a, b)
    >>> [g.expr for g in tape.gradient(value, [a, b])]
    [2*x*sin(y) + 1/3, x**2*cos(y)]
    """
    if not isinstance(expr, sympy.Basic):
        raise TypeError(f"expected a SymPy expression, got {type(expr).__name__}")
    symbols = list(symbols)
    missing = expr.free_symbols - set(symbols)
    if missing:
        raise ValueError(f"the expression has free symbols {sorted(map(str, missing))} that are "
                         "not among the arguments; list them among the variables")

    def function(*arguments):
        if len(arguments) != len(symbols):
            raise TypeError(f"expected {len(symbols)} arguments ({', '.join(map(str, symbols))}),"
                            f" got {len(arguments)}")
        with np.errstate(all="ignore"):
            return ops.add(_Lowering(symbols, arguments)(expr), 0.0)

    function.__name__ = "expression"
    return function
