"""The typed operators the C engine compiles, their tensors, and the graph they form.

A layer reads one or more activation tensors (`inputs`: its first, `input`, and any `others`,
e.g. an ADD's second operand) and writes one (`output`); its constants (weights, biases) and
options are fields. Layers are in the flatbuffer's order, which is a topological order: every
layer reads the model's input or tensors written by layers before it. graph.py builds them
from a .tflite; the planner and the emitter read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

ITEMSIZE = {"int8": 1, "int32": 4, "float32": 4}


@dataclass(frozen=True)
class Activation:
    """An activation tensor: its flatbuffer index, shape, dtype and per-tensor quantization
    (scale 0 and zero point 0 for a float32 tensor without any)."""

    index: int
    name: str
    shape: tuple[int, ...]
    scale: float  # the float32 scale, exactly, as a Python float
    zero_point: int
    dtype: str = "int8"

    @property
    def size(self) -> int:
        """Elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * ITEMSIZE[self.dtype]

    def dims(self) -> str:
        """The shape without its batch of 1, as the comments print it: 26x26x32."""
        return "x".join(str(d) for d in self.shape[1:]) or "1"


@dataclass(frozen=True, eq=False)
class Layer:
    """One operator: where it is in the flatbuffer, what it reads and writes."""

    op: ClassVar[str] = ""
    short: ClassVar[str] = ""
    index: int
    input: Activation
    output: Activation
    others: tuple[Activation, ...] = field(default=(), kw_only=True)

    @property
    def inputs(self) -> tuple[Activation, ...]:
        return (self.input, *self.others)

    @property
    def name(self) -> str:
        """A C identifier naming the layer after its operator and position: conv_0, fc_6."""
        return f"{self.short}_{self.index}"


@dataclass(frozen=True, eq=False)
class Conv2D(Layer):
    """CONV_2D with int8 weights (O×H×W×I), int32 bias, per-tensor or per-channel scales."""

    op: ClassVar[str] = "CONV_2D"
    short: ClassVar[str] = "conv"
    weights: np.ndarray
    bias: np.ndarray
    weight_scales: tuple[float, ...]
    stride: tuple[int, int]  # (h, w)
    dilation: tuple[int, int]
    padding: tuple[int, int]  # (top, left), as TFLM computes them
    padding_kind: str  # SAME or VALID
    activation: str

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weights.shape[1]), int(self.weights.shape[2])

    @property
    def depthwise(self) -> bool:
        return False

    @property
    def macs(self) -> int:
        kh, kw = self.kernel
        return self.output.size * kh * kw * int(self.weights.shape[3])


@dataclass(frozen=True, eq=False)
class DepthwiseConv2D(Conv2D):
    """DEPTHWISE_CONV_2D: weights 1×H×W×(I·multiplier), one filter per output channel, each
    reading input channel c // multiplier. Computed by rows like a convolution (slices)."""

    op: ClassVar[str] = "DEPTHWISE_CONV_2D"
    short: ClassVar[str] = "dwconv"
    multiplier: int = 1

    @property
    def depthwise(self) -> bool:
        return True

    @property
    def macs(self) -> int:
        kh, kw = self.kernel
        return self.output.size * kh * kw


@dataclass(frozen=True, eq=False)
class Pool2D(Layer):
    """A pooling window: its size, stride and (top, left) padding."""

    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    padding_kind: str
    activation: str


@dataclass(frozen=True, eq=False)
class MaxPool2D(Pool2D):
    """MAX_POOL_2D."""

    op: ClassVar[str] = "MAX_POOL_2D"
    short: ClassVar[str] = "maxpool"


@dataclass(frozen=True, eq=False)
class AveragePool2D(Pool2D):
    """AVERAGE_POOL_2D (input and output quantized alike: TFLM averages the integers)."""

    op: ClassVar[str] = "AVERAGE_POOL_2D"
    short: ClassVar[str] = "avgpool"


@dataclass(frozen=True, eq=False)
class Reshape(Layer):
    """RESHAPE (and SQUEEZE): the same bytes under another shape (NHWC flattening moves
    nothing)."""

    op: ClassVar[str] = "RESHAPE"
    short: ClassVar[str] = "reshape"


@dataclass(frozen=True, eq=False)
class FullyConnected(Layer):
    """FULLY_CONNECTED with int8 weights (O×I), int32 bias, per-tensor or per-channel scales."""

    op: ClassVar[str] = "FULLY_CONNECTED"
    short: ClassVar[str] = "fc"
    weights: np.ndarray
    bias: np.ndarray
    weight_scales: tuple[float, ...]
    weight_zero_point: int
    activation: str

    @property
    def macs(self) -> int:
        return int(self.weights.size) * (self.input.size // int(self.weights.shape[1]))


@dataclass(frozen=True, eq=False)
class Softmax(Layer):
    """SOFTMAX over the last dimension, int8 in and out."""

    op: ClassVar[str] = "SOFTMAX"
    short: ClassVar[str] = "softmax"
    beta: float


@dataclass(frozen=True, eq=False)
class Reference(Layer):
    """An operator TFLM runs with its own reference code in every build (MEAN, CONCATENATION,
        LOGISTIC, QUANTIZE, ...; and ADD and MUL, which TFLM hands to CMSIS-NN when their shapes are
    equal): its parameters, computed as TFLM's Prepare does, and the C the
        reference module (reference.py, templates/reference.h) writes for it."""

    short: ClassVar[str] = "ref"
    kind: str  # the TFLM operator name
    params: object

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.kind

    @property
    def elementwise(self) -> bool:
        """An ADD or MUL of equal shapes: CMSIS-NN's kernel, element by element."""
        return self.kind in ("ADD", "MUL") and self.params.broadcast is None

    @property
    def name(self) -> str:
        return f"{self.kind.lower()}_{self.index}"


@dataclass(frozen=True, eq=False)
class Graph:
    """The model as the C engine sees it: its layers in order, its input and output."""

    layers: tuple[Layer, ...]
    input: Activation
    output: Activation

    def readers(self, tensor: int) -> list[Layer]:
        """The layers reading a tensor."""
        return [layer for layer in self.layers if any(t.index == tensor for t in layer.inputs)]
