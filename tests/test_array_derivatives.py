"""Array-level Jacobians and Hessians (symtape/array_derivatives.py): every result against
hand-derived matrix formulas or SymPy's entrywise derivatives of the function's closed form,
to 1e-12; the route is taken for matmul / elementwise / reduction graphs and left for others."""

import inspect

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as hs

import symtape as st
from symtape.transforms import array_derivatives
from symtape.kernels.trace import Trace, placeholder

RNG = np.random.default_rng(18)
TOL = dict(rtol=1e-12, atol=1e-12)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def mv(M, v):
    return st.matmul(M, v)


def entrywise_hessian(fun, x0: np.ndarray, *data):
    """SymPy's Hessian of ``fun``'s entrywise closed form (symbols ``x[i]``, named after the
    first parameter), at ``x0``."""
    expr = st.function(fun).get_concrete_function(x0, *data).expr
    name = next(iter(inspect.signature(fun).parameters))
    names = [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*x0.shape)]
    xs = [sympy.Symbol(n, real=True) for n in names]
    H = sympy.hessian(expr, xs)
    values = sympy.lambdify(xs, H, "numpy")(*x0.reshape(-1))
    return np.array(values, dtype=float).reshape(x0.shape * 2)


# ---------------------------------------------------------------- the table

A = RNG.standard_normal((7, 4))
b = RNG.standard_normal(7)
S = RNG.standard_normal((4, 4))
X = RNG.standard_normal((9, 4))
y = (RNG.random(9) > 0.5).astype(float)
x0 = RNG.standard_normal(4)


def least_squares(x):
    r = mv(A, x) - b
    return st.reduce_sum(r * r)


def ridge(x):
    return least_squares(x) + 0.3 * st.reduce_sum(x * x)


def quadratic(x):
    return st.reduce_sum(x * mv(S, x))


def logistic(w):
    z = mv(X, w)
    return st.reduce_sum(st.softplus(z)) - st.reduce_sum(y * z)


def rayleigh(x):
    return st.reduce_sum(x * mv(S, x)) / st.reduce_sum(x * x)


def logistic_hessian(w):
    s = sigmoid(X @ w)
    return X.T @ np.diag(s * (1 - s)) @ X


HAND = [
    (least_squares, lambda x: 2 * A.T @ A),
    (ridge, lambda x: 2 * A.T @ A + 0.6 * np.eye(4)),
    (quadratic, lambda x: S + S.T),
    (logistic, logistic_hessian),
]


@pytest.mark.parametrize("fun, formula", HAND, ids=[f.__name__ for f, _ in HAND])
def test_hessian_matches_the_matrix_formula(fun, formula):
    H = st.hessian(fun)
    np.testing.assert_allclose(H(x0), formula(x0), **TOL)
    np.testing.assert_allclose(H(x0 + 1), formula(x0 + 1), **TOL)  # the kernel, a second point
    np.testing.assert_allclose(H(x0), entrywise_hessian(fun, x0), **TOL)


def test_rayleigh_quotient_hessian_matches_sympy():
    H = st.hessian(rayleigh)
    np.testing.assert_allclose(H(x0), entrywise_hessian(rayleigh, x0), **TOL)


def test_gradients_of_the_table_match_their_formulas():
    Ssym = S + S.T
    np.testing.assert_allclose(st.grad(least_squares)(x0), 2 * A.T @ (A @ x0 - b), **TOL)
    np.testing.assert_allclose(st.grad(quadratic)(x0), Ssym @ x0, **TOL)
    np.testing.assert_allclose(st.grad(logistic)(x0), X.T @ (sigmoid(X @ x0) - y), **TOL)


def test_frobenius_least_squares_hessian_in_a_matrix():
    # ||A X B - C||^2 in X: H[i,j,k,l] = 2 (A^T A)[i,k] (B B^T)[l,j]
    A2, B2, C2 = RNG.standard_normal((5, 3)), RNG.standard_normal((2, 4)), \
        RNG.standard_normal((5, 4))
    X0 = RNG.standard_normal((3, 2))

    def f(M):
        r = st.matmul(st.matmul(A2, M), B2) - C2
        return st.reduce_sum(r * r)

    expected = 2 * np.einsum("ik,lj->ijkl", A2.T @ A2, B2 @ B2.T)
    np.testing.assert_allclose(st.hessian(f)(X0), expected, **TOL)
    np.testing.assert_allclose(st.grad(f)(X0), 2 * A2.T @ (A2 @ X0 @ B2 - C2) @ B2.T, **TOL)


