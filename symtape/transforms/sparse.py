"""Sparse Hessians: only the entries a gradient entry depends on are ever computed.

The sparsity pattern is structural: entry ``(i, j)`` is stored when gradient entry ``i``'s
recorded graph reaches variable ``j`` through ops that carry a derivative (comparisons and
``where``'s condition carry none), or ``j``'s reaches ``i``. It is found in one pass over
the graph with whole arrays per value (:class:`_Deps`), never Python sets per entry, and
kept in the kernel cache under the graph's structure. The values come from Hessian-vector
products, compressed by a column colouring (Curtis, Powell and Reid): columns that share no
row get one colour, and one product with the sum of their unit vectors yields all their
entries at once. The extended Rosenbrock function (``3n - 2`` nonzeros, tridiagonal) needs
3 products for any ``n``, and the products are one batched call of a compiled, vectorized
kernel; with ``backend='numba'``, one jitted function computes every colour's product and
writes the nonzeros straight into the CSR data
(:func:`symtape.kernels.numba_backend.fused_hessian`). Structural zeros are never
differentiated nor evaluated.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import sympy

from symtape.core import nest
from symtape.arrays.backends import array_module, default_array_module
from symtape.kernels.compile import any_dask_array
from symtape.core.symbolic import factored, symbolic_value
from symtape.core.tensor import Tensor

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

    def __init__(self, fun, argnums=0, backend: str | None = None):
        from symtape.kernels.settings import resolve_backend

        if not callable(fun):
            raise TypeError(f"st.hessian expects a callable, got {type(fun).__name__}")
        self._fun = fun
        self._argnums = argnums
        self._backend = resolve_backend(backend)
        self._built: dict[tuple, _Built] = {}
        self._last: _Built | None = None

    def __call__(self, *args):
        from symtape.transforms.functional import argnums_tuple, differentiated, leaf_spec, placed

        nums = argnums_tuple(self._argnums, len(args))
        args = differentiated(args, nums)
        leaves, rebuild = nest.flatten(args)
        if any_dask_array(leaves):
            raise TypeError("a sparse Hessian is one matrix at one point held in memory, not a "
                            "lazy dask array: compute the arguments first, map the dense "
                            "st.hessian(f) with st.vmap (block by block), or pass data in dask "
                            "arrays to st.optimize.minimize, which sums the Hessian over chunks")
        leaves = placed(leaves)
        args = rebuild(leaves)
        specs = [leaf_spec(leaf) for leaf in leaves]
        key = tuple(specs)  # one trace per signature: a new shape is a new Hessian
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = _Built(self._fun, args, nums, leaves, rebuild, specs,
                                                     self._backend)
        self._last = built
        return built.evaluate(leaves, args, nums)

    def _call_mapped(self, *_):
        raise TypeError("st.vmap of a sparse Hessian: a batch of sparse matrices has no array "
                        "form; map the dense one, st.vmap(st.hessian(f)), or call the sparse "
                        "one point by point")

    @property
    def expr(self) -> sympy.SparseMatrix:
        """The exact Hessian of the most recent call's trace, as a ``sympy.SparseMatrix``."""
        if self._last is None:
            raise ValueError("call the sparse Hessian once with example arguments first")
        return self._last.expr


