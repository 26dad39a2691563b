"""What every benchmark script shares: best-of-N timing and the table of ratios."""

from __future__ import annotations

import time


def best_of(fn, repeat: int, setup=None) -> float:
    """The fastest of ``repeat`` timed calls of ``fn`` (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def print_table(rows: list) -> None:
    """Rows of ``(case, symtape seconds, baseline seconds or 0, target)``, ratio = ours / theirs."""
    width = max(len(row[0]) for row in rows)
    print(f"{'case':<{width}} {'symtape':>10} {'baseline':>10} {'ratio':>8}  target")
    for name, ours, theirs, target in rows:
        ratio = f"{ours / theirs:8.2f}" if theirs else "       -"
        base = f"{theirs * 1e3:8.3f}ms" if theirs else "         -"
        print(f"{name:<{width}} {ours * 1e3:8.3f}ms {base} {ratio}  {target}")
