"""Compiled callables on Dask arrays: lazy, block by block, on one machine or a cluster.

Dask is an optional extra (``pip install 'symtape[dask]'``); nothing here is imported by
``import symtape``. Two things use it:

- **Calls.** ``st.vmap`` of ``st.function``, ``st.grad``, ``st.value_and_grad``,
  ``st.jacobian`` or ``st.hessian``, called with ``dask.array`` arguments, returns lazy dask
  arrays computed block by block over the chunks of the mapped axis: the function is traced
  at the point shape and each block runs the compiled kernel on its points; a reduction of
  the result (``.sum()``) is Dask's own tree reduction. ``st.compile`` kernels do the same
  over their leading batch axes. A *plain* call on dask arrays means what it means on the
  computed arrays, the function of the whole arrays: its result is lazy, one task.
- **Sums over data** (:func:`chunk_sum`, used by ``st.optimize.minimize`` when an ``args``
  entry is a dask array): a function of parameters and a batch of data rows, additive over
  the rows (a sum, not a mean), is evaluated chunk by chunk of rows and the results added
  across chunks by a tree reduction.

Kernels travel to the workers as generated source and namespace (they pickle; no trace,
no SymPy) and are compiled once per worker process, then cached there.

Examples
--------
>>> import numpy as np, dask.array as da, symtape as st
>>> f = st.vmap(st.grad(lambda x, y: st.sin(x) * y), in_axes=(0, None))
>>> xs = da.linspace(0.0, 1.0, 8, chunks=4)
>>> lazy = f(xs, 2.0)
>>> lazy.chunks
((4, 4),)
>>> bool(np.allclose(lazy.compute(), 2.0 * np.cos(np.linspace(0.0, 1.0, 8))))
True
"""

from __future__ import annotations

import string
from typing import Any, Callable

import numpy as np

from symtape.arrays.backends import array_module, to_host
from symtape.kernels.compile import is_dask_array, leading_batches

__all__ = ["require_dask", "call_whole", "call_mapped", "call_kernel", "chunk_sum", "kernel_cache_info"]


def require_dask():
    """``dask.array``, or an ImportError that says how to install it.

    Examples
    --------
    >>> from symtape.chunked import require_dask
    >>> require_dask().__name__
    'dask.array'
    """
    try:
        import dask.array
    except ImportError:
        raise ImportError("this needs Dask, an optional extra: "
                          "python -m pip install 'symtape[dask]'") from None
    return dask.array


def kernel_cache_info():
    """The cache of kernels that arrived pickled in this process (as on a Dask worker), with
    the fields of :func:`symtape.kernel_cache_info`: ``hits``, ``misses`` (the kernels this
    process compiled), ``size`` and ``maxsize``.

    On a Dask worker, ``client.run(kernel_cache_info)`` shows that each kernel was compiled
    once per worker, however many tasks used it.

    Examples
    --------
    >>> import symtape as st
    >>> from symtape.chunked import kernel_cache_info
    >>> info = kernel_cache_info()
    >>> type(info) is type(st.kernel_cache_info()), info._fields
    (True, ('hits', 'misses', 'size', 'maxsize'))
    """
    from symtape.kernels.compile import unpickled_cache_info

    return unpickled_cache_info()


# ---------------------------------------------------------------- calls: blocks of points


def call_whole(function, leaves: list, rebuild: Callable):
    """``function(*args, **kwargs)`` with dask arrays among the leaves: the function applied
    to the whole arrays, as on their computed values, lazily (one task; st.vmap maps a
    function block by block instead).

    Examples
    --------
    >>> import dask.array as da, symtape as st
    >>> from symtape.core import nest
    >>> f = st.function(lambda x: st.reduce_sum(x * x))
    >>> leaves, rebuild = nest.flatten(((da.arange(4.0, chunks=2),), {}))
    >>> lazy = call_whole(f, leaves, rebuild)
    >>> lazy.npartitions, float(lazy.compute())
    (1, 14.0)
    """
    stand_ins = [_stand_in(leaf) if is_dask_array(leaf) else leaf for leaf in leaves]
    return call_mapped(_trace_at(function, *rebuild(stand_ins)), leaves)


