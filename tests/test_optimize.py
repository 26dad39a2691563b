"""st.optimize: SciPy's minimize and least_squares driven by compiled derivatives.

Oracles: the known minimizers (Rosenbrock's at x = 1), SciPy's own rosen_der/rosen_hess,
and data generated from known parameters."""

import sys

import numpy as np
import pytest
from scipy.optimize import rosen_der, rosen_hess
from helpers import rosenbrock as rosen

import symtape as st


START = np.tile([-1.2, 1.0], 5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # trust-krylov's own, in SciPy
@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B", "CG", "Newton-CG", "trust-ncg",
                                    "trust-krylov", "trust-exact", "dogleg", "trust-constr"])
def test_every_derivative_using_method_follows_scipy_with_exact_derivatives(method):
    # the chained Rosenbrock function also has a local minimum near (-1, 1, ..., 1), which
    # some methods reach from this start: the oracle is SciPy's run with SciPy's own exact
    # derivatives, which must end at the same point
    import scipy.optimize

    # dogleg needs a positive definite Hessian all along: start near the minimum
    start = START if method != "dogleg" else 1 + 0.02 * np.sin(np.arange(10.0))
    options = {"tol": 1e-10, "options": {"maxiter": 5000}}
    result = st.optimize.minimize(rosen, start, method=method, **options)
    kwargs = {"hessp": lambda x, p: rosen_hess(x) @ p} if method.lower() in (
        "newton-cg", "trust-ncg", "trust-krylov") else {"hess": rosen_hess} if method.lower() in (
        "trust-exact", "dogleg", "trust-constr") else {}
    oracle = scipy.optimize.minimize(scipy.optimize.rosen, start, jac=rosen_der, method=method,
                                     **kwargs, **options)
    np.testing.assert_allclose(result.x, oracle.x, atol=1e-5)
    assert result.fun == pytest.approx(oracle.fun, abs=1e-9)
    assert np.abs(rosen_der(result.x)).max() < 1e-4  # a stationary point either way


def test_newton_cg_reaches_the_global_minimum():
    result = st.optimize.minimize(rosen, START, method="Newton-CG", tol=1e-12)
    np.testing.assert_allclose(result.x, np.ones(10), atol=1e-8)


def test_the_objective_runs_only_while_tracing():
    calls = []

    def counted(x):
        calls.append(1)
        return rosen(x)

    result = st.optimize.minimize(counted, START, method="trust-exact")
    assert result.success and result.nit > 10
    # value+gradient, the gradient graph for the Hessian pattern, the Hessian product:
    # a handful of traces, none per iteration
    assert len(calls) <= 4


def test_derivatives_passed_to_scipy_are_the_exact_ones(monkeypatch):
    import scipy.optimize

    seen = {}

    def spy(fun, x0, args=(), method=None, jac=None, hess=None, hessp=None, **kwargs):
        seen.update(value=fun(x0, *args), hess=hess(x0, *args) if hess else None,
                    hessp=hessp(x0, np.arange(10.0), *args) if hessp else None)
        return scipy.optimize.OptimizeResult(spied=True)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    point = np.linspace(-1, 1.5, 10)
    assert st.optimize.minimize(rosen, point, method="trust-exact").spied
    value, gradient = seen["value"]
    np.testing.assert_allclose(gradient, rosen_der(point), rtol=1e-13)
    np.testing.assert_allclose(seen["hess"], rosen_hess(point), rtol=1e-13)
    st.optimize.minimize(rosen, point, method="Newton-CG")
    np.testing.assert_allclose(seen["hessp"], rosen_hess(point) @ np.arange(10.0), rtol=1e-13)


def logistic(w, X, y):
    z = st.matmul(X, w)
    return st.reduce_sum(st.softplus(z) - y * z) + 0.5 * st.reduce_sum(w * w)


def logistic_hessian(w, X):  # by hand: X^T diag(p (1 - p)) X + I
    p = 1 / (1 + np.exp(-(X @ w)))
    return X.T @ ((p * (1 - p))[:, None] * X) + np.eye(len(w))


