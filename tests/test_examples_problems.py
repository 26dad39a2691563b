"""The problem-solving examples reach answers checked against independent oracles.

Each script is loaded as a module and run at its small size: parameters recovered within
the noise, the published Lennard-Jones minima, scikit-learn's logistic regression, and a
digits classifier that beats a sensible accuracy. Gradients are checked with hand-written
NumPy formulas, not with the library itself.
"""

import sys

import numpy as np
import pytest
import sympy
from test_examples import _load

curve_fit = _load("curve_fit")
lennard_jones = _load("lennard_jones")
logistic = _load("logistic_regression")
mlp = _load("mlp_digits")


def _orders(norms, low=1e-14):
    """log(next) / log(this) for the norms between 1e-2 and ``low`` (rounding): 2 for
    Newton's quadratic convergence, 1 for linear convergence."""
    small = [g for g in norms if low < g < 1e-2]
    return [np.log(after) / np.log(before) for before, after in zip(small, small[1:])]


# ------------------------------------------------------------------ curve fitting


def test_the_fit_recovers_the_true_parameters_within_the_noise():
    t, y = curve_fit.make_data(60)
    fit = curve_fit.fit(t, y)
    # an unbiased estimate is within 4 standard errors (each < 0.05 with noise 0.05)
    assert np.all(np.abs(fit.params - curve_fit.TRUE) < 4 * fit.errors)
    assert np.all(fit.errors < 0.05)
    # the residuals are the noise: their rms is near its standard deviation
    assert fit.rms == pytest.approx(curve_fit.NOISE, rel=0.3)


def test_the_printed_jacobian_row_is_the_derivative_of_the_model():
    a, b, c, d = (sympy.Symbol(f"p[{k}]", real=True) for k in range(4))
    t, y = sympy.symbols("t y", real=True)
    r = a * sympy.exp(-b * t) * sympy.cos(c * t + d) - y
    row = curve_fit.jacobian_row()
    for entry, p in zip(row, (a, b, c, d)):
        assert sympy.simplify(entry - sympy.diff(r, p)) == 0


# ------------------------------------------------------------------ Lennard-Jones


def _lj_gradient(positions, cutoff=None):
    """The hand-derived gradient: dE/dx_i = sum_j 2 phi'(s) (x_i - x_j), s = r^2."""
    d = positions[:, None] - positions[None]
    s = np.sum(d * d, axis=-1) + np.eye(len(positions))  # 1 on the diagonal: no 0/0
    slope = 4 * (-6 * s**-7 + 3 * s**-4)  # d/ds of 4 (s^-6 - s^-3)
    if cutoff is not None:
        c = cutoff**2
        u = s - c  # minus the derivative of the subtracted Taylor polynomial
        slope = slope - 4 * (-6 * c**-7 + 3 * c**-4) - 4 * (42 * c**-8 - 12 * c**-5) * u
        slope = np.where(s < c, slope, 0.0)
    np.fill_diagonal(slope, 0.0)
    return 2 * np.einsum("ij,ijk->ik", slope, d)


@pytest.mark.parametrize("n", [7, 13])
def test_lennard_jones_reaches_the_known_global_minimum(n):
    m = lennard_jones.known_cluster(n)
    assert m.energy == pytest.approx(lennard_jones.KNOWN_MINIMA[n], abs=1e-6)
    assert m.gradient_norm < 1e-7
    assert np.linalg.norm(_lj_gradient(m.positions)) < 1e-7
    assert m.hessian_nonzeros == (3 * n) ** 2  # every pair interacts: dense


def test_the_cutoff_cluster_converges_quadratically_with_a_sparse_hessian():
    m, hessian = lennard_jones.cutoff_cluster(38)
    assert m.gradient_norm < 1e-10
    assert np.linalg.norm(_lj_gradient(m.positions, lennard_jones.CUTOFF)) < 1e-9
    orders = _orders(m.history, low=1e-15)
    assert len(orders) >= 2 and min(orders) > 1.5  # superlinear: quadratic but for rounding
    # the pattern is the neighbour list's: a 3x3 block per atom and two per listed pair
    i, _ = lennard_jones.neighbour_pairs(lennard_jones.fcc_ball(38),
                                         lennard_jones.CUTOFF + lennard_jones.SKIN)
    assert m.hessian_nonzeros == hessian.nnz == 9 * 38 + 18 * len(i) < (3 * 38) ** 2
    assert abs(hessian - hessian.T).max() < 1e-9
    assert np.linalg.eigvalsh(hessian.toarray()).min() > -1e-8  # a minimum


# ------------------------------------------------------------------ logistic regression


@pytest.fixture(scope="module")
def logistic_fit():
    X, y = logistic.make_data(300, 5)
    theta, norms = logistic.newton(X, y)
    return X, y, theta, norms


def test_newton_reaches_a_zero_gradient_quadratically(logistic_fit):
    X, y, theta, norms = logistic_fit
    w, b = theta[:-1], theta[-1]
    p = 1 / (1 + np.exp(-(X @ w + b)))
    by_hand = np.append(X.T @ (p - y) / len(y) + logistic.LAM * w, np.mean(p - y))
    assert np.linalg.norm(by_hand) < 1e-12
    assert norms[-1] < 1e-12 and len(norms) <= 10
    orders = _orders(norms)
    assert len(orders) >= 2 and min(orders) > 1.5


def test_newton_agrees_with_trust_exact(logistic_fit):
    X, y, theta, _ = logistic_fit
    assert np.abs(logistic.trust_exact(X, y) - theta).max() < 1e-7


def test_newton_agrees_with_scikit_learn(logistic_fit):
    pytest.importorskip("sklearn")
    X, y, theta, _ = logistic_fit
    assert np.abs(logistic.scikit_learn(X, y) - theta).max() < 1e-8


# ------------------------------------------------------------------ MLP on digits


def test_the_mlp_learns_the_digits():
    pytest.importorskip("sklearn")
    result = mlp.train(epochs=5, hidden=16)
    assert result.accuracy > 0.9  # chance is 0.1; 5 epochs reach ~0.94
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert all(np.isfinite(result.losses))


def test_without_scikit_learn_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(SystemExit) as exit_:
        mlp.main(["--small"])
    assert 'python -m pip install "symtape[examples]"' in str(exit_.value)
