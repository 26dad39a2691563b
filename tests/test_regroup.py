"""Programs over many scalars regrouped into NumPy calls (symtape/kernels/regroup.py): the
same values as the eager ops and as the scalar kernel, and the scalar kernel kept where
regrouping would not pay."""

import pickle
import warnings

import numpy as np
import pytest
import sympy

import symtape as st
from helpers import rosenbrock_gradient_function, rosenbrock_of

N = 300  # scalar Variables: enough ops for the regrouped kernel to be chosen


def variables(values, dtype=st.float64, prefix="x"):
    return [st.Variable(v, dtype=dtype, name=f"{prefix}{i}") for i, v in enumerate(values)]


def regrouped(function) -> bool:
    return "_R = _empty(" in function.get_concrete_function().source


def unary_mix(x):
    """Every float-to-float elementwise primitive of one argument, kept inside its domain."""
    a = st.sin(x) + st.cos(x) + st.tan(x / 5) + st.exp(-x * x) + st.log(x * x + 1)
    b = st.log1p(x * x) + st.sqrt(x * x + 1) + st.asin(x / 9) + st.acos(x / 9) + st.atan(x)
    c = st.sinh(x / 3) + st.cosh(x / 3) + st.tanh(x) + st.erf(x) + st.sigmoid(x)
    d = st.relu(x) + st.softplus(x) + st.abs(x) + st.sign(x) + st.square(x) - x ** 3
    return a + b + c + d


def binary_mix(x, y):
    """The float-to-float elementwise primitives of two arguments."""
    return (st.atan2(x, y + 3) + st.maximum(x, y) + st.minimum(x, y) + st.pow(st.abs(x) + 1, y)
            + x / (y * y + 1) - x * y)


@pytest.mark.parametrize("mix", [unary_mix, binary_mix])
def test_every_float_primitive_regrouped_gives_the_eager_values(mix):
    values = np.linspace(-1.7, 2.3, N)
    xs = variables(values)
    arity = mix.__code__.co_argcount
    compiled = st.function(lambda: [mix(*xs[i:i + arity]) for i in range(N - arity + 1)])
    assert regrouped(compiled)
    eager = [mix(*xs[i:i + arity]).numpy() for i in range(N - arity + 1)]
    got = [t.numpy() for t in compiled()]
    np.testing.assert_allclose(got, eager, rtol=1e-14, atol=1e-15)
    assert all(t.dtype == np.float64 and t.shape == () for t in compiled())


def test_rosenbrock_gradient_over_scalar_variables_matches_the_formula():
    from scipy.optimize import rosen_der

    x0 = np.linspace(-1.2, 1.9, N)
    xs = variables(x0)
    gradient = rosenbrock_gradient_function(xs)
    assert regrouped(gradient)
    np.testing.assert_allclose([g.numpy() for g in gradient()], rosen_der(x0), rtol=1e-13)
    x1 = x0[::-1].copy()  # new values: read on every call, the result follows them
    for x, v in zip(xs, x1):
        x.assign(v)
    np.testing.assert_allclose([g.numpy() for g in gradient()], rosen_der(x1), rtol=1e-13)
    # the closed form stays exact: entry 1 of the gradient, by SymPy
    s = sympy.symbols(f"x0:{N}", real=True)
    f = rosenbrock_of(s[:3])
    assert sympy.expand(gradient.expr[1] - sympy.diff(f, s[1])) == 0


