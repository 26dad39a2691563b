"""The primitive registry: every op symtape can record, each defined exactly once.

A primitive carries its forms and rules:

- ``numeric(xp, *values, **params)``: the forward value, generic over the array module
  ``xp`` (NumPy or CuPy);
- ``symbolic(*exprs, **params)``: the same op on symbolic values (SymPy expressions, or
  object arrays of them; see :mod:`symtape.arrays.objarrays`);
- ``vjp``: one derivative rule per argument, ``rule(A, g, out, *xs, **params)`` returning
  the cotangent of that argument given the output cotangent ``g``;
- what the kernel generators read, beside the rules (as JAX files a primitive's batching
  rule beside it): ``batch``, how a structural op maps over leading batch axes, and for an
  elementwise op its ``printed`` form (the array-code expression), its ``scalar`` form (a
  Numba loop's code), its ``cuda`` form (a fused CuPy kernel's C code) and the
  ``signature`` of its dtypes. A new primitive without them still compiles: it is called
  through its ``numeric`` form, unbatched and unfused.

A rule is written once against an *algebra* ``A`` (see :mod:`symtape.core.algebra`) and
Python's operators, so the same line computes a numeric gradient (``A`` over arrays), an
exact closed form (``A`` over SymPy) or a recorded, differentiable-again gradient (``A``
over Tensors). ``A.<name>`` applies the primitive ``<name>`` in that world.

Conventions at non-smooth points, fixed here for both worlds: ``relu'(0) = 0``,
``abs'(0) = sign(0) = 0``, ``maximum`` sends the cotangent to its first argument on ties
(as TensorFlow does), ``reduce_max`` shares it equally between tied entries, and the
exponent-gradient of ``a ** b`` is taken as 0 where ``a <= 0`` (where ``log(a)`` is not real).

Examples
--------
>>> from symtape.core.primitives import REGISTRY
>>> REGISTRY["sin"].symbolic(sympy.Symbol("x"))
sin(x)
"""

from __future__ import annotations

import dis
import inspect
import math
import operator
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import sympy
from sympy.core.parameters import global_parameters

from symtape.arrays import objarrays

__all__ = ["Primitive", "REGISTRY", "register", "add_at", "is_basic_index", "expand_axes"]

Rule = Callable[..., Any]


@dataclass(frozen=True, eq=False)
class Primitive:
    """One recordable op: numeric forward, symbolic form and derivative rules.

    Attributes
    ----------
    name : str
        The registry key, and the attribute name of the op in every algebra.
    numeric : callable
        ``(xp, *values, **params) -> array``.
    symbolic : callable
        ``(*symbolic_values, **params) -> symbolic value`` (vectorized over object arrays).
    vjp : tuple of callables, a callable, or None
        One rule per argument (``None`` where the argument gets no gradient); a single
        callable ``rule(A, argnum, g, out, *xs, **params)`` for n-ary primitives; ``None``
        for non-differentiable primitives.
    linear : bool
        The rules read only the shapes and dtypes of ``out`` and ``xs``, not their values
        (the symbolic sweep then never builds those forward expressions).
    elementwise : bool
        Broadcasting elementwise: its rules accept a cotangent of any shape that broadcasts
        to the output's, so a uniform cotangent need not be expanded first.
    reads : tuple of frozensets
        Per argument, the positions of the forward values its rule reads (``-1`` for
        ``out``, ``i`` for input ``i``); found once, from the rule's code, so the symbolic
        sweep builds only the forward expressions a rule uses.
    batch : callable or None
        A structural (not elementwise) op over leading batch axes: ``batch(ranks, **params)``
        gives ``(call, batchable)``, ``call(xp, *values)`` computing the op on values that
        may carry extra leading axes before their core ranks ``ranks``, and ``batchable``
        False where that is only right without batch axes. None: the ``numeric`` form,
        unbatched.
    printed : callable or None
        An elementwise op as the array kernels print it: ``printed(*exprs, **params)`` is an
        unevaluated SymPy node that SymPy's array printers write as NumPy code (``sin`` is
        ``numpy.sin``). None: printed as a call of the ``numeric`` form.
    scalar : str, callable or None
        An elementwise op in a compiled loop (the Numba generator), on scalar locals, in
        NumPy's scalar semantics with the generator's helpers (``_maximum``, ``np.sin``):
        a template of the arguments' codes (``"np.sin({0})"``), or
        ``scalar(p, *codes, **params)`` for forms that read parameters, where the printer
        ``p`` gives ``p.literal(number)`` and ``p.float64(code)`` (the code converted where
        the result is float64). None: not fused (computed by the array code).
    cuda : callable or None
        An elementwise op printed as a call (``printed`` is None), in a fused CuPy kernel:
        ``cuda(p, out, *args, **params)`` is its CUDA C code of dtype ``out``, written with
        the C printer ``p`` of :mod:`symtape.kernels.cupy_fused` (``p.value(arg, dtype)``,
        ``p.math(name, args, dtype)``, ``p.literal(number, dtype)``, ...). None: the call
        stays a CuPy call between fused kernels.
    terms : tuple of int, or None
        A sum (``add``, ``sub``): the sign of each argument's terms. Closed forms merge a
        chain of sums into one sum of all their terms, as a tape of ``+=`` means.
    signature : str
        How an elementwise op's result dtype follows from its operands', for the fused
        generators: ``'float'`` (floats in, their promoted float out), ``'float_literal'``
        (the same with a float literal among the operands: relu's 0.0), ``'comparison'``
        (two numbers in, bool out), ``'logical'`` (bool in, bool out), ``'select'`` (a bool
        condition, then two values of the promoted dtype), ``'cast'`` (to its ``dtype``).
    """

    name: str
    numeric: Callable[..., Any]
    symbolic: Callable[..., Any]
    vjp: tuple[Rule | None, ...] | Rule | None
    linear: bool = False
    reads: tuple[frozenset | None, ...] = ()
    elementwise: bool = False
    batch: Callable[..., Any] | None = None
    printed: Callable[..., Any] | None = None
    scalar: str | Callable[..., str] | None = None
    cuda: Callable[..., str] | None = None
    signature: str = "float"
    terms: tuple[int, ...] | None = None

    def rule(self, argnum: int) -> Rule | None:
        """The derivative rule of argument ``argnum``, as ``rule(A, g, out, *xs, **params)``."""
        if self.vjp is None:
            return None
        if callable(self.vjp):
            nary = self.vjp
            return lambda A, g, out, *xs, **params: nary(A, argnum, g, out, *xs, **params)
        return self.vjp[argnum]

    def __repr__(self) -> str:
        return f"Primitive({self.name!r})"


