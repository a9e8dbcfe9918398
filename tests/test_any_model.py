"""Any int8 model through the device commands: MLPerf Tiny's keyword-spotting model (49×10×1 →
12, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D) with seeded random inputs, built with TFLM + CMSIS-NN for
the emulated Cortex-M4 and checked byte for byte against host TFLM; what a model MNIST does not
fit is told to pass.

The model is ../shared/models/mlperf-tiny/ beside the checkout (its SOURCES.md: where it comes
from, and what a prototype measured on it); real compilers, QEMU and TFLM, no mocks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.model_info import read_tflite
from tests.helpers import (
    REPO,
    SOURCES_DIR,
    assert_exit,
    needs_arm_tools,
    needs_sources,
    skip_or_fail,
)

MLPERF_TINY = REPO.parent / "shared" / "models" / "mlperf-tiny"
KWS = MLPERF_TINY / "kws_ref_model.tflite"
INPUTS = 3
# SOURCES.md's prototype measured TFLM + CMSIS-NN on the M4 at 7,699,963 instructions per
# inference for this model, and host TFLM's arena at 24,272 B (a 64-bit host's: an MCU needs
# less). Ours is the same library, board and compiler: within 1% of it.
KWS_M4_INSTRUCTIONS = 7_699_963
KWS_HOST_ARENA = 24_272


def _model(path: Path) -> Path:
    if not path.is_file():
        skip_or_fail(f"MLPerf Tiny's {path.name} in {path.parent}")
    return path


def test_a_model_mnist_does_not_fit_needs_inputs(tmp_path):
    result = CliRunner().invoke(
        app, ["firmware", "--model", str(_model(KWS)), "--out", str(tmp_path / "out")]
    )
    assert_exit(result, 2)
    assert "kws_ref_model.tflite takes (-1, 49, 10, 1) int8 inputs" in result.output
    assert "pass --inputs random:N" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def kws_m4(tmp_path_factory):
    """KWS on the Cortex-M4, TFLM with CMSIS-NN, three seeded random inputs, through the CLI."""
    out = tmp_path_factory.mktemp("kws-m4")
    result = CliRunner().invoke(
        app,
        [
            *("firmware", "--model", str(_model(KWS)), "--inputs", f"random:{INPUTS}"),
            *("--cpu", "cortex-m4", "--kernels", "cmsis-nn", "--engine", "tflm"),
            *("--sources", str(SOURCES_DIR), "--out", str(out)),
        ],
    )
    assert_exit(result, 0)
    assert f"Firmware for kws_ref_model.tflite: random:{INPUTS} (seed 0)" in result.output
    return out, json.loads((out / "firmware.json").read_text())


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_kws_on_the_m4_is_bit_exact_with_host_tflm(kws_m4):
    out, report = kws_m4
    (result,) = report["results"]
    assert report["inputs"] == f"random:{INPUTS} (seed 0)" and report["images"] == INPUTS
    assert result["golden_identical"] == result["golden_count"] == INPUTS
    assert result["mismatches"] == [] and result["exit_status"] == 0
    assert result["accuracy"] is None  # random inputs: no true class
    assert abs(result["instructions_per_inference"] / KWS_M4_INSTRUCTIONS - 1) < 0.01
    assert 16_000 < result["arena_bytes"] < KWS_HOST_ARENA
    # The profiler's tags: the model's own operators, in order.
    _, info = read_tflite(KWS)
    names = [layer["name"] for layer in result["layers"]]
    assert names == [f"{op.op}_{i}" for i, op in enumerate(info.operators)]
    total = sum(layer["instructions"] for layer in result["layers"])
    median = result["instructions_per_inference"]
    assert 0.99 * median < total <= median


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_kws_outputs_equal_host_tflm_on_a_rerun(kws_m4):
    """The ELF run again in plain QEMU: each OUT line against the tflite-micro interpreter's
    outputs for the same seeded inputs (not the golden file the firmware compared itself to)."""
    from mnist_edge.firmware.boards import BOARDS
    from mnist_edge.firmware.qemu import run_firmware
    from mnist_edge.inputs import inputs_for
    from mnist_edge.runtimes import TFLMRunner

    out, report = kws_m4
    project = out / report["results"][0]["project"]
    run = run_firmware(BOARDS["cortex-m4"], project / "firmware.elf", 120, cwd=project)
    printed = np.array([r.outputs for r in run.uart.images], dtype=np.int8)
    inputs = inputs_for(KWS, f"random:{INPUTS}", count=INPUTS)
    assert (project / "inputs.bin").read_bytes() == inputs.values.tobytes()
    expected = TFLMRunner(KWS, any_shape=True).predict_raw(inputs.values)
    assert printed.shape == (INPUTS, 12) and np.array_equal(printed, expected)


def test_verify_inputs_compares_every_runtime_with_host_tflm(tmp_path):
    """KWS on LiteRT (XNNPACK and builtin kernels): their bytes against host TFLM's reported,
    not required (LiteRT's kernels are not TFLM's); TFLM against itself: all identical."""
    result = CliRunner().invoke(
        app,
        [
            *("verify", "-a", str(tmp_path), "-m", str(_model(KWS))),
            *("-r", "tflm", "-r", "litert", "--inputs", "random:40", "--seed", "3"),
        ],
    )
    assert_exit(result, 0)
    record = json.loads((tmp_path / "identity.json").read_text())
    assert record["inputs"] == "random:40 (seed 3)" and record["failures"] == []
    rows = {row["runtime"]: row for row in record["results"]}
    assert rows["tflm"]["agreement"]["bit_identical"] == 40 and rows["tflm"]["must_match"]
    assert not rows["litert"]["must_match"] and rows["litert"]["accuracy"] is None
    # XNNPACK rounds its own way: some of its outputs differ from TFLM's, and are said to.
    assert rows["litert"]["agreement"]["bit_identical"] < 40
    assert "not required" in result.output


@pytest.mark.slow
@needs_sources
def test_verify_inputs_random_on_the_c_engine(exported, tmp_path):
    """The C engine on the quick MNIST model, fed seeded random int8 inputs (not images): each
    output byte against host TFLM's."""
    artifacts, _ = exported
    result = CliRunner().invoke(
        app,
        [
            *("verify", "-a", str(tmp_path), "-m", str(artifacts / "model_int8_mcu.tflite")),
            *("-r", "codegen", "--inputs", "random:300"),
        ],
    )
    assert_exit(result, 0)
    (row,) = json.loads((tmp_path / "identity.json").read_text())["results"]
    assert row["agreement"]["bit_identical"] == row["agreement"]["images"] == 300


