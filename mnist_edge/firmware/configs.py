"""What every firmware engine is given and returns through: the Engine interface, one
configuration (CPU × engine × kernels, with the project inputs, the sources and the
toolchain), and the golden check of what a device printed against host TFLM's outputs (the
shared comparison, compare.bit_agreement)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.compare import bit_agreement
from mnist_edge.device import DeviceModel
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.build import Toolchain
from mnist_edge.firmware.project import ProjectInputs
from mnist_edge.firmware.qemu import QemuRun
from mnist_edge.records import Agreement, FirmwareResult
from mnist_edge.sources import SourceTree


class Engine:
    """A firmware engine: what the orchestrator (firmware.firmware) and the harness need of it.
    Nothing outside an engine's own module names an engine; each says what it is here."""

    name: str  # as users pass it: --engine NAME
    description: str  # for the Makefile and main.c's header

    def kernel_sets(self, kernels: list[str]) -> list[str]:
        """The kernel sets to build of those asked for."""
        raise NotImplementedError

    def refusal(self, board: Board, device: DeviceModel) -> str | None:
        """Why this engine cannot run the model on the board, or None."""
        raise NotImplementedError

    def project_name(self, board: Board, kernels: str) -> str:
        """The project's folder in the output folder."""
        raise NotImplementedError

    def stack_size(self, board: Board) -> int:
        """The stack reserved after the statics (a multiple of 8)."""
        raise NotImplementedError

    def build(
        self, config: Config, project: Path, run: bool, timeout_s: float
    ) -> tuple[FirmwareResult, QemuRun | None]:
        """Write the project into `project` (the harness's files, the engine's, the inputs),
        build it, run it (when `run`) and measure it: its result and the QEMU run."""
        raise NotImplementedError

    def readme_values(self, config: Config) -> dict[str, str]:
        """The engine's part of the project's README (firmware.readme): engine_title,
        engine_description, engine_rows (its files, as table rows), make_example."""
        raise NotImplementedError


@dataclass(frozen=True)
class Config:
    """One CPU × engine × kernels of a firmware run, and what every configuration shares."""

    inputs: ProjectInputs
    board: Board
    kernels: str
    tree: SourceTree
    toolchain: Toolchain
    engine: Engine
    # The C engine's memory plan: speed, size, or auto (speed where it fits the board's RAM)
    optimise: str = "auto"

    @property
    def label(self) -> str:
        return f"{self.board.cpu} {self.engine.name} {self.kernels}"

    @property
    def name(self) -> str:
        return self.engine.project_name(self.board, self.kernels)

    @property
    def stack_size(self) -> int:
        return self.engine.stack_size(self.board)


def checked(inputs: ProjectInputs, device: QemuRun) -> tuple[Agreement, tuple[int, ...]]:
    """The device's outputs against host TFLM's (the golden vectors), image by image: the
    shared comparison, and the test indices of the images that differ."""
    records = device.uart.images
    golden = {int(i): g for i, g in zip(inputs.indices, inputs.golden_bytes, strict=True)}
    known = [r for r in records if r.index in golden]
    ours = np.array([r.outputs for r in known], dtype=np.int8).reshape(-1, inputs.output_bytes)
    theirs = np.array([golden[r.index] for r in known], dtype=np.int8).reshape(ours.shape)
    agreement = bit_agreement("host tflm", "firmware", theirs, ours)
    unknown = tuple(r.index for r in records if r.index not in golden)
    return agreement, tuple(known[i].index for i in agreement.mismatches) + unknown
