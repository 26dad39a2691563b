"""The ``symtape`` command line (argparse only; the work happens in the library)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symtape", description="Exact symbolic-plus-numeric differentiation.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("demo", help="run the main walk-through on the CPU")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Examples
    --------
    >>> main(["demo"])  # doctest: +ELLIPSIS
    symtape walk-through...
    0
    """
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in (None, "demo"):
        from symtape import demo

        demo.run()
    return 0
