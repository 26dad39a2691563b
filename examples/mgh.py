"""The Moré–Garbow–Hillstrom test problems, solved with compiled exact derivatives.

J. J. Moré, B. S. Garbow, K. E. Hillstrom, "Testing unconstrained optimization software",
ACM TOMS 7 (1981) 17–41. Each problem is a residual vector ``r(x)``; the objective is
``f(x) = sum(r(x)**2)``. ``PROBLEMS`` lists them with the paper's standard start ``x0`` and
its published optimal values ``f*`` (several where a problem has local minima).

Run: ``python examples/mgh.py`` solves each problem with ``st.optimize.minimize``
(``trust-exact``: exact compiled Hessians), ``st.optimize.least_squares`` and the
``Newton`` optimizer, and prints the values reached beside the published ones
(``--small``: the first three problems).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

import symtape as st


@dataclass(frozen=True)
class Problem:
    name: str
    residuals: Callable  # x (a vector Tensor) -> residual vector Tensor
    x0: tuple
    optima: tuple  # the published values of f at its minimizers (global first)

    def objective(self, x):
        return st.reduce_sum(st.square(self.residuals(x)))


def _vector(*entries):
    return st.stack(list(entries))


def rosenbrock(x):
    return _vector(10 * (x[1] - x[0] ** 2), 1 - x[0])


def freudenstein_roth(x):
    return _vector(-13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
                   -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1])


def powell_badly_scaled(x):
    return _vector(1e4 * x[0] * x[1] - 1, st.exp(-x[0]) + st.exp(-x[1]) - 1.0001)


def brown_badly_scaled(x):
    return _vector(x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2)


def beale(x):
    y = st.constant([1.5, 2.25, 2.625])
    i = st.constant([1.0, 2.0, 3.0])
    return y - x[0] * (1 - x[1] ** i)


def helical_valley(x):
    angle = st.atan(x[1] / x[0]) / (2 * math.pi)
    theta = st.where(x[0] > 0, angle, angle + 0.5)
    return _vector(10 * (x[2] - 10 * theta), 10 * (st.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2])


_BARD_Y = [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10,
           4.39]


def bard(x):
    u = np.arange(1.0, 16.0)
    v = 16.0 - u
    w = np.minimum(u, v)
    return st.constant(_BARD_Y) - (x[0] + st.constant(u) / (st.constant(v) * x[1]
                                                            + st.constant(w) * x[2]))


def box_3d(x):
    t = st.constant(0.1 * np.arange(1.0, 11.0))
    return (st.exp(-t * x[0]) - st.exp(-t * x[1])
            - x[2] * (st.exp(-t) - st.exp(-10 * t)))


def powell_singular(x):
    return _vector(x[0] + 10 * x[1], math.sqrt(5) * (x[2] - x[3]), (x[1] - 2 * x[2]) ** 2,
                   math.sqrt(10) * (x[0] - x[3]) ** 2)


def wood(x):
    return _vector(10 * (x[1] - x[0] ** 2), 1 - x[0], math.sqrt(90) * (x[3] - x[2] ** 2),
                   1 - x[2], math.sqrt(10) * (x[1] + x[3] - 2), (x[1] - x[3]) / math.sqrt(10))


_KO_Y = [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
_KO_U = [4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625]


def kowalik_osborne(x):
    u = st.constant(_KO_U)
    return st.constant(_KO_Y) - x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3])


_OSBORNE1_Y = [0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
               0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
               0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406]


def osborne_1(x):
    t = st.constant(10.0 * np.arange(33))
    return st.constant(_OSBORNE1_Y) - (x[0] + x[1] * st.exp(-t * x[3]) + x[2] * st.exp(-t * x[4]))


def watson(x):
    n = x.shape[0]
    t = np.arange(1, 30) / 29.0
    # sums over j as matrix products with the powers of t: (29, n) @ (n,)
    slope = st.constant(np.stack([(j - 1) * t ** (j - 2) if j > 1 else 0 * t
                                  for j in range(1, n + 1)], axis=1))
    powers = st.constant(np.stack([t ** (j - 1) for j in range(1, n + 1)], axis=1))
    main = st.matmul(slope, x) - st.matmul(powers, x) ** 2 - 1
    return st.concat([main, _vector(x[0], x[1] - x[0] ** 2 - 1)], axis=0)


def penalty_1(x):
    a = 1e-5
    return st.concat([math.sqrt(a) * (x - 1), st.reshape(st.reduce_sum(x * x) - 0.25, (1,))],
                     axis=0)


def extended_rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return st.concat([10 * (even - odd ** 2), 1 - odd], axis=0)


PROBLEMS = [
    Problem("Rosenbrock", rosenbrock, (-1.2, 1.0), (0.0,)),
    Problem("Freudenstein and Roth", freudenstein_roth, (0.5, -2.0), (0.0, 48.9842)),
    Problem("Powell badly scaled", powell_badly_scaled, (0.0, 1.0), (0.0,)),
    Problem("Brown badly scaled", brown_badly_scaled, (1.0, 1.0), (0.0,)),
    Problem("Beale", beale, (1.0, 1.0), (0.0,)),
    Problem("Helical valley", helical_valley, (-1.0, 0.0, 0.0), (0.0,)),
    Problem("Bard", bard, (1.0, 1.0, 1.0), (8.21487e-3, 17.4286)),
    Problem("Box 3-D", box_3d, (0.0, 10.0, 20.0), (0.0,)),
    Problem("Powell singular", powell_singular, (3.0, -1.0, 0.0, 1.0), (0.0,)),
    Problem("Wood", wood, (-3.0, -1.0, -3.0, -1.0), (0.0,)),
    Problem("Kowalik and Osborne", kowalik_osborne, (0.25, 0.39, 0.415, 0.39),
            (3.07505e-4, 1.02734e-3)),
    Problem("Osborne 1", osborne_1, (0.5, 1.5, -1.0, 0.01, 0.02), (5.46489e-5,)),
    Problem("Watson (n=6)", watson, (0.0,) * 6, (2.28767e-3,)),
    Problem("Penalty I (n=4)", penalty_1, (1.0, 2.0, 3.0, 4.0), (2.24997e-5,)),
    Problem("Extended Rosenbrock (n=10)", extended_rosenbrock, (-1.2, 1.0) * 5, (0.0,)),
]


def reached(value: float, optima: tuple, rtol: float = 1e-4, atol: float = 1e-8) -> bool:
    """Whether ``value`` is one of the published optimal values."""
    return any(abs(value - f) <= atol + rtol * abs(f) for f in optima)


def solve(problem: Problem, how: str) -> float:
    """The final objective value: ``how`` is 'trust-exact', 'least_squares' or 'Newton'."""
    x0 = np.array(problem.x0)
    if how == "least_squares":
        result = st.optimize.least_squares(problem.residuals, x0, xtol=1e-15, ftol=1e-15,
                                           gtol=1e-15, max_nfev=2000)
        return float(2 * result.cost)
    if how == "Newton":
        x = st.Variable(x0, name="x")
        opt = st.optimizers.Newton()
        for _ in range(200):
            opt.minimize(lambda: problem.objective(x), [x])
        return float(problem.objective(x.value()).numpy())
    # trust-exact probes trial points far out, where the Hessian's norm overflows; SciPy
    # rejects those steps, so NumPy's overflow warnings there are noise
    with np.errstate(over="ignore"):
        result = st.optimize.minimize(problem.objective, x0, method=how, tol=1e-14,
                                      options={"maxiter": 5000})
    return float(result.fun)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="only the first three problems")
    args = parser.parse_args(argv)
    print(f"{'problem':<28} {'published f*':>13} {'trust-exact':>13} {'least_squares':>14} "
          f"{'Newton':>13}")
    for problem in PROBLEMS[:3] if args.small else PROBLEMS:
        values = [solve(problem, how) for how in ("trust-exact", "least_squares", "Newton")]
        marks = ["" if reached(v, problem.optima) else " (other)" for v in values]
        print(f"{problem.name:<28} {problem.optima[0]:13.6g} "
              + " ".join(f"{v:13.6g}{m}" for v, m in zip(values, marks)))


if __name__ == "__main__":
    main()
