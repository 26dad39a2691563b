"""backend='numba': fused loops compiled by LLVM. Every primitive, through every kind of
call, against the NumPy backend (itself checked against SymPy and SciPy elsewhere), NaN,
infinities and signed zeros included; the generated loops; choosing the backend."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from every_primitive import CASES, IN_AXES, assert_same_results, call
from helpers import rosenbrock as rosen

import symtape as st

numba = pytest.importorskip("numba")
optimize = pytest.importorskip("scipy.optimize")

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e300, -1e-300,
                    3.0])


def same_bits(got, expected):
    """Equal values, NaN where NaN, and the same sign of every zero."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    zeros = expected == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(expected[zeros]))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("transform", ["function", "grad", "value_and_grad", "jacobian",
                                       "hessian"])
def test_every_primitive_matches_the_numpy_backend(case, transform):
    fun, point, points = CASES[case]

    def make(backend):
        if transform == "function":
            return st.function(fun, backend=backend)
        return getattr(st, transform)(fun, argnums=(0, 1), backend=backend)

    fused, reference = make("numba"), make("numpy")
    assert_same_results(fused(*point), reference(*point), rtol=1e-13, atol=1e-13)
    for at, in_axes in zip(points, IN_AXES[case]):  # a plain call, then st.vmap over a batch
        assert_same_results(call(fused, at, in_axes), call(reference, at, in_axes),
                            rtol=1e-13, atol=1e-13)


UNARY = ["sin", "cos", "tan", "exp", "log", "log1p", "sqrt", "asin", "acos", "atan", "sinh",
         "cosh", "tanh", "abs", "sign", "erf", "sigmoid", "softplus", "relu", "negative",
         "square"]


@pytest.mark.parametrize("name", UNARY)
def test_unary_primitives_on_special_values(name):
    op = getattr(st, name)
    with np.errstate(all="ignore"):
        expected = st.vmap(st.function(op, backend="numpy"))(SPECIAL)
        got = st.vmap(st.function(op, backend="numba"))(SPECIAL)
    same_bits(got, expected)


BINARY = ["add", "subtract", "multiply", "divide", "pow", "maximum", "minimum", "atan2"]


@pytest.mark.parametrize("name", BINARY)
def test_binary_primitives_on_special_values(name):
    op = getattr(st, name)
    a, b = np.meshgrid(SPECIAL, SPECIAL)
    with np.errstate(all="ignore"):
        expected = st.vmap(st.function(op, backend="numpy"))(a.ravel(), b.ravel())
        got = st.vmap(st.function(op, backend="numba"))(a.ravel(), b.ravel())
    same_bits(got, expected)


def test_comparisons_where_and_casts_on_special_values():
    def mixed(x, y):
        picked = st.where(st.less(x, y), x, y) + st.where(st.logical_not(st.equal(x, y)), 1.0, 0.0)
        counted = st.cast(st.greater_equal(x, y), st.float64) - st.cast(st.not_equal(x, 0.0),
                                                                      st.float64)
        return picked + counted + st.cast(st.less_equal(x, y), st.float64)

    a, b = (v.ravel() for v in np.meshgrid(SPECIAL, SPECIAL))
    with np.errstate(all="ignore"):
        same_bits(st.vmap(st.function(mixed, backend="numba"))(a, b),
                  st.vmap(st.function(mixed, backend="numpy"))(a, b))


def test_float32_stays_float32():
    f = st.value_and_grad(lambda x, y: st.sin(x) * y + 2.5 * x ** 3, argnums=(0, 1),
                          backend="numba")
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    value, (dx, dy) = st.vmap(f)(x, np.float32(2.0) * x)
    assert value.dtype == dx.dtype == dy.dtype == np.float32
    np.testing.assert_allclose(dx, np.cos(x) * 2 * x + 7.5 * x * x, rtol=1e-6)


