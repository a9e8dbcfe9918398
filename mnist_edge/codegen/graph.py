"""Read an int8 .tflite flatbuffer into the typed graph of layers the C engine compiles.

What tiny models are made of (SUPPORTED_OPS), in one subgraph, batch 1, int8 activations
(a float32 model input or output through QUANTIZE or DEQUANTIZE), int8 weights and int32
biases, quantized per tensor or per channel. Operators may read any earlier tensor (residuals,
branches). Anything else is refused with one line naming what is in the way. Shapes and
padding are computed the way TFLM's Prepare computes them, and checked against the shapes the
converter wrote.
"""

from __future__ import annotations

import numpy as np

from mnist_edge.codegen import reference
from mnist_edge.codegen.layers import (
    Activation,
    AveragePool2D,
    Conv2D,
    DepthwiseConv2D,
    FullyConnected,
    Graph,
    Layer,
    MaxPool2D,
    Reference,
    Reshape,
    Softmax,
)
from mnist_edge.errors import ModelError

__all__ = ["Activation", "Conv2D", "FullyConnected", "Graph", "Layer", "MaxPool2D", "Reshape"]

# Those compiled with CMSIS-NN's kernels (or mnist-edge's own), then TFLM's reference ones.
CMSIS_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "SOFTMAX", "RESHAPE", "SQUEEZE",
)  # fmt: skip


# TFLM's reference-code operators (and ADD, MUL: CMSIS-NN's where shapes are equal), by name.
REFERENCE_OPS = reference.SUPPORTED
SUPPORTED_OPS = CMSIS_OPS + tuple(op for op in REFERENCE_OPS if op not in CMSIS_OPS)
# The fused activations TFLM's int8 kernels turn into a clamp (TANH and SIGN_BIT are not).
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
MCU_HINT = "export the MCU-lean model (mnist-edge export --int8 writes model_int8_mcu.tflite)"


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

    def activation(self, index: int, where: str, dtypes=("int8",)) -> Activation:
        """An activation tensor of one of `dtypes`, per-tensor quantized (int8), batch 1."""
        dtype = self.dtype(index)
        if dtype not in dtypes:
            raise self.fail(where, f"tensor {index} is {dtype}, expected {' or '.join(dtypes)}")
        scales, zeros, _ = self.quantization(index)
        if dtype == "float32":
            scales, zeros = scales or (0.0,), zeros or (0,)
        if len(scales) != 1:
            raise self.fail(where, f"tensor {index} has {len(scales)} scales, expected one")
        shape = self.shape(index)
        if not shape or shape[0] != 1:
            raise self.fail(where, f"tensor {index} has shape {list(shape)}, expected batch 1")
        name = (self.graph.Tensors(index).Name() or b"").decode(errors="replace")
        return Activation(index, name, shape, scales[0], zeros[0], dtype)

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

    def op_name(self, op) -> str:
        """An operator's builtin name: CONV_2D."""
        code = self.model.OperatorCodes(op.OpcodeIndex())
        value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        names = {v: k for k, v in vars(self.schema.BuiltinOperator).items() if k.isupper()}
        return names.get(value, str(value))

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


def _one(reader: _Reader, sources: tuple[Activation, ...], where: str) -> Activation:
    """The one activation an operator reads (its others are constants)."""
    if len(sources) != 1:
        raise reader.fail(where, f"it reads {len(sources)} activation tensors, expected one")
    return sources[0]


def _weight_scales(reader: _Reader, weights: int, channels: int, where: str, channel_axis=0):
    scales, zeros, axis = reader.quantization(weights)
    if len(scales) not in (1, channels) or (len(scales) > 1 and axis != channel_axis):
        raise reader.fail(where, f"{len(scales)} weight scales along axis {axis}")
    return scales, zeros


def _bias(reader: _Reader, inputs, channels: int, where: str) -> np.ndarray:
    if len(inputs) < 3 or inputs[2] < 0:
        return np.zeros(channels, np.int32)  # no bias: the kernels add zeros
    bias = reader.constant(int(inputs[2]), "int32", where).reshape(-1)
    if bias.size != channels:
        raise reader.fail(where, f"{bias.size} biases for {channels} channels")
    return bias


