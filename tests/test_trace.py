"""symtape.kernels.trace: placeholders, the active trace, Variable assignments recorded during a trace
and replayed after each kernel call, and Python control flow on traced values."""

import numpy as np
import pytest
import sympy

import symtape as st
from symtape.kernels.trace import Trace, active, placeholder

X = sympy.Symbol("x", real=True)


# ---------------------------------------------------------------- placeholders


def test_placeholder_is_a_named_symbolic_source():
    p = placeholder(np.array([1.0, 2.0]), "p")
    assert isinstance(p, st.Tensor) and p.shape == (2,) and p.dtype == np.float64
    p0, p1 = sympy.symbols("p[0] p[1]", real=True)
    assert sympy.simplify((p * p + 1.0).expr[1] - (p1**2 + 1)) == 0
    assert (st.reduce_sum(p)).expr == p0 + p1
    np.testing.assert_array_equal((p * 3.0).numpy(), [3.0, 6.0])
    s = placeholder(np.asarray(2.0)[()], "x", weak=True)
    assert sympy.simplify(st.sin(s).expr - sympy.sin(X)) == 0


def test_placeholders_are_differentiable_sources():
    x = placeholder(np.asarray(0.5)[()], "x")
    with st.GradientTape() as tape:
        tape.watch(x)
        y = st.exp(x) * x
    g = tape.gradient(y, x)
    assert sympy.simplify(g.expr - sympy.diff(sympy.exp(X) * X, X)) == 0
    assert float(g) == pytest.approx(np.exp(0.5) * 1.5, rel=1e-15)


# ---------------------------------------------------------------- the active trace


def test_active_trace_is_scoped_and_nested():
    assert active() is None
    with Trace() as outer:
        assert active() is outer
        with Trace() as inner:
            assert active() is inner
        assert active() is outer
    assert active() is None


def test_active_trace_is_reset_after_an_exception():
    with pytest.raises(RuntimeError):
        with Trace():
            raise RuntimeError("inside")
    assert active() is None

    def fails(x):
        raise RuntimeError("in the traced function")

    with pytest.raises(RuntimeError):
        st.function(fails)(1.0)
    assert active() is None
    p = placeholder(np.asarray(1.0)[()], "p")
    assert bool(p > 0)  # no trace is active any more: bool works again


# ---------------------------------------------------------------- assignments


def test_trace_records_first_original_and_last_assignment():
    u = st.Variable([1.0, 2.0], name="u")
    with Trace() as trace:
        u.assign_add([1.0, 1.0])
        u.assign(u * 3.0)
    (variable, new), = trace.assigned.values()
    assert variable is u
    np.testing.assert_array_equal(new.numpy(), [6.0, 9.0])  # (u + 1) * 3, by hand
    (variable, original), = trace.originals.values()
    assert variable is u
    np.testing.assert_array_equal(original, [1.0, 2.0])
    np.testing.assert_array_equal(u.numpy(), [6.0, 9.0])  # a trace runs eagerly


def test_reads_after_a_traced_assignment_stand_for_the_new_value():
    v = st.Variable(2.0, name="v")
    with Trace() as trace:
        v.assign_sub(0.5)
        read = v * 1.0
    # the read's lineage goes through an alias to the assigned Tensor
    assert len(trace.aliases) >= 1
    assert float(read) == 1.5
    assigned = trace.assigned[id(v)][1]
    assert float(assigned) == 1.5 and any(t is assigned for t in trace.aliases.values())


def test_assign_returns_the_variable_and_read_value_false_returns_none():
    v = st.Variable(1.0)
    seen = []

    @st.function
    def f(x):
        out = v.assign_add(x)
        seen.append(out is v)
        assert v.assign_sub(x, read_value=False) is None
        v.assign(v * 2.0)
        return v + 0.0

    assert float(f(3.0)) == 2.0  # (1 + 3 - 3) * 2
    assert float(f(3.0)) == 4.0
    assert float(v.numpy()) == 4.0
    assert seen == [True]


