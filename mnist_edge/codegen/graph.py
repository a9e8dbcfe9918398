"""Read an int8 .tflite flatbuffer into the typed chain of layers the C engine compiles.

Only what a small vision CNN is made of: CONV_2D (valid or same padding, any stride and
dilation, a fused ReLU family activation), MAX_POOL_2D, RESHAPE, FULLY_CONNECTED and SOFTMAX,
in one chain (each operator reads the previous one's output), batch 1, int8 activations with
int8 weights and int32 biases, quantized per tensor or per channel. Anything else is refused
with one line naming what is in the way. Shapes and padding are computed the way TFLM's
Prepare computes them, and checked against the shapes the converter wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mnist_edge.errors import ModelError

SUPPORTED_OPS = ("CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")
# The fused activations TFLM's int8 kernels turn into a clamp (TANH and SIGN_BIT are not).
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
MCU_HINT = "export the MCU-lean model (mnist-edge export --int8 writes model_int8_mcu.tflite)"


@dataclass(frozen=True)
class Activation:
    """An int8 activation tensor: its flatbuffer index, shape and quantization."""

    index: int
    name: str
    shape: tuple[int, ...]
    scale: float  # the float32 scale, exactly, as a Python float
    zero_point: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)

    def dims(self) -> str:
        """The shape without its batch of 1, as the comments print it: 26x26x32."""
        return "x".join(str(d) for d in self.shape[1:])


@dataclass(frozen=True, eq=False)
class Layer:
    """One operator of the chain: where it is in the flatbuffer, what it reads and writes."""

    op: ClassVar[str] = ""
    short: ClassVar[str] = ""
    index: int
    input: Activation
    output: Activation

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


@dataclass(frozen=True, eq=False)
class MaxPool2D(Layer):
    """MAX_POOL_2D: window, stride and (top, left) padding."""

    op: ClassVar[str] = "MAX_POOL_2D"
    short: ClassVar[str] = "maxpool"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    padding_kind: str
    activation: str


@dataclass(frozen=True, eq=False)
class Reshape(Layer):
    """RESHAPE: the same bytes under another shape (NHWC flattening moves nothing)."""

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


@dataclass(frozen=True, eq=False)
class Softmax(Layer):
    """SOFTMAX over the last dimension, int8 in and out."""

    op: ClassVar[str] = "SOFTMAX"
    short: ClassVar[str] = "softmax"
    beta: float


@dataclass(frozen=True, eq=False)
class Graph:
    """The model as the C engine sees it: the chain of layers, its input and output."""

    layers: tuple[Layer, ...]
    input: Activation
    output: Activation


def refuse_unsupported(info, origin: str) -> None:
    """ModelError unless the C engine compiles this kind of model (int8, one subgraph), naming
    every operator it does not compile, in model order; `info` is model_info.read_model's."""
    from mnist_edge.model_info import model_kind

    kind = model_kind(info)
    if kind != "int8":
        raise ModelError(
            f"{origin}: the C engine compiles int8 models; this one is {kind}; {MCU_HINT}."
        )
    if info.subgraphs != 1:
        raise ModelError(f"{origin}: {info.subgraphs} subgraphs; the C engine compiles one.")
    unsupported = list(dict.fromkeys(op.op for op in info.operators if op.op not in SUPPORTED_OPS))
    if unsupported:
        which = "operator" if len(unsupported) == 1 else "operators"
        verb = "is" if len(unsupported) == 1 else "are"
        raise ModelError(
            f"{origin}: {which} {', '.join(unsupported)} {verb} not supported by the C engine "
            f"(it compiles {', '.join(SUPPORTED_OPS)}); {MCU_HINT}."
        )
    if not info.operators:
        raise ModelError(f"{origin}: the model has no operators to compile.")


