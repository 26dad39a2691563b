"""The CuPy backend checked without a GPU: NumPy poses as CuPy.

Every compiled callable (``st.function`` and the transforms, the sparse Hessian, ``st.compile``)
is built for the ``'cupy'`` backend and run with a stand-in module named ``cupy`` (and
``cupyx``) that forwards to NumPy and SciPy and records each name asked of it. That runs the
CuPy-printed source and the library's CuPy branches (``xp.`` calls in the primitives and the
batching helpers, ``cupyx.scipy.special.erf``, ``cupyx.scatter_add``) on the CPU:

- their values must equal the NumPy kernels' (the CuPy printer's Piecewise, ``log`` and
  ``where`` mean what NumPy's do), for every primitive in the registry;
- where CuPy is installed, every name recorded must exist in it: a call CuPy lacks would
  otherwise surface only on a GPU (real GPU runs: ``tests/test_gpu_kernels.py``).
"""

import contextlib
import importlib
import importlib.util
import types

import numpy as np
import pytest
import simulated_cuda
import simulated_cupy
import sympy
from every_primitive import CASES, IN_AXES, assert_same_results, call
from helpers import rosenbrock as _rosenbrock

import symtape as st
import symtape.transforms.functional
import symtape.kernels.program
from symtape.core.primitives import REGISTRY

compile_module = importlib.import_module("symtape.kernels.compile")

special = pytest.importorskip("scipy.special")


class _Posing(types.ModuleType):
    """A module called ``name`` that forwards to ``target`` and records what is asked of it."""

    def __init__(self, name: str, target, used: set):
        super().__init__(name)
        self._target, self._used = target, used

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        self._used.add(f"{self.__name__}.{attr}")
        return getattr(self._target, attr)


class _NoArray:
    """CuPy's ndarray as the stand-in has it: nothing is one, so values stay NumPy's."""


@contextlib.contextmanager
def numpy_posing_as_cupy():
    """Within: compiled callables take the ``'cupy'`` backend and run on NumPy.

    Yields the set of ``cupy.`` and ``cupyx.`` names asked for, filled as kernels run."""
    used: set[str] = set()
    cupy = _Posing("cupy", np, used)
    cupy.ndarray = _NoArray
    cupy.ElementwiseKernel = simulated_cuda.ElementwiseKernel  # the fused kernels, on the host
    cupy.cuda = types.SimpleNamespace(Device=lambda id=None: types.SimpleNamespace(id=0))
    special_module = _Posing("cupyx.scipy.special", types.SimpleNamespace(erf=special.erf), used)
    scipy_module = _Posing("cupyx.scipy", types.SimpleNamespace(special=special_module), used)
    cupyx = _Posing("cupyx", types.SimpleNamespace(scipy=scipy_module, scatter_add=np.add.at),
                    used)
    modules = {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy_module,
               "cupyx.scipy.special": special_module}

    def array_module_for(backend):
        return cupy if backend == "cupy" else np

    with pytest.MonkeyPatch.context() as patch:
        simulated_cupy.install(modules, patch)
        patch.setattr(compile_module, "array_module_for", array_module_for)
        patch.setattr(symtape.kernels.program, "array_module_for", array_module_for)
        patch.setattr(symtape.transforms.functional, "_backend", lambda placeholders, trace: "cupy")
        yield used


TRANSFORMS = {
    "function": lambda f: st.function(f),
    "grad": lambda f: st.grad(f, argnums=(0, 1)),
    "value_and_grad": lambda f: st.value_and_grad(f, argnums=(0, 1)),
    "hessian": lambda f: st.hessian(f, argnums=(0, 1)),
    "jacobian": lambda f: st.jacobian(lambda a, b: st.stack([f(a, b), f(b, a)]), argnums=0),
}


