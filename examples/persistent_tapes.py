"""Controlling what a tape keeps: ``persistent``, ``stop_recording`` and ``reset``.

A tape releases what it recorded after one ``gradient`` call unless it is persistent;
reusing a non-persistent tape raises a ``RuntimeError`` that says what to do.
``tape.stop_recording()`` leaves some work off the tape (it is then a constant to the
gradient), and ``tape.reset()`` forgets everything recorded so far. As in TensorFlow's
"Introduction to gradients" and "Advanced automatic differentiation" guides.

Run: ``python examples/persistent_tapes.py`` (``--small`` is accepted; the problems here
are already small).
"""

from __future__ import annotations

import argparse

import symtape as st


def persistent_tape():
    """y = x*x, z = y*y at x = 3, two gradients from one persistent tape.

    Returns ``(dz_dx, dy_dx)``: 108 (4*x**3) and 6 (2*x).
    """
    x = st.constant(3.0, name="x")
    with st.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    return tape.gradient(z, x), tape.gradient(y, x)


def persistent_tape_on_a_vector():
    """The same on x = [1, 3]: dz/dx = 4*x**3 = [4, 108], dy/dx = 2*x = [2, 6]."""
    x = st.constant([1.0, 3.0], name="x")
    with st.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    return tape.gradient(z, x), tape.gradient(y, x)


def reused_tape_error() -> tuple:
    """A non-persistent tape answers once. Returns ``(first gradient, the error's message)``."""
    x = st.constant(3.0, name="x")
    with st.GradientTape() as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    first = tape.gradient(z, x)
    try:
        tape.gradient(y, x)
    except RuntimeError as error:
        return first, str(error)
    raise AssertionError("a second gradient call on a non-persistent tape should raise")


def stop_recording():
    """What runs inside ``tape.stop_recording()`` is not recorded.

    x = 2: y = x*x is recorded, z = x*x*x is not, so d(y + z)/dx = 2*x = 4 (z counts as a
    constant) and dz/dx is None. Returns ``(d(y + z)/dx, dz/dx)``.
    """
    x = st.Variable(2.0, name="x")
    with st.GradientTape(persistent=True) as tape:
        y = x * x
        with tape.stop_recording():
            z = x * x * x
        total = y + z
    return tape.gradient(total, x), tape.gradient(z, x)


def reset():
    """``tape.reset()`` forgets what was recorded: only what follows it is differentiated.

    x = 2: loss = x**3, reset, loss += 5*x: the gradient is 5, not 3*x**2 + 5 = 17.
    Returns ``(with reset, without reset)``.
    """
    x = st.Variable(2.0, name="x")
    with st.GradientTape() as tape:
        loss = x**3
        tape.reset()
        loss += 5 * x
    with_reset = tape.gradient(loss, x)

    with st.GradientTape() as tape:
        loss = x**3
        loss += 5 * x
    return with_reset, tape.gradient(loss, x)


def _show(label: str, gradient) -> None:
    if gradient is None:
        print(f"{label}: None")
    else:
        print(f"{label}: {gradient.numpy()}    closed form: {gradient.expr}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="accepted for uniformity; the problems are already small")
    parser.parse_args(argv)

    dz_dx, dy_dx = persistent_tape()
    _show("persistent tape, x = 3: dz/dx", dz_dx)
    _show("                        dy/dx", dy_dx)
    dz_dx, dy_dx = persistent_tape_on_a_vector()
    _show("persistent tape, x = [1, 3]: dz/dx", dz_dx)
    _show("                             dy/dx", dy_dx)

    first, message = reused_tape_error()
    _show("non-persistent tape, first call: dz/dx", first)
    print(f"second call raises RuntimeError: {message}")

    total, z_only = stop_recording()
    _show("stop_recording: d(y + z)/dx", total)
    _show("stop_recording: dz/dx", z_only)

    with_reset, without = reset()
    _show("reset: d(x**3 + 5x)/dx, x**3 recorded before the reset", with_reset)
    _show("no reset", without)


if __name__ == "__main__":
    main()
