"""Verify every export against the Keras model on the MNIST test set; the task metric decides.

Each export is reloaded from disk in a fresh runner. Accuracy is measured first, output error
second; every failure is collected, and the caller fails once with the whole list.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mnist_edge.artifacts import (
    MODEL_FILE,
    REFERENCE_FILE,
    VERIFY_JSON,
    record_payload,
    resolve_exports,
)
from mnist_edge.compare import (
    DEFAULT_TOLERANCE_PP,
    bit_agreement,
    compare,
    confusion_matrix,
    cross_agreement,
    disagreements,
    per_class_accuracy,
)
from mnist_edge.data import MnistTest, ensure_test_split, to_float
from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.files import sha256_file, write_json
from mnist_edge.records import IdentityReport, Reference, VerifyReport, VerifyRow
from mnist_edge.runtimes import open_runner, open_runners
from mnist_edge.tensors import dequantize, quantize

log = logging.getLogger(__name__)


def load_reference(artifacts: Path, mnist: MnistTest, count: int) -> tuple[np.ndarray, str]:
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
    from mnist_edge.model import keras_probabilities, load_keras_model

    try:
        model = load_keras_model(model_path)
    except MissingDependencyError as exc:
        # On a device: the recorded outputs are the way, not a TensorFlow install.
        raise MissingDependencyError(
            f"{artifacts}: no current {REFERENCE_FILE} (written by `mnist-edge export`, it must "
            f"match {MODEL_FILE}); copy it beside the exports, or run Keras: {exc}"
        ) from None
    return keras_probabilities(model, mnist.x_test[:count]), "live"


def _identity_with_tflm(path: Path, runtime: str, raws: dict, images: np.ndarray):
    """The C engine's promise, checked: its int8 outputs against host TFLM's, image by image
    (TFLM's from this run where it ran, else run now). None for every other runtime."""
    if runtime != "codegen":
        return None
    theirs = raws.get((path, "tflm"))
    if theirs is None:
        log.info("Running TFLM on %s for the C engine's bit-identity check", path.name)
        tflm = open_runner(path, "tflm")
        theirs = tflm.predict_raw(quantize(images, tflm.input))
    return bit_agreement("tflm", "codegen", theirs, raws[path, runtime])


def verify(
    artifacts: Path,
    data: MnistTest | Path | None,
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
    loaded, unsupported = open_runners(exports, runtimes, threads)
    mnist = ensure_test_split(data)
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

    rows, failures, digests, raws = [], [], {}, {}
    predictions = {f"{MODEL_FILE} (keras)": reference_probs.argmax(axis=1)}
    for item in loaded:
        path, runtime, runner = item.path, item.runtime, item.runner
        log.info("Verifying %s on %s (%d images)", path.name, runtime, count)
        raw = runner.predict_raw(quantize(images, runner.input))
        probabilities = dequantize(raw, runner.output)
        metrics = compare(reference_probs, probabilities, labels)
        if runtime in ("tflm", "codegen"):
            raws[path, runtime] = raw
        identity = _identity_with_tflm(path, runtime, raws, images)
        if identity is not None and identity.bit_identical != identity.images:
            failures.append(
                f"{path.name} (codegen): {identity.bit_identical:,}/{identity.images:,} outputs "
                f"bit-identical to TFLM's (first difference: test image {identity.mismatches[0]})"
            )
        confusion = confusion_matrix(labels, probabilities.argmax(axis=1))
        predictions[f"{path.name} ({runtime})"] = probabilities.argmax(axis=1)
        delta_pp = (metrics["accuracy"] - reference.accuracy) * 100
        # Rounded: 0.795 - 0.8 is -0.50000000000000004 pp in floating point, not below -0.5.
        passed = round(delta_pp, 9) >= -tolerance_pp
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
                tflm_identity=identity,
                **metrics,
            )
        )
    report = VerifyReport(
        reference, rows, cross_agreement(predictions), count, tolerance_pp, failures, unsupported
    )
    write_json(artifacts / VERIFY_JSON, record_payload(report))
    return report


# The runtimes that promise host TFLM's bytes: the C engine (its whole point) and TFLM itself.
# LiteRT's builtin kernels (litert-ref) are its optimized ones, not TFLM's reference code: on
# MLPerf Tiny's IC and AD models they differ from TFLM by up to 53 steps, and XNNPACK rounds
# its own way. Their differences are reported, not failed.
IDENTICAL_TO_TFLM = ("codegen", "tflm")
IDENTITY_JSON = "identity.json"


def verify_inputs(
    artifacts: Path,
    data: Path | None,
    *,
    inputs: str | None,
    models: list[Path] | None = None,
    runtimes: list[str] | None = None,
    count: int = 10_000,
    seed: int = 0,
) -> IdentityReport:
    """Every .tflite export (or `models`) on `inputs` (inputs.model_inputs: MNIST, random, a
    .npy file), each runtime's outputs against host TFLM's byte for byte; accuracy where the
    inputs have labels. Writes identity.json; the report is false when an engine that promises
    TFLM's bytes (IDENTICAL_TO_TFLM) differs."""
    from mnist_edge.inputs import inputs_for
    from mnist_edge.records import IdentityRow

    artifacts = Path(artifacts)
    exports = [p for p in resolve_exports(artifacts, models) if p.suffix == ".tflite"]
    if not exports:
        raise MnistEdgeError(f"{artifacts}: --inputs runs .tflite models; none given or found.")
    chosen = {path: inputs_for(path, inputs, count=count, seed=seed, data=data) for path in exports}
    loaded, unsupported = open_runners(exports, runtimes or ["codegen"], any_shape=True)
    rows, failures, references = [], [], {}
    for item in loaded:
        path, runtime, runner = item.path, item.runtime, item.runner
        values = chosen[path].values
        if path not in references:
            log.info("Running host TFLM on %s (%d inputs)", path.name, len(values))
            tflm = open_runner(path, "tflm", any_shape=True)
            references[path] = tflm.predict_raw(values).reshape(len(values), -1)
        log.info("Verifying %s on %s (%d inputs)", path.name, runtime, len(values))
        raw = runner.predict_raw(values).reshape(len(values), -1)
        theirs = references[path]
        agreement = bit_agreement("tflm", runtime, theirs.view(np.int8), raw.view(np.int8))
        labels = chosen[path].labels
        accuracy = None if labels is None else float(np.mean(raw.argmax(axis=1) == labels))
        row = IdentityRow(
            artifact=path.name,
            runtime=runtime,
            kernels=runner.kernels,
            sha256=sha256_file(path),
            agreement=agreement,
            accuracy=accuracy,
            must_match=runtime in IDENTICAL_TO_TFLM,
        )
        if not row.passed:
            failures.append(
                f"{path.name} ({runtime}): {agreement.bit_identical:,}/{agreement.images:,} "
                f"outputs bit-identical to host TFLM's (first difference: input "
                f"{agreement.mismatches[0]})"
            )
        rows.append(row)
    descriptions = sorted({chosen[p].description for p in exports})
    report = IdentityReport(
        inputs="; ".join(descriptions),
        count=max(c.count for c in chosen.values()),
        reference="host TFLM: the tflite-micro Python interpreter, reference kernels",
        results=rows,
        failures=failures,
        unsupported=unsupported,
    )
    write_json(artifacts / IDENTITY_JSON, record_payload(report))
    return report
