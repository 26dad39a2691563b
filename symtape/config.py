"""``st.config``: list devices and set GPU memory options, spelled as ``tf.config``.

GPU memory is CuPy's: values on a GPU are allocated from CuPy's default memory pool
(``cupy.get_default_memory_pool()``, one pool per CUDA device), and the settings here
configure that pool. Listing devices never raises: without a working CuPy and CUDA the
GPU list is empty. The memory functions need CuPy and raise :class:`symtape.DeviceError`
naming the cause and the fix when it is unusable.

Mutable state: the memory-growth settings recorded by :func:`set_memory_growth` (one of
the few globals symtape keeps; see ``STYLE.md``). Memory limits live in CuPy's pools.

Examples
--------
>>> import symtape as st
>>> st.config.list_physical_devices("CPU")
[PhysicalDevice(name='/physical_device:CPU:0', device_type='CPU')]
>>> isinstance(st.config.list_physical_devices("GPU"), list)  # empty without CuPy/CUDA
True
"""

from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np

from symtape.arrays.backends import gpu_count, gpu_errors, require_gpu
from symtape.arrays.device import parse_device
# the default backend is kept by the kernels layer (compiling calls read it); set it here
from symtape.kernels.settings import (BACKENDS, get_default_backend, resolve_backend,
                                      set_default_backend)

__all__ = ["PhysicalDevice", "LogicalDevice", "list_physical_devices", "list_logical_devices",
           "set_memory_growth", "get_memory_growth", "set_memory_limit", "get_memory_limit",
           "set_default_backend", "get_default_backend", "resolve_backend", "BACKENDS"]


class PhysicalDevice(NamedTuple):
    """A device on this machine, as ``tf.config.PhysicalDevice``.

    Examples
    --------
    >>> import symtape as st
    >>> st.config.list_physical_devices("CPU")[0].device_type
    'CPU'
    """

    name: str
    device_type: str


class LogicalDevice(NamedTuple):
    """A device values can be placed on, as ``tf.config.LogicalDevice``; one per physical one.

    Examples
    --------
    >>> import symtape as st
    >>> st.config.list_logical_devices("CPU")[0].name
    '/device:CPU:0'
    """

    name: str
    device_type: str


DeviceLike = Union[PhysicalDevice, LogicalDevice, str]

# GPU index -> the memory growth setting recorded by set_memory_growth
_MEMORY_GROWTH: dict[int, bool] = {}


def _types(device_type: str | None) -> tuple[str, ...]:
    if device_type is None:
        return ("CPU", "GPU")
    if not isinstance(device_type, str):
        raise TypeError(f"device_type must be a str such as 'GPU' or None, got "
                        f"{type(device_type).__name__} {device_type!r}")
    return (device_type.upper(),)  # an unknown type ('TPU') lists nothing, as in TensorFlow


def _listed(device_type: str | None, prefix: str, make) -> list:
    types = _types(device_type)
    found = [make(f"{prefix}:CPU:0", "CPU")] if "CPU" in types else []
    if "GPU" in types:  # only a GPU question may import CuPy
        found += [make(f"{prefix}:GPU:{i}", "GPU") for i in range(gpu_count())]
    return found


def list_physical_devices(device_type: str | None = None) -> list[PhysicalDevice]:
    """List the devices of ``device_type`` (``'CPU'``, ``'GPU'``, or None for all).

    The GPUs are CuPy's CUDA devices; the list is empty, with no error or warning, where
    CuPy is not installed or CUDA is unusable. Asking only for ``'CPU'`` never imports CuPy.

    Examples
    --------
    >>> import symtape as st
    >>> st.config.list_physical_devices("CPU")
    [PhysicalDevice(name='/physical_device:CPU:0', device_type='CPU')]
    >>> st.config.list_physical_devices("TPU")
    []
    """
    return _listed(device_type, "/physical_device", PhysicalDevice)


def list_logical_devices(device_type: str | None = None) -> list[LogicalDevice]:
    """List the devices values can be placed on; their names work in ``st.device``.

    Examples
    --------
    >>> import symtape as st
    >>> [d.name for d in st.config.list_logical_devices("CPU")]
    ['/device:CPU:0']
    """
    return _listed(device_type, "/device", LogicalDevice)


def _gpu(device: DeviceLike, what: str):
    """``(cupy, index)`` for a GPU named by a device or string; CPUs are a ValueError."""
    name = device.name if isinstance(device, (PhysicalDevice, LogicalDevice)) else device
    spec = parse_device(name)
    if spec.device_type != "GPU":
        raise ValueError(f"st.config.{what}: {name!r} is the CPU, but memory settings apply to "
                         "GPUs (CuPy's memory pool); pass a device from "
                         "st.config.list_physical_devices('GPU')")
    return require_gpu(spec.index), spec.index  # DeviceError: no CuPy, or no such GPU


