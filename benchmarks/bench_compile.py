"""Speed of compiled kernels: derivation + compilation, evaluation, batches, the cache.

Run: ``python benchmarks/bench_compile.py`` (``--repeat N`` for more samples, ``--quick``
for small sizes). Every row prints symtape's time, a baseline timed in the same run, their
ratio and the target. Times are the best of several runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy
from scipy.optimize import rosen_der, rosen_hess, rosen_hess_prod

import symtape as st
from benchlib import best_of, print_table


def rosen_scalar(xs):
    """Extended Rosenbrock written with scalar ops (a Python loop over entries)."""
    total = 0
    for i in range(len(xs) - 1):
        total = total + 100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2
    return total


def rosen_vector(x):
    """Extended Rosenbrock on one vector: whole-array ops."""
    return st.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def point(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 0, 1.2, 1.0) + 0.01 * np.sin(np.arange(n))


def bench_scalar(n: int, repeat: int, rows: list) -> None:
    x0 = point(n)
    xs = [st.Variable(v, name=f"x{i}") for i, v in enumerate(x0)]
    symbols = [sympy.Symbol(f"x{i}", real=True) for i in range(n)]
    st.clear_kernel_cache()
    start = time.perf_counter()
    with st.GradientTape() as tape:
        f = rosen_scalar(xs)
    grads = [g.expr for g in tape.gradient(f, xs)]
    kernel = st.compile(grads, [sympy.Array(symbols)])
    derive_grad = time.perf_counter() - start
    start = time.perf_counter()
    hess = st.hessian(rosen_scalar, sparse=True)
    H = hess(list(x0))
    derive_hess = time.perf_counter() - start
    assert H.nnz == 3 * n - 2 and np.allclose(H.toarray(), rosen_hess(x0))
    assert np.allclose(kernel(x0), rosen_der(x0))
    rows.append((f"scalar n={n}: exact gradient + sparse Hessian + compile", derive_grad + derive_hess,
                 None, f"< 3 s (aim 1 s); gradient {derive_grad:.2f} s, Hessian {derive_hess:.2f} s"))
    lambdified = sympy.lambdify([symbols], grads, cse=True)
    ours = best_of(lambda: kernel(x0), repeat * 20)
    theirs = best_of(lambda: lambdified(x0), repeat * 20)
    rows.append((f"scalar n={n}: compiled gradient vs lambdify(cse=True)", ours, theirs, "<= 0.5x"))
    rows.append((f"scalar n={n}: compiled gradient vs rosen_der", ours,
                 best_of(lambda: rosen_der(x0), repeat * 20), "(scalar code has a cost)"))
    rows.append((f"scalar n={n}: sparse Hessian evaluation vs rosen_hess (dense)",
                 best_of(lambda: hess(list(x0)), repeat * 5),
                 best_of(lambda: rosen_hess(x0), repeat * 5), "-"))


def bench_vector(n: int, repeat: int, rows: list) -> None:
    x0 = point(n)
    v0 = np.cos(np.arange(n))
    grad = st.grad(rosen_vector)
    assert np.allclose(grad(x0), rosen_der(x0))
    rows.append((f"vector n={n}: compiled gradient vs rosen_der", best_of(lambda: grad(x0), repeat),
                 best_of(lambda: rosen_der(x0), repeat), "<= 2x"))
    hvp = st.grad(lambda x, v: st.reduce_sum(st.grad(rosen_vector)(x) * v))
    assert np.allclose(hvp(x0, v0), rosen_hess_prod(x0, v0))
    rows.append((f"vector n={n}: Hessian-vector product vs rosen_hess_prod",
                 best_of(lambda: hvp(x0, v0), repeat),
                 best_of(lambda: rosen_hess_prod(x0, v0), repeat), "<= 3x"))


def bench_sparse_vector(n: int, repeat: int, rows: list) -> None:
    x0 = point(n)
    hess = st.hessian(rosen_vector, sparse=True)
    start = time.perf_counter()
    H = hess(x0)
    build = time.perf_counter() - start
    assert H.nnz == 3 * n - 2 and np.allclose(H.toarray(), rosen_hess(x0))
    rows.append((f"vector n={n}: sparse Hessian evaluation vs rosen_hess (dense)",
                 best_of(lambda: hess(x0), repeat * 5), best_of(lambda: rosen_hess(x0), repeat * 5),
                 f"< 1x (derivation + compile once: {build:.2f} s)"))


def bench_batch(points: int, repeat: int, rows: list) -> None:
    def f(x, y, z):
        return st.sin(x) * st.exp(y) + z * st.log1p(x * x) + y * z

    def by_hand(x, y, z):
        e = np.exp(y)
        value = np.sin(x) * e + z * np.log1p(x * x) + y * z
        return value, (np.cos(x) * e + z * 2 * x / (1 + x * x), np.sin(x) * e + z,
                       np.log1p(x * x) + y)

    rng = np.random.default_rng(0)
    x, y, z = (rng.uniform(-1, 1, points) for _ in range(3))
    vg = st.vmap(st.value_and_grad(f, argnums=(0, 1, 2)))  # traced at a point, one kernel call
    value, grads = vg(x, y, z)
    ref_value, ref_grads = by_hand(x, y, z)
    assert np.allclose(value, ref_value) and all(np.allclose(a, b) for a, b in zip(grads, ref_grads))
    rows.append((f"batch of {points:.0e} points, 3 variables: value + gradient vs NumPy by hand",
                 best_of(lambda: vg(x, y, z), repeat), best_of(lambda: by_hand(x, y, z), repeat),
                 "<= 1x"))


def small_f(x, y):
    """The small two-argument function of the per-call rows."""
    return st.exp(-x * y) * st.sin(x) + x ** 2 * st.log(1 + y ** 2)


def bench_call_overhead(repeat: int, rows: list) -> None:
    """One call of st.value_and_grad at a repeated scalar signature, against lambdify(math),
    CasADi and JAX's jit where installed (per-call overhead, not arithmetic)."""
    x, y = sympy.symbols("x y", real=True)
    expr = sympy.exp(-x * y) * sympy.sin(x) + x ** 2 * sympy.log(1 + y ** 2)
    reference = [expr, sympy.diff(expr, x), sympy.diff(expr, y)]
    by_lambdify = sympy.lambdify([x, y], reference, modules="math", cse=True)
    vg = st.value_and_grad(small_f, argnums=(0, 1))
    vg(0.3, 0.7)  # the trace: timed calls run the kernel, as this checked one does
    value, (dx, dy) = vg(0.3, 0.7)
    assert np.allclose([value, dx, dy], by_lambdify(0.3, 0.7), rtol=1e-14)
    n = 2000 * repeat
    ours = best_of(lambda: vg(0.3, 0.7), 5, number=n)
    rows.append(("small f(x, y): value + gradient per call vs lambdify(math)", ours,
                 best_of(lambda: by_lambdify(0.3, 0.7), 5, number=n), "<= 3 us a call"))
    for name, make in (("CasADi", _casadi_small), ("JAX jit", _jax_small)):
        try:
            theirs = make()
        except ImportError:
            rows.append((f"small f(x, y): value + gradient vs {name} (not installed)", ours, None, "-"))
            continue
        assert np.allclose(_flat(theirs(0.3, 0.7)), by_lambdify(0.3, 0.7), rtol=1e-12)
        rows.append((f"small f(x, y): value + gradient per call vs {name}", ours,
                     best_of(lambda: theirs(0.3, 0.7), 5, number=n // 4), "< 1x"))


def _flat(result) -> np.ndarray:
    """Every number in a nested result (tuples of arrays, CasADi matrices), in order."""
    if isinstance(result, (tuple, list)):
        return np.concatenate([_flat(part) for part in result])
    return np.ravel(np.asarray(result, dtype=float))


def _casadi_small():
    import casadi as ca

    x, y = ca.SX.sym("x"), ca.SX.sym("y")
    f = ca.exp(-x * y) * ca.sin(x) + x ** 2 * ca.log(1 + y ** 2)
    return ca.Function("vg", [x, y], [f, ca.gradient(f, ca.vertcat(x, y))])


def _jax_small():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    vg = jax.jit(jax.value_and_grad(
        lambda x, y: jnp.exp(-x * y) * jnp.sin(x) + x ** 2 * jnp.log(1 + y ** 2), argnums=(0, 1)))
    vg(0.3, 0.7)
    return lambda a, b: jax.block_until_ready(vg(a, b))


def bench_many_variables(n: int, repeat: int, rows: list) -> None:
    """An st.function returning the gradient of Rosenbrock over n scalar Variables (the
    tutorials' style: a tape inside), against lambdify(cse=True) of the same gradient."""
    x0 = point(n)
    xs = [st.Variable(v, name=f"x{i}") for i, v in enumerate(x0)]

    @st.function
    def gradient():
        with st.GradientTape() as tape:
            f = rosen_scalar(xs)
        return tape.gradient(f, xs)

    gradient()  # the trace: timed calls run the kernel, as this checked one does
    assert np.allclose([g.numpy() for g in gradient()], rosen_der(x0))
    symbols = sympy.symbols(f"x0:{n}", real=True)
    with st.GradientTape() as tape:
        f = rosen_scalar(xs)
    exprs = [g.expr for g in tape.gradient(f, xs)]
    by_lambdify = sympy.lambdify([symbols], exprs, cse=True)
    assert np.allclose(by_lambdify(x0), rosen_der(x0))
    rows.append((f"{n} scalar Variables: st.function gradient per call vs lambdify(cse=True)",
                 best_of(gradient, repeat * 4), best_of(lambda: by_lambdify(x0), repeat * 4),
                 "<= 0.5x"))


def bench_cache(repeat: int, rows: list) -> None:
    def first():
        st.clear_kernel_cache()
        st.grad(lambda x: st.reduce_sum(st.sin(x) * x ** 2))(np.ones(3))

    def second():
        st.grad(lambda x: st.reduce_sum(st.sin(x) * x ** 2))(np.ones(3))

    cold = best_of(first, repeat)
    first()
    before = st.kernel_cache_info().hits
    warm = best_of(second, repeat)
    assert st.kernel_cache_info().hits > before
    rows.append(("second compilation of an identical function (cache hit) vs first", warm, cold,
                 "< 1 ms"))


def bench_gpu(n: int, repeat: int, rows: list) -> None:
    """The vector and batch cases on CuPy arrays, against CuPy written by hand."""
    import cupy

    def timed(fn):
        def run():
            fn()
            cupy.cuda.Device().synchronize()
        run()  # warm up: CUDA kernels compile on first use
        return best_of(run, repeat)

    x = cupy.asarray(point(n))
    grad = st.grad(rosen_vector)

    def rosen_der_cupy(v):  # scipy.optimize.rosen_der, on CuPy arrays
        xm, xm_m1, xm_p1 = v[1:-1], v[:-2], v[2:]
        der = cupy.zeros_like(v)
        der[1:-1] = 200 * (xm - xm_m1**2) - 400 * (xm_p1 - xm**2) * xm - 2 * (1 - xm)
        der[0] = -400 * v[0] * (v[1] - v[0] ** 2) - 2 * (1 - v[0])
        der[-1] = 200 * (v[-1] - v[-2] ** 2)
        return der

    assert np.allclose(cupy.asnumpy(grad(x)), cupy.asnumpy(rosen_der_cupy(x)))
    rows.append((f"GPU vector n={n}: compiled gradient vs CuPy by hand", timed(lambda: grad(x)),
                 timed(lambda: rosen_der_cupy(x)), "(GPU)"))
    vg = st.vmap(st.value_and_grad(
        lambda a, b, c: st.sin(a) * st.exp(b) + c * st.log1p(a * a) + b * c, argnums=(0, 1, 2)))
    a, b, c = (cupy.random.uniform(-1, 1, n) for _ in range(3))

    def by_hand():
        e = cupy.exp(b)
        return (cupy.sin(a) * e + c * cupy.log1p(a * a) + b * c,
                (cupy.cos(a) * e + c * 2 * a / (1 + a * a), cupy.sin(a) * e + c,
                 cupy.log1p(a * a) + b))

    rows.append((f"GPU batch of {n:.0e} points: value + gradient vs CuPy by hand",
                 timed(lambda: vg(a, b, c)), timed(by_hand), "(GPU)"))


def bench_gpu_fused(sizes: list[int], repeat: int, rows: list) -> None:
    """Value + gradient of the issue's small f(x, y) at many points: the fused CuPy kernels
    (one ElementwiseKernel per elementwise group) against the same call on the CPU (NumPy
    kernels) and against CuPy by hand (one CuPy call per operation)."""
    import cupy

    from symtape.kernels import cupy_fused

    def synchronized(fn):
        def run():
            fn()
            cupy.cuda.Device().synchronize()
        run()  # warm up: CUDA kernels compile on first use
        return run

    def by_hand(x, y):  # hand-derived, one CuPy call per operation
        e, s, xy = cupy.exp(-x * y), cupy.sin(x), x * x
        log = cupy.log(1 + y * y)
        return e * s + xy * log, (e * cupy.cos(x) - y * e * s + 2 * x * log,
                                  -x * e * s + xy * 2 * y / (1 + y * y))

    vg = st.vmap(st.value_and_grad(small_f, argnums=(0, 1)))
    rng = np.random.default_rng(1)
    for n in sizes:
        x, y = rng.uniform(-1, 1, n), rng.uniform(0.5, 2, n)
        gx, gy = cupy.asarray(x), cupy.asarray(y)
        vg(x, y)  # traced for both devices before timing
        before = cupy_fused.kernel_counts()["launched"]
        value, (dx, dy) = vg(gx, gy)
        launched = cupy_fused.kernel_counts()["launched"] - before
        ref_value, (ref_dx, ref_dy) = by_hand(gx, gy)
        for ours, ref in ((value, ref_value), (dx, ref_dx), (dy, ref_dy)):
            assert np.allclose(cupy.asnumpy(ours), cupy.asnumpy(ref), rtol=1e-12)
        on_gpu = best_of(synchronized(lambda: vg(gx, gy)), repeat)
        rows.append((f"GPU fused f(x, y) value + gradient, {n:.0e} points vs CPU NumPy kernel",
                     on_gpu, best_of(lambda: vg(x, y), max(1, repeat // 2)),
                     f"(GPU; {launched} ElementwiseKernels a call)"))
        rows.append((f"GPU fused f(x, y) value + gradient, {n:.0e} points vs CuPy by hand",
                     on_gpu, best_of(synchronized(lambda: by_hand(gx, gy)), repeat),
                     "< 1x (fewer passes over memory)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--gpu", action="store_true", help="also the GPU cases (needs CuPy)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benchmarks (bench_NAME), e.g. call_overhead")
    args = parser.parse_args()
    quick = args.quick
    benches = {
        "scalar": lambda rows: bench_scalar(100 if quick else 1000, args.repeat, rows),
        "vector": lambda rows: bench_vector(10_000 if quick else 1_000_000, args.repeat, rows),
        "sparse_vector": lambda rows: bench_sparse_vector(200 if quick else 2000, args.repeat,
                                                          rows),
        "batch": lambda rows: bench_batch(10_000 if quick else 1_000_000, args.repeat, rows),
        "cache": lambda rows: bench_cache(args.repeat, rows),
        "call_overhead": lambda rows: bench_call_overhead(args.repeat, rows),
        "many_variables": lambda rows: bench_many_variables(100 if quick else 1000,
                                                            args.repeat, rows),
    }
    if args.gpu:
        benches["gpu"] = lambda rows: bench_gpu(10_000 if quick else 1_000_000, args.repeat,
                                                rows)
        benches["gpu_fused"] = lambda rows: bench_gpu_fused(
            [10_000, 100_000] if quick else [1_000_000, 10_000_000], args.repeat, rows)
    unknown = set(args.only or ()) - set(benches)
    if unknown:
        parser.error(f"--only: no benchmark named {sorted(unknown)}; choose from {list(benches)}")
    rows: list = []
    for name, bench in benches.items():
        if not args.only or name in args.only:
            bench(rows)
    print_table(rows)


if __name__ == "__main__":
    main()
