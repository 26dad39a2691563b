"""symtape.core.mpeval: values of SymPy expressions at a point, against math and hand values."""

from __future__ import annotations

import math

import pytest
import sympy

from symtape.core.mpeval import evaluate

x, y = sympy.symbols("x y", real=True)


@pytest.mark.parametrize("expr, point, expected", [
    (sympy.sin(x) * sympy.exp(y) + sympy.atan2(y, x), {x: 0.3, y: -1.2},
     math.sin(0.3) * math.exp(-1.2) + math.atan2(-1.2, 0.3)),
    (sympy.Max(x, y) - sympy.Min(x, 2 * y), {x: 1, y: 3}, 3 - 1),
    (sympy.Piecewise((x**2, x > 0), (-x, True)), {x: -2}, 2),
    (sympy.Piecewise((x**2, x > 0), (-x, True)), {x: 3}, 9),
    (sympy.Heaviside(x, sympy.Rational(1, 4)) + sympy.Heaviside(y), {x: 0, y: -1}, 0.25),
    (sympy.Abs(x) * sympy.sign(y) + sympy.erf(x), {x: -0.5, y: 2}, 0.5 + math.erf(-0.5)),
    (sympy.pi * sympy.E * x ** sympy.Rational(1, 3), {x: 8}, 2 * math.pi * math.e),
    (sympy.log(1 + sympy.exp(x)), {x: 800}, 800.0),  # no overflow in between
    (sympy.tanh(x) + sympy.erf(y), {x: 10**6, y: -10**6}, 0.0),
])
def test_values_match_hand_computed_ones(expr, point, expected):
    (value,) = evaluate([expr], point)
    assert value == pytest.approx(expected, rel=1e-15, abs=1e-300)


def test_cancellation_keeps_the_digits_a_float_needs():
    # (1 + h) - 1 with h = 1e-25: a float computation gives 0
    (value,) = evaluate([(1 + x) - 1 + 0 * y], {x: sympy.Rational(1, 10**25), y: 0})
    assert value == pytest.approx(1e-25, rel=1e-15)


@pytest.mark.parametrize("expr, point, expected", [
    (x**y, {x: 3, y: 10**10}, math.inf),
    (x**y, {x: -2, y: 10**9 + 1}, -math.inf),     # a negative base to an odd power
    (x**y, {x: sympy.Rational(1, 2), y: 10**10}, 0.0),
    (sympy.exp(sympy.exp(sympy.exp(x))), {x: 10}, math.inf),
    (sympy.exp(-sympy.exp(sympy.exp(x))), {x: 10}, 0.0),
    (sympy.cosh(sympy.exp(sympy.exp(x))), {x: 10}, math.inf),
])
def test_huge_magnitudes_are_bounded(expr, point, expected):
    (value,) = evaluate([expr], point)
    assert value == expected


def test_undefined_and_complex_values():
    values = evaluate([1 / x, sympy.log(x - 1), sympy.sqrt(x - 1), sympy.sin(10**1300 * (x + 1))],
                      {x: 0})
    assert math.isnan(values[0])
    assert values[1] == pytest.approx(complex(0, math.pi), rel=1e-15)
    assert values[2] == pytest.approx(1j, rel=1e-15)
    assert math.isnan(values[3])  # an argument too large to reduce modulo pi


def test_shared_subexpressions_are_evaluated_once():
    # 30 levels, each using the previous one three times: 3**30 nodes as a tree, ~150 as a DAG
    e = x
    for _ in range(30):
        e = sympy.sin(e) * sympy.cos(e) + e / 2
    value = 0.7
    for _ in range(30):
        value = math.sin(value) * math.cos(value) + value / 2
    (result,) = evaluate([e], {x: 0.7})
    assert result == pytest.approx(value, rel=1e-13)
