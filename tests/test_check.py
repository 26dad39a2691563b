"""st.check_grads: every method side by side; a wrong derivative caught with a readable table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

import symtape as st
from symtape.check import closed_forms

x_, y_, a_ = sympy.symbols("x y a", real=True)


def loss(w):
    return st.reduce_sum(st.exp(w) * w)


def by_label(check):
    return {entry.label: entry for entry in check.entries}


# ---------------------------------------------------------------- agreement


def test_all_methods_agree_with_hand_derived_values():
    w = np.array([0.5, -1.0])
    check = st.check_grads(loss, w)
    entries = by_label(check)
    assert set(entries) == {"df/dw[0]", "df/dw[1]", "d2f/dw[0]dw[0]", "d2f/dw[0]dw[1]",
                            "d2f/dw[1]dw[0]", "d2f/dw[1]dw[1]"}
    # d/dw (w e^w) = (1 + w) e^w; d2/dw2 = (2 + w) e^w; the Hessian is diagonal
    for i, wi in enumerate(w):
        first, second = entries[f"df/dw[{i}]"], entries[f"d2f/dw[{i}]dw[{i}]"]
        assert first.symbolic == pytest.approx((1 + wi) * math.exp(wi), abs=1e-15)
        assert second.symbolic == pytest.approx((2 + wi) * math.exp(wi), rel=1e-15)
        for column in ("compiled", "complex_step"):
            assert getattr(first, column) == pytest.approx(first.symbolic, rel=1e-14, abs=1e-15)
            assert getattr(second, column) == pytest.approx(second.symbolic, rel=1e-14)
        assert first.finite_difference == pytest.approx(first.symbolic, rel=1e-9, abs=1e-10)
    assert entries["d2f/dw[0]dw[1]"].symbolic == 0
    assert check.ok and check.failures == []


def test_several_arguments_and_mixed_shapes():
    def f(x, y):
        return st.reduce_sum(x**2) * y + st.sin(y)

    check = st.check_grads(f, (np.array([1.0, 2.0]), 0.5))
    entries = by_label(check)
    assert entries["df/dx[1]"].symbolic == pytest.approx(2 * 2.0 * 0.5)
    assert entries["df/dy"].symbolic == pytest.approx(5.0 + math.cos(0.5))
    assert entries["d2f/dx[0]dy"].symbolic == pytest.approx(2.0)
    assert entries["d2f/dydy"].symbolic == pytest.approx(-math.sin(0.5))
    assert len(check.entries) == 3 + 9


def test_vector_outputs_check_the_jacobian_and_every_component_hessian():
    def f(x):
        return st.stack([x[0] * x[1], st.sin(x[0])])

    entries = by_label(st.check_grads(f, np.array([1.0, 2.0])))
    assert entries["df[0]/dx[1]"].symbolic == 1.0
    assert entries["df[1]/dx[0]"].symbolic == pytest.approx(math.cos(1.0))
    assert entries["d2f[0]/dx[0]dx[1]"].symbolic == 1.0
    assert entries["d2f[1]/dx[0]dx[0]"].symbolic == pytest.approx(-math.sin(1.0))
    assert len(entries) == 4 + 8


def test_complex_step_only_where_the_closed_form_is_holomorphic():
    smooth = st.check_grads(lambda x: st.exp(x) * st.sin(x), 0.3)
    assert all(e.complex_step is not None for e in smooth.entries)
    kinked = st.check_grads(lambda x: st.relu(x) * x, 0.3)
    assert all(e.complex_step is None for e in kinked.entries)
    assert "complex step" not in str(kinked)
    # outside the real domain the complex extension is another branch: not used
    assert st.check_grads(lambda x: st.sqrt(x) + 1.0, 4.0).entries[0].complex_step is not None


def test_closed_over_variables_take_their_current_value():
    w = st.Variable(3.0, name="w")
    check = st.check_grads(lambda x: w * x**2, 2.0)
    assert by_label(check)["df/dx"].symbolic == 12.0
    assert by_label(check)["d2f/dxdx"].symbolic == 6.0


def test_integer_arguments_are_checked_as_floats():
    assert by_label(st.check_grads(lambda x: x**3, 2, order=1))["df/dx"].symbolic == 12.0


def test_success_report_prints_a_table_of_every_entry():
    text = str(st.check_grads(lambda x, y: x * y, (2.0, 3.0), order=1))
    lines = text.splitlines()
    assert lines[0].startswith("check_grads: all 2 first-derivative entries agree at x=2, y=3 "
                               "(rtol=1e-05, atol=")
    assert lines[1].split() == ["entry", "symbolic", "compiled", "complex", "step", "finite",
                                "diff.", "rel.", "error"]
    assert lines[2].split()[:4] == ["df/dx", "3", "3", "3"]


# ---------------------------------------------------------------- catching mistakes


def test_a_wrong_hand_written_gradient_is_caught_with_a_table():
    with pytest.raises(AssertionError) as caught:
        st.check_grads(loss, np.array([0.5, -1.0]), order=1, grad=lambda w: np.exp(w))
    message = str(caught.value)
    first, header, *rows = message.splitlines()
    assert first.startswith("check_grads: 2 of 2 first-derivative entries disagree at "
                            "w=[ 0.5, -1. ]")
    assert "yours" in header and "symbolic" in header and "finite diff." in header
    assert rows[0].split()[0] == "df/dw[0]" and rows[0].endswith("<-- differs")
    yours = float(rows[0].split()[3])
    assert yours == pytest.approx(math.exp(0.5), rel=1e-11)


def test_a_right_hand_written_gradient_and_hessian_pass():
    def f(x, y):
        return x**2 * st.sin(y)

    def grad(x, y):
        return 2 * x * np.sin(y), x**2 * np.cos(y)

    def hess(x, y):
        return [[2 * np.sin(y), 2 * x * np.cos(y)], [2 * x * np.cos(y), -x**2 * np.sin(y)]]

    check = st.check_grads(f, (1.5, 0.5), grad=grad, hess=hess)
    assert all(e.yours is not None for e in check.entries)


def test_a_wrong_hessian_entry_is_the_one_reported():
    def hess(x):
        h = np.diag((2 + x) * np.exp(x))
        h[0, 1] = h[1, 0] = 1e-3  # a stray coupling
        return h

    with pytest.raises(AssertionError) as caught:
        st.check_grads(loss, np.array([0.5, -1.0]), hess=hess)
    rows = str(caught.value).splitlines()[2:]
    assert sorted(row.split()[0] for row in rows) == ["d2f/dw[0]dw[1]", "d2f/dw[1]dw[0]"]
    assert str(caught.value).startswith("check_grads: 2 of 6 first and second-derivative")


def test_a_non_smooth_point_shows_the_convention_against_finite_differences():
    # relu'(0) = 0 by convention; the central difference sees the average of both sides
    with pytest.raises(AssertionError) as caught:
        st.check_grads(st.relu, 0.0, order=1)
    row = str(caught.value).splitlines()[2].split()
    assert row[:3] == ["df/dx", "0", "0"] and float(row[3]) == pytest.approx(0.5)


def test_tolerances_decide():
    w = np.array([0.5, -1.0])
    wrong = lambda w: (1 + w) * np.exp(w) * (1 + 1e-4)  # noqa: E731  off by 1e-4 relative
    st.check_grads(loss, w, order=1, grad=wrong, rtol=1e-3)
    with pytest.raises(AssertionError):
        st.check_grads(loss, w, order=1, grad=wrong, rtol=1e-5)
    # finite differences are allowed their own error (3e-10 of the scale), nothing more
    st.check_grads(loss, w, order=1, rtol=0.0, atol=0.0)
    with pytest.raises(AssertionError):
        st.check_grads(loss, w, order=1, rtol=0.0, atol=0.0,
                       grad=lambda w: (1 + w) * np.exp(w) + 1e-9)


def test_the_complex_step_is_allowed_its_underflow_and_nothing_more():
    # found by `pytest -m slow`: 0.5 + x*y at x=0, y=7.37e-306 has df/dx = y, but the
    # complex step carries h * y = 7e-326 in its imaginary part, below the smallest
    # subnormal float: it reads 0, which atol = rtol * 7.37e-306 refused
    y0 = 7.371590191944766e-306
    check = st.check_grads(st.parse("(0.5) + x*y"), {"x": 0.0, "y": y0})
    dx = check.entries[0]
    assert (dx.label, dx.symbolic, dx.compiled) == ("df/dx", y0, y0)
    assert dx.complex_step == 0.0 and dx.finite_difference == 0.0
    # the allowance is the complex step's own: a hand-written gradient must still be right
    with pytest.raises(AssertionError, match="df/dx"):
        st.check_grads(lambda x, y: 0.5 + x * y, (0.0, y0), order=1,
                       grad=lambda x, y: (0.0 * y, x))
    # above tiny / h (2.2e-288) its imaginary parts are normal floats: exact to rounding
    check = st.check_grads(lambda x, y: 0.5 + x * y, (0.0, 1e-280), order=1, rtol=0.0,
                           atol=0.0)
    assert check.entries[0].complex_step == pytest.approx(1e-280, rel=1e-15)
    # and its truncation error, h**2 * f''' / 6: x**3 + x*y at x=0 has f''' = 6, and
    # df/dx = y = 2.2e-311 reads -1e-40 (found by `pytest -m slow` too)
    y1 = 2.225073858507e-311
    check = st.check_grads(st.parse("((x)**2 * x) + x*y"), {"x": 0.0, "y": y1})
    assert check.entries[0].complex_step == pytest.approx(-1e-40, rel=1e-12)
    with pytest.raises(AssertionError, match="df/dx"):
        st.check_grads(lambda x, y: x**3 + x * y, (0.0, y1), grad=lambda x, y: (0.0 * y, x))


# ---------------------------------------------------------------- SymPy expressions


def test_sympy_expression_with_a_dict_or_values_in_order():
    expr = x_**2 * sympy.sin(y_) + x_ / 3
    check = st.check_grads(expr, {"x": 1.0, y_: 2.0})
    entries = by_label(check)
    assert entries["df/dx"].symbolic == pytest.approx(2 * math.sin(2.0) + 1 / 3, rel=1e-15)
    assert entries["d2f/dxdy"].symbolic == pytest.approx(2 * math.cos(2.0), rel=1e-15)
    assert [e.symbolic for e in st.check_grads(expr, (1.0, 2.0)).entries] == \
        [e.symbolic for e in check.entries]


def test_sympy_expression_parameters_are_held_fixed():
    check = st.check_grads(a_ * x_**2, {"x": 2.0, "a": 3.0}, wrt=["x"])
    assert [e.label for e in check.entries] == ["df/dx", "d2f/dxdx"]
    assert [e.symbolic for e in check.entries] == [12.0, 6.0]


def test_sympy_expression_errors():
    with pytest.raises(ValueError, match="no value for y"):
        st.check_grads(x_ * y_, {"x": 1.0})
    with pytest.raises(ValueError, match="1 values for the 2 symbols x, y"):
        st.check_grads(x_ * y_, (1.0,))
    with pytest.raises(ValueError, match="symtape has no op for gamma"):
        st.check_grads(sympy.gamma(x_), (1.0,))
    with pytest.raises(TypeError, match="a SymPy function must be a scalar sympy.Expr"):
        st.check_grads(sympy.Matrix([x_]), (1.0,))


# ---------------------------------------------------------------- bad input


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="order must be 1 or 2, got 3"):
        st.check_grads(st.sin, 1.0, order=3)
    with pytest.raises(ValueError, match="hess= needs order=2"):
        st.check_grads(st.sin, 1.0, order=1, hess=lambda x: 0)
    with pytest.raises(TypeError, match="argument x has dtype complex128"):
        st.check_grads(lambda x: x, 1j)
    with pytest.raises(ValueError, match="argument x is not finite"):
        st.check_grads(lambda x: x, math.nan)
    with pytest.raises(TypeError, match="must compute a float Tensor.*returned float64"):
        st.check_grads(lambda x: np.sin(x), 1.0)
    with pytest.raises(TypeError, match="wrt= is for SymPy expressions"):
        st.check_grads(st.sin, 1.0, wrt=["x"])
    with pytest.raises(ValueError, match="grad returned shape \\(3,\\) for w of shape \\(2,\\)"):
        st.check_grads(loss, np.zeros(2), order=1, grad=lambda w: np.zeros(3))


# ---------------------------------------------------------------- closed forms


def test_closed_forms_equal_sympy_diff():
    forms = closed_forms(lambda x, y: st.atan2(y, x) * st.exp(x),
                         [np.array(1.0), np.array(2.0)], ["x", "y"])
    f = sympy.atan2(y_, x_) * sympy.exp(x_)
    for i, u in enumerate((x_, y_)):
        assert sympy.simplify(forms.jacobian[0, i] - sympy.diff(f, u)) == 0
        for j, v in enumerate((x_, y_)):
            assert sympy.simplify(forms.hessian[0, i, j] - sympy.diff(f, u, v)) == 0


# ---------------------------------------------------------------- issue 19


def test_a_parameter_named_like_a_function_keeps_every_column():
    # `exp` shadowed numpy's exp in lambdify's namespace: the complex step crashed
    check = st.check_grads(lambda exp: st.exp(exp), (0.3,))
    (first, second) = check.entries
    assert first.complex_step == pytest.approx(math.exp(0.3), rel=1e-14)
    assert second.complex_step == pytest.approx(math.exp(0.3), rel=1e-14)
    check = st.check_grads(lambda numpy, sin: numpy * st.sin(sin), (2.0, 0.5), order=1)
    assert [e.complex_step for e in check.entries] == pytest.approx(
        [math.sin(0.5), 2.0 * math.cos(0.5)], rel=1e-14)


def _nested_sine(depth):
    def f(x):
        for _ in range(depth):
            x = st.sin(x)
        return x
    return f


def test_the_symbolic_column_of_deep_nesting_is_right_without_sympy_evalf(monkeypatch):
    # evalf costs twice as much per level of nesting (16 levels: minutes); the reference
    # values are computed once per distinct subexpression, without it
    def forbidden(*args, **kwargs):
        raise AssertionError("evalf walks the tree: exponential in nesting depth")

    monkeypatch.setattr(sympy.Expr, "evalf", forbidden)
    monkeypatch.setattr(sympy.Expr, "n", forbidden)
    check = st.check_grads(_nested_sine(24), (0.5,))
    x, first, second = 0.5, 1.0, 0.0  # by hand: the chain rule, forward, with its derivative
    for _ in range(24):
        first, second = first * math.cos(x), second * math.cos(x) - first**2 * math.sin(x)
        x = math.sin(x)
    assert check.entries[0].symbolic == pytest.approx(first, rel=1e-13)
    assert check.entries[1].symbolic == pytest.approx(second, rel=1e-12)


def test_a_recurrence_of_two_parameters_checks_its_hessian():
    def f(a, b):
        y = st.constant(0.3)
        for _ in range(12):
            y = st.tanh(a * y + b)
        return y

    check = st.check_grads(f, (0.7, 0.2))
    assert check.ok and len(check.entries) == 6
    # the reference against a central difference of a hand-written forward gradient
    def gradient(a, b):
        y, dya, dyb = 0.3, 0.0, 0.0
        for _ in range(12):
            t = math.tanh(a * y + b)
            dya, dyb = (1 - t * t) * (y + a * dya), (1 - t * t) * (a * dyb + 1)
            y = t
        return np.array([dya, dyb])
    h = 1e-6
    hessian = np.array([(gradient(0.7 + h, 0.2) - gradient(0.7 - h, 0.2)) / (2 * h),
                        (gradient(0.7, 0.2 + h) - gradient(0.7, 0.2 - h)) / (2 * h)])
    np.testing.assert_allclose([e.symbolic for e in check.entries[:2]], gradient(0.7, 0.2),
                               rtol=1e-13)
    np.testing.assert_allclose([e.symbolic for e in check.entries[2:]], hessian.ravel(),
                               rtol=1e-7)


@pytest.mark.parametrize("args, error, message", [
    ((np.array([]),), ValueError, r"check_grads: argument w is empty \(shape \(0,\)\): there "
                                  "is nothing to differentiate by"),
    ((np.zeros((2, 0)),), ValueError, r"argument w is empty \(shape \(2, 0\)\)"),
    ((sympy.Integer(2),), TypeError, r"check_grads: argument w is the SymPy number 2; give a "
                                     r"float or a NumPy array \(float\(value\) converts"),
    ((sympy.Rational(1, 2),), TypeError, "argument w is the SymPy number 1/2; give a float"),
])
def test_arguments_it_cannot_differentiate_by_are_refused(args, error, message):
    with pytest.raises(error, match=message):
        st.check_grads(lambda w: st.reduce_sum(w * w), args)


@pytest.mark.parametrize("options, error, message", [
    ({"rtol": -1e-5}, ValueError, r"check_grads: rtol=-1e-05 is not a tolerance; give a "
                                  r"finite number >= 0 \(e.g. rtol=1e-5\)"),
    ({"rtol": math.nan}, ValueError, "rtol=nan is not a tolerance"),
    ({"rtol": math.inf}, ValueError, "rtol=inf is not a tolerance"),
    ({"atol": -1.0}, ValueError, r"atol=-1.0 is not a tolerance; give a finite number >= 0"),
    ({"atol": math.nan}, ValueError, "atol=nan is not a tolerance"),
    ({"rtol": "1e-3"}, TypeError, "check_grads: rtol must be a number, got str '1e-3'"),
    ({"atol": True}, TypeError, "atol must be a number, got bool True"),
])
def test_tolerances_must_be_finite_and_non_negative(options, error, message):
    with pytest.raises(error, match=message):
        st.check_grads(lambda x: x * x, (2.0,), **options)
