"""Logistic regression by Newton's method, from the matrix formulas symtape prints.

The loss ``sum(softplus(X w)) - y.T X w`` is written once with symtape ops; ``.matrix_expr``
of its gradient and Hessian prints them as a person writes them,

    X.T*(sigmoid(X*w) - y)        and        X.T*diag(sigmoid(X*w)∘(1 - sigmoid(X*w)))*X,

and those two lines become two lines of NumPy below (``gradient`` and ``hessian``). The
script checks the NumPy lines against the printed forms (evaluated by SymPy at a small size)
and against the tape's entrywise gradient and Hessian, then runs Newton's method with them:
the gradient norm falls quadratically once close.

Run: ``python examples/logistic_newton_matrix.py`` (``--small`` for a smaller data set).
"""

from __future__ import annotations

import argparse

import numpy as np
import sympy

import symtape as st


def make_data(m: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features ``X`` (m, d) and labels ``y`` in {0, 1} drawn from a logistic model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, d))
    p = 1 / (1 + np.exp(-(X @ rng.normal(size=d))))
    return X, (rng.uniform(size=m) < p).astype(float)


def matrix_forms(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    """The tape's gradient and Hessian at ``w`` (their ``.matrix_expr`` are the formulas)."""
    Xc, yc = st.constant(X, name="X"), st.constant(y, name="y")
    wv = st.Variable(w, name="w")
    with st.GradientTape(persistent=True) as tape:
        z = Xc @ wv
        loss = st.reduce_sum(st.softplus(z)) - st.reduce_sum(yc * z)
    return tape.gradient(loss, wv), tape.hessian(loss, wv)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(z / 2))  # = 1 / (1 + exp(-z)), without overflow


# the printed formulas, in NumPy: X.T*(sigmoid(X*w) - y)
def gradient(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return X.T @ (sigmoid(X @ w) - y)


# X.T*diag(sigmoid(X*w)∘(1 - sigmoid(X*w)))*X: diag(v) X is v[:, None] * X, no n x n matrix
def hessian(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    s = sigmoid(X @ w)
    return X.T @ ((s * (1 - s))[:, None] * X)


def evaluated(form, values: dict) -> np.ndarray:
    """A matrix form evaluated by SymPy, with arrays put in for its symbols."""
    subs = {s: sympy.ImmutableMatrix(values[s.name].reshape(s.shape)) for s in form.free_symbols}
    explicit = form.xreplace(subs).replace(
        lambda e: isinstance(e, (sympy.OneMatrix, sympy.Identity)), lambda e: e.as_explicit())
    return np.array(sympy.N(explicit.doit().as_explicit()), dtype=float)


def check_formulas(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The largest difference between the NumPy lines, the printed forms, and the tape's values."""
    g, H = matrix_forms(X, y, w)
    values = {"X": X, "y": y, "w": w}
    ours = [gradient(X, y, w), hessian(X, y, w)]
    printed = [evaluated(g.matrix_expr, values).ravel(), evaluated(H.matrix_expr, values)]
    entrywise = [g.numpy(), H.numpy()]
    return max(float(np.max(np.abs(a - b))) for a, b, c in zip(ours, printed, entrywise)
               for a, b in ((a, b), (a, c)))


def newton(X: np.ndarray, y: np.ndarray, steps: int = 20, tol: float = 1e-10):
    """Newton's method with the two NumPy lines; the fitted ``w`` and the gradient norms."""
    w = np.zeros(X.shape[1])
    norms = [float(np.linalg.norm(gradient(X, y, w)))]
    for _ in range(steps):
        w = w - np.linalg.solve(hessian(X, y, w), gradient(X, y, w))
        norms.append(float(np.linalg.norm(gradient(X, y, w))))
        if norms[-1] < tol:
            break
    return w, norms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a smaller data set (for tests)")
    args = parser.parse_args(argv)
    m, d = (60, 3) if args.small else (2000, 64)
    X, y = make_data(m, d)
    g, H = matrix_forms(X, y, np.zeros(d))
    print("gradient:", g.matrix_expr)
    print("Hessian: ", H.matrix_expr)
    print("LaTeX:   ", sympy.latex(H.matrix_expr))
    Xs, ys = make_data(6, 3, seed=1)  # SymPy evaluates the forms: a small problem suffices
    print(f"NumPy lines vs printed forms and entrywise values: "
          f"{check_formulas(Xs, ys, np.full(3, 0.3)):.1e}")
    w, norms = newton(X, y)
    for k, norm in enumerate(norms):
        print(f"step {k:2d}  |gradient| = {norm:.3e}")
    print("entrywise gradient at the fit:", float(np.linalg.norm(matrix_forms(X, y, w)[0].numpy())))


if __name__ == "__main__":
    main()
