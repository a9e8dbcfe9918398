"""The C engine on the device: the int8 model compiled to C with CMSIS-NN (mnist_edge.codegen),
built into a small firmware project without TFLM, C++ or stdio, run in QEMU and measured, on
Cortex-M (arm-none-eabi-gcc, newlib's mem*) and on RISC-V (riscv64-unknown-elf-gcc, picolibc's).

The project is templates/c/ (startup.c, board.c, board.h, semihost.c/.h, board.ld, main.c, a
Makefile; RISC-V boards take riscv-*'s startup.c, board.c, board.ld and Makefile: semihost.c's
host I/O is shared, only the trap and the counter differ) plus the generator's
model.c and model.h, and the test images as raw files the firmware reads from the host through
semihosting, so they take no flash and all 10,000 can run:

    result = build_c_firmware(model, "model_int8_mcu.tflite", board_for("cortex-m0"), out,
                              inputs, golden, labels, prepare_sources(), find_toolchain(), 600)

`make` and `make run` in the folder rebuild and rerun it on their own. The firmware prints the
TFLM firmware's protocol (qemu.py), with the engine's buffer bytes as "arena", and a LAYER line
per step of model.c (a layer, or layers fused into one loop) for the first image.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.codegen import generate
from mnist_edge.codegen.graph import refuse_unsupported
from mnist_edge.codegen.plan import MemoryPlan, StreamStage
from mnist_edge.device import DeviceModel
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import sha256_file, write_files_atomic
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.build import (
    RESERVED_SECTIONS,
    Toolchain,
    elf_sections,
    make,
    map_attribution,
)
from mnist_edge.firmware.configs import Config, checked
from mnist_edge.firmware.project import render
from mnist_edge.firmware.qemu import LayerLine, QemuRun, qemu_command, run_firmware
from mnist_edge.model_info import count_macs
from mnist_edge.records import EngineFlash, EngineRam, FirmwareResult, LayerCost
from mnist_edge.sources import SOURCE_BY_NAME, SourceTree

STACK_SIZE = 2048  # reserved at the top of RAM; the C engine's peak is under 1 KB
ELF = "firmware.elf"
PREFIX = "mnist_edge"
ENGINE, HARNESS = "engine", "harness"
CODE_SECTIONS = (".text", ".ARM.exidx")  # the rest of flash is constants and .data's values
TEMPLATES = (
    "startup.c",
    "board.c",
    "board.h",
    "semihost.c",
    "semihost.h",
    "board.ld",
    "main.c",
    "Makefile",
)
# The files a RISC-V board has of its own (templates/c/riscv-NAME); the rest are shared.
RISCV_TEMPLATES = ("startup.c", "board.c", "board.ld", "Makefile")
# The counter (SysTick, minstret) must tick once per the board's instructions_per_tick, within
# this tolerance, or QEMU did not count instructions (no -icount): the figures would be meaningless.
CALIBRATION_TOLERANCE = 0.02

_CALIBRATION = re.compile(r"^CALIBRATION (\d+) (\d+)$")


@dataclass(frozen=True)
class CFirmwareResult:
    """The C engine built for one board and run on its images in QEMU."""

    cpu: str
    board: str  # QEMU machine
    project: Path
    elf: Path
    images: int
    golden_identical: int  # outputs equal to host TFLM's, all bytes
    golden_count: int
    correct: int  # argmax equal to the label
    instructions_per_inference: int  # median over the images
    instructions_min: int
    instructions_max: int
    arena_bytes: int  # the engine's buffer as the firmware reports it (model.h's ARENA_BYTES)
    stack_peak_bytes: int
    stack_reserved_bytes: int
    flash: EngineFlash
    ram: EngineRam
    layers: tuple[LayerLine, ...]  # each step of the first image's profiled inference
    exit_status: int  # QEMU's: 0 when every output matched its golden one, 1 when one did not
    build_seconds: float
    run_seconds: float
    run: QemuRun  # what QEMU ran and the firmware printed, image by image

    @property
    def passed(self) -> bool:
        return self.exit_status == 0 and self.golden_identical == self.golden_count


# ----------------------------------------------------------------------------- the project


def _hex(value: int) -> str:
    return f"0x{value:08X}"


FPU_ENABLE = """\
    /* Full access to CP10/CP11 (the FPU, and MVE on Cortex-M55) before any float or vector
     * instruction: CMSIS-NN's Helium code needs it, and with the hard-float ABI the compiler
     * may keep integers in FPU registers. */
    *(volatile uint32_t *)0xE000ED88U |= 0xFU << 20; /* SCB->CPACR */
    __asm__ volatile("dsb\\n\\tisb" : : : "memory");"""
NO_FPU = "    /* No FPU on this core: nothing to enable (writing CPACR would fault). */"


def step_names(plan: MemoryPlan) -> list[str]:
    """model.c's steps, named by their layers ("conv_0+maxpool_1"), in the generator's order
    (a streamed pair is two steps: producer, consumer)."""
    names = []
    for stage in plan.stages:
        parts = (stage.producer, stage.consumer) if isinstance(stage, StreamStage) else (stage,)
        names += ["+".join(layer.name for layer in part.layers) for part in parts]
    if len(names) != len(plan.steps):
        raise MnistEdgeError(f"Named {len(names)} steps of a plan that has {len(plan.steps)}.")
    return names


def _template(board: Board, name: str) -> str:
    own = board.arch == "riscv" and name in RISCV_TEMPLATES
    return f"c/riscv-{name}" if own else f"c/{name}"


def c_project_files(
    engine_files: dict[str, bytes],
    cmsis_nn_sources: tuple[str, ...],
    steps: list[str],
    board: Board,
    model_name: str,
    cmsis_nn: Path,
    stack_size: int = STACK_SIZE,
) -> dict[str, bytes]:
    """Every source file of the project: the templates filled in for the board, and the
    generated engine (model.c, model.h); `steps` names model.c's steps (step_names),
    `cmsis_nn` is the Makefile's default CMSIS_NN."""
    values = {
        "version": __version__,
        "cpu": board.cpu,
        "machine": board.machine,
        "board_description": board.description,
        "model_name": model_name,
        "prefix": PREFIX,
        "prefix_upper": PREFIX.upper(),
        "instructions_per_tick": f"{board.instructions_per_tick:g}",
        "fpu_enable": FPU_ENABLE if board.fpu else NO_FPU,
        "code_name": board.code.name,
        "data_name": board.data.name,
        "code_origin": _hex(board.code.origin),
        "code_length": _hex(board.code.length),
        "data_origin": _hex(board.data.origin),
        "data_length": _hex(board.data.length),
        "stack_size": _hex(stack_size),
        "cpu_flags": " ".join(board.cpu_flags),
        "cmsis_nn": str(cmsis_nn),
        "cmsis_nn_commit": SOURCE_BY_NAME["CMSIS-NN"].commit[:12],
        "cmsis_nn_sources": " \\\n".join(f"  {path}" for path in cmsis_nn_sources),
        "qemu": board.qemu,
        "qemu_args": " ".join(board.qemu_args),
        "step_count": len(steps),
        "step_names": ",\n".join(f'    "{name}"' for name in steps),
    }
    files = {name: render(_template(board, name), values).encode() for name in TEMPLATES}
    return {**files, **engine_files}