class _Reader:
    """The flatbuffer's tensors, buffers and options, read with LiteRT's schema module."""

    def __init__(self, data: bytes, origin: str):
        from ai_edge_litert import schema_py_generated as schema

        self.schema = schema
        self.origin = origin
        self.model = schema.Model.GetRootAs(data, 0)
        self.graph = self.model.Subgraphs(0)

    def fail(self, where: str, what: str) -> ModelError:
        return ModelError(f"{self.origin}: {where}: {what}; the C engine cannot compile it.")

    def quantization(self, index: int) -> tuple[tuple[float, ...], tuple[int, ...], int]:
        """(scales, zero points, quantized dimension) of a tensor; empty when it has none."""
        quant = self.graph.Tensors(index).Quantization()
        if quant is None or quant.ScaleLength() == 0:
            return (), (), 0
        # float(np.float32) is exact: the float32 scale TFLM reads, widened to double.
        scales = tuple(float(s) for s in quant.ScaleAsNumpy())
        zeros = tuple(int(z) for z in quant.ZeroPointAsNumpy()) if quant.ZeroPointLength() else ()
        return scales, zeros or (0,) * len(scales), int(quant.QuantizedDimension())

    def dtype(self, index: int) -> str:
        types = {v: k.lower() for k, v in vars(self.schema.TensorType).items() if k.isupper()}
        return types.get(self.graph.Tensors(index).Type(), "unknown")

    def shape(self, index: int) -> tuple[int, ...]:
        tensor = self.graph.Tensors(index)
        return tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def activation(self, index: int, where: str) -> Activation:
        """An int8 activation tensor, per-tensor quantized, batch 1."""
        if self.dtype(index) != "int8":
            raise self.fail(where, f"tensor {index} is {self.dtype(index)}, expected int8")
        scales, zeros, _ = self.quantization(index)
        if len(scales) != 1:
            raise self.fail(where, f"tensor {index} has {len(scales)} scales, expected one")
        shape = self.shape(index)
        if not shape or shape[0] != 1:
            raise self.fail(where, f"tensor {index} has shape {list(shape)}, expected batch 1")
        name = (self.graph.Tensors(index).Name() or b"").decode(errors="replace")
        return Activation(index, name, shape, scales[0], zeros[0])

    def constant(self, index: int, dtype: str, where: str) -> np.ndarray:
        """A constant tensor's data, in its shape."""
        if self.dtype(index) != dtype:
            raise self.fail(where, f"tensor {index} is {self.dtype(index)}, expected {dtype}")
        buffer = self.model.Buffers(self.graph.Tensors(index).Buffer())
        if buffer is None or buffer.DataLength() == 0:
            raise self.fail(where, f"tensor {index} is not a constant held in the flatbuffer")
        raw = buffer.DataAsNumpy().tobytes()
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(
            self.shape(index)
        )

    def options(self, op, cls_name: str, where: str):
        table = op.BuiltinOptions()
        if table is None:
            raise self.fail(where, "its options are missing")
        options = getattr(self.schema, cls_name)()
        options.Init(table.Bytes, table.Pos)
        return options


def _fused(reader: _Reader, code: int, where: str) -> str:
    if code not in ACTIVATIONS:
        raise reader.fail(where, f"fused activation {code} has no int8 clamp")
    return ACTIVATIONS[code]


