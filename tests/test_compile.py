"""st.compile: SymPy expressions to NumPy kernels — values, layout, broadcasting, dtypes,
large and deep expressions, the kernel cache, and errors."""

import gc
import importlib.util
import linecache
import math
import traceback

import numpy as np
import pytest
import sympy

import symtape as st

x, y, z = sympy.symbols("x y z", real=True)


def test_scalar_kernel_matches_the_formula():
    k = st.compile(sympy.sin(x) * y + sympy.exp(-z), [x, y, z])
    assert k(0.3, 2.0, 1.5) == pytest.approx(math.sin(0.3) * 2.0 + math.exp(-1.5), rel=1e-15)


def test_array_input_and_several_outputs_share_one_kernel():
    v = sympy.symbols("v0:3", real=True)
    f = v[0] ** 2 + v[1] * v[2]
    grad = sympy.Array([2 * v[0], v[2], v[1]])  # by hand
    k = st.compile((f, grad), [sympy.Array(v)])
    value, g = k(np.array([1.0, 2.0, 3.0]))
    assert float(value) == 7.0
    np.testing.assert_array_equal(g, [2.0, 3.0, 2.0])


def test_an_empty_tuple_of_outputs_compiles_to_a_kernel_returning_an_empty_tuple():
    k = st.compile((), [x])  # the generated return is `()`, not the syntax error `(,)`
    assert k(1.0) == () and k(np.ones(3)) == ()


def test_matrix_output_keeps_its_shape():
    k = st.compile(sympy.Matrix([[x, 2 * x], [x**2, 1]]), [x])
    np.testing.assert_array_equal(k(3.0), [[3.0, 6.0], [9.0, 1.0]])


def test_batch_axes_broadcast():
    k = st.compile(x * y + 1, [x, y])
    out = k(np.arange(3.0)[:, None], np.arange(4.0)[None, :])
    np.testing.assert_array_equal(out, np.arange(3.0)[:, None] * np.arange(4.0) + 1)
    constant = st.compile((x * 0 + 5, sympy.Integer(7)), [x])
    five, seven = constant(np.zeros(4))
    assert five.shape == (4,) and seven.shape == (4,) and (seven == 7).all()


def test_batched_array_argument():
    v = sympy.symbols("v0:2", real=True)
    k = st.compile(sympy.Array([v[0] * v[1], v[0] - v[1]]), [sympy.Array(v)])
    points = np.random.default_rng(0).normal(size=(1000, 2))
    out = k(points)
    assert out.shape == (1000, 2)
    np.testing.assert_allclose(out[:, 0], points[:, 0] * points[:, 1], rtol=1e-15)
    np.testing.assert_allclose(out[:, 1], points[:, 0] - points[:, 1], rtol=1e-15)


