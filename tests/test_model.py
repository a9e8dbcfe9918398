"""The seed architecture and a real (quick) training run."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.model import NUM_PARAMS, build_model, load_keras_model, train
from tests.conftest import QUICK_EPOCHS, QUICK_LIMIT, QUICK_MIN_ACCURACY


def test_architecture_is_the_seed():
    model = build_model()
    assert model.count_params() == NUM_PARAMS == 93_322
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [32, 64, 64]
    assert model.layers[-1].activation.__name__ == "softmax"


@pytest.mark.slow
def test_quick_training_reaches_stated_accuracy(trained):
    artifacts, result = trained
    assert result.test_accuracy >= QUICK_MIN_ACCURACY
    assert len(result.history) == QUICK_EPOCHS and result.train_images == QUICK_LIMIT
    record = json.loads((artifacts / "train.json").read_text())
    for key in ("epochs", "batch_size", "seed", "seconds", "test_accuracy", "test_loss"):
        assert key in record
    assert set(record["history"][0]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(record["data_sha256"]) in (1, 4)
    assert "tensorflow" in record["versions"]
    assert load_keras_model(artifacts / "model.keras").count_params() == NUM_PARAMS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "Invalid epochs 0"),
        ({"batch_size": -1}, "Invalid batch size -1"),
        ({"limit": 0}, "Invalid limit 0"),
        ({"limit": 5}, "need at least 10"),
        ({"learning_rate": 0.0}, "Invalid learning rate 0.0"),
        ({"schedule": "step"}, "Unknown schedule 'step'"),
    ],
)
def test_train_rejects_bad_options(tmp_path, mnist, kwargs, message):
    with pytest.raises(MnistEdgeError, match=message):
        train(mnist, tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_to_overwrite(tmp_path, mnist):
    (tmp_path / "model.keras").write_bytes(b"old")
    with pytest.raises(MnistEdgeError, match="already exists; pass --overwrite"):
        train(mnist, tmp_path, epochs=1, limit=100)
    assert (tmp_path / "model.keras").read_bytes() == b"old"


def test_load_keras_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no such model"):
        load_keras_model(tmp_path / "model.keras")
    bad = tmp_path / "model.keras"
    bad.write_text("not a zip")
    with pytest.raises(ModelError, match="cannot load the Keras model"):
        load_keras_model(bad)


@pytest.mark.slow
def test_cosine_schedule_is_recorded(tmp_path, mnist):
    result = train(mnist, tmp_path, epochs=1, limit=2000, learning_rate=0.002, schedule="cosine")
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["schedule"] == "cosine" and record["learning_rate"] == 0.002
    assert result.test_accuracy > 0.5


def test_other_seed_other_weights(tmp_path, mnist, trained):
    _, reference = trained
    other = train(mnist, tmp_path, epochs=1, limit=3000, seed=8)
    weights = load_keras_model(tmp_path / "model.keras").get_weights()
    assert other.seed == 8
    assert not np.array_equal(weights[0], load_keras_model(reference.model_path).get_weights()[0])


TENSORFLOW_LOG = re.compile(r"^[IWEF]\d{4} |oneDNN|cuInit|NodeDef|absl::|cuda", re.M)


@pytest.mark.slow
def test_train_and_export_print_no_tensorflow_log_lines_unless_verbose(tmp_path):
    """A fresh process, as a user runs it: only our own lines on stderr (-v shows TF's too)."""
    command = [sys.executable, "-m", "mnist_edge", "train", "--epochs", "1", "--limit", "500"]
    quiet = subprocess.run(
        [*command, "-a", str(tmp_path / "a")], capture_output=True, text=True, check=True
    )
    assert not TENSORFLOW_LOG.search(quiet.stderr), quiet.stderr[-2000:]
    assert re.search(r"^epoch 1/1  loss", quiet.stderr, re.M)
    # The TFLite converter saves a SavedModel on the way, and Keras lists its endpoints.
    exported = subprocess.run(
        [sys.executable, "-m", "mnist_edge", "export", "--formats", "tflite-float32"]
        + ["-a", str(tmp_path / "a"), "--calibration-size", "10"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Converting to model_float32.tflite" in exported.stderr
    assert not TENSORFLOW_LOG.search(exported.stderr), exported.stderr[-2000:]
    assert "Saved artifact" not in exported.stderr and "Endpoint" not in exported.stderr
    verbose = subprocess.run(
        [sys.executable, "-m", "mnist_edge", "-v", *command[3:], "-a", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert TENSORFLOW_LOG.search(verbose.stderr)  # the switch shows what it hides


@pytest.mark.slow
def test_bf16_training_saves_a_float32_model_and_float32_exports(tmp_path, mnist):
    """Mixed bfloat16 (forced, so any CPU runs it): recorded, twice the same weights, and
    nothing of it in model.keras or the TFLite graph."""
    from mnist_edge.export import export
    from mnist_edge.model_info import read_tflite

    runs = []
    for name in ("a", "b"):
        result = train(mnist, tmp_path / name, epochs=1, limit=2000, seed=3, precision="bf16")
        runs.append(load_keras_model(tmp_path / name / "model.keras"))
    assert result.precision == "bf16" and "asked for" in result.precision_reason
    assert result.recipe == "fast" and result.schedule == "one-cycle"
    first, second = (m.get_weights() for m in runs)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert {layer.dtype_policy.name for layer in runs[0].layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in first)
    export(tmp_path / "a", mnist, formats=["tflite-float32"], calibration_size=10)
    _, info = read_tflite(tmp_path / "a" / "model_float32.tflite")
    assert {t.dtype for t in info.tensors} <= {"float32", "int32"}
    assert not {"CAST", "DEQUANTIZE"} & {op for op, _ in info.opcodes}


def test_auto_precision_follows_the_cpu():
    """bf16 exactly where this CPU multiplies bfloat16 in hardware (AMX or AVX-512 BF16)."""
    from mnist_edge.machine import detect_machine
    from mnist_edge.model import choose_precision

    bf16_hardware = {"amx_bf16", "avx512_bf16"} & set(detect_machine().features)
    precision, reason = choose_precision("auto")
    assert precision == ("bf16" if bf16_hardware else "float32")
    assert reason.startswith("auto: ") and all(flag in reason for flag in bf16_hardware)
    assert choose_precision("float32")[0] == "float32"
    assert choose_precision("bf16")[0] == "bf16"


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ([], "float32"),
        (["avx2", "avx512f", "avx512_vnni"], "float32"),
        (["avx2", "avx512f", "avx512_bf16"], "bf16"),  # AMD Zen 4/5, Intel Cooper Lake
        (["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8"], "bf16"),  # Sapphire Rapids
        (["amx_bf16"], "bf16"),
    ],
)
def test_auto_precision_on_either_branch(monkeypatch, features, expected):
    """Both branches on any machine: the detected CPU replaced by one with the given flags."""
    import mnist_edge.machine
    from mnist_edge.model import choose_precision
    from mnist_edge.records import Machine

    fake = Machine(cpu="Test CPU", arch="x86_64", cores=2, features=features, os="Linux")
    monkeypatch.setattr(mnist_edge.machine, "detect_machine", lambda: fake)
    precision, reason = choose_precision("auto")
    assert precision == expected
    assert reason.startswith("auto: Test CPU ")
    if expected == "bf16":
        assert [f for f in ("amx_bf16", "avx512_bf16") if f in features] == [
            f for f in ("amx_bf16", "avx512_bf16") if f in reason
        ]
    else:
        assert "neither amx_bf16 nor avx512_bf16" in reason
    # Asked for, a precision is kept whatever the CPU has; the reason still states the flags.
    for asked in ("float32", "bf16"):
        assert choose_precision(asked) == (asked, f"asked for ({reason.removeprefix('auto: ')})")


@pytest.mark.parametrize("recipe", ["seed", "fast", "nope"])
def test_recipes_name_their_settings(recipe, tmp_path, mnist):
    from mnist_edge.options import RECIPES

    if recipe == "nope":
        with pytest.raises(MnistEdgeError, match="Unknown recipe 'nope'"):
            train(mnist, tmp_path, recipe=recipe)
        return
    assert set(RECIPES[recipe]) == {"epochs", "batch_size", "learning_rate", "schedule"}
