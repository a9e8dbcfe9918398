"""The CLI: one CliRunner test per command, error lines without tracebacks, the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_edge import __version__
from mnist_edge.cli import app
from tests.helpers import assert_exit

runner = CliRunner()
COMMANDS = ("data", "train", "export", "verify", "bench")


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_every_command():
    result = invoke("--help")
    assert_exit(result, 0)
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_has_an_example(command):
    result = invoke(command, "--help")
    assert_exit(result, 0)
    assert f"mnist-edge {command}" in result.stdout.replace("\n", " ")


def test_version():
    result = invoke("--version")
    assert_exit(result, 0)
    assert result.stdout.strip() == f"mnist-edge {__version__}"


def test_data_json(mnist):
    result = invoke("data", "--json")
    assert_exit(result, 0)
    payload = json.loads(result.stdout)
    assert payload["train_count"] == 60000 and payload["test_count"] == 10000


@pytest.mark.slow
def test_train_json_keeps_stdout_clean(tmp_path, mnist):
    result = invoke("train", "--epochs", "1", "--limit", "500", "--artifacts", tmp_path, "--json")
    assert_exit(result, 0)
    payload = json.loads(result.stdout)  # stdout is the JSON alone; progress went to stderr
    assert payload["epochs"] == 1 and payload["train_images"] == 500
    assert "epoch 1/1" in result.stderr


@pytest.mark.slow
def test_export_verify_bench_through_the_cli(exported_copy):
    result = invoke("export", "--int8", "--artifacts", exported_copy, "--overwrite", "--json")
    assert_exit(result, 0)
    assert len(json.loads(result.stdout)["files"]) == 4  # float32, int8, int8 MCU-lean, ONNX

    result = invoke("verify", "--artifacts", exported_copy, "--limit", "1000")
    assert_exit(result, 0)
    assert "model_int8.tflite" in result.stdout and "agreement" in result.stdout

    result = invoke("bench", "-a", exported_copy, "--runs", "20", "--warmup", "2", "--json")
    assert_exit(result, 0)
    rows = json.loads(result.stdout)["results"]
    assert {r["runtime"] for r in rows} == {"litert", "onnxruntime"}


@pytest.mark.slow
def test_verify_exits_1_naming_the_failed_export(perturbed_copy):
    result = invoke("verify", "--artifacts", perturbed_copy, "--limit", "2000", "--json")
    assert_exit(result, 1)
    assert json.loads(result.stdout)["failures"]  # the JSON is still complete on stdout
    assert "model_float32.tflite" in result.stderr and "below Keras" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("verify", "--artifacts", "{empty}"), "no .tflite or .onnx exports"),
        (("export", "--artifacts", "{empty}"), "no such model; run `mnist-edge train` first"),
        (("bench", "--artifacts", "{empty}/absent"), "no such artifacts folder"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, args, message):
    result = invoke(*(a.format(empty=tmp_path) for a in args))
    assert_exit(result, 2)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("train", "--epochs", "0"),
        ("bench", "--runs", "-5"),
        ("verify", "--tolerance", "-1"),
        ("train", "--data", "/no/such/folder"),
    ],
)
def test_bad_options_exit_2(args):
    result = invoke(*args)
    assert_exit(result, 2)


def test_installed_entry_point_and_module():
    exe = subprocess.run(
        [sys.executable, "-m", "mnist_edge", "--version"], capture_output=True, text=True
    )
    assert exe.returncode == 0 and exe.stdout.strip() == f"mnist-edge {__version__}"
    # The console script pip installed beside this interpreter (the venv may not be on PATH).
    entry_point = Path(sys.executable).parent / "mnist-edge"
    script = subprocess.run([entry_point, "--help"], capture_output=True, text=True, check=False)
    assert script.returncode == 0 and "verify" in script.stdout
