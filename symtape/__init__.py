"""symtape: a TensorFlow-style GradientTape with exact SymPy closed forms.

Write a computation as the ``tf.GradientTape`` tutorials teach; symtape records it, gives
numeric gradients at the cost of a few array ops per recorded op, and the exact closed
form of every value and gradient as a SymPy expression (``.expr``).

Examples
--------
>>> import symtape as st
>>> x = st.Variable(3.0, name="x")
>>> with st.GradientTape() as tape:
...     y = x ** 2
>>> g = tape.gradient(y, x)
>>> float(g), g.expr
(6.0, 2*x)
"""

from symtape import random
from symtape.backends import DeviceError
from symtape.dtypes import as_dtype, bool, float16, float32, float64, int32, int64
from symtape.ops import (abs, acos, add, asin, atan, atan2, cast, concat, cos, cosh, divide, equal,
                         erf, exp, greater, greater_equal, less, less_equal, log, log1p,
                         logical_not, matmul, maximum, minimum, multiply, negative, not_equal,
                         one_hot, ones, pow, range, reduce_max, reduce_mean, reduce_min,
                         reduce_sum, relu, reshape, sigmoid, sign, sin, sinh, softplus, sqrt,
                         square, stack, subtract, tan, tanh, tensordot, transpose, where, zeros)
from symtape.tape import GradientTape, UnconnectedGradients
from symtape.tensor import Tensor, Variable, constant, convert_to_tensor

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Variable", "constant", "convert_to_tensor", "GradientTape", "UnconnectedGradients",
    "DeviceError", "random", "as_dtype", "float16", "float32", "float64", "int32", "int64", "bool",
    "add", "subtract", "multiply", "divide", "negative", "pow", "square", "sqrt", "exp", "log",
    "log1p", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf",
    "sigmoid", "relu", "softplus", "abs", "sign", "maximum", "minimum", "where", "less",
    "less_equal", "greater", "greater_equal", "equal", "not_equal", "logical_not", "cast",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reshape", "transpose", "concat",
    "stack", "matmul", "tensordot", "one_hot", "zeros", "ones", "range",
]
