"""Speed of the optimizers and the SciPy bridge.

Run: ``python benchmarks/bench_optimize.py`` (``--repeat N``). Each row prints symtape's
time, a baseline timed in the same run, their ratio and the target. TensorFlow and JAX
rows are printed only where those are installed (they are never dependencies).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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
    bench_other_frameworks(args.repeat, rows)
    print_table(rows)


if __name__ == "__main__":
    main()
