"""SciPy bridges (``st.optimize``): ``scipy.optimize`` with compiled derivatives.

The objective is written with symtape ops on one vector argument. Its value and gradient,
Hessian (sparse, structural nonzeros only) or Hessian-vector product are traced once, at
``x0``, and compiled; every iteration then runs kernels only (no SymPy, no tape). For
``trust-exact`` on host arrays, value, gradient and Hessian come from one trace whose
recorded ops are replayed for the first points (a fit of a few Newton steps never waits for
a kernel to be generated) before one kernel compiled from it takes over. SciPy is an
optional extra (``pip install 'symtape[scipy]'``).

Examples
--------
>>> import numpy as np, symtape as st
>>> def rosen(x):
...     return st.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
>>> result = st.optimize.minimize(rosen, np.full(10, -1.0), method="trust-exact")
>>> result.success, bool(np.allclose(result.x, 1.0))
(True, True)
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

from symtape.arrays.backends import array_module, is_gpu_array, to_host
from symtape.arrays.device import CPU, CURRENT_DEVICE
from symtape.core import nest
from symtape.core.ops import reduce_sum
from symtape.core.tape import GradientTape
from symtape.core.tensor import ACTIVE_TRACE, Tensor, swap_array
from symtape.kernels.compile import any_dask_array
from symtape.kernels.program import Program
from symtape.kernels.settings import resolve_backend
from symtape.kernels.trace import Trace, placeholder, replay
from symtape.transforms import array_derivatives
from symtape.transforms.derivatives import grad, hessian, jacobian, value_and_grad
from symtape.transforms.functional import Function, runs_eagerly, scalar_output

__all__ = ["minimize", "least_squares"]

# which derivatives each scipy.optimize.minimize method can use
_HESSIAN = {"trust-exact", "dogleg"}  # a dense matrix
_SPARSE_HESSIAN = {"trust-constr"}  # a matrix, sparse welcome
_PRODUCT = {"newton-cg", "trust-ncg", "trust-krylov"}  # Hessian-vector products suffice
_NO_GRADIENT = {"nelder-mead", "powell", "cobyla", "cobyqa"}
# methods that ask for value, gradient and Hessian at every point they visit (trust-exact
# factors the Hessian of each trial point as it makes its subproblem): one kernel gives all
_EVERY_POINT = {"trust-exact"}


def _scipy_optimize():
    try:
        import scipy.optimize
    except ImportError:
        raise ImportError("st.optimize needs SciPy, an optional extra: "
                          "pip install 'symtape[scipy]'") from None
    return scipy.optimize


def minimize(fun: Callable, x0, method: str | None = None, args: tuple = (),
             progress: bool = False, kwargs: dict | None = None, **scipy_kwargs):
    """``scipy.optimize.minimize`` with the compiled gradient, Hessian or Hessian products.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)``: symtape ops on the vector ``x`` (shape of ``x0``), returning a
        scalar Tensor.
    x0 : array-like
        The start; float64.
    method : str, optional
        Any SciPy method; ``'trust-exact'``/``'dogleg'`` get the exact dense Hessian
        (``'trust-exact'``, which asks for all three at every point, its value, gradient and
        Hessian from one kernel call), ``'trust-constr'`` the sparse one (a dense array where
        it is mostly dense), ``'Newton-CG'``/``'trust-ncg'``/``'trust-krylov'`` compiled
        Hessian-vector products, the others the gradient.
    args : tuple
        Extra arguments of ``fun`` (not differentiated): data, as NumPy, CuPy or dask arrays
        (a Python list of numbers among them is made one array, as ``np.asarray`` makes it).
        A single array in place of the tuple is one argument, as SciPy takes it.
    progress : bool, default False
        Show the iterations and the loss as they go (a ``tqdm`` bar if tqdm is installed,
        else a line on stderr about once a second).
    kwargs : dict, optional
        Keyword arguments of ``fun``: ``fun(x, *args, **kwargs)``, as ``least_squares`` (and
        SciPy's) take them; their values are data too.
    **scipy_kwargs
        Passed to SciPy (``tol``, ``bounds``, ``constraints``, ``options``, ``callback``, ...).

    Returns
    -------
    scipy.optimize.OptimizeResult
        SciPy's result, plus ``history``: the loss after each iteration (to plot).

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> f = lambda x: (x[0] - 1) ** 2 + 10 * (x[1] - x[0] ** 2) ** 2
    >>> r = st.optimize.minimize(f, [0.0, 0.0], method="Newton-CG")
    >>> np.round(r.x, 4).tolist()
    [1.0, 1.0]
    """
    optimize = _scipy_optimize()
    x0 = _start(x0, "minimize")
    fun, args = _positional(fun, args, kwargs, "minimize")
    flat = _flat_objective(fun, x0.shape)
    objective, options = _derivatives(flat, x0.reshape(-1), args, (method or "").lower())
    options.update(scipy_kwargs)
    monitor = _Monitor(options.pop("callback", None), progress)
    try:
        result = optimize.minimize(objective, x0.reshape(-1), args=tuple(args), method=method,
                                   callback=monitor, **options)
    finally:
        monitor.close()
    result.history = np.array(monitor.history)
    return result


def _derivatives(flat: Callable, x0: np.ndarray, args: tuple, method: str) -> tuple:
    """``(objective, options)`` for ``scipy.optimize.minimize``: the objective (value and
    gradient together, except for the methods without gradients) and the derivative options
    ``method`` takes (``jac``, ``hess`` or ``hessp``), compiled at ``x0``."""
    chunked = any_dask_array(args)  # data in dask arrays: every derivative sums over chunks
    together = method in _EVERY_POINT and not chunked
    if together:
        point = _LastPoint.compiled(flat, x0, args)
        if point is not None:  # one kernel call a point for value, gradient and Hessian
            return point.objective, {"jac": True, "hess": point.hessian}
    evaluate = _summed_over_chunks if chunked else _whole
    if method in _NO_GRADIENT:
        value = evaluate(Function(flat, wrap_outputs=False))
        return (lambda x, *a: float(value(x, *a))), {}
    value_grad = evaluate(value_and_grad(flat))
    if not chunked:
        value_grad(x0, *args)  # trace and compile at the start, once

    def objective(x, *a):
        value, gradient = value_grad(x, *a)
        return float(value), gradient

    options: dict[str, Any] = {"jac": True}
    if method in _HESSIAN or method in _SPARSE_HESSIAN:  # summed over chunks: dense, for both
        options["hess"] = (evaluate(hessian(flat)) if chunked else
                           _hessian(flat, x0, args, dense=method in _HESSIAN,
                                    array_level=not together))  # known not to cover it
    elif method in _PRODUCT:
        options["hessp"] = evaluate(_hessian_product(flat))
    return objective, options


def _whole(transform: Callable) -> Callable:
    """A compiled derivative on data held whole, its results on the host for SciPy (data on
    a GPU stays there; each call copies only the results)."""
    return lambda *args: _on_host(transform(*args))


def _on_host(result):
    """CuPy arrays and ``cupyx.scipy.sparse`` matrices in ``result`` copied to the host."""
    if isinstance(result, tuple):
        return tuple(_on_host(r) for r in result)
    if is_gpu_array(result) or type(result).__module__.startswith("cupyx."):
        return result.get()
    return result


def _summed_over_chunks(transform: Callable) -> Callable:
    """A compiled derivative on data in dask arrays: ``fun(x, *args)`` must be a sum over
    the data's rows; it is evaluated chunk by chunk and added up (Dask computes)."""
    from symtape.chunked import chunk_sum

    return lambda *args: chunk_sum(transform, args)


class _Monitor:
    """SciPy's per-iteration callback: records the loss, shows progress, calls the user's."""

    def __init__(self, user_callback: Callable | None, progress: bool):
        self.history: list[float] = []
        self._user = user_callback
        self._bar = _progress_bar() if progress else None
        self._shown = 0.0

    def __call__(self, intermediate_result):  # SciPy passes an OptimizeResult by this name
        self.history.append(float(intermediate_result.fun))
        if self._bar is not None:
            self._bar(len(self.history), self.history[-1])
        if self._user is not None:
            return _call_user(self._user, intermediate_result)
        return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar(None, None)


def _call_user(callback: Callable, state):
    """Call a user's callback the way SciPy would: with the result, or with ``xk``."""
    import inspect

    try:
        names = list(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        names = []
    return callback(state) if names[:1] == ["intermediate_result"] else callback(state.x)


def _progress_bar() -> Callable:
    """``update(iteration, loss)``; ``update(None, None)`` closes it."""
    import sys
    import time

    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(desc="minimize", unit="it")

        def update(iteration, loss):
            if iteration is None:
                bar.close()
            else:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.6g}")

        return update
    last = [0.0]

    def update(iteration, loss):
        now = time.monotonic()
        if iteration is not None and now - last[0] >= 1.0:
            last[0] = now
            print(f"minimize: iteration {iteration}, loss {loss:.6g}", file=sys.stderr)

    return update


def least_squares(fun: Callable, x0, args: tuple = (), kwargs: dict | None = None,
                  **scipy_kwargs):
    """``scipy.optimize.least_squares`` with the compiled Jacobian of the residuals.

    With more residuals than unknowns (the usual fit), the Jacobian is computed a column at
    a time (one reverse sweep per unknown over the residuals' vector-Jacobian product), so a
    fit to thousands of data points compiles and runs as fast as one to a few.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)``: symtape ops on the vector ``x``, returning the residual vector.
    x0 : array-like
    args : tuple
        Extra arguments of ``fun`` (data; a Python list of numbers is made an array).
    kwargs : dict, optional
        Keyword arguments of ``fun``, as in SciPy: ``fun(x, *args, **kwargs)``.
    **scipy_kwargs
        Passed to SciPy (``method``, ``bounds``, ``loss``, ``x_scale``, ...).

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> t = np.linspace(0, 1, 20)
    >>> data = 2.0 * np.exp(-1.5 * t)
    >>> residuals = lambda p: p[0] * st.exp(-p[1] * st.constant(t)) - st.constant(data)
    >>> np.round(st.optimize.least_squares(residuals, [1.0, 1.0]).x, 6).tolist()
    [2.0, 1.5]

    Data as keyword arguments, as SciPy passes them:

    >>> fit = lambda p, t, data: p[0] * st.exp(-p[1] * t) - data
    >>> result = st.optimize.least_squares(fit, [1.0, 1.0], args=(t,), kwargs={"data": data})
    >>> np.round(result.x, 6).tolist()
    [2.0, 1.5]
    """
    optimize = _scipy_optimize()
    fun, args = _positional(fun, args, kwargs, "least_squares")
    if any_dask_array(args):
        raise TypeError("least_squares: its Jacobian has a row per residual, which data in a "
                        "dask array would gather to one process; minimize the sum of squared "
                        "residuals instead: st.optimize.minimize(lambda x, *a: "
                        "st.reduce_sum(fun(x, *a) ** 2), x0, args, method='trust-exact')")
    x0 = _start(x0, "least_squares")
    flat = _flat_objective(fun, x0.shape)
    residuals = _plain(flat)
    jac = jacobian(flat)  # by columns when residuals outnumber unknowns (the usual fit)
    jac(x0.reshape(-1), *args)  # trace and compile once
    return optimize.least_squares(residuals, x0.reshape(-1), jac=_whole(jac), args=tuple(args),
                                  **scipy_kwargs)


def _start(x0, where: str) -> np.ndarray:
    """``x0`` as float64 on the host (SciPy works there; data may be on a GPU)."""
    start = to_host(x0).astype(np.float64)
    if start.size == 0:
        raise ValueError(f"{where}: x0 is empty (shape {start.shape}); it is the starting value "
                         "of the unknowns, so give at least one, e.g. x0=np.zeros(3)")
    return start


def _positional(fun: Callable, args, kwargs: dict | None, where: str) -> tuple[Callable, tuple]:
    """``fun`` and its extra arguments as compiled derivatives take them: all positional.

    SciPy's ``kwargs`` follow ``args`` as traced arguments (data, not constants baked into
    the kernels), passed back by name; lists of numbers become arrays.
    """
    if args is None:
        args = ()
    elif not isinstance(args, (tuple, list)):  # one argument (an array, say), as SciPy wraps it
        args = (args,)
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"{where}: kwargs must be a dict of keyword arguments of fun, got a "
                        f"{type(kwargs).__name__}")
    args = tuple(_as_data(a, f"{where}: args[{i}]") for i, a in enumerate(args))
    if not kwargs:
        return fun, args
    names = tuple(kwargs)
    values = tuple(_as_data(kwargs[name], f"{where}: kwargs[{name!r}]") for name in names)
    count = len(args)

    def by_name(x, *extra):
        return fun(x, *extra[:count], **dict(zip(names, extra[count:])))

    return by_name, args + values


