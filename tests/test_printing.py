"""The generated kernels print recorded arithmetic with Python's precedence and associativity.

Each case is traced at one point and then called at another, so the numbers come from the
kernel (a new signature's first call is the eager run). The reference is NumPy, written
out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

import symtape as st

A = np.array([0.7, 1.3, 2.1])
B = np.array([1.9, 0.4, 1.1])
C = np.array([0.6, 2.5, 1.7])

# (symtape, NumPy): nested powers (Python's ** is right-associative), negations, quotients
CASES = {
    "1/x**3": (lambda x, y, z: 1 / x**3, lambda x, y, z: 1 / x**3),
    "(x**2)**3": (lambda x, y, z: (x**2) ** 3, lambda x, y, z: (x**2) ** 3),
    "(x**y)**z": (lambda x, y, z: (x**y) ** z, lambda x, y, z: (x**y) ** z),
    "x**(y**z)": (lambda x, y, z: x ** (y**z), lambda x, y, z: x ** (y**z)),
    "(2**x)**2": (lambda x, y, z: (2**x) ** 2, lambda x, y, z: (2**x) ** 2),
    "2**(x**2)": (lambda x, y, z: 2 ** (x**2), lambda x, y, z: 2 ** (x**2)),
    "-x**2": (lambda x, y, z: -(x**2), lambda x, y, z: -(x**2)),
    "(-x)**3": (lambda x, y, z: (-x) ** 3, lambda x, y, z: (-x) ** 3),
    "x**-2": (lambda x, y, z: x**-2, lambda x, y, z: x**-2.0),
    "(1/x)**y": (lambda x, y, z: (1 / x) ** y, lambda x, y, z: (1 / x) ** y),
    "1/(x*y)**2": (lambda x, y, z: 1 / (x * y) ** 2, lambda x, y, z: 1 / (x * y) ** 2),
    "x/(y/z)": (lambda x, y, z: x / (y / z), lambda x, y, z: x / (y / z)),
    "x/(y*z)": (lambda x, y, z: x / (y * z), lambda x, y, z: x / (y * z)),
    "(x/y)/z": (lambda x, y, z: (x / y) / z, lambda x, y, z: (x / y) / z),
    "x-(y-z)": (lambda x, y, z: x - (y - z), lambda x, y, z: x - (y - z)),
    "x-(y+z)": (lambda x, y, z: x - (y + z), lambda x, y, z: x - (y + z)),
    "-(x-y)*z": (lambda x, y, z: -(x - y) * z, lambda x, y, z: -(x - y) * z),
    "x*(y-z)**2": (lambda x, y, z: x * (y - z) ** 2, lambda x, y, z: x * (y - z) ** 2),
    "(x-y)**-1": (lambda x, y, z: (x - y) ** -1, lambda x, y, z: (x - y) ** -1.0),
    "sqrt(x**3)": (lambda x, y, z: st.sqrt(x**3), lambda x, y, z: np.sqrt(x**3)),
    "exp(-x)**2": (lambda x, y, z: st.exp(-x) ** 2, lambda x, y, z: np.exp(-x) ** 2),
    "lennard-jones": (lambda x, y, z: 4 * (1 / (x * x) ** 6 - 1 / (x * x) ** 3),
                      lambda x, y, z: 4 * (1 / (x * x) ** 6 - 1 / (x * x) ** 3)),
}


@pytest.mark.parametrize("case", CASES)
def test_kernel_values_away_from_the_traced_point(case):
    ours, numpy_form = CASES[case]
    f = st.function(ours)
    f(st.constant(B), st.constant(C), st.constant(A))  # trace at another point
    np.testing.assert_allclose(f(st.constant(A), st.constant(B), st.constant(C)).numpy(),
                               numpy_form(A, B, C), rtol=1e-13)


@pytest.mark.parametrize("case", CASES)
def test_gradient_kernels_away_from_the_traced_point(case):
    ours, _ = CASES[case]
    total = lambda x, y, z: st.reduce_sum(ours(x, y, z))  # noqa: E731
    grad = st.grad(total, argnums=(0, 1, 2))
    grad(B, C, A)  # trace
    kernel = grad(A, B, C)
    eager = st.grad(total, argnums=(0, 1, 2))(A, B, C)  # a fresh trace: the eager run
    for k, e in zip(kernel, eager):
        np.testing.assert_allclose(k, e, rtol=1e-12)
