"""The search's result on the terminal: the Pareto front as a rich table, and lines under it."""

from __future__ import annotations

import textwrap

from rich.console import Group
from rich.table import Table

from mnist_edge.search.records import SearchResult, TrialRecord


def _maybe(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _budgets(result: SearchResult) -> str:
    b = result.settings.budgets
    parts = [
        f"RAM ≤ {b.max_ram:,} B" if b.max_ram else "",
        f"flash ≤ {b.max_flash:,} B" if b.max_flash else "",
        f"instructions ≤ {b.max_instructions:,}" if b.max_instructions else "",
        f"accuracy ≥ {b.min_accuracy:.2%}" if b.min_accuracy else "",
    ]
    return ", ".join(p for p in parts if p) or "no budgets"


def _row(table: Table, r: TrialRecord, picked: TrialRecord | None) -> None:
    mark = "*" if picked is not None and picked.number == r.number else ""
    table.add_row(
        f"{r.number}{mark}",
        f"{r.accuracy:.2%}",
        f"{r.test_accuracy:.2%}",
        f"{r.flash_bytes:,}",
        f"{r.ram_bytes:,}",
        _maybe(r.instructions, ","),
        f"{r.params:,}",
        r.architecture,
    )


def search_table(result: SearchResult) -> Group:
    """The feasible front (held-out and test accuracy, flash, RAM, instructions, parameters,
    the architecture) with the study's counts, budgets and the pick under it."""
    s = result.settings
    table = Table(title=f"Search {result.study!r} on {s.board}: the feasible Pareto front")
    columns = ["trial", "accuracy", "test", "flash B", "RAM B", "instructions", "params"]
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("architecture", justify="left")
    for record in result.front:
        _row(table, record, result.picked)
    lines = [
        f"{result.complete} complete trials ({result.feasible} feasible), {result.failed} "
        f"failed ({result.retried} retried), {result.running} running; {_budgets(result)}",
        "accuracy: int8, the C engine on the host, on the "
        f"{result.trials[0].held_out_images if result.trials else 0:,} held-out training "
        "images (what the study ranks by); test: on the test images. flash: the engine's code "
        "and constants; RAM: its memory plan and stack.",
        f"study {result.study!r} in {result.storage} (optuna-dashboard opens it as is)",
    ]
    if not result.front and result.complete:
        lines.append("No trial meets the budgets.")
    if result.picked is not None:
        lines.append(
            f"picked trial {result.picked.number} (*): model.keras in {result.picked_to}; "
            f"next: mnist-edge export --int8 --artifacts {result.picked_to}"
        )
    wrapped = [textwrap.fill(line, width=100, subsequent_indent="  ") for line in lines]
    return Group(table, *wrapped)
