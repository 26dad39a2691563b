"""The bottom layer: dtypes, array modules (NumPy, CuPy), devices, and object arrays of SymPy
expressions. Imports nothing else from symtape."""
