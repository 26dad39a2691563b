"""Tensor.matrix_expr: the issue's table of matrix forms, each checked three ways.

- numerically: the matrix form, evaluated by SymPy with the data substituted, equals the
  entrywise value/gradient/Hessian the tape computes (to 1e-12);
- symbolically: at small sizes, the matrix form minus the hand-derived formula of the table,
  made explicit entry by entry (``as_explicit`` over symbolic entries), simplifies to 0;
- as printed: the form a person writes (``2*A.T*(A*x - b)``), where the table spells it.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
import sympy
from sympy import DiagMatrix, HadamardProduct, Identity, MatrixSymbol, OneMatrix, Trace
from sympy.matrices.expressions.matexpr import MatrixElement

import symtape as st
from symtape.core.matrix import MatrixFormError

RNG = np.random.default_rng(7)
T = sympy.Transpose


def _data(*shape):
    return RNG.normal(size=shape)


def evaluate(expr, values: dict) -> np.ndarray:
    """SymPy's own evaluation of a matrix form with arrays substituted for its symbols."""
    subs = {}
    for s in expr.free_symbols:
        v = np.asarray(values[s.name], dtype=float)
        subs[s] = (sympy.ImmutableMatrix(v.reshape(s.shape)) if isinstance(s, MatrixSymbol)
                   else sympy.Float(float(v), 30))
    out = expr.xreplace(subs)
    special = (OneMatrix, Identity, sympy.ZeroMatrix, sympy.HadamardPower)  # doit leaves them
    out = out.replace(lambda e: isinstance(e, special), lambda e: e.as_explicit()).doit()
    if getattr(out, "is_Matrix", False):
        out = out.as_explicit()
    return np.array(sympy.N(out), dtype=float)


def explicit_difference_is_zero(ours, hand) -> bool:
    """Entry by entry, over symbolic entries (MatrixSymbol's own), ``ours - hand`` is 0."""
    if getattr(ours, "is_Matrix", False) or getattr(hand, "is_Matrix", False):
        difference = (ours.as_explicit() - hand.as_explicit()).doit()
        entries = list(difference)
    else:
        entries = [ours.doit() - hand.doit()]

    def explicit(e):
        e = e.replace(lambda t: isinstance(t, Trace), lambda t: t.arg.as_explicit()[0, 0]).doit()
        real = {m: sympy.Symbol(f"{m.parent}_{m.i}_{m.j}", real=True)  # the data are real
                for m in e.atoms(MatrixElement)}
        return e.xreplace(real).rewrite(sympy.exp)

    return all(sympy.simplify(explicit(e)) == 0 for e in entries)


def sigma(v):
    return v.applyfunc(lambda d: 1 / (1 + sympy.exp(-d)))


def _check(result, expected_value: np.ndarray, values: dict, hand=None, shows=None):
    form = result.matrix_expr
    got = evaluate(form, values).reshape(np.shape(expected_value))
    np.testing.assert_allclose(got, expected_value, rtol=1e-12, atol=1e-12)
    if hand is not None:
        assert explicit_difference_is_zero(form, hand), (form, hand)
    if shows is not None:
        assert str(form) == shows
    return form


# ---------------------------------------------------------------- the table, row by row


def test_least_squares():
    Av, bv, xv = _data(4, 3), _data(4), _data(3)
    A, b, x = st.constant(Av, name="A"), st.constant(bv, name="b"), st.Variable(xv, name="x")
    with st.GradientTape(persistent=True) as tape:
        f = st.reduce_sum(st.square(A @ x - b))
    values = {"A": Av, "b": bv, "x": xv}
    sA, sb, sx = MatrixSymbol("A", 4, 3), MatrixSymbol("b", 4, 1), MatrixSymbol("x", 3, 1)
    r = sA * sx - sb
    _check(f, f.numpy(), values, hand=(T(r) * r)[0, 0], shows="((A*x - b).T*(A*x - b))")
    g = tape.gradient(f, x)
    _check(g, g.numpy(), values, hand=2 * sA.T * r, shows="2*A.T*(A*x - b)")
    h = tape.hessian(f, x)
    _check(h, h.numpy(), values, hand=2 * sA.T * sA, shows="2*A.T*A")


