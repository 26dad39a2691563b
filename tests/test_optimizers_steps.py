"""An optimizer step is all or nothing, and bad arguments get errors that say the fix.

Interrupts are injected deterministically: a tracer raises ``KeyboardInterrupt`` at the k-th
line symtape runs during one step, for every k (Ctrl-C can land between any two lines), and
real SIGINTs are raised between two assignments. After each, every Variable, the optimizer's
state and ``iterations`` must be all as before the step or all as after it. The "after" state
is checked once against the hand-derived update."""

from __future__ import annotations

import math
import os
import signal
import sys

import numpy as np
import pytest

import symtape as st
from symtape.core.tensor import ACTIVE_TAPES, Variable

PACKAGE = os.path.dirname(st.__file__)


class _InterruptAtLine:
    """A ``sys.settrace`` tracer raising KeyboardInterrupt at the k-th line run in symtape."""

    def __init__(self, k: int | None):
        self.k = k
        self.lines = 0
        self.where = ""

    def __call__(self, frame, event, arg):
        code = frame.f_code
        # a tape's own __enter__/__exit__ are a few bytecodes that the `with` statement
        # cannot guard; everything else a step runs is fair game
        if not code.co_filename.startswith(PACKAGE) or code.co_name in ("__enter__", "__exit__"):
            return None
        return self._local

    def _local(self, frame, event, arg):
        if event == "line":
            self.lines += 1
            if self.lines == self.k:
                self.where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
                raise KeyboardInterrupt(f"injected at line {self.k}")
        return self._local


def _interrupted(step, k: int | None) -> tuple[bool, int, str]:
    """Run ``step`` with an interrupt at line ``k``: (whether it raised, lines counted, where
    the interrupt was raised)."""
    tracer = _InterruptAtLine(k)
    sys.settrace(tracer)
    try:
        step()
    except KeyboardInterrupt:
        return True, tracer.lines, tracer.where
    finally:
        sys.settrace(None)
    return False, tracer.lines, tracer.where


def _state(opt, variables) -> list:
    """Every value a step may change: the Variables, their optimizer state, the step count."""
    slots = [sorted((name, s.numpy().tolist()) for name, s in opt._slots.get(id(v), {}).items())
             for v in variables]
    return [v.numpy().tolist() for v in variables] + slots + [int(opt.iterations.numpy())]


