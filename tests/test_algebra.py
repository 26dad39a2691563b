"""The three worlds a derivative rule runs in agree on the same rule."""

import numpy as np
import sympy

import symtape as st
from symtape.core.algebra import SYMBOLIC, TENSOR, numeric_algebra
from symtape.core.primitives import REGISTRY

X = sympy.Symbol("x", real=True)


def test_one_rule_three_worlds():
    rule = REGISTRY["sin"].rule(0)  # g * cos(x)
    numeric = rule(numeric_algebra(np), 2.0, None, 0.5)
    symbolic = rule(SYMBOLIC, sympy.Integer(2), None, X)
    tensor = rule(TENSOR, st.constant(2.0), None, st.Variable(0.5, name="x").value())
    assert numeric == 2.0 * np.cos(0.5)  # the hand-derived derivative, numerically
    assert symbolic == 2 * sympy.cos(X)
    assert float(tensor) == numeric and tensor.expr == 2 * sympy.cos(X)


def test_exact_constants_in_each_world():
    value, exact = 2 / np.sqrt(np.pi), 2 / sympy.sqrt(sympy.pi)
    assert numeric_algebra(np).const(value, exact) == value
    assert SYMBOLIC.const(value, exact) == exact
    assert SYMBOLIC.const(0.25) == sympy.Rational(1, 4)
    assert TENSOR.const(value, exact).expr == exact


def test_reduce_to_sums_broadcast_axes_and_keeps_uniform_values_small():
    A = numeric_algebra(np)
    ct = np.ones((4, 3, 2))
    np.testing.assert_array_equal(A.reduce_to(ct, (3, 1)), np.full((3, 1), 8.0))
    assert A.reduce_to(np.float64(1.0), (5,)) == 1.0  # a uniform cotangent is not expanded
    assert A.expand(np.float64(1.0), (2,)).shape == (2,)
    symbolic = SYMBOLIC.reduce_to(np.full((2, 2), X, dtype=object), (2,))
    assert list(symbolic) == [2 * X, 2 * X]


def test_slice_cotangents_accumulate_into_one_buffer():
    A = numeric_algebra(np)
    parts = [A.scatter(np.ones(3), (slice(1, None),), (4,)),
             A.scatter(np.ones(3), (slice(None, -1),), (4,)), np.full(4, 10.0)]
    np.testing.assert_array_equal(A.add_n(parts), [11.0, 12.0, 12.0, 11.0])
