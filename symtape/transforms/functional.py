"""``st.function``: Python functions traced once per input signature and compiled, and the
machinery the transforms built on it share (:mod:`symtape.transforms.derivatives`,
:mod:`symtape.transforms.sparse`).

A call means the function applied to its whole arguments. It looks up the trace made for
exactly the arguments' signature (shapes, dtypes, device, and the values of non-numeric
arguments); a new signature is a new trace, so a result never depends on earlier calls.
Tracing runs the function once, eagerly, on the real values (its Python side effects happen
then, once) and compiles its graph; every call, the first included, returns what the kernel
computes (eager and compiled rounding may differ in the last bit). Variables the
function reads are kernel inputs, read at call time; Variables it assigns are kernel
outputs, assigned after each call. Batches of points are explicit: ``st.vmap``
(:mod:`symtape.transforms.vmap`) traces at the point shape and runs the kernel over the batch axes.

Inside a recording ``GradientTape`` or another trace, these callables run the Python
function directly, so that what it computes is recorded and differentiable.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np

from symtape.core import nest
from symtape.arrays.backends import array_module, to_device
from symtape.kernels.compile import any_dask_array, is_dask_array
from symtape.arrays.device import CPU, CURRENT_DEVICE
from symtape.kernels.program import Program
from symtape.kernels.settings import HOST_BACKENDS, resolve_backend
from symtape.core.tensor import (ACTIVE_TAPES, ACTIVE_TRACE, Tensor, Variable,
                                  built_uncollected, leaf_tensors, swap_array)
from symtape.kernels.trace import Trace, placeholder

__all__ = ["Function", "ConcreteFunction", "function", "runs_eagerly"]

# the context the fast path checks on every call, as bound methods (no attribute lookups)
_active_trace, _active_tapes = ACTIVE_TRACE.get, ACTIVE_TAPES.get
_current_device = CURRENT_DEVICE.get


# ---------------------------------------------------------------- signatures


def leaf_spec(leaf) -> tuple:
    """How a leaf argument enters a trace: traced (shape, dtype, weak, device) or static."""
    if isinstance(leaf, Tensor):
        return ("T", tuple(leaf.shape), leaf.dtype, bool(leaf.weak), leaf.device)
    if isinstance(leaf, Variable):  # used like a closed-over Variable: read at call time
        return ("V", id(leaf))
    if isinstance(leaf, float):
        return ("T", (), np.dtype("float64"), True, "/cpu:0")
    if isinstance(leaf, (np.ndarray, np.generic)) or hasattr(leaf, "__cuda_array_interface__"):
        xp = array_module(leaf)
        device = "/cpu:0" if xp is np else f"/gpu:{leaf.device.id}"
        if leaf.dtype.kind not in "fiub":
            raise TypeError(f"st.function: an argument has dtype {leaf.dtype}; pass numeric arrays")
        return ("T", tuple(leaf.shape), leaf.dtype, False, device)
    if isinstance(leaf, (list, tuple)):  # pragma: no cover (flatten opens these)
        raise AssertionError
    try:
        hash(leaf)
    except TypeError:
        return ("S", id(leaf))
    return ("S", type(leaf), leaf)


def _plain_key(args: tuple):
    """A cheap signature for positional arguments that are all Python floats or host NumPy
    arrays (what optimizer loops pass), or None: the key of a call's fast path. It stands
    for exactly the specs :func:`leaf_spec` gives such arguments."""
    kinds = tuple(map(type, args))
    if kinds.count(float) == len(kinds):  # only Python floats: their types are the key
        return kinds
    key = []
    for arg in args:
        kind = type(arg)
        if kind is float:
            key.append(float)
        elif kind is np.ndarray:
            key.append((arg.shape, arg.dtype))
        else:
            return None
    return tuple(key)


def placed(leaves: list) -> list:
    """Host arrays go to the current device (``st.device``), as new constants would."""
    device = CURRENT_DEVICE.get()
    if device is CPU:
        return leaves
    return [to_device(leaf, device) if isinstance(leaf, np.ndarray) else leaf for leaf in leaves]


def _value(leaf):
    return leaf.array if isinstance(leaf, Tensor) else leaf


def _point(leaf, depth: int):
    """One point of a leaf with ``depth`` leading batch axes, to trace at: its first point,
    or zeros where the batch is empty or lazy (only the graph matters)."""
    value = _value(leaf)
    shape = tuple(value.shape)
    if is_dask_array(value) or 0 in shape[:depth]:
        xp = array_module(value._meta) if is_dask_array(value) else array_module(value)
        return xp.zeros(shape[depth:], dtype=value.dtype)
    return value[(0,) * depth + (Ellipsis,)]  # an array even at a scalar point: a NumPy
    # scalar would be a Python float to the signature (weak), a needless second trace


def _argument_names(fn: Callable, args: tuple, kwargs: dict) -> list[str]:
    """One symbol name per flattened argument leaf: the parameter's name (``x``, ``xs_0``)."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        items = []
        for name, value in bound.arguments.items():
            kind = inspect.signature(fn).parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                items.extend((f"{name}{i}", v) for i, v in enumerate(value))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                items.extend(value.items())
            else:
                items.append((name, value))
    except (TypeError, ValueError):  # builtins, odd callables: positional names
        items = [(f"arg{i}", v) for i, v in enumerate(args)] + list(kwargs.items())
    names = []
    for name, value in items:
        leaves, _ = nest.flatten(value)
        names.extend([name] if len(leaves) == 1 and leaves[0] is value else
                     [f"{name}_{i}" for i in range(len(leaves))])
    return names