def test_ridge():
    Av, bv, xv = _data(4, 3), _data(4), _data(3)
    A, b, x = st.constant(Av, name="A"), st.constant(bv, name="b"), st.Variable(xv, name="x")
    lam = st.constant(0.25, name="lam")
    with st.GradientTape(persistent=True) as tape:
        f = st.reduce_sum(st.square(A @ x - b)) + lam * st.reduce_sum(st.square(x))
    values = {"A": Av, "b": bv, "x": xv, "lam": 0.25}
    sA, sb, sx = MatrixSymbol("A", 4, 3), MatrixSymbol("b", 4, 1), MatrixSymbol("x", 3, 1)
    slam = sympy.Symbol("lam", real=True)
    g = tape.gradient(f, x)
    _check(g, g.numpy(), values, hand=2 * sA.T * (sA * sx - sb) + 2 * slam * sx,
           shows="2*lam*x + 2*A.T*(A*x - b)")
    h = tape.hessian(f, x)
    _check(h, h.numpy(), values, hand=2 * sA.T * sA + 2 * slam * Identity(3),
           shows="2*lam*I + 2*A.T*A")


@pytest.mark.parametrize("written", ["matmul", "reduce_sum"])
def test_quadratic_form(written):
    Av, xv = _data(3, 3), _data(3)
    A, x = st.constant(Av, name="A"), st.Variable(xv, name="x")
    with st.GradientTape(persistent=True) as tape:
        f = x @ (A @ x) if written == "matmul" else st.reduce_sum(x * (A @ x))
    values = {"A": Av, "x": xv}
    sA, sx = MatrixSymbol("A", 3, 3), MatrixSymbol("x", 3, 1)
    _check(f, f.numpy(), values, hand=(sx.T * sA * sx)[0, 0])
    g = tape.gradient(f, x)
    _check(g, g.numpy(), values, hand=(sA + sA.T) * sx, shows="(A + A.T)*x")
    h = tape.hessian(f, x)
    _check(h, h.numpy(), values, hand=sA + sA.T, shows="A + A.T")


def test_logistic_regression():
    Xv, yv, wv = _data(4, 2), (RNG.random(4) > 0.5) * 1.0, _data(2)
    X, y, w = st.constant(Xv, name="X"), st.constant(yv, name="y"), st.Variable(wv, name="w")
    with st.GradientTape(persistent=True) as tape:
        z = X @ w
        f = st.reduce_sum(st.softplus(z)) - st.reduce_sum(y * z)
    values = {"X": Xv, "y": yv, "w": wv}
    sX, sy, sw = MatrixSymbol("X", 4, 2), MatrixSymbol("y", 4, 1), MatrixSymbol("w", 2, 1)
    s = sigma(sX * sw)
    _check(f, f.numpy(), values)
    g = tape.gradient(f, w)
    _check(g, g.numpy(), values, hand=sX.T * (s - sy), shows="X.T*(sigmoid(X*w) - y)")
    h = tape.hessian(f, w)
    hand = sX.T * DiagMatrix(HadamardProduct(s, OneMatrix(4, 1) - s)) * sX
    _check(h, h.numpy(), values, hand=hand)
    assert sympy.latex(h.matrix_expr) == (
        r"X^{T} \operatorname{diag}\left(\sigma\left(X w\right) \circ "
        r"\left(- \sigma\left(X w\right) + \mathbf{1}\right)\right) X")


def test_softmax_cross_entropy_gradient_wrt_a_matrix():
    Wv, xv, yv = _data(3, 2), _data(2), np.eye(3)[1]
    W, x, y = st.Variable(Wv, name="W"), st.constant(xv, name="x"), st.constant(yv, name="y")
    with st.GradientTape() as tape:
        u = W @ x
        f = st.log(st.reduce_sum(st.exp(u))) - st.reduce_sum(y * u)
    values = {"W": Wv, "x": xv, "y": yv}
    sW, sx, sy = MatrixSymbol("W", 3, 2), MatrixSymbol("x", 2, 1), MatrixSymbol("y", 3, 1)
    e = (sW * sx).applyfunc(sympy.exp)
    softmax = e / (OneMatrix(1, 3) * e)[0, 0]
    _check(f, f.numpy(), values)
    g = tape.gradient(f, W)
    _check(g, g.numpy(), values, hand=(softmax - sy) * sx.T)


