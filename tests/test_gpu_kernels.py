"""Compiled kernels on the GPU (CuPy): on a CUDA device with CuPy, else on simulated devices
(``simulated_cupy.py``: CuPy's rules, NumPy underneath; the test ids say ``[cuda]`` or
``[simulated]``).

The oracles are the same computations on the CPU (NumPy kernels checked elsewhere against
SymPy and SciPy) and SciPy's Rosenbrock derivatives."""

import numpy as np
import pytest
import sympy
from every_primitive import CASES, IN_AXES, assert_same_results, call
from hypothesis import HealthCheck, given, settings
from test_check_properties import POINTS, X, Y, _expressions
from helpers import rosenbrock as rosen

import symtape as st
from symtape.core import nest
from symtape.core.sympy_ops import tensor_function


@pytest.fixture
def cupy(gpu_cupy):
    return gpu_cupy


optimize = pytest.importorskip("scipy.optimize")
x, y = sympy.symbols("x y", real=True)


def test_cupy_kernel_prints_piecewise_log_and_where(cupy):
    expr = sympy.Piecewise((sympy.log(x), x > 1), (x * y, True)) + sympy.Max(x, y)
    points = np.linspace(-2.0, 3.0, 11)
    kernel = st.compile(expr, [x, y], backend="cupy")
    assert "numpy" not in kernel.source
    with np.errstate(all="ignore"):  # log is evaluated on every entry, then discarded
        on_cpu = st.compile(expr, [x, y])(points, 0.5)
        on_gpu = kernel(cupy.asarray(points), 0.5)
    assert isinstance(on_gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(on_gpu), on_cpu, rtol=1e-12)


def test_grad_and_hessian_vector_product_on_gpu_arrays(cupy):
    point = np.linspace(0.5, 1.5, 1000)
    grad = st.grad(rosen)
    g = grad(cupy.asarray(point))
    assert isinstance(g, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(g), optimize.rosen_der(point), rtol=1e-10)
    v = np.cos(np.arange(1000.0))
    hvp = st.grad(lambda a, b: st.reduce_sum(st.grad(rosen)(a) * b))
    hv = hvp(cupy.asarray(point), cupy.asarray(v))
    np.testing.assert_allclose(cupy.asnumpy(hv), optimize.rosen_hess_prod(point, v), rtol=1e-10)


def test_sparse_hessian_on_the_gpu_is_a_cupyx_matrix(cupy):
    import cupyx.scipy.sparse

    point = np.linspace(0.5, 1.5, 50)
    H = st.hessian(rosen, sparse=True)(cupy.asarray(point))
    assert isinstance(H, cupyx.scipy.sparse.csr_matrix) and H.nnz == 3 * 50 - 2
    np.testing.assert_allclose(cupy.asnumpy(H.toarray()), optimize.rosen_hess(point), rtol=1e-10)


def test_mapped_value_and_gradient_on_the_gpu(cupy):
    vg = st.value_and_grad(lambda a, b: st.sin(a) * st.exp(b) + st.where(a > b, a, b),
                           argnums=(0, 1))
    vg(0.1, 0.2)  # traced at a point on the CPU: the GPU's point is traced there
    vg = st.vmap(vg)

    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 10_000), rng.uniform(-1, 1, 10_000)
    value, (da, db) = vg(cupy.asarray(a), cupy.asarray(b))
    np.testing.assert_allclose(cupy.asnumpy(value), np.sin(a) * np.exp(b) + np.maximum(a, b))
    np.testing.assert_allclose(cupy.asnumpy(da), np.cos(a) * np.exp(b) + (a > b))
    np.testing.assert_allclose(cupy.asnumpy(db), np.sin(a) * np.exp(b) + (a <= b))



def test_a_call_means_the_same_on_every_device(cupy):
    total = st.function(lambda v: st.reduce_sum(v * v))
    total(np.ones(3))  # traced on the CPU at one vector of 3
    batch = np.arange(12.0).reshape(4, 3)
    whole = total(cupy.asarray(batch))  # the sum of all 12 squares, whatever came before
    assert whole.device == "/gpu:0" and float(whole) == float((batch**2).sum())
    on_gpu = st.vmap(total)(cupy.asarray(batch))  # four vectors of 3
    assert on_gpu.device == "/gpu:0" and on_gpu.shape == (4,)
    np.testing.assert_allclose(on_gpu.numpy(), st.vmap(total)(batch).numpy(), rtol=1e-15)
    np.testing.assert_allclose(on_gpu.numpy(), (batch**2).sum(axis=1), rtol=1e-15)

