"""Speed of the core tape: recording, numeric gradients, exact closed forms.

Run: ``python benchmarks/bench_tape.py`` (add ``--repeat N`` for more samples). Every row
prints symtape's time, a baseline timed in the same run, their ratio, and the target.
Times are the best of several runs (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse

import numpy as np
import sympy

import symtape as st
from benchlib import best_of, format_seconds


def rosenbrock(xs):
    """Extended (chained) Rosenbrock, as scipy.optimize.rosen, on scalars or a vector."""
    total = 0
    for i in range(len(xs) - 1):
        total = total + 100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2
    return total


def scalar_variables(n: int):
    return [st.Variable(1.2 if i % 2 == 0 else 1.0, name=f"x{i}") for i in range(n)]


def record_and_gradient(xs):
    with st.GradientTape() as tape:
        f = rosenbrock(xs)
    return tape.gradient(f, xs)


def hand_written_gradient(x: list[float]) -> list[float]:
    """The floor for the scalar case: Rosenbrock's gradient by hand, in pure Python."""
    n = len(x)
    g = [0.0] * n
    for i in range(n - 1):
        u = x[i + 1] - x[i] ** 2
        g[i] += -400 * x[i] * u - 2 * (1 - x[i])
        g[i + 1] += 200 * u
    return g


