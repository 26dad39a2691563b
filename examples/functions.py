"""Compiled functions: ``@st.function`` (like ``tf.function``) and the JAX-style transforms.

``st.function`` traces a Python function once per input signature (shapes, dtypes,
device), keeps the traced closed forms (``.expr``) and compiles them into a NumPy kernel;
later calls with that signature run only the kernel. Python code runs while tracing only,
so a Python side effect counts the traces, as in TensorFlow's "Introduction to graphs and
tf.function". Python ``if`` on a Tensor's value cannot be traced: use ``st.where``.
``st.grad``, ``st.value_and_grad``, ``st.jacobian`` and ``st.hessian`` compile derivatives
the same way. A call means the function of its whole arguments (a new shape is a new trace);
``st.vmap`` evaluates a batch of points at once, traced at one point, in one kernel call.

Run: ``python examples/functions.py`` (``--small``: fewer points in the batched call).
"""

from __future__ import annotations

import argparse

import numpy as np

import symtape as st


def gradient_and_value():
    """The guide's first function: ``(dy_dx, y)`` for y = x**2 - 2x + 1.

    Returns ``(f, f(0.0), f(1.0))``: (-2, 1) and (0, 0), from one trace.
    """
    @st.function
    def f(x):
        with st.GradientTape() as tape:
            tape.watch(x)
            y = x**2 - 2 * x + 1
        return tape.gradient(y, x), y

    return f, f(st.constant(0.0)), f(st.constant(1.0))


def tracing_counts():
    """Which calls trace: a new shape or dtype traces again; the same signature does not.

    Returns ``(traces, results, batched)``: the ``(shape, dtype)`` of each trace, the four
    calls' results ([5, 25, 14, 5]), and ``st.vmap`` of the function over the rows of a
    (2, 3) matrix, which runs the (3,) trace's kernel on both rows in one call ([14, 77]).
    """
    traces = []

    @st.function
    def sum_of_squares(x):
        traces.append((x.shape, str(x.dtype)))  # Python runs only while tracing
        return st.reduce_sum(x * x)

    results = [
        sum_of_squares(st.constant([1.0, 2.0])),  # traces
        sum_of_squares(st.constant([3.0, 4.0])),  # same signature: the kernel only
        sum_of_squares(st.constant([1.0, 2.0, 3.0])),  # a new shape: traces again
        sum_of_squares(st.constant([1.0, 2.0], dtype=st.float32)),  # a new dtype: again
    ]
    # a batch of points is explicit: mapped over the rows, traced at a row (the (3,) trace)
    batched = st.vmap(sum_of_squares)(st.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    return traces, results, batched


def concrete_function():
    """A trace's closed forms and kernel: ``get_concrete_function(...)``.

    Returns ``(concrete, concrete(3.0))``; ``concrete.expr`` is ``(2*x - 2, x**2 - 2*x + 1)``.
    """
    traced, _, _ = gradient_and_value()
    concrete = traced.get_concrete_function(st.constant(2.0))  # the trace made there
    return concrete, concrete(st.constant(3.0))


def python_if_on_a_tensor():
    """Python ``if`` on a Tensor raises while tracing; ``st.where`` is the fix.

    Returns ``(error message, where_abs, [where_abs(-2), where_abs(3)])``.
    """
    @st.function
    def python_abs(x):
        if x > 0:  # one branch would be frozen into the kernel: refused
            return x
        return -x

    try:
        python_abs(st.constant(-2.0))
    except TypeError as error:
        message = str(error)
    else:
        raise AssertionError("a Python `if` on a traced Tensor should raise")

    @st.function
    def where_abs(x):
        return st.where(x > 0, x, -x)  # both branches are in the kernel

    return message, where_abs, [where_abs(st.constant(-2.0)), where_abs(st.constant(3.0))]


def f(x, y):
    """The function the transforms below differentiate: x**2 sin(y)."""
    return x**2 * st.sin(y)


def polar(r, theta):
    """Polar to Cartesian coordinates: a vector-valued function for ``st.jacobian``."""
    return st.stack([r * st.cos(theta), r * st.sin(theta)])


def jax_style_transforms(x: float = 2.0, y: float = 0.5) -> dict:
    """``st.grad``, ``st.value_and_grad``, ``st.jacobian``, ``st.hessian`` at (x, y).

    Returns ``{name: (value, closed form)}``; the values are NumPy arrays.
    """
    transforms = {
        "grad": st.grad(f),  # argnums=0: df/dx
        "grad argnums=1": st.grad(f, argnums=1),
        "grad argnums=(0, 1)": st.grad(f, argnums=(0, 1)),
        "value_and_grad": st.value_and_grad(f, argnums=(0, 1)),
        "jacobian of polar": st.jacobian(polar, argnums=(0, 1)),
        "hessian": st.hessian(f, argnums=(0, 1)),
    }
    # .expr is the closed form of the most recent trace, made by this call
    return {name: (fn(x, y), fn.expr) for name, fn in transforms.items()}


def batched_evaluation(points: int = 100_000):
    """``value_and_grad`` at many points in one call: ``st.vmap`` traces at one point and
    runs the kernel over the whole arrays.

    Returns ``(xs, ys, value, (df_dx, df_dy))``, each of shape ``(points,)``.
    """
    value_and_grad = st.vmap(st.value_and_grad(f, argnums=(0, 1)))  # traced at a point
    xs = np.linspace(-1.0, 1.0, points)
    ys = np.linspace(0.0, 3.0, points)
    value, grads = value_and_grad(xs, ys)  # one kernel call over all the points
    return xs, ys, value, grads


def kernel_source() -> str:
    """The generated Python source of the compiled value-and-gradient kernel."""
    return st.value_and_grad(f, argnums=(0, 1)).get_concrete_function(0.0, 0.0).source


def _pair(result) -> str:
    return ", ".join(f"{float(t.numpy()):g}" for t in result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer points in the batched call")
    args = parser.parse_args(argv)

    fn, at_0, at_1 = gradient_and_value()
    print(f"(dy_dx, y) at 0: ({_pair(at_0)}); at 1: ({_pair(at_1)}); closed forms {fn.expr}")

    traces, results, batched = tracing_counts()
    print(f"sum_of_squares: {len(results)} calls, {len(traces)} traces: {traces}")
    print(f"  results {[float(r.numpy()) for r in results]}; "
          f"st.vmap over the rows of a (2, 3) matrix (the (3,) trace): {batched.numpy()}")

    concrete, at_3 = concrete_function()
    print(f"concrete function: {concrete.expr}, at 3: ({_pair(at_3)})")
    print("  its kernel:\n" + concrete.source)

    message, where_abs, values = python_if_on_a_tensor()
    print(f"Python `if` on a Tensor: TypeError: {message}")
    print(f"  with st.where: {where_abs.expr}, at -2 and 3: {[float(v) for v in values]}")

    for name, (value, expr) in jax_style_transforms().items():
        print(f"{name} at (2, 0.5): {value}\n  closed form: {expr}")

    xs, ys, value, (df_dx, df_dy) = batched_evaluation(1_000 if args.small else 100_000)
    print(f"value_and_grad at {xs.size} points in one call: value shape {value.shape}, "
          f"df/dx[-1] = {df_dx[-1]:.6f}, df/dy[-1] = {df_dy[-1]:.6f}")
    print("value_and_grad kernel:\n" + kernel_source())


if __name__ == "__main__":
    main()