# ---------------------------------------------------------------- traced functions


class ConcreteFunction:
    """One trace of a :class:`Function`: its closed forms (``expr``) and its kernel.

    Examples
    --------
    >>> import symtape as st
    >>> f = st.function(lambda x: x**2 - 2*x + 1)
    >>> c = f.get_concrete_function(0.0)
    >>> c.expr
    x**2 - 2*x + 1
    >>> c(3.0).numpy()
    array(4.)
    """

    def __init__(self, function: "Function", specs: list[tuple], outputs: Any,
                 placeholders: list[Tensor], trace: Trace, backend: str):
        out_leaves, _ = nest.flatten(outputs)
        self._rebuild = nest.builder(outputs)  # rebuilt on every call: made once
        self._function = function
        self.specs = specs
        self._positions = [i for i, leaf in enumerate(out_leaves)
                           if isinstance(leaf, (Tensor, Variable))]
        self._outputs = [read_tensor(out_leaves[i]) for i in self._positions]
        self._static = out_leaves
        self._assigned = [variable for variable, _ in trace.assigned.values()]
        news = [new for _, new in trace.assigned.values()]
        self._program = Program(placeholders, self._outputs + news, trace.aliases, backend)
        # outputs are the kernel's results as they are: no Variables assigned, no static leaves
        self._direct = not self._assigned and len(self._positions) == len(out_leaves)
        # every argument traced, on the host: calls can skip flattening and batch checks
        self.takes_plain = (self._program.backend in HOST_BACKENDS
                            and all(s[0] == "T" for s in specs))
        # the call's fast path, run_plain(args): args are Python floats and host arrays of
        # exactly the traced signature (see _plain_key), so there is nothing to flatten or
        # check; one closure over the kernel (a repeated call costs microseconds)
        self.run_plain = self._program.exact_caller(
            scalars=function._wrap, then=self._plain_outputs(function._wrap),
            layout=(functools.partial(nest.expression, outputs)
                    if self._direct and not function._wrap else None)
        ) if self.takes_plain else None

    @property
    def expr(self):
        """The traced closed forms, in the structure the function returns.

        Examples
        --------
        >>> import symtape as st
        >>> st.function(lambda a, b: (a * b, a + b)).get_concrete_function(1.0, 2.0).expr
        (a*b, a + b)
        """
        leaves = list(self._static)
        for i, t in zip(self._positions, self._outputs):
            leaves[i] = t.expr
        return self._rebuild(leaves)

    @property
    def source(self) -> str:
        """The generated kernel's Python source.

        Examples
        --------
        >>> import symtape as st
        >>> print(st.function(lambda x: 2 * x).get_concrete_function(1.0).source)
        def kernel(_args, _variables):
            _a0 = _args[0]
            return (2.0*_a0,)
        <BLANKLINE>
        """
        return self._program.source

    def __call__(self, *args, **kwargs):
        leaves, _ = nest.flatten((args, kwargs))
        leaves = placed(leaves)  # as the st.function call would place them
        specs = [leaf_spec(leaf) for leaf in leaves]
        if len(specs) != len(self.specs) or not all(map(_same_kind, self.specs, specs)):
            raise TypeError(f"this concrete function was traced for arguments "
                            f"{_describe(self.specs)}, got {_describe(specs)}; call the "
                            "st.function itself to trace new signatures (or st.vmap it to "
                            "map it over a batch axis)")
        return self._run(leaves, self._function._wrap)

    def _run(self, leaves: list, wrap: bool = True, mapped: bool = False):
        """The kernel on these leaves: of the traced shapes, or, when ``mapped`` (st.vmap),
        with leading batch axes on some of them (the Program broadcasts over those)."""
        values = [_value(leaf) for leaf, spec in zip(leaves, self.specs) if spec[0] == "T"]
        if mapped and self._assigned:
            raise ValueError("st.vmap: this function assigns Variables, which has no mapped "
                             "form (each point would assign a different value); return the "
                             "new values instead and assign them outside")
        results = self._program(values)
        return self._finish(results, wrap, self._program.backend in HOST_BACKENDS)

    def run_mapped(self, leaves: list):
        """The kernel on the flattened arguments, some with leading batch axes (what
        ``st.vmap`` runs once it has the trace at the point shape)."""
        return self._run(leaves, self._function._wrap, mapped=True)

    def _plain_outputs(self, wrap: bool) -> Callable[[list], Any]:
        """What the fast path makes of the kernel's outputs (0-d ones NumPy scalars where
        ``wrap``, as :meth:`_finish` makes them)."""
        if not self._direct:  # Variables to assign, static outputs
            return lambda results: self._finish(results, wrap, True)
        rebuild = self._rebuild
        if wrap:
            return functools.partial(built_uncollected, rebuild)
        return rebuild  # the transforms': arrays as they come

    def _finish(self, results: list, wrap: bool, host: bool):
        """Assign the Variables the function assigns, and return the outputs as traced (a
        0-d host result wrapped as a NumPy scalar: Tensors of those compute ~10x faster)."""
        n = len(self._outputs)
        for variable, value in zip(self._assigned, results[n:]):
            value = value.astype(variable.dtype) if value.dtype != variable.dtype else value
            swap_array(variable, value[()] if value.ndim == 0 else value)
        values = results[:n]
        if wrap:
            values = leaf_tensors([v[()] if host and type(v) is np.ndarray and v.ndim == 0
                                   else v for v in values])
        if len(values) == len(self._static):  # every output is a Tensor: no static leaves
            return self._rebuild(values)
        out = list(self._static)
        for i, value in zip(self._positions, values):
            out[i] = value
        return self._rebuild(out)