def call_mapped(concrete, leaves: list):
    """A trace's kernel on leaves some of which are dask arrays with leading batch axes
    (``st.vmap`` put them there): lazy outputs, one task per block of the batch axes.

    Examples
    --------
    >>> import numpy as np, dask.array as da, symtape as st
    >>> concrete = st.function(lambda x: st.reduce_sum(x * x)).get_concrete_function(np.zeros(2))
    >>> lazy = call_mapped(concrete, [da.ones((6, 2), chunks=(3, 2))])
    >>> lazy.chunks, lazy.compute().tolist()
    (((3, 3),), [2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    """
    da = require_dask()
    if concrete._assigned:
        raise ValueError("a function that assigns Variables cannot be called with dask arrays "
                         "(the assignment would happen whenever dask computes, once per block)")
    program = concrete._program
    traced = [leaf for leaf, spec in zip(leaves, concrete.specs) if spec[0] == "T"]
    variables = [v.array for v in program.variables]  # read now, as a call would
    outputs = _blockwise(da, _run_program, (program.portable(), variables), traced,
                         program.argument_shapes, program.output_shapes, program.output_dtypes,
                         program.batchable)
    out = list(concrete._static)
    for i, value in zip(concrete._positions, outputs):
        out[i] = value
    return concrete._rebuild(out)


def call_kernel(kernel, args: tuple):
    """An ``st.compile`` kernel called with dask arrays among its arguments."""
    da = require_dask()
    # the output dtypes, from a call on an empty batch of points
    probe = [np.zeros((0,) + tuple(core), a.dtype) if hasattr(a, "dtype") else a
             for a, core in zip(args, kernel._layout.shapes)]
    probed = _run_kernel(kernel, *probe)
    outputs = _blockwise(da, _run_kernel, (kernel,), list(args), list(kernel._layout.shapes),
                         list(kernel._shapes), [p.dtype for p in probed], True)
    return tuple(outputs) if kernel._as_tuple else outputs[0]


def _run_program(portable, variables, *values):
    return tuple(portable(list(values), variables))


def _run_kernel(kernel, *values):
    outputs = kernel(*values)
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _blockwise(da, run: Callable, head: tuple, values: list, point_shapes, output_shapes,
               output_dtypes, batchable: bool) -> list:
    """Lazy outputs of ``run(*head, *blocks)``, one task per block of the batch axes."""
    batches = leading_batches(
        values, point_shapes,
        lambda i, shape, core: f"argument {i} has shape {shape}; the trace takes points of "
                               f"shape {core} (with leading batch axes for dask arrays)")
    batch = tuple(np.broadcast_shapes(*batches))
    if batch and not batchable:
        raise ValueError("this function indexes with several separated integer arrays, which "
                         "has no batched form; it cannot run block by block")
    letters = iter(string.ascii_letters)
    batch_index = tuple(next(letters) for _ in batch)
    pairs = []
    for value, core, lead in zip(values, point_shapes, batches):
        if not is_dask_array(value) and not lead:
            pairs += [value, None]  # the same value in every task
            continue
        value = da.asarray(value)
        if lead != batch:
            value = da.broadcast_to(value, batch + tuple(core))
        point_index = tuple(next(letters) for _ in core)
        value = value.rechunk({len(batch) + k: -1 for k in range(len(core))})
        pairs += [value, batch_index + point_index]
    like = _meta_module(values)
    packed = da.blockwise(run, batch_index, *[h for item in head for h in (item, None)], *pairs,
                          dtype=object, meta=np.empty((0,) * len(batch), dtype=object),
                          align_arrays=True, concatenate=True)
    outputs = []
    for k, (shape, dtype) in enumerate(zip(output_shapes, output_dtypes)):
        point_index = tuple(next(letters) for _ in shape)
        outputs.append(da.blockwise(
            _pick, batch_index + point_index, packed, batch_index, k, None,
            new_axes=dict(zip(point_index, shape)), dtype=dtype,
            meta=like.empty((0,) * (len(batch) + len(shape)), dtype=dtype)))
    return outputs


def _pick(packed: tuple, k: int):
    return packed[k]


# ---------------------------------------------------------------- sums over rows of data


