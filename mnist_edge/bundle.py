"""Ship to devices: the folder a firmware or app engineer takes away, checked on TFLM itself.

The bundle holds the .tflite, the same bytes as a C array for TensorFlow Lite Micro (TFLM), golden
vectors computed by TFLM's reference kernels (never XNNPACK, whose int8 rounding differs), and a
manifest with what a device needs to know before flashing: the tensor-arena size (measured), the
op resolver, the operator versions and the oldest runtime that loads them.

The flatbuffer is read with the schema module that ships inside ai-edge-litert (generated from
LiteRT's own schema.fbs, so it knows every operator that runtime knows, and adds no dependency).
The `tflite` package on PyPI is a separate generation of the schema, which the tests use as the
independent read to compare against.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.data import Mnist, default_cache_dir, ensure_mnist, to_float
from mnist_edge.deps import require
from mnist_edge.errors import CheckFailed, MnistEdgeError, ModelError
from mnist_edge.export import INT8_TFLITE
from mnist_edge.files import (
    capture_native_output,
    json_bytes,
    prepare_output_dir,
    refuse_overwrite,
    sha256_bytes,
    sha256_file,
    write_files_atomic,
)
from mnist_edge.model import library_versions
from mnist_edge.runtimes import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    RUNTIMES,
    LiteRTRunner,
    TensorSpec,
    TFLMRunner,
    quantize,
)
from mnist_edge.verify import VERIFY_JSON, load_reference

log = logging.getLogger(__name__)

BUNDLE_DIR = "bundle"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mnist-edge-bundle/1"
DEFAULT_GOLDEN = 10
DEFAULT_C_NAME = "g_model"
LABELS = [str(digit) for digit in range(NUM_CLASSES)]
TEST_IMAGES = 10_000
ARENA_ALIGNMENT = 16  # TFLM aligns every arena buffer to 16 bytes; so does alignas(16) on a device
MAX_ARENA = 64 * 1024 * 1024  # past this the model does not belong on a microcontroller
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# The older runtime we prove against: tflite-runtime's last release (needs Python <= 3.11 and
# numpy < 2, so it lives in its own virtual environment; the tests create it there).
TFLITE_RUNTIME_VERSION = "2.14.0"
TFLITE_RUNTIME_VENV = "venv-tflite-runtime-2.14"

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

# TFLM's bookkeeping per unit, on a 64-bit host, as its RecordingMicroAllocator reports it: what
# the arena estimate can know from the flatbuffer alone. Kernel op-data structs and the
# allocator's own objects are not counted; that is the estimate's (stated) error.
EVAL_TENSOR_BYTES = 24  # TfLiteEvalTensor per tensor: data and dims pointers, type
NODE_BYTES = 64  # NodeAndRegistration per operator
IO_TENSOR_BYTES = 64 + 32  # persistent TfLiteTensor per model input/output, + its quantization
PER_CHANNEL_BYTES = 8  # int32 multiplier + int32 shift per output channel of an int8 conv
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


# ----------------------------------------------------------------------------- flatbuffer


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


def read_model(data: bytes, origin: str = "model") -> ModelInfo:
    """Parse a .tflite flatbuffer with LiteRT's own schema module; ModelError if it is not one."""
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
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{origin}: corrupt TFLite flatbuffer ({exc}).") from None


def model_kind(info: ModelInfo) -> str:
    """int8, float32, float16 or dynamic-range, from the tensor types (not the file name)."""
    tensors = info.tensors
    if any(t.dtype == "float16" for t in tensors):
        return "float16"
    input_dtype = tensors[info.inputs[0]].dtype
    if input_dtype in ("int8", "uint8", "int16"):
        return input_dtype
    weights = {i for op in info.operators if op.op in WEIGHT_OPS for i in op.inputs[1:2]}
    if input_dtype == "float32" and any(tensors[i].dtype == "int8" for i in weights if i >= 0):
        return "dynamic-range"
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


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def op_min_runtime(op: str, version: int) -> str | None:
    """Oldest runtime that has this operator version, from OP_TABLE; None when not in it."""
    entry = OP_TABLE.get(op)
    runtimes = entry[1].split() if entry else []
    return runtimes[version - 1] if 1 <= version <= len(runtimes) else None


@dataclass(frozen=True)
class OpUse:
    """One operator code of the model: its version, how often it runs, what it needs."""

    name: str
    version: int
    count: int
    min_runtime: str | None
    tflm_call: str | None


