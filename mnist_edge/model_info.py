"""Read a model file without running it: operators and versions, tensors, kind, MACs, parameters.

A .tflite flatbuffer is read with the schema module that ships inside ai-edge-litert (generated
from LiteRT's own schema.fbs, so it knows every operator that runtime knows, and adds no
dependency). The `tflite` package on PyPI is a separate generation of the schema, which the tests
use as the independent read to compare against. ONNX graphs are read with `onnx` where installed;
Keras models from their layers. One counter of MACs and parameters for all three.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.errors import ModelError
from mnist_edge.records import MinRuntime, OpUse
from mnist_edge.tensors import TensorSpec

# Operator -> (TFLM MicroMutableOpResolver call, minimum runtime of its versions 1, 2, ...).
# Runtime versions copied from LiteRT's op-version-to-runtime map,
# tflite/tools/versioning/runtime_version.cc (google-ai-edge/LiteRT, commit 05215c29), the same
# table the converter uses for its `min_runtime_version` metadata; resolver calls checked against
# tensorflow/lite/micro/micro_mutable_op_resolver.h (tensorflow/tflite-micro, commit 90b983c2).
# Only the operators a small vision CNN uses; any other is reported as unknown, never skipped.
OP_TABLE: dict[str, tuple[str, str]] = {
    "ADD": ("AddAdd", "1.5.0 1.14.0 2.4.0 2.6.0 2.13.0"),
    "AVERAGE_POOL_2D": ("AddAveragePool2D", "1.5.0 1.14.0 2.3.0"),
    "CONCATENATION": ("AddConcatenation", "1.5.0 1.14.0 2.3.0 2.14.0"),
    "CONV_2D": ("AddConv2D", "1.5.0 1.14.0 1.14.0 2.3.0 2.4.0 2.9.0 2.11.0 2.15.0"),
    "DEPTHWISE_CONV_2D": ("AddDepthwiseConv2D", "1.5.0 1.12.0 1.14.0 2.2.0 2.3.0 2.3.0 2.11.0"),
    "DEQUANTIZE": ("AddDequantize", "1.13.1 1.14.0 1.15.0 2.2.0 2.7.0 2.18.0"),
    "EXPAND_DIMS": ("AddExpandDims", "1.10.0"),
    "FULLY_CONNECTED": (
        "AddFullyConnected",
        "1.5.0 1.10.0 1.14.0 1.14.0 2.0.0 2.1.0 2.3.0 2.3.0 2.3.0 2.11.0 2.15.0 2.17.0 2.18.0",
    ),
    "LOGISTIC": ("AddLogistic", "1.14.0 1.14.0 2.3.0"),
    "MAX_POOL_2D": ("AddMaxPool2D", "1.5.0 1.14.0 2.3.0"),
    "MEAN": ("AddMean", "1.6.0 1.14.0 2.4.0"),
    "MUL": ("AddMul", "1.5.0 1.14.0 1.15.0 2.3.0 2.6.0 2.11.0 2.13.0"),
    "PACK": ("AddPack", "1.11.0 1.14.0 2.3.0 2.13.0"),
    "PAD": ("AddPad", "1.5.0 1.14.0 2.4.0 2.6.0"),
    "QUANTIZE": ("AddQuantize", "1.14.0 1.15.0 2.7.0"),
    "RELU": ("AddRelu", "1.5.0 2.1.0 2.5.0"),
    "RELU6": ("AddRelu6", "1.5.0 1.14.0 2.5.0"),
    "RESHAPE": ("AddReshape", "1.5.0"),
    "SHAPE": ("AddShape", "1.10.0"),
    "SOFTMAX": ("AddSoftmax", "1.5.0 1.14.0 2.3.0"),
    "SQUEEZE": ("AddSqueeze", "1.6.0 2.5.0"),
    "STRIDED_SLICE": ("AddStridedSlice", "1.6.0 1.14.0 2.1.0 2.2.0 2.5.0 2.6.0 2.14.0 2.14.0"),
    "TRANSPOSE": ("AddTranspose", "1.6.0 1.14.0 1.15.0 2.3.0 2.4.0 2.12.0 2.14.4"),
}

CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")

# ConversionMetadata.options.model_optimization_modes (tensorflow/lite/schema/
# conversion_metadata.fbs): how the converter quantized the model.
OPTIMIZATION_MODES = {
    1001: "PTQ_FLOAT16",
    1002: "PTQ_DYNAMIC_RANGE",
    1003: "PTQ_FULL_INTEGER",
    1004: "PTQ_INT16",
    2000: "QUANTIZATION_AWARE_TRAINING",
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the model's main subgraph, as the flatbuffer describes it."""

    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    nbytes: int
    constant: bool
    scales: int  # number of quantization scales (more than one: per-channel)
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class OperatorInfo:
    """One operator, in execution order."""

    op: str
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What bundle needs from a .tflite flatbuffer: operators, tensors, metadata."""

    schema_version: int
    description: str
    subgraphs: int
    opcodes: tuple[tuple[str, int], ...]
    operators: tuple[OperatorInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    min_runtime_metadata: str | None
    tensorflow_version: str | None
    converter_api: int | None
    optimization_modes: tuple[str, ...]


def _builtin_names(schema) -> dict[int, str]:
    return {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def _conversion_metadata(data: bytes) -> tuple[str | None, int | None, tuple[str, ...]]:
    """TF version, converter API and optimization modes from the CONVERSION_METADATA buffer.

    Its schema (conversion_metadata.fbs) is not in ai-edge-litert's module, and TensorFlow is
    too heavy to import for three fields, so they are read with the flatbuffers runtime directly.
    """
    from flatbuffers import number_types as types
    from flatbuffers.table import Table

    def table_at(parent: Table, slot: int) -> Table | None:
        offset = parent.Offset(4 + 2 * slot)
        return Table(parent.Bytes, parent.Indirect(offset + parent.Pos)) if offset else None

    root = Table(bytearray(data), int.from_bytes(data[:4], "little"))
    version = api = None
    modes: tuple[str, ...] = ()
    env = table_at(root, 0)
    if env is not None:
        offset = env.Offset(4)
        version = env.String(offset + env.Pos).decode() if offset else None
        offset = env.Offset(6)
        api = int(env.Get(types.Uint32Flags, offset + env.Pos)) if offset else None
    options = table_at(root, 1)
    if options is not None and (offset := options.Offset(4)):
        start = options.Vector(offset)
        modes = tuple(
            OPTIMIZATION_MODES.get(code, str(code))
            for code in (
                options.Get(types.Int32Flags, start + 4 * i)
                for i in range(options.VectorLen(offset))
            )
        )
    return version, api, modes


def _item_bytes(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 0  # strings, resources, variants: no fixed size, and no such tensor in our models


def _check_tensor(t, index: int, shape, dtype: str, buffer, quant, buffers: int) -> None:
    """ValueError for a tensor no engine should be handed: the engines' own loaders trust many of
    these fields (TFLM has no flatbuffer verifier), and a hostile file can crash them."""
    where = f"tensor {index}"
    if dtype.startswith("type"):
        raise ValueError(f"{where} has unknown type {t.Type()}")
    if t.Buffer() >= buffers:
        raise ValueError(f"{where} names buffer {t.Buffer()} of {buffers}")
    if any(d < 0 for d in shape) or math.prod(shape) > 1 << 31:
        raise ValueError(f"{where} has shape {list(shape)}")
    if buffer is not None and buffer.DataLength() > 0:
        expected = math.prod(shape) * _item_bytes(dtype)
        if expected and buffer.DataLength() != expected:
            raise ValueError(
                f"{where} holds {buffer.DataLength()} bytes; its shape needs {expected}"
            )
    if quant is not None and quant.ScaleLength():
        scales, zero_points = quant.ScaleLength(), quant.ZeroPointLength()
        if zero_points not in (0, scales):
            raise ValueError(f"{where} has {scales} scales and {zero_points} zero points")
        axis = quant.QuantizedDimension()
        if scales > 1 and not (0 <= axis < len(shape) and shape[axis] == scales):
            raise ValueError(f"{where} has {scales} scales along axis {axis} of {list(shape)}")


def read_model(data: bytes, origin: str = "model") -> ModelInfo:
    """Parse a .tflite flatbuffer with LiteRT's own schema module; ModelError if it is not one.

    Beyond parsing, the fields engines trust are checked (tensor and buffer indices, data sizes,
    quantization arrays), so a corrupt file is refused here, by name, before any engine sees it.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{origin}: not a TFLite flatbuffer (no TFL3 identifier).")
    from ai_edge_litert import schema_py_generated as schema

    names = _builtin_names(schema)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    try:
        model = schema.Model.GetRootAs(data, 0)
        opcodes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            # Codes above 127 live only in builtin_code; older files only in the deprecated byte.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}"
            opcodes.append((name, int(code.Version())))
        if model.SubgraphsLength() < 1:
            raise ModelError(f"{origin}: the flatbuffer has no subgraph.")
        graph = model.Subgraphs(0)
        tensors = []
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            signature = (
                tuple(int(d) for d in t.ShapeSignatureAsNumpy())
                if t.ShapeSignatureLength()
                else shape
            )
            dtype = types.get(t.Type(), f"type{t.Type()}")
            buffer = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
            # Data is inline, or (for models over 2 GB) at an offset past the flatbuffer.
            constant = buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)
            quant = t.Quantization()
            scales = quant.ScaleLength() if quant is not None else 0
            _check_tensor(t, i, shape, dtype, buffer, quant, model.BuffersLength())
            tensors.append(
                TensorInfo(
                    name=(t.Name() or b"").decode(errors="replace"),
                    shape=shape,
                    signature=signature,
                    dtype=dtype,
                    nbytes=math.prod(shape) * _item_bytes(dtype),
                    constant=constant,
                    scales=scales,
                    scale=float(quant.Scale(0)) if scales else None,
                    zero_point=int(quant.ZeroPoint(0))
                    if quant and quant.ZeroPointLength()
                    else None,
                )
            )
        operators = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            name, version = opcodes[op.OpcodeIndex()]
            indices = [
                *(op.InputsAsNumpy() if op.InputsLength() else ()),
                *(op.OutputsAsNumpy() if op.OutputsLength() else ()),
            ]
            if any(not -1 <= x < len(tensors) for x in indices):
                raise ValueError(f"operator {i} ({name}) names a tensor out of range")
            operators.append(
                OperatorInfo(
                    op=name,
                    version=version,
                    inputs=tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else (),
                    outputs=tuple(int(x) for x in op.OutputsAsNumpy())
                    if op.OutputsLength()
                    else (),
                )
            )
        min_runtime = tf_version = api = None
        modes: tuple[str, ...] = ()
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            payload = model.Buffers(entry.Buffer()).DataAsNumpy()
            raw = payload.tobytes() if isinstance(payload, np.ndarray) else b""
            if entry.Name() == b"min_runtime_version":
                min_runtime = raw.rstrip(b"\0").decode(errors="replace") or None
            elif entry.Name() == b"CONVERSION_METADATA" and raw:
                tf_version, api, modes = _conversion_metadata(raw)
        # Read like any engine's loader would, though we need neither: a damaged offset here
        # breaks TFLM's Python unpacking.
        if model.MetadataBufferLength():
            model.MetadataBufferAsNumpy()
        ends = [*graph.InputsAsNumpy(), *graph.OutputsAsNumpy()]
        if not ends or any(not 0 <= x < len(tensors) for x in ends):
            raise ValueError("the graph's inputs or outputs name no tensor")
        return ModelInfo(
            schema_version=int(model.Version()),
            description=(model.Description() or b"").decode(errors="replace"),
            subgraphs=int(model.SubgraphsLength()),
            opcodes=tuple(opcodes),
            operators=tuple(operators),
            tensors=tuple(tensors),
            inputs=tuple(int(x) for x in graph.InputsAsNumpy()),
            outputs=tuple(int(x) for x in graph.OutputsAsNumpy()),
            min_runtime_metadata=min_runtime,
            tensorflow_version=tf_version,
            converter_api=api,
            optimization_modes=modes,
        )
    except (IndexError, ValueError, TypeError, UnicodeDecodeError, struct.error) as exc:
        raise ModelError(f"{origin}: corrupt TFLite flatbuffer ({exc}).") from None


