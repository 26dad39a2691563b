"""Every behaviour of the TensorFlow GradientTape tutorials, with `import symtape as st`.

Oracles: hand-derived formulas and values, `sympy.diff` on the recorded forward
expression, and NumPy. Each test checks the number and the exact closed form.
"""

import warnings

import numpy as np
import pytest
import sympy
from helpers import same

import symtape as st

X, Y = sympy.symbols("x y", real=True)


def test_gradient_of_quadratic_at_zero():
    x = st.Variable(0.0, name="x")
    with st.GradientTape() as tape:
        y = x**2 - 2 * x + 1
    dy_dx = tape.gradient(y, x)
    assert dy_dx.numpy() == -2.0
    assert dy_dx.expr == 2 * X - 2
    assert same(dy_dx.expr, sympy.diff(y.expr, X))
    assert y.expr == X**2 - 2 * X + 1


def test_watched_constants_get_gradients_and_symbols():
    x = st.Variable(0.0, name="x")
    a, b, c = st.constant(1.0, name="a"), st.constant(-2.0, name="b"), st.constant(1.0, name="c")
    with st.GradientTape() as tape:
        tape.watch([a, b, c])
        y = a * x**2 + b * x + c
    grads = tape.gradient(y, [x, a, b, c])
    assert [float(g) for g in grads] == [-2.0, 0.0, 0.0, 1.0]
    A, B = sympy.symbols("a b", real=True)
    assert [g.expr for g in grads] == [2 * A * X + B, X**2, X, 1]


def test_nested_tapes_give_second_derivative():
    x = st.Variable(0.0, name="x")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            y = x**2 - 2 * x + 1
        dy_dx = inner.gradient(y, x)
    d2y_dx2 = outer.gradient(dy_dx, x)
    assert float(dy_dx) == -2.0 and float(d2y_dx2) == 2.0
    assert d2y_dx2.expr == 2


def test_nested_tapes_cubic():
    x = st.Variable(1.0, name="x")
    with st.GradientTape() as t2:
        with st.GradientTape() as t1:
            y = x * x * x
        dy_dx = t1.gradient(y, x)
    d2y_dx2 = t2.gradient(dy_dx, x)
    assert float(dy_dx) == 3.0 and float(d2y_dx2) == 6.0
    assert same(d2y_dx2.expr, sympy.diff(X**3, X, 2))


def test_persistent_tape_computes_several_gradients():
    x = st.constant(3.0)
    with st.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    assert float(tape.gradient(z, x)) == 108.0  # 4 x^3
    assert float(tape.gradient(y, x)) == 6.0  # 2 x
    C = x.expr  # its automatic name (c1, ...) has a symbol of its own, never Symbol("c1")
    assert tape.gradient(z, x).expr == 4 * C**3


def test_non_persistent_tape_refuses_second_gradient():
    x = st.Variable(3.0)
    with st.GradientTape() as tape:
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match=r"persistent=True"):
        tape.gradient(y, x)


def test_watch_accessed_variables_false():
    x, y = st.Variable(2.0, name="x"), st.Variable(3.0, name="y")
    with st.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        z = x * y
    dx, dy = tape.gradient(z, [x, y])
    assert float(dx) == 3.0 and dx.expr == Y
    assert dy is None


def test_watching_a_constant():
    c = st.constant(2.0, name="c")
    with st.GradientTape() as tape:
        tape.watch(c)
        y = st.exp(c)
    g = tape.gradient(y, c)
    assert np.isclose(float(g), np.exp(2.0), rtol=1e-15)
    assert g.expr == sympy.exp(sympy.Symbol("c", real=True))


def test_two_scalar_variables_values_and_second_derivatives():
    x, y = st.Variable(3.0, name="x"), st.Variable(4.0, name="y")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            f = x**2 + 2 * y**2 + 1
        dx, dy = inner.gradient(f, [x, y])
    assert float(f) == 42.0 and float(dx) == 6.0 and float(dy) == 16.0
    assert (dx.expr, dy.expr) == (2 * X, 4 * Y)
    d2x = outer.gradient(dx, x)
    assert float(d2x) == 2.0
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            f = x**2 + 2 * y**2 + 1
        dy = inner.gradient(f, y)
    assert float(outer.gradient(dy, y)) == 4.0


