"""No user string is ever run as Python: every entry point that takes expressions refuses
strings (or parses them safely) before any SymPy conversion could evaluate them."""

import numpy as np
import pytest
import sympy

import symtape as st
from symtape.kernels.compile import function_source

X = sympy.Symbol("x", real=True)


@pytest.fixture
def payload(tmp_path):
    """A string that would create a marker file if anything evaluated it as Python."""
    marker = tmp_path / "marker"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    yield code
    assert not marker.exists(), "a user string was executed as Python code"


def _object_array(*items):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: [s],
    lambda s: (X, s),
    lambda s: [[X, s]],
    lambda s: _object_array(X, s),
    lambda s: s.encode(),
], ids=["string", "list", "tuple", "nested", "object-array", "bytes"])
def test_compile_refuses_strings_in_outputs(payload, wrap):
    with pytest.raises(TypeError, match="strings are not parsed here.*st.parse"):
        st.compile(wrap(payload), [X])


def test_compile_refuses_strings_in_inputs(payload):
    with pytest.raises(TypeError, match="inputs must be SymPy symbols"):
        st.compile(X, [payload])


def test_compile_still_takes_numbers_and_expressions():
    kernel = st.compile((X * 2, 3.5, np.float32(1.5), 2), [X])
    assert [float(v) for v in kernel(2.0)] == [4.0, 3.5, 1.5, 2.0]


def test_compile_refuses_other_objects():
    with pytest.raises(TypeError, match="outputs must be SymPy expressions, got object"):
        st.compile(object(), [X])


def test_function_source_refuses_strings(payload):
    with pytest.raises(TypeError, match="strings are not parsed here"):
        function_source({"g": payload}, [X])
    with pytest.raises(TypeError, match="strings are not parsed here"):
        function_source({"g": [X, payload]}, [X])


def test_function_source_refuses_names_that_are_not_identifiers(payload):
    with pytest.raises(ValueError, match="not a Python identifier"):
        function_source({f"g(): pass\n{payload}\ndef h": X}, [X])
    with pytest.raises(TypeError, match="parameters must be SymPy symbols"):
        function_source({"g": X}, [payload])


def test_parse_never_runs_code(payload):
    with pytest.raises(st.ParseError):
        st.parse(payload)


def test_the_package_has_no_unguarded_eval():
    """Every sympify/lambdify/eval/exec in the package is one of the audited, safe uses."""
    import ast
    import pathlib

    package = pathlib.Path(st.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in {"sympify", "lambdify", "eval", "exec", "parse_expr", "S"}:
                    found.append(f"{path.relative_to(package).as_posix()}:{name}")
    # load: our generated source only; as_sympy: numbers only (strings refused before)
    assert sorted(found) == ["arrays/objarrays.py:sympify", "kernels/compile.py:exec"], found
