"""Algebras: the three worlds a derivative rule runs in.

A rule in :mod:`symtape.core.primitives` is written once, as ``g * A.cos(x)``. Which world it
computes in depends on the algebra ``A`` handed to it:

- :class:`NumericAlgebra` — arrays of one array module (NumPy or CuPy): a numeric
  gradient at the cost of a few array ops per node, no SymPy anywhere;
- :class:`SymbolicAlgebra` — SymPy expressions and object arrays of them: the exact
  closed form, from the same reverse sweep;
- :class:`TensorAlgebra` — Tensors, so every step is itself recorded: a gradient that an
  outer tape can differentiate again (nested tapes, Hessians).

Each algebra exposes every registered primitive under its name, plus the few helpers
rules and the reverse sweep need (``const``, ``shape``, ``dtype``, ``zeros_like``,
``sum_to``, ``add_n``, ``forward``, ``seed``).
"""

from __future__ import annotations

import functools
import operator
from types import ModuleType
from typing import Any, Sequence

import numpy as np
import sympy

from symtape.arrays import objarrays
from symtape.core import deepforms
from symtape.core.primitives import REGISTRY, add_at
from symtape.core.symbolic import symbolic_value
from symtape.core.tensor import Tensor, apply, convert_to_tensor, on_device_with

__all__ = ["NumericAlgebra", "SymbolicAlgebra", "TensorAlgebra", "numeric_algebra", "SYMBOLIC",
           "TENSOR"]


class _Algebra:
    """What all worlds share: broadcasting cotangents back to an input's shape."""

    lazy_forward = False  # True: ask `forward` per argument, for the values that rule reads

    def reduce_to(self, x, shape: tuple[int, ...]):
        """Sum ``x`` over the axes broadcasting added, so that it broadcasts to ``shape``.

        The result may be smaller than ``shape`` (a uniform cotangent stays a scalar):
        expanding it is left to :meth:`expand`, where a rule needs the exact shape.
        """
        if getattr(x, "shape", ()) == shape:  # the common case, in every world
            return x
        xshape = tuple(self.shape(x))
        shape = tuple(shape)
        if xshape == shape:
            return x
        lead = len(xshape) - len(shape)
        kept = tuple(i for i in range(max(lead, 0), len(xshape))
                     if shape[i - lead] == 1 and xshape[i] != 1)
        if kept:
            x = self.reduce_sum(x, axis=kept, keepdims=True)
        if lead > 0:
            x = self.reduce_sum(x, axis=tuple(range(lead)), keepdims=False)
        return x

    def expand(self, x, shape: tuple[int, ...]):
        """Broadcast ``x`` to exactly ``shape``."""
        if getattr(x, "shape", ()) == shape:
            return x
        return x if tuple(self.shape(x)) == tuple(shape) else self.broadcast_to(x, shape=tuple(shape))

    def vjp(self, rule, g, out, xs: Sequence[Any], params: dict):
        """Apply one derivative rule to the cotangent ``g``."""
        return rule(self, g, out, *xs, **params)

    def add_n(self, parts: Sequence[Any]):
        """Sum the cotangent contributions reaching one node."""
        return parts[0] if len(parts) == 1 else functools.reduce(operator.add, parts)

    def stack(self, values: Sequence[Any], axis: int = 0):
        """Join same-shaped values along a new ``axis`` (Jacobian rows)."""
        shape = tuple(self.shape(values[0]))
        expanded = shape[:axis] + (1,) + shape[axis:]
        pieces = [self.reshape(v, shape=expanded) for v in values]
        return pieces[0] if len(pieces) == 1 else self.concat(*pieces, axis=axis)