REGISTRY: dict[str, Primitive] = {}  # filled at import, read-only afterwards


def register(name: str, *, numeric, symbolic, vjp=None, elementwise: bool = False,
             linear: bool = False, batch=None, printed=None, scalar=None, cuda=None,
             signature: str = "float", terms: tuple[int, ...] | None = None) -> Primitive:
    """Register a primitive once; ``elementwise`` symbolic forms take scalars and get vectorized.

    Parameters
    ----------
    name : str
        The registry key; each name is registered once.
    numeric, symbolic, vjp, linear
        As the :class:`Primitive` attributes of those names.
    elementwise : bool, default False
        A broadcasting elementwise op: ``symbolic`` takes scalar expressions and is
        vectorized over object arrays here.
    batch, printed, scalar, cuda, signature, terms
        What the kernel generators and closed forms read, as the :class:`Primitive`
        attributes of those names.

    Returns
    -------
    Primitive
        The registered primitive (also ``REGISTRY[name]``).

    Raises
    ------
    ValueError
        If ``name`` is already registered.

    Examples
    --------
    >>> register("sin", numeric=np.sin, symbolic=sympy.sin)
    Traceback (most recent call last):
    ...
    ValueError: primitive 'sin' is registered twice
    """
    if name in REGISTRY:
        raise ValueError(f"primitive {name!r} is registered twice")
    if elementwise:
        symbolic = _vectorize(symbolic)
    reads = tuple(_reads(rule) for rule in vjp) if isinstance(vjp, tuple) else ()
    REGISTRY[name] = prim = Primitive(name, numeric, symbolic, vjp, linear, reads, elementwise,
                                      batch, printed, scalar, cuda, signature, terms)
    return prim


def _reads(rule: Rule | None) -> frozenset | None:
    """Which forward values (``-1`` = out, ``i`` = input i) a rule's code loads; None = all."""
    if rule is None:
        return frozenset()
    params = list(inspect.signature(rule).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    names: set[str] = set()
    for instruction in dis.get_instructions(rule):
        if instruction.opname.startswith(("LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE")):
            value = instruction.argval
            names.update(value if isinstance(value, tuple) else (value,))
    # parameters: A, g, out, then the inputs; keyword-only parameters are the op's params
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][2:]
    return frozenset(i - 1 for i, name in enumerate(positional) if name in names)


def _vectorize(scalar_form: Callable[..., Any]) -> Callable[..., Any]:
    """Lift a scalar SymPy form to object arrays, broadcasting like NumPy."""

    def form(*xs, **params):
        if not any(isinstance(x, np.ndarray) for x in xs):
            return scalar_form(*xs, **params)
        ufunc = np.frompyfunc(lambda *args: scalar_form(*args, **params), len(xs), 1)
        return objarrays.normalize(ufunc(*xs))

    return form


# ---------------------------------------------------------------- applying SymPy functions
#
# SymPy's own evaluation of ``sin(arg)`` inspects the whole argument (``is_number`` walks
# it to its first symbol), so a recurrence ``y = sin(y)`` costs O(depth) a step, quadratic
# overall; and its sign rule ``f(-u) = -f(u)`` loops forever on the sums symtape builds with
# numbers kept outside (``distribute(False)`` makes ``-(u)`` the node ``-1*u``, and both
# ``u = -a - b`` and ``-1*u`` claim the minus sign). So a function of a compound argument is
# built here: the sign rule applied once, on a canonical negation, then SymPy's node without
# its evaluation. Atoms (numbers, symbols) get SymPy's full evaluation: it is cheap on them;
# so does everything built outside symtape's factored setting (``symbolic.factored``).
_ODD, _EVEN = 1, 2


def _function_of(function, parity: int = 0) -> Callable[[Any], Any]:
    """``function`` of one argument at a cost independent of the argument's size.

    Examples
    --------
    >>> from symtape.core.symbolic import factored
    >>> a, b = sympy.symbols("a b", real=True)
    >>> with factored():
    ...     _function_of(sympy.sin, _ODD)(-a - b), _function_of(sympy.cos, _EVEN)(-a - b)
    (-sin(a + b), cos(a + b))
    """
    def form(x):
        if global_parameters.distribute or not isinstance(x, sympy.Expr) or x.is_Atom:
            return function(x)  # outside symtape's factored builds (st.parse): SymPy's own
        negative, x = _without_minus(x) if parity else (False, x)
        out = function(x, evaluate=False)
        return -out if negative and parity == _ODD else out

    return form


