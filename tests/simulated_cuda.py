"""The CUDA C of ``cupy.ElementwiseKernel`` bodies, executed on NumPy (for ``simulated_cupy.py``).

A small, strict translator of the restricted C that symtape's fused kernels are printed in,
so that a printing bug fails a test instead of passing silently. What it takes:

- statements ``const TYPE name = expr;`` (locals) and ``out = expr;`` (an output parameter);
- C types ``bool float double signed char unsigned char short unsigned short int
  unsigned int long long unsigned long long``;
- literals: ``1.5`` (double), ``1.5F``/``1.5f`` (float), ``2`` (int), ``true``/``false``;
  the bit patterns ``__longlong_as_double(0x...LL)`` and ``__int_as_float(0x...)``;
- operators ``?:  ||  &&  == !=  < <= > >=  + -  * /``, unary ``-`` and ``!``, casts ``(TYPE)x``;
- calls of the C math functions, by their C names: ``sin`` takes and returns double, ``sinf``
  float (``sin`` of a float, which C would silently promote, is refused, as is ``sinf`` of a
  double), likewise ``cos tan asin acos atan sinh cosh tanh asinh acosh atanh exp log log1p
  sqrt erf fabs floor ceil atan2 pow``.

Strictness, beyond C's own rules: arithmetic and comparison operands must have the same type
(C's implicit promotions are where float32 kernels silently compute in double), arithmetic
is on float and double only (no integer division by accident), ``!``, ``&&``, ``||`` and the
ternary's condition take bool, both branches of a ternary have one type, a local's value has
its declared type. Anything else raises ``CudaTranslationError`` naming what it met.

Evaluation is NumPy's, elementwise over the broadcast arguments, in the declared dtypes
(float32 arithmetic in float32), with IEEE results for 1/0, overflow and NaN.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import special

TYPES = {"bool": np.bool_, "float": np.float32, "double": np.float64, "signed char": np.int8,
         "unsigned char": np.uint8, "short": np.int16, "unsigned short": np.uint16,
         "int": np.int32, "unsigned int": np.uint32, "long long": np.int64,
         "unsigned long long": np.uint64}
_FLOAT_TYPES = ("float", "double")
_MATH = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
         "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
         "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "exp": np.exp,
         "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt, "erf": special.erf,
         "fabs": np.fabs, "floor": np.floor, "ceil": np.ceil, "atan2": np.arctan2,
         "pow": np.power}
_ARITY = {"atan2": 2, "pow": 2}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<hex>0x[0-9a-fA-F]+(?:LL|ll)?)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fF]?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/<>!?:(),;=])
""", re.VERBOSE)


class CudaTranslationError(ValueError):
    """The body uses C this translator does not know (or breaks its strict rules)."""


def _tokens(source: str) -> list[str]:
    out, at = [], 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise CudaTranslationError(f"unknown character {source[at]!r} at {at} in {source!r}")
        at = match.end()
        if match.lastgroup != "space":
            out.append(match.group())
    return out


class Value:
    """An array and its C type."""

    def __init__(self, array, ctype: str):
        self.array, self.ctype = np.asarray(array, dtype=TYPES[ctype]), ctype


def run(operation: str, inputs: dict[str, Value], outputs: dict[str, str]) -> dict[str, Value]:
    """Execute ``operation`` on ``inputs`` (by name) for ``outputs`` (name -> C type)."""
    scope = dict(inputs)
    assigned: dict[str, Value] = {}
    with np.errstate(all="ignore"):
        parser = _Parser(_tokens(operation), scope)
        while not parser.done():
            name, value = parser.statement(outputs)
            if name in outputs:
                assigned[name] = value
            else:
                scope[name] = value
    missing = set(outputs) - set(assigned)
    if missing:
        raise CudaTranslationError(f"the body never assigns {sorted(missing)}")
    return assigned


