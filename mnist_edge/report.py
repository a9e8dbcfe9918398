"""The HTML report: one self-contained page gathering every record of an artifacts folder.

Built from the typed records (`artifacts.load_record`), with the charts embedded as PNG.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_edge.artifacts import (
    INT8_TFLITE,
    MODEL_FILE,
    RECORDS,
    REPORT_HTML,
    load_record,
    unchanged,
)
from mnist_edge.errors import MnistEdgeError
from mnist_edge.records import (
    BenchReport,
    BundleResult,
    ExportResult,
    TrainResult,
    VerifyReport,
)
from mnist_edge.render import (
    OVERHEAD_NOTE,
    VERIFY_COLUMNS,
    firmware_inputs,
    firmware_splits,
    format_bytes,
    verify_cells,
)

log = logging.getLogger(__name__)

DISAGREEMENTS_SHOWN = 20
PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5rem 0; }
.note { color: #666; font-size: 0.85rem; } .fail { color: #b00; font-weight: bold; }
"""


@dataclass(frozen=True)
class ReportPage:
    """What `mnist-edge report` wrote."""

    path: str
    bytes: int
    images: int
    sections: list[str]
    missing: list[str]


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, alt: str) -> str:
    import base64

    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _training_section(train: TrainResult, context: Context) -> tuple[str, str, int]:
    from mnist_edge import charts

    summary = (
        f"<p>{train.params:,} parameters, {train.epochs} epochs at batch "
        f"{train.batch_size}, seed {train.seed}, {train.train_images:,} images, "
        f"{train.seconds:.1f} s. Test accuracy <b>{train.test_accuracy:.4f}</b>, "
        f"loss {train.test_loss:.4f}.</p>"
    )
    return "Training", summary + _img(charts.training_curves(train.history), "curves"), 1


def _exports_section(export: ExportResult, context: Context) -> tuple[str, str, int]:
    from html import escape

    # An entry counts only for the bytes it describes: a file changed since is said to be.
    rows = [
        [
            f.name,
            f.format,
            f"{f.bytes:,}",
            format_bytes(f.bytes),
            f.sha256[:16],
            "as recorded" if unchanged(context.folder, f.name, f.sha256) else "CHANGED or missing",
        ]
        for f in export.files
    ]
    calibration = export.calibration
    note = (
        f"<p class='note'>int8 calibration: {escape(calibration.source)}; ONNX method "
        f"{escape(calibration.onnx_method)}, per channel.</p>"
        if calibration
        else ""
    )
    header = ["file", "format", "bytes", "size", "sha256", "file now"]
    return "Exports", _html_table(header, rows) + note, 0


def _verify_section(verify: VerifyReport, context: Context) -> tuple[str, str, int]:
    from mnist_edge import charts

    ref, results = verify.reference, verify.results
    rows = [verify_cells(r) for r in results]
    html = (
        f"<p>{verify.images:,} test images; Keras accuracy <b>{ref.accuracy:.4f}</b>; "
        f"tolerance {verify.tolerance_pp} pp.</p>" + _html_table(list(VERIFY_COLUMNS), rows)
    )
    # Keras against the model a device runs: the int8 TFLite, else any int8 export.
    int8 = next(
        (r for r in results if r.artifact == INT8_TFLITE),
        next((r for r in results if "int8" in r.artifact), None),
    )
    matrices = {f"Keras ({MODEL_FILE})": ref.confusion}
    if int8:
        matrices[f"{int8.artifact} ({int8.runtime})"] = int8.confusion
    per_class = {"Keras": ref.per_class_accuracy}
    per_class.update({f"{r.artifact} ({r.runtime})": r.per_class_accuracy for r in results})
    html += _img(charts.confusion_matrices(matrices), "confusion matrices")
    pictures = 0
    if int8 and int8.disagreements:
        shown = int8.disagreements[:DISAGREEMENTS_SHOWN]
        html += (
            f"<p>Test images on which {int8.artifact} ({int8.runtime}) and Keras disagree: "
            f"{len(int8.disagreements)} (all in verify.json); each with its label, then "
            f"Keras' class and {int8.artifact}'s.</p>"
        )
        images = context.test_images()
        if images is not None:
            captions = [f"#{d.index}: {d.label}\nKeras {d.keras}, int8 {d.export}" for d in shown]
            html += _img(charts.digits(images[[d.index for d in shown]], captions), "disagreements")
            pictures = 1
        html += _html_table(
            ["test image", "label", "Keras", int8.artifact],
            [[d.index, d.label, d.keras, d.export] for d in shown],
        )
    html += _img(charts.per_class_accuracy(per_class), "per-class accuracy")
    return "Verification against Keras", html, 2 + pictures


