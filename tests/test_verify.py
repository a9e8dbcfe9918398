"""verify: accuracy first, every failure collected, exit 1 for a real accuracy loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_edge.artifacts import EXPORT_FILES
from mnist_edge.cli import app
from mnist_edge.data import to_float
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.runtimes import open_runner
from mnist_edge.verify import verify
from tests.conftest import tflm_served_from
from tests.helpers import assert_exit, needs_sources, plant_one_byte


def test_verify_passes_and_writes_the_contract(exported, mnist):
    artifacts, result = exported
    report = verify(artifacts, mnist)
    assert report and report.images == 10000
    assert report.reference.source == "recorded"
    assert report.reference.accuracy == pytest.approx(result.keras_test_accuracy)
    rows = {(r.artifact, r.runtime): r for r in report.results}
    assert set(rows) == {
        ("model.onnx", "onnxruntime"),
        ("model_float32.tflite", "litert"),
        ("model_int8.tflite", "litert"),
        ("model_int8_mcu.tflite", "litert"),
    }
    assert rows["model.onnx", "onnxruntime"].agreement >= 0.999
    assert abs(rows["model.onnx", "onnxruntime"].delta_pp) <= 0.01
    assert abs(rows["model_int8.tflite", "litert"].delta_pp) <= 1.0
    record = json.loads((artifacts / "verify.json").read_text())
    assert set(record["reference"]) >= {"artifact", "accuracy"}
    for row in record["results"]:
        assert set(row) >= {
            "artifact",
            "runtime",
            "accuracy",
            "delta_pp",
            "agreement",
            "max_abs_diff",
        }


def test_live_keras_reference_gives_the_same_numbers(exported_copy, mnist):
    recorded = verify(exported_copy, mnist, limit=2000)
    (exported_copy / "reference.npz").unlink()
    live = verify(exported_copy, mnist, limit=2000)
    assert live.reference.source == "live"
    assert live.reference.accuracy == recorded.reference.accuracy
    for a, b in zip(recorded.results, live.results, strict=True):
        assert a.accuracy == b.accuracy and a.agreement == b.agreement


def test_perturbed_export_fails_and_is_named(perturbed_copy, mnist):
    """A model whose weights are really damaged must fail the tolerance, alone."""
    report = verify(perturbed_copy, mnist, limit=2000)
    assert not report
    assert len(report.failures) == 1 and report.failures[0].startswith("model_float32.tflite")
    failed = [r for r in report.results if not r.passed]
    assert [r.artifact for r in failed] == ["model_float32.tflite"]


def test_unloadable_exports_are_named_together_and_nothing_is_written(exported_copy, mnist):
    (exported_copy / "broken.tflite").write_text("not a model")
    (exported_copy / "empty.onnx").write_bytes(b"")
    (exported_copy / "verify.json").unlink(missing_ok=True)
    with pytest.raises(ModelError, match="broken.tflite.*; .*empty.onnx"):
        verify(exported_copy, mnist, limit=500)
    assert not (exported_copy / "verify.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tolerance_pp": -0.1}, "Invalid tolerance"), ({"limit": 0}, "Invalid limit")],
)
def test_verify_rejects_bad_options(exported, mnist, kwargs, message):
    with pytest.raises(MnistEdgeError, match=message):
        verify(exported[0], mnist, **kwargs)


def test_verify_needs_exports(tmp_path, mnist):
    with pytest.raises(MnistEdgeError, match="no .tflite or .onnx exports"):
        verify(tmp_path, mnist)


@pytest.mark.slow
def test_parity_report_on_all_formats(exported_all, mnist):
    artifacts, _ = exported_all
    report = verify(artifacts, mnist)
    assert report, report.failures
    rows = {r.artifact: r for r in report.results}
    assert set(rows) == set(EXPORT_FILES.values())
    labels = mnist.y_test
    # Two rows' figures (one per runtime: 3 s) against the runner's own classes, counted here
    # with plain numpy.
    for row in (rows["model_int8.tflite"], rows["model.onnx"]):
        runner = open_runner(artifacts / row.artifact, row.runtime)
        predicted = runner.predict(to_float(mnist.x_test)).argmax(axis=1)
        confusion = np.zeros((10, 10), int)
        np.add.at(confusion, (labels, predicted), 1)
        assert row.confusion == confusion.tolist()
        expected = [float(np.mean(predicted[labels == c] == c)) for c in range(10)]
        np.testing.assert_allclose(row.per_class_accuracy, expected, atol=1e-6)
        assert row.accuracy == pytest.approx(float(np.mean(predicted == labels)))
    for row in report.results:
        assert sum(map(sum, row.confusion)) == 10000
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
    assert cross.models[0] == "model.keras (keras)" and len(cross.models) == 8
    matrix = np.array(cross.matrix)
    assert np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 1.0)
    record = json.loads((artifacts / "verify.json").read_text())
    assert record["cross_agreement"]["matrix"] == cross.matrix
    assert "disagreements" in record["results"][0] and "confusion" in record["reference"]


# `verify -r codegen` against TFLM: the reference (conftest's tflm_reference) is tflite-micro's
# own interpreter run by the tests, and verify's TFLM is served from it past its first images.
needs_c_compiler = pytest.mark.needs_tools(("cc", "gcc"))
PLANTED = 1234  # the test image whose output the planted engine gets one byte wrong


def _same_images(inputs: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.flatnonzero((inputs == inputs[k]).all(axis=(1, 2, 3)))]


@needs_sources
@needs_c_compiler
def test_verify_codegen_is_bit_identical_to_tflm(exported_copy, mnist, tflm_reference, monkeypatch):
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    model = exported_copy / "model_int8_mcu.tflite"
    reference = tflm_reference(model)
    seen = []  # what the C engine gave verify: its inputs and outputs
    predict_raw = CodegenRunner.predict_raw

    def recorded(self, x, *args, **kwargs):
        seen.append((np.array(x), predict_raw(self, x, *args, **kwargs)))
        return seen[-1][1]

    monkeypatch.setattr(CodegenRunner, "predict_raw", recorded)
    with tflm_served_from(tflm_reference):
        report = verify(exported_copy, mnist, models=[model], runtimes=["codegen"])
    assert report, report.failures
    (row,) = report.results
    identity = row.tflm_identity
    assert (identity.images, identity.bit_identical, identity.max_abs_diff) == (10_000, 10_000, 0)
    # What verify stated, checked here: on the test images, the C engine's outputs are those
    # of tflite-micro's interpreter, byte for byte.
    ((inputs, outputs),) = seen
    assert np.array_equal(inputs, reference.inputs)
    assert np.array_equal(outputs.reshape(reference.outputs.shape), reference.outputs)


@needs_sources
@needs_c_compiler
def test_verify_codegen_fails_on_one_wrong_byte(exported_copy, mnist, tflm_reference, monkeypatch):
    model = exported_copy / "model_int8_mcu.tflite"
    reference = tflm_reference(model)
    assert _same_images(reference.inputs, PLANTED) == [PLANTED]
    plant_one_byte(monkeypatch, reference.inputs[PLANTED])
    with tflm_served_from(tflm_reference):
        result = CliRunner().invoke(
            app, ["verify", "-a", str(exported_copy), "-m", str(model), "-r", "codegen"]
        )
    assert_exit(result, 1)
    expected = (
        "model_int8_mcu.tflite (codegen): 9,999/10,000 outputs bit-identical to TFLM's "
        f"(first difference: test image {PLANTED})"
    )
    assert expected in result.stderr
    (row,) = json.loads((exported_copy / "verify.json").read_text())["results"]
    identity = row["tflm_identity"]
    assert identity["bit_identical"] == 9_999 and identity["max_abs_diff"] == 1
    assert identity["mismatches"] == [PLANTED]
    assert row["passed"]  # one byte moves no accuracy: the identity check alone caught it
