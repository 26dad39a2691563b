"""st.config: device lists and GPU memory settings, without a GPU.

CuPy is blocked (``sys.modules['cupy'] = None``: ``import cupy`` fails as if not installed)
or replaced by a small fake with CuPy's pool semantics: one default pool whose
``set_limit``/``get_limit`` act on the current CUDA device, where 0 means no limit.
The real pool is tested in test_gpu.py."""

import warnings

import numpy as np
import pytest

import symtape as st
from symtape import config
from symtape.config import LogicalDevice, PhysicalDevice

CPU0 = PhysicalDevice("/physical_device:CPU:0", "CPU")


def test_config_is_a_module_attribute_with_tensorflow_names():
    assert st.config is config
    for name in ["list_physical_devices", "list_logical_devices", "set_memory_growth",
                 "get_memory_growth", "set_memory_limit", "get_memory_limit"]:
        assert callable(getattr(st.config, name))


# ---------------------------------------------------------------- listing


def test_cpu_is_listed_like_tensorflow():
    assert st.config.list_physical_devices("CPU") == [CPU0]
    assert st.config.list_physical_devices("cpu") == [CPU0]
    assert repr(CPU0) == "PhysicalDevice(name='/physical_device:CPU:0', device_type='CPU')"
    assert st.config.list_logical_devices("CPU") == [LogicalDevice("/device:CPU:0", "CPU")]


def test_without_cupy_the_gpu_list_is_empty_quietly(no_cupy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert st.config.list_physical_devices("GPU") == []
        assert st.config.list_logical_devices("GPU") == []
        assert st.config.list_physical_devices() == [CPU0]


def test_gpus_are_listed_by_cuda_index(fake_cupy):
    gpus = st.config.list_physical_devices("GPU")
    assert gpus == [PhysicalDevice("/physical_device:GPU:0", "GPU"),
                    PhysicalDevice("/physical_device:GPU:1", "GPU")]
    assert st.config.list_physical_devices() == [CPU0, *gpus]
    logical = st.config.list_logical_devices("GPU")
    assert [d.name for d in logical] == ["/device:GPU:0", "/device:GPU:1"]
    with st.device(logical[1].name) as spec:  # logical names work in st.device
        assert spec.name == "/gpu:1"


def test_unknown_types_list_nothing_and_non_strings_are_refused():
    assert st.config.list_physical_devices("TPU") == []
    with pytest.raises(TypeError, match="device_type must be a str"):
        st.config.list_physical_devices(0)


# ---------------------------------------------------------------- memory settings


MEMORY_CALLS = [
    lambda d: st.config.set_memory_growth(d, True),
    lambda d: st.config.get_memory_growth(d),
    lambda d: st.config.set_memory_limit(d, 1024),
    lambda d: st.config.get_memory_limit(d),
]


@pytest.mark.parametrize("call", MEMORY_CALLS)
@pytest.mark.parametrize("cpu", [CPU0, "/cpu:0", LogicalDevice("/device:CPU:0", "CPU")])
def test_memory_settings_refuse_the_cpu(no_cupy, call, cpu):
    with pytest.raises(ValueError, match="is the CPU, but memory settings apply to GPUs"):
        call(cpu)


@pytest.mark.parametrize("call", MEMORY_CALLS)
def test_memory_settings_without_cupy_are_device_errors(no_cupy, call):
    with pytest.raises(st.DeviceError, match=r"pip install 'symtape\[gpu\]'"):
        call(PhysicalDevice("/physical_device:GPU:0", "GPU"))


@pytest.mark.parametrize("call", MEMORY_CALLS)
def test_memory_settings_of_a_missing_gpu_name_how_many_exist(fake_cupy, call):
    with pytest.raises(st.DeviceError, match="has 2 CUDA device"):
        call("/gpu:2")


def test_memory_growth_defaults_to_true_and_records_each_gpu(fake_cupy):
    gpu0, gpu1 = st.config.list_physical_devices("GPU")
    assert st.config.get_memory_growth(gpu0) is True  # CuPy's pool grows on demand
    st.config.set_memory_growth(gpu1, False)
    st.config.set_memory_growth("/gpu:0", np.bool_(True))
    assert st.config.get_memory_growth("/device:GPU:1") is False
    assert st.config.get_memory_growth(gpu0) is True
    with pytest.raises(TypeError, match="enable must be True or False"):
        st.config.set_memory_growth(gpu0, "yes")


def test_memory_limit_sets_the_pool_of_that_gpu_only(fake_cupy):
    gpu0, gpu1 = st.config.list_physical_devices("GPU")
    st.config.set_memory_limit(gpu1, 2 * 1024**3)
    st.config.set_memory_limit("/gpu:0", np.int64(512))
    pool = fake_cupy.get_default_memory_pool()
    assert pool.limits == {1: 2 * 1024**3, 0: 512}
    assert fake_cupy.state.current == 0  # the current CUDA device is restored
    assert st.config.get_memory_limit(gpu1) == 2 * 1024**3
    st.config.set_memory_limit(gpu1, 0)  # CuPy's "no limit"
    assert st.config.get_memory_limit(gpu1) == 0


@pytest.mark.parametrize("size, error, match", [
    (1.5e9, TypeError, r"an int number of bytes, got float .*2 \* 1024\*\*3"),
    ("1GB", TypeError, "got str"),
    (True, TypeError, "got bool"),
    (-1, ValueError, r"must be >= 0, got -1.*0: no limit"),
])
def test_memory_limit_must_be_a_non_negative_int(no_cupy, size, error, match):
    # checked before CuPy is looked for: the argument's error comes first
    with pytest.raises(error, match=match):
        st.config.set_memory_limit("/gpu:0", size)
