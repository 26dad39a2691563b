"""CuPy simulated on NumPy: the GPU tests run on machines without a GPU.

``tests/test_gpu.py`` and ``tests/test_gpu_kernels.py`` take their ``cupy`` from the
``gpu_cupy`` fixture: the real CuPy where a CUDA device works, else this simulation, with
two simulated devices. The simulation keeps the CuPy rules that code written for NumPy
breaks on, so a test passing here has not quietly run on the host:

- an array lives on the device that was current when it was made (``a.device.id``);
- it refuses implicit conversion to NumPy (``np.asarray(a)`` raises TypeError, as in CuPy);
  ``a.get()`` and ``cupy.asnumpy(a)`` are the explicit host copies, and they are counted;
- CuPy functions and ufuncs refuse NumPy arrays (``cupy.sin(np.ones(2))``, ``a + np.ones(2)``
  raise TypeError); only the creation functions (``asarray``, ``array``) take host data;
- computing on an array of another device than the current one raises ValueError (CuPy
  does without peer access between the two; reading shapes and dtypes is fine);
- indexing never returns a scalar: 0-d arrays stay arrays;
- names CuPy lacks are missing here too: ``cupy.add.at`` (old releases), ``cupy.vectorize``
  of Python functions, object arrays;
- the memory pool enforces ``set_limit``: a larger allocation raises
  ``cupy.cuda.memory.OutOfMemoryError`` with CuPy's message;
- ``cupy.ElementwiseKernel(in_params, out_params, operation, name)`` runs its CUDA C body
  through ``simulated_cuda.py``, a strict translator of the C that symtape prints (C it
  does not know, or implicit conversions C would make, raise), over the broadcast arguments;
  arguments must have the declared dtypes, as a typed CuPy kernel's arrays must;
- ``cupy.state`` counts what ran: ``calls`` (CuPy functions and ufuncs), ``launches``
  (ElementwiseKernel calls), ``kernels`` (the ElementwiseKernels built).

What it cannot show: speed, CUDA compilation of kernels, and numerical differences of GPU
math libraries. Those need a real GPU (the same tests, run there).
"""

from __future__ import annotations

import functools
import sys
import types

import numpy as np
import simulated_cuda
from fake_cupy import cuda_device_and_pool

NUMPY_ARRAY_REFUSED = "Unsupported type <class 'numpy.ndarray'>"
_CREATION = {"asarray", "array", "asanyarray", "ascontiguousarray"}
_METADATA = {"ndim", "shape", "size", "result_type", "can_cast", "min_scalar_type",
             "broadcast_shapes", "isscalar", "iscomplexobj", "isrealobj"}
_MISSING = {"vectorize", "frompyfunc", "errstate", "seterr", "geterr", "set_printoptions",
            "object_", "matrix", "asmatrix", "loadtxt", "savetxt", "genfromtxt"}


class _State:
    def __init__(self, device_count: int):
        self.device_count, self.current, self.host_copies = device_count, 0, 0
        self.calls = 0  # CuPy functions and ufuncs called (each a kernel launch on a GPU)
        self.launches = 0  # ElementwiseKernel calls
        self.kernels: list = []  # ElementwiseKernels built


