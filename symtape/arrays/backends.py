"""Array modules and devices: which of NumPy or CuPy holds a value, and where new values go.

CuPy is never imported at module import time, nor for CPU work: it is imported on the
first GPU request (``st.device('/gpu:0')``, ``st.config`` GPU queries, the ``'cupy'``
compile backend), and every failure on the way becomes a :class:`DeviceError` that names
the cause and the fix. CuPy and CUDA errors raised later, while GPU work runs, are
recognised by class name and message (so without importing CuPy) and translated by
:func:`gpu_errors`.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager, nullcontext
from types import ModuleType

import numpy as np

from symtape.arrays.device import CPU, CURRENT_DEVICE, DeviceSpec, parse_device

__all__ = ["DeviceError", "array_module", "device_name", "cupy_module", "current_device",
           "default_array_module", "gpu_count", "gpu_device_of", "select_gpu", "is_gpu_array",
           "to_device", "to_host", "gpu_errors", "translate_gpu_error", "device"]


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
    cupy = sys.modules.get("cupy")  # None also where an import of CuPy was blocked
    if cupy is not None:
        for value in values:
            if isinstance(value, cupy.ndarray):
                return cupy
    return np


def is_gpu_array(value) -> bool:
    """Whether ``value`` is a CuPy array (never imports CuPy: a CuPy array implies it is loaded).

    Examples
    --------
    >>> import numpy as np
    >>> is_gpu_array(np.ones(2)), is_gpu_array(1.0)
    (False, False)
    """
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(value, cupy.ndarray)


def to_host(value) -> np.ndarray:
    """``value`` as a NumPy array: a CuPy array is copied to the host (``.get()``), which
    ``np.asarray`` refuses to do implicitly.

    Examples
    --------
    >>> import numpy as np
    >>> to_host([1.0, 2.0])
    array([1., 2.])
    """
    return value.get() if is_gpu_array(value) else np.asarray(value)


def gpu_device_of(values):
    """A context that makes the CUDA device of the first CuPy array in ``values`` current
    (nothing to do without one): an op, a kernel or a backward pass runs where its
    operands live, whatever ``st.device`` block it is called in.

    Examples
    --------
    >>> import numpy as np
    >>> with gpu_device_of([np.ones(2)]):  # host values: no device to enter
    ...     pass
    """
    for value in values:
        if is_gpu_array(value):
            return sys.modules["cupy"].cuda.Device(value.device.id)
    return nullcontext()


def device_name(value) -> str:
    """Return ``'/cpu:0'`` for host arrays, ``'/gpu:N'`` for CuPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> device_name(np.ones(2))
    '/cpu:0'
    """
    if not is_gpu_array(value):
        return "/cpu:0"
    return f"/gpu:{value.device.id}"


def current_device() -> DeviceSpec:
    """The device new values are placed on: ``'/cpu:0'`` unless inside ``st.device(...)``.

    Examples
    --------
    >>> import symtape as st
    >>> current_device().name
    '/cpu:0'
    >>> with st.device("cpu"):
    ...     print(current_device())
    /cpu:0
    """
    return CURRENT_DEVICE.get()


def default_array_module() -> ModuleType:
    """The array module for NEW values: ``numpy`` on the CPU, ``cupy`` inside a GPU device.

    Examples
    --------
    >>> default_array_module().__name__
    'numpy'
    """
    if CURRENT_DEVICE.get() is CPU:
        return np
    return _loaded_cupy()


def _loaded_cupy() -> ModuleType:
    # inside a GPU device CuPy is already imported and checked (entering it did both)
    return sys.modules.get("cupy") or cupy_module()


# ---------------------------------------------------------------- finding CuPy and devices


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
    cupy = _import_cupy()
    if _device_count(cupy) == 0:
        raise DeviceError("CuPy found no CUDA device; run on a machine with an NVIDIA GPU "
                          "(check `nvidia-smi` and CUDA_VISIBLE_DEVICES), or use '/cpu:0'")
    return cupy


def _import_cupy() -> ModuleType:
    try:
        import cupy
    except ModuleNotFoundError as err:
        if err.name not in ("cupy", None):  # CuPy is there, one of its dependencies is not
            raise _broken_install(err) from None
        raise DeviceError(
            f"the GPU needs CuPy, which is not installed ({err}); install the GPU extra with "
            "`pip install 'symtape[gpu]'` (cupy-cuda12x) or a CuPy wheel for your CUDA "
            "version; CPU work is unaffected") from None
    except Exception as err:  # a broken install raises other errors at import
        raise _broken_install(err) from None
    return cupy


def _broken_install(err: BaseException) -> DeviceError:
    return DeviceError(f"CuPy failed to import ({type(err).__name__}: {err}); reinstall the "
                       "CuPy wheel that matches your CUDA version (`pip install cupy-cuda12x` "
                       "for CUDA 12); CPU work is unaffected")


def _device_count(cupy: ModuleType) -> int:
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        known = translate_gpu_error(err)
        if known is not None:
            raise known from None
        raise DeviceError(f"CUDA is not usable ({type(err).__name__}: {err}); check the NVIDIA "
                          "driver (`nvidia-smi`) and that CuPy matches the CUDA version") from None


def gpu_count() -> int:
    """How many CUDA devices CuPy can use; 0, silently, where CuPy or CUDA is missing or broken.

    Examples
    --------
    >>> gpu_count() >= 0
    True
    """
    try:
        with warnings.catch_warnings():  # a half-working CUDA setup warns at CuPy's import
            warnings.simplefilter("ignore")
            return _device_count(_import_cupy())
    except DeviceError:
        return 0


def select_gpu(index: int):
    """Make CUDA device ``index`` current; return the entered ``cupy.cuda.Device`` to exit later.

    Raises :class:`DeviceError` (and changes nothing) if CuPy is unusable or the device
    does not exist.

    Examples
    --------
    >>> try:
    ...     select_gpu(10**6)
    ... except DeviceError:
    ...     print("no such GPU")
    no such GPU
    """
    cupy = require_gpu(index)
    with gpu_errors():
        cuda_device = cupy.cuda.Device(index)
        cuda_device.__enter__()
    return cuda_device


def require_gpu(index: int) -> ModuleType:
    """Return CuPy if CUDA device ``index`` exists, else raise a DeviceError naming how many do.

    Examples
    --------
    >>> try:
    ...     require_gpu(10**6)
    ... except DeviceError:
    ...     print("no such GPU")
    no such GPU
    """
    cupy = cupy_module()
    count = _device_count(cupy)
    if index >= count:
        raise DeviceError(f"'/gpu:{index}' does not exist: this machine has {count} CUDA "
                          f"device(s), '/gpu:0' to '/gpu:{count - 1}'; use one of those "
                          "(st.config.list_physical_devices('GPU') lists them)")
    return cupy


def to_device(array, device: DeviceSpec):
    """Copy a host array (or NumPy scalar) to ``device``; CPU devices return it unchanged.

    Parameters
    ----------
    array : numpy.ndarray or NumPy scalar
    device : DeviceSpec
        Where to put it; a GPU device needs a working CuPy.

    Returns
    -------
    numpy.ndarray or cupy.ndarray

    Raises
    ------
    DeviceError
        If the GPU cannot be used (no CuPy, no driver, out of memory), naming the cause and
        the fix.

    Examples
    --------
    >>> import numpy as np
    >>> from symtape.arrays.device import CPU
    >>> to_device(np.ones(2), CPU)
    array([1., 1.])
    """
    if device.device_type == "CPU":
        return array
    cupy = _loaded_cupy()
    with gpu_errors(), cupy.cuda.Device(device.index):
        return cupy.asarray(array)


# ---------------------------------------------------------------- CuPy and CUDA errors

# (message fragments, cause, fix); CuPy's runtime API spells errors `cudaErrorX`, its driver
# API `CUDA_ERROR_X`, so each kind lists both
_GPU_FAILURES = [
    (("out of memory", "cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY"),
     "the GPU ran out of memory",
     "use smaller arrays or batches, release unused ones (`del`, then "
     "cupy.get_default_memory_pool().free_all_blocks()), raise a limit set with "
     "st.config.set_memory_limit, or run on '/cpu:0'"),
    (("cudaErrorNoKernelImageForDevice", "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image",
      "cudaErrorInvalidKernelImage", "CUDA_ERROR_INVALID_IMAGE", "kernel image is invalid",
      "cudaErrorUnsupportedPtxVersion", "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"),
     "CuPy has no kernels built for this GPU's architecture",
     "install the CuPy wheel matching your CUDA version (`pip install cupy-cuda12x` for "
     "CUDA 12) and a CuPy release that supports this GPU, or update the NVIDIA driver"),
    (("cudaErrorInsufficientDriver", "driver version is insufficient", "cudaErrorNoDevice",
      "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device", "cudaErrorInitializationError",
      "CUDA_ERROR_NOT_INITIALIZED", "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "libcuda"),
     "no usable NVIDIA driver or CUDA device",
     "install or update the NVIDIA driver (`nvidia-smi` must list the GPU) and check "
     "CUDA_VISIBLE_DEVICES, or use '/cpu:0'"),
]


def _from_cuda(err: BaseException) -> bool:
    # CuPy's errors live in cupy, cupyx and cupy_backends; matching modules, not classes,
    # keeps CuPy unimported and leaves host errors (a plain MemoryError) alone
    module = type(err).__module__ or ""
    return module.split(".")[0] in ("cupy", "cupyx", "cupy_backends")


def translate_gpu_error(err: BaseException) -> DeviceError | None:
    """The DeviceError for a known CuPy/CUDA failure (no driver, no kernel image, out of
    memory), or None for any other error.

    Examples
    --------
    >>> class OutOfMemoryError(MemoryError):  # stands in for cupy.cuda.memory's
    ...     __module__ = "cupy.cuda.memory"
    >>> print(translate_gpu_error(OutOfMemoryError("Out of memory allocating 512 bytes")))
    ... # doctest: +ELLIPSIS
    the GPU ran out of memory (OutOfMemoryError: Out of memory allocating 512 bytes); use ...
    >>> translate_gpu_error(ValueError("out of memory")) is None
    True
    """
    if isinstance(err, DeviceError) or not _from_cuda(err):
        return None
    text = f"{type(err).__name__}: {err}"
    lowered = text.lower()
    for fragments, cause, fix in _GPU_FAILURES:
        if any(fragment.lower() in lowered for fragment in fragments):
            return DeviceError(f"{cause} ({text}); {fix}")
    return None


@contextmanager
def gpu_errors():
    """Run GPU work, turning known CuPy/CUDA failures into DeviceErrors with cause and fix.

    Other errors pass through unchanged; the original stays attached as ``__cause__``.

    Examples
    --------
    >>> class CUDARuntimeError(RuntimeError):  # stands in for CuPy's
    ...     __module__ = "cupy_backends.cuda.api.runtime"
    >>> try:
    ...     with gpu_errors():
    ...         raise CUDARuntimeError("cudaErrorNoKernelImageForDevice: no kernel image is "
    ...                                "available for execution on the device")
    ... except DeviceError as err:
    ...     print(str(err).split(" (")[0])
    CuPy has no kernels built for this GPU's architecture
    """
    try:
        yield
    except Exception as err:
        translated = translate_gpu_error(err)
        if translated is None:
            raise
        raise translated from err


class _DeviceScope:
    """The ``with`` block returned by :func:`device`; re-entrant, one state per entry."""

    __slots__ = ("spec", "_entries")

    def __init__(self, spec: DeviceSpec):
        self.spec = spec
        self._entries: list = []

    def __enter__(self) -> DeviceSpec:
        cuda_device = None
        if self.spec is not CPU:
            # select_gpu imports CuPy on first use: CPU work never reaches it
            cuda_device = select_gpu(self.spec.index)  # raises before any state changes
        self._entries.append((CURRENT_DEVICE.set(self.spec), cuda_device))
        return self.spec

    def __exit__(self, *exc) -> bool:
        token, cuda_device = self._entries.pop()
        CURRENT_DEVICE.reset(token)
        if cuda_device is not None:
            cuda_device.__exit__(*exc)  # back to the CUDA device current before the block
        return False

    def __repr__(self) -> str:
        return f"st.device({self.spec.name!r})"


def device(name: str) -> _DeviceScope:
    """Place new values on a device for the duration of a ``with`` block (``tf.device``).

    Constants and Variables created inside ``with st.device('/gpu:0'):`` hold CuPy arrays
    on CUDA device 0 (``.device == '/gpu:0'``); ops on them run there with CuPy. Outside
    any block values go to the CPU (NumPy). Values that already live on a GPU stay where
    they are: the device chooses where *new* values go; it never copies existing ones.

    Parameters
    ----------
    name : str
        ``'/cpu:0'``, ``'/gpu:N'``, ``'/device:GPU:N'``, ``'cpu'``, ``'gpu'`` or ``'gpu:N'``
        (any case).

    Raises
    ------
    ValueError
        For an unknown device string (``'/tpu:0'``), naming the accepted forms.
    symtape.DeviceError
        On entering a GPU device when CuPy or CUDA is unusable or the index does not exist;
        the current device is then left unchanged, so CPU work keeps working.

    Examples
    --------
    >>> import symtape as st
    >>> with st.device("/cpu:0"):
    ...     x = st.constant([1.0, 2.0])
    >>> x.device
    '/cpu:0'
    >>> st.device("/tpu:0")
    Traceback (most recent call last):
    ...
    ValueError: unknown device '/tpu:0'; use '/cpu:0', '/gpu:N', ...
    """
    return _DeviceScope(parse_device(name))
