"""The tutorial scripts in examples/ compute what the TensorFlow guides say they do.

Oracles: ``sympy.diff`` on independent expressions, derivatives worked out by hand (as
NumPy formulas), and the numbers the guides print.
"""

import re
import sys

import numpy as np
import pytest
import sympy
from helpers import rosenbrock_of, same
from test_examples import _load

import symtape as st
from symtape.arrays.backends import gpu_count

gradients = _load("gradients_and_watch")
nested = _load("nested_tapes")
persistent = _load("persistent_tapes")
functions = _load("functions")
devices = _load("devices")
loops = _load("tutorial_loops")


def _sym(name: str) -> sympy.Symbol:
    """symtape's symbols are real, named after the source (``x``, ``w[0,1]``)."""
    return sympy.Symbol(name, real=True)


def _values(result) -> list[float]:
    """A transform's result (arrays, nested in tuples) as one flat list of numbers."""
    if isinstance(result, (tuple, list)):
        return [v for item in result for v in _values(item)]
    return np.ravel(result).tolist()


X = _sym("x")


# ---------------------------------------------------------------- gradients_and_watch


def test_gradient_of_x_squared_at_three():
    g = gradients.scalar_gradient()
    assert g.numpy() == 6.0
    assert same(g.expr, sympy.diff(X**2, X))


def test_dense_layer_gradients_match_the_hand_derivation():
    w, b, x, loss, (dl_dw, dl_db), as_dict = gradients.dense_layer()
    x_value, w_value, b_value = x.numpy(), w.numpy(), b.numpy()
    y = x_value @ w_value + b_value  # loss = mean(y**2) over 2 entries, so dloss/dy = y
    assert loss.numpy() == pytest.approx(np.mean(y**2), rel=1e-14)
    np.testing.assert_allclose(dl_db.numpy(), y[0], rtol=1e-14)
    np.testing.assert_allclose(dl_dw.numpy(), x_value.T @ y, rtol=1e-14)
    np.testing.assert_array_equal(as_dict["w"].numpy(), dl_dw.numpy())
    np.testing.assert_array_equal(as_dict["b"].numpy(), dl_db.numpy())
    # closed forms: an independent loss, differentiated by sympy
    W = [[_sym(f"w[{i},{j}]") for j in range(2)] for i in range(3)]
    B = [_sym(f"b[{j}]") for j in range(2)]
    ys = [B[j] + sum((i + 1) * W[i][j] for i in range(3)) for j in range(2)]
    oracle = (ys[0] ** 2 + ys[1] ** 2) / 2
    assert same(loss.expr, oracle)
    for j in range(2):
        assert same(dl_db.expr[j], sympy.diff(oracle, B[j]))
        for i in range(3):
            assert same(dl_dw.expr[i, j], sympy.diff(oracle, W[i][j]))


def test_a_constant_gets_a_gradient_only_when_watched():
    watched, unwatched = gradients.watched_constant()
    assert watched.numpy() == 6.0 and same(watched.expr, 2 * X)
    assert unwatched is None


def test_only_the_trainable_variable_is_watched():
    grads, names = gradients.what_is_watched()
    assert grads[0].numpy() == 6.0 and same(grads[0].expr, 2 * _sym("x0"))
    assert grads[1:] == [None, None, None]
    assert names == ["x0"]


def test_watch_accessed_variables_false_watches_only_what_is_asked():
    grads = gradients.watch_only_what_you_ask()
    assert grads["b"] is None
    assert grads["a"].numpy() == pytest.approx(np.cos(2.0), rel=1e-15)
    assert same(grads["a"].expr, sympy.cos(_sym("a")))


def test_unconnected_sources_give_none_or_zeros():
    default, zero = gradients.unconnected()
    assert default is None
    assert zero.shape == (2,) and np.array_equal(zero.numpy(), [0.0, 0.0])


def test_gradient_with_respect_to_an_intermediate_result():
    g = gradients.intermediate_result()
    assert g.numpy() == 18.0  # dz/dy = 2y = 2 * 9
    assert same(g.expr, 2 * X**2)


def test_several_targets_are_summed():
    g = gradients.several_targets()
    assert g.numpy() == pytest.approx(3.75, rel=1e-15)
    assert same(g.expr, sympy.diff(X**2 + 1 / X, X))


