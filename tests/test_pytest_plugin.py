"""The pytest plugin: a project's tests get a `check_grads` fixture, failures show the table."""

from __future__ import annotations

from importlib import metadata

import pytest


def _plugin_args() -> list[str]:
    """Load the plugin by its entry point when symtape is installed, by name otherwise."""
    registered = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "symtape"]
    return [] if registered else ["-p", "symtape.pytest_plugin"]


def test_the_entry_point_is_registered():
    try:
        metadata.distribution("symtape")
    except metadata.PackageNotFoundError:
        pytest.skip("symtape is not installed (run from a source tree)")
    (entry,) = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "symtape"]
    assert entry.value == "symtape.pytest_plugin"


MODEL_TESTS = '''
import numpy as np
import pytest
import symtape as st

def loss(w):
    return st.reduce_sum(st.exp(w) * w)

def test_model(check_grads):
    check_grads(loss, np.array([0.5, -1.0]))

def test_wrong_gradient(check_grads):
    check_grads(loss, np.array([0.5, -1.0]), order=1, grad=lambda w: np.exp(w))

def close(w):
    return (1 + w) * np.exp(w) * (1 + 1e-4)  # off by 1e-4, relative

@pytest.mark.check_grads(order=1, rtol=1e-3)
def test_marker_sets_the_tolerance(check_grads):
    check_grads(loss, np.array([0.5, -1.0]), grad=close)

@pytest.mark.check_grads(order=1, rtol=1e-3)
def test_arguments_override_the_marker(check_grads):
    check_grads(loss, np.array([0.5, -1.0]), grad=close, rtol=1e-5)
'''


def test_fixture_marker_and_failure_table(pytester):
    pytester.makepyfile(test_model=MODEL_TESTS)
    result = pytester.runpytest("--strict-markers", *_plugin_args())
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*AssertionError: check_grads: 2 of 2 first-derivative entries disagree at w=*0.5, -1.*",
        "*entry*symbolic*compiled*yours*complex step*finite diff.*rel. error*",
        "*df/dw[[]0[]]*2.47308190605*1.6487212707*<-- differs*",
        "*FAILED test_model.py::test_wrong_gradient*",
        "*FAILED test_model.py::test_arguments_override_the_marker*",
    ])
    # the fixture's own frames are hidden: the failure points at the test's line
    assert "__tracebackhide__" not in result.stdout.str()
    assert "def check(fun, args" not in result.stdout.str()


def test_marker_is_documented(pytester):
    result = pytester.runpytest("--markers", *_plugin_args())
    result.stdout.fnmatch_lines(["*@pytest.mark.check_grads(order=2, rtol=1e-5, atol=None)*"])