class _Built:
    """One traced signature: the pattern, its colouring, and the batched product kernel."""

    def __init__(self, fun, args, nums, leaves, rebuild, specs, backend: str = "numpy"):
        seen: dict = {}
        self._product = _hessian_product(fun, nums, len(args), seen, backend)
        sources = nest.flatten([args[i] for i in nums])[0]
        self._shapes = [tuple(np.shape(_value_of(s))) for s in sources]
        self._dtypes = [np.dtype(getattr(_value_of(s), "dtype", np.float64)) for s in sources]
        # one trace of one product (zero seeds); its inner gradient, a graph, gives the pattern
        xp = _array_module_of(leaves)
        zeros = [xp.zeros(shape, dtype) for shape, dtype in zip(self._shapes, self._dtypes)]
        # one kernel call over a batch of seeds (a row per colour), traced at one seed here;
        # evaluate runs it directly (what st.vmap would do, without re-reading the structure
        # of the arguments on every call: a list of 1000 scalars is 1000 leaves)
        self._concrete = self._product.get_concrete_function(*args, zeros)
        self._grads, self._sources = seen["grads"], seen["sources"]
        self.size = sum(int(np.prod(shape, dtype=np.int64)) for shape in self._shapes)
        self._specs = specs
        self._expr = None
        self._pattern(*_cached_pattern(self._grads, self._sources, seen["arguments"]))
        self._fused = None  # backend='numba': every colour's product in one jitted function
        if backend == "numba" and self.colours and xp is np:
            from symtape.kernels.numba_backend import fused_hessian

            self._fused = fused_hessian(self._concrete._program, self._seeds, self._take,
                                        self._dtypes, self._dtypes[0])

    def _exact(self) -> tuple[list, list]:
        """The gradient's exact entries and the variables' symbols, flattened in order."""
        with factored():
            return (_flat([symbolic_value(g) for g in self._grads]),
                    _flat([symbolic_value(s) for s in self._sources]))

    def _pattern(self, indptr: np.ndarray, indices: np.ndarray, colours: np.ndarray) -> None:
        """The CSR structure, a colouring of its columns, and where each value is found."""
        self.colours = int(colours.max()) + 1 if self.size and len(indices) else 0
        self._indptr, self._indices = indptr, indices
        row_of = np.repeat(np.arange(self.size), np.diff(indptr))
        # the value of (i, j) is entry i of the product with colour(j)'s seed
        self._take = colours[self._indices] * self.size + row_of if self.size else row_of
        self._seeds = (np.arange(self.colours)[:, None] == colours[None, :]).astype(np.float64)

    def evaluate(self, leaves: list, args: tuple, nums: tuple):
        xp = _array_module_of(leaves)
        data = None if self._fused is None or xp is not np else self._fused(
            [_value_of(leaf) for leaf, spec in zip(leaves, self._specs) if spec[0] == "T"])
        if data is not None:  # the fused values (arguments of the traced shapes)
            return _csr(xp, data, self._indices, self._indptr, self.size)
        if self.colours == 0:
            data = xp.zeros(0, dtype=self._dtypes[0] if self._dtypes else np.float64)
        else:
            seeds, start = [], 0
            for shape, dtype in zip(self._shapes, self._dtypes):
                size = int(np.prod(shape, dtype=np.int64))
                block = self._seeds[:, start:start + size].reshape((self.colours,) + shape)
                seeds.append(xp.asarray(block, dtype=dtype))  # float32 in, float32 out
                start += size
            products = self._concrete.run_mapped(leaves + seeds)
            flat = [xp.reshape(p, (self.colours, -1)) for p in nest.flatten(products)[0]]
            data = xp.concatenate(flat, axis=1).reshape(-1)[xp.asarray(self._take)]
            data = data.astype(self._dtypes[0], copy=False)
        return _csr(xp, data, self._indices, self._indptr, self.size)

    @property
    def expr(self) -> sympy.SparseMatrix:
        """Exact entries, derived on first request (only the structural nonzeros)."""
        if self._expr is None:
            entries, symbols = self._exact()
            values = {}
            with factored():
                for i in range(self.size):
                    for j in self._indices[self._indptr[i]:self._indptr[i + 1]].tolist():
                        if (j, i) in values:
                            values[(i, j)] = values[(j, i)]
                        else:
                            values[(i, j)] = sympy.diff(entries[i], symbols[j])
            self._expr = sympy.SparseMatrix(self.size, self.size, values)
        return self._expr