def model_kind(info: ModelInfo) -> str:
    """int8, float32, float16 or dynamic-range, from the tensor types (not the file name)."""
    tensors = info.tensors
    if any(t.dtype == "float16" for t in tensors):
        return "float16"
    input_dtype = tensors[info.inputs[0]].dtype
    if input_dtype in ("int8", "uint8", "int16"):
        return input_dtype
    weighted = [op for op in info.operators if op.op in WEIGHT_OPS]
    weights = {i for op in weighted for i in op.inputs[1:2]}
    if input_dtype == "float32" and any(tensors[i].dtype == "int8" for i in weights if i >= 0):
        # Float input and output around int8 activations (QUANTIZE first, DEQUANTIZE last)
        # is a full-integer model; float activations into int8 weights are dynamic-range.
        hybrid = any(tensors[op.inputs[0]].dtype == "float32" for op in weighted)
        return "dynamic-range" if hybrid else "int8"
    return input_dtype


def tflm_refusal(info: ModelInfo, kind: str) -> str | None:
    """Why TFLM cannot run this kind of model, or None if it can."""
    if kind == "float16":
        return "float16 weights (DEQUANTIZE to float32 at run time): TFLM has no float16 kernels"
    if kind == "dynamic-range":
        hybrid = sorted({f"{op.op} v{op.version}" for op in info.operators if op.op in WEIGHT_OPS})
        return (
            f"dynamic-range quantized (int8 weights, float32 activations in {', '.join(hybrid)}): "
            "TFLM has no hybrid kernels"
        )
    return None