def make_simulated_cupy(device_count: int = 2) -> dict[str, types.ModuleType]:
    """The modules ``cupy``, ``cupyx`` and the submodules symtape imports, by name."""
    state = _State(device_count)

    class OutOfMemoryError(MemoryError):
        __module__ = "cupy.cuda.memory"

        def __init__(self, size: int, limit: int):
            super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: 0 "
                             f"bytes, limit set to: {limit:,} bytes).")

    def allocated(data: np.ndarray, device_id: int) -> "ndarray":
        limit = pool.limits.get(device_id, 0)
        if limit and data.nbytes > limit:
            raise OutOfMemoryError(data.nbytes, limit)
        return ndarray(data, device_id)

    def refuse_host(values, computing: bool = True) -> None:
        for value in values:
            if isinstance(value, np.ndarray):
                raise TypeError(NUMPY_ARRAY_REFUSED)
            if isinstance(value, (list, tuple)):
                refuse_host(value, computing)
            if computing and isinstance(value, ndarray) and value.device.id != state.current:
                raise ValueError(f"The device where the array resides ({value.device.id}) is "
                                 f"different from the current device ({state.current})")

    def unwrap(value):
        if isinstance(value, ndarray):
            return value._data
        if isinstance(value, (list, tuple)):
            return type(value)(unwrap(v) for v in value)
        if isinstance(value, dict):
            return {k: unwrap(v) for k, v in value.items()}
        return value

    def wrap(value):
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError("CuPy has no object arrays")
            return ndarray(value, state.current)
        if isinstance(value, np.generic):  # CuPy's reductions return 0-d arrays
            return ndarray(np.asarray(value), state.current)
        if isinstance(value, tuple):
            return tuple(wrap(v) for v in value)
        if isinstance(value, list):
            return [wrap(v) for v in value]
        return value

    def device_function(name: str, function):
        computing = name not in _METADATA  # reading shapes and dtypes launches no kernel

        @functools.wraps(function)
        def call(*args, **kwargs):
            refuse_host(args, computing)
            refuse_host(kwargs.values(), computing)
            state.calls += computing
            return wrap(function(*unwrap(args), **unwrap(kwargs)))
        call.__name__ = name
        return call

    class ndarray:
        """Host data tagged with its device; arithmetic through the simulated ufuncs."""

        __module__ = "cupy"  # as type(a).__module__ is for CuPy's arrays

        __array_priority__ = 100

        def __init__(self, data: np.ndarray, device_id: int):
            self._data, self.device = data, types.SimpleNamespace(id=device_id)

        shape = property(lambda self: self._data.shape)
        dtype = property(lambda self: self._data.dtype)
        ndim = property(lambda self: self._data.ndim)
        size = property(lambda self: self._data.size)
        nbytes = property(lambda self: self._data.nbytes)
        T = property(lambda self: ndarray(self._data.T, self.device.id))

        @property
        def __cuda_array_interface__(self):
            return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                    "data": (id(self), False)}

        def __array__(self, *args, **kwargs):
            raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                            "`.get()` to construct a NumPy array explicitly.")

        def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
            if method != "__call__":
                return NotImplemented  # no ufunc.at, .reduce ... through NumPy
            return getattr(cupy, ufunc.__name__)(*inputs, **kwargs)

        def __array_function__(self, func, types_, args, kwargs):
            ours = getattr(cupy, func.__name__, None)
            if ours is None:
                return NotImplemented
            return ours(*args, **kwargs)

        def get(self):  # the explicit device -> host copy
            state.host_copies += 1
            return self._data.copy()

        def astype(self, dtype, copy=True):
            return wrap(self._data.astype(dtype, copy=copy))

        def item(self):
            return self._data.item()

        def __float__(self):
            return float(self._data)

        def __int__(self):
            return int(self._data)

        def __bool__(self):
            return bool(self._data)

        def __len__(self):
            return len(self._data)

        def __iter__(self):
            return (ndarray(row, self.device.id) for row in self._data)

        def __getitem__(self, key):
            return ndarray(np.asarray(self._data[unwrap(key)]), self.device.id)

        def __setitem__(self, key, value):
            self._data[unwrap(key)] = unwrap(value)

        def __repr__(self):
            return f"array({self._data.tolist()!r})  # simulated cupy, device {self.device.id}"

        def __getattr__(self, name):  # other methods: NumPy's, on device data
            if name.startswith("__"):
                raise AttributeError(name)
            attribute = getattr(self._data, name)
            if callable(attribute):
                return device_function(name, attribute)
            return wrap(attribute)

    def _binary(ufunc, reflected=False):
        def method(self, other):
            function = getattr(cupy, ufunc)
            return function(other, self) if reflected else function(self, other)
        return method

    for dunder, ufunc in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                          ("truediv", "true_divide"), ("floordiv", "floor_divide"),
                          ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
                          ("and", "logical_and"), ("or", "logical_or")]:
        setattr(ndarray, f"__{dunder}__", _binary(ufunc))
        setattr(ndarray, f"__r{dunder}__", _binary(ufunc, reflected=True))
    for dunder, ufunc in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"),
                          ("ge", "greater_equal"), ("eq", "equal"), ("ne", "not_equal")]:
        setattr(ndarray, f"__{dunder}__", _binary(ufunc))
    for dunder, ufunc in [("neg", "negative"), ("pos", "positive"), ("abs", "absolute"),
                          ("invert", "invert")]:
        setattr(ndarray, f"__{dunder}__", lambda self, _u=ufunc: getattr(cupy, _u)(self))
    for dunder, ufunc in [("iadd", "add"), ("isub", "subtract"), ("imul", "multiply"),
                          ("itruediv", "true_divide")]:
        def in_place(self, other, _u=ufunc):
            refuse_host([other])
            getattr(np, _u)(self._data, unwrap(other), out=self._data)
            return self
        setattr(ndarray, f"__{dunder}__", in_place)
    ndarray.__hash__ = None

    class CUDARuntimeError(RuntimeError):
        __module__ = "cupy_backends.cuda.api.runtime"

    any_device, pool = cuda_device_and_pool(state)

    class Device(any_device):  # CuPy's, for the devices that exist
        def __init__(self, id=None):
            super().__init__(id)
            if not 0 <= self.id < state.device_count:
                raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def asarray(a, dtype=None, order=None):
        if isinstance(a, ndarray):
            if a.device.id != state.current:
                a = allocated(a._data.copy(), state.current)
            return a if dtype is None else a.astype(dtype, copy=False)
        data = np.array(a, dtype=dtype)
        if data.dtype == object:
            raise ValueError("Unsupported dtype object")
        return allocated(data, state.current)

    def array(a, dtype=None, copy=True, order="K", ndmin=0):
        data = np.array(unwrap(a), dtype=dtype, copy=True, ndmin=ndmin)
        return asarray(data)

    def asnumpy(a, stream=None):
        return a.get() if isinstance(a, ndarray) else np.asarray(a)

    class Cupy(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__") or name in _MISSING:
                raise AttributeError(f"module 'cupy' has no attribute {name!r}")
            attribute = getattr(np, name)
            if isinstance(attribute, (type, np.dtype)) or not callable(attribute):
                return attribute  # dtypes, scalar types, constants
            function = device_function(name, attribute)
            setattr(self, name, function)
            return function

    class ElementwiseKernel(simulated_cuda.ElementwiseKernel):
        """CuPy's, on device arrays (see ``simulated_cuda.ElementwiseKernel``)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            state.kernels.append(self)

        def __call__(self, *args):
            refuse_host(args)
            state.launches += 1
            given = args[len(self.inputs):]
            outs = super().__call__(*unwrap(args))
            if given:
                return given[0] if len(given) == 1 else given
            return wrap(outs)

    cupy = Cupy("cupy")
    cupy.ElementwiseKernel = ElementwiseKernel
    random = types.ModuleType("cupy.random")  # draws made on the host, placed on the device
    for name in ("uniform", "normal", "random", "standard_normal", "rand", "randn", "seed"):
        setattr(random, name, device_function(name, getattr(np.random, name)))
    cupy.random = random
    cupy.ndarray, cupy.state = ndarray, state
    cupy.asarray, cupy.asanyarray, cupy.ascontiguousarray = asarray, asarray, asarray
    cupy.array, cupy.asnumpy = array, asnumpy
    cupy.get_array_module = lambda *args: cupy if any(isinstance(a, ndarray) for a in args) else np
    cupy.get_default_memory_pool = lambda: pool
    memory = types.ModuleType("cupy.cuda.memory")
    memory.OutOfMemoryError = OutOfMemoryError
    runtime = types.ModuleType("cupy_backends.cuda.api.runtime")
    runtime.getDeviceCount, runtime.CUDARuntimeError = lambda: state.device_count, CUDARuntimeError
    cupy.cuda = types.SimpleNamespace(Device=Device, runtime=runtime, memory=memory)

    # cupyx: the pieces symtape uses
    from scipy import sparse as host_sparse
    from scipy import special as host_special

    class csr_matrix:
        """cupyx.scipy.sparse.csr_matrix: device arrays data / indices / indptr."""

        __module__ = "cupyx.scipy.sparse._csr"

        def __init__(self, arg, shape=None, dtype=None):
            data, indices, indptr = arg
            refuse_host([data, indices, indptr])
            self.data, self.indices, self.indptr = data, indices, indptr
            self.shape = tuple(shape)
            self.dtype = data.dtype

        nnz = property(lambda self: int(self.data.size))

        def get(self):
            return host_sparse.csr_matrix(
                (self.data.get(), self.indices.get(), self.indptr.get()), shape=self.shape)

        def toarray(self):
            return wrap(host_sparse.csr_matrix(
                (self.data._data, self.indices._data, self.indptr._data),
                shape=self.shape).toarray())

    def scatter_add(a, slices, value):
        refuse_host([a, value])
        np.add.at(a._data, unwrap(slices), unwrap(value))

    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx_special = types.ModuleType("cupyx.scipy.special")
    cupyx_sparse = types.ModuleType("cupyx.scipy.sparse")
    cupyx.scatter_add, cupyx.scipy = scatter_add, cupyx_scipy
    cupyx_scipy.special, cupyx_scipy.sparse = cupyx_special, cupyx_sparse
    cupyx_special.erf = device_function("erf", host_special.erf)
    cupyx_sparse.csr_matrix = csr_matrix
    return {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy,
            "cupyx.scipy.special": cupyx_special, "cupyx.scipy.sparse": cupyx_sparse}


def install(modules: dict[str, types.ModuleType], monkeypatch) -> None:
    """Put stand-in CuPy modules in ``sys.modules`` for one test (``monkeypatch`` restores
    them), with empty per-backend caches of symtape: no kernel or numeric algebra built on
    the stand-ins outlives it, and the real caches come back untouched."""
    import collections

    import symtape.core.algebra
    import symtape.kernels.cupy_fused

    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(symtape.core.algebra, "_NUMERIC", {})
    monkeypatch.setattr(sys.modules["symtape.kernels.compile"], "_cache", collections.OrderedDict())
    monkeypatch.setattr(symtape.kernels.cupy_fused, "_KERNELS", collections.OrderedDict())


if __name__ == "__main__":  # python tests/simulated_cupy.py SCRIPT [ARGS]: SCRIPT on simulated GPUs
    import os
    import runpy

    sys.modules.update(make_simulated_cupy(device_count=1))
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as `python SCRIPT` has it
    runpy.run_path(sys.argv[0], run_name="__main__")
