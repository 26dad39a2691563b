"""GradientTape semantics beyond the tutorials: scoping, higher orders, scale, errors."""

import sys

import numpy as np
import pytest
import sympy

import symtape as st

X, Y = sympy.symbols("x y", real=True)


def test_ops_before_the_tape_are_constants_for_it():
    x = st.Variable(3.0, name="x")
    y = x * x  # recorded by no tape
    with st.GradientTape() as tape:
        z = y * x
    g = tape.gradient(z, x)
    assert float(g) == 9.0  # y is a constant 9 for this tape, as in TensorFlow
    assert z.expr == X**3  # .expr still knows the whole computation


def test_gradient_with_respect_to_an_intermediate_tensor():
    x = st.Variable(2.0, name="x")
    with st.GradientTape(persistent=True) as tape:
        u = st.sin(x)
        y = u * u
    assert np.isclose(float(tape.gradient(y, u)), 2 * np.sin(2.0), rtol=1e-15)
    assert tape.gradient(y, u).expr == 2 * sympy.sin(X)


def test_unwatched_constant_source_gives_none():
    c = st.constant(2.0)
    x = st.Variable(1.0)
    with st.GradientTape() as tape:
        y = c * x
    assert tape.gradient(y, c) is None


def test_third_derivative_with_three_tapes():
    x = st.Variable(0.5, name="x")
    with st.GradientTape() as t3:
        with st.GradientTape() as t2:
            with st.GradientTape() as t1:
                y = st.sin(x) * x
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    oracle = sympy.diff(sympy.sin(X) * X, X, 3)
    assert sympy.simplify(d3.expr - oracle) == 0
    assert np.isclose(float(d3), float(oracle.subs(X, 0.5)), rtol=1e-13)


def test_gradient_inside_persistent_tape_is_recorded_by_it():
    x = st.Variable(2.0, name="x")
    with st.GradientTape(persistent=True) as tape:
        y = x**3
        dy = tape.gradient(y, x)
    assert float(tape.gradient(dy, x)) == 12.0  # d/dx 3x^2 at 2


def test_hessian_blocks_for_several_sources():
    x, y = st.Variable(1.0, name="x"), st.Variable(2.0, name="y")
    with st.GradientTape() as tape:
        f = x**2 * y + st.sin(y)
    blocks = tape.hessian(f, [x, y])
    oracle = sympy.hessian(X**2 * Y + sympy.sin(Y), [X, Y])
    for i in range(2):
        for j in range(2):
            assert sympy.simplify(blocks[i][j].expr - oracle[i, j]) == 0
            assert np.isclose(float(blocks[i][j]), float(oracle[i, j].subs({X: 1.0, Y: 2.0})),
                              rtol=1e-14)


def test_hessian_matches_nested_tapes():
    x = st.Variable([0.3, -0.7, 1.1], name="x")
    w = st.constant([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 1.0, 1.0]])

    def f():
        return st.reduce_sum(st.tanh(w @ x) ** 2) + st.reduce_sum(x**4) / 4

    with st.GradientTape() as tape:
        value = f()
    h = tape.hessian(value, x)
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            value = f()
        g = inner.gradient(value, x)
    nested = outer.jacobian(g, x)
    np.testing.assert_allclose(h.numpy(), nested.numpy(), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), h.numpy().T, rtol=1e-12)


def test_hessian_unconnected_blocks():
    x, y = st.Variable(1.0, name="x"), st.Variable([1.0, 2.0], name="y")
    with st.GradientTape(persistent=True) as tape:
        f = x**3
    assert tape.hessian(f, [x, y])[0][1] is None
    zero = tape.hessian(f, [x, y], unconnected_gradients="zero")
    assert zero[0][1].shape == (2,) and zero[1][1].shape == (2, 2)
    assert float(zero[0][0]) == 6.0


def test_hessian_of_linear_function_is_zero_not_none():
    x = st.Variable([1.0, 2.0], name="x")
    with st.GradientTape() as tape:
        f = st.reduce_sum(3 * x)
    h = tape.hessian(f, x, unconnected_gradients="zero")
    np.testing.assert_array_equal(h.numpy(), np.zeros((2, 2)))


def test_jacobian_of_unconnected_source():
    x, z = st.Variable([1.0, 2.0]), st.Variable(3.0)
    with st.GradientTape(persistent=True) as tape:
        y = x * 2
    assert tape.jacobian(y, z) is None
    assert tape.jacobian(y, z, unconnected_gradients="zero").shape == (2,)


def test_deep_chain_has_no_recursion_limit():
    depth = 3 * sys.getrecursionlimit()
    x = st.Variable(0.1, name="x")
    with st.GradientTape() as tape:
        y = x
        for _ in range(depth):
            y = y * 0.999 + 0.001
    g = tape.gradient(y, x)
    assert np.isclose(float(g), 0.999**depth, rtol=1e-10)
    assert g.expr == sympy.Rational(999, 1000) ** depth
    forward = y.expr  # builds: symtape gives SymPy the recursion room 3000 levels need
    assert isinstance(forward, sympy.Add) and forward.args[0] == sympy.Rational(1, 1000)


