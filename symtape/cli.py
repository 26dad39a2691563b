"""The ``symtape`` command line: ``demo``, ``diff`` and ``check`` (the work is the library's).

Expressions and point values are read by :func:`symtape.parse`, which never evaluates
Python. A malformed one is reported on one line (``symtape: error: ...``) with exit status 2;
a ``check`` that finds disagreeing derivatives exits with status 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np
import sympy

from symtape.check import check_grads, closed_forms
from symtape.kernels.compile import function_source
from symtape.arrays.objarrays import as_sympy
from symtape.core.mpeval import evaluate
from symtape.parsing import ParseError, parse, parse_symbol, substitute
from symtape.core.sympy_ops import tensor_function

__all__ = ["main"]

_EPILOG = """examples:
  symtape demo
  symtape diff "x**2*sin(y)" --wrt x y --order 2
  symtape diff "log(1 + exp(a*x))" --wrt x --at x=0,a=2 --format latex
  symtape check "atan2(y, x)*exp(x)" --at x=1,y=2
"""


class UsageError(Exception):
    """Bad input on the command line: reported on one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symtape", description="Exact symbolic-plus-numeric differentiation.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("demo", help="run the main walk-through on the CPU")
    for name, summary in (("diff", "print the closed-form gradient (and Hessian) of EXPR"),
                          ("check", "check symtape's derivatives of EXPR at a point")):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("expr", metavar="EXPR", help="e.g. 'x**2*sin(y)' (numbers, names, "
                             "+ - * / **, and symtape's functions: exp, log, sin, relu, ...)")
        command.add_argument("--wrt", nargs="+", metavar="X",
                             help="variables to differentiate by (default: every name in EXPR)")
        command.add_argument("--order", type=int, choices=(1, 2), default=1 if name == "diff"
                             else 2, help="1: gradient; 2: gradient and Hessian")
        command.add_argument("--at", nargs="+", metavar="X=VALUE", required=name == "check",
                             help="a point, e.g. x=1,y=pi/4")
        if name == "diff":
            command.add_argument("--format", choices=("pretty", "latex", "code"),
                                 default="pretty")
            command.add_argument("--simplify", action="store_true",
                                 help="simplify every closed form (can be slow)")
        else:
            command.add_argument("--rtol", type=float, default=1e-5)
            command.add_argument("--atol", type=float, default=None)
    return parser


# ---------------------------------------------------------------- reading the input


def _expression(text: str) -> sympy.Expr:
    try:
        return parse(text)
    except ParseError as error:
        raise UsageError(str(error)) from None


