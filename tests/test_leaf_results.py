"""The Tensors a compiled function returns behave as Tensors in every respect.

``st.function`` wraps its kernel's results with ``symtape.core.tensor.leaf_tensors``, which
makes lean leaves (fields a plain leaf never changes are read from their class). These tests
take such results and use them every way a Tensor is used, the ways that write a field
included (``tape.watch``, ``name=`` labels, the ``.expr`` memo, automatic matrix names).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import sympy

import symtape as st
from symtape.core.tensor import Tensor, make_symbol
from helpers import rosenbrock_gradient_function


def rosen_der(x):
    """The gradient of Rosenbrock's function, by hand."""
    g = np.zeros_like(x)
    g[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


X0 = np.array([0.5, 1.5, -0.25, 2.0])


@pytest.fixture
def gradients():
    """The results of an st.function: the gradient over scalar Variables (at X0)."""
    gradient = rosenbrock_gradient_function([st.Variable(v, name=f"x{i}")
                                             for i, v in enumerate(X0)])
    gradient()  # the trace; the next call runs the kernel only
    results = gradient()
    assert all(type(r) is not Tensor for r in results)  # the lean leaves are what is tested
    return results


@pytest.fixture
def vector():
    """An st.function's vector result: [1.5, -2.0, 3.25]."""
    f = st.function(lambda a: a * 2.0 - 1.0)
    f(np.zeros(3))
    result = f(np.array([1.25, -0.5, 2.125]))
    assert type(result) is not Tensor
    return result


def test_the_results_are_tensors_with_the_right_values(gradients):
    assert all(isinstance(g, st.Tensor) for g in gradients)
    assert not isinstance(gradients[0], st.Variable)
    np.testing.assert_allclose([g.numpy() for g in gradients], rosen_der(X0), rtol=1e-13)
    assert [g.shape for g in gradients] == [()] * 4
    assert gradients[0].dtype == np.float64 and gradients[0].device == "/cpu:0"


def test_repr_str_and_type_name_are_a_tensors(gradients):
    g = gradients[3]  # 200 * (2 - 0.25**2) = 387.5
    assert repr(g) == "<st.Tensor: shape=(), dtype=float64, numpy=387.5>"
    assert str(g) == "st.Tensor(387.5, shape=(), dtype=float64)"
    assert type(g).__name__ == "Tensor"
    with pytest.raises(TypeError, match=r"^Tensor is unhashable"):
        hash(g)


def test_a_result_is_a_plain_leaf(vector):
    assert vector.primitive is None and vector.inputs == () and vector.params == {}
    assert vector.source is None and vector.name is None
    assert vector.weak is False and vector.symbolic is False


def test_expr_is_the_exact_number_and_is_kept(gradients, vector):
    g = gradients[3]
    assert g.expr == sympy.Rational(775, 2) and g.expr is g.expr  # the second read comes from the memo
    assert vector.expr == sympy.Array([sympy.Rational(3, 2), -2, sympy.Rational(13, 4)])
    x = st.Variable(2.0, name="x")
    assert (x * vector[0]).expr == sympy.Rational(3, 2) * sympy.Symbol("x", real=True)


def test_matrix_expr_names_an_unnamed_result_as_a_constant(vector):
    m = vector.matrix_expr
    assert isinstance(m, sympy.MatrixSymbol) and m.shape == (3, 1)
    assert vector.name == str(m.name) and vector.name.startswith("C")
    assert vector.matrix_expr == m  # the name stays
    np.testing.assert_array_equal(vector.numpy(), [1.5, -2.0, 3.25])


def test_arithmetic_and_ops(gradients, vector):
    g0 = gradients[0]  # -400*0.5*(1.5 - 0.25) - 2*(1 - 0.5) = -251
    assert float(g0) == -251.0
    assert float(g0 * 2 + 1) == -501.0 and float(-g0) == 251.0
    assert float(st.reduce_sum(vector)) == 2.75
    np.testing.assert_allclose((st.sin(vector) * vector).numpy(),
                               np.sin([1.5, -2.0, 3.25]) * [1.5, -2.0, 3.25], rtol=1e-15)
    assert float(vector @ vector) == 1.5 ** 2 + 4.0 + 3.25 ** 2


def test_a_result_fixes_its_dtype_as_tensors_do(gradients):
    x32 = st.Variable(1.0, dtype=st.float32, name="x32")
    with pytest.raises(TypeError, match=r"mul: operands have dtypes float32 and float64; "
                                        r"symtape does not mix dtypes silently"):
        x32 * gradients[0]  # a float64 Tensor is not weak: it does not follow float32
    f = st.function(lambda a: a * 2.0)
    f(np.ones(3, np.float32))
    r32 = f(np.array([1.0, 2.0, 3.0], np.float32))
    y = r32 * np.array([1.0, 0.5, 0.25])  # NumPy data follows the Tensor's dtype
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), np.array([2.0, 2.0, 1.5], np.float32))


def test_a_constant_scalar_result_as_exponent_is_a_plain_power():
    f = st.function(lambda a: a + 1.0)
    f(1.0)
    two = f(1.0)
    x = st.Variable(3.0, name="x")
    y = x ** two
    assert y.primitive.name == "powc" and y.params["exponent"] == 2
    assert y.expr == sympy.Symbol("x", real=True) ** 2 and float(y) == 9.0


def test_convert_to_tensor_and_constant_pass_a_result_through(vector):
    assert st.convert_to_tensor(vector) is vector
    assert st.convert_to_tensor(vector, st.float64) is vector
    assert st.constant(vector) is vector
    named = st.constant(vector, name="k")
    assert named.name == "k" and vector.name is None
    np.testing.assert_array_equal(named.numpy(), vector.numpy())


