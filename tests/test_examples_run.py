"""Every script in examples/ runs as a user runs it, at its small size (``--small``).

The scripts' results are checked in test_examples*.py and test_mgh.py; this test makes sure
none is left out, that each runs as ``__main__`` from another directory without warnings,
and that every PNG a script says it wrote is there and is a PNG.
"""

from __future__ import annotations

import pathlib
import re
import runpy
import sys
import warnings

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
HELPERS = {"plotting.py"}  # imported by the scripts, not run
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in HELPERS)
NEEDS = {"mlp_digits.py": "sklearn", "scale_out.py": "distributed"}  # optional extras a script cannot run without


def test_the_examples_are_all_here():
    # a script added without being run here would not be tested
    assert {"gradients_and_watch.py", "nested_tapes.py", "persistent_tapes.py", "functions.py",
            "tutorial_loops.py", "devices.py", "curve_fit.py", "lennard_jones.py",
            "logistic_regression.py", "mlp_digits.py", "mgh.py", "scale_out.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_at_its_small_size(script, tmp_path, monkeypatch, capsys):
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])
    monkeypatch.chdir(tmp_path)  # plots go to the current directory by default
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), "--small"])
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/x.py` does
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a user's first run should not show warnings
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="matplotlib.*")
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{script} printed nothing"
    for written in re.findall(r"^wrote (.+\.png)$", out, re.M):
        path = tmp_path / written if not pathlib.Path(written).is_absolute() else pathlib.Path(written)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", written