def _split_top_level(text: str) -> list[str]:
    """``x=1,y=atan2(1,2)`` -> ``['x=1', 'y=atan2(1,2)']`` (commas inside parentheses stay)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _point(items: list[str] | None) -> dict[sympy.Symbol, sympy.Expr]:
    point: dict[sympy.Symbol, sympy.Expr] = {}
    for item in items or []:
        for assignment in _split_top_level(item):
            name, equals, text = assignment.partition("=")
            if not equals:
                raise UsageError(f"--at: {assignment!r} is not NAME=VALUE (e.g. --at x=1,y=2)")
            try:
                symbol = parse_symbol(name.strip())
            except ValueError as error:
                raise UsageError(f"--at: {error}") from None
            if symbol in point:
                raise UsageError(f"--at: {symbol} is given twice; give one value")
            value = _expression(text)
            if value.free_symbols or not value.is_real:
                raise UsageError(f"--at: the value of {name.strip()} must be a real number, "
                                 f"got {value}")
            point[symbol] = value
    return point


def _variables(expr: sympy.Expr, wrt: list[str] | None) -> list[sympy.Symbol]:
    if not wrt:
        return sorted(expr.free_symbols, key=str)
    try:
        return list(dict.fromkeys(parse_symbol(name) for name in wrt))
    except ValueError as error:
        raise UsageError(f"--wrt: {error}") from None


# ---------------------------------------------------------------- diff


def _label(variables: tuple, fmt: str) -> str:
    if fmt == "latex":
        order = len(variables)
        top = r"\partial^{%d} f" % order if order > 1 else r"\partial f"
        return r"\frac{%s}{%s}" % (top, " ".join(r"\partial " + sympy.latex(v) for v in variables))
    return f"d{len(variables) if len(variables) > 1 else ''}f/" + "".join(
        f"d{v}" for v in variables)


def _show(label: str, value, fmt: str, unicode: bool) -> str:
    if fmt == "latex":
        return f"{label} = {sympy.latex(value)}"
    return sympy.pretty(sympy.Eq(sympy.Symbol(label), value, evaluate=False), use_unicode=unicode)


def _read(args, needs_point: bool) -> tuple[sympy.Expr, list, list, dict]:
    """EXPR, the variables, every symbol (variables first), and the point (checked complete)."""
    expr = _expression(args.expr)
    variables = _variables(expr, args.wrt)
    if not variables:
        raise UsageError(f"{args.expr!r} is the constant {expr}: there is nothing to "
                         "differentiate by (name a variable with --wrt)")
    symbols = variables + sorted(expr.free_symbols - set(variables), key=str)
    point = _point(args.at)
    missing = [str(s) for s in symbols if s not in point]
    if missing and (point or needs_point):
        raise UsageError(f"--at: no value for {', '.join(missing)} (e.g. --at "
                         + ",".join(f"{m}=1" for m in missing) + ")")
    return expr, variables, symbols, point


def _diff(args, out) -> int:
    expr, variables, symbols, point = _read(args, needs_point=False)
    values = [np.asarray(float(point[s]) if point else 0.5) for s in symbols]
    forms = closed_forms(tensor_function(expr, symbols), values, [str(s) for s in symbols],
                         args.order)
    k = len(variables)
    gradient = list(forms.jacobian[0, :k])
    hessian = sympy.Matrix(forms.hessian[0, :k, :k]) if args.order == 2 else None
    if args.simplify:
        gradient = [sympy.simplify(g) for g in gradient]
        hessian = hessian.applyfunc(sympy.simplify) if hessian is not None else None
    if args.format == "code":
        functions = {"gradient": gradient}
        if hessian is not None:
            functions["hessian"] = hessian.tolist()
        print(function_source(functions, symbols), file=out)
    else:
        unicode = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
        print(_show("f", expr, args.format, unicode), file=out)
        for v, g in zip(variables, gradient):
            print(_show(_label((v,), args.format), g, args.format, unicode), file=out)
        if hessian is not None:
            label = r"\nabla^2 f" if args.format == "latex" else "H"
            print(_show(label, hessian, args.format, unicode), file=out)
    if point:
        _print_values(expr, gradient, hessian, variables, point, out)
    return 0


def _print_values(expr, gradient, hessian, variables, point, out) -> None:
    where = ", ".join(f"{s}={v}" for s, v in point.items())
    print(f"\nat {where}:", file=out)
    print(f"  f = {_shown(expr, point)}", file=out)
    for v, g in zip(variables, gradient):
        print(f"  {_label((v,), 'pretty')} = {_shown(g, point)}", file=out)
    if hessian is not None:
        values = evaluate([as_sympy(h) for h in hessian], point, 15)
        rows = [", ".join(map(_number, values[i:i + hessian.cols]))
                for i in range(0, len(values), hessian.cols)]
        print("  H = [" + ",\n       ".join(f"[{row}]" for row in rows) + "]", file=out)


def _shown(value, point) -> str:
    """The exact value at the point and, if it is not a plain number, its 15 digits; only the
    digits where the exact value would be too large to build (``x**y`` at ``y=10**10``)."""
    expr = as_sympy(value)
    (number,) = evaluate([expr], point, 15)
    try:
        exact = substitute(expr, point)
    except OverflowError:
        return _digits(number)
    plain = (exact.is_Integer or exact.has(sympy.zoo, sympy.nan) or isinstance(number, float)
             and math.isfinite(number) and exact == sympy.Float(number, 15))
    return str(exact) if plain else f"{exact} = {_digits(number)}"


def _digits(number: float | complex) -> str:
    if isinstance(number, complex):
        return str(sympy.Float(number.real, 15) + sympy.I * sympy.Float(number.imag, 15))
    if math.isinf(number):
        return f"{number} (beyond the float range)"
    return str(sympy.Float(number, 15))


def _number(value) -> str:
    """A value at a point, to 12 digits (nan and complex values as Python prints them)."""
    return f"{value:.12g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- check


def _check(args, out) -> int:
    expr, variables, _, point = _read(args, needs_point=True)
    values = {str(s): float(v) for s, v in point.items()}
    for symbol, value in point.items():
        if not math.isfinite(values[str(symbol)]):
            raise UsageError(f"--at: {symbol}={sympy.Float(value, 3)} is beyond the float64 "
                             "range (1.8e308) that check compares in; give a smaller value")
    try:
        report = check_grads(expr, values, order=args.order, rtol=args.rtol, atol=args.atol,
                             wrt=variables)
    except AssertionError as failure:
        print(failure, file=out)
        return 1
    print(report, file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Examples
    --------
    >>> main(["diff", "x**2*sin(y)", "--wrt", "x", "y"])
                2
    f = x *sin(y)
    df/dx = 2*x*sin(y)
                2
    df/dy = x *cos(y)
    0
    >>> main(["diff", "x**", "--wrt", "x"])  # the error line goes to stderr
    2
    """
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in (None, "demo"):
        from symtape import demo

        demo.run()
        return 0
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf and nan are in the output
            return (_diff if args.command == "diff" else _check)(args, sys.stdout)
    except UsageError as error:
        print(f"symtape: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, ArithmeticError, RecursionError) as error:
        # what the library refuses about this input (no op for it, a value it cannot take)
        # is the user's to fix too: one line, not a traceback
        print(f"symtape: error: {error}", file=sys.stderr)
        return 2
