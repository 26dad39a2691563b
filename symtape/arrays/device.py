"""The current device (``st.device``): where new constants and Variables are placed.

The current device is a :class:`contextvars.ContextVar`, so each thread and asyncio task
has its own, and it defaults to the CPU. This module imports nothing from CuPy, nor from
the rest of symtape: :mod:`symtape.arrays.backends` builds on it (and holds ``st.device``,
the ``with`` block that switches the current device).
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import NamedTuple

__all__ = ["DeviceSpec", "CPU", "CURRENT_DEVICE", "parse_device"]


class DeviceSpec(NamedTuple):
    """A parsed device: ``device_type`` is ``'CPU'`` or ``'GPU'``, ``index`` which one.

    ``name`` (also ``str()``) is the spelling ``Tensor.device`` uses.

    Examples
    --------
    >>> from symtape.arrays.device import parse_device
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