def _hessian_product(fun, nums: tuple[int, ...], nargs: int, seen: dict,
                     backend: str = "numpy"):
    """A compiled ``(*args, vs) -> H @ vs`` (one ``v`` per differentiated argument); the
    trace leaves its sources and inner gradient in ``seen``."""
    from symtape.transforms.functional import Function, scalar_output
    from symtape.core.ops import reduce_sum
    from symtape.core.tape import GradientTape

    def product(*args_and_seeds):
        args, seeds = args_and_seeds[:nargs], args_and_seeds[nargs]
        sources = nest.flatten([args[i] for i in nums])[0]
        with GradientTape() as outer:
            outer.watch(sources)
            with GradientTape() as inner:
                inner.watch(sources)
                y = scalar_output(fun(*args), "hessian")
            grads = inner.gradient(y, sources, unconnected_gradients="zero")
            seen.update(grads=grads, sources=sources, arguments=[
                leaf for leaf in nest.flatten(list(args))[0] if isinstance(leaf, Tensor)])
            dot = 0
            for g, v in zip(grads, seeds):
                dot = dot + reduce_sum(g * v)
        return outer.gradient(dot, sources, unconnected_gradients="zero")

    product.__signature__ = _signature_with_seeds(fun, nargs)  # symbols named as in `fun`
    return Function(product, wrap_outputs=False, backend=backend)


def _signature_with_seeds(fun, nargs: int) -> inspect.Signature:
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        names = [p.name for p in inspect.signature(fun).parameters.values()
                 if p.kind in positional][:nargs]
    except (TypeError, ValueError):
        names = []
    if len(names) < nargs:
        names = [f"arg{i}" for i in range(nargs)]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind) for n in names + ["_seeds"]])


def _value_of(leaf):
    return leaf.array if isinstance(leaf, Tensor) else leaf


def _flat(values: list) -> list:
    out = []
    for value in values:
        out.extend(value.reshape(-1).tolist() if isinstance(value, np.ndarray) else [value])
    return out


def hessian_pattern(grads: list[Tensor], sources: list) -> tuple[np.ndarray, ...]:
    """The CSR ``(indptr, indices)`` of the Hessian whose gradient graph is ``grads``, and a
    colouring of its columns (columns of one colour share no row): ``(indptr, indices,
    colours)`` with ``colours`` an array, one colour per column.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.kernels.trace import Trace
    >>> x = st.Variable(np.ones(4), name="x")
    >>> with Trace():  # gradients recorded as graphs
    ...     with st.GradientTape() as tape:
    ...         y = st.reduce_sum(x[1:] * x[:-1])
    ...     g = tape.gradient(y, x)
    >>> indptr, indices, colours = hessian_pattern([g], [x])
    >>> indptr.tolist(), indices.tolist(), int(colours.max()) + 1
    ([0, 1, 3, 5, 6], [1, 0, 2, 1, 3, 2], 2)
    """
    indptr, indices = _graph_dependencies(grads, sources)
    return indptr, indices, _colouring(indptr, indices)


def _cached_pattern(grads: list[Tensor], sources: list, arguments: list) -> tuple:
    """:func:`hessian_pattern` through the kernel cache, keyed by the gradient graph's
    structure (``arguments``: every traced argument, data included, so that the data's values
    are not part of the key): a second identical fit derives nothing again."""
    from symtape.kernels.compile import cached
    from symtape.kernels.program import structure_key

    others = [a for a in arguments if all(a is not s for s in sources)]
    key = ("hessian pattern", len(sources), structure_key(list(sources) + others, list(grads)))

    def derive():
        pattern = hessian_pattern(grads, sources)
        for array in pattern:
            array.flags.writeable = False  # shared by every fit that hits the cache
        return pattern

    return cached(key, derive)


# ---------------------------------------------------------------- dependencies, array by array