def _same_kind(traced: tuple, spec: tuple) -> bool:
    """Same static values, shapes, dtypes and devices (a Python float and a float64 0-d
    array are the same kind here)."""
    if traced[0] != "T" or spec[0] != "T":
        return traced == spec
    return traced[1] == spec[1] and traced[2] == spec[2] and traced[4] == spec[4]


def _describe(specs: list[tuple]) -> str:
    parts = []
    for spec in specs:
        if spec[0] == "T":
            parts.append(f"{spec[2]}{list(spec[1])}")
        elif spec[0] == "V":
            parts.append("a Variable")
        else:
            parts.append(repr(spec[2]) if len(spec) > 2 else "an object")
    return "(" + ", ".join(parts) + ")"


def read_tensor(value) -> Tensor:
    """A Variable's current value as a Tensor; anything else as it is."""
    return value.value() if isinstance(value, Variable) else value


class Function:
    """A Python function traced once per input signature and compiled (``st.function``).

    Parameters
    ----------
    python_function : callable
        The function to trace.
    wrap_outputs : bool, default True
        Calls return Tensors, as ``tf.function``'s do; False returns arrays (what the
        transforms ``st.grad`` etc. return).
    backend : {'numpy', 'numba', 'cupy'}, optional
        The kernel's backend (default: ``st.config.get_default_backend()``). GPU values
        always run on the GPU.

    Examples
    --------
    >>> import symtape as st
    >>> @st.function
    ... def f(x):
    ...     return st.sin(x) * x
    >>> float(f(1.0))
    0.8414709848078965
    >>> f.expr
    x*sin(x)
    """

    def __init__(self, python_function: Callable, wrap_outputs: bool = True,
                 backend: str | None = None):
        if not callable(python_function):
            raise TypeError(f"st.function expects a callable, got {type(python_function).__name__}")
        self.backend = resolve_backend(backend)  # 'numpy', 'numba' or 'cupy'
        self.python_function = python_function
        self._wrap = wrap_outputs
        self._traces: list[ConcreteFunction] = []
        self._by_specs: dict[tuple, ConcreteFunction] = {}
        self._by_plain_key: dict[tuple, Callable] = {}  # the fast path: key -> run_plain
        # name and docstring, not __dict__ (that of another Function holds its traces)
        functools.update_wrapper(self, python_function, updated=())

    def __call__(self, *args, **kwargs):
        if not kwargs:  # the fast path (a call costs microseconds in optimizer loops): a
            # repeated signature of Python floats, whose types are their _plain_key (no other
            # key holds a type), or of floats and host arrays; nothing is flattened
            run = self._by_plain_key.get(tuple(map(type, args)))
            if run is None:
                run = self._by_plain_key.get(_plain_key(args))
            if (run is not None and _active_trace() is None  # runs_eagerly(), inlined
                    and _current_device() is CPU
                    and not (_active_tapes() and runs_eagerly())):
                return run(args)
        return self._call(self._arguments(args), kwargs)

    def _arguments(self, args: tuple) -> tuple:
        """The positional arguments as the Python function takes them (the transforms make
        differentiated ints floats)."""
        return args

    def _call(self, args: tuple, kwargs: dict):
        if runs_eagerly():
            return self.python_function(*args, **kwargs)
        leaves, rebuild = nest.flatten((args, kwargs))
        if any_dask_array(leaves):
            from symtape import chunked

            return chunked.call_whole(self, leaves, rebuild)
        leaves = placed(leaves)
        specs = [leaf_spec(leaf) for leaf in leaves]
        concrete = self._lookup(specs)
        if concrete is None:  # traced (Python side effects happen once, here), and then,
            # as every later call, the kernel: a result never depends on call history (the
            # eager values may differ in the last bit from the compiled ones)
            concrete = self._trace(*rebuild(leaves), leaves, rebuild, specs)
        result = concrete._run(leaves, self._wrap)
        key = None if kwargs else _plain_key(args)
        if key is not None and concrete.takes_plain and CURRENT_DEVICE.get() is CPU:
            self._by_plain_key[key] = concrete.run_plain
        return result

    def _call_mapped(self, args: tuple, kwargs: dict, batched: list[bool], depth: int):
        """The call under ``st.vmap``: the flattened leaves marked in ``batched`` carry
        ``depth`` leading batch axes (the others none). Traced at the point shape, the
        kernel runs over all the batch axes in one call (block by block on dask arrays)."""
        leaves, rebuild = nest.flatten((self._arguments(args), kwargs))
        point_args, point_kwargs = rebuild([_point(leaf, depth) if b else leaf
                                            for leaf, b in zip(leaves, batched)])
        with np.errstate(all="ignore"):  # a lazy or empty batch is traced at zeros
            concrete = self.get_concrete_function(*point_args, **point_kwargs)
        if any_dask_array(leaves):
            from symtape import chunked

            return chunked.call_mapped(concrete, leaves)
        return concrete.run_mapped(placed(leaves))

    def __get__(self, instance, owner=None):
        """As a method: ``self`` is a static argument (one trace per instance)."""
        return self if instance is None else functools.partial(self, instance)

    def get_concrete_function(self, *args, **kwargs) -> ConcreteFunction:
        """The trace for these arguments (traced now if needed; Variables are left unchanged).

        Examples
        --------
        >>> import symtape as st
        >>> st.function(lambda x: st.exp(x)).get_concrete_function(0.0).expr
        exp(x)
        """
        leaves, rebuild = nest.flatten((args, kwargs))
        leaves = placed(leaves)
        specs = [leaf_spec(leaf) for leaf in leaves]
        concrete = self._lookup(specs)
        if concrete is None:
            args, kwargs = rebuild(leaves)
            concrete = self._trace(args, kwargs, leaves, rebuild, specs)
        return concrete

    @property
    def expr(self):
        """The closed forms of the most recent trace (call the function once first).

        Examples
        --------
        >>> import symtape as st
        >>> f = st.function(lambda x: x**3)
        >>> _ = f(2.0)
        >>> f.expr
        x**3
        """
        if not self._traces:
            raise ValueError("this function has not been traced yet; call it (or "
                             "get_concrete_function) with example arguments first")
        return self._traces[-1].expr

    def _lookup(self, specs: list[tuple]) -> ConcreteFunction | None:
        """The trace made for exactly these specs, if any."""
        return self._by_specs.get(tuple(specs))

    def _trace(self, args, kwargs, leaves, rebuild, specs) -> ConcreteFunction:
        """Trace the function at these arguments and compile it; Variables it assigns are
        left unchanged (the kernel assigns them when it runs)."""
        placeholders, traced = _placeholders(self.python_function, args, kwargs, leaves, specs)
        traced_args, traced_kwargs = rebuild(traced)
        with Trace() as trace:
            outputs = self.python_function(*traced_args, **traced_kwargs)
        backend = _backend(placeholders, trace)
        if backend == "numpy":  # host values: the backend asked for (GPU values stay there)
            backend = self.backend
        concrete = ConcreteFunction(self, specs, outputs, placeholders, trace, backend)
        self._traces.append(concrete)
        self._by_specs[tuple(specs)] = concrete
        for variable, value in trace.originals.values():
            swap_array(variable, value)
        return concrete

    def __repr__(self) -> str:
        return f"<st.function {getattr(self.python_function, '__name__', '?')}>"