def _without_minus(x) -> tuple[bool, Any]:
    """``(True, -x)`` when ``x`` reads with a minus sign (a negative coefficient, a sum with
    more negative terms than positive ones, or a number times such a sum), ``(False, x)``
    otherwise; the negation of a sum is the sum of its negated terms, which never claims the
    sign back, so the choice is made once."""
    if x.is_Add:
        return (True, _negated_sum(x)) if _mostly_negative(x) else (False, x)
    if x.is_Mul and len(x.args) == 2 and x.args[0].is_Number and x.args[1].is_Add:
        coefficient, total = x.args  # c*(u + v), kept whole by distribute(False)
        flipped = _mostly_negative(total)
        total = _negated_sum(total) if flipped else total
        negative = bool(coefficient.is_extended_negative)
        return flipped != negative, abs(coefficient) * total
    return (True, -x) if _leading_minus(x) else (False, x)


def _mostly_negative(total) -> bool:
    return 2 * sum(map(_leading_minus, total.args)) > len(total.args)


def _leading_minus(term) -> bool:
    coefficient = term.args[0] if term.is_Mul else term
    return bool(coefficient.is_Number and coefficient.is_extended_negative)


def _negated_sum(total):
    return sympy.Add(*[-term for term in total.args])


_exp, _log, _acos = (_function_of(f) for f in (sympy.exp, sympy.log, sympy.acos))
_sin, _tan, _asin, _atan, _sinh, _tanh, _erf, _sign = (
    _function_of(f, _ODD) for f in (sympy.sin, sympy.tan, sympy.asin, sympy.atan, sympy.sinh,
                                    sympy.tanh, sympy.erf, sympy.sign))
_cos, _cosh, _abs = (_function_of(f, _EVEN) for f in (sympy.cos, sympy.cosh, sympy.Abs))


# ---------------------------------------------------------------- printed forms
#
# The op as an unevaluated SymPy node (``printed``): the array kernels' printed code is the
# recorded computation, and building it costs microseconds (evaluating SymPy's canonical
# forms costs ~50 µs a node, which dominates on graphs of scalar ops). Multiplying by an
# exact 1 is skipped.
_ONE, _MINUS_ONE = sympy.S.One, sympy.S.NegativeOne
# raw constructors: no canonicalization at all (the arguments are SymPy objects already)
_MUL = partial(sympy.Mul._from_args, is_commutative=True)
_ADD = partial(sympy.Add._from_args, is_commutative=True)
_POW = partial(sympy.Pow, evaluate=False)


def _negated(expr):
    return -expr if expr.is_Number else _MUL((_MINUS_ONE, expr))


def _printed_mul(a, b):
    if a.is_Number and b.is_Number:
        return a * b
    return b if a == _ONE else a if b == _ONE else _MUL((a, b))


def _printed_div(a, b):
    inverse = _POW(b, _MINUS_ONE)
    return inverse if a == _ONE else _MUL((a, inverse))


def _unevaluated(function) -> Callable[..., Any]:
    return lambda *args: function(*args, evaluate=False)


# ---------------------------------------------------------------- CUDA C forms
#
# Elementwise ops printed as calls (no SymPy node of their own) in a fused CuPy kernel:
# ``form(p, out, *args, **params)`` with the C printer ``p``, in NumPy's semantics (NaN
# propagates, signed zeros kept, sigmoid and softplus never overflow).
_BOOL = np.dtype(bool)


def _cuda_math(function: str):
    return lambda p, out, x: p.math(function, [x], out)


def _cuda_not(p, out, x):
    own = p.dtype(x)
    if own == _BOOL:
        return f"(!{p.value(x, _BOOL)})"
    return f"({p.value(x, own)} == {p.literal(sympy.S.Zero, own)})"


def _cuda_where(p, out, c, a, b):
    return f"({p.value(c, _BOOL)} ? {p.value(a, out)} : {p.value(b, out)})"


def _cuda_extremum(maximum: bool):
    return lambda p, out, a, b: p.extremum(maximum, p.let_as(a, out), b, out)


def _cuda_log_real(p, out, x):
    x = p.let_as(x, out)
    zero = p.literal(sympy.S.Zero, out)
    return f"({x} > {zero} ? {p.named('log', x, out)} : {zero})"


def _cuda_exp_minus_abs(p, out, x: str) -> str:
    """A local holding ``exp(-|x|)`` (what the stable forms below share)."""
    return p.constant(p.named("exp", "-" + p.named("fabs", x, out), out), out)


def _cuda_sigmoid(p, out, x):
    x = p.let_as(x, out)
    e = _cuda_exp_minus_abs(p, out, x)
    one, zero = p.literal(sympy.S.One, out), p.literal(sympy.S.Zero, out)
    return f"({x} >= {zero} ? {one} / ({one} + {e}) : {e} / ({one} + {e}))"


def _cuda_softplus(p, out, x):
    x = p.let_as(x, out)
    e = _cuda_exp_minus_abs(p, out, x)
    zero = p.literal(sympy.S.Zero, out)
    return f"((({x} > {zero} || {x} != {x}) ? {x} : {zero}) + {p.named('log1p', e, out)})"


def _unary(name, numeric, symbolic, rule=None, linear=False, printed=None, scalar=None,
           cuda=None, signature="float"):
    return register(name, numeric=numeric, symbolic=symbolic,
                    vjp=None if rule is None else (rule,), elementwise=True, linear=linear,
                    printed=printed, scalar=scalar, cuda=cuda, signature=signature)


# ---------------------------------------------------------------- arithmetic
register("add", numeric=lambda xp, a, b: a + b, symbolic=operator.add, elementwise=True,
         linear=True, vjp=(lambda A, g, out, a, b: g, lambda A, g, out, a, b: g),
         printed=lambda a, b: _ADD((a, b)), scalar="{0} + {1}", terms=(1, 1))
