"""Golden vectors: the first N test images exactly as fed to the model, and what TFLM's
reference kernels computed for them (never XNNPACK's, whose int8 rounding differs)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from mnist_edge.artifacts import GOLDEN_FILE

OUTPUTS_FROM = "tflm (TFLM reference kernels)"


@dataclass(frozen=True, eq=False)
class GoldenVectors:
    """Inputs (the model's dtype), TFLM's raw outputs and the labels of the first N test images."""

    inputs: np.ndarray
    outputs: np.ndarray
    labels: np.ndarray

    @property
    def count(self) -> int:
        return len(self.inputs)

    def summary(self) -> dict[str, object]:
        """What the manifest says of them."""
        return {
            "count": self.count,
            "images": f"the first {self.count} MNIST test images",
            "outputs_from": OUTPUTS_FROM,
            "file": GOLDEN_FILE,
            "inputs": f"{self.inputs.dtype.name} {list(self.inputs.shape)}",
            "outputs": f"{self.outputs.dtype.name} {list(self.outputs.shape)}",
        }

    def npz_bytes(self) -> bytes:
        """golden.npz: `inputs`, `outputs`, `labels`."""
        buffer = io.BytesIO()
        np.savez(buffer, inputs=self.inputs, outputs=self.outputs, labels=self.labels)
        return buffer.getvalue()


def golden_vectors(
    inputs: np.ndarray, tflm_outputs: np.ndarray, labels: np.ndarray, count: int
) -> GoldenVectors:
    """The first `count` quantized test images, TFLM's outputs for them, and their labels."""
    return GoldenVectors(
        inputs=inputs[:count], outputs=tflm_outputs[:count], labels=labels[:count].astype(np.uint8)
    )