def test_value_and_gradient_at_many_points_is_one_fused_loop():
    def f(x, y):
        return st.exp(-x * y) * st.sin(x) + x ** 2 * st.log(1 + y ** 2)

    vg = st.value_and_grad(f, argnums=(0, 1), backend="numba")
    source = vg.get_concrete_function(0.5, 0.5).source
    assert source.count("numba.prange") == 1 and "np.exp(" in source
    x, y = np.linspace(-2, 2, 40000), np.linspace(3, -1, 40000)  # above the threads' threshold
    value, (dx, dy) = st.vmap(vg)(x, y)
    e = np.exp(-x * y)
    np.testing.assert_allclose(value, e * np.sin(x) + x**2 * np.log(1 + y**2), rtol=1e-13)
    np.testing.assert_allclose(dx, -y * e * np.sin(x) + e * np.cos(x) + 2 * x * np.log(1 + y**2),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dy, -x * e * np.sin(x) + x**2 * 2 * y / (1 + y**2), rtol=1e-12,
                               atol=1e-12)
    value, (dx, dy) = vg(0.5, 2.0)  # one point: the straight-line scalar code
    assert float(dy) == pytest.approx(-0.5 * np.exp(-1.0) * np.sin(0.5) + 0.25 * 4 / 5, rel=1e-14)


def test_rosenbrock_gradient_and_sparse_hessian():
    point = np.linspace(0.5, 1.5, 200)
    np.testing.assert_allclose(st.grad(rosen, backend="numba")(point), optimize.rosen_der(point),
                               rtol=1e-12)
    H = st.hessian(rosen, sparse=True, backend="numba")(point)
    assert H.nnz == 3 * 200 - 2
    np.testing.assert_allclose(H.toarray(), optimize.rosen_hess(point), rtol=1e-12)


def test_variables_are_read_at_call_time():
    w = st.Variable(2.0, name="w")
    f = st.function(lambda x: w * st.sin(x), backend="numba")
    assert float(f(0.5)) == pytest.approx(2 * np.sin(0.5), rel=1e-15)
    w.assign(3.0)
    assert float(f(0.5)) == pytest.approx(3 * np.sin(0.5), rel=1e-15)


def test_compile_takes_the_numba_backend():
    import sympy

    x, y = sympy.symbols("x y", real=True)
    expr = sympy.Piecewise((sympy.log(x), x > 1), (x * y, True)) + sympy.Max(x, y)
    kernel = st.compile(expr, [x, y], backend="numba")
    points = np.linspace(-2.0, 3.0, 11)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(kernel(points, 0.5), st.compile(expr, [x, y])(points, 0.5),
                                   rtol=1e-15)
    assert float(kernel(2.0, 0.5)) == pytest.approx(np.log(2.0) + 2.0, rel=1e-15)


def test_default_backend_setting_and_environment(monkeypatch):
    try:
        st.config.set_default_backend("numba")
        assert st.config.get_default_backend() == "numba"
        assert st.function(st.sin).backend == "numba"
    finally:
        st.config.set_default_backend(None)
    monkeypatch.setenv("SYMTAPE_BACKEND", "numba")
    assert st.grad(st.sin).backend == "numba"
    monkeypatch.setenv("SYMTAPE_BACKEND", "jax")
    with pytest.raises(ValueError, match="SYMTAPE_BACKEND is 'jax'"):
        st.function(st.sin)


def test_unknown_backend_and_missing_numba_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'llvm'"):
        st.grad(st.sin, backend="llvm")
    monkeypatch.setitem(sys.modules, "numba", None)  # as if Numba were not installed
    with pytest.raises(ImportError, match=r"pip install symtape\[jit\]"):
        st.function(st.sin, backend="numba")
    assert float(st.function(st.sin, backend="numpy")(0.0)) == 0.0  # NumPy keeps working


# ---------------------------------------------------------------- the disk cache

SCRIPT = textwrap.dedent("""
    import numpy as np, symtape as st
    from symtape.kernels import diskcache
    f = st.value_and_grad(lambda x, y: st.exp(-x * y) * st.sin(x) + x * x, argnums=(0, 1),
                          backend="numba")
    value, (dx, dy) = st.vmap(f)(np.linspace(0, 1, 5), np.linspace(1, 2, 5))
    print(repr(float(dx[3])))
""")


def _run(cache, *, wait=True):
    env = {**os.environ, "SYMTAPE_CACHE_DIR": str(cache)}
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return process.communicate(timeout=300) if wait else process


def _expected():
    x, y = 0.75, 1.75
    return -y * np.exp(-x * y) * np.sin(x) + np.exp(-x * y) * np.cos(x) + 2 * x


