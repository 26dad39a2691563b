"""The current device (``st.device``): where new constants and Variables are placed.

The current device is a :class:`contextvars.ContextVar`, so each thread and asyncio task
has its own, and it defaults to the CPU. This module imports nothing from CuPy, nor from
the rest of symtape at import time: :mod:`symtape.backends` builds on it.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import NamedTuple

__all__ = ["DeviceSpec", "CPU", "CURRENT_DEVICE", "parse_device", "device"]


class DeviceSpec(NamedTuple):
    """A parsed device: ``device_type`` is ``'CPU'`` or ``'GPU'``, ``index`` which one.

    ``name`` (also ``str()``) is the spelling ``Tensor.device`` uses.

    Examples
    --------
    >>> from symtape.device import parse_device
    >>> spec = parse_device("/device:GPU:1")
    >>> spec.device_type, spec.index, spec.name
    ('GPU', 1, '/gpu:1')
    """

    device_type: str
    index: int = 0

    @property
    def name(self) -> str:
        """``'/cpu:0'`` or ``'/gpu:N'``.

        Examples
        --------
        >>> DeviceSpec("GPU", 2).name
        '/gpu:2'
        """
        return f"/{self.device_type.lower()}:{self.index}"

    def __str__(self) -> str:
        return self.name


CPU = DeviceSpec("CPU", 0)  # the one CPU device; `is CPU` is the fast test for "no GPU here"

# where new values go; `st.device` sets it for the duration of a `with` block
CURRENT_DEVICE: ContextVar[DeviceSpec] = ContextVar("symtape_current_device", default=CPU)

ACCEPTED = ("'/cpu:0', '/gpu:N', '/device:GPU:N', '/physical_device:GPU:N', 'cpu', 'gpu' or "
            "'gpu:N' (any case; N is a CUDA device index, 0 when left out)")
_FORM = re.compile(r"/?(?:device:|physical_device:)?(cpu|gpu)(?::(\d+))?", re.IGNORECASE)


def parse_device(name) -> DeviceSpec:
    """Parse a TensorFlow-style device string; the CPU always parses to :data:`CPU`.

    Examples
    --------
    >>> parse_device("/GPU:1")
    DeviceSpec(device_type='GPU', index=1)
    >>> parse_device("cpu") is CPU
    True
    >>> parse_device("/tpu:0")
    Traceback (most recent call last):
    ...
    ValueError: unknown device '/tpu:0'; use '/cpu:0', '/gpu:N', ...
    """
    if isinstance(name, DeviceSpec):
        name = name.name  # re-validated: a hand-made DeviceSpec may hold anything
    if not isinstance(name, str):
        raise TypeError(f"a device is named by a str such as '/gpu:0', got "
                        f"{type(name).__name__} {name!r}; use {ACCEPTED}")
    match = _FORM.fullmatch(name.strip())
    if match is None:
        raise ValueError(f"unknown device {name!r}; use {ACCEPTED}")
    kind, index = match.group(1).upper(), int(match.group(2) or 0)
    if kind == "CPU":
        if index != 0:
            raise ValueError(f"unknown device {name!r}: symtape has one CPU device, '/cpu:0'")
        return CPU
    return DeviceSpec("GPU", index)


class _DeviceScope:
    """The ``with`` block returned by :func:`device`; re-entrant, one state per entry."""

    __slots__ = ("spec", "_entries")

    def __init__(self, spec: DeviceSpec):
        self.spec = spec
        self._entries: list = []

    def __enter__(self) -> DeviceSpec:
        cuda_device = None
        if self.spec is not CPU:
            # imported here, not at the top: CPU work must never reach CuPy
            from symtape.backends import select_gpu

            cuda_device = select_gpu(self.spec.index)  # raises before any state changes
        self._entries.append((CURRENT_DEVICE.set(self.spec), cuda_device))
        return self.spec

    def __exit__(self, *exc) -> bool:
        token, cuda_device = self._entries.pop()
        CURRENT_DEVICE.reset(token)
        if cuda_device is not None:
            cuda_device.__exit__(*exc)  # back to the CUDA device current before the block
        return False

    def __repr__(self) -> str:
        return f"st.device({self.spec.name!r})"


def device(name: str) -> _DeviceScope:
    """Place new values on a device for the duration of a ``with`` block (``tf.device``).

    Constants and Variables created inside ``with st.device('/gpu:0'):`` hold CuPy arrays
    on CUDA device 0 (``.device == '/gpu:0'``); ops on them run there with CuPy. Outside
    any block values go to the CPU (NumPy). Values that already live on a GPU stay where
    they are: the device chooses where *new* values go; it never copies existing ones.

    Parameters
    ----------
    name : str
        ``'/cpu:0'``, ``'/gpu:N'``, ``'/device:GPU:N'``, ``'cpu'``, ``'gpu'`` or ``'gpu:N'``
        (any case).

    Raises
    ------
    ValueError
        For an unknown device string (``'/tpu:0'``), naming the accepted forms.
    symtape.DeviceError
        On entering a GPU device when CuPy or CUDA is unusable or the index does not exist;
        the current device is then left unchanged, so CPU work keeps working.

    Examples
    --------
    >>> import symtape as st
    >>> with st.device("/cpu:0"):
    ...     x = st.constant([1.0, 2.0])
    >>> x.device
    '/cpu:0'
    >>> st.device("/tpu:0")
    Traceback (most recent call last):
    ...
    ValueError: unknown device '/tpu:0'; use '/cpu:0', '/gpu:N', ...
    """
    return _DeviceScope(parse_device(name))
