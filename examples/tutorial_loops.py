"""The optimizer loops of the TensorFlow tutorials, with symtape.

Run: ``python examples/tutorial_loops.py`` (``--small``: 100 steps instead of 1000). Each
loop prints where it ends; the same loops run eagerly and compiled (``@st.function``), with
the same results.
"""

from __future__ import annotations

import argparse

import numpy as np

import symtape as st


def sgd_on_a_parabola(dtype=st.float64, steps: int = 1000) -> float:
    """SGD(0.01), ``steps`` steps from 0 on x**2 - 2x + 1: x_k = 1 - 0.98**k -> 1."""
    x = st.Variable(0.0, dtype=dtype, name="x")
    opt = st.optimizers.SGD(learning_rate=0.01)
    for _ in range(steps):
        opt.minimize(lambda: x**2 - 2 * x + 1, [x])
    return float(x.numpy())


def adam_on_a_parabola(steps: int = 1000) -> float:
    """Adam(0.1), ``steps`` steps from 0 on w**2 - 10w + 25: w -> 5."""
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for _ in range(steps):
        opt.minimize(lambda: w**2 - 10 * w + 25, [w])
    return float(w.numpy())


def coefficients_as_a_tensor(steps: int = 1000) -> float:
    """The same with the coefficients in one constant: c[0] w**2 + c[1] w + c[2]."""
    c = st.constant([1.0, -10.0, 25.0])
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for _ in range(steps):
        opt.minimize(lambda: c[0] * w**2 + c[1] * w + c[2], [w])
    return float(w.numpy())


def compiled_training_step(steps: int = 1000) -> float:
    """A GradientTape and apply_gradients inside @st.function: traced once, then a kernel."""
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)

    @st.function
    def step():
        with st.GradientTape() as tape:
            loss = w**2 - 10 * w + 25
        opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        return loss

    for _ in range(steps):
        step()
    return float(w.numpy())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100 steps instead of 1000")
    args = parser.parse_args(argv)
    steps = 100 if args.small else 1000

    print("SGD(0.01), x**2 - 2x + 1, float64:", round(sgd_on_a_parabola(steps=steps), 6))
    print("SGD(0.01), x**2 - 2x + 1, float32:",
          np.float32(sgd_on_a_parabola(st.float32, steps=steps)))
    print("Adam(0.1), w**2 - 10w + 25:       ", round(adam_on_a_parabola(steps), 6))
    print("Adam(0.1), coefficients in a Tensor:", round(coefficients_as_a_tensor(steps), 6))
    print("Adam(0.1), compiled step:          ", round(compiled_training_step(steps), 6))


if __name__ == "__main__":
    main()
