"""Fused CuPy kernels (``symtape/cupy_fused.py``): their CUDA C source, and what it computes.

The GPU here is the ``gpu_cupy`` fixture: real CuPy on a CUDA device, else the simulation,
whose ``ElementwiseKernel`` executes the CUDA C body through the strict translator of
``simulated_cuda.py``. The oracles are the NumPy kernels (checked elsewhere against SymPy),
NumPy's own functions on the same inputs, and source text written out by hand."""

import pickle
import re

import numpy as np
import pytest
import simulated_cuda
import sympy

from hypothesis import HealthCheck, given, settings
from test_check_properties import X, Y, _expressions
from helpers import rosenbrock_of

import symtape as st
import symtape.kernels.program
from symtape.kernels.cupy_fused import FusedKernel
from symtape.core.sympy_ops import tensor_function

x, y = sympy.symbols("x y", real=True)
F64, F32 = np.dtype(np.float64), np.dtype(np.float32)
SMALL = sympy.exp(-x * y) * sympy.sin(x) + x**2 * sympy.log(1 + y**2)  # the issue's function
SPECIAL = np.array([0.0, -0.0, 1.5, -2.5, 0.25, np.inf, -np.inf, np.nan, 1e-300, 7.0])


@pytest.fixture
def cupy(gpu_cupy):
    return gpu_cupy


def _host(value):
    return value.get() if hasattr(value, "get") else np.asarray(value)


def assert_same_floats(got, expected, rtol):
    """Same dtype, same NaNs, same signs of zeros, values within ``rtol``."""
    got, expected = _host(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    zeros = expected == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(expected[zeros]))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


# ---------------------------------------------------------------- the CUDA C source


def test_the_issue_function_is_one_statement_of_cuda_c():
    kernel = FusedKernel(SMALL, (x, y), "", {})
    assert kernel.operation((F64, F64)) == (
        "out0 = (in0 * in0) * log(1.0 + (in1 * in1)) + exp(-(in0 * in1)) * sin(in0);")
    # float32: the float functions and literals, nothing computed in double
    assert kernel.operation((F32, F32)) == (
        "out0 = (in0 * in0) * logf(1.0F + (in1 * in1)) + expf(-(in0 * in1)) * sinf(in0);")


def test_promotions_are_written_as_casts_and_fractions_as_doubles():
    kernel = FusedKernel(x * sympy.Rational(1, 3) + y, (x, y), "", {})
    # int32 meets a weak float: float64, as NumPy promotes it
    assert kernel.operation((np.dtype(np.int32), F64)) == (
        "out0 = in1 + 0.3333333333333333 * ((double)in0);")
    # a Python float argument is weak: a float32 array keeps float32, the float is rounded
    assert kernel.operation((F32, float)) == "out0 = ((float)in1) + 0.33333334F * in0;"


def test_products_are_laid_out_as_the_numpy_code_prints_them():
    gradient_like = -2 * x / sympy.sqrt(y) + x * y**-2
    fractions = FusedKernel(gradient_like, (x, y), "", {}, fractions=True)  # st.compile's
    assert fractions.operation((F64, F64)) == (
        "out0 = in0 / (in1 * in1) - (2.0 * in0 / sqrt(in1));")
    in_turn = FusedKernel(gradient_like, (x, y), "", {})  # a traced program's
    assert in_turn.operation((F64, F64)) == (
        "out0 = in0 * pow(in1, -2.0) - (2.0 * in0 * (1.0 / sqrt(in1)));")


def test_piecewise_is_a_chain_of_ternaries_ending_in_nan():
    kernel = FusedKernel(sympy.Piecewise((sympy.log(x), x > 1), (x * y, x > -1)), (x, y), "", {})
    assert kernel.operation((F64, F64)) == (
        "out0 = (in0 > 1.0) ? log(in0) : ((in0 > -1.0) ? (in0 * in1) : "
        "__longlong_as_double(0x7ff8000000000000LL));")


def test_max_propagates_nan_and_sign_keeps_it():
    kernel = FusedKernel(sympy.Max(x, y) * sympy.sign(x), (x, y), "", {})
    assert kernel.operation((F64, F64)) == (
        "out0 = ((in0 > in1 || in0 != in0) ? in0 : in1) * "
        "(in0 > 0.0 ? 1.0 : (in0 < 0.0 ? -1.0 : (in0 == 0.0 ? 0.0 : in0)));")


