"""A whitelist parser for expression strings: numbers, names, ``+ - * / **``, symtape's functions.

User strings (from the command line, from ``st.parse``) never reach ``eval``, ``exec``,
``sympy.sympify`` or ``sympy.parse_expr`` (the last two evaluate Python). This module reads
them with its own tokenizer and a recursive-descent parser over a grammar with Python's
precedence, and builds the SymPy expression node by node:

.. code-block:: text

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := ("+" | "-") unary | power
    power      := atom ("**" unary)?                    (right-associative: 2**3**2 = 2**9)
    atom       := number | name | function "(" expression ("," expression)* ")"
                | "(" expression ")"

Numbers are exact (``0.1`` is ``1/10``) and bounded: no literal or result of arithmetic
on numbers past ``MAX_BITS`` (about 4000 digits), no exact root or logarithm of a number past
``MAX_ROOT_BITS``, no undefined or complex constant (``0**-1``, ``sqrt(-1)``), so parsing
takes bounded time and memory. Names are Python identifiers that NFKC normalization leaves
unchanged, and no keywords (generated code uses them as parameters); they are real SymPy
symbols, except ``pi``;
functions are the elementwise ops of symtape (their SymPy forms are the registered ones, so
``relu(x)`` is ``Max(0, x)`` exactly as ``st.relu`` records it). Anything else is a
:class:`ParseError` that names the problem and its column.
"""

from __future__ import annotations

import keyword
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from symtape.arrays.objarrays import as_sympy
from symtape.core.primitives import REGISTRY
from symtape.core.symbolic import bottom_up

__all__ = ["ParseError", "parse", "FUNCTIONS", "parse_symbol", "name_problem", "substitute"]

MAX_DEPTH = 100  # nesting levels; deeper input is refused, never a RecursionError
# the largest exact number a literal or an operation on numbers may make: 4000 digits, so that
# Python can still print it (its int-to-str limit is 4300 digits)
MAX_BITS = 13_300
# exact roots and logarithms of rationals cost SymPy a factorization: only of small ones
MAX_ROOT_BITS = 1_000


class ParseError(ValueError):
    """An expression string that is not in the grammar, with the column of the problem.

    Attributes
    ----------
    text : str
        The whole input.
    column : int
        1-based column of the offending character (``len(text) + 1`` for "ended too early").

    Examples
    --------
    >>> try:
    ...     parse("x + * y")
    ... except ParseError as error:
    ...     print(error)
    cannot parse 'x + * y': unexpected '*' at column 5
    """

    def __init__(self, text: str, column: int, problem: str):
        self.text, self.column, self.problem = text, column, problem
        super().__init__(f"cannot parse {text!r}: {problem} at column {column}")


def _unary_form(name: str) -> Callable[[sympy.Expr], sympy.Expr]:
    return REGISTRY[name].symbolic


