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

from symtape import check, config, optimize, optimizers, random
from symtape.arrays.backends import DeviceError, device
from symtape.check import GradCheck, check_grads
from symtape.kernels.compile import Kernel, clear_kernel_cache, compile, kernel_cache_info
from symtape.transforms.derivatives import grad, hessian, jacobian, value_and_grad
from symtape.transforms.functional import ConcreteFunction, Function, function
from symtape.transforms.vmap import vmap
from symtape.arrays.dtypes import as_dtype, bool, float16, float32, float64, int32, int64
from symtape.core.ops import *  # noqa: F401,F403  (its __all__ is the list of ops)
from symtape.core.ops import __all__ as _OPS
from symtape.parsing import ParseError, parse
from symtape.core.tape import GradientTape, UnconnectedGradients
from symtape.core.tensor import Tensor, Variable, constant, convert_to_tensor

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Variable", "constant", "convert_to_tensor", "GradientTape", "UnconnectedGradients",
    "DeviceError", "device", "config", "random", "optimizers", "optimize", "function",
    "Function", "ConcreteFunction", "grad", "value_and_grad", "jacobian", "hessian", "vmap", "compile", "Kernel",
    "kernel_cache_info", "clear_kernel_cache", "as_dtype", "float16", "float32", "float64",
    "int32", "int64", "bool", "check", "check_grads", "GradCheck", "parse", "ParseError",
    *_OPS,
]
