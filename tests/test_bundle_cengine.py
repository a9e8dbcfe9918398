"""The bundle's C engine: c_engine/ builds with CMake on its own and its golden test passes; a
wrong golden byte fails it; the manifest states the plan and the check against TFLM. The C
engine as shipped, built by its own CMakeLists.txt, gives TFLM's outputs (tflite-micro's own
interpreter, run by the tests) on all 10,000 test images, and one planted wrong byte is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.bundle import bundle
from mnist_edge.files import sha256_file
from tests.conftest import tflm_served_from
from tests.helpers import SOURCES_DIR, need_module, needs_sources, planted_source


def _vela_installed() -> bool:
    from importlib import metadata

    try:
        metadata.version("ethos-u-vela")
    except metadata.PackageNotFoundError:
        return False
    return True


VELA = _vela_installed()
pytestmark = [needs_sources, pytest.mark.needs_tools("cmake", "ctest", ("cc", "gcc"))]


@pytest.fixture(scope="module")
def c_bundle(exported, mnist, tflm_reference, tmp_path_factory):
    artifacts, _ = exported
    out = tmp_path_factory.mktemp("c-bundle")
    # One bundle run serves every test here, the NPU's included; TFLM's outputs on the 10,000
    # images come from the session's (its first ones still computed here, at the bundle's
    # arena: conftest.tflm_served_from).
    tflm_reference(artifacts / "model_int8_mcu.tflite")
    npu = ["ethos-u55-128"] if VELA else []
    with tflm_served_from(tflm_reference):
        result = bundle(
            artifacts, mnist, out=out, overwrite=True, sources=SOURCES_DIR, golden=20, npu=npu
        )
    return out, result


def _cmake(folder: Path) -> subprocess.CompletedProcess:
    """The bundle README's three commands, as a user runs them."""
    for command in (
        ["cmake", "-S", ".", "-B", "build"],
        ["cmake", "--build", "build"],
        ["ctest", "--test-dir", "build", "--output-on-failure"],
    ):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return done
    return done


