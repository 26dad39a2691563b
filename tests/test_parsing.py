"""st.parse: the whitelist grammar, exact numbers, clear errors, and no way to run Python."""

from __future__ import annotations

import builtins
import re

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as hs

import symtape as st
from symtape.parsing import FUNCTIONS, MAX_DEPTH, ParseError, parse, parse_symbol
from symtape.core.primitives import REGISTRY

x, y, z = sympy.symbols("x y z", real=True)


@pytest.mark.parametrize("text, expected", [
    ("x + y*z", x + y * z),
    ("(x + y)*z", (x + y) * z),
    ("x - y - z", x - y - z),           # left-associative
    ("x / y / z", x / y / z),
    ("2**3**2", sympy.Integer(512)),    # right-associative, as in Python
    ("-x**2", -(x**2)),                 # unary minus binds looser than **
    ("2**-1", sympy.Rational(1, 2)),    # a signed exponent
    ("+x - -y", x + y),
    ("x*-y", -x * y),
    ("0.1 + x", sympy.Rational(1, 10) + x),   # decimals are exact
    ("1e-3*x", x / 1000),
    ("2.5E2", sympy.Integer(250)),
    (".5*x", x / 2),
    ("1.*x", x),
    ("x/3", x / 3),
    ("pi*x", sympy.pi * x),
    ("  x\t+\ny ", x + y),
    ("α*x_1", sympy.Symbol("α", real=True) * sympy.Symbol("x_1", real=True)),
    ("pow(x, 1/3)", x ** sympy.Rational(1, 3)),
    ("square(x - 1)", (x - 1) ** 2),
    ("atan2(y, x)", sympy.atan2(y, x)),
    ("maximum(x, minimum(y, 0))", sympy.Max(x, sympy.Min(y, 0))),
    ("exp(log(x))", x),                 # SymPy's own evaluation
])
def test_grammar_and_exact_numbers(text, expected):
    assert parse(text) == expected


def test_names_are_real_symbols():
    assert parse("x").is_real
    assert sympy.simplify(parse("sqrt(x**2)") - sympy.Abs(x)) == 0


@pytest.mark.parametrize("name", sorted(set(FUNCTIONS) - {"atan2", "maximum", "minimum", "pow",
                                                          "square"}))
def test_every_unary_function_is_the_registered_symbolic_form(name):
    assert parse(f"{name}(x)") == REGISTRY[name].symbolic(x)


@pytest.mark.parametrize("name", ["atan2", "maximum", "minimum"])
def test_binary_functions_are_the_registered_symbolic_forms(name):
    assert parse(f"{name}(x, y)") == REGISTRY[name].symbolic(x, y)


def test_the_functions_are_symtape_ops():
    # every name the parser accepts is an op of the same name on Tensors
    for name in FUNCTIONS:
        assert callable(getattr(st, name)), name


@pytest.mark.parametrize("text, problem, column", [
    ("", "the expression is empty", 1),
    ("x +", "the expression ends too early", 4),
    ("x + * y", "unexpected '*'", 5),
    ("x^2", "unexpected character '^' (write ** for powers)", 2),
    ("2x", "unexpected 'x' (write 2*x to multiply)", 2),
    ("x y", "unexpected 'y' (write x*y to multiply)", 3),
    ("(x)(y)", "unexpected '(' (write )*( to multiply)", 4),
    ("sin x", "'sin' is a function: call it as sin(...)", 1),
    ("exp + 1", "'exp' is a function: call it as exp(...)", 1),
    ("sin(x", "expected ')' to close sin(, found the end", 6),
    ("(x + 1", "expected ')' to close the '(', found the end", 7),
    ("x)", "unexpected ')'", 2),
    ("sin(x,)", "unexpected ')'", 7),
    ("atan2(x)", "atan2 takes 2 arguments, got 1", 1),
    ("sin(x, y)", "sin takes 1 argument, got 2", 1),
    ("foo(x)", "unknown function 'foo'", 1),
    ("x = 1", "unexpected character '=' (an expression has no '=')", 3),
    ("x.real", "unexpected character '.'", 2),
    ("1/0", "division by zero", 2),
    ("x / (y - y)", "division by zero", 3),
    ("10**10**10", "10**10000000000 is too large to compute exactly", 3),
    ("1e999999", "the number '1e999999' is too large", 1),
    ("x;y", "unexpected character ';'", 2),
])
def test_malformed_input_names_the_problem_and_its_column(text, problem, column):
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert caught.value.problem.startswith(problem)
    assert caught.value.column == column
    assert str(caught.value) == f"cannot parse {text!r}: {caught.value.problem} at column {column}"
    assert isinstance(caught.value, ValueError)  # catchable as the usual bad-value error


