"""backend='numba' sparse Hessians: the values of every colour's Hessian-vector product in one
jitted function of loops (symtape.kernels.numba_backend.fused_hessian), against SciPy's
``rosen_hess``, Hessians SymPy derives from hand-written formulas, and the NumPy backend; the
loop programs' disk cache across processes."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy

import symtape as st

numba = pytest.importorskip("numba")
optimize = pytest.importorskip("scipy.optimize")


def rosen(v):
    return st.reduce_sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)


def fused_hessian(fun, *point, **options):
    """``st.hessian(fun, sparse=True, backend='numba')`` at ``point``, checked to have taken
    the fused path (not the batched product kernel)."""
    H = st.hessian(fun, sparse=True, backend="numba", **options)
    matrix = H(*point)
    assert H._last._fused is not None, "the fused Hessian kernel was not built"
    return H, matrix


def sympy_hessian(formula, n: int, point):
    """The dense Hessian of ``formula(symbols)`` (SymPy expressions), at ``point``."""
    xs = sympy.symbols(f"x0:{n}")
    hessian = sympy.hessian(formula(xs), xs)
    return np.array(sympy.lambdify([xs], hessian, "numpy")(list(point)), dtype=float)


def same_as_numpy_backend(fun, *point, rtol=1e-13, **options):
    _, fused = fused_hessian(fun, *point, **options)
    reference = st.hessian(fun, sparse=True, backend="numpy", **options)(*point)
    np.testing.assert_array_equal(fused.indptr, reference.indptr)
    np.testing.assert_array_equal(fused.indices, reference.indices)
    assert fused.dtype == reference.dtype
    np.testing.assert_allclose(fused.data, reference.data, rtol=rtol, atol=rtol)
    return fused


@pytest.mark.parametrize("n", [2, 3, 50, 1000])
def test_rosenbrock_matches_scipy(n):
    point = np.linspace(0.5, 1.5, n)
    _, matrix = fused_hessian(rosen, point)
    assert matrix.nnz == 3 * n - 2
    np.testing.assert_allclose(matrix.toarray(), optimize.rosen_hess(point), rtol=1e-13)
    same_as_numpy_backend(rosen, point)


def test_rosenbrock_float32_stays_float32():
    point = np.linspace(0.5, 1.5, 40).astype(np.float32)
    _, matrix = fused_hessian(rosen, point)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.toarray(), optimize.rosen_hess(point.astype(float)),
                               rtol=2e-6, atol=1e-3)
    same_as_numpy_backend(rosen, point, rtol=1e-6)


def test_banded_pattern():
    """Pentadiagonal: x[i] meets x[i+1] and x[i+2]."""
    def f(x):
        return (st.reduce_sum(st.sin(x[2:] * x[:-2])) + st.reduce_sum(x[1:] ** 2 * x[:-1])
                + st.reduce_sum(st.exp(0.1 * x)))

    def formula(xs):
        n = len(xs)
        return (sum(sympy.sin(xs[i + 2] * xs[i]) for i in range(n - 2))
                + sum(xs[i + 1] ** 2 * xs[i] for i in range(n - 1))
                + sum(sympy.exp(xs[i] / 10) for i in range(n)))

    point = np.linspace(-1.0, 2.0, 9)
    _, matrix = fused_hessian(f, point)
    assert matrix.nnz == 9 + 2 * 8 + 2 * 7
    np.testing.assert_allclose(matrix.toarray(), sympy_hessian(formula, 9, point), rtol=1e-13,
                               atol=1e-13)
    same_as_numpy_backend(f, point)


def test_arrow_pattern():
    """x[0] meets every entry, the others only themselves: every column its own colour."""
    def f(x):
        return x[0] * st.reduce_sum(x[1:] ** 2) + st.reduce_sum(st.exp(x) * x)

    def formula(xs):
        return xs[0] * sum(x ** 2 for x in xs[1:]) + sum(sympy.exp(x) * x for x in xs)

    point = np.array([0.5, -1.0, 2.0, 0.25, -0.75])
    _, matrix = fused_hessian(f, point)
    assert matrix.nnz == 5 + 2 * 4
    np.testing.assert_allclose(matrix.toarray(), sympy_hessian(formula, 5, point), rtol=1e-13)
    same_as_numpy_backend(f, point)


def test_block_pattern_through_reshape_reversed_slices_and_row_sums():
    """Blocks of 3: a (4, 3) reshape, each row against itself reversed, summed by rows."""
    def f(x):
        m = st.reshape(x, (4, 3))
        return st.reduce_sum(st.exp(0.5 * st.reduce_sum(m * m[:, ::-1], axis=1)))

    def formula(xs):
        rows = [xs[3 * r:3 * r + 3] for r in range(4)]
        return sum(sympy.exp(sympy.Rational(1, 2) * sum(a * b for a, b in zip(row, row[::-1])))
                   for row in rows)

    point = np.linspace(-0.6, 0.6, 12)
    _, matrix = fused_hessian(f, point)
    dense = sympy_hessian(formula, 12, point)
    assert matrix.nnz == 4 * 9
    np.testing.assert_allclose(matrix.toarray(), dense, rtol=1e-13, atol=1e-14)
    same_as_numpy_backend(f, point)


def test_repeated_integer_indices_and_a_matrix_argument():
    """An integer-array index (read from a table, its repeats added in the scatter) on a
    (2, 3) argument."""
    picks = np.array([0, 2, 2, 5])

    def f(m):
        x = st.reshape(m, (6,))
        return st.reduce_sum(x[picks] * x[1:5]) + st.reduce_sum(st.transpose(m) ** 3)

    def formula(xs):
        return sum(xs[p] * xs[i + 1] for i, p in enumerate(picks.tolist())) + sum(
            x ** 3 for x in xs)

    point = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])
    _, matrix = fused_hessian(f, point)
    np.testing.assert_allclose(matrix.toarray(), sympy_hessian(formula, 6, point.ravel()),
                               rtol=1e-13)
    same_as_numpy_backend(f, point)


def test_two_arguments_data_constants_and_variables_read_at_call_time():
    """Two differentiated arguments (two products gathered), a data array (a constant of the
    trace) and a Variable (read when called)."""
    data = np.array([1.0, -2.0, 0.5, 3.0])
    scale = st.Variable(2.0, name="scale")

    def f(x, y):
        return scale * st.reduce_sum(data * x * y ** 2) + st.reduce_sum(x[1:] * x[:-1] * y[0])

    def formula(xs, s):
        x, y = xs[:4], xs[4:]
        return (s * sum(d * a * b ** 2 for d, a, b in zip(data.tolist(), x, y))
                + sum(x[i + 1] * x[i] * y[0] for i in range(3)))

    x, y = np.array([0.5, -1.0, 2.0, 1.5]), np.array([1.0, 0.5, -0.25, 2.0])
    H, matrix = fused_hessian(f, x, y, argnums=(0, 1))
    np.testing.assert_allclose(
        matrix.toarray(), sympy_hessian(lambda xs: formula(xs, 2), 8, np.r_[x, y]), rtol=1e-13)
    scale.assign(-3.0)
    np.testing.assert_allclose(
        H(x, y).toarray(), sympy_hessian(lambda xs: formula(xs, -3), 8, np.r_[x, y]),
        rtol=1e-13)
    same_as_numpy_backend(f, x, y, argnums=(0, 1))


def test_a_scalar_argument_beside_a_vector_and_data_passed_as_an_argument():
    """argnums (0, 1): a vector and a scalar (its seed one entry per colour); the data
    argument is not differentiated, and a new value of it is read by the next call."""
    def f(x, c, data):
        return c * st.reduce_sum(data * x[1:] * x[:-1] ** 2) + c ** 3 * x[0]

    def formula(xs, data):
        x, c = xs[:5], xs[5]
        return c * sum(d * x[i + 1] * x[i] ** 2 for i, d in enumerate(data)) + c ** 3 * x[0]

    x, data = np.linspace(0.1, 1.0, 5), np.array([1.0, -2.0, 0.5, 3.0])
    H, matrix = fused_hessian(f, x, 2.0, data, argnums=(0, 1))
    np.testing.assert_allclose(
        matrix.toarray(), sympy_hessian(lambda xs: formula(xs, data.tolist()), 6, [*x, 2.0]),
        rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(
        H(x, 2.0, 2 * data).toarray(),
        sympy_hessian(lambda xs: formula(xs, (2 * data).tolist()), 6, [*x, 2.0]),
        rtol=1e-13, atol=1e-14)
    same_as_numpy_backend(f, x, 2.0, data, argnums=(0, 1))


@pytest.mark.parametrize("first", ["vector", "scalar"])
def test_an_argument_entering_linearly_leaves_its_seed_unread(first):
    """``+ y``: y's Hessian rows are zero and its products never read its seed (the last
    argument, or one in the middle, of the product program)."""
    def chain(x):
        return st.reduce_sum(x[1:] * x[:-1] ** 2)

    fun = (lambda x, y: chain(x) + y) if first == "vector" else (lambda y, x: chain(x) + y)
    x = np.linspace(0.1, 1.0, 4)
    point = (x, 2.0) if first == "vector" else (2.0, x)
    _, matrix = fused_hessian(fun, *point, argnums=(0, 1))
    dense = matrix.toarray()
    inner = dense[:4, :4] if first == "vector" else dense[1:, 1:]
    expected = np.diag(2 * np.r_[x[1:], 0.0]) + np.diag(2 * x[:-1], 1) + np.diag(2 * x[:-1], -1)
    np.testing.assert_allclose(inner, expected, rtol=1e-14)
    assert np.count_nonzero(dense) == np.count_nonzero(expected)
    same_as_numpy_backend(fun, *point, argnums=(0, 1))


def test_a_function_without_a_loop_form_keeps_the_batched_products():
    """A matrix product has no loop form: the product kernel runs (same values)."""
    a = np.array([[2.0, 1.0], [1.0, 3.0]])

    def f(x):
        return st.reduce_sum(st.exp(st.matmul(a, x)))

    H = st.hessian(f, sparse=True, backend="numba")
    point = np.array([0.1, -0.2])
    matrix = H(point)
    assert H._last._fused is None
    e = np.exp(a @ point)
    np.testing.assert_allclose(matrix.toarray(), a.T @ np.diag(e) @ a, rtol=1e-13)


SCRIPT = textwrap.dedent("""
    import numpy as np
    import symtape as st

    def rosen(v):
        return st.reduce_sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)

    H = st.hessian(rosen, sparse=True, backend="numba")
    matrix = H(np.linspace(0.5, 1.5, 30))
    stats = H._last._fused.function.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), matrix[3, 4])
