"""The scripts in examples/ run, and end where the tutorials say they do."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

_EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    if str(_EXAMPLES) not in sys.path:
        sys.path.insert(0, str(_EXAMPLES))  # the scripts import plotting.py from beside them
    spec = importlib.util.spec_from_file_location(f"example_{name}", _EXAMPLES / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loops = _load("tutorial_loops")


def test_sgd_reaches_the_minimum_of_the_parabola():
    assert abs(loops.sgd_on_a_parabola() - 1) < 1e-5
    # x_k = 1 - 0.98**k exactly; after 1000 steps 1 - 1.68e-9
    assert loops.sgd_on_a_parabola() == pytest.approx(1 - 0.98**1000, abs=1e-12)


def test_sgd_in_float32_ends_where_tensorflow_does():
    value = loops.sgd_on_a_parabola(np.float32)
    # TensorFlow prints 0.99999857: float32 rounding stalls the approach to 1
    assert np.float32(value) == np.float32(0.99999857)


def test_adam_reaches_five_eagerly_compiled_and_with_tensor_coefficients():
    eager = loops.adam_on_a_parabola()
    assert abs(eager - 5) < 1e-3
    assert loops.coefficients_as_a_tensor() == pytest.approx(eager, abs=1e-12)
    assert loops.compiled_training_step() == pytest.approx(eager, abs=1e-12)


def test_the_script_prints_every_loop(capsys):
    loops.main([])  # not main(): argparse would read pytest's own command line
    out = capsys.readouterr().out
    assert out.count("\n") == 5 and "0.99999857" in out
