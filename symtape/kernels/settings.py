"""Which backend compiling calls use: ``backend=`` checked, or the default one
(``st.config.set_default_backend``, else ``$SYMTAPE_BACKEND``, else ``'numpy'``).

Examples
--------
>>> from symtape.kernels.settings import resolve_backend
>>> resolve_backend("numpy")
'numpy'
"""

from __future__ import annotations

import os

__all__ = ["BACKENDS", "HOST_BACKENDS", "resolve_backend", "set_default_backend",
           "get_default_backend", "require_numba"]

BACKENDS = ("numpy", "numba", "cupy")
HOST_BACKENDS = ("numpy", "numba")  # kernels that take and return NumPy arrays
_default_backend: str | None = None  # None: $SYMTAPE_BACKEND, else 'numpy'


def resolve_backend(backend: str | None, what: str = "backend") -> str:
    """The backend a compiling call uses: ``backend`` checked, or the default when None.
    ``'numba'`` without Numba installed is an ImportError saying how to install it.

    Parameters
    ----------
    backend : {'numpy', 'numba', 'cupy'} or None
        The backend asked for; None takes ``get_default_backend()``.
    what : str, default 'backend'
        What the error messages name (the argument or setting being checked).

    Returns
    -------
    str
        The backend's name.

    Raises
    ------
    ValueError
        If ``backend`` is not one of ``BACKENDS``.
    ImportError
        If it is ``'numba'`` and Numba is not installed.

    Examples
    --------
    >>> import symtape as st
    >>> st.config.resolve_backend("numpy")
    'numpy'
    >>> st.config.resolve_backend("llvm")
    Traceback (most recent call last):
    ...
    ValueError: backend: unknown backend 'llvm'; use one of 'numpy', 'numba', 'cupy'
    """
    if backend is None:
        backend = get_default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"{what}: unknown backend {backend!r}; use one of "
                         f"{', '.join(map(repr, BACKENDS))}")
    if backend == "numba":
        require_numba()
    return backend


def set_default_backend(name: str | None) -> None:
    """Make ``name`` the backend of compiling calls that do not pass ``backend=``
    (``st.function``, the transforms, ``st.compile``); None restores the default
    (``$SYMTAPE_BACKEND`` if set, else ``'numpy'``). Functions already created keep theirs.

    Examples
    --------
    >>> import symtape as st
    >>> st.config.set_default_backend("numpy")
    >>> st.config.get_default_backend()
    'numpy'
    >>> st.config.set_default_backend("fortran")
    Traceback (most recent call last):
    ...
    ValueError: st.config.set_default_backend: unknown backend 'fortran'; use one of 'numpy', 'numba', 'cupy'
    >>> st.config.set_default_backend(None)
    """
    global _default_backend
    _default_backend = (None if name is None else
                        resolve_backend(name, "st.config.set_default_backend"))


def get_default_backend() -> str:
    """The backend compiling calls use when not told (see :func:`set_default_backend`).

    Examples
    --------
    >>> import symtape as st
    >>> st.config.get_default_backend() in st.config.BACKENDS
    True
    """
    if _default_backend is not None:
        return _default_backend
    name = os.environ.get("SYMTAPE_BACKEND", "").strip() or "numpy"
    if name not in BACKENDS:
        raise ValueError(f"the environment variable SYMTAPE_BACKEND is {name!r}; set it to one "
                         f"of {', '.join(map(repr, BACKENDS))} (or unset it)")
    return name


def require_numba():
    """The ``numba`` module, or an ImportError saying how to install it.

    Examples
    --------
    >>> require_numba().__name__  # doctest: +SKIP
    'numba'
    """
    try:
        import numba
    except ImportError:
        raise ImportError("backend='numba' needs Numba, which is not installed; install it "
                          "with `pip install symtape[jit]` (or `pip install numba`), or use "
                          "backend='numpy'") from None
    return numba
