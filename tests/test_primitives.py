"""Property tests that keep every derivative rule in ``symtape.core.primitives`` honest.

Every check uses an oracle that does not go through symtape's own rules:

- ``sympy.diff`` (or ``sympy.Matrix.jacobian`` / ``sympy.hessian``) of the forward ``.expr``,
  whose own correctness is checked by evaluating it against NumPy at the same point;
- central finite differences (a five-point stencil, float64) of an independent NumPy
  implementation of the same function;
- hand-derived formulas at the documented non-smooth conventions.

The default run keeps every property small (``max_examples`` <= 25); the ``slow`` variants
(``pytest -m slow``) run the same properties with many more examples.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as hs
from helpers import entries, symbols

import symtape as st

X, Y = sympy.symbols("x y", real=True)
A_, B_ = sympy.symbols("a b", real=True)

FAST = settings(max_examples=12, deadline=None)
SMALL = settings(max_examples=8, deadline=None)
SLOW = settings(max_examples=150, deadline=None)

_KINKED = (sympy.Heaviside, sympy.Piecewise, sympy.Max, sympy.Min, sympy.sign, sympy.Abs,
           sympy.Eq, sympy.DiracDelta)


# ---------------------------------------------------------------- oracles and helpers


def fd(f, x0: float, scale: float = 1.0) -> float:
    """Five-point central difference of a float64 NumPy function at ``x0``."""
    h = 1e-4 * scale
    return (-f(x0 + 2 * h) + 8 * f(x0 + h) - 8 * f(x0 - h) + f(x0 - 2 * h)) / (12 * h)


def fd_jacobian(f, x0: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of ``f`` (array -> array): shape ``f(x0).shape + x0.shape``."""
    x0 = np.asarray(x0, dtype=np.float64)
    out_shape = np.shape(f(x0))
    jac = np.zeros(out_shape + x0.shape)
    for index in np.ndindex(*x0.shape):
        def along(t, index=index):
            x = x0.copy()
            x[index] += t
            return np.asarray(f(x), dtype=np.float64)

        jac[(Ellipsis,) + index] = fd(along, 0.0)
    return jac


def assert_fd_close(numeric, oracle, fscale=1.0, rtol=1e-7):
    """``numeric`` agrees with a finite difference, allowing for its rounding error."""
    numeric = np.asarray(numeric, dtype=np.float64)
    oracle = np.asarray(oracle, dtype=np.float64)
    atol = 1e-9 * max(1.0, float(np.max(np.abs(fscale))))
    np.testing.assert_allclose(numeric, oracle, rtol=rtol, atol=atol)


def high_precision(expr, subs: dict) -> float:
    """Evaluate a SymPy expression at a point with 30 significant digits."""
    exact = {s: sympy.Float(float(v), 30) for s, v in subs.items()}
    value = sympy.sympify(expr).xreplace(exact).evalf(30)
    return float(value)


@functools.lru_cache(maxsize=None)
def _proved_zero(difference: sympy.Expr) -> bool:
    if difference == 0:
        return True
    if sympy.expand(difference) == 0:
        return True
    if difference.has(sympy.Float):  # an inexact coefficient: never equal, and slow to simplify
        return False
    return sympy.simplify(difference) == 0


def is_kinked(expr) -> bool:
    return any(sympy.sympify(expr).has(k) for k in _KINKED)


def assert_same_expr(lib, oracle, subs: dict):
    """Symbolic identity for smooth expressions; equal values at ``subs`` for kinked ones."""
    lib, oracle = sympy.sympify(lib), sympy.sympify(oracle)
    # values first: a wrong rule fails here at once, before any (slow) simplification
    a, b = high_precision(lib, subs), high_precision(oracle, subs)
    assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-14), (lib, oracle, a, b)
    if not (is_kinked(lib) or is_kinked(oracle)):
        assert _proved_zero(lib - oracle), f"{lib}  !=  {oracle}"


def flat(expr) -> list:
    """Entries of a SymPy scalar or Array, in C order."""
    return list(entries(expr).ravel())


def point(name: str, value: np.ndarray) -> dict:
    return dict(zip(symbols(name, value.shape).ravel(), np.asarray(value).ravel()))


