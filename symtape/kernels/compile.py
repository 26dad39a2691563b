"""Compiling SymPy expressions into NumPy or CuPy kernels.

Code generation is a pipeline, as in ``sympy.lambdify`` but without its slow paths:

1. constant subexpressions are folded to Python floats (they take the dtype of the
   array they meet, so float32 in gives float32 out);
2. common subexpressions are shared (``sympy.cse``), across every output compiled together;
3. expressions nested deeper than a few dozen levels are cut into temporaries, so no
   printer recursion depth grows with the input;
4. each block is printed by SymPy's ``NumPyPrinter`` (``CuPyPrinter`` for CuPy: a backend
   is data), into a plain ``def`` compiled under a unique ``linecache`` name so that
   tracebacks show the generated line.

Kernels broadcast: an argument may carry extra leading (batch) axes, and the kernel
evaluates every point of the batch in one call. Compiled kernels are cached by what they
compute (the expressions, the input layout and the backend): compiling the same thing
again costs a dictionary lookup.
"""

from __future__ import annotations

import builtins
import collections
import importlib
import itertools
import linecache
import math
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import sympy
from sympy.printing.numpy import CuPyPrinter, NumPyPrinter

from symtape.arrays.backends import is_gpu_array
from symtape.kernels.settings import HOST_BACKENDS, resolve_backend
from symtape.arrays.objarrays import NEGATIVE_ZERO, as_sympy
from symtape.core.accumulate import itself, toposort
from symtape.core.symbolic import recursion_headroom
from symtape.core.tensor import Operators


__all__ = ["Kernel", "compile", "kernel_cache_info", "clear_kernel_cache", "function_source",
           "straight_line", "body", "emit", "assignments", "tuple_code"]

_MAX_DEPTH = 40  # deeper subtrees become temporaries: printing never recurses further
_MAX_WIDTH = 64  # wider sums and products are summed in parts
_CACHE_SIZE = 512


# ---------------------------------------------------------------- printing


class Names:
    """Maps input symbols to argument entries and gives temporaries safe identifiers."""

    def __init__(self, taken=()):
        self.of: dict[sympy.Symbol, str] = {}
        self._counter = itertools.count()
        self._taken = frozenset(taken)  # names a temporary must not overwrite (parameters)

    def fresh(self, prefix: str = "t") -> str:
        while True:
            name = f"_{prefix}{next(self._counter)}"
            if name not in self._taken:
                return name

    def temporary(self, prefix: str) -> sympy.Dummy:
        """A new temporary symbol, already named in the generated code."""
        temp = sympy.Dummy(self.fresh(prefix))
        self.of[temp] = temp.name
        return temp


def _printer_class(base):
    class KernelPrinter(base):
        """SymPy's array printer with our symbol names and vectorized special functions."""

        def __init__(self, names: Names, allow_unknown_functions: bool = False):
            # unknown functions: the program compiler's calls of namespace entries
            super().__init__({"fully_qualified_modules": True, "order": "none",
                              "allow_unknown_functions": allow_unknown_functions})
            self._names = names

        def _print_Symbol(self, expr):
            name = self._names.of.get(expr)
            if name is None:
                raise ValueError(f"symbol {expr} is not an input of this kernel")
            return name

        _print_Dummy = _print_Symbol

        def _print_erf(self, expr):
            return f"_erf({self._print(expr.args[0])})"

        def _print_Float(self, expr):
            # the double itself, all 17 digits (SymPy prints 15: 0.09999999999999998 as 0.1)
            return repr(float(expr))

        def _print_Pow(self, expr, rational=False):
            # x*x: twice as fast as x**2 on Python floats, the same on arrays
            if expr.exp == 2 and expr.base.is_Symbol:
                base = self._print(expr.base)
                return f"({base}*{base})"
            if not (expr.exp.is_Integer or expr.exp in (sympy.S.Half, -sympy.S.Half)):
                # Python's float ** gives a complex number for a negative base (abs() of it
                # is then a wrong real); NumPy's power gives nan, on floats and arrays alike
                power = self._module_format(self._module + ".power")
                return f"{power}({self._print(expr.base)}, {self._print(expr.exp)})"
            return super()._print_Pow(expr, rational=rational)

        def _print_Piecewise(self, expr):
            # nested `where` works for CuPy too (SymPy's `select` form does not) and broadcasts
            *pieces, (last, condition) = expr.args
            if condition != sympy.true:
                pieces.append((last, condition))
                last = sympy.nan
            code = self._print(last)
            for value, condition in reversed(pieces):
                code = self._choice(self._print(condition), self._print(value), code)
            return code

        def _choice(self, condition: str, value: str, otherwise: str) -> str:
            """The code of ``value`` where ``condition`` holds, else ``otherwise``."""
            where = self._module_format(self._module + ".where")
            return f"{where}({condition}, {value}, {otherwise})"

        def _extremum(self, name: str) -> str:
            """The function computing ``maximum`` or ``minimum`` (NumPy's NaN and ties)."""
            return self._module_format(f"{self._module}.{name}")

        def _print_Max(self, expr):
            return self._nested(self._extremum("maximum"), expr.args)

        def _print_Min(self, expr):
            return self._nested(self._extremum("minimum"), expr.args)

        def _nested(self, name: str, args) -> str:
            """Binary elementwise calls (``amax`` of a tuple would not broadcast)."""
            code = self._print(args[0])
            for arg in args[1:]:
                code = f"{name}({code}, {self._print(arg)})"
            return code

        def _print_Heaviside(self, expr):
            at_zero = expr.args[1] if len(expr.args) > 1 else sympy.Rational(1, 2)
            return (f"{self._module_format(self._module + '.heaviside')}("
                    f"{self._print(expr.args[0])}, {self._print(at_zero)})")

    return KernelPrinter