def test_function_with_a_gpu_variable_reads_it_at_call_time(cupy):
    w = st.Variable(cupy.asarray([1.0, 2.0]), name="w")

    @st.function
    def step(lr):
        with st.GradientTape() as tape:
            loss = st.reduce_sum((w - 3.0) ** 2)
        w.assign_sub(lr * tape.gradient(loss, w))
        return loss

    for _ in range(3):
        step(0.25)
    # each step halves the distance to 3: 2 -> 1 -> 0.5 -> 0.25 and 1 -> 0.5 -> 0.25 -> 0.125
    np.testing.assert_allclose(cupy.asnumpy(w._value), [3.0 - 0.25, 3.0 - 0.125])


def test_a_gpu_variable_stays_on_the_gpu_when_assigned_host_data(cupy):
    with st.device("/gpu:0"):
        w = st.Variable([1.0, 2.0], name="w")
    w.assign(np.array([3.0, 4.0]))  # outside the device block
    assert isinstance(w._value, cupy.ndarray) and w.device == "/gpu:0"
    np.testing.assert_array_equal(w.numpy(), [3.0, 4.0])


def test_host_arrays_meeting_gpu_arrays_are_copied_over(cupy):
    with st.device("/gpu:0"):
        a = st.constant([1.0, 2.0])
    b = st.constant([10.0, 20.0])  # on the CPU
    total = a + b
    assert total.device == "/gpu:0"
    np.testing.assert_array_equal(total.numpy(), [11.0, 22.0])


def test_transforms_inside_a_gpu_block_run_on_the_gpu(cupy):
    point = np.linspace(0.5, 1.5, 100)
    with st.device("/gpu:0"):
        g = st.grad(rosen)(point)  # a host array, placed on the current device
    assert isinstance(g, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(g), optimize.rosen_der(point), rtol=1e-10)


def test_dask_arrays_of_cupy_blocks_run_the_cupy_kernel_per_block(cupy):
    da = pytest.importorskip("dask.array")
    f = lambda a, b: st.exp(-a * a) * st.sin(b)  # noqa: E731
    gradient = st.vmap(st.grad(f, argnums=(0, 1)))
    points = np.linspace(-1.0, 1.0, 10_000)
    on_gpu = da.from_array(points, chunks=2_500).map_blocks(cupy.asarray)
    ga, gb = gradient(on_gpu, on_gpu)
    assert isinstance(ga._meta, cupy.ndarray)
    block = ga.blocks[0].compute()
    assert isinstance(block, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(ga.compute()),
                               -2 * points * np.exp(-points**2) * np.sin(points), rtol=1e-12)
    assert float(gb.sum().compute()) == pytest.approx(
        float(np.sum(np.exp(-points**2) * np.cos(points))), rel=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_every_primitive_on_the_gpu_eager_differentiated_and_compiled(cupy, case):
    fun, traced_at, points = CASES[case]

    def eager(device):
        with st.device(device):
            args = [st.constant(p) for p in points[0]]
            with st.GradientTape() as tape:
                tape.watch(args)
                y = fun(*args)
        return y, tape.gradient(y, args)

    on_cpu, on_gpu = eager("/cpu:0"), eager("/gpu:0")
    assert all(t.device == "/gpu:0" for t in nest.flatten(on_gpu)[0])
    assert_same_results(on_gpu, on_cpu, rtol=1e-10, atol=1e-12, same_dtype=False)
    for transform in (st.function(fun), st.value_and_grad(fun, argnums=(0, 1)),
                      st.hessian(fun, argnums=(0, 1))):
        transform(*[cupy.asarray(p) for p in traced_at])  # traced on the GPU
        for point, axes in zip(points, IN_AXES[case]):  # one point, then a batch
            on_gpu = call(transform, [cupy.asarray(p) for p in point], axes)
            leaves = nest.flatten(on_gpu)[0]
            assert all(isinstance(v._value if isinstance(v, st.Tensor) else v, cupy.ndarray)
                       for v in leaves)
            assert_same_results(on_gpu, call(transform, point, axes), rtol=1e-10, atol=1e-12,
                                same_dtype=False)


def _newton_steps(w):
    newton = st.optimizers.Newton()
    for _ in range(4):
        newton.minimize(lambda: st.reduce_sum((w - 3.0) ** 4 + w * w), [w])
    return w.numpy()


def test_newton_on_gpu_variables_takes_the_cpu_steps(cupy):
    on_cpu = _newton_steps(st.Variable([1.0, -2.0], name="w"))
    with st.device("/gpu:0"):
        w = st.Variable([1.0, -2.0], name="w")
    np.testing.assert_allclose(_newton_steps(w), on_cpu, rtol=1e-12)
    assert w.device == "/gpu:0"


def test_a_function_reading_a_gpu_variable_runs_on_the_gpu(cupy):
    with st.device("/gpu:0"):
        w = st.Variable([1.0, 2.0], name="w")
    weighted = st.function(lambda x: st.reduce_sum(w * x * st.constant([3.0, 4.0])))
    for x in (np.array([1.0, 1.0]), np.array([2.0, -1.0])):  # host arguments, copied over
        out = weighted(x)
        assert out.device == "/gpu:0"
        assert float(out.numpy()) == float(np.sum(np.array([1.0, 2.0]) * x * [3.0, 4.0]))


def _decay_fit(t, data, minimize_method=None):
    if minimize_method is None:
        return st.optimize.least_squares(lambda p, t, y: p[0] * st.exp(-p[1] * t) - y,
                                         [1.0, 1.0], args=(t, data)).x
    loss = lambda p, t, y: st.reduce_sum((p[0] * st.exp(-p[1] * t) - y) ** 2)  # noqa: E731
    return st.optimize.minimize(loss, [1.0, 1.0], args=(t, data), method=minimize_method).x


@pytest.mark.parametrize("method", [None, "BFGS", "trust-exact", "Newton-CG", "trust-constr"])
def test_fits_to_data_on_the_gpu_equal_the_cpu_fits(cupy, method):
    t = np.linspace(0.0, 2.0, 60)
    data = 2.0 * np.exp(-0.7 * t) + 0.01 * np.cos(7 * t)
    on_cpu = _decay_fit(t, data, method)
    on_gpu = _decay_fit(cupy.asarray(t), cupy.asarray(data), method)
    assert type(on_gpu) is np.ndarray  # SciPy's result, on the host
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-7)