register("sub", numeric=lambda xp, a, b: a - b, symbolic=operator.sub, elementwise=True,
         linear=True, vjp=(lambda A, g, out, a, b: g, lambda A, g, out, a, b: -g),
         printed=lambda a, b: _ADD((a, _negated(b))), scalar="{0} - {1}", terms=(1, -1))
register("mul", numeric=lambda xp, a, b: a * b, symbolic=operator.mul, elementwise=True,
         vjp=(lambda A, g, out, a, b: g * b, lambda A, g, out, a, b: a * g), printed=_printed_mul,
         scalar="{0} * {1}")
register("div", numeric=lambda xp, a, b: a / b, symbolic=operator.truediv, elementwise=True,
         vjp=(lambda A, g, out, a, b: g / b, lambda A, g, out, a, b: -g * out / b),
         printed=_printed_div, scalar="{0} / {1}")
_unary("neg", lambda xp, x: -x, operator.neg, lambda A, g, out, x: -g, linear=True,
       printed=_negated, scalar="-{0}")


def _powc_rule(A, g, out, x, exponent):
    # (c * g) first: numbers combine before they meet a sum (SymPy distributes them over it)
    if exponent == 2:
        return (2 * g) * x
    if exponent == 1:
        return g
    if exponent == 0:  # x**0 is constant: not 0 * x**-1, which is NaN at 0
        return A.zeros_like(g)
    return (A.const(exponent) * g) * A.powc(x, exponent=exponent - 1)


def _powc_scalar(p, x, exponent):
    # the exact forms NumPy's power takes for these exponents (x*x, sqrt, reciprocal)
    if exponent == 2:
        return f"{x} * {x}"
    if exponent == 0.5:
        return f"np.sqrt({x})"
    if exponent == 1:
        return f"+{x}"
    if exponent == -1:
        return f"1.0 / {x}"
    if exponent == 0:
        return "1.0"
    return f"_power({x}, {p.literal(exponent)})"


# x ** c with a constant exponent: the exponent is a parameter, kept exact in the symbolic form
register("powc", numeric=lambda xp, x, exponent: x ** exponent,
         symbolic=lambda x, exponent: x ** objarrays.exact_number(exponent),
         elementwise=True, vjp=(_powc_rule,),
         printed=lambda x, exponent: _POW(x, objarrays.exact_number(exponent)),
         scalar=_powc_scalar)
register("pow", numeric=lambda xp, a, b: a ** b, symbolic=operator.pow, elementwise=True,
         vjp=(lambda A, g, out, a, b: g * b * A.pow(a, b - 1),
              lambda A, g, out, a, b: g * out * A.log_real(a)), printed=_POW,
         scalar="_power({0}, {1})")


def _log_real_numeric(xp, x):
    positive = x > 0
    return xp.where(positive, xp.log(xp.where(positive, x, 1)), 0)


# log where it is real, 0 elsewhere: the exponent-gradient of a ** b (TensorFlow's convention),
# the same in both worlds
_unary("log_real", _log_real_numeric, lambda x: sympy.Piecewise((_log(x), x > 0), (0, True)),
       lambda A, g, out, x: g / x,
       scalar="_log_real({0})",
       cuda=_cuda_log_real)

# ---------------------------------------------------------------- elementwise functions
_unary("exp", lambda xp, x: xp.exp(x), _exp, lambda A, g, out, x: g * out,
       printed=_unevaluated(sympy.exp), scalar="np.exp({0})")
_unary("log", lambda xp, x: xp.log(x), _log, lambda A, g, out, x: g / x,
       printed=_unevaluated(sympy.log), scalar="np.log({0})")
_unary("log1p", lambda xp, x: xp.log1p(x), lambda x: _log(1 + x),
       lambda A, g, out, x: g / (1 + x),
       scalar="np.log1p({0})",
       cuda=_cuda_math("log1p"))
_unary("sqrt", lambda xp, x: xp.sqrt(x), sympy.sqrt, lambda A, g, out, x: g / (2 * out),
       printed=_unevaluated(sympy.sqrt), scalar="np.sqrt({0})")
_unary("sin", lambda xp, x: xp.sin(x), _sin, lambda A, g, out, x: g * A.cos(x),
       printed=_unevaluated(sympy.sin), scalar="np.sin({0})")
_unary("cos", lambda xp, x: xp.cos(x), _cos, lambda A, g, out, x: -g * A.sin(x),
       printed=_unevaluated(sympy.cos), scalar="np.cos({0})")
_unary("tan", lambda xp, x: xp.tan(x), _tan, lambda A, g, out, x: g * (1 + out * out),
       printed=_unevaluated(sympy.tan), scalar="np.tan({0})")
_unary("asin", lambda xp, x: xp.arcsin(x), _asin,
       lambda A, g, out, x: g / A.sqrt(1 - x * x),
       printed=_unevaluated(sympy.asin), scalar="np.arcsin({0})")
_unary("acos", lambda xp, x: xp.arccos(x), _acos,
       lambda A, g, out, x: -g / A.sqrt(1 - x * x),
       printed=_unevaluated(sympy.acos), scalar="np.arccos({0})")
_unary("atan", lambda xp, x: xp.arctan(x), _atan, lambda A, g, out, x: g / (1 + x * x),
       printed=_unevaluated(sympy.atan), scalar="np.arctan({0})")
_unary("sinh", lambda xp, x: xp.sinh(x), _sinh, lambda A, g, out, x: g * A.cosh(x),
       printed=_unevaluated(sympy.sinh), scalar="np.sinh({0})")
