"""Results to people on the terminal (rich tables) and to machines (JSON on stdout).

Every table is built from a typed record; nothing here computes a figure.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table

if TYPE_CHECKING:  # annotations only: rendering a table imports no stage
    from mnist_edge.data import DataSummary
    from mnist_edge.predict import PredictResult
    from mnist_edge.records import (
        BenchReport,
        BundleResult,
        EpochStats,
        ExportResult,
        TrainResult,
        VerifyReport,
        VerifyRow,
    )
    from mnist_edge.report import ReportPage


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
    for digit in range(len(summary.train_histogram)):
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
    """Each export in the folder, with its size: written now, kept from before, or found."""
    table = Table(title=f"Exported {result.source}")
    for column in ("file", "format", "size", "bytes", "sha256", "this run"):
        table.add_column(column, justify="right" if column in ("size", "bytes") else "left")
    for f in result.files:
        table.add_row(
            f.name, f.format, format_bytes(f.bytes), f"{f.bytes:,}", f.sha256[:16], f.origin
        )
    return table


def _not_supported(reason: str):
    """A table cell for a pair that cannot run: the reason's last clause (the JSON has it all)."""
    from rich.text import Text

    return Text(f"not supported: {reason.rsplit(': ', 1)[-1]}", style="dim", justify="left")