def _conv_fields(reader, op, source, target, weights, channels, axis, options, where) -> dict:
    """What a convolution and a depthwise one share: symmetric weights scaled per tensor or
    per channel (along `axis`), bias, stride, dilation, padding and the fused activation."""
    inputs = op.InputsAsNumpy()
    scales, zeros = _weight_scales(reader, int(inputs[1]), channels, where, channel_axis=axis)
    if any(zeros):
        raise reader.fail(where, "the weights are not symmetric (zero point not 0)")
    dilation = (int(options.DilationHFactor()), int(options.DilationWFactor()))
    window = (int(weights.shape[1]), int(weights.shape[2]))
    stride, pad, kind = _spatial(reader, options, source, target, window, dilation, where)
    return {
        "index": None, "input": source, "output": target,
        "bias": _bias(reader, inputs, channels, where), "weight_scales": scales,
        "stride": stride, "dilation": dilation, "padding": pad, "padding_kind": kind,
        "activation": _fused(reader, options.FusedActivationFunction(), where),
    }  # fmt: skip


def _conv(reader, op, index, sources, target, where) -> Conv2D:
    source = _one(reader, sources, where)
    options = reader.options(op, "Conv2DOptions", where)
    weights = reader.constant(int(op.InputsAsNumpy()[1]), "int8", where)
    if weights.ndim != 4 or weights.shape[3] != source.shape[3]:
        raise reader.fail(where, f"weights {list(weights.shape)} for input {list(source.shape)}")
    if weights.shape[0] != target.shape[3]:
        raise reader.fail(where, f"weights {list(weights.shape)} for output {list(target.shape)}")
    fields = _conv_fields(reader, op, source, target, weights, weights.shape[0], 0, options, where)
    return Conv2D(**(fields | {"index": index}), weights=weights)


def _pool(reader, op, index, sources, target, where) -> MaxPool2D | AveragePool2D:
    source = _one(reader, sources, where)
    options = reader.options(op, "Pool2DOptions", where)
    window = (int(options.FilterHeight()), int(options.FilterWidth()))
    stride, pad, kind = _spatial(reader, options, source, target, window, (1, 1), where)
    average = reader.op_name(op) == "AVERAGE_POOL_2D"
    # Max-pooling picks values and never rescales them, and the fused kernel relies on it:
    # TFLM's PoolingPrepare asks for it too. Averaging integers as TFLM does needs nothing.
    if not average and (
        abs(source.scale - target.scale) > 1e-6 or source.zero_point != target.zero_point
    ):
        raise reader.fail(where, "input and output are quantized differently")
    if source.shape[3] != target.shape[3]:
        raise reader.fail(where, f"{source.shape[3]} channels in, {target.shape[3]} out")
    return (AveragePool2D if average else MaxPool2D)(
        index=index,
        input=source,
        output=target,
        window=window,
        stride=stride,
        padding=pad,
        padding_kind=kind,
        activation=_fused(reader, options.FusedActivationFunction(), where),
    )


def _depthwise(reader, op, index, sources, target, where) -> DepthwiseConv2D:
    source = _one(reader, sources, where)
    options = reader.options(op, "DepthwiseConv2DOptions", where)
    weights = reader.constant(int(op.InputsAsNumpy()[1]), "int8", where)
    channels = target.shape[3] if len(target.shape) == 4 else 0
    if weights.ndim != 4 or weights.shape[0] != 1 or weights.shape[3] != channels:
        raise reader.fail(where, f"weights {list(weights.shape)} for output {list(target.shape)}")
    if len(source.shape) != 4 or channels % source.shape[3]:
        raise reader.fail(where, f"{source.shape} in, {target.shape} out")
    multiplier = channels // source.shape[3]
    if options.DepthMultiplier() not in (0, multiplier):
        raise reader.fail(where, f"depth multiplier {options.DepthMultiplier()} for {multiplier}")
    fields = _conv_fields(reader, op, source, target, weights, channels, 3, options, where)
    # Stored O x H x W x 1 like a convolution's (one filter per output channel); CMSIS-NN
    # reads 1 x H x W x O: constants.py writes them back in that order.
    transposed = np.ascontiguousarray(weights.transpose(3, 1, 2, 0))
    return DepthwiseConv2D(**(fields | {"index": index}), weights=transposed, multiplier=multiplier)


def _options(reader: _Reader, op, name: str, sources, where: str) -> dict:
    """The keyword options reference.py's parameter functions take, read from the operator's
    options table and its constant inputs."""
    inputs = [int(i) for i in op.InputsAsNumpy()]
    constants = [i for i in inputs if i >= 0 and i not in {t.index for t in sources}]
    if name in ("ADD", "MUL", "CONCATENATION"):
        table = {"ADD": "AddOptions", "MUL": "MulOptions", "CONCATENATION": "ConcatenationOptions"}
        options = reader.options(op, table[name], where)
        found = {"activation": _fused(reader, options.FusedActivationFunction(), where)}
        return found | ({"axis": int(options.Axis())} if name == "CONCATENATION" else {})
    if name == "MEAN":
        options = reader.options(op, "ReducerOptions", where)
        axes = reader.constant(constants[0], "int32", where).reshape(-1)
        return {"axes": tuple(int(a) for a in axes), "keep_dims": bool(options.KeepDims())}
    if name in ("PAD", "PADV2"):
        dtype = reader.dtype(constants[0])
        paddings = reader.constant(constants[0], dtype, where).reshape(-1, 2)
        found = {"paddings": [tuple(int(v) for v in pair) for pair in paddings]}
        if name == "PADV2" and len(constants) > 1:
            value = int(reader.constant(constants[1], "int8", where).reshape(-1)[0])
            scales, zeros, _ = reader.quantization(constants[1])
            found["constant"] = (value, scales[0] if scales else 0.0, zeros[0] if zeros else 0)
        return found
    return {}


