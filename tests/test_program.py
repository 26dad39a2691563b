"""symtape.kernels.program: traced graphs compiled into vectorized, batch-aware kernels — every
structural op called with batch axes against a per-point NumPy loop, gradients against
central differences, the kernel source, the structural cache, dtypes and errors."""

import numpy as np
import pytest
import scipy.special

import symtape as st
from symtape.kernels.program import Program
from symtape.kernels.trace import placeholder

RNG = np.random.default_rng(7)

# (name, symtape function, NumPy re-implementation, core shapes of the arguments)
CASES = [
    ("slices", lambda x: x[1:] * x[:-1], lambda x: x[1:] * x[:-1], [(5,)]),
    ("ellipsis", lambda x: x[..., 0] * x[..., -1], lambda x: x[..., 0] * x[..., -1], [(3, 4)]),
    ("int_and_step", lambda x: x[1, ::-2] + x[0, 1], lambda x: x[1, ::-2] + x[0, 1], [(3, 5)]),
    ("newaxis", lambda x: x[:, None] * x[None, :], lambda x: x[:, None] * x[None, :], [(4,)]),
    ("int_array", lambda x: x[np.array([2, 0, 2])] ** 2, lambda x: x[np.array([2, 0, 2])] ** 2,
     [(4,)]),
    ("sum_axis0", lambda x: st.reduce_sum(st.sin(x), axis=0), lambda x: np.sin(x).sum(axis=0),
     [(3, 4)]),
    ("sum_keepdims", lambda x: st.reduce_sum(x, axis=-1, keepdims=True) * x,
     lambda x: x.sum(axis=-1, keepdims=True) * x, [(3, 4)]),
    ("sum_tuple", lambda x: st.reduce_sum(x * x, axis=(0, 2)), lambda x: (x * x).sum(axis=(0, 2)),
     [(2, 3, 4)]),
    ("sum_all", lambda x: st.reduce_sum(st.exp(x)), lambda x: np.exp(x).sum(), [(2, 3)]),
    ("mean", lambda x: st.reduce_mean(x, axis=1), lambda x: x.mean(axis=1), [(3, 4)]),
    ("max_min", lambda x: st.reduce_max(x, axis=0) - st.reduce_min(x, axis=1),
     lambda x: x.max(axis=0) - x.min(axis=1), [(3, 3)]),
    ("reshape", lambda x: st.reshape(x, (2, -1)) * st.reshape(x, (2, 6))[:, ::-1],
     lambda x: x.reshape(2, -1) * x.reshape(2, 6)[:, ::-1], [(3, 4)]),
    ("transpose", lambda x: st.matmul(st.transpose(x), x), lambda x: x.T @ x, [(3, 4)]),
    ("transpose_perm", lambda x: st.transpose(x, (1, 2, 0)) * 2.0,
     lambda x: np.transpose(x, (1, 2, 0)) * 2.0, [(2, 3, 4)]),
    ("concat0", lambda x, y: st.concat([x, y], 0), lambda x, y: np.concatenate([x, y], 0),
     [(2, 3), (4, 3)]),
    ("concat_last", lambda x: st.concat([x, st.sin(x)], axis=-1),
     lambda x: np.concatenate([x, np.sin(x)], -1), [(2, 3)]),
    ("stack0", lambda x, y: st.stack([x, y, x * y]), lambda x, y: np.stack([x, y, x * y]),
     [(3,), (3,)]),
    ("stack1", lambda x, y: st.stack([x, y], axis=1), lambda x, y: np.stack([x, y], 1),
     [(3,), (3,)]),
    ("stack_scalars", lambda x: st.stack([x[0] * x[1], st.sin(x[0])]),
     lambda x: np.stack([x[0] * x[1], np.sin(x[0])]), [(2,)]),
    ("matvec", lambda a, x: st.matmul(a, x), lambda a, x: a @ x, [(3, 4), (4,)]),
    ("vecmat", lambda x, a: st.matmul(x, a), lambda x, a: x @ a, [(3,), (3, 4)]),
    ("vecvec", lambda x, y: st.matmul(x, y), lambda x, y: x @ y, [(4,), (4,)]),
    ("matmat", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3), (3, 4)]),
    ("matmat_transposed", lambda a, b: st.matmul(a, b, transpose_b=True),
     lambda a, b: a @ b.T, [(2, 3), (4, 3)]),
    ("tensordot", lambda a, b: st.tensordot(a, b, axes=1), lambda a, b: np.tensordot(a, b, 1),
     [(2, 3), (3, 4)]),
    ("outer_broadcast", lambda x, y: x[:, None] + st.cos(y), lambda x, y: x[:, None] + np.cos(y),
     [(3,), (4,)]),
    ("scalar_times_vector", lambda s, x: s * x + s, lambda s, x: s * x + s, [(), (4,)]),
    ("vector_plus_matrix", lambda v, m: st.tanh(v * m), lambda v, m: np.tanh(v * m),
     [(4,), (3, 4)]),
    ("where_maximum", lambda x, y: st.where(x > y, x * y, st.maximum(x, -y)),
     lambda x, y: np.where(x > y, x * y, np.maximum(x, -y)), [(5,), (5,)]),
    ("mixed_chain", lambda x, a: st.reduce_sum(st.matmul(a, x[:3]) * st.reduce_sum(
        st.reshape(st.concat([x, x[1:] * x[:-1], st.stack([x[..., 0], st.sin(x[2])])], 0),
                   (3, 3)), axis=0)) + st.matmul(x, x),
     lambda x, a: np.sum(a @ x[:3] * np.concatenate(
         [x, x[1:] * x[:-1], [x[0], np.sin(x[2])]]).reshape(3, 3).sum(0)) + x @ x,
     [(4,), (3, 3)]),
    ("ellipsis_middle", lambda x: x[0, ..., 1] * 2.0, lambda x: x[0, ..., 1] * 2.0, [(2, 3, 4)]),
    ("bool_mask", lambda x: x[np.array([True, False, True])] ** 2,
     lambda x: x[np.array([True, False, True])] ** 2, [(3,)]),
    ("bool_mask2d", lambda x: x[np.array([[True, False], [False, True]])] * 3.0,
     lambda x: x[np.array([[True, False], [False, True]])] * 3.0, [(2, 2)]),
    ("list_index", lambda x: x[[0, 2]] * x[1], lambda x: x[[0, 2]] * x[1], [(3,)]),
    ("int_array_2d", lambda x: x[:, np.array([1, 0, 1])],
     lambda x: x[:, np.array([1, 0, 1])], [(2, 3)]),
    ("adjacent_int_arrays", lambda x: x[np.array([0, 1]), np.array([2, 0])],
     lambda x: x[np.array([0, 1]), np.array([2, 0])], [(2, 3)]),
    ("keepdims_none", lambda x: st.reduce_sum(x, keepdims=True) * x,
     lambda x: x.sum(keepdims=True) * x, [(2, 3)]),
    ("sum_neg2", lambda x: st.reduce_sum(x, axis=-2), lambda x: x.sum(axis=-2), [(2, 3, 4)]),
    ("max_all", lambda x: st.reduce_max(x) * x, lambda x: x.max() * x, [(2, 3)]),
    ("reshape_scalar", lambda x: st.reshape(x, ()) * 2.0, lambda x: x.reshape(()) * 2.0, [(1,)]),
    ("reshape_from_scalar", lambda x: st.reshape(x, (1, 1)) * 2.0,
     lambda x: np.reshape(x, (1, 1)) * 2.0, [()]),
    ("transpose3", lambda x: st.transpose(x) + 0.0, lambda x: np.transpose(x) + 0.0, [(2, 3, 4)]),
    ("matmul_batched_core", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 2, 3), (3, 4)]),
    ("matmul_b_batched_core", lambda a, b: st.matmul(a, b),
     lambda a, b: a @ b, [(2, 3), (5, 3, 4)]),
    ("tensordot_lists", lambda a, b: st.tensordot(a, b, axes=[[0], [1]]),
     lambda a, b: np.tensordot(a, b, axes=[[0], [1]]), [(3, 2), (4, 3)]),
    ("tensordot0", lambda a, b: st.tensordot(a, b, axes=0),
     lambda a, b: np.tensordot(a, b, axes=0), [(2,), (3,)]),
    ("one_hot_mix", lambda x: st.one_hot(np.array([0, 2]), 3) * x,
     lambda x: np.eye(3)[[0, 2]] * x, [(3,)]),
    ("range_const", lambda x: st.cast(st.range(3), st.float64) * x,
     lambda x: np.arange(3.0) * x, [(3,)]),
    ("pow_tensor", lambda x, y: st.pow(st.abs(x) + 0.5, y),
     lambda x, y: (np.abs(x) + 0.5) ** y, [(3,), (3,)]),
    ("atan2_erf", lambda x, y: st.atan2(x, y) + st.erf(x * y),
     lambda x, y: np.arctan2(x, y) + scipy.special.erf(x * y), [(3,), ()]),
    ("mean_all", lambda x: st.reduce_mean(x) - x, lambda x: x.mean() - x, [(4,)]),
    ("concat_mid", lambda x, y: st.concat([x, y], axis=1),
     lambda x, y: np.concatenate([x, y], 1), [(2, 1, 3), (2, 2, 3)]),
    ("stack_last", lambda x, y: st.stack([x, y], axis=-1),
     lambda x, y: np.stack([x, y], -1), [(2, 3), (2, 3)]),
    ("index_neg", lambda x: x[-1] - x[-2], lambda x: x[-1] - x[-2], [(4, 2)]),
    ("scalar_index_scalar_out", lambda x: x[2], lambda x: x[2], [(4,)]),
    ("relu_sign_abs", lambda x: st.relu(x) * st.sign(x) + st.abs(x),
     lambda x: np.maximum(x, 0) * np.sign(x) + np.abs(x), [(4,)]),
    ("minimum_scalar", lambda x: st.minimum(x, 0.3) + st.maximum(0.1, x),
     lambda x: np.minimum(x, 0.3) + np.maximum(0.1, x), [(4,)]),
    ("square_sqrt", lambda x: st.sqrt(st.square(x) + 1.0), lambda x: np.sqrt(x * x + 1.0), [(4,)]),
]
IDS = [c[0] for c in CASES]