_unary("cosh", lambda xp, x: xp.cosh(x), _cosh, lambda A, g, out, x: g * A.sinh(x),
       printed=_unevaluated(sympy.cosh), scalar="np.cosh({0})")
_unary("tanh", lambda xp, x: xp.tanh(x), _tanh, lambda A, g, out, x: g * (1 - out * out),
       printed=_unevaluated(sympy.tanh), scalar="np.tanh({0})")


def _erf_numeric(xp, x):
    if xp is np:
        return np.vectorize(math.erf, otypes=[np.result_type(x)])(x)[()]
    import cupyx.scipy.special  # only reached with CuPy values

    return cupyx.scipy.special.erf(x)


_TWO_OVER_SQRT_PI = (2 / math.sqrt(math.pi), 2 / sympy.sqrt(sympy.pi))
_unary("erf", _erf_numeric, _erf,
       lambda A, g, out, x: g * A.const(*_TWO_OVER_SQRT_PI) * A.exp(-(x * x)),
       scalar="math.erf({0})",
       cuda=_cuda_math("erf"))


def _sigmoid_numeric(xp, x):
    e = xp.exp(-xp.abs(x))  # never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))[()]


def _softplus_numeric(xp, x):
    return (xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x))))[()]


_unary("sigmoid", _sigmoid_numeric, lambda x: 1 / (1 + _exp(-x)),
       lambda A, g, out, x: g * out * (1 - out),
       scalar="_sigmoid({0})",
       cuda=_cuda_sigmoid)
_unary("softplus", _softplus_numeric, lambda x: _log(1 + _exp(x)),
       lambda A, g, out, x: g * A.sigmoid(x),
       scalar="_softplus({0})",
       cuda=_cuda_softplus)
_unary("relu", lambda xp, x: xp.maximum(x, 0), lambda x: sympy.Max(x, 0),
       lambda A, g, out, x: g * A.heaviside(x, at_zero=0),
       scalar="_maximum({0}, 0.0)",
       cuda=lambda p, out, x: p.extremum(True, p.let_as(x, out), sympy.S.Zero, out),
       signature="float_literal")
_unary("abs", lambda xp, x: xp.abs(x), _abs, lambda A, g, out, x: g * A.sign(x),
       printed=_unevaluated(sympy.Abs), scalar="np.abs({0})")
# piecewise-constant: the derivative is 0 (a gradient, not "no gradient", as in TensorFlow)
_unary("sign", lambda xp, x: xp.sign(x), _sign, lambda A, g, out, x: A.zeros_like(g),
       printed=_unevaluated(sympy.sign), scalar="_sign({0})")
register("heaviside", numeric=lambda xp, x, at_zero: xp.heaviside(x, at_zero),
         symbolic=lambda x, at_zero: sympy.Heaviside(x, objarrays.exact_number(at_zero)),
         elementwise=True, vjp=(lambda A, g, out, x, at_zero: A.zeros_like(g),),
         scalar=lambda p, x, at_zero: f"_heaviside({x}, {p.literal(float(at_zero))})",
         cuda=lambda p, out, x, at_zero: p.heaviside(x, sympy.Float(at_zero), out),
         signature="float_literal")
register("atan2", numeric=lambda xp, y, x: xp.arctan2(y, x), symbolic=sympy.atan2,
         elementwise=True,
         vjp=(lambda A, g, out, y, x: g * x / (x * x + y * y),
              lambda A, g, out, y, x: -g * y / (x * x + y * y)), printed=_unevaluated(sympy.atan2),
         scalar="np.arctan2({0}, {1})")
register("maximum", numeric=lambda xp, a, b: xp.maximum(a, b), symbolic=sympy.Max,
         elementwise=True,
         vjp=(lambda A, g, out, a, b: g * A.heaviside(a - b, at_zero=1),
              lambda A, g, out, a, b: g * A.heaviside(b - a, at_zero=0)),
         scalar="_maximum({0}, {1})",
         cuda=_cuda_extremum(True))
register("minimum", numeric=lambda xp, a, b: xp.minimum(a, b), symbolic=sympy.Min,
         elementwise=True,
         vjp=(lambda A, g, out, a, b: g * A.heaviside(b - a, at_zero=1),
              lambda A, g, out, a, b: g * A.heaviside(a - b, at_zero=0)),
         scalar="_minimum({0}, {1})",
         cuda=_cuda_extremum(False))
register("where", numeric=lambda xp, c, a, b: xp.where(c, a, b)[()],
         symbolic=lambda c, a, b: sympy.Piecewise((a, c), (b, True)), elementwise=True,
         vjp=(None,
              lambda A, g, out, c, a, b: A.where(c, g, A.zeros_like(g)),
              lambda A, g, out, c, a, b: A.where(c, A.zeros_like(g), g)),
         scalar=lambda p, c, a, b: p.float64(f"({a} if {c} else {b})"),
         cuda=_cuda_where, signature="select")

# ---------------------------------------------------------------- comparisons (no gradient)
for _name, _np_op, _sym_op, _code in [("less", operator.lt, sympy.Lt, "<"),
                                      ("less_equal", operator.le, sympy.Le, "<="),
                                      ("greater", operator.gt, sympy.Gt, ">"),
                                      ("greater_equal", operator.ge, sympy.Ge, ">="),
                                      ("equal", operator.eq, sympy.Eq, "=="),
                                      ("not_equal", operator.ne, sympy.Ne, "!=")]:
    register(_name, numeric=lambda xp, a, b, _op=_np_op: _op(a, b), symbolic=_sym_op,
             elementwise=True, scalar="{0} %s {1}" % _code, signature="comparison",
             cuda=lambda p, out, a, b, _op=_code: p.compare(_op, a, b))
