"""Cross-validation: symtape's derivatives checked against independent numbers (``st.check_grads``).

symtape keeps two forms of every derivative, so each can check the other. At one point,
:func:`check_grads` lines up, for every entry of the Jacobian (order 1) and of the second
derivatives (order 2):

- **symbolic**: the exact derivative symtape derives (``.expr`` of the tape's result),
  evaluated at the point to 30 significant digits, which is the reference;
- **compiled**: what the compiled kernels of ``st.jacobian`` / ``st.hessian`` return;
- **yours**: a hand-written gradient or Hessian, when one is given (``grad=``, ``hess=``);
- **complex step**: ``Im f(x + ih e_j) / h`` with ``h = 1e-20``, exact to rounding, where the
  closed form is holomorphic (no ``abs``, ``sign``, ``max``, comparisons, ...), down to
  ``tiny / h`` (2e-288): the imaginary parts it carries are ``h`` times a derivative, and
  below the smallest normal float ``tiny`` they lose digits, then underflow to 0 (and near
  0 down to its truncation error ``h**2 * f''' / 6``);
- **finite diff.**: central differences (the five-point stencil, error ``O(h**4)``) with a
  step chosen per entry, ``h = eps**(1/5) * max(1, |x_j|)``, of the function (order 1) or of
  its numeric gradient (order 2).

An entry agrees when every column is within ``atol + rtol * |symbolic|`` (the two numeric
columns are allowed their own error on top). A disagreement raises ``AssertionError`` whose message is a table of the entries that differ.

Examples
--------
>>> import symtape as st
>>> print(st.check_grads(lambda x, y: x * st.exp(y), (2.0, 0.0)))  # doctest: +ELLIPSIS
check_grads: all 6 first and second-derivative entries agree at x=2, y=0 (rtol=1e-05, atol=2e-05 / 2e-05 (first / second))
entry     symbolic  compiled  complex step  finite diff.  rel. error
df/dx     1         1         1             1             ...
df/dy     2         2         2             2             ...
d2f/dxdx  0         0         0             0             ...
d2f/dxdy  1         1         1             1             ...
d2f/dydx  1         1         1             1             ...
d2f/dydy  2         2         2             2             ...
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy

from symtape.transforms import derivatives
from symtape.core import ops
from symtape.arrays.backends import to_host
from symtape.kernels.compile import compile as compile_kernel
from symtape.core.mpeval import distinct_nodes, evaluate
from symtape.arrays.objarrays import as_sympy
from symtape.parsing import parse_symbol, substitute
from symtape.core.sympy_ops import tensor_function
from symtape.core.tape import GradientTape, UnconnectedGradients
from symtape.core.tensor import Tensor, Variable, constant

__all__ = ["check_grads", "GradCheck", "Entry", "ClosedForms", "closed_forms"]

DIGITS = 30  # precision of the symbolic reference
COMPLEX_STEP = 1e-20
_EPS = float(np.finfo(np.float64).eps)
_FD_STEP = _EPS ** (1 / 5)  # balances the stencil's h**4 error against rounding's eps/h
_FD_NOISE = 1e3 * _EPS ** (4 / 5)  # what finite differences may miss, relative to the scale
# what the complex step may miss: h * f' underflows below the smallest normal float (an
# absolute floor), and its truncation error h**2 * f''' / 6 (relative to the scale)
_CS_FLOOR = float(np.finfo(np.float64).tiny) / COMPLEX_STEP
_CS_TRUNCATION = 1e3 * COMPLEX_STEP**2
_HOLOMORPHIC = (sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.asin, sympy.acos,
                sympy.atan, sympy.sinh, sympy.cosh, sympy.tanh)
_COLUMNS = (("compiled", "compiled"), ("yours", "yours"), ("complex_step", "complex step"),
            ("finite_difference", "finite diff."))


@dataclass
class Entry:
    """One derivative entry as every method computed it (``None``: that method does not apply).

    Attributes
    ----------
    label : str
        Which entry: ``df/dx``, ``d2f[0]/dxdy``, ...
    order : int
        1 or 2.
    symbolic : float
        The exact derivative, evaluated to 30 digits: the reference.
    compiled, yours, complex_step, finite_difference : float or None
        What the compiled kernel, your ``grad``/``hess``, the complex step and finite
        differences gave.
    ok : bool, default True
        Whether every method agrees with ``symbolic`` within the tolerances.
    scale : float, default 0.0
        The largest derivative of its order: errors of entries near 0 are relative to it.

    Examples
    --------
    >>> e = Entry("df/dx", 1, 2.0, compiled=2.0, finite_difference=2.0000000001)
    >>> e.error < 1e-9
    True
    """

    label: str
    order: int
    symbolic: float
    compiled: float | None = None
    yours: float | None = None
    complex_step: float | None = None
    finite_difference: float | None = None
    ok: bool = True
    scale: float = 0.0  # errors of entries near 0 are relative to this (the largest entry)

    def columns(self) -> dict[str, float]:
        return {name: getattr(self, name) for name, _ in _COLUMNS
                if getattr(self, name) is not None}

    @property
    def error(self) -> float:
        """The largest difference from ``symbolic``, relative to ``max(|symbolic|, scale)``."""
        errors = [_difference(value, self.symbolic, self.scale)
                  for value in self.columns().values()]
        return max(errors, default=0.0)


def _difference(value: float, reference: float, scale: float) -> float:
    if math.isnan(value) and math.isnan(reference) or value == reference:
        return 0.0
    if not (math.isfinite(value) and math.isfinite(reference)):
        return math.inf
    return abs(value - reference) / (max(abs(reference), scale) or 1.0)


def _agrees(value: float, reference: float, rtol: float, atol: float) -> bool:
    if math.isnan(value) and math.isnan(reference) or value == reference:
        return True
    return abs(value - reference) <= atol + rtol * abs(reference)


@dataclass
class GradCheck:
    """What :func:`check_grads` compared: every entry, and whether all of them agree.

    ``str(check)`` is the table; ``check.failures`` the entries that differ.

    Attributes
    ----------
    point : str
        The point, as ``x=0.5, y=[1, 2]``.
    rtol : float
    atol : dict of int to float
        The absolute tolerance used for each order.
    entries : list of Entry
        Every entry compared, first derivatives first.

    Examples
    --------
    >>> import symtape as st
    >>> check = st.check_grads(lambda x: st.sin(x) * x, (0.5,), order=1)
    >>> check.ok, len(check.entries)
    (True, 1)
    >>> print(check)  # doctest: +ELLIPSIS
    check_grads: all 1 first-derivative entries agree at x=0.5 (rtol=1e-05, atol=...)
    entry  symbolic ...
    """

    point: str
    rtol: float
    atol: dict[int, float]
    entries: list[Entry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(entry.ok for entry in self.entries)

    @property
    def failures(self) -> list[Entry]:
        return [entry for entry in self.entries if not entry.ok]

    def summary(self) -> str:
        orders = sorted({entry.order for entry in self.entries})
        kinds = " and ".join(("first", "second")[order - 1] for order in orders)
        tolerance = "atol=" + " / ".join(f"{self.atol[o]:.3g}" for o in orders) + (
            " (first / second)" if len(orders) > 1 else "")
        if self.ok:
            return (f"check_grads: all {len(self.entries)} {kinds}-derivative entries agree at "
                    f"{self.point} (rtol={self.rtol:g}, {tolerance})")
        return (f"check_grads: {len(self.failures)} of {len(self.entries)} {kinds}-derivative "
                f"entries disagree at {self.point} (rtol={self.rtol:g}, {tolerance})")

    def table(self, entries: Sequence[Entry] | None = None, limit: int = 40) -> str:
        """The entries as aligned text columns (the failures only, when the check failed).

        Parameters
        ----------
        entries : sequence of Entry, optional
            The rows; default all of ``self.entries``.
        limit : int, default 40
            Show at most this many rows, then a line counting the rest.

        Examples
        --------
        >>> import symtape as st
        >>> check = st.check_grads(lambda x: x ** 2, (3.0,), order=1)
        >>> print(check.table(limit=0))
        entry  symbolic  compiled  complex step  finite diff.  rel. error
        ... and 1 more
        """
        entries = list(self.entries if entries is None else entries)
        shown = [(title, name) for name, title in _COLUMNS
                 if any(getattr(e, name) is not None for e in entries)]
        header = ["entry", "symbolic", *(title for title, _ in shown), "rel. error"]
        rows = [[e.label, _number(e.symbolic), *(_number(getattr(e, name)) for _, name in shown),
                 f"{e.error:.2g}" + ("" if e.ok else "  <-- differs")] for e in entries[:limit]]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in [header, *rows]]
        if len(entries) > limit:
            lines.append(f"... and {len(entries) - limit} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.summary()}\n{self.table(None if self.ok else self.failures)}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.12g}"


# ---------------------------------------------------------------- the function and the point


@dataclass
class _Problem:
    fun: Callable[..., Tensor]
    names: list[str]
    values: list[np.ndarray]

    @property
    def sizes(self) -> list[int]:
        return [value.size for value in self.values]

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        pieces = np.split(flat, np.cumsum(self.sizes)[:-1])
        return [piece.reshape(value.shape) for piece, value in zip(pieces, self.values)]

    def labels(self) -> list[str]:
        labels = []
        for name, value in zip(self.names, self.values):
            labels += [name] if value.ndim == 0 else [
                f"{name}[{','.join(map(str, index))}]" for index in np.ndindex(*value.shape)]
        return labels

    def point(self) -> str:
        return ", ".join(f"{name}={_short(value)}" if value.ndim else f"{name}={value.item():.6g}"
                         for name, value in zip(self.names, self.values))


def _short(value: np.ndarray) -> str:
    return np.array2string(value, separator=", ", precision=6, threshold=8)


def _as_float_array(value, name: str) -> np.ndarray:
    if isinstance(value, (Tensor, Variable)):
        value = value.numpy()
    if isinstance(value, sympy.Basic):
        kind = "number" if getattr(value, "is_Number", False) else type(value).__name__
        raise TypeError(f"check_grads: argument {name} is the SymPy {kind} "
                        f"{value}; give a float or a NumPy array (float(value) converts a "
                        "SymPy number)")
    array = to_host(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"check_grads: argument {name} has dtype {array.dtype}; give real "
                        "numbers (an int or float scalar or array)")
    array = array.astype(np.float64)
    if array.size == 0:
        raise ValueError(f"check_grads: argument {name} is empty (shape {array.shape}): there "
                         "is nothing to differentiate by; give at least one value")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"check_grads: argument {name} is not finite: {array}")
    return array


def _from_sympy(expr: sympy.Basic, args, wrt) -> _Problem:
    if not isinstance(expr, sympy.Expr):
        raise TypeError(f"check_grads: a SymPy function must be a scalar sympy.Expr, got "
                        f"{type(expr).__name__}")
    if wrt is None:
        symbols = sorted(expr.free_symbols, key=str)
    else:
        by_name = {str(s): s for s in expr.free_symbols}
        symbols = [s if isinstance(s, sympy.Symbol) else by_name.get(s) or parse_symbol(s)
                   for s in ([wrt] if isinstance(wrt, (str, sympy.Symbol)) else wrt)]
    if isinstance(args, dict):
        given = {str(key): value for key, value in args.items()}
        missing = [str(s) for s in expr.free_symbols | set(symbols) if str(s) not in given]
        if missing:
            raise ValueError(f"check_grads: no value for {', '.join(sorted(missing))}; give "
                             "one for every symbol of the expression")
        fixed = {s: sympy.Rational(float(given[str(s)]))
                 for s in expr.free_symbols if s not in symbols}
        try:  # bounded: y**y at y=10**10 would build a number of gigabytes
            expr = substitute(expr, fixed)
        except OverflowError as error:
            raise ValueError(f"check_grads: with {_listed(fixed)} fixed, {error}; give "
                             "smaller values") from None
        values = [given[str(s)] for s in symbols]
    else:
        values = _positional(args)
        if len(values) != len(symbols):
            raise ValueError(f"check_grads: {len(values)} values for the {len(symbols)} "
                             f"symbols {', '.join(map(str, symbols))}; give one per symbol "
                             "(or a dict)")
    arrays = [_as_float_array(v, str(s)) for v, s in zip(values, symbols)]
    if any(a.ndim for a in arrays):
        raise ValueError("check_grads: each symbol of a SymPy expression takes a scalar value")
    return _Problem(tensor_function(expr, symbols), [str(s) for s in symbols], arrays)


def _listed(point: dict) -> str:
    return ", ".join(f"{symbol}={float(value):g}" for symbol, value in point.items())


def _positional(args) -> list:
    """A tuple or list is the arguments; anything else is the one argument."""
    return list(args) if isinstance(args, (tuple, list)) else [args]


def _from_callable(fun: Callable, args) -> _Problem:
    values = _positional(args)
    try:
        parameters = [p.name for p in inspect.signature(fun).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        parameters = []
    names = parameters[:len(values)]
    names += [f"arg{i}" for i in range(len(names), len(values))]
    return _Problem(fun, names, [_as_float_array(v, n) for v, n in zip(values, names)])


# ---------------------------------------------------------------- the columns


def _flat(blocks, m: int) -> np.ndarray:
    """Per-argument derivative blocks (``out + arg`` shaped) side by side: ``(m, n)``."""
    return np.concatenate([to_host(b).reshape(m, -1) for b in blocks], axis=1)


def _flat_pairs(rows, m: int, sizes: Sequence[int]) -> np.ndarray:
    """Blocks per pair of arguments (``rows[i][j]``, ``out + arg_i + arg_j``): ``(m, n, n)``."""
    return np.concatenate([np.concatenate([to_host(b).reshape(m, size, -1) for b in row],
                                          axis=2) for row, size in zip(rows, sizes)], axis=1)


def _flat_exprs(tensor, rows: int) -> np.ndarray:
    expr = tensor.expr
    items = expr.tolist() if isinstance(expr, sympy.NDimArray) else expr
    return np.array(items, dtype=object).reshape(rows, -1)


def _through_kernel(transform, values):
    """``transform(*values)`` computed by its compiled kernel: trace first, then call (the
    call that traces a new signature returns the eager run's values, not the kernel's)."""
    transform.get_concrete_function(*values)
    return transform(*values)


@dataclass
class ClosedForms:
    """The exact derivatives symtape derives for a function, flattened.

    ``value`` has shape ``(m,)`` (the output's entries), ``jacobian`` ``(m, n)`` and
    ``hessian`` ``(m, n, n)`` (``None`` for order 1), where ``n`` counts the entries of all
    arguments in order. ``values`` maps every symbol (arguments first, then the Variables
    the function read) to its value at the point the function was run.

    Attributes
    ----------
    out_shape : tuple of int
        The shape of the function's output.
    value : numpy.ndarray of sympy.Expr
        The output's closed forms, shape ``(m,)``.
    jacobian : numpy.ndarray of sympy.Expr
        Shape ``(m, n)``.
    hessian : numpy.ndarray of sympy.Expr or None
        Shape ``(m, n, n)``; None for ``order=1``.
    values : dict
        Symbol to value at the point.
    """

    out_shape: tuple[int, ...]
    value: np.ndarray
    jacobian: np.ndarray
    hessian: np.ndarray | None
    values: dict


def closed_forms(fun: Callable, values: Sequence[np.ndarray], names: Sequence[str],
                 order: int = 2) -> ClosedForms:
    """Run ``fun`` once on watched constants named ``names`` and derive its exact derivatives.

    Parameters
    ----------
    fun : callable
        Takes one Tensor per value and returns a float Tensor, computed with symtape's ops.
    values : sequence of numpy.ndarray
        The point: one float array per argument.
    names : sequence of str
        The symbol name of each argument (entries of arrays are ``x[0]``, ``x[1]``, ...).
    order : int, default 2
        2 derives the Hessian as well, 1 the Jacobian only.

    Returns
    -------
    ClosedForms

    Raises
    ------
    TypeError
        If ``fun`` does not return a float Tensor.

    Examples
    --------
    >>> import symtape as st
    >>> forms = closed_forms(lambda x, y: x**2 * st.sin(y), [np.array(1.0), np.array(2.0)],
    ...                      ["x", "y"])
    >>> forms.jacobian.tolist(), forms.hessian[0, 1, 1]
    ([[2*x*sin(y), x**2*cos(y)]], -x**2*sin(y))
    """
    sources = [constant(v, name=name) for v, name in zip(values, names)]
    zero = UnconnectedGradients.ZERO
    with GradientTape(persistent=True) as outer:
        outer.watch(sources)
        with GradientTape(persistent=True) as inner:
            inner.watch(sources)
            y = fun(*sources)
        if not isinstance(y, (Tensor, Variable)) or y.dtype.kind != "f":
            raise TypeError("check_grads: the function must compute a float Tensor with "
                            f"symtape's ops; it returned {type(y).__name__}"
                            + (f" of dtype {y.dtype}" if hasattr(y, "dtype") else ""))
        m = math.prod(y.shape)
        jacobians = [inner.jacobian(y, s, unconnected_gradients=zero) for s in sources]
    hessian = None
    if order == 2:
        sizes = [s.numpy().size for s in sources]
        hessian = _flat_pairs([[_flat_exprs(outer.jacobian(j, s, unconnected_gradients=zero), m)
                                for s in sources] for j in jacobians], m, sizes)
    point = {}
    for source in [*sources, *inner.watched_variables()]:
        point.update(zip(_flat_exprs(source, 1)[0], source.numpy().ravel()))
    return ClosedForms(tuple(y.shape), _flat_exprs(y, m)[:, 0],
                       _flat([_flat_exprs(j, m) for j in jacobians], m), hessian, point)


class _Columns:
    """Every method's derivatives of one problem, as flat ``(m, n)`` and ``(m, n, n)`` arrays."""

    def __init__(self, problem: _Problem, order: int):
        self.problem, self.order = problem, order
        self.n = sum(problem.sizes)
        self.flat = np.concatenate([v.ravel() for v in problem.values]) if self.n else np.zeros(0)
        forms = closed_forms(problem.fun, problem.values, problem.names, order)
        self.out_shape, self.m = forms.out_shape, len(forms.value)
        self.y_exprs, self.jac_exprs, self.hess_exprs = forms.value, forms.jacobian, forms.hessian
        self.subs = {s: sympy.Rational(float(v)) for s, v in forms.values.items()}
        self.jac = self._evaluate(self.jac_exprs)
        if order == 2:
            self.hess = self._evaluate(self.hess_exprs)

    def _evaluate(self, exprs: np.ndarray) -> np.ndarray:
        # once per distinct subexpression (polynomial in the recorded DAG, where SymPy's
        # evalf is exponential in nesting depth); complex or undefined values are nan
        values = evaluate([as_sympy(e) for e in exprs.ravel()], self.subs, DIGITS)
        return np.array([v if isinstance(v, float) else math.nan for v in values],
                        dtype=np.float64).reshape(exprs.shape)

    # -- compiled: the kernels of st.jacobian / st.hessian
    def compiled(self, order: int) -> np.ndarray:
        p = self.problem
        argnums = tuple(range(len(p.values)))
        if order == 1:
            return _flat(_through_kernel(derivatives.jacobian(p.fun, argnums=argnums), p.values),
                         self.m)
        hessians = []
        for k in range(self.m):
            if self.out_shape:
                def entry(*args, k=k):
                    return ops.reshape(p.fun(*args), [-1])[k]
            else:
                entry = p.fun
            blocks = _through_kernel(derivatives.hessian(entry, argnums=argnums), p.values)
            hessians.append(_flat_pairs(blocks, 1, p.sizes))
        return np.concatenate(hessians)

    # -- finite differences: of the function (order 1), of its numeric gradient (order 2)
    def value(self) -> np.ndarray:
        """The function's value at the point, evaluated eagerly."""
        with np.errstate(all="ignore"):
            return self._value(self.flat)

    def _value(self, flat: np.ndarray) -> np.ndarray:
        result = self.problem.fun(*[constant(v) for v in self.problem.split(flat)])
        return np.asarray(result.numpy(), dtype=np.float64).reshape(self.m)

    def _gradient(self, flat: np.ndarray) -> np.ndarray:
        sources = [constant(v) for v in self.problem.split(flat)]
        with GradientTape() as tape:
            tape.watch(sources)
            y = self.problem.fun(*sources)
        jacobians = tape.jacobian(y, sources, unconnected_gradients=UnconnectedGradients.ZERO)
        return _flat([j.numpy() for j in jacobians], self.m)

    def finite_differences(self, order: int) -> np.ndarray:
        f = self._value if order == 1 else self._gradient
        columns = []
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for j in range(self.n):
                x = self.flat[j]
                h = (x + _FD_STEP * max(1.0, abs(x))) - x  # a step x + h represents exactly
                at = []
                for shift in (-2 * h, -h, h, 2 * h):
                    point = self.flat.copy()
                    point[j] = x + shift
                    at.append(f(point))
                columns.append((at[0] - 8 * at[1] + 8 * at[2] - at[3]) / (12 * h))
        return np.stack(columns, axis=-1) if columns else np.zeros(
            (self.m,) + (self.n,) * order)

    # -- complex step, where the closed form is holomorphic
    def complex_step(self, order: int) -> np.ndarray | None:
        exprs = self.y_exprs if order == 1 else self.jac_exprs.ravel()
        if not all(_holomorphic(as_sympy(e)) for e in exprs):
            return None
        # our own kernel, not lambdify: it names parameters _x0, _x1, ... so a variable
        # called `exp` or `numpy` cannot shadow what the code calls
        function = compile_kernel(list(exprs), list(self.subs))
        point = np.array([float(v) for v in self.subs.values()], dtype=complex)
        with np.errstate(all="ignore"):
            base = _complex_values(function, point)
            if not np.all(np.isfinite(base)) or np.any(np.imag(base) != 0):
                return None  # outside the real domain: the complex extension is another branch
            columns = []
            for j in range(self.n):
                shifted = point.copy()
                shifted[j] += 1j * COMPLEX_STEP
                columns.append(np.imag(_complex_values(function, shifted)) / COMPLEX_STEP)
        result = np.stack(columns, axis=-1) if columns else np.zeros((len(exprs), 0))
        return result.reshape((self.m,) + (self.n,) * order)


def _complex_values(function, point: np.ndarray) -> np.ndarray:
    return np.asarray(function(*point), dtype=complex).reshape(-1)


def _holomorphic(expr: sympy.Basic) -> bool:
    """Whether ``expr`` is built from operations that extend analytically to complex inputs."""
    return all(isinstance(node, _HOLOMORPHIC) or node.is_Symbol
               or node.is_Number and node.is_finite  # zoo, nan and oo are not
               or isinstance(node, (sympy.Add, sympy.Mul, sympy.Pow, sympy.NumberSymbol))
               for node in distinct_nodes(expr))


def _largest(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _yours(supplied, problem: _Problem, m: int, order: int, what: str) -> np.ndarray:
    """A user's gradient / Hessian, per argument as the transforms return them, made flat."""
    k, sizes = len(problem.values), problem.sizes
    result = supplied(*problem.values)
    if order == 1:
        blocks = [result] if k == 1 else list(result)
        if len(blocks) != k:
            raise ValueError(f"check_grads: {what} returned {len(blocks)} gradients for "
                             f"{k} arguments")
        blocks = [to_host(b).astype(np.float64) for b in blocks]
        for block, value, name in zip(blocks, problem.values, problem.names):
            if block.size != m * value.size:
                raise ValueError(f"check_grads: {what} returned shape {block.shape} for "
                                 f"{name} of shape {value.shape}")
        return _flat(blocks, m)
    rows = [[result]] if k == 1 else [list(row) for row in result]
    rows = [[to_host(b).astype(np.float64) for b in row] for row in rows]
    for row, size_i in zip(rows, sizes):
        if len(row) != k:
            raise ValueError(f"check_grads: {what} must give {k}x{k} blocks for {k} arguments")
        for block, size_j in zip(row, sizes):
            if block.size != m * size_i * size_j:
                raise ValueError(f"check_grads: {what} returned a block of shape {block.shape};"
                                 f" expected {m * size_i * size_j} entries")
    return _flat_pairs(rows, m, sizes)


# ---------------------------------------------------------------- the check


def _check_tolerance(name: str, value) -> None:
    """A tolerance is a finite number >= 0 (a negative or NaN one fails every entry)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"check_grads: {name} must be a number, got {type(value).__name__} "
                        f"{value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"check_grads: {name}={value!r} is not a tolerance; give a finite "
                         f"number >= 0 (e.g. {name}=1e-5)")


def check_grads(fun, args, order: int = 2, rtol: float = 1e-5, atol: float | None = None, *,
                grad: Callable | None = None, hess: Callable | None = None,
                wrt: Sequence | None = None) -> GradCheck:
    """Check symtape's derivatives of ``fun`` at ``args`` against independent numbers.

    Compares, entry by entry, the exact symbolic derivative (evaluated to 30 digits), the
    compiled kernel, central finite differences and, where the function is holomorphic,
    complex-step differences; orders 1 (the Jacobian) and, with ``order=2``, 2 as well.

    Parameters
    ----------
    fun : callable or sympy.Expr
        A function of Tensors written with symtape's ops (``args`` a tuple of its positional
        arguments, or one argument), or a SymPy expression (``args`` a dict ``{symbol or
        name: value}``, or values in the order of ``wrt``, default the sorted free symbols).
    args : tuple, list, dict, number or array
        The point: a tuple or list holds one value per positional argument of ``fun`` (or
        per symbol), anything else is the one argument. Values are real numbers or arrays
        (Tensors and Variables give their values), finite and not empty; they are checked
        in float64.
    order : 1 or 2, default 2
        Check the first derivatives only, or the second ones as well.
    rtol, atol : float, default 1e-5 and None
        An entry agrees when ``|value - symbolic| <= atol + rtol * |symbolic|`` for every
        method. ``atol`` defaults to ``rtol`` times the largest derivative of the same order
        (of order 1 or 2, for second derivatives). Finite differences are allowed, on top,
        ``1e3 * eps**(4/5)`` (3e-10) times the largest value or derivative at the point:
        their own truncation and rounding error. The complex step is allowed ``tiny / h``
        (2e-288) on top: it carries ``h = 1e-20`` times the derivative, which underflows
        below the smallest normal float ``tiny``; and ``1e3 * h**2`` (1e-37) times the
        largest value or derivative, for its truncation error ``h**2 * f''' / 6``.
    grad, hess : callable, optional
        Your own NumPy gradient (Jacobian) / Hessian, called with the argument values and
        returning what ``st.grad`` / ``st.hessian`` with every argument would: one array for
        one argument, one per argument (one block per pair for Hessians) otherwise.
    wrt : symbols or names, optional
        For a SymPy expression: the variables; other symbols take their value from ``args``.

    Returns
    -------
    GradCheck
        The table of every entry (``print`` it), when all of them agree.

    Raises
    ------
    AssertionError
        Some entry disagrees; the message is the table of the entries that differ.
    TypeError
        If a value is not real, ``fun`` does not compute a float Tensor, or a tolerance is
        not a number (or ``wrt`` is given with a callable).
    ValueError
        If ``order`` is not 1 or 2, ``hess`` is given with ``order=1``, a tolerance is
        negative or not finite, or a value is empty, not finite or missing.

    Examples
    --------
    >>> import numpy as np
    >>> import symtape as st
    >>> def loss(w):
    ...     return st.reduce_sum(st.exp(w) * w)
    >>> _ = st.check_grads(loss, np.array([0.5, -1.0]))
    >>> st.check_grads(loss, np.array([0.5, -1.0]), order=1,
    ...                grad=lambda w: np.exp(w))  # wrong: forgot the product rule
    Traceback (most recent call last):
    ...
    AssertionError: check_grads: 2 of 2 first-derivative entries disagree at w=[ 0.5, -1. ] ...
    entry  symbolic ...
    """
    __tracebackhide__ = True  # pytest shows the table, not this frame
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order!r}")
    if hess is not None and order < 2:
        raise ValueError("check_grads: hess= needs order=2")
    _check_tolerance("rtol", rtol)
    if atol is not None:
        _check_tolerance("atol", atol)
    symbolic = isinstance(fun, (sympy.Basic, sympy.MatrixBase))
    problem = _from_sympy(fun, args, wrt) if symbolic else _from_callable(fun, args)
    if wrt is not None and not symbolic:
        raise TypeError("check_grads: wrt= is for SymPy expressions; a function is "
                        "differentiated with respect to all of its arguments")
    columns = _Columns(problem, order)
    labels = problem.labels()
    out = [""] if not columns.out_shape else [
        f"[{','.join(map(str, i))}]" for i in np.ndindex(*columns.out_shape)]
    references = {1: columns.jac}
    if order == 2:
        references[2] = columns.hess
    # derivatives near 0 are judged against the largest of their order (and the first
    # order's, for second derivatives); the numeric columns are also allowed their own
    # truncation and rounding noise, relative to the largest value or derivative
    largest = {o: _largest(r) for o, r in references.items()}
    scales = {1: largest[1] or 1.0, 2: max(largest.values()) or 1.0}
    tolerances = {o: rtol * scales[o] if atol is None else atol for o in references}
    size = {1: max(_largest(columns.value()), *largest.values()), 2: max(largest.values())}
    allowed = {o: {"finite_difference": _FD_NOISE * size[o],
                   "complex_step": _CS_FLOOR + _CS_TRUNCATION * size[o]} for o in references}
    check = GradCheck(problem.point(), rtol, {o: tolerances[o] for o in references})
    supplied = {1: grad, 2: hess}
    for o, reference in references.items():
        methods = {"compiled": columns.compiled(o),
                   "yours": None if supplied[o] is None else _yours(
                       supplied[o], problem, columns.m, o, ("grad", "hess")[o - 1]),
                   "complex_step": columns.complex_step(o),
                   "finite_difference": columns.finite_differences(o)}
        for index in np.ndindex(*reference.shape):
            k, *wrt_index = index
            label = f"d{o if o > 1 else ''}f{out[k]}/" + "".join(
                f"d{labels[i]}" for i in wrt_index)
            entry = Entry(label, o, float(reference[index]), scale=scales[o], **{
                name: float(values[index]) for name, values in methods.items()
                if values is not None})
            entry.ok = all(_agrees(value, entry.symbolic, rtol,
                                   tolerances[o] + allowed[o].get(name, 0.0))
                           for name, value in entry.columns().items())
            check.entries.append(entry)
    if not check.ok:
        raise AssertionError(str(check))
    return check
