"""What a platform proof found (emulated aarch64, tflite-runtime 2.14): part of the manifest.

Only str, int, float, bool, lists, dicts and None, so `dataclasses.asdict` makes the JSON and
`from_dict` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TIMING_NOTE = (
    "seconds are wall time of this machine preparing and running the proof; under emulation "
    "they say nothing about a device's latency"
)


@dataclass(frozen=True)
class Comparison:
    """One runtime's raw outputs on the test images against a reference's, image by image."""

    against: str  # "host tflm", "host litert (x86_64)"...
    images: int
    bit_identical: int  # images whose every output value is equal
    same_class: int
    max_abs_diff: float  # in `units`
    units: str  # "int8 steps" (an int8 model) or "probability" (float outputs)

    @property
    def share(self) -> float:
        return self.bit_identical / self.images if self.images else 0.0


@dataclass(frozen=True)
class ModelRun:
    """One model on one runtime in the target: loaded or refused (and why), and its figures."""

    model: str  # file name
    runtime: str  # litert-ref | litert | onnxruntime | tflite-runtime
    kernels: str
    loaded: bool
    error: str | None  # why it did not load or run (None when it ran)
    # The bundle's golden vectors (its model only): identical outputs, count, largest gap.
    golden_identical: int | None = None
    golden_count: int | None = None
    golden_max_abs_diff: float | None = None
    images: int = 0  # test images run
    accuracy: float | None = None
    vs_host_tflm: Comparison | None = None  # the bundle's model: host TFLM's outputs
    vs_host: Comparison | None = None  # the same file on this host's own build of the kernels
    seconds: float | None = None  # wall time inside the target (emulated: not a latency)

    @property
    def golden_reproduced(self) -> bool:
        return self.golden_count is not None and self.golden_identical == self.golden_count


@dataclass(frozen=True)
class PredictCheck:
    """`mnist-edge predict` run as a command inside the target on PNGs made from test images."""

    command: str
    model: str
    runtime: str  # predict's default for the model's suffix
    files: list[str]
    labels: list[int]
    classes: list[int | None]  # what predict said in the target (None: skipped)
    host_classes: list[int]  # what the same predict says on this host, same files and model
    array_classes: list[int]  # host TFLM's classes on the arrays the PNGs were made from
    exit_code: int
    error: str | None
    seconds: float

    @property
    def matches_host(self) -> bool:
        return self.exit_code == 0 and self.classes == self.host_classes

    @property
    def matches_arrays(self) -> int:
        return sum(int(a == b) for a, b in zip(self.classes, self.array_classes, strict=True))


@dataclass(frozen=True)
class Proof:
    """A bundle proven on one platform: where and with what it ran, and every figure."""

    target: str  # linux-aarch64 | tflite-runtime-2.14
    platform: str  # "linux-aarch64, emulated: qemu-aarch64 7.2.22 (cortex-a72, ...)"
    emulated: bool
    cpu: str | None  # qemu's -cpu
    cpu_features: list[str]  # HWCAP as the target's programs see it (aarch64)
    python: str
    packages: dict[str, str]  # ai-edge-litert, onnxruntime, numpy, tflite-runtime... inside
    bundle_model: str
    golden_count: int
    images: int  # test images run on every model
    runs: list[ModelRun]
    predict: PredictCheck | None
    environment: dict[str, str]  # layer -> folder in the cache
    built: list[str]  # layers built by this proof (empty: all came from the cache)
    prepare_seconds: float
    run_seconds: float
    note: str = TIMING_NOTE
    failures: list[str] = field(default_factory=list)  # the proof ran and failed: why
    warnings: list[str] = field(default_factory=list)  # e.g. files the device install lacks
    # Two runtimes of the target on the same model, against each other (aarch64's builtin
    # kernels against its XNNPACK), on the test images.
    between_runtimes: list[Comparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def run(self, model: str, runtime: str) -> ModelRun:
        """The run of a model (file name) on a runtime; KeyError if the proof has none."""
        for run in self.runs:
            if run.model == model and run.runtime == runtime:
                return run
        raise KeyError(f"{model} on {runtime}")

    @property
    def golden_reproduced_by(self) -> list[str]:
        """The runtimes that computed the golden outputs bit for bit."""
        return [r.runtime for r in self.runs if r.golden_reproduced]

    def findings(self) -> list[str]:
        """One sentence per run: the answers a README or a report states."""
        lines = []
        for run in self.runs:
            where = f"{run.model} on {run.runtime} ({self.target})"
            if not run.loaded:
                lines.append(f"{where}: refused: {run.error}")
                continue
            parts = []
            if run.golden_count is not None:
                parts.append(
                    f"golden {run.golden_identical}/{run.golden_count} identical "
                    f"(max |Δ| {run.golden_max_abs_diff:g})"
                )
            if run.accuracy is not None:
                parts.append(f"accuracy {run.accuracy:.4f} on {run.images:,} images")
            for c in (run.vs_host_tflm, run.vs_host):
                if c is not None:
                    parts.append(
                        f"bit-identical to {c.against} on {c.bit_identical:,}/{c.images:,} "
                        f"(max |Δ| {c.max_abs_diff:g} {c.units}, same class {c.same_class:,})"
                    )
            lines.append(f"{where}: " + "; ".join(parts))
        if self.predict is not None:
            p = self.predict
            lines.append(
                f"mnist-edge predict in {self.target}: exit {p.exit_code}, {len(p.files)} PNGs, "
                f"classes {'=' if p.matches_host else '≠'} the host's, "
                f"{p.matches_arrays}/{len(p.files)} = the model's classes on the arrays"
            )
        return lines
