"""The core layer: the Tensor, the one primitive registry, the ops, the tape and its reverse
sweep, the algebras the derivative rules are written against (numeric, symbolic, matrix).
Imports only from :mod:`symtape.arrays`."""