def assert_jacobian_expr(jac_expr, y_expr, source_symbols: np.ndarray, subs: dict):
    """``tape.jacobian(...).expr`` against ``sympy.Matrix(y).jacobian(x)``, entry by entry."""
    ys = flat(y_expr)
    xs = list(source_symbols.ravel())
    oracle = sympy.Matrix(ys).jacobian(xs)
    lib = flat(jac_expr)
    assert len(lib) == len(ys) * len(xs)
    for k, entry in enumerate(lib):
        assert_same_expr(entry, oracle[k // len(xs), k % len(xs)], subs)


def _erf(x):
    return np.vectorize(math.erf)(x)


# ---------------------------------------------------------------- elementwise unary rules

# name -> (op, independent NumPy forward, sampling domain, kink points to stay away from)
UNARY = {
    "sin": (st.sin, np.sin, (-3.0, 3.0), ()),
    "cos": (st.cos, np.cos, (-3.0, 3.0), ()),
    "tan": (st.tan, np.tan, (-1.3, 1.3), ()),
    "asin": (st.asin, np.arcsin, (-0.9, 0.9), ()),
    "acos": (st.acos, np.arccos, (-0.9, 0.9), ()),
    "atan": (st.atan, np.arctan, (-3.0, 3.0), ()),
    "sinh": (st.sinh, np.sinh, (-3.0, 3.0), ()),
    "cosh": (st.cosh, np.cosh, (-3.0, 3.0), ()),
    "tanh": (st.tanh, np.tanh, (-3.0, 3.0), ()),
    "exp": (st.exp, np.exp, (-3.0, 3.0), ()),
    "log": (st.log, np.log, (0.1, 3.0), ()),
    "log1p": (st.log1p, np.log1p, (-0.9, 3.0), ()),
    "sqrt": (st.sqrt, np.sqrt, (0.1, 3.0), ()),
    "erf": (st.erf, _erf, (-2.5, 2.5), ()),
    "sigmoid": (st.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-6.0, 6.0), ()),
    "softplus": (st.softplus, lambda x: np.logaddexp(0.0, x), (-6.0, 6.0), ()),
    "square": (st.square, lambda x: x * x, (-3.0, 3.0), ()),
    "negative": (st.negative, lambda x: -x, (-3.0, 3.0), ()),
    "relu": (st.relu, lambda x: np.maximum(x, 0.0), (-3.0, 3.0), (0.0,)),
    "abs": (st.abs, np.abs, (-3.0, 3.0), (0.0,)),
    "sign": (st.sign, np.sign, (-3.0, 3.0), (0.0,)),
}


def _away_from(kinks, x0, gap=1e-3):
    return all(abs(x0 - k) > gap for k in kinks)


def _check_unary(name: str, x0: float):
    op, forward, _, kinks = UNARY[name]
    assume(_away_from(kinks, x0))
    x = st.Variable(x0, name="x")
    with st.GradientTape() as tape:
        y = op(x)
    g = tape.gradient(y, x)
    subs = {X: x0}
    # the forward closed form is right (so differentiating it is a valid oracle)
    assert math.isclose(high_precision(y.expr, subs), float(forward(x0)), rel_tol=1e-12,
                        abs_tol=1e-15)
    assert math.isclose(float(y.numpy()), float(forward(x0)), rel_tol=1e-13, abs_tol=1e-15)
    oracle = sympy.diff(y.expr, X)
    assert_same_expr(g.expr, oracle, subs)
    assert math.isclose(float(g.numpy()), high_precision(oracle, subs), rel_tol=1e-12,
                        abs_tol=1e-14)
    assert_fd_close(g.numpy(), fd(forward, x0), fscale=forward(x0))


def _unary_point(draw, name):
    lo, hi = UNARY[name][2]
    return draw(hs.floats(lo, hi, allow_nan=False))


@pytest.mark.parametrize("name", sorted(UNARY))
@SMALL
@given(data=hs.data())
def test_unary_rule_matches_diff_and_finite_differences(name, data):
    _check_unary(name, _unary_point(data.draw, name))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(UNARY))
@SLOW
@given(data=hs.data())
def test_unary_rule_matches_diff_and_finite_differences_many(name, data):
    _check_unary(name, _unary_point(data.draw, name))


def _check_unary_vectorized(name: str, x0: np.ndarray, w: np.ndarray):
    """The same rules on a vector Variable: d/dx sum(w * f(x)) = w * f'(x) entry by entry."""
    op, forward, _, kinks = UNARY[name]
    assume(all(_away_from(kinks, v) for v in x0))
    x = st.Variable(x0, name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(op(x) * w)
    g = tape.gradient(y, x)
    assert g.shape == x0.shape
    expected = w * np.array([fd(forward, v) for v in x0])
    assert_fd_close(g.numpy(), expected, fscale=forward(x0) * w)
    xs = symbols("x", x0.shape)
    subs = point("x", x0)
    for i, entry in enumerate(flat(g.expr)):
        assert_same_expr(entry, sympy.diff(y.expr, xs[i]), subs)


@pytest.mark.parametrize("name", ["sin", "exp", "log", "sqrt", "tanh", "relu", "abs", "sigmoid"])
@SMALL
@given(data=hs.data())
def test_unary_rules_vectorize_over_entries(name, data):
    lo, hi = UNARY[name][2]
    n = data.draw(hs.integers(1, 4))
    x0 = np.array(data.draw(hs.lists(hs.floats(lo, hi), min_size=n, max_size=n)))
    # weights are short decimals, so they stay exact in the closed forms
    w = np.array(data.draw(hs.lists(hs.integers(-8, 8), min_size=n, max_size=n))) / 4
    _check_unary_vectorized(name, x0, w)


# ---------------------------------------------------------------- constant exponents

EXPONENTS = [-2, -1.5, -1, -0.5, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4]


def _check_powc(c, x0: float):
    x = st.Variable(x0, name="x")
    with st.GradientTape() as tape:
        y = x ** c
    g = tape.gradient(y, x)
    assert y.expr == X ** sympy.nsimplify(c)  # the exponent stays exact
    oracle = sympy.diff(y.expr, X)
    assert_same_expr(g.expr, oracle, {X: x0})
    expected = c * x0 ** (c - 1)  # hand-derived
    assert math.isclose(float(g.numpy()), expected, rel_tol=1e-13)
    assert_fd_close(g.numpy(), fd(lambda t: t ** c, x0), fscale=x0 ** c)


@SMALL
@given(c=hs.sampled_from(EXPONENTS), x0=hs.floats(0.1, 3.0))
def test_pow_constant_exponent(c, x0):
    _check_powc(c, x0)


@SMALL
@given(c=hs.sampled_from([-3, -2, -1, 1, 2, 3, 5]), x0=hs.floats(-3.0, -0.1))
def test_pow_integer_exponent_negative_base(c, x0):
    _check_powc(c, x0)


@pytest.mark.slow
@SLOW
@given(c=hs.sampled_from(EXPONENTS), x0=hs.floats(0.1, 3.0))
def test_pow_constant_exponent_many(c, x0):
    _check_powc(c, x0)


# ---------------------------------------------------------------- binary rules

# name -> (op, NumPy forward, domain of a, domain of b, extra condition on (a, b))
BINARY = {
    "add": (st.add, np.add, (-3, 3), (-3, 3), None),
    "sub": (st.subtract, np.subtract, (-3, 3), (-3, 3), None),
    "mul": (st.multiply, np.multiply, (-3, 3), (-3, 3), None),
    "div": (st.divide, np.divide, (-3, 3), (0.3, 3), None),
    "div_negative": (st.divide, np.divide, (-3, 3), (-3, -0.3), None),
    "pow": (st.pow, np.power, (0.2, 3), (-2, 2), None),
    "atan2": (st.atan2, np.arctan2, (-2, 2), (-2, 2),
              lambda a, b: a * a + b * b > 0.09 and (b > 0 or abs(a) > 0.05)),
    "maximum": (st.maximum, np.maximum, (-3, 3), (-3, 3), lambda a, b: abs(a - b) > 1e-3),
    "minimum": (st.minimum, np.minimum, (-3, 3), (-3, 3), lambda a, b: abs(a - b) > 1e-3),
    "where": (lambda a, b: st.where(a > b, a * b, st.sin(a) - b),
              lambda a, b: np.where(a > b, a * b, np.sin(a) - b), (-3, 3), (-3, 3),
              lambda a, b: abs(a - b) > 1e-3),
}


def _check_binary(name: str, a0: float, b0: float):
    op, forward, _, _, ok = BINARY[name]
    assume(ok is None or ok(a0, b0))
    a = st.Variable(a0, name="a")
    b = st.Variable(b0, name="b")
    with st.GradientTape() as tape:
        y = op(a, b)
    ga, gb = tape.gradient(y, [a, b])
    subs = {A_: a0, B_: b0}
    f0 = float(forward(a0, b0))
    assert math.isclose(high_precision(y.expr, subs), f0, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(float(y.numpy()), f0, rel_tol=1e-13, abs_tol=1e-15)
    for g, sym, partial in [(ga, A_, lambda t: forward(a0 + t, b0)),
                            (gb, B_, lambda t: forward(a0, b0 + t))]:
        oracle = sympy.diff(y.expr, sym)
        assert g is not None, f"no gradient for {sym}"
        assert_same_expr(g.expr, oracle, subs)
        assert math.isclose(float(g.numpy()), high_precision(oracle, subs), rel_tol=1e-12,
                            abs_tol=1e-14)
        assert_fd_close(g.numpy(), fd(partial, 0.0), fscale=f0)


def _binary_point(draw, name):
    _, _, (alo, ahi), (blo, bhi), _ = BINARY[name]
    return draw(hs.floats(alo, ahi)), draw(hs.floats(blo, bhi))


@pytest.mark.parametrize("name", sorted(BINARY))
@SMALL
@given(data=hs.data())
def test_binary_rule_matches_diff_and_finite_differences(name, data):
    _check_binary(name, *_binary_point(data.draw, name))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BINARY))
