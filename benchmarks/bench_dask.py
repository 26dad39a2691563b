"""Scaling out: a compiled gradient over 10^8 points on a Dask LocalCluster.

Run: ``python benchmarks/bench_dask.py`` (``--points N``, ``--chunk N``, ``--workers N``,
``--repeat N``; ``--quick`` for a smoke run at 10^6 points). Needs the dask extra.

The gradient of a 3-variable function is evaluated at every point and its three components
summed (so nothing of size N is gathered): single-process NumPy written by hand (the
baseline), symtape's compiled ``st.vmap(st.grad(f))`` on NumPy arrays in one process, and the same on
dask arrays on a LocalCluster of worker processes (one thread each). The target: the
cluster time at most 1.5x the NumPy time divided by the number of workers, and memory per
worker bounded by the chunk size, not by N.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource

import numpy as np

import symtape as st
from benchlib import best_of, print_table


def f(x, y, z):
    return st.exp(-(x**2) - y**2) * st.sin(z) + x * y * z


# mapped over the points: traced and compiled at one (scalar) point, one kernel call per
# array (per chunk on dask arrays)
GRADIENT = st.vmap(st.grad(f, argnums=(0, 1, 2)))


def numpy_gradient_sum(n: int) -> float:
    """The three partial derivatives of f at n points, summed, in NumPy written by hand."""
    x = np.linspace(-1.0, 1.0, n)
    y, z = 0.5 * x, 2.0 * x
    e = np.exp(-x * x - y * y)
    s = e * np.sin(z)
    return float(np.sum(-2 * x * s + y * z) + np.sum(-2 * y * s + x * z)
                 + np.sum(e * np.cos(z) + x * y))


def symtape_gradient_sum(n: int) -> float:
    x = np.linspace(-1.0, 1.0, n)
    gx, gy, gz = GRADIENT(x, 0.5 * x, 2.0 * x)
    return float(gx.sum() + gy.sum() + gz.sum())


def dask_gradient_sum(n: int, chunk: int):
    import dask.array as da

    x = da.linspace(-1.0, 1.0, n, chunks=chunk)
    gx, gy, gz = GRADIENT(x, 0.5 * x, 2.0 * x)
    return gx.sum() + gy.sum() + gz.sum()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=10**8)
    parser.add_argument("--chunk", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10^6 points, one sample")
    args = parser.parse_args()
    n, chunk, repeat = args.points, args.chunk, args.repeat
    if args.quick:
        n, chunk, repeat = 10**6, 100_000, 1

    from symtape.chunked import require_dask

    require_dask()
    import distributed

    # the cluster first: its workers then start from a small process, as on a real cluster
    # CRITICAL: the comms closing at shutdown log tracebacks at ERROR that mean nothing here
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as client:
        idle_rss = client.run(peak_rss_mb)
        on_cluster = float(dask_gradient_sum(n, chunk).compute())
        cluster_time = best_of(lambda: dask_gradient_sum(n, chunk).compute(), repeat)
        worker_rss = client.run(peak_rss_mb)

    expected = numpy_gradient_sum(n)
    assert np.isclose(on_cluster, expected, rtol=1e-9)
    numpy_time = best_of(lambda: numpy_gradient_sum(n), repeat)
    numpy_rss = peak_rss_mb()
    symtape_time = best_of(lambda: symtape_gradient_sum(n), repeat)
    assert np.isclose(symtape_gradient_sum(n), expected, rtol=1e-9)

    ideal = numpy_time / args.workers
    print(f"gradient of a 3-variable function at {n:.0e} points, chunks of {chunk:.0e}, "
          f"{args.workers} workers ({os.cpu_count()} CPU cores), best of {repeat}")
    print_table([
        ("symtape vmap(grad), one process (vs NumPy)", symtape_time, numpy_time, "-"),
        (f"symtape on dask, {args.workers}-worker LocalCluster (vs NumPy / {args.workers})",
         cluster_time, ideal, "<= 1.5"),
    ])
    chunk_mb = chunk * 8 / 2**20
    print(f"peak memory: NumPy in one process {numpy_rss:.0f} MB; each worker "
          f"{', '.join(f'{v:.0f}' for v in worker_rss.values())} MB (idle: "
          f"{', '.join(f'{v:.0f}' for v in idle_rss.values())} MB) "
          f"(a chunk of one array: {chunk_mb:.0f} MB; all {n:.0e} points of one array: "
          f"{n * 8 / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
