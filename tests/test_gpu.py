"""st.device and st.config on the GPU: on a CUDA device with CuPy, else on two simulated
devices (``simulated_cupy.py``: CuPy's rules, NumPy underneath; ``[cuda]`` or ``[simulated]``
in the test ids says which).

Oracles are NumPy on the host and hand-derived derivatives; CuPy's own pool reports limits."""

import numpy as np
import pytest

import symtape as st
from symtape.arrays.backends import gpu_count



@pytest.fixture
def cupy(gpu_cupy):
    return gpu_cupy


def test_new_values_in_a_gpu_block_are_cupy_arrays_on_that_gpu(cupy):
    with st.device("/gpu:0"):
        c = st.constant([1.0, 2.0])
        s = st.constant(3, dtype=st.float32)
        v = st.Variable([[1, 2]], name="v")
    for t, dtype in [(c, st.float64), (s, st.float32), (v, st.int64)]:
        assert isinstance(t._value, cupy.ndarray) and t._value.device.id == 0
        assert t.device == "/gpu:0" and t.dtype == dtype
    host = c.numpy()
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, [1.0, 2.0])
    np.testing.assert_array_equal(v.numpy(), [[1, 2]])
    assert st.constant([1.0]).device == "/cpu:0"  # outside the block: the CPU again


def test_existing_gpu_arrays_stay_on_the_gpu(cupy):
    value = cupy.arange(3.0)
    t = st.constant(value)
    assert isinstance(t._value, cupy.ndarray) and t.device == "/gpu:0"
    assert st.Variable(value).device == "/gpu:0"


def test_ops_on_gpu_tensors_stay_on_the_gpu(cupy):
    point = np.linspace(-1.0, 1.0, 7)
    with st.device("/gpu:0"):
        x = st.constant(point)
        y = st.sin(x) * 2.0 + x ** 2
        total = st.reduce_sum(y)
    for t in (y, total):
        assert isinstance(t._value, cupy.ndarray) and t.device == "/gpu:0"
    np.testing.assert_allclose(y.numpy(), np.sin(point) * 2.0 + point ** 2, rtol=1e-12)
    np.testing.assert_allclose(total.numpy(), np.sum(np.sin(point) * 2.0 + point ** 2))