def spied_hessian(monkeypatch, fun, x0, args, method):
    import scipy.optimize

    seen = {}

    def spy(fun, x0, args=(), method=None, jac=None, hess=None, **kwargs):
        seen["hess"] = lambda x: hess(x, *args)
        return scipy.optimize.OptimizeResult()

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    st.optimize.minimize(fun, x0, args=args, method=method)
    return seen["hess"]


def test_a_dense_pattern_gives_trust_constr_a_dense_hessian(monkeypatch):
    import scipy.sparse

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, 6)), (rng.random(40) < 0.5) * 1.0
    w0, w1 = np.zeros(6), rng.normal(size=6)
    hess = spied_hessian(monkeypatch, logistic, w0, (X, y), "trust-constr")
    for w in (w0, w1, w0):  # the first value is kept from the compile; later ones computed
        value = hess(w)
        assert isinstance(value, np.ndarray) and value.shape == (6, 6)
        np.testing.assert_allclose(value, logistic_hessian(w, X), rtol=1e-12)
    # Rosenbrock's tridiagonal pattern stays sparse
    hess = spied_hessian(monkeypatch, rosen, START, (), "trust-constr")
    for x in (START, START + 0.5):
        assert scipy.sparse.issparse(hess(x))
        np.testing.assert_allclose(hess(x).toarray(), rosen_hess(x), rtol=1e-13)


def counting_patterns(monkeypatch) -> list:
    import symtape.transforms.sparse

    derived = []
    original = symtape.transforms.sparse._graph_dependencies
    monkeypatch.setattr(symtape.transforms.sparse, "_graph_dependencies",
                        lambda *a: derived.append(1) or original(*a))
    st.clear_kernel_cache()  # patterns are kept in the kernel cache
    return derived


def test_a_hessian_mostly_nonzero_at_the_start_derives_no_pattern(monkeypatch):
    # trust-constr welcomes sparse Hessians; logistic regression's array-level Hessian is
    # nonzero everywhere at the start, so its pattern is dense too: nothing to look for
    derived = counting_patterns(monkeypatch)
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(50, 7)), (rng.random(50) < 0.5) * 1.0
    result = st.optimize.minimize(logistic, np.zeros(7), args=(X, y), method="trust-constr")
    assert derived == []
    p = 1 / (1 + np.exp(-(X @ result.x)))
    assert np.abs(X.T @ (p - y) + result.x).max() < 1e-6  # the gradient by hand vanishes
    # a diagonal Hessian (mostly zeros at the start) still gets its sparse pattern
    hess = spied_hessian(monkeypatch, lambda x, c: st.reduce_sum(c * x ** 4 + x ** 2),
                         np.ones(6), (np.arange(6.0),), "trust-constr")
    import scipy.sparse

    value = hess(np.full(6, 2.0))
    assert derived == [1] and scipy.sparse.issparse(value) and value.nnz == 6
    np.testing.assert_allclose(value.toarray(), np.diag(48 * np.arange(6.0) + 2))