def _run(transform: str, case: str) -> tuple[list, str]:
    """The values at the CASES points (after one trace) and the generated source."""
    fun, traced_at, points = CASES[case]
    compiled = TRANSFORMS[transform](fun)
    compiled(*traced_at)  # the first call of a signature traces and returns the eager run
    values = [call(compiled, point, axes) for point, axes in zip(points, IN_AXES[case])]
    return values, compiled.get_concrete_function(*traced_at).source


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_cupy_source_computes_what_the_numpy_kernel_does(transform, case):
    with np.errstate(all="ignore"):
        expected, numpy_source = _run(transform, case)
        with numpy_posing_as_cupy():
            got, cupy_source = _run(transform, case)
    assert "numpy" not in cupy_source and "cupy" not in numpy_source
    if case == "scalars":  # NumPy calls per op; CuPy runs the elementwise groups fused
        assert "numpy.sin(" in numpy_source and "_fused_" in cupy_source
    assert_same_results(got, expected, rtol=1e-13, atol=1e-14)


def test_every_primitive_runs_through_the_cupy_backend(monkeypatch):
    seen = set()
    numbered = symtape.kernels.program._numbered

    def recording(order, resolve, same):
        seen.update(node._prim.name for node in order if node._prim is not None)
        return numbered(order, resolve, same)

    monkeypatch.setattr(symtape.kernels.program, "_numbered", recording)
    with np.errstate(all="ignore"), numpy_posing_as_cupy():
        for transform in TRANSFORMS:
            for case in CASES:
                _run(transform, case)
    assert seen == set(REGISTRY), f"not exercised: {sorted(set(REGISTRY) - seen)}"


def test_sparse_hessian_through_the_cupy_backend_matches_the_numpy_one():
    traced_at, point = np.linspace(0.5, 1.5, 30), np.linspace(2.0, -1.0, 30)
    expected = st.hessian(_rosenbrock, sparse=True)(point)
    with numpy_posing_as_cupy():
        sparse = st.hessian(_rosenbrock, sparse=True)
        sparse(traced_at)
        got = sparse(point)
    assert got.nnz == expected.nnz == 3 * 30 - 2
    np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-13)


x, y = sympy.symbols("x y", real=True)
COMPILED = [sympy.Piecewise((sympy.log(x), x > 1), (sympy.erf(y) * x, x > -1), (x * y, True)),
            sympy.Max(x, y, 0), sympy.Min(x, 2) * sympy.sign(y), sympy.Heaviside(x),
            sympy.Abs(y) ** sympy.Rational(3, 2), sympy.atan2(x, y), sympy.asinh(x),
            sympy.acosh(y * y + 2), sympy.atanh(x / 9), sympy.exp(x) - sympy.sqrt(y * y)]


def test_st_compile_with_the_cupy_printer_matches_numpy():
    xs, ys = np.linspace(-2.0, 3.0, 11), np.linspace(1.5, -1.5, 11)
    with np.errstate(all="ignore"):
        expected = st.compile(COMPILED, [x, y])(xs, ys)
        with numpy_posing_as_cupy():
            kernel = st.compile(COMPILED, [x, y], backend="cupy")
            got = kernel(xs, ys)
    assert "_fused" in kernel.source and "numpy" not in kernel.source  # Piecewise: one kernel
    assert "select" not in kernel.source  # SymPy's select form does not broadcast on CuPy
    assert_same_results(got, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")
def test_every_cupy_name_the_kernels_use_exists_in_cupy():
    used = set()
    with np.errstate(all="ignore"):
        with numpy_posing_as_cupy() as names:
            for transform in TRANSFORMS:
                for case in CASES:
                    _run(transform, case)
            sparse = st.hessian(_rosenbrock, sparse=True)
            sparse(np.ones(5))
            sparse(np.zeros(5))
            st.compile(COMPILED, [x, y], backend="cupy")(np.ones(3), np.ones(3))
        used |= names
    assert {"cupy.where", "cupy.log", "cupyx.scipy", "cupyx.scatter_add"} <= used
    missing = []
    for name in sorted(used):
        module, attr = name.rsplit(".", 1)
        try:
            if not hasattr(importlib.import_module(module), attr):
                missing.append(name)
        except ImportError:
            missing.append(name)
    assert not missing, f"CuPy has no {missing}"
