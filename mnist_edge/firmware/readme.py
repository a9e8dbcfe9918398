"""The README.md of each generated firmware project, whichever engine: what it is, how to rebuild
and run it, and what this run measured."""

from __future__ import annotations

from mnist_edge import __version__
from mnist_edge.firmware.configs import Config
from mnist_edge.firmware.project import render
from mnist_edge.records import FirmwareResult
from mnist_edge.sources import SOURCES


def _measured_lines(result: FirmwareResult) -> str:
    if not result.ran:
        return "Built, not run (`firmware --no-run`)."
    f, m = result.flash, result.ram
    labelled = result.accuracy is not None  # random inputs have no true class
    return "\n".join(
        [
            "| figure | value |",
            "| --- | --- |",
            f"| outputs identical to host TFLM | {result.golden_identical}/{result.golden_count} |",
            *([f"| correct | {result.correct}/{result.images} |"] if labelled else []),
            f"| instructions per inference | {result.instructions_per_inference:,} median "
            f"(min {result.instructions_min:,}, max {result.instructions_max:,}) for "
            f"{result.macs:,} MACs |",
            f"| flash | {result.flash_bytes:,} bytes: engine code {f.engine_code:,}, engine "
            f"constants {f.engine_constants:,}, harness {f.harness:,} |",
            f"| RAM | {result.ram_bytes:,} bytes: engine {m.engine_buffers:,} (arena "
            f"{result.arena_bytes:,}), harness {m.harness_statics:,}, stack peak {m.stack:,} |",
        ]
    )


def _source_table() -> str:
    rows = ["| repository | commit | tree hash (SHA-256 of its files) |", "| --- | --- | --- |"]
    rows += [f"| {s.repo} | `{s.commit}` | `{s.tree_hash[:16]}…` |" for s in SOURCES]
    return "\n".join(rows)


def firmware_readme(config: Config, result: FirmwareResult, engine_values: dict[str, str]) -> bytes:
    """The project's README.md; engine_values: engine_title, engine_description, engine_rows
    (the engine's files as table rows) and make_example (make's arguments)."""
    board, inputs = config.board, config.inputs
    values = {
        "version": __version__,
        "model_name": inputs.model_name,
        "model_sha256": inputs.model_sha256,
        "cpu": board.cpu,
        "machine": board.machine,
        "board_description": board.description,
        "image_count": len(inputs.inputs),
        "measured": _measured_lines(result),
        "code_name": board.code.name,
        "code_origin": f"0x{board.code.origin:08X}",
        "code_length": f"{board.code.length:,}",
        "data_name": board.data.name,
        "data_origin": f"0x{board.data.origin:08X}",
        "data_length": f"{board.data.length:,}",
        "stack_size": f"{config.stack_size:,}",
        "counter": board.counter,
        "qemu": board.qemu,
        "qemu_args": " ".join(board.qemu_args),
        "source_table": _source_table(),
        "instructions_per_tick": f"{board.instructions_per_tick:g}",
        **engine_values,
    }
    return render("README.md", values).encode()
