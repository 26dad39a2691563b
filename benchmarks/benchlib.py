"""What every benchmark script shares: best-of-N timing and the table of ratios."""

from __future__ import annotations

import time


def best_of(fn, repeat: int, setup=None, number: int = 1) -> float:
    """The fastest of ``repeat`` timings of ``fn`` (``setup`` runs untimed before each);
    with ``number``, each timing is the mean of that many calls in a loop (for calls of
    microseconds, where the clock's own cost would show)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def print_table(rows: list) -> None:
    """Rows of ``(case, symtape seconds, baseline seconds or 0, target)``, ratio = ours / theirs."""
    width = max(len(row[0]) for row in rows)
    print(f"{'case':<{width}} {'symtape':>10} {'baseline':>10} {'ratio':>8}  target")
    for name, ours, theirs, target in rows:
        ratio = f"{ours / theirs:8.2f}" if theirs else "       -"
        base = format_seconds(theirs) if theirs else "-"
        print(f"{name:<{width}} {format_seconds(ours):>10} {base:>10} {ratio}  {target}")


def format_seconds(seconds: float | None) -> str:
    """``1.23 s``, ``4.56 ms`` or ``7.89 us``; ``-`` for ``None`` or NaN (nothing was timed)."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds >= 0.1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-4:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def print_columns(header: list, rows: list, markdown: bool = False) -> None:
    """Rows of text cells under ``header``: aligned plain text, or a Markdown table."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(str(cell) for cell in row) + " |")
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(f"{str(cell):<{width}}" for cell, width in zip(row, widths)).rstrip())
