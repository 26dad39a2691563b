"""st.function and the transforms (grad, value_and_grad, jacobian, hessian): tracing once per
signature, Variables read and assigned at call time, batched calls, dtypes, errors, and exact
closed forms — checked against SymPy, SciPy's Rosenbrock, NumPy formulas and eager tapes."""

import functools
import math

import numpy as np
import pytest
import sympy
from scipy.optimize import rosen, rosen_der, rosen_hess, rosen_hess_prod
from helpers import rosenbrock, rosenbrock_gradient_function, rosenbrock_of, symbols_by_name

import symtape as st

X, Y = sympy.symbols("x y", real=True)
RNG = np.random.default_rng(20240607)


# ---------------------------------------------------------------- the DESIGN tutorial


def test_tutorial_gradient_and_value_inside_a_function():
    @st.function
    def f(x):
        with st.GradientTape() as tape:
            tape.watch(x)
            y = x**2 - 2 * x + 1
        return tape.gradient(y, x), y

    for x0, expected in [(0.0, (-2.0, 1.0)), (1.0, (0.0, 0.0)), (3.0, (4.0, 4.0))]:
        for arg in (st.constant(x0), x0):  # the kernel path and the Python-float path
            dy_dx, y = f(arg)
            assert isinstance(dy_dx, st.Tensor) and isinstance(y, st.Tensor)
            assert (float(dy_dx), float(y)) == expected


