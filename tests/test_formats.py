"""All six export formats, and the parity report a release manager reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError
from mnist_edge.export import FORMATS, export, resolve_formats
from mnist_edge.verify import confusion_matrix, cross_agreement, per_class_accuracy, verify

SIX = {
    "model_float32.tflite",
    "model_float16.tflite",
    "model_dynamic.tflite",
    "model_int8.tflite",
    "model.onnx",
    "model_int8.onnx",
}


def test_resolve_formats():
    assert resolve_formats(None, int8=False) == ["tflite-float32", "onnx-float32"]
    assert resolve_formats(None, int8=True) == ["tflite-float32", "tflite-int8", "onnx-float32"]
    assert resolve_formats(["all"], int8=False) == list(FORMATS)
    with pytest.raises(MnistEdgeError, match="Unknown export format tflite-int4"):
        resolve_formats(["tflite-int4"], int8=False)


def test_unknown_onnx_calibration(tmp_path):
    with pytest.raises(MnistEdgeError, match="Unknown ONNX calibration 'kl'"):
        export(tmp_path, None, onnx_calibration="kl")


def test_confusion_and_per_class():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 2, 0])
    confusion = confusion_matrix(labels, predicted)
    assert confusion.sum() == 6 and confusion[0, 1] == 1 and confusion[2, 2] == 2
    assert per_class_accuracy(confusion)[:4] == [0.5, 1.0, pytest.approx(2 / 3, abs=1e-6), 0.0]


def test_cross_agreement_matrix():
    cross = cross_agreement({"a": np.array([1, 2, 3, 4]), "b": np.array([1, 2, 0, 4])})
    assert cross.models == ["a", "b"]
    assert cross.matrix == [[1.0, 0.75], [0.75, 1.0]]


@pytest.mark.slow
def test_all_six_formats_export_with_sensible_sizes(exported_all):
    artifacts, result = exported_all
    sizes = {f.name: f.bytes for f in result.files}
    assert set(sizes) == SIX
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
def test_parity_report_on_all_formats(exported_all, mnist):
    artifacts, _ = exported_all
    report = verify(artifacts, mnist)
    assert report, report.failures
    rows = {r.artifact: r for r in report.results}
    assert set(rows) == SIX
    for row in report.results:
        assert sum(map(sum, row.confusion)) == 10000
        assert row.per_class_accuracy == per_class_accuracy(np.array(row.confusion))
        assert len(row.disagreements) == round((1 - row.agreement) * 10000)
        for d in row.disagreements[:5]:
            assert d.keras != d.export
        assert 0.99 < row.cosine_similarity <= 1.0 + 1e-9
    # Float formats keep Keras' numbers; quantized ones stay close (quick model: 2 epochs).
    assert rows["model_float32.tflite"].agreement == 1.0
    assert rows["model.onnx"].agreement >= 0.9999
    assert abs(rows["model_float16.tflite"].delta_pp) <= 0.05
    for name in ("model_int8.tflite", "model_int8.onnx", "model_dynamic.tflite"):
        assert abs(rows[name].delta_pp) <= 1.0 and rows[name].agreement >= 0.98
    cross = report.cross_agreement
    assert cross.models[0] == "model.keras (keras)" and len(cross.models) == 7
    matrix = np.array(cross.matrix)
    assert np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 1.0)
    record = json.loads((artifacts / "verify.json").read_text())
    assert record["cross_agreement"]["matrix"] == cross.matrix
    assert "disagreements" in record["results"][0] and "confusion" in record["reference"]