def _as_data(value, where: str):
    """A (nested) list of numbers as one array: else each number would be traced apart."""
    if isinstance(value, list):
        leaves = nest.flatten(value)[0]
        if leaves and all(isinstance(leaf, numbers.Number) for leaf in leaves):
            try:
                return np.asarray(value)
            except ValueError:
                raise ValueError(f"{where} is a ragged list of numbers (rows of different "
                                 "lengths); pass a NumPy array, or a tuple of arrays") from None
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_as_data(v, where) for v in value)
    return value


def _flat_objective(fun: Callable, shape: tuple) -> Callable:
    """``fun`` on SciPy's flat vector: reshaped to ``x0``'s shape when that is not 1-D."""
    if len(shape) == 1:
        return fun

    def reshaped(x, *args):
        from symtape.core.ops import reshape

        return fun(reshape(x, shape), *args)

    return reshaped


def _plain(flat: Callable) -> Callable:
    """The residual vector alone, compiled, as float64."""
    compiled = Function(flat, wrap_outputs=False)
    return lambda x, *args: to_host(compiled(x, *args)).astype(np.float64)


def _hessian(flat: Callable, x0: np.ndarray, args: tuple, dense: bool,
             array_level: bool = True) -> Callable:
    """The compiled Hessian for SciPy: dense where the method wants it or the pattern is
    mostly dense (a sparse matrix would then only cost more), else ``scipy.sparse``. A
    dense one whose graph the array-level route covers is that route's (a few matrix
    products a call, :mod:`symtape.transforms.array_derivatives`), never a product per colour;
    where that route's value at ``x0`` is mostly nonzero, no pattern is derived at all.
    ``array_level=False`` where that route is already known not to cover the function."""
    if array_level:  # for a method that welcomes sparse matrices: if mostly nonzero at x0
        whole = _array_level(flat, x0, args, mostly_nonzero=not dense)
        if whole is not None:
            return whole
    sparse = _whole(hessian(flat, sparse=True))
    first = sparse(x0, *args)  # derive the pattern and compile once
    if not dense and 2 * first.nnz > first.shape[0] * first.shape[1]:  # mostly dense
        whole = _array_level(flat, x0, args)
        if whole is not None:
            return whole
        dense = True
    return _keeping_first(sparse, x0, first.toarray() if dense else first,
                          (lambda value: value.toarray()) if dense else (lambda value: value))


