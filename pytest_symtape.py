"""symtape's pytest plugin (registered under the ``pytest11`` entry point as ``symtape``).

It is a top-level module, outside the ``symtape`` package, because pytest imports every
registered plugin when it starts: importing anything inside ``symtape`` runs the package's
``__init__``, which imports SymPy (0.6 s on every pytest run on the machine, symtape's tests
or not). SymPy and symtape are imported when the fixture is first used.

It gives every test the ``check_grads`` fixture, :func:`symtape.check_grads` with the
tolerances of the nearest ``@pytest.mark.check_grads(...)`` marker as defaults::

    @pytest.mark.check_grads(rtol=1e-6)
    def test_model(check_grads):
        check_grads(loss, (params,))

A disagreement fails the test with the table of the entries that differ.
"""

from __future__ import annotations

import pytest

__all__ = ["check_grads", "pytest_configure"]


def pytest_configure(config) -> None:
    """Declare the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers", "check_grads(order=2, rtol=1e-5, atol=None): defaults for the check_grads "
        "fixture in this test, class or module")


@pytest.fixture
def check_grads(request):
    """``st.check_grads``, defaulting to the options of a ``check_grads`` marker.

    Examples
    --------
    >>> import symtape as st
    >>> def test_sine(check_grads):
    ...     check_grads(st.sin, (0.3,))
    """
    marker = request.node.get_closest_marker("check_grads")
    defaults = dict(marker.kwargs) if marker is not None else {}

    from symtape.check import check_grads as _check_grads  # here: pytest starts without it

    def check(fun, args, **options):
        __tracebackhide__ = True
        return _check_grads(fun, args, **{**defaults, **options})

    return check
