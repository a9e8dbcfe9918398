"""What every generated firmware project is made from: the inputs (the model, the inputs as its
int8 tensors, host TFLM's outputs for them) and the templates under templates/ (real files
with `${name}` fields; the engines and the harness compute the values)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources

import numpy as np

from mnist_edge.model_info import ModelInfo


class _Template(string.Template):
    """Only `${name}` is a field, so Makefiles keep `$(VAR)`, `$@`, `$<` and `$$` as written."""

    pattern = r"""
    \$(?:
      (?P<escaped>(?!))
    | (?P<named>(?!))
    | {(?P<braced>[a-z_][a-z0-9_]*)}
    | (?P<invalid>(?!))
    )
    """


def render(template: str, values: dict[str, object]) -> str:
    """A file from templates/ with its fields filled; KeyError names a field left without value."""
    text = (
        resources.files("mnist_edge.firmware").joinpath("templates").joinpath(template).read_text()
    )
    return _Template(text).substitute({k: str(v) for k, v in values.items()})


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
    input_scale: float
    input_zero_point: int
    sources_root: str  # the default SOURCES of the Makefile
