"""Tracing: running a Python function once to capture what it computes as a graph.

A trace runs the function eagerly, on real values, with each argument replaced by a
*placeholder*: a Tensor that is its own symbolic source (like a watched constant), so every
op on it keeps its lineage. What the function computes is then the recorded DAG from the
placeholders (and the Variables it reads) to its outputs. While a trace is active:

- gradients are swept on Tensors, so they are part of the DAG too (:mod:`symtape.core.tape`);
- ``Variable.assign*`` records the new value's lineage; reading the Variable afterwards
  gives a fresh read that stands for that value (:class:`Trace` keeps the aliases);
- ``bool()`` of a traced Tensor raises: a Python ``if`` would freeze one branch into the
  compiled code (use ``st.where``).
"""

from __future__ import annotations


from typing import Callable

import numpy as np

from symtape.core.accumulate import toposort
from symtape.core.symbolic import symbolic_value
from symtape.core.tensor import ACTIVE_TRACE, Tensor, Variable, make_symbol

__all__ = ["Trace", "active", "placeholder", "replay"]


def active() -> "Trace | None":
    """The trace being recorded, if any.

    Examples
    --------
    >>> active() is None
    True
    """
    return ACTIVE_TRACE.get()


def placeholder(value, name: str, weak: bool = False) -> Tensor:
    """A traced argument: a Tensor that is its own source, named ``name`` in ``.expr``.

    Parameters
    ----------
    value : array
        The argument's value at the traced call (its shape and dtype are the signature's).
    name : str
        The symbol name (entries of arrays are ``name[i]``).
    weak : bool, default False
        A Python number's argument: it takes the dtype of the Tensors it meets.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import numpy as np
    >>> p = placeholder(np.array([1.0, 2.0]), "x")
    >>> (p * 2).expr
    [2*x[0], 2*x[1]]
    """
    return make_symbol(Tensor(value, weak=weak, name=name))


class Trace:
    """What one run of a traced function read and wrote.

    Attributes
    ----------
    assigned : dict
        ``id(variable) -> (variable, Tensor)``: the last value assigned to each Variable.
    aliases : dict
        ``id(read) -> Tensor``: reads made after an assignment stand for the assigned value.
    originals : dict
        ``id(variable) -> (variable, value)``: each assigned Variable's value before the trace.

    Examples
    --------
    >>> import symtape as st
    >>> v = st.Variable(1.0, name="v")
    >>> with Trace() as trace:
    ...     _ = v.assign_add(2.0)
    >>> [var.name for var, _ in trace.assigned.values()]
    ['v']
    """

    def __init__(self):
        self.assigned: dict[int, tuple[Variable, Tensor]] = {}
        self.aliases: dict[int, Tensor] = {}
        self.originals: dict[int, tuple] = {}
        self._token = None

    def __enter__(self) -> "Trace":
        self._token = ACTIVE_TRACE.set(self)
        return self

    def __exit__(self, *exc_info) -> None:
        ACTIVE_TRACE.reset(self._token)

    def assign(self, variable: Variable, new: Tensor, original) -> Tensor:
        """Record ``variable = new``; returns the read that stands for the new value."""
        self.originals.setdefault(id(variable), (variable, original))
        self.assigned[id(variable)] = (variable, new)
        # still the Variable's read for tapes (gradients w.r.t. it), but its closed form is
        # the assigned value's, in the trace's inputs, as the kernel computes it
        read = Tensor(new.array, source=variable, thunk=lambda: symbolic_value(new))
        self.aliases[id(read)] = new
        return read


def replay(arguments: list[Tensor], outputs: list[Tensor]) -> Callable[[list], list] | None:
    """``outputs`` computed again from new host values of the traced ``arguments``: the
    recorded ops run once more, in order, with the numeric forwards the trace ran (so the
    results are what a trace at those values computes). Nothing is generated or compiled,
    which for a few calls costs less than generating a kernel; each call then costs a
    little more than a kernel's. None where the graph reads Variables (a kernel reads
    those at call time).

    Parameters
    ----------
    arguments : list of Tensor
        The trace's placeholders, in the order the replay takes their new values.
    outputs : list of Tensor
        The traced results to compute again.

    Returns
    -------
    callable or None
        ``run(values)`` -> the outputs' arrays at the host arrays ``values`` (one per
        argument); None where the graph reads Variables.

    Examples
    --------
    >>> import numpy as np, symtape as st
    >>> with Trace():
    ...     x = placeholder(np.array([1.0, 2.0]), "x")
    ...     y = st.reduce_sum(st.exp(x) * 2.0)
    >>> run = replay([x], [y])
    >>> bool(np.isclose(run([np.zeros(2)])[0], 4.0))
    True
    """
    slots = {id(a): i for i, a in enumerate(arguments)}

    def inputs(node):  # the recorded ops that depend on the arguments; the rest is constant
        return node.inputs if node.primitive is not None and node.symbolic else ()

    constants, steps = [], []
    for node in toposort(outputs, inputs):
        if id(node) in slots:
            continue
        slot = slots[id(node)] = len(slots)
        if node.primitive is not None and node.symbolic:
            steps.append((node.primitive.numeric, [slots[id(x)] for x in node.inputs],
                          node.params, slot))
        elif isinstance(node.source, Variable):
            return None
        else:
            constants.append((slot, node.array))
    results = [slots[id(t)] for t in outputs]
    size = len(slots)

    def run(values: list) -> list:
        register = list(values) + [None] * (size - len(values))
        for slot, value in constants:
            register[slot] = value
        for numeric, taken, params, slot in steps:
            register[slot] = numeric(np, *[register[i] for i in taken], **params)
        return [register[i] for i in results]

    return run
