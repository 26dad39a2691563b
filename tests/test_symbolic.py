"""Exact closed forms: numbers, symbols, laziness, and linear-time construction."""

import numpy as np
import pytest
import sympy

import symtape as st
from symtape.arrays import objarrays

X = sympy.Symbol("x", real=True)


@pytest.mark.parametrize("value, exact", [
    (0.5, sympy.Rational(1, 2)), (2.0, sympy.Integer(2)), (0.1, sympy.Rational(1, 10)),
    (-1.25, sympy.Rational(-5, 4)), (3, sympy.Integer(3)), (1e-20, sympy.Rational(1, 10**20)),
    (np.float32(0.1), sympy.Rational(1, 10)), (np.float16(0.5), sympy.Rational(1, 2)),
])
def test_short_decimals_are_exact(value, exact):
    assert objarrays.exact_number(value) == exact
    assert st.constant(value).expr == exact


def test_long_floats_keep_their_binary_value():
    third = objarrays.exact_number(1 / 3)
    assert isinstance(third, sympy.Float) and float(third) == 1 / 3


def test_non_finite_values():
    assert objarrays.exact_number(float("inf")) == sympy.oo
    assert objarrays.exact_number(-np.inf) == -sympy.oo
    assert objarrays.exact_number(float("nan")) is sympy.nan


def test_decimal_coefficients_stay_exact_in_expressions():
    x = st.Variable(1.0, name="x")
    assert (0.1 * x + 0.25).expr == X / 10 + sympy.Rational(1, 4)
    assert (x ** 0.5).expr == sympy.sqrt(X)
    x32 = st.Variable(1.0, dtype=st.float32, name="x")
    assert (x32 * 0.1).expr == X / 10  # float32(0.1) reads as the decimal 0.1


def test_symbols_are_real_so_abs_differentiates_cleanly():
    x = st.Variable(-2.0, name="x")
    with st.GradientTape() as tape:
        y = st.abs(x) ** 3
    g = tape.gradient(y, x)
    assert g.expr == 3 * sympy.Abs(X) ** 2 * sympy.sign(X)
    assert not g.expr.has(sympy.re) and not g.expr.has(sympy.im)
    assert float(g) == -12.0


def test_expr_of_constants_and_arrays():
    assert st.constant([0.5, 2.0]).expr == sympy.Array([sympy.Rational(1, 2), 2])
    assert st.constant(True).expr is sympy.true


def test_comparison_and_where_are_piecewise():
    x = st.Variable(1.0, name="x")
    y = st.where(x > 0, x ** 2, -x)
    assert y.expr == sympy.Piecewise((X**2, X > 0), (-X, True))


def test_accumulated_sum_is_built_by_one_n_ary_add(monkeypatch):
    from symtape.core import symbolic

    calls = []
    real = objarrays.add_many
    monkeypatch.setattr(symbolic.objarrays, "add_many",
                        lambda terms: calls.append(len(terms)) or real(terms))
    xs = [st.Variable(1.0, name=f"a{i}") for i in range(5_000)]
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    expr = total.expr
    assert len(expr.args) == 5_000
    assert calls == [5_000]  # one Add of all terms, not 4,999 ever-longer ones


def test_subtraction_chains_keep_signs():
    xs = [st.Variable(1.0, name=f"s{i}") for i in range(5)]
    total = xs[0]
    for x in xs[1:]:
        total = total - x
    syms = sympy.symbols("s0:5", real=True)
    assert total.expr == syms[0] - sum(syms[1:])
    right_nested = xs[0] - (xs[1] - (xs[2] + xs[3]))
    assert right_nested.expr == syms[0] - syms[1] + syms[2] + syms[3]


def test_partial_sums_used_elsewhere_are_still_right():
    a, b, c = (st.Variable(1.0, name=n) for n in "abc")
    partial = a + b
    total = partial + c
    product = partial * c
    A, B, C = sympy.symbols("a b c", real=True)
    assert total.expr == A + B + C
    assert sympy.expand(product.expr - (A + B) * C) == 0
    assert partial.expr == A + B


def test_objarray_reductions_and_matmul():
    a = np.array([[X, 1], [2, X]], dtype=object)
    assert objarrays.reduce_add(a) == 2 * X + 3
    assert list(objarrays.reduce_max(a, axis=0)) == [sympy.Max(2, X), sympy.Max(1, X)]
    product = objarrays.matmul(a, a)
    assert product[0, 0] == X**2 + 2 and product[0, 1] == 2 * X
    assert objarrays.add_many([a, X]).shape == (2, 2)