def test_processes_share_the_disk_cache_and_write_it_at_once(tmp_path):
    first, second = _run(tmp_path, wait=False), _run(tmp_path, wait=False)
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert float(out) == pytest.approx(_expected(), rel=1e-14)
    modules = list(tmp_path.glob("k*.py"))
    assert len(modules) == 1 and not list(tmp_path.glob("*.tmp"))
    assert list((tmp_path / "__pycache__").glob("*.nbi"))  # Numba's machine code, cached
    out, err = _run(tmp_path)  # a third process loads it
    assert float(out) == pytest.approx(_expected(), rel=1e-14)


def test_a_corrupt_entry_is_rebuilt(tmp_path):
    out, err = _run(tmp_path)
    (module,) = tmp_path.glob("k*.py")
    module.write_text(module.read_text().replace("np.exp", "np.cos"))  # damaged, same name
    out, err = _run(tmp_path)
    assert float(out) == pytest.approx(_expected(), rel=1e-14), err
    assert "np.exp" in module.read_text()


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    from symtape.kernels.diskcache import cache_dir

    monkeypatch.delenv("SYMTAPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "symtape"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "symtape"
    monkeypatch.setenv("SYMTAPE_CACHE_DIR", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"


def test_vector_programs_run_as_one_jitted_function_at_the_traced_shape():
    scale = st.Variable(np.array([1.0, -2.0, 0.5]), name="scale")
    weights = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]])

    def f(m, v, unused):
        rows = st.reduce_sum(st.sin(m) * weights * scale, axis=1)   # (2,)
        picked = m[1, ::2] * v[0] + st.reduce_sum(m[:, 1:] ** 2)   # (2,)
        return st.reduce_sum(rows * picked + st.exp(v[1:] - 1.0))

    m, v = np.linspace(-1, 1, 6).reshape(2, 3), np.array([0.5, -0.25, 2.0])
    fused = st.value_and_grad(f, argnums=(0, 1), backend="numba")
    reference = st.value_and_grad(f, argnums=(0, 1), backend="numpy")
    assert "def _whole(" in fused.get_concrete_function(m, v, 0.0).source
    assert_same_results(fused(m, v, 0.0), reference(m, v, 0.0), rtol=1e-14, atol=1e-14)
    scale.assign(np.array([3.0, 1.0, -1.0]))  # read at call time
    assert_same_results(fused(m, v, 0.0), reference(m, v, 0.0), rtol=1e-14, atol=1e-14)
    batch = np.stack([m, 2 * m])  # a batch: the loops over the broadcast points
    assert_same_results(st.vmap(fused, in_axes=(0, None, None))(batch, v, 0.0),
                        st.vmap(reference, in_axes=(0, None, None))(batch, v, 0.0),
                        rtol=1e-14, atol=1e-14)


def test_an_unwritable_cache_directory_falls_back_to_a_private_one(monkeypatch, tmp_path):
    from symtape.kernels import diskcache

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SYMTAPE_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot write its kernel cache"):
        module = diskcache.load_module("VALUE = 7  # unwritable-cache test\n")
    assert module.VALUE == 7 and not (blocker / "cache").exists()


@pytest.mark.parametrize("transform", ["function", "value_and_grad", "hessian"])
def test_large_batches_run_the_fused_loops_between_numpy_calls(transform):
    """Above ~3e4 entries a batch runs the fused loops (parallel ones) with the structural
    ops as NumPy calls between them; below, the NumPy kernel (see numba_backend._small)."""
    fun, point, _ = CASES["arrays"]
    rng = np.random.default_rng(1)
    v, w = rng.uniform(-2, 2, (9000, 4)), rng.uniform(-2, 2, 4)
    make = (lambda b: st.function(fun, backend=b)) if transform == "function" else (
        lambda b: getattr(st, transform)(fun, argnums=(0, 1), backend=b))
    fused = make("numba")
    assert "_run_group(" in fused.get_concrete_function(*point).source
    assert_same_results(st.vmap(fused, in_axes=(0, None))(v, w),
                        st.vmap(make("numpy"), in_axes=(0, None))(v, w), rtol=1e-12, atol=1e-12)