def test_signatures_c_does_not_cover_have_no_operation():
    kernel = FusedKernel(x * y + 1, (x, y), "", {})
    int64 = np.dtype(np.int64)
    assert kernel.operation((int64, int64)) is None  # integer arithmetic: NumPy's wraparound
    assert kernel.operation((np.dtype(np.float16), F32)) is None
    assert kernel.operation((np.dtype(np.complex128), F64)) is None


def test_st_compile_fuses_an_expression_chain_into_one_kernel(cupy):
    kernel = st.compile(SMALL, [x, y], backend="cupy")
    body = kernel.source.splitlines()[-1]
    assert re.fullmatch(r"    return \(_fused\d+\(_x0, _x1\),\)", body), kernel.source
    xs, ys = np.linspace(-2, 2, 101), np.linspace(3, -1, 101)
    with np.errstate(all="ignore"):
        expected = st.compile(SMALL, [x, y])(xs, ys)
    got = kernel(cupy.asarray(xs), cupy.asarray(ys))
    assert_same_floats(got, expected, rtol=1e-13)
    if hasattr(cupy, "state"):  # the simulation counts what ran
        operations = [k.operation for k in cupy.state.kernels]
        assert operations == [FusedKernel(SMALL, (x, y), "", {}).operation((F64, F64))]


def test_st_compile_computes_a_value_and_its_gradient_in_one_kernel(cupy):
    gradient = [sympy.diff(SMALL, v) for v in (x, y)]
    kernel = st.compile((SMALL, gradient), [x, y], backend="cupy")
    assert re.search(r"    (_r\d+), (_r\d+), (_r\d+) = _fused\d+\(_x0, _x1\)\n"
                     r"    return \(\1, \2, \3,\)\n$", kernel.source), kernel.source
    xs, ys = np.linspace(-2, 2, 11), np.linspace(3, 0.5, 11)
    value, g = kernel(cupy.asarray(xs), cupy.asarray(ys))
    e = np.exp(-xs * ys)
    np.testing.assert_allclose(_host(value), e * np.sin(xs) + xs**2 * np.log1p(ys**2), rtol=1e-13)
    np.testing.assert_allclose(_host(g), np.stack([
        -ys * e * np.sin(xs) + e * np.cos(xs) + 2 * xs * np.log1p(ys**2),
        -xs * e * np.sin(xs) + 2 * xs**2 * ys / (1 + ys**2)], axis=-1), rtol=1e-13)


def test_a_long_gradient_is_cut_into_kernels_of_at_most_eight_outputs(cupy):
    xs = sympy.symbols("x0:12", real=True)
    f = rosenbrock_of(xs)
    kernel = st.compile([sympy.diff(f, v) for v in xs], [sympy.Array(xs)], backend="cupy")
    calls = re.findall(r"^    ((?:_r\d+, )*_r\d+) = _fused\d+\(", kernel.source, re.M)
    assert [len(c.split(", ")) for c in calls] == [8, 4], kernel.source
    scipy_optimize = pytest.importorskip("scipy.optimize")
    point = np.linspace(0.5, 1.5, 12)
    np.testing.assert_allclose(_host(kernel(cupy.asarray(point))),
                               scipy_optimize.rosen_der(point), rtol=1e-13)


def test_nine_outputs_of_integers_run_their_numpy_code(cupy):
    # int64 arithmetic is not printed as C: both kernels (8 outputs, then 1) run their
    # NumPy-style code, the last one an array, not a tuple of one
    kernel = st.compile([x * y + k for k in range(1, 10)], [x, y], backend="cupy")
    i = np.array([2, -3, 5], dtype=np.int64)
    got = _host(kernel(cupy.asarray(i), cupy.asarray(i)))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.stack([i * i + k for k in range(1, 10)], axis=-1))


def test_more_arguments_than_a_kernel_takes_run_as_cupy_calls(cupy):
    xs = sympy.symbols("x0:70", real=True)
    total = sum(sympy.sin(v) * v for v in xs)
    kernel = st.compile(total, [v for v in xs], backend="cupy")
    (fused,) = [v for v in kernel._namespace.values()]
    assert len(fused.parameters) == 70 and fused.operation((F64,) * 70) is not None
    points = [cupy.asarray(np.full(3, 0.01 * k)) for k in range(70)]
    expected = sum(np.sin(0.01 * k) * 0.01 * k for k in range(70))
    np.testing.assert_allclose(_host(kernel(*points)), np.full(3, expected), rtol=1e-13)
    if hasattr(cupy, "state"):
        assert not cupy.state.kernels  # no ElementwiseKernel of 71 parameters was made


