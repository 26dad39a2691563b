"""st.random inside traced functions: unseeded draws refuse to be frozen into a kernel."""

import numpy as np
import pytest
import sympy

import symtape as st


def test_unseeded_draw_inside_a_trace_raises_with_the_fix():
    f = st.function(lambda x: x + st.random.normal(()))
    with pytest.raises(RuntimeError, match="pass them as an argument"):
        f(1.0)


def test_seeded_draw_inside_a_trace_is_one_fixed_value():
    f = st.function(lambda x: x + st.random.normal((), seed=7))
    expected = np.random.default_rng(7).normal(0.0, 1.0)
    assert float(f(1.0)) == pytest.approx(1.0 + expected)
    assert float(f(2.0)) == pytest.approx(2.0 + expected)  # the compiled call


def test_unseeded_draws_work_outside_traces():
    st.random.set_seed(3)
    a = st.random.uniform((3,)).numpy()
    st.random.set_seed(3)
    np.testing.assert_array_equal(a, st.random.uniform((3,)).numpy())


def test_name_labels_the_draw_and_a_watched_draw_is_a_symbol_of_that_name():
    noise = st.random.uniform((), seed=4, name="noise")
    assert noise.name == "noise"
    assert noise.expr.is_Number  # a constant is its value until a tape watches it
    with st.GradientTape() as tape:
        tape.watch(noise)
        y = 3.0 * noise
    assert tape.gradient(y, noise).expr == 3
    assert y.expr == 3 * sympy.Symbol("noise", real=True)
    with pytest.raises(TypeError, match="normal: name must be a non-empty str"):
        st.random.normal((2,), seed=0, name=7)