def test_failed_assignment_inside_a_trace_raises_and_changes_nothing():
    v = st.Variable([1.0, 2.0], name="v")

    @st.function
    def f(x):
        v.assign(st.stack([x, x, x]))
        return x

    with pytest.raises(ValueError, match="shape"):
        f(1.0)
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_assignments_from_variables_and_constants():
    a = st.Variable(1.0, name="a")
    b = st.Variable(10.0, name="b")

    @st.function
    def swap_like(x):
        a.assign(b)  # from another Variable
        b.assign(x)  # from an argument
        return a * 1.0

    assert float(swap_like(5.0)) == 10.0
    assert (float(a.numpy()), float(b.numpy())) == (10.0, 5.0)
    assert float(swap_like(7.0)) == 5.0  # the kernel reads b at call time
    assert (float(a.numpy()), float(b.numpy())) == (5.0, 7.0)
    b.assign(-1.0)
    assert float(swap_like(0.0)) == -1.0
    assert (float(a.numpy()), float(b.numpy())) == (-1.0, 0.0)


def test_assignment_keeps_the_variable_dtype():
    v = st.Variable(np.array([1.0, 2.0], dtype=np.float32))

    @st.function
    def f(x):
        v.assign_add(x * st.ones((2,), dtype=st.float32))
        return st.reduce_sum(v)

    for _ in range(3):
        out = f(np.float32(0.5))
    assert v.dtype == np.float32 and v.numpy().dtype == np.float32
    np.testing.assert_array_equal(v.numpy(), [2.5, 3.5])
    assert out.dtype == np.float32 and float(out) == 6.0


def test_expr_of_a_value_read_after_an_assignment_is_the_assigned_value():
    v = st.Variable(1.0, name="v")
    f = st.function(lambda x: v.assign_add(x) * 1.0)
    concrete = f.get_concrete_function(2.0)
    assert float(concrete(2.0)) == 3.0  # the kernel computes v + x
    V = sympy.Symbol("v", real=True)
    assert sympy.simplify(concrete.expr - (V + X)) == 0


def test_get_concrete_function_restores_every_assigned_variable():
    a = st.Variable(1.0)
    b = st.Variable([1.0, 1.0])
    c = st.Variable(3.0)  # read only

    def f(x):
        a.assign_add(x)
        a.assign(a * 2.0)
        b.assign_sub(st.stack([x, a]))
        return a + c

    concrete = st.function(f).get_concrete_function(2.0)
    assert float(a.numpy()) == 1.0 and b.numpy().tolist() == [1.0, 1.0]
    # the concrete function, called, does what the Python did: by hand a=(1+2)*2=6, b=[-1,-5]
    assert float(concrete(2.0)) == 9.0
    assert float(a.numpy()) == 6.0 and b.numpy().tolist() == [-1.0, -5.0]


def test_integer_step_counter_and_constant_assignments():
    step = st.Variable(0, dtype=st.int64)
    w = st.Variable(1.0)
    reset = st.Variable(0.0)

    @st.function
    def train(x):
        step.assign_add(1)
        w.assign(w * x)
        reset.assign(1.5)  # a value no input reaches
        return w

    outs = []
    for _ in range(3):
        reset.assign(-7.0)
        outs.append(float(train(2.0)))
    assert outs == [2.0, 4.0, 8.0]
    assert step.numpy().dtype == np.int64 and int(step.numpy()) == 3
    assert float(reset.numpy()) == 1.5


def test_functions_without_arguments():
    count = st.Variable(0.0)
    r = st.Variable([1.0, 2.0])
    increment = st.function(lambda: count.assign_add(1.0))
    read = st.function(lambda: r)
    assert [float(increment()) for _ in range(3)] == [1.0, 2.0, 3.0]
    assert float(count.numpy()) == 3.0
    assert read().numpy().tolist() == [1.0, 2.0]
    r.assign([5.0, 6.0])
    assert read().numpy().tolist() == [5.0, 6.0]


def test_a_variable_argument_can_be_assigned():
    u = st.Variable(1.0)
    g = st.function(lambda a: a.assign_add(1.0))
    assert float(g(u)) == 2.0
    assert float(g(u)) == 3.0 and float(u.numpy()) == 3.0


def test_mapped_call_of_an_assigning_function_is_refused():
    v = st.Variable([0.0, 0.0], name="v")
    f = st.function(lambda x: v.assign_add(x))
    f(np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="st.vmap: this function assigns Variables"):
        st.vmap(f)(np.ones((3, 2)))
    np.testing.assert_array_equal(v.numpy(), [1.0, 1.0])  # unchanged by the refused call


# ---------------------------------------------------------------- Python control flow