class _Deps:
    """Which sources the entries of one value depend on, held as whole arrays: every entry
    on the sources in ``common``, and entry ``k`` also on ``indices[indptr[k]:indptr[k + 1]]``
    (CSR; ``indptr`` is None where there are none). Sources are numbered over all the
    differentiated entries. A dense operand gives a dense block (``common``) at the cost of
    one set; per-entry arrays appear only where indexing, slicing or reductions need them.

    The CSR rows may be those of ``eshape``, a shape that broadcasts to ``shape`` (same rank,
    1 on axes along which every entry depends on the same sources): ``X @ W`` with data
    ``X`` keeps one row per column of ``W``, not one per entry."""

    __slots__ = ("shape", "size", "common", "indptr", "indices", "eshape")

    def __init__(self, shape, common: frozenset = frozenset(), indptr=None, indices=None,
                 disjoint: bool = False, eshape=None):
        self.shape = tuple(shape)
        self.size = math.prod(self.shape)
        self.eshape = self.shape if eshape is None else tuple(eshape)
        rows = math.prod(self.eshape)
        if self.size == 0:
            common, indptr, indices = frozenset(), None, None
        elif indptr is not None and (rows == 1 or not len(indices)):
            common = common.union(indices.tolist())  # one row for all: its sources are common
            indptr = indices = None
        elif indptr is not None and common and not disjoint:
            # what every entry has needs no entry of its own
            keep = ~np.isin(indices, _as_array(common))
            if not keep.all():
                kept = np.repeat(np.arange(rows), np.diff(indptr))[keep]
                indptr, indices = _csr_of(rows, kept, indices[keep])
        if indptr is None:
            self.eshape = self.shape
        self.common, self.indptr, self.indices = common, indptr, indices

    def pairs(self, expand: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray]:
        """The (entry, source) pairs of the per-entry part, and of ``expand`` (a part of
        ``common``) for every entry, as two arrays: rows, then columns."""
        if self.eshape != self.shape:
            return _full(self).pairs(expand)
        rows = [np.repeat(np.arange(self.size), np.diff(self.indptr))] \
            if self.indptr is not None else []
        cols = [self.indices] if self.indptr is not None else []
        if expand:
            common = _as_array(expand)
            rows.append(np.repeat(np.arange(self.size), len(common)))
            cols.append(np.tile(common, self.size))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(cols)


def _full(d: _Deps | None) -> _Deps | None:
    """``d`` with a CSR row per entry (its broadcast rows repeated)."""
    if d is None or d.eshape == d.shape:
        return d
    rows = np.broadcast_to(np.arange(math.prod(d.eshape)).reshape(d.eshape), d.shape)
    indptr, indices = _take_rows(d.indptr, d.indices, rows.reshape(-1))
    return _Deps(d.shape, d.common, indptr, indices, disjoint=True)


def _take_rows(indptr: np.ndarray, indices: np.ndarray, src: np.ndarray) -> tuple:
    """The CSR whose row ``k`` is row ``src[k]`` of ``(indptr, indices)``."""
    counts = np.diff(indptr)[src]
    out = np.zeros(len(src) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    starts = np.repeat(indptr[src] - out[:-1], counts)
    return out, indices[starts + np.arange(out[-1])]


def _as_array(sources: frozenset) -> np.ndarray:
    return np.fromiter(sources, dtype=np.int64, count=len(sources))


def _csr_of(size: int, rows: np.ndarray, cols: np.ndarray, unique: bool = False):
    """CSR ``(indptr, indices)`` of (row, column) pairs given row by row, or in any order
    with duplicates when ``unique`` is asked for; ``(None, None)`` when there are none."""
    if not len(rows):
        return None, None
    if unique:  # a sort, then the first of each run (cheaper than np.unique's hashing)
        span = int(cols.max()) + 1
        keys = np.sort(rows.astype(np.int64) * span + cols)
        first = np.ones(len(keys), dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        rows, cols = np.divmod(keys[first], span)
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=size), out=indptr[1:])
    return indptr, cols