def data_files(
    inputs: np.ndarray, golden: np.ndarray, labels: np.ndarray, indices: np.ndarray
) -> dict[str, bytes]:
    """The images as the firmware reads them (main.c's header): raw int8 inputs and golden
    outputs, uint8 labels, little-endian uint32 test-set indices."""
    count = len(inputs)
    if inputs.dtype != np.int8 or golden.dtype != np.int8:
        raise MnistEdgeError(
            f"The C engine runs int8 models: got {inputs.dtype} inputs and {golden.dtype} "
            "golden outputs, expected int8 (quantize them with the model's parameters)."
        )
    if not count or not len(golden) == len(labels) == len(indices) == count:
        raise MnistEdgeError(
            f"Expected as many golden outputs, labels and indices as inputs ({count}, at least "
            f"1); got {len(golden)}, {len(labels)} and {len(indices)}."
        )
    return {
        "inputs.bin": np.ascontiguousarray(inputs.reshape(count, -1)).tobytes(),
        "golden.bin": np.ascontiguousarray(golden.reshape(count, -1)).tobytes(),
        "labels.bin": np.asarray(labels, dtype=np.uint8).tobytes(),
        "indices.bin": np.asarray(indices, dtype="<u4").tobytes(),
    }


# ----------------------------------------------------------------------------- flash and RAM


