"""Tensors, Variables, and ``apply``: the one place an op is evaluated and recorded.

Every op result remembers its lineage ``(primitive, inputs, params)`` when one of its
inputs is symbolic (a Variable read, a watched constant, or a result of such). That is
all that recording costs; the SymPy form (``.expr``) is built from the lineage only when
asked for (:mod:`symtape.core.symbolic`). Active tapes additionally keep the results whose
inputs they watch, which is what ``tape.gradient`` differentiates through.
"""

from __future__ import annotations

import gc
import itertools
import operator
import sys
from contextvars import ContextVar
from typing import Any, Callable, Union

import numpy as np
import sympy

from symtape.arrays import dtypes
from symtape.core import nest
from symtape.arrays.backends import (array_module, device_name, gpu_device_of, is_gpu_array,
                              to_device, to_host)
from symtape.arrays.device import CPU, CURRENT_DEVICE, DeviceSpec
from symtape.core.primitives import REGISTRY, Primitive

__all__ = ["Tensor", "Variable", "TensorLike", "constant", "convert_to_tensor", "apply"]

# the tapes whose `with` block is open, innermost last
ACTIVE_TAPES: ContextVar[tuple] = ContextVar("symtape_active_tapes", default=())
# the trace being recorded by st.function (symtape.kernels.trace.Trace), if any
ACTIVE_TRACE: ContextVar[Any] = ContextVar("symtape_active_trace", default=None)

_EMPTY: dict = {}
# Jupyter typesets a Tensor's closed form up to these sizes; larger ones show their repr.
LATEX_MAX_ENTRIES = 400
LATEX_MAX_CHARS = 20_000
_constant_names = itertools.count(1)
_variable_names = itertools.count(1)
_variables_made = itertools.count()  # construction order (tape.watched_variables sorts by it)


class Operators:
    """What Tensor and Variable share: Python operators (``symtape.core.ops`` installs them) and
    the properties and protocols read off the current value."""

    __slots__ = ()
    __array_priority__ = 100  # `ndarray + Tensor` defers to Tensor.__radd__

    def __hash__(self):
        raise TypeError(f"{type(self).__name__} is unhashable (== compares entries, as in "
                        "TensorFlow); use `t.ref()` as a dictionary key or set member")

    def ref(self) -> "Reference":
        """A hashable reference to this object, for dict keys and sets.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(1.0)
        >>> {x.ref(): "x"}[x.ref()]
        'x'
        """
        return Reference(self)

    def _repr_latex_(self) -> str | None:
        r"""The closed form as LaTeX, which Jupyter shows in place of the repr.

        ``None`` (Jupyter then shows the repr) where LaTeX would not help: more than
        ``LATEX_MAX_ENTRIES`` entries, a formula longer than ``LATEX_MAX_CHARS`` characters,
        or a value whose closed form cannot be built.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(2.0, name="x")
        >>> with st.GradientTape() as tape:
        ...     y = st.sin(x) * x
        >>> tape.gradient(y, x)._repr_latex_()
        '$x \\cos{\\left(x \\right)} + \\sin{\\left(x \\right)}$'
        >>> st.constant(range(1000))._repr_latex_() is None
        True
        """
        if int(np.prod(self.shape)) > LATEX_MAX_ENTRIES:
            return None
        try:
            text = sympy.latex(self.expr)
        except Exception:  # a display hook must not raise: Jupyter falls back to the repr
            return None
        return f"${text}$" if len(text) <= LATEX_MAX_CHARS else None

    # -- what Tensor and Variable share: everything read off the current value
    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, a tuple of ints.

        Examples
        --------
        >>> import symtape as st
        >>> st.constant([[1.0, 2.0]]).shape
        (1, 2)
        """
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype (``st.float64`` etc., which are NumPy dtypes).

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable(1).dtype
        dtype('int64')
        """
        return self._value.dtype

    @property
    def ndim(self) -> int:
        """The number of axes.

        Examples
        --------
        >>> import symtape as st
        >>> st.zeros((2, 3)).ndim
        2
        """
        return len(self._value.shape)

    @property
    def device(self) -> str:
        """Where the value lives: ``'/cpu:0'`` for NumPy values, ``'/gpu:N'`` for CuPy ones.

        Examples
        --------
        >>> import symtape as st
        >>> st.constant(1.0).device
        '/cpu:0'
        """
        return device_name(self._value)

    @property
    def array(self):
        """The NumPy or CuPy array holding the value, not a copy: do not modify it.

        ``numpy()`` is the safe copy; ``array`` is for code that only reads the value
        (kernels, devices, the graph's walks) and must not pay for a copy or a transfer.
        A Variable's ``array`` is its current value (``assign`` puts a new array in its place).

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([1.0, 2.0])
        >>> a = x.array
        >>> x.assign([3.0, 4.0]).array, a
        (array([3., 4.]), array([1., 2.]))
        """
        return self._value

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __bool__(self) -> bool:
        if is_traced(self):
            raise TypeError(
                "a traced Tensor was used as a Python bool (an `if`, `while`, `and` or `or`); "
                "st.function compiles one trace, so the branch taken now would be taken for "
                "every input. Use st.where(condition, a, b) to choose values elementwise")
        return bool(self._value)

    def __float__(self) -> float:
        _refuse_host_value(self, "float()")
        return float(self._value)

    def __int__(self) -> int:
        _refuse_host_value(self, "int()")
        return int(self._value)

    def __format__(self, spec: str) -> str:
        return format(self.numpy(), spec) if spec else repr(self)


def is_traced(t) -> bool:
    """Whether ``t`` is a value being traced by st.function (its value varies per call)."""
    return ACTIVE_TRACE.get() is not None and (
        isinstance(t, Variable) or getattr(t, "_symbolic", False))


def _refuse_host_value(t, what: str) -> None:
    if is_traced(t):
        raise TypeError(
            f"{what} of a traced Tensor inside st.function: its value now would be frozen into "
            "the compiled kernel and reused by every later call. Compute with st ops instead, "
            "or pass the value in as an argument")


class Reference:
    """Hashable wrapper of a Tensor or Variable, compared by identity (``t.ref()``)."""

    __slots__ = ("_obj",)

    def __init__(self, obj):
        self._obj = obj

    def deref(self):
        """The Tensor or Variable this reference points to."""
        return self._obj

    def __hash__(self):
        return id(self._obj)

    def __eq__(self, other):
        return isinstance(other, Reference) and other._obj is self._obj


class Tensor(Operators):
    """An immutable value, with the exact SymPy expression it was computed as.

    Tensors come from :func:`constant`, from ops on Tensors and Variables, and from
    ``GradientTape`` results. ``.numpy()`` is the value; ``.expr`` the closed form in the
    symbols of the Variables (and watched constants) it depends on.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(3.0, name="x")
    >>> y = x ** 2 + 1
    >>> y
    <st.Tensor: shape=(), dtype=float64, numpy=10.0>
    >>> y.expr
    x**2 + 1
    """

    __slots__ = ("_value", "_prim", "_inputs", "_params", "_source", "_sym", "_thunk",
                 "_symbolic", "_weak", "_name")

    def __init__(self, value, prim: Primitive | None = None, inputs: tuple = (),
                 params: dict = _EMPTY, *, source=None, thunk=None, weak: bool = False,
                 name: str | None = None):
        self._value = value
        self._prim = prim
        self._inputs = inputs
        self._params = params
        self._source = source
        self._thunk = thunk
        self._sym = None
        self._symbolic = prim is not None or source is not None or thunk is not None
        self._weak = weak
        self._name = name

    # -- values
    def numpy(self) -> np.ndarray:
        """The value as a NumPy array (a host copy, also for GPU tensors).

        Examples
        --------
        >>> import symtape as st
        >>> st.constant([1.0, 2.0]).numpy()
        array([1., 2.])
        """
        _refuse_host_value(self, ".numpy()")
        value = self._value
        if array_module(value) is not np:
            return value.get()
        return np.array(value)

    @property
    def name(self) -> str | None:
        """The name given to :func:`constant` or to an op's ``name=`` (None if none was).

        A label: it names the symbol only of a constant that a tape watches; ``.expr`` of
        a computed value is the same with or without it.

        Examples
        --------
        >>> import symtape as st
        >>> st.constant(1.0, name="a").name
        'a'
        >>> x = st.Variable(0.5, name="x")
        >>> y = st.sin(x, name="y")
        >>> y.name, y.expr
        ('y', sin(x))
        """
        return self._name

    # -- the node: how this value was computed (read-only; the graph's walks read these)
    @property
    def primitive(self) -> Primitive | None:
        """The :class:`~symtape.core.primitives.Primitive` whose result this is; None for a
        leaf (a constant, a Variable's read, a traced argument).

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(0.5, name="x")
        >>> st.sin(x).primitive.name, x.value().primitive
        ('sin', None)
        """
        return self._prim

    @property
    def inputs(self) -> tuple:
        """The Tensors the primitive was applied to, in order (``()`` for a leaf).

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(2.0, name="x")
        >>> [t.expr for t in (x * 3.0).inputs]
        [x, 3]
        """
        return self._inputs

    @property
    def params(self) -> dict:
        """The primitive's keyword parameters (``axis``, ``shape``, ...), empty for a leaf and
        for primitives without any.

        The node's own dict, not a copy (as JAX's ``eqn.params``): read it, never modify it.
        Leaves share one empty dict, and the graph's walks pass it on as ``**params`` at
        dict speed, which a read-only view would lose.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([[1.0, 2.0]], name="x")
        >>> st.reduce_sum(x, axis=1).params
        {'axis': (1,), 'keepdims': False}
        """
        return self._params

    @property
    def source(self) -> "Variable | Tensor | None":
        """What this leaf stands for in closed forms: the Variable a read came from, or the
        Tensor itself for a watched constant or a traced argument; None otherwise (plain
        constants and computed values).

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(1.0, name="x")
        >>> x.value().source is x, (x + 1).source
        (True, None)
        """
        return self._source

    @property
    def weak(self) -> bool:
        """Whether this is a weakly typed Python number: it takes the dtype of the Tensor it
        meets (``x32 * 2.0`` is float32), as in JAX.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(1.0, dtype=st.float32)
        >>> [t.weak for t in (x * 2.0).inputs]
        [False, True]
        """
        return self._weak

    @property
    def symbolic(self) -> bool:
        """Whether the value has a closed form of its own: it depends on a Variable, a watched
        constant or a traced argument (or is an exact number such as ``pi``). Ops on it keep
        their lineage and tapes record them; other values are plain numbers in ``.expr``.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(1.0, name="x")
        >>> (x + 1).symbolic, st.constant(1.0).symbolic
        (True, False)
        """
        return self._symbolic

    # -- closed form
    @property
    def expr(self) -> sympy.Basic:
        """The exact SymPy expression of this value (``sympy.Array`` for non-scalars).

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([1.0, 2.0], name="x")
        >>> (x * 0.5).expr
        [x[0]/2, x[1]/2]
        """
        from symtape.core import symbolic

        return symbolic.expr_of(self)

    @property
    def matrix_expr(self) -> sympy.Basic:
        """The value as a SymPy matrix expression, written as a person would (``2*A.T*(A*x - b)``).

        ``MatrixSymbol``s are named after the Variables and named constants (unnamed array
        constants get automatic names ``C1``, ``C2``, ...); a vector of length n is an n x 1
        matrix, a scalar a SymPy scalar. Works for values and for the results of
        ``tape.gradient``, ``tape.jacobian`` and ``tape.hessian``. Ops with no matrix form
        (indexing, reshapes, ``where``, ...) raise ``symtape.core.matrix.MatrixFormError`` (a
        ``ValueError``) naming the op; ``.expr`` always exists. See :mod:`symtape.core.matrix`.

        Examples
        --------
        >>> import symtape as st
        >>> A = st.constant([[2.0, 1.0], [1.0, 3.0]], name="A")
        >>> b = st.constant([1.0, 0.0], name="b")
        >>> x = st.Variable([0.5, 0.5], name="x")
        >>> with st.GradientTape() as tape:
        ...     loss = st.reduce_sum(st.square(A @ x - b))
        >>> loss.matrix_expr  # a scalar: the one entry of a 1x1 product
        ((A*x - b).T*(A*x - b))
        >>> tape.gradient(loss, x).matrix_expr
        2*A.T*(A*x - b)
        """
        from symtape.core import matrix

        return matrix.matrix_expr_of(self)

    def __repr__(self) -> str:
        return f"<st.Tensor: shape={self.shape}, dtype={self.dtype}, numpy={_short(self._value)}>"

    def __str__(self) -> str:
        return f"st.Tensor({_short(self._value)}, shape={self.shape}, dtype={self.dtype})"

    # -- Python protocols
    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar Tensor (shape ()) is undefined")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __index__(self) -> int:
        _refuse_host_value(self, "Using as an index")
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer Tensors can be used as an index, not {self.dtype}")
        return int(self._value)


TensorLike = Union[Tensor, "Variable", float, int, bool, np.ndarray, list, tuple]


def _short(value) -> str:
    array = to_host(value)
    if array.ndim == 0:
        return repr(array.item())
    return np.array2string(array, threshold=20, separator=", ")


class _Leaf(Tensor):
    """A plain leaf Tensor as compiled functions return them (:func:`leaf_tensors`): a
    Tensor in every respect (``isinstance``, repr, ops, ``.expr``, tapes, pickling), made a
    thousand at a time on every call of a gradient over scalar Variables.

    The fields a plain leaf never changes are class attributes here, so making one writes
    three slots, not ten. Per 1000 float64 values (Python 3.11, best of runs, one run):
    ~184 us before, ~126 us now with the garbage collector on as in a program (~137 and
    ~101 us with it off); ``_value`` alone would be ~5 us less. A read of a shadowed field
    costs ~13 ns more than a slot's (3.11 does not specialize it), a few reads per op that
    takes a result: far less than the ~58 ns per result saved. ``_sym`` (the ``.expr`` memo)
    and ``_name`` (``name=`` labels, ``.matrix_expr``'s automatic names) stay real slots:
    core modules write them on existing Tensors (``symbolic.py``, ``matrix.py``, ``ops.py``),
    and a promotion before each of those writes would cost more code than the ~5 us saved.
    The shadowed fields are read-only on instances (a class attribute of a slotted class);
    the one function that writes them on an existing Tensor, :func:`make_symbol`, first makes
    the leaf a full Tensor with :func:`_full_tensor`. Code that tells Tensors apart uses
    ``isinstance(t, Tensor)``, never ``type(t) is Tensor``.
    """

    __slots__ = ()  # Tensor's layout: `leaf.__class__ = Tensor` is allowed
    _prim = None
    _inputs = ()
    _params = _EMPTY
    _source = None
    _thunk = None
    _symbolic = False
    _weak = False

    def __reduce__(self):
        # pickled and copied as the plain Tensor it stands for (Tensor(value) has the fields
        # shadowed here), its two other slots restored as pickle restores any slots
        return Tensor, (self._value,), (None, {"_sym": self._sym, "_name": self._name})


# messages naming `type(t).__name__` ("Tensor is unhashable") read as for any Tensor; the
# qualified name, which pickle and the class's repr use, stays `_Leaf`
_Leaf.__name__ = "Tensor"
#: the fields a lean leaf reads from its class, with their values
_SHADOWED = {name: value for name, value in vars(_Leaf).items() if name in Tensor.__slots__}


def _full_tensor(tensor: Tensor) -> Tensor:
    """``tensor``, made a full Tensor in place if it is a lean leaf (every field a slot of
    its own, so that any of them can be written); other Tensors as they are."""
    if type(tensor) is _Leaf:
        tensor.__class__ = Tensor  # the same layout; the shadowed slots are filled next
        for name, value in _SHADOWED.items():
            setattr(tensor, name, value)
    return tensor


def leaf_tensors(values) -> list[Tensor]:
    """``[Tensor(v) for v in values]`` (plain Tensors: no op, no source, not weak), made as
    cheaply as Python allows: what compiled functions return on every call, a thousand
    Tensors at a time for a gradient over scalar Variables.

    Parameters
    ----------
    values : list or tuple
        Arrays (NumPy scalars for shape ``()`` on the host), taken as they are.

    Examples
    --------
    >>> import numpy as np
    >>> [t.numpy() for t in leaf_tensors([np.float64(1.5), np.arange(2)])]
    [array(1.5), array([0, 1])]
    """
    # the objects made in one C loop (map), not a call of object.__new__ per statement
    out = list(map(object.__new__, itertools.repeat(_Leaf, len(values))))
    for t, value in zip(out, values):  # one statement per slot: faster than tuple assignments
        t._value = value
        t._sym = None
        t._name = None
    return out


_MANY_LEAVES = 256  # from this many, made with no collection (the threshold is 700 objects)


def built_uncollected(build: Callable[[list], Any], values) -> Any:
    """``build(leaf_tensors(values))``, with the cyclic garbage collector paused where the
    values are many (a compiled call's results: a gradient over 1000 scalar Variables).

    A thousand new objects cross the collector's threshold (700) while they are made, and
    the collection that follows scans them all and finds nothing: a leaf holds an array and
    two labels, never a cycle. Paused, the objects still count; in a loop whose results
    are dropped before the next call (an optimizer's), they are freed before the count is
    checked again, and that collection never happens (about a sixth of such a call's time).
    Results kept longer are scanned at the next check, as they would have been.

    Parameters
    ----------
    build : callable
        Makes the call's result from the list of Tensors (the outputs' structure).
    values : list or tuple
        The arrays, as :func:`leaf_tensors` takes them.

    Examples
    --------
    >>> import gc, numpy as np
    >>> built_uncollected(tuple, [np.float64(1.0), np.float64(2.0)])[1].numpy()
    array(2.)
    >>> gc.isenabled()
    True
    """
    if len(values) < _MANY_LEAVES or not gc.isenabled():
        return build(leaf_tensors(values))
    gc.disable()
    try:
        return build(leaf_tensors(values))
    finally:
        gc.enable()


class Variable(Operators):
    """A mutable value that gradients are taken with respect to.

    Like ``tf.Variable``: trainable Variables read inside a ``GradientTape`` are watched
    automatically. Its symbol (``.expr``) is named after ``name``: ``x`` for a scalar,
    ``x[0], x[1], ...`` (``W[0,1]`` for matrices) entry by entry.

    Parameters
    ----------
    initial_value : array-like, Tensor, or a callable returning one
    dtype : dtype, optional
        Default: float64 for Python floats, int64 for Python ints (NumPy's convention).
    name : str, optional
        The symbol name; default ``v1``, ``v2``, ... .
    trainable : bool, default True

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(3.0, name="x")
    >>> x.assign_sub(0.5)
    <st.Variable 'x' shape=() dtype=float64, numpy=2.5>
    >>> isinstance(x, st.Tensor)
    False
    """

    __slots__ = ("_value", "_name", "_trainable", "_read_cache", "_symbols", "_serial")

    def __init__(self, initial_value, dtype=None, name: str | None = None,
                 trainable: bool = True):
        if callable(initial_value):
            initial_value = initial_value()
        value = to_array(initial_value, None if dtype is None else dtypes.as_dtype(dtype),
                          what="Variable initial_value")
        if name is None:
            from symtape.core.symbolic import AutoName  # lazily, as .expr imports symbolic

            name = AutoName(f"v{next(_variable_names)}")  # a symbol of its own
        elif not isinstance(name, str) or not name:
            raise TypeError(f"Variable name must be a non-empty str, got {name!r}")
        self._value = value
        self._name = name
        self._trainable = bool(trainable)
        self._read_cache: Tensor | None = None
        self._symbols = None
        self._serial = next(_variables_made)

    # -- reading
    def _read(self) -> Tensor:
        """The current value as a Tensor whose symbol is this Variable's; watches if taped."""
        if self._trainable:
            for tape in ACTIVE_TAPES.get():
                if tape._recording and tape._watch_accessed:
                    tape._watch_variable(self)
        read = self._read_cache
        if read is None:
            # values are never changed in place (assign swaps arrays), so a read is a snapshot
            read = self._read_cache = Tensor(self._value, source=self)
        return read

    def value(self) -> Tensor:
        """The current value as a Tensor (its ``.expr`` is this Variable's symbol).

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable(2.0, name="w").value().expr
        w
        """
        return self._read()

    def read_value(self) -> Tensor:
        """The current value as a new Tensor, a node of its own (TensorFlow's read): gradients
        can be taken w.r.t. it, and reach the Variable through it.

        Examples
        --------
        >>> import symtape as st
        >>> v = st.Variable(2.0, name="v")
        >>> with st.GradientTape() as tape:
        ...     r = v.read_value()
        ...     y = r * 3.0 + v * v
        >>> [float(g) for g in tape.gradient(y, [r, v])]
        [3.0, 7.0]
        >>> r.expr
        v
        """
        read = self._read()  # an identity op on the read (a reshape to its own shape)
        return apply(REGISTRY["reshape"], (read,), {"shape": read.shape})

    def numpy(self) -> np.ndarray:
        """The current value as a NumPy array (a copy).

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable([1, 2]).numpy()
        array([1, 2])
        """
        return self._read().numpy()

    @property
    def name(self) -> str:
        """The name, also the name of its symbol(s).

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable(1.0, name="w").name
        'w'
        """
        return self._name

    @property
    def trainable(self) -> bool:
        """Whether tapes watch this Variable automatically when it is read.

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable(1.0, trainable=False).trainable
        False
        """
        return self._trainable

    @property
    def expr(self) -> sympy.Basic:
        """The symbol of this Variable (a ``sympy.Array`` of symbols if it is not a scalar).

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable([0.0, 0.0], name="x").expr
        [x[0], x[1]]
        """
        return self._read().expr

    @property
    def matrix_expr(self) -> sympy.Basic:
        """The Variable as a ``MatrixSymbol`` (n x 1 for a vector; a ``Symbol`` for a scalar).

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable([[0.0, 0.0]], name="W").matrix_expr.shape
        (1, 2)
        """
        return self._read().matrix_expr

    # -- writing: validate first, then swap the array, so a failed assign changes nothing
    def assign(self, value, read_value: bool = True):
        """Set the value; the shape must match and the dtype must convert safely.

        Values read before and after an assign share the Variable's symbol, so a closed form
        (``.expr``, also of a gradient) that depends on both raises ``ValueError`` rather
        than print one symbol for two values; gradients' numbers follow TensorFlow.

        Parameters
        ----------
        value : Tensor, Variable or array-like
            The new value, of the Variable's shape. Its dtype must convert to the Variable's
            without loss (a float64 Tensor does not go into a float32 Variable; numbers and
            NumPy arrays of the same kind do).
        read_value : bool, default True
            Return the Variable (TensorFlow returns its new value); False returns None.

        Returns
        -------
        Variable or None

        Raises
        ------
        ValueError
            If the shape differs from the Variable's.
        TypeError
            If the value cannot be converted to the Variable's dtype without loss.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([1.0, 2.0], name="x")
        >>> x.assign([3.0, 4.0]).numpy()
        array([3., 4.])
        >>> x.assign([1.0])
        Traceback (most recent call last):
        ...
        ValueError: Variable 'x'.assign: shape (1,) does not match the Variable's shape (2,); a Variable's shape is fixed at construction
        """
        new = self._checked(value, "assign")
        trace = ACTIVE_TRACE.get()
        original, self._value = self._value, new
        if trace is None:
            self._read_cache = None
        else:  # a traced assignment: later reads stand for the assigned Tensor
            if isinstance(value, Variable):
                value = value._read()
            self._read_cache = trace.assign(self, value if isinstance(value, Tensor)
                                            else Tensor(new), original)
        return self if read_value else None

    def assign_add(self, delta, read_value: bool = True):
        """Add ``delta`` to the value in place of the old one.

        Parameters
        ----------
        delta : Tensor, Variable or array-like
            Of the Variable's shape, converting to its dtype without loss (as for ``assign``).
        read_value : bool, default True
            Return the Variable (TensorFlow returns its new value); False returns None.

        Returns
        -------
        Variable or None

        Raises
        ------
        ValueError
            If the shape differs from the Variable's.
        TypeError
            If ``delta`` cannot be converted to the Variable's dtype without loss.

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable(1.0).assign_add(2.0).numpy()
        array(3.)
        """
        step = self._checked(delta, "assign_add")
        if ACTIVE_TRACE.get() is not None:
            return self.assign(self._traced_step(operator.add, delta, step), read_value)
        return self.assign(self._value + step, read_value)

    def assign_sub(self, delta, read_value: bool = True):
        """Subtract ``delta`` from the value.

        Parameters
        ----------
        delta : Tensor, Variable or array-like
            Of the Variable's shape, converting to its dtype without loss (as for ``assign``).
        read_value : bool, default True
            Return the Variable (TensorFlow returns its new value); False returns None.

        Returns
        -------
        Variable or None

        Raises
        ------
        ValueError
            If the shape differs from the Variable's.
        TypeError
            If ``delta`` cannot be converted to the Variable's dtype without loss.

        Examples
        --------
        >>> import symtape as st
        >>> st.Variable(1.0).assign_sub(0.25).numpy()
        array(0.75)
        """
        step = self._checked(delta, "assign_sub")
        if ACTIVE_TRACE.get() is not None:
            return self.assign(self._traced_step(operator.sub, delta, step), read_value)
        return self.assign(self._value - step, read_value)

    def _traced_step(self, op: Callable, delta, step) -> Tensor:
        """``value op delta`` on Tensors, so a trace records where the new value comes from
        (the operators are the ops, bound onto Tensor by :mod:`symtape.core.ops`)."""
        if not isinstance(delta, (Tensor, Variable)):
            delta = Tensor(step)
        return op(self._read(), delta)

    def _checked(self, value, method: str):
        where = f"Variable {self._name!r}.{method}"
        new = to_array(value, self.dtype, what=where)
        if new.shape != self.shape:
            raise ValueError(f"{where}: shape {new.shape} does not match the Variable's shape "
                             f"{self.shape}; a Variable's shape is fixed at construction")
        return on_device_of(new, self._value) if "cupy" in sys.modules else new

    def __repr__(self) -> str:
        return (f"<st.Variable {self._name!r} shape={self.shape} dtype={self.dtype}, "
                f"numpy={_short(self._value)}>")

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self):
        return iter(self._read())


# ---------------------------------------------------------------- conversion


def to_array(value, dtype: np.dtype | None, *, what: str):
    """Convert to an array of ``dtype`` on the current device; refuse lossy conversions.

    Tensors and Variables convert only when safe (int32 -> float64, not float64 ->
    float32); Python numbers and NumPy arrays within the same kind (float -> float32).
    Host data goes to the current device (``st.device``); CuPy arrays stay on their GPU.
    Both are validated the same way, on dtypes alone: GPU data is never copied to check it.
    """
    strict = isinstance(value, (Tensor, Variable))
    if strict:
        value = value._value
    on_gpu = "cupy" in sys.modules and is_gpu_array(value)  # no CuPy loaded: no CuPy arrays
    if on_gpu:
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:
            if isinstance(value, (list, tuple)) and any(map(is_traced, nest.flatten(value)[0])):
                raise TypeError(f"{what}: the {type(value).__name__} holds Tensors traced one by "
                                "one (a compiled function traces each number of a list "
                                "argument apart); pass the data as one array, np.asarray(...), "
                                "or join Tensors with st.stack") from None
            raise TypeError(f"{what}: cannot convert {type(value).__name__} to an array ({err})") from None
        if array.dtype == object or array.dtype.kind in "USVO":
            raise TypeError(f"{what}: cannot convert {value!r} ({array.dtype}) to a numeric Tensor")
    if dtype is None:
        dtype = _default_dtype(array)
    elif array.dtype != dtype:
        rule = "safe" if strict else "same_kind"
        if not np.can_cast(array.dtype, dtype, casting=rule):
            hint = "st.cast(value, dtype)" if strict else f"a value of dtype {dtype}"
            raise TypeError(f"{what}: cannot convert dtype {array.dtype} to {dtype} without losing "
                            f"information; pass {hint}")
    array = array.astype(dtype, copy=not strict)
    if array.ndim == 0:
        array = array[()]  # NumPy: a scalar; CuPy, which has none: the 0-d array itself
    return array if on_gpu else on_current_device(array)


def on_device_of(array, like):
    """``array`` on the device that holds ``like`` (a Variable keeps its device)."""
    if is_gpu_array(like):
        if is_gpu_array(array) and array.device.id == like.device.id:
            return array
        return to_device(array.get() if is_gpu_array(array) else array,
                         DeviceSpec("GPU", like.device.id))
    if is_gpu_array(array):
        host = array.get()
        return host[()] if host.ndim == 0 else host
    return array


