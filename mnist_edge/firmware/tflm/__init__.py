"""The TFLM engine: the interpreter and its kernels (reference or CMSIS-NN) behind the harness's
engine functions (templates/tflm/engine.cc), the library built once per configuration into the
cache (tflm.library), the arena sized on the device itself, then built, run and measured by the
harness like every engine.

`TflmEngine` is what `firmware()` is given for `--engine tflm`.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from mnist_edge.device import DeviceModel
from mnist_edge.errors import MnistEdgeError
from mnist_edge.firmware import harness
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.configs import Config, Engine
from mnist_edge.firmware.qemu import QemuRun
from mnist_edge.firmware.tflm.library import build_library, library_key
from mnist_edge.firmware.tflm.project import (
    KERNELS_DESCRIPTION,
    LIBRARY_KERNELS,
    STACK_SIZE,
    engine_files,
    model_data,
    step_names,
    unsupported_ops,
)
from mnist_edge.records import FirmwareResult, TflmBuild

ARENA_ALIGNMENT = 16
# What TFLM's memory planning borrows from the arena's free middle while AllocateTensors runs
# (micro_allocator.cc, CommitStaticMemoryPlan) and gives back before arena_used_bytes() is
# read, on a 32-bit core: an AllocationInfo (24 B) for every tensor and scratch buffer, and the
# GreedyMemoryPlanner's 40 B per buffer. Where a model's activations are smaller than that (an
# autoencoder of small FC layers), an arena of exactly the used bytes cannot plan.
PLANNING_BYTES_PER_BUFFER = 24 + 40


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def component_of(member: str) -> str:
    """What an object of TFLM's link is: the flatbuffer (model_data.o) the engine's constants;
    engine.o, the library (TFLM, its kernels, CMSIS-NN), libm and what of libc only TFLM needs
    (vsnprintf for its messages, with its locale and number formatting) its code; the rest, the
    mem* functions every engine calls included, the harness."""
    name = Path(member.split("(")[-1].rstrip(")")).name
    if name == "model_data.o":
        return harness.CONSTANTS
    if "libc.a(" in member and not re.match(r"libc?_a-(mem|str)", name):
        return harness.CODE
    # The library is a thin archive: the map names its objects by their paths under LIB_DIR.
    library = "/tflite-micro-" in member or "/CMSIS-NN-" in member or "libtflm.a(" in member
    if name == "engine.o" or library or "libm.a(" in member:
        return harness.CODE
    return harness.HARNESS


class TflmEngine(Engine):
    """TensorFlow Lite Micro, with its reference or CMSIS-NN kernels."""

    name = "tflm"
    description = "TensorFlow Lite Micro"

    def __init__(self) -> None:
        self._host_arenas: dict[str, int] = {}

    def kernel_sets(self, kernels: list[str]) -> list[str]:
        """The kernel sets to build: each one asked for."""
        return list(kernels)

    def project_name(self, board: Board, kernels: str) -> str:
        return f"{board.cpu}-{kernels}"

    def stack_size(self, board: Board) -> int:
        return STACK_SIZE

    def host_arena(self, device: DeviceModel) -> int:
        """TFLM's arena for the model measured on the host (64-bit: a little more than a 32-bit
        MCU needs), once per model."""
        if device.sha256 not in self._host_arenas:
            from mnist_edge.arena import measure_arena

            measured = measure_arena(device.data, device.name, device.info).bytes
            self._host_arenas[device.sha256] = measured
        return self._host_arenas[device.sha256]

    def refusal(self, board: Board, device: DeviceModel) -> str | None:
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
        arena = self.host_arena(device)
        if arena > board.data.length:
            return (
                f"TFLM needs at least {arena:,} bytes of RAM for its tensor arena alone; "
                f"{board.machine} has {board.data.length:,}"
            )
        if not board.tflm:
            return f"TFLM's firmware is not built for {board.cpu} yet"
        return None

    def readme_values(self, config: Config) -> dict[str, str]:
        return {
            "engine_title": "TensorFlow Lite Micro",
            "engine_description": "TensorFlow Lite Micro and "
            + KERNELS_DESCRIPTION[config.kernels],
            "engine_rows": (
                "| `engine.cc`, `engine.h` | the interpreter behind main.c's engine functions: "
                "the op resolver of the model's operators, the profiler | keep |\n"
                "| `model_data.cc/.h` | the .tflite as `g_model[]`, and the tensor arena | keep |\n"
                "| `tflm.mk`, `engine.mk` | the TFLM library (CPU flags, defines, source files), "
                "built into `lib/` once | `CPU_FLAGS` if the core differs |"
            ),
            "make_example": f"SOURCES={config.tree.root}",
        }

    def _files(self, config: Config, arena: int) -> dict[str, bytes]:
        inputs, board = config.inputs, config.board
        files = harness.harness_files(config, step_names(inputs.info), self.readme_values(config))
        files |= engine_files(inputs, board, config.kernels, arena)
        files |= harness.data_files(inputs.inputs, inputs.golden, inputs.labels, inputs.indices)
        return files

    def _linked_and_run(
        self,
        config: Config,
        project: Path,
        variables: dict[str, str],
        old: tuple[str, ...],
        arena: int,
        run: bool,
        timeout_s: float,
    ) -> tuple[int, QemuRun | None]:
        """The firmware linked with `arena` and run; where TFLM cannot plan in it (the used
        bytes leave no room for its planning, PLANNING_BYTES_PER_BUFFER), once more with that
        room added. The arena it ran with, and the run."""
        harness.link(project, config, variables, old=old)
        if not run:
            return arena, None
        try:
            return arena, harness.run_checked(config, project / harness.ELF, timeout_s, project)
        except MnistEdgeError as exc:
            if "AllocateTensors failed" not in str(exc):
                raise
        info = config.inputs.info
        buffers = len(info.tensors) + 2 * len(info.operators)  # at most two scratch per kernel
        arena = _round_up(arena + PLANNING_BYTES_PER_BUFFER * buffers, ARENA_ALIGNMENT)
        files = model_data(config.inputs, arena)
        harness.write_project(project, {n: t.encode() for n, t in files.items()})
        harness.link(project, config, variables, old=old)
        return arena, harness.run_checked(config, project / harness.ELF, timeout_s, project)

    def build(
        self, config: Config, project: Path, run: bool, timeout_s: float
    ) -> tuple[FirmwareResult, QemuRun | None]:
        """Generate the project, build TFLM (cached), then size the arena: a first link with
        the largest arena the board allows runs one input, TFLM says how much arena this CPU
        and these kernels use, and the firmware shipped gets exactly that. Not running, the
        host's measure stands in."""
        board, device = config.board, config.inputs
        host_arena = self._host_arenas.get(device.model_sha256)
        sizing_arena = _round_up(board.data.length // 2, 1024) if run else host_arena
        files = self._files(config, sizing_arena)
        harness.write_project(project, files)
        library = build_library(
            project,
            library_key(files["tflm.mk"].decode(), config.toolchain, config.tree),
            f"TFLM for {config.label}",
            config.tree,
            config.toolchain,
        )
        variables = {"SOURCES": str(config.tree.root), "LIB_DIR": str(library.folder)}
        old = (str(library.archive),)
        started = time.perf_counter()
        arena = sizing_arena
        if run:
            sizing = "sizing.elf"
            harness.link(project, config, variables, elf=sizing, defines="-DMAX_INPUTS=1", old=old)
            probe = harness.run_checked(config, project / sizing, timeout_s, project)
            arena = _round_up(probe.uart.summary.arena_used_bytes, ARENA_ALIGNMENT)
            harness.write_project(
                project, {n: t.encode() for n, t in model_data(device, arena).items()}
            )
        arena, qemu = self._linked_and_run(config, project, variables, old, arena, run, timeout_s)
        seconds = time.perf_counter() - started
        elf = project / harness.ELF
        for leftover in ("build-sizing", "sizing.elf", "sizing.map"):
            path = project / leftover
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        facts = TflmBuild(
            library_files=library.files,
            library_cached=not library.built_now,
            library_seconds=round(library.seconds, 1),
            arena_measured_on="device" if run else "host",
        )
        result = harness.result(
            config,
            elf,
            qemu,
            seconds,
            arena,
            facts.arena_measured_on,
            tflm=facts,
            component_of=component_of,
        )
        return result, qemu