@pytest.mark.parametrize("body", [
    lambda x: x if x > 0 else -x,
    lambda x: (x > 0) and (x < 1),
    lambda x: (x > 0) or x,
    lambda x: not x,
    lambda x: [x for _ in range(3) if x],
])
def test_python_bool_of_a_traced_tensor_points_to_where(body):
    with pytest.raises(TypeError, match=r"st\.where"):
        st.function(body)(0.5)


def test_while_loop_on_a_traced_tensor_points_to_where():
    def f(x):
        while x < 10.0:
            x = x * 2.0
        return x

    with pytest.raises(TypeError, match=r"st\.where"):
        st.function(f)(1.0)
    assert float(f(st.constant(1.0))) == 16.0  # eagerly it is fine


def test_python_branch_on_a_variable_inside_a_trace_is_refused():
    v = st.Variable(1.0)
    f = st.function(lambda x: x if v > 0 else -x)
    with pytest.raises(TypeError, match=r"st\.where"):
        f(2.0)


def test_bool_outside_a_trace_and_of_untraced_values_works():
    p = placeholder(np.asarray(1.0)[()], "p")
    assert bool(p > 0)
    with Trace():
        with pytest.raises(TypeError, match=r"st\.where"):
            bool(p > 0)
        assert bool(st.constant(1.0) > 0)  # a constant does not depend on the inputs
    f = st.function(lambda x: x * 2.0 if st.constant(1.0) > 0 else x)
    assert float(f(3.0)) == 6.0


def test_where_replaces_the_branch_and_keeps_gradients():
    f = st.function(lambda x: st.where(x > 0, x * x, -x))
    df = st.grad(lambda x: st.where(x > 0, x * x, -x))
    for x0, value, slope in [(2.0, 4.0, 4.0), (-3.0, 3.0, -1.0)]:
        assert float(f(x0)) == value and float(df(x0)) == slope
    xs = np.array([-1.0, 0.5, 3.0])
    np.testing.assert_array_equal(f(xs).numpy(), [1.0, 0.25, 9.0])
    np.testing.assert_array_equal(st.vmap(df)(xs), [-1.0, 1.0, 6.0])


@pytest.mark.parametrize("escape", ["float", "int", "numpy", "variable", "float_variable"])
def test_host_values_of_traced_tensors_are_refused_not_frozen(escape):
    v = st.Variable(2.0)
    body = {"float": lambda x: x * float(x),
            "int": lambda x: x * int(x),
            "numpy": lambda x: x * x.numpy(),
            "variable": lambda x: x * v.numpy(),
            "float_variable": lambda x: x * float(v)}[escape]
    f = st.function(body)
    with pytest.raises(TypeError, match="frozen"):
        f(2.0)
    # eagerly, and outside any trace, host values are fine
    assert float(body(st.constant(3.0))) in (6.0, 9.0)
    assert float(st.constant(3.0)) == 3.0 and float(v) == 2.0


# ---------------------------------------------------------------- replaying a trace


def test_a_replayed_trace_computes_its_outputs_at_new_values():
    from symtape.kernels.trace import replay

    rng = np.random.default_rng(3)
    A = st.constant(rng.normal(size=(4, 3)), name="A")
    with Trace():
        x = placeholder(np.zeros(3), "x")
        b = placeholder(np.ones(4), "b")
        with st.GradientTape() as tape:
            tape.watch(x)
            y = st.reduce_sum(st.softplus(A @ x - b)) + st.reduce_sum(x * x)
        g = tape.gradient(y, x)
    run = replay([x, b], [y, g, st.transpose(A) @ A])  # the last only from constants
    x1, b1 = rng.normal(size=3), rng.normal(size=4)
    z = A.numpy() @ x1 - b1
    value, gradient, constant = run([x1, b1])
    assert value == pytest.approx(np.sum(np.logaddexp(0, z)) + x1 @ x1, rel=1e-14)
    np.testing.assert_allclose(gradient, A.numpy().T @ (1 / (1 + np.exp(-z))) + 2 * x1,
                               rtol=1e-13)
    np.testing.assert_array_equal(constant, A.numpy().T @ A.numpy())


def test_a_trace_that_reads_a_variable_is_not_replayed():
    from symtape.kernels.trace import replay

    v = st.Variable(2.0, name="v")
    with Trace():
        x = placeholder(np.ones(2), "x")
        y = st.reduce_sum(x * v)
    assert replay([x], [y]) is None
    assert replay([x], [x * 2.0]) is not None