def chained(x, c):  # a tridiagonal Hessian (slices: derived one row at a time)
    return st.reduce_sum(c * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def chained_gradient(x, c):  # by hand
    inner = x[1:] - x[:-1] ** 2
    gradient = np.zeros_like(x)
    gradient[1:] += 2 * c * inner
    gradient[:-1] += -4 * c * x[:-1] * inner - 2 * (1 - x[:-1])
    return gradient


def test_a_repeated_fit_derives_no_pattern_again(monkeypatch):
    derived = counting_patterns(monkeypatch)
    c = np.full(9, 100.0)
    first = st.optimize.minimize(chained, START, args=(c,), method="trust-constr")
    assert len(derived) == 1
    # the same fit again, and the same model on other data of the same shapes: no new pattern
    again = st.optimize.minimize(chained, START, args=(c,), method="trust-constr")
    other = st.optimize.minimize(chained, START, args=(c / 10,), method="trust-constr")
    assert len(derived) == 1
    np.testing.assert_array_equal(again.x, first.x)
    for result, data in ((first, c), (other, c / 10)):  # the gradient by hand vanishes
        assert np.abs(chained_gradient(result.x, data)).max() < 1e-5
    # another structure (a ridge penalty) is a new pattern
    st.optimize.minimize(lambda x, c: chained(x, c) + st.reduce_sum(x ** 4), START,
                         args=(c,), method="trust-constr")
    assert len(derived) == 2


def logistic_by_hand(w, X, y):  # value and gradient of `logistic`, by hand
    z = X @ w
    return (np.sum(np.logaddexp(0, z) - y * z) + 0.5 * w @ w,
            X.T @ (1 / (1 + np.exp(-z)) - y) + w)


@pytest.mark.parametrize("compile_at", [1, 3, 1000])
def test_trust_exact_gets_value_gradient_and_hessian_from_one_call_a_point(monkeypatch,
                                                                           compile_at):
    # the first calls replay the trace; call `compile_at` compiles the kernel that runs the rest
    import scipy.optimize
    import symtape.optimize
    from symtape.kernels.program import Program

    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(60, 5)), (rng.random(60) < 0.5) * 1.0
    traced, points, kernel = [], [], []

    def counted(w, X, y):
        traced.append(1)
        return logistic(w, X, y)

    replayed = symtape.optimize._Replayed
    monkeypatch.setattr(replayed, "COMPILE_AT", compile_at)
    original_call, original_kernel = replayed.__call__, Program.call_exact
    monkeypatch.setattr(replayed, "__call__",
                        lambda self, *a: points.append(1) or original_call(self, *a))
    monkeypatch.setattr(Program, "call_exact",
                        lambda self, *a, **k: kernel.append(1) or original_kernel(self, *a, **k))
    st.clear_kernel_cache()
    result = st.optimize.minimize(counted, np.zeros(5), args=(X, y), method="trust-exact")
    assert len(traced) == 1  # one trace for all three
    # trust-exact asks for all three at each point it visits (nfev of them); the start's
    # come from the trace, every other point's from one call
    assert result.nhev == result.nfev and len(points) == result.nfev - 1 >= 3
    assert len(kernel) == max(0, len(points) - compile_at + 1)
    oracle = scipy.optimize.minimize(logistic_by_hand, np.zeros(5), args=(X, y), jac=True,
                                     hess=lambda w, X, y: logistic_hessian(w, X),
                                     method="trust-exact")
    np.testing.assert_allclose(result.x, oracle.x, atol=1e-8)
    assert result.fun == pytest.approx(oracle.fun, rel=1e-12)


def test_trust_exact_reads_variables_and_keeps_their_assignments_as_a_function_does():
    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(40, 3)), (rng.random(40) < 0.5) * 1.0
    ridge, traces = st.Variable(0.5, name="ridge"), st.Variable(0.0, name="traces")

    def loss(w, X, y):  # a Variable read, and one assigned on each run of the Python code
        traces.assign_add(1.0)
        return logistic(w, X, y) + (ridge - 0.5) * st.reduce_sum(w * w)

    points = 0
    for strength in (0.5, 2.0):  # read at each call: the new strength's fit
        ridge.assign(strength)
        result = st.optimize.minimize(loss, np.zeros(3), args=(X, y), method="trust-exact",
                                      options={"gtol": 1e-10})
        p = 1 / (1 + np.exp(-(X @ result.x)))
        gradient = X.T @ (p - y) + result.x + 2 * (strength - 0.5) * result.x
        assert np.abs(gradient).max() < 1e-9
        points += result.nfev
    # as in st.function, each evaluation (the trace at the start, a kernel call at each other
    # point) assigns: once a point; a trial trace that found a Variable assigned is undone
    assert float(traces.numpy()) == points


def test_trust_exact_answers_each_derivative_at_any_point_in_any_order(monkeypatch):
    import scipy.optimize

    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(30, 4)), (rng.random(30) < 0.5) * 1.0
    w0, w1 = np.zeros(4), rng.normal(size=4)
    seen = {}

    def spy(fun, x0, args=(), method=None, jac=None, hess=None, **kwargs):
        seen.update(fun=lambda w: fun(w, *args), hess=lambda w: hess(w, *args))
        return scipy.optimize.OptimizeResult()

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    st.optimize.minimize(logistic, w0, args=(X, y), method="trust-exact")
    # a Hessian first at a new point, then its value; back to the start; the same again
    for w, first in ((w1, "hess"), (w0, "fun"), (w0, "hess"), (w1, "fun"), (w1, "hess")):
        if first == "hess":
            np.testing.assert_allclose(seen["hess"](w), logistic_hessian(w, X), rtol=1e-12)
        value, gradient = seen["fun"](w)
        expected_value, expected_gradient = logistic_by_hand(w, X, y)
        assert value == pytest.approx(expected_value, rel=1e-13)
        np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(seen["hess"](w), logistic_hessian(w, X), rtol=1e-12)