def test_constructors_and_random_draws_in_a_gpu_block_make_gpu_constants(cupy):
    with st.device("/gpu:0"):
        made = [st.zeros((2,)), st.ones((2, 2), dtype=st.int32), st.range(3),
                st.one_hot([0, 2], 3), st.zeros(())]
        made += [st.random.normal((3,), seed=1), st.random.uniform((), seed=2)]
    for t in made:
        assert isinstance(t._value, cupy.ndarray) and t.device == "/gpu:0"
    np.testing.assert_array_equal(made[3].numpy(), [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(made[5].numpy(), st.random.normal((3,), seed=1).numpy())
    assert st.zeros((2,)).device == "/cpu:0"


def test_a_host_constant_meeting_gpu_values_differentiates_on_the_gpu(cupy):
    weights = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # made on the CPU
    a = st.constant(weights)
    with st.device("/gpu:0"):
        x = st.Variable([0.5, -1.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.sin(st.matmul(a, x)))  # the backward pass reads `a` again
    g = tape.gradient(y, x)
    assert g.device == "/gpu:0"
    # d/dx sum(sin(A x)) = A^T cos(A x)
    expected = weights.T @ np.cos(weights @ np.array([0.5, -1.0]))
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12)

def _gradient(x):
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.exp(x) * st.sin(x) ** 2)
    return tape.gradient(y, x)


def test_gradient_on_the_gpu_matches_the_cpu_and_the_formula(cupy):
    point = np.linspace(-1.0, 1.0, 5)
    on_cpu = _gradient(st.Variable(point, name="x"))
    with st.device("/gpu:0"):
        x = st.Variable(point, name="x")
        on_gpu = _gradient(x)
    assert isinstance(on_gpu._value, cupy.ndarray) and on_gpu.device == "/gpu:0"
    # d/dx e^x sin(x)^2 = e^x sin(x)^2 + 2 e^x sin(x) cos(x)
    expected = np.exp(point) * (np.sin(point) ** 2 + 2 * np.sin(point) * np.cos(point))
    np.testing.assert_allclose(on_gpu.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(on_gpu.numpy(), on_cpu.numpy(), rtol=1e-12)


def test_a_gpu_that_does_not_exist_is_a_device_error_and_cpu_keeps_working(cupy):
    devices = gpu_count()
    with pytest.raises(st.DeviceError, match=f"this machine has {devices} CUDA device"):
        with st.device(f"/gpu:{devices}"):
            pass
    assert st.constant([1.0]).device == "/cpu:0"


def test_a_second_gpu_is_selected_and_the_previous_one_restored(cupy):
    if gpu_count() < 2:
        pytest.skip("needs two CUDA devices")
    before = cupy.cuda.Device().id
    with st.device("/GPU:1"):
        assert cupy.cuda.Device().id == 1
        t = st.constant([1.0, 2.0])
    assert t.device == "/gpu:1" and t._value.device.id == 1
    assert cupy.cuda.Device().id == before


def test_gpus_are_listed(cupy):
    gpus = st.config.list_physical_devices("GPU")
    assert len(gpus) == gpu_count() == cupy.cuda.runtime.getDeviceCount()
    assert gpus[0] == st.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    assert [d.name for d in st.config.list_logical_devices("GPU")][:1] == ["/device:GPU:0"]


def test_memory_growth_is_recorded(cupy, monkeypatch):
    monkeypatch.setattr(st.config, "_MEMORY_GROWTH", {})
    gpu = st.config.list_physical_devices("GPU")[0]
    assert st.config.get_memory_growth(gpu) is True
    st.config.set_memory_growth(gpu, False)
    assert st.config.get_memory_growth(gpu) is False


@pytest.fixture
def pool_limit_restored(cupy):
    pool = cupy.get_default_memory_pool()
    with cupy.cuda.Device(0):
        before = pool.get_limit()
    yield pool
    with cupy.cuda.Device(0):
        pool.set_limit(size=before)


def test_memory_limit_takes_effect_in_cupys_pool(cupy, pool_limit_restored):
    pool = pool_limit_restored
    gpu = st.config.list_physical_devices("GPU")[0]
    limit = 256 * 1024**2
    st.config.set_memory_limit(gpu, limit)
    with cupy.cuda.Device(0):
        assert pool.get_limit() == limit
    assert st.config.get_memory_limit("/gpu:0") == limit
    with st.device("/gpu:0"), pytest.raises(st.DeviceError, match="the GPU ran out of memory"):
        st.constant(np.zeros(2 * limit // 8))  # 512 MiB of float64: over the cap
    st.config.set_memory_limit(gpu, 0)
    with cupy.cuda.Device(0):
        assert pool.get_limit() == 0  # no limit


def test_gpu_tensors_print_and_typeset(cupy):
    with st.device("/gpu:0"):
        x = st.Variable([0.5, -1.0], name="x")
        with st.GradientTape() as tape:
            y = st.reduce_sum(x * x * x)
    g = tape.gradient(y, x)
    assert repr(g) == "<st.Tensor: shape=(2,), dtype=float64, numpy=[0.75, 3.  ]>"
    assert str(g).startswith("st.Tensor([0.75, 3.  ]")
    assert repr(x).startswith("<st.Variable 'x' shape=(2,) dtype=float64, numpy=[ 0.5, -1. ]")
    latex = "$\\left[\\begin{matrix}3 x[0]^{2} & 3 x[1]^{2}\\end{matrix}\\right]$"
    assert g._repr_latex_() == latex


def _on_two_gpus():
    if gpu_count() < 2:
        pytest.skip("needs two CUDA devices")


def test_values_of_two_gpus_meet_on_the_first_operands(cupy):
    _on_two_gpus()
    with st.device("/gpu:0"):
        a = st.constant([1.0, 2.0])
    with st.device("/gpu:1"):
        b = st.constant([10.0, 20.0])
    total = a + b  # b is copied over, as TensorFlow copies inputs
    assert total.device == "/gpu:0" and (b + a).device == "/gpu:1"
    np.testing.assert_array_equal(total.numpy(), [11.0, 22.0])


def test_work_on_a_second_gpu_outside_its_block_runs_there(cupy):
    _on_two_gpus()
    with st.device("/gpu:1"):
        x = st.Variable([0.3, 0.5], name="x")
    with st.GradientTape() as tape:  # the current CUDA device is 0 here
        y = st.reduce_sum(st.exp(x) * x)
    g = tape.gradient(y, x)
    expected = np.exp([0.3, 0.5]) * (1 + np.array([0.3, 0.5]))  # d/dx x e^x
    assert g.device == "/gpu:1"
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12)
    compiled = st.grad(lambda a: st.reduce_sum(st.exp(a) * a))
    for _ in range(2):  # the trace, then the kernel
        on_gpu1 = compiled(x._value)
        assert on_gpu1.device.id == 1
    np.testing.assert_allclose(cupy.asnumpy(on_gpu1), expected, rtol=1e-12)
