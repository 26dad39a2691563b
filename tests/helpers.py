"""Functions several test files use."""

import symtape as st


def rosenbrock(v):
    """The n-dimensional Rosenbrock function on a vector ``v``, as symtape ops."""
    return st.reduce_sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)