def test_without_cupy_a_fused_kernel_is_a_device_error_and_the_cpu_works(no_cupy):
    with pytest.raises(st.DeviceError, match="pip install"):
        st.compile(SMALL, [x, y], backend="cupy")
    assert float(st.compile(SMALL, [x, y])(0.0, 1.0)) == 0.0


def test_a_single_operation_stays_a_cupy_call():
    from symtape.kernels.compile import _as_output, _generate, _input_layout

    source, _, namespace = _generate(_input_layout([x, y]), [_as_output(x * y)], "cupy", True)
    assert "_fused" not in source and namespace == {}


def _program_source(fun, *point):
    """The traced kernel of ``fun`` at ``point`` (CuPy arrays) and its fused kernels."""
    concrete = fun.get_concrete_function(*point)
    program = concrete._program
    return program.source, [v for v in program._recipe[0].values() if isinstance(v, FusedKernel)]


def test_value_and_gradient_are_one_kernel_of_three_outputs(cupy):
    vg = st.value_and_grad(lambda a, b: st.exp(-a * b) * st.sin(a) + a**2 * st.log(1 + b**2),
                           argnums=(0, 1))
    point = (cupy.asarray(0.3), cupy.asarray(0.7))
    vg(*point)
    source, kernels = _program_source(vg, *point)
    assert re.search(r"    (_r\d+), (_r\d+), (_r\d+) = _fused_\d+\(_a0, _a1\)\n"
                     r"    return \(\1, \2, \3,\)\n$", source), source
    (kernel,) = kernels
    # the recorded operations, in their order (the same rounding as the NumPy kernel);
    # temporaries used twice are locals, computed once
    assert kernel.operation((F64, F64)) == "\n".join([
        "const double t0 = -in0;",
        "const double t1 = exp(t0 * in1);",
        "const double t2 = sin(in0);",
        "const double t3 = in0 * in0;",
        "const double t4 = 1.0 + (in1 * in1);",
        "const double t5 = log(t4);",
        "const double t6 = t2 * t1;",
        "out0 = t1 * t2 + t3 * t5;",
        "out1 = ((-(t6 * in1)) + t1 * cos(in0)) + (2.0 * t5) * in0;",
        "out2 = t0 * t6 + (2.0 * (t3 / t4)) * in1;"])


def test_a_sum_between_elementwise_groups_stays_a_cupy_reduction(cupy):
    f = st.function(lambda v: st.reduce_sum(st.sin(v) * v) * st.sin(v) + st.exp(v) * 2)
    point = cupy.asarray(np.linspace(0, 1, 4))
    f(point)
    source, kernels = _program_source(f, point)
    # sin(v) is not stored: both kernels compute it; the sum is CuPy's, between them
    assert re.search(r"    return \(_fused_\d+\(_expand_\d+\(_reduce_sum_\d+\(_fused_\d+\(_a0\)"
                     r"\)\), _a0\),\)\n$", source), source
    assert sorted(k.operation((F64,) * len(k.parameters)) for k in kernels) == [
        "out0 = in0 * sin(in1) + exp(in1) * 2.0;", "out0 = sin(in0) * in0;"]
    v = np.linspace(0, 1, 4)
    expected = np.sum(np.sin(v) * v) * np.sin(v) + np.exp(v) * 2
    np.testing.assert_allclose(_host(f(point).numpy()), expected, rtol=1e-14)


# ---------------------------------------------------------------- fewer CuPy calls


def _value_and_grad_calls(cupy, monkeypatch, fused: bool):
    if not fused:  # the generator without its hook: one CuPy call per operation
        monkeypatch.setattr(symtape.kernels.program, "fusing", lambda *a, **k: None)
    st.clear_kernel_cache()  # the same graph compiles again
    f = st.vmap(st.value_and_grad(lambda a, b: st.exp(-a * b) * st.sin(a)
                                  + a**2 * st.log(1 + b**2), argnums=(0, 1)))
    a, b = cupy.asarray(np.linspace(-1, 1, 7)), cupy.asarray(np.linspace(2, -1, 7))
    f(a, b)  # traced
    calls, launches = cupy.state.calls, cupy.state.launches
    value, grads = f(a, b)
    counted = cupy.state.calls - calls + cupy.state.launches - launches
    return counted, [_host(v) for v in (value, *grads)]