@SLOW
@given(data=hs.data())
def test_binary_rule_matches_diff_and_finite_differences_many(name, data):
    _check_binary(name, *_binary_point(data.draw, name))


@pytest.mark.parametrize("name", ["add", "mul", "div", "pow", "atan2", "maximum", "where"])
@SMALL
@given(data=hs.data())
def test_binary_rules_broadcast_a_column_against_a_row(name, data):
    """Gradients of sum(w * op(a, b)) for a of shape (3, 1) and b of shape (1, 4)."""
    op, forward, (alo, ahi), (blo, bhi), ok = BINARY[name]
    a0 = np.array(data.draw(hs.lists(hs.floats(alo, ahi), min_size=3, max_size=3)))[:, None]
    b0 = np.array(data.draw(hs.lists(hs.floats(blo, bhi), min_size=4, max_size=4)))[None, :]
    assume(ok is None or all(ok(p, q) for p in a0.ravel() for q in b0.ravel()))
    w = np.arange(1.0, 13.0).reshape(3, 4) / 4
    a, b = st.Variable(a0, name="a"), st.Variable(b0, name="b")
    with st.GradientTape() as tape:
        y = st.reduce_sum(op(a, b) * w)
    ga, gb = tape.gradient(y, [a, b])
    assert ga.shape == (3, 1) and gb.shape == (1, 4)
    scale = forward(a0, b0) * w
    assert_fd_close(ga.numpy(), fd_jacobian(lambda t: np.sum(forward(t, b0) * w), a0), scale)
    assert_fd_close(gb.numpy(), fd_jacobian(lambda t: np.sum(forward(a0, t) * w), b0), scale)


# ---------------------------------------------------------------- random compositions

SMOOTH = {"sin": st.sin, "cos": st.cos, "exp": st.exp, "tanh": st.tanh, "atan": st.atan,
          "sinh": st.sinh, "square": st.square, "sigmoid": st.sigmoid, "erf": st.erf,
          "softplus": st.softplus}


def _check_composition(names: list[str], x0: float):
    x = st.Variable(x0, name="x")
    with st.GradientTape() as tape:
        y = x
        for name in names:
            y = SMOOTH[name](y)
    oracle = sympy.diff(y.expr, X)
    g = tape.gradient(y, x)
    # rules like tanh' = 1 - tanh**2 lose absolute precision ~1e-16 near saturation
    assert math.isclose(float(g.numpy()), high_precision(oracle, {X: x0}), rel_tol=1e-12,
                        abs_tol=1e-13)
    assert math.isclose(high_precision(g.expr, {X: x0}), high_precision(oracle, {X: x0}),
                        rel_tol=1e-12, abs_tol=1e-14)
    assert _proved_zero(g.expr - oracle), f"{g.expr} != {oracle}"


@FAST
@given(names=hs.lists(hs.sampled_from(sorted(SMOOTH)), min_size=1, max_size=3),
       x0=hs.floats(-1, 1))
def test_gradient_of_composition_matches_sympy_diff(names, x0):
    _check_composition(names, x0)


@pytest.mark.slow
@SLOW
@given(names=hs.lists(hs.sampled_from(sorted(SMOOTH)), min_size=1, max_size=3),
       x0=hs.floats(-1, 1))
def test_gradient_of_composition_matches_sympy_diff_many(names, x0):
    _check_composition(names, x0)


# ---------------------------------------------------------------- second derivatives

COMBINE = {
    "add": lambda u, v: u + v,
    "sub": lambda u, v: u - v,
    "mul": lambda u, v: u * v,
    "div": lambda u, v: u / (1.5 + st.sin(v)),
    "atan2": lambda u, v: st.atan2(u, 2.0 + st.tanh(v)),
}


SECOND_ORDER = sorted(SMOOTH)


