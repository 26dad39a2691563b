"""Closed forms that used to crash or be silently wrong: signs of sums, deep recurrences.

Oracles are plain SymPy (the same expression built with SymPy's own operators) and
``sympy.diff`` of it, compared numerically to 25 digits at random points.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as hs

import symtape as st
from symtape.core import deepforms
from symtape.core.mpeval import distinct_nodes, evaluate

A, B = sympy.symbols("a b", real=True)

# (symtape op, SymPy function): each keeps any real argument in its domain
FUNCTIONS = {
    "sin": (st.sin, sympy.sin), "cos": (st.cos, sympy.cos), "atan": (st.atan, sympy.atan),
    "tanh": (st.tanh, sympy.tanh), "erf": (st.erf, sympy.erf), "abs": (st.abs, sympy.Abs),
    "tan": (lambda u: st.tan(st.atan(u) / 2), lambda u: sympy.tan(sympy.atan(u) / 2)),
    "sinh": (lambda u: st.sinh(u / 2), lambda u: sympy.sinh(u / 2)),
    "cosh": (lambda u: st.cosh(u / 2), lambda u: sympy.cosh(u / 2)),
    "asin": (lambda u: st.asin(st.tanh(u) / 2), lambda u: sympy.asin(sympy.tanh(u) / 2)),
}
# sums with negative terms and negated sums; `c` is an exact decimal, as symtape reads it
SUMS = {
    "-u - v": lambda u, v, c: -u - v,
    "-(u + v)": lambda u, v, c: -(u + v),
    "u - c*v": lambda u, v, c: u - c * v,
    "-u + c*v - v": lambda u, v, c: -u + c * v - v,
    "c - u": lambda u, v, c: c - u,
    "-(u - v)": lambda u, v, c: -(u - v),
    "u*v": lambda u, v, c: u * v,
}


def _build(tree, leaves: dict, exact: bool):
    kind = tree[0]
    if kind == "leaf":
        return leaves[tree[1]]
    if kind == "fun":
        ours, theirs = FUNCTIONS[tree[1]]
        return (theirs if exact else ours)(_build(tree[2], leaves, exact))
    c = sympy.Rational(str(tree[2])) if exact else tree[2]
    return SUMS[tree[1]](_build(tree[3], leaves, exact), _build(tree[4], leaves, exact), c)


def _trees():
    leaves = hs.sampled_from(["a", "b"]).map(lambda name: ("leaf", name))
    coefficient = hs.sampled_from([0.64, 2.0, 0.5, 3.0, 0.25])

    def extend(children):
        return hs.one_of(
            hs.tuples(hs.just("fun"), hs.sampled_from(sorted(FUNCTIONS)), children),
            hs.tuples(hs.just("sum"), hs.sampled_from(sorted(SUMS)), coefficient, children,
                      children))

    # a bare leaf is a Variable, not a computation: its gradient is the tape's business
    return hs.recursive(leaves, extend, max_leaves=6).filter(lambda tree: tree[0] != "leaf")


POINTS = hs.floats(-1.5, 1.5, allow_nan=False).filter(lambda v: abs(v) > 1e-3)


def _close(ours, oracle, subs) -> bool:
    a, b = (sympy.sympify(e).evalf(30, subs=subs) for e in (ours, oracle))
    return abs(a - b) <= sympy.Float(10) ** -25 * max(1, abs(b))


def _agrees_with_plain_sympy(tree, a0: float, b0: float) -> None:
    a, b = st.Variable(a0, name="a"), st.Variable(b0, name="b")
    with st.GradientTape() as tape:
        y = _build(tree, {"a": a, "b": b}, exact=False)
    grads = tape.gradient(y, [a, b], unconnected_gradients="zero")
    oracle = _build(tree, {"a": A, "b": B}, exact=True)
    subs = {A: sympy.Rational(a0), B: sympy.Rational(b0)}
    assert _close(y.expr, oracle, subs), (tree, y.expr, oracle)
    assert float(y) == pytest.approx(float(oracle.evalf(30, subs=subs)), rel=1e-9, abs=1e-12)
    for g, u in zip(grads, (A, B)):
        assert _close(g.expr, sympy.diff(oracle, u), subs), (tree, u, g.expr)


@settings(max_examples=25, deadline=None)
@given(_trees(), POINTS, POINTS)
def test_odd_and_even_functions_of_signed_sums_match_plain_sympy(tree, a0, b0):
    _agrees_with_plain_sympy(tree, a0, b0)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_trees(), POINTS, POINTS)
def test_odd_and_even_functions_of_signed_sums_match_plain_sympy_many(tree, a0, b0):
    _agrees_with_plain_sympy(tree, a0, b0)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_of_negated_sums_have_closed_forms(name):
    # used to recurse forever: with numbers kept outside sums, both -a - b and -(-a - b)
    # claimed the minus sign, and SymPy's f(-u) = -f(u) rule flipped between them
    ours, theirs = FUNCTIONS[name]
    a, b = st.Variable(1.0, name="a"), st.Variable(2.0, name="b")
    expr = ours(-a - b).expr
    assert sympy.simplify(expr - theirs(-A - B)) == 0
    if name in ("sin", "cos", "atan", "tanh", "erf", "abs"):
        assert expr == theirs(-A - B)  # the very form plain SymPy builds


def test_the_reported_cosine_builds_what_plain_sympy_builds():
    x, z = st.Variable(0.3, name="x"), st.Variable(-0.7, name="z")
    X, Z = sympy.symbols("x z", real=True)
    y = st.cos(-x + 0.64 * z - st.tan(st.tanh(x) / 2))
    assert y.expr == sympy.cos(X - 16 * Z / 25 + sympy.tan(sympy.tanh(X) / 2))
    assert float(y) == pytest.approx(float(y.expr.subs({X: 0.3, Z: -0.7})), rel=1e-14)


def test_reduce_sum_of_tanh_of_a_random_matrix_product():
    rng = np.random.default_rng(0)
    W0, x0 = rng.normal(size=(5, 5)), rng.normal(size=5)
    W, x = st.Variable(W0, name="W"), st.Variable(x0, name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(st.tanh(st.matmul(W, x[:, None])))
    g = tape.gradient(y, x)
    subs = {sympy.Symbol(f"x[{i}]", real=True): v for i, v in enumerate(x0)}
    subs.update({sympy.Symbol(f"W[{i},{j}]", real=True): W0[i, j]
                 for i in range(5) for j in range(5)})
    assert float(y.expr.subs(subs)) == pytest.approx(np.tanh(W0 @ x0).sum(), rel=1e-12)
    exact = W0.T @ (1 - np.tanh(W0 @ x0) ** 2)
    assert [float(e.subs(subs)) for e in g.expr] == pytest.approx(exact, rel=1e-12)


def test_check_grads_of_the_sine_of_a_negated_sum():
    check = st.check_grads(lambda a, b: st.sin(-a - b), (1.0, 2.0))
    assert len(check.entries) == 6  # two first and four second derivatives, all agreeing


def test_a_long_recurrence_materializes_without_recursion():
    # SymPy's own evaluation of sin(u) walks u (is_number): quadratic, then a RecursionError
    x = st.Variable(0.5, name="x")
    y = x
    for _ in range(3000):
        y = st.sin(y) * 0.999 + 0.001
    expr = y.expr
    assert expr.func is sympy.Add and expr.args[0] == sympy.Rational(1, 1000)
    # one level down is the same recurrence one step shorter
    inner = expr.args[1].args[1].args[0]
    assert inner.func is sympy.Add and inner.args[0] == sympy.Rational(1, 1000)


# ---------------------------------------------------------------- names and versions of symbols


def test_two_sources_of_one_name_are_refused_in_a_gradient_asked_first():
    p, q = st.Variable(2.0, name="w"), st.Variable(3.0, name="w")
    with st.GradientTape() as tape:
        y = p * q * p
    g = tape.gradient(y, p)
    assert float(g) == 12.0
    with pytest.raises(ValueError, match="two different sources are both named 'w'"):
        _ = g.expr  # used to print 2*w**2 (8 at w=2), without asking y.expr first
    with pytest.raises(ValueError, match="both named 'w'"):
        _ = y.expr
    with pytest.raises(ValueError, match="both named 'w'"):
        _ = y.expr  # asked again: still refused, not a memoized ambiguous form


def test_sources_of_one_name_in_separate_closed_forms_are_fine():
    p, q = st.Variable(2.0, name="u"), st.Variable(3.0, name="u")
    U = sympy.Symbol("u", real=True)
    assert (p * p).expr == U**2 and (q * 3).expr == 3 * U


def test_automatic_names_never_meet_user_names():
    w = st.Variable(2.0)  # named v1, v2, ... by symtape
    name = w.name
    user = st.Variable(3.0, name=name)
    y = user * user * w
    assert float(y) == 18.0
    assert str(w.expr) == name  # printed as its name
    assert w.expr != sympy.Symbol(name, real=True)  # but never the user's symbol
    assert y.expr.subs({user.expr: 3, w.expr: 2}) == 18
    check = st.check_grads(lambda v1: v1 * v1 * w, (3.0,))  # used to fail: symbolic 8, compiled 12
    assert check.entries[0].symbolic == pytest.approx(12.0)


def test_an_assign_between_reads_is_refused_in_expr():
    v = st.Variable(2.0, name="v")
    with st.GradientTape() as tape:
        y = v * v
        v.assign(10.0)
        z = y * v
    assert float(z) == 40.0 and y.expr == sympy.Symbol("v", real=True) ** 2
    g = tape.gradient(z, v)
    assert float(g) == 44.0  # TensorFlow's value: both reads are the Variable
    for closed_form in (lambda: z.expr, lambda: g.expr):
        with pytest.raises(ValueError, match="Variable 'v' was assigned between reads"):
            closed_form()  # z.expr used to be v**3 (1000, not 40)


def test_reads_after_an_assign_alone_use_the_same_symbol():
    v = st.Variable(2.0, name="s")
    S = sympy.Symbol("s", real=True)
    assert (v * v).expr == S**2
    v.assign(5.0)
    assert (v * v * v).expr == S**3


def test_deep_closed_forms_print():
    # used to raise RecursionError: SymPy's printers recurse about three frames a level
    x = st.Variable(0.5, name="x")
    y = x
    for _ in range(200):
        y = y * 0.5 + 1
    text = str(y.expr)
    assert text.count("(") == 199 and text.startswith("((") and text.endswith(")/2 + 1")
    y = x
    for _ in range(200):
        y = st.sin(y) * 0.999 + 0.001
    assert str(y.expr).count("sin(") == 200


# ---------------------------------------------------------------- the sign of zero


def test_an_inlined_negative_zero_keeps_its_sign_in_kernels():
    f = st.function(lambda s: st.atan2(st.constant(-0.0), s))
    first, second = float(f(st.constant(-1.0))), float(f(st.constant(-1.0)))
    assert first == second == -np.pi  # the second call (the kernel) used to give +pi
    g = st.function(lambda a: 1 / (a * -0.0))
    with np.errstate(divide="ignore"):
        assert float(g(st.constant(2.0))) == float(g(st.constant(2.0))) == -np.inf


def test_the_closed_form_of_atan2_at_negative_zero_agrees_with_its_value():
    s = st.Variable(-1.0, name="s")
    y = st.atan2(st.constant(-0.0), s)
    kernel = st.compile([y.expr], [s.expr])
    assert float(y) == float(kernel(-1.0)[0]) == -np.pi
    x = st.Variable(2.0, name="x")
    assert (x + st.constant(-0.0)).expr == sympy.Symbol("x", real=True)  # u + -0.0 is u


X = sympy.Symbol("x", real=True)


def _recurrence(steps: int, step):
    """``y = step(x, y)`` repeated from ``y = x``, and ``dy/dx`` from the tape."""
    x = st.Variable(0.5, name="x")
    with st.GradientTape() as tape:
        y = x
        for _ in range(steps):
            y = step(x, y)
    return y, tape.gradient(y, x)


# deeper than deepforms.SHALLOW (24 levels) from 13 steps on: the chain rule's products stay nested
# (one deep factor per step) and sums of deep terms unsorted; expanded, they are SymPy's
@pytest.mark.parametrize("steps", [3, 13, 20])
@pytest.mark.parametrize("step", [lambda x, y: st.sin(y) * 3 + 1,  # a product per step
                                  lambda x, y: st.sin(y) * x],  # and a sum of deep terms
                         ids=["sin(y)*3+1", "sin(y)*x"])
def test_recurrence_gradients_equal_sympy_diff(steps, step):
    y, g = _recurrence(steps, step)
    assert deepforms.is_deep(y.expr) == (steps > 3)
    assert sympy.expand(g.expr - sympy.diff(y.expr, X)) == 0


def _recurrence_hessian(steps: int, step):
    x = st.Variable(0.5, name="x")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            y = x
            for _ in range(steps):
                y = step(x, y)
        g = inner.gradient(y, x)
    return y, outer.gradient(g, x)


@pytest.mark.parametrize("steps", [3, 13])
@pytest.mark.parametrize("step", [lambda x, y: st.sin(y) * 3 + 1, lambda x, y: st.sin(y) * x],
                         ids=["sin(y)*3+1", "sin(y)*x"])
def test_recurrence_hessians_equal_sympy_diff(steps, step):
    y, h = _recurrence_hessian(steps, step)
    assert sympy.expand(h.expr - sympy.diff(y.expr, X, 2)) == 0


def test_a_long_recurrence_hessian_is_the_chain_rule():
    steps = 400  # the gradient's products, read by the outer sweep, stay nested too
    y, h = _recurrence_hessian(steps, lambda x, y: st.sin(y) * 0.999 + 0.001)
    # by hand: y' <- 0.999 cos(y) y',  y'' <- 0.999 (cos(y) y'' - sin(y) y'**2)
    value, first, second = 0.5, 1.0, 0.0
    for _ in range(steps):
        c, s = np.cos(value), np.sin(value)
        value, first, second = (0.999 * s + 0.001, 0.999 * c * first,
                                0.999 * (c * second - s * first**2))
    assert float(h.numpy()) == pytest.approx(second, rel=1e-10)
    (exact,) = evaluate([h.expr], {X: sympy.Rational(1, 2)}, 20)
    assert exact == pytest.approx(second, rel=1e-10)
    assert len(distinct_nodes(h.expr)) <= 20 * steps


def test_a_long_recurrence_gradient_is_the_chain_rule_and_linear_in_size():
    steps = 400  # 1200 levels deep: SymPy's sorted products made this cubic
    y, g = _recurrence(steps, lambda x, y: st.sin(y) * 0.999 + 0.001)
    # the chain rule by hand: dy/dx = prod 0.999 * cos(y_k) over the forward values y_k
    values, chain = [0.5], 1.0
    for _ in range(steps):
        chain *= 0.999 * np.cos(values[-1])
        values.append(0.999 * np.sin(values[-1]) + 0.001)
    assert float(y.numpy()) == pytest.approx(values[-1], rel=1e-12)
    assert float(g.numpy()) == pytest.approx(chain, rel=1e-12)
    # the closed form, evaluated bottom-up to 20 digits (evalf or lambdify: minutes)
    (exact,) = evaluate([g.expr], {X: sympy.Rational(1, 2)}, 20)
    assert exact == pytest.approx(chain, rel=1e-12)
    assert g.expr.free_symbols == {X}
    # one cos(y_k), one product, a few numbers per step: the form shares y's subtrees
    assert len(distinct_nodes(g.expr)) <= 6 * steps
