"""Compiled kernels on a dask.distributed cluster: LocalCluster with two worker processes."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pytest

import symtape as st

da = pytest.importorskip("dask.array", reason='the dask extra: pip install "symtape[dask]"')
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


def _f(x, y, z):
    return st.exp(-(x**2) - y**2) * st.sin(z) + x * y * z


def _gradient_sum(n: int, chunk: int):
    """The lazy sum of all three gradient components of _f over n points in chunks."""
    xs, ys, zs = (da.linspace(-1.0, 1.0, n, chunks=chunk) * s for s in (1.0, 0.5, 2.0))
    gx, gy, gz = st.vmap(st.grad(_f, argnums=(0, 1, 2)))(xs, ys, zs)
    return (gx + gy + gz).sum()


def _expected_gradient_sum(n: int) -> float:
    x = np.linspace(-1.0, 1.0, n)
    y, z = 0.5 * x, 2.0 * x
    e = np.exp(-x**2 - y**2)
    return float(np.sum(-2 * x * e * np.sin(z) + y * z - 2 * y * e * np.sin(z) + x * z
                        + e * np.cos(z) + x * y))


def test_gradients_over_chunks_run_on_the_workers_and_compile_once_per_worker(client):
    from symtape.chunked import kernel_cache_info

    total = _gradient_sum(200_000, 10_000)  # 20 tasks of the gradient kernel
    assert total.compute() == pytest.approx(_expected_gradient_sum(200_000), rel=1e-12)
    processed = client.run(lambda dask_worker: len(dask_worker.data) >= 0)  # both alive
    assert len(processed) == 2
    caches = client.run(kernel_cache_info)
    builds = sorted(cache.misses for cache in caches.values())
    assert builds[-1] >= 1 and all(b <= 2 for b in builds)  # not one build per task
    assert total.compute() == pytest.approx(_expected_gradient_sum(200_000), rel=1e-12)
    assert sorted(c.misses for c in client.run(kernel_cache_info).values()) == builds


def test_a_fit_over_chunked_data_on_the_cluster_matches_the_in_memory_fit(client):
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 3.0, 4_000)
    y = 2.0 * np.exp(-1.3 * t) + 0.5 + 0.01 * rng.normal(size=t.size)

    def squares(p, t, y):  # a least-squares fit: a sum over the data's rows
        return st.reduce_sum((p[0] * st.exp(-p[1] * t) + p[2] - y) ** 2)

    in_memory = st.optimize.minimize(squares, [1.0, 1.0, 0.0], args=(t, y), method="trust-exact")
    chunked = st.optimize.minimize(squares, [1.0, 1.0, 0.0], method="trust-exact",
                                   args=(da.from_array(t, chunks=500), da.from_array(y, chunks=500)))
    np.testing.assert_allclose(chunked.x, in_memory.x, rtol=1e-9)
    np.testing.assert_allclose(chunked.x, [2.0, 1.3, 0.5], atol=0.02)


def test_the_scale_out_example_on_the_cluster(client):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "scale_out.py"
    spec = importlib.util.spec_from_file_location("example_scale_out", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    value, _, tasks = example.gradient_over_points(400_000, 50_000)
    assert tasks == 8 and value == pytest.approx(example.exact_gradient_sum(400_000), rel=1e-12)
    t, y = client.persist(example.make_data(8_000, 2_000))
    chunked = example.fit(t, y)
    in_memory = example.fit(t.compute(), y.compute())  # the same data, in one process
    np.testing.assert_allclose(chunked.x, in_memory.x, rtol=1e-9)
    np.testing.assert_allclose(chunked.x, example.TRUE, atol=0.01)


def _exit_soon():
    """Kill this worker's process a moment after returning (a crash, not a clean close)."""
    threading.Timer(0.05, os._exit, (1,)).start()


def test_a_worker_killed_mid_computation_does_not_change_the_result(client):
    n, chunk = 12_000_000, 100_000  # 120 tasks, seconds of work: the kill lands mid-way
    future = client.compute(_gradient_sum(n, chunk))
    while not any(client.processing().values()):  # wait for the workers to start on it
        time.sleep(0.01)
    assert not future.done()
    victim = sorted(client.scheduler_info()["workers"])[0]
    client.run(_exit_soon, workers=[victim])  # the nanny then starts a new worker
    assert future.result(timeout=120) == pytest.approx(_expected_gradient_sum(n), rel=1e-11)
    # the kill lands 0.05 s after _exit_soon returned, and the scheduler notices it later
    # still: on a busy machine possibly after the result, so wait for it rather than race it
    deadline = time.monotonic() + 60
    while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim not in client.scheduler_info()["workers"]
