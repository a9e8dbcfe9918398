"""Export model.keras to TFLite and ONNX (float and quantized), plus the Keras reference."""

from __future__ import annotations

import io
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mnist_edge.artifacts import (
    EXPORT_FILES,
    EXPORT_JSON,
    MODEL_FILE,
    REFERENCE_FILE,
    find_exports,
    load_record,
    record_payload,
)
from mnist_edge.data import IDX_FILES, Mnist, ensure_mnist, to_float
from mnist_edge.deps import require
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import (
    json_bytes,
    prepare_output_dir,
    refuse_overwrite,
    sha256_bytes,
    sha256_file,
    stdout_to_stderr,
    write_files_atomic,
)
from mnist_edge.machine import library_versions
from mnist_edge.model import keras_probabilities, load_keras_model
from mnist_edge.options import (
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_FORMATS,
    ONNX_CALIBRATION_METHODS,
)
from mnist_edge.records import Calibration, ExportedFile, ExportResult
from mnist_edge.tensors import IMAGE_SHAPE

log = logging.getLogger(__name__)

ONNX_OPSET = 17
ONNX_INPUT_NAME = "image"
TRAIN_IMAGES = IDX_FILES["y_train"].count


@dataclass(frozen=True)
class ExportFormat:
    """An export format: its file name and what it holds."""

    name: str
    description: str
    calibrated: bool = False

    @property
    def file(self) -> str:
        return EXPORT_FILES[self.name]


FORMATS = {
    f.name: f
    for f in (
        ExportFormat("tflite-float32", "TFLite, float32"),
        ExportFormat("tflite-float16", "TFLite, float16 weights"),
        ExportFormat(
            "tflite-dynamic",
            "TFLite, dynamic range: int8 weights, float activations",
        ),
        ExportFormat(
            "tflite-int8",
            "TFLite, full integer: int8 weights (per channel), activations and I/O",
            calibrated=True,
        ),
        ExportFormat(
            "tflite-int8-mcu",
            "TFLite, full integer as tflite-int8, batch fixed at 1: what a microcontroller runs",
            calibrated=True,
        ),
        ExportFormat("onnx-float32", "ONNX, float32 (tf2onnx)"),
        ExportFormat(
            "onnx-int8",
            "ONNX, int8 QDQ (onnxruntime static quantization, per channel), float I/O",
            calibrated=True,
        ),
    )
}


def _tflite_converter(model):
    tf = require("tensorflow")
    return tf, tf.lite.TFLiteConverter.from_keras_model(model)


def _convert(converter) -> bytes:
    """converter.convert(), without the SavedModel listing it prints on the way.

    For a Keras 3 model the converter writes a SavedModel through Keras' ExportArchive, whose
    `write_out` prints "Saved artifact at '/tmp/...'" and every endpoint and capture to stdout;
    with Keras' interactive logging off, that goes to absl's INFO log (not shown) instead.
    """
    keras = require("keras")
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        return converter.convert()
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def convert_tflite_float32(model) -> bytes:
    """Plain float32 TFLite flatbuffer."""
    _, converter = _tflite_converter(model)
    return _convert(converter)


def convert_tflite_float16(model) -> bytes:
    """float16 weights, dequantized to float32 at load time (half the size, float compute)."""
    tf, converter = _tflite_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return _convert(converter)


def convert_tflite_dynamic(model) -> bytes:
    """Dynamic-range quantization: int8 weights, activations quantized on the fly, float I/O."""
    tf, converter = _tflite_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return _convert(converter)


def convert_tflite_int8(model, calibration_images: np.ndarray, batch: int | None = None) -> bytes:
    """Full-integer post-training quantization: int8 weights (per-channel), activations and I/O.

    `batch=1` fixes the batch dimension (the MCU-lean model): with a dynamic batch, Flatten
    becomes SHAPE, STRIDED_SLICE, PACK and RESHAPE at run time; with batch 1, one RESHAPE by a
    constant shape, so a microcontroller registers and runs three operators fewer.
    """
    if batch is not None:
        # The same layers (the same weights) behind an input of a fixed batch.
        keras = require("keras")
        inputs = keras.Input(batch_shape=(batch, *IMAGE_SHAPE), name="image")
        model = keras.Model(inputs, model(inputs), name=f"{model.name}_batch{batch}")
    tf, converter = _tflite_converter(model)
    calibration = to_float(calibration_images)

    def representative_dataset():
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # Builtins only: an op without an int8 kernel fails the conversion instead of staying float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return _convert(converter)