def component_of(member: str) -> str:
    """Engine or harness, for an object file of the C firmware as the linker map names it."""
    name = Path(member.split("(")[-1].rstrip(")")).name
    return ENGINE if name == "model.o" or "/cmsis-nn/" in member else HARNESS


def measure_c(elf: Path, map_file: Path) -> tuple[EngineFlash, int, int]:
    """Flash split into engine code, engine constants and harness, and the static RAM of the
    engine and of the harness (.data and .bss), from the ELF and its linker map."""
    sections = [s for s in elf_sections(elf) if s.name not in RESERVED_SECTIONS]
    split = map_attribution(
        map_file.read_text(), [s.name for s in sections], component_of, (ENGINE, HARNESS), HARNESS
    )
    code = constants = harness = engine_static = harness_static = 0
    for section in sections:
        parts = split.get(section.name, {})
        if sum(parts.values()) != section.size:
            raise MnistEdgeError(
                f"{map_file}: section {section.name} is {section.size} bytes in the ELF but "
                f"{sum(parts.values())} in the map; cannot split it into engine and harness."
            )
        if section.writable:
            engine_static += parts[ENGINE]
            harness_static += parts[HARNESS]
        if not section.loaded:
            continue
        if section.name in CODE_SECTIONS:
            code += parts[ENGINE]
        else:
            constants += parts[ENGINE]
        harness += parts[HARNESS]
    return EngineFlash(code, constants, harness), engine_static, harness_static


# ----------------------------------------------------------------------------- build and run


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _link(project: Path, board: Board, tree: SourceTree, toolchain: Toolchain) -> float:
    """make firmware.elf; the seconds it took. A board too small is a one-line error."""
    label = f"the C engine for {board.cpu} ({board.machine})"
    try:
        run = make(
            project,
            [ELF],
            {"CMSIS_NN": str(tree.path("CMSIS-NN"))},
            toolchain,
            project / "build" / "make.log",
            f"Building {label}",
        )
    except MnistEdgeError as exc:
        overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes", str(exc))
        if overflow is None:
            raise
        region, over = overflow.groups()
        size = board.data if region == "RAM" else board.code
        raise MnistEdgeError(
            f"{label} does not fit: {region} ({board.machine}'s {size.name}, {size.length:,} "
            f"bytes) overflowed by {int(over):,} bytes."
        ) from None
    return run.seconds


def _check_run(run: QemuRun, board: Board) -> None:
    """A run that printed its RESULT line, with no ERROR or FAULT, on a clock that counted
    instructions; MnistEdgeError otherwise."""
    label = f"The C engine on {board.cpu} ({board.machine})"
    error = run.uart.error
    if run.uart.summary is None or error is not None:
        reason = error or (run.stderr.strip().splitlines() or ["no RESULT line"])[-1]
        raise MnistEdgeError(f"{label} stopped with status {run.returncode}: {reason}.")
    found = [m for line in run.uart.other if (m := _CALIBRATION.match(line))]
    if not found:
        raise MnistEdgeError(f"{label} printed no CALIBRATION line.")
    instructions, ticks = (int(g) for g in found[-1].groups())
    ratio = instructions / max(ticks, 1)
    if abs(ratio / board.instructions_per_tick - 1) > CALIBRATION_TOLERANCE:
        raise MnistEdgeError(
            f"{label}: {board.counter} ticked once per {ratio:.2f} instructions, expected "
            f"{board.instructions_per_tick:g}: was QEMU run without -icount shift=0?"
        )


