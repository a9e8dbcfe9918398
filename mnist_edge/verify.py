"""Verify every export against the Keras model on the MNIST test set; the task metric decides.

Each export is reloaded from disk in a fresh runner. Accuracy is measured first, output error
second; every failure is collected, and the caller fails once with the whole list.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_edge.data import NUM_CLASSES, Mnist, ensure_mnist, to_float
from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.export import REFERENCE_FILE, keras_probabilities
from mnist_edge.files import sha256_file, write_json
from mnist_edge.model import MODEL_FILE, load_keras_model
from mnist_edge.runtimes import open_runners

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
    per_class_accuracy: list[float]
    confusion: list[list[int]]


@dataclass(frozen=True)
class Disagreement:
    """A test image on which an export's class differs from Keras'."""

    index: int
    label: int
    keras: int
    export: int


@dataclass(frozen=True)
class VerifyRow:
    """One export on one runtime, against Keras: the task metric first, output error second."""

    artifact: str
    runtime: str
    kernels: str
    sha256: str  # of the export verified: later tools reuse a row only for these bytes
    accuracy: float
    delta_pp: float
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    cosine_similarity: float
    l2_relative_error: float
    passed: bool
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    disagreements: list[Disagreement]


@dataclass(frozen=True)
class CrossAgreement:
    """Pairwise agreement of predicted classes between every two models (Keras first)."""

    models: list[str]
    matrix: list[list[float]]


@dataclass(frozen=True)
class VerifyReport:
    """Every export's parity with Keras; true when all passed."""

    reference: Reference
    results: list[VerifyRow]
    cross_agreement: CrossAgreement
    images: int
    tolerance_pp: float
    failures: list[str]

    def __bool__(self) -> bool:
        return not self.failures


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """10×10 counts: row = true label, column = predicted class."""
    flat = labels.astype(np.int64) * NUM_CLASSES + predicted.astype(np.int64)
    return np.bincount(flat, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    """Recall of each class from a confusion matrix (0 for a class absent from the labels)."""
    totals = confusion.sum(axis=1)
    return [
        round(float(confusion[c, c] / totals[c]), 6) if totals[c] else 0.0
        for c in range(NUM_CLASSES)
    ]


def compare(reference: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, agreement with the reference's classes, and output error (numpy only).

    Output error is of the kind STM32Cube.AI's validation reports: mean cosine similarity of the
    probability vectors, mean and max absolute error, and the L2 relative error ||P-R|| / ||R||.
    """
    predicted = probabilities.argmax(axis=1)
    p = probabilities.astype(np.float64)
    r = reference.astype(np.float64)
    diff = np.abs(p - r)
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1)
    cosine = np.sum(p * r, axis=1) / np.where(norms == 0, 1.0, norms)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "agreement": float(np.mean(predicted == reference.argmax(axis=1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cosine_similarity": float(cosine.mean()),
        "l2_relative_error": float(np.linalg.norm(p - r) / max(np.linalg.norm(r), 1e-12)),
    }


def disagreements(
    reference: np.ndarray, probabilities: np.ndarray, labels: np.ndarray
) -> list[Disagreement]:
    """Every test image on which the export's class differs from the reference's."""
    keras, export = reference.argmax(axis=1), probabilities.argmax(axis=1)
    return [
        Disagreement(int(i), int(labels[i]), int(keras[i]), int(export[i]))
        for i in np.flatnonzero(keras != export)
    ]


def cross_agreement(predictions: dict[str, np.ndarray]) -> CrossAgreement:
    """Share of images on which each pair of models predicts the same class."""
    names = list(predictions)
    matrix = [
        [round(float(np.mean(predictions[a] == predictions[b])), 6) for b in names] for a in names
    ]
    return CrossAgreement(names, matrix)


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
    try:
        model = load_keras_model(model_path)
    except MissingDependencyError as exc:
        # On a device: the recorded outputs are the way, not a TensorFlow install.
        raise MissingDependencyError(
            f"{artifacts}: no current {REFERENCE_FILE} (written by `mnist-edge export`, it must "
            f"match {MODEL_FILE}); copy it beside the exports, or run Keras: {exc}"
        ) from None
    return keras_probabilities(model, mnist.x_test[:count]), "live"


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
    exports = resolve_exports(artifacts, models)
    # Every file is loaded before any work: one that cannot be is bad input (exit 2, nothing
    # written), not a failed check.
    loaded = open_runners(exports, runtimes, threads)
    mnist = ensure_mnist(data)
    count = min(limit or len(mnist.y_test), len(mnist.y_test))
    labels = mnist.y_test[:count]
    images = to_float(mnist.x_test[:count])
    reference_probs, source = load_reference(artifacts, mnist, count)
    reference_confusion = confusion_matrix(labels, reference_probs.argmax(axis=1))
    reference = Reference(
        artifact=MODEL_FILE,
        runtime="keras",
        accuracy=float(np.mean(reference_probs.argmax(axis=1) == labels)),
        source=source,
        per_class_accuracy=per_class_accuracy(reference_confusion),
        confusion=reference_confusion.tolist(),
    )

    rows, failures, digests = [], [], {}
    predictions = {f"{MODEL_FILE} (keras)": reference_probs.argmax(axis=1)}
    for item in loaded:
        path, runtime, runner = item.path, item.runtime, item.runner
        log.info("Verifying %s on %s (%d images)", path.name, runtime, count)
        probabilities = runner.predict(images)
        metrics = compare(reference_probs, probabilities, labels)
        confusion = confusion_matrix(labels, probabilities.argmax(axis=1))
        predictions[f"{path.name} ({runtime})"] = probabilities.argmax(axis=1)
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
                sha256=digests.setdefault(path, sha256_file(path)),
                delta_pp=round(delta_pp, 4),
                passed=passed,
                per_class_accuracy=per_class_accuracy(confusion),
                confusion=confusion.tolist(),
                disagreements=disagreements(reference_probs, probabilities, labels),
                **metrics,
            )
        )
    report = VerifyReport(
        reference, rows, cross_agreement(predictions), count, tolerance_pp, failures
    )
    write_json(artifacts / VERIFY_JSON, asdict(report))
    return report
