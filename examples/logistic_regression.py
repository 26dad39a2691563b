"""L2-regularized logistic regression by Newton's method on the exact compiled Hessian.

The loss is the mean log-loss plus ``lam/2 |w|^2`` (the intercept is not penalized),
written once with symtape ops on one parameter vector ``theta = (w, b)``.
``st.optimizers.Newton`` takes damped Newton steps with its exact Hessian: the gradient
norm printed per iteration falls quadratically (its exponent doubles) once close. The same
fit by ``st.optimize.minimize(method="trust-exact")`` and, when scikit-learn is installed,
by ``LogisticRegression`` with the same penalty (``C = 1 / (n lam)``) agree to ~1e-8.

Run: ``python examples/logistic_regression.py`` (``--small`` for a smaller data set,
``--plot-dir DIR`` for where ``logistic_regression.png`` goes; default the current directory).
"""

from __future__ import annotations

import argparse

import numpy as np

import symtape as st

LAM = 1e-2  # L2 strength on the weights


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features ``X`` (n, d) and labels ``y`` in {0, 1} drawn from a logistic model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    p = 1 / (1 + np.exp(-(X @ w + 0.5)))
    return X, (rng.uniform(size=n) < p).astype(float)


def loss(theta, X, y):
    """Mean log-loss of ``sigmoid(X w + b)`` plus ``LAM/2 |w|^2``; ``theta = (w, b)``."""
    w, b = theta[:-1], theta[-1]
    z = st.matmul(X, w) + b
    # log(1 + e^z) - y z is the log-loss of label y in {0, 1}; softplus keeps it finite
    return st.reduce_mean(st.softplus(z) - y * z) + LAM / 2 * st.reduce_sum(w * w)


def newton(X: np.ndarray, y: np.ndarray, steps: int = 12) -> tuple[np.ndarray, list[float]]:
    """Fitted ``theta`` and the gradient norm before each Newton step and after the last."""
    theta = st.Variable(np.zeros(X.shape[1] + 1), name="theta")
    Xc, yc = st.constant(X), st.constant(y)
    gradient = st.grad(loss)
    opt = st.optimizers.Newton()
    norms = [float(np.linalg.norm(gradient(theta.numpy(), X, y)))]
    for _ in range(steps):
        opt.minimize(lambda: loss(theta, Xc, yc), [theta])
        norms.append(float(np.linalg.norm(gradient(theta.numpy(), X, y))))
        if norms[-1] < 1e-12 * norms[0]:  # rounding level: more steps change nothing
            break
    return theta.numpy(), norms


def trust_exact(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same fit by SciPy's trust-region method fed the exact Hessian."""
    result = st.optimize.minimize(loss, np.zeros(X.shape[1] + 1), args=(X, y),
                                  method="trust-exact", options={"gtol": 1e-12})
    return result.x


def scikit_learn(X: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """scikit-learn's fit of the same objective, or None without scikit-learn."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    # sklearn minimizes C * sum(log-loss) + |w|^2 / 2: ours times n / (n lam)
    model = LogisticRegression(C=1 / (len(y) * LAM), tol=1e-12, max_iter=10_000,
                               solver="newton-cholesky")
    model.fit(X, y)
    return np.append(model.coef_.ravel(), model.intercept_)


def plot(norms: list[float], directory) -> None:
    from plotting import save_figure

    def draw(figure):
        ax = figure.add_subplot()
        ax.semilogy(range(len(norms)), np.maximum(norms, 1e-17), "o-")
        ax.set(xlabel="Newton iteration", ylabel="|gradient|",
               title="Newton's method on the exact Hessian")

    save_figure(draw, directory, "logistic_regression.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a smaller data set (for tests)")
    parser.add_argument("--plot-dir", default=".", help="where to write logistic_regression.png")
    args = parser.parse_args(argv)

    X, y = make_data(*((300, 5) if args.small else (5000, 20)))
    print(f"{len(y)} samples, {X.shape[1]} features, lambda = {LAM}")
    theta, norms = newton(X, y)
    for k, norm in enumerate(norms):
        print(f"iteration {k:2d}: |gradient| = {norm:.3e}")
    print("weights, intercept:", np.array2string(theta, precision=4, max_line_width=88))
    print(f"max |Newton - trust-exact| = {np.abs(theta - trust_exact(X, y)).max():.1e}")
    reference = scikit_learn(X, y)
    if reference is None:
        print("(scikit-learn is not installed: no comparison with LogisticRegression)")
    else:
        print(f"max |Newton - scikit-learn| = {np.abs(theta - reference).max():.1e}")
    plot(norms, args.plot_dir)


if __name__ == "__main__":
    main()
