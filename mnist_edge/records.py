"""Every record the pipeline writes and reads back, as frozen dataclasses (typed, not dicts).

Each stage returns one of these; the CLI renders it, `dataclasses.asdict` makes its JSON, and
`artifacts.load_record` reads it back through `from_dict`, which fills fields an older version
did not write with their defaults and refuses, in one line, a record that lacks a required one.
Nothing here imports an engine or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from mnist_edge.errors import MnistEdgeError
from mnist_edge.model_info import MinRuntime, OpUse
from mnist_edge.proofs.result import Proof
from mnist_edge.tensors import TensorSpec


class RecordError(MnistEdgeError):
    """A JSON record that does not have the fields this version needs."""


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from JSON data, recursing into nested dataclasses and lists.

    Missing fields with a default take it; missing required fields are all named at once
    (`where` is the dotted path of this object inside the record).
    """
    if not isinstance(data, dict):
        raise RecordError(f"expected an object at {where or 'the top'} ({cls.__name__})")
    fields = dataclasses.fields(cls)
    missing = [
        f"{where}{f.name}"
        for f in fields
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RecordError("lacks " + ", ".join(repr(name) for name in missing))
    hints = typing.get_type_hints(cls)
    values = {
        f.name: _convert(hints[f.name], data[f.name], f"{where}{f.name}")
        for f in fields
        if f.name in data
    }
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{where}.")
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class Unsupported:
    """An export and a runtime that `--runtime all` paired but that cannot run it, and why."""

    artifact: str
    runtime: str
    reason: str


# --------------------------------------------------------------------------- train.json


@dataclass(frozen=True)
class EpochStats:
    """Loss and accuracy of one epoch, train and validation."""

    epoch: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What `train` did and measured; written as train.json."""

    model_path: str
    epochs: int
    batch_size: int
    seed: int
    limit: int | None
    train_images: int
    seconds: float
    history: list[EpochStats]
    test_accuracy: float
    test_loss: float
    params: int
    data_source: str
    data_sha256: dict[str, str]
    learning_rate: float = 1e-3
    schedule: str = "constant"
    recipe: str = "seed"
    precision: str = "float32"
    precision_reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- export.json


@dataclass(frozen=True)
class ExportedFile:
    """One file written by export."""

    name: str
    format: str
    bytes: int
    sha256: str
    description: str = ""
    seconds: float | None = None
    # "written" by this export, "kept" from an earlier one (same bytes), or "found" in the folder
    origin: str = "written"


@dataclass(frozen=True)
class Calibration:
    """How the quantized formats were calibrated."""

    images: int
    source: str
    onnx_method: str
    per_channel: bool = True


@dataclass(frozen=True)
class ExportResult:
    """What export wrote, and how. Only the files are required of a record read back: the rest
    is context, and an older or hand-made record without it still describes its files."""

    files: list[ExportedFile]
    source: str = ""
    source_sha256: str = ""
    calibration: Calibration | None = None
    onnx_opset: int | None = None
    keras_test_accuracy: float | None = None
    data_sha256: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- verify.json


@dataclass(frozen=True)
class Reference:
    """The Keras model's own accuracy: the figure every export is held to."""

    artifact: str
    runtime: str
    accuracy: float
    source: str  # "recorded" (reference.npz written by export) or "live" (Keras run now)
    per_class_accuracy: list[float]
    confusion: list[list[int]]


@dataclass(frozen=True)
class Disagreement:
    """A test image on which an export's class differs from Keras'."""

    index: int
    label: int
    keras: int
    export: int


@dataclass(frozen=True)
class VerifyRow:
    """One export on one runtime, against Keras: the task metric first, output error second."""

    artifact: str
    runtime: str
    kernels: str
    sha256: str  # of the export verified: later tools reuse a row only for these bytes
    accuracy: float
    delta_pp: float
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    cosine_similarity: float
    l2_relative_error: float
    passed: bool
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    disagreements: list[Disagreement]


@dataclass(frozen=True)
class CrossAgreement:
    """Pairwise agreement of predicted classes between every two models (Keras first)."""

    models: list[str]
    matrix: list[list[float]]


@dataclass(frozen=True)
class VerifyReport:
    """Every export's parity with Keras; true when all passed."""

    reference: Reference
    results: list[VerifyRow]
    cross_agreement: CrossAgreement
    images: int
    tolerance_pp: float
    failures: list[str]
    unsupported: list[Unsupported] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------- bench.json


@dataclass(frozen=True)
class Machine:
    """The CPU the figures came from: detected, never assumed."""

    cpu: str
    arch: str
    cores: int
    features: list[str]
    os: str


@dataclass(frozen=True)
class Roofline:
    """The best MAC rate this CPU reaches on a large matrix multiply, same run, same threads."""

    threads: int
    float32_gmacs: float | None  # onnxruntime MatMul, float32
    int8_gmacs: float | None  # onnxruntime MatMulInteger, uint8 × int8
    size: int
    note: str


@dataclass(frozen=True)
class BenchRow:
    """One export on one runtime at one thread count and batch size.

    Latency is of one call on a batch (batch 1: a single image): end to end (quantize, set the
    input, invoke, read and dequantize the output) and invoke alone.
    """

    artifact: str
    runtime: str
    kernels: str
    threads: int
    batch_size: int
    runs: int
    warmup: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    std_us: float
    min_us: float
    max_us: float
    invoke_p50_us: float
    invoke_mean_us: float
    throughput_ips: float
    init_ms: float
    file_bytes: int
    peak_rss_mb: float
    overhead_us: float | None = None  # p50 − invoke p50: feeding and fetching, per call
    feed_p50_us: float | None = None  # its two halves: uint8 pixels in ...
    fetch_p50_us: float | None = None  # ... and float scores out
    macs: int | None = None
    params: int | None = None
    gmacs: float | None = None  # achieved: MACs per image × images per second (invoke p50)
    roofline_gmacs: float | None = None
    roofline_fraction: float | None = None
    speedup_vs_keras: float | None = None  # Keras direct call p50 / this p50, same threads/batch
    arena_bytes: int | None = None  # TFLM rows: the smallest working tensor arena, measured
    flash_bytes: int | None = None  # TFLM rows: the model's bytes, what a firmware image holds


@dataclass(frozen=True)
class BenchReport:
    """All rows, and the machine, versions and settings they were measured with."""

    machine: Machine
    versions: dict[str, str]
    peak_rss_mb: float
    results: list[BenchRow]
    target: str | None = None
    settings: dict = field(default_factory=dict)
    rooflines: list[Roofline] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    # --target mcu: what a firmware run of the benchmarked model measured on each CPU × kernels
    firmware: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------- manifest.json (bundle)


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
    # Platform proofs asked for with --prove (emulated aarch64, tflite-runtime 2.14)
    proven: list[Proof] = field(default_factory=list)
    # Target figures from a firmware run of these very bytes (firmware/firmware.json)
    on_target: list[dict] = field(default_factory=list)