PRINTERS = {"numpy": _printer_class(NumPyPrinter), "cupy": _printer_class(CuPyPrinter)}




def function_source(functions: dict, symbols) -> str:
    """Standalone NumPy source of ``def name(<symbols>)`` for each ``name: outputs`` given.

    The readable counterpart of a kernel's ``source``: parameters keep the symbols' names,
    shared subexpressions become ``_c0, _c1, ...``, ``outputs`` (an expression or a nested
    list of them) is returned as an expression or a ``numpy.array``.

    Parameters
    ----------
    functions : dict of str to outputs
        Function name (a Python identifier) to what it returns: a SymPy expression or a
        nested list of them.
    symbols : sequence of sympy.Symbol
        The parameters, in order; each name must be a usable, distinct Python name.

    Returns
    -------
    str
        The module's source: imports, then one ``def`` per function.

    Raises
    ------
    ValueError
        If a function name is not an identifier, or a parameter name is unusable or repeated.
    TypeError
        If an output is not a SymPy expression (strings are never parsed here).

    Examples
    --------
    >>> x, y = sympy.symbols("x y", real=True)
    >>> print(function_source({"gradient": [2*x*sympy.sin(y), x**2*sympy.sin(y)]}, [x, y]))
    import numpy
    <BLANKLINE>
    <BLANKLINE>
    def gradient(x, y):
        _c0 = numpy.sin(y)
        return numpy.array([2*x*_c0, (x*x)*_c0])
    """
    parameters = _parameter_names(symbols)
    aliases = _module_aliases(parameters)
    definitions, uses_scipy = [], False
    for name, outputs in functions.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"function_source: {name!r} is not a Python identifier")
        names = Names(taken=[*parameters, *aliases.values()])
        names.of.update(zip(symbols, parameters))
        printer = _StandalonePrinter(names, aliases)
        array = np.array(outputs, dtype=object)
        statements, reduced = straight_line(
            [as_sympy(e, f"function_source: outputs of {name!r} must be SymPy expressions")
             for e in array.ravel()], names, generated=False)
        lines = [f"def {name}({', '.join(parameters)}):",
                 *assignments(statements, printer, names)]
        printed = np.array([printer.doprint(e) for e in reduced], dtype=object)
        result = printed.item() if array.ndim == 0 else (
            f"{aliases['numpy']}.array("
            + str(printed.reshape(array.shape).tolist()).replace("'", "") + ")")
        definitions.append("\n".join([*lines, f"    return {result}"]))
        uses_scipy |= printer.uses_scipy
    imports = [_import("numpy", aliases["numpy"])]
    if uses_scipy:
        imports.append(_import("scipy.special", aliases["scipy.special"]))
    return "\n\n\n".join(["\n".join(imports), *definitions])


def _parameter_names(symbols) -> list[str]:
    """The symbols' names, checked to be distinct Python parameters (as st.parse's are)."""
    from symtape.parsing import name_problem  # parsing reads the op registry: import late

    names = []
    for symbol in symbols:
        if not isinstance(symbol, sympy.Symbol):
            raise TypeError(f"function_source: parameters must be SymPy symbols, got {symbol!r}")
        problem = name_problem(symbol.name)
        if problem is not None and not problem.startswith("is a function"):
            raise ValueError(f"function_source: the parameter {symbol.name!r} {problem}")
        if symbol.name in names:
            raise ValueError(f"function_source: two parameters are named {symbol.name!r}; "
                             "rename one of the symbols")
        names.append(symbol.name)
    return names


def _module_aliases(parameters: list[str]) -> dict[str, str]:
    """What the code calls ``numpy`` and ``scipy.special``: their own names, unless a
    parameter would shadow them (a variable called ``numpy``)."""
    taken = set(parameters)

    def alias(module: str, name: str) -> str:
        while name in taken:
            name = "_" + name
        taken.add(name)
        return name

    numpy_name = alias("numpy", "numpy")
    special = "scipy.special" if "scipy" not in taken else alias("scipy.special", "scipy_special")
    return {"numpy": numpy_name, "scipy.special": special}


def _import(module: str, name: str) -> str:
    return f"import {module}" if name == module else f"import {module} as {name}"


