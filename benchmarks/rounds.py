"""Alternated rounds, shared by the benchmarks that compare fresh-process runs.

This VM's speed drifts (a process may run 1.6× slower than the one before it), so arms are
never run as blocks: each round runs every arm once, back to back, and the medians and each
round's own ratios come from those rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternate(
    arms: dict[str, Callable[[], dict]], rounds: int, describe: Callable[[dict], str]
) -> dict[str, list[dict]]:
    """Run every arm once per round, in order; print a line per round (`describe` one run)."""
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    for round_ in range(1, rounds + 1):
        for name, run in arms.items():
            runs[name].append(run())
        line = "  ".join(f"{name} {describe(rows[-1])}" for name, rows in runs.items())
        print(f"round {round_}: {line}", flush=True)
    return runs


def median_seconds(runs: dict[str, list[dict]]) -> dict[str, float]:
    return {name: statistics.median(r["seconds"] for r in rows) for name, rows in runs.items()}