def _array_level(flat: Callable, x0: np.ndarray, args: tuple,
                 mostly_nonzero: bool = False) -> Callable | None:
    """The array-level dense Hessian, traced and compiled at ``x0``; None where its route
    does not cover the function, or, with ``mostly_nonzero``, where its value at ``x0`` is
    mostly zeros (the trace then stops before compiling: a sparse matrix may pay). Entries
    nonzero at ``x0`` are nonzero in the structural pattern too, so a value mostly nonzero
    means a pattern mostly dense: no pattern need be derived to know that."""
    def traced(x, *extra):
        value = _array_derivatives(flat, x, extra)[2]
        if mostly_nonzero and 2 * int(array_module(value.array).count_nonzero(value.array)) \
                <= math.prod(value.shape):
            raise _MostlyZero
        return value

    compiled = _whole(Function(traced, wrap_outputs=False))
    try:
        first = compiled(x0, *args)
    except (array_derivatives.NotCovered, _MostlyZero):
        return None
    return _keeping_first(compiled, x0, first, lambda value: value)


class _MostlyZero(Exception):
    """The array-level Hessian at the start is mostly zeros (see :func:`_array_level`)."""


def _array_derivatives(flat: Callable, x: Tensor, args: tuple) -> tuple:
    """Value, gradient and the array-level Hessian (:mod:`symtape.transforms.array_derivatives`)
    of ``flat`` at ``x``, recorded in the trace being made; ``NotCovered`` where that route
    does not cover the function (or nothing is being traced)."""
    with GradientTape() as tape:
        tape.watch(x)
        y = flat(x, *args)
    y = scalar_output(y, "value_and_grad")
    gradient = tape.gradient(y, x, unconnected_gradients="zero")
    blocks = (array_derivatives.hessian([gradient], [x])
              if ACTIVE_TRACE.get() is not None and isinstance(x, Tensor) else None)
    if blocks is None:
        raise array_derivatives.NotCovered
    return y, gradient, blocks[0][0]