def _out_size(padding: str, size: int, window: int, stride: int, dilation: int) -> int:
    """TFLM's ComputeOutSize."""
    effective = (window - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def _pad(stride: int, dilation: int, size: int, window: int, out: int) -> int:
    """TFLM's ComputePaddingWithOffset: the leading padding (the odd one goes at the end)."""
    total = (out - 1) * stride + (window - 1) * dilation + 1 - size
    return max(total, 0) // 2


def _spatial(reader, options, source, target, window, dilation, where):
    """(stride, padding, padding kind) of a convolution or pooling window, shapes checked."""
    kind = "SAME" if options.Padding() == reader.schema.Padding.SAME else "VALID"
    stride = (int(options.StrideH()), int(options.StrideW()))
    if min(stride) < 1 or min(dilation) < 1 or min(window) < 1:
        raise reader.fail(where, f"stride {stride}, dilation {dilation}, window {window}")
    if len(source.shape) != 4 or len(target.shape) != 4:
        raise reader.fail(where, f"shapes {list(source.shape)} -> {list(target.shape)}, not NHWC")
    out = tuple(
        _out_size(kind, source.shape[1 + i], window[i], stride[i], dilation[i]) for i in (0, 1)
    )
    if out != target.shape[1:3]:
        raise reader.fail(where, f"output {list(target.shape)} does not match {kind} padding")
    pad = tuple(
        _pad(stride[i], dilation[i], source.shape[1 + i], window[i], out[i]) for i in (0, 1)
    )
    return stride, pad, kind


def _weight_scales(reader: _Reader, weights: int, channels: int, where: str):
    scales, zeros, axis = reader.quantization(weights)
    if len(scales) not in (1, channels) or (len(scales) > 1 and axis != 0):
        raise reader.fail(where, f"{len(scales)} weight scales along axis {axis}")
    return scales, zeros


def _bias(reader: _Reader, inputs, channels: int, where: str) -> np.ndarray:
    if len(inputs) < 3 or inputs[2] < 0:
        return np.zeros(channels, np.int32)  # no bias: the kernels add zeros
    bias = reader.constant(int(inputs[2]), "int32", where).reshape(-1)
    if bias.size != channels:
        raise reader.fail(where, f"{bias.size} biases for {channels} channels")
    return bias


def _conv(reader, op, index, source, target, where) -> Conv2D:
    inputs = op.InputsAsNumpy()
    options = reader.options(op, "Conv2DOptions", where)
    weights = reader.constant(int(inputs[1]), "int8", where)
    if weights.ndim != 4 or weights.shape[3] != source.shape[3]:
        raise reader.fail(where, f"weights {list(weights.shape)} for input {list(source.shape)}")
    if weights.shape[0] != target.shape[3]:
        raise reader.fail(where, f"weights {list(weights.shape)} for output {list(target.shape)}")
    scales, zeros = _weight_scales(reader, int(inputs[1]), weights.shape[0], where)
    if any(zeros):
        raise reader.fail(where, "the weights are not symmetric (zero point not 0)")
    dilation = (int(options.DilationHFactor()), int(options.DilationWFactor()))
    window = (int(weights.shape[1]), int(weights.shape[2]))
    stride, pad, kind = _spatial(reader, options, source, target, window, dilation, where)
    return Conv2D(
        index=index,
        input=source,
        output=target,
        weights=weights,
        bias=_bias(reader, inputs, weights.shape[0], where),
        weight_scales=scales,
        stride=stride,
        dilation=dilation,
        padding=pad,
        padding_kind=kind,
        activation=_fused(reader, options.FusedActivationFunction(), where),
    )


def _pool(reader, op, index, source, target, where) -> MaxPool2D:
    options = reader.options(op, "Pool2DOptions", where)
    window = (int(options.FilterHeight()), int(options.FilterWidth()))
    stride, pad, kind = _spatial(reader, options, source, target, window, (1, 1), where)
    # TFLM's PoolingPrepare asks for this: max-pooling picks values, it never rescales them.
    if abs(source.scale - target.scale) > 1e-6 or source.zero_point != target.zero_point:
        raise reader.fail(where, "input and output are quantized differently")
    if source.shape[3] != target.shape[3]:
        raise reader.fail(where, f"{source.shape[3]} channels in, {target.shape[3]} out")
    return MaxPool2D(
        index=index,
        input=source,
        output=target,
        window=window,
        stride=stride,
        padding=pad,
        padding_kind=kind,
        activation=_fused(reader, options.FusedActivationFunction(), where),
    )


def _fully_connected(reader, op, index, source, target, where) -> FullyConnected:
    inputs = op.InputsAsNumpy()
    options = reader.options(op, "FullyConnectedOptions", where)
    if options.WeightsFormat() != 0:
        raise reader.fail(where, "its weights are shuffled (only the default format is)")
    weights = reader.constant(int(inputs[1]), "int8", where)
    if weights.ndim != 2 or weights.shape[1] != source.nbytes:
        raise reader.fail(where, f"weights {list(weights.shape)} for input {list(source.shape)}")
    if target.nbytes != weights.shape[0] or target.shape[-1] != weights.shape[0]:
        raise reader.fail(where, f"weights {list(weights.shape)} for output {list(target.shape)}")
    scales, zeros = _weight_scales(reader, int(inputs[1]), weights.shape[0], where)
    # CMSIS-NN's per-channel kernel has no weight offset (TFLM's wrapper passes 0).
    if len(scales) > 1 and any(zeros):
        raise reader.fail(where, "per-channel weights with a non-zero zero point")
    return FullyConnected(
        index=index,
        input=source,
        output=target,
        weights=weights,
        bias=_bias(reader, inputs, weights.shape[0], where),
        weight_scales=scales,
        weight_zero_point=zeros[0],
        activation=_fused(reader, options.FusedActivationFunction(), where),
    )


def _softmax(reader, op, index, source, target, where) -> Softmax:
    options = reader.options(op, "SoftmaxOptions", where)
    # The int8 softmax's output is fixed by TFLM's SoftmaxPrepare: zero point -128, scale 1/256.
    if target.zero_point != -128 or target.scale != 1.0 / 256:
        raise reader.fail(where, "its output is not quantized with scale 1/256, zero point -128")
    if source.shape != target.shape:
        raise reader.fail(where, f"shapes {list(source.shape)} -> {list(target.shape)}")
    return Softmax(index, source, target, beta=float(np.float32(options.Beta())))


def _reshape(reader, op, index, source, target, where) -> Reshape:
    if source.nbytes != target.nbytes:
        raise reader.fail(where, f"{source.nbytes} elements in, {target.nbytes} out")
    return Reshape(index, source, target)


BUILDERS = {
    "CONV_2D": _conv,
    "MAX_POOL_2D": _pool,
    "RESHAPE": _reshape,
    "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax,
}


def read_graph(data: bytes, origin: str = "model") -> Graph:
    """The chain of layers of an int8 .tflite, with its constants; ModelError if the C engine
    cannot compile it (naming the operator or tensor in the way)."""
    from mnist_edge.model_info import read_model

    info = read_model(data, origin)  # refuses a corrupt flatbuffer before we trust any field
    refuse_unsupported(info, origin)
    reader = _Reader(data, origin)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ModelError(
            f"{origin}: {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
            "the C engine compiles one of each."
        )
    layers: list[Layer] = []
    current = info.inputs[0]
    source = reader.activation(current, "the model's input")
    first = source
    for index, described in enumerate(info.operators):
        where = f"operator {index} ({described.op})"
        if not described.inputs or described.inputs[0] != current or len(described.outputs) != 1:
            raise reader.fail(
                where, "it does not read the previous operator's output (not a chain)"
            )
        target = reader.activation(described.outputs[0], where)
        builder = BUILDERS[described.op]
        layers.append(builder(reader, reader.graph.Operators(index), index, source, target, where))
        current, source = described.outputs[0], target
    if current != info.outputs[0]:
        raise ModelError(f"{origin}: the last operator's output is not the model's output.")
    if all(isinstance(layer, Reshape) for layer in layers):
        raise ModelError(f"{origin}: the model computes nothing (reshapes only).")
    return Graph(tuple(layers), first, source)
