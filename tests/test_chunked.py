"""Compiled callables on Dask arrays (one process): lazy, block by block, the right values."""

from __future__ import annotations

import collections
import pickle
import subprocess
import sys

import numpy as np
import pytest
import sympy
from helpers import rosenbrock as rosen

import symtape as st

da = pytest.importorskip("dask.array", reason='the dask extra: pip install "symtape[dask]"')
cloudpickle = pytest.importorskip("cloudpickle")

RNG = np.random.default_rng(0)


def _f(x, y, z):
    return st.exp(-(x**2) - y**2) * st.sin(z)


def test_value_and_grad_on_dask_arrays_is_lazy_blockwise_and_exact():
    xs, ys, zs = (RNG.normal(size=10_000) for _ in range(3))
    lazy = st.vmap(st.value_and_grad(_f, argnums=(0, 1, 2)))(
        *[da.from_array(a, chunks=2_500) for a in (xs, ys, zs)])
    value, (gx, gy, gz) = lazy
    for array in (value, gx, gy, gz):
        assert isinstance(array, da.Array) and array.chunks == ((2_500,) * 4,)
        assert array.dtype == np.float64
    assert len(value.dask) > 0 and value.npartitions == 4  # nothing computed yet
    e = np.exp(-xs**2 - ys**2)
    np.testing.assert_allclose(value.compute(), e * np.sin(zs), rtol=1e-14)
    np.testing.assert_allclose(gx.compute(), -2 * xs * e * np.sin(zs), rtol=1e-13)
    np.testing.assert_allclose(gz.compute(), e * np.cos(zs), rtol=1e-13)


def test_a_reduction_of_the_result_is_a_dask_tree_reduction():
    xs = da.from_array(RNG.normal(size=4_000), chunks=500)
    gx = st.vmap(st.grad(_f), in_axes=(0, None, None))(xs, 0.3, 1.1)
    total = gx.sum(split_every=2)
    layers = {name.split("-")[0] for name in total.dask.layers}
    assert any("sum" in layer for layer in layers)  # Dask's own reduction, chunk by chunk
    x = xs.compute()
    assert float(total.compute()) == pytest.approx(
        float(np.sum(-2 * x * np.exp(-x**2 - 0.09) * np.sin(1.1))), rel=1e-12)


def test_vmap_maps_over_the_row_chunks_with_rows_as_points():
    w = np.array([0.5, -1.0, 2.0])
    row_gradient = st.grad(lambda w, row: st.log1p(st.exp(-st.reduce_sum(w * row))))
    rows = RNG.normal(size=(1_000, 3))
    lazy = st.vmap(row_gradient, in_axes=(None, 0))(w, da.from_array(rows, chunks=(300, 3)))
    assert lazy.shape == (1_000, 3) and lazy.chunks == ((300, 300, 300, 100), (3,))
    s = rows @ w
    np.testing.assert_allclose(lazy.compute(), (-1 / (1 + np.exp(s)))[:, None] * rows,
                               rtol=1e-13)


def test_hessians_and_jacobians_add_the_point_axes_to_the_blocks():
    f = lambda x: st.reduce_sum(st.sin(x) * x[::-1])  # noqa: E731
    points = RNG.normal(size=(12, 3))
    hessian = st.hessian(f)
    lazy = st.vmap(hessian)(da.from_array(points, chunks=(5, 3)))
    assert lazy.shape == (12, 3, 3) and lazy.chunks[0] == (5, 5, 2)
    np.testing.assert_allclose(lazy.compute(), np.stack([hessian(p) for p in points]),
                               rtol=1e-13)
    jac = st.jacobian(lambda x: st.stack([x[0] * x[1], st.exp(x[1])]))
    lazy = st.vmap(jac)(da.from_array(points[:, :2], chunks=(4, 2)))
    assert lazy.shape == (12, 2, 2)
    np.testing.assert_allclose(lazy.compute()[:, 1, 1], np.exp(points[:, 1]), rtol=1e-14)


def test_a_plain_call_on_dask_arrays_is_the_call_on_the_computed_arrays():
    square = st.function(lambda x: x * x + 1.0)
    lazy = square(da.arange(6.0, chunks=4).reshape(2, 3))
    assert lazy.shape == (2, 3)
    np.testing.assert_array_equal(lazy.compute(), np.arange(6.0).reshape(2, 3) ** 2 + 1)
    x = RNG.normal(size=(4, 3))
    g = st.grad(rosen)
    g(np.ones(3))  # an earlier call at another shape changes nothing
    lazy = g(da.from_array(x, chunks=(2, 3)))
    assert isinstance(lazy, da.Array) and lazy.shape == (4, 3) and lazy.npartitions == 1
    u, v = x[:-1], x[1:]  # by hand: d/du and d/dv of the row-wise terms, added by position
    expected = np.zeros_like(x)
    expected[:-1] += -400 * u * (v - u**2) - 2 * (1 - u)
    expected[1:] += 200 * (v - u**2)
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-13)
    np.testing.assert_allclose(st.grad(rosen)(x), expected, rtol=1e-13)


def test_variables_are_read_when_the_call_is_made():
    v = st.Variable(2.0, name="v")
    scaled = st.function(lambda x: v * x)
    lazy = scaled(da.arange(4.0, chunks=2))
    v.assign(5.0)  # after the call: the graph already holds 2.0
    np.testing.assert_array_equal(lazy.compute(), [0.0, 2.0, 4.0, 6.0])


