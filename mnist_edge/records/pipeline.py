"""The pipeline's records: train.json, export.json, verify.json and bench.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from mnist_edge.records.compare import Agreement
from mnist_edge.records.firmware import OnTarget
from mnist_edge.records.npu import NpuEstimate


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
    # The C engine's rows: its int8 outputs against host TFLM's, which it must equal bit for bit
    tflm_identity: Agreement | None = None


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
    firmware: list[OnTarget] = field(default_factory=list)
    # --target ethos-u*: vela's estimates for each model on that NPU (no NPU ran)
    npu: list[NpuEstimate] = field(default_factory=list)
