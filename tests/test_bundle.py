"""bundle: the device folder, checked on TFLM itself, on gcc, and on an older runtime.

Measured on the quick test model (seed 0, 10,000 images, 2 epochs), all 10,000 test images:
TFLM and litert-ref gave bit-identical int8 outputs on 9,995 (the other 5 one step apart, same
class), XNNPACK on 9,200 (up to 12 steps apart, 4 other classes); accuracy 0.952 on all three.
tflite-runtime 2.14 matched litert-ref bit for bit on 10,000 of 10,000 (int8 and float32).
The full 5-epoch model matched TFLM and litert-ref on 10,000 of 10,000.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_edge.arena import measure_arena
from mnist_edge.artifacts import MANIFEST
from mnist_edge.bundle import bundle
from mnist_edge.cli import app
from mnist_edge.data import to_float
from mnist_edge.errors import CheckFailed, MnistEdgeError, ModelError
from mnist_edge.files import sha256_file
from mnist_edge.proofs.legacy_runner import (
    TFLITE_RUNTIME_VERSION,
    run_in_tflite_runtime,
    tflite_runtime_python,
)
from mnist_edge.runtimes import LiteRTRunner
from mnist_edge.tensors import quantize
from tests.conftest import served_command, served_env, snapshot, tflm_served_from
from tests.helpers import assert_exit, assert_ran, need_module, run_command, skip_or_fail
from tests.test_csource import WRITEBACK

need_module("tflite_micro", "micro")

C_NAME = "mnist_model"
GOLDEN = 12


def _older_python() -> str | None:
    """A Python that tflite-runtime 2.14 has wheels for (3.8-3.11)."""
    if sys.version_info < (3, 12):
        return sys.executable
    for name in ("python3.11", "python3.10", "python3.9"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="module")
def legacy_venv() -> tuple[Path | None, str]:
    """tflite-runtime 2.14 in its own venv under the cache (numpy<2), made once, then reused.

    Gives (its python, "") or (None, why not), so the compatibility test can say why it skips.
    """
    python = tflite_runtime_python()
    if python.is_file():
        return python, ""
    base = _older_python()
    if base is None:
        return None, "no Python <= 3.11 here (tflite-runtime 2.14 has no newer wheels)"
    venv = python.parent.parent
    # Built beside its final place and renamed, so a concurrent run never sees half a venv.
    staging = venv.with_name(f"{venv.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    why = ""
    try:
        subprocess.run([base, "-m", "venv", staging], check=True, capture_output=True)
        subprocess.run(
            [staging / "bin" / "python", "-m", "pip", "install", "--quiet"]
            + ["--disable-pip-version-check", f"tflite-runtime=={TFLITE_RUNTIME_VERSION}"]
            + ["numpy<2"],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        os.rename(staging, venv)
    except subprocess.CalledProcessError as exc:
        why = (str(exc.stderr or "").strip().splitlines() or [str(exc)])[-1]
    except (subprocess.TimeoutExpired, OSError) as exc:
        why = str(exc)  # a concurrent run that won the rename leaves a usable venv: fine
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return (python, "") if python.is_file() else (None, why)


@pytest.fixture(scope="module")
def legacy_python(legacy_venv) -> Path | None:
    """The tflite-runtime 2.14 interpreter, or None."""
    return legacy_venv[0]


@pytest.fixture(scope="module")
def dynamic_model(exported, tmp_path_factory) -> Path:
    """A real dynamic-range export of the quick model (int8 weights, float activations)."""
    import tensorflow as tf

    from mnist_edge.model import load_keras_model

    source, _ = exported
    converter = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(source / "model.keras"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = tmp_path_factory.mktemp("dynamic") / "model_dynamic.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def bundled(exported, dynamic_model, legacy_python, tflm_reference, tmp_path_factory):
    """`mnist-edge bundle --json` run once as a real process: (artifacts, bundle folder, JSON).

    Its TFLM takes the session's outputs for the 10,000 images (conftest.served_command): it
    still builds its interpreter at the arena it measured and runs the first images itself.
    The installed console script runs `bundle` in test_verify_rows_are_reused_only_....
    """
    source, _ = exported
    artifacts = tmp_path_factory.mktemp("bundle") / "artifacts"
    shutil.copytree(source, artifacts)
    (artifacts / "verify.json").unlink(missing_ok=True)  # bundle measures every runtime itself
    shutil.copy(dynamic_model, artifacts)  # an export that cannot load in tflite-runtime 2.14
    out = artifacts.parent / "device"
    model = artifacts / "model_int8_mcu.tflite"
    command = served_command(tflm_reference, model, artifacts.parent)
    done = subprocess.run(
        [*command, "bundle", "-a", artifacts, "--out", out, "--c-name", C_NAME]
        # TFLM's files only: the C engine has its own tests (test_bundle_cengine.py).
        + ["--golden", str(GOLDEN), "--engine", "tflm", "--json"],
        capture_output=True,
        text=True,
        env=served_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)  # stdout is the JSON alone, even with TFLM's C prints
    return artifacts, out, payload


@pytest.mark.slow
def test_bundle_writes_every_file_and_the_manifest_lists_them(bundled):
    _, out, payload = bundled
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "mnist-edge-bundle/1"
    assert {k: v for k, v in payload.items() if k != "out"} == {
        k: v for k, v in manifest.items() if k != "format"
    }
    names = {f["name"] for f in manifest["files"]}
    assert names == {
        "model_int8_mcu.tflite",  # the MCU-lean model is what bundle ships by default
        "model_data.h",
        "model_data.cc",
        "golden_data.h",
        "golden_data.cc",
        "golden.npz",
        "labels.txt",
        "README.md",
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(names | {MANIFEST})
    for entry in manifest["files"]:
        assert sha256_file(out / entry["name"]) == entry["sha256"]
        assert (out / entry["name"]).stat().st_size == entry["bytes"]
    assert manifest["input"] == {
        "name": manifest["input"]["name"],
        "shape": [1, 28, 28, 1],
        "dtype": "int8",
        "scale": pytest.approx(1 / 255),
        "zero_point": -128,
    }
    assert manifest["output"]["shape"] == [1, 10] and manifest["output"]["dtype"] == "int8"
    assert manifest["preprocessing"]["int8_shortcut"] == "q = pixel - 128"
    assert (out / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    assert manifest["flash_bytes"] == (out / "model_int8_mcu.tflite").stat().st_size
    assert manifest["params"] == 93_322  # the seed architecture's Keras count
    assert manifest["macs"] == 2_794_240  # 26²·32·9 + 11²·64·288 + 3²·64·576 + 576·64 + 64·10
    assert manifest["versions"]["tensorflow"] and manifest["versions"]["tflite-micro"]
    with np.load(out / "golden.npz") as golden:
        assert golden["inputs"].dtype == np.int8 and golden["inputs"].shape == (GOLDEN, 28, 28, 1)
        assert golden["outputs"].dtype == np.int8 and golden["outputs"].shape == (GOLDEN, 10)
        assert golden["labels"].shape == (GOLDEN,)
    readme = (out / "README.md").read_text()
    assert "MicroMutableOpResolver<5>" in readme and "AddConv2D();" in readme  # MCU-lean
    assert "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES" in readme
    assert f"arena_size={manifest['arena_bytes']}" in readme


@pytest.mark.slow
@pytest.mark.needs_tools(("g++", "gcc"))
def test_model_data_cc_compiles_and_gives_back_the_exact_bytes(bundled, tmp_path):
    """gcc builds the bundle's own C files with a tiny program that writes them back out."""
    gcc = shutil.which("g++") or shutil.which("gcc")
    _, out, payload = bundled
    (tmp_path / "main.cc").write_text(WRITEBACK.replace("NAME", C_NAME))
    program = tmp_path / "writeback"
    sources = [tmp_path / "main.cc", out / "model_data.cc", out / "golden_data.cc"]
    subprocess.run(
        [gcc, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{out}", "-o", program, *sources],
        check=True,
    )
    done = subprocess.run(
        [program, tmp_path / "model.bin", tmp_path / "golden.bin"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "model.bin").read_bytes() == (out / "model_int8_mcu.tflite").read_bytes()
    with np.load(out / "golden.npz") as golden:
        expected = b"".join(golden[k].tobytes() for k in ("inputs", "outputs", "labels"))
    assert (tmp_path / "golden.bin").read_bytes() == expected
    assert done.stdout.split() == [str(payload["arena_bytes"]), str(GOLDEN)]


GOLDEN_CHECK = r"""
import json, sys
import numpy as np
folder, runtime, arena = sys.argv[1], sys.argv[2], int(sys.argv[3])
golden = np.load(f"{folder}/golden.npz")
model = f"{folder}/model_int8_mcu.tflite"
if runtime == "tflm":
    from tflite_micro.python.tflite_micro import runtime as micro
    interpreter = micro.Interpreter.from_file(model, arena_size=arena)
    outputs = []
    for x in golden["inputs"]:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    outputs = np.stack(outputs)
else:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interpreter = Interpreter(
        model_path=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for x in golden["inputs"]:  # the MCU-lean model takes one image at a time
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0])
    outputs = np.stack(outputs)
diff = np.abs(outputs.astype(int) - golden["outputs"].astype(int))
print(json.dumps({"identical": int(np.all(diff == 0, axis=1).sum()), "max": int(diff.max())}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["tflm", "litert-ref"])
def test_golden_vectors_reproduce_bit_exactly_in_a_fresh_process(bundled, runtime):
    """TFLM at exactly the manifest's arena_bytes, and LiteRT's builtin kernels, each alone."""
    _, out, payload = bundled
    done = subprocess.run(
        [sys.executable, "-c", GOLDEN_CHECK, out, runtime, str(payload["arena_bytes"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"identical": GOLDEN, "max": 0}


@pytest.mark.slow
def test_manifest_ops_match_an_independent_read_with_the_tflite_package(bundled):
    tflite = need_module("tflite", "dev")
    _, out, payload = bundled
    model = tflite.Model.GetRootAsModel((out / "model_int8_mcu.tflite").read_bytes(), 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    independent = [
        (tflite.opcode2name(max(c.BuiltinCode(), c.DeprecatedBuiltinCode())), c.Version())
        for c in codes
    ]
    assert [(op["name"], op["version"]) for op in payload["ops"]] == independent
    graph = model.Subgraphs(0)
    assert sum(op["count"] for op in payload["ops"]) == graph.OperatorsLength()
    names = {name for name, _ in independent}
    assert payload["tflm_resolver"] == f"tflite::MicroMutableOpResolver<{len(names)}>"
    assert all(op["min_runtime"] and op["tflm_call"] for op in payload["ops"])
    assert payload["min_runtime"]["version"] == payload["min_runtime"]["converter_metadata"]


@pytest.mark.slow
def test_tflm_accuracy_equals_litert_ref_on_the_10000_test_images(bundled):
    _, _, payload = bundled
    accuracy = {row["runtime"]: row for row in payload["accuracy"]}
    assert {row["images"] for row in accuracy.values()} == {10_000}
    assert accuracy["tflm"]["accuracy"] == accuracy["litert-ref"]["accuracy"]
    assert abs(accuracy["tflm"]["accuracy"] - payload["keras_accuracy"]) <= 0.005
    agreement = {(a["a"], a["b"]): a for a in payload["agreement"]}
    reference = agreement["tflm", "litert-ref"]
    # Measured 9,995 of 10,000 bit-identical, the rest one step apart, every class the same.
    assert reference["bit_identical"] >= 9_990 and reference["max_abs_diff"] <= 1
    assert reference["same_class"] == 10_000
    assert agreement["tflm", "litert"]["images"] == 10_000  # XNNPACK: recorded, not asserted


@pytest.mark.slow
def test_tflite_runtime_2_14_loads_float32_and_int8_and_matches(bundled, legacy_venv, mnist):
    """The older runtime: int8 bit for bit equal to litert-ref, float32 classes equal LiteRT's."""
    legacy_python, why = legacy_venv
    if legacy_python is None:
        skip_or_fail(f"a tflite-runtime {TFLITE_RUNTIME_VERSION} venv, not made here: {why}")
    artifacts, _, payload = bundled
    images = to_float(mnist.x_test)
    int8, float32 = artifacts / "model_int8.tflite", artifacts / "model_float32.tflite"
    ref = LiteRTRunner(int8, xnnpack=False)
    q = quantize(images, ref.input)
    version, (run8, run32) = run_in_tflite_runtime(legacy_python, [(int8, q), (float32, images)])
    assert version == TFLITE_RUNTIME_VERSION and run8.loaded and run32.loaded
    ref.set_batch(len(q))
    ref.feed_raw(q)
    ref.invoke()
    assert np.array_equal(run8.outputs, ref.fetch_raw())  # all 10,000 images, bit for bit
    litert = LiteRTRunner(float32).predict(images)
    assert np.array_equal(run32.outputs.argmax(axis=1), litert.argmax(axis=1))

    # The bundle proved the same in its own run, and named the export that cannot load there.
    proof = {p["runtime"]: p for p in payload["proven_runtimes"]}["tflite-runtime"]
    assert proof["loaded"] and proof["golden_identical"] == GOLDEN
    exports = {e["file"]: e for e in payload["exports"]}
    assert "loads (proven here)" in exports["model_float32.tflite"]["tflite_runtime"]
    dynamic = exports["model_dynamic.tflite"]
    assert dynamic["kind"] == "dynamic-range" and dynamic["min_runtime"] == "2.17.0"
    assert "fails (proven here)" in dynamic["tflite_runtime"]
    assert "FULLY_CONNECTED" in dynamic["tflite_runtime"] and "12" in dynamic["tflite_runtime"]
    assert dynamic["tflm"].startswith("refused: dynamic-range")


runner = CliRunner()


@pytest.mark.slow
def test_budgets_exit_1_naming_what_does_not_fit(exported_copy, tmp_path):
    model = exported_copy / "model_int8_mcu.tflite"
    flash = model.stat().st_size
    out = tmp_path / "fw"
    result = runner.invoke(
        app,
        ["-q", "bundle", "-a", str(exported_copy), "--out", str(out)]
        + ["--max-arena", "30000", "--max-flash", "100000"],
    )
    assert_exit(result, 1)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"flash: model_int8_mcu.tflite needs {flash:,} bytes (the model's bytes" in line
    assert f"{flash - 100_000:,} over --max-flash 100,000" in line
    assert "arena: model_int8_mcu.tflite needs" in line and "over --max-arena 30,000" in line
    assert not out.exists()  # nothing is written for a model that does not fit

    arena = measure_arena(model.read_bytes()).bytes
    with pytest.raises(
        CheckFailed, match=rf"^Does not fit: arena: model_int8_mcu.tflite needs {arena:,} bytes"
    ):
        bundle(exported_copy, None, out=out, max_arena=arena - 1)  # one byte short is enough
    assert not out.exists()


@pytest.fixture(scope="module")
def float16_model(exported, tmp_path_factory) -> Path:
    """A real float16 export of the quick model."""
    import tensorflow as tf

    from mnist_edge.model import load_keras_model

    source, _ = exported
    converter = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(source / "model.keras"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    path = tmp_path_factory.mktemp("float16") / "model_float16.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("dynamic", r"dynamic-range quantized .* TFLM has no hybrid kernels"),
        ("float16", r"float16 weights .* TFLM has no float16 kernels"),
        ("text", r"not a TFLite flatbuffer"),
        ("missing", r"no such model file"),
    ],
)
def test_models_tflm_cannot_run_are_refused_with_the_reason(
    request, exported_copy, tmp_path, which, message
):
    paths = {
        "text": tmp_path / "notes.tflite",
        "missing": tmp_path / "absent.tflite",
    }
    paths["text"].write_text("not a model")
    if which in ("dynamic", "float16"):
        paths[which] = request.getfixturevalue(f"{which}_model")
    with pytest.raises(ModelError, match=message):
        bundle(exported_copy, None, model=paths[which], out=tmp_path / "fw")
    result = runner.invoke(
        app, ["bundle", "-a", str(exported_copy), "-m", str(paths[which]), "-o", str(tmp_path)]
    )
    if which != "missing":  # typer's own exists=True check words that one
        assert_exit(result, 2)
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"golden": 0}, "Invalid golden count 0"),
        ({"c_name": "2fast"}, "Invalid --c-name '2fast'"),
        ({"c_name": "g-model"}, "expected a C identifier"),
        ({"max_arena": 0}, "Invalid --max-arena 0"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(MnistEdgeError, match=message):
        bundle(tmp_path, None, **kwargs)


@pytest.mark.slow
def test_bench_target_mcu_reports_tflm_with_arena_and_flash(bundled, mnist):
    """bench --target mcu: TFLM's latency beside the same arena the bundle states, and flash."""
    from mnist_edge.bench import bench

    artifacts, _, payload = bundled
    model = artifacts / "model_int8_mcu.tflite"
    report = bench(artifacts, mnist, models=[model], target="mcu", runs=20, warmup=2)
    (row,) = report.results
    assert report.target == "mcu" and row.runtime == "tflm" and row.threads == 1
    assert row.arena_bytes == payload["arena_bytes"] and row.flash_bytes == model.stat().st_size
    assert row.p50_us > 0 and row.batch_size == 1
    result = runner.invoke(
        app, ["bench", "-a", str(artifacts), "--target", "mcu", "--runtime", "litert"]
    )
    assert_exit(result, 2)
    assert "--target or --runtime, not both" in result.stderr


@pytest.mark.slow
def test_an_earlier_bundle_is_kept_unless_overwrite(bundled):
    artifacts, out, _ = bundled
    before = snapshot(out)
    with pytest.raises(MnistEdgeError, match="manifest.json already exists; pass --overwrite"):
        bundle(artifacts, None, out=out)
    assert snapshot(out) == before


@pytest.mark.slow
def test_verify_rows_are_reused_only_for_the_bytes_they_verified(
    exported_copy, mnist, tflm_reference, tmp_path
):
    from mnist_edge.verify import verify

    model = exported_copy / "model_int8_mcu.tflite"
    tflm_reference(model)  # the session's TFLM outputs (conftest.tflm_served_from)
    with tflm_served_from(tflm_reference):
        report = verify(exported_copy, mnist, models=[model], runtimes=["tflm", "litert-ref"])
    # `mnist-edge bundle` as a user runs it: the installed script, its table on stdout.
    out = tmp_path / "reused"
    done = run_command("bundle", "-a", exported_copy, "--out", out)
    assert_ran(done)
    manifest = json.loads((out / MANIFEST).read_text())
    sources = {a["runtime"]: a["source"] for a in manifest["accuracy"]}
    assert sources == {"tflm": "verify.json", "litert-ref": "verify.json"}
    table, key = {}, ""  # the table's rows: item -> value (a long value wraps onto more lines)
    for line in done.stdout.splitlines():
        if line.startswith("│"):
            item, value = (cell.strip() for cell in line.split("│")[1:3])
            key = item or key
            table[key] = f"{table.get(key, '')} {value}".strip()
    assert f"Bundle{out}:model_int8_mcu.tflite" in "".join(done.stdout.split())  # the title
    for row in report.results:
        assert table[f"accuracy {row.runtime}"] == f"{row.accuracy:.4f} on 10,000 (verify.json)"
    assert "accuracy litert" not in table  # not verified: not run again either
    assert table["TFLM arena"].startswith(f"{manifest['arena_bytes']:,} B measured")
    assert table["flash"].startswith(f"{model.stat().st_size:,} B")

    # The same name, other bytes (re-exported with other calibration): verify's rows don't count.
    from mnist_edge.bundle import _verify_rows
    from mnist_edge.export import export

    assert set(_verify_rows(exported_copy, model)[0]) == {"tflm", "litert-ref"}
    export(exported_copy, mnist, int8=True, calibration_size=10, overwrite=True)
    assert _verify_rows(exported_copy, model)[0] == {}


@pytest.mark.slow
def test_the_report_shows_the_device_section(bundled, tmp_path):
    from html import escape

    from mnist_edge.report import build_report

    artifacts, out, payload = bundled
    folder = tmp_path / "artifacts"
    shutil.copytree(artifacts, folder)
    shutil.copytree(out, folder / "bundle")
    page = build_report(folder)
    assert "Device" in page.sections
    html = (folder / "report.html").read_text()
    assert f"{payload['arena_bytes']:,} B measured" in html
    assert escape(payload["tflm_resolver"]) in html and "golden vectors" in html