def test_two_layer_network_gradient_wrt_the_first_layer():
    W1v, W2v, xv, tv = _data(3, 2), _data(2, 3), _data(2), _data(2)
    W1, W2 = st.Variable(W1v, name="W1"), st.Variable(W2v, name="W2")
    x, t = st.constant(xv, name="x"), st.constant(tv, name="t")
    with st.GradientTape() as tape:
        f = st.reduce_sum(st.square(W2 @ st.tanh(W1 @ x) - t))
    values = {"W1": W1v, "W2": W2v, "x": xv, "t": tv}
    sW1, sW2 = MatrixSymbol("W1", 3, 2), MatrixSymbol("W2", 2, 3)
    sx, st_ = MatrixSymbol("x", 2, 1), MatrixSymbol("t", 2, 1)
    h = (sW1 * sx).applyfunc(sympy.tanh)
    hand = HadamardProduct(2 * sW2.T * (sW2 * h - st_), OneMatrix(3, 1) - HadamardProduct(h, h))
    g = tape.gradient(f, W1)
    _check(g, g.numpy(), values, hand=hand * sx.T)


def test_rayleigh_quotient():
    Av, xv = _data(3, 3), _data(3)
    A, x = st.constant(Av, name="A"), st.Variable(xv, name="x")
    with st.GradientTape(persistent=True) as tape:
        f = (x @ (A @ x)) / (x @ x)
    values = {"A": Av, "x": xv}
    sA, sx = MatrixSymbol("A", 3, 3), MatrixSymbol("x", 3, 1)
    xx, xAx = (sx.T * sx)[0, 0], (sx.T * sA * sx)[0, 0]
    g = tape.gradient(f, x)  # the general form: A + A.T where a symmetric A has 2A
    _check(g, g.numpy(), values, hand=((sA + sA.T) * sx * xx - 2 * sx * xAx) / xx**2)
    h = tape.hessian(f, x)
    _check(h, h.numpy(), values)


def test_rayleigh_quotient_hessian_symbolically():
    Av, xv = _data(2, 2), _data(2)
    A, x = st.constant(Av, name="A"), st.Variable(xv, name="x")
    with st.GradientTape() as tape:
        f = (x @ (A @ x)) / (x @ x)
    sA, sx = MatrixSymbol("A", 2, 2), MatrixSymbol("x", 2, 1)
    xx, xAx = (sx.T * sx)[0, 0], (sx.T * sA * sx)[0, 0]
    S = sA + sA.T
    hand = (S / xx - (2 * S * sx * sx.T + 2 * sx * sx.T * S) / xx**2
            - 2 * xAx * Identity(2) / xx**2 + 8 * xAx * sx * sx.T / xx**3)
    assert explicit_difference_is_zero(tape.hessian(f, x).matrix_expr, hand)


def test_frobenius_least_squares_wrt_a_matrix():
    Av, Bv, Cv, Xv = _data(2, 3), _data(4, 2), _data(2, 2), _data(3, 4)
    A, B, C = (st.constant(v, name=n) for v, n in ((Av, "A"), (Bv, "B"), (Cv, "C")))
    X = st.Variable(Xv, name="X")
    with st.GradientTape() as tape:
        f = st.reduce_sum(st.square(A @ X @ B - C))
    values = {"A": Av, "B": Bv, "C": Cv, "X": Xv}
    sA, sB, sC, sX = (MatrixSymbol(n, *v.shape) for n, v in
                      (("A", Av), ("B", Bv), ("C", Cv), ("X", Xv)))
    r = sA * sX * sB - sC
    _check(f, f.numpy(), values, hand=Trace(r.T * r), shows="Trace((A*X*B - C).T*(A*X*B - C))")
    g = tape.gradient(f, X)
    _check(g, g.numpy(), values, hand=2 * sA.T * r * sB.T, shows="2*A.T*(A*X*B - C)*B.T")


def test_sum_of_x_times_ax_wrt_a_matrix():
    Av, Xv = _data(3, 3), _data(3, 2)
    A, X = st.constant(Av, name="A"), st.Variable(Xv, name="X")
    with st.GradientTape() as tape:
        f = st.reduce_sum(X * (A @ X))
    values = {"A": Av, "X": Xv}
    sA, sX = MatrixSymbol("A", 3, 3), MatrixSymbol("X", 3, 2)
    _check(f, f.numpy(), values, hand=Trace(sX.T * sA * sX), shows="Trace(X.T*A*X)")
    g = tape.gradient(f, X)
    _check(g, g.numpy(), values, hand=(sA + sA.T) * sX, shows="(A + A.T)*X")