def _sgd_problem(count: int = 3, momentum: float = 0.9):
    shapes = [(), (2,), (2, 3)] * (count // 3) + [(2,)] * (count % 3)
    variables = [st.Variable(np.full(shape, float(i + 1)), name=f"w{i}")
                 for i, shape in enumerate(shapes)]
    grads = [st.constant(np.full(v.shape, 0.5 * (i + 1))) for i, v in enumerate(variables)]
    opt = st.optimizers.SGD(0.1, momentum=momentum)
    return opt, variables, grads


def _check_every_interrupt(make, step, warm_steps: int, stride: int = 1) -> int:
    """Interrupt step ``warm_steps + 1`` at every ``stride``-th line; returns the lines seen."""
    opt, variables, grads = make()
    for _ in range(warm_steps):
        step(opt, variables, grads)
    before = _state(opt, variables)
    raised, total, _ = _interrupted(lambda: step(opt, variables, grads), None)
    after = _state(opt, variables)
    assert not raised and total > 50 and before != after
    for k in range(1, total + 1, stride):
        opt, variables, grads = make()
        for _ in range(warm_steps):
            step(opt, variables, grads)
        raised, _, where = _interrupted(lambda: step(opt, variables, grads), k)
        state = _state(opt, variables)
        assert ACTIVE_TAPES.get() == (), f"a tape was left recording by an interrupt at {where}"
        # a step that did not happen must have raised (an interrupt is never swallowed)
        assert (state == before and raised) or state == after, \
            f"a partial step when interrupted at {where} (line {k} of {total})"
    return total


def _apply(opt, variables, grads):
    opt.apply_gradients(zip(grads, variables))


def test_sgd_with_momentum_steps_all_variables_or_none_wherever_it_is_interrupted():
    # the second step (state exists) and the first (state is created during the step)
    for warm_steps in (1, 0):
        _check_every_interrupt(_sgd_problem, _apply, warm_steps)
    # and the "after" state is the hand-derived one: m = 0.9 m - 0.1 g, w += m, twice
    opt, variables, grads = _sgd_problem()
    _apply(opt, variables, grads)
    _apply(opt, variables, grads)
    for i, v in enumerate(variables):
        g = 0.5 * (i + 1)
        np.testing.assert_allclose(v.numpy(), (i + 1) - 0.1 * g - (0.9 * 0.1 * g + 0.1 * g),
                                   rtol=1e-15)
    assert int(opt.iterations.numpy()) == 2


def test_plain_sgd_over_forty_variables_is_never_left_half_stepped():
    total = _check_every_interrupt(lambda: _sgd_problem(count=40, momentum=0.0), _apply,
                                   warm_steps=1, stride=31)
    assert total > 40 * 10


def test_minimize_steps_all_or_nothing_wherever_it_is_interrupted():
    def minimize(opt, variables, grads):  # the loss, its gradient, then the step
        opt.minimize(lambda: sum(st.reduce_sum(g * v) for g, v in zip(grads, variables)),
                     variables)

    _check_every_interrupt(_sgd_problem, minimize, warm_steps=1)  # every line: the `with` too


def test_adam_steps_all_or_nothing_and_keeps_iterations_in_step():
    def make():
        opt, variables, grads = _sgd_problem()
        return st.optimizers.Adam(0.1), variables, grads

    _check_every_interrupt(make, _apply, warm_steps=1, stride=7)


def test_a_real_sigint_between_two_assignments_leaves_no_partial_step(monkeypatch):
    assign = Variable.assign
    calls = {"n": 0, "at": 0}

    def assign_then_sigint(self, value, read_value=True):
        out = assign(self, value, read_value)
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            signal.raise_signal(signal.SIGINT)  # Python's handler raises KeyboardInterrupt
        return out

    opt, variables, grads = _sgd_problem()
    _apply(opt, variables, grads)
    before = _state(opt, variables)
    monkeypatch.setattr(Variable, "assign", assign_then_sigint)
    _apply(opt, variables, grads)
    after, count = _state(opt, variables), calls["n"]
    for at in range(1, count + 1):
        calls.update(n=0, at=0)  # none during the first step
        opt, variables, grads = _sgd_problem()
        _apply(opt, variables, grads)
        calls.update(n=0, at=at)
        with pytest.raises(KeyboardInterrupt):
            _apply(opt, variables, grads)
        assert _state(opt, variables) in (before, after)


def test_a_sigint_while_a_step_is_being_undone_waits_until_it_is_undone(monkeypatch):
    # the first step fails on the third Variable; a Ctrl-C lands while the first two are
    # being put back: the undoing completes, then the KeyboardInterrupt arrives
    opt, variables, grads = _sgd_problem()
    _apply(opt, variables, grads)
    before = _state(opt, variables)
    assign = Variable.assign
    seen = {"undoing": False}

    def assign_failing(self, value, read_value=True):
        if self is variables[2] and not seen["undoing"]:
            seen["undoing"] = True
            raise RuntimeError("the third assignment fails")
        if seen["undoing"]:
            signal.raise_signal(signal.SIGINT)
        return assign(self, value, read_value)

    monkeypatch.setattr(Variable, "assign", assign_failing)
    with pytest.raises(KeyboardInterrupt):
        _apply(opt, variables, grads)
    monkeypatch.setattr(Variable, "assign", assign)
    assert _state(opt, variables) == before


def _newton_problem():
    x = st.Variable(2.0, name="x")
    opt = st.optimizers.Newton(sparse=False)
    loss = lambda: st.sqrt(1 + x * x)  # noqa: E731
    opt.minimize(loss, [x])  # compile the kernels once
    return opt, x, loss


def test_newton_is_never_left_at_a_rejected_trial_point():
    # sqrt(1 + x^2) from x = 2: the Newton step is -x(1 + x^2) = -10; the trials x = -8
    # (loss 8.06 against 2.24) and x = -3 are rejected, x = -0.5 (alpha = 1/4) is accepted
    opt, x, loss = _newton_problem()

    def step():
        opt.minimize(loss, [x])

    x.assign(2.0)
    start_iterations = int(opt.iterations.numpy())
    raised, total, _ = _interrupted(step, None)
    accepted = float(x.numpy())
    assert not raised and accepted == pytest.approx(-0.5, rel=1e-12)
    assert int(opt.iterations.numpy()) == start_iterations + 1
    for k in range(1, total + 1, 3):
        x.assign(2.0)
        iterations = int(opt.iterations.numpy())
        raised, _, where = _interrupted(step, k)
        state = (float(x.numpy()), int(opt.iterations.numpy()))
        assert (state == (2.0, iterations) and raised) or state == (accepted, iterations + 1), \
            f"interrupted at {where} (line {k} of {total}): {state}"


# ---------------------------------------------------------------- clear errors


@pytest.mark.parametrize("rate, error, message", [
    ("0.1", TypeError, r"got the str '0.1'; write learning_rate=0.1, a number"),
    (None, TypeError, r"learning_rate must be a positive number or a schedule .*got None"),
    ([0.1], TypeError, r"got the list \[0.1\]"),
    (True, TypeError, r"got the bool True"),
    (math.inf, ValueError, r"learning_rate must be finite and positive, got inf"),
    (math.nan, ValueError, r"learning_rate must be finite and positive, got nan"),
    (-0.1, ValueError, r"learning_rate must be finite and positive, got -0.1"),
    (0, ValueError, r"learning_rate must be finite and positive, got 0.0"),
])
@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "RMSprop", "Adagrad", "Newton"])
def test_bad_learning_rates_are_refused_with_the_fix(optimizer, rate, error, message):
    with pytest.raises(error, match=f"^{optimizer}: .*{message}"):
        getattr(st.optimizers, optimizer)(learning_rate=rate)


