"""One meaning per call, and explicit batches with ``st.vmap``.

Oracles: ``sympy.diff`` of hand-written SymPy forms, hand-derived NumPy formulas, SciPy's
Rosenbrock derivatives, and Python loops over points with a fresh transform per point."""

import numpy as np
import pytest
import sympy
from scipy.optimize import rosen, rosen_der, rosen_hess
from helpers import rosenbrock, rosenbrock_of

import symtape as st

RNG = np.random.default_rng(7)


def sum_sq(x):
    return st.reduce_sum(x * x)


# ---------------------------------------------------------------- history independence


def test_the_issue_examples_no_longer_depend_on_what_was_called_before():
    f = st.function(sum_sq)
    assert float(f(st.constant(2.0))) == 4.0
    assert float(f(st.constant([1.0, 2.0, 3.0]))) == 14.0  # tf.function's answer
    g = st.grad(rosenbrock)
    np.testing.assert_array_equal(g(np.ones(3)), np.zeros(3))
    M = RNG.uniform(-1, 1, (2, 3))
    after = g(M)
    fresh = st.grad(rosenbrock)(M)
    np.testing.assert_array_equal(after, fresh)
    # the oracle: rosen of M's slices along axis 0 (x[1:] is the second row), by hand
    u, v = M[0], M[1]
    expected = np.stack([-400 * u * (v - u**2) - 2 * (1 - u), 200 * (v - u**2)])
    np.testing.assert_allclose(after, expected, rtol=1e-13)


def _history_cases():
    X = sympy.symbols("x0:3", real=True)
    expr = rosenbrock_of(X)
    return X, expr


@pytest.mark.parametrize("make", ["function", "grad", "value_and_grad", "jacobian", "hessian",
                                  "sparse hessian"])
def test_each_transform_gives_the_same_call_the_same_result_whatever_came_before(make):
    transforms = {
        "function": lambda: st.function(rosenbrock),
        "grad": lambda: st.grad(rosenbrock),
        "value_and_grad": lambda: st.value_and_grad(rosenbrock),
        "jacobian": lambda: st.jacobian(lambda x: x[1:] * x[:-1] ** 2),
        "hessian": lambda: st.hessian(rosenbrock),
        "sparse hessian": lambda: st.hessian(rosenbrock, sparse=True),
    }
    x = np.array([0.3, -1.1, 0.7])
    batch = RNG.uniform(-1, 1, (4, 3))
    used = transforms[make]()
    used(np.ones(2))  # a point of another shape first
    used(batch)  # a "batch" shape: a call of its own, on the whole (4, 3) argument
    after = _dense(used(x))
    assert _same(after, _dense(transforms[make]()(x)))  # a fresh transform
    # an independent oracle at x: sympy.diff of the hand-written form
    X, expr = _history_cases()
    at = dict(zip(X, x))
    if make == "function":
        oracle = float(expr.subs(at))
    elif make == "grad":
        oracle = np.array([float(sympy.diff(expr, s).subs(at)) for s in X])
    elif make == "value_and_grad":
        oracle = (float(expr.subs(at)), np.array([float(sympy.diff(expr, s).subs(at)) for s in X]))
    elif make == "jacobian":
        ys = [X[1] * X[0] ** 2, X[2] * X[1] ** 2]
        oracle = np.array([[float(sympy.diff(y, s).subs(at)) for s in X] for y in ys])
    else:
        oracle = np.array([[float(sympy.diff(expr, a, b).subs(at)) for b in X] for a in X])
    assert _close(after, oracle)
    # and the whole (4, 3) call again, against a fresh transform
    assert _same(_dense(used(batch)), _dense(transforms[make]()(batch)))


def _dense(result):
    if isinstance(result, tuple):
        return tuple(_dense(r) for r in result)
    if hasattr(result, "toarray"):
        return result.toarray()
    return np.asarray(result.numpy() if isinstance(result, st.Tensor) else result)


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    return a.shape == b.shape and np.array_equal(a, b)


def _close(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_close(x, y) for x, y in zip(a, b))
    return np.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_the_gradient_of_a_non_scalar_result_is_an_error_that_names_vmap():
    g = st.grad(lambda x: x * x)
    with pytest.raises(TypeError, match=r"got shape \(3,\).*map it: st.vmap\(st.grad\(f\)\)"):
        g(np.ones(3))
    np.testing.assert_array_equal(st.vmap(g)(np.arange(3.0)), [0.0, 2.0, 4.0])


def test_tape_gradient_keeps_tensorflows_sum_of_a_non_scalar_target():
    x = st.constant([1.0, 2.0, 3.0])
    with st.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [2.0, 4.0, 6.0])