def write_c_project(
    model: bytes,
    model_name: str,
    board: Board,
    project: Path,
    images: dict[str, bytes],
    cmsis_nn: Path,
    stack_size: int = STACK_SIZE,
) -> None:
    """Generate the engine and write the project with the image files (data_files). Only the
    files whose bytes changed are written, so make rebuilds only what they feed (a new board
    changes the Makefile, on which every object depends)."""
    engine = generate(model, model_name, prefix=PREFIX)
    count = len(images["labels.bin"])
    image_bytes, golden_bytes = (
        len(images["inputs.bin"]) // count,
        len(images["golden.bin"]) // count,
    )
    if (image_bytes, golden_bytes) != (engine.input_bytes, engine.output_bytes):
        raise MnistEdgeError(
            f"{model_name} takes {engine.input_bytes} input bytes and gives "
            f"{engine.output_bytes} output bytes; got images of {image_bytes} bytes and golden "
            f"outputs of {golden_bytes}."
        )
    files = c_project_files(
        engine.files,
        engine.cmsis_sources,
        step_names(engine.plan),
        board,
        model_name,
        cmsis_nn,
        stack_size,
    )
    files |= images
    project.mkdir(parents=True, exist_ok=True)
    write_files_atomic({project / n: b for n, b in files.items() if _read(project / n) != b})


def build_c_firmware(
    model: bytes,
    model_name: str,
    board: Board,
    out: Path,
    inputs: np.ndarray,
    golden: np.ndarray,
    labels: np.ndarray,
    tree: SourceTree,
    toolchain: Toolchain,
    timeout_s: float,
    indices: np.ndarray | None = None,
    stack_size: int = STACK_SIZE,
) -> CFirmwareResult:
    """Generate the C engine for the int8 model, write the project into `out` (created or
    updated in place), build it, run it in QEMU on the images, and measure it.

    `inputs` are the model's int8 inputs (N x 28 x 28 x 1 or N x 784), `golden` host TFLM's
    int8 outputs for them, `labels` the digits, `indices` their test-set indices (0..N-1 when
    None). A golden mismatch is a result with exit_status 1, not an error.
    """
    if stack_size <= 0 or stack_size % 8:
        raise MnistEdgeError(f"Stack size {stack_size}: expected a positive multiple of 8 bytes.")
    if indices is None:
        indices = np.arange(len(inputs))
    images = data_files(inputs, golden, labels, indices)
    project = out.resolve()
    write_c_project(model, model_name, board, project, images, tree.path("CMSIS-NN"), stack_size)
    build_seconds = _link(project, board, tree, toolchain)
    elf = project / ELF
    flash, engine_static, harness_static = measure_c(elf, elf.with_suffix(".map"))
    run = run_firmware(board, elf, timeout_s, cwd=project)
    _check_run(run, board)
    summary = run.uart.summary
    if summary.stack_peak_bytes >= stack_size:  # every painted word overwritten
        raise MnistEdgeError(
            f"The C engine on {board.cpu} overflowed its {stack_size:,}-byte stack into the "
            "statics below it: build it with a larger stack_size."
        )
    instructions = [record.instructions for record in run.uart.images]
    return CFirmwareResult(
        cpu=board.cpu,
        board=board.machine,
        project=project,
        elf=elf,
        images=summary.images,
        golden_identical=summary.identical,
        golden_count=summary.count,
        correct=summary.correct,
        instructions_per_inference=int(statistics.median(instructions)),
        instructions_min=min(instructions),
        instructions_max=max(instructions),
        arena_bytes=summary.arena_used_bytes,
        stack_peak_bytes=summary.stack_peak_bytes,
        stack_reserved_bytes=stack_size,
        flash=flash,
        ram=EngineRam(engine_static, summary.stack_peak_bytes, harness_static),
        layers=run.uart.layers,
        exit_status=run.returncode,
        build_seconds=build_seconds,
        run_seconds=run.seconds,
        run=run,
    )


