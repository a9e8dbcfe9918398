"""The C engine on the device: the quick int8 model compiled to C with CMSIS-NN, built without
TFLM for Cortex-M4 (CMSIS-NN's DSP path), Cortex-M0 (its plain-C path, on a micro:bit's 16 KB
of RAM) and RISC-V (rv32imc, plain C, on a HiFive1's 16 KB), run in QEMU on images read from the
host, checked bit for bit against host TFLM, with each step's instructions (LAYER lines).

Real arm-none-eabi-gcc and riscv64-unknown-elf-gcc, real QEMU, no mocks. CMSIS-NN comes from
the pinned archives in ../shared/third_party (or $MNIST_EDGE_FIRMWARE_SOURCES), extracted into
the tests' cache.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.firmware.boards import BOARDS
from mnist_edge.firmware.build import RESERVED_SECTIONS, elf_sections
from mnist_edge.firmware.cengine import (
    CFirmwareResult,
    build_c_firmware,
    component_of,
    data_files,
    step_names,
)
from mnist_edge.firmware.qemu import LayerLine, parse_uart
from tests.helpers import SOURCES_DIR, needs_arm_tools, needs_sources

IMAGES = 5
MODEL = "model_int8_mcu.tflite"
# TFLM with CMSIS-NN on the same CPU (FIRMWARE.md): the engine calls the same kernels.
M4_TFLM_CMSIS_NN_INSTRUCTIONS = 6_810_000
# Skipped without them, failed instead where $CI is set (conftest.py's needs_tools).
needs_riscv_tools = pytest.mark.needs_tools("riscv64-unknown-elf-gcc", "qemu-system-riscv32")
EM_RISCV, EF_RISCV_RVC = 243, 0x1  # the ELF header's machine, and its flag for compressed code


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
    from mnist_edge.sources import prepare_sources

    return prepare_sources(SOURCES_DIR), find_toolchain()


@pytest.fixture(scope="session")
def riscv_tools():
    from mnist_edge.firmware.build import find_toolchain
    from mnist_edge.sources import prepare_sources

    return prepare_sources(SOURCES_DIR), find_toolchain("riscv")


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


@pytest.fixture(scope="session")
def rv32imc(images, riscv_tools, tmp_path_factory) -> CFirmwareResult:
    return _build(images, riscv_tools, "rv32imc", tmp_path_factory.mktemp("c-rv32imc"))


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
@needs_riscv_tools
def test_engine_runs_bit_exact_on_the_hifive1(rv32imc):
    result, board = rv32imc, BOARDS["rv32imc"]
    assert result.passed and result.golden_identical == result.golden_count == IMAGES
    assert result.correct >= IMAGES - 1
    header = result.elf.read_bytes()[:52]
    assert int.from_bytes(header[18:20], "little") == EM_RISCV
    assert int.from_bytes(header[36:40], "little") & EF_RISCV_RVC  # -march=rv32imc
    # minstret counts instructions exactly under -icount: the calibration loops read exactly.
    assert "CALIBRATION 4000000 4000000" in result.run.uart.other
    assert 0 < result.instructions_min <= result.instructions_max
    # QEMU maps only the HiFive1's 16 KB of RAM: a run that finished touched nothing past it.
    assert result.ram.total <= board.data.length
    assert result.ram.engine_buffers + result.ram.harness_statics + 2048 <= board.data.length
    sections = [s for s in elf_sections(result.elf) if s.name not in RESERVED_SECTIONS]
    assert result.flash.total == sum(s.size for s in sections if s.loaded)
    assert result.flash.engine_constants > 90_000 and result.flash.harness < 8_000


@pytest.mark.parametrize(
    "fixture",
    [pytest.param("m4", marks=needs_arm_tools), pytest.param("rv32imc", marks=needs_riscv_tools)],
)
@needs_sources
def test_layer_lines_name_each_step_and_add_up(request, fixture):
    from mnist_edge.codegen import generate

    result = request.getfixturevalue(fixture)
    model = request.getfixturevalue("images")[0]
    steps = step_names(generate(model, MODEL, prefix="mnist_edge").plan)
    assert [line.name for line in result.layers] == steps
    assert {line.index for line in result.layers} == {0}  # the first image, profiled
    first = result.run.uart.images[0]
    total = sum(line.instructions for line in result.layers)
    # The profiled inference counts the same work; the hook's calls differ by a few hundred.
    assert abs(total - first.instructions) < 2_000, (total, first.instructions)
    assert all(line.instructions > 0 for line in result.layers)


def test_tflm_on_riscv_is_refused_in_one_line(exported, mnist, tmp_path):
    from mnist_edge.firmware import firmware

    with pytest.raises(ModelError, match=r"rv32imc tflm: TFLM is C\+\+.*Debian does not package"):
        firmware(
            exported[0] / MODEL,
            mnist.x_test[:2],
            mnist.y_test[:2],
            cpus=["rv32imc"],
            kernels=["cmsis-nn"],
            engines=["tflm"],
            out=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


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


def test_parse_uart_reads_layer_lines():
    uart = parse_uart("LAYER 7 conv_0+maxpool_1 610560\nLAYER 7 CONV_2D_0 1677263\n")
    assert uart.layers == (
        LayerLine(7, "conv_0+maxpool_1", 610_560),
        LayerLine(7, "CONV_2D_0", 1_677_263),
    )
    with pytest.raises(MnistEdgeError, match="Malformed firmware line: LAYER 7 conv_0"):
        parse_uart("LAYER 7 conv_0 many\n")


def test_riscv_boards_take_their_own_toolchain_and_qemu():
    board = BOARDS["rv32imc"]
    assert (board.arch, board.machine, board.qemu) == ("riscv", "sifive_e", "qemu-system-riscv32")
    assert board.gcc_prefix == "riscv64-unknown-elf-" and board.counter == "minstret"
    assert (board.data.origin, board.data.length) == (0x80000000, 16 * 1024)
    assert board.code.origin == 0x20400000 and not board.tflm
    assert BOARDS["cortex-m4"].qemu == "qemu-system-arm"


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
