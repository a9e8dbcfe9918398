"""The C engine on the device: the quick int8 model compiled to C with CMSIS-NN, built without
TFLM for Cortex-M4 (CMSIS-NN's DSP path) and Cortex-M0 (its plain-C path, on a micro:bit's 16 KB
of RAM), run in QEMU on images read from the host, and checked bit for bit against host TFLM.

Real arm-none-eabi-gcc, real qemu-system-arm, no mocks. CMSIS-NN comes from the pinned archives
in ../shared/third_party (or $MNIST_EDGE_FIRMWARE_SOURCES), extracted into the tests' cache.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError
from mnist_edge.firmware.boards import BOARDS
from mnist_edge.firmware.build import RESERVED_SECTIONS, elf_sections
from mnist_edge.firmware.cengine import (
    CFirmwareResult,
    build_c_firmware,
    component_of,
    data_files,
)
from tests.helpers import SOURCES_DIR, needs_arm_tools, needs_sources

IMAGES = 5
MODEL = "model_int8_mcu.tflite"
# TFLM with CMSIS-NN on the same CPU (FIRMWARE.md): the engine calls the same kernels.
M4_TFLM_CMSIS_NN_INSTRUCTIONS = 6_810_000


@pytest.fixture(scope="session")
def images(exported, mnist):
    """The model, its int8 inputs for the first test images, host TFLM's outputs, the labels."""
    from mnist_edge.data import to_float
    from mnist_edge.runtimes.tflm_runner import TFLMRunner
    from mnist_edge.tensors import quantize

    model = exported[0] / MODEL
    runner = TFLMRunner(model)
    inputs = quantize(to_float(mnist.x_test[:IMAGES]), runner.input)
    return model.read_bytes(), inputs, runner.predict_raw(inputs), mnist.y_test[:IMAGES]


@pytest.fixture(scope="session")
def tools():
    from mnist_edge.firmware.build import find_toolchain
    from mnist_edge.firmware.sources import prepare_sources

    return prepare_sources(SOURCES_DIR), find_toolchain()


def _build(images, tools, cpu: str, out: Path, golden=None, **options) -> CFirmwareResult:
    model, inputs, host_golden, labels = images
    tree, toolchain = tools
    return build_c_firmware(
        model,
        MODEL,
        BOARDS[cpu],
        out,
        inputs,
        host_golden if golden is None else golden,
        labels,
        tree,
        toolchain,
        timeout_s=300,
        **options,
    )


@pytest.fixture(scope="session")
def m4(images, tools, tmp_path_factory) -> CFirmwareResult:
    return _build(images, tools, "cortex-m4", tmp_path_factory.mktemp("c-m4"))


@pytest.fixture(scope="session")
def m0(images, tools, tmp_path_factory) -> CFirmwareResult:
    return _build(images, tools, "cortex-m0", tmp_path_factory.mktemp("c-m0"))