class _StandalonePrinter(PRINTERS["numpy"]):
    """Prints ``erf`` as SciPy's (kernels use their own, code for users should not), and the
    modules under the names :func:`_module_aliases` gave them."""

    uses_scipy = False

    def __init__(self, names: Names, aliases: dict[str, str]):
        super().__init__(names)
        self._aliases = aliases

    def _module_format(self, fqn, register=True):
        text = super()._module_format(fqn, register)
        module, dot, rest = text.partition(".")
        return f"{self._aliases['numpy']}.{rest}" if module == "numpy" and dot else text

    def _print_erf(self, expr):
        self.uses_scipy = True
        return f"{self._aliases['scipy.special']}.erf({self._print(expr.args[0])})"


# ---------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True)
class _Layout:
    """Where each input symbol lives: argument ``arg`` at entry ``index`` (core shape ``shape``)."""

    shapes: tuple[tuple[int, ...], ...]  # core shape of each argument
    entries: tuple[tuple[sympy.Symbol, int, tuple[int, ...]], ...]

    def read(self, names: Names) -> list[tuple[str, str]]:
        """``(local, code)`` per input symbol, in order: its name in a kernel (``_x0``, ...,
        given in ``names``) and the code that reads it from the kernel's ``_args``, batch
        axes kept (``_args[0][..., 1]``)."""
        read = []
        for symbol, arg, index in self.entries:
            name = names.of[symbol] = names.fresh("x")
            read.append((name, f"_args[{arg}]" + (f"[..., {', '.join(map(str, index))}]"
                                                  if index else "")))
        return read


def _input_layout(inputs) -> _Layout:
    if isinstance(inputs, (sympy.Symbol, sympy.NDimArray, sympy.MatrixBase)):
        inputs = [inputs]
    shapes, entries, seen = [], [], set()
    for arg, item in enumerate(inputs):
        array = _as_object_array(item)
        shapes.append(array.shape)
        for index in np.ndindex(*array.shape):
            symbol = array[index]
            if not isinstance(symbol, sympy.Symbol):
                raise TypeError(f"compile: inputs must be SymPy symbols (or arrays of them); "
                                f"input {arg} holds {symbol!r}")
            if symbol in seen:
                raise ValueError(f"compile: symbol {symbol} appears twice in the inputs")
            seen.add(symbol)
            entries.append((symbol, arg, index))
    return _Layout(tuple(shapes), tuple(entries))


def _as_object_array(item) -> np.ndarray:
    if isinstance(item, sympy.MatrixBase):
        item = item.tolist()
    elif isinstance(item, sympy.NDimArray):
        return np.array(item.tolist() if item.shape else item[()], dtype=object).reshape(item.shape)
    if isinstance(item, (list, tuple, np.ndarray)):
        return np.array(item, dtype=object)
    array = np.empty((), dtype=object)  # a single expression (np.array would look inside it)
    array[()] = item
    return array


def _output_spec(outputs) -> tuple[bool, list[np.ndarray]]:
    """(returns a tuple?, one object array per output)."""
    if isinstance(outputs, tuple):
        return True, [_as_output(o) for o in outputs]
    return False, [_as_output(outputs)]


def _as_output(item) -> np.ndarray:
    array = _as_object_array(item)
    flat = array.reshape(-1)
    for i, entry in enumerate(flat):
        flat[i] = as_sympy(entry, "compile: outputs must be SymPy expressions")
        if not isinstance(flat[i], sympy.Expr):
            raise TypeError(f"compile: outputs must be SymPy expressions, got {entry!r}")
        _check_defined(flat[i])
    return array


_UNDEFINED = {sympy.zoo: "complex infinity, from a division by zero",
              sympy.nan: "not a number", sympy.oo: "infinity", -sympy.oo: "minus infinity"}


def _check_defined(expr: sympy.Expr) -> None:
    """Refuse outputs holding zoo or nan, SymPy's marks of an undefined formula (``x/0``),
    or that are infinite: a kernel would silently compute nan or inf from them (an infinite
    branch inside a Piecewise or Max stays allowed)."""
    found = [atom for atom in (sympy.zoo, sympy.nan) if expr.has(atom)]
    found += [expr] if expr in (sympy.oo, -sympy.oo) else []
    if found:
        raise ValueError(f"compile: the output {_short_text(expr)} contains {found[0]} "
                         f"({_UNDEFINED[found[0]]}), so it is undefined; fix the formula "
                         "(a division by zero?) before compiling it")


def _short_text(expr) -> str:
    text = str(expr)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- code generation


def fold_constants(expr: sympy.Expr) -> sympy.Expr:
    """Replace number-only subtrees (``sqrt(2)``) by Python floats (weakly typed in NumPy)."""
    replacements = {}
    for node in sympy.postorder_traversal(expr):
        if node.is_number and not node.is_Atom and node not in replacements:
            if node.has(NEGATIVE_ZERO):  # evalf has no signed zero: keep -0.0 as printed
                continue
            value = complex(node.evalf(17))
            if value.imag == 0:
                replacements[node] = sympy.Float(value.real, 17)
    return expr.xreplace(replacements) if replacements else expr