def test_a_learning_rate_set_later_is_checked_and_the_old_one_kept():
    opt = st.optimizers.Adam(0.01)
    with pytest.raises(TypeError, match="write learning_rate=0.5, a number"):
        opt.learning_rate = "0.5"
    assert opt.learning_rate == 0.01


def test_schedules_and_scalar_tensors_are_learning_rates_and_bad_schedule_values_are_named():
    x = st.Variable(1.0, name="x")
    st.optimizers.SGD(learning_rate=st.Variable(0.5)).apply_gradients([(st.constant(1.0), x)])
    assert float(x.numpy()) == 0.5
    opt = st.optimizers.SGD(learning_rate=lambda step: math.nan)
    with pytest.raises(ValueError, match=r"SGD: the learning-rate schedule's result: "
                                         r"learning_rate must be finite and positive, got nan"):
        opt.apply_gradients([(st.constant(1.0), x)])
    assert float(x.numpy()) == 0.5 and int(opt.iterations.numpy()) == 0


@pytest.mark.parametrize("make, error, message", [
    (lambda: st.optimizers.RMSprop(rho=2), ValueError,
     r"RMSprop: rho must be in \[0, 1\), got 2.0"),
    (lambda: st.optimizers.RMSprop(rho=1.0), ValueError, r"rho must be in \[0, 1\)"),
    (lambda: st.optimizers.RMSprop(momentum=-0.5), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: st.optimizers.RMSprop(epsilon=0.0), ValueError, r"epsilon must be in \(0, inf\)"),
    (lambda: st.optimizers.Adam(epsilon=0.0), ValueError,
     r"Adam: epsilon must be in \(0, inf\), got 0.0"),
    (lambda: st.optimizers.Adam(epsilon=-1e-7), ValueError, r"epsilon must be in \(0, inf\)"),
    (lambda: st.optimizers.Adam(epsilon=math.nan), ValueError,
     r"epsilon must be in \(0, inf\), got nan"),
    (lambda: st.optimizers.Adam(beta_1="0.9"), TypeError,
     r"beta_1 must be a number in \[0, 1\), got the str"),
    (lambda: st.optimizers.Adam(beta_2=1.0), ValueError, r"beta_2 must be in \[0, 1\), got 1.0"),
    (lambda: st.optimizers.Adam(beta_2=math.inf), ValueError,
     r"beta_2 must be in \[0, 1\), got inf"),
    (lambda: st.optimizers.Adam(beta_1=None), TypeError,
     r"beta_1 must be a number in \[0, 1\), got None"),
    (lambda: st.optimizers.Adagrad(epsilon=0), ValueError,
     r"Adagrad: epsilon must be in \(0, inf\)"),
    (lambda: st.optimizers.SGD(momentum=math.nan), ValueError,
     r"SGD: momentum must be in \[0, 1\]"),
    (lambda: st.optimizers.Newton(damping=0.0), ValueError,
     r"Newton: damping must be in \(0, inf\)"),
    (lambda: st.optimizers.Newton(max_backtracks=0), ValueError,
     r"max_backtracks must be a whole number >= 1"),
])
def test_bad_hyperparameters_say_what_is_allowed(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_adam_with_sound_hyperparameters_gives_no_nan_where_epsilon_zero_did():
    # epsilon = 0 (now refused) divided 0 by 0 on a zero gradient
    w = st.Variable([1.0, 2.0], name="w")
    st.optimizers.Adam(0.1, epsilon=1e-7).apply_gradients([(st.constant([0.0, 1.0]), w)])
    np.testing.assert_allclose(w.numpy(), [1.0, 1.9], rtol=1e-6)


@pytest.mark.parametrize("var_list, error, message", [
    (None, TypeError, r"SGD.minimize: var_list is None; pass the Variables to train, "
                      r"e.g. minimize\(loss, \[w, b\]\)"),
    ([], ValueError, r"var_list is empty"),
    ("w", TypeError, r"var_list\[0\] is a str, not a Variable"),
    (st.constant([1.0, 2.0]), TypeError, r"var_list must be a list of Variables, got a Tensor"),
])
def test_bad_var_lists_are_named(var_list, error, message):
    with pytest.raises(error, match=message):
        st.optimizers.SGD(0.1).minimize(lambda: st.constant(1.0), var_list)


def test_a_single_variable_for_var_list_says_to_wrap_it_in_a_list():
    w = st.Variable([1.0, 2.0], name="w")
    with pytest.raises(TypeError, match=r"a single Variable; write \[w\]"):
        st.optimizers.SGD(0.1).minimize(lambda: st.reduce_sum(w * w), w)


@pytest.mark.parametrize("optimizer", [st.optimizers.SGD, st.optimizers.Newton])
def test_a_variable_listed_twice_in_var_list_is_refused_before_any_step(optimizer):
    w = st.Variable(1.0, name="w")
    opt = optimizer(0.1)
    with pytest.raises(ValueError, match=r"var_list lists Variable 'w' twice; list each "
                                         r"Variable once"):
        opt.minimize(lambda: w * w, [w, w])
    assert float(w.numpy()) == 1.0 and int(opt.iterations.numpy()) == 0


def test_a_variable_listed_twice_in_apply_gradients_is_not_stepped_twice():
    a, w = st.Variable(1.0, name="a"), st.Variable(1.0, name="w")
    opt = st.optimizers.SGD(0.5)
    with pytest.raises(ValueError, match=r"grads_and_vars lists Variable 'w' twice.*add up "
                                         r"its gradients first"):
        opt.apply_gradients([(st.constant(1.0), a), (st.constant(1.0), w),
                             (st.constant(1.0), w)])
    assert float(a.numpy()) == 1.0 and float(w.numpy()) == 1.0
    assert int(opt.iterations.numpy()) == 0


def test_gradients_of_another_shape_are_refused_before_any_variable_moves():
    a, w = st.Variable(1.0, name="a"), st.Variable([1.0, 2.0], name="w")
    opt = st.optimizers.Adam(0.1)  # Adam's moments would have broadcast a scalar gradient
    with pytest.raises(ValueError, match=r"the gradient for Variable 'w' has shape \(\), the "
                                         r"Variable \(2,\)"):
        opt.apply_gradients([(st.constant(1.0), a), (st.constant(1.0), w)])
    assert float(a.numpy()) == 1.0 and opt.variables() == [opt.iterations]


@pytest.mark.parametrize("pairs, message", [
    (None, r"grads_and_vars is None; pass \(gradient, Variable\) pairs"),
    ([st.Variable(1.0)], r"expects \(gradient, Variable\) pairs, got a Variable"),
])
def test_bad_grads_and_vars_are_named(pairs, message):
    with pytest.raises(TypeError, match=message):
        st.optimizers.SGD(0.1).apply_gradients(pairs)
