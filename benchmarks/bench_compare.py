"""symtape beside SymPy, CasADi, JAX and TensorFlow: the same tasks, timed in one run.

Run: ``python benchmarks/bench_compare.py`` (``--repeat N`` for more samples, ``--quick`` for
small sizes and one sample, ``--tools casadi,jax`` for a subset, ``--tasks 5,6`` for some
tasks, ``--markdown`` for a table to paste into the README). Set ``OPENBLAS_NUM_THREADS=1``
(or your BLAS's equivalent) on a shared machine: the matrix products of tasks 5 and 6 then
time the same from run to run. The other tools are never dependencies: each is imported only inside
its own cases, and one that is not installed prints "not installed" in its rows.

Tasks (float64 everywhere; every result is checked against SciPy's Rosenbrock before timing):

1. the exact closed-form gradient of the chained Rosenbrock function in n = 100 scalar variables;
2. the compiled gradient of Rosenbrock on one vector, n = 10^6, per call after warm-up;
3. 1000 eager optimizer steps (tape + gradient + SGD update) on a scalar parabola, and the
   same 1000 steps as calls of a compiled step;
4. the Hessian of Rosenbrock, n = 2000 (3n - 2 nonzeros), per call after warm-up;
5. the dense Hessian of ``x.T A x + sum(softplus(B x))``, d = 50, m = 200 (A symmetric), per
   call after warm-up, beside the hand-written matrix formula ``2A + (B.T * s(1 - s)) @ B``
   (issue 18's target: symtape at most 2x the formula);
6. a logistic-regression fit by Newton's method, d = 64 features, m = 2000 samples,
   ``st.optimize.minimize(method="trust-exact")`` with everything included (tracing,
   compiling, every iteration), beside SciPy's trust-exact with hand-written value, gradient
   and Hessian (issue 18's target: symtape at most 2x SciPy's).

Columns: "one-time" is what a tool spends before its first result (tracing, derivation,
compilation, and that first evaluation); "per call" is the best of repeated calls after it
(for tasks 1 and 3, the whole task: all n entries, all the steps); "vs symtape" is the tool's
per-call time over symtape's, measured in the same run (above 1: symtape is faster). "—"
marks a task a tool cannot do, with the reason in the note.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Callable

import numpy as np
import sympy
from scipy.optimize import rosen_der, rosen_hess

import symtape as st
from benchlib import best_of, format_seconds, print_columns

NOT_APPLICABLE = "—"


@dataclass(frozen=True)
class Sizes:
    scalars: int = 100  # task 1
    vector: int = 1_000_000  # task 2
    steps: int = 1000  # task 3
    hessian: int = 2000  # task 4
    dense: tuple = (50, 200)  # task 5: (d, m)
    fit: tuple = (64, 2000)  # task 6: (d, m)


QUICK = Sizes(scalars=10, vector=1000, steps=50, hessian=50, dense=(8, 20), fit=(6, 100))


@dataclass(frozen=True)
class Timing:
    once: float | None  # None: nothing happens once (the task is the whole call)
    call: float


# ----------------------------------------------------------------------------- the problems


def rosen_chain(xs):
    """Chained Rosenbrock (as ``scipy.optimize.rosen``) on a list of scalars of any tool."""
    total = 0
    for i in range(len(xs) - 1):
        total = total + 100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2
    return total


def rosen_terms(x):
    """The Rosenbrock terms of one vector, with whole-array ops; each tool sums them."""
    return 100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2


def rosen_vector(x):
    return st.reduce_sum(rosen_terms(x))


def point(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 0, 1.2, 1.0) + 0.01 * np.sin(np.arange(n))


def parabola(x):
    return x**2 - 2 * x + 1


def check_gradient(values, x0: np.ndarray) -> None:
    assert np.allclose(np.asarray(values, dtype=np.float64).ravel(), rosen_der(x0), rtol=1e-10)


def check_hessian(dense, x0: np.ndarray) -> None:
    assert np.allclose(np.asarray(dense, dtype=np.float64), rosen_hess(x0), rtol=1e-10)


def check_parabola(x: float, steps: int) -> None:
    assert abs(x - (1 - 0.98**steps)) < 1e-9, x  # x_k = 1 - 0.98^k from x_0 = 0, rate 0.01


def timed(build):
    """``build()`` once: its result and the seconds it took (the one-time cost)."""
    start = time.perf_counter()
    result = build()
    return result, time.perf_counter() - start


def cold_sympy_cache() -> None:
    # a second symbolic run would find its results in SymPy's cache: every run starts cold
    sympy.core.cache.clear_cache()


def calls(repeat: int) -> int:
    return 5 * repeat  # per-call timings are short: take more samples


# ----------------------------------------------------------------------------- the other tools


def load_casadi():
    return importlib.import_module("casadi")


def load_jax():
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)  # JAX computes in float32 unless told
    return jax, importlib.import_module("jax.numpy")


def load_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up log quiet
    return importlib.import_module("tensorflow")


LOADERS = {"symtape": lambda: st, "SymPy": lambda: sympy, "CasADi": load_casadi,
           "JAX": load_jax, "TensorFlow": load_tensorflow, "NumPy": lambda: np,
           "SciPy": lambda: importlib.import_module("scipy.optimize")}

# ----------------------------------------------------------------------------- 1. closed forms


def closed_symtape(sizes: Sizes, repeat: int) -> Timing:
    x0 = point(sizes.scalars)
    xs = [st.Variable(v, name=f"x{i}") for i, v in enumerate(x0)]

    def derive():
        with st.GradientTape() as tape:
            f = rosen_chain(xs)
        return [g.expr for g in tape.gradient(f, xs)]

    symbols = sympy.symbols(f"x0:{sizes.scalars}", real=True)
    check_closed_forms(derive(), symbols, x0)
    return Timing(None, best_of(derive, repeat, cold_sympy_cache))


def closed_sympy(sizes: Sizes, repeat: int) -> Timing:
    x0 = point(sizes.scalars)
    symbols = sympy.symbols(f"x0:{sizes.scalars}", real=True)

    def derive():
        f = rosen_chain(symbols)
        return [sympy.diff(f, x) for x in symbols]

    check_closed_forms(derive(), symbols, x0)
    return Timing(None, best_of(derive, repeat, cold_sympy_cache))


def check_closed_forms(exprs, symbols, x0: np.ndarray) -> None:
    at_x0 = dict(zip(symbols, (sympy.Float(v) for v in x0)))
    check_gradient([float(e.xreplace(at_x0)) for e in exprs], x0)


def closed_casadi(sizes: Sizes, repeat: int) -> Timing:
    ca = load_casadi()
    n = sizes.scalars

    def derive():
        x = ca.SX.sym("x", n)
        return x, ca.gradient(rosen_chain([x[i] for i in range(n)]), x)

    x, g = derive()
    check_gradient(ca.Function("g", [x], [g])(point(n)).full(), point(n))
    return Timing(None, best_of(derive, repeat))


# ----------------------------------------------------------------------------- 2. compiled gradient


def compiled_symtape(sizes: Sizes, repeat: int) -> Timing:
    x0 = point(sizes.vector)
    st.clear_kernel_cache()
    cold_sympy_cache()

    def build():
        grad = st.grad(rosen_vector)
        return grad, grad(x0)

    (grad, first), once = timed(build)
    check_gradient(first, x0)
    return Timing(once, best_of(lambda: grad(x0), calls(repeat)))


def compiled_casadi(kind: str):
    def case(sizes: Sizes, repeat: int) -> Timing:
        ca = load_casadi()
        x0 = point(sizes.vector)

        def build():
            x = getattr(ca, kind).sym("x", sizes.vector)
            grad = ca.Function("gradient", [x], [ca.gradient(ca.sum1(rosen_terms(x)), x)])
            return grad, grad(x0)

        (grad, first), once = timed(build)
        check_gradient(first.full(), x0)
        x = ca.DM(x0)  # CasADi's own array type in and out, as JAX and TensorFlow get theirs
        return Timing(once, best_of(lambda: grad(x), calls(repeat)))

    return case


def jitted_jax(transform: str, size: str, check: Callable):
    """``jax.jit(jax.<transform>(f))`` at the point of ``sizes.<size>``, float64."""
    def case(sizes: Sizes, repeat: int) -> Timing:
        jax, jnp = load_jax()
        x0 = point(getattr(sizes, size))
        x = jnp.asarray(x0)
        assert x.dtype == jnp.float64

        def build():
            derivative = jax.jit(getattr(jax, transform)(lambda v: jnp.sum(rosen_terms(v))))
            return derivative, derivative(x).block_until_ready()

        (derivative, first), once = timed(build)
        check(first, x0)
        return Timing(once, best_of(lambda: derivative(x).block_until_ready(), calls(repeat)))

    return case


def compiled_tensorflow(jit_compile: bool):
    def case(sizes: Sizes, repeat: int) -> Timing:
        tf = load_tensorflow()
        x0 = point(sizes.vector)
        x = tf.constant(x0)  # float64, from the NumPy array

        def build():
            @tf.function(input_signature=[tf.TensorSpec([sizes.vector], tf.float64)],
                         jit_compile=jit_compile)
            def grad(v):
                with tf.GradientTape() as tape:
                    tape.watch(v)
                    f = tf.reduce_sum(rosen_terms(v))
                return tape.gradient(f, v)

            return grad, grad(x).numpy()

        (grad, first), once = timed(build)
        check_gradient(first, x0)
        # eager TensorFlow on the CPU returns after the computation: no .numpy() copy needed
        return Timing(once, best_of(lambda: grad(x), calls(repeat)))

    return case


# ----------------------------------------------------------------------------- 3. optimizer steps


def eager_symtape(sizes: Sizes, repeat: int) -> Timing:
    def loop():
        x = st.Variable(0.0)
        for _ in range(sizes.steps):
            with st.GradientTape() as tape:
                y = parabola(x)
            x.assign_sub(0.01 * tape.gradient(y, x))
        return float(x.numpy())

    check_parabola(loop(), sizes.steps)
    return Timing(None, best_of(loop, repeat))


def eager_jax(sizes: Sizes, repeat: int) -> Timing:
    jax, jnp = load_jax()
    slope = jax.grad(parabola)

    def loop():
        x = jnp.asarray(0.0)
        for _ in range(sizes.steps):
            x = x - 0.01 * slope(x)
        return float(x)

    check_parabola(loop(), sizes.steps)
    return Timing(None, best_of(loop, repeat))


def eager_tensorflow(sizes: Sizes, repeat: int) -> Timing:
    tf = load_tensorflow()

    def loop():
        x = tf.Variable(0.0, dtype=tf.float64)
        for _ in range(sizes.steps):
            with tf.GradientTape() as tape:
                y = parabola(x)
            x.assign_sub(0.01 * tape.gradient(y, x))
        return float(x.numpy())

    check_parabola(loop(), sizes.steps)
    return Timing(None, best_of(loop, repeat))


def stepped(step, reset, read, sizes: Sizes, repeat: int) -> Timing:
    """Time ``sizes.steps`` calls of a compiled ``step``; the first call is the one-time cost."""
    reset()
    _, once = timed(step)
    reset()

    def loop():
        reset()
        for _ in range(sizes.steps):
            step()

    loop()
    check_parabola(read(), sizes.steps)
    return Timing(once, best_of(loop, repeat))


def step_symtape(sizes: Sizes, repeat: int) -> Timing:
    st.clear_kernel_cache()
    x = st.Variable(0.0)

    @st.function
    def step():
        with st.GradientTape() as tape:
            y = parabola(x)
        x.assign_sub(0.01 * tape.gradient(y, x))

    return stepped(step, lambda: x.assign(0.0), lambda: float(x.numpy()), sizes, repeat)


def step_jax(sizes: Sizes, repeat: int) -> Timing:
    jax, jnp = load_jax()
    update = jax.jit(lambda v: v - 0.01 * jax.grad(parabola)(v))
    state = {"x": jnp.asarray(0.0)}  # JAX is functional: the step returns the new value

    def step():
        state["x"] = update(state["x"])

    def reset():
        state["x"] = jnp.asarray(0.0)

    return stepped(step, reset, lambda: float(state["x"]), sizes, repeat)


def step_tensorflow(sizes: Sizes, repeat: int) -> Timing:
    tf = load_tensorflow()
    x = tf.Variable(0.0, dtype=tf.float64)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = parabola(x)
        x.assign_sub(0.01 * tape.gradient(y, x))

    return stepped(step, lambda: x.assign(0.0), lambda: float(x.numpy()), sizes, repeat)


# ----------------------------------------------------------------------------- 4. Hessian


def hessian_symtape(sizes: Sizes, repeat: int) -> Timing:
    x0 = point(sizes.hessian)
    st.clear_kernel_cache()
    cold_sympy_cache()

    def build():
        hess = st.hessian(rosen_vector, sparse=True)
        return hess, hess(x0)

    (hess, first), once = timed(build)
    assert first.nnz == 3 * sizes.hessian - 2
    check_hessian(first.toarray(), x0)
    return Timing(once, best_of(lambda: hess(x0), calls(repeat)))


def hessian_casadi(sizes: Sizes, repeat: int) -> Timing:
    ca = load_casadi()
    x0 = point(sizes.hessian)

    def build():
        x = ca.SX.sym("x", sizes.hessian)
        hess = ca.Function("hessian", [x], [ca.hessian(ca.sum1(rosen_terms(x)), x)[0]])
        return hess, hess(x0)

    (hess, first), once = timed(build)
    assert first.nnz() == 3 * sizes.hessian - 2
    check_hessian(first.full(), x0)
    x = ca.DM(x0)
    return Timing(once, best_of(lambda: hess(x), calls(repeat)))


def hessian_tensorflow(jit_compile: bool):
    def case(sizes: Sizes, repeat: int) -> Timing:
        tf = load_tensorflow()
        x0 = point(sizes.hessian)
        x = tf.constant(x0)

        def build():
            @tf.function(input_signature=[tf.TensorSpec([sizes.hessian], tf.float64)],
                         jit_compile=jit_compile)
            def hess(v):
                with tf.GradientTape() as outer:
                    outer.watch(v)
                    with tf.GradientTape() as inner:
                        inner.watch(v)
                        f = tf.reduce_sum(rosen_terms(v))
                    g = inner.gradient(f, v)
                return outer.jacobian(g, v)  # vectorized (pfor) by default

            return hess, hess(x).numpy()

        (hess, first), once = timed(build)
        check_hessian(first, x0)
        return Timing(once, best_of(lambda: hess(x), calls(repeat)))

    return case


# ----------------------------------------------------------------------------- 5. dense Hessian


def dense_problem(sizes: Sizes):
    """``(A, B, x0)``: A symmetric d x d, B m x d, a start of length d (seeded)."""
    d, m = sizes.dense
    rng = np.random.default_rng(18)
    A = rng.normal(size=(d, d))
    return (A + A.T) / 2, rng.normal(size=(m, d)) / np.sqrt(d), rng.normal(size=d)


def dense_formula(A, B, x):
    s = 1 / (1 + np.exp(-(B @ x)))
    return 2 * A + (B.T * (s * (1 - s))) @ B


def dense_symtape(sizes: Sizes, repeat: int) -> Timing:
    A, B, x0 = dense_problem(sizes)
    st.clear_kernel_cache()
    cold_sympy_cache()

    def f(x):
        return st.reduce_sum(x * st.matmul(A, x)) + st.reduce_sum(st.softplus(st.matmul(B, x)))

    def build():
        hess = st.hessian(f)
        return hess, hess(x0)

    (hess, first), once = timed(build)
    assert np.allclose(first, dense_formula(A, B, x0), rtol=1e-12, atol=1e-12)
    return Timing(once, best_of(lambda: hess(x0), calls(repeat), number=20))


def dense_by_hand(sizes: Sizes, repeat: int) -> Timing:
    A, B, x0 = dense_problem(sizes)
    return Timing(None, best_of(lambda: dense_formula(A, B, x0), calls(repeat), number=20))


def dense_jax(sizes: Sizes, repeat: int) -> Timing:
    jax, jnp = load_jax()
    A, B, x0 = dense_problem(sizes)
    A, B, x = jnp.asarray(A), jnp.asarray(B), jnp.asarray(x0)

    def build():
        hess = jax.jit(jax.hessian(lambda v: v @ (A @ v) + jnp.sum(jax.nn.softplus(B @ v))))
        return hess, hess(x).block_until_ready()

    (hess, first), once = timed(build)
    assert np.allclose(np.asarray(first), dense_formula(np.asarray(A), np.asarray(B), x0),
                       rtol=1e-10, atol=1e-12)
    return Timing(once, best_of(lambda: hess(x).block_until_ready(), calls(repeat), number=20))


# ----------------------------------------------------------------------------- 6. Newton fit


def fit_data(sizes: Sizes):
    """``(X, y)``: m samples of d features, labels drawn from a logistic model (a finite
    maximum-likelihood estimate exists)."""
    d, m = sizes.fit
    rng = np.random.default_rng(64)
    X = rng.normal(size=(m, d)) / np.sqrt(d)
    y = (rng.random(m) < 1 / (1 + np.exp(-(X @ rng.normal(size=d))))).astype(np.float64)
    return X, y


FIT_OPTIONS = {"gtol": 1e-9}  # both fits stop at the same small gradient


def check_fit(w: np.ndarray, X, y) -> None:
    gradient = X.T @ (1 / (1 + np.exp(-(X @ w))) - y)
    assert np.abs(gradient).max() < 1e-6, np.abs(gradient).max()


def fit_symtape(sizes: Sizes, repeat: int) -> Timing:
    X, y = fit_data(sizes)

    def loss(w, X, y):
        z = st.matmul(X, w)
        return st.reduce_sum(st.softplus(z)) - st.reduce_sum(y * z)

    def fit():
        return st.optimize.minimize(loss, np.zeros(X.shape[1]), args=(X, y),
                                    method="trust-exact", options=FIT_OPTIONS).x

    def cold():
        st.clear_kernel_cache()
        cold_sympy_cache()

    cold()
    check_fit(fit(), X, y)
    return Timing(None, best_of(fit, repeat, cold))


def fit_scipy(sizes: Sizes, repeat: int) -> Timing:
    optimize = importlib.import_module("scipy.optimize")
    X, y = fit_data(sizes)

    def value_and_gradient(w):
        z = X @ w
        return np.sum(np.logaddexp(0, z)) - y @ z, X.T @ (1 / (1 + np.exp(-z)) - y)

    def hessian(w):
        s = 1 / (1 + np.exp(-(X @ w)))
        return (X.T * (s * (1 - s))) @ X

    def fit():
        return optimize.minimize(value_and_gradient, np.zeros(X.shape[1]), jac=True,
                                 hess=hessian, method="trust-exact", options=FIT_OPTIONS).x

    check_fit(fit(), X, y)
    return Timing(None, best_of(fit, repeat))


# ----------------------------------------------------------------------------- the table

# (title, [(tool, what is timed, case or None where the tool cannot do the task)])
TASKS = [
    ("1 closed-form gradient, n={scalars}", [
        ("symtape", "record + tape.gradient + every .expr", closed_symtape),
        ("SymPy", "build f + [sympy.diff(f, xi) for xi in xs]", closed_sympy),
        ("CasADi", "SX: build f + casadi.gradient (one graph, shared nodes)", closed_casadi),
        ("JAX", "no closed forms", None),
        ("TensorFlow", "no closed forms", None),
    ]),
    ("2 compiled gradient, n={vector:,}", [
        ("symtape", "st.grad, NumPy array in and out", compiled_symtape),
        ("SymPy", "no array-level form (lambdify of scalar formulas: bench_compile.py)", None),
        ("CasADi", "MX graph, Function of casadi.gradient, DM in and out", compiled_casadi("MX")),
        ("CasADi", "SX (one scalar node per entry), same", compiled_casadi("SX")),
        ("JAX", "jax.jit(jax.grad(f)), float64", jitted_jax("grad", "vector", check_gradient)),
        ("TensorFlow", "tf.function with a GradientTape", compiled_tensorflow(False)),
        ("TensorFlow", "same, tf.function(jit_compile=True) (XLA)", compiled_tensorflow(True)),
    ]),
    ("3a {steps} eager SGD steps", [
        ("symtape", "GradientTape, Variable.assign_sub", eager_symtape),
        ("SymPy", "no tape", None),
        ("CasADi", "no eager mode", None),
        ("JAX", "un-jitted jax.grad each step, x = x - lr * g", eager_jax),
        ("TensorFlow", "GradientTape, Variable.assign_sub", eager_tensorflow),
    ]),
    ("3b {steps} compiled SGD steps", [
        ("symtape", "st.function step", step_symtape),
        ("SymPy", "no tape", None),
        ("CasADi", "not an optimizer-step tool", None),
        ("JAX", "jax.jit step returning the new x", step_jax),
        ("TensorFlow", "tf.function step", step_tensorflow),
    ]),
    ("4 Hessian, n={hessian}", [
        ("symtape", "st.hessian(f, sparse=True): scipy.sparse, 3n-2 nonzeros", hessian_symtape),
        ("SymPy", "sympy.hessian is dense, n^2 diff calls: impractical", None),
        ("CasADi", "SX casadi.hessian: Function, sparse DM, 3n-2 nonzeros", hessian_casadi),
        ("JAX", "jax.jit(jax.hessian(f)): dense n x n",
         jitted_jax("hessian", "hessian", check_hessian)),
        ("TensorFlow", "tf.function, nested tapes, tape.jacobian: dense",
         hessian_tensorflow(False)),
        ("TensorFlow", "same, tf.function(jit_compile=True) (XLA)", hessian_tensorflow(True)),
    ]),
    ("5 dense Hessian, d={dense[0]}, m={dense[1]}", [
        ("symtape", "st.hessian(x.T A x + sum(softplus(B x))): dense d x d", dense_symtape),
        ("NumPy", "the formula by hand, 2A + (B.T * s(1-s)) @ B (target: symtape <= 2x)",
         dense_by_hand),
        ("JAX", "jax.jit(jax.hessian(f))", dense_jax),
    ]),
    ("6 Newton fit, logistic, d={fit[0]}, m={fit[1]}", [
        ("symtape", "st.optimize.minimize(trust-exact), tracing and compiling included",
         fit_symtape),
        ("SciPy", "trust-exact, value, gradient, Hessian by hand (target: symtape <= 2x)",
         fit_scipy),
    ]),
]


def run_case(tool: str, case, sizes: Sizes, repeat: int, failures: list) -> Timing | str:
    """A Timing, or the text of the row's cells where there is nothing to time."""
    if case is None:
        return NOT_APPLICABLE
    try:
        LOADERS[tool]()
    except ImportError:
        return "not installed"
    if tool == "symtape":
        return case(sizes, repeat)
    try:
        return case(sizes, repeat)
    except Exception as exc:  # another tool's failure is a row, not the end of the run
        failures.append(f"{tool}, {case.__qualname__}: {type(exc).__name__}: {exc}")
        return f"failed [{len(failures)}]"  # the error is printed under the table