def op_min_runtime(op: str, version: int) -> str | None:
    """Oldest runtime that has this operator version, from OP_TABLE; None when not in it."""
    entry = OP_TABLE.get(op)
    runtimes = entry[1].split() if entry else []
    return runtimes[version - 1] if 1 <= version <= len(runtimes) else None


def op_uses(info: ModelInfo) -> list[OpUse]:
    """Each operator code in flatbuffer order, with its use count, runtime and TFLM call."""
    counts: dict[int, int] = {}
    names = [f"{name}:{version}" for name, version in info.opcodes]
    for op in info.operators:
        key = names.index(f"{op.op}:{op.version}")
        counts[key] = counts.get(key, 0) + 1
    uses = []
    for index, (name, version) in enumerate(info.opcodes):
        entry = OP_TABLE.get(name)
        uses.append(
            OpUse(
                name=name,
                version=version,
                count=counts.get(index, 0),
                min_runtime=op_min_runtime(name, version),
                tflm_call=f"{entry[0]}()" if entry else None,
            )
        )
    return uses


def min_runtime(info: ModelInfo) -> MinRuntime:
    """The newest per-op minimum; ops missing from the table are named, unlike the converter's."""
    from packaging.version import Version

    uses = op_uses(info)
    known = [u.min_runtime for u in uses if u.min_runtime]
    unknown = [f"{u.name} v{u.version}" for u in uses if u.min_runtime is None]
    return MinRuntime(
        version=max(known, key=Version) if known else None,
        source="LiteRT tflite/tools/versioning/runtime_version.cc (google-ai-edge/LiteRT 05215c29)",
        converter_metadata=info.min_runtime_metadata,
        unknown_ops=unknown,
    )


