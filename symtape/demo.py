"""The walk-through that ``symtape demo`` (and ``python -m symtape``) prints.

Examples
--------
>>> import io
>>> buffer = io.StringIO()
>>> run(buffer)
>>> "2*x - 2" in buffer.getvalue()
True
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TextIO

import numpy as np
import sympy

import symtape as st

__all__ = ["run"]


def run(out: TextIO | None = None) -> None:
    """Print the main walk-through: tapes, exact gradients, Hessians, descent loops, and
    compiled transforms."""
    out = out if out is not None else sys.stdout  # looked up per call: capture-friendly

    def say(*parts) -> None:
        print(*parts, file=out)

    say("symtape walk-through: TensorFlow's GradientTape, with exact closed forms\n")

    x = st.Variable(0.0, name="x")
    with st.GradientTape() as tape:
        y = x**2 - 2 * x + 1
    dy_dx = tape.gradient(y, x)
    say("1. y = x**2 - 2*x + 1 at x = 0")
    say("   y.expr          =", y.expr)
    say("   dy/dx .numpy()  =", dy_dx.numpy())
    say("   dy/dx .expr     =", dy_dx.expr, "\n")

    a, b, c = (st.constant(v, name=n) for v, n in [(1.0, "a"), (-2.0, "b"), (1.0, "c")])
    with st.GradientTape() as tape:
        tape.watch([a, b, c])
        y = a * x**2 + b * x + c
    grads = tape.gradient(y, [x, a, b, c])
    say("2. watched constants: d(a*x**2 + b*x + c)/d[x, a, b, c]")
    say("   values =", [float(g) for g in grads])
    say("   forms  =", [g.expr for g in grads], "\n")

    x3 = st.Variable(1.0, name="x")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            y = x3 * x3 * x3
        dy = inner.gradient(y, x3)
    d2y = outer.gradient(dy, x3)
    say("3. nested tapes on y = x**3 at x = 1")
    say("   dy/dx   =", float(dy), "=", dy.expr)
    say("   d2y/dx2 =", float(d2y), "=", d2y.expr, "\n")

    v = st.Variable([1.0, 2.0], name="v")
    with st.GradientTape() as tape:
        f = v[0] ** 2 * v[1] + st.sin(v[1])
    hessian = tape.hessian(f, v)
    say("4. exact Hessian of v[0]**2*v[1] + sin(v[1])")
    say("   numeric:", hessian.numpy().tolist())
    say("   LaTeX:  ", sympy.latex(sympy.Matrix(hessian.expr.tolist())), "\n")

    w = st.Variable(0.0, name="w")
    for _ in range(200):
        with st.GradientTape() as tape:
            loss = (w - 5) ** 2
        step = tape.gradient(loss, w)
        w.assign_sub(0.1 * step)
    say("5. 200 steps of gradient descent on (w - 5)**2 from 0: w =", round(float(w), 6))
    say("   the gradient each step used, in closed form:", step.expr, "\n")
    _compiled(say)


def _compiled(say) -> None:
    """Steps 6 and 7: compiled transforms and a compiled training step."""
    def rosen(x):
        return st.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    point = np.full(1000, 1.2)
    say("6. compiled transforms of Rosenbrock's function on one vector")
    say("   st.grad(rosen)([1, 2, 3])            =", st.grad(rosen)(np.array([1.0, 2.0, 3.0])))
    if importlib.util.find_spec("scipy") is None:  # the demo needs only SymPy and NumPy
        say("   st.hessian(rosen, sparse=True) returns a scipy.sparse matrix: "
            "pip install 'symtape[scipy]' to see it here")
    else:
        say("   st.hessian(rosen, sparse=True), n=1000:",
            st.hessian(rosen, sparse=True)(point).nnz, "nonzeros (3n - 2)")
    value_and_grad = st.value_and_grad(lambda a, b: st.sin(a) * b, argnums=(0, 1))
    mapped = st.vmap(value_and_grad, in_axes=(0, None))  # traced at a point, one kernel call
    values, _ = mapped(np.linspace(0, 1, 1_000_000), 2.0)
    say("   st.vmap: one call at 10**6 points: values.shape =", values.shape, "\n")

    w = st.Variable(0.0, name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)

    @st.function
    def train_step():
        return opt.minimize(lambda: w**2 - 10 * w + 25, [w])

    for _ in range(1000):
        train_step()
    say("7. Adam(0.1) on w**2 - 10*w + 25, a compiled step, 1000 calls: w =",
        round(float(w.numpy()), 4))
    say("   the traced step:", train_step.expr, "\n")
    _cross_check(say)


def _cross_check(say) -> None:
    """Step 8: the exact, compiled and numeric derivatives side by side, catching a mistake."""
    def loss(w):
        return st.reduce_sum(st.exp(w) * w)

    point = np.array([0.5, -1.0])
    say("8. st.check_grads(loss, w): symbolic, compiled, complex-step, finite differences")
    say("   " + str(st.check_grads(loss, point, order=1)).replace("\n", "\n   "))
    try:
        st.check_grads(loss, point, order=1, grad=lambda w: np.exp(w))
    except AssertionError as caught:
        say("   a hand-written gradient exp(w) (the product rule forgotten) is caught:")
        say("   " + str(caught).replace("\n", "\n   "))
