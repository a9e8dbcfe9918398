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
    inputs: np.ndarray  # N × the input's shape, int8, as fed to the model
    indices: np.ndarray  # N, index of each input (in the MNIST test set)
    labels: np.ndarray  # N, the true class (255: none)
    golden: np.ndarray  # N × the output's shape, int8: host TFLM's outputs
    sources_root: str  # the default SOURCES of the Makefile