@dataclass(frozen=True)
class MinRuntime:
    """The oldest LiteRT/TFLite runtime that has every operator version the model uses."""

    version: str | None
    source: str
    converter_metadata: str | None
    unknown_ops: list[str]


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
    uses = op_uses(info)
    known = [u.min_runtime for u in uses if u.min_runtime]
    unknown = [f"{u.name} v{u.version}" for u in uses if u.min_runtime is None]
    return MinRuntime(
        version=max(known, key=_version_key) if known else None,
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
    return sum(math.prod(info.tensors[i].shape) for i in slots if info.tensors[i].constant)


# ----------------------------------------------------------------------------- the arena


@dataclass(frozen=True)
class ArenaEstimate:
    """The arena TFLM should need, from the flatbuffer alone."""

    activations: int  # largest sum of simultaneously live tensors, in execution order
    bookkeeping: int  # TFLM's known per-tensor, per-operator and per-channel structs
    total: int


def estimate_arena(info: ModelInfo) -> ArenaEstimate:
    """Peak of live non-constant tensors over the execution order, plus known bookkeeping."""

    def aligned(n: int) -> int:
        return -(-n // ARENA_ALIGNMENT) * ARENA_ALIGNMENT

    first: dict[int, int] = {i: 0 for i in info.inputs}
    last: dict[int, int] = {}
    for step, op in enumerate(info.operators):
        for index in (*op.inputs, *op.outputs):
            if index >= 0 and not info.tensors[index].constant:
                first.setdefault(index, step)
                last[index] = step
    for index in info.outputs:
        last[index] = len(info.operators) - 1
    peak = max(
        (
            sum(aligned(info.tensors[t].nbytes) for t in first if first[t] <= step <= last[t])
            for step in range(len(info.operators))
        ),
        default=0,
    )
    channels = sum(
        info.tensors[op.outputs[0]].shape[-1]
        for op in info.operators
        if op.op in CHANNEL_OPS and info.tensors[op.inputs[0]].dtype == "int8"
    )
    bookkeeping = (
        EVAL_TENSOR_BYTES * len(info.tensors)
        + NODE_BYTES * len(info.operators)
        + IO_TENSOR_BYTES * (len(info.inputs) + len(info.outputs))
        + PER_CHANNEL_BYTES * channels
    )
    return ArenaEstimate(peak, bookkeeping, peak + bookkeeping)


@dataclass(frozen=True)
class ArenaReport:
    """TFLM's tensor arena for this model: measured, estimated, and the estimate's error."""

    bytes: int  # the smallest working arena rounded up to a multiple of 16: what to allocate
    smallest_working: int
    head_bytes: int | None  # planned (non-persistent) buffers, as TFLM reports them
    tail_bytes: int | None  # persistent structs, as TFLM reports them
    estimate_bytes: int
    estimate_activations: int
    estimate_bookkeeping: int
    error_bytes: int  # estimate - measured
    error_pct: float
    probes: int
    measured_with: str
    note: str


def _allocation_report(interpreter) -> tuple[int | None, int | None]:
    with capture_native_output((2,)) as text:
        interpreter.print_allocations()
    head = re.search(r"allocation head (\d+) bytes", text[0])
    tail = re.search(r"allocation tail (\d+) bytes", text[0])
    return (int(head.group(1)) if head else None, int(tail.group(1)) if tail else None)


def measure_arena(model: bytes, origin: str = "model") -> ArenaReport:
    """Smallest arena in which TFLM allocates and invokes the model (bisection), and the estimate.

    TFLM fails at allocation when the arena is short, and a larger arena is assumed never to fail
    where a smaller one worked (the tests check this around the boundary), so bisection over
    arena_size finds the smallest in about twenty tries.
    """
    runtime = require("tflite_micro.python.tflite_micro.runtime")
    info = read_model(model, origin)
    spec = info.tensors[info.inputs[0]]
    probe = np.zeros((1, *spec.shape[1:]), dtype=spec.dtype)
    estimate = estimate_arena(info)
    probes = 0

    def runs(size: int) -> bool:
        nonlocal probes
        probes += 1
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
            interpreter.set_input(probe, 0)
            interpreter.invoke()
        except (RuntimeError, ValueError):
            return False
        return True

    with capture_native_output() as text:
        low, high = 0, max(4096, 2 * estimate.total)
        while not runs(high):
            low, high = high, high * 2
            if high > MAX_ARENA:
                break
        found = high <= MAX_ARENA
        while found and high - low > 1:
            middle = (low + high) // 2
            if runs(middle):
                high = middle
            else:
                low = middle
    if not found:
        reasons = [line.strip() for line in text[0].splitlines() if line.strip()]
        reason = next((r for r in reasons if "op" in r.lower()), reasons[-1] if reasons else "")
        raise ModelError(f"{origin}: TFLM cannot run it in up to {MAX_ARENA:,} bytes ({reason}).")
    smallest = high
    arena = -(-smallest // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    with capture_native_output((1,)):
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
    head, tail = _allocation_report(interpreter)
    error = estimate.total - arena
    return ArenaReport(
        bytes=arena,
        smallest_working=smallest,
        head_bytes=head,
        tail_bytes=tail,
        estimate_bytes=estimate.total,
        estimate_activations=estimate.activations,
        estimate_bookkeeping=estimate.bookkeeping,
        error_bytes=error,
        error_pct=round(100 * error / arena, 2),
        probes=probes,
        measured_with=(
            f"tflite-micro {library_versions('tflite-micro').get('tflite-micro', '?')} Python "
            "interpreter, reference kernels, 64-bit host"
        ),
        note=(
            "A 32-bit MCU needs a little less (its structs hold 4-byte pointers); optimized "
            "kernels such as CMSIS-NN may request scratch buffers the reference kernels do not."
        ),
    )


# ----------------------------------------------------------------------------- tflite-runtime

_TFLITE_RUNTIME_SCRIPT = r"""
import json, sys
import numpy as np
from tflite_runtime import __version__ as version
from tflite_runtime.interpreter import Interpreter, OpResolverType

request = json.load(open(sys.argv[1]))
results = []
for job in request:
    try:
        interpreter = Interpreter(
            model_path=job["model"], num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        if job["inputs"]:
            x = np.load(job["inputs"])
        else:
            x = np.zeros([1] + [int(d) for d in inp["shape"][1:]], inp["dtype"])
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        if job["outputs"]:
            np.save(job["outputs"], interpreter.get_tensor(out["index"]))
        results.append({"loaded": True, "error": None})
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        results.append({"loaded": False, "error": lines[0][:200]})
json.dump({"version": version, "results": results}, open(sys.argv[2], "w"))
"""


def tflite_runtime_python() -> Path:
    """Where the tflite-runtime 2.14 virtual environment's interpreter is expected."""
    return default_cache_dir() / TFLITE_RUNTIME_VENV / "bin" / "python"


@dataclass(frozen=True)
class LegacyRun:
    """One model in tflite-runtime: loaded or not (and why), and its raw outputs if asked."""

    model: str
    loaded: bool
    error: str | None
    outputs: np.ndarray | None = field(default=None, repr=False)


def run_in_tflite_runtime(
    python: Path, jobs: list[tuple[Path, np.ndarray | None]]
) -> tuple[str, list[LegacyRun]]:
    """Load (and run, given inputs in the model's dtype) each model in tflite-runtime, elsewhere.

    tflite-runtime needs numpy < 2 and Python <= 3.11, so it runs in its own interpreter in a
    subprocess; builtin kernels without the default delegate, like litert-ref.
    """
    with tempfile.TemporaryDirectory(prefix="mnist-edge-tflite-runtime-") as tmp:
        folder = Path(tmp)
        request = []
        for i, (model, inputs) in enumerate(jobs):
            in_path = out_path = None
            if inputs is not None:
                in_path, out_path = folder / f"in{i}.npy", folder / f"out{i}.npy"
                np.save(in_path, inputs)
            request.append(
                {
                    "model": str(Path(model).resolve()),
                    "inputs": str(in_path) if in_path else None,
                    "outputs": str(out_path) if out_path else None,
                }
            )
        (folder / "request.json").write_text(json.dumps(request))
        proc = subprocess.run(
            [str(python), "-c", _TFLITE_RUNTIME_SCRIPT, folder / "request.json", folder / "r.json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0 or not (folder / "r.json").is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MnistEdgeError(f"{python}: tflite-runtime did not run ({last}).")
        reply = json.loads((folder / "r.json").read_text())
        runs = []
        for (model, _), job, result in zip(jobs, request, reply["results"], strict=True):
            outputs = None
            if result["loaded"] and job["outputs"]:
                outputs = np.load(job["outputs"])
            runs.append(LegacyRun(Path(model).name, result["loaded"], result["error"], outputs))
        return reply["version"], runs


# ----------------------------------------------------------------------------- the bundle


@dataclass(frozen=True)
class BundleFile:
    """One file of the bundle."""

    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RuntimeAccuracy:
    """Test accuracy of the bundled model on one runtime, and where the figure comes from."""

    runtime: str
    kernels: str
    accuracy: float
    images: int
    source: str  # "bundle" (measured now) or "verify.json"


@dataclass(frozen=True)
class Agreement:
    """How closely two runtimes' raw outputs match on the test images."""

    a: str
    b: str
    images: int
    bit_identical: int
    same_class: int
    max_abs_diff: float  # in the output's own units (int8 steps for an int8 model)


@dataclass(frozen=True)
class RuntimeProof:
    """A runtime that loaded the bundled model here; did it reproduce the golden vectors?"""

    runtime: str
    package: str
    loaded: bool
    golden_identical: int | None
    golden_count: int
    golden_max_abs_diff: float | None
    note: str


@dataclass(frozen=True)
class ExportCompat:
    """One .tflite export of the artifacts folder: can TFLM and tflite-runtime 2.14 take it?"""

    file: str
    kind: str
    min_runtime: str | None
    tflm: str
    tflite_runtime: str


@dataclass(frozen=True)
class BundleResult:
    """Everything the bundle states; manifest.json is this, less the output folder."""

    out: str
    model: str
    kind: str
    files: list[BundleFile]
    input: TensorSpec
    output: TensorSpec
    preprocessing: dict[str, object]
    labels: list[str]
    keras_accuracy: float | None
    accuracy: list[RuntimeAccuracy]
    agreement: list[Agreement]
    ops: list[OpUse]
    tflm_resolver: str
    tflm_calls: list[str]
    arena_bytes: int
    arena: ArenaReport
    flash_bytes: int
    macs: int
    params: int
    golden: dict[str, object]
    min_runtime: MinRuntime
    proven_runtimes: list[RuntimeProof]
    exports: list[ExportCompat]
    versions: dict[str, object]


def check_budgets(
    name: str, flash: int, arena: int, max_flash: int | None, max_arena: int | None
) -> None:
    """Raise CheckFailed naming every budget the model exceeds, and by how much, in one line."""
    over = []
    if max_flash is not None and flash > max_flash:
        over.append(
            f"flash: {name} is {flash:,} bytes (the model's bytes; code not counted), "
            f"{flash - max_flash:,} over --max-flash {max_flash:,}"
        )
    if max_arena is not None and arena > max_arena:
        over.append(
            f"arena: TFLM needs {arena:,} bytes of tensor arena, "
            f"{arena - max_arena:,} over --max-arena {max_arena:,}"
        )
    if over:
        raise CheckFailed("Does not fit: " + "; ".join(over) + ".")


def _tensor_spec(info: ModelInfo, index: int) -> TensorSpec:
    t = info.tensors[index]
    quantized = t.dtype in ("int8", "uint8", "int16") and t.scale is not None
    return TensorSpec(
        name=t.name,
        shape=t.signature,
        dtype=t.dtype,
        scale=t.scale if quantized else None,
        zero_point=t.zero_point if quantized else None,
    )


def _preprocessing(spec: TensorSpec) -> dict[str, object]:
    steps = ["x = pixel / 255.0 as float32 (28×28 grayscale, uint8, white digit on black)"]
    result: dict[str, object] = {"input": "MNIST-style 28×28 grayscale image, N×28×28×1"}
    if spec.quantized:
        steps.append(
            "q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127) as int8"
        )
        pixels = np.arange(256, dtype=np.float32)
        q = quantize(pixels / np.float32(255.0), spec).astype(np.int32)
        shift = int(q[0])
        # A device can skip the float math when the quantization is an exact shift (checked).
        if np.array_equal(q, np.arange(256) + shift):
            result["int8_shortcut"] = f"q = pixel {'-' if shift < 0 else '+'} {abs(shift)}"
    result["steps"] = steps
    result["scale"] = spec.scale
    result["zero_point"] = spec.zero_point
    return result


def _verify_rows(artifacts: Path, model: Path) -> tuple[dict[str, dict], float | None]:
    """This model's rows in a verify.json over the full test set, if verify ran on these bytes."""
    path = artifacts / VERIFY_JSON
    if model.parent.resolve() != artifacts.resolve() or not path.is_file():
        return {}, None
    digest = sha256_file(model)
    try:
        record = json.loads(path.read_text())
        if record.get("images") != TEST_IMAGES:
            return {}, None
        # A row counts only for the very bytes it verified (an earlier model of the same name
        # does not): verify records each export's SHA-256.
        rows = {
            r["runtime"]: r
            for r in record.get("results", [])
            if r.get("artifact") == model.name and r.get("sha256") == digest
        }
        return rows, record.get("reference", {}).get("accuracy")
    except (ValueError, KeyError, AttributeError):
        return {}, None


def _agreement(a: str, b: str, x: np.ndarray, y: np.ndarray) -> Agreement:
    diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
    return Agreement(
        a=a,
        b=b,
        images=len(x),
        bit_identical=int(np.all(x == y, axis=1).sum()),
        same_class=int(np.sum(x.argmax(axis=1) == y.argmax(axis=1))),
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
    )


def _c_bytes(data: bytes, indent: str = "    ", per_line: int = 12) -> str:
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start : start + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


def _c_values(values: np.ndarray, indent: str = "    ", per_line: int = 14) -> str:
    flat = values.reshape(-1)
    if flat.dtype.kind == "f":
        items = [f"{float(v):.9g}f" for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    return "\n".join(
        indent + ", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)
    )


def _banner(what: str, source: str) -> str:
    return (
        f"// {what}\n// Generated by mnist-edge {__version__} from {source}; "
        "do not edit (run `mnist-edge bundle` again).\n"
    )


def model_data_files(data: bytes, source: str, c_name: str, arena_bytes: int) -> tuple[str, str]:
    """model_data.h and model_data.cc: the flatbuffer as a C array, and the arena declaration."""
    guard = f"MNIST_EDGE_{c_name.upper()}_MODEL_DATA_H_"
    header = (
        _banner(f"{source} as a C array for TensorFlow Lite Micro.", source)
        + f"#ifndef {guard}\n#define {guard}\n\n#include <cstdint>\n\n"
        "// The .tflite flatbuffer. 16-byte aligned: TFLM reads tensor data in place.\n"
        f"extern const unsigned char {c_name}[];\n"
        f"extern const unsigned int {c_name}_len;\n\n"
        "// Smallest arena in which TFLM allocated and ran this model (measured by bisection on a\n"
        "// 64-bit host with the reference kernels), rounded up to a multiple of 16.\n"
        f"constexpr unsigned int kTensorArenaSize = {arena_bytes};\n"
        "extern uint8_t tensor_arena[kTensorArenaSize];\n\n"
        f"#endif  // {guard}\n"
    )
    body = (
        _banner(f"{source} ({len(data):,} bytes, SHA-256 {sha256_bytes(data)}).", source)
        + '#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char {c_name}[] = {{\n{_c_bytes(data)}\n}};\n"
        f"const unsigned int {c_name}_len = {len(data)};\n\n"
        "alignas(16) uint8_t tensor_arena[kTensorArenaSize];\n"
    )
    return header, body


def golden_data_files(
    inputs: np.ndarray, outputs: np.ndarray, labels: np.ndarray, c_name: str, source: str
) -> tuple[str, str]:
    """golden_data.h and golden_data.cc: TFLM's inputs and outputs for a firmware unit test."""
    ctype = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "float32": "float"}
    in_type, out_type = ctype[inputs.dtype.name], ctype[outputs.dtype.name]
    count, in_size, out_size = len(inputs), int(np.prod(inputs.shape[1:])), outputs.shape[1]
    guard = f"MNIST_EDGE_{c_name.upper()}_GOLDEN_DATA_H_"
    header = (
        _banner("Golden vectors: inputs exactly as fed to the model, TFLM's outputs.", source)
        + f"#ifndef {guard}\n#define {guard}\n\n#include <cstdint>\n\n"
        f"constexpr int {c_name}_golden_count = {count};\n"
        f"constexpr int {c_name}_golden_input_size = {in_size};  // 28×28×1, row-major\n"
        f"constexpr int {c_name}_golden_output_size = {out_size};\n\n"
        f"extern const {in_type} {c_name}_golden_inputs[{c_name}_golden_count]"
        f"[{c_name}_golden_input_size];\n"
        f"extern const {out_type} {c_name}_golden_outputs[{c_name}_golden_count]"
        f"[{c_name}_golden_output_size];\n"
        f"extern const uint8_t {c_name}_golden_labels[{c_name}_golden_count];\n\n"
        f"#endif  // {guard}\n"
    )
    rows_in = ",\n".join(f"    {{\n{_c_values(x, ' ' * 8)}\n    }}" for x in inputs)
    rows_out = ",\n".join(f"    {{{_c_values(y, '').strip().rstrip(',')}}}" for y in outputs)
    body = (
        _banner(f"Golden vectors for {source}: the first {count} MNIST test images.", source)
        + '#include "golden_data.h"\n\n'
        f"const {in_type} {c_name}_golden_inputs[{c_name}_golden_count]"
        f"[{c_name}_golden_input_size] = {{\n{rows_in}\n}};\n\n"
        f"const {out_type} {c_name}_golden_outputs[{c_name}_golden_count]"
        f"[{c_name}_golden_output_size] = {{\n{rows_out}\n}};\n\n"
        f"const uint8_t {c_name}_golden_labels[{c_name}_golden_count] = "
        f"{{{', '.join(str(int(v)) for v in labels)}}};\n"
    )
    return header, body


def _bundle_readme(result: BundleResult, c_name: str) -> str:
    """The bundle's README.md: what it is, how to run it in LiteRT and TFLM, how to check it."""
    model, spec, arena = result.model, result.input, result.arena_bytes
    calls = "\n".join(f"  resolver.{call};" for call in result.tflm_calls)
    field_name = {"int8": "int8", "float32": "f"}.get(spec.dtype, spec.dtype)
    ctype = {"int8": "int8_t", "float32": "float"}.get(spec.dtype, "auto")
    shortcut = result.preprocessing.get("int8_shortcut")
    if spec.dtype == "int8" and shortcut:
        fill = f"static_cast<int8_t>(pixels[i] - {-int(spec.zero_point or 0)})"
    elif spec.dtype == "float32":
        fill = "pixels[i] / 255.0f"
    else:
        fill = "/* pixels[i] / 255.0f, quantized with the manifest's scale and zero_point */"
    accuracy = "\n".join(
        f"| {a.runtime} | {a.kernels} | {a.accuracy:.4f} | {a.source} |" for a in result.accuracy
    )
    keras = f"{result.keras_accuracy:.4f}" if result.keras_accuracy is not None else "unknown"
    proofs = "\n".join(
        f"| {p.runtime} | {p.package} | "
        + (
            f"{p.golden_identical}/{p.golden_count} | {p.golden_max_abs_diff:g}"
            if p.golden_identical is not None
            else f"did not load: {p.note} | –"
        )
        + " |"
        for p in result.proven_runtimes
    )
    agreement = "; ".join(
        f"{a.a} and {a.b} gave bit-identical outputs on {a.bit_identical:,} of {a.images:,} "
        f"test images (at most {a.max_abs_diff:g} apart) and the same class on {a.same_class:,}"
        for a in result.agreement
    )
    count = result.golden["count"]
    equivalently = f" (equivalently: {shortcut})" if shortcut else ""
    return f"""# {model} for devices

Made by `mnist-edge bundle` {__version__}. Every figure here is also in `manifest.json`.

- Model: `{model}` ({result.kind}): {result.flash_bytes:,} bytes of flash, {result.params:,}
  parameters, {result.macs:,} multiply-accumulates per image.
- Input: {spec.dtype} {list(spec.shape)}, scale {spec.scale}, zero point {spec.zero_point}.
  Preprocessing: pixel / 255, then quantize{equivalently}.
- Output: {result.output.dtype} scores for the digits 0-9 (`labels.txt`); the class is the argmax.
- TFLM tensor arena: **{arena:,} bytes**, measured: the smallest arena in which TFLM allocated and
  ran the model, rounded up to 16 (on a 64-bit host; a 32-bit MCU needs a little less).
- Oldest LiteRT/TFLite runtime with these operator versions: {result.min_runtime.version}.
- Accuracy on the 10,000 MNIST test images (the Keras model: {keras}):

| runtime | kernels | accuracy | source |
| --- | --- | --- | --- |
{accuracy}

{agreement + "." if agreement else ""}

## LiteRT (Python)

```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

# Builtin kernels without XNNPACK: the numerics of TFLM and of a device without XNNPACK.
interpreter = Interpreter(
    model_path="{model}",
    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
)
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
golden = np.load("golden.npz")
interpreter.set_tensor(inp["index"], golden["inputs"][:1])
interpreter.invoke()
print(interpreter.get_tensor(out["index"]).argmax(), golden["labels"][0])
```

## TensorFlow Lite Micro (C++)

Add `model_data.cc` to the firmware build (and `golden_data.cc` for the check below). It
defines `{c_name}`, `{c_name}_len` and `tensor_arena[kTensorArenaSize]`.

```cpp
#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

tflite::MicroInterpreter* interpreter = nullptr;

void setup() {{
  const tflite::Model* model = tflite::GetModel({c_name});
  static {result.tflm_resolver} resolver;
{calls}
  static tflite::MicroInterpreter micro(model, resolver, tensor_arena, kTensorArenaSize);
  interpreter = &micro;
  if (interpreter->AllocateTensors() != kTfLiteOk) {{ /* arena too small for this build */ }}
}}

int classify(const uint8_t* pixels) {{  // 28×28 grayscale, row-major
  {ctype}* input = interpreter->input(0)->data.{field_name};
  for (int i = 0; i < 28 * 28; ++i) input[i] = {fill};
  interpreter->Invoke();
  const {ctype}* scores = interpreter->output(0)->data.{field_name};
  int best = 0;
  for (int c = 1; c < 10; ++c) if (scores[c] > scores[best]) best = c;
  return best;
}}
```

## Checking the golden vectors

`golden.npz` holds `inputs` (exactly as fed to the model), `outputs` (what TFLM's reference
kernels computed; never XNNPACK's) and `labels`, for the first {count} MNIST test images.
`golden_data.h/.cc` hold the same arrays for a test on the device:

```cpp
#include <cstring>
#include "golden_data.h"

bool golden_vectors_match() {{
  for (int i = 0; i < {c_name}_golden_count; ++i) {{
    std::memcpy(interpreter->input(0)->data.{field_name}, {c_name}_golden_inputs[i],
                sizeof({c_name}_golden_inputs[i]));
    interpreter->Invoke();
    if (std::memcmp(interpreter->output(0)->data.{field_name}, {c_name}_golden_outputs[i],
                    sizeof({c_name}_golden_outputs[i])) != 0) return false;
  }}
  return true;
}}
```

Checked when this bundle was made (golden vectors reproduced, largest difference):

| runtime | package | identical | max difference |
| --- | --- | --- | --- |
{proofs}

Kernels that round differently (LiteRT's default XNNPACK delegate; possibly optimized MCU kernels
such as CMSIS-NN, not checked here) can differ by a few steps: compare classes there instead.

```python
import numpy as np
from tflite_micro.python.tflite_micro import runtime

golden = np.load("golden.npz")
tflm = runtime.Interpreter.from_file("{model}", arena_size={arena})
for x, y in zip(golden["inputs"], golden["outputs"]):
    tflm.set_input(x[None], 0)
    tflm.invoke()
    assert np.array_equal(tflm.get_output(0)[0], y)
```
"""


def _check_model(model: Path) -> tuple[bytes, ModelInfo, str]:
    """The model's bytes, parsed, and its kind; ModelError for anything TFLM cannot take."""
    if not model.is_file():
        raise ModelError(
            f"{model}: no such model file; run `mnist-edge export --int8` or pass --model."
        )
    if model.suffix != ".tflite":
        raise ModelError(f"{model}: expected a .tflite model (TFLM runs TFLite flatbuffers).")
    data = model.read_bytes()
    info = read_model(data, str(model))
    kind = model_kind(info)
    refusal = tflm_refusal(info, kind)
    if refusal:
        raise ModelError(
            f"{model}: {refusal}, so it cannot go to a microcontroller. Bundle the full-integer "
            "model instead (mnist-edge export --int8 writes model_int8.tflite)."
        )
    spec_in, spec_out = _tensor_spec(info, info.inputs[0]), _tensor_spec(info, info.outputs[0])
    if spec_in.shape[1:] != IMAGE_SHAPE or spec_out.shape[1:] != (NUM_CLASSES,):
        raise ModelError(
            f"{model}: input {spec_in.shape}, output {spec_out.shape}; expected "
            f"(N, 28, 28, 1) and (N, {NUM_CLASSES})."
        )
    return data, info, kind


def _measure_accuracy(
    model: Path, artifacts: Path, mnist: Mnist, q: np.ndarray, tflm: TFLMRunner, golden: int
) -> tuple[dict[str, np.ndarray], list[RuntimeAccuracy], float | None]:
    """Raw outputs (TFLM's at least for the golden images) and the test accuracy per runtime.

    A current verify.json that already ran TFLM on the full test set is reused; otherwise TFLM,
    litert-ref and litert all run here, so their agreement can be stated too.
    """
    labels = mnist.y_test
    rows, keras_accuracy = _verify_rows(artifacts, model)
    outputs: dict[str, np.ndarray] = {}
    if "tflm" in rows:
        outputs["tflm"] = tflm.predict_raw(q[:golden])
    else:
        log.info("Running TFLM on the %d test images (reference kernels, one at a time)", len(q))
        started = time.perf_counter()
        outputs["tflm"] = tflm.predict_raw(q)
        log.info("TFLM took %.1f s", time.perf_counter() - started)
        for runtime in ("litert-ref", "litert"):
            runner = LiteRTRunner(model, threads=1, xnnpack=runtime == "litert")
            outputs[runtime] = runner.predict_raw(q, batch=1000)
    if keras_accuracy is None:
        try:
            reference, _ = load_reference(artifacts, mnist, len(labels))
            keras_accuracy = float(np.mean(reference.argmax(axis=1) == labels))
        except MnistEdgeError:
            keras_accuracy = None  # bundling a model without its Keras source is allowed
    accuracy = []
    for runtime in ("tflm", "litert-ref", "litert"):
        if runtime in outputs and len(outputs[runtime]) == len(labels):
            # Dequantizing is monotonic, so the raw outputs' argmax is the class.
            measured = float(np.mean(outputs[runtime].argmax(axis=1) == labels))
            accuracy.append(
                RuntimeAccuracy(runtime, RUNTIMES[runtime][1], measured, len(labels), "bundle")
            )
        elif runtime in rows:
            row = rows[runtime]
            kernels = row.get("kernels", RUNTIMES[runtime][1])
            accuracy.append(
                RuntimeAccuracy(runtime, kernels, row["accuracy"], TEST_IMAGES, VERIFY_JSON)
            )
    return outputs, accuracy, keras_accuracy


def _prove_runtimes(
    model: Path, others: list[Path], golden_in: np.ndarray, golden_out: np.ndarray, arena: int
) -> tuple[list[RuntimeProof], dict[str, LegacyRun], str | None]:
    """Load the model in every runtime at hand and run the golden inputs through each."""
    count = len(golden_in)
    micro = library_versions("tflite-micro").get("tflite-micro", "?")
    proofs = [
        RuntimeProof(
            "tflm",
            f"tflite-micro {micro}",
            True,
            count,
            count,
            0.0,
            f"made the golden vectors, at arena_size={arena}",
        )
    ]
    litert = library_versions("ai-edge-litert").get("ai-edge-litert", "?")
    for runtime in ("litert-ref", "litert"):
        runner = LiteRTRunner(model, threads=1, xnnpack=runtime == "litert")
        agree = _agreement("tflm", runtime, golden_out, runner.predict_raw(golden_in))
        proofs.append(
            RuntimeProof(
                runtime,
                f"ai-edge-litert {litert}",
                True,
                agree.bit_identical,
                count,
                agree.max_abs_diff,
                RUNTIMES[runtime][1],
            )
        )
    python = tflite_runtime_python()
    if not python.is_file():
        return proofs, {}, None
    log.info("Loading the exports in tflite-runtime (%s)", python)
    version, runs = run_in_tflite_runtime(
        python, [(model, golden_in), *((p, None) for p in others)]
    )
    run = runs[0]
    agree = _agreement("tflm", "tflite-runtime", golden_out, run.outputs) if run.loaded else None
    proofs.append(
        RuntimeProof(
            "tflite-runtime",
            f"tflite-runtime {version}",
            run.loaded,
            agree.bit_identical if agree else None,
            count,
            agree.max_abs_diff if agree else None,
            run.error or "builtin kernels, no delegate",
        )
    )
    return proofs, {r.model: r for r in runs}, version


def _export_compat(
    model: Path,
    info: ModelInfo,
    others: list[Path],
    arena: int,
    legacy: dict[str, LegacyRun],
    legacy_version: str | None,
) -> list[ExportCompat]:
    """For the bundled model and every other .tflite export: TFLM and tflite-runtime 2.14."""
    rows = []
    for path in [model, *others]:
        try:
            other = info if path == model else read_model(path.read_bytes(), str(path))
        except ModelError as exc:
            rows.append(ExportCompat(path.name, "unreadable", None, str(exc), str(exc)))
            continue
        kind = model_kind(other)
        needs = min_runtime(other).version
        if path.name in legacy:
            run = legacy[path.name]
            loads = "loads (proven here)" if run.loaded else f"fails (proven here): {run.error}"
        elif needs is None:
            loads = "unknown (none of its operators is in our table)"
        else:
            fits = _version_key(needs) <= _version_key(TFLITE_RUNTIME_VERSION)
            loads = (
                f"{'expected to load' if fits else 'expected to fail'}: its operators need "
                f"{needs} (not run: no {TFLITE_RUNTIME_VENV} virtual environment)"
            )
        refusal = tflm_refusal(other, kind)
        tflm = (
            f"bundled; runs in {arena:,} bytes of arena"
            if path == model
            else f"refused: {refusal}"
            if refusal
            else "a kind TFLM runs (not bundled)"
        )
        version = legacy_version or TFLITE_RUNTIME_VERSION
        rows.append(
            ExportCompat(path.name, kind, needs, tflm, f"tflite-runtime {version}: {loads}")
        )
    return rows


def _versions(info: ModelInfo, artifacts: Path) -> dict[str, object]:
    export_versions: dict[str, str] = {}
    record = artifacts / "export.json"
    if record.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            export_versions = json.loads(record.read_text())["versions"]
    modes = ", ".join(info.optimization_modes) or "no optimization"
    return {
        "tensorflow": info.tensorflow_version,
        "converter": (
            f"TFLiteConverter (MLIR) of TensorFlow {info.tensorflow_version}, "
            f"API v{info.converter_api}; {modes}"
        ),
        "schema_version": info.schema_version,
        "export": export_versions,
        "mnist-edge": __version__,
        **library_versions("ai-edge-litert", "tflite-micro", "numpy"),
    }


def _write_bundle(
    out: Path,
    result: BundleResult,
    model_bytes: bytes,
    c_name: str,
    golden: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> BundleResult:
    """Write every file of the bundle atomically, the manifest (which lists the others) last."""
    golden_in, golden_out, golden_labels = golden
    model_h, model_cc = model_data_files(model_bytes, result.model, c_name, result.arena_bytes)
    golden_h, golden_cc = golden_data_files(*golden, c_name, result.model)
    payloads: dict[str, bytes] = {
        result.model: model_bytes,
        "model_data.h": model_h.encode(),
        "model_data.cc": model_cc.encode(),
        "golden_data.h": golden_h.encode(),
        "golden_data.cc": golden_cc.encode(),
        "labels.txt": ("\n".join(LABELS) + "\n").encode(),
        "README.md": _bundle_readme(result, c_name).encode(),
    }
    with tempfile.TemporaryFile() as handle:
        np.savez(handle, inputs=golden_in, outputs=golden_out, labels=golden_labels)
        handle.seek(0)
        payloads["golden.npz"] = handle.read()
    files = [BundleFile(name, len(p), sha256_bytes(p)) for name, p in sorted(payloads.items())]
    result = replace(result, files=files)
    manifest = {"format": MANIFEST_FORMAT, **asdict(result)}
    del manifest["out"]
    payloads[MANIFEST] = json_bytes(manifest)
    # One step, the manifest renamed last: a folder is never half old, half new.
    write_files_atomic({out / name: payload for name, payload in payloads.items()})
    return result


def bundle(
    artifacts: Path,
    data: Mnist | Path | None,
    *,
    model: Path | None = None,
    out: Path | None = None,
    golden: int = DEFAULT_GOLDEN,
    c_name: str = DEFAULT_C_NAME,
    max_arena: int | None = None,
    max_flash: int | None = None,
    overwrite: bool = False,
) -> BundleResult:
    """Write the device bundle for a .tflite (default the int8 export), checked on TFLM."""
    if not 1 <= golden <= TEST_IMAGES:
        raise MnistEdgeError(f"Invalid golden count {golden}: expected 1 to {TEST_IMAGES:,}.")
    if not C_IDENTIFIER.fullmatch(c_name):
        raise MnistEdgeError(
            f"Invalid --c-name {c_name!r}: expected a C identifier "
            "(a letter or _, then letters, digits or _; at most 63)."
        )
    for name, value in (("--max-arena", max_arena), ("--max-flash", max_flash)):
        if value is not None and value < 1:
            raise MnistEdgeError(f"Invalid {name} {value}: expected a positive number of bytes.")
    artifacts = Path(artifacts)
    model = Path(model) if model is not None else artifacts / INT8_TFLITE
    out = Path(out) if out is not None else artifacts / BUNDLE_DIR
    # A batch tool never prompts: an earlier bundle (its manifest) is replaced only on request.
    refuse_overwrite([out / MANIFEST], overwrite)
    model_bytes, info, kind = _check_model(model)

    # Budgets first: a firmware CI gating on them should not wait for the accuracy runs.
    log.info("Measuring the TFLM tensor arena of %s", model.name)
    arena = measure_arena(model_bytes, str(model))
    check_budgets(model.name, len(model_bytes), arena.bytes, max_flash, max_arena)
    out = prepare_output_dir(out)

    mnist = ensure_mnist(data)
    input_spec = _tensor_spec(info, info.inputs[0])
    q = quantize(to_float(mnist.x_test), input_spec)
    # TFLM at exactly the arena the manifest states: the golden run is also the proof it works.
    tflm = TFLMRunner(model, arena_size=arena.bytes)
    outputs, accuracy, keras_accuracy = _measure_accuracy(model, artifacts, mnist, q, tflm, golden)
    agreement = [
        _agreement("tflm", other, outputs["tflm"], outputs[other])
        for other in ("litert-ref", "litert")
        if other in outputs
    ]
    golden_in, golden_out = q[:golden], outputs["tflm"][:golden]
    others = [p for p in sorted(artifacts.glob("*.tflite")) if p.resolve() != model.resolve()]
    proofs, legacy, legacy_version = _prove_runtimes(
        model, others, golden_in, golden_out, arena.bytes
    )
    uses = op_uses(info)
    unsupported = [f"{u.name} v{u.version}" for u in uses if not u.tflm_call]
    if unsupported:
        log.warning("No TFLM resolver call known for %s", ", ".join(unsupported))
    result = BundleResult(
        out=str(out),
        model=model.name,
        kind=kind,
        files=[],
        input=input_spec,
        output=_tensor_spec(info, info.outputs[0]),
        preprocessing=_preprocessing(input_spec),
        labels=LABELS,
        keras_accuracy=keras_accuracy,
        accuracy=accuracy,
        agreement=agreement,
        ops=uses,
        # One registration per operator, whatever its versions: the resolver's template size.
        tflm_resolver=f"tflite::MicroMutableOpResolver<{len({u.name for u in uses})}>",
        tflm_calls=list(dict.fromkeys(u.tflm_call for u in uses if u.tflm_call)),
        arena_bytes=arena.bytes,
        arena=arena,
        flash_bytes=len(model_bytes),
        macs=count_macs(info),
        params=count_params(info),
        golden={
            "count": golden,
            "images": f"the first {golden} MNIST test images",
            "outputs_from": "tflm (TFLM reference kernels)",
            "file": "golden.npz",
            "inputs": f"{golden_in.dtype.name} {list(golden_in.shape)}",
            "outputs": f"{golden_out.dtype.name} {list(golden_out.shape)}",
        },
        min_runtime=min_runtime(info),
        proven_runtimes=proofs,
        exports=_export_compat(model, info, others, arena.bytes, legacy, legacy_version),
        versions=_versions(info, artifacts),
    )
    golden_labels = mnist.y_test[:golden].astype(np.uint8)
    result = _write_bundle(out, result, model_bytes, c_name, (golden_in, golden_out, golden_labels))
    log.info("Wrote the bundle to %s", out)
    return result