# name -> (number of arguments, SymPy form): symtape's elementwise ops, TensorFlow spelling.
FUNCTIONS: dict[str, tuple[int, Callable[..., sympy.Expr]]] = {
    **{name: (1, _unary_form(name)) for name in (
        "abs", "acos", "asin", "atan", "cos", "cosh", "erf", "exp", "log", "log1p", "relu",
        "sigmoid", "sign", "sin", "sinh", "softplus", "tan", "tanh")},
    "square": (1, lambda x: _power(x, sympy.Integer(2))),
    "sqrt": (1, lambda x: _power(x, sympy.S.Half)),
    "atan2": (2, REGISTRY["atan2"].symbolic),
    "maximum": (2, REGISTRY["maximum"].symbolic),
    "minimum": (2, REGISTRY["minimum"].symbolic),
    "pow": (2, lambda x, y: _power(x, y)),
}
CONSTANTS = {"pi": sympy.pi}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*|[-+*/(),])
""", re.VERBOSE)
_NAME = re.compile(r"[^\W\d]\w*\Z")
_HINTS = {"^": " (write ** for powers)", "=": " (an expression has no '=')",
          ".": " (names have no attributes; numbers are written 1.5 or .5)"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number | name | op | end
    text: str
    column: int


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # reported when the parser gets here, so the first problem wins
            tokens.append(_Token("bad", text[position], position + 1))
            return tokens
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup, match.group(), position + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _number(text: str, token: _Token) -> sympy.Rational:
    mantissa, _, exponent = token.text.lower().partition("e")
    digits = len(mantissa.replace(".", "").lstrip("0"))
    if (digits + abs(int(exponent or 0))) * math.log2(10) > MAX_BITS:
        raise ParseError(text, token.column, f"the number {token.text[:20]!r} is too large")
    return sympy.Rational(mantissa) * sympy.Integer(10) ** int(exponent or 0)


def _bits(number: sympy.Rational) -> float:
    return max(math.log2(abs(number.p) or 1), math.log2(number.q), 1.0)


def _short(expr: sympy.Basic) -> str:
    text = str(expr)
    return text if len(text) <= 60 else f"{text[:28]}...{text[-28:]}"


def _numeric_bits(expr: sympy.Expr) -> int:
    """The bits of the exact numbers in ``expr``'s numeric factor (all of it, for a number):
    what a power of ``expr`` multiplies (SymPy distributes ``(2*x)**n`` to ``2**n*x**n``)."""
    factors = [expr] if expr.is_number else [a for a in sympy.Mul.make_args(expr) if a.is_number]
    return sum(_bits(r) for factor in factors for r in factor.atoms(sympy.Rational))


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """``base**exponent``, refusing exact numbers too large to hold (``10**10**10``,
    ``2**(10**20/3)``, ``sqrt(2)**(10**20)``) or too costly to root exactly."""
    if exponent.is_Rational and base not in (0, 1, -1):
        bits = _numeric_bits(base)
        if bits * abs(exponent) > MAX_BITS:
            raise OverflowError(f"{_short(sympy.Pow(base, exponent, evaluate=False))} is too "
                                "large to compute exactly")
        if not exponent.is_Integer and bits > MAX_ROOT_BITS:
            raise OverflowError(f"{_short(sympy.Pow(base, exponent, evaluate=False))}: exact "
                                f"roots of numbers over "
                                f"{MAX_ROOT_BITS} bits are too costly; use a shorter number")
    return base**exponent


# functions whose SymPy form takes exact roots or logarithms of a number argument, or turns
# exp(n*log(b)) into b**n: their number arguments are bounded like the base of a power
_COSTLY = {"log": MAX_ROOT_BITS, "log1p": MAX_ROOT_BITS, "softplus": MAX_ROOT_BITS}
_EXPONENTIAL = ("exp", "sinh", "cosh", "tanh", "sigmoid", "softplus")


def _check_arguments(name: str, arguments: list) -> None:
    for argument in arguments:
        if not argument.is_number:
            continue
        if _numeric_bits(argument) > _COSTLY.get(name, MAX_BITS):
            raise OverflowError(f"{name} of a number this long is too costly to compute exactly")
        if name in _EXPONENTIAL and argument.has(sympy.log) and not (
                abs(argument.evalf(5)) <= MAX_BITS):
            raise OverflowError(f"{name}({_short(argument)}) is too large to compute exactly")


def _check_size(expr: sympy.Expr) -> None:
    """Refuse a sum or product whose exact numbers outgrew ``MAX_BITS`` (``10**4000**2``)."""
    numbers = [expr] if expr.is_Rational else [a for a in expr.args if a.is_Rational]
    if any(_bits(number) > MAX_BITS for number in numbers):
        raise OverflowError(f"an exact number in the result has over {MAX_BITS} bits "
                            "(about 4000 digits)")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a variable (``None`` if it can): generated code uses it as a
    Python parameter, so it must be an identifier that Python reads as itself, no keyword.

    Examples
    --------
    >>> name_problem("x") is None, name_problem("lambda")
    (True, "is a Python keyword: generated code could not use it as a name; write 'lambda_'")
    """
    if not _NAME.match(name) or not name.isidentifier():
        normal = unicodedata.normalize("NFKC", name)
        if normal != name and normal.isidentifier():
            return (f"is not a Python identifier (Python reads it as {normal!r}); write "
                    f"{normal!r}")
        return "is not a variable name: use letters, digits and '_', not starting with a digit"
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:  # Python would read x and ｘ as the same name
        return f"is read by Python as {normal!r} (NFKC normalization); write {normal!r}"
    if keyword.iskeyword(name) or name == "__debug__":
        return (f"is a Python keyword: generated code could not use it as a name; write "
                f"{name + '_'!r}")
    if name in FUNCTIONS or name in CONSTANTS:
        return "is a function or a constant"
    return None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.depth = 0

    # -- token stream
    @property
    def token(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind == "bad":
            raise ParseError(self.text, token.column, f"unexpected character {token.text!r}"
                             f"{_HINTS.get(token.text, '')}")
        return token

    def error(self, problem: str, token: _Token | None = None) -> ParseError:
        return ParseError(self.text, (token or self.token).column, problem)

    def unexpected(self) -> ParseError:
        token = self.token
        if token.kind == "end":
            return self.error("the expression ends too early")
        previous = self.tokens[self.index - 1] if self.index else None
        if (previous is not None and (previous.kind in ("number", "name") or previous.text == ")")
                and (token.kind in ("number", "name") or token.text == "(")):
            return self.error(f"unexpected {token.text!r} (write {previous.text}*{token.text} "
                              "to multiply)")
        return self.error(f"unexpected {token.text!r}")

    def accept(self, text: str) -> bool:
        if self.token.kind == "op" and self.token.text == text:
            self.index += 1
            return True
        return False

    def expect(self, text: str, what: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {text!r} {what}, found "
                             + ("the end" if self.token.kind == "end" else repr(self.token.text)))

    # -- grammar
    def parse(self) -> sympy.Expr:
        if self.token.kind == "end":
            raise self.error("the expression is empty")
        expr = self.expression()
        if self.token.kind != "end":
            raise self.unexpected()
        return expr

    def expression(self) -> sympy.Expr:
        return self.nested(self.sum)

    def sum(self) -> sympy.Expr:
        terms = [self.term()]  # one Add of all terms: SymPy re-flattens on every `+`
        while self.token.text in ("+", "-") and self.token.kind == "op":
            sign = self.token.text
            self.index += 1
            right = self.term()
            terms.append(right if sign == "+" else -right)
        return self.checked(sympy.Add(*terms), self.tokens[self.index - 1])

    def term(self) -> sympy.Expr:
        factors = [self.unary()]
        while self.token.text in ("*", "/") and self.token.kind == "op":
            operator, token = self.token.text, self.token
            self.index += 1
            right = self.unary()
            if operator == "/" and right.is_zero:
                raise self.error("division by zero", token)
            factors.append(right if operator == "*" else 1 / right)
        return self.checked(sympy.Mul(*factors), self.tokens[self.index - 1])

    def checked(self, expr: sympy.Expr, token: _Token) -> sympy.Expr:
        """``expr``, if its exact numbers are within bounds and it is defined (``0**-1`` is
        not); otherwise a ParseError at ``token``."""
        try:
            _check_size(expr)
        except OverflowError as error:
            raise self.error(str(error), token) from None
        if expr.is_number and (expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)
                               or expr.is_extended_real is False):
            raise self.error(f"{_short(expr)} is not a finite real number", token)
        return expr

    def unary(self) -> sympy.Expr:
        if self.accept("-"):
            return -self.nested(self.unary)
        if self.accept("+"):
            return self.nested(self.unary)
        return self.power()

    def nested(self, rule: Callable[[], sympy.Expr]) -> sympy.Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the expression nests more than {MAX_DEPTH} levels deep")
        expr = rule()
        self.depth -= 1
        return expr

    def power(self) -> sympy.Expr:
        base = self.atom()
        if self.token.kind == "op" and self.token.text == "**":
            token = self.token
            self.index += 1
            exponent = self.nested(self.unary)
            if exponent.is_negative and base.is_zero:
                raise self.error(f"division by zero ({_short(base)}**{_short(exponent)})", token)
            try:
                return self.checked(_power(base, exponent), token)
            except OverflowError as error:
                raise self.error(str(error), token) from None
        return base

    def atom(self) -> sympy.Expr:
        token = self.token
        if token.kind == "number":
            self.index += 1
            return _number(self.text, token)
        if token.kind == "name":
            self.index += 1
            if self.token.kind == "op" and self.token.text == "(":
                return self.call(token)
            if token.text in FUNCTIONS:
                raise self.error(f"{token.text!r} is a function: call it as {token.text}(...)",
                                 token)
            if token.text in CONSTANTS:
                return CONSTANTS[token.text]
            problem = name_problem(token.text)
            if problem is not None:
                raise self.error(f"the name {token.text!r} {problem}", token)
            return sympy.Symbol(token.text, real=True)
        if self.accept("("):
            expr = self.expression()
            self.expect(")", "to close the '('")
            return expr
        raise self.unexpected()

    def call(self, name: _Token) -> sympy.Expr:
        if name.text not in FUNCTIONS:
            raise self.error(f"unknown function {name.text!r} (known: "
                             f"{', '.join(sorted(FUNCTIONS))})", name)
        arity, form = FUNCTIONS[name.text]
        self.expect("(", "after the function name")
        arguments = [self.expression()]
        while self.accept(","):
            arguments.append(self.expression())
        self.expect(")", f"to close {name.text}(")
        if len(arguments) != arity:
            raise self.error(f"{name.text} takes {arity} argument{'s' * (arity > 1)}, "
                             f"got {len(arguments)}", name)
        try:
            _check_arguments(name.text, arguments)
            return self.checked(form(*arguments), name)
        except OverflowError as error:
            raise self.error(str(error), name) from None


