"""Tensor and Variable: construction, dtypes, state, Python protocols, errors."""

import numpy as np
import pytest
import sympy

import symtape as st


def test_constant_default_dtypes_follow_numpy():
    assert st.constant(1.5).dtype == st.float64
    assert st.constant(2).dtype == st.int64
    assert st.constant(True).dtype == st.bool
    assert st.constant([1, 2]).dtype == st.int64
    assert st.constant(np.float32(1.0)).dtype == st.float32
    assert st.constant([1, 2], dtype="float32").dtype == st.float32


def test_constant_rejects_non_numeric_input():
    with pytest.raises(TypeError, match="cannot convert"):
        st.constant("abc")
    with pytest.raises(TypeError, match="not a dtype|not supported"):
        st.constant(1.0, dtype="complex128")


def test_numpy_returns_a_copy():
    v = st.Variable([1.0, 2.0])
    array = v.numpy()
    array[0] = 99.0
    assert v.numpy()[0] == 1.0
    t = st.constant([1.0, 2.0])
    t.numpy()[0] = 99.0
    assert t.numpy()[0] == 1.0


def test_numpy_of_scalar_is_a_zero_dim_array():
    out = st.constant(2.5).numpy()
    assert isinstance(out, np.ndarray) and out.shape == () and out == 2.5


def test_variable_properties():
    v = st.Variable(np.zeros((2, 3)), name="w", trainable=False)
    assert v.shape == (2, 3) and v.ndim == 2 and v.dtype == st.float64
    assert v.name == "w" and v.trainable is False and v.device == "/cpu:0"


def test_variable_auto_names_are_unique():
    a, b = st.Variable(1.0), st.Variable(1.0)
    assert a.name != b.name
    with st.GradientTape() as tape:
        y = a * b
    assert len(y.expr.free_symbols) == 2


def test_variable_from_callable_and_from_tensor():
    assert float(st.Variable(lambda: 3.0)) == 3.0
    assert st.Variable(st.constant([1, 2]), dtype=st.float64).dtype == st.float64


def test_variable_name_must_be_a_string():
    with pytest.raises(TypeError, match="non-empty str"):
        st.Variable(1.0, name=3)


def test_untrainable_variables_are_not_watched_automatically():
    v = st.Variable(1.0, trainable=False)
    with st.GradientTape() as tape:
        y = v * 2
    assert tape.gradient(y, v) is None
    assert tape.watched_variables() == ()


def test_value_is_a_snapshot_when_the_variable_changes():
    x = st.Variable(3.0, name="x")
    with st.GradientTape() as tape:
        y = x * x
    x.assign(10.0)
    assert float(y) == 9.0
    assert float(tape.gradient(y, x)) == 6.0  # the recorded point, as in TensorFlow
    assert y.expr == sympy.Symbol("x", real=True) ** 2


def test_assign_returns_the_variable_and_validates_dtype_kind():
    v = st.Variable([1.0, 2.0], dtype=st.float32)
    assert v.assign(np.array([3.0, 4.0])) is v  # NumPy float64 arrays convert within a kind
    assert v.dtype == st.float32
    with pytest.raises(TypeError, match="cannot convert"):
        v.assign(["a", "b"])
    np.testing.assert_array_equal(v.numpy(), np.array([3.0, 4.0], dtype=np.float32))