VERIFY_COLUMNS = (
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


def verify_cells(r: VerifyRow) -> list[str]:
    """One verify row as the table's cells (the terminal's and the HTML page's)."""
    return [
        r.artifact,
        r.runtime,
        f"{r.accuracy:.4f}",
        f"{r.delta_pp:+.2f}",
        f"{r.agreement:.4f}",
        f"{r.max_abs_diff:.2e}",
        f"{r.cosine_similarity:.6f}",
        f"{r.l2_relative_error:.2e}",
        "yes" if r.passed else "NO",
    ]


def verify_table(report: VerifyReport) -> Group:
    """Accuracy, delta, agreement and output error of each export; the cross-runtime matrix."""
    ref = report.reference
    table = Table(
        title=(
            f"Verified on {report.images:,} test images against {ref.artifact} "
            f"(accuracy {ref.accuracy:.4f}, {ref.source}); tolerance {report.tolerance_pp} pp"
        )
    )
    for column in VERIFY_COLUMNS:
        table.add_column(column, justify="left" if column in ("artifact", "runtime") else "right")
    for r in report.results:
        cells = verify_cells(r)
        table.add_row(*cells[:-1], "yes" if r.passed else "[red]NO[/red]")
    for u in report.unsupported:
        table.add_row(u.artifact, u.runtime, _not_supported(u.reason))
    cross = report.cross_agreement
    matrix = Table(title="Agreement of predicted classes between every two models")
    matrix.add_column("")
    for i in range(len(cross.models)):
        matrix.add_column(f"[{i}]", justify="right")
    for i, (name, values) in enumerate(zip(cross.models, cross.matrix, strict=True)):
        matrix.add_row(f"[{i}] {name}", *(f"{v:.4f}" for v in values))
    identity = [
        f"{r.artifact} on codegen: {r.tflm_identity.bit_identical:,}/{r.tflm_identity.images:,} "
        f"int8 outputs bit-identical to host TFLM's (max |Δ| {r.tflm_identity.max_abs_diff:g})"
        for r in report.results
        if r.tflm_identity is not None
    ]
    return Group(table, *identity, matrix)


def identity_table(report) -> Group:
    """verify --inputs: each export and runtime against host TFLM, byte for byte."""
    table = Table(title=f"Verified against host TFLM on {report.inputs}")
    columns = ("artifact", "runtime", "bit-identical", "same class", "max |Δ|", "accuracy", "ok")
    for column in columns:
        table.add_column(column, justify="left" if column in columns[:2] else "right")
    for r in report.results:
        a = r.agreement
        ok = "yes" if a.bit_identical == a.images else "[red]NO[/red]"
        table.add_row(
            r.artifact,
            r.runtime,
            f"{a.bit_identical:,}/{a.images:,}",
            f"{a.same_class:,}/{a.images:,}",
            f"{a.max_abs_diff:g}",
            "–" if r.accuracy is None else f"{r.accuracy:.4f}",
            ok if r.must_match else "not required",
        )
    for u in report.unsupported:
        table.add_row(u.artifact, u.runtime, _not_supported(u.reason))
    return Group(table, f"reference: {report.reference}")


# The bench tables' `+call µs` column (BenchRow.overhead_us), explained under them.
OVERHEAD_NOTE = (
    "+call: p50 − invoke p50, what feeding uint8 pixels and reading float scores add per call"
)


NPU_COLUMNS = (
    "artifact",
    "target",
    "basis",
    "cycles",
    "NPU cycles",
    "time µs",
    "instructions",
    "SRAM/RAM B",
    "flash B",
    "operators",
)


def npu_rows(report: BenchReport) -> list[list[str]]:
    """bench --target ethos-u*: vela's estimates, then the Cortex-M55 firmware's measurements of
    the same bytes (QEMU counts instructions, not cycles), one row each, labelled."""
    rows = []
    for e in report.npu:
        mapped = e.npu_operators > 0  # else vela compiled nothing: no NPU figure to show
        ops = f"{e.npu_operators}/{e.model_operators} on the NPU"
        if e.cpu_operators:
            ops += f"; CPU: {', '.join(e.cpu_operators)}"
        weights = e.off_chip_flash_bytes or e.dram_bytes
        rows.append(
            [
                e.artifact,
                e.accelerator,
                e.basis,
                f"{e.cycles_total:,}" if mapped else "–",
                f"{e.cycles_npu:,}" if mapped else "–",
                f"{e.inference_us:,.1f} @ {e.clock_hz / 1e6:,.0f} MHz" if mapped else "–",
                "–",
                f"{e.sram_bytes:,}" if mapped else "–",
                (f"{weights:,}" + (" (DRAM)" if e.dram_bytes else "")) if mapped else "–",
                ops,
            ]
        )
    for f in report.firmware:
        rows.append(
            [
                f.artifact,
                f"{f.cpu} {f.engine} {f.kernels}",
                "measured (firmware, QEMU)",
                "–",
                "–",
                "–",
                "–"
                if f.instructions_per_inference is None
                else f"{f.instructions_per_inference:,}",
                f"{f.ram_bytes:,}",
                f"{f.flash_bytes:,}",
                "all on the CPU",
            ]
        )
    return rows


def npu_notes(report: BenchReport) -> list[str]:
    """What the NPU rows assumed and are: vela's estimates, and what vela made of each model."""
    s = report.settings
    notes = [
        f"Estimates, not measurements: vela {e.vela_version} ({s.get('config_file', '')}, "
        f"system config {e.system_config}, memory mode {e.memory_mode}); no NPU or emulator of "
        "one ran. Cycles are the NPU's alone (operators left on the CPU are not in them), time is "
        f"cycles at the NPU clock. {e.artifact}: {e.model_operators} operators lowered to "
        f"{e.vela_npu_operations} NPU operations, {e.macs:,} MACs; compiled model "
        f"{e.compiled_bytes:,} B, SHA-256 {e.compiled_sha256[:16]}…"
        for e in report.npu
    ]
    if report.firmware:
        notes.append(
            "Measured rows: the firmware in QEMU (firmware/firmware.json, same model bytes), "
            "which counts instructions, not cycles; flash includes the code."
        )
    else:
        notes.append(
            "No Cortex-M55 firmware run of these bytes to show beside the estimates: "
            "`mnist-edge firmware --cpu cortex-m55` measures one."
        )
    return notes


def bench_table(report: BenchReport) -> Group:
    """Latency, throughput, MAC rate against the roofline, speed-up over Keras; the machine.
    For an Ethos-U target: vela's estimates, labelled, beside the Cortex-M55 firmware's figures."""
    if report.npu and not report.results:
        npu = Table(title=f"{report.target}: vela's estimates (no NPU ran)")
        for column in NPU_COLUMNS:
            npu.add_column(column, justify="left" if column in NPU_COLUMNS[:3] else "right")
        for row in npu_rows(report):
            npu.add_row(*row)
        return Group(npu, *npu_notes(report))
    m = report.machine
    features = ", ".join(m.features) or "none detected"
    table = Table(title=f"{m.cpu} ({m.arch}, {m.cores} cores; {features})")
    columns = [
        "artifact",
        "runtime",
        "threads",
        "batch",
        "p50 µs",
        "p99 µs",
        "invoke p50 µs",
        "+call µs",
        "images/s",
        "GMAC/s",
        "of roofline",
        "× Keras",
        "init ms",
    ]
    # A microcontroller's footprint, for the TFLM rows (bench --target mcu).
    footprint = any(r.arena_bytes is not None for r in report.results)
    if footprint:
        columns += ["arena B", "flash B"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("artifact", "runtime") else "right")

    def maybe(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    for r in report.results:
        cells = [
            r.artifact,
            r.runtime,
            str(r.threads),
            str(r.batch_size),
            f"{r.p50_us:,.1f}",
            f"{r.p99_us:,.1f}",
            f"{r.invoke_p50_us:,.1f}",
            maybe(r.overhead_us, ",.1f"),
            f"{r.throughput_ips:,.0f}",
            maybe(r.gmacs, ".1f"),
            maybe(r.roofline_fraction, ".1%"),
            maybe(r.speedup_vs_keras, ",.1f"),
            f"{r.init_ms:,.1f}",
        ]
        if footprint:
            cells += [maybe(r.arena_bytes, ","), maybe(r.flash_bytes, ",")]
        table.add_row(*cells)
    for u in report.unsupported:
        table.add_row(u.artifact, u.runtime, _not_supported(u.reason))
    notes = [
        f"Roofline, {roof.threads} thread(s): float32 {maybe(roof.float32_gmacs, '.1f')}, "
        f"int8 {maybe(roof.int8_gmacs, '.1f')} GMAC/s ({roof.note})"
        for roof in report.rooflines
    ]
    costs = {(r.macs, r.params) for r in report.results if r.macs}
    notes += [
        f"Model cost: {macs:,} MACs and {params:,} parameters per image" for macs, params in costs
    ]
    notes += [
        f"On {f.cpu}, {f.engine} with {f.kernels} (firmware, QEMU): {f.artifact} "
        f"{f.instructions_per_inference or 0:,} instructions per inference, flash "
        f"{f.flash_bytes:,} B, RAM {f.ram_bytes:,} B (arena {f.arena_bytes:,} B)"
        for f in report.firmware
    ]
    notes.append(OVERHEAD_NOTE)
    notes.append(f"Peak RSS of this process: {report.peak_rss_mb:,.1f} MiB")
    return Group(table, *notes)


def predict_table(result: PredictResult) -> Table:
    """Each input's class, probability and top candidates, or why it was skipped."""
    from rich.text import Text

    skipped = len(result.skipped)
    table = Table(
        title=(
            f"{result.model} on {result.runtime}: {len(result.predictions) - skipped:,} "
            f"classified, {skipped:,} skipped"
        )
    )
    table.add_column("file")
    table.add_column("digit", justify="right")
    table.add_column("probability", justify="right")
    table.add_column(f"top {max((len(p.top) for p in result.predictions), default=0)}")
    for p in result.predictions:
        # File names and error messages are the user's text: never read as rich markup.
        if p.error is not None:
            table.add_row(Text(p.file), "", "", Text(f"skipped: {p.error}", style="red"))
            continue
        top = ", ".join(f"{c.digit} {c.probability:.3f}" for c in p.top)
        table.add_row(Text(p.file), str(p.digit), f"{p.probability:.4f}", top)
    return table


def bundle_table(result: BundleResult) -> Table | Group:
    """What a firmware engineer needs from the bundle: footprint, resolver, accuracy, proofs."""
    a = result.arena
    table = Table(title=f"Bundle {result.out}: {result.model} ({result.kind})")
    table.add_column("item")
    table.add_column("value")
    table.add_row("flash", f"{result.flash_bytes:,} B (the model's bytes; code not counted)")
    table.add_row(
        "TFLM arena",
        f"{result.arena_bytes:,} B measured (smallest working {a.smallest_working:,} B); "
        f"estimate {a.estimate_bytes:,} B = activations {a.estimate_activations:,} + "
        f"bookkeeping {a.estimate_bookkeeping:,}, "
        f"off by {a.error_bytes:+,} B ({a.error_pct:+.1f}%)",
    )
    table.add_row("TFLM resolver", f"{result.tflm_resolver}: {', '.join(result.tflm_calls)}")
    ops = ", ".join(f"{o.name} v{o.version}×{o.count}" for o in result.ops)
    table.add_row("operators", ops)
    m = result.min_runtime
    unknown = f"; not in our table: {', '.join(m.unknown_ops)}" if m.unknown_ops else ""
    table.add_row(
        "min runtime", f"{m.version} (converter metadata: {m.converter_metadata}){unknown}"
    )
    table.add_row("per image", f"{result.macs:,} MACs, {result.params:,} parameters")
    if result.accuracy:
        keras = f"{result.keras_accuracy:.4f}" if result.keras_accuracy is not None else "unknown"
        table.add_row("accuracy keras", keras)
    else:
        inputs = result.golden.get("inputs_from", "the inputs")
        table.add_row("accuracy", f"none: the golden inputs ({inputs}) have no labels")
    for r in result.accuracy:
        table.add_row(f"accuracy {r.runtime}", f"{r.accuracy:.4f} on {r.images:,} ({r.source})")
    for g in result.agreement:
        table.add_row(
            f"{g.a} vs {g.b}",
            f"bit-identical {g.bit_identical:,}/{g.images:,}, same class {g.same_class:,}, "
            f"max |Δ| {g.max_abs_diff:g}",
        )
    for p in result.proven_runtimes:
        golden = (
            f"golden {p.golden_identical}/{p.golden_count} identical "
            f"(max |Δ| {p.golden_max_abs_diff:g})"
            if p.golden_identical is not None
            else f"did not load: {p.note}"
        )
        table.add_row(f"proven {p.runtime}", f"{p.package}: {golden}")
    for e in result.exports:
        table.add_row(f"export {e.file}", f"min runtime {e.min_runtime}; {e.tflite_runtime}")
    for t in result.on_target:
        table.add_row(
            f"on {t.cpu} {t.engine} {t.kernels}",
            f"arena {t.arena_bytes:,} B ({t.arena_measured_on}), "
            f"flash {t.flash_bytes:,} B with code, RAM {t.ram_bytes:,} B, "
            f"{t.instructions_per_inference or 0:,} instructions per inference, "
            f"golden {t.golden} ({t.source})",
        )
    for proof in result.proven:
        for line in proof.findings():
            table.add_row(f"proof {proof.target}", line)
    for why in result.not_proven:
        table.add_row("not proven", why)
    c = result.c_engine
    if c is not None:
        check = c.host_check
        table.add_row(
            "C engine",
            f"{c.folder}/: {c.arena_bytes:,} B arena ({c.plan_level} plan; one call per layer "
            f"needs {c.lower_bound_bytes:,} B), no interpreter; {check.bit_identical:,}/"
            f"{check.images:,} outputs bit-identical to TFLM's on this host; {c.build}",
        )
    for why in result.not_bundled:
        table.add_row("not bundled", why)
    for n in result.npu:
        cpu = ", ".join(n.cpu_operators) or "none"
        table.add_row(
            f"NPU {n.accelerator}",
            f"{n.basis}: {n.cycles_total:,} cycles ({n.inference_us:,.1f} µs at "
            f"{n.clock_hz / 1e6:,.0f} MHz), SRAM {n.sram_bytes:,} B, {n.npu_operators}/"
            f"{n.model_operators} operators on the NPU (CPU: {cpu}); npu/{n.accelerator}/ "
            "(not verified on a device)",
        )
    files = [f.name for f in result.files if "/" not in f.name]
    folders = sorted({f.name.split("/")[0] + "/" for f in result.files if "/" in f.name})
    table.add_row("files", ", ".join([*files, *folders, "manifest.json"]))
    if c is None:
        return table
    return Group(table, plan_table(c.plan, c.arena_bytes, c.plan_level))


def plan_table(plan, arena_bytes: int, level: str) -> Table:
    """The C engine's static memory plan: every buffer's offset, size and life (steps)."""
    table = Table(
        title=f"The C engine's memory plan ({level}): one static arena of {arena_bytes:,} B"
    )
    for column in ("buffer", "offset", "bytes", "steps", "holds"):
        table.add_column(column, justify="right" if column in ("offset", "bytes") else "left")
    for row in plan:
        table.add_row(
            row.buffer,
            "caller" if row.offset is None else f"{row.offset:,}",
            f"{row.bytes:,}",
            f"{row.first_step}..{row.last_step}",
            row.holds,
        )
    return table


def report_table(page: ReportPage) -> Table:
    """What the report page holds."""
    table = Table(title=f"Wrote {page.path} ({format_bytes(page.bytes)}, {page.images} charts)")
    table.add_column("section")
    for name in page.sections:
        table.add_row(name)
    for name in page.missing:
        table.add_row(f"[dim]missing: {name}[/dim]")
    return table


class StepProgress:
    """A progress bar with ETA on stderr, one task per stage (an epoch, a build), or nothing
    when stderr is not a terminal or the output is JSON. Use as a context manager; call it with
    (label, done, total)."""

    def __init__(self, enabled: bool = True):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> StepProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def __call__(self, label: str, done: int, total: int) -> None:
        if label not in self._tasks:
            for task in self._tasks.values():  # the earlier stage is over
                self._progress.remove_task(task)
            self._tasks = {label: self._progress.add_task(label, total=total)}
        self._progress.update(self._tasks[label], completed=done, total=total)


def firmware_inputs(report) -> tuple[str, str]:
    """What a firmware run ran on, and what one of its inputs is called: MNIST's "20 test
    images" and "test image", else the inputs' own description ("random:20 (seed 0)") and
    "input" (records written before --inputs are MNIST's)."""
    if not report.inputs or report.inputs.startswith("MNIST"):
        return f"{report.images} test images", "test image"
    return report.inputs, "input"


def firmware_table(report) -> Group:
    """Per CPU × engine × kernels: the check against host TFLM, instructions, flash and RAM, in
    100 columns; the rest of each configuration's figures in lines under the table."""
    if report.skipped:
        return Group(f"Firmware for {report.model}: skipped: {report.skipped}")
    table = Table(title=f"Firmware for {report.model}: {firmware_inputs(report)[0]}")
    columns = ["cpu", "engine", "kernels", "golden", "instructions", "per MAC", "flash B", "RAM B"]
    for column in columns:
        left = column in ("cpu", "engine", "kernels")
        table.add_column(column, justify="left" if left else "right")

    def maybe(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    for r in report.results:
        golden = f"{r.golden_identical}/{r.golden_count}" if r.ran else "not run"
        style = "" if r.passed or not r.ran else "[red]"
        table.add_row(
            r.cpu,
            r.engine,
            r.kernels,
            f"{style}{golden}",
            maybe(r.instructions_per_inference, ","),
            maybe(r.instructions_per_mac, ".2f"),
            f"{r.flash_bytes:,}",
            f"{r.ram_bytes:,}",
        )
    lines = [
        f"in {report.out}; {report.toolchain}; {report.qemu or 'not run'}",
        *firmware_splits(report),
        *(f"not built: {n}" for n in report.not_built),
    ]
    wrapped = [textwrap.fill(line, width=100, subsequent_indent="  ") for line in lines]
    return Group(table, *wrapped)


def firmware_splits(report) -> list[str]:
    """Each configuration's flash and RAM by role (engine or harness), and the instructions
    per layer of the profiled inference."""
    lines = []
    one_input = firmware_inputs(report)[1]
    for r in report.results:
        f, m = r.flash, r.ram
        build = (r.tflm.library_seconds if r.tflm else 0) + r.build_seconds
        accuracy = "–" if r.accuracy is None else f"{r.accuracy:.4f}"
        lines.append(
            f"{r.label}: accuracy {accuracy}; ISA limit {r.isa_limit_instructions:,} "
            f"instructions; arena {r.arena_bytes:,} B ({r.arena_measured_on}), stack "
            f"{r.stack_bytes:,} B; built in {build:,.0f} s"
        )
        lines.append(
            f"{r.label}: flash engine code {f.engine_code:,} + constants "
            f"{f.engine_constants:,} + harness {f.harness:,}; RAM engine {m.engine_buffers:,} "
            f"+ stack {m.stack:,} + harness statics {m.harness_statics:,}"
        )
        if r.layers:
            parts = ", ".join(f"{layer.name} {layer.instructions:,}" for layer in r.layers)
            total = sum(layer.instructions for layer in r.layers)
            median = r.instructions_per_inference
            lines.append(
                f"{r.label} instructions per layer ({one_input} {r.layers_image}, profiled): "
                f"{parts}; together {total:,}"
                + (f" of {median:,} per inference" if median is not None else "")
            )
    return lines
