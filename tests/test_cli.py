"""The walk-through: `symtape demo` and `python -m symtape`, run as a newcomer would."""

import shutil
import subprocess
import sys

import pytest


def _check_walkthrough(output: str) -> None:
    assert "dy/dx .numpy()  = -2.0" in output
    assert "dy/dx .expr     = 2*x - 2" in output
    assert "values = [-2.0, 0.0, 0.0, 1.0]" in output
    assert "d2y/dx2 = 6.0 = 6*x" in output
    assert "w = 5.0" in output
    assert "[-400. 1002. -200.]" in output  # Rosenbrock's gradient at (1, 2, 3), by hand
    assert "2998 nonzeros" in output
    assert "values.shape = (1000000,)" in output
    assert "1000 calls: w = 5.0" in output


def test_python_dash_m_runs_the_walkthrough():
    result = subprocess.run([sys.executable, "-m", "symtape"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    _check_walkthrough(result.stdout)
    assert result.stderr == ""


@pytest.mark.skipif(shutil.which("symtape") is None, reason="package not installed as a command")
def test_symtape_demo_command():
    result = subprocess.run(["symtape", "demo"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    _check_walkthrough(result.stdout)


def test_unknown_command_exits_with_usage_error():
    result = subprocess.run([sys.executable, "-m", "symtape", "frobnicate"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr
