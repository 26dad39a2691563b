"""``GradientTape``: TensorFlow's tape, with exact closed forms of every gradient.

A tape keeps the results of ops whose inputs it watches. ``gradient`` plans a reverse
sweep over those records (:mod:`symtape.core.accumulate`) and runs it numerically — no SymPy —
returning Tensors whose ``.expr`` runs the same sweep symbolically on first access. When
another tape is recording (nested tapes, ``hessian``), the sweep runs on Tensors instead,
so the gradient is itself recorded and can be differentiated again.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from symtape.core import accumulate, matrix, nest
from symtape.arrays import dtypes
from symtape.core.algebra import SYMBOLIC, TENSOR, numeric_algebra
from symtape.arrays.backends import array_module, gpu_device_of
from symtape.core.symbolic import AutoName, check_unambiguous, factored
from symtape.core.tensor import (ACTIVE_TAPES, ACTIVE_TRACE, Tensor, Variable, convert_to_tensor,
                                  make_symbol)

__all__ = ["GradientTape", "UnconnectedGradients"]

_constant_names = itertools.count(1)


class UnconnectedGradients(enum.Enum):
    """What ``gradient`` returns for a source the target does not depend on.

    Examples
    --------
    >>> UnconnectedGradients("zero")
    <UnconnectedGradients.ZERO: 'zero'>
    """

    NONE = "none"
    ZERO = "zero"


class _TapeClass(type):
    """Makes ``with st.GradientTape as tape:`` (no parentheses) fail with the fix."""

    def __enter__(cls):
        raise TypeError("`with st.GradientTape as tape:` uses the class itself; write "
                        "`with st.GradientTape() as tape:` (with parentheses)")

    def __exit__(cls, *exc_info):
        return False


class GradientTape(metaclass=_TapeClass):
    """Record operations to differentiate them, exactly and numerically.

    Parameters
    ----------
    persistent : bool, default False
        Allow more than one ``gradient``/``jacobian``/``hessian`` call.
    watch_accessed_variables : bool, default True
        Watch trainable Variables read inside the ``with`` block automatically.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(0.0, name="x")
    >>> with st.GradientTape() as tape:
    ...     y = x**2 - 2*x + 1
    >>> dy_dx = tape.gradient(y, x)
    >>> dy_dx.numpy()
    array(-2.)
    >>> dy_dx.expr
    2*x - 2

    Nested tapes give exact higher derivatives:

    >>> with st.GradientTape() as outer:
    ...     with st.GradientTape() as inner:
    ...         y = x**3
    ...     dy = inner.gradient(y, x)
    >>> outer.gradient(dy, x).expr
    6*x
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self._persistent = bool(persistent)
        self._watch_accessed = bool(watch_accessed_variables)
        self._recording = False
        self._recorded: dict[int, Tensor] = {}  # results of ops on watched inputs, by id
        self._watched: dict[int, Any] = {}  # watched Variables and Tensors, by id
        self._used = False

    # ------------------------------------------------------------ context
    def __enter__(self) -> "GradientTape":
        if any(t is self for t in ACTIVE_TAPES.get()):
            raise ValueError("this GradientTape is already recording; a tape cannot be "
                             "re-entered while it is active (create a second "
                             "st.GradientTape() to nest one)")
        ACTIVE_TAPES.set(ACTIVE_TAPES.get() + (self,))
        self._recording = True
        return self

    def __exit__(self, *exc_info) -> None:
        # no comprehension: its frame would be one more place an interrupt could land
        active = ACTIVE_TAPES.get()
        if self in active:
            at = active.index(self)
            ACTIVE_TAPES.set(active[:at] + active[at + 1:])
        self._recording = False

    # ------------------------------------------------------------ recording
    def _record(self, out: Tensor, inputs: Sequence[Tensor]) -> None:
        recorded, watched = self._recorded, self._watched
        for t in inputs:
            key = id(t)
            source = t.source
            if key in recorded or key in watched or (source is not None and id(source) in watched):
                recorded[id(out)] = out
                return

    def _watch_variable(self, variable: Variable) -> None:
        if id(variable) not in self._watched:
            self._watched[id(variable)] = variable

    def watch(self, tensor) -> None:
        """Watch Tensors or Variables (or nested lists of them) explicitly.

        A watched constant becomes a symbol in ``.expr``, named after its ``name``.

        Examples
        --------
        >>> import symtape as st
        >>> a = st.constant(2.0, name="a")
        >>> with st.GradientTape() as tape:
        ...     tape.watch(a)
        ...     y = a ** 3
        >>> tape.gradient(y, a).expr
        3*a**2
        """
        items = nest.flatten(tensor)[0]
        for item in items:  # all checked before any is watched
            if not isinstance(item, (Tensor, Variable)):
                raise ValueError(f"watch: expected Tensors or Variables, got {_kind(item)}; wrap "
                                 "values with st.constant(...) first")
        for item in items:
            if isinstance(item, Variable):
                self._watch_variable(item)
                continue
            if not dtypes.is_floating(item.dtype):
                warnings.warn(f"watch: the watched tensor has dtype {item.dtype}; only float "
                              "tensors get gradients", stacklevel=2)
            if not item.symbolic:  # a constant becomes a symbol of its own
                make_symbol(item, item.name or AutoName(f"c{next(_constant_names)}"))
            self._watched[id(item)] = item

    def watched_variables(self) -> tuple[Variable, ...]:
        """The Variables this tape watches, in order of construction (as TensorFlow's).

        Examples
        --------
        >>> import symtape as st
        >>> x, y = st.Variable(1.0, name="x"), st.Variable(2.0, name="y")
        >>> with st.GradientTape() as tape:
        ...     z = y * x
        >>> [v.name for v in tape.watched_variables()]
        ['x', 'y']
        """
        watched = [v for v in self._watched.values() if isinstance(v, Variable)]
        return tuple(sorted(watched, key=lambda v: v._serial))

    @contextlib.contextmanager
    def stop_recording(self):
        """Temporarily stop recording inside the tape's ``with`` block.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(2.0, name="x")
        >>> with st.GradientTape() as tape:
        ...     y = x * x
        ...     with tape.stop_recording():
        ...         z = x * x
        >>> tape.gradient(z, x) is None
        True
        """
        if not self._recording:
            raise RuntimeError("stop_recording: this tape is not recording; call it inside the "
                               "tape's `with` block")
        self._recording = False
        try:
            yield
        finally:
            self._recording = True

    def reset(self) -> None:
        """Forget everything recorded and watched, as if the tape were new.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(2.0, name="x")
        >>> with st.GradientTape(persistent=True) as tape:
        ...     y = x * x
        ...     tape.reset()
        ...     z = x * 3
        >>> tape.gradient(y, x) is None, float(tape.gradient(z, x))
        (True, 3.0)
        """
        self._recorded = {}
        self._watched = {}
        self._used = False

    # ------------------------------------------------------------ differentiation
    def gradient(self, target, sources, output_gradients=None,
                 unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE):
        """The gradient of ``target`` with respect to ``sources``, mirroring their structure.

        A non-scalar ``target``, or a list of targets, is summed first (as in TensorFlow);
        ``output_gradients`` weights each target entry instead of 1 (and, watched by an outer
        tape, the gradient can be differentiated w.r.t. them).

        Parameters
        ----------
        target : Tensor, Variable, or a nested list, tuple or dict of them
            What to differentiate, computed inside the tape's ``with`` block.
        sources : Tensor, Variable, or a nested list, tuple or dict of them
            Variables, or Tensors the tape watches (``tape.watch``); the result has their structure.
        output_gradients : Tensor, NumPy array, or a structure of them like ``target``, optional
            Weights of the target entries (the vector of a vector-Jacobian product), each of
            its target's shape and converted to its dtype; a None entry weighs 1. A list is a
            structure: for one target pass an array or Tensor.
        unconnected_gradients : {'none', 'zero'} or UnconnectedGradients, default 'none'
            What a source the target does not depend on gets: None, or zeros of its shape.

        Returns
        -------
        Tensor, None, or the structure of ``sources`` holding them
            Each gradient has its source's shape: ``.numpy()`` its value, ``.expr`` its closed
            form. A source of integer dtype gets None, with a warning.

        Raises
        ------
        RuntimeError
            If a non-persistent tape has already computed a gradient, Jacobian or Hessian.
        TypeError
            If the target or a source is not a Tensor or Variable.
        ValueError
            If ``output_gradients`` does not match the targets in number or shapes, or
            ``unconnected_gradients`` is neither 'none' nor 'zero'.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(3.0, name="x")
        >>> with st.GradientTape() as tape:
        ...     ys = [2 * x, x**2 + 2, x**2 + 2*x]
        >>> float(tape.gradient(ys, x))
        16.0
        """
        self._begin_use("gradient")
        policy = _unconnected_policy(unconnected_gradients)
        targets = _targets(target)
        flat, rebuild = nest.flatten(sources)
        srcs = _sources(flat)
        seeds = _output_gradients(output_gradients, targets)
        seed_row = lambda A: [A.seed(t.shape, t.dtype, tensor=s)  # noqa: E731
                              for t, s in zip(targets, seeds)]
        results = self._differentiate(
            targets, srcs, [seed_row], lambda A, rows, src: rows[0],
            also_read=[s for s in seeds if s is not None], matrix_form=("gradient", seed_row))
        return rebuild(_finish(results, srcs, policy, lambda src: src.shape))

    def jacobian(self, target, sources,
                 unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE,
                 parallel_iterations=None, experimental_use_pfor: bool = True):
        """The Jacobian of ``target``: shape ``target.shape + source.shape`` per source.

        One with no entries (an empty target or source) is an empty array, as in TensorFlow.

        Parameters
        ----------
        target : Tensor or Variable
            One Tensor (join several with ``st.stack``).
        sources : Tensor, Variable, or a nested list, tuple or dict of them
            The result has their structure.
        unconnected_gradients : {'none', 'zero'} or UnconnectedGradients, default 'none'
            What a source the target does not depend on gets: None, or zeros of its shape.
        parallel_iterations, experimental_use_pfor
            Accepted for TensorFlow compatibility and ignored: the rows come from one planned
            sweep each.

        Returns
        -------
        Tensor, None, or the structure of ``sources`` holding them

        Raises
        ------
        RuntimeError
            If a non-persistent tape has already computed a gradient, Jacobian or Hessian.
        TypeError
            If the target or a source is not a Tensor or Variable, or ``target`` is a list or
            tuple.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([1.0, 2.0], name="x")
        >>> with st.GradientTape() as tape:
        ...     y = x * x
        >>> tape.jacobian(y, x).expr
        [[2*x[0], 0], [0, 2*x[1]]]
        """
        self._begin_use("jacobian")
        policy = _unconnected_policy(unconnected_gradients)
        (tgt,) = _targets(target, single=True)
        flat, rebuild = nest.flatten(sources)
        srcs = _sources(flat)
        size = int(np.prod(tgt.shape, dtype=np.int64))
        rows = [functools.partial(_one_hot_seed, tgt, k) for k in range(size)]

        def assemble(A, values, src):
            values = [v if v is not None else A.zeros(src.shape, src.dtype) for v in values]
            return A.reshape(A.stack(values), shape=tgt.shape + src.shape)

        results = self._differentiate([tgt], srcs, rows, assemble, matrix_form=("jacobian",))
        shape_of = lambda src: tgt.shape + src.shape  # noqa: E731
        return rebuild(_empty_if_no_entries(_finish(results, srcs, policy, shape_of), srcs,
                                            shape_of))

    def batch_jacobian(self, target, source,
                       unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE,
                       parallel_iterations=None, experimental_use_pfor: bool = True):
        """Per-example Jacobians: ``target[i]`` w.r.t. ``source[i]``, shape ``(B,) + ...``.

        Assumes example ``i`` of the target depends only on example ``i`` of the source. Both
        need rank 2 at least (a batch axis, then the example's). As in TensorFlow, a target
        that does not depend on the source gives zeros of the target's dtype (not ``None``).

        Parameters
        ----------
        target : Tensor or Variable
            Shape ``(B,) + target_inner``, rank 2 or more.
        source : Tensor or Variable
            Shape ``(B,) + source_inner``, rank 2 or more, with the target's batch size ``B``.
        unconnected_gradients : {'none', 'zero'} or UnconnectedGradients, default 'none'
            Checked, but an unconnected source gives zeros either way (as TensorFlow's does).
        parallel_iterations, experimental_use_pfor
            Accepted for TensorFlow compatibility and ignored: the rows come from one planned
            sweep each.

        Returns
        -------
        Tensor
            Shape ``(B,) + target_inner + source_inner``.

        Raises
        ------
        ValueError
            If a shape has rank below 2 or the batch sizes differ.
        RuntimeError
            If a non-persistent tape has already computed a gradient, Jacobian or Hessian.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([[1.0, 2.0], [3.0, 4.0]], name="x")
        >>> with st.GradientTape() as tape:
        ...     y = x ** 2
        >>> tape.batch_jacobian(y, x).numpy()[1]
        array([[6., 0.],
               [0., 8.]])
        """
        policy = _unconnected_policy(unconnected_gradients)
        (tgt,) = _targets(target, single=True)
        (src,) = _sources([source])
        for label, shape in (("target", tgt.shape), ("source", src.shape)):
            if len(shape) < 2:
                raise ValueError(f"batch_jacobian: the {label}'s shape {shape} must have rank at "
                                 "least 2 (a batch axis, then each example's axes); for one "
                                 "example use tape.jacobian")
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(f"batch_jacobian: target {tgt.shape} and source {src.shape} need the "
                             "same leading (batch) dimension")
        self._begin_use("batch_jacobian")
        inner = tgt.shape[1:]
        size = int(np.prod(inner, dtype=np.int64))
        rows = [functools.partial(_batch_seed, tgt, k) for k in range(size)]

        def assemble(A, values, s):
            values = [v if v is not None else A.zeros(s.shape, s.dtype) for v in values]
            return A.reshape(A.stack(values, axis=1), shape=s.shape[:1] + inner + s.shape[1:])

        (result,) = self._differentiate([tgt], [src], rows, assemble)
        shape = src.shape[:1] + inner + src.shape[1:]
        (result,) = _finish([result], [src], policy, lambda s: shape)
        # unconnected: zeros of the target's dtype whatever the policy, as TensorFlow keeps
        return result if result is not None else Tensor(np.zeros(shape, tgt.dtype))

    def hessian(self, target, sources,
                unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE):
        """The exact Hessian of a scalar ``target`` (non-scalar targets are summed).

        One source gives a Tensor of shape ``source.shape * 2``; a list of sources gives
        the nested list of blocks ``H[i][j]`` (``d2 target / d source_i d source_j``).

        Parameters
        ----------
        target : Tensor, Variable, or a nested structure of them
            Summed to a scalar first.
        sources : Tensor, Variable, or a list or tuple of them
        unconnected_gradients : {'none', 'zero'} or UnconnectedGradients, default 'none'
            What a source the target does not depend on gets: None, or zeros of its shape.

        Returns
        -------
        Tensor, None, or a list of lists of them
            For one source, ``d2 target / d source2`` of shape ``source.shape * 2``; for a list,
            the blocks ``H[i][j]``.

        Raises
        ------
        RuntimeError
            If a non-persistent tape has already computed a gradient, Jacobian or Hessian.
        TypeError
            If the target or a source is not a Tensor or Variable.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable([1.0, 2.0], name="x")
        >>> with st.GradientTape() as tape:
        ...     f = x[0] ** 2 * x[1]
        >>> tape.hessian(f, x).expr
        [[2*x[1], 2*x[0]], [2*x[0], 0]]
        """
        self._begin_use("hessian")
        policy = _unconnected_policy(unconnected_gradients)
        targets = _targets(target)
        single = not isinstance(sources, (list, tuple))
        srcs = _sources([sources] if single else list(sources))
        inner = GradientTape(persistent=True, watch_accessed_variables=False)
        inner._recorded = dict(self._recorded)  # the first sweep's inputs are these records
        inner._watched = dict(self._watched)
        with inner:  # record the gradient itself, so it can be differentiated again
            grads = self._differentiate(
                targets, srcs, [lambda A: [A.seed(t.shape, t.dtype) for t in targets]],
                lambda A, rows, src: rows[0])
        blocks = [[inner.jacobian(g, s, unconnected_gradients=policy) if g is not None else
                   _finish([None], [s], policy, lambda s2, s1=s1: s1.shape + s2.shape)[0]
                   for s in srcs] for g, s1 in zip(grads, srcs)]
        return blocks[0][0] if single else blocks

    # ------------------------------------------------------------ machinery
    def _begin_use(self, method: str) -> None:
        if self._used and not self._persistent:
            raise RuntimeError(
                f"GradientTape.{method}: a non-persistent GradientTape can be used for only one "
                "gradient/jacobian/hessian call, and it has been used; create it with "
                "st.GradientTape(persistent=True) to compute several")
        self._used = True

    def _differentiate(self, targets: list[Tensor], sources: list, seed_rows: list[Callable],
                       assemble: Callable, also_read: Sequence[Tensor] = (),
                       matrix_form: tuple = (None,)) -> list[Tensor | None]:
        """Run one sweep per seed row, and assemble each source's rows into a result.

        Numerically when no other tape records these nodes or ``also_read`` (Tensors the
        seeds read: output gradients), the closed form then coming lazily from a symbolic
        sweep; on Tensors otherwise, so the result is recorded.
        """
        # only what this tape watches (or recorded) is differentiable, as in TensorFlow
        wanted = {id(s) for s in sources if id(s) in self._watched or id(s) in self._recorded}
        p = accumulate.plan(targets, wanted, self._recorded)
        if not self._persistent:
            self._recorded = {}  # a non-persistent tape is done: release what it held

        def run(A) -> list:
            swept = [accumulate.sweep(p, seeds(A), A) for seeds in seed_rows]
            out = []
            for src in sources:
                rows = [cts.get(id(src)) for cts in swept]
                out.append(None if all(r is None for r in rows) else assemble(A, rows, src))
            return out

        if _recorded_elsewhere(p, also_read) or ACTIVE_TRACE.get() is not None:
            return run(TENSOR)  # recorded: it can be differentiated again, or compiled
        target_values = [t.array for t in targets]
        with gpu_device_of(target_values):  # the sweep runs where the targets live
            values = run(numeric_algebra(array_module(*target_values)))
        closed_forms = _Once(lambda: _factored(run, SYMBOLIC, targets))
        matrix_forms = matrix.DerivedForms(p, sources, *matrix_form)  # .matrix_expr, when asked
        return [None if v is None else Tensor(_owned(v), thunk=matrix_forms.thunk(
                    functools.partial(closed_forms.item, i), i)) for i, v in enumerate(values)]


def _factored(run: Callable, algebra, targets: list[Tensor]):
    with factored():
        forms = run(algebra)
    check_unambiguous(targets)  # the closed forms are in the targets' symbols
    return forms


class _Once:
    """Computes a list once, on first use (the symbolic sweep of a gradient call)."""

    def __init__(self, compute: Callable[[], list]):
        self._compute = compute
        self._items: list | None = None

    def item(self, index: int):
        if self._items is None:
            self._items = self._compute()
            self._compute = None  # drop the plan: the forward graph may be large
        return self._items[index]


def _recorded_elsewhere(p: accumulate.Plan, also_read: Sequence[Tensor] = ()) -> bool:
    """Whether an active, recording tape watches anything this sweep reads: the plan's nodes
    and leaves, and ``also_read``."""
    leaves = list(p.leaves.items()) + [(id(t), t) for t in also_read]
    for tape in ACTIVE_TAPES.get():
        if not tape._recording:
            continue
        recorded, watched = tape._recorded, tape._watched
        if any(id(node) in recorded for node in p.order):
            return True
        for key, leaf in leaves:
            if key in recorded or key in watched or accumulate.source_key(leaf) in watched:
                return True
    return False


def _owned(value):
    """A gradient value the caller may keep: no read-only broadcast views."""
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return value.copy()
    return value