def per_point(np_fn, args, batch):
    """The NumPy function at every point of the batch, stacked."""
    out = [np_fn(*[a[idx] if np.ndim(a) > len(core) else a for a, core in args])
           for idx in np.ndindex(*batch)]
    return np.array(out).reshape(batch + np.shape(out[0]))


def mapped(fn, depth: int, in_axes=0):
    """``fn`` under ``depth`` nested ``st.vmap``s: a batch of ``depth`` leading axes."""
    for _ in range(depth):
        fn = st.vmap(fn, in_axes=in_axes)
    return fn


def draw(shapes, batch):
    return [RNG.uniform(-1.5, 1.5, batch + core) for core in shapes]


@pytest.mark.parametrize("name, st_fn, np_fn, shapes", CASES, ids=IDS)
def test_unbatched_trace_matches_numpy(name, st_fn, np_fn, shapes):
    f = st.function(st_fn)
    for _ in range(2):  # the trace and the kernel
        args = draw(shapes, ())
        np.testing.assert_allclose(f(*args).numpy(), np_fn(*args), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("batch", [(6,), (2, 3)])
@pytest.mark.parametrize("name, st_fn, np_fn, shapes", CASES, ids=IDS)
def test_batched_call_matches_a_per_point_loop(name, st_fn, np_fn, shapes, batch):
    f = st.function(st_fn)
    f(*draw(shapes, ()))
    args = draw(shapes, batch)
    got = mapped(f, len(batch))(*args).numpy()
    expected = per_point(np_fn, list(zip(args, shapes)), batch)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name, st_fn, np_fn, shapes", CASES, ids=IDS)
def test_only_some_arguments_batched(name, st_fn, np_fn, shapes):
    f = st.function(st_fn)
    f(*draw(shapes, ()))
    batch = (5,)
    args = draw(shapes[:1], batch) + draw(shapes[1:], ())
    got = st.vmap(f, in_axes=(0,) + (None,) * (len(shapes) - 1))(*args).numpy()
    expected = per_point(np_fn, list(zip(args, shapes)), batch)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)