class NumericAlgebra(_Algebra):
    """Primitives on arrays of ``xp``: fast numeric gradients.

    Examples
    --------
    >>> A = NumericAlgebra(np)
    >>> float(A.sin(0.0)), A.const(0.5)
    (0.0, 0.5)
    """

    def __init__(self, xp: ModuleType):
        self.xp = xp
        for name, prim in REGISTRY.items():
            setattr(self, name, functools.partial(prim.numeric, xp))

    def const(self, value, exact=None):
        return value

    def shape(self, x) -> tuple[int, ...]:
        return x.shape if isinstance(x, _Scatter) else np.shape(x)

    def scatter(self, g, key, shape):
        # the cotangent of a slice: kept as (key, values) until the contributions are summed,
        # so x[1:] and x[:-1] accumulate into one buffer instead of two zero-filled arrays
        return _Scatter(g, key, tuple(shape))

    def add_n(self, parts: Sequence[Any]):
        if len(parts) == 1 and not isinstance(parts[0], _Scatter):
            return parts[0]
        scattered = [p for p in parts if isinstance(p, _Scatter)]
        if not scattered:
            return super().add_n(parts)
        dense = [p for p in parts if not isinstance(p, _Scatter)]
        first = scattered[0]
        dtype = np.result_type(*[p.values for p in scattered], *dense)
        buffer = self.xp.zeros(first.shape, dtype)
        for p in dense:
            buffer += p
        for p in scattered:
            p.add_into(self.xp, buffer)
        return buffer[()] if buffer.ndim == 0 else buffer

    def dtype(self, x):
        return x.dtype

    def zeros_like(self, x):
        return self.xp.zeros_like(x)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype)[()]

    def forward(self, node, argnum: int | None = None):
        # the inputs as the op saw them: a host constant that met GPU values, on the GPU
        # the slots themselves: the sweep's hottest reads (see NODE_FIELD_EXCEPTIONS in
        # tests/test_layers.py)
        return node._value, on_device_with(self.xp, [x._value for x in node._inputs])

    def seed(self, shape, dtype, index: int | None = None, tensor: Tensor | None = None):
        """The cotangent a sweep starts from: ones, a one-hot entry, or a given Tensor."""
        if tensor is not None:
            return tensor.array
        if index is None:
            value = self.xp.ones(shape, dtype)
        else:
            value = self.xp.zeros(shape, dtype)
            value.reshape(-1)[index] = 1
        return value[()] if value.ndim == 0 else value


class _Scatter:
    """A cotangent that is zero outside ``key``: the transpose of indexing, not yet dense."""

    __slots__ = ("values", "key", "shape")

    def __init__(self, values, key, shape):
        self.values = values
        self.key = key
        self.shape = shape

    def add_into(self, xp, buffer) -> None:
        add_at(xp, buffer, self.key, self.values)