def _one_hot_seed(target: Tensor, index: int, A):
    return [A.seed(target.shape, target.dtype, index=index)]


def _batch_seed(target: Tensor, index: int, A):
    """Ones at inner entry ``index`` of every example: one row of every batch Jacobian."""
    inner = target.shape[1:]
    one_hot = A.seed(inner, target.dtype, index=index)
    return [A.broadcast_to(one_hot, shape=target.shape)]


def _unconnected_policy(value) -> UnconnectedGradients:
    try:
        return UnconnectedGradients(value.value if isinstance(value, UnconnectedGradients) else value)
    except ValueError:
        raise ValueError(f"unconnected_gradients must be 'none' or 'zero' "
                         f"(st.UnconnectedGradients.NONE / .ZERO), got {value!r}") from None


def _targets(target, single: bool = False) -> list[Tensor]:
    flat = [target] if single else nest.flatten(target)[0]
    if single and isinstance(target, (list, tuple)):
        raise TypeError("jacobian: the target must be a single Tensor; use st.stack to join several")
    out = []
    for t in flat:
        if not isinstance(t, (Tensor, Variable)):
            raise TypeError(f"the target must be Tensors or Variables, got {type(t).__name__}; "
                            "compute it from Variables inside the tape")
        out.append(convert_to_tensor(t))
    return out