register("logical_not", numeric=lambda xp, x: xp.logical_not(x), symbolic=sympy.Not,
         elementwise=True,
         scalar="not {0}",
         cuda=_cuda_not, signature="logical")


def _cast_symbolic(x, dtype):
    kind = np.dtype(dtype).kind
    if kind == "b":
        return sympy.Ne(x, 0)
    if isinstance(x, sympy.logic.boolalg.Boolean) and not isinstance(x, sympy.Expr):
        return sympy.Piecewise((1, x), (0, True))  # a condition (a Symbol is a Boolean too)
    if kind in "iu":
        return sympy.sign(x) * sympy.floor(sympy.Abs(x))  # truncation, like NumPy's astype
    return x


def _cast_rule(A, g, out, x, dtype):
    return A.cast(g, dtype=A.dtype(x)) if np.dtype(A.dtype(x)).kind == "f" else None


def _cast_scalar(p, x, dtype):
    return f"{x} != 0" if np.dtype(dtype) == np.bool_ else p.float64(x)

register("cast", numeric=lambda xp, x, dtype: xp.asarray(x).astype(dtype)[()],
         symbolic=_cast_symbolic, elementwise=True, linear=True, vjp=(_cast_rule,),
         scalar=_cast_scalar,
         cuda=lambda p, out, x, dtype: p.value(x, out), signature="cast")

# ---------------------------------------------------------------- batch rules
#
# A structural op's ``batch`` rule: the op on values that carry extra leading batch axes
# before their core axes (ranks ``ranks``), so that a kernel evaluates a whole batch in one
# call. ``k`` is the core rank of the (first) argument.


def _core_axes(axis, k: int):
    """Axes of the core shape (rank ``k``) as negative axes, which skip leading batch axes."""
    if axis is None:
        return tuple(range(-k, 0))
    if isinstance(axis, (tuple, list)):
        return tuple(a - k if a >= 0 else a for a in axis)
    return axis - k if axis >= 0 else axis


def _batched_reduce(xp, x, *, fn, k, axis, keepdims):
    return getattr(xp, fn)(x, axis=_core_axes(axis, k), keepdims=keepdims)


def _batched_reshape(xp, x, *, k, shape):
    x = xp.asarray(x)
    return x.reshape(x.shape[:x.ndim - k] + tuple(shape))


def _batched_transpose(xp, x, *, k, perm):
    x = xp.asarray(x)
    lead = x.ndim - k
    return xp.transpose(x, tuple(range(lead)) + tuple(lead + p for p in perm))


def expand_axes(xp, x, *, r, k):
    """Insert ``r - k`` axes between the batch axes and the core axes of ``x``.

    Parameters
    ----------
    xp : module
        The array module (NumPy or CuPy).
    x : array_like
        Batch axes, then ``k`` core axes.
    r : int
        The rank the core part is to have.
    k : int
        The rank of ``x``'s core part.

    Examples
    --------
    >>> expand_axes(np, np.zeros((5, 3)), r=3, k=1).shape
    (5, 1, 1, 3)
    """
    return xp.expand_dims(xp.asarray(x), tuple(range(-r, -k)))


def _batched_broadcast_to(xp, x, *, k, shape):
    x = xp.asarray(x)
    if k < len(shape):
        x = expand_axes(xp, x, r=len(shape), k=k)
    return xp.broadcast_to(x, x.shape[:x.ndim - len(shape)] + tuple(shape))


def _batch_key(key, k: int) -> tuple:
    """A core index as an index of batched arrays: ``(..., key, :, ...)``."""
    items = key if isinstance(key, tuple) else (key,)
    consumed = sum(np.ndim(i) if isinstance(i, np.ndarray) and i.dtype == bool else
                   0 if i is None or i is Ellipsis else 1 for i in items)
    if any(i is Ellipsis for i in items):
        at = next(n for n, i in enumerate(items) if i is Ellipsis)
        items = items[:at] + (slice(None),) * (k - consumed) + items[at + 1:]
        consumed = k
    return (Ellipsis,) + tuple(items) + (slice(None),) * (k - consumed)


def _batchable_key(key) -> bool:
    """Several advanced indices apart from each other move their axes to the front."""
    items = key if isinstance(key, tuple) else (key,)
    advanced = [n for n, i in enumerate(items) if isinstance(i, (np.ndarray, list))]
    return not advanced or advanced == list(range(advanced[0], advanced[-1] + 1))


def _batched_getitem(xp, x, *, key):
    item = xp.asarray(x)[key]
    # `x[..., i]` of a vector is a 0-d array; NumPy's scalars compute ~10x faster
    return item[()] if item.ndim == 0 and xp is np else item


def _batched_scatter(xp, g, *, k, key, shape):
    g = xp.asarray(g)
    out = xp.zeros(g.shape[:g.ndim - k] + tuple(shape), dtype=g.dtype)
    add_at(xp, out, key, g)
    return out


def _batched_scatter_add(xp, *values, ks, keys, shape):
    values = [xp.asarray(v) for v in values]
    batch = np.broadcast_shapes(*[v.shape[:v.ndim - k] for v, k in zip(values, ks)])
    out = xp.zeros(batch + tuple(shape), dtype=xp.result_type(*values))
    for key, value in zip(keys, values):
        add_at(xp, out, key, value)
    return out


