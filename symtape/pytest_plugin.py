"""The pytest plugin's former home, kept so that ``-p symtape.pytest_plugin`` still works.

The plugin is the top-level module :mod:`pytest_symtape` (registered as ``symtape`` under
the ``pytest11`` entry point): importing it does not import SymPy. Importing this module
does (it is inside the package), so register ``pytest_symtape`` instead.
"""

from pytest_symtape import check_grads, pytest_configure

__all__ = ["check_grads", "pytest_configure"]