# ----------------------------------------------------------------------------- the engine


class CodegenEngine:
    """The model compiled to C with a static memory plan, calling CMSIS-NN (no interpreter)."""

    name = "codegen"

    def kernel_sets(self, kernels: list[str]) -> list[str]:
        """The C engine calls CMSIS-NN's kernels whatever else was asked for (TFLM's reference
        kernels are C++ inside the interpreter): one build."""
        return ["cmsis-nn"]

    def refusal(self, board: Board, device: DeviceModel, host_arena: int) -> str | None:
        """Why the generator cannot compile the model (an operator it lacks), or None."""
        try:
            refuse_unsupported(device.info, device.name)
        except ModelError as exc:
            return str(exc).removeprefix(f"{device.name}: ").rstrip(".")
        return None

    def build(self, config: Config, staging: Path, run: bool, timeout_s: float, host_arena):
        """Build and run the configuration in staging/NAME; its result and the QEMU run. The C
        engine always runs: its images come from the host, and a run takes seconds."""
        inputs, board = config.inputs, config.board
        built = build_c_firmware(
            inputs.model,
            inputs.model_name,
            board,
            staging / config.name,
            inputs.inputs,
            inputs.golden,
            inputs.labels,
            config.tree,
            config.toolchain,
            timeout_s,
            indices=inputs.indices,
            stack_size=board.c_stack_size,
        )
        return _result(config, built), built.run


def _result(config: Config, built: CFirmwareResult) -> FirmwareResult:
    """The C engine's figures as the firmware record every engine shares."""
    inputs, board = config.inputs, config.board
    agreement, mismatches = checked(inputs, built.run)
    macs = count_macs(inputs.info)
    median = built.instructions_per_inference
    static = built.ram.engine_buffers + built.ram.harness_statics
    return FirmwareResult(
        cpu=board.cpu,
        board=board.machine,
        kernels=config.kernels,
        model=inputs.model_name,
        model_sha256=inputs.model_sha256,
        images=built.images,
        golden_count=built.golden_count,
        golden_identical=built.golden_identical,
        correct=built.correct,
        accuracy=round(built.correct / built.images, 6),
        agreement_with_host_tflm=round(agreement.same_class / built.images, 6),
        mismatches=mismatches,
        instructions_per_inference=median,
        instructions_min=built.instructions_min,
        instructions_max=built.instructions_max,
        macs=macs,
        instructions_per_mac=round(median / macs, 4) if macs else None,
        isa_limit_instructions=-(-macs // board.macs_per_instruction),
        flash_bytes=built.flash.total,
        flash=None,
        ram_bytes=static + built.stack_peak_bytes,
        static_bytes=static,
        arena_bytes=built.arena_bytes,
        arena_measured_on="plan",  # the generator's static plan, the same on every CPU
        stack_bytes=built.stack_peak_bytes,
        stack_reserved_bytes=built.stack_reserved_bytes,
        project=config.name,
        elf=f"{config.name}/{ELF}",
        elf_sha256=sha256_file(built.elf),
        library_files=0,  # no library: the engine's sources are compiled with the project
        library_cached=False,
        library_seconds=0.0,
        build_seconds=round(built.build_seconds, 1),
        run_seconds=round(built.run_seconds, 1),
        exit_status=built.exit_status,
        qemu_command=tuple(qemu_command(board, Path(ELF))),
        ran=True,
        engine="codegen",
        engine_flash=built.flash,
        engine_ram=built.ram,
        layers=[LayerCost(line.name, line.instructions) for line in built.layers],
        layers_image=built.layers[0].index if built.layers else None,
    )