def _placeholders(fun, args, kwargs, leaves: list, specs: list) -> tuple[list, list]:
    """(the placeholders, the leaves with each traced one replaced by its placeholder)."""
    names = _argument_names(fun, args, kwargs)
    placeholders, traced = [], []
    for leaf, spec, name in zip(leaves, specs, names):
        if spec[0] == "T":
            value = np.asarray(leaf) if isinstance(leaf, float) else _value(leaf)
            leaf = placeholder(value[()] if np.ndim(value) == 0 else value, name, spec[3])
            placeholders.append(leaf)
        traced.append(leaf)
    return placeholders, traced


def _backend(placeholders: list[Tensor], trace: Trace) -> str:
    values = [p.array for p in placeholders]
    values += [variable.array for variable, _ in trace.originals.values()]
    return "numpy" if array_module(*values) is np else "cupy"


def runs_eagerly() -> bool:
    """Whether compiled functions run their Python function here (inside a trace or a
    recording tape, so that what it computes is recorded) instead of their kernel.

    Examples
    --------
    >>> import symtape as st
    >>> runs_eagerly()
    False
    >>> with st.GradientTape():
    ...     runs_eagerly()
    True
    """
    if ACTIVE_TRACE.get() is not None:
        return True
    tapes = ACTIVE_TAPES.get()  # usually none: skip the generator (this is on every call)
    return bool(tapes) and any(t._recording for t in tapes)