def _reference(reader, op, index, sources, target, where) -> Reference:
    """An operator TFLM runs with its reference code (and ADD or MUL, whose same-shape case
    reference.py hands to CMSIS-NN as TFLM does): reference.py computes its parameters."""
    name = reader.op_name(op)
    if name in ("ADD", "MUL") and len(sources) != 2:
        raise reader.fail(where, f"it reads {len(sources)} activations (a constant operand)")
    try:
        params = REFERENCE_OPS[name](
            list(sources), target, **_options(reader, op, name, sources, where)
        )
    except ModelError as error:
        raise reader.fail(where, str(error).rstrip(".")) from None
    return Reference(index=index, input=sources[0], output=target, others=sources[1:],
                     kind=name, params=params)  # fmt: skip


def _fully_connected(reader, op, index, sources, target, where) -> FullyConnected:
    source = _one(reader, sources, where)
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


def _softmax(reader, op, index, sources, target, where) -> Softmax:
    source = _one(reader, sources, where)
    options = reader.options(op, "SoftmaxOptions", where)
    # The int8 softmax's output is fixed by TFLM's SoftmaxPrepare: zero point -128, scale 1/256.
    if target.zero_point != -128 or target.scale != 1.0 / 256:
        raise reader.fail(where, "its output is not quantized with scale 1/256, zero point -128")
    if source.shape != target.shape:
        raise reader.fail(where, f"shapes {list(source.shape)} -> {list(target.shape)}")
    return Softmax(index, source, target, beta=float(np.float32(options.Beta())))


def _reshape(reader, op, index, sources, target, where) -> Reshape:
    source = _one(reader, sources, where)
    if source.nbytes != target.nbytes:
        raise reader.fail(where, f"{source.nbytes} elements in, {target.nbytes} out")
    return Reshape(index, source, target)


BUILDERS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "MAX_POOL_2D": _pool,
    "AVERAGE_POOL_2D": _pool,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax,
}


def read_graph(data: bytes, origin: str = "model") -> Graph:
    """The layers of an int8 .tflite in order, with their constants; ModelError if the C
    engine cannot compile it (naming the operator or tensor in the way)."""
    from mnist_edge.model_info import read_model

    info = read_model(data, origin)  # refuses a corrupt flatbuffer before we trust any field
    refuse_unsupported(info, origin)
    reader = _Reader(data, origin)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ModelError(
            f"{origin}: {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
            "the C engine compiles one of each."
        )
    first = reader.activation(info.inputs[0], "the model's input", ("int8", "float32"))
    tensors = {first.index: first}  # every activation computed so far, by tensor index
    layers: list[Layer] = []
    for index, described in enumerate(info.operators):
        where = f"operator {index} ({described.op})"
        if len(described.outputs) != 1:
            raise reader.fail(where, f"{len(described.outputs)} outputs, expected one")
        sources = tuple(tensors[t] for t in described.inputs if t in tensors)
        if not sources:
            raise reader.fail(where, "it reads no tensor computed before it")
        if described.op != "QUANTIZE" and any(t.dtype != "int8" for t in sources):
            raise reader.fail(where, "it reads a float32 tensor (int8 activations only)")
        dtypes = ("float32",) if described.op == "DEQUANTIZE" else ("int8",)
        target = reader.activation(described.outputs[0], where, dtypes)
        builder = BUILDERS.get(described.op, _reference)
        op = reader.graph.Operators(index)
        layers.append(builder(reader, op, index, sources, target, where))
        tensors[target.index] = target
    if info.outputs[0] not in tensors or info.outputs[0] == first.index:
        raise ModelError(f"{origin}: the model's output is not computed by its operators.")
    if all(isinstance(layer, Reshape) for layer in layers):
        raise ModelError(f"{origin}: the model computes nothing (reshapes only).")
    return Graph(tuple(layers), first, tensors[info.outputs[0]])