def _keeping_first(evaluate: Callable, x0: np.ndarray, first, finish: Callable) -> Callable:
    """``finish(evaluate(x, *args))`` for SciPy, the value at ``x0`` (computed when
    compiling, what SciPy asks for first) given once without computing it again."""
    kept = [(x0, first)]

    def hess(x, *a):
        if kept:
            start, value = kept.pop()
            if np.array_equal(x, start):
                return value
        return finish(evaluate(x, *a))

    return hess


class _LastPoint:
    """Value, gradient and dense Hessian from one trace, one call a point (the shared
    subexpressions such as ``X @ w`` computed once), the last point's results kept: SciPy's
    separate ``fun``/``jac``/``hess`` calls at one point share one call."""

    def __init__(self, evaluate: Callable, x0: np.ndarray, first: tuple):
        self._evaluate = evaluate
        self._x = x0.copy()
        self._results = first

    @classmethod
    def compiled(cls, flat: Callable, x0: np.ndarray, args: tuple) -> "_LastPoint | None":
        """Traced at ``x0`` (and compiled), or None where the array-level Hessian does not
        cover the function (:mod:`symtape.transforms.array_derivatives`)."""
        try:
            replayed = _Replayed.traced(flat, x0, args)
            if replayed is not None:
                return cls(replayed, x0, replayed.first)
            compiled = _whole(Function(lambda x, *extra: _array_derivatives(flat, x, extra),
                                       wrap_outputs=False))
            return cls(compiled, x0, compiled(x0, *args))
        except array_derivatives.NotCovered:
            return None

    def _at(self, x: np.ndarray, args: tuple) -> tuple:
        if not np.array_equal(x, self._x):
            self._results = self._evaluate(x, *args)
            self._x = x.copy()
        return self._results

    def objective(self, x: np.ndarray, *args) -> tuple:
        value, gradient, _ = self._at(x, args)
        return float(value), gradient

    def hessian(self, x: np.ndarray, *args) -> np.ndarray:
        return self._at(x, args)[2]


