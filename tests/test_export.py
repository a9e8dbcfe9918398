"""Export writes the three files, the reference and the record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.export import export
from mnist_edge.runtimes import LiteRTRunner, OrtRunner

pytestmark = pytest.mark.slow


def test_export_writes_all_three_files(exported):
    artifacts, result = exported
    names = {f.name for f in result.files}
    assert names == {"model_float32.tflite", "model_int8.tflite", "model.onnx"}
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
