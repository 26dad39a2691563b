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

Numbers are exact (``0.1`` is ``1/10``); names are real SymPy symbols, except ``pi``;
functions are the elementwise ops of symtape (their SymPy forms are the registered ones, so
``relu(x)`` is ``Max(0, x)`` exactly as ``st.relu`` records it). Anything else is a
:class:`ParseError` that names the problem and its column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from symtape.primitives import REGISTRY

__all__ = ["ParseError", "parse", "FUNCTIONS", "parse_symbol"]

MAX_DEPTH = 100  # nesting levels; deeper input is refused, never a RecursionError
MAX_BITS = 100_000  # the largest exact number a literal or a power of literals may make


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
        "sigmoid", "sign", "sin", "sinh", "softplus", "sqrt", "tan", "tanh")},
    "square": (1, lambda x: x**2),
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
    return max(abs(number.p).bit_length(), abs(number.q).bit_length(), 1)


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """``base**exponent``, refusing exact numbers too large to hold (``10**10**10``)."""
    if base.is_Rational and exponent.is_Integer and base not in (0, 1, -1):
        if _bits(base) * abs(int(exponent)) > MAX_BITS:
            raise OverflowError(f"{base}**{exponent} is too large to compute exactly")
    return base**exponent


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
        return sympy.Add(*terms)

    def term(self) -> sympy.Expr:
        factors = [self.unary()]
        while self.token.text in ("*", "/") and self.token.kind == "op":
            operator, token = self.token.text, self.token
            self.index += 1
            right = self.unary()
            if operator == "/" and right.is_zero:
                raise self.error("division by zero", token)
            factors.append(right if operator == "*" else 1 / right)
        return sympy.Mul(*factors)

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
            try:
                return _power(base, exponent)
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
            return CONSTANTS.get(token.text) or sympy.Symbol(token.text, real=True)
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
            return form(*arguments)
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
    if not _NAME.match(name) or name in FUNCTIONS or name in CONSTANTS:
        reason = ("is a function or a constant" if name in FUNCTIONS or name in CONSTANTS else
                  "is not a variable name: use letters, digits and '_', not starting with a digit")
        raise ValueError(f"{name!r} {reason}")
    return sympy.Symbol(name, real=True)
