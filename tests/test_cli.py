"""The walk-through: `symtape demo` and `python -m symtape`, run as a newcomer would."""

import contextlib
import io
import math
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from helpers import run_symtape


def _check_walkthrough(output: str) -> None:
    assert "dy/dx .numpy()  = -2.0" in output
    assert "dy/dx .expr     = 2*x - 2" in output
    assert "values = [-2.0, 0.0, 0.0, 1.0]" in output
    assert "d2y/dx2 = 6.0 = 6*x" in output
    assert "w = 5.0" in output
    assert "[-400. 1002. -200.]" in output  # Rosenbrock's gradient at (1, 2, 3), by hand
    assert "2998 nonzeros" in output
    assert "values.shape = (1000000,)" in output
    assert "1000 calls: w = 5.0" in output


def test_python_dash_m_runs_the_walkthrough():
    result = run_symtape()
    assert result.returncode == 0, result.stderr
    _check_walkthrough(result.stdout)
    assert result.stderr == ""


# the command this interpreter's installation made, not whichever `symtape` is first on PATH
_COMMAND = shutil.which("symtape", path=sysconfig.get_path("scripts"))


@pytest.mark.skipif(_COMMAND is None, reason="package not installed as a command")
def test_symtape_demo_command():
    result = subprocess.run([_COMMAND, "demo"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    _check_walkthrough(result.stdout)


def test_unknown_command_exits_with_usage_error():
    result = run_symtape("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- symtape diff / check


def test_diff_prints_the_gradient_and_hessian_in_latex():
    result = run_symtape("diff", "x**2*sin(y)", "--wrt", "x", "y", "--order", "2",
                      "--format", "latex")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        r"f = x^{2} \sin{\left(y \right)}",
        r"\frac{\partial f}{\partial x} = 2 x \sin{\left(y \right)}",
        r"\frac{\partial f}{\partial y} = x^{2} \cos{\left(y \right)}",
        r"\nabla^2 f = \left[\begin{matrix}2 \sin{\left(y \right)} & 2 x \cos{\left(y \right)}"
        r"\\2 x \cos{\left(y \right)} & - x^{2} \sin{\left(y \right)}\end{matrix}\right]",
    ]


def test_diff_pretty_output_is_the_closed_form():
    result = run_symtape("diff", "exp(a*x)", "--wrt", "x")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "     a⋅x" and lines[1] == "f = ℯ   "
    assert lines[-1] == "df/dx = a⋅ℯ   " and "a⋅x" in lines[-2]


def test_diff_default_variables_are_every_name_sorted():
    result = run_symtape("diff", "y*x + z", "--format", "latex")
    assert [line.split(" = ")[0] for line in result.stdout.splitlines()[1:]] == [
        r"\frac{\partial f}{\partial x}", r"\frac{\partial f}{\partial y}",
        r"\frac{\partial f}{\partial z}"]


def test_diff_simplify():
    expr = "x*sin(x)**2 + x*cos(x)**2"
    plain = run_symtape("diff", expr, "--format", "latex").stdout
    simple = run_symtape("diff", expr, "--format", "latex", "--simplify").stdout
    assert plain.splitlines()[1] == (r"\frac{\partial f}{\partial x} = \sin^{2}{\left(x \right)}"
                                     r" + \cos^{2}{\left(x \right)}")
    assert simple.splitlines()[1] == r"\frac{\partial f}{\partial x} = 1"


def test_diff_at_a_point_prints_exact_and_numeric_values():
    result = run_symtape("diff", "log(1 + exp(a*x))", "--wrt", "x", "--at", "x=0,a=2",
                      "--order", "2")
    assert result.returncode == 0, result.stderr
    tail = result.stdout.split("\nat ")[1].splitlines()
    assert tail[0] == "x=0, a=2:"
    assert tail[1] == "  f = log(2) = 0.693147180559945"
    assert tail[2] == "  df/dx = 1"     # a e^{ax} / (1 + e^{ax}) at 0
    assert tail[3] == "  H = [[1]]"     # a^2 e^{ax} / (1 + e^{ax})^2 at 0


def test_diff_values_may_be_expressions_with_commas():
    result = run_symtape("diff", "x*y", "--at", "x=atan2(1, 1)*4", "y=pi/4")
    assert result.returncode == 0, result.stderr
    assert "  f = pi**2/4 = 2.46740110027234" in result.stdout


def test_diff_code_is_runnable_numpy():
    result = run_symtape("diff", "x**2*sin(y) + erf(x)*y", "--order", "2", "--format", "code")
    assert result.returncode == 0, result.stderr
    namespace: dict = {}
    exec(result.stdout, namespace)  # the generated code, not user input
    x, y = 0.7, -1.3
    expected_grad = [2 * x * np.sin(y) + 2 / np.sqrt(np.pi) * np.exp(-x * x) * y,
                     x**2 * np.cos(y) + math.erf(x)]
    np.testing.assert_allclose(namespace["gradient"](x, y), expected_grad, rtol=1e-14)
    hessian = namespace["hessian"](x, y)
    assert hessian[0, 0] == pytest.approx(2 * np.sin(y) - 4 * x / np.sqrt(np.pi)
                                          * np.exp(-x * x) * y, rel=1e-14)
    assert hessian[1, 1] == pytest.approx(-x**2 * np.sin(y), rel=1e-14)


def test_check_passes_and_prints_the_table():
    result = run_symtape("check", "atan2(y, x)*exp(x)", "--at", "x=1,y=2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("check_grads: all 6 first and second-derivative entries agree")
    assert [line.split()[0] for line in lines[2:]] == [
        "df/dx", "df/dy", "d2f/dxdx", "d2f/dxdy", "d2f/dydx", "d2f/dydy"]


def test_check_fails_with_status_1_at_a_kink():
    result = run_symtape("check", "relu(x)", "--at", "x=0", "--order", "1")
    assert result.returncode == 1
    assert "1 of 1 first-derivative entries disagree" in result.stdout
    assert "<-- differs" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["diff", "x + * y"], "cannot parse 'x + * y': unexpected '*' at column 5"),
    (["diff", "x^2"], "cannot parse 'x^2': unexpected character '^' (write ** for powers) "
                      "at column 2"),
    (["diff", "foo(x)"], "cannot parse 'foo(x)': unknown function 'foo'"),
    (["diff", "x", "--wrt", "2x"], "--wrt: '2x' is not a variable name"),
    (["diff", "x*y", "--at", "x=1"], "--at: no value for y"),
    (["diff", "x", "--at", "x"], "--at: 'x' is not NAME=VALUE"),
    (["diff", "x", "--at", "x=y"], "--at: the value of x must be a real number, got y"),
    (["diff", "x", "--at", "x=1+"], "cannot parse '1+': the expression ends too early"),
    (["check", "x*y", "--at", "x=1"], "--at: no value for y (e.g. --at y=1)"),
    # issue 19: each of these ended in a traceback
    (["check", "x", "--at", "x=1e400"], "--at: x=1.00E+400 is beyond the float64 range"),
    (["diff", "x*0**-1"], "cannot parse 'x*0**-1': division by zero (0**-1) at column 4"),
    (["diff", "sqrt(-1)*x"], "cannot parse 'sqrt(-1)*x': I is not a finite real number"),
    (["diff", "x*10**4000"], "the constant 1.00E+4000 is beyond the float64 range (1.8e308)"),
    (["diff", "x*1e308*10"], "the constant 1.00E+309 is beyond the float64 range (1.8e308)"),
    (["diff", "x/x"], "'x/x' is the constant 1: there is nothing to differentiate by"),
    (["check", "x", "--at", "x=1,x=2"], "--at: x is given twice"),
    (["diff", "x*ｘ"], "cannot parse 'x*ｘ': the name 'ｘ' is read by Python as 'x'"),
    (["diff", "x²"], "cannot parse 'x²': the name 'x²' is not a Python identifier"),
    (["diff", "lambda*x", "--format", "code"], "cannot parse 'lambda*x': the name 'lambda' is "
                                               "a Python keyword"),
    (["diff", "x", "--wrt", "None"], "--wrt: 'None' is a Python keyword"),
    (["check", "x*y**y", "--wrt", "x", "--at", "x=1,y=10**10"],  # ran for minutes
     "check_grads: with y=1e+10 fixed, 10000000000**10000000000 is too large to compute"),
    (["check", "x", "--at", "x=1", "--rtol", "nan"], "check_grads: rtol=nan is not a tolerance"),
    (["diff", "2**(10**20/3)*x"], "cannot parse '2**(10**20/3)*x': 2**(100000000000000000000/3) "
                                  "is too large to compute exactly"),
])
def test_malformed_input_is_one_line_and_status_2(args, message):
    result = run_symtape(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("symtape: error: " + message)


def test_check_needs_a_point():
    result = run_symtape("check", "x")
    assert result.returncode == 2
    assert "the following arguments are required: --at" in result.stderr


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch pwned')",
    "__import__('pathlib').Path('pwned').touch()",
    "open('pwned', 'w')",
    "exec(\"open('pwned','w')\")",
    "x; open('pwned', 'w')",
    "lambda: open('pwned', 'w')",
])
def test_injection_leaves_no_trace(payload, tmp_path):
    for command in (["diff", payload], ["check", payload, "--at", "x=1"],
                    ["diff", "x", "--at", f"x={payload}"]):
        result = run_symtape(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith("symtape: error: ")
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_walkthrough_needs_neither_scipy_nor_a_gpu():
    # the README's first command installs symtape alone (SymPy and NumPy): no optional extra
    script = ("import sys; sys.modules['scipy'] = None; sys.modules['cupy'] = None; "
              "from symtape.cli import main; sys.exit(main(['demo']))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "pip install 'symtape[scipy]' to see it here" in result.stdout
    assert "values.shape = (1000000,)" in result.stdout
    assert "a hand-written gradient exp(w) (the product rule forgotten) is caught" in result.stdout


@pytest.mark.parametrize("expr, at, lines", [
    # exact values would be numbers of gigabytes: the digits come from mpmath, at once
    ("x**y", "x=3,y=10**10", ["  f = inf (beyond the float range)",
                              "  df/dx = inf (beyond the float range)"]),
    ("x**x**x", "x=9", ["  f = inf (beyond the float range)"]),
    ("x**99999999", "x=2", ["  f = inf (beyond the float range)"]),
    ("exp(exp(exp(x)))", "x=10", ["  f = exp(exp(exp(10))) = inf (beyond the float range)"]),
    ("x**3", "x=10**1000", ["  f = 1" + "0" * 3000, "  df/dx = 3" + "0" * 2000]),  # exact
])
def test_values_at_huge_points_are_bounded(expr, at, lines):
    result = run_symtape("diff", expr, "--at", at)
    assert result.returncode == 0, result.stderr
    for line in lines:
        assert line in result.stdout.splitlines()


def test_diff_code_keeps_a_parameter_named_like_a_temporary():
    result = run_symtape("diff", "_c0*sin(x)**2 + sin(x)**3", "--wrt", "x", "_c0", "--format", "code")
    assert result.returncode == 0, result.stderr
    namespace: dict = {}
    exec(result.stdout, namespace)  # the generated code, not user input
    x, c = 0.4, 3.0  # by hand: ((2 c sin + 3 sin^2) cos, sin^2)
    np.testing.assert_allclose(namespace["gradient"](x, c), [
        (2 * c * math.sin(x) + 3 * math.sin(x) ** 2) * math.cos(x), math.sin(x) ** 2], rtol=1e-14)


def test_check_with_a_variable_named_like_a_function():
    # arcsin is NumPy's name of asin: lambdify's namespace let the variable shadow it
    result = run_symtape("check", "arcsin*asin(x)", "--at", "arcsin=0.5,x=0.3", "--order", "1")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert len(rows["df/darcsin"]) == 5  # symbolic, compiled, complex step, finite diff., error
    assert float(rows["df/darcsin"][2]) == pytest.approx(math.asin(0.3), rel=1e-12)
    assert float(rows["df/dx"][2]) == pytest.approx(0.5 / math.sqrt(1 - 0.09), rel=1e-12)


# ---------------------------------------------------------------- careless input, at random

_ATOMS = ["x", "y", "0", "1", "0.5", "1e308", "1e-308", "10**300", "pi", "-1", "1e400"]
_UNARY = ["sin", "tan", "exp", "log", "sqrt", "abs", "relu", "erf", "asin", "log1p", "square"]
_BINARY = ["atan2", "maximum", "pow"]


def _careless_expressions():
    atoms = hs.sampled_from(_ATOMS)

    def grow(children):
        return hs.one_of(
            hs.builds("{}({})".format, hs.sampled_from(_UNARY), children),
            hs.builds("{}({}, {})".format, hs.sampled_from(_BINARY), children, children),
            hs.builds("({}){}({})".format, children, hs.sampled_from(["+", "-", "*", "/", "**"]),
                      children))
    return hs.recursive(atoms, grow, max_leaves=6)


@settings(max_examples=15, deadline=None)
@given(expr=_careless_expressions(),
       at=hs.sampled_from(["x=0.5,y=2", "x=0,y=0", "x=-1,y=1e300", "x=10**300,y=-3"]),
       command=hs.sampled_from(["diff", "check", "code"]))
def test_careless_input_is_a_result_or_one_line_never_a_traceback(expr, at, command):
    from symtape.cli import main

    argv = {"diff": ["diff", expr, "--order", "2", "--at", at], "check": ["check", expr,
            "--at", at], "code": ["diff", expr, "--format", "code", "--wrt", "x", "y"]}[command]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    err = err.getvalue()
    assert status in (0, 1, 2)
    if status == 2:
        assert err.startswith("symtape: error: ") and len(err.splitlines()) == 1, err
    else:
        assert err == ""