def test_vector_variables():
    x, y = st.Variable([1.0, 2.0, 3.0], name="x"), st.Variable([4.0, 5.0, 6.0], name="y")
    with st.GradientTape() as tape:
        f = x**2 + 2 * y**2 + 1
    np.testing.assert_array_equal(f.numpy(), [34.0, 55.0, 82.0])
    dx, dy = tape.gradient(f, [x, y])
    np.testing.assert_array_equal(dx.numpy(), [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(dy.numpy(), [16.0, 20.0, 24.0])
    xs = [sympy.Symbol(f"x[{i}]", real=True) for i in range(3)]
    assert list(dx.expr) == [2 * s for s in xs]


def test_list_targets_are_summed():
    x = st.Variable(3.0, name="x")
    with st.GradientTape() as tape:
        ys = [2 * x, x**2 + 2, x**2 + 2 * x]
    g = tape.gradient(ys, x)
    assert float(g) == 16.0  # 2 + 2x + (2x + 2) at 3
    assert same(g.expr, sum(sympy.diff(t, X) for t in [2 * X, X**2 + 2, X**2 + 2 * X]))


def test_list_and_dict_sources_mirror_structure():
    x, y = st.Variable(1.0, name="x"), st.Variable(2.0, name="y")
    with st.GradientTape(persistent=True) as tape:
        f = x * y
    as_list = tape.gradient(f, [x, y])
    assert isinstance(as_list, list) and [float(g) for g in as_list] == [2.0, 1.0]
    as_dict = tape.gradient(f, {"a": x, "b": (y,)})
    assert float(as_dict["a"]) == 2.0 and float(as_dict["b"][0]) == 1.0


def test_output_gradients_weight_target_entries():
    x = st.Variable([1.0, 2.0], name="x")
    with st.GradientTape() as tape:
        y = x**2
    g = tape.gradient(y, x, output_gradients=st.constant([10.0, -1.0]))
    np.testing.assert_array_equal(g.numpy(), [20.0, -4.0])
    x0, x1 = sympy.symbols("x[0] x[1]", real=True)
    assert list(g.expr) == [20 * x0, -2 * x1]


def test_unconnected_gradients_none_and_zero():
    x, z = st.Variable(2.0, name="x"), st.Variable([1.0, 2.0], name="z")
    with st.GradientTape(persistent=True) as tape:
        y = x * 3
    assert tape.gradient(y, z) is None
    zero = tape.gradient(y, z, unconnected_gradients="zero")
    np.testing.assert_array_equal(zero.numpy(), [0.0, 0.0])
    same_zero = tape.gradient(y, z, unconnected_gradients=st.UnconnectedGradients.ZERO)
    assert same_zero.shape == (2,)


def test_integer_sources_get_none_with_a_warning():
    x = st.Variable(2)  # int64
    assert x.dtype == st.int64
    with st.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.warns(UserWarning, match="integer"):
        assert tape.gradient(y, x) is None


def test_jacobian():
    x = st.Variable([1.0, 2.0, 3.0], name="x")
    with st.GradientTape() as tape:
        y = st.stack([x[0] * x[1], st.sin(x[2])])
    jac = tape.jacobian(y, x)
    assert jac.shape == (2, 3)
    np.testing.assert_allclose(jac.numpy(), [[2.0, 1.0, 0.0], [0.0, 0.0, np.cos(3.0)]], rtol=1e-15)
    xs = sympy.symbols("x[0] x[1] x[2]", real=True)
    oracle = sympy.Matrix([xs[0] * xs[1], sympy.sin(xs[2])]).jacobian(xs)
    assert sympy.Matrix(jac.expr.tolist()) == oracle


def test_batch_jacobian():
    x = st.Variable([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], name="x")
    w = st.constant([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0]])
    with st.GradientTape() as tape:
        y = st.tanh(x @ w)  # (3, 3)
    bj = tape.batch_jacobian(y, x)
    assert bj.shape == (3, 3, 2)
    xv, wv = x.numpy(), w.numpy()
    for i in range(3):  # d tanh(x_i w) / d x_i = diag(1 - tanh^2) w^T
        expected = (1 - np.tanh(xv[i] @ wv) ** 2)[:, None] * wv.T
        np.testing.assert_allclose(bj.numpy()[i], expected, rtol=1e-12)


def test_hessian_dense_and_exact():
    x = st.Variable([1.0, 2.0], name="x")
    with st.GradientTape() as tape:
        f = x[0] ** 3 * x[1] + st.exp(x[1])
    h = tape.hessian(f, x)
    xs = sympy.symbols("x[0] x[1]", real=True)
    oracle = sympy.hessian(xs[0] ** 3 * xs[1] + sympy.exp(xs[1]), xs)
    assert sympy.Matrix(h.expr.tolist()) == oracle
    values = {xs[0]: 1.0, xs[1]: 2.0}
    np.testing.assert_allclose(h.numpy(), np.array(oracle.subs(values), dtype=float), rtol=1e-14)


def test_watched_variables_stop_recording_and_reset():
    x, y = st.Variable(1.0, name="x"), st.Variable(2.0, name="y")
    with st.GradientTape(persistent=True) as tape:
        a = x * 2
        with tape.stop_recording():
            b = y * 2
    assert [v.name for v in tape.watched_variables()] == ["x"]
    assert float(tape.gradient(a, x)) == 2.0
    assert tape.gradient(b, y) is None
    with tape:
        tape.reset()
        c = y * 5
    assert [v.name for v in tape.watched_variables()] == ["y"]
    assert float(tape.gradient(c, y)) == 5.0


def test_variable_dtypes():
    assert st.Variable(1.0).dtype == st.float64
    assert st.Variable(1).dtype == st.int64
    assert st.Variable(1.0, dtype=st.float32).dtype == st.float32
    assert st.Variable([1, 2], dtype=st.float16).numpy().dtype == np.float16


def test_assign_methods_and_failed_assign_keeps_value():
    v = st.Variable([1.0, 2.0], name="v")
    v.assign([3.0, 4.0])
    v.assign_add([1.0, 1.0])
    v.assign_sub([0.5, 0.5])
    np.testing.assert_array_equal(v.numpy(), [3.5, 4.5])
    with pytest.raises(ValueError, match=r"shape \(3,\) does not match .* \(2,\)"):
        v.assign([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(v.numpy(), [3.5, 4.5])
    i = st.Variable([1, 2], name="i")
    with pytest.raises(TypeError, match="int64"):
        i.assign([0.5, 1.5])
    np.testing.assert_array_equal(i.numpy(), [1, 2])
    f32 = st.Variable(1.0, dtype=st.float32)
    with pytest.raises(TypeError, match="st.cast"):
        f32.assign(st.constant(2.0))  # float64 -> float32 would lose precision
    assert float(f32) == 1.0


def test_variable_is_not_a_tensor_and_constants_have_no_assign():
    assert not isinstance(st.Variable(1.0), st.Tensor)
    assert isinstance(st.constant(1.0), st.Tensor)
    assert not hasattr(st.constant(1.0), "assign")


def test_gradient_tape_class_without_parentheses():
    with pytest.raises(TypeError, match=r"GradientTape\(\)"):
        with st.GradientTape as tape:  # noqa: F841
            pass


def test_quadratic_training_loop_converges():
    x = st.Variable(0.0, name="x")
    for _ in range(1000):
        with st.GradientTape() as tape:
            y = x**2 - 2 * x + 1
        x.assign_sub(0.01 * tape.gradient(y, x))
    assert abs(float(x) - 1.0) < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.dtype == st.float64