def test_long_accumulated_sum_is_one_flat_add():
    xs = [st.Variable(float(i), name=f"x{i}") for i in range(10_000)]
    with st.GradientTape() as tape:
        total = st.constant(0.0)
        for i, x in enumerate(xs):
            total = total + (i % 7) * x
    expr = total.expr
    assert isinstance(expr, sympy.Add) and len(expr.args) == 10_000 - 10_000 // 7 - 1
    grads = tape.gradient(total, xs[:8])
    assert [float(g) for g in grads] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


def test_same_name_for_two_sources_is_an_error_in_expr_only():
    a, b = st.Variable(1.0, name="dup"), st.Variable(2.0, name="dup")
    with st.GradientTape() as tape:
        y = a * b
    ga, gb = tape.gradient(y, [a, b])
    assert (float(ga), float(gb)) == (2.0, 1.0)  # numbers are unaffected
    with pytest.raises(ValueError, match="both named 'dup'"):
        _ = y.expr


def test_gradient_of_a_variable_with_respect_to_itself():
    x = st.Variable([1.0, 2.0])
    with st.GradientTape() as tape:
        tape.watch(x)
    np.testing.assert_array_equal(tape.gradient(x, x).numpy(), [1.0, 1.0])


def test_reentering_a_persistent_tape_keeps_recording():
    x = st.Variable(2.0)
    tape = st.GradientTape(persistent=True)
    with tape:
        y = x * x
    with tape:
        z = y * x
    assert float(tape.gradient(z, x)) == 12.0  # d/dx x^3


def test_tape_cannot_be_entered_twice_at_once():
    tape = st.GradientTape()
    with tape:
        with pytest.raises(ValueError, match="already recording"):  # TensorFlow's type
            with tape:
                pass


def test_stop_recording_outside_the_tape_is_an_error():
    tape = st.GradientTape()
    with pytest.raises(RuntimeError, match="not recording"):
        with tape.stop_recording():
            pass


@pytest.mark.parametrize("bad, message", [
    (lambda tape, y, x: tape.gradient(y, 3.0), "sources must be Variables or Tensors"),
    (lambda tape, y, x: tape.gradient(2.0, x), "target must be Tensors or Variables"),
    (lambda tape, y, x: tape.gradient(y, x, unconnected_gradients="zeros"), "'none' or 'zero'"),
    (lambda tape, y, x: tape.gradient(y, x, output_gradients=[1.0, 2.0]), "2 entries for 1"),
    (lambda tape, y, x: tape.gradient(y, x, output_gradients=st.constant([1.0, 2.0])),
     r"shape \(2,\) does not match"),
    (lambda tape, y, x: tape.batch_jacobian(y, x), "must have rank at least 2"),
    (lambda tape, y, x: tape.watch(1.0), "wrap values with st.constant"),
])
def test_bad_arguments_have_clear_errors(bad, message):
    x = st.Variable(1.0)
    with st.GradientTape(persistent=True) as tape:
        y = x * x
    with pytest.raises((TypeError, ValueError), match=message):
        bad(tape, y, x)


def test_failed_call_does_not_use_up_a_tape_after_validation_errors_are_fixed():
    x = st.Variable(1.0)
    with st.GradientTape(persistent=True) as tape:
        y = x * x
    with pytest.raises(TypeError):
        tape.gradient(y, "x")
    assert float(tape.gradient(y, x)) == 2.0


def test_float32_gradients_stay_float32():
    x = st.Variable([1.0, 2.0], dtype=st.float32, name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.sin(x) * 0.1 + x**2)
    g = tape.gradient(y, x)
    assert g.dtype == st.float32
    np.testing.assert_allclose(g.numpy(), 0.1 * np.cos([1.0, 2.0]) + 2 * np.array([1.0, 2.0]),
                               rtol=1e-6)


def test_closed_form_is_built_lazily_and_memoized():
    x = st.Variable(1.0, name="x")
    with st.GradientTape() as tape:
        y = st.exp(x) * x
    assert y._sym is None  # recording builds no SymPy
    g = tape.gradient(y, x)
    assert g._sym is None  # neither does the numeric gradient
    first = g.expr
    assert first == sympy.exp(X) * X + sympy.exp(X)
    assert g.expr is first


def test_very_deep_closed_form_never_crashes_the_interpreter():
    # run apart: a C-stack overflow would kill the test process instead of failing a test
    import subprocess

    program = (
        "import symtape as st\n"
        "x = st.Variable(0.5, name='x')\n"
        "y = x\n"
        "for _ in range(30_000):\n"
        "    y = y * 0.999 + 0.001\n"
        "try:\n"
        "    y.expr\n"
        "    print('built')\n"
        "except RecursionError:\n"
        "    print('RecursionError')\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() in {"built", "RecursionError"}