def central_gradient(np_fn, args, weight, h=1e-6):
    """d/dargs sum(weight * np_fn(*args)) by central differences, one entry at a time."""
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a)
        for idx in np.ndindex(*np.shape(a)):
            plus = [np.array(b, dtype=float) for b in args]
            minus = [np.array(b, dtype=float) for b in args]
            plus[i][idx] += h
            minus[i][idx] -= h
            g[idx] = (np.sum(weight * np_fn(*plus)) - np.sum(weight * np_fn(*minus))) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("name, st_fn, np_fn, shapes", CASES, ids=IDS)
def test_batched_gradients_match_central_differences(name, st_fn, np_fn, shapes):
    point = draw(shapes, ())
    weight = RNG.normal(size=np.shape(np_fn(*point)))
    nums = tuple(range(len(shapes)))
    g = st.grad(lambda *a: st.reduce_sum(st_fn(*a) * weight), argnums=nums)
    g(*point)
    batch = (3,)
    args = draw(shapes, batch)
    got = st.vmap(g)(*args)
    for k in range(batch[0]):
        fd = central_gradient(np_fn, [a[k] for a in args], weight)
        for i in nums:
            assert got[i].shape == batch + shapes[i]
            np.testing.assert_allclose(got[i][k], fd[i], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- Program directly


def test_program_with_placeholders_and_batches():
    x = placeholder(np.array([1.0, 2.0, 3.0]), "x")
    y = placeholder(np.asarray(2.0)[()], "y")
    program = Program([x, y], [st.reduce_sum(st.sin(x) * y), x[1:] * y], {})
    xs, ys = RNG.normal(size=(4, 3)), RNG.normal(size=4)
    total, tail = program([xs, ys])
    np.testing.assert_allclose(total, np.sin(xs).sum(1) * ys, rtol=1e-14)
    np.testing.assert_allclose(tail, xs[:, 1:] * ys[:, None], rtol=1e-14)
    assert program.batch_shape([xs, ys]) == (4,)
    assert program.batch_shape([xs[0], ys[0]]) == ()
    assert program.argument_shapes == [(3,), ()]
    assert program.output_shapes == [(), (2,)]


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_matrix_times_a_batch_of_vectors_and_columns(batch):
    # one data matrix meeting batched vectors (a Hessian's seeds): a single matrix product,
    # against NumPy point by point
    A = RNG.normal(size=(5, 3))
    x = placeholder(np.ones(3), "x")
    c = placeholder(np.ones((3, 1)), "c")
    program = Program([x, c], [st.matmul(st.constant(A), x), st.matmul(st.constant(A), c),
                               st.matmul(st.constant(A.T), st.matmul(st.constant(A), x))], {})
    xs, cs = RNG.normal(size=batch + (3,)), RNG.normal(size=batch + (3, 1))
    vector, column, twice = program([xs, cs])
    assert vector.shape == batch + (5,) and column.shape == batch + (5, 1)
    for index in np.ndindex(*batch):
        np.testing.assert_allclose(vector[index], A @ xs[index], rtol=1e-13)
        np.testing.assert_allclose(column[index], A @ cs[index], rtol=1e-13)
        np.testing.assert_allclose(twice[index], A.T @ (A @ xs[index]), rtol=1e-13)


def test_program_reads_variables_at_call_time():
    v = st.Variable([1.0, -1.0], name="v")
    x = placeholder(np.array([0.5, 0.5]), "x")
    program = Program([x], [x * v], {})
    assert program.variables == [v]
    np.testing.assert_array_equal(program([np.array([2.0, 3.0])])[0], [2.0, -3.0])
    v.assign([4.0, 5.0])
    np.testing.assert_array_equal(program([np.array([2.0, 3.0])])[0], [8.0, 15.0])
    # a batched call with a Variable: the Variable has no batch axes, x has
    np.testing.assert_array_equal(program([np.ones((3, 2))])[0], [[4.0, 5.0]] * 3)


def test_program_shape_errors_name_the_expected_shape():
    x = placeholder(np.zeros((2, 3)), "x")
    program = Program([x], [x * 2.0], {})
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        program([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        program([np.zeros(3)])


def test_function_reading_a_variable_can_be_mapped():
    v = st.Variable([1.0, 2.0, 3.0], name="v")
    f = st.vmap(lambda x: st.reduce_sum(x * v))
    xs = RNG.normal(size=(5, 3))
    np.testing.assert_allclose(f(xs).numpy(), xs @ [1.0, 2.0, 3.0], rtol=1e-14)
    v.assign([0.0, 0.0, 1.0])  # read at call time
    np.testing.assert_allclose(f(xs).numpy(), xs[:, 2], rtol=1e-14)


def test_constant_outputs_broadcast_to_the_batch():
    f = st.vmap(lambda x: (st.constant([1.0, 2.0]), x * 0.0 + 1.0, st.zeros((2, 2))))
    a, b, c = f(np.zeros((4, 3)))
    assert a.shape == (4, 2) and b.shape == (4, 3) and c.shape == (4, 2, 2)
    np.testing.assert_array_equal(a.numpy(), [[1.0, 2.0]] * 4)
    # outputs are writable arrays, not read-only broadcast views
    a.numpy()[0, 0] = 5.0


def test_separated_integer_array_indices_have_no_batched_form():
    f = st.function(lambda x: x[np.array([0, 1]), :, np.array([1, 0])])
    x = RNG.normal(size=(2, 3, 2))
    np.testing.assert_array_equal(f(x).numpy(), x[np.array([0, 1]), :, np.array([1, 0])])
    with pytest.raises(ValueError, match="no batched form; st.vmap cannot map it"):
        st.vmap(f)(RNG.normal(size=(4, 2, 3, 2)))


# ---------------------------------------------------------------- source and cache


def test_kernel_source_is_vectorized_for_long_vectors():
    f = st.function(lambda x: st.reduce_sum(st.exp(x[1:]) * st.sin(x[:-1])) + st.reduce_sum(x * x))
    x = RNG.normal(size=50_000)
    expected = np.sum(np.exp(x[1:]) * np.sin(x[:-1])) + x @ x
    assert float(f(x)) == pytest.approx(expected, rel=1e-12)
    source = f.get_concrete_function(x).source
    assert source.startswith("def kernel(")
    assert len(source) < 1000 and len(source.splitlines()) < 15
    assert "49999" not in source


def test_identical_graphs_share_a_kernel_and_different_constants_do_not():
    x = np.array([1.0, 2.0])  # constants no other test uses: the first is a miss
    info = st.kernel_cache_info()
    a = st.function(lambda x: x * 2.0 + st.constant([1.5, 1.5]))(x)
    mid = st.kernel_cache_info()
    b = st.function(lambda x: x * 2.0 + st.constant([1.5, 1.5]))(x)
    after = st.kernel_cache_info()
    assert mid.misses == info.misses + 1 and after.hits == mid.hits + 1
    assert a.numpy().tolist() == b.numpy().tolist() == [3.5, 5.5]
    # a different scalar or array constant is a different kernel, with its own values
    c = st.function(lambda x: x * 3.0 + st.constant([1.5, 1.5]))
    d = st.function(lambda x: x * 2.0 + st.constant([7.0, -1.0]))
    for _ in range(2):
        assert c(x).numpy().tolist() == [4.5, 7.5]
        assert d(x).numpy().tolist() == [9.0, 3.0]


def test_same_structure_different_parameters_are_different_kernels():
    f = st.function(lambda x: st.reduce_sum(x, axis=0))
    g = st.function(lambda x: st.reduce_sum(x, axis=1))
    x = np.arange(6.0).reshape(2, 3)
    for _ in range(2):
        assert f(x).numpy().tolist() == [3.0, 5.0, 7.0]
        assert g(x).numpy().tolist() == [3.0, 12.0]


@pytest.mark.parametrize("depth", [2000, pytest.param(20_000, marks=pytest.mark.slow)])
def test_deep_chain_compiles_and_evaluates(depth):  # deeper than the inline bound and recursion

    def f(x):
        for _ in range(depth):
            x = st.sin(x) * 0.5 + 0.25
        return x

    expected = 0.3
    for _ in range(depth):
        expected = np.sin(expected) * 0.5 + 0.25
    g = st.function(f)
    g(0.1)
    assert float(g(0.3)) == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(g(np.array([0.3, 0.3])).numpy(), [expected] * 2, rtol=1e-13)


# ---------------------------------------------------------------- dtypes


def test_integer_and_boolean_outputs_keep_their_dtypes():
    f = st.function(lambda x: (x * 2, x > 1, st.cast(x, st.float32)))
    for _ in range(2):
        a, b, c = f(np.array([1, 2, 3]))
        assert a.dtype == np.int64 and a.numpy().tolist() == [2, 4, 6]
        assert b.dtype == np.bool_ and b.numpy().tolist() == [False, True, True]
        assert c.dtype == np.float32


def test_float32_kernels_do_not_upcast():
    f = st.function(lambda x: st.sqrt(x) * 0.1 + st.exp(-x) / 3.0 + st.softplus(x))
    x = RNG.uniform(0.1, 2.0, (4, 3)).astype(np.float32)
    f(x[0])
    out = f(x)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out.numpy(), np.sqrt(x64) * 0.1 + np.exp(-x64) / 3.0
                               + np.logaddexp(0, x64), rtol=1e-6)


def test_a_weak_float_trace_and_an_array_call_are_separate_signatures():
    calls = []

    def f(x):
        calls.append(1)
        return x * 0.5

    g = st.function(f)
    g(2.0)
    out = g(np.array([2.0, 4.0]))
    assert out.dtype == np.float64 and out.numpy().tolist() == [1.0, 2.0]
    assert len(calls) == 2
    assert st.vmap(g)(np.array([2.0, 4.0])).numpy().tolist() == [1.0, 2.0]


def test_functions_sharing_a_kernel_read_their_own_variables():
    v1, v2 = st.Variable(2.0, name="v1"), st.Variable(5.0, name="v2")
    f1 = st.function(lambda x: x * v1 + 1.0)
    f2 = st.function(lambda x: x * v2 + 1.0)  # the same graph: one cached kernel
    for _ in range(2):
        assert float(f1(3.0)) == 7.0 and float(f2(3.0)) == 16.0
    v1.assign(-1.0)
    assert float(f1(3.0)) == -2.0 and float(f2(3.0)) == 16.0


def test_identity_output_does_not_alias_the_argument():
    f = st.function(lambda x: x)
    a = np.array([1.0, 2.0])
    for _ in range(2):
        out = f(a).numpy()
        np.testing.assert_array_equal(out, a)
        assert not np.shares_memory(out, a)


def test_value_gradient_and_hessian_compiled_together_share_subexpressions():
    @st.function
    def f_grad_hess(x):
        with st.GradientTape() as outer:
            outer.watch(x)
            with st.GradientTape() as inner:
                inner.watch(x)
                y = st.exp(st.sin(x))
            g = inner.gradient(y, x)
        return y, g, outer.gradient(g, x)

    value, grad, hess = f_grad_hess(0.4)
    s, c = np.sin(0.4), np.cos(0.4)
    # by hand: (e^sin)' = cos e^sin, (e^sin)'' = (cos^2 - sin) e^sin
    np.testing.assert_allclose([value.numpy(), grad.numpy(), hess.numpy()],
                               [np.exp(s), c * np.exp(s), (c * c - s) * np.exp(s)], rtol=1e-14)
    source = f_grad_hess.get_concrete_function(0.4).source
    # sin(x) and exp(sin(x)) are computed once for all three outputs
    assert source.count("sin(") == 1 and source.count("exp(") == 1


# ---------------------------------------------------------------- float literals in float ops


def _eager_and_kernel(fun, *values):
    """(what the ops compute eagerly, what the traced kernel computes, its source)."""
    eager = fun(*[st.constant(v) for v in values])
    xs = [placeholder(v, f"x{i}") for i, v in enumerate(values)]
    program = Program(xs, list(fun(*xs)), {})
    return [t.numpy() for t in eager], program(list(values)), program.source


def _literal_mix(x, i):
    return (200 * (x - x * x) - 2 * (1 - x) + x * 3,  # float: 200.0, 2.0, 1.0, 3.0
            i * 3 + 2 - i * 5,  # integer arithmetic stays integer: 3, 2, 5
            i / 4)  # int / int: a float result of integer operands: 4 stays


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (4,)])
def test_integer_literals_meeting_floats_print_as_floats_with_the_same_results(dtype, shape):
    x = (np.linspace(-1.5, 2.5, 4).reshape(-1)[:int(np.prod(shape))].reshape(shape)
         .astype(dtype))
    i = np.arange(3, 3 + int(np.prod(shape))).reshape(shape)
    eager, kernel, source = _eager_and_kernel(_literal_mix, x, i)
    for e, k in zip(eager, kernel):
        assert np.asarray(k).dtype == e.dtype
        np.testing.assert_array_equal(k, e)
    assert [e.dtype for e in eager] == [np.dtype(dtype), np.dtype(np.int64), np.dtype(np.float64)]
    assert "200.0*(" in source and "2.0*(1.0 - " in source and "*3.0" in source
    assert "*3 + 2 - " in source and "*5" in source and "4.0" not in source


def test_float_literals_keep_python_float_arithmetic_bit_identical():
    """On Python floats (scalar Variables are read as floats) 200.0*x is 200*x."""
    v = st.Variable(1.2345678901234567, name="v")
    f = st.function(lambda: 200 * (v - v * v) ** 2 - 3 * v / 7)
    expected = 200 * (1.2345678901234567 - 1.2345678901234567 ** 2) ** 2 - 3 * 1.2345678901234567 / 7
    assert f().numpy() == np.float64(expected)
    assert "200.0*" in f.get_concrete_function().source