def count_macs(info: ModelInfo) -> int:
    """Multiply-accumulates per inference (batch 1) of the convolutions and dense layers."""
    total = 0
    for op in info.operators:
        if op.op not in WEIGHT_OPS or len(op.inputs) < 2:
            continue
        weights = info.tensors[op.inputs[1]].shape
        outputs = math.prod(info.tensors[op.outputs[0]].shape)
        if op.op == "CONV_2D":  # filter O×H×W×I: every output sums H·W·I products
            total += outputs * math.prod(weights[1:])
        elif op.op == "DEPTHWISE_CONV_2D":  # filter 1×H×W×O: H·W products per output
            total += outputs * weights[1] * weights[2]
        elif op.op == "FULLY_CONNECTED":  # weights O×I
            total += outputs * weights[-1]
        elif op.op == "TRANSPOSE_CONV":  # weights O×H×W×I, scattered over the output
            total += math.prod(info.tensors[op.inputs[2]].shape) * math.prod(weights)
    return total


def count_params(info: ModelInfo) -> int:
    """Weights and biases of the convolutions and dense layers (the Keras parameter count)."""
    slots = {i for op in info.operators if op.op in WEIGHT_OPS for i in op.inputs[1:] if i >= 0}
    # A float16 model keeps its weights as float16 constants, each turned into the float32
    # tensor the layer reads by a DEQUANTIZE: those outputs are weights too.
    dequantized = {
        op.outputs[0]
        for op in info.operators
        if op.op == "DEQUANTIZE" and op.inputs and info.tensors[op.inputs[0]].constant
    }
    return sum(
        math.prod(info.tensors[i].shape)
        for i in slots
        if info.tensors[i].constant or i in dequantized
    )


