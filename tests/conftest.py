"""Hypothesis profiles (random locally, reproducible in CI) and the CuPy fixtures."""

import importlib.util
import os
import sys
import tempfile

import pytest
import simulated_cupy
from fake_cupy import make_fake_cupy
from hypothesis import settings


# CI must be reproducible: a green run here means a green run there. Local runs (and
# `pytest -m slow`) keep drawing new examples, which is how property tests find bugs.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# compiled kernels (backend='numba') go to a fresh directory, never the user's cache
os.environ["SYMTAPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="symtape-test-cache-")

pytest_plugins = ["pytester"]  # tests of symtape's own pytest plugin


@pytest.fixture
def no_cupy(monkeypatch):
    """``import cupy`` fails, as if CuPy were not installed."""
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.fixture
def fake_cupy(monkeypatch):
    """A fake CuPy with two CUDA devices (see fake_cupy.py)."""
    cupy = make_fake_cupy(2)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return cupy


def _usable_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    from symtape.arrays.backends import gpu_count

    return gpu_count() > 0


REAL_GPU = _usable_gpu()


@pytest.fixture(params=["cuda" if REAL_GPU else "simulated"])
def gpu_cupy(request, monkeypatch):
    """CuPy for the GPU tests: the real one on a CUDA device, else two simulated devices
    (``simulated_cupy.py``: NumPy underneath, CuPy's rules on top)."""
    if request.param == "cuda":
        import cupy

        return cupy
    modules = simulated_cupy.make_simulated_cupy(device_count=2)
    simulated_cupy.install(modules, monkeypatch)
    return modules["cupy"]
