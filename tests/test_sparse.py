"""st.hessian(..., sparse=True): CSR matrices with exactly the structural nonzeros, values from
coloured Hessian-vector products — against scipy.optimize.rosen_hess, sympy.hessian and
hand-derived patterns."""

import numpy as np
import pytest
import scipy.sparse
import sympy
from scipy.optimize import rosen_hess, rosen_hess_prod

import symtape as st

RNG = np.random.default_rng(11)


def rosenbrock(x):
    return st.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def tridiagonal_pattern(n):
    i, j = np.nonzero(np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 1)
    return set(zip(i.tolist(), j.tolist()))


def stored_pattern(m):
    coo = m.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


def vector_symbols(expr, name, n):
    by_name = {str(s): s for s in expr.free_symbols}
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
    oracle_f = sum(100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2 for i in range(n - 1))
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
    from symtape.sparse import _colour_columns, _colour_columns_by_sets

    rng = np.random.default_rng(3)
    for size, density in [(1, 1.0), (30, 0.1), (120, 0.03), (60, 0.5)]:
        upper = np.triu(rng.random((size, size)) < density)
        pattern = upper | upper.T | np.eye(size, dtype=bool)
        rows = [list(np.nonzero(row)[0]) for row in pattern]
        colours = _colour_columns(rows, size)
        np.testing.assert_array_equal(colours, _colour_columns_by_sets(rows, size))
        for row in pattern:  # no two columns with a nonzero in one row share a colour
            assert len(set(colours[row])) == row.sum()