def convert_onnx(model, opset: int = ONNX_OPSET) -> bytes:
    """ONNX through tf2onnx.from_function (from_keras does not take Keras 3 models)."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    signature = [tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32, name=ONNX_INPUT_NAME)]
    function = tf.function(lambda image: model(image, training=False), input_signature=signature)
    model_proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    return model_proto.SerializeToString()


def convert_onnx_int8(
    onnx_float: bytes, calibration_images: np.ndarray, method: str = "minmax"
) -> bytes:
    """onnxruntime static quantization to QDQ: int8 weights per channel, int8 activations."""
    require("onnx")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = to_float(calibration_images)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {ONNX_INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="mnist-edge-onnx-") as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("f.onnx", "p.onnx", "q.onnx"))
        source.write_bytes(onnx_float)
        # Shape inference and graph clean-up first, as onnxruntime's quantization guide asks.
        # ONNX's own shape inference suffices for this static CNN; the symbolic pass would
        # only add a sympy dependency.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method],
        )
        return target.read_bytes()


def _earlier_record(artifacts: Path) -> ExportResult | None:
    try:
        return load_record(artifacts, "export")
    except MnistEdgeError as exc:
        log.info("Not reusing %s: %s", EXPORT_JSON, exc)
        return None


def describe_others(
    artifacts: Path, earlier: ExportResult | None, written: set[str]
) -> list[ExportedFile]:
    """Entries for the exports in the folder that this run did not write, so the record
    describes the whole folder: an earlier entry is kept only for the very bytes it described
    (by SHA-256); any other export file is listed as found, with its own digest."""
    recorded = {f.name: f for f in earlier.files} if earlier is not None else {}
    formats = {file: name for name, file in EXPORT_FILES.items()}
    others = []
    for path in find_exports(artifacts):
        if path.name in written:
            continue
        digest = sha256_file(path)
        entry = recorded.get(path.name)
        if entry is not None and entry.sha256 == digest:
            others.append(replace(entry, origin="kept"))
            continue
        if entry is not None:
            log.info("%s changed since it was exported: described anew", path.name)
        others.append(
            ExportedFile(
                name=path.name,
                format=formats.get(path.name, "unknown"),
                bytes=path.stat().st_size,
                sha256=digest,
                description="found in the folder, not written by mnist-edge export "
                "(or changed since)",
                origin="found",
            )
        )
    return others


def resolve_formats(formats: list[str] | None, int8: bool) -> list[str]:
    """Expand `all`, add the int8 TFLite models for --int8, check names; the table's order."""
    requested = set(formats or DEFAULT_FORMATS)
    if "all" in requested:
        requested = set(FORMATS)
    if int8:
        requested |= {"tflite-int8", "tflite-int8-mcu"}
    unknown = sorted(requested - set(FORMATS))
    if unknown:
        raise MnistEdgeError(
            f"Unknown export format {', '.join(unknown)}: expected any of "
            f"{', '.join(FORMATS)} or all."
        )
    return [name for name in FORMATS if name in requested]