def _graph_dependencies(grads: list[Tensor], sources: list) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric CSR pattern ``(indptr, indices)`` of the variables each gradient entry's
    recorded graph reaches: one pass over the graph in topological order, each value's
    dependencies held as whole arrays (:class:`_Deps`). A source is a Tensor, or a Variable
    (whose reads in the graph are then its leaves)."""
    from symtape.kernels.program import walk

    deps: dict[int, _Deps | None] = {}
    offset = 0
    for s in sources:
        size = math.prod(s.shape)
        deps[id(s)] = _Deps(s.shape, frozenset(), np.arange(size + 1),
                            np.arange(offset, offset + size))
        offset += size
    for node in walk(list(grads), lambda t: t):
        if id(node) in deps:
            continue
        if node.primitive is None:  # a read of a source Variable is that source; else data
            deps[id(node)] = deps.get(id(node.source)) if node.source is not None else None
            continue
        inputs = [deps[id(x)] for x in node.inputs]
        deps[id(node)] = None if all(d is None for d in inputs) else _through(node, inputs)
    return _symmetric(grads, deps, offset)


def _through(node: Tensor, inputs: list) -> _Deps | None:
    """The dependencies of one op's result, from its inputs' (None: depends on nothing)."""
    prim, params, shape = node.primitive, node.params, np.shape(node.array)
    shapes = [np.shape(x.array) for x in node.inputs]
    if prim.elementwise:  # no derivative flows through a condition or a comparison
        live = [(d, s) for k, (d, s) in enumerate(zip(inputs, shapes))
                if d is not None and prim.rule(k) is not None]
        return _union(shape, live)
    name = prim.name
    if name in ("reduce_sum", "reduce_max", "reduce_min"):
        axis = params["axis"]
        axes = range(len(shapes[0])) if axis is None else [a % len(shapes[0]) for a in axis]
        kept = tuple(1 if i in axes else n for i, n in enumerate(shapes[0]))
        return _reshaped(_reduced(inputs[0], kept), shape)
    if name == "matmul":
        return _matmul(inputs, shapes, shape)
    if name in ("scatter", "scatter_add", "concat"):
        offsets = np.cumsum([0] + [math.prod(s) for s in shapes])
        positions = [np.arange(a, b).reshape(s) for a, b, s in zip(offsets, offsets[1:], shapes)]
        stacked = _stacked(inputs, shapes)
        if name == "concat":
            return _gathered(stacked, np.concatenate(positions, axis=params["axis"]), shape)
        keys = params["keys"] if name == "scatter_add" else (params["key"],)
        return _scattered(stacked, positions, keys, shape)
    # reshape, transpose, broadcast_to, getitem: each entry is one entry of the input
    positions = prim.numeric(np, np.arange(math.prod(shapes[0])).reshape(shapes[0]), **params)
    return _gathered(inputs[0], np.asarray(positions), shape)


def _reshaped(d: _Deps | None, shape) -> _Deps | None:
    """The same entries in another shape (a reshape keeps their order); broadcast rows stay
    broadcast where the reshape only adds or drops axes of length 1."""
    if d is None:
        return None
    shape = tuple(shape)
    if d.eshape != d.shape:
        core = [(n, e) for n, e in zip(d.shape, d.eshape) if n != 1]
        if [n for n, _ in core] != [n for n in shape if n != 1]:
            return _reshaped(_full(d), shape)
        axes = iter(core)
        eshape = tuple(1 if n == 1 else next(axes)[1] for n in shape)
        return _Deps(shape, d.common, d.indptr, d.indices, disjoint=True, eshape=eshape)
    return _Deps(shape, d.common, d.indptr, d.indices, disjoint=True)


def _gathered(d: _Deps | None, positions: np.ndarray, shape) -> _Deps | None:
    """Entry ``k`` of the result is entry ``positions.flat[k]`` of ``d``'s value."""
    if d is None:
        return None
    src = np.asarray(positions).reshape(-1)
    if d.indptr is None or not len(src):
        return _Deps(shape, d.common)
    d = _full(d)
    return _Deps(shape, d.common, *_take_rows(d.indptr, d.indices, src), disjoint=True)


def _union(shape, live: list) -> _Deps | None:
    """A broadcasting elementwise op on inputs ``(deps, shape)``: each entry depends on what
    the entries it is computed from depend on (rows stay broadcast where all inputs' are)."""
    if not live:
        return None
    if len(live) == 1 and tuple(live[0][1]) == tuple(shape):
        return live[0][0]
    common = frozenset().union(*[d.common for d, _ in live])
    parts = [d for d, _ in live if d.indptr is not None]
    if not parts:
        return _Deps(shape, common)
    padded = [(1,) * (len(shape) - len(d.eshape)) + d.eshape for d in parts]
    eshape = tuple(np.broadcast_shapes(*padded))
    parts = [_Deps(eshape, d.common, *((d.indptr, d.indices) if e == eshape else _take_rows(
                 d.indptr, d.indices, np.broadcast_to(np.arange(math.prod(e)).reshape(e),
                                                      eshape).reshape(-1))), disjoint=True)
             for d, e in zip(parts, padded)]  # rows over eshape, one per entry of it
    if all(_same_entries(d, parts[0]) for d in parts[1:]):
        parts = parts[:1]  # `x * x`, or operands of one origin: nothing to merge
    if len(parts) == 1:
        return _Deps(shape, common, parts[0].indptr, parts[0].indices,
                     disjoint=common == parts[0].common, eshape=eshape)
    pairs = [d.pairs() for d in parts]
    indptr, indices = _csr_of(math.prod(eshape), np.concatenate([r for r, _ in pairs]),
                              np.concatenate([c for _, c in pairs]), unique=True)
    return _Deps(shape, common, indptr, indices, eshape=eshape)


