"""The benchmark scripts still run (a smoke run at small sizes; timings are not asserted)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


# what the table must show: symtape's own row (ratio 1) in the comparison, times in the other
@pytest.mark.parametrize("script, shows", [("bench_compare.py", "symtape     "),
                                           ("bench_compile.py", "ms"),
                                           ("bench_dask.py", "LocalCluster"),
                                           ("bench_matrix.py", "x.T S x: Hessian"),
                                           ("bench_backends.py", "backend='numpy'")])
def test_benchmark_runs_quick(script, shows):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert shows in result.stdout and "failed" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr


def test_the_gpu_benchmark_runs_quick():
    """``bench_compile.py --gpu``: on a CUDA device where there is one, else on simulated CuPy
    (``tests/simulated_cupy.py``), so a GPU session's run does not fail on the script."""
    from conftest import REAL_GPU

    script = [str(BENCHMARKS / "bench_compile.py"), "--quick", "--gpu", "--repeat", "1"]
    if not REAL_GPU:
        script = [str(pathlib.Path(__file__).parent / "simulated_cupy.py"), *script]
    result = subprocess.run([sys.executable, *script], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "GPU vector n=10000: compiled gradient vs CuPy by hand" in result.stdout
    assert "GPU batch of 1e+04 points" in result.stdout
    assert "GPU fused f(x, y) value + gradient, 1e+05 points vs CPU NumPy kernel" in result.stdout
    assert "ElementwiseKernels a call)" in result.stdout
