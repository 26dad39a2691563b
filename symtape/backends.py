"""Array modules: which of NumPy or CuPy holds a value.

CuPy is never imported here at module import time; a value can only be a CuPy
array if the user (or a later GPU code path) imported CuPy already.
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

__all__ = ["DeviceError", "array_module", "device_name"]


class DeviceError(RuntimeError):
    """A device was asked for that cannot be used; the message names the cause and the fix."""


def array_module(*values) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``) that holds ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> array_module(np.ones(2)).__name__
    'numpy'
    """
    if "cupy" in sys.modules:
        cupy = sys.modules["cupy"]
        for value in values:
            if isinstance(value, cupy.ndarray):
                return cupy
    return np


def device_name(value) -> str:
    """Return ``'/cpu:0'`` for host arrays, ``'/gpu:N'`` for CuPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> device_name(np.ones(2))
    '/cpu:0'
    """
    xp = array_module(value)
    if xp is np:
        return "/cpu:0"
    return f"/gpu:{value.device.id}"
