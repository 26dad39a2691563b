"""A stand-in for the slice of CuPy that symtape's device code uses, for tests without a GPU.

Like CuPy: arrays live on the CUDA device that was current when they were made and refuse
implicit conversion to NumPy (``.get()`` is the one host copy, counted); ``cuda.Device``
blocks make a device current and restore the previous one; the default memory pool keeps a
limit per device, read and set on the current one, where 0 means no limit.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np


def make_fake_cupy(device_count: int | Callable[[], int]) -> types.ModuleType:
    """A fake ``cupy`` module; ``device_count`` may be a callable (which may raise, or warn)."""
    state = types.SimpleNamespace(current=0, host_copies=0)

    class ndarray:  # host data tagged with the CUDA device it lives on
        def __init__(self, data, device_id):
            self._data, self.device = np.asarray(data), types.SimpleNamespace(id=device_id)

        shape = property(lambda self: self._data.shape)
        dtype = property(lambda self: self._data.dtype)
        ndim = property(lambda self: self._data.ndim)

        def astype(self, dtype, copy=True):
            return ndarray(self._data.astype(dtype, copy=copy), self.device.id)

        def __getitem__(self, key):  # CuPy has no scalars: 0-d results stay arrays
            return ndarray(self._data[key], self.device.id)

        def get(self):  # the one explicit device -> host copy
            state.host_copies += 1
            return self._data.copy()

        def __array__(self, *args, **kwargs):
            raise TypeError("Implicit conversion to a NumPy array is not allowed")

    Device, pool = cuda_device_and_pool(state)
    count = device_count if callable(device_count) else lambda: device_count
    cupy = types.ModuleType("cupy")
    cupy.ndarray, cupy.state = ndarray, state
    cupy.asarray = lambda a: a if isinstance(a, ndarray) else ndarray(np.array(a), state.current)
    cupy.get_default_memory_pool = lambda: pool
    cupy.cuda = types.SimpleNamespace(
        Device=Device, runtime=types.SimpleNamespace(getDeviceCount=count))
    return cupy


def cuda_device_and_pool(state) -> tuple[type, object]:
    """CuPy's ``cuda.Device`` and default memory pool over ``state.current``, the current
    device: a Device block makes its device current and restores the previous one; the pool
    keeps a limit per device (``pool.limits``), read and set on the current one, 0 for none."""

    class Device:
        def __init__(self, id=None):
            self.id, self._previous = state.current if id is None else int(id), []

        def __enter__(self):
            self._previous.append(state.current)
            state.current = self.id
            return self

        def __exit__(self, *exc):
            state.current = self._previous.pop()

        def synchronize(self):
            pass

    class MemoryPool:
        def __init__(self):
            self.limits = {}

        def set_limit(self, size=None, fraction=None):
            self.limits[state.current] = size

        def get_limit(self):
            return self.limits.get(state.current, 0)

        def free_all_blocks(self):
            pass

    return Device, MemoryPool()
