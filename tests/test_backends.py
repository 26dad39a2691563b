"""Array modules and device errors on a machine that may have no GPU."""

import importlib.util
import sys

import numpy as np
import pytest

import symtape as st
from symtape.backends import array_module, cupy_module, device_name


def test_import_never_imports_cupy():
    import subprocess

    program = "import sys, symtape; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "False"


def test_numpy_values_use_numpy():
    assert array_module(np.ones(2), 1.0) is np
    assert device_name(np.ones(2)) == "/cpu:0"
    assert st.constant([1.0]).device == "/cpu:0"


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_missing_cupy_is_a_device_error_with_the_fix_and_cpu_keeps_working():
    with pytest.raises(st.DeviceError, match=r"pip install 'symtape\[gpu\]'"):
        cupy_module()
    x = st.Variable(2.0)
    with st.GradientTape() as tape:
        y = x * x
    assert float(tape.gradient(y, x)) == 4.0