def test_a_name_label_names_a_new_node_not_the_result(vector):
    s = st.sin(vector, name="s")
    assert s.name == "s" and vector.name is None
    np.testing.assert_allclose(np.array(s.expr.tolist(), dtype=float),  # a constant's value
                               np.sin([1.5, -2.0, 3.25]), rtol=1e-15)
    same = st.cast(vector, st.float64, name="c")  # an op that returns its operand as it is
    assert same.name == "c" and same is not vector and vector.name is None
    np.testing.assert_array_equal(same.numpy(), vector.numpy())


def test_watched_on_a_tape_a_result_is_a_source(gradients):
    g = gradients[0]  # -251
    with st.GradientTape() as tape:
        tape.watch(g)
        y = st.sin(g) * g ** 2
    assert type(g) is Tensor  # made a full Tensor to become a symbol of its own
    assert g.symbolic and g.source is g and g.name.startswith("c")
    (a,) = y.expr.free_symbols
    assert a.name == g.name and y.expr == sympy.sin(a) * a ** 2
    dy = tape.gradient(y, g)
    assert sympy.simplify(dy.expr - sympy.diff(sympy.sin(a) * a ** 2, a)) == 0
    np.testing.assert_allclose(float(dy), np.cos(-251.0) * 251.0 ** 2 - 2 * 251.0 * np.sin(-251.0),
                               rtol=1e-12)


def test_a_result_not_watched_is_unconnected(gradients):
    x = st.Variable(1.0, name="x")
    with st.GradientTape() as tape:
        y = x * gradients[0]
    dx, dg = tape.gradient(y, [x, gradients[0]])
    assert float(dx) == -251.0 and dg is None


def test_make_symbol_on_a_result_after_its_expr_was_cached():
    f = st.function(lambda a: a * 1.0)
    f(1.0)
    r = f(-2.0)
    assert r.expr == -2  # cached as a number ...
    make_symbol(r, "a")
    a = sympy.Symbol("a", real=True)
    assert r.expr == a and (r * 3).expr == 3 * a  # ... and replaced by the symbol
    assert r.name == "a" and r.source is r and r.symbolic
    assert float(r * 3) == -6.0


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trips(vector, protocol):
    vector.matrix_expr  # gives it a name, which must survive
    back, again = pickle.loads(pickle.dumps([vector, vector], protocol=protocol))
    assert back is again and isinstance(back, st.Tensor)
    assert back.name == vector.name
    np.testing.assert_array_equal(back.numpy(), [1.5, -2.0, 3.25])
    assert back.expr == sympy.Array([sympy.Rational(3, 2), -2, sympy.Rational(13, 4)])
    assert back.primitive is None and back.source is None and not back.symbolic


def test_copy_and_deepcopy(vector):
    shallow = copy.copy(vector)
    assert shallow is not vector and shallow.array is vector.array
    deep = copy.deepcopy([vector, vector])
    assert deep[0] is deep[1] and deep[0].array is not vector.array
    np.testing.assert_array_equal(deep[0].numpy(), vector.numpy())
    assert float(st.reduce_sum(shallow * deep[0])) == 1.5 ** 2 + 4.0 + 3.25 ** 2


def test_a_result_as_the_argument_of_another_compiled_function(gradients, vector):
    f = st.function(lambda a, b: st.reduce_sum(a * b))
    assert float(f(vector, vector)) == 1.5 ** 2 + 4.0 + 3.25 ** 2
    assert float(f(gradients[0], vector)) == -251.0 * 2.75
    assert vector.name is None and not vector.symbolic  # the trace did not touch it


def test_results_as_an_optimizers_gradients(gradients):
    xs = [st.Variable(v, name=f"y{i}") for i, v in enumerate(X0)]
    st.optimizers.SGD(learning_rate=0.001).apply_gradients(zip(gradients, xs))
    np.testing.assert_allclose([x.numpy() for x in xs], X0 - 0.001 * rosen_der(X0), rtol=1e-13)


def test_a_variable_takes_a_result(vector):
    v = st.Variable(np.zeros(3), name="v")
    v.assign(vector)
    np.testing.assert_array_equal(v.numpy(), [1.5, -2.0, 3.25])


def test_results_of_a_function_that_assigns_are_tensors_too():
    v = st.Variable(1.0, name="v")

    @st.function
    def step():
        v.assign_sub(0.25)
        return v * 2.0

    results = [step() for _ in range(3)]
    assert [float(r) for r in results] == [1.5, 1.0, 0.5]
    assert all(isinstance(r, st.Tensor) for r in results)
    assert repr(results[-1]) == "<st.Tensor: shape=(), dtype=float64, numpy=0.5>"


def test_many_results_are_made_with_no_collection_and_the_collector_state_is_kept():
    import gc

    from symtape.core.tensor import built_uncollected

    xs = [st.Variable(float(i), name=f"g{i}") for i in range(400)]
    doubled = st.function(lambda: [x * 2.0 for x in xs])
    doubled()
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        gc.set_threshold(20)  # 400 new Tensors would start some 20 collections
        out = doubled()
        during = len(collections)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(count)
    assert during <= 2 and gc.isenabled()
    assert [t.numpy() for t in out] == [2.0 * i for i in range(400)]
    gc.disable()
    try:
        doubled()
        assert not gc.isenabled()  # a paused collector stays paused
    finally:
        gc.enable()

    def failing(tensors):
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        built_uncollected(failing, [np.float64(1.0)])
    assert gc.isenabled()
