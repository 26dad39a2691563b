"""Saving the examples' figures: PNG files through matplotlib, an optional extra.

The example scripts import this module as ``from plotting import save_figure`` (Python puts
``examples/`` on the path when it runs a script from it). Without matplotlib they still run
and say how to get the plots: ``python -m pip install "symtape[examples]"``.
"""

from __future__ import annotations

import pathlib
from typing import Callable


def save_figure(draw: Callable, directory: str | pathlib.Path, name: str) -> pathlib.Path | None:
    """Draw a figure with ``draw(figure)``, save it as ``directory/name`` and print the path.

    Returns the path written, or ``None`` (with a one-line hint) when matplotlib is missing.
    Uses the non-interactive Agg backend, so it works without a display.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        print(f"(no plot: {name} needs matplotlib: python -m pip install \"symtape[examples]\")")
        return None
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    draw(figure)
    path = pathlib.Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")
    return path