def shared_subexpressions(exprs: list) -> tuple[list, list]:
    """Common-subexpression elimination in linear time: ``(replacements, reduced)`` as
    ``sympy.cse`` returns them, for subtrees that occur more than once (structurally equal
    SymPy trees hash equal). ``sympy.cse`` also searches for shared sub-products and
    sub-sums, which costs seconds on a few thousand expressions; the trees a sweep
    produces share whole subtrees, which is what this finds.

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> replacements, reduced = shared_subexpressions([sympy.sin(x*y) + 1, sympy.sin(x*y)**2])
    >>> [value for _, value in replacements], [str(r) for r in reduced]
    ([sin(x*y)], ['_c0 + 1', '_c0**2'])
    """
    counts: dict = {}
    stack = list(exprs)
    while stack:
        expr = stack.pop()
        if not expr.args or _cheap(expr):
            continue
        seen = counts.get(expr, 0)
        counts[expr] = seen + 1
        if not seen:
            stack.extend(expr.args)
    names = (sympy.Dummy(f"c{i}") for i in itertools.count())
    temporary: dict = {}
    rebuilt: dict = {}
    replacements: list = []
    for expr in _postorder(exprs, counts):
        args = tuple(temporary.get(a, rebuilt.get(a, a)) for a in expr.args)
        new = expr if args == expr.args else _rebuild(expr, args)
        rebuilt[expr] = new
        # only values get temporaries: a Piecewise needs its (value, condition) pairs and
        # conditions as they are
        if counts.get(expr, 0) > 1 and isinstance(expr, sympy.Expr):
            temporary[expr] = symbol = next(names)
            replacements.append((symbol, new))
    return replacements, [temporary.get(e, rebuilt.get(e, e)) for e in exprs]


def _cheap(expr) -> bool:
    """Not worth a temporary: ``-x``, ``2*x`` (a number times an atom)."""
    return expr.is_Mul and len(expr.args) == 2 and expr.args[0].is_Number and expr.args[1].is_Atom


def _postorder(exprs: list, counts: dict) -> list:
    """Counted subtrees, each once, every one after its arguments."""
    return toposort(exprs, lambda expr: [a for a in expr.args[::-1] if a in counts]
                    if expr in counts else None, key=itself)


def _arguments_last_first(expr) -> tuple:
    return expr.args[::-1]


def _rebuild(expr, args):
    if expr.is_Add or expr.is_Mul:
        return expr._new_rawargs(*args)  # no re-sorting or flattening: printing needs neither
    return expr.func(*args)


def cut_deep(expr: sympy.Basic, names: Names, block: list) -> sympy.Basic:
    """Bound the nesting depth: subtrees deeper than ``_MAX_DEPTH`` become temporaries."""
    depth: dict[sympy.Basic, int] = {}
    rebuilt: dict[sympy.Basic, sympy.Basic] = {}
    for node in toposort([expr], _arguments_last_first, key=itself):
        if not node.args:
            rebuilt[node], depth[node] = node, 0
            continue
        args = [rebuilt[a] for a in node.args]
        if node.is_Add or node.is_Mul:
            args = _chunked(node.func, args, names, block, depth)
        new = node.func(*args, evaluate=False) if args != list(node.args) else node
        level = 1 + max(depth[a] for a in args)
        if level > _MAX_DEPTH:
            temp = names.temporary("d")
            block.append((temp, new))
            new, level = temp, 0
        rebuilt[node], depth[new] = new, level
    return rebuilt[expr]


def _chunked(func, args: list, names: Names, block: list, depth: dict) -> list:
    """Split a very wide sum or product into partial results (Python's compiler recurses on
    ``a + b + ...`` as deep as the chain is long)."""
    while len(args) > _MAX_WIDTH:
        grouped = []
        for start in range(0, len(args), _MAX_WIDTH):
            temp = names.temporary("w")
            block.append((temp, func(*args[start:start + _MAX_WIDTH], evaluate=False)))
            depth[temp] = 0
            grouped.append(temp)
        args = grouped
    return args


def straight_line(exprs: list, names: Names, cse: bool = True,
                  generated: bool = True) -> tuple[list, list]:
    """``(statements, results)``: the expressions as straight-line code, the shared
    subexpressions first as ``(temporary, value)`` statements named ``_c0, _c1, ...``, then
    the expressions that use them. ``generated`` code (a kernel, not code for people to
    read) has its constants folded to floats and no expression nested deeper than
    ``_MAX_DEPTH`` (deeper subtrees become statements too).

    Parameters
    ----------
    exprs : list of sympy.Basic
        The expressions to compute.
    names : Names
        The code names of the symbols; the temporaries are added to it.
    cse : bool, default True
        Whether shared subexpressions become temporaries (else only deep subtrees do).
    generated : bool, default True
        Code for a kernel (constants folded to floats, depth cut) or for people to read.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> names = Names()
    >>> names.of[x] = "x"
    >>> statements, results = straight_line([sympy.sin(x) + 1, sympy.sin(x) ** 2], names)
    >>> [(names.of[t], str(v)) for t, v in statements], [str(r) for r in results]
    ([('_c0', 'sin(x)')], ['_c0 + 1', '_c0**2'])
    """
    if generated:
        exprs = [fold_constants(e) for e in exprs]
    replacements, reduced = shared_subexpressions(exprs) if cse else ([], exprs)
    statements: list = []
    for symbol, value in replacements:
        names.of[symbol] = names.fresh("c")
        statements.append((symbol, cut_deep(value, names, statements) if generated else value))
    results = [cut_deep(e, names, statements) for e in reduced] if generated else reduced
    return statements, results


