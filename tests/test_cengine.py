"""The C engine on the device: the quick int8 model compiled to C with CMSIS-NN, built without
TFLM for Cortex-M4 (CMSIS-NN's DSP path), Cortex-M0 (its plain-C path, on a micro:bit's 16 KB
of RAM) and RISC-V (rv32imc, plain C, on a HiFive1's 16 KB), run in QEMU on images read from the
host, checked bit for bit against host TFLM, with each step's instructions (LAYER lines).

Real arm-none-eabi-gcc and riscv64-unknown-elf-gcc, real QEMU, no mocks. CMSIS-NN comes from
the pinned archives in ../shared/third_party (or $MNIST_EDGE_FIRMWARE_SOURCES), extracted into
the tests' cache.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.firmware.boards import BOARDS
from mnist_edge.firmware.cengine import component_of
from mnist_edge.firmware.harness import HARNESS, SPLIT, data_files
from mnist_edge.firmware.qemu import LayerLine, parse_uart, qemu_command
from mnist_edge.records import FirmwareResult
from tests.helpers import SOURCES_DIR, needs_arm_tools, needs_sources

IMAGES = 5
MODEL = "model_int8_mcu.tflite"
# Ceilings with their source: the C engine on this suite's quick model (conftest.py), measured
# with arm-none-eabi-gcc 12.2.1 (Debian 15:12.2.rel1-1), QEMU 7.2.22, the pinned CMSIS-NN, by
# `pytest tests/test_cengine.py --basetemp DIR` (instructions_per_inference and the ram of
# DIR/c-*0/firmware.json): M4 3,380,460 instructions, M0 15,360,625 (benchmarks/results/
# engines.json, the demo model: M4 3,380,280, M0 15,452,594, rv32imc 9,294,708; plain C's
# count moves a little with the weights, the DSP path's hardly). Each ceiling is the larger
# figure and about 0.2 %: a slower kernel fails it.
M4_MAX_INSTRUCTIONS = 3_387_000
M0_MAX_INSTRUCTIONS = 15_485_000
RV32_MAX_INSTRUCTIONS = 9_315_000
M4_MAX_RAM = 7_800  # 7,732 measured: 5,824 plan + about 900 harness statics + 1,016 stack
# Skipped without them, failed instead where $CI is set (conftest.py's needs_tools).
needs_riscv_tools = pytest.mark.needs_tools("riscv64-unknown-elf-gcc", "qemu-system-riscv32")
EM_RISCV, EF_RISCV_RVC = 243, 0x1  # the ELF header's machine, and its flag for compressed code


@dataclass(frozen=True)
class Built:
    """The C engine's firmware for one board, built and run through `firmware()`."""

    result: FirmwareResult
    project: Path

    @property
    def elf(self) -> Path:
        return self.project / "firmware.elf"


def _build(exported, mnist, cpu: str, out: Path) -> Built:
    from mnist_edge.firmware import firmware

    report = firmware(
        exported[0] / MODEL,
        mnist.x_test[:IMAGES],
        mnist.y_test[:IMAGES],
        cpus=[cpu],
        kernels=["cmsis-nn"],
        engines=["codegen"],
        out=out,
        sources=SOURCES_DIR,
        overwrite=True,
        timeout_s=300,
    )
    (result,) = report.results
    return Built(result, out / result.project)


@pytest.fixture(scope="session")
def m4(exported, mnist, tmp_path_factory) -> Built:
    return _build(exported, mnist, "cortex-m4", tmp_path_factory.mktemp("c-m4"))


@pytest.fixture(scope="session")
def m0(exported, mnist, tmp_path_factory) -> Built:
    return _build(exported, mnist, "cortex-m0", tmp_path_factory.mktemp("c-m0"))


@pytest.fixture(scope="session")
def rv32imc(exported, mnist, tmp_path_factory) -> Built:
    return _build(exported, mnist, "rv32imc", tmp_path_factory.mktemp("c-rv32imc"))


def host_tflm_outputs(model: Path, project: Path) -> np.ndarray:
    """The tflite-micro interpreter's outputs for the inputs a firmware project ran
    (inputs.bin), computed here: not the product's golden vectors, nor its runner."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model.read_bytes())
    shape = interpreter.get_input_details(0)["shape"]
    inputs = np.frombuffer((project / "inputs.bin").read_bytes(), np.int8)
    outputs = []
    for one in inputs.reshape(-1, *shape[1:]):
        interpreter.set_input(one.reshape(shape), 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).reshape(-1).copy())
    return np.array(outputs, np.int8)


def assert_out_lines_are_host_tflms(stdout: str, model: Path, project: Path) -> None:
    """Every OUT line the firmware printed equals host TFLM's output for that input."""
    outs = [line.split() for line in stdout.splitlines() if line.startswith("OUT ")]
    device = np.array([[int(v) for v in line[2:]] for line in outs], np.int8)
    expected = host_tflm_outputs(model, project)
    indices = np.frombuffer((project / "indices.bin").read_bytes(), "<u4")
    assert [int(line[1]) for line in outs] == [int(i) for i in indices]
    np.testing.assert_array_equal(device, expected)


