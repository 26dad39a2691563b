"""Newton's sparse path: the exact Hessian from coloured products, the same steps as dense.

Oracles: SciPy's rosen_der/rosen_hess (for the derivatives the steps use), the dense path's
steps (NumPy's Cholesky solve), and the known minimizer of a separable function."""

import numpy as np
import pytest
from scipy.optimize import rosen_der, rosen_hess
from helpers import rosenbrock

import symtape as st
from symtape.optimizers import _sparse_derivatives


def chained_rosenbrock(x):
    return lambda: rosenbrock(x)


def test_sparse_derivatives_are_scipys():
    point = np.linspace(-1.0, 1.5, 80)
    x = st.Variable(point, name="x")
    value, g, H = _sparse_derivatives(chained_rosenbrock(x), [x])()
    np.testing.assert_allclose(g, rosen_der(point), rtol=1e-13)
    np.testing.assert_allclose(H.toarray(), rosen_hess(point), rtol=1e-13)
    assert H.nnz == 3 * 80 - 2
    x.assign(point + 0.1)  # kernels read the Variable at call time
    np.testing.assert_allclose(_sparse_derivatives(chained_rosenbrock(x), [x])()[1],
                               rosen_der(point + 0.1), rtol=1e-13)


def test_sparse_and_dense_steps_agree():
    start = np.tile([-1.2, 1.0], 35)  # 70 entries: the sparse path is the default
    x_sparse, x_dense = st.Variable(start, name="x"), st.Variable(start, name="y")
    sparse, dense = st.optimizers.Newton(), st.optimizers.Newton(sparse=False)
    for _ in range(5):
        sparse.minimize(chained_rosenbrock(x_sparse), [x_sparse])
        dense.minimize(chained_rosenbrock(x_dense), [x_dense])
    np.testing.assert_allclose(x_sparse.numpy(), x_dense.numpy(), rtol=1e-6, atol=1e-8)


def test_sparse_newton_solves_a_large_separable_problem():
    n = 2000  # pairs of Rosenbrock valleys, independent: converges like the 2-D one
    x = st.Variable(np.tile([-1.2, 1.0], n // 2), name="x")
    opt = st.optimizers.Newton()

    def loss():
        odd, even = x[0::2], x[1::2]
        return st.reduce_sum(100 * (even - odd**2) ** 2 + (1 - odd) ** 2)

    for _ in range(40):
        opt.minimize(loss, [x])
    np.testing.assert_allclose(x.numpy(), np.ones(n), atol=1e-8)
    assert len(opt._kernels) == 1  # one compiled set of kernels, reused by every step


def test_several_variables_share_one_sparse_hessian():
    a, b = st.Variable(np.full(40, 2.0), name="a"), st.Variable(np.full(40, -1.0), name="b")
    opt = st.optimizers.Newton(sparse=True)
    loss = lambda: st.reduce_sum((a - 1) ** 4 + (a - b) ** 2 + (b + 3) ** 2)  # noqa: E731
    previous = float(loss().numpy())
    for _ in range(30):
        current = float(opt.minimize(loss, [a, b]).numpy())
        assert current <= previous + 1e-12  # the line search never increases the loss
        previous = current
    # at the minimum: 4(a-1)^3 + 2(a-b) = 0 and -2(a-b) + 2(b+3) = 0
    av, bv = a.numpy(), b.numpy()
    np.testing.assert_allclose(4 * (av - 1) ** 3 + 2 * (av - bv), 0, atol=1e-7)
    np.testing.assert_allclose(bv, (av - 3) / 2, atol=1e-7)


@pytest.mark.parametrize("sparse", [True, False])
def test_apply_gradients_is_refused(sparse):
    with pytest.raises(TypeError, match="minimize"):
        st.optimizers.Newton(sparse=sparse).apply_gradients([])


def test_newton_converges_below_the_rounding_of_the_loss():
    # LJ13 from a perturbed icosahedron: near the minimum the decrease a step promises is
    # below the rounding noise of the 78-term energy, and a strict Armijo test then halved
    # every step (|g| stalled near 1e-8, halving each iteration)
    phi = (1 + np.sqrt(5)) / 2
    vertices = np.array([p for a in (-1, 1) for b in (-1, 1)
                         for p in ((0, a, b * phi), (a, b * phi, 0), (b * phi, 0, a))])
    vertices *= 2 ** (1 / 6) / np.linalg.norm(vertices[0])
    start = np.vstack([np.zeros(3), vertices])
    start += np.random.default_rng(0).normal(0, 0.05, start.shape)
    i, j = np.triu_indices(13, 1)

    def energy(x):
        points = st.reshape(x, (13, 3))
        d = points[i] - points[j]
        squared = st.reduce_sum(d * d, axis=1)
        inverse_6 = 1 / (squared * squared * squared)
        return st.reduce_sum(4 * (inverse_6 * inverse_6 - inverse_6))

    x = st.Variable(start.reshape(-1), name="x")
    newton = st.optimizers.Newton()
    for _ in range(25):
        newton.minimize(lambda: energy(x), [x])
    assert float(energy(x)) == pytest.approx(-44.326801, abs=1e-6)
    assert np.linalg.norm(st.grad(energy)(x.numpy())) < 1e-11
