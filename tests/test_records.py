"""records: typed records read back from JSON, with defaults, or refused in one line."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from mnist_edge.records import (
    Calibration,
    CrossAgreement,
    ExportedFile,
    ExportResult,
    RecordError,
    Reference,
    VerifyReport,
    VerifyRow,
    from_dict,
)


def verify_report() -> VerifyReport:
    row = VerifyRow(
        artifact="model_int8.tflite",
        runtime="litert",
        kernels="LiteRT",
        sha256="ab",
        accuracy=0.99,
        delta_pp=-0.03,
        agreement=0.999,
        max_abs_diff=0.04,
        mean_abs_diff=0.001,
        cosine_similarity=0.9999,
        l2_relative_error=0.005,
        passed=True,
        per_class_accuracy=[1.0] * 10,
        confusion=[[1] * 10] * 10,
        disagreements=[],
    )
    reference = Reference("model.keras", "keras", 0.99, "recorded", [1.0] * 10, [[1] * 10] * 10)
    return VerifyReport(reference, [row], CrossAgreement(["a"], [[1.0]]), 10_000, 0.5, [])


def test_a_record_survives_json_and_comes_back_typed():
    report = verify_report()
    back = from_dict(VerifyReport, json.loads(json.dumps(asdict(report))))
    assert back == report
    assert isinstance(back.results[0], VerifyRow) and isinstance(back.reference, Reference)


def test_fields_an_older_version_did_not_write_take_their_defaults():
    data = {"files": [{"name": "model.onnx", "format": "onnx-float32", "bytes": 1, "sha256": "ab"}]}
    result = from_dict(ExportResult, data)
    assert result.files == [ExportedFile("model.onnx", "onnx-float32", 1, "ab")]
    assert result.calibration is None and result.versions == {}
    data["calibration"] = {"images": 500, "source": "first 500", "onnx_method": "minmax"}
    assert from_dict(ExportResult, data).calibration == Calibration(500, "first 500", "minmax")


def test_missing_required_fields_are_all_named_with_their_path():
    payload = asdict(verify_report())
    del payload["images"], payload["reference"]["accuracy"]
    with pytest.raises(RecordError, match=r"lacks 'images'"):
        from_dict(VerifyReport, payload)
    payload["images"] = 10
    with pytest.raises(RecordError, match=r"lacks 'reference.accuracy'"):
        from_dict(VerifyReport, payload)
    with pytest.raises(RecordError, match="expected an object"):
        from_dict(VerifyReport, [1, 2])