def _same_entries(a: _Deps, b: _Deps) -> bool:
    return np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)


def _moved(d: _Deps, targets: np.ndarray, shape, eshape=None) -> _Deps:
    """Row ``k`` of ``d`` added into row ``targets[k]`` of a result of ``shape`` with rows
    ``eshape`` (rows no target reaches depend on nothing)."""
    rows = math.prod(shape if eshape is None else eshape)
    covered = bool(d.common) and bool(np.bincount(targets, minlength=rows).all())
    source, cols = d.pairs(frozenset() if covered else d.common)
    indptr, indices = _csr_of(rows, targets[source], cols, unique=True)
    return _Deps(shape, d.common if covered else frozenset(), indptr, indices, disjoint=True,
                 eshape=eshape if indptr is not None else None)


def _reduced(d: _Deps | None, kept: tuple) -> _Deps | None:
    """A reduction to the shape ``kept`` (``d``'s shape with 1 on the reduced axes)."""
    if d is None or d.size == 0:
        return None
    if d.indptr is None:
        return _Deps(kept, d.common)
    eshape = tuple(1 if k == 1 else e for k, e in zip(kept, d.eshape))
    targets = np.broadcast_to(np.arange(math.prod(eshape)).reshape(eshape), d.eshape)
    rows = _Deps(d.eshape, d.common, d.indptr, d.indices, disjoint=True)
    return _moved(rows, targets.reshape(-1), kept, eshape)


def _matmul(inputs: list, shapes: list, shape) -> _Deps | None:
    """``out[..., i, k]`` depends on row ``i`` of ``a`` and column ``k`` of ``b``, all of it
    (data entries are not looked at: the pattern serves any data of these shapes)."""
    a_shape = tuple(shapes[0]) if len(shapes[0]) > 1 else (1,) + tuple(shapes[0])
    b_shape = tuple(shapes[1]) if len(shapes[1]) > 1 else tuple(shapes[1]) + (1,)
    full = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])
    rows, columns = a_shape[:-1] + (1,), b_shape[:-2] + (1, b_shape[-1])
    live = [(_reduced(_reshaped(inputs[0], a_shape), rows), rows),
            (_reduced(_reshaped(inputs[1], b_shape), columns), columns)]
    return _reshaped(_union(full, [(d, s) for d, s in live if d is not None]), shape)


def _stacked(inputs: list, shapes: list) -> _Deps:
    """Several inputs' entries one after another (what ``concat`` and ``scatter_add`` read
    from): in common what all of them have in common."""
    sizes = [math.prod(s) for s in shapes]
    present = [d for d, size in zip(inputs, sizes) if size]
    common = frozenset.intersection(*[d.common for d in present]) \
        if present and all(d is not None for d in present) else frozenset()
    rows, cols, offset, expanded = [], [], 0, False
    for d, size in zip(inputs, sizes):
        if d is not None and size:
            r, c = d.pairs(d.common - common)
            rows.append(r + offset)
            cols.append(c)
            expanded |= d.common != common
        offset += size
    indptr, indices = _csr_of(offset, np.concatenate(rows), np.concatenate(cols),
                              unique=expanded) if rows else (None, None)
    return _Deps((offset,), common, indptr, indices, disjoint=True)


def _scattered(stacked: _Deps, positions: list, keys, shape) -> _Deps:
    """``out[key_i] += value_i`` into zeros of ``shape``, ``positions[i]`` the entries of
    ``value_i`` in ``stacked`` (values broadcast to what their key selects)."""
    entries = np.arange(math.prod(shape)).reshape(shape)
    sources, targets = [], []
    for where, key in zip(positions, keys):
        selected = entries[key]
        sources.append(np.broadcast_to(where, np.shape(selected)).reshape(-1))
        targets.append(np.reshape(selected, -1))
    sources, targets = np.concatenate(sources), np.concatenate(targets)
    return _moved(_gathered(stacked, sources, (len(sources),)), targets, shape)