def test_a_chain_of_sums_is_one_running_sum_rounded_as_the_chain():
    """The value is Python's ``sum()``: a chain of N additions, one at each depth. It runs as
    one running sum over its terms, which rounds as the chain does: the value is the eager
    one to the last bit."""
    from scipy.optimize import rosen_der

    x0 = np.linspace(-1.2, 1.9, N)
    xs = variables(x0)
    value_and_gradient = rosenbrock_gradient_function(xs, with_value=True)
    assert regrouped(value_and_gradient)
    assert value_and_gradient.get_concrete_function().source.count(" = _f") < 20
    f, g = value_and_gradient()
    assert f.numpy() == rosenbrock_of(xs).numpy()  # bit for bit
    np.testing.assert_allclose([t.numpy() for t in g], rosen_der(x0), rtol=1e-13)
    terms = [1e16, 1.0, -1e16] * (N // 3)  # pairwise summation would give another value
    ts = variables(terms, prefix="t")
    total = st.function(lambda: sum(t * 1.0 for t in ts))
    assert regrouped(total)
    assert total().numpy() == sum(float(t) for t in terms) == 0.0


def test_a_recurrence_keeps_the_scalar_kernel():
    """One op at each depth and no sums to chain: a NumPy call per op would cost more than
    Python's arithmetic, so the cost model keeps the straight-line kernel."""
    y0 = st.Variable(0.5, name="y0")

    def recurrence():
        y = y0
        for _ in range(N):
            y = y * 0.999 + 0.001
        return y

    compiled = st.function(recurrence)
    assert not regrouped(compiled)
    assert compiled().numpy() == recurrence().numpy()


def test_small_programs_keep_the_scalar_kernel():
    xs = variables([0.5, 1.5, 2.5])
    compiled = st.function(lambda: [st.sin(x) * x for x in xs])
    assert not regrouped(compiled)
    np.testing.assert_allclose([t.numpy() for t in compiled()], np.sin([0.5, 1.5, 2.5]) * [0.5, 1.5, 2.5])


def test_float32_programs_stay_float32():
    values = np.linspace(0.1, 3.0, N).astype(np.float32)
    xs = variables(values, dtype=st.float32)
    compiled = st.function(lambda: [st.exp(-x * 0.3) * st.sin(x) + 1.5 for x in xs])
    assert regrouped(compiled)
    out = compiled()
    assert all(t.dtype == np.float32 for t in out)
    eager = [(st.exp(-x * 0.3) * st.sin(x) + 1.5).numpy() for x in xs]
    np.testing.assert_allclose([t.numpy() for t in out], eager, rtol=2e-7)


def test_signed_zeros_and_nan_constants_are_kept_apart():
    xs = variables(np.linspace(1.0, 2.0, N))

    def products():
        return ([x * st.constant(-0.0) for x in xs] + [x * st.constant(0.0) for x in xs]
                + [x + st.constant(np.nan) for x in xs])

    compiled = st.function(products)
    assert regrouped(compiled)
    out = np.array([t.numpy() for t in compiled()])
    assert np.all(np.signbit(out[:N])) and not np.any(np.signbit(out[N:2 * N]))
    assert np.all(out[:2 * N] == 0.0) and np.all(np.isnan(out[2 * N:]))


def test_outputs_that_are_variables_or_constants_and_assignments():
    xs = variables(np.arange(N, dtype=float))

    @st.function
    def step():
        for x in xs:
            x.assign(st.sin(x) * 2.0 + x * x)
        return [xs[0], st.constant(7.0)] + [st.cos(x) * x for x in xs]

    before = np.arange(N, dtype=float)
    out = step()
    after = np.sin(before) * 2.0 + before * before
    assert regrouped(step)
    np.testing.assert_allclose([x.numpy() for x in xs], after, rtol=1e-14)
    assert out[0].numpy() == pytest.approx(after[0]) and out[1].numpy() == 7.0
    np.testing.assert_allclose([t.numpy() for t in out[2:]], np.cos(after) * after, rtol=1e-14)


def test_division_by_zero_gives_inf_as_the_eager_op():
    values = np.linspace(-1.0, 1.0, N)
    values[N // 2] = 0.0
    xs = variables(values)
    compiled = st.function(lambda: [1.0 / x + st.exp(x) * x for x in xs])
    assert regrouped(compiled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.array([t.numpy() for t in compiled()])
        eager = np.array([(1.0 / x + st.exp(x) * x).numpy() for x in xs])
    assert np.isinf(out[N // 2]) and out[N // 2] == eager[N // 2]
    np.testing.assert_allclose(out, eager, rtol=1e-14)


def test_the_numba_backend_regroups_too_without_jit_compiling():
    pytest.importorskip("numba")
    xs = variables(np.linspace(0.0, 1.0, N))
    compiled = st.function(lambda: [st.sin(x) * x for x in xs], backend="numba")
    assert regrouped(compiled)
    np.testing.assert_allclose([t.numpy() for t in compiled()],
                               [np.sin(x.numpy()) * x.numpy() for x in xs], rtol=1e-15)


def test_a_regrouped_kernel_pickles_for_workers():
    cloudpickle = pytest.importorskip("cloudpickle")  # Dask's pickler
    xs = variables(np.linspace(0.0, 1.0, N))
    compiled = st.function(lambda: [st.sin(x) * x for x in xs])
    concrete = compiled.get_concrete_function()
    assert regrouped(compiled)
    program = concrete._program  # the kernel a Dask task carries
    portable = pickle.loads(cloudpickle.dumps(program.portable()))
    values = [x.numpy()[()] for x in xs]
    np.testing.assert_array_equal(np.asarray(portable([], values)), np.sin(values) * values)


def test_comparisons_selects_and_casts_use_an_array_per_dtype():
    xs = variables(np.linspace(-1.0, 1.0, N))

    def pieces():
        return [st.where(x < 0.25, st.sin(x), x * x) + st.cast(st.greater(x, 0.0), st.float64)
                for x in xs]

    compiled = st.function(pieces)
    assert regrouped(compiled) and "_R1 = _empty(" in compiled.get_concrete_function().source
    np.testing.assert_allclose([t.numpy() for t in compiled()], [t.numpy() for t in pieces()],
                               rtol=1e-15)


def test_an_optimizer_step_over_scalar_variables_regroups_with_its_int_step_count():
    x0 = np.linspace(-1.2, 1.9, N)
    compiled_xs, eager_xs = variables(x0), variables(x0, prefix="e")
    compiled_opt, eager_opt = st.optimizers.SGD(1e-4), st.optimizers.SGD(1e-4)

    def step(xs, opt):
        with st.GradientTape() as tape:
            f = rosenbrock_of(xs)
        opt.apply_gradients(zip(tape.gradient(f, xs), xs))
        return f

    compiled = st.function(lambda: step(compiled_xs, compiled_opt))
    for _ in range(3):
        got, expected = compiled(), step(eager_xs, eager_opt)
        assert got.numpy() == pytest.approx(expected.numpy(), rel=1e-14)
    assert regrouped(compiled)
    assert int(compiled_opt.iterations.numpy()) == int(eager_opt.iterations.numpy()) == 3
    np.testing.assert_allclose([x.numpy() for x in compiled_xs], [x.numpy() for x in eager_xs],
                               rtol=1e-14)


UNARY = [st.sin, st.cos, st.tanh, st.atan, st.sigmoid, st.softplus, st.abs, st.negative,
         lambda v: st.exp(-v * v), lambda v: st.sqrt(v * v + 1.0)]
BINARY = [st.add, st.subtract, st.multiply, st.maximum, st.minimum, st.atan2,
          lambda a, b: a / (b * b + 1.0), lambda a, b: st.where(a < b, a, b * 0.5)]


@pytest.mark.parametrize("seed", range(4))
def test_random_layered_programs_match_the_eager_ops(seed):
    """Layers of one op each over all values, partners drawn by random permutations (the
    operands are gathers, not slices), and sums of random subsets as chains: the regrouped
    kernel gives the eager values."""
    rng = np.random.default_rng(seed)
    xs = variables(rng.uniform(-2.0, 2.0, N), prefix=f"r{seed}_")
    layers = [(rng.integers(len(UNARY)), rng.integers(len(BINARY)), rng.permutation(N))
              for _ in range(5)]
    subsets = [rng.choice(N, size=int(rng.integers(3, 40)), replace=False) for _ in range(6)]

    def program():
        values = list(xs)
        for unary, binary, partner in layers:
            values = [BINARY[binary](UNARY[unary](v), values[p]) for v, p in zip(values, partner)]
        return values + [sum(values[i] for i in subset) for subset in subsets]

    compiled = st.function(program)
    assert regrouped(compiled)
    expected = [t.numpy() for t in program()]
    for _ in range(2):  # the second call runs the kernel only
        got = [t.numpy() for t in compiled()]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