def test_functions_that_assign_variables_refuse_dask_arrays():
    v = st.Variable(0.0, name="v")

    @st.function
    def accumulate(x):
        v.assign_add(st.reduce_sum(x))
        return v

    with pytest.raises(ValueError, match="assigns Variables cannot be called with dask"):
        accumulate(da.ones(4, chunks=2))


def test_compile_kernels_run_block_by_block_keeping_float32():
    x, y = sympy.symbols("x y", real=True)
    kernel = st.compile((sympy.sin(x) * y, [x * y, x + y]), [x, y])
    value, pair = kernel(da.arange(4.0, chunks=2), 2.0)
    np.testing.assert_allclose(value.compute(), np.sin(np.arange(4.0)) * 2)
    np.testing.assert_array_equal(pair.compute(), [[0, 2], [2, 3], [4, 4], [6, 5]])
    single = st.compile(sympy.sin(x) * y, [x, y])
    lazy = single(da.ones(4, chunks=2, dtype=np.float32), np.float32(2))
    assert lazy.dtype == np.float32 and lazy.compute().dtype == np.float32


def test_kernels_pickle_as_source_and_compile_once_per_process(monkeypatch):
    from symtape.chunked import kernel_cache_info

    # as a fresh worker has
    monkeypatch.setattr(sys.modules["symtape.kernels.compile"], "UNPICKLED_KERNELS",
                        collections.OrderedDict())

    program = st.grad(_f).get_concrete_function(0.1, 0.2, 0.3)._program.portable()
    payload = cloudpickle.dumps(program)
    before = kernel_cache_info().misses
    copies = [pickle.loads(payload) for _ in range(3)]
    results = [c([0.1, 0.2, 0.3], [])[0] for c in copies]
    assert kernel_cache_info().misses == before + 1  # three unpickled copies, one build
    assert float(results[0]) == pytest.approx(-0.2 * np.exp(-0.05) * np.sin(0.3))
    x, y = sympy.symbols("x y", real=True)
    kernel = pickle.loads(pickle.dumps(st.compile(sympy.sin(x) * y, [x, y])))  # plain pickle
    assert float(kernel(0.5, 2.0)) == pytest.approx(2 * np.sin(0.5))


def test_chunk_sum_adds_a_row_sum_and_counts_terms_without_data_once():
    from symtape.chunked import chunk_sum

    data = RNG.normal(size=(103, 2))
    loss = st.value_and_grad(
        lambda w, d: st.reduce_sum((st.matmul(d, w[:, None])[:, 0] - 1.0) ** 2) + st.reduce_sum(w * w))
    w = np.array([0.3, -0.7])
    value, gradient = chunk_sum(loss, (w, da.from_array(data, chunks=(20, 2))))
    expected_value, expected_gradient = loss(w, data)
    assert float(value) == pytest.approx(float(expected_value), rel=1e-13)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-13)


@pytest.mark.parametrize("method", ["trust-exact", "Newton-CG", "BFGS", "trust-constr"])
def test_minimize_over_chunked_data_matches_the_in_memory_fit(method):
    X = RNG.normal(size=(600, 3))
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3 + RNG.normal(size=600) > 0).astype(float)

    def loss(w, X, y):  # logistic regression with an L2 term: a row sum plus a regularizer
        s = st.matmul(X, w[:3, None])[:, 0] + w[3]
        return st.reduce_sum(st.softplus(s) - y * s) + 0.5 * st.reduce_sum(w * w)

    in_memory = st.optimize.minimize(loss, np.zeros(4), args=(X, y), method=method)
    chunked = st.optimize.minimize(loss, np.zeros(4), method=method,
                                   args=(da.from_array(X, chunks=(150, 3)),
                                         da.from_array(y, chunks=150)))
    # sums over chunks round differently from one sum, so an iterative method may take a
    # different path (trust-constr: 24 iterations in one run, 25 in another): compare what
    # does not depend on the path. The L2 term makes the loss 1-strongly convex, so each
    # point lies within its gradient's norm of the minimizer; the objective is flat there.
    assert chunked.success and in_memory.success
    gradient = st.grad(loss)
    bound = sum(np.linalg.norm(gradient(r.x, X, y)) for r in (chunked, in_memory))
    assert np.linalg.norm(chunked.x - in_memory.x) <= bound < 1e-4
    assert chunked.fun == pytest.approx(in_memory.fun, rel=1e-12)


def test_least_squares_says_to_minimize_the_sum_of_squares_instead():
    with pytest.raises(TypeError, match="minimize the sum of squared residuals"):
        st.optimize.least_squares(lambda p, t: p[0] * t - 1.0, [1.0],
                                  args=(da.ones(10, chunks=5),))


def test_import_symtape_does_not_import_dask_and_a_missing_dask_says_how_to_install():
    code = ("import sys, symtape, numpy as np\n"
            "symtape.grad(lambda x: symtape.reduce_sum(x * x))(np.ones(3))\n"
            "assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules), 'dask'\n"
            "sys.modules['dask'] = sys.modules['dask.array'] = None\n"
            "from symtape.chunked import require_dask\n"
            "try:\n    require_dask()\nexcept ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "pip install 'symtape[dask]'" in result.stdout


def test_a_sparse_hessian_on_dask_arrays_says_what_to_use_instead():
    hessian = st.hessian(lambda x: st.reduce_sum(x**3), sparse=True)
    with pytest.raises(TypeError, match=r"map the dense st.hessian\(f\) with st.vmap"):
        hessian(da.ones(4, chunks=2))
