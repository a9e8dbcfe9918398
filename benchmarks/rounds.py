"""Alternated rounds, shared by the benchmarks that compare fresh-process runs.

This VM's speed drifts (a process may run 1.6× slower than the one before it), so arms are
never run as blocks: each round runs every arm once, back to back, and the medians and each
round's own ratios come from those rounds. With `mirror`, even rounds run the arms in reverse
order, so no arm always runs first (or always right after a given one) and neighbours in the
list stay back to back in every round.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable


def alternate(
    arms: dict[str, Callable[[], dict]],
    rounds: int,
    describe: Callable[[dict], str],
    *,
    mirror: bool = False,
) -> dict[str, list[dict]]:
    """Run every arm once per round; print a line per round (`describe` one run).

    Each run's dict gets `round`, `position` (its place in that round's order, from 0) and
    `load_before` (the 1-minute load average when it started: what else loaded the machine).
    """
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    for round_ in range(1, rounds + 1):
        order = list(arms)
        if mirror and round_ % 2 == 0:
            order.reverse()
        for position, name in enumerate(order):
            load = round(os.getloadavg()[0], 2)
            runs[name].append({**arms[name](), "round": round_, "position": position})
            runs[name][-1]["load_before"] = load
        line = "  ".join(f"{name} {describe(runs[name][-1])}" for name in order)
        print(f"round {round_}: {line}", flush=True)
    return runs


def median_seconds(runs: dict[str, list[dict]]) -> dict[str, float]:
    return {name: statistics.median(r["seconds"] for r in rows) for name, rows in runs.items()}


def spread(values: list[float]) -> tuple[float, float, float]:
    """Lowest, median and highest."""
    return min(values), statistics.median(values), max(values)
