"""Jacobians and Hessians at the array level: one forward sweep whose tangents are arrays.

``st.jacobian`` and ``st.hessian`` otherwise take one reverse sweep per row (or column) of
the result: for a dense Hessian of ``d`` variables, ``d`` sweeps, each a chain of
matrix-vector products through the data. For graphs made of matrix products, elementwise
ops, reductions, transposes, reshapes and broadcasts this module derives the whole matrix in
one forward sweep instead (forward over the recorded reverse sweep, for a Hessian). The
tangent of a value of shape ``V`` holds its derivative with respect to every entry of the
source along one extra trailing axis (shape ``V + (n,)``, ``n`` the source's size), and it
is kept structured as long as it can be:

- the source's own tangent is the identity, never built: ``A @ x`` has tangent ``A``;
- an elementwise function multiplies a *row scale* (a value of shape ``V``), not the
  ``V x n`` block: ``sigmoid(B @ x)`` has tangent ``s(1 - s)`` times the rows of ``B``;
- a matrix product meets the block once: ``B.T @ (r * B)``, the hand-written formula (a
  vector times a scaled block scales the smaller of its operands first);
- a reshape of a reshape is one reshape, and none where the shape is right already.

So the Hessian of ``x.T A x + sum(softplus(B x))`` compiles to ``B.T @ (s(1 - s) * B)`` plus
the constant ``A + A.T`` (tangents of constants are constants, folded when traced). The
tangents are ordinary recorded ops, so the result is compiled like any trace, keeps its
exact ``.expr``, and maps over batches (``st.vmap``). Any other op on a path from the source
to the result (indexing, slicing, ``where``, ``cast``, ``reduce_max``, ...) returns None: the
caller then takes the sweeps per row, which handle every op.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from symtape.core.algebra import TENSOR
from symtape.core.tensor import Tensor

__all__ = ["jacobian", "hessian", "supported", "NotCovered"]

# primitives this sweep derives besides the differentiable elementwise ones
_STRUCTURAL = frozenset({"reduce_sum", "matmul", "transpose", "reshape", "broadcast_to"})
# elementwise primitives left to the sweeps per row: a condition (where), a dtype change
_EXCLUDED = frozenset({"where", "cast"})


def supported(prim) -> bool:
    """Whether this sweep derives through ``prim`` (a :class:`~symtape.core.primitives.Primitive`).

    Examples
    --------
    >>> from symtape.core.primitives import REGISTRY
    >>> [supported(REGISTRY[name]) for name in ("matmul", "sigmoid", "getitem", "where")]
    [True, True, False, False]
    """
    if prim.name in _STRUCTURAL:
        return True
    return prim.elementwise and prim.vjp is not None and prim.name not in _EXCLUDED


class _Tangent:
    """A tangent of a value of shape ``V``: ``scale[..., None] * base``. ``base`` has shape
    ``V + (n,)``, or is None for the identity: the source's own entries, in order, in shape
    ``V`` (the source, or a reshape of it); ``scale`` broadcasts to ``V``, None for 1."""

    __slots__ = ("base", "scale")

    def __init__(self, base: Tensor | None, scale: Tensor | None = None):
        self.base, self.scale = base, scale


class NotCovered(Exception):
    """A graph with an op outside this sweep's class (raised where the caller asked for this
    route only: ``derivatives.array_level_hessian``)."""


class _TooLarge(Exception):
    """An n x n identity would outgrow the result: the sweeps per row are cheaper."""


class _Sweep:
    """One forward sweep from one source: its identity, and the tangents found so far."""

    def __init__(self, source: Tensor, budget: int):
        self.source = source
        self.shape = tuple(source.shape)
        self.n = math.prod(self.shape)
        self.dtype = source.dtype
        self.budget = budget  # the most entries an identity may have, built out
        self._unit = None


    def unit(self, shape: tuple) -> Tensor:
        """The identity as an array of shape ``shape + (n,)`` (a constant, made when needed;
        an n x n array only where no structured rule applies)."""
        if self.n * self.n > self.budget:
            raise _TooLarge
        if self._unit is None:
            self._unit = Tensor(np.eye(self.n, dtype=self.dtype))
        return _reshaped(self._unit, tuple(shape) + (self.n,))

    def dense(self, t: _Tangent, shape: tuple) -> Tensor:
        """``t`` as an array of exactly ``shape + (n,)``."""
        base = self.unit(shape) if t.base is None else t.base
        if t.scale is not None:
            base = _column(t.scale) * base
        full = tuple(shape) + (self.n,)
        if tuple(base.shape) != full:
            base = TENSOR.broadcast_to(base, shape=full)
        return base


# ---------------------------------------------------------------- entry points


def jacobian(y: Tensor, sources: list) -> list | None:
    """``d y / d source`` (shape ``y.shape + source.shape``) for each source, as recorded ops
    (``y`` recorded as a graph, e.g. inside a trace), or None where the graph has an op
    outside this sweep's class.

    Parameters
    ----------
    y : Tensor
        The output, with its recorded graph.
    sources : list of Tensor
        Traced arguments ``y`` is computed from.

    Returns
    -------
    list of Tensor, or None
        One Jacobian per source, itself recorded.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.kernels.trace import Trace, placeholder
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> with Trace():
    ...     x = placeholder(np.array([0.0, 1.0]), "x")
    ...     [J] = jacobian(st.tanh(st.matmul(A, x)), [x])
    >>> np.allclose(J.numpy(), (1 - np.tanh(A @ [0.0, 1.0]) ** 2)[:, None] * A)
    True
    """
    blocks = _blocks([y], sources)
    return None if blocks is None else [row[0] for row in blocks]


def hessian(gradients: list, sources: list) -> list | None:
    """The Hessian blocks ``H[i][j] = d gradients[i] / d sources[j]`` as recorded ops (the
    gradients recorded as graphs, e.g. inside a trace), or None where the graph has an op
    outside this sweep's class.

    Parameters
    ----------
    gradients : list of Tensor
        The gradient with respect to each source, as a recorded graph (``tape.gradient``
        inside a trace).
    sources : list of Tensor
        Traced arguments.

    Returns
    -------
    list of list of Tensor, or None
        ``H[i][j]``, of shape ``sources[i].shape + sources[j].shape``.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> from symtape.kernels.trace import Trace, placeholder
    >>> B = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    >>> with Trace():
    ...     x = placeholder(np.array([0.5, -0.5]), "x")
    ...     with st.GradientTape() as tape:
    ...         tape.watch(x)
    ...         f = st.reduce_sum(st.softplus(st.matmul(B, x)))
    ...     [[H]] = hessian([tape.gradient(f, x)], [x])
    >>> s = 1 / (1 + np.exp(-B @ [0.5, -0.5]))
    >>> np.allclose(H.numpy(), (B.T * (s * (1 - s))) @ B)
    True
    """
    rows = _blocks(gradients, sources)
    return None if rows is None else [list(row) for row in zip(*rows)]


def _blocks(outputs: list, sources: list) -> list | None:
    """Per source, the derivative of every output (one forward sweep each), or None."""
    if not all(isinstance(s, Tensor) and s.dtype.kind == "f" for s in sources):
        return None
    order = _order(outputs)
    per_source = []
    for source in sources:
        reached = _reached(order, source)
        if reached is None:
            return None
        n = math.prod(source.shape)
        # an identity built out is fine up to a few times the result's size, never beyond
        sweep = _Sweep(source, budget=max(4 * n * sum(math.prod(y.shape) for y in outputs),
                                          1 << 20))
        try:
            tangents = _run(sweep, reached)
            per_source.append([_result(sweep, tangents.get(id(y)), y) for y in outputs])
        except _TooLarge:
            return None
    return per_source


def _result(sweep: _Sweep, t: _Tangent | None, y: Tensor) -> Tensor:
    shape = tuple(y.shape) + sweep.shape
    if t is None:
        return Tensor(np.zeros(shape, dtype=sweep.dtype)[()])
    return _reshaped(sweep.dense(t, tuple(y.shape)), shape)


# ---------------------------------------------------------------- the graph


def _order(outputs: list) -> list:
    """Every node the outputs are computed from, inputs before their consumers."""
    order, seen = [], set()
    stack = [(y, False) for y in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for x in node.inputs:
            if id(x) not in seen:
                stack.append((x, False))
    return order


def _reached(order: list, source: Tensor) -> list | None:
    """The nodes that depend on ``source`` (itself first), or None if one of them is an op
    this sweep does not derive."""
    depends = {id(source)}
    reached = [source]
    for node in order:
        if node is source:
            continue
        if node.primitive is None:  # a constant, or another argument
            continue
        if not any(id(x) in depends for x in node.inputs):
            continue
        if node.dtype.kind != "f" or not supported(node.primitive):
            return None
        depends.add(id(node))
        reached.append(node)
    return reached


def _run(sweep: _Sweep, reached: list) -> dict:
    tangents: dict[int, _Tangent] = {}
    for node in reached:
        if node.primitive is None:
            tangents[id(node)] = _Tangent(None)
            continue
        t = _RULES.get(node.primitive.name, _elementwise)(sweep, node, tangents)
        if t is not None:
            tangents[id(node)] = t
    return tangents


# ---------------------------------------------------------------- helpers


def _reshaped(x: Tensor, shape: tuple) -> Tensor:
    """``x`` in ``shape``: a reshape of a reshape is one reshape, and none where the shape
    is already right (the matrix products' vector views add several)."""
    shape = tuple(shape)
    while x.primitive is not None and x.primitive.name == "reshape":
        x = x.inputs[0]
    return x if tuple(x.shape) == shape else TENSOR.reshape(x, shape=shape)


def _column(v) -> Tensor:
    """``v`` with a trailing axis of length 1: it scales every column of a tangent."""
    v = v if isinstance(v, Tensor) else Tensor(np.asarray(v))
    return _reshaped(v, tuple(v.shape) + (1,))


def _is_one(v) -> bool:
    """A constant (no lineage to the arguments) that is 1 everywhere: a factor to skip."""
    if isinstance(v, Tensor):
        return not v.symbolic and bool(np.all(v.array == 1))
    return isinstance(v, (int, float)) and v == 1


def _times(a, b):
    if _is_one(a):
        return b
    return a if _is_one(b) else a * b


def _add(sweep: _Sweep, terms: list, shape: tuple) -> _Tangent | None:
    """The sum of tangents of values of ``shape``."""
    terms = [t for t in terms if t is not None]
    if len(terms) <= 1:
        return terms[0] if terms else None
    if all(t.base is None for t in terms):  # identities with different scales
        scales = [Tensor(np.ones((), sweep.dtype)) if t.scale is None else t.scale
                  for t in terms]
        total = scales[0]
        for s in scales[1:]:
            total = total + s
        return _Tangent(None, total)
    # the constant blocks (a ridge penalty's 2 lam I, say) added up here, into one constant
    parts = [part for t in terms for part in _addends(sweep.dense(t, shape))]
    constants = [part for part in parts if not part.symbolic]
    parts = [part for part in parts if part.symbolic]
    if constants:
        constant = constants[0]
        for c in constants[1:]:
            constant = constant + c  # computed now: no lineage, so no op in the kernel
        parts.append(constant)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return _Tangent(total)


def _addends(block: Tensor) -> list:
    """``block`` as terms: a sum of a block and a constant of its shape is the two (so that
    constants met in nested sums are added once, when traced)."""
    if block.primitive is not None and block.primitive.name == "add" and block.symbolic:
        a, b = block.inputs
        if (a.shape == b.shape == block.shape and a.dtype == b.dtype == block.dtype
                and a.symbolic != b.symbolic):
            return [a, b]
    return [block]


def _ones(dtype) -> Tensor:
    return Tensor(np.ones((), dtype=dtype))


# ---------------------------------------------------------------- rules


def _elementwise(sweep: _Sweep, node: Tensor, tangents: dict) -> _Tangent | None:
    """``sum_k d out / d x_k * t_k``; the partials come from the primitive's own reverse
    rules with a cotangent of 1, so every differentiable elementwise op is covered."""
    shape = tuple(node.shape)
    prim, inputs, params = node.primitive, node.inputs, node.params
    terms = []
    for k, x in enumerate(inputs):
        t = tangents.get(id(x))
        rule = prim.rule(k)
        if t is None or rule is None:
            continue
        partial = _without_unit_factor(rule(TENSOR, _ones(node.dtype), node, *inputs, **params))
        if partial is None:
            continue
        if tuple(x.shape) == shape:  # lazily: the partial joins the row scale
            terms.append(_Tangent(t.base, _times(t.scale, partial) if t.scale is not None
                                  else (None if _is_one(partial) else partial)))
        else:  # broadcast: the block is built, then scaled and broadcast
            dense = sweep.dense(t, tuple(x.shape))
            lead = len(shape) - len(x.shape)
            dense = _reshaped(dense, (1,) * lead + tuple(dense.shape))
            base = dense if _is_one(partial) else _column(partial) * dense
            if tuple(base.shape) != shape + (sweep.n,):  # every base has its value's shape
                base = TENSOR.broadcast_to(base, shape=shape + (sweep.n,))
            terms.append(_Tangent(base))
    return _add(sweep, terms, shape)


def _without_unit_factor(partial):
    """A rule's partial with the cotangent of one it was multiplied by dropped (``1 * s``
    is ``s``): one op less to compile."""
    if isinstance(partial, Tensor) and partial.primitive is not None and \
            partial.primitive.name == "mul":
        for one, other in (partial.inputs, partial.inputs[::-1]):
            if _is_one(one) and other.shape == partial.shape and other.dtype == partial.dtype:
                return other
    return partial


def _reduce_sum(sweep: _Sweep, node: Tensor, tangents: dict) -> _Tangent:
    (x,) = node.inputs
    t = tangents[id(x)]
    xshape = tuple(x.shape)
    axis, keepdims = node.params["axis"], node.params["keepdims"]
    axes = tuple(range(len(xshape))) if axis is None else tuple(a % len(xshape) for a in axis)
    everything = len(axes) == len(xshape) and not keepdims
    if everything and t.base is None:  # sum of a scaled identity: the scale, as a row
        scale = _ones(sweep.dtype) if t.scale is None else t.scale
        if tuple(scale.shape) != xshape:
            scale = TENSOR.broadcast_to(scale, shape=xshape)
        return _Tangent(_reshaped(scale, (sweep.n,)))
    if everything and len(xshape) == 1 and t.scale is not None and \
            tuple(t.scale.shape) == xshape:  # r @ T: one vector-matrix product
        return _Tangent(TENSOR.matmul(t.scale, t.base))
    dense = sweep.dense(t, xshape)
    return _Tangent(TENSOR.reduce_sum(dense, axis=axes, keepdims=keepdims))


def _reshape(sweep: _Sweep, node: Tensor, tangents: dict) -> _Tangent:
    (x,) = node.inputs
    t = tangents[id(x)]
    shape, xshape = tuple(node.shape), tuple(x.shape)
    if shape == xshape:
        return t
    if t.base is None:  # the same entries in the same order: still the identity
        if t.scale is None or math.prod(t.scale.shape) == 1:
            return t if t.scale is None else _Tangent(None, _reshaped(t.scale, ()))
        if tuple(t.scale.shape) == xshape:
            return _Tangent(None, _reshaped(t.scale, shape))
    return _Tangent(_reshaped(sweep.dense(t, xshape), shape + (sweep.n,)))


def _transpose(sweep: _Sweep, node: Tensor, tangents: dict) -> _Tangent:
    (x,) = node.inputs
    t = tangents[id(x)]
    perm = tuple(node.params["perm"])
    if perm == tuple(range(len(perm))):
        return t
    dense = sweep.dense(t, tuple(x.shape))
    return _Tangent(TENSOR.transpose(dense, perm=perm + (len(perm),)))


def _broadcast_to(sweep: _Sweep, node: Tensor, tangents: dict) -> _Tangent:
    (x,) = node.inputs
    t = tangents[id(x)]
    shape, xshape = tuple(node.shape), tuple(x.shape)
    if shape == xshape:
        return t
    dense = sweep.dense(t, xshape)
    dense = _reshaped(dense, (1,) * (len(shape) - len(xshape)) + xshape + (sweep.n,))
    return _Tangent(TENSOR.broadcast_to(dense, shape=shape + (sweep.n,)))


def _swap_last(ndim: int) -> tuple:
    return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)