def test_extra_arguments_and_matrix_shaped_starts():
    target = np.array([[1.0, -2.0], [3.0, 0.5]])

    def distance(x, goal):  # x arrives with x0's shape
        return st.reduce_sum((x - goal) ** 2 * st.constant([[1.0, 2.0], [3.0, 4.0]]))

    result = st.optimize.minimize(distance, np.zeros((2, 2)), args=(target,), method="BFGS")
    np.testing.assert_allclose(result.x.reshape(2, 2), target, atol=1e-6)


def test_scipy_keywords_pass_through():
    seen = []
    result = st.optimize.minimize(rosen, START, method="BFGS", callback=lambda xk: seen.append(1),
                                  options={"maxiter": 3})
    assert result.nit == 3 and len(seen) == 3


def test_methods_without_derivatives_get_the_compiled_value():
    result = st.optimize.minimize(lambda x: st.reduce_sum((x - 2.0) ** 2), np.zeros(2),
                                  method="Nelder-Mead", tol=1e-10)
    np.testing.assert_allclose(result.x, [2.0, 2.0], atol=1e-4)


def test_least_squares_recovers_known_parameters():
    t = np.linspace(0, 2, 30)
    data = 3.0 * np.exp(-0.7 * t) + 0.5

    def residuals(p, t, y):
        return p[0] * st.exp(-p[1] * st.constant(t)) + p[2] - st.constant(y)

    result = st.optimize.least_squares(residuals, [1.0, 1.0, 0.0], args=(t, data))
    np.testing.assert_allclose(result.x, [3.0, 0.7, 0.5], rtol=1e-8)
    # the Jacobian handed to SciPy is the exact one: d/dp of the residuals at the optimum
    expected = np.stack([np.exp(-0.7 * t), -3.0 * t * np.exp(-0.7 * t), np.ones_like(t)], axis=1)
    np.testing.assert_allclose(result.jac, expected, rtol=1e-6)


def test_missing_scipy_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match=r"symtape\[scipy\]"):
        st.optimize.minimize(rosen, START)


def test_history_records_the_loss_of_every_iteration():
    result = st.optimize.minimize(rosen, START, method="BFGS")
    assert len(result.history) == result.nit
    assert result.history[-1] == pytest.approx(result.fun)
    assert result.history[0] < float(st.reduce_sum(rosen(st.constant(START))))