def export(
    artifacts: Path,
    data: Mnist | Path | None,
    *,
    formats: list[str] | None = None,
    int8: bool = False,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    onnx_calibration: str = "minmax",
    overwrite: bool = False,
) -> ExportResult:
    """Export model.keras in `artifacts` to each format, and record Keras' reference outputs."""
    if not 1 <= calibration_size <= TRAIN_IMAGES:
        raise MnistEdgeError(
            f"Invalid calibration size {calibration_size}: expected 1 to {TRAIN_IMAGES}."
        )
    if onnx_calibration not in ONNX_CALIBRATION_METHODS:
        raise MnistEdgeError(
            f"Unknown ONNX calibration {onnx_calibration!r}: expected "
            f"{', '.join(ONNX_CALIBRATION_METHODS)}."
        )
    names = resolve_formats(formats, int8)
    artifacts = prepare_output_dir(artifacts)
    source = artifacts / MODEL_FILE
    if not source.is_file():
        raise ModelError(f"{source}: no such model; run `mnist-edge train` first.")
    refuse_overwrite([artifacts / FORMATS[name].file for name in names], overwrite)
    model = load_keras_model(source)
    source_sha256 = sha256_file(source)
    mnist = ensure_mnist(data)
    # The first N training images calibrate both int8 formats, so TFLite and ONNX see the same.
    calibration_images = mnist.x_train[:calibration_size]

    # Convert everything in memory first, then write: a failed conversion leaves no new file.
    payloads: dict[str, tuple[bytes, float]] = {}

    def onnx_int8() -> bytes:
        onnx_float = payloads["onnx-float32"][0] if "onnx-float32" in payloads else None
        return convert_onnx_int8(
            onnx_float or convert_onnx(model), calibration_images, onnx_calibration
        )

    converters = {
        "tflite-float32": lambda: convert_tflite_float32(model),
        "tflite-float16": lambda: convert_tflite_float16(model),
        "tflite-dynamic": lambda: convert_tflite_dynamic(model),
        "tflite-int8": lambda: convert_tflite_int8(model, calibration_images),
        "tflite-int8-mcu": lambda: convert_tflite_int8(model, calibration_images, batch=1),
        "onnx-float32": lambda: convert_onnx(model),
        "onnx-int8": onnx_int8,
    }
    for name in names:
        log.info("Converting to %s (%s)", FORMATS[name].file, name)
        started = time.perf_counter()
        with stdout_to_stderr():
            payload = converters[name]()
        payloads[name] = (payload, time.perf_counter() - started)

    log.info("Recording Keras reference outputs on %d test images", len(mnist.x_test))
    probabilities = keras_probabilities(model, mnist.x_test)
    keras_accuracy = float(np.mean(probabilities.argmax(axis=1) == mnist.y_test))
    reference = io.BytesIO()
    np.savez(
        reference,
        probabilities=probabilities,
        labels=mnist.y_test,
        model_sha256=np.array(source_sha256),
        data_sha256=np.array(sorted(f"{k}={v}" for k, v in mnist.sha256.items())),
    )

    files, contents = [], {}
    for name, (payload, seconds) in payloads.items():
        fmt = FORMATS[name]
        contents[artifacts / fmt.file] = payload
        files.append(
            ExportedFile(
                name=fmt.file,
                format=name,
                description=fmt.description,
                bytes=len(payload),
                sha256=sha256_bytes(payload),
                seconds=round(seconds, 3),
            )
        )
    calibrated = any(FORMATS[name].calibrated for name in names)
    earlier = _earlier_record(artifacts)
    files += describe_others(artifacts, earlier, written={f.name for f in files})
    calibration = (
        Calibration(
            images=calibration_size,
            source=f"first {calibration_size} MNIST training images",
            onnx_method=onnx_calibration,
        )
        if calibrated
        else None
    )
    if calibration is None and earlier is not None:
        kept_calibrated = any(
            f.origin == "kept" and f.format in FORMATS and FORMATS[f.format].calibrated
            for f in files
        )
        calibration = earlier.calibration if kept_calibrated else None
    result = ExportResult(
        source=str(source),
        source_sha256=source_sha256,
        files=files,
        calibration=calibration,
        onnx_opset=ONNX_OPSET,
        keras_test_accuracy=keras_accuracy,
        data_sha256=dict(mnist.sha256),
        versions=library_versions("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"),
    )
    contents[artifacts / REFERENCE_FILE] = reference.getvalue()
    contents[artifacts / EXPORT_JSON] = json_bytes(record_payload(result))
    # All files in one step: a full disk or Ctrl-C leaves the previous export whole.
    write_files_atomic(contents)
    return result