def chunk_sum(transform, args: tuple) -> Any:
    """``transform(*args)`` summed over the row chunks of the dask arrays in ``args``.

    ``transform`` is a compiled callable (``st.value_and_grad(loss)``, ...) of arguments
    some of which are data: dask arrays whose first axis is rows, chunked along it (all the
    same way). It is evaluated on each chunk of rows, the other arguments whole, and each
    output is added up across chunks by Dask's tree reduction, computed with the current
    scheduler (a ``dask.distributed.Client`` when one is active). The function must be a
    sum over the rows plus, optionally, terms without data (a regularizer): what it gives
    for zero rows is counted once, not once per chunk. A *mean* over rows is not a sum:
    divide by the number of rows yourself.

    Examples
    --------
    >>> import numpy as np, dask.array as da, symtape as st
    >>> data = da.arange(10.0, chunks=4)
    >>> loss = st.value_and_grad(lambda w, d: st.reduce_sum((w * d - 1.0) ** 2))
    >>> value, gradient = chunk_sum(loss, (2.0, data))
    >>> d = np.arange(10.0)
    >>> float(value) == float(np.sum((2 * d - 1) ** 2)), float(gradient) == float(np.sum(2 * (2 * d - 1) * d))
    (True, True)
    """
    da = require_dask()
    import dask

    from symtape.core import nest

    leaves, rebuild = nest.flatten(args)
    data = [leaf for leaf in leaves if is_dask_array(leaf)]
    if not data:
        raise ValueError("chunk_sum: no dask array among the arguments")
    if any(d.ndim == 0 or d.shape[0] != data[0].shape[0] for d in data):
        raise ValueError("chunk_sum: the data arrays must have the same number of rows (axis 0); "
                         f"got shapes {[d.shape for d in data]}")
    rows = data[0].chunks[0]  # all chunked as the first, whole along their other axes
    data = [d.rechunk({0: rows, **{k: -1 for k in range(1, d.ndim)}}) for d in data]

    def with_rows(count: int) -> list:  # on the data's device: the kernels run there
        stand_ins = iter([array_module(d._meta).zeros((count,) + d.shape[1:], d.dtype)
                          for d in data])
        return [next(stand_ins) if is_dask_array(leaf) else leaf for leaf in leaves]

    portables, layout = {}, None
    for count in sorted(set(rows)):  # one trace per chunk size (usually two)
        concrete = _trace_at(transform, rebuild(with_rows(count)))
        portables[count] = concrete._program.portable()
        layout = concrete
    # what the function is with no rows at all (a regularizer, say): each chunk's value
    # includes it, the whole data's only once
    with np.errstate(all="ignore"):
        alone = transform(*rebuild(with_rows(0))) if len(rows) > 1 else None
    program = layout._program
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in program.output_shapes]
    traced = [leaf for leaf, spec in zip(leaves, layout.specs) if spec[0] == "T"]
    pairs, data_iter, first_data = [], iter(data), None
    for position, leaf in enumerate(traced):
        if is_dask_array(leaf):
            d = next(data_iter)
            first_data = position if first_data is None else first_data
            pairs += [d, ("i",) + tuple(f"a{position}_{k}" for k in range(1, d.ndim))]
        else:
            pairs += [leaf, None]
    variables = [v.array for v in program.variables]
    terms = da.blockwise(_chunk_terms, ("i", "z"), portables, None, variables, None,
                         first_data, None, *pairs, new_axes={"z": sum(sizes)},
                         adjust_chunks={"i": 1}, dtype=np.float64, align_arrays=False,
                         concatenate=True, meta=np.empty((0, 0)))
    (total,) = dask.compute(terms.sum(axis=0))
    if alone is not None:
        total = total - (len(rows) - 1) * _flat_float64(nest.flatten(alone)[0])
    out, start = list(layout._static), 0
    for i, shape, size in zip(layout._positions, program.output_shapes, sizes):
        entries = total[start:start + size]
        out[i] = entries.reshape(shape) if shape else entries[0]
        start += size
    return layout._rebuild(out)


def _trace_at(function, args: tuple, kwargs: dict | None = None):
    with np.errstate(all="ignore"):  # traced at zeros: only the graph matters
        return function.get_concrete_function(*args, **(kwargs or {}))


def _chunk_terms(portables: dict, variables: list, first_data: int, *values):
    outputs = portables[np.shape(values[first_data])[0]](list(values), variables)
    return _flat_float64(outputs)[None]


def _flat_float64(outputs) -> np.ndarray:
    """Outputs (on the host or a GPU) as one float64 vector on the host, in order."""
    return np.concatenate([np.ravel(to_host(o).astype(np.float64)) for o in outputs])


# ---------------------------------------------------------------- helpers


def _stand_in(array):
    """A zero-memory array of a dask array's shape and dtype (for the signature lookup)."""
    xp = array_module(array._meta)
    return xp.broadcast_to(xp.zeros((), dtype=array.dtype), array.shape)


def _meta_module(values: list):
    for value in values:
        if is_dask_array(value):
            return array_module(value._meta)
    return np