def _multiply_accumulates(elf: Path) -> int:
    """SMLAD instructions in the ELF: CMSIS-NN's DSP path leaves them, its plain C none."""
    listing = subprocess.run(
        ["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    return sum("\tsmlad" in line for line in listing.splitlines())


@pytest.mark.parametrize("fixture, dsp", [("m4", True), ("m0", False)])
@needs_sources
@needs_arm_tools
def test_engine_is_bit_exact_with_host_tflm(request, fixture, dsp):
    result = request.getfixturevalue(fixture)
    assert result.passed and result.exit_status == 0
    assert result.golden_identical == result.golden_count == result.images == IMAGES
    assert result.correct >= IMAGES - 1  # the quick model: about 95% accurate
    assert (_multiply_accumulates(result.elf) > 0) == dsp
    assert 0 < result.instructions_min <= result.instructions_per_inference
    assert result.instructions_per_inference <= result.instructions_max
    if dsp:  # the same kernels as TFLM's, without the interpreter
        assert result.instructions_per_inference < M4_TFLM_CMSIS_NN_INSTRUCTIONS


@needs_sources
@needs_arm_tools
def test_engine_fits_the_microbit(m0):
    # QEMU maps only the micro:bit's 16 KB of RAM: a run that finished touched nothing past it.
    board = BOARDS["cortex-m0"]
    model_h = (m0.project / "model.h").read_text()
    arena = int(re.search(r"#define MNIST_EDGE_ARENA_BYTES (\d+)", model_h).group(1))
    assert m0.arena_bytes == m0.ram.engine_buffers == arena
    assert 0 < m0.ram.stack < m0.stack_reserved_bytes
    assert m0.ram.total <= board.data.length
    static = m0.ram.engine_buffers + m0.ram.harness_statics
    assert static + m0.stack_reserved_bytes <= board.data.length
    assert m0.flash.total <= board.code.length


@needs_sources
@needs_arm_tools
def test_flash_and_ram_split_adds_up(m4):
    sections = [s for s in elf_sections(m4.elf) if s.name not in RESERVED_SECTIONS]
    assert m4.flash.total == sum(s.size for s in sections if s.loaded)
    static = sum(s.size for s in sections if s.writable)
    assert m4.ram.engine_buffers + m4.ram.harness_statics == static
    # The weights dominate the engine's flash; the harness is a few KB without stdio.
    assert m4.flash.engine_constants > 90_000
    assert 5_000 < m4.flash.engine_code < 30_000
    assert m4.flash.harness < 8_000


@needs_sources
@needs_arm_tools
def test_shipped_project_runs_with_make(m4):
    done = subprocess.run(
        ["make", "-s", "-C", str(m4.project), "run"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"RESULT golden {IMAGES}/{IMAGES} " in done.stdout


@needs_sources
@needs_arm_tools
def test_a_corrupted_golden_byte_exits_1(images, tools, tmp_path):
    golden = images[2].copy()
    golden[3, 7] ^= 1
    result = _build(images, tools, "cortex-m4", tmp_path / "project", golden=golden)
    assert result.exit_status == 1 and not result.passed
    assert result.golden_identical == IMAGES - 1


@needs_sources
@needs_arm_tools
def test_ram_overflow_is_one_line_with_the_bytes(images, tools, tmp_path):
    # The STM32VLDISCOVERY has 8 KB of RAM: the engine fits, not with an 8 KB stack.
    with pytest.raises(MnistEdgeError, match=r"does not fit: RAM .*8,192 bytes\) overflowed by"):
        _build(images, tools, "cortex-m3", tmp_path / "project", stack_size=8192)


# ----------------------------------------------------------------------------- no build needed


@pytest.mark.parametrize(
    "member, component",
    [
        ("build/model.o", "engine"),
        ("build/cmsis-nn/Source/ConvolutionFunctions/arm_convolve_s8.o", "engine"),
        ("build/main.o", "harness"),
        ("build/board.o", "harness"),
        ("/usr/lib/arm-none-eabi/lib/thumb/v7e-m+fp/hard/libc.a(libc_a-memcpy.o)", "harness"),
        ("/usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v6-m/nofp/libgcc.a(_udivmoddi4.o)", "harness"),
    ],
)
def test_objects_are_engine_or_harness(member, component):
    assert component_of(member) == component


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: {**a, "inputs": a["inputs"].astype(np.uint8)}, "int8"),
        (lambda a: {**a, "labels": a["labels"][:1]}, "as many golden outputs, labels"),
    ],
)
def test_bad_image_arrays_are_one_line(change, match):
    arrays = {
        "inputs": np.zeros((2, 784), np.int8),
        "golden": np.zeros((2, 10), np.int8),
        "labels": np.zeros(2, np.uint8),
        "indices": np.arange(2),
    }
    with pytest.raises(MnistEdgeError, match=match):
        data_files(**change(arrays))


def test_image_files_are_raw_and_little_endian():
    files = data_files(
        np.full((2, 784), -3, np.int8),
        np.arange(20, dtype=np.int8).reshape(2, 10),
        np.array([7, 2]),
        np.array([9_999, 1]),
    )
    assert files["inputs.bin"] == b"\xfd" * 1568
    assert files["golden.bin"] == bytes(range(20))
    assert files["labels.bin"] == b"\x07\x02"
    assert files["indices.bin"] == (9_999).to_bytes(4, "little") + (1).to_bytes(4, "little")
