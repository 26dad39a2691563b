"""Functions several test files use."""

import os
import subprocess
import sys

import numpy as np
import sympy

import symtape as st


def rosenbrock(x):
    """The n-dimensional Rosenbrock function on a vector ``x``, as symtape ops (traced, its
    closed forms are in ``x[0], x[1], ...``, named after the parameter)."""
    return st.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def rosenbrock_of(xs):
    """The same function of a sequence of SymPy symbols, as the textbook sum: an oracle."""
    return sum(100 * (b - a ** 2) ** 2 + (1 - a) ** 2 for a, b in zip(xs, xs[1:]))


def rosenbrock_gradient_function(xs, with_value: bool = False):
    """An ``st.function`` returning the gradient of :func:`rosenbrock_of` over the scalar
    Variables ``xs`` (after the value where ``with_value``), a tape inside: the tutorials'
    style of a compiled gradient."""
    @st.function
    def gradient():
        with st.GradientTape() as tape:
            f = rosenbrock_of(xs)
        g = tape.gradient(f, xs)
        return (f, g) if with_value else g

    return gradient


def symbols(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The symbols symtape gives a source named ``name`` of ``shape``: ``x[0]``, ``W[0,1]``."""
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = sympy.Symbol(f"{name}[{','.join(map(str, index))}]", real=True)
    return out


def symbols_by_name(expr) -> dict:
    """The free symbols of a SymPy object (or a list of them), by printed name (``x[3]``):
    how to find symbols that only print like a name (automatic names are ``Dummy``s)."""
    found = {}
    for e in (expr if isinstance(expr, (list, tuple)) else [expr]):
        atoms = e.free_symbols if hasattr(e, "free_symbols") else set()
        found.update({str(s): s for s in atoms})
    return found


def entries(expr) -> np.ndarray:
    """A SymPy scalar or Array as a NumPy object array of its shape."""
    if isinstance(expr, sympy.NDimArray):
        if expr.rank() == 0:
            return np.array(expr[()], dtype=object)
        return np.array(expr.tolist(), dtype=object).reshape(expr.shape)
    return np.array(expr, dtype=object)


def same(a, b) -> bool:
    """Mathematically equal SymPy values (robust to how a sum or product is arranged): two
    scalars, or two lists or SymPy Arrays entry by entry."""
    a, b = sympy.flatten([a]), sympy.flatten([b])
    return len(a) == len(b) and all(_same_scalar(p, q) for p, q in zip(a, b))


def _same_scalar(a, b) -> bool:
    a, b = sympy.sympify(a), sympy.sympify(b)
    return a == b or sympy.simplify(a - b) == 0


def run_symtape(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``symtape ARGS`` (``python -m symtape``) in a subprocess, its output captured as UTF-8."""
    return subprocess.run([sys.executable, "-m", "symtape", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
