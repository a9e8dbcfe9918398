"""The README.md of each generated firmware project: what it is, how to rebuild and run it, and
what this run measured."""

from __future__ import annotations

from mnist_edge import __version__
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.project import (
    KERNELS_DESCRIPTION,
    STACK_SIZE,
    ProjectInputs,
    render,
    resolver_calls,
)
from mnist_edge.firmware.qemu import QemuRun
from mnist_edge.records import FirmwareResult
from mnist_edge.sources import SOURCES, SourceTree


def _measured_lines(result: FirmwareResult, run: QemuRun | None) -> str:
    if run is None:
        return "Built, not run (run=False)."
    f = result.flash
    return "\n".join(
        [
            "| figure | value |",
            "| --- | --- |",
            f"| golden outputs identical to host TFLM | {result.golden_identical}/"
            f"{result.golden_count} |",
            f"| correct | {result.correct}/{result.images} |",
            f"| instructions per inference | {result.instructions_per_inference:,} median "
            f"(min {result.instructions_min:,}, max {result.instructions_max:,}); "
            f"{result.instructions_per_mac:.2f} per MAC for {result.macs:,} MACs |",
            f"| flash | {result.flash_bytes:,} bytes: model {f.model:,}, images {f.images:,}, "
            f"TFLM runtime {f.tflm_runtime:,}, kernels {f.kernels:,}, CMSIS-NN {f.cmsis_nn:,}, "
            f"libc {f.libc:,}, app {f.app:,} |",
            f"| RAM | {result.ram_bytes:,} bytes: static {result.static_bytes:,} (arena "
            f"{result.arena_bytes:,}) + stack peak {result.stack_bytes:,} |",
        ]
    )


def _source_table() -> str:
    rows = ["| repository | commit | tree hash (SHA-256 of its files) |", "| --- | --- | --- |"]
    rows += [f"| {s.repo} | `{s.commit}` | `{s.tree_hash[:16]}…` |" for s in SOURCES]
    return "\n".join(rows)


def firmware_readme(
    inputs: ProjectInputs,
    board: Board,
    kernels: str,
    result: FirmwareResult,
    run: QemuRun | None,
    tree: SourceTree,
) -> bytes:
    """The project's README.md: what it is, how to build and run it, what it measured."""
    values = {
        "version": __version__,
        "model_name": inputs.model_name,
        "model_sha256": inputs.model_sha256,
        "cpu": board.cpu,
        "machine": board.machine,
        "board_description": board.description,
        "kernels_description": KERNELS_DESCRIPTION[kernels],
        "image_count": len(inputs.inputs),
        "measured": _measured_lines(result, run),
        "mve": " and MVE" if board.macs_per_instruction > 2 else "",
        "code_name": board.code.name,
        "code_origin": f"0x{board.code.origin:08X}",
        "code_length": f"{board.code.length:,}",
        "data_name": board.data.name,
        "data_origin": f"0x{board.data.origin:08X}",
        "data_length": f"{board.data.length:,}",
        "stack_size": f"{STACK_SIZE:,}",
        "op_count": len(resolver_calls(inputs.info, kernels)),
        "library_files": result.library_files,
        "sources": tree.root,
        "qemu_args": " ".join(board.qemu_args),
        "source_table": _source_table(),
        "instructions_per_tick": f"{board.instructions_per_tick:g}",
    }
    return render("README.md", values).encode()
