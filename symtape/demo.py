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

import sys
from typing import TextIO

import sympy

import symtape as st

__all__ = ["run"]


def run(out: TextIO | None = None) -> None:
    """Print the main walk-through: tapes, exact gradients, Hessians and a descent loop."""
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
    say("   the gradient each step used, in closed form:", step.expr)
