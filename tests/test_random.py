"""st.random inside traced functions: unseeded draws refuse to be frozen into a kernel."""

import numpy as np
import pytest

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
