"""st.hessian(..., sparse=True): CSR matrices with exactly the structural nonzeros, values from
coloured Hessian-vector products — against scipy.optimize.rosen_hess, sympy.hessian and
hand-derived patterns."""

import numpy as np
import pytest
import scipy.sparse
import sympy
from hypothesis import example, given, settings
from hypothesis import strategies as hs
from scipy.optimize import rosen_hess, rosen_hess_prod
from helpers import rosenbrock, rosenbrock_of, symbols_by_name

import symtape as st

RNG = np.random.default_rng(11)


def tridiagonal_pattern(n):
    i, j = np.nonzero(np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 1)
    return set(zip(i.tolist(), j.tolist()))


def stored_pattern(m):
    coo = m.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


def vector_symbols(expr, name, n):
    by_name = symbols_by_name(expr)
    return [by_name.get(f"{name}[{i}]", sympy.Symbol(f"{name}[{i}]", real=True)) for i in range(n)]


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
def test_rosenbrock_sparse_hessian_matches_scipy(n):
    H = st.hessian(rosenbrock, sparse=True)
    for _ in range(2):  # the trace and the compiled product kernel
        x = RNG.uniform(-2, 2, n)
        m = H(x)
        assert scipy.sparse.issparse(m) and m.format == "csr"
        assert m.shape == (n, n) and m.nnz == 3 * n - 2
        assert stored_pattern(m) == tridiagonal_pattern(n)
        expected = rosen_hess(x)
        np.testing.assert_allclose(m.toarray(), expected, rtol=1e-12, atol=1e-10)
        # every stored value is the oracle's value at that entry
        coo = m.tocoo()
        np.testing.assert_allclose(coo.data, expected[coo.row, coo.col], rtol=1e-12, atol=1e-10)


@pytest.mark.slow
def test_large_rosenbrock_sparse_hessian():
    n = 10_000  # building the pattern takes seconds; evaluating it is then fast
    H = st.hessian(rosenbrock, sparse=True)
    assert H(RNG.uniform(-2, 2, n)).nnz == 3 * n - 2
    x = RNG.uniform(-2, 2, n)
    m = H(x)
    coo = m.tocoo()
    assert m.nnz == 3 * n - 2 and np.all(np.abs(coo.row - coo.col) <= 1)
    for _ in range(3):  # products with random vectors against SciPy's Hessian-vector product
        p = RNG.normal(size=n)
        np.testing.assert_allclose(m @ p, rosen_hess_prod(x, p), rtol=1e-12, atol=1e-9)


def test_sparse_expr_is_the_exact_sympy_hessian():
    n = 5
    H = st.hessian(rosenbrock, sparse=True)
    H(np.zeros(n))
    expr = H.expr
    assert isinstance(expr, sympy.MatrixBase) and expr.shape == (n, n)
    xs = vector_symbols(expr, "x", n)
    oracle_f = rosenbrock_of(xs)
    oracle = sympy.hessian(oracle_f, xs)
    assert sympy.simplify(sympy.Matrix(expr) - oracle) == sympy.zeros(n, n)
    # structural zeros are exact zeros
    for i in range(n):
        for j in range(n):
            if abs(i - j) > 1:
                assert expr[i, j] == 0


def test_sparse_expr_for_a_general_function():
    def f(x):
        return x[0] ** 2 * st.sin(x[1]) + st.exp(x[0] * x[3]) + x[2] ** 4 + x[1] * x[3]

    H = st.hessian(f, sparse=True)
    point = np.array([0.3, -0.7, 1.1, 0.5])
    m = H(point)
    expr = H.expr
    v = vector_symbols(expr, "x", 4)
    oracle_f = v[0] ** 2 * sympy.sin(v[1]) + sympy.exp(v[0] * v[3]) + v[2] ** 4 + v[1] * v[3]
    oracle = sympy.hessian(oracle_f, v)
    assert sympy.simplify(sympy.Matrix(expr) - oracle) == sympy.zeros(4, 4)
    numeric = np.array(oracle.subs(dict(zip(v, point.tolist()))), dtype=float)
    np.testing.assert_allclose(m.toarray(), numeric, rtol=1e-13)
    # by hand: x[0], x[1], x[3] all couple (d2/dx1^2 = -x0^2 sin x1, d2/dx3^2 = x0^2 e^(x0 x3));
    # x[2] couples to nothing but itself
    expected_pattern = {(i, j) for i in (0, 1, 3) for j in (0, 1, 3)} | {(2, 2)}
    assert stored_pattern(m) == expected_pattern


