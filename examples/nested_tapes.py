"""Higher derivatives, Jacobians and Hessians, as TensorFlow's "Advanced automatic
differentiation" teaches.

A gradient computed inside an outer tape is itself recorded, so it can be differentiated
again: second derivatives (of x**3 and of tanh over a grid), the gradient of a
gradient's norm (input-gradient regularization), and Hessians. ``tape.jacobian`` and
``tape.batch_jacobian`` work as in TensorFlow; ``tape.hessian`` is symtape's own. Each
result is exact: ``.expr`` is the closed form.

Run: ``python examples/nested_tapes.py`` (``--small``: a coarser grid and a smaller layer).
"""

from __future__ import annotations

import argparse

import numpy as np

import symtape as st


def second_derivative():
    """y = x**3 at x = 1: dy/dx = 3 (3*x**2), d2y/dx2 = 6 (6*x). Returns both."""
    x = st.Variable(1.0, name="x")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            y = x * x * x
        dy_dx = inner.gradient(y, x)  # computed inside `outer`, so `outer` records it
    d2y_dx2 = outer.gradient(dy_dx, x)
    return dy_dx, d2y_dx2


def tanh_derivatives(points: int = 201):
    """tanh and its first two derivatives on a grid over [-6, 6].

    Returns ``(grid, y, dy_dx, d2y_dx2)``, the last three as Tensors.
    """
    grid = np.linspace(-6.0, 6.0, points)
    x = st.constant(grid, name="x")
    with st.GradientTape() as outer:
        outer.watch(x)
        with st.GradientTape() as inner:
            inner.watch(x)
            y = st.tanh(x)
        dy_dx = inner.gradient(y, x)  # y is elementwise, so its summed gradient is dy/dx
    d2y_dx2 = outer.gradient(dy_dx, x)
    return grid, y, dy_dx, d2y_dx2


def input_gradient_regularization(batch: int = 7, inputs: int = 5, units: int = 10):
    """The gradient, with respect to the weights, of the norm of d(output)/d(input).

    The layer is ``relu(x @ w + b)``, as in TensorFlow's guide. Returns a dict with
    ``x``, ``w``, ``b``, ``dout_dx``, ``norm``, ``dnorm_dw`` and ``dnorm_db``.
    """
    # fixed seeds: the same layer and inputs on every run
    x = st.constant(st.random.normal((batch, inputs), seed=0).numpy(), name="x")
    w = st.Variable(st.random.normal((inputs, units), seed=1), name="w")
    b = st.Variable(st.zeros(units, dtype=st.float64), name="b")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            inner.watch(x)
            out = st.relu(x @ w + b)
        dout_dx = inner.gradient(out, x)
        norm = st.sqrt(st.reduce_sum(dout_dx**2))  # TensorFlow's tf.norm(dout_dx)
    dnorm_dw, dnorm_db = outer.gradient(norm, [w, b])
    return {"x": x, "w": w, "b": b, "dout_dx": dout_dx, "norm": norm,
            "dnorm_dw": dnorm_dw, "dnorm_db": dnorm_db}


def jacobian_of_a_scalar_source(points: int = 5):
    """d sigmoid(x + delta)/d delta for a vector x: one entry per element of x.

    Returns ``(grid, jacobian)``; the Jacobian has the target's shape.
    """
    grid = np.linspace(-10.0, 10.0, points)
    x = st.constant(grid)
    delta = st.Variable(0.0, name="delta")
    with st.GradientTape() as tape:
        y = st.sigmoid(x + delta)
    return grid, tape.jacobian(y, delta)


def jacobian_of_a_tensor_source():
    """A layer's output with respect to its weights: shape ``y.shape + w.shape``.

    Returns ``(x, w, jacobian)`` for ``y = tanh(x @ w)``, x of shape (4, 3), w (3, 2).
    """
    x = st.constant(st.random.normal((4, 3), seed=2).numpy())
    w = st.Variable(st.random.normal((3, 2), seed=3), name="w")
    with st.GradientTape() as tape:
        y = st.tanh(x @ w)
    return x, w, tape.jacobian(y, w)