def test_trace_of_x_times_ax_hessian_in_a_matrix():
    # sum X o (A X): H[i,j,k,l] = (A + A^T)[i,k] delta(j,l)
    X0 = RNG.standard_normal((4, 3))
    H = st.hessian(lambda M: st.reduce_sum(M * st.matmul(S, M)))(X0)
    np.testing.assert_allclose(H, np.einsum("ik,jl->ijkl", S + S.T, np.eye(3)), **TOL)


# ---------------------------------------------------------------- Jacobians


def test_jacobian_of_a_layer_in_the_vector_and_in_the_matrix():
    W = RNG.standard_normal((5, 4))
    h = np.tanh(W @ x0)
    J = st.jacobian(lambda v: st.tanh(mv(W, v)))(x0)
    np.testing.assert_allclose(J, (1 - h * h)[:, None] * W, **TOL)
    JW = st.jacobian(lambda M, v: st.tanh(st.matmul(M, v)))(W, x0)
    expected = np.einsum("i,ik,l->ikl", 1 - h * h, np.eye(5), x0)
    np.testing.assert_allclose(JW, expected, **TOL)


def test_jacobian_with_broadcasts_transposes_and_partial_reductions():
    M = RNG.standard_normal((3, 4))

    def f(v):  # (3,) from (4,): broadcast, a reduction over one axis, a transpose
        P = st.exp(M * v) / 3.0
        return st.reduce_sum(st.transpose(P), axis=0) + st.reduce_mean(st.sin(v))

    e = np.exp(M * x0)
    expected = e * M / 3.0 + np.cos(x0)[None, :] / 4
    np.testing.assert_allclose(st.jacobian(f)(x0), expected, **TOL)


def test_jacobian_of_two_arguments():
    W = RNG.standard_normal((3, 4))
    Jx, Jc = st.jacobian(lambda v, c: st.sigmoid(mv(W, v) * c), argnums=(0, 1))(x0, 2.0)
    s = sigmoid(2.0 * W @ x0)
    np.testing.assert_allclose(Jx, (2.0 * s * (1 - s))[:, None] * W, **TOL)
    np.testing.assert_allclose(Jc, s * (1 - s) * (W @ x0), **TOL)


# ---------------------------------------------------------------- beyond the table


def mixed(v):
    """Broadcasts, reshape, transpose, partial and full reductions, a matrix product."""
    M = st.reshape(v, (2, 3))
    P = st.tanh(st.transpose(M) @ st.constant(np.arange(1.0, 5.0).reshape(2, 2)))  # (3, 2)
    rows = st.reduce_sum(P * P, axis=1)  # (3,)
    return st.reduce_sum(st.log1p(rows)) + st.reduce_mean(st.exp(0.1 * v) * v) \
        + st.reduce_sum(st.sqrt(1.0 + v * v))


def test_mixed_program_hessian_matches_sympy():
    v0 = np.linspace(-0.7, 0.8, 6)
    H = st.hessian(mixed)
    np.testing.assert_allclose(H(v0), entrywise_hessian(mixed, v0), **TOL)


def test_hessian_blocks_of_two_arguments_match_sympy():
    W2 = RNG.standard_normal((2, 3))
    t = RNG.standard_normal(2)

    def f(v, u):  # ||W2 tanh(v * u) - t||^2, v and u both (3,)
        r = mv(W2, st.tanh(v * u)) - t
        return st.reduce_sum(r * r)

    v0, u0 = RNG.standard_normal(3), RNG.standard_normal(3)
    blocks = st.hessian(f, argnums=(0, 1))(v0, u0)
    joined = lambda z: f(z[:3], z[3:])  # noqa: E731 (the oracle: one vector, indexed)
    full = entrywise_hessian(joined, np.concatenate([v0, u0]))
    np.testing.assert_allclose(np.block([[blocks[0][0], blocks[0][1]],
                                         [blocks[1][0], blocks[1][1]]]), full, **TOL)


def test_hessian_expr_is_the_exact_entrywise_hessian():
    B = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    H = st.hessian(lambda x: st.reduce_sum(st.softplus(mv(B, x))) + st.reduce_sum(x ** 3))
    H(np.array([0.1, 0.2]))
    xs = sympy.symbols("x[0] x[1]", real=True)
    f = sum(sympy.log(1 + sympy.exp(sum(sympy.Rational(str(B[i, j])) * xs[j] for j in range(2))))
            for i in range(3)) + xs[0] ** 3 + xs[1] ** 3
    expected = sympy.hessian(f, xs)
    got = sympy.Matrix(H.expr.tolist())
    assert (got - expected).applyfunc(sympy.simplify) == sympy.zeros(2, 2)


