"""The TFLM engine: the interpreter and its kernels (reference or CMSIS-NN) compiled into a
firmware project (templates/), the library built once per configuration into the cache, the
arena sized on the device itself, run in QEMU, measured.

`TflmEngine` is what `firmware()` is given for `--engine tflm`; `CodegenEngine`
(firmware.cengine) is the other one.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.device import DeviceModel
from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import cache_dir, sha256_file
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.build import (
    FLASH_COMPONENTS,
    Library,
    Toolchain,
    build_library,
    library_key,
    make,
    measure,
)
from mnist_edge.firmware.configs import Config, checked
from mnist_edge.firmware.project import (
    LIBRARY_KERNELS,
    STACK_SIZE,
    model_data,
    project_files,
    unsupported_ops,
)
from mnist_edge.firmware.qemu import QemuRun, qemu_command, run_firmware
from mnist_edge.model_info import count_macs
from mnist_edge.records import EngineFlash, EngineRam, FirmwareResult, FlashSplit, LayerCost
from mnist_edge.sources import SourceTree

ELF = "firmware.elf"
ARENA_ALIGNMENT = 16


class TflmEngine:
    """TensorFlow Lite Micro, with its reference or CMSIS-NN kernels."""

    name = "tflm"

    def kernel_sets(self, kernels: list[str]) -> list[str]:
        """The kernel sets to build: each one asked for."""
        return list(kernels)

    def refusal(self, board: Board, device: DeviceModel, host_arena: int) -> str | None:
        """Why this engine cannot run the model on the board, or None."""
        if board.arch != "arm":
            return (
                f"TFLM is C++, and its firmware needs libstdc++ and newlib for {board.gcc_prefix}"
                "gcc, which Debian does not package (the C engine runs there: --engine codegen)"
            )
        missing = unsupported_ops(device.info)
        if missing:
            return (
                f"uses {', '.join(missing)}, which the firmware's TFLM library does not compile "
                f"(it has {', '.join(LIBRARY_KERNELS)})"
            )
        if host_arena > board.data.length:
            return (
                f"TFLM needs at least {host_arena:,} bytes of RAM for its tensor arena alone; "
                f"{board.machine} has {board.data.length:,}"
            )
        if not board.tflm:
            return f"TFLM's firmware is not built for {board.cpu} yet"
        return None

    def build(self, config: Config, staging: Path, run: bool, timeout_s: float, host_arena):
        """Build (and run) the configuration in staging/NAME; its result and the QEMU run."""
        return build_tflm(config, staging, run, timeout_s, host_arena)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class _Built:
    elf: Path
    map_file: Path
    seconds: float


def _link(
    project: Path,
    board: Board,
    library: Library,
    tree: SourceTree,
    toolchain: Toolchain,
    label: str,
    build: str = "build",
    elf: str = ELF,
    defines: str = "",
) -> _Built:
    """Compile the application and link it with the cached library, by the project's Makefile."""
    variables = {
        "SOURCES": str(tree.root),
        "LIB_DIR": str(library.folder),
        "BUILD": build,
        "ELF": elf,
        "APP_DEFINES": defines,
    }
    log_file = cache_dir() / "firmware" / "logs" / f"{project.name}-{build}.log"
    try:
        run = make(
            project,
            [elf],
            variables,
            toolchain,
            log_file,
            f"Building the firmware for {label}",
            old=(str(library.archive),),
        )
    except MnistEdgeError as exc:
        if "overflowed" not in str(exc):
            raise
        raise MnistEdgeError(
            f"The firmware for {label} does not fit {board.machine}'s {board.code.name} "
            f"({board.code.length:,} bytes for code, constants, the model and the images): "
            f"{exc} Run fewer images."
        ) from None
    return _Built(project / elf, project / elf.replace(".elf", ".map"), run.seconds)


def _run(board: Board, elf: Path, timeout_s: float, label: str) -> QemuRun:
    run = run_firmware(board, elf, timeout_s)
    error = run.uart.error
    if run.uart.summary is None or error is not None:
        reason = error or (run.stderr.strip().splitlines() or ["no RESULT line"])[-1]
        raise MnistEdgeError(
            f"The firmware for {label} stopped with status {run.returncode}: {reason}."
        )
    return run


