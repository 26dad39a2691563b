"""The optimizer loops of the TensorFlow tutorials, with symtape.

Run: ``python examples/tutorial_loops.py``. Each loop prints where it ends; the same loops
run eagerly and compiled (``@st.function``), with the same results.
"""

from __future__ import annotations

import numpy as np

import symtape as st


def sgd_on_a_parabola(dtype=st.float64) -> float:
    """SGD(0.01), 1000 steps from 0 on x**2 - 2x + 1: x -> 1."""
    x = st.Variable(0.0, dtype=dtype, name="x")
    opt = st.optimizers.SGD(learning_rate=0.01)
    for _ in range(1000):
        opt.minimize(lambda: x**2 - 2 * x + 1, [x])
    return float(x.numpy())


def adam_on_a_parabola() -> float:
    """Adam(0.1), 1000 steps from 0 on w**2 - 10w + 25: w -> 5."""
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for _ in range(1000):
        opt.minimize(lambda: w**2 - 10 * w + 25, [w])
    return float(w.numpy())


def coefficients_as_a_tensor() -> float:
    """The same with the coefficients in one constant: c[0] w**2 + c[1] w + c[2]."""
    c = st.constant([1.0, -10.0, 25.0])
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for _ in range(1000):
        opt.minimize(lambda: c[0] * w**2 + c[1] * w + c[2], [w])
    return float(w.numpy())


def compiled_training_step() -> float:
    """A GradientTape and apply_gradients inside @st.function: traced once, then a kernel."""
    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)

    @st.function
    def step():
        with st.GradientTape() as tape:
            loss = w**2 - 10 * w + 25
        opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        return loss

    for _ in range(1000):
        step()
    return float(w.numpy())


def main() -> None:
    print("SGD(0.01), x**2 - 2x + 1, float64:", round(sgd_on_a_parabola(), 6))
    print("SGD(0.01), x**2 - 2x + 1, float32:", np.float32(sgd_on_a_parabola(st.float32)))
    print("Adam(0.1), w**2 - 10w + 25:       ", round(adam_on_a_parabola(), 6))
    print("Adam(0.1), coefficients in a Tensor:", round(coefficients_as_a_tensor(), 6))
    print("Adam(0.1), compiled step:          ", round(compiled_training_step(), 6))


if __name__ == "__main__":
    main()