def test_float32_in_float32_out():
    x32 = x0.astype(np.float32)
    H = st.hessian(logistic)(x32)
    assert H.dtype == np.float32
    np.testing.assert_allclose(H, logistic_hessian(x0), rtol=1e-4, atol=1e-5)


def test_a_closed_over_variable_is_read_at_call_time():
    lam = st.Variable(0.5, name="lam")
    H = st.hessian(lambda x: least_squares(x) + lam * st.reduce_sum(x * x))
    np.testing.assert_allclose(H(x0), 2 * A.T @ A + 1.0 * np.eye(4), **TOL)
    lam.assign(2.0)
    np.testing.assert_allclose(H(x0), 2 * A.T @ A + 4.0 * np.eye(4), **TOL)


def test_vmap_of_the_hessian_over_points():
    points = RNG.standard_normal((5, 4))
    Hs = st.vmap(st.hessian(logistic))(points)
    for k in range(5):
        np.testing.assert_allclose(Hs[k], logistic_hessian(points[k]), **TOL)


def test_unconnected_argument_gives_zero_blocks():
    blocks = st.hessian(lambda v, u: st.reduce_sum(st.exp(v)), argnums=(0, 1))(x0, x0[:2])
    np.testing.assert_allclose(blocks[0][0], np.diag(np.exp(x0)), **TOL)
    assert blocks[1][1].shape == (2, 2) and not blocks[1][1].any()
    assert blocks[0][1].shape == (4, 2) and not blocks[0][1].any()


# ---------------------------------------------------------------- which graphs take the route


def test_the_logistic_hessian_compiles_to_a_few_matrix_products():
    H = st.hessian(logistic)
    source = H.get_concrete_function(x0).source
    assert source.count("matmul") <= 3  # X w, then X^T (r X); no product per column
    assert "concat" not in source and "stack" not in source


def test_indexing_falls_back_to_the_sweeps_per_row():
    def f(x):
        return x[0] ** 2 * x[1] + st.reduce_sum(st.sin(mv(A, x)))

    with Trace():
        x = placeholder(x0, "x")
        with st.GradientTape() as tape:
            tape.watch(x)
            out = f(x)
        assert array_derivatives.hessian([tape.gradient(out, x)], [x]) is None
        assert array_derivatives.jacobian(st.stack([x[0], x[1]]), [x]) is None
    H = st.hessian(f)(x0)  # still right, by the other route
    np.testing.assert_allclose(H, entrywise_hessian(f, x0), **TOL)


def test_where_falls_back_and_stays_right():
    f = lambda x: st.reduce_sum(st.where(x > 0, x ** 3, st.exp(x)))  # noqa: E731
    expected = np.diag(np.where(x0 > 0, 6 * x0, np.exp(x0)))
    np.testing.assert_allclose(st.hessian(f)(x0), expected, **TOL)


def test_sparsity_detection_reports_a_dense_block():
    Hs = st.hessian(logistic, sparse=True)(x0)
    assert Hs.nnz == 16
    np.testing.assert_allclose(Hs.toarray(), logistic_hessian(x0), **TOL)
    diagonal = st.hessian(lambda x: st.reduce_sum(st.softplus(x)), sparse=True)(x0)
    assert diagonal.nnz == 4  # elementwise alone: the diagonal


def test_trust_exact_uses_the_dense_hessian(monkeypatch):
    pytest.importorskip("scipy")
    from symtape.transforms import sparse

    def refuse(*args, **kwargs):
        raise AssertionError("trust-exact built a sparse Hessian")

    monkeypatch.setattr(sparse, "SparseHessian", refuse)
    result = st.optimize.minimize(ridge, np.zeros(4), method="trust-exact")
    solution = np.linalg.solve(2 * A.T @ A + 0.6 * np.eye(4), 2 * A.T @ b)
    np.testing.assert_allclose(result.x, solution, rtol=1e-8)
    fit = st.optimize.minimize(lambda w: logistic(w) + 0.5 * st.reduce_sum(w * w), np.zeros(4),
                               method="trust-exact", options={"gtol": 1e-10})
    np.testing.assert_allclose(X.T @ (sigmoid(X @ fit.x) - y) + fit.x, 0, atol=1e-7)


def test_wide_jacobian_of_few_outputs_builds_no_identity():
    # 3 outputs of 100000 inputs: the tangents stay the size of the result (no n x n identity)
    M = RNG.standard_normal((3, 100_000))
    v = RNG.standard_normal(100_000)
    J = st.jacobian(lambda x: st.tanh(st.matmul(M, x)))(v)
    np.testing.assert_allclose(J, (1 - np.tanh(M @ v) ** 2)[:, None] * M, **TOL)