def test_tutorial_batched_call_evaluates_every_point():
    @st.function
    def f(x):
        with st.GradientTape() as tape:
            tape.watch(x)
            y = x**2 - 2 * x + 1
        return tape.gradient(y, x), y

    f(0.0)
    xs = np.linspace(-3.0, 3.0, 13)
    dy_dx, y = f(xs)
    np.testing.assert_allclose(dy_dx.numpy(), 2 * xs - 2, rtol=0, atol=1e-14)
    np.testing.assert_allclose(y.numpy(), (xs - 1) ** 2, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- Variables


def test_training_loop_inside_a_function_matches_the_eager_loop():
    w = st.Variable([2.0, -1.0, 0.5], name="w")
    w_ref = st.Variable([2.0, -1.0, 0.5], name="w_ref")
    data = st.constant(RNG.normal(size=(8, 3)))
    target = st.constant(RNG.normal(size=8))
    lr = 0.1

    def loss_of(v):
        r = st.matmul(data, v) - target
        return st.reduce_mean(r * r) + 0.1 * st.reduce_sum(st.sin(v))

    @st.function
    def train_step():
        with st.GradientTape() as tape:
            loss = loss_of(w)
        g = tape.gradient(loss, w)
        w.assign_sub(lr * g)
        return loss

    def hand_gradient(v):  # 2/m D^T (D v - t) + 0.1 cos v
        r = data.numpy() @ v - target.numpy()
        return 2.0 / 8 * data.numpy().T @ r + 0.1 * np.cos(v)

    start = np.linalg.norm(hand_gradient(w.numpy()))
    for _ in range(150):
        with st.GradientTape() as tape:
            loss_ref = loss_of(w_ref)
        w_ref.assign_sub(lr * tape.gradient(loss_ref, w_ref))
        loss = train_step()
        assert float(loss) == pytest.approx(float(loss_ref), rel=1e-12, abs=1e-14)
        np.testing.assert_allclose(w.numpy(), w_ref.numpy(), rtol=1e-12, atol=1e-14)
    assert np.linalg.norm(hand_gradient(w.numpy())) < 1e-3 * start  # and it converged


def test_scalar_training_loop_follows_the_hand_written_recurrence():
    w = st.Variable(5.0, name="w")

    @st.function
    def step(lr):
        with st.GradientTape() as tape:
            loss = (w - 3.0) ** 2
        w.assign_sub(lr * tape.gradient(loss, w))
        return loss

    ref = 5.0
    for _ in range(10):
        loss = step(0.1)
        assert float(loss) == pytest.approx((ref - 3.0) ** 2, rel=1e-14)
        ref -= 0.1 * 2 * (ref - 3.0)
        assert float(w.numpy()) == pytest.approx(ref, rel=1e-14)


def test_variables_are_read_at_call_time():
    v = st.Variable(2.0, name="v")
    m = st.Variable([[1.0, 0.0], [0.0, 1.0]], name="m")
    calls = []

    @st.function
    def f(x):
        calls.append(1)
        return x * v, st.matmul(m, x * st.ones((2,)))

    a, b = f(3.0)
    assert float(a) == 6.0 and b.numpy().tolist() == [3.0, 3.0]
    v.assign(10.0)
    m.assign([[0.0, 2.0], [1.0, 1.0]])
    a, b = f(3.0)
    assert float(a) == 30.0 and b.numpy().tolist() == [6.0, 6.0]
    v.assign_add(1.0)
    assert float(f(2.0)[0]) == 22.0
    assert len(calls) == 1  # one trace, three kernel calls


def test_a_variable_passed_as_argument_is_read_at_call_time():
    w = st.Variable(3.0)
    square = st.function(lambda a: a * a)
    assert float(square(w)) == 9.0
    w.assign(4.0)
    assert float(square(w)) == 16.0


def test_get_concrete_function_does_not_change_variables():
    u = st.Variable([1.0, 2.0], name="u")
    calls = []

    @st.function
    def f(x):
        calls.append(1)
        u.assign_add(x * st.ones((2,)))
        return st.reduce_sum(u)

    concrete = f.get_concrete_function(5.0)
    assert isinstance(concrete, st.ConcreteFunction)
    assert u.numpy().tolist() == [1.0, 2.0]
    assert len(calls) == 1
    # the traced call now runs the kernel: it assigns, and does not trace again
    assert float(f(5.0)) == 13.0
    assert u.numpy().tolist() == [6.0, 7.0]
    assert float(f(1.0)) == 15.0
    assert u.numpy().tolist() == [7.0, 8.0]
    assert len(calls) == 1


def test_several_assignments_in_one_trace_are_replayed_in_order():
    v = st.Variable([1.0, 2.0], name="v")

    @st.function
    def f(x):
        v.assign(v * x)
        first = v[0] + 0.0  # a read after the assignment sees the new value
        v.assign_add(st.ones((2,)))
        return first, st.reduce_sum(v)

    # by hand: v <- v*x, then v <- v+1
    expected_v = np.array([1.0, 2.0])
    for x in (2.0, 2.0, 0.5, -1.0):
        first, total = f(x)
        expected_v = expected_v * x
        assert float(first) == expected_v[0]
        expected_v = expected_v + 1
        assert float(total) == expected_v.sum()
        np.testing.assert_array_equal(v.numpy(), expected_v)


def test_assigning_function_refuses_vmap_and_leaves_variables_alone():
    v = st.Variable(1.0, name="v")
    f = st.function(lambda x: v.assign_add(x))
    f(1.0)
    assert float(v.numpy()) == 2.0
    with pytest.raises(ValueError, match="st.vmap: this function assigns Variables"):
        st.vmap(f)(np.array([1.0, 2.0]))
    assert float(v.numpy()) == 2.0


# ---------------------------------------------------------------- tracing and signatures


def test_repeated_calls_do_not_trace_again_and_new_signatures_do():
    calls = []

    @st.function
    def f(x):
        calls.append(np.shape(x))
        return st.reduce_sum(x * x)

    assert float(f(np.array([1.0, 2.0]))) == 5.0
    assert float(f(np.array([3.0, 4.0]))) == 25.0
    assert float(f(st.constant([0.5, 0.5]))) == 0.5
    assert len(calls) == 1
    assert float(f(np.array([1.0, 2.0, 3.0]))) == 14.0  # new shape
    assert len(calls) == 2
    out = f(np.array([1.0, 2.0], dtype=np.float32))  # new dtype
    assert len(calls) == 3
    assert out.dtype == np.float32 and float(out) == 5.0
    f(np.array([1.0, 2.0], dtype=np.float32))
    f(np.array([5.0, 2.0]))
    assert len(calls) == 3


def test_python_floats_share_one_trace_and_other_scalars_get_their_own():
    calls = []

    @st.function
    def f(x):
        calls.append(1)
        return x * 2.0 + 1.0

    assert float(f(1.0)) == 3.0
    assert float(f(2.5)) == 6.0
    assert len(calls) == 1
    assert float(f(st.constant(4.0))) == 9.0  # not weak (promotes): its own signature
    assert float(f(st.constant(5.0))) == 11.0
    assert len(calls) == 2
    assert f(np.float32(1.0)).dtype == np.float32  # another dtype: another trace
    assert len(calls) == 3


def test_python_ints_strings_and_none_are_static_by_value():
    calls = []

    @st.function
    def f(x, n, mode=None):
        calls.append((n, mode))
        y = x**n
        if mode == "neg":  # a Python branch on a static value is fine
            y = -y
        return y

    assert float(f(2.0, 3)) == 8.0
    assert float(f(2.0, 2)) == 4.0
    assert float(f(3.0, 3)) == 27.0
    assert float(f(2.0, 3, "neg")) == -8.0
    assert float(f(5.0, 2, "neg")) == -25.0
    assert float(f(4.0, 2)) == 16.0
    assert calls == [(3, None), (2, None), (3, "neg"), (2, "neg")]


def test_an_exact_signature_beats_a_batched_match():
    f = st.function(lambda x: st.reduce_sum(x))
    assert float(f(np.ones((2, 3)))) == 6.0  # traced on (2, 3): the sum of all six
    assert float(f(np.ones(3))) == 3.0  # a new trace on (3,)
    out = f(np.ones((2, 3)))  # the (2, 3) trace exists: it is not a batch of the (3,) one
    assert out.shape == () and float(out) == 6.0


def test_a_call_with_leading_axes_is_the_function_of_the_whole_argument():
    f = st.function(lambda x: st.reduce_sum(x))
    assert float(f(np.ones(3))) == 3.0
    out = f(np.arange(6.0).reshape(2, 3))  # a new shape, a new trace: the sum of all six
    assert out.shape == () and float(out) == 15.0
    assert st.vmap(f)(np.arange(6.0).reshape(2, 3)).numpy().tolist() == [3.0, 12.0]


def test_nested_arguments_and_keywords_are_traced():
    calls = []

    @st.function
    def f(xs, scale=1.0):
        calls.append(1)
        return st.reduce_sum(xs[0] * xs[1]) * scale

    a, b = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    assert float(f([a, b], scale=2.0)) == 26.0
    assert float(f([b, a], scale=0.5)) == 6.5
    assert len(calls) == 1


def test_function_returns_tensors_in_the_returned_structure():
    f = st.function(lambda x, y: {"sum": x + y, "parts": [x * y, (y, 7)]})
    for _ in range(2):  # the trace call and the kernel call
        out = f(2.0, 3.0)
        assert set(out) == {"sum", "parts"}
        assert isinstance(out["sum"], st.Tensor) and float(out["sum"]) == 5.0
        assert float(out["parts"][0]) == 6.0 and float(out["parts"][1][0]) == 3.0
        assert out["parts"][1][1] == 7


def test_get_concrete_function_expr_and_call():
    f = st.function(lambda x, y: st.sin(x) * y + st.exp(y))
    concrete = f.get_concrete_function(0.5, 1.5)
    assert sympy.simplify(concrete.expr - (sympy.sin(X) * Y + sympy.exp(Y))) == 0
    assert float(concrete(0.2, 0.7)) == pytest.approx(math.sin(0.2) * 0.7 + math.exp(0.7),
                                                      rel=1e-15)
    assert "def kernel" in concrete.source
    assert f.get_concrete_function(0.5, 1.5) is concrete  # same signature: the same trace
    assert sympy.simplify(f.expr - concrete.expr) == 0


@pytest.mark.parametrize("args", [(2.0, 2), (2.0, 3, 5.0)])
def test_concrete_function_refuses_arguments_of_another_signature(args):
    concrete = st.function(lambda x, n: x**n).get_concrete_function(2.0, 3)
    assert float(concrete(2.0, 3)) == 8.0
    with pytest.raises((TypeError, ValueError)):
        concrete(*args)


def test_expr_before_any_trace_is_a_clear_error():
    with pytest.raises(ValueError, match="traced"):
        st.function(lambda x: x).expr


def test_function_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        st.function(3)
    with pytest.raises(TypeError, match="callable"):
        st.grad("x**2")


def test_function_decorator_with_parentheses():
    @st.function()
    def f(x):
        return x + 1.0

    assert float(f(1.0)) == 2.0


def test_function_with_only_static_outputs():
    f = st.function(lambda x, n: n * 2)
    assert f(1.0, 3) == 6
    assert f(2.0, 3) == 6


# ---------------------------------------------------------------- a 3-variable function, batched


def mixed(x, y, z):
    return (st.sin(x) * st.exp(-y * y) + st.log(1.0 + z * z) + st.where(x > y, x * y, z)
            + st.maximum(x, z) + st.sigmoid(x * z) + st.softplus(y - z) + st.tanh(x - y))


def mixed_numpy(x, y, z):
    s = 1 / (1 + np.exp(-x * z))
    value = (np.sin(x) * np.exp(-y * y) + np.log(1 + z * z) + np.where(x > y, x * y, z)
             + np.maximum(x, z) + s + np.logaddexp(0, y - z) + np.tanh(x - y))
    sech2 = 1 - np.tanh(x - y) ** 2
    sig_yz = 1 / (1 + np.exp(-(y - z)))
    dx = (np.cos(x) * np.exp(-y * y) + np.where(x > y, y, 0) + (x > z) + s * (1 - s) * z
          + sech2)
    dy = -2 * y * np.sin(x) * np.exp(-y * y) + np.where(x > y, x, 0) + sig_yz - sech2
    dz = 2 * z / (1 + z * z) + np.where(x > y, 0, 1) + (z > x) + s * (1 - s) * x - sig_yz
    return value, (dx, dy, dz)


def test_batched_value_and_gradient_match_numpy_formulas():
    n = 1000
    x, y, z = (RNG.uniform(-2, 2, n) for _ in range(3))
    vg = st.vmap(st.value_and_grad(mixed, argnums=(0, 1, 2)))  # traced on scalars
    value, grads = vg(x, y, z)
    expected_value, expected_grads = mixed_numpy(x, y, z)
    assert value.shape == (n,)
    np.testing.assert_allclose(value, expected_value, rtol=1e-13, atol=1e-13)
    for got, expected in zip(grads, expected_grads):
        assert got.shape == (n,)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_batched_gradient_matches_separate_eager_tapes():
    n = 100
    points = RNG.uniform(-2, 2, (3, n))
    df = st.vmap(st.grad(mixed, argnums=(0, 1, 2)))
    batched = np.stack(df(*points))
    for k in range(n):
        sources = [st.Variable(points[i, k]) for i in range(3)]
        with st.GradientTape() as tape:
            y = mixed(*sources)
        eager = [float(g) for g in tape.gradient(y, sources)]
        np.testing.assert_allclose(batched[:, k], eager, rtol=1e-13, atol=1e-14)


def test_first_call_with_a_batch_traces_elementwise_functions_on_the_whole_array():
    # a trace made on arrays is itself a valid elementwise evaluation
    x, y, z = (RNG.uniform(-2, 2, 50) for _ in range(3))
    f = st.function(mixed)
    np.testing.assert_allclose(f(x, y, z).numpy(), mixed_numpy(x, y, z)[0], rtol=1e-13)
    np.testing.assert_allclose(f(z, x, y).numpy(), mixed_numpy(z, x, y)[0], rtol=1e-13)


def test_nested_vmaps_map_several_arguments_over_a_grid():
    f = st.vmap(st.vmap(st.function(mixed), in_axes=(None, 0, None)), in_axes=(0, None, None))
    x = RNG.uniform(-2, 2, 5)
    y = RNG.uniform(-2, 2, 7)
    z = 0.25
    out = f(x, y, z)
    assert out.shape == (5, 7)
    np.testing.assert_allclose(out.numpy(), mixed_numpy(x[:, None], y[None, :], z)[0],
                               rtol=1e-13)
    dz = st.vmap(st.vmap(st.grad(mixed, argnums=2), in_axes=(None, 0, None)),
                 in_axes=(0, None, None))
    np.testing.assert_allclose(dz(x, y, z), mixed_numpy(x[:, None], y[None, :], z)[1][2],
                               rtol=1e-12, atol=1e-12)


def test_a_mapped_argument_no_output_depends_on_still_shapes_the_result():
    f = st.vmap(lambda x, y: (x * 2.0, st.constant(3.0)), in_axes=(None, 0))
    a, b = f(1.0, np.zeros(4))
    assert a.shape == (4,) and b.shape == (4,)
    assert a.numpy().tolist() == [2.0] * 4 and b.numpy().tolist() == [3.0] * 4


def test_incompatible_batch_shapes_are_a_clear_error():
    f = st.function(lambda x, y: x * y)
    f(1.0, 2.0)
    with pytest.raises(ValueError, match="broadcast"):
        f(np.zeros(3), np.zeros(4))


# ---------------------------------------------------------------- Rosenbrock vs SciPy


@pytest.mark.parametrize("n", [2, 10, 1000])
def test_rosenbrock_grad_and_value_and_grad_match_scipy(n):
    x = RNG.uniform(-2, 2, n)
    g = st.grad(rosenbrock)(x)
    assert isinstance(g, np.ndarray) and g.shape == (n,)
    np.testing.assert_allclose(g, rosen_der(x), rtol=1e-12, atol=1e-10)
    value, g2 = st.value_and_grad(rosenbrock)(x)
    assert float(value) == pytest.approx(rosen(x), rel=1e-13)
    np.testing.assert_allclose(g2, rosen_der(x), rtol=1e-12, atol=1e-10)


def test_rosenbrock_kernel_path_and_batches_match_scipy():
    df = st.value_and_grad(rosenbrock)
    df(np.zeros(10))
    for _ in range(3):
        x = RNG.uniform(-2, 2, 10)
        value, g = df(x)
        assert float(value) == pytest.approx(rosen(x), rel=1e-13)
        np.testing.assert_allclose(g, rosen_der(x), rtol=1e-12, atol=1e-10)
    xs = RNG.uniform(-2, 2, (4, 3, 10))
    values, gs = st.vmap(st.vmap(df))(xs)
    assert values.shape == (4, 3) and gs.shape == (4, 3, 10)
    for idx in np.ndindex(4, 3):
        assert values[idx] == pytest.approx(rosen(xs[idx]), rel=1e-13)
        np.testing.assert_allclose(gs[idx], rosen_der(xs[idx]), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("n", [2, 5, 12])
def test_rosenbrock_dense_hessian_matches_scipy(n):
    H = st.hessian(rosenbrock)
    for _ in range(2):
        x = RNG.uniform(-2, 2, n)
        h = H(x)
        assert isinstance(h, np.ndarray) and h.shape == (n, n)
        np.testing.assert_allclose(h, rosen_hess(x), rtol=1e-12, atol=1e-10)


def test_rosenbrock_batched_dense_hessian():
    H = st.vmap(st.hessian(rosenbrock))
    xs = RNG.uniform(-2, 2, (6, 4))
    hs = H(xs)
    assert hs.shape == (6, 4, 4)
    for h, x in zip(hs, xs):
        np.testing.assert_allclose(h, rosen_hess(x), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("n", [3, 10, 200])
def test_hessian_vector_product_from_nested_grad_matches_scipy(n):
    hvp = st.grad(lambda x, v: st.reduce_sum(st.grad(rosenbrock)(x) * v))
    for _ in range(2):
        x, v = RNG.uniform(-2, 2, n), RNG.normal(size=n)
        np.testing.assert_allclose(hvp(x, v), rosen_hess_prod(x, v), rtol=1e-11, atol=1e-9)


def test_rosenbrock_gradient_matches_central_differences():
    x = RNG.uniform(-1, 1, 6)
    g = st.grad(rosenbrock)(x)
    h = 1e-6
    fd = np.array([(rosen(x + h * e) - rosen(x - h * e)) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- exact closed forms


def test_grad_expr_equals_sympy_diff():
    f = st.grad(lambda x, y: st.sin(x * y) * st.exp(x) + x**3 / y, argnums=(0, 1))
    f(0.5, 2.0)
    oracle_f = sympy.sin(X * Y) * sympy.exp(X) + X**3 / Y
    gx, gy = f.expr
    assert sympy.simplify(gx - sympy.diff(oracle_f, X)) == 0
    assert sympy.simplify(gy - sympy.diff(oracle_f, Y)) == 0
    point = {X: 0.5, Y: 2.0}
    got = f(0.5, 2.0)
    assert float(got[0]) == pytest.approx(float(sympy.diff(oracle_f, X).subs(point)), rel=1e-14)
    assert float(got[1]) == pytest.approx(float(sympy.diff(oracle_f, Y).subs(point)), rel=1e-14)


def test_value_and_grad_expr_equals_sympy():
    vg = st.value_and_grad(lambda x: st.tanh(x) * st.log1p(x * x))
    vg(0.3)
    oracle = sympy.tanh(X) * sympy.log(1 + X**2)
    value, g = vg.expr
    assert sympy.simplify(value - oracle) == 0
    assert sympy.simplify(g - sympy.diff(oracle, X)) == 0


def test_vector_grad_expr_equals_sympy_diff():
    n = 4
    f = st.grad(rosenbrock)
    f(np.zeros(n))
    expr = f.expr
    names = symbols_by_name(list(expr))
    xs = [names[f"x[{i}]"] for i in range(n)]
    oracle = rosenbrock_of(xs)
    for i in range(n):
        assert sympy.simplify(expr[i] - sympy.diff(oracle, xs[i])) == 0


def test_hessian_expr_equals_sympy_hessian():
    H = st.hessian(lambda x: x[0] ** 2 * st.sin(x[1]) + st.exp(x[0] * x[2]) + x[1] * x[2] ** 3)
    H(np.array([0.1, 0.2, 0.3]))
    expr = H.expr
    names = symbols_by_name([e for row in expr.tolist() for e in row])
    v = [names[f"x[{i}]"] for i in range(3)]
    oracle_f = v[0] ** 2 * sympy.sin(v[1]) + sympy.exp(v[0] * v[2]) + v[1] * v[2] ** 3
    oracle = sympy.hessian(oracle_f, v)
    for i in range(3):
        for j in range(3):
            assert sympy.simplify(expr[i, j] - oracle[i, j]) == 0
    point = [0.4, -0.3, 1.2]
    numeric = np.array(oracle.subs(dict(zip(v, point))), dtype=float)
    np.testing.assert_allclose(H(np.array(point)), numeric, rtol=1e-13)


def test_hessian_with_argnums_tuple_is_blocks():
    H = st.hessian(lambda x, y: x * x * st.sin(y), argnums=(0, 1))
    blocks = H(1.5, 0.7)
    exact = sympy.hessian(X**2 * sympy.sin(Y), [X, Y])
    oracle = exact.subs({X: 1.5, Y: 0.7})
    assert len(blocks) == 2 and all(len(row) == 2 for row in blocks)
    for i in range(2):
        for j in range(2):
            assert float(blocks[i][j]) == pytest.approx(float(oracle[i, j]), rel=1e-14)
            assert sympy.simplify(H.expr[i][j] - exact[i, j]) == 0


def test_jacobian_matches_hand_derivation_and_batches():
    J = st.jacobian(lambda x: st.stack([x[0] * x[1], st.sin(x[0]), x[1] ** 2]))
    x = np.array([0.5, 2.0])
    expected = np.array([[2.0, 0.5], [math.cos(0.5), 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(J(x), expected, rtol=1e-15)
    xs = RNG.normal(size=(7, 2))
    js = st.vmap(J)(xs)
    assert js.shape == (7, 3, 2)
    for j, p in zip(js, xs):
        np.testing.assert_allclose(
            j, [[p[1], p[0]], [math.cos(p[0]), 0.0], [0.0, 2 * p[1]]], rtol=1e-14)


def test_jacobian_with_argnums_tuple():
    J = st.jacobian(lambda x, y: st.stack([x * y, x + y, st.exp(x)]), argnums=(0, 1))
    jx, jy = J(2.0, 3.0)
    np.testing.assert_allclose(jx, [3.0, 1.0, math.exp(2.0)], rtol=1e-15)
    np.testing.assert_allclose(jy, [2.0, 1.0, 0.0], rtol=1e-15)



def _damped_residuals(t):
    def residuals(p):  # p[4] does not enter: its column is zero
        return p[0] * st.exp(-p[1] * t) * st.cos(p[2] * t + p[3]) - np.cos(t)
    return residuals


def test_jacobian_with_more_outputs_than_inputs_is_built_by_columns():
    t = np.linspace(0.0, 10.0, 300)
    residuals = _damped_residuals(t)
    J = st.jacobian(residuals)
    points = RNG.normal(size=(3, 5))
    for point in points:  # the oracle: an eager tape, one reverse sweep per row
        x = st.constant(point)
        with st.GradientTape() as tape:
            tape.watch(x)
            r = residuals(x)
        by_rows = tape.jacobian(r, x, unconnected_gradients="zero").numpy()
        np.testing.assert_allclose(J(point), by_rows, rtol=1e-13, atol=1e-15)
    a, b, c, d, _ = point
    e = np.exp(-b * t)
    by_hand = np.stack([e * np.cos(c * t + d), -a * t * e * np.cos(c * t + d),
                        -a * t * e * np.sin(c * t + d), -a * e * np.sin(c * t + d),
                        np.zeros_like(t)], axis=1)
    np.testing.assert_allclose(J(point), by_hand, rtol=1e-12, atol=1e-14)
    batch = st.vmap(J)(points)  # one kernel call over the batch axis
    assert batch.shape == (3, 300, 5)
    np.testing.assert_allclose(batch[-1], by_hand, rtol=1e-12, atol=1e-14)
    source = J.get_concrete_function(point).source
    assert source.count("\n") < 60  # 5 sweeps, not one per residual (300)


def test_jacobian_by_columns_is_exact_and_keeps_shapes_and_dtypes():
    t = np.array([0.0, 0.5, 2.0])

    def f(m, v):  # outputs (2, 3): 6 entries; inputs 4 + 1 = 5 entries: by columns
        return st.stack([m[0, 0] * st.exp(-v * t) + m[1, 1] ** 2, st.sin(m[0, 1] * t) + v * v])

    J = st.jacobian(f, argnums=(0, 1))
    m0, v0 = np.array([[2.0, 0.3], [7.0, -1.5]]), np.float64(0.25)
    jm, jv = J(m0, v0)
    assert jm.shape == (2, 3, 2, 2) and jv.shape == (2, 3)
    exprs = J.get_concrete_function(m0, v0).expr
    names = symbols_by_name(sympy.flatten(exprs))
    a, b, d, v = (names[n] for n in ("m[0,0]", "m[0,1]", "m[1,1]", "v"))
    ts = [sympy.Integer(0), sympy.Rational(1, 2), sympy.Integer(2)]
    closed = [[a * sympy.exp(-v * tk) + d ** 2 for tk in ts],
              [sympy.sin(b * tk) + v * v for tk in ts]]
    entries = {(0, 0): a, (0, 1): b, (1, 1): d}
    exact_m, exact_v = exprs
    for i in range(2):
        for k in range(3):
            assert sympy.simplify(exact_v[i][k] - sympy.diff(closed[i][k], v)) == 0
            for (r, c), symbol in entries.items():
                assert sympy.simplify(exact_m[i][k][r][c] - sympy.diff(closed[i][k], symbol)) == 0
            assert exact_m[i][k][1][0] == 0  # m[1, 0] does not enter
    numeric = sympy.lambdify([a, b, d, v], exact_m, "numpy")(2.0, 0.3, -1.5, 0.25)
    np.testing.assert_allclose(jm, np.array(numeric, dtype=float), rtol=1e-14)
    jm32, jv32 = J(m0.astype(np.float32), np.float32(v0))
    assert jm32.dtype == jv32.dtype == np.float32
    np.testing.assert_allclose(jm32, jm, rtol=1e-6)


# ---------------------------------------------------------------- argnums and results


def test_argnums_int_tuple_and_negative():
    f = lambda x, y: x * y * y + st.sin(x)  # noqa: E731
    dx, dy = 9.0 + math.cos(2.0), 12.0  # at (2, 3), by hand: y^2 + cos x, 2xy
    g0 = st.grad(f)(2.0, 3.0)
    assert isinstance(g0, np.ndarray) and g0.shape == ()
    assert float(g0) == pytest.approx(dx, rel=1e-15)
    both = st.grad(f, argnums=(0, 1))(2.0, 3.0)
    assert isinstance(both, tuple) and len(both) == 2
    assert float(both[0]) == pytest.approx(dx, rel=1e-15) and float(both[1]) == dy
    assert float(st.grad(f, argnums=-1)(2.0, 3.0)) == dy
    single = st.grad(f, argnums=(-2,))(2.0, 3.0)
    assert isinstance(single, tuple) and float(single[0]) == pytest.approx(dx, rel=1e-15)
    value, (gx, gy) = st.value_and_grad(f, argnums=(1, 0))(2.0, 3.0)
    assert float(value) == pytest.approx(18.0 + math.sin(2.0), rel=1e-15)
    assert float(gx) == dy and float(gy) == pytest.approx(dx, rel=1e-15)


@pytest.mark.parametrize("argnums", [2, -3, (0, 2), (1.0,)])
def test_argnums_out_of_range_is_a_value_error(argnums):
    with pytest.raises(ValueError, match="argnums"):
        st.grad(lambda x, y: x * y, argnums=argnums)(1.0, 2.0)


def test_grad_of_nested_argument_mirrors_it():
    g = st.grad(lambda xs: xs[0] * xs[1] ** 2)([2.0, 3.0])
    assert isinstance(g, list) and [float(v) for v in g] == [9.0, 12.0]


def test_unconnected_argument_gets_a_zero_gradient():
    gx, gy = st.grad(lambda x, y: x * 2.0, argnums=(0, 1))(2.0, 3.0)
    assert float(gx) == 2.0 and float(gy) == 0.0
    g = st.grad(lambda x: st.constant(3.0))(np.array([1.0, 2.0]))
    assert g.tolist() == [0.0, 0.0]


def test_python_int_argument_to_grad_is_made_float():
    assert float(st.grad(lambda x: x * x)(3)) == 6.0


# ---------------------------------------------------------------- dtypes


def test_float32_arguments_give_float32_results():
    f = lambda x: st.reduce_sum(2.0 * st.sin(x) + x**2 / 3.0 + st.sigmoid(x))  # noqa: E731
    x32 = RNG.normal(size=5).astype(np.float32)
    eager_x = st.constant(x32)
    with st.GradientTape() as tape:
        tape.watch(eager_x)
        y = f(eager_x)
    eager_g = tape.gradient(y, eager_x)
    assert eager_g.dtype == np.float32
    value, g = st.value_and_grad(f)(x32)
    assert value.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(g, eager_g.numpy(), rtol=1e-6)
    value, g = st.value_and_grad(f)(x32)  # the kernel call
    assert value.dtype == np.float32 and g.dtype == np.float32
    # float32 results are float32-rounded float64 results (hand formula)
    x = x32.astype(np.float64)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(g, 2 * np.cos(x) + 2 * x / 3 + s * (1 - s), rtol=1e-5)
    gs = st.grad(f)(np.stack([x32, x32]))
    assert gs.dtype == np.float32 and gs.shape == (2, 5)
    h = st.hessian(f)(x32)
    assert h.dtype == np.float32
    out = st.function(lambda x: 2.0 * x + 1.0)(x32)
    assert out.dtype == np.float32


@pytest.mark.parametrize("value", [np.array([1, 2]), st.constant(2), np.array([True])])
def test_integer_arguments_to_grad_raise_type_error_naming_the_dtype(value):
    with pytest.raises(TypeError, match="dtype"):
        st.grad(lambda x: st.reduce_sum(x * x))(value)


def test_grad_of_a_non_scalar_function_points_to_jacobian():
    with pytest.raises(TypeError, match="st.jacobian"):
        st.grad(lambda x: x * x)(np.ones(3))
    with pytest.raises(TypeError, match="st.jacobian"):
        st.value_and_grad(lambda x: st.stack([x, x]))(1.0)
    with pytest.raises(TypeError, match="scalar"):
        st.grad(lambda x: 3.0)(1.0)


def test_hessian_of_a_non_scalar_function_is_an_error():
    with pytest.raises(TypeError, match="scalar"):
        st.hessian(lambda x: x * x)(np.ones(2))


# ---------------------------------------------------------------- the kernel cache


def test_identical_transforms_hit_the_kernel_cache():
    x = np.linspace(0.1, 1.0, 6)
    first = st.grad(lambda x: st.reduce_sum(st.cos(x) * x**2))(x)
    before = st.kernel_cache_info()
    second = st.grad(lambda x: st.reduce_sum(st.cos(x) * x**2))(x)  # another lambda, same graph
    after = st.kernel_cache_info()
    assert after.hits > before.hits
    assert after.misses == before.misses
    np.testing.assert_allclose(second, first)
    np.testing.assert_allclose(second, 2 * x * np.cos(x) - x**2 * np.sin(x), rtol=1e-14)


def test_large_rosenbrock_kernel_is_vectorized():  # ~0.1 s: the trace is on whole arrays
    n = 10**5
    vg = st.value_and_grad(rosenbrock)
    x = RNG.uniform(-2, 2, n)
    value, g = vg(x)
    assert float(value) == pytest.approx(rosen(x), rel=1e-12)
    np.testing.assert_allclose(g, rosen_der(x), rtol=1e-12, atol=1e-10)
    source = vg.get_concrete_function(x).source
    assert len(source) < 2000 and len(source.splitlines()) < 30
    assert "99999" not in source and "x[" not in source  # no per-entry code
    x2 = RNG.uniform(-2, 2, n)
    np.testing.assert_allclose(vg(x2)[1], rosen_der(x2), rtol=1e-12, atol=1e-10)


# ---------------------------------------------------------------- errors


def test_python_if_on_a_traced_tensor_points_to_where():
    def f(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(TypeError, match="st.where"):
        st.function(f)(1.0)
    with pytest.raises(TypeError, match="st.where"):
        st.grad(f)(1.0)
    # st.where is the traceable spelling
    g = st.function(lambda x: st.where(x > 0, x, -x))
    assert [float(g(v)) for v in (2.0, -3.0)] == [2.0, 3.0]
    np.testing.assert_array_equal(g(np.array([-1.0, 0.5])).numpy(), [1.0, 0.5])


def test_wrong_shape_for_a_concrete_function_names_the_expected_shape():
    f = st.function(lambda x: st.reduce_sum(x * x))
    concrete = f.get_concrete_function(np.zeros(3))
    with pytest.raises(TypeError, match=r"traced for arguments \(float64\[3\]\), got "
                                        r"\(float64\[4\]\).*st.vmap"):
        concrete(np.zeros(4))
    with pytest.raises(TypeError, match=r"got \(float64\[2, 3\]\)"):  # no batch: exact
        concrete(np.zeros((2, 3)))
    assert float(concrete(np.array([1.0, 2.0, 2.0]))) == 9.0


def test_trace_failures_leave_the_function_usable():
    def f(x, fail):
        if fail:
            raise RuntimeError("boom")
        return x * 2.0

    g = st.function(f)
    with pytest.raises(RuntimeError, match="boom"):
        g(1.0, True)
    assert float(g(1.0, False)) == 2.0
    with pytest.raises(RuntimeError, match="boom"):
        g(1.0, True)


# ---------------------------------------------------------------- inside tapes and other traces


def test_compiled_function_inside_a_gradient_tape_is_differentiable():
    f = st.function(lambda x: st.sin(x) * x + st.exp(-x * x))
    f(0.3)
    f(0.4)  # compiled and used once: the tape must still see through it
    x = st.Variable(1.2, name="x")
    with st.GradientTape() as tape:
        y = f(x)
    g = tape.gradient(y, x)
    oracle = sympy.diff(sympy.sin(X) * X + sympy.exp(-X**2), X)
    assert float(g) == pytest.approx(float(oracle.subs(X, 1.2)), rel=1e-14)
    assert sympy.simplify(g.expr - oracle) == 0


def test_compiled_grad_inside_a_tape_gives_the_second_derivative():
    df = st.grad(lambda x: x**4 + st.sin(x))
    df(0.5)
    x = st.constant(0.7)
    with st.GradientTape() as tape:
        tape.watch(x)
        d1 = df(x)
    d2 = tape.gradient(d1, x)
    assert float(d2) == pytest.approx(12 * 0.7**2 - math.sin(0.7), rel=1e-14)


def test_nested_tapes_inside_a_function_give_exact_higher_derivatives():
    @st.function
    def f(x):
        with st.GradientTape() as outer:
            outer.watch(x)
            with st.GradientTape() as inner:
                inner.watch(x)
                y = st.sin(x) * x
            d1 = inner.gradient(y, x)
        return y, d1, outer.gradient(d1, x)

    f(0.1)
    xs = np.linspace(-2.0, 2.0, 9)
    y, d1, d2 = (t.numpy() for t in f(xs))
    np.testing.assert_allclose(y, np.sin(xs) * xs, rtol=1e-15)
    np.testing.assert_allclose(d1, np.cos(xs) * xs + np.sin(xs), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(d2, 2 * np.cos(xs) - xs * np.sin(xs), rtol=1e-13, atol=1e-15)


def test_tape_jacobian_and_hessian_inside_a_mapped_function():
    @st.function
    def f(x):
        with st.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = st.stack([x[0] * x[1], st.exp(x[1])])
            s = st.reduce_sum(y * y)
        return tape.jacobian(y, x), tape.hessian(s, x)

    points = RNG.uniform(-1, 1, (5, 2))
    jac, hess = (t.numpy() for t in st.vmap(f)(points))
    assert jac.shape == (5, 2, 2) and hess.shape == (5, 2, 2)
    for (a, b), j, h in zip(points, jac, hess):
        # by hand: s = a^2 b^2 + e^(2b)
        np.testing.assert_allclose(j, [[b, a], [0.0, np.exp(b)]], rtol=1e-14)
        expected = [[2 * b * b, 4 * a * b], [4 * a * b, 2 * a * a + 4 * np.exp(2 * b)]]
        np.testing.assert_allclose(h, expected, rtol=1e-13)


def test_gradient_of_a_variable_inside_a_mapped_function():
    v = st.Variable(2.0)

    @st.function
    def f(x):
        with st.GradientTape() as tape:
            y = v * v * x
        return tape.gradient(y, v)

    assert float(f(3.0)) == 12.0
    np.testing.assert_array_equal(st.vmap(f)(np.array([1.0, 3.0])).numpy(), [4.0, 12.0])
    v.assign(5.0)
    np.testing.assert_array_equal(st.vmap(f)(np.array([1.0, 3.0])).numpy(), [10.0, 30.0])
    assert float(f(np.array([1.0, 3.0]))) == 40.0  # whole: the gradient of sum(v*v*x)


def test_function_called_inside_another_function_is_inlined():
    inner_calls = []

    @st.function
    def inner(x):
        inner_calls.append(1)
        return x * 3.0

    outer = st.function(lambda x: inner(x) + 1.0)
    assert float(outer(2.0)) == 7.0
    assert float(outer(4.0)) == 13.0
    assert sympy.simplify(outer.expr - (3 * X + 1)) == 0
    assert len(inner_calls) == 1  # ran once, inside outer's trace


def test_grad_of_a_compiled_function():
    f = st.function(lambda x: x**3)
    df = st.grad(f)
    g = df(2.0)
    assert isinstance(g, np.ndarray)
    assert float(g) == 12.0
    assert float(df(1.0)) == 3.0


def test_transform_of_a_function_does_not_touch_its_traces():
    f = st.function(lambda x: x**3)
    f(1.0)
    df = st.grad(f)
    df(2.0)
    assert len(f._traces) == 1 and sympy.simplify(f.expr - X**3) == 0
    assert sympy.simplify(df.expr - 3 * X**2) == 0


# ---------------------------------------------------------------- numerical stability


def test_softplus_and_sigmoid_of_large_inputs_match_eager():
    x = np.array([-1000.0, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0])
    f = st.function(lambda x: (st.softplus(x), st.sigmoid(x), st.log1p(st.exp(-st.abs(x)))))
    eager = [t.numpy() for t in (st.softplus(st.constant(x)), st.sigmoid(st.constant(x)))]
    f(np.zeros(7))
    for out in (f(x), f(x[None, :].repeat(2, axis=0))):
        sp, sg, _ = [t.numpy() for t in out]
        assert np.all(np.isfinite(sp)) and np.all(np.isfinite(sg))
        np.testing.assert_allclose(sp.reshape(-1, 7)[0], eager[0], rtol=1e-15)
        np.testing.assert_allclose(sg.reshape(-1, 7)[0], eager[1], rtol=1e-15)
    # oracles: log(1+e^x) = max(x,0) + log1p(e^-|x|); sigmoid(+-1000) = 1, 0
    np.testing.assert_allclose(eager[0], np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
                               rtol=1e-15)
    assert eager[1][0] == 0.0 and eager[1][-1] == 1.0


def test_gradients_of_softplus_and_sigmoid_at_large_inputs_are_finite():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    g = st.grad(lambda x: st.reduce_sum(st.softplus(x) + st.sigmoid(x)))
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-x))
    for _ in range(2):
        out = g(x)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, s + s * (1 - s), rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------- argument and result kinds


def test_grad_with_respect_to_a_variable_argument_reads_it_at_call_time():
    w = st.Variable(3.0)
    g = st.grad(lambda x: x * x * x)
    assert float(g(w)) == 27.0
    w.assign(2.0)
    assert float(g(w)) == 12.0


def test_returned_variable_is_its_value_at_call_time():
    u = st.Variable([1.0, 2.0])
    f = st.function(lambda x: (u, x * 1.0))
    value, _ = f(1.0)
    assert isinstance(value, st.Tensor) and value.numpy().tolist() == [1.0, 2.0]
    u.assign([3.0, 4.0])
    assert f(1.0)[0].numpy().tolist() == [3.0, 4.0]


def test_non_numeric_array_arguments_are_refused():
    with pytest.raises(TypeError, match="numeric"):
        st.function(lambda x: x)(np.array(["a", "b"]))


def test_jacobian_of_a_scalar_output_is_the_gradient():
    x = np.array([1.0, -2.0, 0.5])
    J = st.jacobian(lambda x: st.reduce_sum(x * x * x))
    np.testing.assert_array_equal(J(x), 3 * x**2)


def test_mapped_hessian_blocks_with_argnums_tuple():
    H = st.vmap(st.hessian(lambda x, y: x * x * y + st.exp(y), argnums=(0, 1)))
    xs, ys = np.array([1.0, 2.0, -0.5]), np.array([2.0, 3.0, 0.1])
    (hxx, hxy), (hyx, hyy) = H(xs, ys)
    # by hand: [[2y, 2x], [2x, e^y]]
    np.testing.assert_allclose(hxx, 2 * ys, rtol=1e-15)
    np.testing.assert_allclose(hxy, 2 * xs, rtol=1e-15)
    np.testing.assert_allclose(hyx, 2 * xs, rtol=1e-15)
    np.testing.assert_allclose(hyy, np.exp(ys), rtol=1e-15)


def test_function_as_a_method_traces_per_instance_and_reads_its_variables():
    class Model:
        def __init__(self, w):
            self.w = st.Variable(w)
            self.traces = 0

        @st.function
        def __call__(self, x):
            self.traces += 1
            return st.reduce_sum(self.w * x)

        @st.function
        def step(self, x, lr):
            with st.GradientTape() as tape:
                loss = (self(x) - 1.0) ** 2
            self.w.assign_sub(lr * tape.gradient(loss, self.w))
            return loss

    a, b = Model([1.0, 2.0]), Model([3.0, 4.0])
    x = np.array([1.0, 1.0])
    for _ in range(2):
        assert float(a(x)) == 3.0 and float(b(x)) == 7.0
    assert a.traces == 1 and b.traces == 1
    a.w.assign([0.0, 0.0])
    assert float(a(x)) == 0.0 and float(b(x)) == 7.0
    assert float(b(np.ones((3, 2)))) == 21.0  # whole: w broadcast over the rows, summed
    np.testing.assert_array_equal(st.vmap(b)(np.ones((3, 2))).numpy(), [7.0] * 3)
    # gradient descent by hand: w <- w - lr * 2 (w.x - 1) x, from w = 0
    w, losses = np.zeros(2), []
    for _ in range(4):
        losses.append((w @ x - 1) ** 2)
        w = w - 0.1 * 2 * (w @ x - 1) * x
    got = [float(a.step(x, 0.1)) for _ in range(4)]
    np.testing.assert_allclose(got, losses, rtol=1e-14)
    np.testing.assert_allclose(a.w.numpy(), w, rtol=1e-14)


def test_transforms_pass_keyword_arguments_through():
    grad = st.grad(lambda x, scale=1.0: scale * x**3)
    assert float(grad(2.0)) == 12.0  # 3 * x**2
    assert float(grad(2.0, scale=0.5)) == 6.0
    assert float(grad(1.0, scale=2.0)) == 6.0  # a traced keyword: the same kernel, new value


def test_indexing_with_a_traced_argument_says_to_close_over_the_index():
    index = np.array([0, 2])
    with pytest.raises(TypeError, match="close over them"):
        st.grad(lambda x, i: st.reduce_sum(x[i] ** 2))(np.ones(3), index)
    closed_over = st.grad(lambda x: st.reduce_sum(x[index] ** 2))
    np.testing.assert_array_equal(closed_over(np.array([1.0, 2.0, 3.0])), [2.0, 0.0, 6.0])


# ---------------------------------------------------------------- calls with Python floats


def test_a_repeated_call_of_plain_floats_gives_numpys_arithmetic():
    """Calls run the kernel on Python floats: 1/0.0 must give inf (NumPy's arithmetic) on
    every call, not ZeroDivisionError."""
    g = st.grad(lambda x: 1 / x)
    with np.errstate(divide="ignore"):
        assert [float(g(0.0)) for _ in range(3)] == [-np.inf] * 3
    f = st.function(lambda x: 2 / x)
    with np.errstate(divide="ignore"):
        assert [float(f(0.0)) for _ in range(3)] == [np.inf] * 3


@pytest.mark.parametrize("exponent", [1 / 3, 0.5, 2.5])
def test_a_negative_base_to_a_fractional_power_is_nan_on_every_call(exponent):
    """Python's float ** gives a complex number there, and abs() of it a wrong real."""
    f = st.function(lambda x, y: st.abs(x ** y))
    with np.errstate(invalid="ignore"):
        values = [float(f(-8.0, exponent)) for _ in range(3)]
        batched = st.vmap(f, in_axes=(0, None))(np.array([-8.0, 8.0]), exponent)
    assert all(np.isnan(values))
    assert np.isnan(batched[0]) and batched[1] == pytest.approx(8.0 ** exponent, rel=1e-15)


def test_the_fast_path_reads_closed_over_variables_and_records_inside_tapes():
    w = st.Variable(2.0, name="w")
    f = st.function(lambda x: w * x ** 2)
    assert float(f(3.0)) == 18.0 and float(f(3.0)) == 18.0  # traced, then the fast path
    w.assign(5.0)
    assert float(f(3.0)) == 45.0
    x = st.Variable(3.0, name="x")
    with st.GradientTape() as tape:
        y = f(x.read_value() * 1.0)
    assert float(tape.gradient(y, x)) == 30.0  # 2 w x, recorded through the eager run
    with st.GradientTape() as tape:
        tape.watch(w)
        z = f(3.0)  # plain floats inside a recording tape: run eagerly, so recorded
    assert float(tape.gradient(z, w)) == 9.0


def test_the_fast_path_keeps_float32_and_array_signatures_apart():
    f = st.function(lambda x: st.reduce_sum(x * x))
    assert float(f(np.array([1.0, 2.0]))) == 5.0
    assert f(np.array([1.0, 2.0], dtype=np.float32)).dtype == st.float32
    assert float(f(np.array([1.0, 2.0, 3.0]))) == 14.0  # a new shape is a new trace
    assert float(f(2.0)) == 4.0
    assert float(f(np.array([1.0, 2.0]))) == 5.0


# ---------------------------------------------------------------- the fast path of repeated calls
# A repeated call of floats and host arrays skips flattening and the signature's specs. Its
# results must be what the full path gives: a fresh trace's concrete function, called through
# ConcreteFunction.__call__ (flatten, specs, Program.__call__), which has no history.

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    not __import__("importlib").util.find_spec("numba"), reason="numba is not installed"))]


def small_f(x, y):
    return st.reduce_sum(st.exp(-x * y) * st.sin(x) + x ** 2 * st.log(1 + y ** 2))


def small_f_value_and_grad(x, y):
    """By hand: the value and both gradients of ``small_f`` (a gradient sums over the
    entries its argument was broadcast to)."""
    e, s = np.exp(-x * y), np.sin(x)
    dx = -y * e * s + e * np.cos(x) + 2 * x * np.log(1 + y * y)
    dy = -x * e * s + x * x * 2 * y / (1 + y * y)
    return (np.sum(e * s + x * x * np.log(1 + y * y)),
            tuple(np.sum(d) if np.ndim(a) == 0 else d for d, a in ((dx, x), (dy, y))))


def assert_identical(got, expected):
    """The same nested structure, types, dtypes, shapes and bit-identical numbers."""
    assert type(got) is type(expected)
    if isinstance(got, (tuple, list)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_identical(a, b)
    elif isinstance(got, st.Tensor):
        assert type(got._value) is type(expected._value) and got.dtype == expected.dtype
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    else:
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def full_path(make, *args):
    """A fresh transform's result for ``args``: traced now, run through the full path."""
    return make().get_concrete_function(*args)(*args)


@pytest.fixture
def fast_calls(monkeypatch):
    """A function giving how many calls of st.function and the transforms so far took the
    fast path: every call but those of ``Function._call`` (the full path)."""
    from symtape.transforms.functional import Function

    counts = {"calls": 0, "full": 0}
    call, full = Function.__call__, Function._call

    def counted_call(self, *args, **kwargs):
        counts["calls"] += 1
        return call(self, *args, **kwargs)

    def counted_full(self, args, kwargs):
        counts["full"] += 1
        return full(self, args, kwargs)

    monkeypatch.setattr(Function, "__call__", counted_call)
    monkeypatch.setattr(Function, "_call", counted_full)
    return lambda: counts["calls"] - counts["full"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_signatures_give_the_full_paths_results_whatever_came_before(backend,
                                                                             fast_calls):
    def make():
        return st.value_and_grad(small_f, argnums=(0, 1), backend=backend)

    vg = make()
    signatures = [
        (0.3, 0.7),
        (np.array([0.3, -1.2]), np.array([0.7, 2.0])),
        (np.array([0.3, -1.2], dtype=np.float32), np.array([0.7, 2.0], dtype=np.float32)),
        (np.array(0.3), np.array(0.7)),  # 0-d arrays: another trace than Python floats
        (np.array([0.5, 0.25, 2.0]), np.array([1.0, -0.5, 0.125])),  # a new shape
        (0.3, np.array([0.7, 2.0])),
        (0.3, np.array([0.7, 2.0, -1.0])),  # the same types as the last: another trace
        (-1.5, 0.25),
    ]
    for _ in range(3):  # the first calls trace; then every signature after every other one
        for args in signatures:
            got = vg(*args)
            assert_identical(got, full_path(make, *args))
            value, grads = small_f_value_and_grad(*(np.asarray(a, np.float64) for a in args))
            rtol = 1e-5 if got[0].dtype == np.float32 else 1e-12
            np.testing.assert_allclose(got[0], value, rtol=rtol)
            for g, expected in zip(got[1], grads):
                np.testing.assert_allclose(g, expected, rtol=rtol)
    # every call after the traces (the last floats share the first ones' trace)
    assert fast_calls() == 2 * len(signatures) + 1


def transcendental(x):
    """Transcendental functions and reductions, rounded differently by eager NumPy calls
    and fused compiled loops."""
    return st.reduce_sum(st.exp(-x) * st.sin(3 * x) + st.log(1 + x * x) * st.tanh(x)
                         + st.sqrt(1 + st.cos(x) ** 2)) * st.reduce_max(st.atan(x))


def transcendental_vector(x):
    return st.sin(x) * st.exp(x[::-1]) + st.log1p(x * x) / (2 + st.cos(x))


TRANSFORMS = {
    "function": lambda backend: st.function(transcendental, backend=backend),
    "grad": lambda backend: st.grad(transcendental, backend=backend),
    "value_and_grad": lambda backend: st.value_and_grad(transcendental, backend=backend),
    "jacobian": lambda backend: st.jacobian(transcendental_vector, backend=backend),
    "hessian": lambda backend: st.hessian(transcendental, backend=backend),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (5,)])
def test_the_first_call_of_a_signature_gives_what_every_later_call_gives(backend, transform,
                                                                        dtype, shape):
    """Issue 15: a result never depends on history. The first call of a signature traces
    (the eager values may differ in the last bit from the compiled kernel's, as fused
    float32 loops do) and must still return what the kernel computes."""
    if transform == "jacobian" and shape == ():
        shape = (1,)
    x = np.linspace(0.3, 1.7, int(np.prod(shape))).reshape(shape).astype(dtype)
    make = functools.partial(TRANSFORMS[transform], backend)
    fun = make()
    first, second, third = fun(x), fun(x), fun(x)
    assert_identical(first, second)
    assert_identical(second, third)
    assert_identical(first, full_path(make, x))
    if transform in ("grad", "value_and_grad"):  # and it is the derivative
        xs = sympy.symbols(f"x0:{max(x.size, 1)}", real=True)
        v = [sympy.exp(-a) * sympy.sin(3 * a) + sympy.log(1 + a * a) * sympy.tanh(a)
             + sympy.sqrt(1 + sympy.cos(a) ** 2) for a in xs]
        f = sympy.Add(*v) * sympy.atan(xs[-1])  # atan increasing: the max is the last
        grad = first if transform == "grad" else first[1]
        expected = [float(sympy.diff(f, a).subs(dict(zip(xs, x.ravel().tolist())))) for a in xs]
        np.testing.assert_allclose(np.ravel(grad), expected,
                                   rtol=2e-5 if dtype == np.float32 else 1e-12)
        assert grad.dtype == dtype and grad.shape == shape


def test_the_first_call_assigns_variables_once():
    """The first call traces and runs the kernel; Variables are assigned once, by the
    kernel, and Python side effects happen once, while tracing."""
    v = st.Variable(np.float32(1.0), name="v")
    seen = []

    @st.function
    def step(x):
        seen.append(1)
        v.assign_add(st.exp(x) * v)
        return v.read_value() * 2.0

    results = [float(step(np.float32(0.5))) for _ in range(2)]
    expected = np.float32(1.0)
    expected = expected + np.exp(np.float32(0.5)) * expected
    assert results[0] == pytest.approx(2 * float(expected), rel=1e-6)
    assert seen == [1]
    assert v.dtype == st.float32
    expected = expected + np.exp(np.float32(0.5)) * expected
    assert float(v.numpy()) == pytest.approx(float(expected), rel=1e-6)


def many_f(*xs):
    return st.reduce_sum(st.stack([st.sin(x) * (i + 1) for i, x in enumerate(xs)]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, args", [
    (lambda b: st.value_and_grad(small_f, argnums=(0, 1), backend=b), (0.3, 0.7)),
    (lambda b: st.value_and_grad(small_f, backend=b), (0.3, 0.7)),
    (lambda b: st.grad(small_f, backend=b), (0.3, 0.7)),
    (lambda b: st.grad(small_f, argnums=[1, 0], backend=b), (0.3, 0.7)),
    (lambda b: st.hessian(small_f, argnums=(0, 1), backend=b), (0.3, 0.7)),
    (lambda b: st.grad(many_f, argnums=tuple(range(20)), backend=b),
     tuple(np.linspace(0.1, 2.0, 20).tolist())),  # more outputs than one expression takes
    (lambda b: st.grad(small_f, argnums=(0, 1), backend=b),
     (np.array(0.3, np.float32), np.array(0.7, np.float32))),
])
def test_scalar_outputs_built_in_one_expression_keep_types_and_structure(backend, make, args):
    """The fast path builds scalar outputs (0-d arrays of the traced dtypes) and their
    structure in one generated expression: what the full path gives, on every call."""
    fun = make(backend)
    for _ in range(3):
        assert_identical(fun(*args), full_path(functools.partial(make, backend), *args))
    if fun._what == "value_and_grad" and fun._argnums == (0, 1):  # and the right numbers
        value, (dx, dy) = fun(*args)
        expected_value, (expected_dx, expected_dy) = small_f_value_and_grad(*args)
        np.testing.assert_allclose([value, dx, dy], [expected_value, expected_dx, expected_dy],
                                   rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments_raise_the_same_errors_after_fast_calls(backend):
    def make():
        return st.value_and_grad(small_f, argnums=(0, 1), backend=backend)

    warm = make()
    for args in [(0.3, 0.7), (np.array([0.3]), np.array([0.7]))]:
        warm(*args), warm(*args)
    bad = [(np.array([1, 2]), np.array([0.7, 2.0])),  # integer arrays: not differentiable
           (0.3,),  # argnums=(0, 1) of one argument
           (np.array(["a"]), 0.7),
           (np.array([0.3, 0.5]), np.array([0.7, 0.1, 0.2]))]  # shapes that do not broadcast
    for args in bad:
        with pytest.raises(Exception) as fresh_error:
            make()(*args)
        with pytest.raises(type(fresh_error.value)) as warm_error:
            warm(*args)
        assert str(warm_error.value) == str(fresh_error.value)
    assert "dtype int64" in str(pytest.raises(TypeError, warm, *bad[0]).value)
    np.testing.assert_allclose(warm(0.3, 0.7)[0], small_f_value_and_grad(0.3, 0.7)[0])


def test_python_ints_to_a_transform_take_the_full_path_and_give_floats(fast_calls):
    grad = st.grad(lambda x: x ** 3)
    assert [grad(2) for _ in range(3)] == [12.0] * 3
    assert all(type(g) is np.ndarray and g.dtype == np.float64 for g in [grad(2), grad(2.0)])
    grad(2.0)
    assert fast_calls() == 2  # the last two float calls: the int ones convert first


@pytest.mark.parametrize("backend", BACKENDS)
def test_variables_assigned_between_fast_calls_are_read_at_each_call(backend, fast_calls):
    w = st.Variable(2.0, name="w")
    v = st.Variable([1.0, -1.0], name="v")
    f = st.function(lambda x: w * x ** 2 + st.reduce_sum(v * x), backend=backend)
    for step, (w_value, v_value) in enumerate([(2.0, [1.0, -1.0]), (5.0, [0.5, 3.0]),
                                               (-1.0, [0.0, 2.0])]):
        w.assign(w_value)
        v.assign(v_value)
        for x in (3.0, np.array([1.0, 2.0])):
            got = f(x)
            expected = w_value * np.asarray(x) ** 2 + np.sum(np.asarray(v_value) * x)
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14)
            assert_identical(got, f.get_concrete_function(x)(x))
    with pytest.raises(ValueError, match="does not match the Variable's shape"):
        v.assign([1.0, 2.0, 3.0])  # a Variable's shape is fixed: the trace stays valid
    np.testing.assert_allclose(f(3.0).numpy(), -9.0 + 3.0 * 2.0)
    assert fast_calls() == 5  # all but the two traces


@pytest.mark.parametrize("n", [3, 40])  # below and above the one-conversion threshold
def test_a_gradient_over_scalar_variables_follows_their_assignments(n, fast_calls):
    x0 = np.linspace(-1.0, 1.5, n)
    xs = [st.Variable(v, name=f"x{i}") for i, v in enumerate(x0)]
    gradient = rosenbrock_gradient_function(xs)
    for scale in (1.0, 0.5, -2.0):
        for x, value in zip(xs, scale * x0):
            x.assign(value)
        got = gradient()
        assert type(got) is list and len(got) == n
        assert all(isinstance(g, st.Tensor) and type(g._value) is np.float64 for g in got)
        np.testing.assert_allclose([g.numpy() for g in got], rosen_der(scale * x0),
                                   rtol=1e-12)
        assert_identical(got, gradient.get_concrete_function()())
    assert fast_calls() == 2


def test_many_scalar_outputs_keep_each_dtype(fast_calls):
    halves = [st.Variable(float(i), dtype=st.float32, name=f"h{i}") for i in range(20)]
    doubles = [st.Variable(float(i), name=f"d{i}") for i in range(20)]
    only_float32 = st.function(lambda: [h * 0.5 for h in halves])
    mixed = st.function(lambda: [h * 0.5 for h in halves] + [d * 0.5 for d in doubles])
    for _ in range(2):
        got = only_float32()
        assert [g.dtype for g in got] == [st.float32] * 20
        assert all(type(g._value) is np.float32 for g in got)
        np.testing.assert_array_equal([g.numpy() for g in got], np.arange(20) * 0.5)
        got = mixed()
        assert [g.dtype for g in got] == [st.float32] * 20 + [st.float64] * 20
        np.testing.assert_array_equal([g.numpy() for g in got], np.tile(np.arange(20) * 0.5, 2))
    assert fast_calls() == 2


def test_keywords_and_nested_arguments_agree_with_positional_calls(fast_calls):
    f = st.function(lambda x, y: x * st.sin(y))
    positional = [f(0.3, 0.7) for _ in range(2)]
    assert fast_calls() == 1
    for got in [f(x=0.3, y=0.7), f(0.3, y=0.7), *positional]:
        assert_identical(got, positional[0])
        assert got.numpy() == 0.3 * np.sin(0.7)
    g = st.function(lambda xs: xs[0] * st.sin(xs[1]))
    for args in [[0.3, 0.7], (0.3, 0.7), [0.3, 0.7]]:
        assert g(args).numpy() == 0.3 * np.sin(0.7)
    h = st.grad(lambda xs: xs[0] * st.sin(xs[1]))
    for _ in range(2):
        dx, dy = h([0.3, 0.7])
        assert (dx, dy) == (np.sin(0.7), 0.3 * np.cos(0.7))
    assert fast_calls() == 1  # lists are flattened: never the fast path


def test_numpy_scalars_are_their_own_signature(fast_calls):
    f = st.function(lambda x: x * 2)
    results = [f(1.5), f(np.float64(1.5)), f(np.float32(1.5)), f(1.5), f(np.float32(1.5))]
    assert [r.dtype for r in results] == [st.float64, st.float64, st.float32, st.float64,
                                          st.float32]
    assert all(r.numpy() == 3.0 for r in results)
    assert fast_calls() == 1  # only the repeated Python float


def test_fast_calls_move_to_the_gpu_inside_a_device_block_and_back(gpu_cupy):
    vg = st.value_and_grad(small_f, argnums=(0, 1))
    a, b = np.array([0.3, 0.5]), np.array([0.7, 0.1])
    value, grads = small_f_value_and_grad(a, b)
    for device in ["/cpu:0", "/gpu:0", "/cpu:0", "/gpu:0"]:
        with st.device(device):
            for _ in range(2):
                got_value, got_grads = vg(a, b)
                kind = np.ndarray if device == "/cpu:0" else gpu_cupy.ndarray
                assert all(type(r) is kind for r in (got_value, *got_grads))
                np.testing.assert_allclose(st.constant(got_value).numpy(), value, rtol=1e-12)
                for got, expected in zip(got_grads, grads):
                    np.testing.assert_allclose(st.constant(got).numpy(), expected, rtol=1e-12)


def test_fast_calls_inside_a_stopped_tape_run_the_kernel(fast_calls):
    w = st.Variable(2.0, name="w")
    f = st.function(lambda x: w * x)
    f(3.0)
    with st.GradientTape() as tape:
        with tape.stop_recording():
            assert f(3.0).numpy() == 6.0  # not recording: the kernel
        y = f(3.0)  # recording: the Python function, so that the tape sees w
    assert tape.gradient(y, w).numpy() == 3.0
    assert fast_calls() == 1
