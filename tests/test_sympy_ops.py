"""SymPy expressions lowered to symtape ops: same values, exact constants, symtape's derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

import symtape as st
from symtape.parsing import FUNCTIONS
from symtape.core.sympy_ops import tensor_function

x, y = sympy.symbols("x y", real=True)


def _run(expr, values, symbols=(x, y)):
    sources = [st.constant(v, name=str(s)) for v, s in zip(values, symbols)]
    with st.GradientTape() as tape:
        tape.watch(sources)
        value = tensor_function(expr, list(symbols))(*sources)
    return value, tape.gradient(value, sources, unconnected_gradients="zero")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_parser_function_lowers_to_the_same_value_and_closed_form(name):
    arity = FUNCTIONS[name][0]
    expr = st.parse(f"{name}(x)" if arity == 1 else f"{name}(x, y)")
    value, grads = _run(expr, [0.7, 1.3])
    assert float(value.numpy()) == pytest.approx(float(expr.evalf(subs={x: 0.7, y: 1.3})),
                                                 rel=1e-14)
    assert value.expr == expr  # the lowered ops record the very same closed form
    for g, s in zip(grads, (x, y)):
        assert float(g.numpy()) == pytest.approx(float(sympy.diff(expr, s).evalf(
            subs={x: 0.7, y: 1.3})), rel=1e-12, abs=1e-15)


def test_exact_constants_stay_exact():
    value, (gx, gy) = _run(x / 3 + y ** sympy.Rational(1, 3) + sympy.pi * x, [2.0, 8.0])
    assert value.expr == x / 3 + y ** sympy.Rational(1, 3) + sympy.pi * x
    assert gx.expr == sympy.Rational(1, 3) + sympy.pi
    assert sympy.simplify(gy.expr - sympy.Rational(1, 3) * y ** sympy.Rational(-2, 3)) == 0
    assert float(value.numpy()) == pytest.approx(2 / 3 + 2 + 2 * math.pi, rel=1e-15)


def test_piecewise_heaviside_and_comparisons():
    expr = sympy.Piecewise((x**2, x > y), (sympy.sin(x), x < 0), (y, True))
    for values, expected in [([2.0, 1.0], 4.0), ([-1.0, 1.0], math.sin(-1.0)), ([0.5, 1.0], 1.0)]:
        assert float(_run(expr, values)[0].numpy()) == pytest.approx(expected)
    assert float(_run(sympy.Heaviside(x) * y, [0.0, 3.0])[0].numpy()) == 1.5
    assert float(_run(sympy.Heaviside(x, 1) * y, [0.0, 3.0])[0].numpy()) == 3.0


def test_the_dtype_follows_the_arguments():
    f = tensor_function(x / 3 + 2**y, [x, y])
    assert f(st.constant(np.float32(1.0)), st.constant(np.float32(2.0))).dtype == st.float32
    assert f(1.0, 2.0).dtype == st.float64


def test_compiles_like_any_function():
    f = tensor_function(x**2 * sympy.sin(y) + x / 3, [x, y])
    gx, gy = st.grad(f, argnums=(0, 1))(1.5, 0.5)
    assert gx == pytest.approx(2 * 1.5 * math.sin(0.5) + 1 / 3, rel=1e-15)
    assert gy == pytest.approx(1.5**2 * math.cos(0.5), rel=1e-15)


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"free symbols \['y'\] that are not among the arguments"):
        tensor_function(x * y, [x])
    with pytest.raises(ValueError, match="symtape has no op for gamma"):
        tensor_function(sympy.gamma(x), [x])(1.0)
    with pytest.raises(ValueError, match="has no otherwise branch"):
        tensor_function(sympy.Piecewise((x, x > 0)), [x])(1.0)
    with pytest.raises(ValueError, match="combines comparisons; nest the Piecewise"):
        tensor_function(sympy.Piecewise((x, (x > 0) & (x < 1)), (0, True)), [x])(1.0)
    with pytest.raises(ValueError, match="the constant I is not real"):
        tensor_function(x * sympy.I, [x])(1.0)
    with pytest.raises(TypeError, match=r"expected 2 arguments \(x, y\), got 1"):
        tensor_function(x * y, [x, y])(1.0)
    with pytest.raises(TypeError, match="expected a SymPy expression, got str"):
        tensor_function("x", [x])