def _symmetric(grads: list[Tensor], deps: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian's pattern: gradient entry ``i`` depends on variable ``j``, or ``j`` on
    ``i`` (the Hessian is symmetric, so is its pattern); ``(indptr, indices)``, int32."""
    rows, cols, offset, dense = [], [], 0, n > 0
    for g in grads:
        d = deps[id(g)]
        dense = dense and d is not None and len(d.common) == n
        if d is not None:
            r, c = d.pairs(d.common)
            rows.append(r + offset)
            cols.append(c)
        offset += math.prod(g.shape)
    if dense:  # every entry on every variable: no pairs to sort
        return (np.arange(0, n * n + 1, n, dtype=np.int32),
                np.tile(np.arange(n, dtype=np.int32), n))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    indptr, indices = _csr_of(n, np.concatenate([r, c]), np.concatenate([c, r]), unique=True)
    if indptr is None:
        return np.zeros(n + 1, dtype=np.int32), np.zeros(0, dtype=np.int32)
    return indptr.astype(np.int32), indices.astype(np.int32)


def _colouring(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """A colour per column: mostly dense patterns get one each (a greedy colouring would need
    more than half as many, found at the cost of a dense matrix product), others the greedy
    colouring."""
    size = len(indptr) - 1
    if 2 * len(indices) > size * size:
        return np.arange(size, dtype=np.int64)
    return _colour_columns(indptr, indices)


def _colour_columns(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Greedy colouring of a symmetric CSR pattern: two columns with a nonzero in the same row
    never share a colour.

    The columns that conflict with column j are the pattern's squared row j (a sparse
    product, in SciPy's C), so the Python loop does one small array step per column."""
    try:
        import scipy.sparse
    except ImportError:
        return _colour_columns_by_sets(indptr, indices)
    size = len(indptr) - 1
    pattern = scipy.sparse.csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr),
                                      shape=(size, size))
    conflicts = (pattern @ pattern).tocsr()
    colours = np.full(size, -1, dtype=np.int64)
    for j in range(size):
        used = colours[conflicts.indices[conflicts.indptr[j]:conflicts.indptr[j + 1]]]
        used = used[used >= 0]
        free = np.ones(len(used) + 1, dtype=bool)  # one of 0..len(used) is always free
        free[used[used <= len(used)]] = False
        colours[j] = int(np.argmax(free))
    return colours


def _colour_columns_by_sets(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The same greedy colouring with Python sets (without SciPy)."""
    rows = [indices[a:b].tolist() for a, b in zip(indptr[:-1], indptr[1:])]
    colours = np.full(len(rows), -1, dtype=np.int64)
    for j in range(len(rows)):  # by symmetry, column j's nonzero rows are rows[j]
        taken = {int(colours[k]) for i in rows[j] for k in rows[i] if colours[k] >= 0}
        colour = 0
        while colour in taken:
            colour += 1
        colours[j] = colour
    return colours


def _array_module_of(leaves: list):
    """Where a call on these arguments runs: on their GPU, or, for host values, on the
    current device (inside ``st.device('/gpu:N')`` compiled calls place them there)."""
    xp = array_module(*[_value_of(leaf) for leaf in leaves])
    return xp if xp is not np else default_array_module()


def _csr(xp, data, indices, indptr, size: int):
    if xp is np:
        try:
            import scipy.sparse
        except ImportError:
            raise ImportError("st.hessian(..., sparse=True) returns a scipy.sparse matrix; "
                              "install SciPy: pip install 'symtape[scipy]'") from None
        # each matrix its own index arrays: the pattern is shared, read-only, by every call
        return scipy.sparse.csr_matrix((data, indices.copy(), indptr.copy()), shape=(size, size))
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse.csr_matrix(
        (data, xp.asarray(indices), xp.asarray(indptr)), shape=(size, size))
