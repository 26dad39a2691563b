"""Gradients with a GradientTape, as TensorFlow's "Introduction to gradients" teaches.

Each function below shows one behaviour of ``st.GradientTape`` and returns what it
computed: gradients of a scalar and of a small dense layer (with respect to a list and a
dict of sources), which values the tape watches (``tape.watch``,
``watch_accessed_variables=False``, non-trainable Variables, constants), what unconnected
sources give, and gradients with respect to intermediate results. Every gradient is a
Tensor: ``.numpy()`` is its value, ``.expr`` its exact closed form.

Run: ``python examples/gradients_and_watch.py`` (``--small`` is accepted; the problems
here are already small).
"""

from __future__ import annotations

import argparse

import numpy as np

import symtape as st


def scalar_gradient():
    """dy/dx of y = x**2 at x = 3: 6, with closed form 2*x."""
    x = st.Variable(3.0, name="x")
    with st.GradientTape() as tape:
        y = x**2
    return tape.gradient(y, x)


def dense_layer():
    """A dense layer y = x @ w + b and loss = reduce_mean(y**2): one gradient per source.

    Returns ``(w, b, x, loss, [dl_dw, dl_db], {"w": ..., "b": ...})``.
    """
    # a fixed seed: the same weights on every run, so the printed numbers are stable
    w = st.Variable(st.random.normal((3, 2), seed=1), name="w")
    b = st.Variable(st.zeros(2, dtype=st.float64), name="b")
    x = st.constant([[1.0, 2.0, 3.0]])
    # persistent: the same loss is differentiated twice, with a list and with a dict
    with st.GradientTape(persistent=True) as tape:
        y = x @ w + b
        loss = st.reduce_mean(y**2)
    as_list = tape.gradient(loss, [w, b])
    as_dict = tape.gradient(loss, {"w": w, "b": b})  # the result mirrors the sources
    return w, b, x, loss, as_list, as_dict


def watched_constant():
    """A constant is not watched unless asked: ``tape.watch(x)`` makes it a source.

    Returns ``(watched, unwatched)``: 6 (closed form 2*x) and None.
    """
    x = st.constant(3.0, name="x")
    with st.GradientTape() as tape:
        tape.watch(x)
        y = x**2
    watched = tape.gradient(y, x)

    c = st.constant(3.0, name="c")
    with st.GradientTape() as tape:
        y = c**2
    return watched, tape.gradient(y, c)


def what_is_watched():
    """TensorFlow's four sources: only the trainable Variable gets a gradient.

    Returns ``(gradients, names of the watched variables)``: ``[6, None, None, None]``.
    """
    x0 = st.Variable(3.0, name="x0")  # trainable: watched automatically
    x1 = st.Variable(3.0, name="x1", trainable=False)  # not trainable: not watched
    x2 = st.Variable(2.0, name="x2") + 1.0  # a Variable plus a number is a Tensor
    x3 = st.constant(3.0, name="x3")  # a constant: not watched
    with st.GradientTape() as tape:
        y = x0**2 + x1**2 + x2**2
    gradients = tape.gradient(y, [x0, x1, x2, x3])
    return gradients, [v.name for v in tape.watched_variables()]


def watch_only_what_you_ask():
    """``watch_accessed_variables=False``: only ``tape.watch``-ed Variables get gradients.

    Returns ``{"a": cos(a) at 2, "b": None}``.
    """
    a = st.Variable(2.0, name="a")
    b = st.Variable(3.0, name="b")
    with st.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(a)
        y = st.sin(a) + st.softplus(b)
    return tape.gradient(y, {"a": a, "b": b})


def unconnected():
    """A source the target does not depend on: None, or zeros with ``'zero'``.

    Returns ``(default, zero)``.
    """
    x = st.Variable([2.0, 2.0], name="x")
    y = st.Variable(3.0, name="y")
    with st.GradientTape(persistent=True) as tape:
        z = y**2
    default = tape.gradient(z, x)
    zero = tape.gradient(z, x, unconnected_gradients=st.UnconnectedGradients.ZERO)
    return default, zero


def intermediate_result():
    """dz/dy for y = x*x, z = y*y at x = 3: 2*y = 18, written in terms of the source x."""
    x = st.constant(3.0, name="x")
    with st.GradientTape() as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    return tape.gradient(z, y)


def several_targets():
    """A dict (or list) of targets is summed: d(x**2 + 1/x)/dx at 2 is 3.75."""
    x = st.Variable(2.0, name="x")
    with st.GradientTape() as tape:
        targets = {"y0": x**2, "y1": 1 / x}
    return tape.gradient(targets, x)


def _show(label: str, gradient) -> None:
    """One line: the value, then the closed form (or None)."""
    if gradient is None:
        print(f"{label}: None")
    else:
        print(f"{label}: {np.round(gradient.numpy(), 6)}    closed form: {gradient.expr}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="accepted for uniformity; the problems are already small")
    parser.parse_args(argv)

    _show("dy/dx of x**2 at x = 3", scalar_gradient())

    w, b, x, loss, (dl_dw, dl_db), as_dict = dense_layer()
    print(f"dense layer loss = {loss.numpy():.6f}    closed form: {loss.expr}")
    _show("dloss/db", dl_db)
    _show("dloss/dw", dl_dw)
    print(f"the same gradients as a dict: {sorted(as_dict)}")

    watched, unwatched = watched_constant()
    _show("watched constant, d(x**2)/dx", watched)
    _show("unwatched constant", unwatched)

    gradients, names = what_is_watched()
    print(f"watched variables: {names}")
    for label, g in zip(["trainable x0", "non-trainable x1", "tensor x2", "constant x3"],
                        gradients):
        _show(f"  {label}", g)

    for name, g in watch_only_what_you_ask().items():
        _show(f"watch_accessed_variables=False, d/d{name}", g)

    default, zero = unconnected()
    _show("unconnected, default", default)
    _show("unconnected, 'zero'", zero)

    _show("dz/dy for y = x*x, z = y*y at x = 3", intermediate_result())
    _show("two targets, d(x**2 + 1/x)/dx at x = 2", several_targets())


if __name__ == "__main__":
    main()