def _bench_section(bench: BenchReport, context: Context) -> tuple[str, str, int]:
    from html import escape

    from mnist_edge import charts

    machine = bench.machine
    rows = [
        [
            r.artifact,
            r.runtime,
            r.threads,
            r.batch_size,
            f"{r.p50_us:,.1f}",
            f"{r.p99_us:,.1f}",
            f"{r.invoke_p50_us:,.1f}",
            "–" if r.overhead_us is None else f"{r.overhead_us:,.1f}",
            f"{r.throughput_ips:,.0f}",
        ]
        for r in bench.results
    ]
    header = ["artifact", "runtime", "threads", "batch", "p50 µs", "p99 µs", "invoke p50 µs"]
    html, pictures = "", 0
    if bench.results:
        html = (
            f"<p>{escape(machine.cpu)} ({machine.arch}, {machine.cores} cores; "
            f"{escape(', '.join(machine.features))}).</p>"
            + _img(charts.bench_chart(bench.results), "benchmark chart")
            + _html_table([*header, "+call µs", "images/s"], rows)
            + f"<p>{escape(OVERHEAD_NOTE)}.</p>"
        )
        pictures = 1
    if bench.npu:  # bench --target ethos-u*: vela's estimates, never timings
        from mnist_edge.render import NPU_COLUMNS, npu_notes, npu_rows

        html += (
            f"<p><b>{escape(str(bench.target))}: estimates by Arm's vela compiler, not "
            "measurements</b> (no NPU or emulator of one ran).</p>"
            + _html_table(list(NPU_COLUMNS), npu_rows(bench))
            + "".join(f"<p>{escape(note)}</p>" for note in npu_notes(bench))
        )
    return "Benchmark", html, pictures


def _device_section(bundle: BundleResult, context: Context) -> tuple[str, str, int]:
    """The bundle a device gets: footprint, operators, golden vectors, who reproduces them."""
    from html import escape

    a = bundle.arena
    facts = [
        ["model", f"{bundle.model} ({bundle.kind})"],
        ["flash (model bytes)", f"{bundle.flash_bytes:,} B"],
        [
            "TFLM tensor arena",
            f"{bundle.arena_bytes:,} B measured ({a.measured_with}); "
            f"estimate {a.estimate_bytes:,} B ({a.error_pct:+.1f}%)",
        ],
        ["resolver", f"{bundle.tflm_resolver}: {', '.join(bundle.tflm_calls)}"],
        ["operators", ", ".join(f"{o.name} v{o.version}×{o.count}" for o in bundle.ops)],
        ["oldest runtime", str(bundle.min_runtime.version)],
        ["per image", f"{bundle.macs:,} MACs, {bundle.params:,} parameters"],
        [
            "golden vectors",
            f"{bundle.golden.get('count')} from {bundle.golden.get('outputs_from')}",
        ],
    ]
    facts += [
        [f"accuracy on {r.runtime}", f"{r.accuracy:.4f} on {r.images:,} ({r.source})"]
        for r in bundle.accuracy
    ]
    facts += [
        [
            f"{g.a} vs {g.b}",
            f"bit-identical {g.bit_identical:,}/{g.images:,}, same class {g.same_class:,}, "
            f"max |Δ| {g.max_abs_diff:g}",
        ]
        for g in bundle.agreement
    ]
    proofs = [
        [
            p.runtime,
            p.package,
            "yes" if p.loaded else "no",
            f"{p.golden_identical}/{p.golden_count}" if p.golden_identical is not None else "–",
            "–" if p.golden_max_abs_diff is None else f"{p.golden_max_abs_diff:g}",
            p.note,
        ]
        for p in bundle.proven_runtimes
    ]
    html = (
        f"<p>The bundle in {escape(bundle.out)} (<code>manifest.json</code>).</p>"
        + _html_table(["item", "value"], facts)
        + "<p>Runtimes that loaded the bundled model here, and the golden vectors each "
        "reproduced bit for bit:</p>"
        + _html_table(["runtime", "package", "loaded", "golden", "max |Δ|", "note"], proofs)
    )
    for t in bundle.on_target:
        html += (
            f"<p>On {escape(t.cpu)}, {escape(t.engine)} with {escape(t.kernels)} "
            f"({escape(t.source)}): "
            f"arena {t.arena_bytes:,} B, flash {t.flash_bytes:,} B with code, RAM "
            f"{t.ram_bytes:,} B, {t.instructions_per_inference or 0:,} instructions per "
            f"inference, golden {escape(t.golden)}.</p>"
        )
    for proof in bundle.proven:
        findings = "".join(f"<li>{escape(line)}</li>" for line in proof.findings())
        html += f"<p>Proven on {escape(proof.platform)}:</p><ul>{findings}</ul>"
    return "Device", html, 0