def _plain_qemu(built: Built, cpu: str) -> subprocess.CompletedProcess:
    """The ELF run in QEMU by hand, in its project folder (the inputs' files are there)."""
    command = qemu_command(BOARDS[cpu], built.elf)
    return subprocess.run(
        command, cwd=built.project, capture_output=True, text=True, timeout=300, check=False
    )


def _multiply_accumulates(elf: Path) -> int:
    """SMLAD instructions in the ELF: CMSIS-NN's DSP path leaves them, its plain C none."""
    listing = subprocess.run(
        ["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    return sum("\tsmlad" in line for line in listing.splitlines())


@pytest.mark.parametrize(
    "fixture, cpu, dsp, limit",
    [
        ("m4", "cortex-m4", True, M4_MAX_INSTRUCTIONS),
        ("m0", "cortex-m0", False, M0_MAX_INSTRUCTIONS),
    ],
)
@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_engine_is_bit_exact_with_host_tflm(request, exported, fixture, cpu, dsp, limit):
    built = request.getfixturevalue(fixture)
    result = built.result
    assert result.passed and result.exit_status == 0
    assert result.golden_identical == result.golden_count == result.images == IMAGES
    assert result.correct >= IMAGES - 1  # the quick model: about 95% accurate
    assert (_multiply_accumulates(built.elf) > 0) == dsp
    assert result.instructions_per_inference <= limit
    # The ELF again, by hand: its OUT lines against the tflite-micro interpreter's outputs.
    done = _plain_qemu(built, cpu)
    assert done.returncode == 0, done.stderr
    assert_out_lines_are_host_tflms(done.stdout, exported[0] / MODEL, built.project)


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_engine_fits_the_microbit(m0):
    # QEMU maps only the micro:bit's 16 KB of RAM: a run that finished touched nothing past it.
    board, result = BOARDS["cortex-m0"], m0.result
    assert result.arena_measured_on == "speed plan"  # it fits: no need to plan for size
    assert 0 < result.ram.stack < result.stack_reserved_bytes
    assert result.ram_bytes <= board.data.length
    assert result.static_bytes + result.stack_reserved_bytes <= board.data.length
    assert result.flash_bytes <= board.code.length


@pytest.mark.slow
@needs_sources
@needs_riscv_tools
def test_engine_runs_bit_exact_on_the_hifive1(rv32imc, exported):
    result, board = rv32imc.result, BOARDS["rv32imc"]
    assert result.passed and result.golden_identical == result.golden_count == IMAGES
    assert result.instructions_per_inference <= RV32_MAX_INSTRUCTIONS
    header = rv32imc.elf.read_bytes()[:52]
    assert int.from_bytes(header[18:20], "little") == EM_RISCV
    assert int.from_bytes(header[36:40], "little") & EF_RISCV_RVC  # -march=rv32imc
    # QEMU maps only the HiFive1's 16 KB of RAM: a run that finished touched nothing past it.
    assert result.ram_bytes <= board.data.length
    done = _plain_qemu(rv32imc, "rv32imc")
    assert done.returncode == 0, done.stderr
    # minstret counts instructions exactly under -icount: the calibration loops read exactly.
    assert "CALIBRATION 4000000 4000000" in done.stdout.splitlines()
    assert_out_lines_are_host_tflms(done.stdout, exported[0] / MODEL, rv32imc.project)


# The quick model's layers as the C engine runs them: each convolution fused with its max-pool,
# the last convolution alone, the reshape an alias (no step), two dense layers, the softmax.
MNIST_STEPS = ["conv_0+maxpool_1", "conv_2+maxpool_3", "conv_4", "fc_6", "fc_7", "softmax_8"]


@pytest.mark.parametrize(
    "fixture",
    [pytest.param("m4", marks=needs_arm_tools), pytest.param("rv32imc", marks=needs_riscv_tools)],
)
@pytest.mark.slow
@needs_sources
def test_layer_lines_name_each_step_and_add_up(request, fixture):
    result = request.getfixturevalue(fixture).result
    assert [line.name for line in result.layers] == MNIST_STEPS
    assert result.layers_image == 0  # the first image, profiled
    total = sum(line.instructions for line in result.layers)
    # The profiled inference counts the same work; the hook's calls differ by a few hundred.
    assert abs(total - result.instructions_per_inference) < 2_000
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


def _size_sections(elf: Path) -> dict[str, int]:
    """arm-none-eabi-size's own reading of the ELF's sections (System V format)."""
    listing = subprocess.run(
        ["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in listing.splitlines() if line.startswith(".")]
    return {row[0]: int(row[1]) for row in rows}


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_flash_and_ram_are_the_elfs_sections(m4):
    result, sizes = m4.result, _size_sections(m4.elf)
    flash = sum(sizes.get(s, 0) for s in (".text", ".rodata", ".ARM.exidx", ".ARM.extab", ".data"))
    flash += sizes.get(".init_array", 0)
    assert result.flash_bytes == flash
    assert result.static_bytes == sizes.get(".data", 0) + sizes.get(".bss", 0)
    assert result.ram.stack < sizes[".stack"] == result.stack_reserved_bytes
    assert result.ram_bytes <= M4_MAX_RAM
    # The weights dominate the engine's flash; the harness is a few KB without stdio.
    assert result.flash.engine_constants > 90_000
    assert 5_000 < result.flash.engine_code < 30_000
    assert result.flash.harness < 8_000


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_shipped_project_runs_with_make(m4):
    done = subprocess.run(
        ["make", "-s", "-C", str(m4.project), "run"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"RESULT golden {IMAGES}/{IMAGES} " in done.stdout


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_a_corrupted_golden_byte_exits_1(m4, tmp_path):
    # The firmware reads golden.bin at run time: a copy of the project with one byte flipped.
    project = tmp_path / "project"
    shutil.copytree(m4.project, project)
    golden = bytearray((project / "golden.bin").read_bytes())
    golden[3 * 10 + 7] ^= 1  # image 3, output 7
    (project / "golden.bin").write_bytes(bytes(golden))
    done = _plain_qemu(Built(m4.result, project), "cortex-m4")
    assert done.returncode == 1
    assert parse_uart(done.stdout).summary.identical == IMAGES - 1


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_ram_overflow_is_one_line_with_the_bytes(exported, mnist, tmp_path, monkeypatch):
    # The STM32VLDISCOVERY has 8 KB of RAM: the engine fits, not with an 8 KB stack.
    from mnist_edge.firmware.cengine import CodegenEngine

    monkeypatch.setattr(CodegenEngine, "stack_size", lambda self, board: 8192)
    with pytest.raises(MnistEdgeError, match=r"does not fit: RAM .*8,192 bytes\) overflowed by"):
        _build(exported, mnist, "cortex-m3", tmp_path / "out")


# ----------------------------------------------------------------------------- no build needed


@pytest.mark.parametrize(
    "member, component",
    [
        ("build/model.o", SPLIT),
        ("build/cmsis-nn/Source/ConvolutionFunctions/arm_convolve_s8.o", SPLIT),
        ("build/main.o", HARNESS),
        ("build/board.o", HARNESS),
        ("/usr/lib/arm-none-eabi/lib/thumb/v7e-m+fp/hard/libc.a(libc_a-memcpy.o)", HARNESS),
        ("/usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v6-m/nofp/libgcc.a(_udivmoddi4.o)", HARNESS),
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


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_a_planted_wrong_byte_in_the_engine_fails_the_firmware(
    exported, mnist, tmp_path, monkeypatch
):
    # model.c computes one output byte wrong for input 2 alone: the firmware's own check and
    # ours on its OUT lines both see it, and the run is a failure.
    from mnist_edge.data import to_float
    from mnist_edge.runtimes.tflm_runner import TFLMRunner
    from mnist_edge.tensors import quantize
    from tests.helpers import plant_one_byte

    runner = TFLMRunner(exported[0] / MODEL)
    plant_one_byte(monkeypatch, quantize(to_float(mnist.x_test[2:3]), runner.input)[0])
    built = _build(exported, mnist, "cortex-m4", tmp_path / "out")
    result = built.result
    assert not result.passed and result.exit_status == 1
    assert result.golden_identical == IMAGES - 1 and result.mismatches == (2,)
    done = _plain_qemu(built, "cortex-m4")
    with pytest.raises(AssertionError):
        assert_out_lines_are_host_tflms(done.stdout, exported[0] / MODEL, built.project)