def task_rows(title: str, cases: list, sizes: Sizes, repeat: int, tools: set,
              failures: list) -> list:
    rows = []
    ours = None
    for tool, what, case in cases:
        if tool.lower() not in tools:
            continue
        result = run_case(tool, case, sizes, repeat, failures)
        if isinstance(result, str):
            rows.append([title, tool, "", result, "", what])
        else:
            if tool == "symtape":
                ours = result.call
            ratio = f"{result.call / ours:.2f}x" if ours else NOT_APPLICABLE
            once = NOT_APPLICABLE if result.once is None else format_seconds(result.once)
            rows.append([title, tool, once, format_seconds(result.call), ratio, what])
        title = ""  # the title on the task's first row only
    return rows


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in ("symtape", "numpy", "scipy", "sympy", "casadi", "jax", "jaxlib", "tensorflow"):
        module = sys.modules.get(name)
        if module is None:
            continue
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = "?"
        parts.append(f"{name} {version}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, one sample")
    parser.add_argument("--tools", default="sympy,casadi,jax,tensorflow,numpy,scipy",
                        help="tools beside symtape, comma-separated (symtape always runs)")
    parser.add_argument("--tasks", default="",
                        help="task numbers to run, comma-separated (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    chosen = {t.strip() for t in args.tasks.split(",") if t.strip()}
    sizes, repeat = (QUICK, 1) if args.quick else (Sizes(), args.repeat)
    tools = {"symtape"} | {t.strip().lower() for t in args.tools.split(",") if t.strip()}
    rows: list = []
    failures: list = []
    for title, cases in TASKS:
        if chosen and title.split()[0].rstrip("ab") not in chosen:
            continue
        rows += task_rows(title.format(**vars(sizes)), cases, sizes, repeat, tools, failures)
    header = ["task", "tool", "one-time", "per call", "vs symtape", "what is timed"]
    print_columns(header, rows, markdown=args.markdown)
    for number, failure in enumerate(failures, 1):
        print(f"[{number}] {failure}")
    print(f"\nbest of {repeat} (per call: of {calls(repeat)}); {os.cpu_count()} CPU cores; "
          f"{versions()}")


if __name__ == "__main__":
    main()