def test_assign_add_with_wrong_shape_leaves_value():
    v = st.Variable([1.0, 2.0])
    with pytest.raises(ValueError, match="does not match"):
        v.assign_add([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_tensors_are_unhashable_but_have_refs():
    t, v = st.constant(1.0), st.Variable(1.0)
    for obj in (t, v):
        with pytest.raises(TypeError, match="ref"):
            hash(obj)
    refs = {t.ref(): "t", v.ref(): "v"}
    assert refs[t.ref()] == "t" and refs[v.ref()] == "v"
    assert v.ref().deref() is v


def test_python_protocols():
    t = st.constant([1.0, 2.0, 3.0])
    assert len(t) == 3
    assert [float(e) for e in t] == [1.0, 2.0, 3.0]
    assert np.asarray(t).sum() == 6.0
    assert float(st.constant(2.5)) == 2.5 and int(st.constant(7)) == 7
    assert bool(st.constant(1.0)) is True
    assert f"{st.constant(0.125):.2f}" == "0.12"
    assert [10, 20, 30][st.constant(1)] == 20
    with pytest.raises(TypeError, match="scalar"):
        len(st.constant(1.0))


def test_repr_and_str():
    assert repr(st.constant(-2.0)) == "<st.Tensor: shape=(), dtype=float64, numpy=-2.0>"
    assert repr(st.Variable([1, 2], name="k")) == (
        "<st.Variable 'k' shape=(2,) dtype=int64, numpy=[1, 2]>")
    assert str(st.constant(1.5)) == "st.Tensor(1.5, shape=(), dtype=float64)"


def test_latex_repr_for_notebooks():
    x = st.Variable(1.0, name="x")
    assert (x / 2)._repr_latex_() == "$\\frac{x}{2}$"


def test_gradients_and_variables_render_as_latex_in_notebooks():
    x = st.Variable([1.0, 2.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.exp(x) * x)
    assert tape.gradient(y, x)._repr_latex_() == "$" + sympy.latex(sympy.Array(
        [sympy.exp(s) * s + sympy.exp(s) for s in x.expr])) + "$"
    assert x._repr_latex_() == r"$\left[\begin{matrix}x[0] & x[1]\end{matrix}\right]$"


def test_latex_repr_falls_back_to_the_repr_where_latex_would_not_help(monkeypatch):
    from symtape.core import tensor

    assert st.constant(np.zeros(tensor.LATEX_MAX_ENTRIES + 1))._repr_latex_() is None
    assert st.constant(np.zeros(tensor.LATEX_MAX_ENTRIES))._repr_latex_().startswith("$")
    x = st.Variable(np.ones(50), name="x")
    long_sum = st.reduce_sum(st.sin(x) * st.cos(x) ** 2)
    monkeypatch.setattr(tensor, "LATEX_MAX_CHARS", 100)
    assert long_sum._repr_latex_() is None
    monkeypatch.setattr(sympy, "latex", lambda e: 1 / 0)  # a display hook must never raise
    assert st.constant(1.0)._repr_latex_() is None


def test_variable_expr_is_its_symbol_array():
    w = st.Variable(np.zeros((2, 2)), name="W")
    expected = sympy.Array([[sympy.Symbol(f"W[{i},{j}]", real=True) for j in range(2)]
                            for i in range(2)])
    assert w.expr == expected
    assert all(s.is_real for s in w.expr.free_symbols)


def test_convert_to_tensor():
    v = st.Variable(2.0, name="v")
    assert st.convert_to_tensor(v).expr == sympy.Symbol("v", real=True)
    t = st.constant(1.0)
    assert st.convert_to_tensor(t) is t
    assert st.convert_to_tensor([1.0, 2.0]).shape == (2,)
    with pytest.raises(TypeError, match="st.cast"):
        st.convert_to_tensor(v, dtype=st.float32)


def test_constant_of_a_constant_takes_the_new_name_for_its_symbol():
    noise = st.random.normal((2,), seed=0)
    x = st.constant(noise, name="x")
    assert x.name == "x" and noise.name != "x"
    np.testing.assert_array_equal(x.numpy(), noise.numpy())
    with st.GradientTape() as tape:
        tape.watch(x)
        y = st.reduce_sum(x**2)
    assert tape.gradient(y, x).expr == sympy.Array([2 * sympy.Symbol("x[0]", real=True),
                                                    2 * sympy.Symbol("x[1]", real=True)])
    assert st.constant(noise) is noise  # no name: the same Tensor, as in TensorFlow


def test_a_constant_of_a_list_of_traced_numbers_says_to_pass_one_array():
    from symtape.kernels.trace import Trace, placeholder

    with Trace():  # as st.function traces a list argument: each number apart
        numbers = [placeholder(np.float64(1.0), "a"), placeholder(np.float64(2.0), "b")]
        with pytest.raises(TypeError, match=r"st.constant: the list holds Tensors traced one by "
                                            r"one .*pass the data as one array"):
            st.constant(numbers)


def test_leaf_tensors_are_the_tensors_the_constructor_makes():
    from symtape.core.tensor import Tensor, leaf_tensors

    values = [np.float64(1.5), np.arange(3), np.float32(2.0), 7]
    made = leaf_tensors(values)
    assert all(isinstance(t, Tensor) for t in made)  # of a lean subclass (tests/test_leaf_results.py)
    for lean, value in zip(made, values):
        plain = Tensor(value)
        for slot in Tensor.__slots__:  # every field, so a new one cannot be missed
            a, b = getattr(lean, slot), getattr(plain, slot)
            assert a is b or (type(a) is type(b) and a == b), slot
        assert lean._value is value
    assert made[0].expr == sympy.Rational(3, 2) and made[1].dtype == np.dtype(int)
    assert float(made[0] * 2) == 3.0 and made[2].dtype == st.float32
