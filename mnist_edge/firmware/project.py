"""What every generated firmware project is made from: the inputs (the model, the inputs as its
int8 tensors, host TFLM's outputs for them) and the templates under templates/ (real files
with `${name}` fields; the engines and the harness compute the values)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_edge.model_info import ModelInfo
from mnist_edge.templates import render as render_template


def render(template: str, values: dict[str, object]) -> str:
    """A file from firmware/templates/ with its fields filled (the one loader, templates.py)."""
    return render_template("mnist_edge.firmware", template, values)


@dataclass(frozen=True)
class ProjectInputs:
    """What a project is generated from: the model, the images, and the golden outputs."""

    model_name: str
    model: bytes
    model_sha256: str
    info: ModelInfo
    inputs: np.ndarray  # N × the input's shape, in its dtype, as fed to the model
    indices: np.ndarray  # N, index of each input (in the MNIST test set, or its position)
    labels: np.ndarray  # N, the true class (255: none)
    golden: np.ndarray  # N × the output's shape, in its dtype: host TFLM's outputs
    sources_root: str  # the default SOURCES of the Makefile
    has_labels: bool = True  # False: no accuracy (random inputs, a .npy file)
    description: str = ""  # where the inputs came from ("random:20 (seed 0)")

    @property
    def input_bytes(self) -> int:
        return int(self.inputs[0].nbytes)

    @property
    def output_bytes(self) -> int:
        return int(self.golden[0].nbytes)

    @property
    def golden_bytes(self) -> np.ndarray:
        """The golden outputs as the firmware prints them: each byte, as int8, N × bytes."""
        return np.ascontiguousarray(self.golden).view(np.int8).reshape(len(self.golden), -1)
