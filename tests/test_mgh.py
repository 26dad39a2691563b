"""The Moré–Garbow–Hillstrom problems (examples/mgh.py) reach the published optimal values
with the SciPy bridge and with the Newton optimizer. Oracle: the paper's f* values."""

import importlib.util
import pathlib
import sys
import warnings

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "examples" / "mgh.py"
_SPEC = importlib.util.spec_from_file_location("mgh_example", _PATH)
mgh = sys.modules[_SPEC.name] = importlib.util.module_from_spec(_SPEC)  # dataclasses look it up
_SPEC.loader.exec_module(mgh)

NAMES = [p.name for p in mgh.PROBLEMS]


@pytest.mark.parametrize("how", ["trust-exact", "least_squares", "Newton"])
@pytest.mark.parametrize("problem", mgh.PROBLEMS, ids=NAMES)
def test_published_optimum_is_reached(problem, how):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SciPy's trial steps may overflow
        value = mgh.solve(problem, how)
    assert mgh.reached(value, problem.optima), (
        f"{problem.name} with {how}: f = {value!r}, published {problem.optima}")


@pytest.mark.slow  # solves all problems again, three ways
def test_the_example_runs_as_a_script(capsys):
    mgh.main([])
    out = capsys.readouterr().out
    assert "Kowalik and Osborne" in out and "(other)" not in out