def test_a_chunked_fit_to_data_in_gpu_blocks_equals_the_in_memory_fit(cupy):
    da = pytest.importorskip("dask.array")
    t = np.linspace(0.0, 2.0, 400)
    data = 2.0 * np.exp(-0.7 * t) + 0.01 * np.cos(7 * t)
    chunked = [da.from_array(a, chunks=100).map_blocks(cupy.asarray) for a in (t, data)]
    np.testing.assert_allclose(_decay_fit(*chunked, "trust-exact"),
                               _decay_fit(t, data, "trust-exact"), rtol=1e-9)


def test_check_grads_in_a_gpu_block(cupy):
    with st.device("/gpu:0"):  # its kernels and probes run on the GPU
        report = st.check_grads(lambda a: st.reduce_sum(st.exp(a) * st.sin(a)),
                                [st.constant([0.1, 0.2])])
    assert report.ok and "all 6 first and second-derivative entries agree" in str(report)


def test_a_numpy_kernel_given_gpu_arrays_says_how_to_compile_for_cupy(cupy):
    kernel = st.compile(sympy.sin(x) * y, [x, y])
    with pytest.raises(TypeError, match="backend='cupy'"):
        kernel(cupy.asarray([1.0, 2.0]), 3.0)
    on_gpu = st.compile(sympy.sin(x) * y, [x, y], backend="cupy")(np.array([1.0, 2.0]), 3.0)
    assert isinstance(on_gpu, cupy.ndarray)  # host arguments of a CuPy kernel are copied over
    np.testing.assert_allclose(cupy.asnumpy(on_gpu), 3.0 * np.sin([1.0, 2.0]), rtol=1e-14)


def test_a_cupy_kernel_runs_per_block_on_dask_arrays_of_gpu_blocks(cupy):
    da = pytest.importorskip("dask.array")
    kernel = st.compile([sympy.sin(x) * y, x + y], [x, y], backend="cupy")
    points = np.linspace(0.0, 1.0, 1000)
    blocks = da.from_array(points, chunks=250).map_blocks(cupy.asarray)
    both = kernel(blocks, blocks)
    assert both.shape == (1000, 2) and isinstance(both._meta, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(both.compute()),
                               np.stack([np.sin(points) * points, 2 * points], axis=1), rtol=1e-14)



def test_closed_forms_through_gpu_constants(cupy):
    with st.device("/gpu:0"):
        weights = st.constant([1.0, 2.0])
        x = st.Variable([0.5, 0.25], name="x")
        with st.GradientTape() as tape:
            y = st.reduce_sum(weights * x**2)
    g = tape.gradient(y, x)
    x0, x1 = sympy.symbols("x[0] x[1]", real=True)
    assert [sympy.simplify(e - f) for e, f in zip(g.expr, [2 * x0, 4 * x1])] == [0, 0]
    np.testing.assert_allclose(g.numpy(), [1.0, 1.0], rtol=1e-15)


