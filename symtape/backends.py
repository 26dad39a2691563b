"""Array modules: which of NumPy or CuPy holds a value.

CuPy is never imported here at module import time; a value can only be a CuPy
array if the user (or a later GPU code path) imported CuPy already.
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

__all__ = ["DeviceError", "array_module", "device_name", "cupy_module"]


class DeviceError(RuntimeError):
    """A device was asked for that cannot be used; the message names the cause and the fix.

    Examples
    --------
    >>> import symtape as st
    >>> issubclass(st.DeviceError, RuntimeError)
    True
    """


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


def cupy_module() -> ModuleType:
    """Import CuPy on first GPU use; every failure becomes a DeviceError with the fix.

    Examples
    --------
    >>> import importlib.util
    >>> if importlib.util.find_spec("cupy") is None:
    ...     try:
    ...         cupy_module()
    ...     except DeviceError as err:
    ...         print("pip install" in str(err))
    ... else:
    ...     print(True)
    True
    """
    try:
        import cupy
    except ImportError as err:
        raise DeviceError(
            f"the GPU needs CuPy, which is not installed ({err}); install the GPU extra with "
            "`pip install 'symtape[gpu]'` (cupy-cuda12x) or a CuPy wheel for your CUDA "
            "version; CPU work is unaffected") from None
    except Exception as err:  # a broken install raises other errors at import
        raise DeviceError(f"CuPy failed to import ({type(err).__name__}: {err}); reinstall the "
                          "CuPy wheel that matches your CUDA version") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        raise DeviceError(f"CUDA is not usable ({type(err).__name__}: {err}); check the NVIDIA "
                          "driver (`nvidia-smi`) and that CuPy matches the CUDA version") from None
    if count == 0:
        raise DeviceError("CuPy found no CUDA device; run on a machine with an NVIDIA GPU, or "
                          "use '/cpu:0'")
    return cupy