def test_gradients_script_prints_values_and_closed_forms(capsys):
    gradients.main(["--small"])
    out = capsys.readouterr().out
    assert "dy/dx of x**2 at x = 3: 6.0    closed form: 2*x" in out
    assert "non-trainable x1: None" in out and "watched variables: ['x0']" in out
    assert "unconnected, 'zero': [0. 0.]" in out
    assert "3.75    closed form: 2*x - 1/x**2" in out


# ---------------------------------------------------------------- nested_tapes


def test_second_derivative_of_x_cubed():
    dy_dx, d2y_dx2 = nested.second_derivative()
    assert dy_dx.numpy() == 3.0 and d2y_dx2.numpy() == 6.0
    assert same(dy_dx.expr, sympy.diff(X**3, X))
    assert same(d2y_dx2.expr, sympy.diff(X**3, X, 2))


def test_tanh_derivatives_on_a_grid():
    grid, y, dy, d2y = nested.tanh_derivatives(points=13)
    t = np.tanh(grid)
    np.testing.assert_allclose(dy.numpy(), 1 - t**2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d2y.numpy(), -2 * t * (1 - t**2), rtol=1e-12, atol=1e-15)
    x0 = _sym("x[0]")
    assert same(d2y.expr[0], sympy.diff(sympy.tanh(x0), x0, 2))


def test_input_gradient_regularization_matches_the_hand_derivation():
    reg = nested.input_gradient_regularization(batch=3, inputs=2, units=4)
    x, w, b = reg["x"].numpy(), reg["w"].numpy(), reg["b"].numpy()
    mask = (x @ w + b > 0).astype(float)  # relu'
    dout_dx = mask @ w.T  # d sum(relu(x w + b)) / dx
    norm = np.sqrt(np.sum(dout_dx**2))
    np.testing.assert_allclose(reg["dout_dx"].numpy(), dout_dx, rtol=1e-14)
    assert reg["norm"].numpy() == pytest.approx(norm, rel=1e-14)
    # d norm / d w[k, j] = sum_i dout_dx[i, k] mask[i, j] / norm; relu'' = 0, so d/db = 0
    np.testing.assert_allclose(reg["dnorm_dw"].numpy(), dout_dx.T @ mask / norm, rtol=1e-12)
    np.testing.assert_array_equal(reg["dnorm_db"].numpy(), np.zeros(4))


def test_jacobian_of_a_sigmoid_with_respect_to_a_scalar_shift():
    grid, j = nested.jacobian_of_a_scalar_source()
    s = 1 / (1 + np.exp(-grid))
    assert j.shape == grid.shape
    np.testing.assert_allclose(j.numpy(), s * (1 - s), rtol=1e-12)
    delta = _sym("delta")
    assert same(j.expr[2], sympy.diff(1 / (1 + sympy.exp(-delta)), delta))


