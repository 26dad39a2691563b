"""Hypothesis profiles (random locally, reproducible in CI) and the CuPy fixtures."""

import os
import sys

import pytest
from fake_cupy import make_fake_cupy
from hypothesis import settings

# CI must be reproducible: a green run here means a green run there. Local runs (and
# `pytest -m slow`) keep drawing new examples, which is how property tests find bugs.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

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