def _scatter_rows(xp, *values, rows, k, shape):
    """``scatter_add`` where every key is one row (``x[i]`` in a loop): one ``add.at``."""
    stacked = None
    if xp is np:  # no batch axes anywhere: the fast common case
        try:
            stacked = np.array(values)
        except ValueError:  # some values carry batch axes, others not
            pass
        if stacked is not None and stacked.ndim != 1 + k:
            stacked = None
    if stacked is None:
        stacked = xp.stack(xp.broadcast_arrays(*[xp.asarray(v) for v in values]), axis=0)
    batch = stacked.shape[1:stacked.ndim - k]
    out = xp.zeros(batch + tuple(shape), dtype=stacked.dtype)
    rows = rows if xp is np else xp.asarray(rows)
    add_at(xp, xp.moveaxis(out, len(batch), 0), rows, stacked)  # a view: fills `out`
    return out


def _row_keys(keys, ranks: list[int], shape) -> np.ndarray | None:
    """The row of each key when every key is a single integer index, else None."""
    rows = []
    for key, k in zip(keys, ranks):
        key = key[0] if isinstance(key, tuple) and len(key) == 1 else key
        if not isinstance(key, (int, np.integer)) or k != len(shape) - 1:
            return None
        rows.append(int(key) % shape[0])
    return np.array(rows, dtype=np.intp)


def _batched_concat(xp, *xs, ks, axis):
    arrays = [xp.asarray(x) for x in xs]
    batch = np.broadcast_shapes(*[a.shape[:a.ndim - k] for a, k in zip(arrays, ks)])
    arrays = [xp.broadcast_to(a, batch + a.shape[a.ndim - k:]) for a, k in zip(arrays, ks)]
    return xp.concatenate(arrays, axis=_core_axes(axis, ks[0]))


def _batched_matmul(xp, a, b, *, ka, kb):
    a, b = xp.asarray(a), xp.asarray(b)
    if ka == 2 and a.ndim == 2 and b.ndim > kb and (kb == 1 or b.shape[-1] == 1):
        return _matrix_times_batch(xp, a, b, kb)
    if ka == 1:
        a = a[..., None, :]
    if kb == 1:
        b = b[..., :, None]
    ra, rb = max(ka, 2), max(kb, 2)
    r = max(ra, rb)
    if ra < r:
        a = expand_axes(xp, a, r=r, k=ra)
    if rb < r:
        b = expand_axes(xp, b, r=r, k=rb)
    out = xp.matmul(a, b)
    if kb == 1:
        out = out[..., 0]
    if ka == 1:
        out = out[..., 0] if kb == 1 else out[..., 0, :]
    return out


def _matrix_times_batch(xp, a, b, kb: int):
    """One matrix ``a`` times a batch of vectors (columns ``(..., n, 1)`` when ``kb`` is 2):
    one matrix product ``b @ a.T``, not a stack of matrix-vector products (a Hessian's
    products with many seeds, each through a data matrix)."""
    out = xp.matmul(b if kb == 1 else b[..., 0], a.T)
    return out if kb == 1 else out[..., None]


def _reduce_batch(fn: str):
    def batch(ranks, *, axis, keepdims):
        return partial(_batched_reduce, fn=fn, k=ranks[0], axis=axis, keepdims=keepdims), True

    return batch


def _reshape_batch(ranks, *, shape):
    return partial(_batched_reshape, k=ranks[0], shape=shape), True


def _transpose_batch(ranks, *, perm):
    return partial(_batched_transpose, k=ranks[0], perm=perm), True


def _broadcast_to_batch(ranks, *, shape):
    return partial(_batched_broadcast_to, k=ranks[0], shape=shape), True


def _getitem_batch(ranks, *, key):
    return partial(_batched_getitem, key=_batch_key(key, ranks[0])), _batchable_key(key)


def _scatter_batch(ranks, *, key, shape):
    return (partial(_batched_scatter, k=ranks[0], key=_batch_key(key, len(shape)), shape=shape),
            _batchable_key(key))


def _scatter_add_batch(ranks, *, keys, shape):
    rows = _row_keys(keys, ranks, shape)
    if rows is not None:
        return partial(_scatter_rows, rows=rows, k=ranks[0], shape=shape), True
    batched = tuple(_batch_key(key, len(shape)) for key in keys)
    return (partial(_batched_scatter_add, ks=tuple(ranks), keys=batched, shape=shape),
            all(_batchable_key(key) for key in keys))


def _concat_batch(ranks, *, axis):
    return partial(_batched_concat, ks=tuple(ranks), axis=axis), True


def _matmul_batch(ranks):
    return partial(_batched_matmul, ka=ranks[0], kb=ranks[1]), True


# ---------------------------------------------------------------- reductions


def _keepdims_shape(shape: tuple[int, ...], axis) -> tuple[int, ...]:
    axes = range(len(shape)) if axis is None else [a % len(shape) for a in axis]
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _reduce_sum_rule(A, g, out, x, axis, keepdims):
    # not broadcast to x's shape: the sweep expands it only where a rule needs the full shape
    return A.reshape(g, shape=_keepdims_shape(A.shape(x), axis))


def _reduce_extremum_rule(A, g, out, x, axis, keepdims):
    shape = A.shape(x)
    kept = _keepdims_shape(shape, axis)
    hit = A.cast(A.equal(x, A.reshape(out, shape=kept)), dtype=A.dtype(g))
    count = A.reduce_sum(hit, axis=axis, keepdims=True)
    return A.reshape(g, shape=kept) * hit / count


register("reduce_sum", numeric=lambda xp, x, axis, keepdims: xp.sum(x, axis=axis, keepdims=keepdims),
         symbolic=objarrays.reduce_add, linear=True, vjp=(_reduce_sum_rule,),
         batch=_reduce_batch("sum"))
