"""The documentation site builds with ``mkdocs build --strict`` and documents the whole API."""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

import symtape as st

ROOT = pathlib.Path(__file__).resolve().parent.parent

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason='the docs extra: python -m pip install -e ".[docs]"')
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_every_page_in_docs_is_in_the_navigation():
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {page.relative_to(ROOT / "docs").as_posix() for page in (ROOT / "docs").rglob("*.md")}
    assert pages == listed, "docs/ pages and mkdocs.yml's nav differ"


def _public_callables():
    for name in st.__all__:
        obj = getattr(st, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


def test_every_public_function_and_class_has_an_api_entry(site):
    ids = set()
    for page in (site / "api").rglob("index.html"):
        ids.update(re.findall(r'id="(symtape\.[\w.]+)"', page.read_text()))
    missing = [name for name, obj in _public_callables()
               if f"{obj.__module__}.{obj.__qualname__}" not in ids]
    assert not missing, f"not in the API reference (docs/api/*.md): {missing}"


def test_api_pages_carry_the_docstrings(site):
    page = (site / "api" / "ops" / "index.html").read_text()
    assert "Square root." in page  # made by a factory: only inspection finds the docstring
    page = (site / "api" / "tape" / "index.html").read_text()
    assert "persistent" in page
