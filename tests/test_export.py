"""export: the seven formats, the reference, the record; the same model gives the same bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.export import FORMATS, export, resolve_formats
from mnist_edge.files import sha256_file
from mnist_edge.model import load_keras_model, train
from mnist_edge.runtimes import LiteRTRunner, OrtRunner


def test_export_int8_writes_the_four_files(exported):
    artifacts, result = exported
    names = {f.name for f in result.files}
    assert names == {
        "model_float32.tflite",
        "model_int8.tflite",
        "model_int8_mcu.tflite",
        "model.onnx",
    }
    sizes = {f.name: f.bytes for f in result.files}
    for name, size in sizes.items():
        assert (artifacts / name).stat().st_size == size
    # 93,322 float32 weights are ~365 KiB; int8 weights a quarter of that.
    assert 360_000 < sizes["model_float32.tflite"] < 420_000
    assert sizes["model_int8.tflite"] < sizes["model_float32.tflite"] / 3
    record = json.loads((artifacts / "export.json").read_text())
    assert record["calibration"]["images"] == 100 and record["onnx_opset"] >= 13


def test_int8_model_has_int8_io_read_from_the_model(exported):
    artifacts, _ = exported
    runner = LiteRTRunner(artifacts / "model_int8.tflite")
    assert runner.input.dtype == "int8" and runner.output.dtype == "int8"
    # Pixels in [0, 1] calibrate to scale 1/255 and zero point -128.
    assert runner.input.scale == pytest.approx(1 / 255, rel=1e-3)
    assert runner.input.zero_point == -128


def test_onnx_has_dynamic_batch(exported, mnist):
    artifacts, _ = exported
    runner = OrtRunner(artifacts / "model.onnx")
    assert runner.input.shape == (-1, 28, 28, 1)
    probs = runner.predict(mnist.x_test[:3, ..., None] / np.float32(255))
    assert probs.shape == (3, 10)


def test_reference_records_keras_outputs(exported, mnist):
    artifacts, result = exported
    with np.load(artifacts / "reference.npz") as npz:
        probs = npz["probabilities"]
        assert probs.shape == (10000, 10)
        assert np.array_equal(npz["labels"], mnist.y_test)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert result.keras_test_accuracy == pytest.approx(np.mean(probs.argmax(1) == mnist.y_test))


def test_export_refuses_to_overwrite_and_keeps_files(exported_copy, mnist):
    before = (exported_copy / "model.onnx").read_bytes()
    with pytest.raises(MnistEdgeError, match="already exist"):
        export(exported_copy, mnist, int8=True)
    assert (exported_copy / "model.onnx").read_bytes() == before


def test_export_without_model(tmp_path, mnist):
    with pytest.raises(ModelError, match="no such model; run `mnist-edge train` first"):
        export(tmp_path, mnist)


@pytest.mark.parametrize("size", [0, 60001])
def test_export_rejects_bad_calibration_size(exported_copy, mnist, size):
    with pytest.raises(MnistEdgeError, match=f"Invalid calibration size {size}"):
        export(exported_copy, mnist, int8=True, calibration_size=size, overwrite=True)


SEVEN = {
    "model_float32.tflite",
    "model_float16.tflite",
    "model_dynamic.tflite",
    "model_int8.tflite",
    "model_int8_mcu.tflite",
    "model.onnx",
    "model_int8.onnx",
}


def test_resolve_formats():
    assert resolve_formats(None, int8=False) == ["tflite-float32", "onnx-float32"]
    assert resolve_formats(None, int8=True) == [
        "tflite-float32",
        "tflite-int8",
        "tflite-int8-mcu",
        "onnx-float32",
    ]
    assert resolve_formats(["all"], int8=False) == list(FORMATS)
    with pytest.raises(MnistEdgeError, match="Unknown export format tflite-int4"):
        resolve_formats(["tflite-int4"], int8=False)


def test_unknown_onnx_calibration(tmp_path):
    with pytest.raises(MnistEdgeError, match="Unknown ONNX calibration 'kl'"):
        export(tmp_path, None, onnx_calibration="kl")


@pytest.mark.slow
def test_all_seven_formats_export_with_sensible_sizes(exported_all):
    artifacts, result = exported_all
    sizes = {f.name: f.bytes for f in result.files}
    assert set(sizes) == SEVEN
    float32 = sizes["model_float32.tflite"]
    assert 0.45 < sizes["model_float16.tflite"] / float32 < 0.6  # half the weight bytes
    for quantized in ("model_dynamic.tflite", "model_int8.tflite", "model_int8.onnx"):
        assert sizes[quantized] / float32 < 0.35  # a quarter of the weight bytes, plus graph
    record = json.loads((artifacts / "export.json").read_text())
    assert record["calibration"] == {
        "images": 100,
        "source": "first 100 MNIST training images",
        "onnx_method": "minmax",
        "per_channel": True,
    }
    assert {f["format"] for f in record["files"]} == set(FORMATS)


@pytest.mark.slow
def test_onnx_int8_is_qdq_per_channel(exported_all):
    onnx = pytest.importorskip("onnx")
    artifacts, _ = exported_all
    graph = onnx.load(str(artifacts / "model_int8.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    initializers = {init.name: init for init in graph.initializer}
    # A per-channel weight DequantizeLinear carries one scale per output channel (32 or 64).
    channel_scales = [
        initializers[node.input[1]].dims[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear"
        and node.input[1] in initializers
        and len(initializers[node.input[1]].dims) == 1
    ]
    assert 32 in channel_scales and 64 in channel_scales


@pytest.mark.slow
def test_same_seed_same_weights_same_int8_bytes(tmp_path, mnist):
    folders = []
    for run in ("first", "second"):
        artifacts = tmp_path / run
        train(mnist, artifacts, epochs=1, limit=3000, seed=7)
        export(artifacts, mnist, int8=True, calibration_size=50)
        folders.append(artifacts)
    first, second = (load_keras_model(f / "model.keras").get_weights() for f in folders)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    digests = [sha256_file(f / "model_int8.tflite") for f in folders]
    assert digests[0] == digests[1]
    assert sha256_file(folders[0] / "model_float32.tflite") == sha256_file(
        folders[1] / "model_float32.tflite"
    )


def test_records_hold_what_reproduces_a_run(trained, exported):
    artifacts, _ = trained
    record = json.loads((artifacts / "train.json").read_text())
    assert {"seed", "epochs", "batch_size", "limit", "data_sha256", "versions"} <= set(record)
    assert {"tensorflow", "keras", "numpy", "python"} <= set(record["versions"])
    exported_dir, _ = exported
    export_record = json.loads((exported_dir / "export.json").read_text())
    assert export_record["source_sha256"] == sha256_file(exported_dir / "model.keras")
    assert export_record["calibration"]["images"] == 100
    assert {"tensorflow", "tf2onnx", "onnxruntime"} <= set(export_record["versions"])


def test_export_json_describes_every_export_in_the_folder_after_two_partial_exports(
    exported_copy, mnist
):
    """A second, partial export merges: earlier entries kept for the same bytes, others found."""
    (exported_copy / "export.json").unlink()
    export(exported_copy, mnist, formats=["tflite-float16"], overwrite=True)
    first = json.loads((exported_copy / "export.json").read_text())
    assert {f["name"]: f["origin"] for f in first["files"]} == {
        "model_float16.tflite": "written",
        "model_float32.tflite": "found",
        "model_int8.tflite": "found",
        "model_int8_mcu.tflite": "found",
        "model.onnx": "found",
    }
    (exported_copy / "model.onnx").write_bytes(b"changed bytes")
    export(exported_copy, mnist, formats=["tflite-dynamic"], calibration_size=10)
    second = json.loads((exported_copy / "export.json").read_text())
    origins = {f["name"]: f["origin"] for f in second["files"]}
    assert origins == {
        "model_dynamic.tflite": "written",
        "model_float16.tflite": "kept",
        "model_float32.tflite": "kept",
        "model_int8.tflite": "kept",
        "model_int8_mcu.tflite": "kept",
        "model.onnx": "found",  # its bytes changed: described anew, not trusted
    }
    for entry in second["files"]:
        assert entry["sha256"] == sha256_file(exported_copy / entry["name"])


def test_the_mcu_lean_model_has_five_operator_kinds_and_the_same_outputs(exported, mnist):
    """Batch fixed at 1: no SHAPE, STRIDED_SLICE, PACK; bit for bit the dynamic-batch model's
    outputs (LiteRT's reference kernels, 1,000 test images)."""
    from mnist_edge.model_info import op_uses, read_tflite

    artifacts, _ = exported
    lean, dynamic = artifacts / "model_int8_mcu.tflite", artifacts / "model_int8.tflite"
    kinds = {
        name: [u.name for u in op_uses(read_tflite(path)[1])]
        for name, path in (("lean", lean), ("dynamic", dynamic))
    }
    assert kinds["lean"] == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    assert set(kinds["dynamic"]) - set(kinds["lean"]) == {"SHAPE", "STRIDED_SLICE", "PACK"}
    pixels = mnist.x_test[:1000]
    outputs = []
    for path in (lean, dynamic):
        runner = LiteRTRunner(path, xnnpack=False)
        outputs.append(runner.predict_raw(runner._input_table.take(pixels).reshape(-1, 28, 28, 1)))
    assert LiteRTRunner(lean).max_batch == 1
    assert np.array_equal(outputs[0], outputs[1])