def test_compile_kernels_keep_broadcasting_over_leading_axes():
    x = sympy.Symbol("x", real=True)
    kernel = st.compile(sympy.sin(x) * x, [x])
    xs = np.linspace(0, 1, 6).reshape(2, 3)
    np.testing.assert_allclose(kernel(xs), np.sin(xs) * xs, rtol=1e-15)


# ---------------------------------------------------------------- vmap against oracles


def test_vmap_of_value_and_grad_matches_a_loop_and_scipy():
    points = RNG.uniform(-2, 2, (50, 6))
    values, grads = st.vmap(st.value_and_grad(rosenbrock))(points)
    assert values.shape == (50,) and grads.shape == (50, 6)
    for p, value, g in zip(points, values, grads):
        assert value == pytest.approx(rosen(p), rel=1e-13)
        np.testing.assert_allclose(g, rosen_der(p), rtol=1e-12, atol=1e-10)
    loop = [st.value_and_grad(rosenbrock)(p) for p in points]  # a Python loop over points
    np.testing.assert_allclose(values, [v for v, _ in loop], rtol=1e-14)
    np.testing.assert_allclose(grads, [g for _, g in loop], rtol=1e-13, atol=1e-13)


def test_vmap_traces_once_at_the_point_shape_and_calls_the_kernel_once():
    traces = []

    def f(x, y):
        traces.append((tuple(x.shape), tuple(y.shape)))
        return st.sin(x) * st.reduce_sum(y)

    mapped = st.vmap(st.function(f), in_axes=(0, None))
    xs, y = RNG.normal(size=1000), np.array([1.0, 2.0])
    out = mapped(xs, y)
    assert traces == [((), (2,))]  # one trace, at a point: the kernel ran over all 1000
    np.testing.assert_allclose(out.numpy(), np.sin(xs) * 3.0, rtol=1e-15)
    mapped(RNG.normal(size=17), y)  # another batch size: the same point, no new trace
    assert len(traces) == 1


def test_a_vmap_over_scalars_reuses_the_trace_of_a_0d_array_point():
    traces = []

    def f(x):
        traces.append(1)
        return x * x

    compiled = st.function(f)
    compiled(np.array(0.5))  # a 0-d float64 array (not weak, unlike a Python float)
    np.testing.assert_array_equal(st.vmap(compiled)(np.arange(3.0)).numpy(), [0.0, 1.0, 4.0])
    assert len(traces) == 1
    sparse = st.hessian(lambda x: st.reduce_sum(x**3), sparse=True)
    sparse(np.ones(4))
    assert len(sparse._last._product._traces) == 1  # its seeds' point: the traced zeros


def test_vmap_of_hessian_and_jacobian_match_hand_derived_forms():
    points = RNG.uniform(-2, 2, (5, 4))
    hs = st.vmap(st.hessian(rosenbrock))(points)
    for h, p in zip(hs, points):
        np.testing.assert_allclose(h, rosen_hess(p), rtol=1e-12, atol=1e-10)
    J = st.vmap(st.jacobian(lambda x: st.stack([x[0] * x[1], st.exp(x[1])])))(points[:, :2])
    a, b = points[:, 0], points[:, 1]
    expected = np.stack([np.stack([b, a], -1), np.stack([0 * a, np.exp(b)], -1)], 1)
    np.testing.assert_allclose(J, expected, rtol=1e-14)


@pytest.mark.parametrize("in_axes, out_axes", [(1, 0), (-1, 0), (0, 1), (1, -1)])
def test_in_axes_and_out_axes_move_the_mapped_axis(in_axes, out_axes):
    X = RNG.normal(size=(3, 4))
    f = st.vmap(lambda x: x * st.reduce_sum(x), in_axes=in_axes, out_axes=out_axes)
    got = f(X).numpy()
    rows = np.moveaxis(X, in_axes, 0)  # one point per mapped index, as a loop would see it
    expected = np.moveaxis(np.stack([r * r.sum() for r in rows]), 0, out_axes)
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_in_axes_per_argument_and_nested_structures():
    a, b = RNG.normal(size=(5, 2)), RNG.normal(size=(2, 5))
    c = RNG.normal(size=2)

    def f(pair, scale):
        return st.reduce_sum(pair["a"] * pair["b"]) * scale

    mapped = st.vmap(f, in_axes=({"a": 0, "b": 1}, None))
    out = mapped({"a": a, "b": b}, 2.0).numpy()
    np.testing.assert_allclose(out, 2.0 * np.einsum("ij,ji->i", a, b), rtol=1e-14)
    mapped = st.vmap(lambda xs, s: (xs[0] + xs[1]) * s, in_axes=([0, None], 0))
    out = mapped([a, c], np.arange(5.0)).numpy()
    np.testing.assert_allclose(out, (a + c) * np.arange(5.0)[:, None], rtol=1e-15)