def _sources(flat: list) -> list:
    for s in flat:
        if not isinstance(s, (Tensor, Variable)):
            raise TypeError(f"sources must be Variables or Tensors, got {type(s).__name__}; make "
                            "it an st.Variable, or watch an st.constant with tape.watch")
    return flat


def _output_gradients(output_gradients, targets: list[Tensor]) -> list[Tensor | None]:
    if output_gradients is None:
        return [None] * len(targets)
    flat = nest.flatten(output_gradients)[0]
    if len(flat) != len(targets):
        raise ValueError(f"output_gradients has {len(flat)} entries for {len(targets)} targets")
    out = []
    for g, t in zip(flat, targets):
        if g is None:
            out.append(None)
            continue
        g = convert_to_tensor(g, t.dtype) if isinstance(g, (Tensor, Variable)) else \
            convert_to_tensor(np.asarray(g, dtype=t.dtype))
        if g.shape != t.shape:
            raise ValueError(f"output_gradients: shape {g.shape} does not match the target's "
                             f"shape {t.shape}")
        out.append(g)
    return out


def _finish(results: list, sources: list, policy: UnconnectedGradients,
            zero_shape: Callable) -> list:
    """Apply the unconnected policy; integer sources get None with a warning."""
    out = []
    for result, src in zip(results, sources):
        if not dtypes.is_floating(src.dtype):
            warnings.warn(f"source {_describe(src)} has dtype {src.dtype}: integer sources get no "
                          "gradient (None); make it a float Variable to differentiate it",
                          stacklevel=3)
            out.append(None)
        elif result is None and policy is UnconnectedGradients.ZERO:
            out.append(Tensor(np.zeros(zero_shape(src), src.dtype)[()]))
        else:
            out.append(result)
    return out


def _empty_if_no_entries(results: list, sources: list, shape_of: Callable) -> list:
    """A Jacobian with no entries is an empty array, never None (as in TensorFlow)."""
    return [Tensor(np.zeros(shape_of(s), s.dtype)) if r is None and dtypes.is_floating(s.dtype)
            and 0 in shape_of(s) else r for r, s in zip(results, sources)]


def _kind(item) -> str:
    return "None" if item is None else f"a {type(item).__name__} ({item!r})"


def _describe(src) -> str:
    return f"{src.name!r}" if getattr(src, "name", None) else f"of shape {src.shape}"