def test_bench_times_any_model_on_its_own_inputs(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            *("bench", "-a", str(tmp_path), "-m", str(_model(KWS)), "-r", "tflm"),
            *("--inputs", "random:4", "--runs", "3", "--warmup", "1", "--no-roofline"),
        ],
    )
    assert_exit(result, 0)
    record = json.loads((tmp_path / "bench.json").read_text())
    (row,) = record["results"]
    assert (row["artifact"], row["runtime"], row["batch_size"]) == (KWS.name, "tflm", 1)
    assert row["macs"] == 2_656_768 and row["p50_us"] > 0
    assert record["settings"]["inputs"] == "--inputs random:4 (seed 0), fed raw"


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_kws_on_the_micro_bit_falls_back_to_the_plan_for_size(tmp_path):
    """The C engine on the 16 KB Cortex-M0: the plan for speed (16,000 B of arena) leaves no
    room for the stack, so the firmware is planned for size (convolutions in place) and runs
    bit-exact there."""
    from mnist_edge.codegen import generate

    result = CliRunner().invoke(
        app,
        [
            *("firmware", "--model", str(_model(KWS)), "--inputs", "random:2", "--json"),
            *("--cpu", "cortex-m0", "--engine", "codegen", "--sources", str(SOURCES_DIR)),
            *("--out", str(tmp_path / "out")),
        ],
    )
    assert_exit(result, 0)
    (found,) = json.loads(result.stdout)["results"]
    assert found["golden_identical"] == found["golden_count"] == 2
    assert found["arena_measured_on"] == "size plan"
    speed = generate(KWS.read_bytes(), KWS.name, isa="plain").plan.peak_bytes
    assert found["arena_bytes"] < 0.7 * speed and sum(found["ram"].values()) <= 16 * 1024


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_kws_planned_for_speed_does_not_fit_the_micro_bit_and_says_so(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            *("firmware", "--model", str(_model(KWS)), "--inputs", "random:2"),
            *("--cpu", "cortex-m0", "--engine", "codegen", "--optimise", "speed"),
            *("--sources", str(SOURCES_DIR), "--out", str(tmp_path / "out")),
        ],
    )
    assert_exit(result, 2)
    assert "cortex-m0 codegen cmsis-nn does not fit: RAM" in result.output
    assert not (tmp_path / "out" / "firmware.json").exists()
