"""bundle --inputs: the device bundle of any int8 model, on seeded random inputs or a .npy file.

MLPerf Tiny's keyword-spotting model (49×10×1 int8 → 12, ../shared/models/mlperf-tiny/ beside
the checkout) bundled through the CLI: its golden vectors are the given inputs and host TFLM's
outputs on them, computed here again with the tflite-micro interpreter (not the product's
runner); no labels, so no accuracy, and the table says so; the C engine's own CMake project
passes its golden test; the platform proofs, which run MNIST's images, are not run, and the
manifest says why. Bad input is one line, exit 2, and no folder. Real runs, no mocks.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_edge.artifacts import MANIFEST
from mnist_edge.cli import app
from tests.helpers import REPO, SOURCES_DIR, assert_exit, need_module, skip_or_fail

MLPERF_TINY = REPO.parent / "shared" / "models" / "mlperf-tiny"
KWS = MLPERF_TINY / "kws_ref_model.tflite"
AD = MLPERF_TINY / "ad01_int8.tflite"
COUNT = 5
INPUT_BYTES, OUTPUT_BYTES = 49 * 10 * 1, 12

runner = CliRunner()


def _model(path: Path) -> Path:
    if not path.is_file():
        skip_or_fail(f"MLPerf Tiny's {path.name} in {path.parent}")
    return path


def _engines() -> list[str]:
    """Both engines where the pinned sources are here; else TFLM's alone (nothing downloaded)."""
    if SOURCES_DIR.is_dir():
        return ["--sources", str(SOURCES_DIR)]
    return ["--engine", "tflm"]


