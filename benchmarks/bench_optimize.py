"""Speed of the optimizers and the SciPy bridge.

Run: ``python benchmarks/bench_optimize.py`` (``--repeat N``). Each row prints symtape's
time, a baseline timed in the same run, their ratio and the target. TensorFlow and JAX
rows are printed only where those are installed (they are never dependencies).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy
from scipy.optimize import minimize as scipy_minimize
from scipy.optimize import rosen, rosen_der, rosen_hess_prod

import symtape as st
from benchlib import best_of, print_table


def sgd_eager():
    x = st.Variable(0.0, name="x")
    opt = st.optimizers.SGD(learning_rate=0.01)
    for _ in range(1000):
        opt.minimize(lambda: x**2 - 2 * x + 1, [x])
    assert abs(float(x.numpy()) - 1) < 1e-5


def adam_eager():
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for _ in range(1000):
        opt.minimize(lambda: w**2 - 10 * w + 25, [w])
    assert abs(float(w.numpy()) - 5) < 1e-3


def hand_written_sgd():
    x = 0.0
    for _ in range(1000):
        x -= 0.01 * (2 * x - 2)
    return x


def sgd_compiled_loop():
    """The whole 1000-step loop in one st.function: traced once, then one kernel call."""
    x = st.Variable(0.0, name="x")
    opt = st.optimizers.SGD(learning_rate=0.01)

    @st.function
    def train():
        for _ in range(1000):
            opt.minimize(lambda: x**2 - 2 * x + 1, [x])
        return x.value()

    start = time.perf_counter()
    train()
    first = time.perf_counter() - start
    x.assign(0.0)
    return first, (lambda: train()), x


def sgd_compiled_step():
    x = st.Variable(0.0, name="x")
    opt = st.optimizers.SGD(learning_rate=0.01)
    step = st.function(lambda: opt.minimize(lambda: x**2 - 2 * x + 1, [x]))

    def loop():
        for _ in range(1000):
            step()

    return loop


def rosen_vector(x):
    return st.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def bench_bridge(rows: list) -> None:
    x0 = np.tile([-1.2, 1.0], 500)
    st.clear_kernel_cache()
    start = time.perf_counter()
    ours = st.optimize.minimize(rosen_vector, x0, method="Newton-CG", tol=1e-12)
    total = time.perf_counter() - start
    start = time.perf_counter()
    theirs = scipy_minimize(rosen, x0, jac=rosen_der, hessp=rosen_hess_prod, method="Newton-CG",
                            tol=1e-12)
    baseline = time.perf_counter() - start
    assert np.abs(ours.x - 1).max() < 1e-8 and np.abs(theirs.x - 1).max() < 1e-8
    rows.append(("Rosenbrock n=1000, Newton-CG: derive + compile + solve (to 1e-8)", total,
                 baseline, f"< baseline + 3 s ({ours.nit} vs {theirs.nit} iterations)"))


def logistic_data(rows: int = 2000, features: int = 64):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features))
    y = (rng.random(rows) < 1 / (1 + np.exp(-X @ (0.3 * rng.normal(size=features))))) * 1.0
    return X, y


def logistic_loss(w, X, y):
    z = st.matmul(X, w)
    return st.reduce_sum(st.softplus(z) - y * z) + 0.5 * st.reduce_sum(w * w)


def logistic_by_hand(X, y):
    """The same loss, gradient and Hessian written with NumPy (the baseline)."""
    def fun(w):
        z = X @ w
        p = 1 / (1 + np.exp(-z))
        return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * w @ w, X.T @ (p - y) + w

    def hess(w):
        p = 1 / (1 + np.exp(-(X @ w)))
        return X.T @ ((p * (1 - p))[:, None] * X) + np.eye(X.shape[1])

    return fun, hess


def bench_logistic(repeat: int, rows: list) -> None:
    """trust-exact logistic regression, X of 2000 x 64: value, gradient and Hessian come from
    one trace, one call a point (the trace replayed; a kernel compiled from it once a fit
    runs long); a first fit starts with every cache empty, a repeated fit with them warm."""
    X, y = logistic_data()
    w0 = np.zeros(X.shape[1])

    def ours():
        return st.optimize.minimize(logistic_loss, w0, args=(X, y), method="trust-exact")

    def theirs():
        fun, hess = logistic_by_hand(X, y)
        return scipy_minimize(fun, w0, jac=True, hess=hess, method="trust-exact")

    def cold():  # nothing traced, compiled or derived before: each timing is a first fit
        st.clear_kernel_cache()
        sympy.core.cache.clear_cache()

    cold()
    first = ours()
    reference = theirs()
    assert first.success and np.allclose(first.x, reference.x, atol=1e-6)
    baseline = best_of(theirs, repeat)
    rows.append(("logistic regression 2000x64, trust-exact: first fit (trace + compile + solve)",
                 best_of(ours, repeat, cold), baseline,
                 "<= 2x (baseline: SciPy + derivatives by hand)"))
    rows.append(("logistic regression 2000x64, trust-exact: repeated fit", best_of(ours, repeat),
                 baseline, "<= 2x"))
    bench_logistic_jax(X, y, w0, repeat, rows, baseline)


def bench_logistic_jax(X, y, w0, repeat: int, rows: list, baseline: float) -> None:
    try:
        import jax
    except ImportError:
        return
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def loss(w):
        z = X @ w
        return jnp.sum(jax.nn.softplus(z) - y * z) + 0.5 * w @ w

    def fit():  # jit and trace included, as symtape's first fit includes its own
        value_and_grad, hess = jax.jit(jax.value_and_grad(loss)), jax.jit(jax.hessian(loss))
        return scipy_minimize(lambda w: tuple(map(np.asarray, value_and_grad(w))), w0, jac=True,
                              hess=lambda w: np.asarray(hess(w)), method="trust-exact")

    rows.append(("JAX + SciPy: the same fit, jit included (for comparison)", best_of(fit, repeat),
                 baseline, "-"))


def bench_other_frameworks(repeat: int, rows: list) -> None:
    bench_jax(repeat, rows)
    try:
        import tensorflow as tf
    except ImportError:
        return

    def tf_sgd():
        x = tf.Variable(0.0)
        opt = tf.keras.optimizers.SGD(learning_rate=0.01)
        for _ in range(1000):
            opt.minimize(lambda: x**2 - 2 * x + 1, [x])

    rows.append(("TensorFlow eager: SGD, 1000 steps (for comparison)", best_of(tf_sgd, repeat),
                 None, "-"))


def bench_jax(repeat: int, rows: list) -> None:
    try:
        import jax
    except ImportError:
        return

    @jax.jit
    def loop(x):
        step = jax.grad(lambda v: v**2 - 2 * v + 1)
        return jax.lax.fori_loop(0, 1000, lambda i, v: v - 0.01 * step(v), x)

    loop(0.0).block_until_ready()  # compile
    rows.append(("JAX: jit(fori_loop) of 1000 SGD steps (for comparison)",
                 best_of(lambda: loop(0.0).block_until_ready(), repeat), None, "-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows: list = []
    floor = best_of(hand_written_sgd, args.repeat)
    rows.append(("SGD(0.01), 1000 eager steps of x**2 - 2x + 1", best_of(sgd_eager, args.repeat),
                 floor, "<= 0.1 s (baseline: pure Python by hand)"))
    rows.append(("Adam(0.1), 1000 eager steps of w**2 - 10w + 25",
                 best_of(adam_eager, args.repeat), floor, "<= 0.15 s"))
    rows.append(("SGD, 1000 calls of a compiled step (st.function)",
                 best_of(sgd_compiled_step(), args.repeat), floor, "-"))
    first, call, _ = sgd_compiled_loop()
    rows.append(("SGD, the 1000-step loop in one st.function: a call", best_of(call, args.repeat),
                 floor, f"<= tf.function's 8 ms (trace + compile once: {first:.2f} s)"))
    bench_bridge(rows)
    bench_logistic(args.repeat, rows)
    bench_other_frameworks(args.repeat, rows)
    print_table(rows)


if __name__ == "__main__":
    main()