def test_matrix_products_with_a_matrix_source_on_either_side():
    P, Q = RNG.standard_normal((3, 4)), RNG.standard_normal((2, 5))
    W0 = RNG.standard_normal((4, 2))
    right = st.jacobian(lambda W: st.sin(st.matmul(P, W)))(W0)  # (3, 2, 4, 2)
    expected = np.einsum("ij,ik,jl->ijkl", np.cos(P @ W0), P, np.eye(2))
    np.testing.assert_allclose(right, expected, **TOL)
    left = st.jacobian(lambda W: st.matmul(W * W, Q))(W0)  # (4, 5, 4, 2)
    expected = np.zeros((4, 5, 4, 2))
    for i, j, k, l in np.ndindex(4, 5, 4, 2):
        expected[i, j, k, l] = (i == k) * 2 * W0[k, l] * Q[l, j]
    np.testing.assert_allclose(left, expected, **TOL)


def test_on_the_gpu_the_same_hessian_and_fit(gpu_cupy):
    pytest.importorskip("scipy")

    def loss(w, data, labels):
        z = st.matmul(data, w)
        return st.reduce_sum(st.softplus(z)) - st.reduce_sum(labels * z) \
            + 0.5 * st.reduce_sum(w * w)

    H = st.hessian(loss)(gpu_cupy.asarray(x0), gpu_cupy.asarray(X), gpu_cupy.asarray(y))
    assert not isinstance(H, np.ndarray)  # stays on the device
    np.testing.assert_allclose(H.get(), logistic_hessian(x0) + np.eye(4), **TOL)
    fits = [st.optimize.minimize(loss, np.zeros(4), args=(xp.asarray(X), xp.asarray(y)),
                                 method="trust-exact").x for xp in (np, gpu_cupy)]
    np.testing.assert_allclose(fits[1], fits[0], rtol=1e-10)


def test_a_broadcast_source_then_a_full_reduction():
    C = RNG.standard_normal(6)
    H = st.hessian(lambda c: st.reduce_sum(st.exp(c + C) * 2.0))(0.3)
    np.testing.assert_allclose(H, 2.0 * np.exp(0.3 + C).sum(), **TOL)
    M = RNG.standard_normal((3, 4))
    J = st.jacobian(lambda v: st.reduce_sum(st.exp(v + M) * M, axis=0) + st.reduce_sum(v))(x0)
    np.testing.assert_allclose(J, np.diag((np.exp(x0 + M) * M).sum(axis=0)) + 1, **TOL)


# ---------------------------------------------------------------- random programs

M3 = np.array([[0.5, -1.0, 0.25], [1.5, 0.0, -0.5], [0.3, 0.7, 1.0]])
STEPS = {
    "matmul": lambda h, x: st.matmul(M3, h),
    "matmul_row": lambda h, x: st.matmul(h, M3),  # a vector on the left
    "tanh": lambda h, x: st.tanh(h),
    "sigmoid": lambda h, x: st.sigmoid(h),
    "softplus": lambda h, x: st.softplus(h),
    "sin_scaled": lambda h, x: st.sin(0.5 * h),
    "times_x": lambda h, x: h * x,
    "plus_square": lambda h, x: h + st.square(x),
    "over": lambda h, x: h / (2.0 + st.square(h)),
    "outer_sum": lambda h, x: st.reduce_sum(st.reshape(h, (3, 1)) * st.reshape(x, (1, 3)),
                                            axis=0),
    "columns": lambda h, x: st.reduce_sum(st.transpose(st.reshape(h, (3, 1)) * M3), axis=1),
}


@settings(max_examples=20, deadline=None)
@given(steps=hs.lists(hs.sampled_from(sorted(STEPS)), min_size=1, max_size=4))
def test_random_programs_hessian_and_jacobian_match_sympy(steps):
    def program(x):
        h = x
        for step in steps:
            h = STEPS[step](h, x)
        return h

    point = np.array([0.3, -0.6, 0.9])
    scalar = lambda x: st.reduce_sum(program(x) * st.constant([1.0, -2.0, 0.5]))  # noqa: E731
    np.testing.assert_allclose(st.hessian(scalar)(point), entrywise_hessian(scalar, point),
                               **TOL)
    expr = st.function(program).get_concrete_function(point).expr
    xs = sympy.symbols("x[0] x[1] x[2]", real=True)
    jac = sympy.lambdify(xs, sympy.Matrix(list(expr)).jacobian(xs), "numpy")(*point)
    np.testing.assert_allclose(st.jacobian(program)(point), np.array(jac, dtype=float), **TOL)