def set_memory_growth(device: DeviceLike, enable: bool) -> None:
    """Record whether GPU memory should grow on demand (``tf.config.set_memory_growth``).

    CuPy's memory pool always grows on demand: it allocates when arrays need memory and
    keeps freed blocks for reuse, which is TensorFlow's ``enable=True`` behaviour (and
    symtape's default: :func:`get_memory_growth` reports True until told otherwise).
    ``enable=False`` is recorded, and reported by :func:`get_memory_growth`, but does NOT
    preallocate the GPU as TensorFlow would: CuPy has no such mode. To bound how much
    memory symtape's GPU values may take, use :func:`set_memory_limit`.

    Parameters
    ----------
    device : PhysicalDevice, LogicalDevice or str
        A GPU, e.g. ``st.config.list_physical_devices('GPU')[0]`` or ``'/gpu:0'``.
    enable : bool

    Examples
    --------
    >>> import symtape as st
    >>> for gpu in st.config.list_physical_devices("GPU"):
    ...     st.config.set_memory_growth(gpu, True)
    >>> st.config.set_memory_growth("/cpu:0", True)
    Traceback (most recent call last):
    ...
    ValueError: st.config.set_memory_growth: '/cpu:0' is the CPU, but memory settings apply to GPUs ...
    """
    if not isinstance(enable, (bool, np.bool_)):
        raise TypeError(f"st.config.set_memory_growth: enable must be True or False, got "
                        f"{type(enable).__name__} {enable!r}")
    _, index = _gpu(device, "set_memory_growth")
    _MEMORY_GROWTH[index] = bool(enable)


def get_memory_growth(device: DeviceLike) -> bool:
    """The memory growth setting of a GPU: True (CuPy's behaviour) unless set otherwise.

    Examples
    --------
    >>> import symtape as st
    >>> all(st.config.get_memory_growth(gpu) in (True, False)
    ...     for gpu in st.config.list_physical_devices("GPU"))
    True
    """
    _, index = _gpu(device, "get_memory_growth")
    return _MEMORY_GROWTH.get(index, True)


def _checked_bytes(value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"st.config.set_memory_limit: bytes must be an int number of bytes, "
                        f"got {type(value).__name__} {value!r}; e.g. 2 * 1024**3 for 2 GiB")
    if value < 0:
        raise ValueError(f"st.config.set_memory_limit: bytes must be >= 0, got {value}; pass "
                         "the largest number of bytes the GPU pool may hold (0: no limit)")
    return int(value)


def set_memory_limit(device: DeviceLike, bytes: int) -> None:
    """Cap the memory CuPy's default pool may hold on a GPU (``pool.set_limit(size=bytes)``).

    Allocations beyond the cap raise :class:`symtape.DeviceError` (out of memory) inside
    symtape operations. ``bytes=0`` removes the cap (CuPy's convention). The cap covers
    memory from CuPy's default pool, which is where symtape's GPU values come from; CuPy's
    ``CUPY_GPU_MEMORY_LIMIT`` environment variable sets the same cap at start-up.

    Parameters
    ----------
    device : PhysicalDevice, LogicalDevice or str
        A GPU, e.g. ``st.config.list_physical_devices('GPU')[0]`` or ``'/gpu:0'``.
    bytes : int
        The most bytes the pool may hold on that GPU; 0 for no limit.

    Examples
    --------
    >>> import symtape as st
    >>> for gpu in st.config.list_physical_devices("GPU"):
    ...     st.config.set_memory_limit(gpu, 2 * 1024**3)   # 2 GiB
    ...     st.config.set_memory_limit(gpu, 0)             # no limit again
    >>> st.config.set_memory_limit("/gpu:0", 1.5e9)
    Traceback (most recent call last):
    ...
    TypeError: st.config.set_memory_limit: bytes must be an int number of bytes, got float 1500000000.0; ...
    """
    size = _checked_bytes(bytes)
    cupy, index = _gpu(device, "set_memory_limit")
    with gpu_errors(), cupy.cuda.Device(index):  # the default pool acts on the current device
        cupy.get_default_memory_pool().set_limit(size=size)


def get_memory_limit(device: DeviceLike) -> int:
    """The memory cap of CuPy's default pool on a GPU, in bytes; 0 means no limit.

    Examples
    --------
    >>> import symtape as st
    >>> all(st.config.get_memory_limit(gpu) >= 0
    ...     for gpu in st.config.list_physical_devices("GPU"))
    True
    """
    cupy, index = _gpu(device, "get_memory_limit")
    with gpu_errors(), cupy.cuda.Device(index):
        return int(cupy.get_default_memory_pool().get_limit())