class _Parser:
    def __init__(self, tokens: list[str], scope: dict):
        self.tokens, self.at, self.scope = tokens, 0, scope

    def done(self) -> bool:
        return self.at >= len(self.tokens)

    def peek(self, offset: int = 0) -> str | None:
        at = self.at + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise CudaTranslationError(f"expected {expected!r}, found {token!r} "
                                       f"(after {' '.join(self.tokens[:self.at][-8:])!r})")
        self.at += 1
        return token

    def type_name(self) -> str | None:
        """A C type starting here (not consumed), or None."""
        for words in (3, 2, 1):
            candidate = " ".join(t for t in self.tokens[self.at:self.at + words] if t)
            if len(self.tokens[self.at:self.at + words]) == words and candidate in TYPES:
                return candidate
        return None

    def statement(self, outputs: dict) -> tuple[str, Value]:
        if self.peek() == "const":
            self.take()
            ctype = self.type_name()
            if ctype is None:
                raise CudaTranslationError(f"unknown type at {self.peek()!r}")
            self.at += len(ctype.split())
            name = self.take()
            if name in self.scope or name in outputs:
                raise CudaTranslationError(f"{name!r} is declared twice")
        else:
            name = self.take()
            if name not in outputs:
                raise CudaTranslationError(f"assignment to {name!r}, which is not an output")
            ctype = outputs[name]
        self.take("=")
        value = self.expression()
        self.take(";")
        if value.ctype != ctype:
            raise CudaTranslationError(f"{name!r} is {ctype} but its value is {value.ctype}")
        return name, value

    def expression(self) -> Value:
        condition = self.binary(0)
        if self.peek() != "?":
            return condition
        self.take("?")
        yes = self.expression()
        self.take(":")
        no = self.expression()
        _require(condition, ("bool",), "a ternary's condition")
        if yes.ctype != no.ctype:
            raise CudaTranslationError(f"a ternary's branches are {yes.ctype} and {no.ctype}")
        return Value(np.where(condition.array, yes.array, no.array), yes.ctype)

    _LEVELS = [("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/")]

    def binary(self, level: int) -> Value:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level]:
            operator = self.take()
            left = _apply(operator, left, self.binary(level + 1))
        return left

    def unary(self) -> Value:
        token = self.peek()
        if token == "-":
            self.take()
            operand = self.unary()
            _require(operand, _FLOAT_TYPES, "unary minus")
            return Value(-operand.array, operand.ctype)
        if token == "!":
            self.take()
            operand = self.unary()
            _require(operand, ("bool",), "'!'")
            return Value(~operand.array, "bool")
        if token == "(":
            self.at += 1
            ctype = self.type_name()
            if ctype is not None:  # a cast
                self.at += len(ctype.split())
                self.take(")")
                operand = self.unary()
                return Value(operand.array.astype(TYPES[ctype]), ctype)
            inner = self.expression()
            self.take(")")
            return inner
        return self.primary()

    def primary(self) -> Value:
        token = self.take()
        if token in ("true", "false"):
            return Value(token == "true", "bool")
        if token[0].isdigit() or token[0] == ".":
            if token[-1] in "fF":
                return Value(np.float32(token[:-1]), "float")
            if any(c in token for c in ".eE"):
                return Value(float(token), "double")
            return Value(int(token), "int")
        if token in ("__longlong_as_double", "__int_as_float"):
            self.take("(")
            bits = self.take()
            self.take(")")
            if token == "__longlong_as_double":
                if not bits.endswith(("LL", "ll")):
                    raise CudaTranslationError(f"{token} needs a long long literal, got {bits}")
                return Value(np.array(int(bits[:-2], 16), np.uint64).view(np.float64), "double")
            return Value(np.array(int(bits, 16), np.uint32).view(np.float32), "float")
        if not re.fullmatch(r"[A-Za-z_]\w*", token):
            raise CudaTranslationError(f"unexpected {token!r}")
        if self.peek() == "(":
            return self.call(token)
        if token not in self.scope:
            raise CudaTranslationError(f"unknown name {token!r}")
        return self.scope[token]

    def call(self, name: str) -> Value:
        self.take("(")
        args = [self.expression()]
        while self.peek() == ",":
            self.take(",")
            args.append(self.expression())
        self.take(")")
        base, ctype = (name[:-1], "float") if name[:-1] in _MATH and name not in _MATH else (
            name, "double")
        if base not in _MATH:
            raise CudaTranslationError(f"unknown function {name!r}")
        if len(args) != _ARITY.get(base, 1):
            raise CudaTranslationError(f"{name} takes {_ARITY.get(base, 1)} arguments")
        for arg in args:
            if arg.ctype != ctype:
                raise CudaTranslationError(
                    f"{name} of a {arg.ctype}: use {base + ('f' if arg.ctype == 'float' else '')}"
                    f" (C would convert the argument to {ctype})")
        return Value(_MATH[base](*[a.array for a in args]), ctype)


