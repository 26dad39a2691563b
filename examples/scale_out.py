"""Scaling out with Dask: a gradient over 10^8 points, and a fit to chunked data, on a cluster.

A ``dask.distributed`` LocalCluster (worker processes on this machine) stands in for a real
cluster: point ``Client`` at a scheduler's address instead and the same code runs there.

1. **A gradient over 10^8 points.** ``st.vmap(st.grad(f))`` is compiled once, at a point;
   mapped over dask arrays it returns lazy dask arrays, one task per chunk, run by the workers (the
   kernel travels as generated source and is compiled once per worker). The sum of the
   result is Dask's tree reduction: no array of 10^8 entries ever exists in one process.
2. **A least-squares fit to chunked data.** The data (times and noisy observations of
   ``a exp(-b t) + c``) live in dask arrays; the loss is the sum of squared residuals over
   the data's rows. ``st.optimize.minimize`` evaluates its value, gradient and exact Hessian
   chunk by chunk on the workers and adds them up, so SciPy's ``trust-exact`` sees the
   whole-data derivatives without the data ever being gathered.

Run: ``python examples/scale_out.py`` (``--small``: 10^6 points and less data;
``--workers N``; ``--scheduler ADDRESS`` to use a running cluster instead of a local one).
Needs the dask extra: ``python -m pip install "symtape[dask]"``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

import symtape as st
from symtape.chunked import require_dask

TRUE = np.array([2.0, 1.3, 0.5])  # a, b, c


def f(x, y, z):
    return st.exp(-(x**2) - y**2) * st.sin(z) + x * y * z


def gradient_over_points(n: int, chunk: int) -> tuple[float, float, int]:
    """The sum of f's three partial derivatives over n points in chunks: (sum, seconds, tasks)."""
    da = require_dask()
    # mapped over the points: traced at one point, run block by block over the chunks
    gradient = st.vmap(st.grad(f, argnums=(0, 1, 2)))
    x = da.linspace(-1.0, 1.0, n, chunks=chunk)
    gx, gy, gz = gradient(x, 0.5 * x, 2.0 * x)  # lazy: nothing computed yet
    total = gx.sum() + gy.sum() + gz.sum()
    start = time.perf_counter()
    value = float(total.compute())
    return value, time.perf_counter() - start, x.npartitions


def exact_gradient_sum(n: int) -> float:
    """The same sum from the hand-derived partial derivatives (in NumPy, for checking)."""
    x = np.linspace(-1.0, 1.0, n)
    y, z = 0.5 * x, 2.0 * x
    e = np.exp(-x * x - y * y)
    return float(np.sum(-2 * x * e * np.sin(z) + y * z - 2 * y * e * np.sin(z) + x * z
                        + e * np.cos(z) + x * y))


def squared_residuals(p, t, y):
    """The least-squares loss: a sum over the data's rows (chunks add up)."""
    return st.reduce_sum((p[0] * st.exp(-p[1] * t) + p[2] - y) ** 2)


def make_data(rows: int, chunk: int, seed: int = 0):
    """Times and noisy observations as dask arrays, generated chunk by chunk on the workers."""
    da = require_dask()
    t = da.linspace(0.0, 3.0, rows, chunks=chunk)
    noise = da.random.default_rng(seed).normal(0.0, 0.01, size=rows, chunks=chunk)
    return t, TRUE[0] * da.exp(-TRUE[1] * t) + TRUE[2] + noise


def fit(t, y):
    """``trust-exact`` on the chunk-summed value, gradient and Hessian."""
    return st.optimize.minimize(squared_residuals, [1.0, 1.0, 0.0], args=(t, y),
                                method="trust-exact")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10^6 points, less data (quick)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--scheduler", help="a running cluster's address (tcp://host:8786)")
    args = parser.parse_args(argv)
    require_dask()
    import distributed

    n, chunk = (10**6, 250_000) if args.small else (10**8, 2_000_000)
    rows, row_chunk = (20_000, 5_000) if args.small else (2_000_000, 250_000)
    if args.scheduler:
        client, cluster = distributed.Client(args.scheduler), None
    else:
        # CRITICAL: comms closing at shutdown log tracebacks (at ERROR) that mean nothing
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
        client = distributed.Client(cluster)
    try:
        workers = len(client.scheduler_info()["workers"])
        value, seconds, tasks = gradient_over_points(n, chunk)
        print(f"sum of the gradient of f at {n:.0e} points: {value:.10g} "
              f"({tasks} chunks on {workers} workers, {seconds:.2f} s)")
        if args.small:  # the check needs all points in one process: only at the small size
            print(f"  from the hand-derived formula: {exact_gradient_sum(n):.10g}")
        t, y = client.persist(make_data(rows, row_chunk))  # held on the workers, chunk by chunk
        result = fit(t, y)
        print(f"least squares over {rows:.0e} rows in {t.npartitions} chunks: a, b, c = "
              f"{np.round(result.x, 4).tolist()} (true {TRUE.tolist()}), {result.nit} "
              f"trust-exact iterations, loss {result.fun:.6g}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
