"""Bad options: a usage error (exit 2) before any work, and the artifacts folder unchanged."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from tests.conftest import snapshot
from tests.helpers import assert_exit

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "0"],
        ["train", "--epochs", "-3"],
        ["train", "--batch-size", "0"],
        ["train", "--limit", "0"],
        ["train", "--limit", "-1"],
        ["export", "--calibration-size", "0"],
        ["export", "--formats", "tflite-int4"],
        ["export", "--onnx-calibration", "kl"],
        ["verify", "--tolerance", "-0.1"],
        ["verify", "--limit", "0"],
        ["verify", "--threads", "0"],
        ["verify", "--runtime", "tensorrt"],
        ["bench", "--runs", "0"],
        ["bench", "--runs", "-10"],
        ["bench", "--warmup", "-1"],
        ["bench", "--batch-sizes", "0"],
        ["bench", "--batch-sizes", "1,x"],
        ["bench", "--threads", "0,1"],
        ["bench", "--ort-optimization", "max"],
        ["train", "--epochs", "many"],
    ],
)
def test_bad_option_values_exit_2_and_touch_nothing(exported_copy, args):
    before = snapshot(exported_copy)
    result = runner.invoke(app, [*args, "--artifacts", str(exported_copy)])
    assert_exit(result, 2)
    assert snapshot(exported_copy) == before


@pytest.mark.parametrize("command", ["train", "export", "verify", "bench"])
def test_artifacts_path_that_is_a_file(tmp_path, command):
    target = tmp_path / "artifacts"
    target.write_text("I am a file")
    result = runner.invoke(app, [command, "--artifacts", str(target)])
    assert_exit(result, 2)
    assert target.read_text() == "I am a file"


def test_unwritable_artifacts_folder(small_disk, exported):
    """A read-only file system: refused up front, even for root (who ignores permissions)."""
    source, _ = exported
    subprocess.run(["cp", str(source / "model.keras"), str(small_disk)], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    before = snapshot(small_disk)
    result = runner.invoke(app, ["export", "--artifacts", str(small_disk)])
    assert_exit(result, 2)
    assert "not writable" in result.stderr and result.stderr.count("\n") == 1
    assert snapshot(small_disk) == before
