"""Products and sums of deep SymPy trees, built without SymPy's canonical sort.

SymPy sorts the factors of every ``Mul`` and the terms of every ``Add`` with
``Basic.compare``, which walks two trees until they differ: as deep as they are when
they are alike. A reverse sweep over a recurrence multiplies the cotangent by one deep
factor per step (``cos(y_k)``, each ``y_k`` one step deeper), so SymPy's flattened,
sorted product made ``.expr`` of a gradient cubic in the recurrence length. Here the
chain-rule product stays nested, ``c*(P*F)`` with the number ``c`` in front and the
earlier product ``P`` shared, and sums of deep terms keep their order of arrival: each
step costs O(1) SymPy work. Trees no deeper than :data:`SHALLOW` keep SymPy's own
canonical forms, so small closed forms read as before.

Depths are memoized for the duration of one symbolic build (:func:`memo`).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

import sympy

from symtape.arrays.objarrays import NEGATIVE_ZERO

__all__ = ["SHALLOW", "memo", "depth", "is_deep", "product", "total"]

# Below this depth SymPy's sort is cheap (a comparison stops within this many levels)
SHALLOW = 24

_DEPTHS: ContextVar[dict | None] = ContextVar("symtape_depths", default=None)


@contextlib.contextmanager
def memo():
    """Remember depths while a build runs (entries hold their expressions, so ids stay valid)."""
    if _DEPTHS.get() is not None:
        yield
        return
    token = _DEPTHS.set({})
    try:
        yield
    finally:
        _DEPTHS.reset(token)


def depth(expr) -> int:
    """Nesting depth of a SymPy tree (an atom is 0), iterative, memoized per build.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> depth(x), depth(sympy.sin(x)), depth(sympy.sin(sympy.cos(x) + 1))
    (0, 1, 3)
    """
    depths = _DEPTHS.get()
    depths = {} if depths is None else depths
    stack = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            depths[id(node)] = (node, 1 + max(depths[id(a)][1] for a in node.args))
        elif id(node) not in depths:
            if not node.args:
                depths[id(node)] = (node, 0)
                continue
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if id(a) not in depths)
    return depths[id(expr)][1]


def is_deep(expr) -> bool:
    """True for a scalar SymPy expression nested deeper than :data:`SHALLOW`."""
    return isinstance(expr, sympy.Expr) and depth(expr) > SHALLOW


def product(a, b):
    """``a*b``: SymPy's product, or the nested ``c*(P*F)`` when a side is deep (module docstring).

    Parameters
    ----------
    a, b : sympy.Expr

    Returns
    -------
    sympy.Expr
        Equal to ``a*b``; numeric coefficients are multiplied out.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> product(2 * x, sympy.Rational(1, 2))
    x
    """
    if not (is_deep(a) or is_deep(b)) or not (a.is_commutative and b.is_commutative):
        return a * b
    ca, pa = a.as_coeff_Mul()
    cb, pb = b.as_coeff_Mul()
    if pa is sympy.S.One or pb is sympy.S.One:
        rest = pb if pa is sympy.S.One else pa
    else:
        rest = sympy.Mul._from_args((pa, pb))
    return _with_coefficient(ca * cb, rest)


def _with_coefficient(c, rest):
    if c.is_zero or rest is sympy.S.Zero:  # no assumption queries on a deep tree
        return c * rest  # SymPy's own zero (0.0 stays a Float)
    if c is sympy.S.One:
        return rest
    args = rest.args if rest.is_Mul else (rest,)
    return sympy.Mul._from_args((c,) + args)


def total(terms: list):
    """The sum of scalar ``terms``: SymPy's ``Add`` unless two of them are deep.

    Deep terms are not sorted: equal ones (up to their numbers) are combined, in order of
    first arrival, after the canonical sum of the shallow ones.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> total([x, 2 * x, 1])
    3*x + 1
    """
    terms = [t for t in terms if t is not NEGATIVE_ZERO]  # u + -0.0 is u (objarrays.add_many)
    deep = [t for t in terms if is_deep(t)]
    if len(deep) < 2:
        return sympy.Add(*terms) if terms else NEGATIVE_ZERO
    coefficients: dict = {}
    for term in deep:
        c, rest = term.as_coeff_Mul()
        coefficients[rest] = coefficients.get(rest, 0) + c
    shallow = sympy.Add(*[t for t in terms if not is_deep(t)])
    kept = [_with_coefficient(c, rest) for rest, c in coefficients.items() if not c.is_zero]
    kept = list(shallow.args if shallow.is_Add else [shallow]) + kept
    kept = [t for t in kept if t is not sympy.S.Zero]
    return sympy.Add._from_args(kept) if len(kept) > 1 else (kept[0] if kept else shallow)