def function(func: Callable | None = None, *, backend: str | None = None):
    """Trace a Python function once per input signature and compile it (like ``tf.function``).

    Later calls with the same signature (shapes, dtypes, device) run the compiled kernel;
    a new signature (another shape, say) is a new trace: a call means the function applied
    to its whole arguments, whatever was called before. ``st.vmap`` maps it over a batch.
    Variables the function reads are read at call time, and assignments are replayed.
    Python control flow on Tensor values is not traced: use ``st.where``.

    Parameters
    ----------
    func : callable, optional
        The function, taking Tensors, arrays, numbers or nested lists of them. Without it,
        ``st.function(backend=...)`` returns a decorator.
    backend : {'numpy', 'numba', 'cupy'}, optional
        The kernel's backend (default: ``st.config.get_default_backend()``). GPU values
        always run on the GPU.

    Returns
    -------
    Function
        Callable like ``func``; it returns Tensors.

    Raises
    ------
    TypeError
        If ``func`` is not callable.
    ValueError
        If ``backend`` is not a known backend.

    Examples
    --------
    >>> import symtape as st
    >>> @st.function
    ... def f(x):
    ...     with st.GradientTape() as tape:
    ...         tape.watch(x)
    ...         y = x**2 - 2*x + 1
    ...     return tape.gradient(y, x), y
    >>> [t.numpy() for t in f(st.constant(0.0))]
    [array(-2.), array(1.)]
    >>> [t.numpy() for t in f(st.constant(1.0))]
    [array(0.), array(0.)]
    """
    if func is None:
        return functools.partial(function, backend=backend)
    return Function(func, backend=backend)