def _firmware_section(folder: Path) -> str:
    """The firmware run's table (firmware/firmware.json), or nothing where there is none."""
    from html import escape

    record = load_record(folder, "firmware")
    if record is None:
        return ""
    if record.skipped:
        return f"<p>Not run for {escape(record.model)}: {escape(record.skipped)}</p>"
    rows = [
        [
            r.cpu,
            r.engine,
            r.kernels,
            f"{r.golden_identical}/{r.golden_count}" if r.ran else "not run",
            "–" if r.accuracy is None else f"{r.accuracy:.4f}",
            f"{r.instructions_per_inference or 0:,}",
            f"{r.isa_limit_instructions:,}",
            f"{r.flash_bytes:,}",
            f"{r.ram_bytes:,}",
            f"{r.arena_bytes:,}",
            f"{r.stack_bytes:,}",
        ]
        for r in record.results
    ]
    header = ["CPU", "engine", "kernels", "golden", "accuracy", "instructions", "ISA limit"]
    header += ["flash B", "RAM B", "arena B", "stack B"]
    splits = "".join(f"<li>{escape(line)}</li>" for line in firmware_splits(record))
    not_built = "".join(f"<li>not built: {escape(why)}</li>" for why in record.not_built)
    return (
        f"<p>{escape(record.model)} built for each CPU × engine (tflm: the interpreter; "
        "codegen: the model compiled to C with a static memory plan), run in QEMU "
        f"({escape(record.qemu or '')}) on {escape(firmware_inputs(record)[0])}; outputs compared "
        "bit for "
        "bit with host TFLM. Flash of the C engine's firmware holds no images (it reads them "
        "from the host); TFLM's holds them.</p>"
        + _html_table(header, rows)
        + f"<ul>{splits}{not_built}</ul>"
        + _layer_chart(record)
    )


def _layer_chart(record) -> str:
    """Where each configuration's instructions go, layer by layer (where they were profiled)."""
    from mnist_edge import charts

    rows = {
        r.label: [(layer.name, layer.instructions) for layer in r.layers]
        for r in record.results
        if r.layers
    }
    if not rows:
        return ""
    return "<p>Instructions per layer, one profiled inference each:</p>" + _img(
        charts.layer_chart(rows), "instructions per layer"
    )


def _search_section(folder: Path) -> str:
    """The last search from this folder (search.json): its front and a scatter chart."""
    from html import escape

    from mnist_edge import charts
    from mnist_edge.search import load_result

    result = load_result(folder)
    if result is None:
        return ""
    b = result.settings.budgets
    points = [(t.flash_bytes or t.tflite_bytes, t.accuracy, t.feasible) for t in result.trials]
    front = [(t.flash_bytes, t.accuracy) for t in result.front]
    rows = [
        [t.number, f"{t.accuracy:.4f}", f"{t.test_accuracy:.4f}", f"{t.flash_bytes:,}",
         f"{t.ram_bytes:,}", f"{t.instructions or 0:,}", f"{t.params:,}", t.architecture]
        for t in result.front
    ]  # fmt: skip
    header = ["trial", "accuracy", "test", "flash B", "RAM B", "instructions", "params", "arch"]
    return (
        f"<p>Study {escape(result.study)} on {escape(result.settings.board)}: "
        f"{result.complete} complete trials, {result.feasible} feasible.</p>"
        + _html_table(header, rows)
        + _img(charts.search_chart(points, front, b.max_flash, b.min_accuracy), "search")
    )


SECTIONS = {
    "train": _training_section,
    "export": _exports_section,
    "verify": _verify_section,
    "bench": _bench_section,
    "bundle": _device_section,
}


class Context:
    """What a section may need besides its record: the folder, and MNIST's test digits (loaded
    once, only if a section draws them; None where MNIST cannot be had)."""

    def __init__(self, folder: Path, data: Path | None):
        self.folder, self._data, self._images = folder, data, False

    def test_images(self):
        if self._images is False:
            from mnist_edge.data import load_test_split

            try:
                self._images = load_test_split(self._data).x_test
            except MnistEdgeError as exc:
                log.warning("No digit pictures in the report: %s", exc)
                self._images = None
        return self._images


def build_report(artifacts, data: Path | None = None) -> ReportPage:
    """Gather the records of an artifacts folder and their charts into artifacts/report.html.

    `data`: where MNIST is (as for every command), for the pictures of the disagreeing digits.
    """
    from html import escape

    from mnist_edge.files import write_bytes_atomic

    folder = Path(artifacts)
    if not folder.is_dir():
        raise MnistEdgeError(f"{folder}: no such artifacts folder.")
    context = Context(folder, data)
    records = {name: load_record(folder, name) for name in SECTIONS}
    missing = [RECORDS[name][0] for name, record in records.items() if record is None]
    if len(missing) == len(records):
        raise MnistEdgeError(
            f"{folder}: no train/export/verify/bench records; run the pipeline first."
        )
    parts, sections, images = [], [], 0
    for name, record in records.items():
        if record is None:
            continue
        title, html, charts_made = SECTIONS[name](record, context)
        sections.append(title)
        parts.append(f"<h2>{escape(title)}</h2>{html}")
        images += charts_made
    firmware = _firmware_section(folder)
    if firmware:
        sections.append("Firmware")
        parts.append(f"<h2>Firmware</h2>{firmware}")
    searched = _search_section(folder)
    if searched:
        sections.append("Search")
        parts.append(f"<h2>Search</h2>{searched}")
    if missing:
        parts.append(f"<p class='note'>Not in this folder: {escape(', '.join(missing))}.</p>")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>mnist-edge report</title><style>{PAGE_STYLE}</style></head><body>"
        f"<h1>mnist-edge report: {escape(str(folder))}</h1>" + "".join(parts) + "</body></html>"
    ).encode()
    target = folder / REPORT_HTML
    write_bytes_atomic(target, page)
    return ReportPage(str(target), len(page), images, sections, missing)