def test_keyword_arguments_are_mapped_over_their_axis_0_as_in_jax():
    X = RNG.normal(size=(4, 2))
    out = st.vmap(lambda x, scale=1.0: x * scale, in_axes=0)(X, scale=np.arange(4.0)).numpy()
    np.testing.assert_allclose(out, X * np.arange(4.0)[:, None], rtol=1e-15)


def test_out_axes_inside_a_tape_place_the_stacked_axis():
    X = st.constant(RNG.normal(size=(3, 2)))
    with st.GradientTape() as tape:
        tape.watch(X)
        y = st.vmap(lambda r: r * r, out_axes=1)(X)
    assert y.shape == (2, 3)
    np.testing.assert_allclose(y.numpy(), (X.numpy() ** 2).T, rtol=1e-15)
    np.testing.assert_allclose(tape.gradient(y, X).numpy(), 2 * X.numpy(), rtol=1e-15)


def test_out_axes_none_for_an_output_that_does_not_vary():
    f = st.vmap(lambda x, w: (x * w, w * 2.0), in_axes=(0, None), out_axes=(0, None))
    scaled, doubled = f(np.arange(3.0), np.array([1.0, 2.0]))
    assert scaled.shape == (3, 2) and doubled.shape == (2,)
    np.testing.assert_array_equal(doubled.numpy(), [2.0, 4.0])
    with pytest.raises(ValueError, match="out_axes None for an output that varies"):
        st.vmap(lambda x: x * 2.0, out_axes=None)(np.arange(3.0))


def test_nested_vmap_maps_two_axes_in_one_trace():
    traces = []

    def f(x, y):
        traces.append(1)
        return st.sin(x) * st.cos(y)

    grid = st.vmap(st.vmap(f, in_axes=(None, 0)), in_axes=(0, None))
    xs, ys = RNG.normal(size=4), RNG.normal(size=6)
    out = grid(xs, ys).numpy()
    assert out.shape == (4, 6) and len(traces) == 1
    np.testing.assert_allclose(out, np.sin(xs)[:, None] * np.cos(ys)[None, :], rtol=1e-15)
    both = st.vmap(st.vmap(st.grad(rosenbrock)))(RNG.uniform(-1, 1, (3, 2, 4)))
    assert both.shape == (3, 2, 4)
    inner_out = st.vmap(st.vmap(lambda x: x * 1.0, out_axes=1), in_axes=1)(np.ones((2, 3, 4)))
    # inner maps the points' axis 0 (size 2) and puts it last; outer maps axis 1 (size 3)
    assert inner_out.shape == (3, 4, 2)


def test_vmap_on_gradients_matches_sympy_diff_per_point():
    x, y = sympy.symbols("x y", real=True)
    expr = sympy.exp(-x * y) * sympy.sin(x) + x**2 * sympy.log(1 + y**2)
    f = lambda a, b: st.exp(-a * b) * st.sin(a) + a**2 * st.log(1 + b**2)  # noqa: E731
    X, Y = RNG.normal(size=8), RNG.normal(size=8)
    values, (gx, gy) = st.vmap(st.value_and_grad(f, argnums=(0, 1)))(X, Y)
    for k in range(8):
        at = {x: X[k], y: Y[k]}
        assert values[k] == pytest.approx(float(expr.subs(at)), rel=1e-13)
        assert gx[k] == pytest.approx(float(sympy.diff(expr, x).subs(at)), rel=1e-12)
        assert gy[k] == pytest.approx(float(sympy.diff(expr, y).subs(at)), rel=1e-12)


def test_vmap_inside_a_tape_is_recorded_and_differentiable():
    w = st.Variable(np.array([0.5, -1.0]), name="w")
    X = RNG.normal(size=(4, 2))
    with st.GradientTape() as tape:
        per_row = st.vmap(lambda row, w: st.tanh(st.reduce_sum(row * w)), in_axes=(0, None))(X, w)
        loss = st.reduce_sum(per_row)
    s = X @ w.numpy()
    np.testing.assert_allclose(per_row.numpy(), np.tanh(s), rtol=1e-14)
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(),
                               ((1 - np.tanh(s) ** 2)[:, None] * X).sum(0), rtol=1e-13)


def test_vmap_inside_a_traced_function_gives_the_mapped_values():
    inner = st.vmap(lambda x: st.reduce_sum(x * x))
    outer = st.function(lambda X: inner(X) * 2.0)
    X = RNG.normal(size=(3, 2))
    np.testing.assert_allclose(outer(X).numpy(), 2 * (X**2).sum(1), rtol=1e-14)
    np.testing.assert_allclose(outer(X + 1).numpy(), 2 * ((X + 1) ** 2).sum(1), rtol=1e-14)


