"""Bad models: refused with one line naming the file, exit 2, the artifacts folder unchanged."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from tests.conftest import snapshot
from tests.helpers import assert_exit

runner = CliRunner()
pytestmark = pytest.mark.slow


def _one_line_exit_2(result, *needles):
    assert_exit(result, 2)
    assert result.stderr.count("\n") == 1
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("truncated.tflite", lambda src: (src / "model_int8.tflite").read_bytes()[:4000]),
        ("truncated.onnx", lambda src: (src / "model.onnx").read_bytes()[:4000]),
        ("text.tflite", lambda src: b"# just a text file renamed\n"),
        ("empty.onnx", lambda src: b""),
    ],
)
@pytest.mark.parametrize("command", ["verify", "bench"])
def test_broken_model_files(exported_copy, name, make, command):
    (exported_copy / name).write_bytes(make(exported_copy))
    before = snapshot(exported_copy)
    result = runner.invoke(
        app,
        [command, "-a", str(exported_copy), "--limit", "100"]
        if command == "verify"
        else [command, "-a", str(exported_copy)],
    )
    _one_line_exit_2(result, name, "cannot load it")
    assert snapshot(exported_copy) == before


def test_missing_model_keras(tmp_path):
    before = snapshot(tmp_path)
    _one_line_exit_2(runner.invoke(app, ["export", "-a", str(tmp_path)]), "model.keras")
    assert snapshot(tmp_path) == before


def _convert(model):
    from mnist_edge.export import convert_tflite_float32

    return convert_tflite_float32(model)


def test_wrong_input_shape_is_named(exported_copy):
    import keras

    other = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    (exported_copy / "rgb.tflite").write_bytes(_convert(other))
    before = snapshot(exported_copy)
    result = runner.invoke(app, ["verify", "-a", str(exported_copy), "--limit", "100"])
    _one_line_exit_2(result, "rgb.tflite", "unexpected shape (-1, 32, 32, 3)")
    assert snapshot(exported_copy) == before


def test_keras_lambda_layer_is_refused_in_safe_mode(tmp_path):
    import keras

    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Lambda(lambda x: x * 2.0),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(tmp_path / "model.keras")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["export", "-a", str(tmp_path)])
    _one_line_exit_2(result, "model.keras", "cannot load the Keras model")
    assert snapshot(tmp_path) == before


def test_model_keras_that_is_a_folder(tmp_path, exported):
    shutil.copytree(exported[0], tmp_path / "a")
    (tmp_path / "a" / "model.keras").unlink()
    (tmp_path / "a" / "model.keras").mkdir()
    result = runner.invoke(app, ["export", "-a", str(tmp_path / "a"), "--overwrite"])
    _one_line_exit_2(result, "model.keras")
