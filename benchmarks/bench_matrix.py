"""How long ``.matrix_expr`` takes for each row of the matrix-calculus table, at two data sizes.

The target (issue 18) is at most 50 ms per row whatever the size of the data: a matrix form
never looks at the entries. Every timing starts with SymPy's cache empty (as a user's first
call does); the last row is the first ``.matrix_expr`` in a new Python process, which also
pays SymPy's one-time imports. The baseline column is ``.expr``, the entrywise closed form of
the same derivative, timed in the same run at the small size only (at the large size it would
build tens of thousands of formulas).

Run: ``python benchmarks/bench_matrix.py`` (``--quick``: fewer repeats, smaller sizes).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

import numpy as np
import sympy

import symtape as st
from benchlib import best_of, print_table


def _rows(m: int, d: int, seed: int = 0) -> list:
    """``(name, f, wrt, hessian)`` per table row; data of ``m`` samples and ``d`` features."""
    rng = np.random.default_rng(seed)

    def data(name, *shape):
        return st.constant(rng.normal(size=shape), name=name)

    def var(name, *shape):
        return st.Variable(rng.normal(size=shape), name=name)

    A, b, x, S = data("A", m, d), data("b", m), var("x", d), data("S", d, d)
    X, y, w = data("X", m, d), st.constant(rng.random(m) > 0.5, st.float64, name="y"), var("w", d)
    W, v, t = var("W", m, d), data("v", d), st.constant(np.eye(m)[0], name="t")
    W1, W2, u = var("W1", m, d), var("W2", 4, m), data("u", 4)
    B, C, Xm = data("B", 5, 3), data("C", m, 3), var("Xm", d, 5)
    lam = st.constant(0.1, name="lam")
    return [
        ("|Ax - b|^2", lambda: st.reduce_sum(st.square(A @ x - b)), x, True),
        ("|Ax - b|^2 + lam |x|^2",
         lambda: st.reduce_sum(st.square(A @ x - b)) + lam * st.reduce_sum(x * x), x, True),
        ("x.T S x", lambda: x @ (S @ x), x, True),
        ("sum softplus(Xw) - y.T X w",
         lambda: st.reduce_sum(st.softplus(X @ w)) - st.reduce_sum(y * (X @ w)), w, True),
        ("log sum exp(Wv) - t.T W v",
         lambda: st.log(st.reduce_sum(st.exp(W @ v))) - st.reduce_sum(t * (W @ v)), W, False),
        ("|W2 tanh(W1 v) - u|^2", lambda: st.reduce_sum(st.square(W2 @ st.tanh(W1 @ v) - u)),
         W1, False),
        ("x.T S x / x.T x", lambda: (x @ (S @ x)) / (x @ x), x, True),
        ("|A Xm B - C|_F^2", lambda: st.reduce_sum(st.square(A @ Xm @ B - C)), Xm, False),
        ("sum Xm o (S Xm)", lambda: st.reduce_sum(Xm * (S @ Xm)), Xm, False),
    ]


def _cold() -> None:
    """Every timing starts with SymPy's cache empty: a user's first ``.matrix_expr`` (or
    ``.expr``) finds nothing there, and a repeat would find its own results."""
    sympy.core.cache.clear_cache()


def _derivatives(f, wrt, hessian: bool) -> list:
    with st.GradientTape(persistent=True) as tape:
        value = f()
    return [tape.gradient(value, wrt)] + ([tape.hessian(value, wrt)] if hessian else [])


def _entrywise_seconds(f, wrt, hessian: bool, index: int, repeat: int) -> float:
    """The baseline: seconds to build ``.expr`` of a fresh derivative (it is memoized once
    built); 0 (no baseline) where SymPy cannot build it."""
    fresh = []

    def setup():
        fresh[:] = _derivatives(f, wrt, hessian)
        _cold()

    try:
        return best_of(lambda: fresh[index].expr, repeat, setup=setup)
    except RecursionError:  # SymPy's tanh of some float expressions recurses without end
        return 0.0


# the first .matrix_expr in a fresh interpreter: SymPy then imports what its first sums of
# matrix expressions need (sympy.tensor, sympy.combinatorics), once per process
_FIRST_CALL = """
import time
from bench_matrix import _derivatives, _rows
name, f, wrt, hessian = _rows({m}, {d})[{row}]
result = _derivatives(f, wrt, hessian)[0]
start = time.perf_counter()
result.matrix_expr
print(time.perf_counter() - start)
"""


def _first_in_process(m: int, d: int, row: int, repeat: int) -> float:
    """Seconds of the first ``.matrix_expr`` (a gradient) in a new Python process (best of
    ``repeat`` processes)."""
    here = pathlib.Path(__file__).resolve().parent
    code = _FIRST_CALL.format(m=m, d=d, row=row)
    # the child imports the symtape this process runs, wherever that is
    package = str(pathlib.Path(st.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [package] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], cwd=here, env=env,
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.split()[-1]))
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args(argv)
    repeat = 2 if args.quick else 5
    small, large = ((6, 3), (200, 20)) if args.quick else ((6, 3), (2000, 64))
    table = []
    for (name, f, wrt, hessian), (_, f_big, wrt_big, _) in zip(_rows(*small), _rows(*large)):
        for index, (kind, ours, big) in enumerate(zip(
                ("gradient", "Hessian"), _derivatives(f, wrt, hessian),
                _derivatives(f_big, wrt_big, hessian))):
            baseline = _entrywise_seconds(f, wrt, hessian, index, repeat)
            for m, result, base in ((small[0], ours, baseline), (large[0], big, 0)):
                seconds = best_of(lambda: result.matrix_expr, repeat, setup=_cold)
                table.append((f"{name}: {kind}, m={m}", seconds, base, "<= 50 ms"))
    logistic = 3  # the table's row of the logistic loss
    table.append((f"{_rows(*large)[logistic][0]}: gradient, m={large[0]}, the first "
                  ".matrix_expr in a new process", _first_in_process(*large, logistic, repeat),
                  0, "<= 50 ms"))
    print("matrix_expr per row of the table, SymPy's cache emptied before each timing "
          "(baseline: .expr of the same result, small size)")
    print_table(table)


if __name__ == "__main__":
    main()
