"""What every firmware engine is given and returns through: one configuration (CPU × engine ×
kernels, with the project inputs, the sources and the toolchain), and the golden check of what
a device printed against host TFLM's outputs (the shared comparison, compare.bit_agreement)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_edge.compare import bit_agreement
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.build import Toolchain
from mnist_edge.firmware.project import ProjectInputs
from mnist_edge.firmware.qemu import QemuRun
from mnist_edge.records import Agreement
from mnist_edge.sources import SourceTree


@dataclass(frozen=True)
class Config:
    """One CPU × engine × kernels of a firmware run, and what every configuration shares."""

    inputs: ProjectInputs
    board: Board
    kernels: str
    tree: SourceTree
    toolchain: Toolchain
    engine: str = "tflm"

    @property
    def label(self) -> str:
        return f"{self.board.cpu} {self.engine} {self.kernels}"

    @property
    def name(self) -> str:
        # TFLM's projects keep their names (cortex-m4-cmsis-nn); the C engine's say so.
        if self.engine == "tflm":
            return f"{self.board.cpu}-{self.kernels}"
        return f"{self.board.cpu}-{self.engine}"


def checked(inputs: ProjectInputs, device: QemuRun) -> tuple[Agreement, tuple[int, ...]]:
    """The device's outputs against host TFLM's (the golden vectors), image by image: the
    shared comparison, and the test indices of the images that differ."""
    records = device.uart.images
    golden = {int(i): g for i, g in zip(inputs.indices, inputs.golden, strict=True)}
    known = [r for r in records if r.index in golden]
    ours = np.array([r.outputs for r in known], dtype=np.int8).reshape(-1, inputs.golden.shape[1])
    theirs = np.array([golden[r.index] for r in known], dtype=np.int8).reshape(ours.shape)
    agreement = bit_agreement("host tflm", "firmware", theirs, ours)
    unknown = tuple(r.index for r in records if r.index not in golden)
    return agreement, tuple(known[i].index for i in agreement.mismatches) + unknown