def _chain(names, t):
    for name in names:
        t = SMOOTH[name](t)
    return t


def _check_hessian(fx, fy, combine, outer, x0, y0):
    x, y = st.Variable(x0, name="x"), st.Variable(y0, name="y")
    with st.GradientTape() as tape:
        f = _chain(outer, COMBINE[combine](_chain(fx, x), _chain(fy, y)))
    H = tape.hessian(f, [x, y], unconnected_gradients="zero")  # linear parts: zeros, not None
    oracle = sympy.hessian(f.expr, (X, Y))
    subs = {X: x0, Y: y0}
    for i in range(2):
        for j in range(2):
            assert math.isclose(float(H[i][j].numpy()), high_precision(oracle[i, j], subs),
                                rel_tol=1e-10, abs_tol=1e-12)
            assert math.isclose(high_precision(H[i][j].expr, subs),
                                high_precision(oracle[i, j], subs), rel_tol=1e-12, abs_tol=1e-14)
            assert _proved_zero(H[i][j].expr - oracle[i, j]), (i, j, H[i][j].expr, oracle[i, j])
    assert float(H[0][1].numpy()) == pytest.approx(float(H[1][0].numpy()), rel=1e-12, abs=1e-14)


_short_chain = hs.lists(hs.sampled_from(SECOND_ORDER), min_size=0, max_size=1)


@SMALL
@given(fx=_short_chain, fy=_short_chain, combine=hs.sampled_from(sorted(COMBINE)),
       outer=_short_chain, x0=hs.floats(-1, 1), y0=hs.floats(-1, 1))
def test_hessian_of_two_variable_composition_matches_sympy(fx, fy, combine, outer, x0, y0):
    _check_hessian(fx, fy, combine, outer, x0, y0)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(fx=hs.lists(hs.sampled_from(SECOND_ORDER), max_size=2),
       fy=hs.lists(hs.sampled_from(SECOND_ORDER), max_size=2),
       combine=hs.sampled_from(sorted(COMBINE)), outer=_short_chain,
       x0=hs.floats(-1, 1), y0=hs.floats(-1, 1))
def test_hessian_of_two_variable_composition_matches_sympy_many(fx, fy, combine, outer, x0, y0):
    _check_hessian(fx, fy, combine, outer, x0, y0)


def test_second_derivative_of_erf_is_exact():
    # regression: 2/sqrt(pi) used to become a Float in recorded (nested-tape) gradients
    x = st.Variable(0.3, name="x")
    with st.GradientTape() as tape:
        y = st.erf(x)
    h = tape.hessian(y, x)
    oracle = -4 * X * sympy.exp(-X ** 2) / sympy.sqrt(sympy.pi)  # d2/dx2 erf, by hand
    assert math.isclose(float(h.numpy()), float(oracle.subs(X, 0.3)), rel_tol=1e-14)
    assert not h.expr.has(sympy.Float), h.expr
    assert sympy.simplify(h.expr - oracle) == 0


def test_hessian_of_vector_function_matches_hand_derived_formula():
    # f(v) = v0**2 * v1 + exp(v1 * v2) + sin(v0) * v2
    v0 = np.array([0.3, -0.7, 1.1])
    v = st.Variable(v0, name="v")
    with st.GradientTape() as tape:
        f = v[0] ** 2 * v[1] + st.exp(v[1] * v[2]) + st.sin(v[0]) * v[2]
    H = tape.hessian(f, v)
    a, b, c = v0
    e = np.exp(b * c)
    expected = np.array([
        [2 * b - np.sin(a) * c, 2 * a, np.cos(a)],
        [2 * a, c * c * e, e + b * c * e],
        [np.cos(a), e + b * c * e, b * b * e],
    ])
    np.testing.assert_allclose(H.numpy(), expected, rtol=1e-13)
    vs = symbols("v", (3,))
    oracle = sympy.hessian(f.expr, list(vs))
    for (i, j), entry in np.ndenumerate(np.array(H.expr.tolist(), dtype=object)):
        assert _proved_zero(entry - oracle[i, j])


# ---------------------------------------------------------------- reductions and shape ops


