"""Nonlinear curve fitting with ``st.optimize.least_squares`` and the exact Jacobian.

A damped oscillation ``y = a exp(-b t) cos(c t + d)`` is fitted to noisy samples (seeded).
The residuals are written once with symtape ops; SciPy's trust-region solver gets their
compiled Jacobian, and the closed form of one Jacobian row is printed (``.expr``). The
parameters' standard errors come from the same Jacobian, ``sigma^2 (J^T J)^-1``.

Run: ``python examples/curve_fit.py`` (``--small`` for fewer samples, ``--plot-dir DIR``
for where ``curve_fit.png`` goes; default the current directory).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

import symtape as st

TRUE = np.array([2.0, 0.3, 2.5, 0.4])  # a, b, c, d
START = np.array([1.5, 0.2, 2.3, 0.0])  # a rough guess, as read off a plot
NOISE = 0.05


def model(p, t):
    """The damped oscillation at times ``t`` for parameters ``p = (a, b, c, d)``."""
    return p[0] * st.exp(-p[1] * t) * st.cos(p[2] * t + p[3])


def residuals(p, t, y):
    return model(p, t) - y


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples on ``[0, 10]`` with Gaussian noise of standard deviation ``NOISE``."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 10.0, n)
    clean = np.asarray(st.function(model)(TRUE, t))
    return t, clean + rng.normal(0.0, NOISE, n)


@dataclass
class Fit:
    params: np.ndarray
    errors: np.ndarray  # one standard error per parameter
    rms: float  # root-mean-square residual: should be close to NOISE
    evaluations: int


def fit(t: np.ndarray, y: np.ndarray) -> Fit:
    result = st.optimize.least_squares(residuals, START, args=(t, y), xtol=1e-12, ftol=1e-12)
    # the covariance of the estimate: sigma^2 (J^T J)^-1, J at the solution
    dof = len(t) - len(START)
    sigma2 = 2 * result.cost / dof
    errors = np.sqrt(np.diag(sigma2 * np.linalg.inv(result.jac.T @ result.jac)))
    return Fit(result.x, errors, float(np.sqrt(2 * result.cost / len(t))), result.nfev)


def jacobian_row():
    """The exact gradient of one residual ``r = model(p, t) - y`` with respect to ``p``."""
    row = st.grad(residuals)
    row(START, 0.0, 0.0)  # trace at one point: t and y are scalars here
    return row.expr


def plot(t, y, params, directory) -> None:
    from plotting import save_figure

    fine = np.linspace(t[0], t[-1], 500)
    curve = st.function(model)

    def draw(figure):
        ax = figure.add_subplot()
        ax.plot(t, y, ".", ms=4, color="0.5", label="data")
        ax.plot(fine, np.asarray(curve(TRUE, fine)), "--", label="true model")
        ax.plot(fine, np.asarray(curve(params, fine)), label="least-squares fit")
        ax.set(xlabel="t", ylabel="y", title="a exp(-b t) cos(c t + d)")
        ax.legend()

    save_figure(draw, directory, "curve_fit.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer samples (for tests)")
    parser.add_argument("--plot-dir", default=".", help="where to write curve_fit.png")
    args = parser.parse_args(argv)

    t, y = make_data(60 if args.small else 200)
    result = fit(t, y)
    print(f"{len(t)} samples, noise {NOISE}; {result.evaluations} residual evaluations")
    print(f"{'':6}{'true':>8}{'fitted':>10}{'std err':>10}")
    for name, true, value, error in zip("abcd", TRUE, result.params, result.errors):
        print(f"{name:6}{true:8.4f}{value:10.4f}{error:10.4f}")
    print(f"rms residual {result.rms:.4f} (the noise is {NOISE})")
    print("d r / d(a, b, c, d) for one sample (t, y):")
    for name, entry in zip("abcd", jacobian_row()):
        print(f"  d r/d{name} = {entry}")
    plot(t, y, result.params, args.plot_dir)


if __name__ == "__main__":
    main()