def test_calls_inside_a_gpu_block_place_host_arguments_there(cupy):
    with st.device("/gpu:0"):
        H = st.hessian(lambda x: x**3 + st.sin(x), sparse=True)(2.0)  # a Python float
        assert isinstance(H.data, cupy.ndarray)
        assert float(cupy.asnumpy(H.toarray())[0, 0]) == pytest.approx(12.0 - np.sin(2.0))
        total = st.function(lambda v: st.reduce_sum(v * v))
        concrete = total.get_concrete_function(np.zeros(3))
        with pytest.raises(TypeError, match=r"float64\[3\]"):  # the shape, not the device
            concrete(np.zeros(4))
        assert float(concrete(np.array([1.0, 2.0, 2.0])).numpy()) == 9.0


def test_dask_host_blocks_meet_a_trace_made_on_the_gpu(cupy):
    da = pytest.importorskip("dask.array")
    f = lambda x: st.reduce_sum(st.sin(x) * x[::-1])  # noqa: E731
    points = np.random.default_rng(3).normal(size=(12, 3))
    with st.device("/gpu:0"):
        hessian = st.hessian(f)
        hessian(points[0])  # traced on the GPU at a point of 3
    lazy = st.vmap(hessian)(da.from_array(points, chunks=(5, 3)))  # host blocks: traced there
    assert lazy.shape == (12, 3, 3)
    np.testing.assert_allclose(lazy.compute(), np.stack([hessian(p) for p in points]),
                               rtol=1e-13)


def test_a_chunked_fit_in_a_gpu_block_to_host_blocks_equals_the_in_memory_fit(cupy):
    da = pytest.importorskip("dask.array")
    t = np.linspace(0.0, 2.0, 400)
    data = 2.0 * np.exp(-0.7 * t) + 0.01 * np.cos(7 * t)
    chunked = [da.from_array(a, chunks=100) for a in (t, data)]
    with st.device("/gpu:0"):  # the kernels are CuPy's; the blocks are copied over
        on_gpu = _decay_fit(*chunked, "BFGS")
    np.testing.assert_allclose(on_gpu, _decay_fit(t, data, "BFGS"), rtol=1e-7)

def _compiled_on_the_gpu_matches_sympy(cupy, text: str, x0: float, y0: float) -> None:
    expr = st.parse(text)
    value_and_grad = st.value_and_grad(tensor_function(expr, [X, Y]), argnums=(0, 1))
    value_and_grad(cupy.asarray(x0), cupy.asarray(y0))  # traced on the GPU
    xs, ys = np.array([y0, x0, 0.25]), np.array([x0, -0.5, y0])  # a batch, mapped
    value, grads = st.vmap(value_and_grad)(cupy.asarray(xs), cupy.asarray(ys))
    assert all(isinstance(v, cupy.ndarray) for v in (value, *grads))
    exact = [expr, sympy.diff(expr, X), sympy.diff(expr, Y)]
    for ours, oracle in zip([value, *grads], exact):
        for k in range(3):
            subs = {X: sympy.Float(xs[k], 30), Y: sympy.Float(ys[k], 30)}
            assert float(ours[k]) == pytest.approx(float(oracle.evalf(30, subs=subs)),
                                                   rel=1e-9, abs=1e-12), text


def test_a_constant_base_to_a_gpu_power(cupy):
    # its derivative's rule met the base as a 0-d host array, which CuPy refuses
    _compiled_on_the_gpu_matches_sympy(cupy, "(pow(2 + cos(0.5), x)) + x*y", 0.0, 0.0)


_ONE_CUPY = [HealthCheck.function_scoped_fixture]  # the same CuPy serves every example


@settings(max_examples=6, deadline=None, suppress_health_check=_ONE_CUPY)
@given(_expressions(), POINTS, POINTS)
def test_random_compositions_compiled_on_the_gpu_match_sympy(cupy, text, x0, y0):
    _compiled_on_the_gpu_matches_sympy(cupy, text, x0, y0)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=_ONE_CUPY)
@given(_expressions(), POINTS, POINTS)
def test_random_compositions_compiled_on_the_gpu_match_sympy_many(cupy, text, x0, y0):
    _compiled_on_the_gpu_matches_sympy(cupy, text, x0, y0)
