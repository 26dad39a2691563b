"""The public ops: values against NumPy, closed forms against hand-derived SymPy,
NumPy broadcasting, Python operators, constructors, and errors that name the problem."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest
import sympy
from helpers import entries, same, symbols

import symtape as st

X, Y = sympy.symbols("x y", real=True)
RNG = np.random.default_rng(20240611)


def assert_same_entries(expr, oracle: np.ndarray):
    got = entries(expr)
    assert got.shape == np.shape(oracle)
    for index in np.ndindex(*got.shape):
        assert same(got[index], oracle[index]), (index, got[index], oracle[index])


# ---------------------------------------------------------------- elementwise values vs NumPy

UNARY = [
    (st.sin, np.sin, (-3, 3)), (st.cos, np.cos, (-3, 3)), (st.tan, np.tan, (-1.3, 1.3)),
    (st.asin, np.arcsin, (-0.99, 0.99)), (st.acos, np.arccos, (-0.99, 0.99)),
    (st.atan, np.arctan, (-5, 5)), (st.sinh, np.sinh, (-3, 3)), (st.cosh, np.cosh, (-3, 3)),
    (st.tanh, np.tanh, (-3, 3)), (st.exp, np.exp, (-5, 5)), (st.log, np.log, (0.01, 5)),
    (st.log1p, np.log1p, (-0.99, 5)), (st.sqrt, np.sqrt, (0, 5)),
    (st.erf, np.vectorize(math.erf), (-3, 3)), (st.sigmoid, lambda v: 1 / (1 + np.exp(-v)), (-30, 30)),
    (st.softplus, lambda v: np.logaddexp(0, v), (-30, 30)), (st.relu, lambda v: np.maximum(v, 0), (-3, 3)),
    (st.abs, np.abs, (-3, 3)), (st.sign, np.sign, (-3, 3)), (st.square, np.square, (-3, 3)),
    (st.negative, np.negative, (-3, 3)),
]


@pytest.mark.parametrize("op, ref, domain", UNARY, ids=[u[0].__name__ for u in UNARY])
def test_unary_values_match_numpy(op, ref, domain):
    value = RNG.uniform(*domain, size=(3, 4))
    value[0, 0] = 0.0 if domain[0] <= 0 <= domain[1] else value[0, 0]
    for source in (st.constant(value), st.Variable(value, name="u")):
        out = op(source)
        assert isinstance(out, st.Tensor)
        assert out.shape == (3, 4) and out.dtype == st.float64
        np.testing.assert_allclose(out.numpy(), ref(value), rtol=1e-14, atol=1e-300)
    out32 = op(st.constant(value.astype(np.float32)))
    assert out32.dtype == st.float32
    np.testing.assert_allclose(out32.numpy(), ref(value), rtol=2e-6, atol=1e-6)
    scalar = op(st.constant(float(value[1, 1])))
    assert scalar.shape == () and math.isclose(float(scalar), float(ref(value[1, 1])), rel_tol=1e-14)


def test_sigmoid_and_softplus_do_not_overflow():
    big = st.constant([-800.0, -50.0, 0.0, 50.0, 800.0])
    with np.errstate(over="raise"):
        s = st.sigmoid(big).numpy()
        p = st.softplus(big).numpy()
    np.testing.assert_allclose(s, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-15, atol=0)
    np.testing.assert_allclose(p, [0.0, np.exp(-50.0), np.log(2.0), 50.0, 800.0], rtol=1e-15)


BINARY = [
    (st.add, np.add), (st.subtract, np.subtract), (st.multiply, np.multiply),
    (st.divide, np.divide), (st.pow, np.power), (st.atan2, np.arctan2),
    (st.maximum, np.maximum), (st.minimum, np.minimum),
]


@pytest.mark.parametrize("op, ref", BINARY, ids=[b[0].__name__ for b in BINARY])
def test_binary_values_match_numpy(op, ref):
    a = RNG.uniform(0.2, 3.0, size=(2, 3))
    b = RNG.uniform(-2.0, 2.0, size=(2, 3))
    b[0, 0] = a[0, 0]  # a tie for maximum/minimum
    out = op(st.constant(a), st.Variable(b, name="b"))
    assert isinstance(out, st.Tensor) and out.dtype == st.float64
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-14)


BROADCAST_SHAPES = [((3, 1), (1, 4)), ((), (3,)), ((3,), ()), ((2, 1, 3), (4, 1)),
                    ((5,), (1,)), ((1,), (2, 3)), ((2, 3), (2, 3))]


@pytest.mark.parametrize("sa, sb", BROADCAST_SHAPES)
@pytest.mark.parametrize("op, ref, sym", [
    (st.add, np.add, lambda p, q: p + q),
    (st.multiply, np.multiply, lambda p, q: p * q),
    (st.maximum, np.maximum, sympy.Max),
], ids=["add", "multiply", "maximum"])
def test_broadcasting_follows_numpy(sa, sb, op, ref, sym):
    a0, b0 = RNG.normal(size=sa), RNG.normal(size=sb)
    a, b = st.Variable(a0, name="a"), st.Variable(b0, name="b")
    out = op(a, b)
    expected = ref(a0, b0)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-15)
    sym_a = symbols("a", sa) if sa else np.array(sympy.Symbol("a", real=True), dtype=object)
    sym_b = symbols("b", sb) if sb else np.array(sympy.Symbol("b", real=True), dtype=object)
    pa, pb = np.broadcast_arrays(sym_a, sym_b)
    oracle = np.empty(pa.shape, dtype=object)
    for index in np.ndindex(*pa.shape):
        oracle[index] = sym(pa[index], pb[index])
    assert_same_entries(out.expr, oracle)


# ---------------------------------------------------------------- closed forms


def _two_vars():
    return st.Variable(0.4, name="x"), st.Variable(1.3, name="y")


EXPR_CASES = [
    ("sin", lambda x, y: st.sin(x), sympy.sin(X)),
    ("log1p", lambda x, y: st.log1p(x), sympy.log(1 + X)),
    ("sigmoid", lambda x, y: st.sigmoid(x), 1 / (1 + sympy.exp(-X))),
    ("softplus", lambda x, y: st.softplus(x), sympy.log(1 + sympy.exp(X))),
    ("relu", lambda x, y: st.relu(x), sympy.Max(X, 0)),
    ("abs", lambda x, y: abs(x), sympy.Abs(X)),
    ("erf", lambda x, y: st.erf(x), sympy.erf(X)),
    ("sqrt via pow", lambda x, y: x ** 0.5, sympy.sqrt(X)),
    ("reciprocal", lambda x, y: x ** -1, 1 / X),
    ("square", lambda x, y: st.square(x), X ** 2),
    ("atan2", lambda x, y: st.atan2(y, x), sympy.atan2(Y, X)),
    ("maximum", lambda x, y: st.maximum(x, y), sympy.Max(X, Y)),
    ("affine", lambda x, y: 3 * x - 2 + y / 4, 3 * X - 2 + Y / 4),
    ("rpow", lambda x, y: 2 ** x, 2 ** X),
    ("tensor pow", lambda x, y: x ** y, X ** Y),
    ("rsub and rdiv", lambda x, y: 1 - 2 / y, 1 - 2 / Y),
    ("nested", lambda x, y: st.exp(-st.square(x - y)) * st.tanh(y),
     sympy.exp(-(X - Y) ** 2) * sympy.tanh(Y)),
    ("where", lambda x, y: st.where(x > y, x, -y), sympy.Piecewise((X, X > Y), (-Y, True))),
    ("cast float of an expression", lambda x, y: st.cast(x * y, st.float32), X * Y),
]


@pytest.mark.parametrize("build, oracle", [(b, o) for _, b, o in EXPR_CASES],
                         ids=[n for n, _, _ in EXPR_CASES])
def test_expr_matches_hand_derived_sympy(build, oracle):
    x, y = _two_vars()
    out = build(x, y)
    assert same(out.expr, oracle)
    rel_tol = 1e-14 if out.dtype == st.float64 else 1e-6
    assert math.isclose(float(out.numpy()), float(oracle.subs({X: 0.4, Y: 1.3})), rel_tol=rel_tol)


def test_expr_of_vector_reductions_and_linear_algebra():
    v0 = np.array([0.5, -1.0, 2.0])
    W0 = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    v, W = st.Variable(v0, name="v"), st.Variable(W0, name="W")
    sv, sW = symbols("v", (3,)), symbols("W", (2, 3))
    assert same(st.reduce_sum(v * v).expr, sum(s ** 2 for s in sv))
    assert same(st.reduce_mean(v).expr, sum(sv) / 3)
    assert same(st.reduce_max(v).expr, sympy.Max(*sv))
    assert same(st.reduce_min(v).expr, sympy.Min(*sv))
    assert_same_entries(st.matmul(W, v).expr, np.array([sum(sW[i, k] * sv[k] for k in range(3))
                                                        for i in range(2)], dtype=object))
    assert_same_entries((v @ st.transpose(W)).expr,
                        np.array([sum(sW[i, k] * sv[k] for k in range(3)) for i in range(2)],
                                 dtype=object))
    assert_same_entries(st.transpose(W).expr, sW.T)
    assert_same_entries(st.reshape(W, (3, 2)).expr, sW.reshape(3, 2))
    assert_same_entries(st.reduce_sum(W, axis=0).expr, sW.sum(axis=0))
    assert_same_entries(st.reduce_sum(W, axis=1, keepdims=True).expr,
                        sW.sum(axis=1, keepdims=True))
    assert_same_entries(st.concat([v, 2 * v], axis=0).expr, np.concatenate([sv, 2 * sv]))
    assert_same_entries(st.stack([v, v * v], axis=1).expr, np.stack([sv, sv * sv], axis=1))
    assert same(st.tensordot(v, v, axes=1).expr, sum(s * s for s in sv))


def test_expr_entries_follow_numpy_reductions_with_axes():
    x0 = RNG.normal(size=(2, 3, 4))
    x = st.Variable(x0, name="x")
    sx = symbols("x", (2, 3, 4))
    for axis, keep in [(0, False), (-1, True), ((0, 2), False), ((1, -1), True), (None, True)]:
        out = st.reduce_sum(x, axis=axis, keepdims=keep)
        ref = np.sum(x0, axis=axis, keepdims=keep)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-14)
        assert_same_entries(out.expr, np.sum(sx, axis=axis, keepdims=keep))
        mean = st.reduce_mean(x, axis=axis, keepdims=keep)
        np.testing.assert_allclose(mean.numpy(), np.mean(x0, axis=axis, keepdims=keep), rtol=1e-14)
        for op, ref_op in [(st.reduce_max, np.max), (st.reduce_min, np.min)]:
            ext = op(x, axis=axis, keepdims=keep)
            np.testing.assert_array_equal(ext.numpy(), ref_op(x0, axis=axis, keepdims=keep))


# ---------------------------------------------------------------- exact decimals


def test_exact_decimals_in_expr():
    x = st.Variable(2.0, name="x")
    assert st.constant(0.1).expr == sympy.Rational(1, 10)
    assert st.constant(0.1, dtype=st.float32).expr == sympy.Rational(1, 10)
    assert st.constant([0.5, 2.0, -1.25]).expr == sympy.Array(
        [sympy.Rational(1, 2), 2, sympy.Rational(-5, 4)])
    assert (st.constant(0.1) * x).expr == X / 10
    assert (x * 0.1 + st.constant(0.25)).expr == X / 10 + sympy.Rational(1, 4)
    assert (0.3 - x).expr == sympy.Rational(3, 10) - X
    with st.GradientTape() as tape:
        y = st.constant(0.1) * x ** 2 + 0.3 * x
    g = tape.gradient(y, x)
    assert not g.expr.has(sympy.Float) and not y.expr.has(sympy.Float)
    assert same(g.expr, X / 5 + sympy.Rational(3, 10))
    third = st.constant(1 / 3).expr  # not a short decimal: its binary value, not 1/3
    assert isinstance(third, sympy.Float) and float(third) == 1 / 3


# ---------------------------------------------------------------- Python operators


OPERATORS = [
    ("+", lambda p, q: p + q), ("-", lambda p, q: p - q), ("*", lambda p, q: p * q),
    ("/", lambda p, q: p / q), ("**", lambda p, q: p ** q),
]


_KINDS = ["tensor", "variable", "float", "int", "np.float64", "ndarray"]
_MIXES = [(p, q) for p in _KINDS for q in _KINDS if "tensor" in (p, q) or "variable" in (p, q)]


@pytest.mark.parametrize("symbol, fn", OPERATORS, ids=[o[0] for o in OPERATORS])
@pytest.mark.parametrize("left, right", _MIXES, ids=[f"{p}-{q}" for p, q in _MIXES])
def test_binary_operators_on_mixed_operands(symbol, fn, left, right):
    a0, b0 = np.array([1.5, 2.0, 0.75]), np.array([0.5, 3.0, 2.0])
    make = {
        "tensor": lambda v: st.constant(v),
        "variable": lambda v: st.Variable(v, name="v"),
        "float": lambda v: float(v[1]),
        "int": lambda v: int(v[1]),
        "np.float64": lambda v: np.float64(v[1]),
        "ndarray": lambda v: v,
    }
    p, q = make[left](a0), make[right](b0)
    out = fn(p, q)
    assert isinstance(out, st.Tensor), type(out)
    expected = fn(np.asarray(p, dtype=float) if left not in ("tensor", "variable") else a0,
                  np.asarray(q, dtype=float) if right not in ("tensor", "variable") else b0)
    assert out.dtype == st.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-15)


def test_operators_keep_symbols_in_expr():
    x = st.Variable([1.0, 2.0], name="x")
    sx = symbols("x", (2,))
    assert_same_entries((np.array([3.0, 4.0]) * x).expr, np.array([3 * sx[0], 4 * sx[1]]))
    assert_same_entries((x - np.float64(0.5)).expr, sx - sympy.Rational(1, 2))
    assert_same_entries((-x).expr, -sx)
    assert_same_entries((+x).expr, sx)
    assert_same_entries(abs(x).expr, np.array([sympy.Abs(s) for s in sx]))
    assert_same_entries(pow(x, 2).expr, sx ** 2)
    assert_same_entries((x ** st.constant(3.0)).expr, sx ** 3)  # a constant exponent stays exact
    assert_same_entries((1 / x).expr, np.array([1 / s for s in sx]))
    assert same((x @ x).expr, sx[0] ** 2 + sx[1] ** 2)
    M = np.array([[1.0, 2.0], [0.0, -1.0]])
    assert_same_entries((M @ x).expr, np.array([sx[0] + 2 * sx[1], -sx[1]]))
    assert_same_entries((x @ M).expr, np.array([sx[0], 2 * sx[0] - sx[1]]))


def test_unary_operators_and_builtins():
    v = st.Variable([-1.5, 0.0, 2.0], name="v")
    t = st.constant([-1.5, 0.0, 2.0])
    for operand in (v, t):
        np.testing.assert_array_equal((-operand).numpy(), [1.5, -0.0, -2.0])
        np.testing.assert_array_equal(abs(operand).numpy(), [1.5, 0.0, 2.0])
        np.testing.assert_array_equal(pow(operand, 2).numpy(), [2.25, 0.0, 4.0])
        np.testing.assert_array_equal((+operand).numpy(), [-1.5, 0.0, 2.0])
        assert isinstance(-operand, st.Tensor) and isinstance(abs(operand), st.Tensor)


def test_matmul_operator_shapes_like_numpy():
    for sa, sb in [((2, 3), (3, 4)), ((3,), (3, 2)), ((2, 3), (3,)), ((3,), (3,)),
                   ((5, 2, 3), (3, 4)), ((1, 2, 3), (4, 3, 2))]:
        a0, b0 = RNG.normal(size=sa), RNG.normal(size=sb)
        for out in (st.constant(a0) @ st.Variable(b0, name="b"), a0 @ st.constant(b0),
                    st.constant(a0) @ b0, st.matmul(a0, b0)):
            assert isinstance(out, st.Tensor)
            assert out.shape == np.shape(a0 @ b0)
            np.testing.assert_allclose(out.numpy(), a0 @ b0, rtol=1e-13)
    a0, b0 = RNG.normal(size=(3, 2)), RNG.normal(size=(4, 3))
    np.testing.assert_allclose(st.matmul(a0, b0, transpose_a=True, transpose_b=True).numpy(),
                               a0.T @ b0.T, rtol=1e-13)


@pytest.mark.parametrize("op, ref", [
    (lambda p, q: p < q, np.less), (lambda p, q: p <= q, np.less_equal),
    (lambda p, q: p > q, np.greater), (lambda p, q: p >= q, np.greater_equal),
    (lambda p, q: p == q, np.equal), (lambda p, q: p != q, np.not_equal),
], ids=["<", "<=", ">", ">=", "==", "!="])
def test_comparisons_return_bool_tensors(op, ref):
    a0 = np.array([1.0, 2.0, 3.0])
    b0 = np.array([2.0, 2.0, 1.0])
    for p, q in [(st.constant(a0), st.constant(b0)), (st.Variable(a0, name="a"), b0),
                 (a0, st.Variable(b0, name="b")), (st.constant(a0), 2.0),
                 (2.0, st.constant(b0))]:
        out = op(p, q)
        assert isinstance(out, st.Tensor) and out.dtype == st.bool
        expected = ref(np.asarray(p, dtype=float), np.asarray(q, dtype=float))
        np.testing.assert_array_equal(out.numpy(), expected)


def test_comparisons_are_not_differentiable():
    x = st.Variable([1.0, -2.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.cast(x > 0, st.float64) * 3.0)
    assert tape.gradient(y, x) is None
    x2 = st.Variable([1.0, -2.0], name="x2")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.cast(x2 > 0, st.float64))
    zero = tape.gradient(y, x2, unconnected_gradients="zero")
    np.testing.assert_array_equal(zero.numpy(), [0.0, 0.0])


# ---------------------------------------------------------------- indexing

KEYS = [0, -1, 2, (1, 2), (-1, -2), slice(1, None), slice(None, None, -1), (slice(None), 1),
        (slice(None), slice(1, 3)), (Ellipsis, -1), (None, 1), (slice(None), None, 2),
        [2, 0, 0], (np.array([0, 2]), np.array([-1, 1])), (slice(None), [3, 3, 0]),
        np.array([True, False, True]), (1, slice(None, None, 2)), (slice(-2, None), -3)]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_indexing_matches_numpy(key):
    x0 = np.arange(12.0).reshape(3, 4) * 0.5
    sx = symbols("x", (3, 4))
    for source in (st.constant(x0), st.Variable(x0, name="x")):
        out = source[key]
        assert isinstance(out, st.Tensor)
        assert out.shape == x0[key].shape
        np.testing.assert_array_equal(out.numpy(), x0[key])
    assert_same_entries(st.Variable(x0, name="x")[key].expr, np.asarray(sx[key], dtype=object))


def test_indexing_with_integer_tensors_iteration_and_len():
    x = st.Variable([1.0, 2.0, 3.0], name="x")
    assert float(x[st.constant(1)]) == 2.0
    assert x[st.constant(-1)].expr == sympy.Symbol("x[2]", real=True)
    t = st.constant([[1.0, 2.0], [3.0, 4.0]])
    assert len(t) == 2 and len(x) == 3
    rows = list(t)
    assert all(isinstance(r, st.Tensor) for r in rows)
    np.testing.assert_array_equal(rows[1].numpy(), [3.0, 4.0])


def test_index_errors_name_the_shape():
    t = st.constant(np.zeros((2, 3)))
    with pytest.raises(IndexError, match=re.escape("(2, 3)")):
        t[5]
    with pytest.raises(IndexError, match=re.escape("(2, 3)")):
        t[:, 3]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match="integer"):
        t[st.constant(1.0)]


# ---------------------------------------------------------------- errors


def test_mismatched_shapes_name_both_shapes():
    a, b = st.constant([1.0, 2.0]), st.Variable([1.0, 2.0, 3.0], name="b")
    for fn in (lambda: a + b, lambda: st.multiply(a, b), lambda: st.maximum(b, a),
               lambda: st.atan2(a, b), lambda: a ** b):
        with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)|\(3,\).*\(2,\)"):
            fn()
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(3, 2)")):
        st.ones((2, 3)) - st.ones((3, 2))
    with pytest.raises(ValueError, match=re.escape("(2,)") + ".*" + re.escape("(3,)")):
        st.where(st.constant([True, False]), st.ones((2,)), st.ones((3,)))


def test_mixing_float32_and_float64_tensors_names_cast():
    f32 = st.constant([1.0, 2.0], dtype=st.float32)
    f64 = st.constant([1.0, 2.0])
    v64 = st.Variable([1.0, 2.0], name="v")
    for fn in (lambda: f32 + f64, lambda: f64 * f32, lambda: v64 - f32, lambda: st.maximum(f32, v64),
               lambda: st.concat([f32, f64], 0), lambda: st.matmul(f32, f64),
               lambda: st.where(f32 > 0, f32, f64)):
        with pytest.raises(TypeError, match=r"float32.*float64|float64.*float32") as info:
            fn()
        assert "st.cast" in str(info.value)
    # Python numbers and NumPy arrays take the Tensor's dtype
    assert (f32 + 1.5).dtype == st.float32
    assert (f32 * np.array([2.0, 3.0])).dtype == st.float32
    assert (np.float64(2.0) * f32).dtype == st.float32


def test_int_tensor_with_float_number_says_how_to_fix():
    with pytest.raises(TypeError, match="st.cast"):
        st.constant([1, 2]) + 0.5
    np.testing.assert_array_equal((st.constant([1, 2]) / 2).numpy(), [0.5, 1.0])


def test_matmul_misalignment():
    with pytest.raises(ValueError, match=re.escape("a.shape=(2, 3) and b.shape=(2, 3)") +
                       ".*align"):
        st.ones((2, 3)) @ st.ones((2, 3))
    with pytest.raises(ValueError, match="align"):
        st.matmul(st.ones((4,)), st.ones((3, 2)))
    with pytest.raises(ValueError, match="at least one axis"):
        st.matmul(st.ones((2, 3)), 2.0)
    with pytest.raises(ValueError, match="contracted dimensions differ"):
        st.tensordot(st.ones((2, 3)), st.ones((2, 3)), axes=1)


def test_reshape_size_mismatch():
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(4, 2)")):
        st.reshape(st.ones((2, 3)), (4, 2))
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(-1, 4)")):
        st.reshape(st.ones((2, 3)), (-1, 4))
    with pytest.raises(ValueError, match="at most one dimension may be -1"):
        st.reshape(st.ones((2, 3)), (-1, -1))
    assert st.reshape(st.ones((2, 3)), (3, -1)).shape == (3, 2)


@pytest.mark.parametrize("fn, message", [
    (lambda: st.reduce_sum(st.ones((2, 3)), axis=2), "reduce_sum: axis 2 is out of range"),
    (lambda: st.reduce_mean(st.ones((2, 3)), axis=(0, 5)), "axis 5 is out of range"),
    (lambda: st.reduce_max(st.ones((2, 3)), axis=-3), "reduce_max: axis -3 is out of range"),
    (lambda: st.reduce_min(st.ones((2,)), axis=1), "reduce_min: axis 1 is out of range"),
    (lambda: st.concat([st.ones((2, 3)), st.ones((2, 3))], axis=2), "concat: axis 2"),
    (lambda: st.stack([st.ones((2, 3)), st.ones((2, 3))], axis=3), "stack: axis 3"),
    (lambda: st.transpose(st.ones((2, 3)), (0, 0)), "not a permutation"),
])
def test_bad_axis(fn, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fn()


@pytest.mark.parametrize("op", [st.reduce_sum, st.reduce_max])
def test_reducing_a_scalar_over_an_axis_is_a_clear_error(op):
    # regression: axis 0 of a scalar used to pass the check and leak NumPy's AxisError
    with pytest.raises(ValueError, match=f"{op.__name__}: axis 0 is out of range"):
        op(st.constant(1.0), axis=0)


def test_other_shape_errors():
    with pytest.raises(ValueError, match=r"differ outside axis 0"):
        st.concat([st.ones((2, 3)), st.ones((3, 2))], axis=0)
    with pytest.raises(ValueError, match=r"all shapes must be equal.*\(2,\).*\(3,\)"):
        st.stack([st.ones((2,)), st.ones((3,))])
    with pytest.raises(ValueError, match="scalars have no axis"):
        st.concat([st.constant(1.0), st.constant(2.0)], axis=0)


def test_where_with_non_bool_condition():
    with pytest.raises(TypeError, match="condition must have dtype bool, not float64"):
        st.where(st.constant([1.0, 0.0]), 1.0, 2.0)
    with pytest.raises(TypeError, match="bool"):
        st.where(st.constant([1, 0]), st.ones((2,)), st.zeros((2,)))
    out = st.where(st.constant([True, False]), st.constant([1.0, 2.0]), -1.0)
    np.testing.assert_array_equal(out.numpy(), [1.0, -1.0])


def test_where_broadcasts_like_numpy():
    c = np.array([[True], [False], [True]])
    a0, b0 = RNG.normal(size=(1, 4)), RNG.normal(size=(3, 4))
    out = st.where(st.constant(c), st.constant(a0), b0)
    np.testing.assert_array_equal(out.numpy(), np.where(c, a0, b0))


# ---------------------------------------------------------------- constructors and casts


def test_one_hot():
    np.testing.assert_array_equal(st.one_hot([0, 2, 1], 3).numpy(), np.eye(3)[[0, 2, 1]])
    out = st.one_hot(st.constant([1, 0]), 4, on_value=5.0, off_value=-1.0, dtype=st.float32)
    assert out.dtype == st.float32 and out.shape == (2, 4)
    np.testing.assert_array_equal(out.numpy(), [[-1, 5, -1, -1], [5, -1, -1, -1]])
    along0 = st.one_hot([1, 0, 2], 3, axis=0).numpy()
    np.testing.assert_array_equal(along0, np.eye(3)[[1, 0, 2]].T)
    np.testing.assert_array_equal(st.one_hot([[0, 1], [2, 0]], 3).numpy(),
                                  np.eye(3)[np.array([[0, 1], [2, 0]])])
    np.testing.assert_array_equal(st.one_hot([0, 3, -1], 3).numpy(),  # out of range: all off
                                  [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="integers"):
        st.one_hot([0.5], 3)


def test_zeros_and_ones():
    z = st.zeros((2, 3))
    assert z.shape == (2, 3) and z.dtype == st.float64
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 3)))
    o = st.ones((4,), dtype=st.int32)
    assert o.dtype == st.int32
    np.testing.assert_array_equal(o.numpy(), [1, 1, 1, 1])
    assert st.ones(()).shape == () and float(st.ones(())) == 1.0
    assert st.zeros(3).shape == (3,)
    assert st.ones((2, 2), dtype=st.float32).expr == sympy.Array([[1, 1], [1, 1]])


def test_range():
    r = st.range(5)
    assert r.dtype == st.int64
    np.testing.assert_array_equal(r.numpy(), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(st.range(2, 9, 3).numpy(), [2, 5, 8])
    np.testing.assert_array_equal(st.range(5, 0, -2).numpy(), [5, 3, 1])
    f = st.range(0.0, 1.0, 0.25)
    assert f.dtype == st.float64
    np.testing.assert_array_equal(f.numpy(), [0.0, 0.25, 0.5, 0.75])
    g = st.range(3, dtype=st.float32)
    assert g.dtype == st.float32
    np.testing.assert_array_equal(g.numpy(), [0.0, 1.0, 2.0])


def test_cast():
    x = st.constant([2.7, -2.7, 0.5])
    as_int = st.cast(x, st.int64)
    assert as_int.dtype == st.int64
    np.testing.assert_array_equal(as_int.numpy(), np.array([2.7, -2.7, 0.5]).astype(np.int64))
    assert as_int.expr == sympy.Array([2, -2, 0])
    b = st.cast(st.constant([True, False]), st.float32)
    assert b.dtype == st.float32
    np.testing.assert_array_equal(b.numpy(), [1.0, 0.0])
    c = st.cast(st.constant([1.0, 2.0]), st.float32)
    assert c.dtype == st.float32
    with pytest.raises(TypeError, match="not supported"):
        st.cast(x, "complex64")


def test_cast_of_a_variable_keeps_its_symbol_in_expr():
    # regression: a bare Symbol is a sympy Boolean, and used to become Piecewise((1, x), (0, True))
    x = st.Variable([0.4, -2.5], name="x")
    sx = symbols("x", (2,))
    assert_same_entries(st.cast(x, st.float32).expr, sx)
    truncated = st.cast(x, st.int64)
    np.testing.assert_array_equal(truncated.numpy(), [0, -2])
    values = [e.subs({sx[0]: sympy.Rational(2, 5), sx[1]: sympy.Rational(-5, 2)})
              for e in entries(truncated.expr)]
    assert values == [0, -2]


def test_cast_passes_gradients_between_floats_only():
    x = st.Variable([1.5, -2.0], name="x")
    with st.GradientTape(persistent=True) as tape:
        y = st.reduce_sum(st.cast(x, st.float32) ** 2)
        z = st.reduce_sum(st.cast(st.cast(x, st.int64), st.float64) * x)
    g = tape.gradient(y, x)
    assert y.dtype == st.float32 and g.dtype == st.float64
    np.testing.assert_allclose(g.numpy(), [3.0, -4.0], rtol=1e-7)
    gz = tape.gradient(z, x)  # the int path is a constant: only the direct factor remains
    np.testing.assert_array_equal(gz.numpy(), [1.0, -2.0])


def test_random_normal_and_uniform():
    a = st.random.normal((2, 3), seed=11)
    b = st.random.normal((2, 3), seed=11)
    c = st.random.normal((2, 3), seed=12)
    assert isinstance(a, st.Tensor) and a.shape == (2, 3) and a.dtype == st.float64
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    assert st.random.normal(4, seed=1).shape == (4,)
    assert st.random.normal((), seed=1).shape == ()
    big = st.random.normal((40000,), mean=3.0, stddev=0.5, seed=5).numpy()
    assert abs(big.mean() - 3.0) < 5 * 0.5 / math.sqrt(40000)
    assert abs(big.std() - 0.5) < 0.02
    f32 = st.random.normal((3,), dtype=st.float32, seed=1)
    assert f32.dtype == st.float32
    u = st.random.uniform((40000,), minval=-2.0, maxval=5.0, seed=3, dtype=st.float32)
    assert u.dtype == st.float32 and u.shape == (40000,)
    values = u.numpy()
    assert values.min() >= -2.0 and values.max() < 5.0
    assert abs(values.mean() - 1.5) < 0.05
    np.testing.assert_array_equal(st.random.uniform((5,), seed=9).numpy(),
                                  st.random.uniform((5,), seed=9).numpy())
    st.random.set_seed(123)
    first = st.random.normal((4,)).numpy()
    second = st.random.normal((4,)).numpy()
    st.random.set_seed(123)
    np.testing.assert_array_equal(st.random.normal((4,)).numpy(), first)
    assert not np.array_equal(first, second)
    with pytest.raises(TypeError, match="float dtype"):
        st.random.uniform((2,), dtype=st.int32)


# ---------------------------------------------------------------- a small MLP


def _mlp_numpy(params, inputs, labels, activation):
    W1, b1, W2, b2 = params
    hidden = activation(inputs @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def _mlp_symtape(variables, inputs, onehot, activation):
    W1, b1, W2, b2 = variables
    hidden = activation(inputs @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - st.reduce_max(logits, axis=1, keepdims=True)
    log_probs = shifted - st.log(st.reduce_sum(st.exp(shifted), axis=1, keepdims=True))
    return -st.reduce_mean(st.reduce_sum(onehot * log_probs, axis=1))


@pytest.mark.parametrize("activation, np_activation", [
    (st.relu, lambda z: np.maximum(z, 0.0)), (st.tanh, np.tanh)], ids=["relu", "tanh"])
def test_mlp_gradients_match_finite_differences_and_descent_lowers_loss(activation,
                                                                       np_activation):
    rng = np.random.default_rng(7)
    inputs = rng.normal(size=(6, 4))
    labels = np.array([0, 2, 1, 1, 0, 2])
    params0 = [rng.normal(size=(4, 5)) * 0.8, rng.normal(size=(5,)) * 0.3,
               rng.normal(size=(5, 3)) * 0.8, rng.normal(size=(3,)) * 0.3]
    pre = inputs @ params0[0] + params0[1]
    assert np.min(np.abs(pre)) > 1e-3  # no relu kink within the finite-difference steps
    names = ["W1", "b1", "W2", "b2"]
    variables = [st.Variable(p, name=n) for p, n in zip(params0, names)]
    onehot = st.one_hot(labels, 3)

    with st.GradientTape() as tape:
        loss = _mlp_symtape(variables, inputs, onehot, activation)
    grads = tape.gradient(loss, variables)
    assert loss.shape == () and loss.dtype == st.float64
    assert math.isclose(float(loss), _mlp_numpy(params0, inputs, labels, np_activation),
                        rel_tol=1e-13)

    h = 1e-6
    for k, (g, p0) in enumerate(zip(grads, params0)):
        assert g.shape == p0.shape and g.dtype == st.float64
        fd = np.zeros_like(p0)
        for index in np.ndindex(*p0.shape):
            plus = [p.copy() for p in params0]
            minus = [p.copy() for p in params0]
            plus[k][index] += h
            minus[k][index] -= h
            fd[index] = (_mlp_numpy(plus, inputs, labels, np_activation)
                         - _mlp_numpy(minus, inputs, labels, np_activation)) / (2 * h)
        np.testing.assert_allclose(g.numpy(), fd, rtol=1e-6, atol=1e-9, err_msg=names[k])

    losses = [float(loss)]
    for _ in range(5):
        with st.GradientTape() as tape:
            step_loss = _mlp_symtape(variables, inputs, onehot, activation)
        for var, grad in zip(variables, tape.gradient(step_loss, variables)):
            var.assign_sub(0.5 * grad.numpy())
        with st.GradientTape() as tape:
            losses.append(float(_mlp_symtape(variables, inputs, onehot, activation)))
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("op", [st.reduce_max, st.reduce_min])
def test_the_extremum_of_an_empty_tensor_is_refused(op):
    name = op.__name__
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: the tensor of shape (0,) is empty along axis 0, and the extremum of no "
            "numbers is undefined; reduce a non-empty tensor or over other axes")):
        op(st.constant(np.zeros(0)))
    with pytest.raises(ValueError, match=re.escape("shape (2, 0) is empty along axis 1")):
        op(st.constant(np.zeros((2, 0))), axis=1)
    # reducing the non-empty axis of an empty tensor is defined: an empty result
    assert op(st.constant(np.zeros((2, 0))), axis=0).shape == (0,)


# ---------------------------------------------------------------- name=

# each public op with arguments it accepts; every one takes TensorFlow's name= last
NAMED_CALLS = [
    (st.sin, (0.5,)), (st.add, (1.0, 2.0)), (st.atan2, (1.0, 2.0)), (st.less, (1.0, 2.0)),
    (st.logical_not, ([True],)), (st.where, ([True, False], 1.0, 2.0)), (st.cast, (1, st.float64)),
    (st.reduce_sum, ([1.0, 2.0],)), (st.reduce_mean, ([1.0, 2.0],)),
    (st.reshape, ([1.0, 2.0], (2, 1))),
    (st.transpose, ([[1.0, 2.0]],)), (st.concat, ([[1.0], [2.0]], 0)), (st.stack, ([1.0, 2.0],)),
    (st.matmul, ([[1.0, 2.0]], [[3.0], [4.0]])), (st.tensordot, ([1.0, 2.0], [3.0, 4.0], 1)),
    (st.one_hot, ([0, 1], 2)), (st.zeros, ((2,),)), (st.ones, ((2,),)), (st.range, (3,)),
    (st.square, (3.0,)), (st.pow, (2.0, 3.0)), (st.negative, (1.0,)),
]


def test_every_op_takes_name():
    assert {fn.__name__ for fn, _ in NAMED_CALLS} <= set(st.core.ops.__all__)
    for op_name in st.core.ops.__all__:
        parameters = inspect.signature(getattr(st, op_name)).parameters
        assert list(parameters)[-1] == "name", op_name


@pytest.mark.parametrize("op, args", NAMED_CALLS, ids=lambda v: getattr(v, "__name__", ""))
def test_name_labels_the_result_by_keyword_and_by_position(op, args):
    plain = op(*args)
    by_keyword = op(*args, name="out")
    assert by_keyword.name == "out" and plain.name is None
    np.testing.assert_array_equal(by_keyword.numpy(), plain.numpy())
    position = list(inspect.signature(op).parameters).index("name")
    defaults = [p.default for p in inspect.signature(op).parameters.values()][len(args):position]
    assert op(*args, *defaults, "pos").name == "pos"


def test_a_name_does_not_change_the_closed_form_or_the_gradient():
    x = st.Variable(0.3, name="x")
    with st.GradientTape() as tape:
        s = st.sin(x, name="s")
        y = s * st.square(x, name="x2")
        total = st.reduce_sum(st.stack([y, x]), name="total")
    assert s.name == "s" and y.name is None and total.name == "total"
    assert s.expr == sympy.sin(X) and y.expr == sympy.sin(X) * X ** 2
    assert same(total.expr, sympy.sin(X) * X ** 2 + X)
    oracle = sympy.diff(sympy.sin(X) * X ** 2 + X, X)
    gradient = tape.gradient(total, x)
    assert same(gradient.expr, oracle)
    assert np.isclose(float(gradient), float(oracle.subs(X, 0.3)), rtol=1e-14)


def test_a_no_op_keeps_the_operands_own_name():
    v = st.Variable([1.0, 2.0], name="v")
    c = st.constant([3.0, 4.0], name="c")
    with st.GradientTape() as tape:
        same_dtype = st.cast(v, st.float64, name="cast_v")
        same_shape = st.reshape(c, (2,), name="reshaped")
        single = st.concat([v], 0, name="joined")
        y = st.reduce_sum(same_dtype * same_shape + single)
    assert (same_dtype.name, same_shape.name, single.name) == ("cast_v", "reshaped", "joined")
    assert c.name == "c" and v.value().name is None and st.convert_to_tensor(v).name is None
    assert same_dtype is not v.value() and same_shape is not c
    np.testing.assert_array_equal(tape.gradient(y, v).numpy(), [4.0, 5.0])  # c + 1
    assert same(y.expr, 3 * sympy.Symbol("v[0]", real=True) + 4 * sympy.Symbol("v[1]", real=True)
                + sympy.Symbol("v[0]", real=True) + sympy.Symbol("v[1]", real=True))


def test_a_named_result_of_constants_is_a_named_constant():
    three = st.add(st.constant(1.0), 2.0, name="three")
    assert three.expr == 3  # a constant prints as its value until a tape watches it
    with st.GradientTape() as tape:
        tape.watch(three)
        y = three * three
    symbol = sympy.Symbol("three", real=True)
    assert y.expr == symbol ** 2
    assert tape.gradient(y, three).expr == 2 * symbol


def test_python_operators_are_unchanged_by_names():
    a = st.Variable(2.0, name="a")
    assert (a + 1).name is None and (a * a).expr == sympy.Symbol("a", real=True) ** 2


@pytest.mark.parametrize("bad", [3, "", b"y", ["y"]])
def test_a_name_that_is_not_a_non_empty_str_is_a_type_error(bad):
    with pytest.raises(TypeError, match=re.escape(f"sin: name must be a non-empty str (a label "
                                                  f"for the result), got {bad!r}")):
        st.sin(1.0, name=bad)
    with pytest.raises(TypeError, match="reduce_sum: name must be a non-empty str"):
        st.reduce_sum([1.0], None, False, bad)