class _Replayed:
    """Value, gradient and array-level Hessian of a trace on host arrays: the first calls
    replay the recorded ops (:func:`symtape.kernels.trace.replay`), so that a fit of a few
    Newton steps never waits for a kernel to be generated; call ``COMPILE_AT`` compiles one
    kernel from the same trace, which runs every later call."""

    COMPILE_AT = 16  # replaying costs a little more a call: a long fit gets the kernel

    def __init__(self, arguments: list, outputs: list, run: Callable, first: tuple):
        self._arguments, self._outputs, self._run = arguments, outputs, run
        self._calls = 0
        self.first = first

    @classmethod
    def traced(cls, flat: Callable, x0: np.ndarray, args: tuple) -> "_Replayed | None":
        """Traced at ``x0``; None where the arguments are not all host arrays, a backend
        other than NumPy's is asked for, or the function reads Variables (the compiled
        path then takes it). ``NotCovered`` where the array level does not cover it."""
        if (resolve_backend(None) != "numpy" or CURRENT_DEVICE.get() is not CPU
                or runs_eagerly() or not all(type(a) is np.ndarray and a.dtype.kind in "fiub"
                                             for a in args)):
            return None
        with Trace() as trace:
            arguments = [placeholder(x0, "x")] + [placeholder(a[()] if a.ndim == 0 else a,
                                                              f"arg{i}")
                                                  for i, a in enumerate(args)]
            outputs = list(_array_derivatives(flat, arguments[0], tuple(arguments[1:])))
        if trace.assigned:  # undone: the compiled path traces it again, effects and all
            for variable, value in trace.originals.values():
                swap_array(variable, value)
            return None
        run = replay(arguments, outputs)
        if run is None:
            return None
        return cls(arguments, outputs, run, tuple(np.asarray(t.numpy()) for t in outputs))

    def __call__(self, *values) -> tuple:
        self._calls += 1
        if self._calls == self.COMPILE_AT:
            program = Program(self._arguments, self._outputs, {}, "numpy")
            self._run = program.call_exact
        return tuple(self._run(list(values)))


def _hessian_product(flat: Callable):
    """The compiled Hessian-vector product ``(x, v, *args) -> H(x) v``."""
    return grad(lambda x, v, *args: reduce_sum(grad(flat)(x, *args) * v))