def test_progress_without_tqdm_prints_to_stderr(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    st.optimize.minimize(rosen, START, method="BFGS", progress=True)
    assert "minimize: iteration 1, loss" in capsys.readouterr().err


def test_user_callbacks_get_xk_or_the_intermediate_result():
    positions, results = [], []
    st.optimize.minimize(rosen, START, method="BFGS", callback=positions.append,
                         options={"maxiter": 2})

    def new_style(intermediate_result):
        results.append(intermediate_result.fun)

    st.optimize.minimize(rosen, START, method="BFGS", callback=new_style, options={"maxiter": 2})
    assert len(positions) == 2 and positions[0].shape == (10,)
    assert len(results) == 2 and results[1] <= results[0]


def test_least_squares_fits_many_residuals():
    rng = np.random.default_rng(2)
    t = np.linspace(0.0, 10.0, 2_000)
    y = 2.0 * np.exp(-0.3 * t) * np.cos(2.5 * t + 0.4) + 0.01 * rng.normal(size=t.size)
    fit = st.optimize.least_squares(
        lambda p: p[0] * st.exp(-p[1] * t) * st.cos(p[2] * t + p[3]) - y, [1.5, 0.2, 2.3, 0.0])
    np.testing.assert_allclose(fit.x, [2.0, 0.3, 2.5, 0.4], atol=0.01)
    assert fit.jac.shape == (2_000, 4)


T = np.linspace(0.0, 2.0, 30)
DATA = 3.0 * np.exp(-0.7 * T) + 0.5


def _decay(p, t, data):
    return p[0] * st.exp(-p[1] * t) + p[2] - data


def test_least_squares_takes_scipys_kwargs_for_the_residuals_and_their_jacobian():
    result = st.optimize.least_squares(_decay, [1.0, 1.0, 0.0], args=(T,), kwargs={"data": DATA})
    np.testing.assert_allclose(result.x, [3.0, 0.7, 0.5], rtol=1e-8)
    expected = np.stack([np.exp(-0.7 * T), -3.0 * T * np.exp(-0.7 * T), np.ones_like(T)], axis=1)
    np.testing.assert_allclose(result.jac, expected, rtol=1e-6)  # the exact Jacobian at the fit


@pytest.mark.parametrize("method", ["BFGS", "trust-exact", "Newton-CG", "Nelder-Mead"])
def test_minimize_takes_kwargs_as_least_squares_does(method):
    squares = lambda p, t, data: st.reduce_sum(_decay(p, t, data) ** 2)  # noqa: E731
    result = st.optimize.minimize(squares, [2.5, 0.5, 0.3], method=method, args=(T,),
                                  kwargs={"data": DATA},
                                  **({"options": {"xatol": 1e-10, "fatol": 1e-14,
                                                  "maxiter": 20_000}}
                                     if method == "Nelder-Mead" else {}))
    np.testing.assert_allclose(result.x, [3.0, 0.7, 0.5], rtol=1e-5)


def test_kwargs_are_data_read_at_each_call_not_constants_frozen_into_the_kernel():
    for scale in (1.0, 2.0):  # the same function, new data: the new data's fit
        result = st.optimize.least_squares(_decay, [1.0, 1.0, 0.0], args=(T,),
                                           kwargs={"data": scale * DATA})
        np.testing.assert_allclose(result.x, [3.0 * scale, 0.7, 0.5 * scale], rtol=1e-8)


def test_lists_of_numbers_in_args_and_kwargs_are_arrays():
    t, data = T.tolist(), DATA.tolist()

    def residuals(p, t, data):  # st.constant of a list of traced numbers used to fail here
        return p[0] * st.exp(-p[1] * st.constant(t)) + p[2] - st.constant(data)

    fit = st.optimize.least_squares(residuals, [1.0, 1.0, 0.0], args=(t,), kwargs={"data": data})
    np.testing.assert_allclose(fit.x, [3.0, 0.7, 0.5], rtol=1e-8)
    squares = lambda p, t, data: st.reduce_sum(residuals(p, t, data) ** 2)  # noqa: E731
    result = st.optimize.minimize(squares, [2.5, 0.5, 0.3], args=(t, data), method="trust-exact")
    np.testing.assert_allclose(result.x, [3.0, 0.7, 0.5], rtol=1e-5)  # to SciPy's gtol


def test_a_ragged_list_in_args_says_to_pass_an_array():
    with pytest.raises(ValueError, match=r"minimize: args\[0\] is a ragged list of numbers .*"
                                         r"pass a NumPy array"):
        st.optimize.minimize(lambda p, rows: p[0] ** 2, [1.0], args=([[1.0, 2.0], [3.0]],))


def test_a_single_array_as_args_is_one_argument_as_in_scipy():
    target = np.array([[1.0, 2.0], [3.0, 4.0]])
    result = st.optimize.minimize(lambda x, goal: st.reduce_sum((x - goal[:, 0]) ** 2),
                                  np.zeros(2), args=target, method="BFGS")
    np.testing.assert_allclose(result.x, [1.0, 3.0], atol=1e-6)


@pytest.mark.parametrize("bridge", [st.optimize.minimize, st.optimize.least_squares])
def test_an_empty_start_is_refused_with_the_fix(bridge):
    with pytest.raises(ValueError, match=r"x0 is empty \(shape \(0,\)\); it is the starting value "
                                         r"of the unknowns, so give at least one"):
        bridge(lambda x: st.reduce_sum(x * x), np.zeros(0))


def test_kwargs_that_are_not_a_dict_are_named():
    with pytest.raises(TypeError, match="kwargs must be a dict of keyword arguments of fun, got "
                                        "a tuple"):
        st.optimize.least_squares(_decay, [1.0, 1.0, 0.0], args=(T,), kwargs=(DATA,))
