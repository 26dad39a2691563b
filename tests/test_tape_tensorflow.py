"""GradientTape behaviours a TensorFlow user relies on, as TensorFlow's own tape tests state them
(``tensorflow/python/eager/backprop_test.py``: reads, output gradients, empty and batch
Jacobians, what ``watch`` refuses, re-entry, ``watched_variables``' order).

Oracles: derivatives by hand (d cos(x) = -sin(x)) and ``sympy.diff``; TensorFlow's documented
shapes, dtypes and exception types."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symtape as st


# ---------------------------------------------------------------- read_value


def test_read_value_is_a_source_of_its_own():
    v = st.Variable(2.0, name="v")
    with st.GradientTape(persistent=True) as tape:
        r = v.read_value()
        y = r * 3.0
        z = r * 3.0 + v * v  # through the read and directly
    assert float(tape.gradient(y, r)) == 3.0
    assert float(tape.gradient(y, v)) == 3.0  # the read leads back to the Variable
    assert [float(g) for g in tape.gradient(z, [r, v])] == [3.0, 3.0 + 2 * 2.0]
    assert r.expr == sympy.Symbol("v", real=True)
    expected = sympy.diff(3 * r.expr + r.expr**2, r.expr)
    assert sympy.simplify(tape.gradient(z, v).expr - expected) == 0


def test_each_read_is_a_new_node_and_a_read_before_the_tape_is_a_constant_for_it():
    v = st.Variable(2.0, name="v")
    before = v.read_value()
    with st.GradientTape(persistent=True) as tape:
        first, second = v.read_value(), v.read_value()
        y = first * 5.0 + second * 7.0 + before * 11.0
    assert first is not second
    assert [float(tape.gradient(y, r)) for r in (first, second)] == [5.0, 7.0]
    assert tape.gradient(y, before) is None  # read outside the tape: not watched
    assert float(tape.gradient(y, v)) == 12.0


def test_a_read_watched_explicitly_is_a_source_without_the_variable():
    v = st.Variable(2.0, name="v")
    with st.GradientTape(watch_accessed_variables=False) as tape:
        r = v.read_value()
        tape.watch(r)
        y = r * r
    assert float(tape.gradient(y, r)) == 4.0


def test_read_value_inside_st_function_reads_the_current_value():
    v = st.Variable(2.0, name="v")
    f = st.function(lambda: v.read_value() * 3.0)
    assert float(f()) == 6.0
    v.assign(5.0)
    assert float(f()) == 15.0


# ---------------------------------------------------------------- output_gradients


def test_output_gradients_watched_by_an_outer_tape_are_differentiable():
    x, dy = st.constant(1.0, name="x"), st.constant(1.0, name="dy")
    with st.GradientTape() as outer:
        outer.watch(dy)  # only dy: the inner sweep reads nothing else the outer tape watches
        with st.GradientTape() as inner:
            inner.watch(x)
            y = st.cos(x)
        g = inner.gradient(y, x, output_gradients=dy)  # -sin(x) * dy
    assert float(g) == pytest.approx(-np.sin(1.0), rel=1e-15)
    d_dy = outer.gradient(g, dy)
    assert float(d_dy) == pytest.approx(-np.sin(1.0), rel=1e-15)
    X, DY = sympy.symbols("x dy", real=True)
    assert sympy.simplify(d_dy.expr.subs(X, 1) - sympy.diff(-sympy.sin(X) * DY, DY).subs(X, 1)) == 0


def test_output_gradients_and_sources_both_watched_give_mixed_second_derivatives():
    x, dy = st.constant(1.0, name="x"), st.constant(2.0, name="dy")
    with st.GradientTape(persistent=True) as outer:
        outer.watch([x, dy])
        with st.GradientTape() as inner:
            inner.watch(x)
            y = st.cos(x)
        g = inner.gradient(y, x, output_gradients=dy)
    assert float(outer.gradient(g, x)) == pytest.approx(-2.0 * np.cos(1.0), rel=1e-15)
    X, DY = sympy.symbols("x dy", real=True)
    assert sympy.simplify(outer.gradient(g, dy).expr - sympy.diff(-sympy.sin(X) * DY, DY)) == 0


def test_output_gradients_of_a_list_of_targets_weight_each():
    x = st.Variable(2.0, name="x")
    weights = [st.constant(3.0), st.constant(5.0)]
    with st.GradientTape(watch_accessed_variables=False) as outer:
        outer.watch(weights)
        with st.GradientTape() as inner:
            ys = [x * x, x * x * x]
        g = inner.gradient(ys, x, output_gradients=weights)  # 3 * 2x + 5 * 3x^2
    assert float(g) == 3 * 4.0 + 5 * 12.0
    assert [float(d) for d in outer.gradient(g, weights)] == [4.0, 12.0]


# ---------------------------------------------------------------- empty Jacobians


def test_jacobian_of_an_empty_target_is_an_empty_array():
    v = st.Variable(2.0, name="v")
    with st.GradientTape() as tape:
        y = v * st.zeros([0, 7])
    jacobian = tape.jacobian(y, v)
    assert jacobian.shape == (0, 7) and jacobian.dtype == np.float64


def test_jacobian_and_batch_jacobian_with_an_empty_source():
    x = st.zeros([1, 0])
    with st.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x**2
    assert tape.jacobian(y, x).shape == (1, 0, 1, 0)
    assert tape.batch_jacobian(y, x).shape == (1, 0, 0)  # TensorFlow: [1, 0, 0]


def test_an_empty_source_the_target_ignores_still_gets_an_empty_jacobian():
    v, empty = st.Variable(2.0, name="v"), st.Variable(np.zeros((2, 0)), name="e")
    with st.GradientTape() as tape:
        y = st.stack([v, v * v])
    jacobians = tape.jacobian(y, [v, empty])
    np.testing.assert_array_equal(jacobians[0].numpy(), [1.0, 4.0])
    assert jacobians[1].shape == (2, 2, 0)


# ---------------------------------------------------------------- batch_jacobian


@pytest.mark.parametrize("target_shape, source_shape, which", [
    ((2, 2), (2,), "source"), ((2,), (2, 2), "target")])
def test_batch_jacobian_needs_rank_two_and_says_so_before_using_up_the_tape(
        target_shape, source_shape, which):
    x = st.constant(np.ones(source_shape))
    with st.GradientTape() as tape:
        tape.watch(x)
        y = st.reshape(st.reduce_sum(x) * st.ones(target_shape), target_shape)
    with pytest.raises(ValueError, match=rf"batch_jacobian: the {which}'s shape .* must have "
                                         r"rank at least 2"):
        tape.batch_jacobian(y, x)
    assert tape.jacobian(y, x).shape == target_shape + source_shape  # the tape is still usable


@pytest.mark.parametrize("policy", ["none", "zero"])
@pytest.mark.parametrize("dtype", [st.float32, st.float64])
def test_batch_jacobian_of_an_unconnected_target_is_zeros_of_the_targets_dtype(dtype, policy):
    x = st.constant([[2.0]], dtype=dtype)
    with st.GradientTape() as tape:
        tape.watch(x)
        y = st.constant([[1.0]], dtype=dtype)  # does not depend on x
    jacobian = tape.batch_jacobian(y, x, unconnected_gradients=policy)
    assert jacobian.dtype == dtype
    np.testing.assert_array_equal(jacobian.numpy(), [[[0.0]]])


# ---------------------------------------------------------------- watch, re-entry, order


@pytest.mark.parametrize("bad, shown", [
    (np.array(1.0), "ndarray"), (1.0, "float"), (None, "None"), ("x", "str")])
def test_watch_refuses_what_is_not_a_tensor_with_a_value_error(bad, shown):
    with st.GradientTape() as tape:
        with pytest.raises(ValueError, match=f"expected Tensors or Variables, got .*{shown}"):
            tape.watch(bad)


def test_watch_refuses_the_whole_list_before_watching_any():
    c = st.constant(2.0)
    with st.GradientTape() as tape:
        with pytest.raises(ValueError, match="ndarray"):
            tape.watch([c, np.ones(2)])
        y = c * c
    assert tape.gradient(y, c) is None  # c was not watched


def test_watch_takes_nested_structures_of_tensors_and_variables():
    a, b, v = st.constant(1.0), st.constant(2.0), st.Variable(3.0)
    with st.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch({"pair": [a, (b,)], "v": v})
        y = a * b * v
    assert [float(g) for g in tape.gradient(y, [a, b, v])] == [6.0, 3.0, 2.0]


def test_reentering_an_active_tape_is_a_value_error_and_leaves_it_recording():
    x = st.Variable(3.0)
    tape = st.GradientTape()
    with tape:
        with pytest.raises(ValueError, match="already recording"):
            with tape:
                pass
        y = x * x
    assert float(tape.gradient(y, x)) == 6.0


def test_watched_variables_come_in_order_of_construction():
    first, second, third = st.Variable(1.0, name="a"), st.Variable(2.0, name="b"), \
        st.Variable(3.0, name="c")
    with st.GradientTape() as tape:
        y = third * second
        tape.watch(first)  # watched last, made first
    assert tape.watched_variables() == (first, second, third)
    with st.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch([third, first])
    assert tape.watched_variables() == (first, third)