# ---------------------------------------------------------------- Jacobians, nesting, names


def test_jacobian_of_a_vector_function():
    Wv, xv = _data(3, 2), _data(2)
    W, x = st.constant(Wv, name="W"), st.Variable(xv, name="x")
    with st.GradientTape() as tape:
        y = st.tanh(W @ x)
    J = tape.jacobian(y, x)
    sW, sx = MatrixSymbol("W", 3, 2), MatrixSymbol("x", 2, 1)
    h = (sW * sx).applyfunc(sympy.tanh)
    hand = DiagMatrix(OneMatrix(3, 1) - HadamardProduct(h, h)) * sW
    _check(J, J.numpy(), {"W": Wv, "x": xv}, hand=hand)


def test_nested_tapes_give_the_hessian_in_matrix_form():
    Av, xv = _data(3, 3), _data(3)
    A, x = st.constant(Av, name="A"), st.Variable(xv, name="x")
    with st.GradientTape() as outer:
        with st.GradientTape() as inner:
            f = st.reduce_sum(st.exp(A @ x))
        g = inner.gradient(f, x)
    H = outer.jacobian(g, x)
    sA, sx = MatrixSymbol("A", 3, 3), MatrixSymbol("x", 3, 1)
    e = (sA * sx).applyfunc(sympy.exp)
    _check(g, g.numpy(), {"A": Av, "x": xv}, hand=sA.T * e)
    _check(H, H.numpy(), {"A": Av, "x": xv}, hand=sA.T * DiagMatrix(e) * sA)


def test_output_gradients_and_a_list_of_targets():
    Av, xv, vv = _data(2, 2), _data(2), _data(2)
    A, x, v = st.constant(Av, name="A"), st.Variable(xv, name="x"), st.constant(vv, name="v")
    with st.GradientTape(persistent=True) as tape:
        y = A @ x
    sA, sv = MatrixSymbol("A", 2, 2), MatrixSymbol("v", 2, 1)
    g = tape.gradient(y, x, output_gradients=v)
    _check(g, g.numpy(), {"A": Av, "x": xv, "v": vv}, hand=sA.T * sv)
    g2 = tape.gradient([y, y], x)
    _check(g2, g2.numpy(), {"A": Av, "x": xv}, hand=2 * sA.T * OneMatrix(2, 1))


def test_symbols_and_automatic_names():
    x = st.Variable([1.0, 2.0], name="x")
    assert x.matrix_expr == MatrixSymbol("x", 2, 1)
    assert st.Variable(3.0, name="s").matrix_expr == sympy.Symbol("s", real=True)
    assert st.Variable(np.zeros((2, 3)), name="W").matrix_expr.shape == (2, 3)
    unnamed = st.constant([[1.0, 2.0], [3.0, 4.0]])
    y = unnamed @ x
    name = y.matrix_expr.args[0].name
    assert unnamed.name == name and name.startswith("C")
    assert str((st.ones((2,)) * 3.0 + x).matrix_expr) == "x + 3*1"  # 1: the vector of ones
    assert (st.constant(np.eye(2)) @ x).matrix_expr == MatrixSymbol("x", 2, 1)
    assert str((x * 0.5).matrix_expr) == "(1/2)*x"


