"""The vocabulary every stage shares: the image and class shapes, tensor specs, int8 quantization.

A leaf: it imports nothing of mnist_edge, so data, model_info, records, the runtimes and the
device stages all build on it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

ROWS = COLS = 28
IMAGE_SHAPE = (ROWS, COLS, 1)  # the model's input, one grayscale channel
NUM_CLASSES = 10


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape, dtype and (for integer tensors) quantization."""

    QUANTIZED_DTYPES: ClassVar[tuple[str, ...]] = ("int8", "uint8", "int16")

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in self.QUANTIZED_DTYPES


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float to the tensor's integer type with its scale and zero point (TFLite's rounding)."""
    if not spec.quantized:
        return np.asarray(x, dtype=spec.dtype)
    info = np.iinfo(spec.dtype)
    scaled = np.asarray(x, dtype=np.float32) / np.float32(spec.scale)
    # TFLite rounds half away from zero; numpy's round is half to even.
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + spec.zero_point
    return np.clip(rounded, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Integer tensor back to float with its scale and zero point."""
    if not spec.quantized:
        return np.asarray(q, dtype=np.float32)
    return ((q.astype(np.int32) - spec.zero_point) * np.float32(spec.scale)).astype(np.float32)