def _reduction_axis(draw, ndim):
    choice = draw(hs.integers(0, 2))
    if choice == 0:
        return None
    if choice == 1:
        return draw(hs.integers(-ndim, ndim - 1))
    axes = draw(hs.lists(hs.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(axes)


def _distinct_values(draw, shape):
    """Positive entries at least 0.3 apart (no ties, and squaring keeps them apart)."""
    n = int(np.prod(shape))
    order = draw(hs.permutations(list(range(n))))
    return (0.5 + 0.3 * np.array(order, dtype=np.float64)).reshape(shape)


SHAPES = [(4,), (2, 3), (3, 2), (2, 1, 3)]

_REDUCTIONS = {
    "reduce_sum": (st.reduce_sum, np.sum),
    "reduce_mean": (st.reduce_mean, np.mean),
    "reduce_max": (st.reduce_max, np.max),
    "reduce_min": (st.reduce_min, np.min),
}


def _reshape_target(draw, shape):
    n = int(np.prod(shape))
    targets = [(n,), (1, n), (n, 1), (-1,)] + ([(2, -1), (-1, 2), (2, n // 2)] if n % 2 == 0 else [])
    return draw(hs.sampled_from(targets))


_KEYS = {
    (4,): [0, -1, slice(1, None), slice(None, None, -1), slice(-3, -1), [0, 0, 3],
           np.array([-1, 1, -1]), (None, slice(None)), (Ellipsis,),
           np.array([True, False, True, True])],
    (2, 3): [1, -2, (0, -1), (slice(None), 1), (Ellipsis, -1), (slice(None), slice(None, None, -2)),
             ([1, 0, 1], [-1, 0, 0]), (slice(None), [2, 2, 0]), (None, 1, slice(1, None)),
             np.array([[True, False, True], [False, True, True]])],
    (3, 2): [-1, (2, 0), (slice(None, None, -1), 0), ([0, 2], slice(None)), ([2, 2], [1, 1])],
    (2, 1, 3): [(0, 0), (Ellipsis, 2), (slice(None), 0, [0, 2, 2]), (-1, Ellipsis, slice(None, 2))],
}


def _shape_case(draw, name, shape):
    """(symtape op, NumPy oracle) for one shape op with drawn parameters."""
    ndim = len(shape)
    if name in _REDUCTIONS:
        op, ref = _REDUCTIONS[name]
        axis, keep = _reduction_axis(draw, ndim), draw(hs.booleans())
        return (lambda t: op(t, axis=axis, keepdims=keep),
                lambda t: ref(t, axis=axis, keepdims=keep))
    if name == "reshape":
        target = _reshape_target(draw, shape)
        return lambda t: st.reshape(t, target), lambda t: np.reshape(t, target)
    if name == "transpose":
        perm = tuple(draw(hs.permutations(list(range(ndim)))))
        return lambda t: st.transpose(t, perm), lambda t: np.transpose(t, perm)
    if name == "getitem":
        key = draw(hs.sampled_from(_KEYS[shape]))
        return lambda t: t[key], lambda t: np.asarray(t)[key]
    if name == "concat":
        axis = draw(hs.integers(-ndim, ndim - 1))
        return (lambda t: st.concat([t, st.sin(t), t], axis=axis),
                lambda t: np.concatenate([t, np.sin(t), t], axis=axis))
    if name == "stack":
        axis = draw(hs.integers(-ndim - 1, ndim))
        return (lambda t: st.stack([t, st.sin(t)], axis=axis),
                lambda t: np.stack([t, np.sin(t)], axis=axis))
    if name == "matmul":
        k = shape[-1]
        w = (np.arange(3.0 * k).reshape(k, 3) - 4) / 4  # exact short decimals
        return lambda t: st.matmul(t, w), lambda t: np.matmul(t, w)
    if name == "matmul_self":
        return (lambda t: st.matmul(t, t, transpose_b=True),
                lambda t: np.matmul(t, np.swapaxes(t, -1, -2) if t.ndim > 1 else t))
    if name == "tensordot":
        axes = draw(hs.sampled_from([0, 1, "all", "pairs"]))
        if axes == "all":
            axes = ndim
        if axes == "pairs":
            axes = [[0], [1]]
            w = (np.arange(shape[0] * 2.0).reshape(2, shape[0]) - 3) / 4
        else:
            w = (np.arange(int(np.prod(shape[ndim - axes:])) * 2.0).reshape(
                shape[ndim - axes:] + (2,)) - 3) / 4
        return lambda t: st.tensordot(t, w, axes=axes), lambda t: np.tensordot(t, w, axes=axes)
    raise AssertionError(name)


SHAPE_OPS = ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reshape", "transpose",
             "getitem", "concat", "stack", "matmul", "matmul_self", "tensordot"]


def _check_shape_op(name, data):
    shape = data.draw(hs.sampled_from(SHAPES))
    x0 = _distinct_values(data.draw, shape)
    op, ref = _shape_case(data.draw, name, shape)

    def f_np(t):
        return ref(t * t)  # squaring first makes the Jacobian depend on the point

    x = st.Variable(x0, name="x")
    with st.GradientTape(persistent=True) as tape:
        y = op(x * x)
        weights = np.linspace(-1.0, 2.0, int(np.prod(y.shape))).reshape(y.shape)
        loss = st.reduce_sum(y * weights)
    np.testing.assert_allclose(y.numpy(), f_np(x0), rtol=1e-14)
    assert y.shape == np.shape(f_np(x0))
    # gradient of a weighted sum vs finite differences
    g = tape.gradient(loss, x)
    assert g.shape == x0.shape
    assert_fd_close(g.numpy(), fd_jacobian(lambda t: np.sum(f_np(t) * weights), x0),
                    fscale=f_np(x0))
    # Jacobian: numeric vs finite differences, closed form vs sympy's jacobian
    jac = tape.jacobian(y, x)
    assert jac.shape == y.shape + x0.shape
    assert_fd_close(jac.numpy(), fd_jacobian(f_np, x0), fscale=f_np(x0))
    assert_jacobian_expr(jac.expr, y.expr, symbols("x", shape), point("x", x0))


@pytest.mark.parametrize("name", SHAPE_OPS)
@SMALL
@given(data=hs.data())
def test_shape_op_gradient_and_jacobian(name, data):
    _check_shape_op(name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHAPE_OPS)
@settings(max_examples=80, deadline=None)
@given(data=hs.data())
def test_shape_op_gradient_and_jacobian_many(name, data):
    _check_shape_op(name, data)


@pytest.mark.parametrize("perm", [(1, 2, 0), (2, 0, 1)])
def test_transpose_with_a_cyclic_permutation(perm):
    # a 3-cycle is not its own inverse: the rule must transpose back with the inverse perm
    x0 = 0.5 + 0.25 * np.arange(24.0).reshape(2, 3, 4)
    weights = np.arange(24.0).reshape(np.transpose(x0, perm).shape) - 11.5
    x = st.Variable(x0, name="x")
    with st.GradientTape(persistent=True) as tape:
        y = st.transpose(x * x, perm)
        loss = st.reduce_sum(y * weights)
    assert y.shape == np.transpose(x0, perm).shape
    expected = 2 * x0 * np.transpose(weights, np.argsort(perm))  # hand-derived
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), expected, rtol=1e-14)
    small = st.Variable(x0[:, :2, :2], name="s")
    with st.GradientTape() as tape:
        z = st.transpose(st.sin(small), perm)
    jac = tape.jacobian(z, small)
    assert_fd_close(jac.numpy(), fd_jacobian(lambda t: np.transpose(np.sin(t), perm), x0[:, :2, :2]))
    assert_jacobian_expr(jac.expr, z.expr, symbols("s", (2, 2, 2)), point("s", x0[:, :2, :2]))


def test_fancy_index_with_repeats_accumulates_gradient():
    x = st.Variable([1.0, 2.0, 3.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(x[[0, 0, 2, 0, -1]] * [1.0, 2.0, 3.0, 4.0, 5.0])
    g = tape.gradient(y, x)
    np.testing.assert_array_equal(g.numpy(), [7.0, 0.0, 8.0])  # 1+2+4, 0, 3+5
    xs = symbols("x", (3,))
    assert list(flat(g.expr)) == [7, 0, 8]
    assert y.expr == 7 * xs[0] + 8 * xs[2]


def test_overlapping_slices_add_their_cotangents():
    x0 = np.array([0.5, -1.0, 2.0, 0.25])
    x = st.Variable(x0, name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(x[1:] * x[:-1]) + x[-1] ** 3
    g = tape.gradient(y, x)
    a = x0
    expected = [a[1], a[0] + a[2], a[1] + a[3], a[2] + 3 * a[3] ** 2]
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-15)


def _check_broadcast_pair(a0, b0):
    a, b = st.Variable(a0, name="a"), st.Variable(b0, name="b")
    f = lambda p, q: p * q + p / (1.0 + q * q) - np.sin(p - q)  # noqa: E731
    with st.GradientTape(persistent=True) as tape:
        y = a * b + a / (1.0 + b * b) - st.sin(a - b)
    expected_shape = np.broadcast_shapes(np.shape(a0), np.shape(b0))
    assert y.shape == expected_shape
    np.testing.assert_allclose(y.numpy(), f(a0, b0), rtol=1e-14)
    ja, jb = tape.jacobian(y, [a, b])
    assert ja.shape == expected_shape + np.shape(a0)
    assert jb.shape == expected_shape + np.shape(b0)
    a_arr, b_arr = np.asarray(a0, dtype=float), np.asarray(b0, dtype=float)
    assert_fd_close(ja.numpy(), fd_jacobian(lambda t: f(t, b_arr), a_arr), f(a0, b0))
    assert_fd_close(jb.numpy(), fd_jacobian(lambda t: f(a_arr, t), b_arr), f(a0, b0))
    sa = symbols("a", a_arr.shape) if a_arr.ndim else np.array([A_])
    sb = symbols("b", b_arr.shape) if b_arr.ndim else np.array([B_])
    subs = {**dict(zip(sa.ravel(), a_arr.ravel())), **dict(zip(sb.ravel(), b_arr.ravel()))}
    assert_jacobian_expr(ja.expr, y.expr, sa, subs)
    assert_jacobian_expr(jb.expr, y.expr, sb, subs)
    ga, gb = tape.gradient(y, [a, b])  # a non-scalar target is summed
    batch_axes = tuple(range(len(expected_shape)))
    for grad, jac in ((ga, ja), (gb, jb)):
        # summed in another order: allow rounding relative to the terms, not to a sum that
        # cancels to almost nothing (-0.0011 from terms near 1 differed by 3e-16); each entry
        # is itself a sum of terms of size ~1 (q + 1/(1 + q*q) - cos(p - q)), hence the 1
        scale = 1 + np.abs(jac.numpy()).sum(axis=batch_axes)
        np.testing.assert_allclose(grad.numpy(), jac.numpy().sum(axis=batch_axes), rtol=1e-13,
                                   atol=1e-14 * float(np.max(scale)))


@SMALL
@given(a=hs.lists(hs.floats(-2, 2), min_size=3, max_size=3),
       b=hs.lists(hs.floats(-2, 2), min_size=4, max_size=4))
def test_broadcasting_column_with_row(a, b):
    _check_broadcast_pair(np.array(a)[:, None], np.array(b)[None, :])


@SMALL
@given(s=hs.floats(-2, 2), v=hs.lists(hs.floats(-2, 2), min_size=1, max_size=4))
def test_broadcasting_scalar_with_vector(s, v):
    _check_broadcast_pair(s, np.array(v))
    _check_broadcast_pair(np.array(v), s)


# ---------------------------------------------------------------- conventions at kinks


def _at(expr, subs):
    return sympy.sympify(expr).subs(subs)


def test_relu_derivative_at_zero_is_zero():
    x = st.Variable(0.0, name="x")
    with st.GradientTape() as tape:
        y = st.relu(x)
    g = tape.gradient(y, x)
    assert float(g.numpy()) == 0.0
    assert _at(g.expr, {X: 0}) == 0
    assert _at(g.expr, {X: sympy.Rational(1, 10)}) == 1  # and 1 to the right


def test_abs_derivative_at_zero_is_zero():
    x = st.Variable([0.0, -0.5, 0.5], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.abs(x))
    g = tape.gradient(y, x)
    np.testing.assert_array_equal(g.numpy(), [0.0, -1.0, 1.0])
    xs = symbols("x", (3,))
    values = [_at(e, {xs[0]: 0, xs[1]: sympy.Rational(-1, 2), xs[2]: sympy.Rational(1, 2)})
              for e in flat(g.expr)]
    assert values == [0, -1, 1]


def test_sign_derivative_is_zero_not_none():
    x = st.Variable([-1.5, 0.0, 2.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.sign(x) * 3.0)
    g = tape.gradient(y, x)
    assert g is not None
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 0.0])
    assert all(e == 0 for e in flat(g.expr))


@pytest.mark.parametrize("dtype", [st.float64, st.float32])
def test_maximum_tie_sends_gradient_to_first_argument(dtype):
    a = st.Variable(1.25, dtype=dtype, name="a")
    b = st.Variable(1.25, dtype=dtype, name="b")
    with st.GradientTape(persistent=True) as tape:
        ab = st.maximum(a, b)
        ba = st.maximum(b, a)
    for y, first in [(ab, "a"), (ba, "b")]:
        ga, gb = tape.gradient(y, [a, b])
        expected = (1.0, 0.0) if first == "a" else (0.0, 1.0)
        assert (float(ga.numpy()), float(gb.numpy())) == expected
        assert ga.dtype == dtype
        at_tie = {A_: sympy.Rational(5, 4), B_: sympy.Rational(5, 4)}
        assert (float(_at(ga.expr, at_tie)), float(_at(gb.expr, at_tie))) == expected


def test_minimum_tie_sends_gradient_to_first_argument():
    a = st.Variable([1.0, 2.0, 3.0], name="a")
    with st.GradientTape(persistent=True) as tape:
        y = st.reduce_sum(st.minimum(a, 2.0))
        z = st.reduce_sum(st.minimum(2.0, a))
        m = st.reduce_sum(st.maximum(a, 2.0))
    np.testing.assert_array_equal(tape.gradient(y, a).numpy(), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(tape.gradient(z, a).numpy(), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(tape.gradient(m, a).numpy(), [0.0, 1.0, 1.0])


@pytest.mark.parametrize("op, values, expected", [
    (st.reduce_max, [2.0, 2.0, 1.0], [0.5, 0.5, 0.0]),
    (st.reduce_max, [3.0, 3.0, 3.0], [1 / 3, 1 / 3, 1 / 3]),
    (st.reduce_min, [1.0, 4.0, 1.0], [0.5, 0.0, 0.5]),
    (st.reduce_min, [5.0, 4.0, 6.0], [0.0, 1.0, 0.0]),
])
def test_reduce_extremum_ties_share_the_gradient_equally(op, values, expected):
    x = st.Variable(values, name="x")
    with st.GradientTape() as tape:
        y = op(x)
    g = tape.gradient(y, x)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-15)
    xs = symbols("x", (3,))
    at = {s: sympy.nsimplify(v) for s, v in zip(xs, values)}
    assert [sympy.nsimplify(_at(e, at)) for e in flat(g.expr)] == \
        [sympy.nsimplify(e) for e in expected]


def test_reduce_max_ties_per_row_with_axis():
    x = st.Variable([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=st.float32, name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.reduce_max(x, axis=1) * np.array([1.0, 6.0], np.float32))
    g = tape.gradient(y, x)
    assert g.dtype == st.float32
    np.testing.assert_allclose(g.numpy(), [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0]], rtol=1e-6)


def test_pow_exponent_gradient_for_non_positive_base_is_zero_in_both_worlds():
    # regression: .expr used to say a**b*log(a), complex for a < 0 and NaN at a = 0
    a = st.Variable(-2.0, name="a")
    b = st.Variable(3.0, name="b")
    with st.GradientTape() as tape:
        y = a ** b
    ga, gb = tape.gradient(y, [a, b])
    assert float(ga.numpy()) == 12.0  # 3 * (-2)**2
    assert float(gb.numpy()) == 0.0  # documented convention: log(a) is not real
    assert _at(gb.expr, {A_: -2, B_: 3}) == 0
    zero = st.Variable(0.0, name="a")
    with st.GradientTape() as tape:
        y = zero ** b
    gz, gb0 = tape.gradient(y, [zero, b])
    assert float(gz.numpy()) == 0.0 and float(gb0.numpy()) == 0.0
    assert _at(gb0.expr, {A_: 0, B_: 3}) == 0
    assert _at(gb.expr, {A_: 2, B_: 3}) == 8 * sympy.log(2)  # log(a) where it is real


def test_constant_power_zero_has_zero_derivative_at_zero():
    # regression: the x**0 term used to give 0 * 0**-1 = NaN numerically
    x = st.Variable(0.0, name="x")
    with st.GradientTape() as tape:
        y = sum(c * x ** k for k, c in enumerate([1.0, 2.0, 3.0]))  # 1 + 2x + 3x**2
    g = tape.gradient(y, x)
    assert _at(g.expr, {X: 0}) == 2
    assert float(g.numpy()) == 2.0


# ---------------------------------------------------------------- float32


F32_CASES = {
    "sin": lambda x, b: st.sin(x),
    "tanh": lambda x, b: st.tanh(x),
    "erf": lambda x, b: st.erf(x),
    "sigmoid": lambda x, b: st.sigmoid(x),
    "softplus": lambda x, b: st.softplus(x),
    "sqrt": lambda x, b: st.sqrt(x),
    "log1p": lambda x, b: st.log1p(x),
    "powc": lambda x, b: x ** 2.5,
    "pow": lambda x, b: x ** b,
    "atan2": lambda x, b: st.atan2(x, b),
    "div": lambda x, b: b / x,
    "maximum": lambda x, b: st.maximum(x, b),
    "where": lambda x, b: st.where(x > b, x * b, x),
    "reduce_max": lambda x, b: st.reduce_max(x * b, axis=0),
    "reduce_mean": lambda x, b: st.reduce_mean(x * b, axis=1, keepdims=True),
    "matmul": lambda x, b: st.matmul(x, st.transpose(x)) * b,
    "tensordot": lambda x, b: st.tensordot(x, x, axes=2) * b,
    "concat": lambda x, b: st.concat([x, x * b], axis=0),
    "stack": lambda x, b: st.stack([x, x * b], axis=-1),
    "getitem": lambda x, b: x[[0, 1, 1], [-1, 0, 0]] * b,
    "relu": lambda x, b: st.relu(x - b),
    "cast_roundtrip": lambda x, b: st.cast(st.cast(x, st.float64) * 2.0, x.dtype) * b,
}


@pytest.mark.parametrize("name", sorted(F32_CASES))
def test_float32_in_float32_gradient_out(name):
    f = F32_CASES[name]
    x0 = np.array([[0.55, 1.35, 0.8], [1.1, 0.45, 1.25]])
    results = {}
    for dtype in (np.float32, np.float64):
        x = st.Variable(x0.astype(dtype), name="x")
        b = st.Variable(dtype(0.7), name="b")
        with st.GradientTape() as tape:
            y = f(x, b)
        gx, gb = tape.gradient(y, [x, b])
        assert y.dtype == dtype
        assert gx.dtype == dtype and gx.numpy().dtype == dtype
        assert gb is None or (gb.dtype == dtype and gb.numpy().dtype == dtype)
        results[dtype] = (gx.numpy(), None if gb is None else gb.numpy())
    np.testing.assert_allclose(results[np.float32][0], results[np.float64][0], rtol=2e-5, atol=1e-6)
    if results[np.float64][1] is not None:
        np.testing.assert_allclose(results[np.float32][1], results[np.float64][1], rtol=2e-5)


def test_float32_hessian_and_jacobian_stay_float32():
    x = st.Variable(np.array([0.3, 0.9], np.float32), name="x")
    with st.GradientTape(persistent=True) as tape:
        f = st.reduce_sum(st.sin(x) * x[::-1])
    H = tape.hessian(f, x)
    assert H.dtype == st.float32
    a, b = 0.3, 0.9
    expected = [[-b * np.sin(a), np.cos(a) + np.cos(b)], [np.cos(a) + np.cos(b), -a * np.sin(b)]]
    np.testing.assert_allclose(H.numpy(), expected, rtol=1e-6)
    with st.GradientTape() as tape2:
        y = st.exp(x) * 2.0
    J = tape2.jacobian(y, x)
    assert J.dtype == st.float32
    np.testing.assert_allclose(J.numpy(), np.diag(2 * np.exp([a, b])), rtol=1e-6)


# ---------------------------------------------------------------- coverage of the registry

# primitives whose rules are exercised through another property test, and where
_THROUGH = {
    "neg": "UNARY['negative']", "powc": "test_pow_constant_exponent*",
    "log_real": "BINARY['pow'] (its exponent rule)", "heaviside": "the rules of relu, abs, "
    "maximum, minimum", "broadcast_to": "test_broadcasting_*", "cast": "cast_roundtrip",
    "scatter": "SHAPE_OPS['getitem'] (its rule)", "scatter_add": "SHAPE_OPS['stack'], the "
    "gradients of repeated getitem", "sub": "BINARY['sub']", "div": "BINARY['div']",
}
_NOT_DIFFERENTIABLE = {"less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
                       "logical_not", "sign"}


def test_every_registered_primitive_has_a_property_test():
    """A new primitive must join a table above (or say here which test exercises its rule)."""
    covered = (set(UNARY) | set(BINARY) | set(SHAPE_OPS) | set(_THROUGH) | _NOT_DIFFERENTIABLE
               | {"reduce_mean"})
    from symtape.core.primitives import REGISTRY

    assert set(REGISTRY) - covered == set()
    for name in _NOT_DIFFERENTIABLE - {"sign"}:
        assert REGISTRY[name].vjp is None, name


# ---------------------------------------------------------------- the kernel generators' forms

# primitives deliberately without a form the kernel generators read, and why (none today)
_WITHOUT_KERNEL_FORMS: dict[str, str] = {}
_SIGNATURES = {"float", "float_literal", "comparison", "logical", "select", "cast"}


def test_every_registered_primitive_has_its_kernel_forms():
    """What each kernel generator reads sits on the primitive, beside its rules (as JAX files
    a primitive's batching rule beside it): a new primitive gets them in core/primitives.py,
    or joins _WITHOUT_KERNEL_FORMS above with the reason."""
    from symtape.core.primitives import REGISTRY

    missing = []
    for name, prim in sorted(REGISTRY.items()):
        if name in _WITHOUT_KERNEL_FORMS:
            continue
        if not prim.elementwise:
            if prim.batch is None:
                missing.append(f"{name}: no batch= rule (kernels could not map it over "
                               "leading batch axes)")
            continue
        if (prim.printed is None) == (prim.cuda is None):
            missing.append(f"{name}: give it exactly one of printed= (the SymPy node the array "
                           "kernels print) and cuda= (its CUDA C form, printed as a call)")
        if prim.scalar is None:
            missing.append(f"{name}: no scalar= form (the Numba loops' code)")
        if prim.signature not in _SIGNATURES:
            missing.append(f"{name}: signature={prim.signature!r} is not one of "
                           f"{sorted(_SIGNATURES)}")
    assert not missing, "primitives missing kernel forms:\n" + "\n".join(missing)


def _recorded_nodes(fun, point) -> list:
    """Every op node of ``fun`` at ``point`` and of its gradient (recorded: the gradient's
    own ops, scatters included, are nodes too)."""
    xs = [st.Variable(np.asarray(p, dtype=float)) for p in point]
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            y = fun(*xs)
        grads = inner.gradient(y, xs)
    del outer
    nodes, stack, seen = [], [y, *grads], set()
    while stack:
        node = stack.pop()
        if id(node) in seen or node._prim is None:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(node._inputs)
    return nodes


def test_batch_rules_map_every_structural_op_over_leading_axes():
    """Each structural op's batch rule, on inputs with a leading batch axis of 2 (all of them,
    or only the first, or only the last), equals the op's numeric form at each point."""
    from every_primitive import CASES

    from symtape.core.primitives import REGISTRY

    one_slice = (lambda v: st.reduce_sum(st.sin(v[1:3])), (np.arange(4.0),))  # a scatter
    checked = set()
    for fun, point in [case[:2] for case in CASES.values()] + [one_slice]:
        for node in _recorded_nodes(fun, point):
            prim, params = node._prim, node._params
            if prim.elementwise:
                continue
            values = [np.asarray(x._value) for x in node._inputs]
            ranks = [v.ndim for v in values]
            call, batchable = prim.batch(ranks, **params)
            expected = prim.numeric(np, *values, **params)
            np.testing.assert_allclose(call(np, *values), expected, rtol=1e-15, err_msg=prim.name)
            if not batchable:
                continue
            second = [2 * v + 1 if v.dtype.kind == "f" else v for v in values]
            for batched in (range(len(values)), [0], [len(values) - 1]):
                args = [np.stack([v, w]) if i in batched else v
                        for i, (v, w) in enumerate(zip(values, second))]
                other = [w if i in batched else v for i, (v, w) in enumerate(zip(values, second))]
                want = np.stack([expected, prim.numeric(np, *other, **params)])
                np.testing.assert_allclose(call(np, *args), want, rtol=1e-15,
                                           err_msg=f"{prim.name}, batched inputs {list(batched)}")
            checked.add(prim.name)
    assert checked == {name for name, prim in REGISTRY.items() if not prim.elementwise}