register("reduce_max", numeric=lambda xp, x, axis, keepdims: xp.max(x, axis=axis, keepdims=keepdims),
         symbolic=objarrays.reduce_max, vjp=(_reduce_extremum_rule,), batch=_reduce_batch("max"))
register("reduce_min", numeric=lambda xp, x, axis, keepdims: xp.min(x, axis=axis, keepdims=keepdims),
         symbolic=objarrays.reduce_min, vjp=(_reduce_extremum_rule,), batch=_reduce_batch("min"))

# ---------------------------------------------------------------- shapes and indexing


def _structural(numeric):
    """The symbolic form of a pure data-movement op is the same NumPy call on object arrays."""
    return lambda *xs, **params: objarrays.normalize(numeric(np, *[np.asarray(x) for x in xs],
                                                             **params))


def _reshape(xp, x, shape):
    return xp.reshape(x, shape)


def _transpose(xp, x, perm):
    return xp.transpose(x, perm)


def _broadcast_to(xp, x, shape):
    return xp.broadcast_to(x, shape)


def _getitem(xp, x, key):
    return xp.asarray(x)[key]


def _scatter(xp, g, key, shape):
    """The transpose of ``getitem``: ``g`` added into zeros of ``shape`` at ``key``."""
    g = xp.asarray(g)
    out = xp.zeros(shape, dtype=g.dtype) if g.dtype != object else objarrays.zeros(shape)
    add_at(xp, out, key, g)
    return out[()] if out.ndim == 0 else out


def add_at(xp, buffer, key, values) -> None:
    """``buffer[key] += values``, counting repeated entries of an integer-array key each time.

    Parameters
    ----------
    xp : module
        The array module of ``buffer`` (NumPy or CuPy).
    buffer : array
        Updated in place; an object array for symbolic values.
    key : index
        Any NumPy index; entries an integer-array key repeats receive every addition.
    values : array or scalar
        Broadcast to ``buffer[key]``.

    Examples
    --------
    >>> buffer = np.zeros(3)
    >>> add_at(np, buffer, np.array([0, 0, 2]), 1.0)
    >>> buffer
    array([2., 0., 1.])
    """
    if is_basic_index(key):
        buffer[key] += values  # a basic index never repeats an entry
    elif xp is np or buffer.dtype == object:
        np.add.at(buffer, key, values)
    else:  # CuPy's unbuffered add (older CuPy releases have no `cupy.add.at`)
        import cupyx

        cupyx.scatter_add(buffer, key, values)


def is_basic_index(key) -> bool:
    """True for keys of ints, slices, None and Ellipsis (views; no entry is repeated)."""
    items = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, slice, type(None), type(Ellipsis))) for k in items)


def _scatter_add(xp, *values, keys, shape):
    """Many slice cotangents summed into one buffer: ``out[key_i] += values_i``."""
    values = [xp.asarray(v) for v in values]
    if any(v.dtype == object for v in values):
        out = objarrays.zeros(shape)
    else:
        out = xp.zeros(shape, dtype=xp.result_type(*values))
    for key, value in zip(keys, values):
        add_at(xp, out, key, value)
    return out[()] if out.ndim == 0 else out


def _scatter_add_rule(A, argnum, g, out, *values, keys, shape):
    return A.getitem(g, key=keys[argnum])


def _concat(xp, *xs, axis):
    return xp.concatenate(xs, axis=axis)


def _concat_rule(A, argnum, g, out, *xs, axis):
    start = sum(A.shape(x)[axis] for x in xs[:argnum])
    stop = start + A.shape(xs[argnum])[axis]
    key = (slice(None),) * (axis % len(A.shape(out))) + (slice(start, stop),)
    return A.getitem(g, key=key)


def _inverse_permutation(perm):
    return tuple(int(i) for i in np.argsort(perm))


register("reshape", numeric=_reshape, symbolic=_structural(_reshape), linear=True,
         vjp=(lambda A, g, out, x, shape: A.reshape(g, shape=A.shape(x)),), batch=_reshape_batch)
register("transpose", numeric=_transpose, symbolic=_structural(_transpose), linear=True,
         vjp=(lambda A, g, out, x, perm: A.transpose(g, perm=_inverse_permutation(perm)),),
         batch=_transpose_batch)
register("broadcast_to", numeric=_broadcast_to, symbolic=_structural(_broadcast_to), linear=True,
         vjp=(lambda A, g, out, x, shape: A.reduce_to(g, A.shape(x)),), batch=_broadcast_to_batch)
register("getitem", numeric=_getitem, symbolic=_structural(_getitem), linear=True,
         vjp=(lambda A, g, out, x, key: A.scatter(g, key=key, shape=A.shape(x)),),
         batch=_getitem_batch)
register("scatter", numeric=_scatter, symbolic=_structural(_scatter), linear=True,
         vjp=(lambda A, g, out, x, key, shape: A.getitem(g, key=key),), batch=_scatter_batch)
register("scatter_add", numeric=_scatter_add, symbolic=_structural(_scatter_add), linear=True,
         vjp=_scatter_add_rule, batch=_scatter_add_batch)
register("concat", numeric=_concat, symbolic=_structural(_concat), linear=True, vjp=_concat_rule,
         batch=_concat_batch)


def _swap_last(ndim: int) -> tuple[int, ...]:
    return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)


register("matmul", numeric=lambda xp, a, b: xp.matmul(a, b), symbolic=objarrays.matmul,
         vjp=(lambda A, g, out, a, b: A.matmul(g, A.transpose(b, perm=_swap_last(len(A.shape(b))))),
              lambda A, g, out, a, b: A.matmul(A.transpose(a, perm=_swap_last(len(A.shape(a)))), g)),
         batch=_matmul_batch)
