"""Every public name documents itself with a runnable example (run by --doctest-modules)."""

import inspect

import numpy as np
import pytest

import symtape as st

PUBLIC = [name for name in st.__all__ if not isinstance(getattr(st, name), np.dtype)]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_has_an_example(name):
    doc = inspect.getdoc(getattr(st, name)) or ""
    assert ">>>" in doc, f"st.{name} needs a docstring with a runnable example"


@pytest.mark.parametrize("cls", [st.Tensor, st.Variable, st.GradientTape, st.Kernel])
def test_public_members_have_examples(cls):
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not (callable(member) or isinstance(member, property)):
            continue
        assert ">>>" in (inspect.getdoc(member) or ""), f"{cls.__name__}.{name} needs an example"
