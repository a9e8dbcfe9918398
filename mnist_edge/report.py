"""Results to people and to machines: rich tables for the terminal, JSON for everything else."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table

from mnist_edge.bench import BenchReport
from mnist_edge.bundle import BundleResult
from mnist_edge.data import DataSummary
from mnist_edge.errors import MnistEdgeError
from mnist_edge.export import ExportResult
from mnist_edge.model import EpochStats, TrainResult
from mnist_edge.verify import VerifyReport

if TYPE_CHECKING:  # importing mnist_edge.predict loads Pillow, which no other table needs
    from mnist_edge.predict import PredictResult


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


def bench_table(report: BenchReport) -> Group:
    """Latency, throughput, MAC rate against the roofline, speed-up over Keras; the machine."""
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
            f"{r.throughput_ips:,.0f}",
            maybe(r.gmacs, ".1f"),
            maybe(r.roofline_fraction, ".1%"),
            maybe(r.speedup_vs_keras, ",.1f"),
            f"{r.init_ms:,.1f}",
        ]
        if footprint:
            cells += [maybe(r.arena_bytes, ","), maybe(r.flash_bytes, ",")]
        table.add_row(*cells)
    notes = [
        f"Roofline, {roof.threads} thread(s): float32 {maybe(roof.float32_gmacs, '.1f')}, "
        f"int8 {maybe(roof.int8_gmacs, '.1f')} GMAC/s ({roof.note})"
        for roof in report.rooflines
    ]
    costs = {(r.macs, r.params) for r in report.results if r.macs}
    notes += [
        f"Model cost: {macs:,} MACs and {params:,} parameters per image" for macs, params in costs
    ]
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


def bundle_table(result: BundleResult) -> Table:
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
    keras = f"{result.keras_accuracy:.4f}" if result.keras_accuracy is not None else "unknown"
    table.add_row("accuracy keras", keras)
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
    table.add_row("files", ", ".join(f.name for f in result.files) + ", manifest.json")
    return table


# --- The HTML report: one self-contained page gathering every record of an artifacts folder ---

REPORT_HTML = "report.html"
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


def _read_record(folder, name: str):
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MnistEdgeError(f"{path}: not a readable JSON record ({exc}).") from None


def _training_section(train: dict) -> tuple[str, str, int]:
    from mnist_edge import charts

    summary = (
        f"<p>{train['params']:,} parameters, {train['epochs']} epochs at batch "
        f"{train['batch_size']}, seed {train['seed']}, {train['train_images']:,} images, "
        f"{train['seconds']:.1f} s. Test accuracy <b>{train['test_accuracy']:.4f}</b>, "
        f"loss {train['test_loss']:.4f}.</p>"
    )
    return "Training", summary + _img(charts.training_curves(train["history"]), "curves"), 1


def _exports_section(export: dict) -> tuple[str, str, int]:
    from html import escape

    rows = [
        [f["name"], f["format"], f"{f['bytes']:,}", format_bytes(f["bytes"]), f["sha256"][:16]]
        for f in export["files"]
    ]
    calibration = export.get("calibration")
    note = (
        f"<p class='note'>int8 calibration: {escape(calibration['source'])}; ONNX method "
        f"{escape(calibration['onnx_method'])}, per channel.</p>"
        if calibration
        else ""
    )
    return "Exports", _html_table(["file", "format", "bytes", "size", "sha256"], rows) + note, 0


def _verify_section(verify: dict) -> tuple[str, str, int]:
    from mnist_edge import charts

    ref, results = verify["reference"], verify["results"]
    rows = [
        [
            r["artifact"],
            r["runtime"],
            f"{r['accuracy']:.4f}",
            f"{r['delta_pp']:+.2f}",
            f"{r['agreement']:.4f}",
            f"{r['max_abs_diff']:.2e}",
            f"{r['cosine_similarity']:.6f}",
            "yes" if r["passed"] else "NO",
        ]
        for r in results
    ]
    header = ["artifact", "runtime", "accuracy", "Δ pp", "agreement", "max |Δp|", "cosine", "ok"]
    html = (
        f"<p>{verify['images']:,} test images; Keras accuracy <b>{ref['accuracy']:.4f}</b>; "
        f"tolerance {verify['tolerance_pp']} pp.</p>" + _html_table(header, rows)
    )
    # Keras against the model a device runs: the int8 TFLite, else any int8 export.
    int8 = next(
        (r for r in results if r["artifact"] == "model_int8.tflite"),
        next((r for r in results if "int8" in r["artifact"]), None),
    )
    matrices = {"Keras (model.keras)": ref["confusion"]}
    if int8:
        matrices[f"{int8['artifact']} ({int8['runtime']})"] = int8["confusion"]
    per_class = {"Keras": ref["per_class_accuracy"]}
    per_class.update(
        {f"{r['artifact']} ({r['runtime']})": r["per_class_accuracy"] for r in results}
    )
    html += _img(charts.confusion_matrices(matrices), "confusion matrices")
    if int8 and int8.get("disagreements"):
        shown = int8["disagreements"][:DISAGREEMENTS_SHOWN]
        html += (
            f"<p>Test images on which {int8['artifact']} ({int8['runtime']}) and Keras disagree: "
            f"{len(int8['disagreements'])} (all in verify.json).</p>"
            + _html_table(
                ["test image", "label", "Keras", int8["artifact"]],
                [[d["index"], d["label"], d["keras"], d["export"]] for d in shown],
            )
        )
    html += _img(charts.per_class_accuracy(per_class), "per-class accuracy")
    return "Verification against Keras", html, 2


def _bench_section(bench: dict) -> tuple[str, str, int]:
    from html import escape

    from mnist_edge import charts

    machine = bench["machine"]
    rows = [
        [
            r["artifact"],
            r["runtime"],
            r["threads"],
            r["batch_size"],
            f"{r['p50_us']:,.1f}",
            f"{r['p99_us']:,.1f}",
            f"{r['invoke_p50_us']:,.1f}",
            f"{r['throughput_ips']:,.0f}",
        ]
        for r in bench["results"]
    ]
    header = ["artifact", "runtime", "threads", "batch", "p50 µs", "p99 µs", "invoke p50 µs"]
    html = (
        f"<p>{escape(machine['cpu'])} ({machine['arch']}, {machine['cores']} cores; "
        f"{escape(', '.join(machine['features']))}).</p>"
        + _img(charts.bench_chart(bench["results"]), "benchmark chart")
        + _html_table([*header, "images/s"], rows)
    )
    return "Benchmark", html, 1


SECTIONS = {
    "train": _training_section,
    "export": _exports_section,
    "verify": _verify_section,
    "bench": _bench_section,
}


def build_report(artifacts) -> ReportPage:
    """Gather train/export/verify/bench records and their charts into artifacts/report.html."""
    from html import escape
    from pathlib import Path

    from mnist_edge.files import write_bytes_atomic

    folder = Path(artifacts)
    if not folder.is_dir():
        raise MnistEdgeError(f"{folder}: no such artifacts folder.")
    records = {name: _read_record(folder, f"{name}.json") for name in SECTIONS}
    missing = [f"{name}.json" for name, record in records.items() if record is None]
    if len(missing) == len(records):
        raise MnistEdgeError(
            f"{folder}: no train/export/verify/bench records; run the pipeline first."
        )
    parts, sections, images = [], [], 0
    for name, record in records.items():
        if record is None:
            continue
        try:
            title, html, charts_made = SECTIONS[name](record)
        except (KeyError, TypeError, IndexError) as exc:
            raise MnistEdgeError(
                f"{folder / f'{name}.json'}: lacks {exc} (written by another mnist-edge "
                f"version?); run `mnist-edge {name}` again."
            ) from None
        sections.append(title)
        parts.append(f"<h2>{escape(title)}</h2>{html}")
        images += charts_made
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


def report_table(page: ReportPage) -> Table:
    """What the report page holds."""
    table = Table(title=f"Wrote {page.path} ({format_bytes(page.bytes)}, {page.images} charts)")
    table.add_column("section")
    for name in page.sections:
        table.add_row(name)
    for name in page.missing:
        table.add_row(f"[dim]missing: {name}[/dim]")
    return table