def _matmul(sweep: _Sweep, node: Tensor, tangents: dict) -> _Tangent | None:
    a, b = node.inputs
    shape = tuple(node.shape)
    terms = []
    if id(a) in tangents:
        terms.append(_tangent_of_left(sweep, tangents[id(a)], a, b, shape))
    if id(b) in tangents:
        terms.append(_tangent_of_right(sweep, a, tangents[id(b)], b, shape))
    return _add(sweep, terms, shape)


def _tangent_of_right(sweep: _Sweep, a: Tensor, t: _Tangent, b: Tensor, shape) -> _Tangent:
    """``a @ t`` (``b``'s tangent ``t``)."""
    bshape, n = tuple(b.shape), sweep.n
    if t.base is None and len(bshape) == 2 and len(a.shape) == 2:
        # out[i, j] = sum_k a[i, k] b[k, j], b's entry (k, j) the source's k N + j:
        # d out[i, j] / d (k, l) = a[i, k] scale[k, l] delta(j, l), built at the result's size
        (M, K), N = tuple(a.shape), bshape[1]
        cols = _reshaped(a, (M, 1, K, 1))
        if t.scale is not None:
            cols = cols * _reshaped(_full_scale(t.scale, bshape), (1, 1, K, N))
        kron = _times(_eye_between(sweep, N, (1, N, 1, N)), cols)
        return _Tangent(_reshaped(kron, (M, N, n)))
    if len(bshape) == 1:
        if t.base is None:  # a @ diag(scale): the columns of a, scaled
            return _Tangent(a if t.scale is None else a * t.scale)
        if t.scale is not None and len(a.shape) == 2 and tuple(t.scale.shape) == bshape \
                and a.shape[0] <= n:  # a @ (r * T) as (a * r) @ T: scale the smaller one
            return _Tangent(TENSOR.matmul(a * t.scale, t.base))
        return _Tangent(TENSOR.matmul(a, sweep.dense(t, bshape)))
    dense = sweep.dense(t, bshape)  # (..., K, N, n): the columns and the tangent side by side
    flat = _reshaped(dense, bshape[:-1] + (bshape[-1] * n,))
    return _Tangent(_reshaped(TENSOR.matmul(a, flat), shape + (n,)))