def tensor_spec(info: ModelInfo, index: int) -> TensorSpec:
    """The runtimes' description of one tensor of the flatbuffer (quantized: int8/uint8/int16)."""
    t = info.tensors[index]
    quantized = t.dtype in TensorSpec.QUANTIZED_DTYPES and t.scale is not None
    return TensorSpec(
        name=t.name,
        shape=t.signature,
        dtype=t.dtype,
        scale=t.scale if quantized else None,
        zero_point=t.zero_point if quantized else None,
    )


def read_tflite(path: Path) -> tuple[bytes, ModelInfo]:
    """A .tflite file's bytes and what they describe; ModelError if missing or not a flatbuffer."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror or exc}).") from None
    return data, read_model(data, str(path))


@dataclass(frozen=True)
class ModelCost:
    """What one image costs a model, counted from the model file itself."""

    macs: int | None  # multiply-accumulates of the convolutions and dense layers, batch 1
    params: int | None
    compute: str  # "int8" or "float32": which roofline applies


def _onnx_cost(path: Path) -> ModelCost:
    """MACs and parameters of an ONNX graph, by shape inference at batch 1 (needs onnx)."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        # No graph reader on a device: op types are plain strings in the protobuf, so a QDQ
        # model still shows itself; its MACs stay unknown.
        quantized = b"DequantizeLinear" in path.read_bytes()
        return ModelCost(None, None, "int8" if quantized else "float32")
    model = onnx.load(str(path))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        dim.dim_value = 1  # batch 1: the dynamic batch would leave every shape symbolic
    graph = shape_inference.infer_shapes(model).graph
    # A dimension left symbolic after fixing the input's batch at 1 is that batch: count it 1.
    shapes = {
        v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
        for v in [*graph.value_info, *graph.output, *graph.input]
    }
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # In a QDQ graph a weight reaches Conv/MatMul through DequantizeLinear: follow it back.
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    macs, params = 0, 0
    matmul_outputs = {n.output[0] for n in graph.node if n.op_type == "MatMul"}
    for node in graph.node:
        if node.op_type == "Add" and matmul_outputs & set(node.input):
            # tf2onnx writes a dense layer as MatMul, then Add of the bias.
            bias = [weights.get(dequantized.get(i, i)) for i in node.input]
            params += sum(b.size for b in bias if b is not None)
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        weight = weights.get(dequantized.get(node.input[1], node.input[1]))
        out = shapes.get(node.output[0])
        if weight is None or not out:
            continue
        params += weight.size
        if len(node.input) > 2:
            bias = weights.get(dequantized.get(node.input[2], node.input[2]))
            params += 0 if bias is None else bias.size
        if node.op_type == "Conv":  # weight O×I×H×W: every output sums I·H·W products
            macs += int(np.prod(out)) * int(np.prod(weight.shape[1:]))
        else:  # MatMul/Gemm: every output sums K products
            macs += int(np.prod(out)) * int(weight.shape[0])
    quantized = any(n.op_type in ("QuantizeLinear", "MatMulInteger") for n in graph.node)
    return ModelCost(macs, params, "int8" if quantized else "float32")


def _keras_cost(model) -> ModelCost:
    """MACs from the Keras layers' own shapes; the parameter count Keras reports."""
    macs = 0
    for layer in model.layers:
        out = layer.output.shape
        if layer.__class__.__name__ == "Conv2D":
            kh, kw = layer.kernel_size
            macs += out[1] * out[2] * out[3] * kh * kw * layer.input.shape[-1]
        elif layer.__class__.__name__ == "Dense":
            macs += layer.units * layer.input.shape[-1]
    return ModelCost(int(macs), int(model.count_params()), "float32")


def model_cost(path: Path, keras_model=None) -> ModelCost:
    """What one image costs the model in `path`, read from the model itself (a .keras file from
    its loaded model)."""
    path = Path(path)
    if path.suffix == ".tflite":
        _, info = read_tflite(path)
        kind = model_kind(info)
        compute = "int8" if kind in ("int8", "uint8", "dynamic-range") else "float32"
        return ModelCost(count_macs(info), count_params(info), compute)
    if path.suffix == ".onnx":
        return _onnx_cost(path)
    return _keras_cost(keras_model)