""")


def test_a_second_process_loads_the_fused_kernel_from_the_disk_cache(tmp_path):
    env = {**os.environ, "SYMTAPE_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (hits, misses, value), (hits2, misses2, value2) = [run.stdout.split() for run in runs]
    assert (hits, misses) == ("0", "1")  # compiled in the first process
    assert (hits2, misses2) == ("1", "0")  # loaded in the second: not compiled again
    expected = optimize.rosen_hess(np.linspace(0.5, 1.5, 30))[3, 4]
    assert float(value) == float(value2) == pytest.approx(expected, rel=1e-14)


BOUNDS = textwrap.dedent("""
    import numpy as np
    import symtape as st

    def chain(x):
        return st.reduce_sum(x[1:] * x[:-1] ** 2)

    picks = np.array([0, 2, 2, 5])
    cases = [
        (lambda x, y: chain(x) + y, (np.linspace(0.1, 1.0, 4), 2.0), (0, 1)),
        (lambda y, x: chain(x) + y, (2.0, np.linspace(0.1, 1.0, 4)), (0, 1)),
        (lambda x, c: c * chain(x) + c ** 3 * x[0], (np.linspace(0.1, 1.0, 5), 2.0), (0, 1)),
        (lambda m: st.reduce_sum(st.exp(0.5 * st.reduce_sum(m * m[:, ::-1], axis=1))),
         (np.linspace(-0.6, 0.6, 12).reshape(4, 3),), 0),
        (lambda m: st.reduce_sum(st.reshape(m, (6,))[picks] * st.reshape(m, (6,))[1:5]),
         (np.linspace(-1.0, 1.0, 6).reshape(2, 3),), 0),
    ]
    for fun, point, argnums in cases:
        fused = st.hessian(fun, argnums=argnums, sparse=True, backend="numba")
        got = fused(*point)
        assert fused._last._fused is not None
        expected = st.hessian(fun, argnums=argnums, sparse=True, backend="numpy")(*point)
        np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-14, atol=1e-14)
    print("in bounds")
""")


def test_the_fused_kernels_stay_in_bounds(tmp_path):
    """Numba does not check indices: run the fused kernels once with its bounds checks on
    (several arguments, unread seeds, reversed slices, integer-array indices)."""
    env = {**os.environ, "SYMTAPE_CACHE_DIR": str(tmp_path), "NUMBA_BOUNDSCHECK": "1"}
    run = subprocess.run([sys.executable, "-c", BOUNDS], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["in", "bounds"]
