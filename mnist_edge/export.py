"""Export model.keras to TFLite (float32, full-integer int8) and ONNX, plus the Keras reference."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_edge.data import IDX_FILES, Mnist, ensure_mnist, to_float
from mnist_edge.deps import require
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import (
    prepare_output_dir,
    refuse_overwrite,
    sha256_bytes,
    sha256_file,
    stdout_to_stderr,
    write_bytes_atomic,
    write_json,
)
from mnist_edge.model import INPUT_SHAPE, MODEL_FILE, library_versions, load_keras_model

log = logging.getLogger(__name__)

FLOAT32_TFLITE = "model_float32.tflite"
INT8_TFLITE = "model_int8.tflite"
ONNX_FILE = "model.onnx"
REFERENCE_FILE = "reference.npz"
EXPORT_JSON = "export.json"
ONNX_OPSET = 17
ONNX_INPUT_NAME = "image"
DEFAULT_CALIBRATION_SIZE = 500
KERAS_BATCH = 1000
TRAIN_IMAGES = IDX_FILES["y_train"].count


@dataclass(frozen=True)
class ExportedFile:
    """One file written by export."""

    name: str
    format: str
    bytes: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class ExportResult:
    """What export wrote, and how."""

    source: str
    source_sha256: str
    files: list[ExportedFile]
    calibration_size: int | None
    onnx_opset: int
    keras_test_accuracy: float
    data_sha256: dict[str, str]
    versions: dict[str, str]


def keras_probabilities(model, images: np.ndarray) -> np.ndarray:
    """Softmax outputs of a Keras model on uint8 images, in batches (direct call, no fit loop)."""
    x = to_float(images)
    chunks = [
        np.asarray(model(x[i : i + KERAS_BATCH], training=False))
        for i in range(0, len(x), KERAS_BATCH)
    ]
    return np.concatenate(chunks).astype(np.float32)


def convert_tflite_float32(model) -> bytes:
    """Plain float32 TFLite flatbuffer."""
    tf = require("tensorflow")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()


def convert_tflite_int8(model, calibration_images: np.ndarray) -> bytes:
    """Full-integer post-training quantization: int8 weights (per-channel), activations and I/O."""
    tf = require("tensorflow")
    calibration = to_float(calibration_images)

    def representative_dataset():
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # Builtins only: an op without an int8 kernel fails the conversion instead of staying float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def convert_onnx(model, opset: int = ONNX_OPSET) -> bytes:
    """ONNX through tf2onnx.from_function (from_keras does not take Keras 3 models)."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    signature = [tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=ONNX_INPUT_NAME)]
    function = tf.function(lambda image: model(image, training=False), input_signature=signature)
    model_proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    return model_proto.SerializeToString()


def export(
    artifacts: Path,
    data: Mnist | Path | None,
    *,
    int8: bool = False,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    overwrite: bool = False,
) -> ExportResult:
    """Export model.keras in `artifacts` to TFLite and ONNX, and record Keras' reference outputs."""
    if not 1 <= calibration_size <= TRAIN_IMAGES:
        raise MnistEdgeError(
            f"Invalid calibration size {calibration_size}: expected 1 to {TRAIN_IMAGES}."
        )
    artifacts = prepare_output_dir(artifacts)
    source = artifacts / MODEL_FILE
    if not source.is_file():
        raise ModelError(f"{source}: no such model; run `mnist-edge train` first.")
    targets = [FLOAT32_TFLITE, ONNX_FILE] + ([INT8_TFLITE] if int8 else [])
    refuse_overwrite([artifacts / name for name in targets], overwrite)
    model = load_keras_model(source)
    mnist = ensure_mnist(data)

    converters = {
        FLOAT32_TFLITE: ("tflite-float32", lambda: convert_tflite_float32(model)),
        INT8_TFLITE: (
            "tflite-int8",
            lambda: convert_tflite_int8(model, mnist.x_train[:calibration_size]),
        ),
        ONNX_FILE: ("onnx-float32", lambda: convert_onnx(model)),
    }
    # Convert everything in memory first, then write: a failed conversion leaves no new file.
    payloads: dict[str, tuple[str, bytes, float]] = {}
    for name in targets:
        fmt, convert = converters[name]
        log.info("Converting %s", name)
        started = time.perf_counter()
        with stdout_to_stderr():
            payloads[name] = (fmt, convert(), time.perf_counter() - started)

    log.info("Recording Keras reference outputs on %d test images", len(mnist.x_test))
    probabilities = keras_probabilities(model, mnist.x_test)
    keras_accuracy = float(np.mean(probabilities.argmax(axis=1) == mnist.y_test))
    reference = io.BytesIO()
    np.savez(
        reference,
        probabilities=probabilities,
        labels=mnist.y_test,
        model_sha256=np.array(sha256_file(source)),
        data_sha256=np.array(sorted(f"{k}={v}" for k, v in mnist.sha256.items())),
    )

    files = []
    for name, (fmt, payload, seconds) in payloads.items():
        write_bytes_atomic(artifacts / name, payload)
        files.append(
            ExportedFile(name, fmt, len(payload), sha256_bytes(payload), round(seconds, 3))
        )
    write_bytes_atomic(artifacts / REFERENCE_FILE, reference.getvalue())
    result = ExportResult(
        source=str(source),
        source_sha256=sha256_file(source),
        files=files,
        calibration_size=calibration_size if int8 else None,
        onnx_opset=ONNX_OPSET,
        keras_test_accuracy=keras_accuracy,
        data_sha256=dict(mnist.sha256),
        versions=library_versions("tensorflow", "keras", "tf2onnx", "onnx", "numpy"),
    )
    write_json(artifacts / EXPORT_JSON, asdict(result))
    return result
