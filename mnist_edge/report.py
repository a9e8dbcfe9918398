"""Results to people and to machines: rich tables for the terminal, JSON for everything else."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any

from rich.console import Group
from rich.table import Table

from mnist_edge.bench import BenchReport
from mnist_edge.data import DataSummary
from mnist_edge.export import ExportResult
from mnist_edge.model import EpochStats, TrainResult
from mnist_edge.verify import VerifyReport


def to_json(result: Any) -> str:
    """A result dataclass as indented JSON (the same payload the artifacts' .json files hold)."""
    return json.dumps(asdict(result) if is_dataclass(result) else result, indent=2)


def format_bytes(n: int) -> str:
    """Human file size: 105,192 B -> 102.7 KiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def epoch_line(stats: EpochStats, epochs: int) -> str:
    """One progress line per training epoch."""
    return (
        f"epoch {stats.epoch}/{epochs}  loss {stats.loss:.4f}  accuracy {stats.accuracy:.4f}  "
        f"val_loss {stats.val_loss:.4f}  val_accuracy {stats.val_accuracy:.4f}  "
        f"({stats.seconds:.1f} s)"
    )


def data_table(summary: DataSummary) -> Table:
    """Counts and class histogram of the loaded MNIST."""
    table = Table(title=f"MNIST from {summary.source}")
    table.add_column("split")
    table.add_column("images", justify="right")
    for digit in range(10):
        table.add_column(str(digit), justify="right")
    table.add_row("train", f"{summary.train_count:,}", *map(str, summary.train_histogram))
    table.add_row("test", f"{summary.test_count:,}", *map(str, summary.test_histogram))
    return table


def train_table(result: TrainResult) -> Table:
    """Per-epoch history and the test figures."""
    table = Table(
        title=(
            f"Trained {result.params:,} parameters on {result.train_images:,} images in "
            f"{result.seconds:.1f} s: test accuracy {result.test_accuracy:.4f}, "
            f"test loss {result.test_loss:.4f}"
        )
    )
    for column in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
        table.add_column(column, justify="right")
    for e in result.history:
        table.add_row(
            str(e.epoch),
            f"{e.loss:.4f}",
            f"{e.accuracy:.4f}",
            f"{e.val_loss:.4f}",
            f"{e.val_accuracy:.4f}",
            f"{e.seconds:.1f}",
        )
    return table


def export_table(result: ExportResult) -> Table:
    """Each file written, with its size."""
    table = Table(title=f"Exported {result.source}")
    for column in ("file", "format", "size", "bytes", "sha256"):
        table.add_column(column, justify="right" if column in ("size", "bytes") else "left")
    for f in result.files:
        table.add_row(f.name, f.format, format_bytes(f.bytes), f"{f.bytes:,}", f.sha256[:16])
    return table


def verify_table(report: VerifyReport) -> Group:
    """Accuracy, delta, agreement and output error of each export; the cross-runtime matrix."""
    ref = report.reference
    table = Table(
        title=(
            f"Verified on {report.images:,} test images against {ref.artifact} "
            f"(accuracy {ref.accuracy:.4f}, {ref.source}); tolerance {report.tolerance_pp} pp"
        )
    )
    columns = (
        "artifact",
        "runtime",
        "accuracy",
        "Δ pp",
        "agreement",
        "max |Δp|",
        "cosine",
        "L2 rel",
        "ok",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("artifact", "runtime") else "right")
    for r in report.results:
        table.add_row(
            r.artifact,
            r.runtime,
            f"{r.accuracy:.4f}",
            f"{r.delta_pp:+.2f}",
            f"{r.agreement:.4f}",
            f"{r.max_abs_diff:.2e}",
            f"{r.cosine_similarity:.6f}",
            f"{r.l2_relative_error:.2e}",
            "yes" if r.passed else "[red]NO[/red]",
        )
    cross = report.cross_agreement
    matrix = Table(title="Agreement of predicted classes between every two models")
    matrix.add_column("")
    for i in range(len(cross.models)):
        matrix.add_column(f"[{i}]", justify="right")
    for i, (name, values) in enumerate(zip(cross.models, cross.matrix, strict=True)):
        matrix.add_row(f"[{i}] {name}", *(f"{v:.4f}" for v in values))
    return Group(table, matrix)


def bench_table(report: BenchReport) -> Table:
    """Latency percentiles and throughput, with the machine in the title."""
    m = report.machine
    features = ", ".join(m.features) or "none detected"
    table = Table(title=f"{m.cpu} ({m.arch}, {m.cores} cores; {features})")
    columns = (
        "artifact",
        "runtime",
        "threads",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "mean µs",
        "invoke p50 µs",
        "batch",
        "images/s",
        "init ms",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("artifact", "runtime") else "right")
    for r in report.results:
        table.add_row(
            r.artifact,
            r.runtime,
            str(r.threads),
            f"{r.p50_us:,.1f}",
            f"{r.p90_us:,.1f}",
            f"{r.p99_us:,.1f}",
            f"{r.mean_us:,.1f}",
            f"{r.invoke_p50_us:,.1f}",
            str(r.batch_size),
            f"{r.throughput_ips:,.0f}",
            f"{r.init_ms:,.1f}",
        )
    return table