def test_value_and_gradient_take_fewer_cupy_calls(gpu_cupy, monkeypatch):
    if not hasattr(gpu_cupy, "state"):
        pytest.skip("counting calls needs the simulated CuPy")
    fused, fused_values = _value_and_grad_calls(gpu_cupy, monkeypatch, True)
    unfused, unfused_values = _value_and_grad_calls(gpu_cupy, monkeypatch, False)
    assert fused == 1 and unfused >= 20, (fused, unfused)  # one kernel for all three
    a, b = np.linspace(-1, 1, 7), np.linspace(2, -1, 7)
    e = np.exp(-a * b)
    oracle = [e * np.sin(a) + a**2 * np.log1p(b**2),
              -b * e * np.sin(a) + e * np.cos(a) + 2 * a * np.log1p(b**2),
              -a * e * np.sin(a) + a**2 * 2 * b / (1 + b**2)]
    for got, other, expected in zip(fused_values, unfused_values, oracle):
        np.testing.assert_allclose(got, expected, rtol=1e-13)
        np.testing.assert_allclose(got, other, rtol=1e-15)


# ---------------------------------------------------------------- special values, dtypes


def _assert_ran_fused(cupy):
    """On the simulation: every kernel that ran was an ElementwiseKernel (no CuPy call)."""
    if hasattr(cupy, "state"):
        assert cupy.state.launches > 0 and cupy.state.kernels

