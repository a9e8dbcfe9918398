"""artifacts: file names, finding exports, typed records saved and loaded."""

from __future__ import annotations

import json

import pytest

from mnist_edge.artifacts import EXPORT_FILES, RECORDS, load_record, record_payload, resolve_exports
from mnist_edge.errors import MnistEdgeError
from mnist_edge.export import FORMATS
from mnist_edge.machine import library_versions
from tests.test_records import verify_report


def test_every_format_has_one_file_name():
    assert set(EXPORT_FILES) == set(FORMATS)
    assert len(set(EXPORT_FILES.values())) == len(EXPORT_FILES)


def test_a_saved_record_loads_as_its_dataclass(tmp_path):
    report = verify_report()
    (tmp_path / RECORDS["verify"][0]).write_text(json.dumps(record_payload(report)))
    assert load_record(tmp_path, "verify") == report
    assert load_record(tmp_path, "bench") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "verify.json: not a readable JSON record"),
        ('{"results": []}', r"verify.json: lacks .*'images'.*run `mnist-edge verify` again"),
        (
            '{"reference": 3, "results": [], "cross_agreement": null, "images": 1, '
            '"tolerance_pp": 0.5, "failures": []}',
            "expected an object at reference",
        ),
    ],
)
def test_unreadable_or_incompatible_records_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "verify.json").write_text(text)
    with pytest.raises(MnistEdgeError, match=message):
        load_record(tmp_path, "verify")


def test_resolve_exports(tmp_path):
    with pytest.raises(MnistEdgeError, match="no such artifacts folder"):
        resolve_exports(tmp_path / "missing", None)
    with pytest.raises(MnistEdgeError, match="no .tflite or .onnx exports"):
        resolve_exports(tmp_path, None)
    for name in ("b.onnx", "a.tflite", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in resolve_exports(tmp_path, None)] == ["a.tflite", "b.onnx"]


def test_library_versions_name_python_and_skip_what_is_absent():
    versions = library_versions("numpy", "no-such-distribution")
    assert "python" in versions and "numpy" in versions
    assert "no-such-distribution" not in versions
