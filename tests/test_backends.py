"""Array modules and device errors on a machine that may have no GPU."""

import importlib.util
import sys
import warnings

import numpy as np
import pytest

import symtape as st
from symtape.arrays.backends import (array_module, cupy_module, current_device,
                                     default_array_module, device_name, gpu_count, gpu_errors,
                                     is_gpu_array, require_gpu, to_device, translate_gpu_error)

from fake_cupy import make_fake_cupy


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


# ---------------------------------------------------------------- finding CuPy


def test_blocked_cupy_is_the_not_installed_error_and_nothing_else_breaks(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now fails as if absent
    with pytest.raises(st.DeviceError, match=r"not installed.*pip install 'symtape\[gpu\]'"):
        cupy_module()
    assert array_module(np.ones(2)) is np and device_name(np.ones(2)) == "/cpu:0"
    assert not is_gpu_array(np.ones(2)) and gpu_count() == 0


def test_a_missing_dependency_of_cupy_is_a_broken_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def importing(name, *args, **kwargs):
        if name == "cupy":
            raise ModuleNotFoundError("No module named 'fastrlock'", name="fastrlock")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", importing)
    with pytest.raises(st.DeviceError, match=r"CuPy failed to import .*fastrlock.*reinstall"):
        cupy_module()


def test_gpu_count_is_silently_zero_when_cuda_is_broken(monkeypatch):
    def broken():
        warnings.warn("CUDA path could not be detected")
        raise _error("CUDARuntimeError", "cupy_backends.cuda.api.runtime",
                     "cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy(broken))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gpu_count() == 0
    with warnings.catch_warnings(), pytest.raises(st.DeviceError, match="no usable NVIDIA"):
        warnings.simplefilter("ignore")  # a GPU request may warn; only gpu_count() is silent
        cupy_module()


def test_zero_devices_is_a_device_error_and_counts_are_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy(0))
    with pytest.raises(st.DeviceError, match="found no CUDA device"):
        cupy_module()
    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy(3))
    assert gpu_count() == 3
    with pytest.raises(st.DeviceError, match=r"this machine has 3 CUDA device\(s\), '/gpu:0' to "
                                             r"'/gpu:2'"):
        require_gpu(3)


def test_current_device_and_default_module_on_the_cpu():
    assert current_device().name == "/cpu:0" and default_array_module() is np
    host = np.ones(2)
    assert to_device(host, current_device()) is host  # the CPU never copies


# ---------------------------------------------------------------- CuPy and CUDA errors


def _error(name, module, message, base=RuntimeError):
    """An exception of a class spelled as CuPy's (matched by name and module, not identity)."""
    return type(name, (base,), {"__module__": module})(message)


@pytest.mark.parametrize("error, cause, fix", [
    (_error("OutOfMemoryError", "cupy.cuda.memory", "Out of memory allocating 1,024 bytes "
            "(allocated so far: 0 bytes, limit set to: 512 bytes).", MemoryError),
     "the GPU ran out of memory", "set_memory_limit"),
    (_error("CUDARuntimeError", "cupy_backends.cuda.api.runtime",
            "cudaErrorMemoryAllocation: out of memory"), "the GPU ran out of memory", "'/cpu:0'"),
    (_error("CUDARuntimeError", "cupy_backends.cuda.api.runtime",
            "cudaErrorNoKernelImageForDevice: no kernel image is available for execution on "
            "the device"), "CuPy has no kernels built for this GPU", "cupy-cuda12x"),
    (_error("CUDADriverError", "cupy_backends.cuda.api.driver",
            "CUDA_ERROR_INVALID_IMAGE: device kernel image is invalid"),
     "CuPy has no kernels built for this GPU", "cupy-cuda12x"),
    (_error("CUDADriverError", "cupy_backends.cuda.api.driver",
            "CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image is available for execution on the "
            "device"), "CuPy has no kernels built for this GPU", "CuPy release that supports this GPU"),
    (_error("CUDARuntimeError", "cupy_backends.cuda.api.runtime",
            "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime "
            "version"), "no usable NVIDIA driver", "nvidia-smi"),
])
def test_gpu_errors_become_device_errors_with_cause_fix_and_original(error, cause, fix):
    with pytest.raises(st.DeviceError) as caught:
        with gpu_errors():
            raise error
    message = str(caught.value)
    assert message.startswith(cause) and fix in message
    assert type(error).__name__ in message and str(error) in message
    assert caught.value.__cause__ is error


@pytest.mark.parametrize("error", [
    MemoryError("out of memory"),  # the host's, not the GPU's
    ValueError("cudaErrorNoKernelImageForDevice"),  # not raised by CuPy
    _error("CUDARuntimeError", "cupy_backends.cuda.api.runtime",
           "cudaErrorIllegalAddress: an illegal memory access was encountered"),  # not a known kind
    st.DeviceError("already explained"),
])
def test_other_errors_pass_through_gpu_errors_unchanged(error):
    assert translate_gpu_error(error) is None
    with pytest.raises(type(error)) as caught:
        with gpu_errors():
            raise error
    assert caught.value is error