def test_check_grads_of_a_mapped_function():
    f = st.vmap(lambda x: st.sin(x[0]) * x[1])
    st.check_grads(f, (RNG.normal(size=(3, 2)),), order=2)


# ---------------------------------------------------------------- errors


def test_mismatched_mapped_sizes_are_a_clear_error():
    with pytest.raises(ValueError, match="the mapped axes must all have the same size: "
                                         "argument 0 has size 3 on axis 0, argument 1 has "
                                         "size 4 on axis 0"):
        st.vmap(lambda a, b: a * b)(np.ones(3), np.ones(4))


@pytest.mark.parametrize("in_axes, args, error, message", [
    ((0, None, 0), (np.ones(3),), ValueError, r"in_axes=\(0, None, 0\) has 3 entries but the "
                                              r"call passes 1 positional"),
    ([0], (np.ones(3),), TypeError, "got the list"),
    (2, (np.ones((3, 2)),), ValueError, r"axis 2 of argument 0, of shape \(3, 2\), which has "
                                        r"2 axes \(valid: -2 to 1\)"),
    (-3, (np.ones((3, 2)),), ValueError, "axis -3 of argument 0"),
    (0, (1.5,), ValueError, "argument 0 over axis 0, but it is a float, with no axes"),
    (0, (np.float64(1.5),), ValueError, "axis 0 of argument 0, which is a scalar"),
    (({"a": 0},), ([np.ones(3)],), ValueError, r"gives \{'a': 0\} for argument 0, which is a "
                                              "list of 1"),
    ((None,), (np.ones(3),), ValueError, "needs at least one mapped argument"),
    ("0", (np.ones(3),), TypeError, "each entry must be an int"),
])
def test_bad_in_axes_are_clear_errors(in_axes, args, error, message):
    with pytest.raises(error, match=message):
        st.vmap(lambda x: x * 1.0, in_axes=in_axes)(*args)


def test_mapping_a_variable_or_assigning_one_is_refused_and_changes_nothing():
    v = st.Variable(np.ones(3), name="v")
    with pytest.raises(TypeError, match="a Variable is state, not data"):
        st.vmap(lambda x: x * 2.0)(v)
    total = st.Variable(0.0, name="total")

    def accumulate(x):
        total.assign_add(x)
        return x

    with pytest.raises(ValueError, match="st.vmap: this function assigns Variables"):
        st.vmap(accumulate)(np.arange(3.0))
    assert float(total.numpy()) == 0.0


def test_out_axes_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match=r"out_axes asks for axis 2 of an output"):
        st.vmap(lambda x: x * 1.0, out_axes=2)(np.ones((3, 2)))


# ---------------------------------------------------------------- dask and the GPU


def test_vmap_on_dask_arrays_runs_block_by_block_over_the_mapped_axis():
    da = pytest.importorskip("dask.array")
    points = RNG.uniform(-1, 1, (10, 3))
    lazy_values, lazy_grads = st.vmap(st.value_and_grad(rosenbrock))(
        da.from_array(points, chunks=(4, 3)))
    assert isinstance(lazy_grads, da.Array) and lazy_grads.chunks == ((4, 4, 2), (3,))
    np.testing.assert_allclose(lazy_values.compute(), [rosen(p) for p in points], rtol=1e-13)
    np.testing.assert_allclose(lazy_grads.compute(), [rosen_der(p) for p in points],
                               rtol=1e-12, atol=1e-12)
    # mapped over axis 1 (the columns are the points), the output's axis placed last
    lazy = st.vmap(rosenbrock, in_axes=1, out_axes=0)(da.from_array(points.T, chunks=(3, 5)))
    assert lazy.chunks == ((5, 5),)
    np.testing.assert_allclose(lazy.compute(), [rosen(p) for p in points], rtol=1e-13)


def test_vmap_on_the_gpu_matches_the_cpu(gpu_cupy):
    cupy = gpu_cupy
    points = RNG.uniform(-1, 1, (6, 4))
    on_gpu = st.vmap(st.value_and_grad(rosenbrock))(cupy.asarray(points))
    assert all(isinstance(o, cupy.ndarray) for o in on_gpu)
    on_cpu = st.vmap(st.value_and_grad(rosenbrock))(points)
    for g, c in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(cupy.asnumpy(g), c, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cupy.asnumpy(on_gpu[1]), [rosen_der(p) for p in points],
                               rtol=1e-12, atol=1e-12)
    total = st.function(sum_sq)
    batch = np.arange(12.0).reshape(4, 3)
    assert float(total(cupy.asarray(batch))) == float((batch**2).sum())  # whole, on any device
    np.testing.assert_allclose(cupy.asnumpy(st.vmap(total)(cupy.asarray(batch)).numpy()),
                               (batch**2).sum(1), rtol=1e-15)
