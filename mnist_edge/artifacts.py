"""The artifacts folder: every file name in one place, finding the exports, and the typed
records (train, export, verify, bench, the bundle's manifest) saved and loaded."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mnist_edge.errors import MnistEdgeError

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
MANIFEST_FORMAT = "mnist-edge-bundle/1"
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

# Record kind -> (file, its dataclass in mnist_edge.records); the bundle's manifest lives in
# the bundle folder. Class names, not classes: the CLI imports this module to start fast.
RECORDS: dict[str, tuple[str, str]] = {
    "train": (TRAIN_JSON, "TrainResult"),
    "export": (EXPORT_JSON, "ExportResult"),
    "verify": (VERIFY_JSON, "VerifyReport"),
    "bench": (BENCH_JSON, "BenchReport"),
    "bundle": (f"{BUNDLE_DIR}/{MANIFEST}", "BundleResult"),
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
    """A record as the JSON object written to disk."""
    payload = asdict(record)
    if type(record).__name__ == RECORDS["bundle"][1]:
        payload = {"format": MANIFEST_FORMAT, **payload}
        del payload["out"]
    return payload


def load_record(folder: Path, kind: str, path: Path | None = None) -> Any:
    """The `kind` record of an artifacts folder as its dataclass, or None when absent.

    A record written by an older version is read with defaults for the fields it lacks; one
    that is not JSON, or lacks a field this version needs, is refused in one line.
    """
    from mnist_edge import records

    name, class_name = RECORDS[kind]
    path = Path(path) if path is not None else Path(folder) / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MnistEdgeError(f"{path}: not a readable JSON record ({exc}).") from None
    if kind == "bundle":
        data = {"out": str(path.parent), **data}
    try:
        return records.from_dict(getattr(records, class_name), data)
    except (records.RecordError, TypeError) as exc:
        raise MnistEdgeError(
            f"{path}: {exc} (written by another mnist-edge version?); run `mnist-edge "
            f"{kind}` again."
        ) from None


def unchanged(folder: Path, name: str, sha256: str) -> bool:
    """Whether a file a record describes is still there with the bytes it described."""
    from mnist_edge.files import sha256_file

    path = Path(folder) / name
    return path.is_file() and sha256_file(path) == sha256


def device_model(artifacts: Path) -> Path:
    """The model a device gets from this folder: the bundle's (its manifest names it), else the
    MCU-lean int8 export, else the int8 one (which may not exist: the caller says so)."""
    folder = Path(artifacts)
    manifest = folder / BUNDLE_DIR / MANIFEST
    if manifest.is_file():
        try:
            name = json.loads(manifest.read_text()).get("model")
        except (OSError, ValueError, AttributeError):
            name = None
        if isinstance(name, str) and (folder / BUNDLE_DIR / name).is_file():
            return folder / BUNDLE_DIR / name
    return int8_model(folder)


def int8_model(artifacts: Path) -> Path:
    """The int8 export for a device: the MCU-lean one (batch 1, five operators) where export
    wrote it, else model_int8.tflite (which may not exist: the caller says so)."""
    lean = Path(artifacts) / MCU_TFLITE
    return lean if lean.is_file() else Path(artifacts) / INT8_TFLITE
