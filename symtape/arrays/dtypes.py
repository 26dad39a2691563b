"""Dtypes: symtape uses NumPy's dtype objects, under TensorFlow's names.

``st.float32`` *is* ``numpy.dtype('float32')``, so ``t.dtype == np.float32`` works too.
Python floats become float64 and Python ints int64 (NumPy's convention: exact first).
"""

from __future__ import annotations

import numpy as _np

__all__ = ["float16", "float32", "float64", "int32", "int64", "bool", "as_dtype", "is_floating",
           "dtype_of"]

float16 = _np.dtype("float16")
float32 = _np.dtype("float32")
float64 = _np.dtype("float64")
int32 = _np.dtype("int32")
int64 = _np.dtype("int64")

_SUPPORTED = (float16, float32, float64, int32, int64, _np.dtype("bool"))


def as_dtype(dtype) -> _np.dtype:
    """Return the dtype named by ``dtype`` (a dtype, a NumPy type or a name).

    Examples
    --------
    >>> import symtape as st
    >>> st.as_dtype("float32") == st.float32
    True
    """
    try:
        resolved = _np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{dtype!r} is not a dtype; use one of st.float16, st.float32, st.float64, "
            f"st.int32, st.int64, st.bool") from None
    if resolved not in _SUPPORTED:
        raise TypeError(
            f"dtype {resolved} is not supported; use one of "
            f"{', '.join(str(d) for d in _SUPPORTED)}")
    return resolved


def is_floating(dtype) -> bool:
    """True for the float dtypes, the only ones that carry gradients.

    Examples
    --------
    >>> import symtape as st
    >>> from symtape.arrays.dtypes import is_floating
    >>> is_floating(st.float32), is_floating(st.int64)
    (True, False)
    """
    return _np.dtype(dtype).kind == "f"


def dtype_of(value) -> _np.dtype:
    """The dtype of an array (NumPy, CuPy) or of a Python or NumPy number.

    Examples
    --------
    >>> import numpy as np
    >>> from symtape.arrays.dtypes import dtype_of
    >>> dtype_of(np.float32(1.0)), dtype_of(2.0), dtype_of(3)
    (dtype('float32'), dtype('float64'), dtype('int64'))
    """
    return value.dtype if hasattr(value, "dtype") else _np.asarray(value).dtype


bool = _np.dtype("bool")  # noqa: A001  (TensorFlow's spelling; defined last on purpose)
