"""The one road every firmware engine takes: one harness, one link, one checked run, one size
measurement, one result.

The harness is templates/: main.c (reads the inputs from the host through semihosting, times
the engine, prints the protocol of qemu.py), semihost.c, board.h and each architecture's
startup.c, board.c and board.ld (templates/arm/, templates/riscv/), and a Makefile that
includes the engine's engine.mk. An engine (firmware.engine.Engine) adds engine.h (the five
functions main.c calls), engine.mk and its sources; nothing here knows which engine it builds.

    files = harness_files(config, engine_values)      # + the engine's files + data_files(...)
    seconds = link(project, config)                    # firmware.elf and firmware.map
    run = run_checked(config.board, project / ELF, timeout_s, label, cwd=project)
    flash, ram_engine, ram_harness = measure(project / ELF, engine.component)
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.errors import DoesNotFit, MnistEdgeError
from mnist_edge.files import sha256_file, write_files_atomic
from mnist_edge.firmware.build import (
    PACKAGES,
    RESERVED_SECTIONS,
    elf_sections,
    make,
    map_attribution,
)
from mnist_edge.firmware.configs import Config, checked
from mnist_edge.firmware.project import render
from mnist_edge.firmware.qemu import QemuRun, qemu_command, run_firmware
from mnist_edge.model_info import count_macs
from mnist_edge.records import EngineFlash, EngineRam, FirmwareResult, LayerCost, TflmBuild

ELF = "firmware.elf"
# The harness's files; an architecture's own are under templates/<arch>/.
SHARED_TEMPLATES = ("main.c", "board.h", "semihost.c", "semihost.h", "Makefile")
ARCH_TEMPLATES = ("startup.c", "board.c", "board.ld")
# What each object of the link is, for the flash split (an engine's component()):
CODE, CONSTANTS, SPLIT, HARNESS = "code", "constants", "split", "harness"
CODE_SECTIONS = (".text", ".ARM.exidx", ".ARM.extab", ".init_array")  # SPLIT's code
# The counter (SysTick, minstret) must tick once per the board's instructions_per_tick, within
# this tolerance, or QEMU did not count instructions (no -icount): the figures would be
# meaningless.
CALIBRATION_TOLERANCE = 0.02
LIBC_FLAGS = {"arm": "", "riscv": "--specs=picolibc.specs"}
# The inputs' and outputs' dtypes a firmware reads as raw bytes: an int8 model's, and float32
# where its first operator is QUANTIZE (or its last DEQUANTIZE).
DATA_DTYPES = ("int8", "float32")

_CALIBRATION = re.compile(r"^CALIBRATION (\d+) (\d+)$")

FPU_ENABLE = """\
    /* Full access to CP10/CP11 (the FPU, and MVE on Cortex-M55) before any float or vector
     * instruction: CMSIS-NN's Helium code needs it, TFLM computes quantization parameters in
     * float, and with the hard-float ABI the compiler may keep integers in FPU registers. */
    *(volatile uint32_t *)0xE000ED88U |= 0xFU << 20; /* SCB->CPACR */
    __asm__ volatile("dsb\\n\\tisb" : : : "memory");"""
NO_FPU = "    /* No FPU on this core: nothing to enable (writing CPACR would fault). */"


def _hex(value: int) -> str:
    return f"0x{value:08X}"


def harness_files(
    config: Config, steps: list[str], engine_values: dict[str, object]
) -> dict[str, bytes]:
    """The harness's files for the board, main.c naming the engine's `steps`; engine_values
    fill the Makefile's and main.c's engine fields (engine_description, make_example)."""
    board, inputs = config.board, config.inputs
    values = {
        "version": __version__,
        "cpu": board.cpu,
        "machine": board.machine,
        "board_description": board.description,
        "model_name": inputs.model_name,
        "input_bytes": inputs.input_bytes,
        "output_bytes": inputs.output_bytes,
        "instructions_per_tick": f"{board.instructions_per_tick:g}",
        "fpu_enable": FPU_ENABLE if board.fpu else NO_FPU,
        "code_name": board.code.name,
        "data_name": board.data.name,
        "code_origin": _hex(board.code.origin),
        "code_length": _hex(board.code.length),
        "data_origin": _hex(board.data.origin),
        "data_length": _hex(board.data.length),
        "stack_size": _hex(config.stack_size),
        "cpu_flags": " ".join(board.cpu_flags),
        "gcc_prefix": board.gcc_prefix,
        "libc_flags": LIBC_FLAGS[board.arch],
        "toolchain_packages": f"Debian's {PACKAGES[board.arch]}",
        "qemu": board.qemu,
        "qemu_args": " ".join(board.qemu_args),
        "step_count": len(steps),
        "step_names": ",\n".join(f'    "{name}"' for name in steps),
        **engine_values,
    }
    files = {name: render(name, values) for name in SHARED_TEMPLATES}
    files |= {name: render(f"{board.arch}/{name}", values) for name in ARCH_TEMPLATES}
    return {name: text.encode() for name, text in files.items()}


def data_files(
    inputs: np.ndarray, golden: np.ndarray, labels: np.ndarray, indices: np.ndarray
) -> dict[str, bytes]:
    """The inputs as the firmware reads them (main.c's header): the inputs' and golden outputs'
    raw bytes (their own dtype: int8, or float32 for a float-input model), uint8 labels (255:
    none), little-endian uint32 indices."""
    count = len(inputs)
    if inputs.dtype.name not in DATA_DTYPES or golden.dtype.name not in DATA_DTYPES:
        raise MnistEdgeError(
            f"The firmware runs int8 models (float32 at their input or output): got "
            f"{inputs.dtype} inputs and {golden.dtype} golden outputs, expected int8 or float32."
        )
    if not count or not len(golden) == len(labels) == len(indices) == count:
        raise MnistEdgeError(
            f"Expected as many golden outputs, labels and indices as inputs ({count}, at least "
            f"1); got {len(golden)}, {len(labels)} and {len(indices)}."
        )
    return {
        "inputs.bin": np.ascontiguousarray(inputs).tobytes(),
        "golden.bin": np.ascontiguousarray(golden).tobytes(),
        "labels.bin": np.asarray(labels, dtype=np.uint8).tobytes(),
        "indices.bin": np.asarray(indices, dtype="<u4").tobytes(),
    }


def write_project(project: Path, files: dict[str, bytes]) -> None:
    """Write the project's files; only those whose bytes changed, so make rebuilds only what
    they feed (a new board changes the Makefile, on which every object depends)."""
    project.mkdir(parents=True, exist_ok=True)
    changed = {
        project / name: data
        for name, data in files.items()
        if not (project / name).is_file() or (project / name).read_bytes() != data
    }
    write_files_atomic(changed)


# ----------------------------------------------------------------------------- link and run


def link(
    project: Path,
    config: Config,
    variables: dict[str, str],
    log_name: str = "make.log",
    elf: str = ELF,
    defines: str = "",
    old: tuple[str, ...] = (),
) -> float:
    """make the ELF (and its map) with the project's Makefile; the seconds it took. A board too
    small is a one-line error saying which region overflowed and by how much."""
    board = config.board
    build = "build" if elf == ELF else f"build-{Path(elf).stem}"
    variables = {**variables, "BUILD": build, "ELF": elf, "APP_DEFINES": defines}
    try:
        run = make(
            project,
            [elf],
            variables,
            config.toolchain,
            project / build / log_name,
            f"Building {config.label}",
            old=old,
        )
    except MnistEdgeError as exc:
        overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes", str(exc))
        if overflow is None:
            raise
        region, over = overflow.groups()
        size = board.data if region == "RAM" else board.code
        raise DoesNotFit(
            region,
            f"{config.label} does not fit: {region} ({board.machine}'s {size.name}, "
            f"{size.length:,} bytes) overflowed by {int(over):,} bytes.",
        ) from None
    return run.seconds


def run_checked(config: Config, elf: Path, timeout_s: float, cwd: Path) -> QemuRun:
    """Run the ELF in QEMU; MnistEdgeError unless it printed its RESULT line, no ERROR or FAULT,
    on a counter that counted instructions (its CALIBRATION line)."""
    board, label = config.board, config.label
    run = run_firmware(board, elf, timeout_s, cwd=cwd, outputs=config.inputs.output_bytes)
    error = run.uart.error
    if run.uart.summary is None or error is not None:
        reason = error or (run.stderr.strip().splitlines() or ["no RESULT line"])[-1]
        raise MnistEdgeError(
            f"The firmware for {label} stopped with status {run.returncode}: {reason}."
        )
    found = [m for line in run.uart.other if (m := _CALIBRATION.match(line))]
    if not found:
        raise MnistEdgeError(f"The firmware for {label} printed no CALIBRATION line.")
    instructions, ticks = (int(g) for g in found[-1].groups())
    ratio = instructions / max(ticks, 1)
    if abs(ratio / board.instructions_per_tick - 1) > CALIBRATION_TOLERANCE:
        raise MnistEdgeError(
            f"The firmware for {label}: {board.counter} ticked once per {ratio:.2f} "
            f"instructions, expected {board.instructions_per_tick:g}: was QEMU run without "
            "-icount shift=0?"
        )
    if run.uart.summary.stack_peak_bytes >= config.stack_size:  # every painted word overwritten
        raise MnistEdgeError(
            f"The firmware for {label} overflowed its {config.stack_size:,}-byte stack into the "
            "statics below it."
        )
    return run


# ----------------------------------------------------------------------------- flash and RAM


def measure(elf: Path, component_of: Callable[[str], str]) -> tuple[EngineFlash, int, int]:
    """Flash split into engine code, engine constants and harness, and the static RAM of the
    engine and of the harness (.data and .bss), from the ELF and its linker map.
    `component_of` names what an object of the link is (CODE, CONSTANTS, SPLIT or HARNESS)."""
    map_file = elf.with_suffix(".map")
    sections = [s for s in elf_sections(elf) if s.name not in RESERVED_SECTIONS]
    roles = (CODE, CONSTANTS, SPLIT, HARNESS)
    split = map_attribution(
        map_file.read_text(), [s.name for s in sections], component_of, roles, HARNESS
    )
    code = constants = harness = engine_static = harness_static = 0
    for section in sections:
        parts = split.get(section.name, {})
        if sum(parts.values()) != section.size:
            raise MnistEdgeError(
                f"{map_file}: section {section.name} is {section.size} bytes in the ELF but "
                f"{sum(parts.values())} in the map; cannot split it into engine and harness."
            )
        ours = parts[CODE] + parts[CONSTANTS] + parts[SPLIT]
        if section.writable:
            engine_static += ours
            harness_static += parts[HARNESS]
        if not section.loaded:
            continue
        is_code = section.name in CODE_SECTIONS
        code += parts[CODE] + (parts[SPLIT] if is_code else 0)
        constants += parts[CONSTANTS] + (0 if is_code else parts[SPLIT])
        harness += parts[HARNESS]
    return EngineFlash(code, constants, harness), engine_static, harness_static


# ----------------------------------------------------------------------------- the result


def result(
    config: Config,
    elf: Path,
    run: QemuRun | None,
    build_seconds: float,
    arena_bytes: int,
    arena_measured_on: str,
    tflm: TflmBuild | None = None,
    component_of: Callable[[str], str] = lambda member: HARNESS,
) -> FirmwareResult:
    """What one configuration measured, the same record for every engine: the flash and RAM
    split (measure), the run's golden check against host TFLM, instructions, stack, layers.
    Not run (firmware --no-run), the figures a run gives are None or zero and the stack is the
    reservation. `tflm` is TFLM's build facts (records.TflmBuild), None for other engines."""
    board, inputs = config.board, config.inputs
    flash, engine_static, harness_static = measure(elf, component_of)
    images = len(inputs.inputs)
    macs = count_macs(inputs.info)
    common = dict(
        cpu=board.cpu,
        board=board.machine,
        engine=config.engine.name,
        kernels=config.kernels,
        model=inputs.model_name,
        model_sha256=inputs.model_sha256,
        images=images,
        macs=macs,
        isa_limit_instructions=-(-macs // board.macs_per_instruction),
        flash=flash,
        arena_bytes=arena_bytes,
        arena_measured_on=arena_measured_on,
        stack_reserved_bytes=config.stack_size,
        project=config.name,
        elf=f"{config.name}/{ELF}",
        elf_sha256=sha256_file(elf),
        build_seconds=round(build_seconds, 1),
        qemu_command=tuple(qemu_command(board, Path(ELF))),
        tflm=tflm,
    )
    if run is None:
        return FirmwareResult(**common, **_not_run(engine_static, harness_static, config))
    agreement, mismatches = checked(inputs, run)
    summary = run.uart.summary
    counts = [record.instructions for record in run.uart.images]
    median = int(statistics.median(counts))
    layers = run.uart.layers
    return FirmwareResult(
        **common,
        ram=EngineRam(engine_static, summary.stack_peak_bytes, harness_static),
        golden_count=summary.count,
        golden_identical=summary.identical,
        correct=summary.correct if inputs.has_labels else 0,
        accuracy=round(summary.correct / images, 6) if inputs.has_labels else None,
        agreement_with_host_tflm=round(agreement.same_class / images, 6),
        mismatches=mismatches,
        instructions_per_inference=median,
        instructions_min=min(counts),
        instructions_max=max(counts),
        instructions_per_mac=round(median / macs, 4) if macs else None,
        run_seconds=round(run.seconds, 1),
        exit_status=run.returncode,
        ran=True,
        layers=[LayerCost(line.name, line.instructions) for line in layers],
        layers_image=layers[0].index if layers else None,
    )


def _not_run(engine_static: int, harness_static: int, config: Config) -> dict:
    """The figures of a configuration built but not run: none, and the stack reservation."""
    return dict(
        ram=EngineRam(engine_static, config.stack_size, harness_static),
        golden_count=0,
        golden_identical=0,
        correct=0,
        accuracy=None,
        agreement_with_host_tflm=None,
        mismatches=(),
        instructions_per_inference=None,
        instructions_min=None,
        instructions_max=None,
        instructions_per_mac=None,
        run_seconds=None,
        exit_status=None,
        ran=False,
    )
