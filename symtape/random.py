"""Random constants: ``st.random.normal`` and ``st.random.uniform``.

With ``seed=None`` draws come from one module generator, reseeded by
:func:`set_seed`; with an integer ``seed`` a call is reproducible on its own.

Examples
--------
>>> import symtape as st
>>> st.random.uniform((2,), seed=0).dtype == st.float64
True
"""

from __future__ import annotations

import numpy as np

from symtape.arrays import dtypes
from symtape.core.ops import takes_name
from symtape.core.tensor import ACTIVE_TRACE, Tensor, new_constant

__all__ = ["normal", "uniform", "set_seed"]

_generator = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Reseed the generator used by calls with ``seed=None``.

    Examples
    --------
    >>> import symtape as st
    >>> st.random.set_seed(0); a = st.random.normal((2,)).numpy()
    >>> st.random.set_seed(0); b = st.random.normal((2,)).numpy()
    >>> bool((a == b).all())
    True
    """
    global _generator
    _generator = np.random.default_rng(seed)


def _rng(seed: int | None) -> np.random.Generator:
    if seed is None and ACTIVE_TRACE.get() is not None:
        raise RuntimeError(
            "st.random with seed=None inside st.function: the draw would be made once, at "
            "trace time, and every later call would reuse it. Draw the values outside and pass "
            "them as an argument, or give a seed if one fixed draw is what you want")
    return _generator if seed is None else np.random.default_rng(seed)


def _floating(dtype) -> np.dtype:
    dtype = dtypes.as_dtype(dtype)
    if not dtypes.is_floating(dtype):
        raise TypeError(f"random values need a float dtype, got {dtype}")
    return dtype


@takes_name
def normal(shape, mean: float = 0.0, stddev: float = 1.0, dtype=dtypes.float64,
           seed: int | None = None, name: str | None = None) -> Tensor:
    """A constant of normally distributed values.

    Parameters
    ----------
    shape : int or sequence of int
    mean : float, default 0.0
    stddev : float, default 1.0
        The standard deviation.
    dtype : dtype, default st.float64
        A float dtype; the draw is made in float64 and rounded to it.
    seed : int, optional
        Seeds a generator of its own, so the call is reproducible on its own; None draws
        from the module's generator (see :func:`set_seed`). Inside ``st.function`` a seed
        is required: an unseeded draw would be frozen into the trace.
    name : str, optional
        A label for the result (its ``.name``, the symbol's name if a tape watches it).

    Returns
    -------
    Tensor
        A constant on the current device (``st.device``).

    Raises
    ------
    TypeError
        If ``dtype`` is not a float dtype, or ``name`` is not a non-empty str.
    RuntimeError
        If ``seed`` is None inside ``st.function``.

    Examples
    --------
    >>> import symtape as st
    >>> st.random.normal((2, 3), seed=1).shape
    (2, 3)
    >>> st.random.normal((), seed=1, name="noise").name
    'noise'
    """
    dtype = _floating(dtype)
    value = _rng(seed).normal(mean, stddev, size=tuple(np.atleast_1d(shape)) if np.ndim(shape)
                              else (() if shape == () else (int(shape),))).astype(dtype)
    return new_constant(value)


@takes_name
def uniform(shape, minval: float = 0.0, maxval: float = 1.0, dtype=dtypes.float64,
            seed: int | None = None, name: str | None = None) -> Tensor:
    """A constant of values uniform in ``[minval, maxval)``.

    Parameters
    ----------
    shape : int or sequence of int
    minval, maxval : float, default 0.0 and 1.0
        The interval: ``minval`` included, ``maxval`` not.
    dtype : dtype, default st.float64
        A float dtype; the draw is made in float64 and rounded to it.
    seed : int, optional
        Seeds a generator of its own, so the call is reproducible on its own; None draws
        from the module's generator (see :func:`set_seed`). Inside ``st.function`` a seed
        is required: an unseeded draw would be frozen into the trace.
    name : str, optional
        A label for the result (its ``.name``, the symbol's name if a tape watches it).

    Returns
    -------
    Tensor
        A constant on the current device (``st.device``).

    Raises
    ------
    TypeError
        If ``dtype`` is not a float dtype, or ``name`` is not a non-empty str.
    RuntimeError
        If ``seed`` is None inside ``st.function``.

    Examples
    --------
    >>> import symtape as st
    >>> v = st.random.uniform((1000,), -1.0, 1.0, seed=3).numpy()
    >>> bool(v.min() >= -1.0 and v.max() < 1.0)
    True
    """
    dtype = _floating(dtype)
    value = _rng(seed).uniform(minval, maxval, size=tuple(np.atleast_1d(shape)) if np.ndim(shape)
                               else (() if shape == () else (int(shape),))).astype(dtype)
    return new_constant(value)
