"""The pytest plugin: a project's tests get a `check_grads` fixture, failures show the table."""

from __future__ import annotations

import os
import pathlib
import re
from importlib import metadata

import pytest

import pytest_symtape

PLUGIN = "pytest_symtape"


def _plugin_args() -> list[str]:
    """Load the plugin by its entry point when symtape is installed, by name otherwise."""
    registered = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "symtape"]
    return [] if registered else ["-p", PLUGIN]


def test_the_entry_point_is_declared_and_registered():
    pyproject = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"
    declared = re.search(r"^\[project\.entry-points\.pytest11\]\nsymtape = \"([\w.]+)\"",
                         pyproject.read_text(), re.M)
    assert declared and declared.group(1) == PLUGIN
    try:
        metadata.distribution("symtape")
    except metadata.PackageNotFoundError:
        pytest.skip("symtape is not installed (run from a source tree)")
    (entry,) = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "symtape"]
    if entry.value != PLUGIN:
        pytest.skip(f"the installed metadata registers {entry.value}, from before the plugin "
                    "moved: reinstall symtape (pip install -e .) to register pytest_symtape")
    assert entry.value == PLUGIN


TRIVIAL_TESTS = '''
import sys

def test_pytest_started_without_sympy():
    assert "sympy" not in sys.modules and "symtape" not in sys.modules

def test_the_fixture_imports_symtape_when_used(check_grads):
    import symtape as st
    assert "sympy" in sys.modules
    check_grads(st.sin, (0.3,))
'''


def test_the_plugin_imports_sympy_only_when_the_fixture_is_used(pytester, monkeypatch):
    # the plugin made every pytest run on the machine import SymPy (0.6 s) at start-up
    root = str(pathlib.Path(pytest_symtape.__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    pytester.makepyfile(test_trivial=TRIVIAL_TESTS)
    # this plugin by its module, whatever entry point an installed symtape registered
    result = pytester.runpytest_subprocess("-p", "no:symtape", "-p", PLUGIN,
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_former_module_still_loads_the_plugin(pytester):
    pytester.makepyfile(test_model="def test_fixture(check_grads):\n    pass\n")
    result = pytester.runpytest("-p", "no:symtape", "-p", "symtape.pytest_plugin")
    result.assert_outcomes(passed=1)


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