UNARY = {  # each applied inside a chain (so that it is fused), and NumPy's own value
    "exp": (st.exp, np.exp), "log": (st.log, np.log), "sqrt": (st.sqrt, np.sqrt),
    "sin": (st.sin, np.sin), "tanh": (st.tanh, np.tanh), "asin": (st.asin, np.arcsin),
    "atan": (st.atan, np.arctan), "log1p": (st.log1p, np.log1p), "abs": (st.abs, np.abs),
    "sign": (st.sign, np.sign), "relu": (st.relu, lambda v: np.maximum(v, 0)),
    "sigmoid": (st.sigmoid, None), "softplus": (st.softplus, None), "square": (st.square, None),
    "neg": (lambda t: -t, np.negative), "reciprocal": (lambda t: 1 / t, lambda v: 1 / v),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", UNARY)
def test_every_unary_op_fused_keeps_numpys_special_values(cupy, name, dtype):
    op, reference = UNARY[name]
    f = st.function(lambda v, w: op(v) * w + v * 0)  # three ops: one kernel
    v = SPECIAL.astype(dtype)
    w = np.ones_like(v)
    with np.errstate(all="ignore"):
        expected = f(v, w).numpy()
        if reference is not None:  # the oracle for the chain: NumPy's function
            np.testing.assert_array_equal(expected, reference(v) * w + v * 0)
        f(cupy.asarray(v), cupy.asarray(w))  # traced on the GPU (an eager run)
        got = f(cupy.asarray(v), cupy.asarray(w))  # the kernel
    assert_same_floats(got.numpy(), expected, rtol=1e-14 if dtype == np.float64 else 1e-6)
    _assert_ran_fused(cupy)


BINARY = {
    "maximum": (st.maximum, np.maximum), "minimum": (st.minimum, np.minimum),
    "atan2": (st.atan2, np.arctan2), "pow": (st.pow, np.power),
    "where": (lambda a, b: st.where(a < b, a, b), lambda a, b: np.where(a < b, a, b)),
    "div": (lambda a, b: a / b, np.divide),
    "equal": (lambda a, b: st.cast(st.equal(a, b), a.dtype), None),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", BINARY)
def test_every_binary_op_fused_keeps_numpys_special_values(cupy, name, dtype):
    op, reference = BINARY[name]
    f = st.function(lambda a, b: op(a, b) * 1 + a * 0)
    a = np.repeat(SPECIAL, SPECIAL.size).astype(dtype)  # every pair, ties and signed zeros
    b = np.tile(SPECIAL, SPECIAL.size).astype(dtype)
    with np.errstate(all="ignore"):
        expected = f(a, b).numpy()
        if reference is not None:
            np.testing.assert_array_equal(expected, reference(a, b) * 1 + a * 0)
        f(cupy.asarray(a), cupy.asarray(b))  # traced on the GPU (an eager run)
        got = f(cupy.asarray(a), cupy.asarray(b))  # the kernel
    assert_same_floats(got.numpy(), expected, rtol=1e-14 if dtype == np.float64 else 1e-6)
    _assert_ran_fused(cupy)


def test_maximum_returns_the_second_operand_on_a_tie_of_zeros(cupy):
    f = st.function(lambda a, b: st.maximum(a, b) + st.minimum(a, b) * 1)
    a, b = np.array([0.0, -0.0]), np.array([-0.0, 0.0])
    f(cupy.asarray(a), cupy.asarray(b))
    got = f(cupy.asarray(a), cupy.asarray(b)).numpy()
    np.testing.assert_array_equal(np.signbit(got), np.signbit(np.maximum(a, b) + np.minimum(a, b)))


def test_integer_and_mixed_dtypes_compute_what_numpy_computes(cupy):
    i = np.array([-3, 0, 2, 7], dtype=np.int64)
    v = np.array([0.5, -1.0, 2.0, np.nan])
    kernel = st.compile((x * y + 1, x * sympy.Rational(1, 4) + sympy.sin(y), x * y + x),
                        [x, y], backend="cupy")
    ints, mixed, both = kernel(cupy.asarray(i), cupy.asarray(v))
    assert_same_floats(ints, i * v + 1, rtol=1e-15)
    assert_same_floats(mixed, i * 0.25 + np.sin(v), rtol=1e-15)
    integers, _, _ = kernel(cupy.asarray(i), cupy.asarray(i))  # int64 * int64: NumPy's code
    assert _host(integers).dtype == np.int64
    np.testing.assert_array_equal(_host(integers), i * i + 1)


def test_float32_in_float32_out_through_a_gradient(cupy):
    grad = st.vmap(st.grad(lambda a: st.exp(-a * a) * st.sin(a) + 0.1 * a, argnums=0))
    v = np.linspace(-2, 2, 9, dtype=np.float32)
    grad(v)
    got = grad(cupy.asarray(v))
    assert got.dtype == np.float32
    expected = (-2 * v * np.exp(-v * v) * np.sin(v) + np.exp(-v * v) * np.cos(v)
                + np.float32(0.1))
    np.testing.assert_allclose(_host(got), expected, rtol=2e-6, atol=1e-7)


def test_python_float_arguments_of_a_fused_kernel(cupy):
    kernel = st.compile(sympy.sin(x) * y + x, [x, y], backend="cupy")
    value = kernel(0.5, 2.0)  # no array at all: the kernel still runs on the GPU
    assert isinstance(value, cupy.ndarray)
    assert float(_host(value)) == pytest.approx(np.sin(0.5) * 2.0 + 0.5, rel=1e-15)


def test_a_compiled_kernel_with_fused_parts_pickles(cupy):
    kernel = st.compile(SMALL, [x, y], backend="cupy")
    again = pickle.loads(pickle.dumps(kernel))
    xs = np.linspace(0.1, 1.0, 5)
    np.testing.assert_allclose(_host(again(cupy.asarray(xs), cupy.asarray(xs))),
                               _host(kernel(cupy.asarray(xs), cupy.asarray(xs))), rtol=1e-15)


def test_a_stored_reciprocal_is_recomputed_as_a_reciprocal(cupy):
    # 1/(2 + sin(y)) is a temporary of the NumPy kernel, then multiplied by y; y/(2 + sin(y))
    # rounds differently, which cos of a huge argument shows
    vg = st.vmap(st.value_and_grad(tensor_function(st.parse("cos(y / (2 + sin(y))) + x*y"),
                                                   [X, Y]), argnums=(0, 1)))
    a, b = np.array([0.0, 1e-300]), np.array([1e300, 1e300])
    expected = vg(a, b)
    vg(cupy.asarray(a), cupy.asarray(b))
    got = vg(cupy.asarray(a), cupy.asarray(b))
    for ours, theirs in zip([got[0], *got[1]], [expected[0], *expected[1]]):
        np.testing.assert_array_equal(_host(ours), theirs)


_ONE_CUPY = [HealthCheck.function_scoped_fixture]  # the same CuPy serves every example


@settings(max_examples=8, deadline=None, suppress_health_check=_ONE_CUPY)
@given(_expressions())
def test_random_compositions_fused_agree_with_the_numpy_kernels_at_special_values(cupy, text):
    """Value and gradient over every pair of special values: the fused kernels (temporaries
    recomputed, three outputs in one kernel) round as the NumPy kernel does."""
    vg = st.vmap(st.value_and_grad(tensor_function(st.parse(text), [X, Y]), argnums=(0, 1)))
    a, b = np.repeat(SPECIAL, SPECIAL.size), np.tile(SPECIAL, SPECIAL.size)
    with np.errstate(all="ignore"):
        expected = vg(a, b)
        vg(cupy.asarray(a), cupy.asarray(b))  # traced on the GPU
        got = vg(cupy.asarray(a), cupy.asarray(b))
    for ours, theirs in zip([got[0], *got[1]], [expected[0], *expected[1]]):
        assert_same_floats(ours, theirs, rtol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=_ONE_CUPY)
@given(_expressions())
def test_random_compositions_compiled_agree_with_the_numpy_kernel(cupy, text):
    """st.compile's kernel of a value and its gradient, in float64 and float32, over every
    pair of special values (its shared subexpressions recomputed, its products laid out as
    SymPy's code printer writes them)."""
    expr = st.parse(text)
    outputs = (expr, [sympy.diff(expr, X), sympy.diff(expr, Y)])
    on_cpu, on_gpu = st.compile(outputs, [X, Y]), st.compile(outputs, [X, Y], backend="cupy")
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        a = np.repeat(SPECIAL, SPECIAL.size).astype(dtype)
        b = np.tile(SPECIAL, SPECIAL.size).astype(dtype)
        with np.errstate(all="ignore"):
            expected = on_cpu(a, b)
            got = on_gpu(cupy.asarray(a), cupy.asarray(b))
        for ours, theirs in zip(got, expected):
            assert_same_floats(ours, theirs, rtol=rtol)


def test_a_stored_power_stays_a_factor_of_its_product(cupy):
    # the NumPy kernel stores (c5)**(-1/2) and multiplies by it; c3/sqrt(c5) rounds otherwise,
    # which a cancellation in float32 shows
    expr = st.parse("pow(2 + cos(3), pow(2 + cos(atan2(y, 2 + cos(x))), pow(2 + cos(3), y)))")
    outputs = [sympy.diff(expr, X)]
    a, b = np.float32([1.5]), np.float32([0.0])
    expected = st.compile(outputs, [X, Y])(a, b)
    got = st.compile(outputs, [X, Y], backend="cupy")(cupy.asarray(a), cupy.asarray(b))
    np.testing.assert_array_equal(_host(got), expected)


# ---------------------------------------------------------------- the simulation's strictness


def _run(operation, **inputs):
    values = {n: simulated_cuda.Value(v, simulated_cuda.c_type(np.asarray(v).dtype))
              for n, v in inputs.items()}
    return simulated_cuda.run(operation, values, {"out0": "double"})["out0"].array


@pytest.mark.parametrize("operation, complaint", [
    ("out0 = sin(in0);", "sin of a float: use sinf"),
    ("out0 = in1 * in0;", "double \\* float: operands of different types"),
    ("out0 = (double)(1 / 4);", "'/' of a int"),
    ("out0 = fmax(in1, in1);", "unknown function 'fmax'"),
    ("out0 = in1 > 0.0 ? 1 : in1;", "branches are int and double"),
    ("out0 = in1 @ 2.0;", "unknown character '@'"),
    ("const float t0 = in1; out0 = in1;", "'t0' is float but its value is double"),
])
def test_the_translator_refuses_what_it_does_not_know(operation, complaint):
    with pytest.raises(simulated_cuda.CudaTranslationError, match=complaint):
        _run(operation, in0=np.float32(1.0), in1=np.ones(2))


def test_the_translator_computes_in_the_declared_types():
    got = _run("const float t0 = (float)in1 / 3.0F; out0 = (double)t0 + -0.0;", in1=np.ones(2))
    np.testing.assert_array_equal(got, np.float64(np.float32(1.0) / np.float32(3.0)))
    inf = _run("out0 = __longlong_as_double(0x7ff0000000000000LL) * in1;", in1=-np.ones(1))
    assert inf[0] == -np.inf