def _tangent_of_left(sweep: _Sweep, t: _Tangent, a: Tensor, b: Tensor, shape) -> _Tangent:
    """``t @ b`` (``a``'s tangent ``t``), the tangent axis kept last."""
    ashape, bshape = tuple(a.shape), tuple(b.shape)
    if t.base is None and len(ashape) == 2 and len(bshape) == 2:
        # d out[i, j] / d (i2, k) = delta(i, i2) scale[i2, k] b[k, j], at the result's size
        (M, K), N = ashape, bshape[1]
        rows = _reshaped(TENSOR.transpose(b, perm=(1, 0)), (1, N, 1, K))
        if t.scale is not None:
            rows = rows * _reshaped(_full_scale(t.scale, ashape), (1, 1, M, K))
        kron = _times(_eye_between(sweep, M, (M, 1, M, 1)), rows)
        return _Tangent(_reshaped(kron, (M, N, sweep.n)))
    if len(ashape) == 1:
        bt = b if len(bshape) == 1 else TENSOR.transpose(b, perm=_swap_last(len(bshape)))
        if t.base is None:  # diag(scale) @ b: the rows of b, scaled, as columns
            return _Tangent(bt if t.scale is None else bt * t.scale)
        return _Tangent(TENSOR.matmul(bt, sweep.dense(t, ashape)))
    r = len(ashape)
    dense = sweep.dense(t, ashape)  # (..., M, K, n) -> (..., M, n, K) @ b
    moved = TENSOR.transpose(dense, perm=tuple(range(r - 1)) + (r, r - 1))
    if len(bshape) == 1:
        return _Tangent(TENSOR.matmul(moved, b))
    b = _reshaped(b, bshape[:-2] + (1,) + bshape[-2:])  # beside the row axis
    product = TENSOR.matmul(moved, b)  # (..., M, n, N)
    return _Tangent(TENSOR.transpose(product, perm=_swap_last(len(product.shape))))


def _full_scale(scale: Tensor, shape: tuple) -> Tensor:
    return scale if tuple(scale.shape) == shape else TENSOR.broadcast_to(scale, shape=shape)


def _eye_between(sweep: _Sweep, size: int, shape: tuple) -> Tensor:
    """``eye(size)`` spread over two axes of ``shape`` (a Kronecker factor; all ones when
    ``size`` is 1, and then skipped)."""
    return Tensor(np.eye(size, dtype=sweep.dtype).reshape(shape))


_RULES: dict[str, Any] = {"reduce_sum": _reduce_sum, "reshape": _reshape,
                          "transpose": _transpose, "broadcast_to": _broadcast_to,
                          "matmul": _matmul}
