"""st.device: parsing, the current-device contextvar, and placement of new values.

No GPU is needed: CuPy is either blocked (``sys.modules['cupy'] = None`` makes ``import cupy``
fail as if it were not installed) or replaced by a small fake that, like CuPy, allocates
arrays on the current CUDA device and refuses implicit conversion to NumPy. Real GPU
behaviour is tested in test_gpu.py."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import symtape as st
from symtape.arrays.backends import current_device, default_array_module
from symtape.arrays.device import CPU, DeviceSpec, parse_device

from fake_cupy import make_fake_cupy


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("name, expected", [
    ("/cpu:0", CPU), ("cpu", CPU), ("CPU:0", CPU), ("/device:CPU:0", CPU),
    ("/gpu:0", DeviceSpec("GPU", 0)), ("gpu", DeviceSpec("GPU", 0)),
    ("gpu:0", DeviceSpec("GPU", 0)), ("/GPU:1", DeviceSpec("GPU", 1)),
    ("/device:GPU:0", DeviceSpec("GPU", 0)), ("/physical_device:GPU:3", DeviceSpec("GPU", 3)),
])
def test_accepted_spellings(name, expected):
    assert parse_device(name) == expected
    if expected.device_type == "CPU":
        assert parse_device(name) is CPU  # to_array's fast path tests identity


@pytest.mark.parametrize("name", ["/tpu:0", "banana", "", "/gpu:", "/gpu:-1", "gpu0", "/gpu:0/x"])
def test_unknown_strings_name_the_accepted_forms(name):
    with pytest.raises(ValueError, match=r"unknown device .*'/cpu:0', '/gpu:N'"):
        st.device(name)


def test_a_second_cpu_and_non_strings_are_refused():
    with pytest.raises(ValueError, match="one CPU device, '/cpu:0'"):
        st.device("/cpu:1")
    with pytest.raises(TypeError, match="a device is named by a str"):
        st.device(0)


def test_device_names_are_the_ones_tensor_device_reports():
    assert DeviceSpec("GPU", 2).name == str(DeviceSpec("GPU", 2)) == "/gpu:2"
    assert CPU.name == st.constant(1.0).device == "/cpu:0"


# ---------------------------------------------------------------- the current device


def test_default_is_cpu_and_blocks_nest_and_restore():
    assert current_device() is CPU and default_array_module() is np
    scope = st.device("/cpu:0")
    with scope as spec:
        assert spec is CPU and current_device() is CPU
        with scope:  # re-entrant
            assert current_device() is CPU
    assert current_device() is CPU


def test_the_current_device_is_per_thread(fake_cupy):
    seen = []
    with st.device("/gpu:1"):
        worker = threading.Thread(target=lambda: seen.append(current_device()))
        worker.start()
        worker.join()
        assert current_device() == DeviceSpec("GPU", 1)
    assert seen == [CPU]


def test_cpu_work_never_imports_cupy():
    program = ("import sys, symtape as st\n"
               "assert 'cupy' not in sys.modules\n"
               "assert st.config.list_physical_devices('CPU')[0].device_type == 'CPU'\n"
               "with st.device('/cpu:0'):\n"
               "    x = st.Variable([1.0, 2.0])\n"
               "    with st.GradientTape() as tape:\n"
               "        y = st.reduce_sum(st.sin(x) * x)\n"
               "    tape.gradient(y, x).numpy()\n"
               "assert 'cupy' not in sys.modules, 'CPU work imported CuPy'\n")
    subprocess.run([sys.executable, "-c", program], check=True, timeout=120)


# ---------------------------------------------------------------- GPU requests that fail


def test_gpu_without_cupy_is_a_device_error_and_cpu_keeps_working(no_cupy):
    with pytest.raises(st.DeviceError, match=r"not installed.*pip install 'symtape\[gpu\]'"):
        with st.device("/gpu:0"):
            pytest.fail("the block must not run")
    assert current_device() is CPU
    x = st.Variable([1.0, 2.0])
    with st.GradientTape() as tape:
        y = st.reduce_sum(x * x)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [2.0, 4.0])


def test_gpu_index_beyond_the_devices_names_how_many_exist(fake_cupy):
    with pytest.raises(st.DeviceError, match=r"'/gpu:2' does not exist: this machine has 2 CUDA"):
        with st.device("/gpu:2"):
            pass
    assert current_device() is CPU and fake_cupy.state.current == 0
    assert st.constant([1.0]).device == "/cpu:0"


def test_broken_cuda_is_a_device_error_with_the_driver_fix(monkeypatch):
    cupy = make_fake_cupy(0)

    class CUDARuntimeError(RuntimeError):  # what CuPy raises without a driver
        __module__ = "cupy_backends.cuda.api.runtime"

    def no_driver():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                               "insufficient for CUDA runtime version")

    cupy.cuda.runtime.getDeviceCount = no_driver
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with pytest.raises(st.DeviceError, match=r"no usable NVIDIA driver.*nvidia-smi"):
        st.device("gpu").__enter__()
    assert current_device() is CPU


# ---------------------------------------------------------------- placement of new values


def test_new_values_inside_a_gpu_block_live_on_that_gpu(fake_cupy):
    with st.device("/GPU:1") as spec:
        assert spec == DeviceSpec("GPU", 1) and fake_cupy.state.current == 1
        assert default_array_module() is fake_cupy
        c = st.constant([1.0, 2.0])
        s = st.constant(3, dtype=st.float32)
        v = st.Variable(2.0, name="v")
    assert fake_cupy.state.current == 0  # the CUDA device current before the block
    for t, dtype, shape in [(c, st.float64, (2,)), (s, st.float32, ()), (v, st.float64, ())]:
        assert isinstance(t._value, fake_cupy.ndarray)
        assert (t.device, t.dtype, t.shape) == ("/gpu:1", dtype, shape)
    host = c.numpy()
    assert type(host) is np.ndarray and host.tolist() == [1.0, 2.0]
    assert st.constant([1.0]).device == "/cpu:0"


def test_gpu_values_stay_on_their_gpu_and_are_validated_without_host_copies(fake_cupy):
    with st.device("/gpu:1"):
        on_gpu = st.constant([1.0, 2.0])
    same = st.constant(on_gpu._value)  # outside the block: stays on /gpu:1, no copy
    assert isinstance(same._value, fake_cupy.ndarray) and same.device == "/gpu:1"
    narrowed = st.constant(on_gpu._value, dtype=st.float32)  # same kind: allowed, as on CPU
    assert narrowed.dtype == st.float32 and narrowed.device == "/gpu:1"
    with pytest.raises(TypeError, match=r"float64 to float32 .*st\.cast") as gpu_error:
        st.Variable(on_gpu, dtype=st.float32)  # a Tensor: only safe casts
    with pytest.raises(TypeError) as cpu_error:
        st.Variable(st.constant([1.0, 2.0]), dtype=st.float32)
    assert str(gpu_error.value) == str(cpu_error.value)
    assert fake_cupy.state.host_copies == 0


@pytest.mark.parametrize("value, dtype", [([1.5], st.int32), ("text", None), ([1, "a"], None)])
def test_conversion_errors_are_the_same_on_both_devices(fake_cupy, value, dtype):
    with pytest.raises(TypeError) as on_cpu:
        st.constant(value, dtype=dtype)
    with st.device("/gpu:0"), pytest.raises(TypeError) as on_gpu:
        st.constant(value, dtype=dtype)
    assert str(on_gpu.value) == str(on_cpu.value)
    assert current_device() is CPU