@pytest.mark.parametrize("text", ["(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1),
                                  "-" * 5000 + "x", "sin(" * 1000 + "x" + ")" * 1000],
                         ids=["parentheses", "signs", "calls"])
def test_deep_nesting_is_refused_not_a_recursion_error(text):
    with pytest.raises(ParseError, match="nests"):
        parse(text)


def test_a_long_flat_expression_parses():
    assert parse(" + ".join(f"x{i}" for i in range(3000))).is_Add


INJECTIONS = [
    "__import__('os').system('echo pwned')",
    '__import__("os").system("echo pwned")',
    "exec('1')", "eval('1')", "open('/etc/passwd')", "lambda: 1", "x.__class__",
    "globals()", "[x for x in ()]", "x if y else z", "getattr(x, 'y')", "`x`", "x; import os",
    "Symbol('x')", "Integer(1)", "S('x')", "x._sympy_", "breakpoint()",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_parse_errors_and_never_evaluate(text, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the parser must never evaluate its input")

    for module, name in [(builtins, "eval"), (builtins, "exec"), (builtins, "compile"),
                         (sympy, "sympify"), (sympy, "parse_expr"), (sympy, "S")]:
        monkeypatch.setattr(module, name, forbidden)
    with pytest.raises(ParseError):
        parse(text)


def test_non_strings_are_refused():
    with pytest.raises(TypeError, match="expected a string, got int"):
        parse(3)


def test_parse_symbol():
    assert parse_symbol("x") == x
    for bad, reason in [("2x", "not a variable name"), ("x-y", "not a variable name"),
                        ("sin", "is a function or a constant"), ("pi", "function or a constant")]:
        with pytest.raises(ValueError, match=reason):
            parse_symbol(bad)


# ---------------------------------------------------------------- properties

_LEAVES = hs.sampled_from([x, y, sympy.Integer(2), sympy.Rational(1, 4), sympy.Integer(3)])


def _node(children):
    unary = hs.tuples(hs.sampled_from(["sin", "exp", "tanh", "sqrt", "relu", "erf", "-"]),
                      children)
    binary = hs.tuples(hs.sampled_from(["+", "-", "*", "/", "atan2", "maximum"]), children,
                       children)
    return hs.one_of(unary, binary)


_TREES = hs.recursive(_LEAVES, _node, max_leaves=8)


def _text_and_expr(tree):
    """Print a random tree as text (over-parenthesized) and build the same SymPy expression."""
    if isinstance(tree, sympy.Basic):
        return f"({tree})", tree
    op, *children = tree
    parts = [_text_and_expr(c) for c in children]
    texts, exprs = [p[0] for p in parts], [p[1] for p in parts]
    if op == "-" and len(children) == 1:
        return f"(-{texts[0]})", -exprs[0]
    if op in "+-*/":
        if op == "/" and exprs[1].is_zero:
            return texts[0], exprs[0]
        form = {"+": sympy.Add, "-": lambda a, b: a - b, "*": sympy.Mul, "/": lambda a, b: a / b}
        return f"({texts[0]} {op} {texts[1]})", form[op](*exprs)
    return f"{op}({', '.join(texts)})", FUNCTIONS[op][1](*exprs)


@settings(max_examples=40, deadline=None)
@given(_TREES)
def test_printed_random_expressions_parse_back_to_the_same_tree(tree):
    text, expected = _text_and_expr(tree)
    if any(node.is_number and (node.is_extended_real is False or node.has(sympy.zoo, sympy.nan))
           for node in sympy.preorder_traversal(expected)):
        with pytest.raises(ParseError, match="is not a finite real number"):
            parse(text)  # sqrt(1/4 - 2): a complex constant is refused
    else:
        assert parse(text) == expected


@settings(max_examples=200, deadline=None)
@given(hs.text(alphabet="xy0123456789.+-*/()^,= e_sinpqrt\"'[];:", max_size=30))
def test_arbitrary_strings_parse_or_raise_parse_error(text):
    try:
        result = parse(text)
    except ParseError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert isinstance(result, sympy.Expr)


# ---------------------------------------------------------------- names and bounds (issue 19)


@pytest.mark.parametrize("text, problem, column", [
    ("x*ｘ", "the name 'ｘ' is read by Python as 'x' (NFKC normalization); write 'x'", 3),
    ("µ + 1", "the name 'µ' is read by Python as 'μ' (NFKC normalization)", 1),
    ("x²", "the name 'x²' is not a Python identifier (Python reads it as 'x2'); write 'x2'", 1),
    ("lambda*x", "the name 'lambda' is a Python keyword: generated code could not use it as a "
                 "name; write 'lambda_'", 1),
    ("x + None", "the name 'None' is a Python keyword", 5),
    ("True", "the name 'True' is a Python keyword", 1),
    ("__debug__", "the name '__debug__' is a Python keyword", 1),
])
def test_names_python_cannot_use_as_distinct_parameters_are_refused(text, problem, column):
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert caught.value.problem.startswith(problem)
    assert caught.value.column == column


@pytest.mark.parametrize("name", ["ｘ", "x²", "lambda", "None", "µ"])
def test_parse_symbol_refuses_the_same_names(name):
    with pytest.raises(ValueError, match=f"^{name!r} is "):
        parse_symbol(name)


def test_names_python_reads_as_themselves_are_kept():
    # soft keywords, Greek letters and underscores are ordinary Python parameters
    for name in ("match", "case", "type", "_", "μ", "λ", "x_1", "_c0"):
        assert parse(name) == sympy.Symbol(name, real=True)
        assert parse_symbol(name) == sympy.Symbol(name, real=True)


@pytest.mark.parametrize("text, problem", [
    ("x*0**-1", "division by zero (0**-1)"),
    ("sqrt(-1)*x", "I is not a finite real number"),
    ("log(0) + x", "zoo is not a finite real number"),
    ("log(-1)", "I*pi is not a finite real number"),
    ("atan2(0, 0)", "nan is not a finite real number"),
])
def test_undefined_or_complex_constants_are_refused(text, problem):
    with pytest.raises(ParseError, match=re.escape(problem)):
        parse(text)


@pytest.mark.parametrize("text", [
    "2**(10**20/3)",            # a rational exponent (grew to gigabytes)
    "2**-100000",               # a huge denominator
    "sqrt(2)**(10**20)",        # an irrational base SymPy turns into 2**(5*10**19)
    "(2*x)**(10**20)",          # SymPy distributes the power onto the coefficient
    "pow(3, 10**6)",
    "square(square(square(square(10**1000))))",
    "exp(10**20*log(2))",       # SymPy rewrites it as 2**(10**20)
    "10**3999*10**3999",        # a product past 4000 digits
    "sqrt(10**3999 + 1)",       # an exact root of a long number: a factorization
    "(10**400 + 1)**(1/3)",
    "log(10**400 + 3)",
])
def test_exact_numbers_are_bounded(text):
    with pytest.raises(ParseError, match="too large|too costly|over 13300 bits"):
        parse(text)


def test_numbers_within_the_bounds_are_exact():
    assert parse("10**3999") == sympy.Integer(10) ** 3999
    assert parse("2**(1/3)*x") == sympy.cbrt(2) * x
    assert parse("(2*x)**10") == 1024 * x**10
    assert parse("sqrt(10**200)") == sympy.Integer(10) ** 100
    assert parse("(x + 1)**(10**20)") == (x + 1) ** (10**20)  # no number is built
    assert parse("x**99999999") == x**99999999


def test_substitute_is_exact_within_the_bounds_and_refuses_beyond():
    from symtape.parsing import substitute

    assert substitute(x**2 * sympy.exp(y), {x: 3, y: 0}) == 9
    assert substitute(x / y, {x: sympy.Rational(1, 3), y: 2}) == sympy.Rational(1, 6)
    for expr, point in [(x**y, {x: 3, y: 10**10}), (x**x**x, {x: 9}),
                        (x**99999999, {x: 2}), (x * y, {x: 10**3999, y: 10**3999})]:
        with pytest.raises(OverflowError):
            substitute(expr, point)