def test_pattern_has_only_structural_nonzeros():
    # x0 * sum(x[1:]^2): x0 does not occur in its own gradient entry, so (0, 0) is not stored
    H = st.hessian(lambda x: x[0] * st.reduce_sum(x[1:] ** 2), sparse=True)
    x = np.array([1.5, 2.0, 3.0])
    m = H(x)
    assert stored_pattern(m) == {(0, 1), (0, 2), (1, 0), (2, 0), (1, 1), (2, 2)}
    expected = np.array([[0, 2 * 2.0, 2 * 3.0], [2 * 2.0, 2 * 1.5, 0], [2 * 3.0, 0, 2 * 1.5]])
    np.testing.assert_allclose(m.toarray(), expected, rtol=1e-15)


def test_diagonal_hessian_of_a_matrix_argument():
    H = st.hessian(lambda x: st.reduce_sum(x * x * x), sparse=True)
    x = RNG.normal(size=(2, 3))
    m = H(x)
    assert m.shape == (6, 6) and m.nnz == 6
    np.testing.assert_allclose(m.toarray(), np.diag(6 * x.reshape(-1)), rtol=1e-14)


def test_linear_function_has_an_empty_hessian():
    H = st.hessian(lambda x: st.reduce_sum(x) * 3.0 + 1.0, sparse=True)
    m = H(np.ones(4))
    assert m.shape == (4, 4) and m.nnz == 0
    assert H.expr == sympy.zeros(4, 4)


def test_scalar_python_float_argument():
    H = st.hessian(lambda x: x**3 + st.sin(x), sparse=True)
    m = H(2.0)
    assert m.shape == (1, 1)
    assert m.toarray()[0, 0] == pytest.approx(12.0 - np.sin(2.0), rel=1e-15)
    x = sympy.Symbol("x", real=True)
    assert sympy.simplify(H.expr[0, 0] - (6 * x - sympy.sin(x))) == 0


def test_several_arguments_flatten_in_order():
    def f(x, y):
        return st.reduce_sum(x * x) * y + y**3 + x[0] * x[2]

    H = st.hessian(f, argnums=(0, 1), sparse=True)
    x, y = np.array([1.0, 2.0, 3.0]), 2.0
    m = H(x, y)
    # by hand, over (x0, x1, x2, y)
    expected = np.array([[2 * y, 0, 1, 2 * x[0]],
                         [0, 2 * y, 0, 2 * x[1]],
                         [1, 0, 2 * y, 2 * x[2]],
                         [2 * x[0], 2 * x[1], 2 * x[2], 6 * y]])
    np.testing.assert_allclose(m.toarray(), expected, rtol=1e-15)
    assert m.nnz == 12  # 4 diagonal + (0, 2) twice + the y row and column (3 twice)
    # only the second argument
    Hy = st.hessian(f, argnums=1, sparse=True)
    assert Hy(x, y).toarray().tolist() == [[6 * y]]


def test_sparse_and_dense_hessians_agree():
    def f(x):
        return (st.reduce_sum(st.exp(x[1:] * x[:-1])) + st.reduce_sum(st.sigmoid(x) * x[0])
                + st.log1p(x[2] ** 2))

    sparse = st.hessian(f, sparse=True)
    dense = st.hessian(f)
    for _ in range(2):
        x = RNG.uniform(-1, 1, 6)
        np.testing.assert_allclose(sparse(x).toarray(), dense(x), rtol=1e-12, atol=1e-14)
    expr = sparse.expr
    v = vector_symbols(expr, "x", 6)
    oracle_f = (sum(sympy.exp(v[i + 1] * v[i]) for i in range(5))
                + sum(v[0] / (1 + sympy.exp(-v[i])) for i in range(6)) + sympy.log(1 + v[2] ** 2))
    oracle = sympy.hessian(oracle_f, v)
    point = dict(zip(v, x.tolist()))
    np.testing.assert_allclose(np.array(oracle.subs(point), dtype=float), dense(x), rtol=1e-12)


def test_variables_in_the_function_are_read_at_call_time():
    c = st.Variable(2.0, name="c")
    H = st.hessian(lambda x: c * st.reduce_sum(x**3), sparse=True)
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(H(x).toarray(), np.diag(2.0 * 6 * x))
    c.assign(-1.0)
    np.testing.assert_allclose(H(x).toarray(), np.diag(-1.0 * 6 * x))