def _default_dtype(array: np.ndarray) -> np.dtype:
    kind = array.dtype.kind
    if kind == "f":
        return array.dtype
    if kind in "iu":
        return array.dtype if array.dtype in (dtypes.int32, dtypes.int64) else dtypes.int64
    if kind == "b":
        return dtypes.bool
    raise TypeError(f"unsupported dtype {array.dtype}")


def constant(value, dtype=None, name: str | None = None) -> Tensor:
    """Create an immutable Tensor.

    Python floats become float64, Python ints int64 (NumPy's convention); ``dtype``
    converts. A constant is a plain number in ``.expr`` unless a tape watches it; then
    it becomes a symbol named ``name`` (default ``c1``, ``c2``, ...).

    Parameters
    ----------
    value : number, array-like, Tensor or Variable
        The value, copied. A Tensor with no ``dtype`` and no new ``name`` is returned as it is
        (as TensorFlow does); a Variable gives its current value.
    dtype : dtype, optional
        Converts ``value``; a conversion that loses information (float to int) raises.
    name : str, optional
        The constant's name: its symbol's name if a tape watches it, and its
        ``MatrixSymbol``'s in ``.matrix_expr``. Default: ``c1``, ``c2``, ... when watched.

    Returns
    -------
    Tensor

    Raises
    ------
    TypeError
        If ``value`` is not numeric (strings, objects) or ``dtype`` would lose information.

    Examples
    --------
    >>> import symtape as st
    >>> st.constant(0.5).expr
    1/2
    >>> st.constant([1, 2], dtype=st.float32)
    <st.Tensor: shape=(2,), dtype=float32, numpy=[1., 2.]>
    >>> st.constant(st.random.normal((2,), seed=0), name="noise").name
    'noise'
    """
    if isinstance(value, Variable):
        value = value._read()
    if isinstance(value, Tensor) and dtype is None:
        computed = value._prim is not None or value._source is not None
        if name is None or name == value._name or computed:
            return value  # as TensorFlow does; a computed value keeps its place in the graph
        return Tensor(value._value, name=name)  # a leaf constant under a new name (its symbol)
    return Tensor(to_array(value, None if dtype is None else dtypes.as_dtype(dtype),
                            what="st.constant"), name=name)


def convert_to_tensor(value, dtype=None) -> Tensor:
    """Return ``value`` as a Tensor: Tensors pass through, Variables are read.

    Parameters
    ----------
    value : Tensor, Variable, number or array-like
        A Tensor of the requested dtype passes through unchanged; a Variable gives its
        current value (its symbol in ``.expr``); anything else becomes ``st.constant(value,
        dtype)``.
    dtype : dtype, optional
        The dtype the result must have.

    Returns
    -------
    Tensor

    Raises
    ------
    TypeError
        If ``value`` is a Variable of another dtype (use ``st.cast``), or cannot be converted.

    Examples
    --------
    >>> import symtape as st
    >>> st.convert_to_tensor(st.Variable(2.0, name="z")).expr
    z
    """
    if isinstance(value, Tensor) and (dtype is None or value.dtype == dtype):
        return value
    if isinstance(value, Variable):
        if dtype is not None and value.dtype != dtypes.as_dtype(dtype):
            raise TypeError(f"Variable {value.name!r} has dtype {value.dtype}, expected {dtype}; "
                            f"use st.cast")
        return value._read()
    return constant(value, dtype)


def weak_constant(value, like: np.dtype, expr: sympy.Basic | None = None) -> Tensor:
    """A constant that takes the dtype of the operand it meets (Python numbers do)."""
    array = to_array(value, like, what="operand")
    tensor = Tensor(array, weak=True)
    tensor._sym = expr
    tensor._symbolic = expr is not None  # results keep lineage, so the exact form survives
    return tensor


def make_symbol(tensor: Tensor, name: str | None = None) -> Tensor:
    """Make a leaf Tensor a symbol of its own, in place (a watched constant, a traced
    argument): its closed form becomes its symbol, named after ``name`` if given (else its
    own name), and ops on it are recorded.

    Parameters
    ----------
    tensor : Tensor
        A leaf (no primitive); it is changed in place and returned.
    name : str, optional
        The symbol's name; default: the Tensor's ``name``.

    Examples
    --------
    >>> import symtape as st
    >>> a = make_symbol(st.constant(2.0), "a")
    >>> a.source is a, (a * 3).expr
    (True, 3*a)
    """
    tensor = _full_tensor(tensor)  # a lean leaf's _source and _symbolic are read-only
    tensor._source = tensor
    tensor._symbolic = True
    tensor._sym = None  # an exact number cached before: the symbol replaces it
    if name is not None:
        tensor._name = name
    return tensor


