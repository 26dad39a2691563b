"""``st.vmap``: a function mapped over an axis of its arguments (JAX's ``vmap``).

A call of a compiled function means the function applied to its whole arguments; a batch
of points is explicit. ``st.vmap(fun, in_axes, out_axes)`` moves each mapped axis in front
of the others (a *batch* axis), traces ``fun`` once at the point shape, and runs its kernel
over all the batch axes in one call: no Python loop over points. ``vmap(vmap(f))`` maps two
axes the same way, still with one trace and one kernel call: each level moves its axis in
behind the outer levels' batch axes, and the innermost compiled function runs the kernel
on them all (the kernels broadcast over leading batch axes). On dask arrays the kernel
runs block by block over the chunks of the mapped axes (:mod:`symtape.chunked`).

Inside a recording ``GradientTape`` or a trace (``st.function`` of a function that calls a
``vmap``), what is computed must be recorded to be differentiable, so a vmap runs the
function point by point there, on slices of the arguments, and ``st.stack``s the results:
correct and differentiable, with a graph that grows with the number of points.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from symtape.core import nest
from symtape.arrays.backends import array_module
from symtape.kernels.compile import is_dask_array
from symtape.transforms.functional import Function, runs_eagerly
from symtape.core.tensor import Tensor, Variable

__all__ = ["vmap", "Mapped"]


def vmap(fun: Callable, in_axes=0, out_axes=0) -> "Mapped":
    """Map ``fun`` over an axis of its arguments, traced once at the point shape (JAX's ``vmap``).

    Parameters
    ----------
    fun : callable
        A Python function of Tensors (compiled as ``st.function``), a compiled function or
        transform (``st.function``, ``st.grad``, ``st.value_and_grad``, ``st.jacobian``,
        ``st.hessian``), or another ``vmap``.
    in_axes : int, None or tuple, default 0
        Which axis of each positional argument is mapped: one int (or ``None``) for all of
        them, or a tuple with one entry per argument, each an int, ``None`` (not mapped:
        the same value at every point) or a list/tuple/dict matching that argument's
        structure. Negative axes count from the end. Keyword arguments are mapped over
        their axis 0, as in JAX.
    out_axes : int, None or structure, default 0
        Where the mapped axis goes in each output; ``None`` for an output that does not
        vary over it.

    Returns
    -------
    Mapped
        A callable: its outputs have the mapped axis at ``out_axes``.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> f = lambda x, y: st.reduce_sum(x * x) * y
    >>> X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> values, grads = st.vmap(st.value_and_grad(f), in_axes=(0, None))(X, 2.0)
    >>> values
    array([ 10.,  50., 122.])
    >>> grads
    array([[ 4.,  8.],
           [12., 16.],
           [20., 24.]])
    >>> st.vmap(st.vmap(lambda a, b: a * b), in_axes=(0, None))(X, np.ones(2)).shape
    (3, 2)
    """
    return Mapped(fun, in_axes, out_axes)


class Mapped:
    """What ``st.vmap`` returns: call it on batches (see :func:`vmap`).

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> st.vmap(lambda x: x ** 2, in_axes=1, out_axes=1)(np.arange(4.0).reshape(2, 2)).numpy()
    array([[0., 1.],
           [4., 9.]])
    """

    def __init__(self, fun: Callable, in_axes=0, out_axes=0):
        if not callable(fun):
            raise TypeError(f"st.vmap expects a callable, got {type(fun).__name__}")
        if isinstance(in_axes, list):
            raise TypeError(f"st.vmap: in_axes must be an int, None or a tuple with one entry "
                            f"per positional argument, got the list {in_axes!r}; write it as "
                            "a tuple")
        _check_axes(in_axes, "in_axes", in_axes)
        _check_axes(out_axes, "out_axes", out_axes)
        # a plain Python function is compiled: traced once per point signature
        self._fun = fun if hasattr(fun, "_call_mapped") else Function(fun)
        self.in_axes, self.out_axes = in_axes, out_axes
        functools.update_wrapper(self, fun, updated=())

    def __call__(self, *args, **kwargs):
        if runs_eagerly():  # recorded: point by point, so that every op is on the tape
            return self._unrolled(args, kwargs)
        count = len(nest.flatten((args, kwargs))[0])
        return self._call_mapped(args, kwargs, [False] * count, 0)

    def _call_mapped(self, args: tuple, kwargs: dict, batched: list[bool], depth: int):
        """This level of mapping, ``depth`` levels of batch axes already in front of the
        leaves marked ``batched``: its axis goes in at position ``depth``."""
        leaves, rebuild = nest.flatten((args, kwargs))
        axes, labels = _leaf_axes(self.in_axes, args, kwargs)
        axes = _mapped_axes(leaves, axes, labels, batched, depth)
        moved = [expand_axes(leaf, depth) if axis is None and b else leaf if axis is None
                 else _move_in(leaf, axis, b, depth)
                 for leaf, axis, b in zip(leaves, axes, batched)]
        now_batched = [b or axis is not None for axis, b in zip(axes, batched)]
        inner_args, inner_kwargs = rebuild(moved)
        out = self._fun._call_mapped(inner_args, inner_kwargs, now_batched, depth + 1)
        return _place_outputs(out, self.out_axes, depth)

    def _unrolled(self, args: tuple, kwargs: dict):
        """The mapped call as a recorded loop over points, stacked."""
        from symtape.core.ops import stack

        leaves, rebuild = nest.flatten((args, kwargs))
        axes, labels = _leaf_axes(self.in_axes, args, kwargs)
        axes = _mapped_axes(leaves, axes, labels, [False] * len(leaves), 0)
        size = next(np.shape(_value(leaf))[a] for leaf, a in zip(leaves, axes) if a is not None)
        if size == 0:
            raise ValueError("st.vmap inside a recording GradientTape or a trace runs point by "
                             "point, and the mapped axis is empty")
        results = []
        for i in range(size):
            point = [leaf if a is None else leaf[(slice(None),) * a + (i,)]
                     for leaf, a in zip(leaves, axes)]
            inner_args, inner_kwargs = rebuild(point)
            results.append(nest.flatten(self._fun(*inner_args, **inner_kwargs)))
        first, rebuild_out = results[0]
        outs = _prefix_axes(self.out_axes, rebuild_out(first), "out_axes", "the output")
        stacked = []
        for k, (leaf, o) in enumerate(zip(first, outs)):
            if o is None or not _is_array(leaf):
                stacked.append(leaf)
                continue
            shape = np.shape(_value(leaf))
            stacked.append(stack([r[0][k] for r in results],
                                 axis=_normalized(o, len(shape) + 1, "out_axes", shape)))
        return rebuild_out(stacked)

    def __repr__(self) -> str:
        return f"<st.vmap of {self._fun!r}, in_axes={self.in_axes!r}, out_axes={self.out_axes!r}>"


# ---------------------------------------------------------------- axes of the arguments


def _check_axes(spec, name: str, whole) -> None:
    """Axes are ints, None, or lists/tuples/dicts of them."""
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
        return
    if isinstance(spec, (list, tuple)):
        for item in spec:
            _check_axes(item, name, whole)
        return
    if isinstance(spec, dict):
        for item in spec.values():
            _check_axes(item, name, whole)
        return
    raise TypeError(f"st.vmap: {name}={whole!r} holds {spec!r}; each entry must be an int "
                    "(an axis), None (not mapped) or a list/tuple/dict of those")


def _leaf_axes(in_axes, args: tuple, kwargs: dict) -> tuple[list, list[str]]:
    """Per flattened leaf of ``(args, kwargs)``: its mapped axis (or None) and a label."""
    if isinstance(in_axes, tuple):
        if len(in_axes) != len(args):
            raise ValueError(f"st.vmap: in_axes={in_axes!r} has {len(in_axes)} entries but the "
                             f"call passes {len(args)} positional arguments; give one entry "
                             "per argument (an int, None, or a structure like the argument)")
        per_argument = in_axes
    else:
        per_argument = (in_axes,) * len(args)
    axes, labels = [], []
    for i, (spec, arg) in enumerate(zip(per_argument, args)):
        found = _prefix_axes(spec, arg, "in_axes", f"argument {i}")
        axes += found
        labels += [f"argument {i}"] * len(found)
    for name, value in kwargs.items():  # keyword arguments: axis 0, as in JAX
        found = len(nest.flatten(value)[0])
        axes += [0] * found
        labels += [f"keyword argument {name!r}"] * found
    return axes, labels


def _prefix_axes(spec, value, name: str, label: str) -> list:
    """``spec`` (an int, None or a structure that is a prefix of ``value``'s) per leaf."""
    if spec is None or isinstance(spec, int):
        return [spec] * len(nest.flatten(value)[0])
    same = (isinstance(spec, dict) and isinstance(value, dict) and spec.keys() == value.keys()) \
        or (isinstance(spec, (list, tuple)) and isinstance(value, (list, tuple))
            and len(spec) == len(value))
    if not same:
        raise ValueError(f"st.vmap: {name} gives {spec!r} for {label}, which is "
                         f"{_describe(value)}; give an int or None for all of it, or a "
                         "structure with the same lists, tuples and dict keys")
    pairs = [(spec[k], value[k]) for k in value] if isinstance(value, dict) else zip(spec, value)
    axes = []
    for sub_spec, sub_value in pairs:
        axes += _prefix_axes(sub_spec, sub_value, name, label)
    return axes


def _describe(value) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {list(value)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__} (one leaf)"


def _mapped_axes(leaves: list, axes: list, labels: list, batched: list, depth: int) -> list:
    """The axes checked (arrays, in range, one size for all) and made non-negative; the
    axis counts in the point's shape, after the ``depth`` outer batch axes."""
    checked, sizes = [], []
    for leaf, axis, label, b in zip(leaves, axes, labels, batched):
        if axis is None:
            checked.append(None)
            continue
        if isinstance(leaf, Variable):
            raise TypeError(f"st.vmap: in_axes maps {label}, a Variable: a Variable is state, "
                            "not data; map an array of its values, or give it in_axes None")
        if not _is_array(leaf):
            raise ValueError(f"st.vmap: in_axes maps {label} over axis {axis}, but it is a "
                             f"{type(leaf).__name__}, with no axes; give it in_axes None "
                             "(or pass an array)")
        shape = tuple(np.shape(_value(leaf)))[depth if b else 0:]
        axis = _normalized(axis, len(shape), "in_axes", shape, label)
        checked.append(axis)
        sizes.append((label, axis, shape[axis]))
    if not sizes:
        raise ValueError("st.vmap needs at least one mapped argument, but in_axes maps none "
                         f"({len(leaves)} arguments, all with in_axes None)")
    if len({size for _, _, size in sizes}) > 1:
        listed = ", ".join(f"{label} has size {size} on axis {axis}"
                           for label, axis, size in sizes)
        raise ValueError(f"st.vmap: the mapped axes must all have the same size: {listed}")
    return checked


def _normalized(axis: int, ndim: int, name: str, shape, label: str = "an output") -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"st.vmap: {name} asks for axis {axis} of {label}, of shape "
                         f"{tuple(shape)}, which has {ndim} axes (valid: {-ndim} to "
                         f"{ndim - 1})" if ndim else
                         f"st.vmap: {name} asks for axis {axis} of {label}, which is a scalar "
                         "(no axes); give it in_axes None")
    return axis % ndim


# ---------------------------------------------------------------- moving axes


def _is_array(leaf) -> bool:
    return isinstance(leaf, Tensor) or is_dask_array(leaf) or (
        hasattr(leaf, "shape") and hasattr(leaf, "dtype") and not isinstance(leaf, Variable))


def _value(leaf):
    return leaf.array if isinstance(leaf, Tensor) else leaf


def _module(value):
    if is_dask_array(value):
        import dask.array

        return dask.array
    return array_module(value)


def _move_in(leaf, axis: int, batched: bool, depth: int):
    """A mapped leaf with its axis at position ``depth``, behind the outer batch axes (a
    leaf the outer levels did not map gets axes of size 1 for them)."""
    value = _value(leaf)
    xp = _module(value)
    if batched:
        return xp.moveaxis(value, depth + axis, depth) if axis else value
    value = xp.moveaxis(value, axis, 0) if axis else value
    return xp.expand_dims(value, tuple(range(depth))) if depth else value


def expand_axes(leaf, depth: int):
    """An unmapped leaf that outer levels map: a size-1 axis for this level."""
    value = _value(leaf)
    return _module(value).expand_dims(value, depth)


def _place_outputs(out, out_axes, depth: int):
    """Each output's batch axis ``depth`` moved to its ``out_axes`` position."""
    leaves, rebuild = nest.flatten(out)
    axes = _prefix_axes(out_axes, out, "out_axes", "the output")
    placed = []
    for leaf, axis in zip(leaves, axes):
        if not _is_array(leaf):
            placed.append(leaf)
            continue
        value = _value(leaf)
        if axis is None:
            value = _unmapped(value, depth)
        else:
            rank = value.ndim - depth
            axis = _normalized(axis, rank, "out_axes", value.shape[depth:])
            value = _module(value).moveaxis(value, depth, depth + axis) if axis else value
        placed.append(Tensor(value) if isinstance(leaf, Tensor) else value)
    return rebuild(placed)


def _unmapped(value, depth: int):
    """The one value of an output with ``out_axes`` None (it must not vary over the axis)."""
    xp = _module(value)
    if value.shape[depth] == 0:
        raise ValueError("st.vmap: out_axes None needs at least one point to take the "
                         "output's value from, and the mapped axis is empty")
    first = xp.take(value, 0, axis=depth)
    if not is_dask_array(value):
        expanded = xp.expand_dims(first, depth)
        same = (value == expanded) | ((value != value) & (expanded != expanded))
        if not bool(xp.all(same)):
            raise ValueError("st.vmap: out_axes None for an output that varies over the "
                             "mapped axis; give it an axis (out_axes=0) to keep every point")
    return first
