"""The artifacts folder: every file name in one place, finding the exports, and the typed
records (train, export, verify, bench, the bundle's manifest, firmware) saved and read back."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from mnist_edge import records
from mnist_edge.errors import MnistEdgeError

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
TRAIN_JSON = "train.json"
EXPORT_JSON = "export.json"
REFERENCE_FILE = "reference.npz"
VERIFY_JSON = "verify.json"
BENCH_JSON = "bench.json"
BENCH_CSV = "bench.csv"
BENCH_PNG = "bench.png"
REPORT_HTML = "report.html"
BUNDLE_DIR = "bundle"
MANIFEST = "manifest.json"
GOLDEN_FILE = "golden.npz"
FIRMWARE_DIR = "firmware"
FIRMWARE_JSON = "firmware.json"

# Export format -> file name (export.FORMATS says what each holds).
EXPORT_FILES = {
    "tflite-float32": "model_float32.tflite",
    "tflite-float16": "model_float16.tflite",
    "tflite-dynamic": "model_dynamic.tflite",
    "tflite-int8": "model_int8.tflite",
    "tflite-int8-mcu": "model_int8_mcu.tflite",
    "onnx-float32": "model.onnx",
    "onnx-int8": "model_int8.onnx",
}
INT8_TFLITE = EXPORT_FILES["tflite-int8"]
MCU_TFLITE = EXPORT_FILES["tflite-int8-mcu"]
EXPORT_SUFFIXES = (".tflite", ".onnx")

# Record kind -> (file in the artifacts folder, its dataclass). The bundle's manifest and the
# firmware record live in their stage's folder, and know that folder as `out`.
RECORDS: dict[str, tuple[str, type]] = {
    "train": (TRAIN_JSON, records.TrainResult),
    "export": (EXPORT_JSON, records.ExportResult),
    "verify": (VERIFY_JSON, records.VerifyReport),
    "bench": (BENCH_JSON, records.BenchReport),
    "bundle": (f"{BUNDLE_DIR}/{MANIFEST}", records.BundleResult),
    "firmware": (f"{FIRMWARE_DIR}/{FIRMWARE_JSON}", records.FirmwareReport),
}


def find_exports(artifacts: Path) -> list[Path]:
    """The export files in an artifacts folder, sorted by name."""
    return sorted(p for p in Path(artifacts).iterdir() if p.suffix in EXPORT_SUFFIXES)


def resolve_exports(
    artifacts: Path, models: list[Path] | None, also: tuple[Path, ...] | list[Path] = ()
) -> list[Path]:
    """The files to run: `models` if given, else every export in the folder; then `also`."""
    if not Path(artifacts).is_dir():
        raise MnistEdgeError(f"{artifacts}: no such artifacts folder.")
    exports = list(models) if models else find_exports(artifacts)
    exports += [path for path in also if path not in exports]
    if not exports:
        raise MnistEdgeError(f"{artifacts}: no .tflite or .onnx exports; run `mnist-edge export`.")
    return exports


def record_payload(record: Any) -> dict:
    """A record as the JSON object written to disk: its format first where it has one, and
    without the output folder it was written to (the folder it is read from says that)."""
    payload = asdict(record)
    payload.pop("out", None)
    form = getattr(record, "FORMAT", None)
    return {"format": form, **payload} if form else payload


def load_record(folder: Path, kind: str, path: Path | None = None) -> Any:
    """The `kind` record of an artifacts folder as its dataclass, or None when absent.

    A record written by an older version is read with defaults for the fields it lacks; one
    that is not JSON, or lacks a field this version needs, is refused in one line.
    """
    name, cls = RECORDS[kind]
    path = Path(path) if path is not None else Path(folder) / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MnistEdgeError(f"{path}: not a readable JSON record ({exc}).") from None
    if isinstance(data, dict) and "out" in {f.name for f in fields(cls)}:
        data = {**data, "out": str(path.parent)}
    try:
        return records.from_dict(cls, data)
    except (records.RecordError, TypeError) as exc:
        raise MnistEdgeError(
            f"{path}: {exc} (written by another mnist-edge version?); run `mnist-edge "
            f"{kind}` again."
        ) from None


def on_target(artifacts: Path, model_sha256: str) -> list[records.OnTarget]:
    """What a firmware run of the model with these bytes measured on each CPU × kernels (the
    figures bundle's manifest and bench --target mcu show); [] when there is no run of these
    bytes, or its record cannot be read: it is context, not a reason to fail the caller."""
    try:
        record = load_record(artifacts, "firmware")
    except MnistEdgeError as exc:
        log.info("Not using the firmware record: %s", exc)
        return []
    if record is None or record.model_sha256 != model_sha256:
        return []
    return [records.OnTarget.of(result, RECORDS["firmware"][0]) for result in record.results]


def unchanged(folder: Path, name: str, sha256: str) -> bool:
    """Whether a file a record describes is still there with the bytes it described."""
    from mnist_edge.files import sha256_file

    path = Path(folder) / name
    return path.is_file() and sha256_file(path) == sha256


def device_model(artifacts: Path) -> Path:
    """The model a device gets from this folder: the bundle's (its manifest names it), else the
    MCU-lean int8 export, else the int8 one (which may not exist: the caller says so)."""
    folder = Path(artifacts)
    try:
        manifest = load_record(folder, "bundle")
    except MnistEdgeError:
        manifest = None  # an unreadable bundle: fall back to the exports, as with none
    if manifest is not None and (folder / BUNDLE_DIR / manifest.model).is_file():
        return folder / BUNDLE_DIR / manifest.model
    return int8_model(folder)


def int8_model(artifacts: Path) -> Path:
    """The int8 export for a device: the MCU-lean one (batch 1, five operators) where export
    wrote it, else model_int8.tflite (which may not exist: the caller says so)."""
    lean = Path(artifacts) / MCU_TFLITE
    return lean if lean.is_file() else Path(artifacts) / INT8_TFLITE