class _Shaped:
    """Stands in for a forward value whose rule needs only its shape and dtype."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype


def _placeholder(node) -> _Shaped:
    return _Shaped(node.array.shape, node.array.dtype)


# stand for the cotangent and for deep forward values while a rule runs
# (SymbolicAlgebra.vjp): atoms, cheap to sort
_COTANGENT = sympy.Dummy("g")
_STAND_INS = tuple(sympy.Dummy(f"u{i}") for i in range(4))


def _deep(value) -> bool:
    return isinstance(value, sympy.Expr) and deepforms.is_deep(value)


def _deep_product(value) -> bool:
    return isinstance(value, sympy.Mul) and deepforms.is_deep(value)


class SymbolicAlgebra(_Algebra):
    """Primitives on SymPy values: the exact closed form of a gradient.

    Examples
    --------
    >>> A = SymbolicAlgebra()
    >>> A.sin(sympy.Symbol("x")), A.const(0.5)
    (sin(x), 1/2)
    """

    lazy_forward = True  # building a forward expression costs SymPy work: only when read

    def __init__(self):
        for name, prim in REGISTRY.items():
            setattr(self, name, prim.symbolic)

    def const(self, value, exact=None):
        return exact if exact is not None else objarrays.exact_number(value)

    def shape(self, x) -> tuple[int, ...]:
        return objarrays.shape_of(x)

    def dtype(self, x):
        # dtypes do not exist in the symbolic world; placeholders carry the recorded one
        return x.dtype if isinstance(x, _Shaped) else np.dtype("float64")

    def zeros_like(self, x):
        return objarrays.zeros(self.shape(x))

    def zeros(self, shape, dtype):
        return objarrays.zeros(shape)

    def vjp(self, rule, g, out, xs: Sequence[Any], params: dict):
        """The rule's result, with deep scalar values kept out of SymPy's evaluation.

        The rule runs on placeholder symbols for the cotangent and for forward values that are
        deep products (a Hessian's sweep reads a gradient's chain-rule products). Every rule
        is linear in ``g``: a result ``placeholder * f1 * f2 ...``, where the placeholders
        are factors and nowhere else, becomes ``deepforms.product`` of ``g`` and each factor
        (the values put back), which never re-sorts the factors of a deep product (SymPy's
        ``Mul`` would, comparing trees as deep as they are alike). Other results run the
        rule on the values themselves.
        """
        if isinstance(g, np.ndarray) or not (_deep(g) or any(map(_deep_product, (out, *xs)))):
            return rule(self, g, out, *xs, **params)
        stand_ins = iter(_STAND_INS)
        values_of = {_COTANGENT: g}

        def stand_in(value):
            placeholder = next(stand_ins, None) if _deep_product(value) else None
            if placeholder is None:
                return value
            values_of[placeholder] = value
            return placeholder

        local = rule(self, _COTANGENT, stand_in(out), *map(stand_in, xs), **params)
        factors = local.args if isinstance(local, sympy.Mul) else (local,)
        others = [f for f in factors if f not in values_of]
        if (_COTANGENT not in factors or len(values_of) > 1 and any(
                f.free_symbols & values_of.keys() for f in others)):
            return rule(self, g, out, *xs, **params)  # a stand-in inside a factor
        result = g
        for factor in factors:
            if factor is not _COTANGENT:
                result = deepforms.product(result, values_of.get(factor, factor))
        return result

    def add_n(self, parts: Sequence[Any]):
        if len(parts) == 1:
            return parts[0]
        if any(isinstance(p, np.ndarray) for p in parts):
            return objarrays.add_many(list(parts))
        return deepforms.total(list(parts))

    def forward(self, node, argnum: int | None = None):
        """Forward values for one rule: SymPy forms only where the rule reads them.

        A linear rule reads shapes only, so it gets placeholders; a value a rule never
        loads is passed as None.
        """
        prim = node.primitive
        reads = prim.reads[argnum] if argnum is not None and prim.reads else None
        value = _placeholder if prim.linear else symbolic_value
        if reads is None:
            return value(node), [value(x) for x in node.inputs]
        return (value(node) if -1 in reads else None,
                [value(x) if i in reads else None for i, x in enumerate(node.inputs)])

    def seed(self, shape, dtype, index: int | None = None, tensor: Tensor | None = None):
        if tensor is not None:
            return symbolic_value(tensor)
        if index is None:
            return objarrays.full(shape, sympy.S.One)
        value = objarrays.zeros(shape)
        if shape == ():
            return sympy.S.One
        value.reshape(-1)[index] = sympy.S.One
        return value


class TensorAlgebra(_Algebra):
    """Primitives on Tensors: every step is recorded, so gradients can be differentiated again.

    Examples
    --------
    >>> import symtape as st
    >>> A = TensorAlgebra()
    >>> A.sin(st.constant(0.0))
    <st.Tensor: shape=(), dtype=float64, numpy=0.0>
    """

    def __init__(self):
        for name, prim in REGISTRY.items():
            if name not in type(self).__dict__:  # `scatter` is kept lazy (below)
                setattr(self, name, self._applier(prim))

    @staticmethod
    def _applier(prim):
        def run(*xs, **params):
            return apply(prim, tuple(convert_to_tensor(x) for x in xs), params)

        return run

    def scatter(self, g, key, shape):
        # kept as (key, values) until summed: a loop over x[i] gives one scatter_add of all
        # its entries, not one zero-filled array per entry (quadratic in the length)
        return _Scatter(g, key, tuple(shape))

    def add_n(self, parts: Sequence[Any]):
        scattered = [p for p in parts if isinstance(p, _Scatter)]
        if not scattered:
            return super().add_n(parts)
        dense = [p for p in parts if not isinstance(p, _Scatter)]
        if len(scattered) == 1:
            first = scattered[0]
            total = self._applier(REGISTRY["scatter"])(first.values, key=first.key,
                                                       shape=first.shape)
        else:
            total = self._applier(REGISTRY["scatter_add"])(
                *[p.values for p in scattered], keys=tuple(p.key for p in scattered),
                shape=scattered[0].shape)
        return super().add_n([total] + dense)

    def const(self, value, exact=None):
        if exact is None:
            return value  # a Python number: ops give it the other operand's dtype
        from symtape.core.tensor import weak_constant

        return weak_constant(value, np.dtype("float64"), exact)

    def shape(self, x) -> tuple[int, ...]:
        return x.shape

    def dtype(self, x):
        return x.dtype

    def zeros_like(self, x):
        return Tensor(np.zeros_like(x.array)[()])

    def zeros(self, shape, dtype):
        return Tensor(np.zeros(shape, dtype)[()])

    def forward(self, node, argnum: int | None = None):
        return node, list(node.inputs)

    def seed(self, shape, dtype, index: int | None = None, tensor: Tensor | None = None):
        if tensor is not None:
            return tensor
        return Tensor(numeric_algebra(np).seed(shape, dtype, index))


_NUMERIC: dict[str, NumericAlgebra] = {}


def numeric_algebra(xp: ModuleType) -> NumericAlgebra:
    """The (shared) numeric algebra of array module ``xp``."""
    algebra = _NUMERIC.get(xp.__name__)
    if algebra is None:
        algebra = _NUMERIC[xp.__name__] = NumericAlgebra(xp)
    return algebra


SYMBOLIC = SymbolicAlgebra()
TENSOR = TensorAlgebra()