def tflm_outputs(model: Path, inputs: np.ndarray) -> np.ndarray:
    """Host TFLM's raw outputs, from the tflite-micro interpreter itself (reference kernels)."""
    runtime = need_module("tflite_micro.python.tflite_micro.runtime", "micro")
    interpreter = runtime.Interpreter.from_file(str(model), arena_size=256 * 1024)
    outputs = []
    for x in inputs:
        interpreter.set_input(x[np.newaxis], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    return np.stack(outputs)


def table_rows(text: str) -> dict[str, str]:
    """A rich table's rows: item -> value (a long value wraps onto more lines)."""
    rows, key = {}, ""
    for line in text.splitlines():
        if line.startswith("│"):
            item, value = (cell.strip() for cell in line.split("│")[1:3])
            key = item or key
            rows[key] = f"{rows.get(key, '')} {value}".strip()
    return rows


@pytest.fixture(scope="module")
def kws_bundle(tmp_path_factory):
    """`mnist-edge bundle` of KWS on five seeded random inputs, with a proof asked for: (the
    bundle folder, its manifest, the rows of the table it printed)."""
    work = tmp_path_factory.mktemp("kws-bundle")
    out = work / "kws"
    result = runner.invoke(
        app,
        [
            *("bundle", "-a", str(work / "artifacts"), "-m", str(_model(KWS))),
            *("--inputs", f"random:{COUNT}", "--out", str(out)),
            *("--prove", "tflite-runtime-2.14", *_engines()),
        ],
        env={"COLUMNS": "200"},
    )
    assert_exit(result, 0)
    manifest = json.loads((out / MANIFEST).read_text())
    return out, manifest, table_rows(result.stdout)


def test_golden_vectors_are_the_inputs_and_host_tflms_outputs(kws_bundle):
    out, manifest, _ = kws_bundle
    with np.load(out / "golden.npz") as golden:
        assert sorted(golden.files) == ["inputs", "outputs"]  # no labels: none were given
        inputs, outputs = golden["inputs"], golden["outputs"]
    assert inputs.dtype == np.int8 and inputs.shape == (COUNT, 49, 10, 1)
    assert [len(x.tobytes()) for x in inputs] == [INPUT_BYTES] * COUNT
    assert outputs.dtype == np.int8 and outputs.shape == (COUNT, OUTPUT_BYTES)
    assert len(np.unique(inputs)) > 200  # seeded random over the int8 range, not one image
    assert np.array_equal(outputs, tflm_outputs(KWS, inputs))
    assert manifest["golden"]["count"] == COUNT
    assert manifest["golden"]["inputs_from"] == f"random:{COUNT} (seed 0)"
    assert manifest["golden"]["labels"] == "none"
    # The C arrays hold the same vectors, shaped as the model's.
    header = (out / "golden_data.h").read_text()
    assert f"golden_count = {COUNT};" in header
    assert f"golden_input_size = {INPUT_BYTES};  // 49×10×1, row-major" in header
    assert f"golden_output_size = {OUTPUT_BYTES};" in header
    source = (out / "golden_data.cc").read_text()
    assert f"random:{COUNT} (seed 0), no labels" in source.splitlines()[0]


def test_no_labels_means_no_accuracy_and_the_table_says_so(kws_bundle):
    out, manifest, table = kws_bundle
    assert manifest["accuracy"] == [] and manifest["keras_accuracy"] is None
    assert manifest["labels"] == [] and not (out / "labels.txt").exists()
    assert table["accuracy"] == f"none: the golden inputs (random:{COUNT} (seed 0)) have no labels"
    assert "accuracy keras" not in table
    readme = " ".join((out / "README.md").read_text().split())
    assert f"Accuracy: none measured: the golden inputs (random:{COUNT} (seed 0)) have no" in readme
    assert "pixel" not in readme and "digits" not in readme and "MNIST test images" not in readme


def test_preprocessing_states_the_input_tensor(kws_bundle):
    out, manifest, _ = kws_bundle
    runtime = need_module("tflite_micro.python.tflite_micro.runtime", "micro")
    detail = runtime.Interpreter.from_file(str(KWS)).get_input_details(0)
    scale = float(detail["quantization_parameters"]["scales"][0])
    zero_point = int(detail["quantization_parameters"]["zero_points"][0])
    pre = manifest["preprocessing"]
    assert pre["shape"][1:] == [49, 10, 1] and pre["dtype"] == "int8"
    assert pre["scale"] == pytest.approx(scale) and pre["zero_point"] == zero_point
    assert "pixel" not in json.dumps(pre) and "int8_shortcut" not in pre
    readme = (out / "README.md").read_text()
    assert f"Input: int8 [-1, 49, 10, 1], scale {pre['scale']}, zero point {zero_point}." in readme
    assert "28 * 28" not in readme and "for (int i = 0; i < 490; ++i)" in readme


def test_every_runtime_that_runs_it_is_compared_with_host_tflm(kws_bundle):
    _, manifest, table = kws_bundle
    agreement = {a["b"]: a for a in manifest["agreement"]}
    assert {"litert-ref", "litert"} <= set(agreement)
    assert {a["images"] for a in agreement.values()} == {COUNT}
    proven = {p["runtime"]: p for p in manifest["proven_runtimes"]}
    assert proven["tflm"]["golden_identical"] == COUNT
    assert proven["litert-ref"]["loaded"] and proven["litert-ref"]["golden_count"] == COUNT
    identical = agreement["litert-ref"]["bit_identical"]
    assert table["tflm vs litert-ref"].startswith(f"bit-identical {identical}/{COUNT}")


def test_platform_proofs_are_not_run_and_the_manifest_says_why(kws_bundle):
    out, manifest, table = kws_bundle
    assert manifest["proven"] == []
    (why,) = manifest["not_proven"]
    assert why.startswith("tflite-runtime-2.14: not run: the platform proofs run MNIST's")
    assert "kws_ref_model.tflite takes int8 49×10×1 inputs" in why
    assert table["not proven"] == why
    assert "Not proven on tflite-runtime-2.14" in (out / "README.md").read_text()


def test_the_c_engine_is_built_from_the_same_golden_vectors_and_agrees(kws_bundle, tmp_path):
    out, manifest, _ = kws_bundle
    if "codegen" not in manifest["engines"]:
        skip_or_fail(f"the C engine, not bundled here: {manifest['not_bundled'] or 'no sources'}")
    check = manifest["c_engine"]["host_check"]
    assert check["images"] == check["bit_identical"] == COUNT
    agreement = {a["b"]: a for a in manifest["agreement"]}
    assert agreement["codegen"]["bit_identical"] == COUNT
    test = (out / "c_engine" / "test_golden.c").read_text()
    assert f"#define GOLDEN_COUNT {COUNT}" in test and "(int8, 49x10x1)" in test
    if missing := [tool for tool in ("cmake", "ctest") if shutil.which(tool) is None]:
        skip_or_fail(f"{', '.join(missing)} not installed (apt-get install cmake)")
    folder = tmp_path / "c_engine"
    shutil.copytree(out / "c_engine", folder)
    for command in (
        ["cmake", "-S", ".", "-B", "build"],
        ["cmake", "--build", "build"],
        ["ctest", "--test-dir", "build", "--output-on-failure"],
    ):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "100% tests passed" in done.stdout


def test_a_npy_file_of_the_models_shape_is_bundled_as_given(tmp_path):
    """AD (640 int8 in, 640 out): a .npy of three inputs, TFLM alone; its outputs are TFLM's."""
    values = np.random.default_rng(7).integers(-128, 128, (3, 640), dtype=np.int8)
    np.save(tmp_path / "inputs.npy", values)
    out = tmp_path / "ad"
    result = runner.invoke(
        app,
        [
            *("bundle", "-a", str(tmp_path / "artifacts"), "-m", str(_model(AD))),
            *("--inputs", str(tmp_path / "inputs.npy"), "--out", str(out), "--engine", "tflm"),
        ],
    )
    assert_exit(result, 0)
    with np.load(out / "golden.npz") as golden:
        assert np.array_equal(golden["inputs"], values)
        assert golden["outputs"].shape == (3, 640)
        assert np.array_equal(golden["outputs"], tflm_outputs(AD, values))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["golden"]["inputs_from"] == "inputs.npy (3)"


def test_the_seed_picks_the_random_inputs(tmp_path):
    from mnist_edge.bundle import bundle

    kws, runs = _model(KWS), []
    for run, seed in enumerate((0, 0, 1)):
        out = tmp_path / f"run-{run}"
        bundle(tmp_path, None, model=kws, out=out, inputs="random:2", seed=seed, engines=["tflm"])
        with np.load(out / "golden.npz") as golden:
            runs.append(golden["inputs"])
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def with_operator(data: bytes, old: str, new: str) -> bytes:
    """A model's flatbuffer with every `old` operator code made `new` (the same tensors)."""
    from ai_edge_litert import schema_py_generated as schema

    codes = schema.BuiltinOperator
    buffer = bytearray(data)
    model = schema.Model.GetRootAs(buffer, 0)
    changed = 0
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != getattr(codes, old):
            continue
        # OperatorCode's fields: deprecated_builtin_code (int8, vtable slot 4), builtin_code
        # (int32, slot 10); where present, each is written in place.
        for slot, form in ((4, "<b"), (10, "<i")):
            if offset := code._tab.Offset(slot):
                struct.pack_into(form, buffer, code._tab.Pos + offset, getattr(codes, new))
                changed += 1
    assert changed, f"no {old} in the model"
    return bytes(buffer)


def test_help_shows_an_inputs_example():
    result = runner.invoke(app, ["bundle", "--help"], env={"COLUMNS": "200"})
    assert_exit(result, 0)
    assert "--inputs random:20" in result.stdout


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong.npy", r"Received int8 \(3, 28, 28, 1\)\. Note: expected int8 \(N, 49, 10, 1\)"),
        ("nonsense", r"--inputs 'nonsense': expected mnist\[:N\], random\[:N\] or a \.npy file"),
        ("random:0", r"--inputs 'random:0': expected a count from 1 to"),
        ("random:20000", r"20,000 inputs; the golden vectors \(C arrays\) take at most 10,000"),
        (None, r"takes \(-1, 49, 10, 1\) int8 inputs, not MNIST's 28×28×1 images: pass --inputs"),
        ("unsupported", r"operator HARD_SWISH is not supported by the C engine .* --engine tflm"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_folder(tmp_path, case, message):
    import re

    model, inputs = _model(KWS), []
    if case == "wrong.npy":
        np.save(tmp_path / case, np.zeros((3, 28, 28, 1), np.int8))
        inputs = ["--inputs", str(tmp_path / case)]
    elif case == "unsupported":
        model = tmp_path / "kws_hard_swish.tflite"
        model.write_bytes(with_operator(KWS.read_bytes(), "SOFTMAX", "HARD_SWISH"))
        inputs = ["--inputs", "random:2"]
    elif case is not None:
        inputs = ["--inputs", case]
    out = tmp_path / "out" / "bundle"
    result = runner.invoke(
        app, ["bundle", "-a", str(tmp_path), "-m", str(model), "--out", str(out), *inputs]
    )
    assert_exit(result, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr
    assert not (tmp_path / "out").exists()


def test_a_failure_after_the_runs_began_leaves_no_folder(tmp_path):
    """The C engine asked for alone, its CMSIS-NN archive absent from --sources: TFLM has run
    and the folder was made when the build fails; the folder goes again (nothing downloaded)."""
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out" / "bundle"
    result = runner.invoke(
        app,
        [
            *("-q", "bundle", "-a", str(tmp_path), "-m", str(_model(KWS)), "--inputs", "random:2"),
            *("--engine", "codegen", "--sources", str(tmp_path / "empty"), "--out", str(out)),
        ],
    )
    assert_exit(result, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CMSIS-NN's pinned sources" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