def parse(text: str) -> sympy.Expr:
    """Parse an expression string into an exact SymPy expression, safely.

    Only numbers, names, ``+ - * / **``, parentheses and symtape's elementwise functions
    (``exp``, ``log``, ``sin``, ``atan2``, ``relu``, ``maximum``, ... as in ``FUNCTIONS``) are
    accepted; ``pi`` is the constant. Names become real symbols. The string is never
    evaluated as Python: a malformed one raises :class:`ParseError` with the column.

    Examples
    --------
    >>> parse("x**2 * sin(y) + 0.5")
    x**2*sin(y) + 1/2
    >>> parse("relu(x - 1)")
    Max(0, x - 1)
    >>> parse("__import__('os')")
    Traceback (most recent call last):
    ...
    symtape.parsing.ParseError: cannot parse "__import__('os')": unknown function '__import__' (known: ...) at column 1
    """
    if not isinstance(text, str):
        raise TypeError(f"st.parse: expected a string, got {type(text).__name__}")
    try:
        return _Parser(text).parse()
    except RecursionError:  # the caller's own stack was already deep
        raise ParseError(text, 1, "the expression nests too deeply") from None


def parse_symbol(name: str) -> sympy.Symbol:
    """The real SymPy symbol a name stands for in parsed expressions; refuses non-names.

    Examples
    --------
    >>> parse_symbol("x") == parse("x")
    True
    >>> parse_symbol("2x")
    Traceback (most recent call last):
    ...
    ValueError: '2x' is not a variable name: use letters, digits and '_', not starting with a digit
    """
    problem = name_problem(name) if isinstance(name, str) else "is not a string"
    if problem is not None:
        raise ValueError(f"{name!r} {problem}")
    return sympy.Symbol(name, real=True)


def substitute(expr: sympy.Basic, point: dict) -> sympy.Basic:
    """``expr`` with the exact numbers of ``point`` for its symbols, under the parser's
    bounds: ``x**y`` at ``x=3, y=10**10`` would make a number of 2 GB, so it raises
    ``OverflowError`` instead (evaluate such a value numerically: :mod:`symtape.core.mpeval`).

    Examples
    --------
    >>> x, y = parse("x"), parse("y")
    >>> substitute(x**2 * sympy.sin(y), {x: 3, y: sympy.pi / 2})
    9
    >>> substitute(x**y, {x: 3, y: 10**10})
    Traceback (most recent call last):
    ...
    OverflowError: 3**10000000000 is too large to compute exactly
    """
    point = {symbol: as_sympy(value) for symbol, value in point.items()}
    return bottom_up(expr, {}, lambda node, args: point.get(node, node) if not node.args else (
        node if args == list(node.args) else _rebuilt(node, args)))


def _rebuilt(node: sympy.Basic, args: list) -> sympy.Basic:
    if node.is_Pow:
        return _power(*args)
    _check_arguments(type(node).__name__, args)
    new = node.func(*args)
    if node.is_Add or node.is_Mul:
        _check_size(new)
    return new