def _build(config: Config, project: Path, run: bool, timeout_s: float, host_arena: int | None):
    """Generate the project, build TFLM (cached) and link; when running, first link a sizing
    build that runs one image with the largest arena the board allows: TFLM then says how much
    arena this CPU and these kernels use, and the firmware shipped gets exactly that. The
    sizing build also profiles its image (main.cc's PROFILE_LAYERS): the instructions of each
    operator, which the firmware shipped does not spend. Not running, the host's measure stands
    in (64-bit: a little more than a 32-bit MCU needs), and there are no layers."""
    board, label = config.board, config.label
    sizing_arena = _round_up(board.data.length // 2, 1024) if run else host_arena
    files = project_files(config.inputs, board, config.kernels, sizing_arena)
    for file_name, content in files.items():
        (project / file_name).write_bytes(content)
    library = build_library(
        project,
        library_key(files["tflm.mk"].decode(), config.toolchain, config.tree),
        f"TFLM for {label}",
        config.tree,
        config.toolchain,
    )
    started = time.perf_counter()
    arena, layers = sizing_arena, ()
    if run:
        sizing = _link(
            project,
            board,
            library,
            config.tree,
            config.toolchain,
            label,
            build="build-sizing",
            elf="sizing.elf",
            defines="-DIMAGES_TO_RUN=1 -DPROFILE_LAYERS",
        )
        probe = _run(board, sizing.elf, timeout_s, label)
        arena = _round_up(probe.uart.summary.arena_used_bytes, ARENA_ALIGNMENT)
        layers = probe.uart.layers
        for name, text in model_data(config.inputs, arena).items():
            (project / name).write_bytes(text.encode())
    built = _link(project, board, library, config.tree, config.toolchain, label)
    return library, built, arena, layers, time.perf_counter() - started


NOT_RUN = dict(
    golden_count=0,
    golden_identical=0,
    correct=0,
    accuracy=None,
    agreement_with_host_tflm=None,
    mismatches=(),
    instructions_per_inference=None,
    instructions_min=None,
    instructions_max=None,
    stack_bytes=STACK_SIZE,  # the reservation: no peak was painted
    run_seconds=None,
    exit_status=None,
)


def _run_figures(inputs, device: QemuRun | None) -> dict:
    """What the run says: the golden check, accuracy, instructions, stack (NOT_RUN without)."""
    if device is None:
        return NOT_RUN
    images = len(inputs.inputs)
    agreement, mismatches = checked(inputs, device)
    counts = [r.instructions for r in device.uart.images]
    summary = device.uart.summary
    return dict(
        golden_count=summary.count,
        golden_identical=summary.identical,
        correct=summary.correct,
        accuracy=round(summary.correct / images, 6),
        agreement_with_host_tflm=round(agreement.same_class / images, 6),
        mismatches=mismatches,
        instructions_per_inference=int(statistics.median(counts)) if counts else None,
        instructions_min=min(counts) if counts else None,
        instructions_max=max(counts) if counts else None,
        stack_bytes=summary.stack_peak_bytes,
        run_seconds=round(device.seconds, 1),
        exit_status=device.returncode,
    )


def build_tflm(
    config: Config, staging: Path, run: bool, timeout_s: float, host_arena: int | None
) -> tuple[FirmwareResult, QemuRun | None]:
    """Build (and run) one configuration in staging/NAME and measure it."""
    board, inputs, name = config.board, config.inputs, config.name
    project = staging / name
    project.mkdir()
    library, built, arena, layers, build_seconds = _build(
        config, project, run, timeout_s, host_arena
    )
    sizes = measure(built.elf, built.map_file)
    device = _run(board, built.elf, timeout_s, config.label) if run else None
    for leftover in ("build", "build-sizing", "sizing.elf", "sizing.map"):
        path = project / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    macs = count_macs(inputs.info)
    images = len(inputs.inputs)
    figures = _run_figures(inputs, device)
    median = figures["instructions_per_inference"]
    flash = FlashSplit(**{c: sizes.flash[c] for c in FLASH_COMPONENTS})
    return FirmwareResult(
        cpu=board.cpu,
        board=board.machine,
        kernels=config.kernels,
        model=inputs.model_name,
        model_sha256=inputs.model_sha256,
        images=images,
        macs=macs,
        instructions_per_mac=round(median / macs, 4) if median and macs else None,
        isa_limit_instructions=-(-macs // board.macs_per_instruction),
        flash_bytes=sizes.flash_bytes,
        flash=flash,
        engine_flash=EngineFlash(
            engine_code=flash.tflm_runtime + flash.kernels + flash.cmsis_nn,
            engine_constants=flash.model,
            harness=flash.images + flash.libc + flash.app,
        ),
        engine_ram=EngineRam(arena, figures["stack_bytes"], sizes.static_bytes - arena),
        engine="tflm",
        ram_bytes=sizes.static_bytes + figures["stack_bytes"],
        static_bytes=sizes.static_bytes,
        arena_bytes=arena,
        arena_measured_on="device" if run else "host",
        stack_reserved_bytes=STACK_SIZE,
        project=name,
        elf=f"{name}/{ELF}",
        elf_sha256=sha256_file(built.elf),
        library_files=library.files,
        library_cached=not library.built_now,
        library_seconds=round(library.seconds, 1),
        build_seconds=round(build_seconds, 1),
        qemu_command=tuple(qemu_command(board, Path(ELF))),
        ran=device is not None,
        layers=[LayerCost(line.name, line.instructions) for line in layers],
        layers_image=layers[0].index if layers else None,
        **figures,
    ), device


# ----------------------------------------------------------------------------- the stage
