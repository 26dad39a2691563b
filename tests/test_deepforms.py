"""Products and sums of deep trees (symtape.core.deepforms): SymPy's values, without its sort.

The oracle is SymPy's own ``*`` and ``+`` of the same trees; ``expand`` brings both to
one canonical form.
"""

from __future__ import annotations

import sympy

from symtape.core import deepforms
from symtape.arrays.objarrays import NEGATIVE_ZERO

X = sympy.Symbol("x", real=True)


def _nested(levels: int, start=X):
    expr = start
    for _ in range(levels):
        expr = sympy.sin(expr)
    return expr


DEEP, OTHER = _nested(30), sympy.cos(_nested(29))


def test_depth_counts_levels():
    assert deepforms.depth(X) == 0
    assert deepforms.depth(_nested(30)) == 30
    assert deepforms.depth(2 * _nested(3) + 1) == 5  # Add, Mul, then three sines
    assert not deepforms.is_deep(_nested(deepforms.SHALLOW))
    assert deepforms.is_deep(_nested(deepforms.SHALLOW + 1))


def test_shallow_products_and_sums_are_sympys():
    a, b = sympy.sin(X), 2 * X
    assert deepforms.product(a, b) == a * b
    assert deepforms.total([a, b, a]) == 2 * a + b


def test_a_deep_product_keeps_its_factors_nested_with_the_number_in_front():
    chained = deepforms.product(3 * DEEP * OTHER, sympy.Rational(1, 2) * X)
    assert sympy.expand(chained - sympy.Rational(3, 2) * DEEP * OTHER * X) == 0
    coefficient, *rest = chained.args
    assert coefficient == sympy.Rational(3, 2)
    assert sympy.Mul(DEEP, OTHER) in rest  # the earlier product is one shared factor
    assert deepforms.product(DEEP, sympy.S.One) is DEEP
    assert deepforms.product(2 * DEEP, sympy.Rational(1, 2)) is DEEP
    assert deepforms.product(DEEP, sympy.S.Zero) == 0


def test_a_sum_of_deep_terms_combines_equal_ones_and_drops_cancelled_ones():
    assert deepforms.total([DEEP, X, 2 * DEEP, 1]) == X + 1 + 3 * DEEP
    assert sympy.expand(deepforms.total([OTHER, DEEP, -OTHER]) - DEEP) == 0
    assert deepforms.total([DEEP, -DEEP]) == 0
    assert deepforms.total([X, NEGATIVE_ZERO]) == X  # u + -0.0 is u
    assert deepforms.total([]) is NEGATIVE_ZERO


def test_deep_terms_keep_their_order_of_arrival():
    forward, backward = deepforms.total([DEEP, OTHER]), deepforms.total([OTHER, DEEP])
    assert forward.args == (DEEP, OTHER) and backward.args == (OTHER, DEEP)
    assert sympy.expand(forward - (DEEP + OTHER)) == 0