def test_jacobian_of_a_layer_with_respect_to_its_weights():
    x, w, j = nested.jacobian_of_a_tensor_source()
    x, w = x.numpy(), w.numpy()
    y = np.tanh(x @ w)
    # d y[i, k] / d w[a, c] = (1 - y[i, k]**2) x[i, a] [k == c]
    expected = np.einsum("ik,ia,kc->ikac", 1 - y**2, x, np.eye(2))
    assert j.shape == (4, 2, 3, 2)
    np.testing.assert_allclose(j.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_batch_jacobian_is_the_diagonal_of_the_full_jacobian():
    full, per_example = nested.batch_jacobian_example()
    assert full.shape == (4, 2, 4, 3) and per_example.shape == (4, 2, 3)
    for i in range(4):
        np.testing.assert_array_equal(per_example.numpy()[i], full.numpy()[i, :, i, :])
        for other in set(range(4)) - {i}:
            assert not full.numpy()[i, :, other, :].any()


def test_rosenbrock_hessian_two_ways():
    hessian, by_nesting = nested.rosenbrock_hessians()
    np.testing.assert_array_equal(hessian.numpy(), [[402.0, -400.0], [-400.0, 200.0]])
    np.testing.assert_array_equal(by_nesting.numpy(), hessian.numpy())
    v0, v1 = _sym("v[0]"), _sym("v[1]")
    oracle = sympy.hessian(rosenbrock_of([v0, v1]), [v0, v1])
    assert same(hessian.expr, oracle.tolist())
    assert same(by_nesting.expr, oracle.tolist())


def test_nested_tapes_script_prints_the_derivatives(capsys):
    nested.main(["--small"])
    out = capsys.readouterr().out
    assert "dy/dx = 3.0 (3*x**2), d2y/dx2 = 6.0 (6*x)" in out
    assert "tanh on 13 points" in out and "Heaviside" in out
    assert "[[402.0, -400.0], [-400.0, 200.0]]" in out and out.count("True") == 2


# ---------------------------------------------------------------- persistent_tapes


def test_a_persistent_tape_answers_twice():
    dz_dx, dy_dx = persistent.persistent_tape()
    assert dz_dx.numpy() == 108.0 and dy_dx.numpy() == 6.0
    assert same(dz_dx.expr, sympy.diff(X**4, X)) and same(dy_dx.expr, 2 * X)
    dz_dx, dy_dx = persistent.persistent_tape_on_a_vector()
    np.testing.assert_array_equal(dz_dx.numpy(), [4.0, 108.0])
    np.testing.assert_array_equal(dy_dx.numpy(), [2.0, 6.0])


def test_reusing_a_non_persistent_tape_raises_with_the_fix():
    first, message = persistent.reused_tape_error()
    assert first.numpy() == 108.0
    assert "non-persistent" in message and "persistent=True" in message


def test_stop_recording_leaves_work_off_the_tape():
    total, z_only = persistent.stop_recording()
    assert total.numpy() == 4.0 and same(total.expr, 2 * X)
    assert z_only is None


def test_reset_forgets_what_came_before():
    with_reset, without = persistent.reset()
    assert with_reset.numpy() == 5.0 and without.numpy() == 17.0
    assert same(without.expr, sympy.diff(X**3 + 5 * X, X))


def test_persistent_script_prints_the_error(capsys):
    persistent.main(["--small"])
    out = capsys.readouterr().out
    assert "dz/dx: 108.0    closed form: 4*x**3" in out
    assert "second call raises RuntimeError: GradientTape.gradient: a non-persistent" in out
    assert "stop_recording: dz/dx: None" in out


# ---------------------------------------------------------------- functions


def test_the_guides_first_function():
    f, at_0, at_1 = functions.gradient_and_value()
    assert [float(t.numpy()) for t in at_0] == [-2.0, 1.0]
    assert [float(t.numpy()) for t in at_1] == [0.0, 0.0]
    poly = X**2 - 2 * X + 1
    dy, y = f.expr
    assert same(dy, sympy.diff(poly, X)) and same(y, poly)
    assert len(f._traces) == 1  # both calls share one signature


def test_new_shapes_and_dtypes_trace_again_and_a_vmap_reuses_the_point_trace():
    traces, results, batched = functions.tracing_counts()
    assert traces == [((2,), "float64"), ((3,), "float64"), ((2,), "float32")]
    assert [float(r.numpy()) for r in results] == [5.0, 25.0, 14.0, 5.0]
    assert results[3].dtype == st.float32
    np.testing.assert_array_equal(batched.numpy(), [14.0, 77.0])


def test_a_concrete_function_has_closed_forms_and_a_kernel():
    concrete, at_3 = functions.concrete_function()
    poly = X**2 - 2 * X + 1
    assert same(concrete.expr[0], sympy.diff(poly, X)) and same(concrete.expr[1], poly)
    assert [float(t.numpy()) for t in at_3] == [4.0, 4.0]
    assert concrete.source.startswith("def kernel(")


def test_python_if_on_a_tensor_names_st_where():
    message, where_abs, values = functions.python_if_on_a_tensor()
    assert "Python bool" in message and "st.where" in message
    assert [float(v.numpy()) for v in values] == [2.0, 3.0]
    assert len(where_abs._traces) == 1


def test_the_jax_style_transforms_against_sympy():
    x, y, r, theta = _sym("x"), _sym("y"), _sym("r"), _sym("theta")
    f = x**2 * sympy.sin(y)
    point = {x: 2.0, y: 0.5}
    results = functions.jax_style_transforms(2.0, 0.5)

    def check(name, oracles):
        values, exprs = results[name]
        assert same(exprs, oracles)
        for value, oracle in zip(_values(values), oracles, strict=True):
            assert value == pytest.approx(float(oracle.subs(point | {r: 2.0, theta: 0.5})),
                                          rel=1e-14)

    check("grad", [sympy.diff(f, x)])
    check("grad argnums=1", [sympy.diff(f, y)])
    check("grad argnums=(0, 1)", [sympy.diff(f, x), sympy.diff(f, y)])
    check("value_and_grad", [f, sympy.diff(f, x), sympy.diff(f, y)])
    polar = sympy.Matrix([r * sympy.cos(theta), r * sympy.sin(theta)])
    # argnums=(0, 1): the columns d/dr, then d/dtheta
    check("jacobian of polar", list(polar.diff(r)) + list(polar.diff(theta)))
    check("hessian", list(sympy.hessian(f, [x, y])))


def test_value_and_grad_over_a_batch_of_points():
    xs, ys, value, (df_dx, df_dy) = functions.batched_evaluation(points=1000)
    assert value.shape == df_dx.shape == df_dy.shape == (1000,)
    np.testing.assert_allclose(value, xs**2 * np.sin(ys), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(df_dx, 2 * xs * np.sin(ys), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(df_dy, xs**2 * np.cos(ys), rtol=1e-13, atol=1e-15)


def test_functions_script_prints_traces_error_and_kernel(capsys):
    functions.main(["--small"])
    out = capsys.readouterr().out
    assert "(dy_dx, y) at 0: (-2, 1); at 1: (0, 0)" in out
    assert "4 calls, 3 traces" in out and "[14. 77.]" in out
    assert "TypeError: a traced Tensor was used as a Python bool" in out
    assert "value_and_grad at 1000 points" in out and out.count("def kernel(") == 2


# ---------------------------------------------------------------- devices


def _derivative_oracle(points):
    derivative = sympy.diff(sympy.exp(X) * sympy.sin(X) ** 2, X)
    return sympy.lambdify(X, derivative, "numpy")(points)


def test_devices_are_listed_and_cpu_values_say_so():
    cpus, gpus = devices.list_devices()
    assert [d.name for d in cpus] == ["/physical_device:CPU:0"]
    assert len(gpus) == gpu_count()
    assert devices.placed_on_the_cpu() == ("/cpu:0", "/cpu:0", "/cpu:0")


def test_the_compiled_gradient_on_the_cpu():
    points = np.linspace(-1.0, 1.0, 11)
    g = devices.gradient_on("/cpu:0", points)
    assert g.device == "/cpu:0"
    np.testing.assert_allclose(g.numpy(), _derivative_oracle(points), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(devices.expected_gradient(points), _derivative_oracle(points),
                               rtol=1e-13, atol=1e-15)


def test_without_cupy_the_gpu_is_a_device_error_and_the_script_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    message = devices.gpu_error_message()
    assert "CuPy" in message and "pip install" in message
    devices.main(["--small"])
    out = capsys.readouterr().out
    assert "GPUs: []" in out and "raises st.DeviceError: the GPU needs CuPy" in out
    assert "closed form: exp(x)*sin(x)**2 + 2*exp(x)*sin(x)*cos(x)" in out


def test_the_compiled_gradient_on_the_gpu_matches_the_cpu(gpu_cupy, capsys):
    # on a CUDA device, or simulated ones (tests/simulated_cupy.py)
    points = np.linspace(-1.0, 1.0, 11)
    g = devices.gradient_on("/gpu:0", points)
    assert g.device == "/gpu:0" and isinstance(g._value, gpu_cupy.ndarray)
    np.testing.assert_allclose(g.numpy(), _derivative_oracle(points), rtol=1e-12, atol=1e-15)
    assert devices.gpu_error_message() is None
    devices.main(["--small"])
    out = capsys.readouterr().out
    assert "GPUs: ['/physical_device:GPU:0'" in out
    difference = re.search(r"the same on /gpu:0: max \|GPU - CPU\| = (\S+)", out)
    assert difference and float(difference.group(1)) < 1e-12, out


# ---------------------------------------------------------------- tutorial_loops


def test_tutorial_loops_small_runs_fewer_steps(capsys):
    assert loops.sgd_on_a_parabola(steps=100) == pytest.approx(1 - 0.98**100, abs=1e-12)
    loops.main(["--small"])
    out = capsys.readouterr().out
    assert out.count("\n") == 5 and f"{round(1 - 0.98**100, 6)}" in out