def swap_array(variable: Variable, array) -> None:
    """Put ``array`` in place of ``variable``'s value, unchecked: for arrays a compiled
    kernel made at the Variable's shape and dtype, and for undoing a trace's assignments
    (``Variable.assign`` validates a user's value, then swaps it in the same way).

    Parameters
    ----------
    variable : Variable
    array : numpy.ndarray or cupy.ndarray
        Of the Variable's shape and dtype, on its device (a NumPy scalar for shape ``()``).

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> v = st.Variable([1.0, 2.0])
    >>> swap_array(v, np.array([3.0, 4.0]))
    >>> v.numpy()
    array([3., 4.])
    """
    variable._value = array
    variable._read_cache = None  # the next read is a new snapshot


def arrays_of(tensors) -> list:
    """The ``array`` of each Tensor or Variable, in one call: a compiled function reads its
    Variables' values so on every call, where a property's call per Variable would cost a
    few percent of a call over a hundred of them.

    Examples
    --------
    >>> import symtape as st
    >>> arrays_of([st.Variable(1.0), st.constant([2.0])])
    [np.float64(1.0), array([2.])]
    """
    return [t._value for t in tensors]


# ---------------------------------------------------------------- evaluation and recording


def apply(prim: Primitive, inputs: tuple[Tensor, ...], params: dict = _EMPTY) -> Tensor:
    """Evaluate ``prim`` on Tensors and record the result where needed.

    The result keeps its lineage if any input is symbolic, and is recorded by every
    active tape that watches one of its inputs.

    Parameters
    ----------
    prim : Primitive
        From ``symtape.core.primitives.REGISTRY``.
    inputs : tuple of Tensor
        Converted and checked already (the ops do that); on one device, or host values
        meeting GPU ones, which are copied over.
    params : dict, optional
        The primitive's keyword parameters (``axis``, ``shape``, ...).

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import symtape as st
    >>> from symtape.core.primitives import REGISTRY
    >>> x = st.Variable(0.0, name="x")
    >>> apply(REGISTRY["sin"], (x.value(),)).expr
    sin(x)
    """
    values = [t._value for t in inputs]
    xp = array_module(*values) if "cupy" in sys.modules else np
    if xp is np:
        value = prim.numeric(np, *values, **params)
    else:
        with gpu_device_of(values):
            value = prim.numeric(xp, *on_device_with(xp, values), **params)
    for t in inputs:
        if t._symbolic:
            break
    else:
        if any(t._name is not None or t._prim is not None for t in inputs):
            # a constant computed from named ones (A.T, a vector's reshape) keeps where it came
            # from, for .matrix_expr; it stays a constant (not symbolic, never recorded)
            out = Tensor(value, prim, inputs, params)
            out._symbolic = False
            return out
        return Tensor(value)
    out = Tensor(value, prim, inputs, params)
    for tape in ACTIVE_TAPES.get():
        if tape._recording:
            tape._record(out, inputs)
    return out


def on_device_with(xp, values: list) -> list:
    """``values`` for an op of array module ``xp``: host arrays meeting GPU ones, and GPU
    arrays of another device, are copied to the current device, as TensorFlow copies
    inputs (NumPy scalars stay: CuPy takes them as they are).

    Examples
    --------
    >>> import numpy as np
    >>> on_device_with(np, [np.ones(2), 3.0])  # NumPy's ops take host values as they are
    [array([1., 1.]), 3.0]
    """
    if xp is np:
        return values
    current = xp.cuda.Device().id

    def placed(v):
        if isinstance(v, np.ndarray):  # a 0-d one as a NumPy scalar: CuPy refuses the array
            return xp.asarray(v) if v.ndim else v[()]
        return v.copy() if is_gpu_array(v) and v.device.id != current else v

    return [placed(v) for v in values]


def on_current_device(array):
    """A new host array on the current device (``st.device``), as new constants go.

    Examples
    --------
    >>> import numpy as np
    >>> on_current_device(np.ones(2))  # outside any st.device block: the CPU
    array([1., 1.])
    """
    device = CURRENT_DEVICE.get()
    return array if device is CPU else to_device(array, device)


def new_constant(array: np.ndarray) -> "Tensor":
    """A constant Tensor of a newly made host array (``st.zeros``, ``st.random.normal``, ...),
    on the current device, as TensorFlow places new values.

    Examples
    --------
    >>> import numpy as np
    >>> new_constant(np.zeros(())).numpy()
    array(0.)
    """
    return Tensor(on_current_device(array[()] if array.ndim == 0 else array))


def call_with_context(name: str, fn: Callable[[], Any], shapes: list[tuple]) -> Any:
    """Run ``fn``; turn NumPy's shape errors into one that names the op and every shape."""
    try:
        return fn()
    except ValueError as err:
        described = " and ".join(str(s) for s in shapes)
        raise ValueError(f"{name}: operands of shapes {described} are incompatible ({err}); "
                         "dimensions must match or be 1 to broadcast — reshape or transpose "
                         "one operand") from None
