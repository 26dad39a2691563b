"""Dtype names and resolution."""

import numpy as np
import pytest

import symtape as st


def test_names_are_numpy_dtypes():
    assert st.float32 == np.float32 and st.float64 == np.dtype("float64")
    assert st.int32 == np.int32 and st.int64 == np.int64 and st.bool == np.bool_
    assert st.float16.itemsize == 2


def test_as_dtype_accepts_names_types_and_dtypes():
    assert st.as_dtype("float32") == st.float32
    assert st.as_dtype(np.int64) == st.int64
    assert st.as_dtype(st.bool) == st.bool


@pytest.mark.parametrize("bad, message", [("complex64", "not supported"), ("nonsense", "not a dtype"),
                                          (object, "not supported")])
def test_as_dtype_rejects_what_symtape_cannot_hold(bad, message):
    with pytest.raises(TypeError, match=message):
        st.as_dtype(bad)
