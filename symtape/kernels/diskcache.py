"""The on-disk cache of generated kernel modules (what ``backend='numba'`` compiles).

Numba caches compiled machine code only for functions that live in files, so a generated
kernel is written as a module, ``<cache dir>/k<digest>.py``, and imported from there; its
``numba.njit(cache=True)`` functions then keep their machine code in the ``__pycache__``
folder beside it, and a second process (or a Dask worker) loads them instead of compiling.

- The cache directory is ``$SYMTAPE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/symtape``,
  else ``~/.cache/symtape``.
- A module is written to a temporary file in the same directory, then renamed over its
  final name (``os.replace`` is atomic): processes writing the same kernel at once each
  leave a complete file, and a reader never sees half of one.
- The first line names the digest of the rest. An entry whose content does not match its
  digest, or that fails to import, is rewritten and imported again: never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["cache_dir", "digest_of", "load_module"]

_HEADER = "# symtape kernel module {digest}: generated code, safe to delete\n"
_loaded: dict[str, ModuleType] = {}  # digest -> module imported in this process
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where generated kernel modules are kept.

    Examples
    --------
    >>> import os
    >>> from symtape.kernels.diskcache import cache_dir
    >>> cache_dir() == Path(os.environ["SYMTAPE_CACHE_DIR"]) if "SYMTAPE_CACHE_DIR" in os.environ else True
    True
    """
    override = os.environ.get("SYMTAPE_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symtape"


def digest_of(source: str) -> str:
    """The key of a module's source (hex, 32 digits).

    Examples
    --------
    >>> digest_of("x = 1\\n") == digest_of("x = 1\\n") != digest_of("x = 2\\n")
    True
    """
    return hashlib.sha256(source.encode()).hexdigest()[:32]


def load_module(source: str) -> ModuleType:
    """The module of ``source``, imported from the disk cache (written there first if it is
    missing or does not hold exactly this source).

    Examples
    --------
    >>> module = load_module("ANSWER = 42\\n")
    >>> module.ANSWER
    42
    """
    digest = digest_of(source)
    with _lock:
        module = _loaded.get(digest)
        if module is not None:
            return module
        text = _HEADER.format(digest=digest) + source
        path = cache_dir() / f"k{digest}.py"
        if not _holds(path, text):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write(path, text)
            except OSError as error:  # not writable: this process's own temporary folder
                warnings.warn(f"symtape cannot write its kernel cache {path.parent} ({error}); "
                              "compiled kernels are kept for this process only. Set "
                              "SYMTAPE_CACHE_DIR to a writable directory", stacklevel=3)
                path = _private_dir() / path.name
                _write(path, text)
        try:
            module = _import(digest, path)
        except Exception:  # a damaged entry (or numba cache) that looked right: rebuild once
            _write(path, text)
            module = _import(digest, path)
        _loaded[digest] = module
        return module


_PRIVATE: list[Path] = []


def _private_dir() -> Path:
    if not _PRIVATE:
        _PRIVATE.append(Path(tempfile.mkdtemp(prefix="symtape-kernels-")))
    return _PRIVATE[0]


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _import(digest: str, path: Path) -> ModuleType:
    name = f"symtape_kernel_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache locates functions through their module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