# ---------------------------------------------------------------- shared by the transforms


def argnums_tuple(argnums, nargs: int) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence of ints) as a tuple, each checked against ``nargs``."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not isinstance(i, int) or not -nargs <= i < nargs:
            raise ValueError(f"argnums={argnums!r} does not name a positional argument of a "
                             f"call with {nargs} of them")
    return tuple(i % nargs for i in nums)


def differentiated(args: tuple, nums: tuple[int, ...]) -> tuple:
    """The arguments with Python ints made floats; integer arrays are refused."""
    args = list(args)
    for i in nums:
        leaves, rebuild = nest.flatten(args[i])
        fixed = []
        for leaf in leaves:
            if isinstance(leaf, (bool, int)) and not isinstance(leaf, bool):
                leaf = float(leaf)
            dtype = getattr(leaf, "dtype", None)
            if dtype is not None and np.dtype(dtype).kind != "f":
                raise TypeError(f"argument {i} has dtype {dtype}; only float arguments can be "
                                "differentiated — pass float values (e.g. st.cast(x, st.float64))")
            fixed.append(leaf)
        args[i] = rebuild(fixed)
    return tuple(args)


def scalar_output(y, what: str) -> Tensor:
    """``y`` as a scalar Tensor, or a TypeError saying that ``what`` needs one."""
    y = read_tensor(y) if isinstance(y, (Tensor, Variable)) else None
    if y is None or y.shape != ():
        shape = None if y is None else y.shape
        raise TypeError(f"st.{what} needs a function returning a scalar Tensor, got "
                        f"{'shape ' + str(shape) if y is not None else 'a non-Tensor'}; "
                        "use st.jacobian for vector outputs (or st.reduce_sum the output); to "
                        f"evaluate it at a batch of points, map it: st.vmap(st.{what}(f))")
    if y.dtype.kind != "f":
        raise TypeError(f"st.{what}: the function returns dtype {y.dtype}; it must be a float")
    return y