def body(statements: list, results: list, printer, names: Names, fused=None,
         shapes: list | None = None) -> list[str]:
    """The body of a generated function: :func:`emit`'s lines, or for CuPy (a ``fused``
    hook, see :mod:`symtape.kernels.cupy_fused`) the statements fused across each other
    into kernels, the results (of ``shapes``) returned.

    Parameters
    ----------
    statements, results
        :func:`straight_line`'s output.
    printer : sympy.printing.printer.Printer
        Prints an expression as code in ``names``.
    names : Names
        The code names of the symbols and temporaries.
    fused : callable, optional
        The CuPy fuser's hook; None prints the statements one by one (:func:`emit`).
    shapes : list of tuple, optional
        The results' shapes, which the fuser needs.

    Examples
    --------
    >>> from sympy.printing.pycode import PythonCodePrinter
    >>> x = sympy.Symbol("x")
    >>> names = Names()
    >>> names.of[x] = "x"
    >>> body(*straight_line([x + 1], names), PythonCodePrinter(), names)
    ['    return (x + 1,)']
    """
    if fused is not None:
        return fused.program(statements, results, shapes)
    return emit(statements, results, printer, names)


def emit(statements: list, results: list, printer, names: Names) -> list[str]:
    """The body of a generated function: one line ``name = code`` per statement, then the
    results returned as a tuple (see :func:`tuple_code`).

    Parameters
    ----------
    statements, results
        :func:`straight_line`'s output.
    printer : sympy.printing.printer.Printer
        Prints an expression as code in ``names``.
    names : Names
        The code names of the symbols and temporaries.

    Examples
    --------
    >>> from sympy.printing.pycode import PythonCodePrinter
    >>> x = sympy.Symbol("x")
    >>> names = Names()
    >>> names.of[x] = "x"
    >>> emit(*straight_line([x + 1, 2 * x], names), PythonCodePrinter(), names)
    ['    return (x + 1, 2*x,)']
    """
    return assignments(statements, printer, names) + [
        f"    return {tuple_code([printer.doprint(r) for r in results])}"]


def assignments(statements: list, printer, names: Names) -> list[str]:
    """One line ``name = code`` per ``(symbol, expression)`` statement.

    Parameters
    ----------
    statements : list of tuple
        ``(symbol, expression)`` pairs, as :func:`straight_line` gives them.
    printer : sympy.printing.printer.Printer
        Prints an expression as code in ``names``.
    names : Names
        The code names of the symbols and temporaries.

    Examples
    --------
    >>> from sympy.printing.pycode import PythonCodePrinter
    >>> x, t = sympy.symbols("x t")
    >>> names = Names()
    >>> names.of[x], names.of[t] = "x", "t"
    >>> assignments([(t, x ** 2)], PythonCodePrinter(), names)
    ['    t = x**2']
    """
    return [f"    {names.of[symbol]} = {printer.doprint(value)}" for symbol, value in statements]


def tuple_code(codes: list[str]) -> str:
    """The code of a tuple of ``codes`` (``(a,)`` for one, ``()`` for none)."""
    return f"({', '.join(codes)}{',' if codes else ''})"


def _generate(layout: _Layout, outputs: list[np.ndarray], backend: str,
              cse: bool) -> tuple[str, frozenset, dict]:
    """The kernel's source, the modules its printed code refers to, and the objects it calls
    (the fused CUDA kernels of the CuPy backend)."""
    if backend == "numba":
        from symtape.kernels.numba_backend import compile_source

        return (*compile_source(layout, outputs, cse), {})
    names = Names()
    # two ways in, one body: arrays (batches, float32, CuPy), or Python floats, several times
    # faster for scalar code evaluated at one float64 point
    arrays_in, floats_in = [], []
    unpacked: dict[int, list[str]] = {}
    for (_, arg, index), (name, code) in zip(layout.entries, layout.read(names)):
        arrays_in.append(f"        {name} = {code}")
        if index:
            unpacked.setdefault(arg, []).append(name)
        else:  # a scalar input is used as given: a Python float stays weakly typed
            floats_in.append(f"        {name} = float(_args[{arg}])")
    for arg, entry_names in unpacked.items():  # entries come in C order: unpack in slices
        floats_in.append(f"        _l{arg} = _args[{arg}].reshape(-1).tolist()")
        for start in range(0, len(entry_names), _MAX_WIDTH):
            chunk = entry_names[start:start + _MAX_WIDTH]
            floats_in.append(f"        ({', '.join(chunk)},) = _l{arg}[{start}:{start + len(chunk)}]")
    block, results = straight_line([e for array in outputs for e in array.reshape(-1)], names,
                                   cse)
    printer = PRINTERS[backend](names)
    namespace: dict = {}
    fused = None
    if backend == "cupy":  # the CUDA C printer is loaded only for CuPy kernels
        from symtape.kernels.cupy_fused import fusing

        fused = fusing(printer, names, namespace, {}, fractions=True)
    # CuPy: fused across the statements, the entries one kernel
    lines = body(block, results, printer, names, fused, [()] * len(results))
    if backend == "numpy" and layout.entries:
        head = ["def kernel(*_args, _floats=False):", "    if _floats:", *floats_in, "    else:",
                *arrays_in]
    else:
        head = ["def kernel(*_args):", *(line[4:] for line in arrays_in)]
    return "\n".join(head + lines) + "\n", frozenset(printer.module_imports), namespace


