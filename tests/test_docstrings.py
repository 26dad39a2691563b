"""Public callables that take several arguments document each one in a numpy-style section:
the public face (``st``, its tool modules, the public methods of their classes) and the
functions each module of the subpackages lists in ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import symtape as st

NAMESPACES = {"st": st, "st.optimize": st.optimize, "st.optimizers": st.optimizers,
              "st.config": st.config, "st.random": st.random, "st.check": st.check}

# classes users do not construct: their documented face is what makes them
MADE_FOR_YOU = {
    "Tensor": "made by st.constant and by ops",
    "Kernel": "made by st.compile",
    "ConcreteFunction": "made by Function.get_concrete_function",
    "ParseError": "raised by st.parse",
}


def _public_callables():
    """(qualified name, object whose docstring documents it, callable whose signature counts)."""
    found, seen = [], set()

    def consider(qualname, documented, fn):
        if id(fn) not in seen and (getattr(fn, "__module__", "") or "").startswith("symtape"):
            seen.add(id(fn))
            found.append((qualname, documented, fn))

    for prefix, module in NAMESPACES.items():
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                if name not in MADE_FOR_YOU and "__init__" in vars(value):
                    consider(f"{prefix}.{name}", value, value.__init__)
                for method_name, method in vars(value).items():
                    if isinstance(method, (staticmethod, classmethod)):
                        method = method.__func__
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        consider(f"{prefix}.{name}.{method_name}", method, method)
            elif callable(value) and not inspect.ismodule(value):
                consider(f"{prefix}.{name}", value, value)
    return found


def _argument_names(fn) -> list[str]:
    """The named parameters (not self or cls, not *args or **kwargs)."""
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _section(doc: str, title: str) -> str | None:
    """The body of a numpy-style section (``Parameters`` then a line of dashes), or None."""
    lines = doc.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == title and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]):
            body = []
            for j in range(i + 2, len(lines)):
                if j + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[j + 1]):
                    break  # the next section's title
                body.append(lines[j])
            return "\n".join(body)
    return None


def _documented_names(section: str) -> set[str]:
    """The names a section documents: ``a : type`` or ``a, b : type`` lines."""
    names = set()
    for line in section.splitlines():
        match = re.fullmatch(r"\s*([\w*]+(?:\s*,\s*[\w*]+)*)\s*(?::.*)?", line)
        if match and (":" in line or not line.startswith(" " * 8)):
            names.update(n.strip().lstrip("*") for n in match.group(1).split(","))
    return names


SUBPACKAGES = ("arrays", "core", "kernels", "transforms")


def _subpackage_functions():
    """The functions each module of the subpackages lists in its ``__all__``."""
    found = []
    for package in SUBPACKAGES:
        path = importlib.import_module(f"symtape.{package}").__path__
        for info in pkgutil.iter_modules(path):
            module = importlib.import_module(f"symtape.{package}.{info.name}")
            for name in getattr(module, "__all__", ()):
                value = getattr(module, name)
                if inspect.isfunction(value) and value.__module__ == module.__name__:
                    found.append((f"{module.__name__}.{name}", value, value))
    return found


def _cases():
    seen, cases = set(), []
    for case in [*_public_callables(), *_subpackage_functions()]:
        if id(case[2]) not in seen and len(_argument_names(case[2])) >= 2:
            seen.add(id(case[2]))
            cases.append(case)
    return cases


CASES = _cases()


def test_the_scan_finds_the_public_face():
    names = {qualname for qualname, _, _ in CASES}
    assert {"st.matmul", "st.GradientTape.gradient", "st.Variable.assign", "st.random.normal",
            "st.optimizers.Adam", "st.optimize.minimize", "st.hessian",
            "symtape.core.accumulate.sweep", "symtape.arrays.objarrays.full"} <= names


@pytest.mark.parametrize("qualname, documented, fn", CASES, ids=[c[0] for c in CASES])
def test_every_argument_is_documented(qualname, documented, fn):
    doc = inspect.getdoc(documented) or ""
    sections = [_section(doc, "Parameters")]
    if inspect.isclass(documented):
        sections.append(_section(doc, "Attributes"))  # records list their fields there
    present = [s for s in sections if s is not None]
    assert present, f"{qualname} has no Parameters section"
    missing = [n for n in _argument_names(fn)
               if not any(n in _documented_names(s) for s in present)]
    assert not missing, f"{qualname}: Parameters does not document {missing}"


def test_the_section_reader_finds_names_and_stops_at_the_next_section():
    doc = inspect.cleandoc("""Summary.

    Parameters
    ----------
    x, y : float
        Two numbers.
    name : str, optional

    Returns
    -------
    out : float
    """)
    assert _documented_names(_section(doc, "Parameters")) == {"x", "y", "name"}
    assert _section(doc, "Raises") is None
