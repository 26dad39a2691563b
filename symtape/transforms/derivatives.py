"""The JAX-style derivative transforms ``grad``, ``value_and_grad``, ``jacobian`` and
``hessian``: a :class:`~symtape.transforms.functional.Function` that runs the function under a
``GradientTape``, traced once per input signature and compiled like ``st.function``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

from symtape.core import nest
from symtape.core.tape import GradientTape
from symtape.core.tensor import ACTIVE_TRACE, Tensor
from symtape.transforms import array_derivatives
from symtape.transforms.functional import (Function, argnums_tuple, differentiated, read_tensor,
                                           scalar_output)

__all__ = ["grad", "value_and_grad", "jacobian", "hessian"]


def _with_tape(fun: Callable, args: tuple, nums: tuple[int, ...], persistent: bool = False):
    with GradientTape(persistent=persistent) as tape:
        tape.watch([args[i] for i in nums])
        y = fun(*args)
    return tape, y


def _pick(results: list, argnums) -> Any:
    return results[0] if isinstance(argnums, int) else tuple(results)


class _Transform(Function):
    """A transform of ``fun``: traced and compiled like ``st.function``; calls return arrays."""

    def __init__(self, fun: Callable, argnums, derive: Callable, what: str,
                 backend: str | None = None):
        if not callable(fun):
            raise TypeError(f"st.{what} expects a callable, got {type(fun).__name__}")

        @functools.wraps(fun, updated=())
        def derived(*args, **kwargs):  # keyword arguments are passed through, not differentiated
            nums = argnums_tuple(argnums, len(args))
            bound = functools.partial(fun, **kwargs) if kwargs else fun
            return derive(bound, differentiated(args, nums), nums)

        super().__init__(derived, wrap_outputs=False, backend=backend)
        self._argnums = argnums
        self._what = what

    def _arguments(self, args: tuple) -> tuple:
        return differentiated(args, argnums_tuple(self._argnums, len(args)))


def grad(fun: Callable, argnums: int | Sequence[int] = 0,
         backend: str | None = None) -> Function:
    """Compile the gradient of a scalar-valued function (JAX's ``grad``).

    Parameters
    ----------
    fun : callable
        Takes Tensors (or nested lists of them), returns a scalar Tensor.
    argnums : int or tuple of ints, default 0
        Which positional arguments to differentiate; a tuple gives a tuple of gradients.
    backend : {'numpy', 'numba', 'cupy'}, optional
        The kernel's backend (default: ``st.config.get_default_backend()``); every
        transform and ``st.function`` take it. GPU values always run on the GPU.

    Examples
    --------
    >>> import symtape as st
    >>> df = st.grad(lambda x: x ** 3)
    >>> df(2.0)
    array(12.)
    >>> print(df.expr)
    3*x**2
    """
    def derive(fun, args, nums):
        tape, y = _with_tape(fun, args, nums)
        y = scalar_output(y, "grad")
        return _pick(tape.gradient(y, [args[i] for i in nums], unconnected_gradients="zero"),
                     argnums)

    return _Transform(fun, argnums, derive, "grad", backend)


def value_and_grad(fun: Callable, argnums: int | Sequence[int] = 0,
                   backend: str | None = None) -> Function:
    """Compile a function's value and gradient together (shared subexpressions).

    Parameters
    ----------
    fun : callable
        Takes Tensors (or nested lists of them) and returns a scalar Tensor; keyword
        arguments are passed through, never differentiated.
    argnums : int or tuple of ints, default 0
        Which positional arguments to differentiate (float values); a tuple gives a tuple of
        gradients.
    backend : {'numpy', 'numba', 'cupy'}, optional
        The kernel's backend (default: ``st.config.get_default_backend()``). GPU values
        always run on the GPU.

    Returns
    -------
    Function
        Called like ``fun``, it returns ``(value, gradient)`` as arrays, traced and compiled
        once per signature into one kernel.

    Raises
    ------
    TypeError
        If ``fun`` is not callable; at a call, if a differentiated argument is not a float, or
        ``fun`` does not return a scalar float Tensor (use ``st.jacobian`` for vectors).
    ValueError
        At a call, if ``argnums`` names no positional argument.

    Examples
    --------
    >>> import symtape as st
    >>> vg = st.value_and_grad(lambda x, y: x * st.sin(y), argnums=(0, 1))
    >>> value, (dx, dy) = vg(2.0, 0.0)
    >>> float(value), float(dx), float(dy)
    (0.0, 0.0, 2.0)
    """
    def derive(fun, args, nums):
        tape, y = _with_tape(fun, args, nums)
        y = scalar_output(y, "value_and_grad")
        return y, _pick(tape.gradient(y, [args[i] for i in nums], unconnected_gradients="zero"),
                        argnums)

    return _Transform(fun, argnums, derive, "value_and_grad", backend)


def jacobian(fun: Callable, argnums: int | Sequence[int] = 0,
             backend: str | None = None) -> Function:
    """Compile the Jacobian: shape ``output.shape + argument.shape`` (JAX's ``jacrev``, or
    ``jacfwd`` where that is cheaper).

    It takes one reverse sweep per output entry (a row), or, when the outputs outnumber the
    differentiated inputs (residuals of a fit), one per input entry (a column): the
    vector-Jacobian product ``J^T v`` is linear in ``v``, so the gradient of its entry ``k``
    with respect to ``v`` is column ``k``. Either way the entries are exact.

    Parameters
    ----------
    fun : callable
        Takes Tensors (or nested lists of them) and returns a Tensor; keyword arguments are
        passed through, never differentiated.
    argnums : int or tuple of ints, default 0
        Which positional arguments to differentiate (float values); a tuple gives a tuple of
        Jacobians, one per argument.
    backend : {'numpy', 'numba', 'cupy'}, optional
        The kernel's backend (default: ``st.config.get_default_backend()``). GPU values
        always run on the GPU.

    Returns
    -------
    Function
        Called like ``fun``, it returns arrays of shape ``output.shape + argument.shape``.

    Raises
    ------
    TypeError
        If ``fun`` is not callable; at a call, if a differentiated argument is not a float.
    ValueError
        At a call, if ``argnums`` names no positional argument.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> J = st.jacobian(lambda x: st.stack([x[0] * x[1], st.sin(x[0])]))
    >>> J(st.constant([0.0, 2.0]))
    array([[2., 0.],
           [1., 0.]])
    >>> t = np.linspace(0.0, 1.0, 1000)  # 1000 residuals, 2 unknowns: 2 sweeps
    >>> J = st.jacobian(lambda p: p[0] * st.exp(-p[1] * t))
    >>> J(np.array([2.0, 0.0])).shape
    (1000, 2)
    """
    def derive(fun, args, nums):
        tape, y = _with_tape(fun, args, nums)
        y = read_tensor(y)
        sources = [args[i] for i in nums]
        whole = _array_level(lambda: array_derivatives.jacobian(y, sources), sources) \
            if math.prod(y.shape) > 1 else None  # a scalar's Jacobian is one reverse sweep
        if whole is not None:  # one forward sweep of whole arrays: a few matrix products
            return _pick(whole, argnums)
        if _columns_are_cheaper(y, sources):
            return _pick(_jacobian_by_columns(tape, y, sources), argnums)
        return _pick(tape.jacobian(y, sources, unconnected_gradients="zero"), argnums)

    return _Transform(fun, argnums, derive, "jacobian", backend)


def _array_level(derive: Callable, sources: list):
    """``derive()`` (:mod:`symtape.transforms.array_derivatives`) where it applies: in a
    trace (the graph is recorded), each source one traced argument; None otherwise, or where
    the graph has an op outside its class."""
    if ACTIVE_TRACE.get() is None or not all(isinstance(s, Tensor) for s in sources):
        return None
    return derive()


def _columns_are_cheaper(y: Tensor, sources: list) -> bool:
    """Fewer differentiated input entries than output entries (and all of them floats)."""
    leaves = [read_tensor(leaf) for leaf in nest.flatten(sources)[0]]
    sizes = [math.prod(leaf.shape) for leaf in leaves]
    return (y.dtype.kind == "f" and all(leaf.dtype.kind == "f" for leaf in leaves)
            and 0 < min(sizes, default=0) and sum(sizes) < math.prod(y.shape))


def _jacobian_by_columns(tape: GradientTape, y: Tensor, sources: list) -> list:
    """``tape.jacobian(y, sources)`` in one reverse sweep per source entry: each column is
    the gradient, with respect to the seed ``v``, of one entry of ``J^T v`` (forward mode as
    reverse over reverse)."""
    from symtape.core.ops import reshape, stack, zeros

    seed = zeros(y.shape, dtype=y.dtype)  # its value never matters: J^T v is linear in v
    with GradientTape(persistent=True) as outer:
        outer.watch(seed)
        products = tape.gradient(y, sources, output_gradients=seed, unconnected_gradients="zero")
        flat, rebuild = nest.flatten(products)
        entries = []
        for product in flat:  # each entry is recorded: the outer tape differentiates it
            column = reshape(product, [-1])
            entries.append([column[k] for k in range(math.prod(product.shape))])
    blocks = []
    for product, column_entries in zip(flat, entries):
        columns = [outer.gradient(e, seed, unconnected_gradients="zero") for e in column_entries]
        blocks.append(reshape(stack(columns, axis=-1), tuple(y.shape) + tuple(product.shape)))
    return rebuild(blocks)


def hessian(fun: Callable, argnums: int | Sequence[int] = 0, sparse: bool = False,
            backend: str | None = None):
    """Compile the exact Hessian of a scalar-valued function.

    With ``sparse=True`` the result is a ``scipy.sparse`` CSR matrix (``cupyx.scipy.sparse``
    on the GPU) over all entries of the differentiated arguments, flattened in order; an
    entry is derived only where the gradient entry depends on that variable, and only those
    entries are evaluated.

    Parameters
    ----------
    fun : callable
        Takes Tensors (or nested lists of them) and returns a scalar Tensor; keyword
        arguments are passed through, never differentiated.
    argnums : int or tuple of ints, default 0
        Which positional arguments to differentiate (float values); a tuple gives the blocks
        ``H[i][j]`` as a tuple of tuples (one sparse matrix over all of them with
        ``sparse=True``).
    sparse : bool, default False
        Return a sparse matrix with only the structurally nonzero entries computed.
    backend : {'numpy', 'numba', 'cupy'}, optional
        The kernel's backend (default: ``st.config.get_default_backend()``). GPU values
        always run on the GPU.

    Returns
    -------
    Function
        Called like ``fun``: an array of shape ``argument.shape * 2`` (blocks for several
        ``argnums``), or a sparse matrix of side the number of differentiated entries.

    Raises
    ------
    TypeError
        If ``fun`` is not callable; at a call, if a differentiated argument is not a float, or
        ``fun`` does not return a scalar float Tensor (use ``st.jacobian`` for vectors).
    ValueError
        At a call, if ``argnums`` names no positional argument.

    Examples
    --------
    >>> import symtape as st
    >>> H = st.hessian(lambda x: x[0] ** 2 * x[1])
    >>> H(st.constant([1.0, 2.0]))
    array([[4., 2.],
           [2., 0.]])
    >>> Hs = st.hessian(lambda x: st.reduce_sum(x ** 3), sparse=True)
    >>> Hs(st.constant([1.0, 2.0])).toarray()
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    if sparse:
        from symtape.transforms.sparse import SparseHessian

        return SparseHessian(fun, argnums, backend=backend)

    return _Transform(fun, argnums, functools.partial(_hessian_blocks, argnums, True),
                      "hessian", backend)


def array_level_hessian(fun: Callable) -> Function:
    """``st.hessian(fun)`` where :mod:`symtape.transforms.array_derivatives` covers the
    function's graph; where it does not, the call that traces raises
    ``array_derivatives.NotCovered`` (``st.optimize`` then takes the sparse Hessian, never
    one sweep per variable).

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> array_level_hessian(lambda x: st.reduce_sum(x ** 3))(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    return _Transform(fun, 0, functools.partial(_hessian_blocks, 0, False), "hessian")


def _hessian_blocks(argnums, fall_back: bool, fun: Callable, args: tuple, nums: tuple):
    """The traced Hessian (its blocks for several ``argnums``): at the array level where
    that applies, else by one sweep per row, or ``NotCovered`` without ``fall_back``."""
    tape, y = _with_tape(fun, args, nums, persistent=True)
    y = scalar_output(y, "hessian")
    sources = [args[i] for i in nums]
    blocks = _array_level(lambda: array_derivatives.hessian(
        tape.gradient(y, sources, unconnected_gradients="zero"), sources), sources)
    if blocks is not None:  # forward over the recorded gradient, whole arrays at a time
        return blocks[0][0] if isinstance(argnums, int) else tuple(map(tuple, blocks))
    if not fall_back:
        raise array_derivatives.NotCovered
    blocks = tape.hessian(y, sources if not isinstance(argnums, int) else sources[0],
                          unconnected_gradients="zero")
    return blocks if isinstance(argnums, int) else tuple(tuple(row) for row in blocks)