def test_a_constant_computed_from_a_named_one_stays_a_constant():
    A = st.constant([[1.0, 2.0], [3.0, 4.0]], name="A")
    At = st.transpose(A)
    assert At.matrix_expr == MatrixSymbol("A", 2, 2).T
    assert At.expr == sympy.Array([[1, 3], [2, 4]])
    x = st.Variable([1.0, 1.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(At @ x)
    assert tape.gradient(y, At) is None  # not watched: a constant, as before
    assert tape.watched_variables() == (x,)


def test_two_sources_with_one_name_are_refused():
    a, b = st.Variable([1.0, 2.0], name="z"), st.constant([1.0, 1.0], name="z")
    with pytest.raises(ValueError, match="both named 'z'"):
        (a + b).matrix_expr


def test_latex_prints_the_matrix_form():
    A, x = st.constant(np.eye(3) + 1, name="A"), st.Variable(np.ones(3), name="x")
    with st.GradientTape() as tape:
        f = st.reduce_sum(st.sigmoid(A @ x))
    text = sympy.latex(tape.gradient(f, x).matrix_expr)
    assert text == (r"A^{T} \left(\sigma\left(A x\right) \circ \left(- \sigma\left(A x\right) + "
                    r"\mathbf{1}\right)\right)")


# ---------------------------------------------------------------- never silently wrong


@pytest.mark.parametrize("compute, value_op, gradient_op", [
    (lambda x: x[0] * x[1], "getitem", "indexing"),
    (lambda x: x[:2], "getitem", "indexing"),
    (lambda x: st.reshape(st.concat([x, x], 0), (2, 3)), "concat",
     r"reshape from \(2, 3\) to \(6,\)"),
    (lambda x: st.where(x > 0, x, -x), "the comparison greater", "the comparison greater"),
    (lambda x: st.reduce_max(x), "reduce_max", "reduce_max"),
    (lambda x: st.reshape(x * st.ones((2, 3)), (3, 2)), r"reshape from \(2, 3\) to \(3, 2\)",
     r"reshape from \(3, 2\) to \(2, 3\)"),
    (lambda x: st.ones((2, 2, 3)) * x, "rank 3", "rank 3"),
])
def test_ops_with_no_matrix_form_say_so_and_point_to_expr(compute, value_op, gradient_op):
    x = st.Variable([1.0, -2.0, 3.0], name="x")
    with st.GradientTape() as tape:
        y = st.reduce_sum(compute(x))
    with pytest.raises(MatrixFormError, match=f"{value_op}.*no matrix form; use .expr for the "
                                              "entrywise closed form"):
        y.matrix_expr
    with pytest.raises(MatrixFormError, match=f"{gradient_op}.*no matrix form; use .expr"):
        tape.gradient(y, x).matrix_expr
    y.expr  # the entrywise form is always there


def test_batch_jacobian_and_matrix_jacobians_have_no_matrix_form():
    W = st.Variable(np.ones((2, 3)), name="W")
    x = st.constant(np.ones(3), name="x")
    with st.GradientTape(persistent=True) as tape:
        y = W @ x
        Z = W * W
    with pytest.raises(MatrixFormError, match="the Jacobian of shape \\(2, 2, 3\\)"):
        tape.jacobian(y, W).matrix_expr
    with pytest.raises(MatrixFormError, match="batch_jacobian has no matrix form"):
        tape.batch_jacobian(Z, W).matrix_expr


def test_the_docs_table_is_what_the_library_prints(capsys):
    page = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "matrix-calculus.md")
    text = page.read_text()
    section = text[text.index("## The table"):text.index("## What has no matrix form")]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    exec(compile(block, str(page), "exec"), {"__name__": "docs_table"})  # our own docs
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("| function | gradient | Hessian |") and printed.count("\n") == 10
    assert printed in text


def test_the_newton_example_fits_from_the_printed_formulas():
    from test_examples import _load

    example = _load("logistic_newton_matrix")
    Xs, ys = example.make_data(6, 3, seed=3)
    assert example.check_formulas(Xs, ys, np.array([0.2, -0.1, 0.4])) < 1e-12
    X, y = example.make_data(80, 4)
    w, norms = example.newton(X, y)
    assert norms[-1] < 1e-10 and len(norms) < 12
    # an oracle the example does not use: the tape's entrywise gradient of the loss at the fit
    Xc, yc, wv = st.constant(X), st.constant(y), st.Variable(w)
    with st.GradientTape() as tape:
        z = Xc @ wv
        loss = st.reduce_sum(st.softplus(z) - yc * z)
    assert np.linalg.norm(tape.gradient(loss, wv).numpy()) < 1e-9


def test_hessian_blocks_and_unconnected_zeros():
    Av, xv, yv = _data(3, 2), _data(3), _data(2)
    A, x, y = st.constant(Av, name="A"), st.Variable(xv, name="x"), st.Variable(yv, name="y")
    z = st.Variable([0.0, 0.0], name="z")
    with st.GradientTape(persistent=True) as tape:
        f = x @ (A @ y) + st.reduce_sum(st.exp(y))
    (hxx, hxy), (hyx, hyy) = tape.hessian(f, [x, y])
    assert hxx is None  # f is linear in x: unconnected, as in the entrywise result
    values = {"A": Av, "x": xv, "y": yv}
    sA, sy = MatrixSymbol("A", 3, 2), MatrixSymbol("y", 2, 1)
    _check(hxy, hxy.numpy(), values, hand=sA, shows="A")
    _check(hyx, hyx.numpy(), values, hand=sA.T, shows="A.T")
    _check(hyy, hyy.numpy(), values, hand=DiagMatrix(sy.applyfunc(sympy.exp)), shows="diag(exp(y))")
    zero = tape.gradient(f, z, unconnected_gradients="zero").matrix_expr
    assert zero == sympy.ZeroMatrix(2, 1)


def test_jupyter_shows_the_matrix_form_as_latex():
    A, x = st.constant(np.eye(2) * 2, name="A"), st.Variable([1.0, 2.0], name="x")
    with st.GradientTape() as tape:
        f = st.reduce_sum(st.tanh(A @ x))
    form = tape.gradient(f, x).matrix_expr
    assert r"\tanh\left(A x\right)^{\circ {2}}" in form._repr_latex_()


# ---------------------------------------------------------------- random programs

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

_VECTOR_STEPS = {
    "exp": lambda v, A, c: st.exp(v * 0.3),
    "tanh": lambda v, A, c: st.tanh(v),
    "sin": lambda v, A, c: st.sin(v),
    "sigmoid": lambda v, A, c: st.sigmoid(v),
    "square": lambda v, A, c: st.square(v),
    "A @": lambda v, A, c: A @ v,
    "A.T @": lambda v, A, c: st.transpose(A) @ v,
    "v @ A": lambda v, A, c: v @ A,
    "+ c": lambda v, A, c: v + c,
    "* c": lambda v, A, c: v * c,
    "- 1": lambda v, A, c: 1.0 - v,
    "/ (1 + v^2)": lambda v, A, c: v / (1.0 + v * v),
    "* sum": lambda v, A, c: v * st.reduce_sum(v),
}


@settings(max_examples=12, deadline=None)
@given(steps=hs.lists(hs.sampled_from(sorted(_VECTOR_STEPS)), min_size=1, max_size=3),
       seed=hs.integers(0, 2**16))
def test_random_vector_programs_evaluate_to_the_entrywise_results(steps, seed):
    rng = np.random.default_rng(seed)
    Av, cv, xv = rng.normal(size=(3, 3)) / 2, rng.normal(size=3), rng.normal(size=3) / 2
    A, c, x = st.constant(Av, name="A"), st.constant(cv, name="c"), st.Variable(xv, name="x")
    with st.GradientTape(persistent=True) as tape:
        v = x
        for step in steps:
            v = _VECTOR_STEPS[step](v, A, c)
        f = st.reduce_sum(v * c)
    values = {"A": Av, "c": cv, "x": xv}
    for result in (f, tape.gradient(f, x), tape.jacobian(v, x), tape.hessian(f, x)):
        if result is None:  # f linear in x: no Hessian
            continue
        got = evaluate(result.matrix_expr, values).reshape(result.shape)
        np.testing.assert_allclose(got, result.numpy(), rtol=1e-10, atol=1e-12)


_MATRIX_STEPS = {
    "tanh": lambda M, B: st.tanh(M),
    "exp": lambda M, B: st.exp(M * 0.3),
    "square": lambda M, B: st.square(M),
    "B @": lambda M, B: B @ M,
    "@ B": lambda M, B: M @ B,
    "* B": lambda M, B: M * B,
    "+ B.T @ B": lambda M, B: M + st.transpose(B) @ B,
    "sum rows": lambda M, B: M * st.reduce_sum(M, axis=0),
    "* mean": lambda M, B: M * st.reduce_mean(M),
}


@settings(max_examples=10, deadline=None)
@given(steps=hs.lists(hs.sampled_from(sorted(_MATRIX_STEPS)), min_size=1, max_size=3),
       seed=hs.integers(0, 2**16))
def test_random_matrix_programs_evaluate_to_the_entrywise_results(steps, seed):
    rng = np.random.default_rng(seed)
    Bv, Wv = rng.normal(size=(3, 3)) / 2, rng.normal(size=(3, 3)) / 2
    B, W = st.constant(Bv, name="B"), st.Variable(Wv, name="W")
    with st.GradientTape() as tape:
        M = W
        for step in steps:
            M = _MATRIX_STEPS[step](M, B)
        f = st.reduce_sum(M * B)
    values = {"B": Bv, "W": Wv}
    for result in (f, tape.gradient(f, W)):
        got = evaluate(result.matrix_expr, values).reshape(result.shape)
        np.testing.assert_allclose(got, result.numpy(), rtol=1e-10, atol=1e-12)