def test_float32_stays_float32_with_irrational_constants():
    k = st.compile(sympy.sqrt(2) * x + sympy.pi * x**2 + sympy.Rational(1, 3), [x])
    out = k(np.ones(3, dtype=np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, math.sqrt(2) + math.pi + 1 / 3, rtol=1e-6)
    assert k(np.float32(1.0)).dtype == np.float32


def test_special_functions_print_to_array_code():
    k = st.compile((sympy.erf(x), sympy.Heaviside(x, 0), sympy.Max(x, 0), sympy.Abs(x),
                    sympy.sign(x), sympy.Piecewise((x**2, x > 0), (-x, True))), [x])
    points = np.array([-1.5, 0.0, 2.0])
    erf, step, relu, absolute, sign, piecewise = k(points)
    np.testing.assert_allclose(erf, [math.erf(p) for p in points], rtol=1e-15)
    np.testing.assert_array_equal(step, [0.0, 0.0, 1.0])  # Heaviside(0) = 0 as given
    np.testing.assert_array_equal(relu, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(absolute, [1.5, 0.0, 2.0])
    np.testing.assert_array_equal(sign, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(piecewise, [1.5, 0.0, 4.0])


def test_common_subexpressions_are_computed_once():
    shared = sympy.exp(sympy.sin(x) * y)
    k = st.compile((shared + 1, shared * 2), [x, y])
    assert k.source.count("exp(") == 1
    assert k.source.count("sin(") == 1
    no_cse = st.compile((shared + 1, shared * 2), [x, y], cse=False)
    assert no_cse.source.count("exp(") == 2


def test_wide_sums_compile_without_recursion_errors():
    xs = sympy.symbols("w0:2000", real=True)
    total = sympy.Add(*[(i % 5 + 1) * w**2 for i, w in enumerate(xs)])
    k = st.compile(total, [sympy.Array(xs)])
    point = np.linspace(-1, 1, 2000)
    expected = sum((i % 5 + 1) * p**2 for i, p in enumerate(point))
    assert float(k(point)) == pytest.approx(expected, rel=1e-12)
    assert max(len(line) for line in k.source.splitlines()) < 5000


@pytest.mark.slow
def test_ten_thousand_term_sum_compiles():
    xs = sympy.symbols("w0:10000", real=True)
    k = st.compile(sympy.Add(*[w**2 for w in xs]), [sympy.Array(xs)])
    assert float(k(np.full(10000, 2.0))) == 40000.0


def test_deeply_nested_expressions_compile():
    deep, value = x, 0.3
    for _ in range(300):
        deep = sympy.cos(deep) + x
        value = math.cos(value) + 0.3
    k = st.compile(deep, [x])
    assert float(k(0.3)) == pytest.approx(value, rel=1e-14)


def test_source_and_tracebacks_show_the_generated_code():
    k = st.compile(sympy.log(x) + y, [x, y])
    assert k.source.startswith("def kernel(")
    assert "numpy.log(" in k.source
    with pytest.raises(TypeError) as info:
        k(np.array(["a"]), 1.0)
    frames = traceback.extract_tb(info.value.__traceback__)
    generated = [f for f in frames if f.filename.startswith("<symtape-kernel-")]
    assert generated and "numpy.log" in generated[-1].line


def test_identical_compilations_hit_the_cache():
    before = st.kernel_cache_info()
    first = st.compile(sympy.tanh(x) * 3 + y, [x, y])
    second = st.compile(sympy.tanh(x) * 3 + y, [x, y])
    after = st.kernel_cache_info()
    assert first is second
    assert after.hits == before.hits + 1 and after.misses == before.misses + 1
    other = st.compile(sympy.tanh(x) * 3 + y, [y, x])  # another argument order: another kernel
    assert other is not first
    assert other(1.0, 0.5) == pytest.approx(first(0.5, 1.0), rel=1e-15)


def test_clear_kernel_cache():
    st.compile(x + 41, [x])
    st.clear_kernel_cache()
    info = st.kernel_cache_info()
    assert (info.hits, info.misses, info.size) == (0, 0, 0)


@pytest.mark.parametrize("call, error, message", [
    (lambda: st.compile(x + y, [x]), ValueError, "not inputs: y"),
    (lambda: st.compile(x, [x + 1]), TypeError, "must be SymPy symbols"),
    (lambda: st.compile(x, [x, x]), ValueError, "appears twice"),
    (lambda: st.compile(x, [x], backend="jax"), ValueError, "unknown backend 'jax'"),
    (lambda: st.compile(x, [x])(1.0, 2.0), TypeError, "takes 1 arguments"),
    (lambda: st.compile(x, [sympy.Array([x, y])])(np.ones(3)), ValueError,
     r"shape \(3,\); expected \(\.\.\., 2\)"),
    (lambda: st.compile(x * y, [x, y])(np.ones(3), np.ones(4)), ValueError, "do not broadcast"),
])
def test_errors_say_what_is_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_cupy_backend_without_cupy_is_a_device_error_and_cpu_still_works():
    with pytest.raises(st.DeviceError, match="pip install"):
        st.compile(x * 2, [x], backend="cupy")
    assert float(st.compile(x * 2, [x])(2.0)) == 4.0


# ---------------------------------------------------------------- printing for both backends


def _source(outputs, inputs, backend):
    """The generated code, also for CuPy (printing needs no GPU), followed by the NumPy-style
    code of the fused CuPy kernels it calls (what they run where CUDA C does not apply)."""
    from symtape.kernels.compile import _as_output, _generate, _input_layout

    source, _, namespace = _generate(_input_layout(inputs), [_as_output(outputs)], backend, True)
    return "\n".join([source] + [kernel.fallback for kernel in namespace.values()])


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
def test_piecewise_log_and_where_print_as_array_calls_of_the_backend(backend):
    expr = sympy.Piecewise((sympy.log(x), x > 1), (x**2, x > 0), (0, True)) + sympy.Max(x, y)
    source = _source(expr, [x, y], backend)
    other = "numpy" if backend == "cupy" else "cupy"
    assert f"{backend}.where(" in source and f"{backend}.log(" in source
    assert f"{backend}.maximum(" in source
    assert "select" not in source and f"{other}." not in source


def test_piecewise_kernel_values_on_a_batch():
    expr = sympy.Piecewise((sympy.log(x), x > 1), (x**2, x > 0), (0, True))
    points = np.array([-1.0, 0.5, 1.0, np.e])
    with np.errstate(all="ignore"):  # log is evaluated on every entry, then discarded
        values = st.compile(expr, [x])(points)
    np.testing.assert_allclose(values, [0.0, 0.25, 1.0, 1.0])


def test_piecewise_without_a_default_is_nan_outside():
    k = st.compile(sympy.Piecewise((x, x > 0)), [x])
    assert np.isnan(k(-1.0)) and k(2.0) == 2.0


def test_max_and_min_broadcast_against_scalars():
    k = st.compile(sympy.Max(x, 0) + sympy.Min(x, y, 1), [x, y])
    values = k(np.array([-2.0, 0.5, 3.0]), 0.0)
    np.testing.assert_array_equal(values, [-2.0, 0.5, 3.0])


# ---------------------------------------------------------------- the Python-float path


def test_float_path_and_array_path_agree():
    v = sympy.symbols("v0:4", real=True)
    exprs = [sympy.sin(v[0]) * v[1] + sympy.exp(v[2] - v[3]) ** 2, v[0] / (1 + v[3] ** 2)]
    k = st.compile(exprs, [sympy.Array(v)])
    point = np.array([0.3, -1.2, 0.7, 2.0])
    by_formula = [math.sin(0.3) * -1.2 + math.exp(0.7 - 2.0) ** 2, 0.3 / 5.0]
    one = k(point)  # float64, no batch: the Python-float path
    batch = k(np.stack([point, point]))  # the array path
    assert one.dtype == np.float64 and one.shape == (2,)
    np.testing.assert_allclose(one, by_formula, rtol=1e-15)
    np.testing.assert_allclose(batch[1], by_formula, rtol=1e-15)


def test_float_path_falls_back_where_python_raises_or_goes_complex():
    k = st.compile((1 / x, x ** sympy.Rational(1, 3), sympy.exp(x)), [x])
    with np.errstate(all="ignore"):
        inverse, _, _ = k(np.float64(0.0))  # ZeroDivisionError in Python: NumPy's inf
        _, root, _ = k(np.float64(-8.0))  # a complex number in Python: NumPy's nan
        _, _, big = k(np.float64(1000.0))  # OverflowError in Python: NumPy's inf
    assert inverse == np.inf and np.isnan(root) and big == np.inf


def test_shared_subexpressions_keep_every_value():
    from symtape.kernels.compile import shared_subexpressions

    inner = sympy.sin(x * y)
    exprs = [inner + sympy.exp(inner), (inner + 1) * sympy.exp(inner), z]
    replacements, reduced = shared_subexpressions(exprs)
    assert len(replacements) == 2  # sin(x*y) and exp(sin(x*y)), each once
    substituted = list(reduced)
    for symbol, value in reversed(replacements):
        substituted = [e.subs(symbol, value) for e in substituted]
    assert all(sympy.simplify(a - b) == 0 for a, b in zip(substituted, exprs))


def test_float_constants_keep_every_bit():
    close_to_a_tenth = 1 - 0.9  # 0.09999999999999998, which 15 digits would print as 0.1
    k = st.compile(sympy.Float(close_to_a_tenth) * x, [x])
    assert float(k(1.0)) == close_to_a_tenth
    assert float(k(np.ones(2))[0]) == close_to_a_tenth


# ---------------------------------------------------------------- function_source names (issue 19)


def _run_source(source: str) -> dict:
    namespace: dict = {}
    exec(source, namespace)  # code generated by function_source from SymPy objects only
    return namespace


def test_function_source_temporaries_never_overwrite_a_parameter():
    x, c0 = sympy.symbols("x _c0", real=True)
    f = c0 * sympy.sin(x) ** 2 + sympy.sin(x) ** 3
    from symtape.kernels.compile import function_source

    source = function_source(
        {"gradient": [sympy.diff(f, x), sympy.diff(f, c0)]}, [x, c0])
    assert "    _c0 =" not in source
    gradient = _run_source(source)["gradient"]
    a, c = 0.7, 2.5  # by hand: d/dx = (2 c sin + 3 sin^2) cos, d/dc = sin^2
    np.testing.assert_allclose(gradient(a, c), [(2 * c * math.sin(a) + 3 * math.sin(a) ** 2)
                                                * math.cos(a), math.sin(a) ** 2], rtol=1e-14)


def test_function_source_modules_are_not_shadowed_by_parameters():
    from symtape.kernels.compile import function_source

    numpy_, scipy_, x = sympy.symbols("numpy scipy x", real=True)
    f = numpy_ * sympy.sin(x) + scipy_ * sympy.erf(x)
    source = function_source({"value": f, "gradient": [sympy.diff(f, v) for v in (numpy_, x)]},
                             [numpy_, scipy_, x])
    namespace = _run_source(source)
    a, b, c = 1.5, -0.5, 0.3
    assert namespace["value"](a, b, c) == pytest.approx(a * math.sin(c) + b * math.erf(c),
                                                        rel=1e-14)
    np.testing.assert_allclose(namespace["gradient"](a, b, c), [
        math.sin(c), a * math.cos(c) + b * 2 / math.sqrt(math.pi) * math.exp(-c * c)],
        rtol=1e-14)


@pytest.mark.parametrize("name, problem", [
    ("lambda", "is a Python keyword"), ("None", "is a Python keyword"),
    ("ｘ", "is read by Python as 'x'"), ("x²", "is not a Python identifier"),
])
def test_function_source_refuses_parameters_python_cannot_take(name, problem):
    from symtape.kernels.compile import function_source

    symbol = sympy.Symbol(name, real=True)
    with pytest.raises(ValueError, match=f"the parameter {name!r} {problem}"):
        function_source({"f": symbol * 2}, [symbol])


def test_function_source_refuses_two_parameters_of_one_name():
    from symtape.kernels.compile import function_source

    real, plain = sympy.Symbol("x", real=True), sympy.Symbol("x")
    with pytest.raises(ValueError, match="two parameters are named 'x'; rename one"):
        function_source({"f": real + plain}, [real, plain])


@pytest.mark.parametrize("output, found", [
    (sympy.Symbol("x") * sympy.zoo, r"zoo \(complex infinity, from a division by zero\)"),
    (sympy.Symbol("x") + sympy.nan, r"nan \(not a number\)"),
    (sympy.nan, r"nan \(not a number\)"),
    (sympy.oo, r"oo \(infinity\)"),
    ([sympy.Symbol("x"), -sympy.oo], r"-oo \(minus infinity\)"),
])
def test_compile_refuses_undefined_outputs(output, found):
    with pytest.raises(ValueError, match=f"compile: the output .* contains {found}, so it is "
                                         r"undefined; fix the formula"):
        st.compile(output, [sympy.Symbol("x")])


def test_compile_keeps_an_infinite_branch():
    x = sympy.Symbol("x", real=True)
    kernel = st.compile(sympy.Piecewise((x, x > 0), (-sympy.oo, True)), [x])
    assert float(kernel(2.0)) == 2.0 and float(kernel(-1.0)) == -math.inf


def _kernel_lines() -> set:
    return {name for name in list(linecache.cache) if str(name).startswith("<symtape-kernel-")}


def test_kernel_sources_leave_linecache_with_their_kernels():
    # every kernel's source stayed in linecache forever (6000 entries for a cache of 512)
    st.clear_kernel_cache()
    gc.collect()
    before = _kernel_lines()
    t = sympy.Symbol("t", real=True)
    kept = st.compile(sympy.sin(t) * 3, [t])
    for i in range(600):  # more kernels than the cache holds
        st.compile(sympy.sin(t) * (i + 17), [t])
    st.clear_kernel_cache()
    gc.collect()
    left = _kernel_lines() - before
    assert len(left) == 1  # only the kernel still referenced here
    # ... and its traceback still shows the generated line
    with pytest.raises(TypeError) as info:
        kept(np.array(["a"]))
    frames = traceback.extract_tb(info.value.__traceback__)
    (generated,) = [f for f in frames if f.filename in left]
    assert "numpy.sin" in generated.line
    del kept, info, frames
    gc.collect()
    assert _kernel_lines() - before == set()


def test_a_piecewise_branch_shared_by_two_outputs_compiles():
    # the (value, condition) pair was made a temporary, and the Piecewise could not be rebuilt
    # around it (symtape diff "x**x" --format code --order 2 ended in a TypeError)
    t = sympy.Symbol("t", real=True)
    first = sympy.Piecewise((t**2, t > 0), (0, True))
    second = sympy.Piecewise((t**2, t > 0), (1, True))
    kernel = st.compile([first * sympy.sin(t), first + second], [t])
    for value in (0.7, -0.4):
        square = value**2 if value > 0 else None
        expected = [(square or 0.0) * math.sin(value), 2 * square if square else 1.0]
        np.testing.assert_allclose(kernel(value), expected, rtol=1e-15)


def test_kernels_give_numpys_arithmetic_at_a_float_point():
    """At a float64 point the kernel runs on Python floats; where Python raises or goes
    complex, the result is NumPy's, as on arrays."""
    x = sympy.Symbol("x", real=True)
    root = st.compile(sympy.Abs(x ** sympy.Rational(1, 3)), [x])
    inverse = st.compile(1 / x, [x])
    with np.errstate(all="ignore"):
        assert np.isnan(root(-8.0)) and np.isnan(root(np.array([-8.0]))[0])
        assert float(inverse(0.0)) == np.inf
        assert float(root(8.0)) == pytest.approx(2.0, rel=1e-15)


def test_unpickled_kernels_keep_the_most_recently_used(monkeypatch):
    import collections

    from symtape.chunked import kernel_cache_info
    from symtape.kernels import compile as compile_module

    monkeypatch.setattr(compile_module, "UNPICKLED_KERNELS", collections.OrderedDict())
    monkeypatch.setattr(compile_module, "UNPICKLED_SIZE", 2)
    monkeypatch.setattr(compile_module, "UNPICKLED_COUNTS", {"hits": 0, "misses": 0})
    sources = {k: f"def kernel(x):\n    return x + 0x{k}\n" for k in "abc"}

    def run(k):
        return compile_module.load_unpickled(k, sources[k], (), "numpy")(1)

    assert [run("a"), run("b"), run("a"), run("c")] == [1 + 0xa, 1 + 0xb, 1 + 0xa, 1 + 0xc]
    assert list(compile_module.UNPICKLED_KERNELS) == ["a", "c"]  # b was the least recent
    info = kernel_cache_info()
    assert type(info) is type(st.kernel_cache_info())
    assert (info.hits, info.misses, info.size, info.maxsize) == (1, 3, 2, 2)