# ---------------------------------------------------------------- the kernel


class Kernel:
    """A compiled function of SymPy expressions; call it with arrays (batch axes broadcast).

    Attributes
    ----------
    source : str
        The generated Python code.
    backend : str
        ``'numpy'`` or ``'cupy'``.

    Examples
    --------
    >>> import sympy, symtape as st
    >>> x, y = sympy.symbols("x y", real=True)
    >>> k = st.compile(sympy.sin(x) * y, [x, y])
    >>> float(k(0.5, 2.0))
    0.958851077208406
    >>> k([0.0, 0.5], 2.0).shape
    (2,)
    """

    def __init__(self, generated: tuple[str, frozenset, dict], layout: _Layout,
                 outputs: list[np.ndarray], as_tuple: bool, backend: str):
        source, modules, self._namespace = generated
        self.source = source
        self.backend = backend
        self._layout = layout
        self._shapes = [o.shape for o in outputs]
        self._as_tuple = as_tuple
        self._modules = modules
        self._function = _load_kernel(source, modules, backend, self._namespace)
        self._floats = "_floats" in source.partition("\n")[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_function": None}  # pickled as source (to Dask workers)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.backend == "numba":  # its disk cache is keyed by the source
            self._function = _load_kernel(self.source, self._modules, self.backend)
            return
        # the source and the fused kernels it calls are the whole kernel: a full cache key
        fused = tuple(sorted((name, kernel.key) for name, kernel in self._namespace.items()))
        self._function = load_unpickled((self.source, self.backend, fused), self.source,
                                        self._modules, self.backend, self._namespace)

    def __call__(self, *args):
        if any_dask_array(args):
            from symtape import chunked

            return chunked.call_kernel(self, args)
        xp = array_module_for(self.backend)
        if len(args) != len(self._layout.shapes):
            raise TypeError(f"kernel takes {len(self._layout.shapes)} arguments "
                            f"({self._signature()}), got {len(args)}")
        # Python numbers stay Python numbers (weak: float32 arrays keep their dtype)
        values = [_value_of(a) for a in args]
        if xp is np and any(is_gpu_array(v) for v in values):
            raise TypeError("this kernel was compiled for NumPy and got a CuPy array: compile "
                            "it with st.compile(..., backend='cupy') for GPU arrays, or pass "
                            "host arrays (cupy.asnumpy)")
        values = [v if isinstance(v, (int, float)) else xp.asarray(v) for v in values]
        if self._floats and self._plain_float64(values):
            try:  # Python's float arithmetic raises where NumPy's gives inf/nan: then use arrays
                outputs = self._assemble(np, (), self._function(*values, _floats=True),
                                         float_point=True)
                return tuple(outputs) if self._as_tuple else outputs[0]
            except (ArithmeticError, ValueError, TypeError):
                pass
        batch = self._batch_shape(values)
        try:
            flat = self._function(*values)
        except ArithmeticError:  # a Python number raised (1/0.0) where NumPy gives inf/nan
            flat = self._function(*[xp.asarray(v) if isinstance(v, (int, float)) else v
                                    for v in values])
        outputs = self._assemble(xp, batch, flat)
        return tuple(outputs) if self._as_tuple else outputs[0]

    def _plain_float64(self, values) -> bool:
        """One float64 point (no batch axes): the Python-float kernel applies."""
        for value, core in zip(values, self._layout.shapes):
            if type(value) is float:
                continue
            if type(value) is not np.ndarray or value.dtype != np.float64 or value.shape != core:
                return False
        return True

    def _assemble(self, xp, batch: tuple, flat, float_point: bool = False) -> list:
        outputs, start = [], 0
        for shape in self._shapes:
            size = math.prod(shape)
            entries = flat[start:start + size]
            start += size
            if float_point:  # complex results (a negative base to a fractional power) raise
                outputs.append(np.array(entries, dtype=np.float64).reshape(shape))
            elif batch == () and xp is np:
                outputs.append(np.array(entries).reshape(shape))
            else:
                entries = [xp.broadcast_to(xp.asarray(v), batch) for v in entries]
                outputs.append(xp.stack(entries, axis=-1).reshape(batch + shape))
        return outputs

    def _batch_shape(self, arrays) -> tuple[int, ...]:
        batches = leading_batches(
            arrays, self._layout.shapes,
            lambda i, shape, core: f"kernel argument {i} has shape {shape}; expected "
                                   f"(..., {', '.join(map(str, core))}) — a shape ending in "
                                   f"{core}, with optional leading batch axes")
        try:
            return tuple(np.broadcast_shapes(*batches))
        except ValueError:
            raise ValueError(f"kernel arguments' batch shapes {batches} do not broadcast "
                             "together") from None

    def _signature(self) -> str:
        return ", ".join(f"shape (..., {', '.join(map(str, s))})" if s else "scalar"
                         for s in self._layout.shapes)

    def __repr__(self) -> str:
        return f"<st.Kernel backend={self.backend!r} ({self._signature()})>"


def leading_batches(values, point_shapes, mismatch: Callable) -> list[tuple[int, ...]]:
    """Each value's batch shape: the axes its shape has before the point shape it must end
    in; ``mismatch(i, shape, point_shape)`` is the error's message where it does not.

    Examples
    --------
    >>> import numpy as np
    >>> leading_batches([np.ones((4, 2)), 1.0], [(2,), ()], lambda *a: "no")
    [(4,), ()]
    """
    batches = []
    for i, (value, core) in enumerate(zip(values, point_shapes)):
        shape, core = tuple(np.shape(value)), tuple(core)
        lead = len(shape) - len(core)
        if lead < 0 or shape[lead:] != core:
            raise ValueError(mismatch(i, shape, core))
        batches.append(shape[:lead])
    return batches


def _value_of(arg):
    return arg.array if isinstance(arg, Operators) else arg


_kernel_ids = itertools.count()
# kernels compiled from pickled source in this process (on a Dask worker: every task's)
UNPICKLED_KERNELS: collections.OrderedDict = collections.OrderedDict()
UNPICKLED_SIZE = 256
UNPICKLED_COUNTS = {"hits": 0, "misses": 0}  # a miss is a kernel compiled in this process


def load_unpickled(key, source: str, modules, backend: str, namespace: dict | None = None):
    """:func:`load`, once per ``key`` in this process: a kernel that arrives pickled with
    every task is compiled for the first and reused by the rest (the ``UNPICKLED_SIZE``
    most recently used are kept)."""
    function = UNPICKLED_KERNELS.get(key)
    if function is None:
        function = load(source, modules, backend, namespace)
        UNPICKLED_COUNTS["misses"] += 1
        if len(UNPICKLED_KERNELS) >= UNPICKLED_SIZE:  # bounded: the least recently used goes
            UNPICKLED_KERNELS.popitem(last=False)
        UNPICKLED_KERNELS[key] = function
    else:
        UNPICKLED_COUNTS["hits"] += 1
        UNPICKLED_KERNELS.move_to_end(key)
    return function


def unpickled_cache_info() -> "CacheInfo":
    """Hits, misses (kernels compiled), size and bound of this process's unpickled kernels."""
    return CacheInfo(UNPICKLED_COUNTS["hits"], UNPICKLED_COUNTS["misses"],
                     len(UNPICKLED_KERNELS), UNPICKLED_SIZE)


def is_dask_array(value) -> bool:
    """Whether ``value`` is a ``dask.array.Array`` (False, without importing it, if nothing
    imported Dask: then no value can be one)."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(value, dask_array.Array)


def any_dask_array(values) -> bool:
    """Whether any of ``values`` is a dask array: the switch to :mod:`symtape.chunked`."""
    return "dask.array" in sys.modules and any(map(is_dask_array, values))


def load(source: str, modules, backend: str, namespace: dict | None = None):
    """Compile generated source under a unique name that tracebacks (via linecache) show."""
    filename = f"<symtape-kernel-{next(_kernel_ids)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {**(namespace or {}), "_erf": _erf_for(backend)}
    for module in modules:  # the modules SymPy's printer wrote names from (numpy, functools)
        namespace[module] = importlib.import_module(module)
    namespace[backend] = array_module_for(backend)
    exec(builtins.compile(source, filename, "exec"), namespace)  # our generated code only
    function = namespace["kernel"]
    # the lines live as long as the function: tracebacks through a live kernel show them,
    # and a kernel the caches let go takes its source with it (else linecache only grows)
    weakref.finalize(function, linecache.cache.pop, filename, None)
    return function


def array_module_for(backend: str):
    if backend in HOST_BACKENDS:
        return np
    from symtape.arrays.backends import cupy_module

    return cupy_module()


def _erf_for(backend: str):
    if backend == "cupy":
        import cupyx.scipy.special

        return cupyx.scipy.special.erf
    try:
        from scipy.special import erf

        return erf
    except ImportError:
        return np.vectorize(math.erf, otypes=[float])


# ---------------------------------------------------------------- the cache

_cache: collections.OrderedDict = collections.OrderedDict()
_cache_lock = threading.Lock()
_counters = {"hits": 0, "misses": 0}

CacheInfo = collections.namedtuple("CacheInfo", "hits misses size maxsize")


def kernel_cache_info() -> CacheInfo:
    """Hits and misses of the kernel cache (a debug counter).

    Examples
    --------
    >>> import sympy, symtape as st
    >>> x = sympy.Symbol("x", real=True)
    >>> before = st.kernel_cache_info().hits
    >>> _ = st.compile(x**3, [x]); _ = st.compile(x**3, [x])
    >>> st.kernel_cache_info().hits - before
    1
    """
    return CacheInfo(_counters["hits"], _counters["misses"], len(_cache), _CACHE_SIZE)


def clear_kernel_cache() -> None:
    """Forget every compiled kernel (the counters too).

    Examples
    --------
    >>> import symtape as st
    >>> st.clear_kernel_cache()
    >>> st.kernel_cache_info().size
    0
    """
    with _cache_lock:
        _cache.clear()
        _counters.update(hits=0, misses=0)


def freeze(value) -> Any:
    """A hashable, exact description of a parameter or constant: what keys of caches built
    from graphs (kernels, value numbering, regrouping) compare.

    Examples
    --------
    >>> import numpy as np
    >>> freeze({"axis": (0, 1), "dtype": np.float32}) == freeze({"dtype": np.float32, "axis": (0, 1)})
    True
    >>> freeze(np.array([1.0, 2.0])) == freeze(np.array([1.0, 2.5]))
    False
    """
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple((k, freeze(v)) for k, v in sorted(value.items()))
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return ("dtype", np.dtype(value).str)
    if hasattr(value, "__array__") or isinstance(value, np.generic):
        array = np.asarray(value)
        return ("array", array.dtype.str, array.shape, array.tobytes())
    return value


def cached(key, make):
    """The cache entry for ``key``, made by ``make()`` on a miss (counted either way)."""
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            _counters["hits"] += 1
            return entry
    entry = make()
    with _cache_lock:
        _counters["misses"] += 1
        _cache[key] = entry
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return entry


def _load_kernel(source: str, modules, backend: str, namespace: dict | None = None):
    if backend == "numba":  # jitted loops, imported through the disk cache
        from symtape.kernels.numba_backend import load_compiled

        return load_compiled(source)
    return load(source, modules, backend, namespace)


def compile(outputs, inputs, backend: str | None = None, cse: bool = True) -> Kernel:  # noqa: A001
    """Compile SymPy expressions into a NumPy or CuPy kernel.

    Parameters
    ----------
    outputs : sympy.Expr, array-like of them, or a tuple of those
        A tuple compiles several outputs into one kernel (sharing subexpressions) that
        returns a tuple; a list, ``sympy.Array`` or ``Matrix`` is one array output.
    inputs : sequence of symbols or arrays of symbols
        One kernel argument per item; an array of symbols is one array argument.
    backend : {'numpy', 'numba', 'cupy'}, optional
        Default: ``st.config.get_default_backend()``. ``'numba'`` compiles one loop over
        the points (the ``jit`` extra).
    cse : bool, default True
        Share common subexpressions.

    Returns
    -------
    Kernel
        Its ``source`` attribute shows the generated code.

    Examples
    --------
    >>> import sympy, symtape as st
    >>> x = sympy.symbols("x0:2", real=True)
    >>> f = (x[0] - 1)**2 + 10*(x[1] - x[0]**2)**2
    >>> grad = [sympy.diff(f, v) for v in x]
    >>> k = st.compile((f, grad), [sympy.Array(x)])
    >>> value, g = k([1.0, 1.0])
    >>> float(value), g.tolist()
    (0.0, [0.0, 0.0])
    """
    backend = resolve_backend(backend, "compile")
    with recursion_headroom():  # SymPy's walks recurse as deep as expressions nest
        return _compile(outputs, inputs, backend, bool(cse))


def _compile(outputs, inputs, backend: str, cse: bool) -> Kernel:
    layout = _input_layout(inputs)
    as_tuple, arrays = _output_spec(outputs)
    _check_free_symbols(arrays, layout)
    key = (tuple(tuple(a.reshape(-1)) for a in arrays), tuple(a.shape for a in arrays), as_tuple,
           layout, backend, cse)
    if backend == "cupy":
        array_module_for("cupy")  # a clear DeviceError before any code generation
    return cached(key, lambda: Kernel(_generate(layout, arrays, backend, cse), layout, arrays,
                                      as_tuple, backend))


def _check_free_symbols(arrays: list[np.ndarray], layout: _Layout) -> None:
    known = {symbol for symbol, _, _ in layout.entries}
    missing = set()
    for array in arrays:
        for expr in array.reshape(-1):
            missing |= expr.free_symbols - known
    if missing:
        names = ", ".join(sorted(map(str, missing)))
        raise ValueError(f"compile: the outputs use symbols that are not inputs: {names}; "
                         "add them to `inputs`")

