"""Reproducible to the byte: the same seed gives the same weights and the same int8 model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_edge.export import export
from mnist_edge.files import sha256_file
from mnist_edge.model import load_keras_model, train

pytestmark = pytest.mark.slow


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


def test_other_seed_other_weights(tmp_path, mnist, trained):
    _, reference = trained
    other = train(mnist, tmp_path, epochs=1, limit=3000, seed=8)
    weights = load_keras_model(tmp_path / "model.keras").get_weights()
    assert other.seed == 8
    assert not np.array_equal(weights[0], load_keras_model(reference.model_path).get_weights()[0])


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