def batch_jacobian_example():
    """Per-example Jacobians: ``batch_jacobian`` keeps only the blocks ``jacobian[i, :, i, :]``.

    Returns ``(jacobian, batch_jacobian)`` of ``tanh(x @ w)`` with x of shape (4, 3).
    """
    x = st.constant(st.random.normal((4, 3), seed=4).numpy(), name="x")
    w = st.constant(st.random.normal((3, 2), seed=5).numpy())
    with st.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = st.tanh(x @ w)
    return tape.jacobian(y, x), tape.batch_jacobian(y, x)


def rosenbrock_hessians():
    """The Hessian of 100 (v1 - v0**2)**2 + (1 - v0)**2 at (1, 2), computed two ways.

    Returns ``(hessian, nested)``: ``tape.hessian``, and the Jacobian of a gradient taken
    inside an outer tape (TensorFlow's recipe). Both are [[402, -400], [-400, 200]].
    """
    v = st.Variable([1.0, 2.0], name="v")
    with st.GradientTape() as tape:
        f = 100 * (v[1] - v[0] ** 2) ** 2 + (1 - v[0]) ** 2
    hessian = tape.hessian(f, v)

    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            f = 100 * (v[1] - v[0] ** 2) ** 2 + (1 - v[0]) ** 2
        gradient = inner.gradient(f, v)
    nested = outer.jacobian(gradient, v)
    return hessian, nested


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a coarser grid, a smaller layer")
    args = parser.parse_args(argv)

    dy_dx, d2y_dx2 = second_derivative()
    print(f"y = x**3 at x = 1: dy/dx = {dy_dx.numpy()} ({dy_dx.expr}), "
          f"d2y/dx2 = {d2y_dx2.numpy()} ({d2y_dx2.expr})")

    grid, _, dy, d2y = tanh_derivatives(points=13 if args.small else 201)
    peak = np.argmax(d2y.numpy())
    print(f"tanh on {grid.size} points: dy/dx = {dy.expr[0]}, d2y/dx2 = {d2y.expr[0]} "
          f"(entry 0; the others alike)")
    print(f"  d2y/dx2 is largest, {d2y.numpy()[peak]:.4f}, at x = {grid[peak]:.2f}")

    sizes = (2, 3, 4) if args.small else (7, 5, 10)
    reg = input_gradient_regularization(*sizes)
    print(f"input-gradient regularization: |dout/dx| = {reg['norm'].numpy():.6f}")
    print(f"  dout/dx[0, 0] = {reg['dout_dx'].expr[0, 0]}")
    print(f"  dnorm/dw has shape {reg['dnorm_dw'].shape}; "
          f"dnorm/db = {reg['dnorm_db'].numpy()} (relu'' = 0)")

    _, j = jacobian_of_a_scalar_source()
    print(f"jacobian of sigmoid(x + delta) w.r.t. delta: {np.round(j.numpy(), 6)}")
    print(f"  entry 2 (x = 0): {j.expr[2]}")

    _, _, j = jacobian_of_a_tensor_source()
    print(f"jacobian of tanh(x @ w) w.r.t. w: shape {j.shape} = y.shape + w.shape")

    full, per_example = batch_jacobian_example()
    print(f"jacobian {full.shape}, batch_jacobian {per_example.shape}")
    print(f"  batch_jacobian[0] = jacobian[0, :, 0, :]: "
          f"{np.allclose(per_example.numpy()[0], full.numpy()[0, :, 0, :])}")

    hessian, nested = rosenbrock_hessians()
    print(f"Rosenbrock Hessian at (1, 2): {hessian.numpy().tolist()}")
    print(f"  closed form: {hessian.expr}")
    print(f"  jacobian of the gradient (nested tapes) agrees: "
          f"{np.array_equal(hessian.numpy(), nested.numpy())}")


if __name__ == "__main__":
    main()
