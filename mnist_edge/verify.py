"""Verify every export against the Keras model on the MNIST test set; the task metric decides.

Each export is reloaded from disk in a fresh runner. Accuracy is measured first, output error
second; every failure is collected, and the caller fails once with the whole list.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_edge.data import Mnist, ensure_mnist, to_float
from mnist_edge.errors import MnistEdgeError
from mnist_edge.export import REFERENCE_FILE, keras_probabilities
from mnist_edge.files import sha256_file, write_json
from mnist_edge.model import MODEL_FILE, load_keras_model
from mnist_edge.runtimes import open_runner, select_runtimes

log = logging.getLogger(__name__)

VERIFY_JSON = "verify.json"
EXPORT_SUFFIXES = (".tflite", ".onnx")
# Tolerances: one table, named. Accuracy may fall at most this many percentage points below Keras.
DEFAULT_TOLERANCE_PP = 0.5


@dataclass(frozen=True)
class Reference:
    """The Keras model's own accuracy: the figure every export is held to."""

    artifact: str
    runtime: str
    accuracy: float
    source: str  # "recorded" (reference.npz written by export) or "live" (Keras run now)


@dataclass(frozen=True)
class VerifyRow:
    """One export on one runtime, against Keras."""

    artifact: str
    runtime: str
    kernels: str
    accuracy: float
    delta_pp: float
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    passed: bool


@dataclass(frozen=True)
class VerifyReport:
    """Every export's parity with Keras; true when all passed."""

    reference: Reference
    results: list[VerifyRow]
    images: int
    tolerance_pp: float
    failures: list[str]

    def __bool__(self) -> bool:
        return not self.failures


def compare(reference: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, agreement with the reference's classes, and probability errors (numpy only)."""
    predicted = probabilities.argmax(axis=1)
    diff = np.abs(probabilities.astype(np.float64) - reference.astype(np.float64))
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "agreement": float(np.mean(predicted == reference.argmax(axis=1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def load_reference(artifacts: Path, mnist: Mnist, count: int) -> tuple[np.ndarray, str]:
    """Keras' probabilities on the first `count` test images: recorded if current, else live."""
    model_path = artifacts / MODEL_FILE
    recorded = artifacts / REFERENCE_FILE
    if recorded.is_file():
        with np.load(recorded, allow_pickle=False) as npz:
            probabilities = npz["probabilities"]
            model_sha = str(npz["model_sha256"])
            labels = npz["labels"]
        # Every loaded MNIST is checked against published hashes, whatever its source (npz or
        # IDX), so equal test labels mean the same test set.
        same_data = np.array_equal(labels, mnist.y_test)
        same_model = not model_path.is_file() or sha256_file(model_path) == model_sha
        if same_data and same_model and len(probabilities) >= count:
            return probabilities[:count], "recorded"
        log.info("%s is stale (model or data changed); running Keras instead.", recorded)
    if not model_path.is_file():
        raise MnistEdgeError(
            f"{artifacts}: neither {MODEL_FILE} nor a current {REFERENCE_FILE}; "
            "run `mnist-edge train` and `mnist-edge export` first."
        )
    model = load_keras_model(model_path)
    return keras_probabilities(model, mnist.x_test[:count]), "live"


def find_exports(artifacts: Path) -> list[Path]:
    """The export files in an artifacts folder, sorted by name."""
    return sorted(p for p in Path(artifacts).iterdir() if p.suffix in EXPORT_SUFFIXES)


def verify(
    artifacts: Path,
    data: Mnist | Path | None,
    *,
    models: list[Path] | None = None,
    runtimes: list[str] | None = None,
    tolerance_pp: float = DEFAULT_TOLERANCE_PP,
    limit: int | None = None,
    threads: int = 1,
) -> VerifyReport:
    """Run every export (or `models`) on the test set, compare with Keras, write verify.json."""
    if tolerance_pp < 0:
        raise MnistEdgeError(f"Invalid tolerance {tolerance_pp}: expected 0 or more (pp).")
    if limit is not None and limit < 1:
        raise MnistEdgeError(f"Invalid limit {limit}: expected a positive integer.")
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        raise MnistEdgeError(f"{artifacts}: no such artifacts folder.")
    exports = list(models) if models else find_exports(artifacts)
    if not exports:
        raise MnistEdgeError(f"{artifacts}: no .tflite or .onnx exports; run `mnist-edge export`.")
    mnist = ensure_mnist(data)
    count = min(limit or len(mnist.y_test), len(mnist.y_test))
    labels = mnist.y_test[:count]
    images = to_float(mnist.x_test[:count])
    reference_probs, source = load_reference(artifacts, mnist, count)
    reference = Reference(
        MODEL_FILE, "keras", float(np.mean(reference_probs.argmax(axis=1) == labels)), source
    )

    rows, failures = [], []
    for path in exports:
        for runtime in select_runtimes(path, runtimes):
            log.info("Verifying %s on %s (%d images)", path.name, runtime, count)
            try:
                runner = open_runner(path, runtime, threads=threads)
                probabilities = runner.predict(images)
            except MnistEdgeError as exc:
                failures.append(f"{path.name} ({runtime}): {exc}")
                continue
            metrics = compare(reference_probs, probabilities, labels)
            delta_pp = (metrics["accuracy"] - reference.accuracy) * 100
            passed = delta_pp >= -tolerance_pp
            if not passed:
                failures.append(
                    f"{path.name} ({runtime}): accuracy {metrics['accuracy']:.4f} is "
                    f"{-delta_pp:.2f} pp below Keras' {reference.accuracy:.4f} "
                    f"(tolerance {tolerance_pp} pp)"
                )
            rows.append(
                VerifyRow(
                    artifact=path.name,
                    runtime=runtime,
                    kernels=runner.kernels,
                    delta_pp=round(delta_pp, 4),
                    passed=passed,
                    **metrics,
                )
            )
    report = VerifyReport(reference, rows, count, tolerance_pp, failures)
    write_json(artifacts / VERIFY_JSON, asdict(report))
    return report
