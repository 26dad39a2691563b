"""Sparse Hessians: only the entries a gradient entry depends on are derived and evaluated.

The gradient's exact entries come from one symbolic reverse sweep. Entry ``(i, j)`` of the
Hessian is derived only when variable ``j`` occurs in gradient entry ``i`` (and ``j >= i``:
the other triangle is the same value), so a function whose variables interact locally —
the extended Rosenbrock function has ``3n - 2`` nonzeros — costs ``O(n)`` derivatives, not
``O(n²)``. The nonzero values are compiled into one kernel; the sparsity pattern is fixed
at trace time, so each call only evaluates the kernel and wraps its values in a CSR matrix.
"""

from __future__ import annotations

import numpy as np
import sympy

from symtape import nest
from symtape.backends import array_module
from symtape.compile import compile as compile_kernel
from symtape.program import _Graph
from symtape.symbolic import factored, symbolic_value
from symtape.tensor import Tensor

__all__ = ["SparseHessian"]


class SparseHessian:
    """``st.hessian(fun, sparse=True)``: call it for a ``scipy.sparse.csr_matrix``.

    Examples
    --------
    >>> import symtape as st
    >>> H = st.hessian(lambda x: st.reduce_sum(x[1:] * x[:-1]), sparse=True)
    >>> H(st.constant([1.0, 2.0, 3.0])).nnz
    4
    >>> H.expr
    Matrix([
    [0, 1, 0],
    [1, 0, 1],
    [0, 1, 0]])
    """

    def __init__(self, fun, argnums=0):
        if not callable(fun):
            raise TypeError(f"st.hessian expects a callable, got {type(fun).__name__}")
        self._fun = fun
        self._argnums = argnums
        self._built: dict[tuple, _Built] = {}
        self._last: _Built | None = None

    def __call__(self, *args):
        from symtape.functional import _argnums, _differentiated, _leaf_spec

        nums = _argnums(self._argnums, len(args))
        args = _differentiated(args, nums)
        leaves, rebuild = nest.flatten(args)
        specs = [_leaf_spec(leaf) for leaf in leaves]
        key = tuple(specs)
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = _Built(self._fun, args, nums, leaves, rebuild, specs)
        self._last = built
        return built.evaluate(leaves)

    @property
    def expr(self) -> sympy.SparseMatrix:
        """The exact Hessian of the most recent call's trace, as a ``sympy.SparseMatrix``."""
        if self._last is None:
            raise ValueError("call the sparse Hessian once with example arguments first")
        return self._last.expr


class _Built:
    """One traced signature: the pattern, the exact entries and their kernel."""

    def __init__(self, fun, args, nums, leaves, rebuild, specs):
        from symtape.functional import _argument_names, _scalar, _with_tape
        from symtape.trace import placeholder

        names = _argument_names(fun, args, {})
        placeholders, traced = [], []
        for leaf, spec, name in zip(leaves, specs, names):
            if spec[0] == "T":
                value = np.asarray(leaf) if isinstance(leaf, float) else \
                    (leaf._value if isinstance(leaf, Tensor) else leaf)
                leaf = placeholder(value[()] if np.ndim(value) == 0 else value, name, spec[3])
                placeholders.append(leaf)
            traced.append(leaf)
        self._specs = specs
        traced = rebuild(traced)
        tape, y = _with_tape(fun, traced, nums)
        y = _scalar(y, "hessian")
        sources = [traced[i] for i in nums]
        grads = tape.gradient(y, sources, unconnected_gradients="zero")
        self.variables = _Graph(placeholders, [y], {}).variables
        with factored():
            entries = _flat([symbolic_value(t) for t in nest.flatten(grads)[0]])
            symbols = _flat([symbolic_value(t) for t in nest.flatten(sources)[0]])
            self.size = len(symbols)
            upper = _upper_entries(entries, symbols)
        inputs = [symbolic_value(p) for p in placeholders]
        inputs += [symbolic_value(v._read()) for v in self.variables]
        self.expr = sympy.SparseMatrix(self.size, self.size, {
            **{(i, j): h for (i, j), h in upper.items()},
            **{(j, i): h for (i, j), h in upper.items()}})
        self._pattern(list(upper))
        xp = array_module(*[p._value for p in placeholders])
        self._kernel = compile_kernel(list(upper.values()), inputs,
                                      backend="numpy" if xp is np else "cupy") if upper else None

    def _pattern(self, upper: list[tuple[int, int]]) -> None:
        """CSR structure of both triangles; ``_take`` maps CSR slots to kernel outputs."""
        rows, cols, take = [], [], []
        for u, (i, j) in enumerate(upper):
            rows.append(i), cols.append(j), take.append(u)
            if i != j:
                rows.append(j), cols.append(i), take.append(u)
        order = np.lexsort((np.array(cols, dtype=np.int64), np.array(rows, dtype=np.int64)))
        self._indices = np.asarray(cols, dtype=np.int32)[order]
        self._take = np.asarray(take, dtype=np.int64)[order]
        counts = np.bincount(np.asarray(rows, dtype=np.int64), minlength=self.size)
        self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)

    def evaluate(self, leaves: list):
        values = [leaf._value if isinstance(leaf, Tensor) else leaf
                  for leaf, spec in zip(leaves, self._specs) if spec[0] == "T"]
        values += [v._value for v in self.variables]
        xp = array_module(*values)
        if self._kernel is None:
            data = xp.zeros(0)
        else:
            data = xp.asarray(self._kernel(*values), dtype=float)[xp.asarray(self._take)]
        return _csr(xp, data, self._indices, self._indptr, self.size)


def _flat(values: list) -> list:
    out = []
    for value in values:
        out.extend(value.reshape(-1).tolist() if isinstance(value, np.ndarray) else [value])
    return out


def _upper_entries(entries: list, symbols: list) -> dict:
    """``(i, j) -> d entries[i] / d symbols[j]`` for ``j >= i`` where ``symbols[j]`` occurs."""
    position = {s: j for j, s in enumerate(symbols)}
    upper = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, sympy.Basic):
            continue
        columns = sorted(position[s] for s in entry.free_symbols if s in position)
        for j in columns:
            if j >= i:
                h = sympy.diff(entry, symbols[j])
                if h != 0:
                    upper[(i, j)] = h
    return upper


def _csr(xp, data, indices, indptr, size: int):
    if xp is np:
        try:
            import scipy.sparse
        except ImportError:
            raise ImportError("st.hessian(..., sparse=True) returns a scipy.sparse matrix; "
                              "install SciPy: pip install 'symtape[scipy]'") from None
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(size, size))
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse.csr_matrix(
        (data, xp.asarray(indices), xp.asarray(indptr)), shape=(size, size))
