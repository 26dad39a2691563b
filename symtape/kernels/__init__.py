"""The kernels layer: traced programs, code generation and printers, compiled kernels and their
caches (``st.compile``). New code generators (further backends) belong here. Imports only from
:mod:`symtape.core` and :mod:`symtape.arrays`."""