def test_each_matrix_can_be_changed_without_changing_the_next():
    H = st.hessian(lambda x: st.reduce_sum(x[1:] * x[:-1]) + st.reduce_sum(x**3), sparse=True)
    m = H(np.zeros(5))  # the diagonal 6x is zero here: stored, and removable
    m.eliminate_zeros()
    m.data *= 2
    assert m.nnz == 8
    again = H(np.zeros(5))
    assert again.nnz == 13 and stored_pattern(again) == tridiagonal_pattern(5)
    np.testing.assert_array_equal(again.toarray(), np.eye(5, k=1) + np.eye(5, k=-1))


def test_float32_argument_gives_a_float32_matrix():
    H = st.hessian(lambda x: st.reduce_sum(x**3), sparse=True)
    m = H(np.array([1.0, 2.0], dtype=np.float32))
    assert m.dtype == np.float32
    np.testing.assert_allclose(m.toarray(), np.diag([6.0, 12.0]))


def test_errors():
    with pytest.raises(TypeError, match="callable"):
        st.hessian(None, sparse=True)
    H = st.hessian(lambda x: x * x, sparse=True)
    with pytest.raises(ValueError, match="call"):
        H.expr
    with pytest.raises(TypeError, match="scalar"):
        H(np.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        st.hessian(lambda x: st.reduce_sum(x), sparse=True)(np.array([1, 2]))
    with pytest.raises(ValueError, match="argnums"):
        st.hessian(lambda x: x * x, argnums=1, sparse=True)(1.0)


def test_colouring_of_a_random_pattern_recovers_every_entry():
    rng = np.random.default_rng(3)
    n = 12
    pairs = sorted({tuple(sorted(rng.choice(n, 2, replace=False).tolist())) for _ in range(15)})
    left, right = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def f(x):
        return st.reduce_sum(st.sin(x[left] * x[right])) + 0.1 * st.reduce_sum(x**4)

    xs = sympy.symbols(f"x0:{n}", real=True)
    oracle_f = sum(sympy.sin(xs[i] * xs[j]) for i, j in pairs) + sum(v**4 for v in xs) / 10
    oracle = sympy.hessian(oracle_f, xs)
    pattern = {(i, j) for i in range(n) for j in range(n) if oracle[i, j] != 0}
    H = st.hessian(f, sparse=True)
    for _ in range(2):
        x = rng.uniform(-1, 1, n)
        m = H(x)
        assert stored_pattern(m) == pattern
        expected = np.array(oracle.subs(dict(zip(xs, x.tolist()))), dtype=float)
        np.testing.assert_allclose(m.toarray(), expected, rtol=1e-13, atol=1e-15)


def test_nested_argument_is_flattened_in_order():
    H = st.hessian(lambda xs: st.reduce_sum(xs[0] * xs[1] ** 2), sparse=True)
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    # by hand over (a0, a1, b0, b1): d2/da_i db_i = 2 b_i, d2/db_i^2 = 2 a_i
    expected = [[0, 0, 6, 0], [0, 0, 0, 8], [6, 0, 2, 0], [0, 8, 0, 4]]
    np.testing.assert_array_equal(H([a, b]).toarray(), expected)


def test_a_new_shape_is_a_new_hessian_and_vmap_names_the_dense_alternative():
    hessian = st.hessian(lambda x: st.reduce_sum(x ** 3), sparse=True)
    np.testing.assert_array_equal(hessian(np.ones(3)).toarray(), 6 * np.eye(3))
    x = np.arange(6.0).reshape(2, 3)  # the Hessian over all six entries: diag(6 x)
    np.testing.assert_array_equal(hessian(x).toarray(), np.diag(6 * x.reshape(-1)))
    with pytest.raises(TypeError, match=r"map the dense one, st.vmap\(st.hessian\(f\)\)"):
        st.vmap(hessian)(x)


def test_pattern_through_structural_ops_matches_sympy():
    A = np.array([[1.0, 2.0], [0.0, 3.0]])  # a zero in A: no coupling there

    def f(x):
        m = st.reshape(x, (2, 3))
        rows = st.reduce_sum(st.square(m), axis=1)  # couples nothing (x_i**2)
        mixed = st.matmul(st.constant(A), st.transpose(st.concat([m[:, :1], m[:, 2:]], 1)))
        return (st.reduce_sum(rows * st.sin(mixed[0])) + st.reduce_max(x[4:]) ** 2
                + st.reduce_sum(st.exp(mixed)))

    v = sympy.symbols("x0:6", real=True)
    m = sympy.Matrix(2, 3, v)
    rows = [sum(e**2 for e in m.row(i)) for i in range(2)]
    mixed = sympy.Matrix(A.tolist()) * sympy.Matrix([[m[0, 0], m[0, 2]], [m[1, 0], m[1, 2]]]).T
    point = np.array([0.3, -0.2, 0.5, 0.1, 0.9, 0.4])  # x[4] is the larger of x[4:]
    oracle_f = (sum(r * sympy.sin(e) for r, e in zip(rows, mixed.row(0))) + v[4] ** 2
                + sum(sympy.exp(e) for e in mixed))
    oracle = np.array(sympy.hessian(oracle_f, v).subs(dict(zip(v, point))), dtype=float)
    H = st.hessian(f, sparse=True)(point)
    np.testing.assert_allclose(H.toarray(), oracle, rtol=1e-12, atol=1e-14)
    # the pattern is structural: no larger than the oracle's support (x[5] may enter through
    # reduce_max, which can pick either entry)
    support = oracle != 0
    pattern = H.toarray() != 0
    assert (pattern <= support).all()
    assert H.nnz <= support.sum() + 3  # x[5]'s row and column through the max: at most 3 more


def test_the_colouring_is_the_same_greedy_colouring_with_or_without_scipy():
    from symtape.transforms.sparse import _colour_columns, _colour_columns_by_sets

    rng = np.random.default_rng(3)
    for size, density in [(1, 1.0), (30, 0.1), (120, 0.03), (60, 0.5)]:
        upper = np.triu(rng.random((size, size)) < density)
        pattern = upper | upper.T | np.eye(size, dtype=bool)
        csr = scipy.sparse.csr_matrix(pattern)
        colours = _colour_columns(csr.indptr, csr.indices)
        np.testing.assert_array_equal(colours, _colour_columns_by_sets(csr.indptr, csr.indices))
        for row in pattern:  # no two columns with a nonzero in one row share a colour
            assert len(set(colours[row])) == row.sum()


# ---------------------------------------------------------------- patterns against oracles


def finite_difference_hessian(f, x, h=1e-3):
    """The Hessian at ``x`` by central second differences of the value alone (an oracle that
    shares no code with the derivatives)."""
    n, step = len(x), np.eye(len(x)) * h

    def value(v):
        return float(f(st.constant(v)))

    hessian = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            hessian[i, j] = hessian[j, i] = (
                value(x + step[i] + step[j]) - value(x + step[i] - step[j])
                - value(x - step[i] + step[j]) + value(x - step[i] - step[j])) / (4 * h * h)
    return hessian


def finite_difference_support(f, x):
    """Where the Hessian is nonzero at ``x`` (by second differences)."""
    return np.abs(finite_difference_hessian(f, x)) > 1e-5


DATA = np.random.default_rng(21).normal(size=(7, 12))
TAKE = np.array([3, 0, 5, 5, 1, 11, 7])


def chained_indexing(x):
    y = x[TAKE]  # a gather with a repeated index
    z = y[1:5][::-1]
    return st.reduce_sum(st.sin(z * y[:4])) + st.reduce_sum(st.exp(x[::3][1:] * x[1::3][:-1]))


def slices_concat_reshape(x):
    m = st.transpose(st.reshape(x, (3, 4)))  # (4, 3)
    tail = st.reshape(st.concat([x[10:], x[:1]], 0), (1, 3))
    parts = st.concat([m[:2, :] ** 2, tail * m[3:, :]], 0)  # (3, 3)
    rows = st.reduce_sum(parts, axis=1)  # one sum per row
    return st.reduce_sum(st.tanh(rows) * st.cos(x[4]))


def matmul_with_data(x):
    return st.reduce_sum(st.softplus(st.matmul(st.constant(DATA), x))) + st.reduce_sum(x ** 4)


def where_and_maximum(x):
    kept = st.where(x[:6] > x[6:], x[:6] ** 3, st.sin(x[6:]))
    return st.reduce_sum(kept) + st.reduce_sum(st.maximum(x[1:], x[:-1]) ** 2) \
        + st.reduce_max(st.exp(x[4:8])) * x[0]


def outer_product(x):
    return st.reduce_sum(st.sin(st.reshape(x[:4], (4, 1)) * st.reshape(x[4:8], (1, 4)))) \
        + st.reduce_sum(st.reduce_sum(st.reshape(x, (2, 6)), axis=0) ** 3)


def weights_through_data(x):
    z = st.matmul(st.constant(DATA[:, :4]), st.reshape(x, (4, 3)))  # a column per output
    by_column = st.reduce_sum(st.exp(z), axis=0)  # each depends on one column of weights
    return (st.reduce_sum(st.sin(z[::2, 1:])) + st.reduce_sum(by_column ** 2 * by_column[0])
            + st.reduce_sum(st.square(st.transpose(z)[2] * z[:, 2])))


@pytest.mark.parametrize("f, exact", [(chained_indexing, True), (slices_concat_reshape, True),
                                      (matmul_with_data, True), (outer_product, True),
                                      (weights_through_data, True), (where_and_maximum, False)])
def test_pattern_contains_every_nonzero_of_the_hessian(f, exact):
    # at random points, the finite-difference Hessian's nonzeros lie in the detected pattern;
    # for smooth functions without max/where the pattern is exactly their union
    rng = np.random.default_rng(8)
    H = st.hessian(f, sparse=True)
    support = np.zeros((12, 12), dtype=bool)
    for _ in range(3):
        x = rng.uniform(-1.5, 1.5, 12)
        m = H(x)
        pattern = np.zeros((12, 12), dtype=bool)
        pattern[tuple(zip(*stored_pattern(m)))] = True
        observed = finite_difference_support(f, x)
        assert not (observed & ~pattern).any(), np.argwhere(observed & ~pattern)
        support |= observed
    if exact:
        np.testing.assert_array_equal(pattern, support)


def test_common_structures_are_detected_exactly():
    n = 9
    # a separable sum: diagonal, one colour
    H = st.hessian(lambda x: st.reduce_sum(st.sin(x) * x ** 2 + st.exp(x)), sparse=True)
    m = H(np.linspace(-1, 1, n))
    assert stored_pattern(m) == {(i, i) for i in range(n)} and H._last.colours == 1
    # a dense matmul with data (logistic regression): every entry, a colour per column
    X, y = RNG.normal(size=(30, n)), (RNG.random(30) < 0.5) * 1.0

    def logistic(w, X, y):
        z = st.matmul(X, w)
        return st.reduce_sum(st.softplus(z) - y * z) + 0.5 * st.reduce_sum(w * w)

    H = st.hessian(logistic, sparse=True)
    w = RNG.normal(size=n)
    m = H(w, X, y)
    assert m.nnz == n * n and H._last.colours == n
    p = 1 / (1 + np.exp(-(X @ w)))
    np.testing.assert_allclose(m.toarray(), X.T @ ((p * (1 - p))[:, None] * X) + np.eye(n),
                               rtol=1e-12)
    # a matrix of weights through data: entries couple within a column of W only
    W = RNG.normal(size=(4, 3))
    H = st.hessian(lambda W: st.reduce_sum(st.softplus(st.matmul(st.constant(X[:, :4]), W))),
                   sparse=True)
    expected = {(a, b) for a in range(12) for b in range(12) if a % 3 == b % 3}
    assert stored_pattern(H(W)) == expected and H._last.colours == 4


def test_softmax_regression_is_dense_and_exact():
    # multinomial logistic regression: W (features x classes) through many rows of data;
    # by hand, H = sum_i kron(x_i x_i^T, diag(p_i) - p_i p_i^T) + 2 I over W flattened
    X = RNG.normal(size=(500, 4))
    W = 0.3 * RNG.normal(size=(4, 3))

    def loss(W, X):
        z = st.matmul(X, W)
        return st.reduce_sum(st.log(st.reduce_sum(st.exp(z), axis=1))) + st.reduce_sum(W * W)

    m = st.hessian(loss, sparse=True)(W, X)
    p = np.exp(X @ W)
    p /= p.sum(axis=1, keepdims=True)
    expected = sum(np.kron(np.outer(x, x), np.diag(q) - np.outer(q, q)) for x, q in zip(X, p))
    assert m.nnz == 144
    np.testing.assert_allclose(m.toarray(), expected + 2 * np.eye(12), rtol=1e-11, atol=1e-12)


def test_a_condition_carries_no_derivative():
    # x[0] decides which branch, but no derivative flows through the comparison
    H = st.hessian(lambda x: st.reduce_sum(st.where(x[0] > 0, x[1:] ** 3, st.sin(x[1:]))),
                   sparse=True)
    for x0 in (1.0, -1.0):
        x = np.array([x0, 0.3, -0.4, 0.5])
        m = H(x)
        assert stored_pattern(m) == {(1, 1), (2, 2), (3, 3)}
        expected = 6 * x[1:] if x0 > 0 else -np.sin(x[1:])
        np.testing.assert_allclose(m.diagonal()[1:], expected, rtol=1e-14)


def test_zero_size_and_scalar_pieces():
    def f(x):
        empty = st.concat([x[:0], x[5:5] * 2.0], 0)  # nothing from x
        counted = st.reduce_sum(st.cast(x[4:] > 0, st.float64))  # piecewise constant
        return st.reduce_sum(empty) + x[2] ** 2 * x[3] + counted ** 2

    m = st.hessian(f, sparse=True)(np.arange(6.0))
    # by hand: d2/dx2^2 = 2 x3, d2/dx2 dx3 = 2 x2; the count has no derivative
    assert stored_pattern(m) == {(2, 2), (2, 3), (3, 2)}
    np.testing.assert_allclose(m.toarray()[2:4, 2:4], [[6.0, 4.0], [4.0, 0.0]])


# random chains of structural ops on a vector of 8: each step maps the current value on,
# keeping values moderate (second differences stay accurate)
# "data" multiplies by columns of _WIDE: as many as the longest chain has rows (8, and 2 more
# a "gather", for the 5 steps before a last "data"; DATA's 12 were too few for `-m slow`)
_WIDE = np.random.default_rng(21).normal(size=(3, 8 + 2 * 5))
STEPS = {
    "reverse": lambda a: a[::-1],
    "tail": lambda a: a[1:] if a.shape[0] > 1 else a,
    "gather": lambda a: a[(np.arange(a.shape[0] + 2) * 3 + 1) % a.shape[0]],  # repeats
    "fold": lambda a: st.reshape(a, (-1,)) if a.ndim == 2 else
    st.reshape(a, (2, -1)) if a.shape[0] % 2 == 0 else a,
    "transpose": lambda a: st.transpose(a) if a.ndim == 2 else a,
    "mix": lambda a: a * st.sin(a[::-1]),
    "row_sums": lambda a: a * st.tanh(st.reduce_sum(a, axis=-1, keepdims=True)),
    "data": lambda a: st.matmul(st.constant(_WIDE[:, :a.shape[0]] / a.shape[0]), a),
    "concat": lambda a: st.concat([a, a[:1] * 0.5], 0),
    "where": lambda a: st.where(a > 0, a * st.tanh(a), a * st.sin(a)),  # smooth at 0
}


def _chain(names):
    def f(x):
        a = x
        for name in names:
            a = STEPS[name](a)
        return st.reduce_sum(st.sin(a) * st.cos(0.5 * a) + st.tanh(a) ** 2)  # bounded

    return f


def _check_chain(names, seed):
    f = _chain(names)
    x = np.random.default_rng(seed).uniform(-1.2, 1.2, 8)
    m = st.hessian(f, sparse=True)(x)
    pattern = np.zeros((8, 8), dtype=bool)
    pattern[tuple(zip(*stored_pattern(m)))] = True
    # second differences at h and h/2, extrapolated (Richardson): good to O(h^4)
    oracle = (4 * finite_difference_hessian(f, x, 5e-4) - finite_difference_hessian(f, x)) / 3
    assert not ((np.abs(oracle) > 1e-5) & ~pattern).any(), names  # a superset of the nonzeros
    # the values too: a pattern missing an entry would mix entries of one colour
    scale = max(1.0, np.abs(oracle).max())
    np.testing.assert_allclose(m.toarray(), oracle, rtol=1e-4, atol=1e-5 * scale,
                               err_msg=str(names))


@settings(max_examples=5, deadline=None)
@given(names=hs.lists(hs.sampled_from(sorted(STEPS)), min_size=1, max_size=4),
       seed=hs.integers(0, 2**16))
def test_random_chains_of_structural_ops_against_finite_differences(names, seed):
    _check_chain(names, seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@example(names=["concat"] * 5 + ["data"], seed=0)  # 13 rows: DATA had 12 columns
@example(names=["gather"] * 5 + ["data"], seed=0)  # 18 rows
@given(names=hs.lists(hs.sampled_from(sorted(STEPS)), min_size=1, max_size=6),
       seed=hs.integers(0, 2**16))
def test_random_chains_of_structural_ops_against_finite_differences_many(names, seed):
    _check_chain(names, seed)