def test_the_c_engine_builds_with_cmake_and_passes_its_golden_test(c_bundle):
    out, result = c_bundle
    folder = out / "c_engine"
    assert {"model.h", "model.c", "CMakeLists.txt", "test_golden.c"} <= {
        p.name for p in folder.iterdir()
    }
    assert (folder / "cmsis-nn" / "LICENSE").is_file()
    done = _cmake(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100% tests passed" in done.stdout
    # The manifest: both engines, the C engine bit-identical to TFLM on every test image.
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engines"] == ["tflm", "codegen"] and result.c_engine is not None
    check = manifest["c_engine"]["host_check"]
    assert check["images"] == 10_000 and check["bit_identical"] == 10_000
    assert manifest["c_engine"]["arena_bytes"] < manifest["c_engine"]["lower_bound_bytes"]
    names = {f["name"] for f in manifest["files"]}
    assert "c_engine/model.c" in names and "model_data.h" in names


# A user's program on the shipped engine: every input of a file through <prefix>_infer.
HARNESS_C = r"""
#include <stdio.h>
#include "model.h"
int main(int argc, char **argv) {
    static int8_t x[MNIST_EDGE_INPUT_BYTES], y[MNIST_EDGE_OUTPUT_BYTES];
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) return 2;
    while (fread(x, 1, sizeof x, in) == sizeof x) {
        if (mnist_edge_infer(x, y) != 0 || fwrite(y, 1, sizeof y, out) != sizeof y) return 1;
    }
    return fclose(out) != 0;
}
"""


def shipped_engine_outputs(folder: Path, inputs: np.ndarray) -> np.ndarray:
    """The bundle's c_engine/ built by its own CMakeLists.txt (a copy in `folder`), linked
    with HARNESS_C and run on `inputs`: its outputs, N x output bytes."""
    for command in (["cmake", "-S", ".", "-B", "build"], ["cmake", "--build", "build"]):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (folder / "harness.c").write_text(HARNESS_C)
    (library,) = (folder / "build").glob("lib*_engine.a")
    compiler = shutil.which("cc") or shutil.which("gcc")
    command = [compiler, "-std=c99", "-O2", "-I.", "-Icmsis-nn/Include", "harness.c", library]
    done = subprocess.run(
        [*map(str, command), "-o", "harness"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (folder / "inputs.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
    done = subprocess.run(
        ["./harness", "inputs.bin", "outputs.bin"], cwd=folder, capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.fromfile(folder / "outputs.bin", dtype=np.int8).reshape(len(inputs), -1)


def differing_images(outputs: np.ndarray, expected: np.ndarray) -> list[int]:
    """The images on which any output byte differs."""
    return [int(i) for i in np.flatnonzero((outputs != expected.reshape(outputs.shape)).any(1))]


PLANTED = 4321  # the test image a planted engine gets one byte wrong (past the golden 20)


def test_the_shipped_c_engine_gives_tflms_outputs_on_every_test_image(
    c_bundle, tflm_reference, exported, tmp_path
):
    out, _ = c_bundle
    artifacts, _ = exported
    reference = tflm_reference(artifacts / "model_int8_mcu.tflite")
    assert sha256_file(out / "model_int8_mcu.tflite") == reference.sha256  # the bytes shipped
    folder = tmp_path / "c_engine"
    shutil.copytree(out / "c_engine", folder, ignore=shutil.ignore_patterns("build"))
    outputs = shipped_engine_outputs(folder, reference.inputs)
    assert differing_images(outputs, reference.outputs) == []
    # The manifest's figure is what was measured here, not only what the bundle compared.
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["c_engine"]["host_check"]["bit_identical"] == len(outputs) == 10_000


def test_a_planted_wrong_byte_in_the_shipped_engine_is_caught(
    c_bundle, tflm_reference, exported, tmp_path
):
    out, _ = c_bundle
    artifacts, _ = exported
    reference = tflm_reference(artifacts / "model_int8_mcu.tflite")
    folder = tmp_path / "c_engine"
    shutil.copytree(out / "c_engine", folder, ignore=shutil.ignore_patterns("build"))
    source = (folder / "model.c").read_text()
    (folder / "model.c").write_text(planted_source(source, reference.inputs[PLANTED]))
    outputs = shipped_engine_outputs(folder, reference.inputs)
    same = np.flatnonzero((reference.inputs == reference.inputs[PLANTED]).all(axis=(1, 2, 3)))
    assert differing_images(outputs, reference.outputs) == same.tolist() == [PLANTED]
    # The bundle's own golden test (its first 20 images) cannot see it: the 10,000 here can.
    done = subprocess.run(
        ["ctest", "--test-dir", "build"], cwd=folder, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_a_wrong_golden_byte_fails_the_c_engines_test(c_bundle, tmp_path):
    out, _ = c_bundle
    folder = tmp_path / "c_engine"
    # The bundle's folder as shipped: no build of the other test's in it.
    shutil.copytree(out / "c_engine", folder, ignore=shutil.ignore_patterns("build"))
    source = (folder / "test_golden.c").read_text()
    head, _, tail = source.partition("golden_outputs[GOLDEN_COUNT]")
    first_row = tail.index("{", tail.index("{") + 1)
    value_end = tail.index(",", first_row)
    value = int(tail[first_row + 1 : value_end])
    tail = tail[: first_row + 1] + str(value + 1 if value < 127 else value - 1) + tail[value_end:]
    (folder / "test_golden.c").write_text(head + "golden_outputs[GOLDEN_COUNT]" + tail)
    done = _cmake(folder)
    assert done.returncode != 0
    assert "golden 0, output 0" in done.stdout and "19/20 golden vectors identical" in done.stdout


def test_the_npu_model_ships_with_its_estimate_marked_as_one(c_bundle):
    need_module("ethosu.vela", "npu")  # else c_bundle compiled nothing for the NPU
    out, result = c_bundle
    (estimate,) = result.npu
    compiled = out / "npu" / "ethos-u55-128" / "model_int8_mcu_vela.tflite"
    assert sha256_file(compiled) == estimate.compiled_sha256
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["npu"][0]["basis"] == "estimate (vela)"
    assert "npu/ethos-u55-128/model_int8_mcu_vela.tflite" in {f["name"] for f in manifest["files"]}
    readme = (out / "README.md").read_text()
    assert "## Arm Ethos-U NPU (compiled by vela; its figures are estimates)" in readme


def _readme_problems(text: str) -> list[str]:
    """What in a rendered bundle README is not the README's own text: template fields left
    unfilled, Python source outside a code block, unbalanced or unlabelled code fences."""
    problems = []
    if "${" in text:
        problems.append("an unfilled template field")
    fences = [line for line in text.splitlines() if line.startswith("```")]
    if len(fences) % 2:
        problems.append("an unclosed code fence")
    openings = fences[::2]
    if any(fence.strip() not in ("```python", "```cpp", "```c", "```bash") for fence in openings):
        problems.append(f"a code block of an unexpected kind: {openings}")
    prose = "".join(part for i, part in enumerate(text.split("```")) if i % 2 == 0)
    for marker in ('"""', "\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nreturn "):
        if marker in prose:
            problems.append(f"{marker.strip()!r} outside a code block")
    return problems


def test_the_readme_is_its_own_text_and_says_how_to_build_the_c_engine(c_bundle):
    out, result = c_bundle
    text = (out / "README.md").read_text()
    assert _readme_problems(text) == []
    assert "## The C engine (no interpreter): `c_engine/`" in text
    assert f"one static arena of {result.c_engine.arena_bytes:,} bytes" in text
    assert "cmake -S . -B build && cmake --build build && ctest --test-dir build" in text
    # The check itself fails on what the template once shipped: Python after the last fence.
    assert _readme_problems(text + '"""\n\n\ndef _check_model(model):\n') != []