def _require(value: Value, ctypes: tuple, what: str) -> None:
    if value.ctype not in ctypes:
        raise CudaTranslationError(f"{what} of a {value.ctype} (takes {' or '.join(ctypes)})")


_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
            ">": np.greater, ">=": np.greater_equal}


def _apply(operator: str, a: Value, b: Value) -> Value:
    if a.ctype != b.ctype:
        raise CudaTranslationError(f"{a.ctype} {operator} {b.ctype}: operands of different "
                                   "types (C would convert one implicitly); cast explicitly")
    if operator in ("||", "&&"):
        _require(a, ("bool",), repr(operator))
        return Value((np.logical_or if operator == "||" else np.logical_and)(a.array, b.array),
                     "bool")
    if operator in _COMPARE:
        return Value(_COMPARE[operator](a.array, b.array), "bool")
    _require(a, _FLOAT_TYPES, f"'{operator}'")
    return Value(_ARITHMETIC[operator](a.array, b.array), a.ctype)


def parse_parameters(text: str) -> list[tuple[str, str]]:
    """``"float64 x, bool y"`` -> ``[("float64", "x"), ("bool", "y")]`` (concrete dtypes only)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        words = part.split()
        if len(words) != 2:
            raise CudaTranslationError(f"parameter {part!r}: the simulation takes 'DTYPE name' "
                                       "(no raw, no type placeholders)")
        dtype, name = words
        try:
            np.dtype(dtype)
        except TypeError:
            raise CudaTranslationError(f"parameter {part!r}: {dtype!r} is not a dtype name "
                                       "(type placeholders are not simulated)") from None
        out.append((dtype, name))
    return out


def c_type(dtype) -> str:
    """The C type of a NumPy dtype (as CuPy declares parameters in the body)."""
    dtype = np.dtype(dtype)
    for ctype, numpy_type in TYPES.items():
        if np.dtype(numpy_type) == dtype:
            return ctype
    raise CudaTranslationError(f"no C type for dtype {dtype}")


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` on host values: typed parameters only; arrays must have the
    declared dtypes (a typed CuPy kernel casts no arrays here), Python and NumPy scalars are
    converted; inputs broadcast; output arrays may be passed after the inputs. The body is
    translated when the kernel is made, as CuPy compiles it: C this module does not know
    fails there."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel",
                 **options):
        self.inputs, self.outputs = parse_parameters(in_params), parse_parameters(out_params)
        self.operation, self.name = operation, name
        trial = {n: Value(np.zeros(1, d), c_type(d)) for d, n in self.inputs}
        run(operation, trial, self.output_types)

    @property
    def output_types(self) -> dict[str, str]:
        return {n: c_type(d) for d, n in self.outputs}

    def __call__(self, *args):
        if len(args) not in (len(self.inputs), len(self.inputs) + len(self.outputs)):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        values = {}
        for (dtype, name), arg in zip(self.inputs, args):
            if isinstance(arg, np.ndarray) and arg.dtype != np.dtype(dtype):
                raise TypeError(f"{self.name}: argument {name} is {arg.dtype}, declared {dtype}")
            values[name] = Value(arg, c_type(dtype))
        given = args[len(self.inputs):]
        if not any(isinstance(a, np.ndarray) for a in args):
            raise ValueError("Loop size is undecided")
        shape = np.broadcast_shapes(*[v.array.shape for v in values.values()],
                                    *[g.shape for g in given])
        results = run(self.operation, values, self.output_types)
        outs = []
        for k, (dtype, name) in enumerate(self.outputs):
            data = np.broadcast_to(results[name].array, shape).astype(dtype)
            if given:
                given[k][...] = data
                outs.append(given[k])
            else:
                outs.append(np.array(data))
        return outs[0] if len(outs) == 1 else tuple(outs)
