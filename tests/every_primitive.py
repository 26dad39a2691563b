"""Functions that use every primitive in the registry, for tests that run them everywhere
(the CuPy backend's source, simulated and real GPUs), and the comparison of their results."""

import numpy as np

import symtape as st
from symtape.core import nest


def scalar_mix(x, y):
    """Every elementwise primitive, on two scalars (their derivatives add relu's heaviside,
    pow's log_real ...)."""
    a = st.sin(x) * st.cos(y) + st.tan(x / 5) + st.exp(-x * x) + st.log(y * y + 1)
    b = st.log1p(x * x) + st.sqrt(y * y + 1) + st.asin(x / 9) + st.acos(y / 9) + st.atan(x)
    c = st.atan2(x, y + 3) + st.sinh(x / 3) + st.cosh(y / 3) + st.tanh(x) + st.erf(y)
    d = st.sigmoid(x) + st.relu(y) * y + st.softplus(x) + st.abs(x) * x + st.sign(y) * x
    e = st.maximum(x, y) * x + st.minimum(x, y) * y + st.where(x < y, x, y * y) - x ** 3
    f = st.cast(st.less_equal(x, y), st.float64) * x + st.cast(st.greater(x, y), st.float64) * y
    g = st.cast(st.greater_equal(x, 0.0), st.float64) * y + st.cast(st.equal(x, y), st.float64)
    h = st.cast(st.logical_not(st.not_equal(x, y)), st.float64) + st.pow(st.abs(x) + 1, y)
    return a + b + c + d + e + f + g + h


def array_mix(v, w):
    """The structural primitives and reductions, on two vectors of length 4."""
    m = st.reshape(v, (2, 2))
    products = st.matmul(m, st.transpose(m)) + st.tensordot(m, m, 1)
    shifted = st.concat([v[1:], v[:1]], 0) * w[::-1]
    picked = v[np.array([0, 2, 2])] * w[0]  # repeated entries: scatter_add in the gradient
    extremes = st.reduce_max(v * w) + st.reduce_min(v - w)
    return (st.reduce_sum(products) + st.reduce_mean(shifted * shifted) + st.reduce_sum(picked)
            + extremes + st.reduce_sum(st.one_hot(np.array([1, 0, 3]), 4) @ (v * v)))


CASES = {  # (function, the point traced at, points the kernel then runs at: one and a batch)
    "scalars": (scalar_mix, (0.3, 0.7),
                [(-0.4, 0.9), (np.linspace(-1, 1, 5), np.linspace(2, -2, 5))]),
    "arrays": (array_mix, (np.arange(4.0) + 1, np.ones(4)),
               [(np.array([0.5, -1.0, 2.0, 0.3]), np.array([1.0, 2.0, -0.5, 0.25])),
                (np.linspace(-1, 1, 12).reshape(3, 4), np.linspace(2, 0, 4))]),
}
IN_AXES = {"scalars": [None, 0], "arrays": [None, (0, None)]}  # per point: a plain call or a vmap


def call(compiled, point, in_axes):
    """``compiled(*point)``, or mapped with ``st.vmap`` over ``in_axes`` (a batch)."""
    return compiled(*point) if in_axes is None else st.vmap(compiled, in_axes=in_axes)(*point)


def host_leaves(values) -> list[np.ndarray]:
    """The arrays of a (nested) result, on the host: Tensors, CuPy arrays or NumPy's."""
    return [np.asarray(v.numpy() if isinstance(v, st.Tensor) else
                       (v.get() if hasattr(v, "get") else v)) for v in nest.flatten(values)[0]]


def assert_same_results(got, expected, rtol: float, atol: float, same_dtype: bool = True):
    """Two (nested) results agree leaf by leaf: shapes (and dtypes), then values."""
    got, expected = host_leaves(got), host_leaves(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape and (not same_dtype or a.dtype == b.dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
