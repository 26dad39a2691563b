"""Random compositions of symtape's functions, written as strings: the oracle for every rule.

Each example is an expression over ``x`` and ``y`` built from the parser's functions (kept
inside their domains by construction), parsed by ``st.parse`` and lowered to symtape's ops.
Its exact gradient and Hessian from the tape must equal ``sympy.diff`` of the same
expression (to 25 digits at a random point), and ``st.check_grads`` must find the symbolic,
compiled, complex-step and finite-difference derivatives in agreement there. The default
run draws a few examples; ``pytest -m slow`` draws many.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import example, given, settings
from hypothesis import strategies as hs

import symtape as st
from symtape.check import closed_forms
from symtape.core.sympy_ops import tensor_function

X, Y = sympy.symbols("x y", real=True)

# templates: every argument may be any real number, so any composition stays in the domain
UNARY = ["sin({})", "cos({})", "tan(atan({})/2)", "atan({})", "tanh({})", "sinh({}/2)",
         "cosh({}/2)", "exp({}/2)", "sigmoid({})", "softplus({})", "erf({})", "square({})",
         "log(1 + square({}))", "log1p(square({}))", "sqrt(1 + square({}))",
         "asin(tanh({})/2)", "acos(tanh({})/2)", "-{}", "({})**3", "1/(2 + square({}))**3"]
BINARY = ["{} + {}", "{} - {}", "{} * {}", "{} / (2 + sin({}))", "pow(2 + cos({}), {})",
          "atan2({}, 2 + cos({}))", "({})**2 * {}"]
LEAVES = ["x", "y", "x", "y", "0.5", "3"]


def _expressions():
    leaves = hs.sampled_from(LEAVES)

    def extend(children):
        return hs.one_of(
            hs.builds(lambda t, a: t.format(a), hs.sampled_from(UNARY), children),
            hs.builds(lambda t, a, b: t.format(a, b), hs.sampled_from(BINARY), children,
                      children))

    return hs.recursive(leaves, extend, max_leaves=5).map(lambda text: f"({text}) + x*y")


POINTS = hs.floats(-1.5, 1.5, allow_nan=False)


def _agree_with_sympy_diff(text: str, x0: float, y0: float) -> None:
    expr = st.parse(text)
    forms = closed_forms(tensor_function(expr, [X, Y]), [np.array(x0), np.array(y0)],
                         ["x", "y"])
    subs = {X: sympy.Rational(x0), Y: sympy.Rational(y0)}
    for i, u in enumerate((X, Y)):
        for ours, oracle in [(forms.jacobian[0, i], sympy.diff(expr, u))] + [
                (forms.hessian[0, i, j], sympy.diff(expr, u, v)) for j, v in enumerate((X, Y))]:
            a, b = (sympy.sympify(e).evalf(30, subs=subs) for e in (ours, oracle))
            assert abs(a - b) <= sympy.Float(10) ** -25 * max(1, abs(b)), (text, u, ours, oracle)


def _passes_check_grads(text: str, x0: float, y0: float) -> None:
    check = st.check_grads(st.parse(text), {"x": x0, "y": y0})
    assert len(check.entries) == 6
    assert all(entry.compiled is not None and entry.finite_difference is not None
               for entry in check.entries)


def _kernels_match_eager(text: str, x0: float, y0: float) -> None:
    """Traced at one point, the compiled kernels compute the right values at another: the
    first call of a new signature is the eager run, so only later calls test the kernel."""
    expr = st.parse(text)
    fun = tensor_function(expr, [X, Y])
    at = (np.float64(y0), np.float64(x0))  # the point the kernels run at, not the traced one
    value_and_grad = st.value_and_grad(fun, argnums=(0, 1))
    value_and_grad(np.float64(x0), np.float64(y0))  # trace
    value, grads = value_and_grad(*at)
    exact = [expr, sympy.diff(expr, X), sympy.diff(expr, Y)]
    subs = {X: sympy.Float(at[0], 30), Y: sympy.Float(at[1], 30)}
    for ours, oracle in zip([value, *grads], exact):
        assert float(ours) == pytest.approx(float(oracle.evalf(30, subs=subs)), rel=1e-9, abs=1e-12), text


@settings(max_examples=6, deadline=None)
@given(_expressions(), POINTS, POINTS)
def test_compiled_kernels_match_sympy_away_from_the_traced_point(text, x0, y0):
    _kernels_match_eager(text, x0, y0)


@settings(max_examples=6, deadline=None)
@given(_expressions(), POINTS, POINTS)
def test_random_compositions_match_sympy_diff(text, x0, y0):
    _agree_with_sympy_diff(text, x0, y0)


@settings(max_examples=6, deadline=None)
@given(_expressions(), POINTS, POINTS)
def test_random_compositions_pass_check_grads(text, x0, y0):
    _passes_check_grads(text, x0, y0)


@pytest.mark.parametrize("template", UNARY + BINARY)
def test_every_template_alone(template):
    text = template.format("x", "y") if template.count("{}") == 2 else template.format("x*y")
    _agree_with_sympy_diff(text, 0.7, -0.4)
    _passes_check_grads(text, 0.7, -0.4)
    _kernels_match_eager(text, 0.7, -0.4)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(_expressions(), POINTS, POINTS)
def test_random_compositions_match_sympy_diff_many(text, x0, y0):
    _agree_with_sympy_diff(text, x0, y0)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(_expressions(), POINTS, POINTS)
def test_compiled_kernels_match_sympy_away_from_the_traced_point_many(text, x0, y0):
    _kernels_match_eager(text, x0, y0)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(_expressions(), POINTS, POINTS)
@example("(0.5) + x*y", 0.0, 7.371590191944766e-306)  # the complex step underflows: 0
@example("((x)**2 * x) + x*y", 0.0, 2.225073858507e-311)  # its truncation error: -1e-40
def test_random_compositions_pass_check_grads_many(text, x0, y0):
    _passes_check_grads(text, x0, y0)
