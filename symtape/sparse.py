"""Sparse Hessians: only the entries a gradient entry depends on are ever computed.

The sparsity pattern is exact: entry ``(i, j)`` is structurally nonzero when variable ``j``
occurs in the closed form of gradient entry ``i`` (one symbolic reverse sweep gives all of
them). The values come from Hessian-vector products, compressed by a column colouring
(Curtis, Powell and Reid): columns that share no row get one colour, and one product with
the sum of their unit vectors yields all their entries at once. The extended Rosenbrock
function (``3n - 2`` nonzeros, tridiagonal) needs 3 products for any ``n``, and the
products are one batched call of a compiled, vectorized kernel. Structural zeros are
never differentiated nor evaluated.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import sympy

from symtape import nest
from symtape.backends import array_module, default_array_module
from symtape.compile import any_dask_array
from symtape.symbolic import factored, symbolic_value
from symtape.tensor import Tensor
from symtape.vmap import vmap

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
        from symtape.functional import _argnums, _differentiated, _leaf_spec, _placed

        nums = _argnums(self._argnums, len(args))
        args = _differentiated(args, nums)
        leaves, rebuild = nest.flatten(args)
        if any_dask_array(leaves):
            raise TypeError("a sparse Hessian is one matrix at one point held in memory, not a "
                            "lazy dask array: compute the arguments first, map the dense "
                            "st.hessian(f) with st.vmap (block by block), or pass data in dask "
                            "arrays to st.optimize.minimize, which sums the Hessian over chunks")
        leaves = _placed(leaves)
        args = rebuild(leaves)
        specs = [_leaf_spec(leaf) for leaf in leaves]
        key = tuple(specs)  # one trace per signature: a new shape is a new Hessian
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = _Built(self._fun, args, nums, leaves, rebuild, specs)
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

    def __init__(self, fun, args, nums, leaves, rebuild, specs):
        seen: dict = {}
        self._product = _hessian_product(fun, nums, len(args), seen)
        sources = nest.flatten([args[i] for i in nums])[0]
        self._shapes = [tuple(np.shape(_value_of(s))) for s in sources]
        self._dtypes = [np.dtype(getattr(_value_of(s), "dtype", np.float64)) for s in sources]
        # one trace of one product (zero seeds); its inner gradient, a graph, gives the pattern
        xp = _array_module_of(leaves)
        zeros = [xp.zeros(shape, dtype) for shape, dtype in zip(self._shapes, self._dtypes)]
        self._product.get_concrete_function(*args, zeros)
        # one kernel call over a batch of seeds (a row per colour), traced at one seed above
        self._products = vmap(self._product, in_axes=(None,) * len(args) + (0,))
        self._grads, self._sources = seen["grads"], seen["sources"]
        self.size = sum(int(np.prod(shape, dtype=np.int64)) for shape in self._shapes)
        self._specs = specs
        self._expr = None
        self._pattern(_graph_dependencies(self._grads, self._sources))

    def _exact(self) -> tuple[list, list]:
        """The gradient's exact entries and the variables' symbols, flattened in order."""
        with factored():
            return (_flat([symbolic_value(g) for g in self._grads]),
                    _flat([symbolic_value(s) for s in self._sources]))

    def _pattern(self, rows: list[list[int]]) -> None:
        """The CSR structure, a colouring of its columns, and where each value is found."""
        colours = _colour_columns(rows, self.size)
        self.colours = int(colours.max()) + 1 if self.size and any(rows) else 0
        indptr = np.zeros(self.size + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        self._indptr = indptr.astype(np.int32)
        self._indices = np.array([j for r in rows for j in r], dtype=np.int32)
        row_of = np.repeat(np.arange(self.size), [len(r) for r in rows])
        # the value of (i, j) is entry i of the product with colour(j)'s seed
        self._take = colours[self._indices] * self.size + row_of if self.size else row_of
        self._seeds = (np.arange(self.colours)[:, None] == colours[None, :]).astype(np.float64)

    def evaluate(self, leaves: list, args: tuple, nums: tuple):
        xp = _array_module_of(leaves)
        if self.colours == 0:
            data = xp.zeros(0, dtype=self._dtypes[0] if self._dtypes else np.float64)
        else:
            seeds, start = [], 0
            for shape, dtype in zip(self._shapes, self._dtypes):
                size = int(np.prod(shape, dtype=np.int64))
                block = self._seeds[:, start:start + size].reshape((self.colours,) + shape)
                seeds.append(xp.asarray(block, dtype=dtype))  # float32 in, float32 out
                start += size
            products = self._products(*args, seeds)
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


def _hessian_product(fun, nums: tuple[int, ...], nargs: int, seen: dict):
    """A compiled ``(*args, vs) -> H @ vs`` (one ``v`` per differentiated argument); the
    trace leaves its sources and inner gradient in ``seen``."""
    from symtape.functional import Function, _scalar
    from symtape.ops import reduce_sum
    from symtape.tape import GradientTape

    def product(*args_and_seeds):
        args, seeds = args_and_seeds[:nargs], args_and_seeds[nargs]
        sources = nest.flatten([args[i] for i in nums])[0]
        with GradientTape() as outer:
            outer.watch(sources)
            with GradientTape() as inner:
                inner.watch(sources)
                y = _scalar(fun(*args), "hessian")
            grads = inner.gradient(y, sources, unconnected_gradients="zero")
            seen.update(grads=grads, sources=sources)
            dot = 0
            for g, v in zip(grads, seeds):
                dot = dot + reduce_sum(g * v)
        return outer.gradient(dot, sources, unconnected_gradients="zero")

    product.__signature__ = _signature_with_seeds(fun, nargs)  # symbols named as in `fun`
    return Function(product, wrap_outputs=False)


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
    return leaf._value if isinstance(leaf, Tensor) else leaf


def _flat(values: list) -> list:
    out = []
    for value in values:
        out.extend(value.reshape(-1).tolist() if isinstance(value, np.ndarray) else [value])
    return out


def hessian_pattern(grads: list[Tensor], sources: list) -> tuple[np.ndarray, np.ndarray, int]:
    """The CSR ``(indptr, indices)`` of the Hessian whose gradient graph is ``grads``, and a
    colouring of its columns (columns of one colour share no row): ``(indptr, indices,
    colours)`` with ``colours`` an array, one colour per column.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.trace import Trace
    >>> x = st.Variable(np.ones(4), name="x")
    >>> with Trace():  # gradients recorded as graphs
    ...     with st.GradientTape() as tape:
    ...         y = st.reduce_sum(x[1:] * x[:-1])
    ...     g = tape.gradient(y, x)
    >>> indptr, indices, colours = hessian_pattern([g], [x])
    >>> indptr.tolist(), indices.tolist(), int(colours.max()) + 1
    ([0, 1, 3, 5, 6], [1, 0, 2, 1, 3, 2], 2)
    """
    rows = _graph_dependencies(grads, sources)
    indptr = np.zeros(len(rows) + 1, dtype=np.int32)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.array([j for r in rows for j in r], dtype=np.int32)
    return indptr, indices, _colour_columns(rows, len(rows))


def _graph_dependencies(grads: list[Tensor], sources: list) -> list[list[int]]:
    """Per gradient entry, the variables its recorded graph reaches: one pass over the graph
    in topological order, each entry of each value a set of variable positions. A source is
    a Tensor, or a Variable (whose reads in the graph are then its leaves).

    Structural ops run their own NumPy forms on object arrays of :class:`_Reach` (whose
    ``+`` and ``*`` are unions), so indexing, reductions and ``matmul`` move the sets exactly
    as they move values; elementwise ops unite their broadcast operands' sets.
    """
    from symtape.primitives import REGISTRY
    from symtape.program import _walk

    reach: dict[int, np.ndarray] = {}
    offset = 0
    for s in sources:
        size = int(np.prod(s.shape, dtype=np.int64))
        bits = np.empty(size, dtype=object)
        bits[:] = [_Reach(frozenset((offset + k,))) for k in range(size)]
        reach[id(s)] = bits.reshape(s.shape)
        offset += size
    for node in _walk(list(grads), lambda t: t):
        if id(node) in reach:
            continue
        if node._prim is None:
            own = reach.get(id(node._source)) if node._source is not None else None
            reach[id(node)] = own if own is not None else _nothing(node.shape)
            continue
        inputs = [reach[id(x)] for x in node._inputs]
        if node._prim.elementwise:
            reach[id(node)] = np.asarray(_unite(len(inputs))(*inputs), dtype=object) \
                if len(inputs) > 1 else inputs[0]
        elif node._prim.name in ("scatter", "scatter_add"):
            params = node._params
            keys = params["keys"] if "keys" in params else (params["key"],)
            out = _nothing(params["shape"])
            for key, value in zip(keys, inputs):
                np.add.at(out, key, value)  # unions, even where keys repeat
            reach[id(node)] = out
        else:
            name = "reduce_sum" if node._prim.name in ("reduce_max", "reduce_min") else \
                node._prim.name
            reach[id(node)] = np.asarray(REGISTRY[name].numeric(np, *inputs, **node._params),
                                         dtype=object)
    rows = []
    for g in grads:
        rows.extend(sorted(_Reach.bits_of(entry))
                    for entry in np.asarray(reach[id(g)], dtype=object).reshape(-1))
    return _symmetric(rows)


class _Reach:
    """A set of variable positions that adds and multiplies as a union."""

    __slots__ = ("bits",)

    def __init__(self, bits: frozenset):
        self.bits = bits

    @staticmethod
    def bits_of(value) -> frozenset:
        return value.bits if isinstance(value, _Reach) else _EMPTY

    def _union(self, other) -> "_Reach":
        return _Reach(self.bits | _Reach.bits_of(other))

    __add__ = __radd__ = __mul__ = __rmul__ = __or__ = __ror__ = _union


@functools.lru_cache(maxsize=None)
def _unite(arity: int):
    """The broadcasting union of ``arity`` arrays of sets."""
    return np.frompyfunc(lambda *sets: _Reach(_or_all(sets)), arity, 1)


def _or_all(sets) -> frozenset:
    return _EMPTY.union(*[_Reach.bits_of(value) for value in sets])


_EMPTY: frozenset = frozenset()


def _nothing(shape) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out[...] = _Reach(_EMPTY)
    return out


def _symmetric(rows: list[list[int]]) -> list[list[int]]:
    """The Hessian is symmetric: so is its pattern."""
    sets = [set(r) for r in rows]
    for i, row in enumerate(rows):
        for j in row:
            sets[j].add(i)
    return [sorted(r) for r in sets]


def _colour_columns(rows: list[list[int]], size: int) -> np.ndarray:
    """Greedy colouring: two columns with a nonzero in the same row never share a colour.

    The columns that conflict with column j are the pattern's squared row j (a sparse
    product, in SciPy's C), so the Python loop does one small array step per column."""
    try:
        import scipy.sparse
    except ImportError:
        return _colour_columns_by_sets(rows, size)
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.fromiter((k for r in rows for k in r), dtype=np.int64, count=int(indptr[-1]))
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


def _colour_columns_by_sets(rows: list[list[int]], size: int) -> np.ndarray:
    """The same greedy colouring with Python sets (without SciPy)."""
    colours = np.full(size, -1, dtype=np.int64)
    for j in range(size):  # by symmetry, column j's nonzero rows are rows[j]
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
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(size, size))
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse.csr_matrix(
        (data, xp.asarray(indices), xp.asarray(indptr)), shape=(size, size))