def bench_scalar(repeat: int, rows: list) -> None:
    xs = scalar_variables(1000)
    t_grad = best_of(lambda: record_and_gradient(xs), repeat)
    point = [float(v) for v in xs]
    t_hand = best_of(lambda: hand_written_gradient(point), repeat)
    rows.append(("Rosenbrock n=1000 scalars: record + gradient", t_grad,
                 "hand-written pure Python gradient", t_hand, "< 0.2 s"))

    def exact_forms():
        grads = record_and_gradient(xs)
        return [g.expr for g in grads]

    t_expr = best_of(exact_forms, max(1, repeat // 3))
    rows.append(("Rosenbrock n=1000: record + gradient + all 1000 .expr", t_expr,
                 "record + numeric gradient only", t_grad, "< 2 s"))

    small = scalar_variables(100)
    symbols = sympy.symbols("x0:100", real=True)
    f_sym = rosenbrock(symbols)
    # both start from a cold SymPy cache: a second sympy.diff run would find its results cached
    cold = sympy.core.cache.clear_cache
    t_diff = best_of(lambda: [sympy.diff(f_sym, s) for s in symbols], max(2, repeat // 2), cold)
    t_ours = best_of(lambda: [g.expr for g in record_and_gradient(small)], repeat, cold)
    rows.append(("n=100: record + gradient + all .expr", t_ours,
                 "[sympy.diff(f, xi) for xi in xs]", t_diff, "<= 0.02x (50x faster)"))


def bench_vector(repeat: int, rows: list) -> None:
    from scipy.optimize import rosen_der

    rng = np.random.default_rng(0)
    x = st.Variable(rng.uniform(-1, 2, 10**6), name="x")

    def gradient():
        with st.GradientTape() as tape:
            f = st.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        return tape.gradient(f, x)

    point = x.numpy()
    assert np.allclose(gradient().numpy(), rosen_der(point), rtol=1e-12)
    t_ours = best_of(gradient, repeat)
    t_scipy = best_of(lambda: rosen_der(point), repeat)
    rows.append(("Rosenbrock one Variable, n=10^6: record + gradient", t_ours,
                 "scipy.optimize.rosen_der", t_scipy, "<= 3x"))


def bench_eager_loop(repeat: int, rows: list) -> None:
    def symtape_loop():
        x = st.Variable(0.0)
        for _ in range(1000):
            with st.GradientTape() as tape:
                y = x**2 - 2 * x + 1
            x.assign_sub(0.01 * tape.gradient(y, x))
        return float(x)

    def python_loop():
        x = 0.0
        for _ in range(1000):
            x -= 0.01 * (2 * x - 2)
        return x

    assert abs(symtape_loop() - python_loop()) < 1e-12
    t_ours = best_of(symtape_loop, repeat)
    t_floor = best_of(python_loop, repeat)
    rows.append(("eager loop, 1000 x (tape + gradient + assign_sub)", t_ours,
                 "pure Python with the derivative by hand", t_floor, "<= 0.1 s"))
    for name, fn in _other_frameworks():
        rows.append((f"  (for reference) {name}", best_of(fn, max(1, repeat // 3)),
                     "-", float("nan"), "-"))


def _other_frameworks():
    """The same loop in TensorFlow/PyTorch when installed (never a dependency)."""
    try:
        import torch

        def torch_loop():
            x = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
            for _ in range(1000):
                y = x**2 - 2 * x + 1
                (g,) = torch.autograd.grad(y, x)
                with torch.no_grad():
                    x -= 0.01 * g
            return x

        yield "PyTorch eager", torch_loop
    except ImportError:
        pass
    try:
        import tensorflow as tf

        def tf_loop():
            x = tf.Variable(0.0)
            for _ in range(1000):
                with tf.GradientTape() as tape:
                    y = x**2 - 2 * x + 1
                x.assign_sub(0.01 * tape.gradient(y, x))

        yield "TensorFlow eager", tf_loop
    except ImportError:
        pass


def bench_recording(repeat: int, rows: list) -> None:
    def record(n: int):
        xs = [st.Variable(1.0) for _ in range(n)]
        with st.GradientTape():
            total = xs[0]
            for x in xs[1:]:
                total = total + x * x
        return total

    per_term = {}
    for n in (1_000, 2_000, 5_000, 10_000):
        per_term[n] = best_of(lambda: record(n), repeat) / n
    for n, t in per_term.items():
        rows.append((f"recording {n:>6,} accumulated terms, time per term", t,
                     "per term at 1,000 terms", per_term[1_000], "flat"))


def bench_recurrence(repeat: int, rows: list) -> None:
    """``.expr`` of a recurrence must be linear in its length (SymPy's own evaluation of
    ``sin(u)`` walks ``u``: quadratic, then a RecursionError, before symtape built it)."""
    def closed_form(steps: int):
        y = x = st.Variable(0.5, name="x")
        for _ in range(steps):
            y = st.sin(y) * 0.999 + 0.001
        return y.expr

    t_long = best_of(lambda: closed_form(1000), max(1, repeat // 3))
    t_short = best_of(lambda: closed_form(100), repeat)
    rows.append(("recurrence y = sin(y)*0.999 + 0.001, 1000 steps: record + .expr", t_long,
                 "10 x the 100-step one (linear scaling)", 10 * t_short, "<= 1.5x"))


def _sin_step(y, sin):
    return sin(y) * 0.999 + 0.001


def bench_recurrence_gradient(repeat: int, rows: list) -> None:
    """Gradient ``.expr`` of an n-step recurrence: linear in n (chain-rule products kept
    nested, symtape.core.deepforms), against ``sympy.diff`` of the same unrolled expression; the
    Hessian's ``.expr`` (linear too) against the gradient's."""
    from symtape.core.symbolic import recursion_headroom

    x_sym = sympy.Symbol("x", real=True)
    cold = sympy.core.cache.clear_cache

    def gradient_expr(steps: int):
        x = st.Variable(0.5, name="x")
        with st.GradientTape() as tape:
            y = x
            for _ in range(steps):
                y = _sin_step(y, st.sin)
        return tape.gradient(y, x).expr

    def hessian_expr(steps: int):
        x = st.Variable(0.5, name="x")
        with st.GradientTape() as outer:
            with st.GradientTape() as inner:
                y = x
                for _ in range(steps):
                    y = _sin_step(y, st.sin)
            g = inner.gradient(y, x)
        return outer.gradient(g, x).expr

    for steps in (40, 160, 400):
        t_ours = best_of(lambda: gradient_expr(steps), repeat, cold)
        t_hessian = best_of(lambda: hessian_expr(steps), repeat, cold)
        with recursion_headroom():  # the unrolled tree is 3 levels a step
            y_sym = x_sym
            for _ in range(steps):
                y_sym = _sin_step(y_sym, sympy.sin)
            try:  # it grows as n**3 (160 steps: about 40 s): one run
                t_diff = best_of(lambda: sympy.diff(y_sym, x_sym), 1, cold)
                base = "sympy.diff of the unrolled expression"
            except RecursionError:
                t_diff = float("nan")
                base = "sympy.diff of the unrolled expression: RecursionError (10,000 frames)"
        rows.append((f"recurrence, {steps} steps: record + gradient + .expr", t_ours,
                     base, t_diff, "linear in steps"))
        rows.append((f"recurrence, {steps} steps: record + Hessian + .expr", t_hessian,
                     "record + gradient + .expr (the same run)", t_ours, "a constant ratio"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows: list = []
    bench_scalar(args.repeat, rows)
    bench_vector(args.repeat, rows)
    bench_eager_loop(args.repeat, rows)
    bench_recording(args.repeat, rows)
    bench_recurrence(args.repeat, rows)
    bench_recurrence_gradient(args.repeat, rows)
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'symtape':>11}  {'baseline':>11}  {'ratio':>8}  "
          f"{'target':<22}baseline (ratio = symtape / baseline)")
    for name, ours, base_name, base, target in rows:
        ratio = ours / base if base == base and base > 0 else float("nan")
        print(f"{name:<{width}}  {format_seconds(ours):>11}  {format_seconds(base):>11}  {ratio:>7.3f}x  "
              f"{target:<22}{base_name}")


if __name__ == "__main__":
    main()
