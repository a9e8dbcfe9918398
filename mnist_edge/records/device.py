"""The device stages' records: the bundle's manifest.json, firmware.json, and the on-target
figures of a firmware run that bundle and bench show beside their own."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from mnist_edge.records.proofs import Proof
from mnist_edge.tensors import TensorSpec


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
    # Positions (in the images compared) of those not bit-identical; the first 100
    mismatches: list[int] = field(default_factory=list)


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
class PlanBuffer:
    """One buffer of the C engine's static memory plan: where it lives and when."""

    buffer: str
    offset: int | None  # in the arena; None: the caller's input or output
    bytes: int
    first_step: int
    last_step: int
    holds: str


@dataclass(frozen=True)
class CEngine:
    """The C engine the bundle ships (its folder), its memory plan, and its check on the host."""

    folder: str
    files: list[str]
    prefix: str  # of its function and macros: PREFIX_infer, PREFIX_ARENA_BYTES
    arena_bytes: int
    plan_level: str  # layers, fused or streamed
    lower_bound_bytes: int  # one call per layer: max over layers of input + output + scratch
    plan: list[PlanBuffer]
    cmsis_nn_sources: list[str]
    host_check: Agreement  # its int8 outputs against host TFLM's on the test images
    build: str  # the commands that build it and run its golden test


@dataclass(frozen=True)
class NpuEstimate:
    """What Arm's vela compiler estimates for one model on one Ethos-U configuration.

    No NPU ran: every figure is vela's performance model (`basis` says so). Cycles cover the NPU's
    work only: operators left on the CPU (`cpu_operators`) are not in them.
    """

    artifact: str
    model_sha256: str
    accelerator: str  # vela's --accelerator-config, e.g. ethos-u55-128
    system_config: str  # from vela's config file, e.g. Ethos_U55_High_End_Embedded
    memory_mode: str  # e.g. Shared_Sram
    clock_hz: int  # the system config's NPU clock
    cycles_total: int
    cycles_npu: int  # the compute alone; the rest of cycles_total waits on memory
    inference_us: float  # cycles_total at clock_hz
    sram_bytes: int
    off_chip_flash_bytes: int
    dram_bytes: int
    weights_area: str  # where the system config keeps the weights: "Off-chip Flash", "DRAM"
    model_operators: int  # the model's operators ...
    npu_operators: int  # ... those vela moved into the NPU's custom operator ...
    cpu_operators: list[str]  # ... and those it left to the CPU, in execution order
    vela_npu_operations: int  # vela's own count, after it lowers operators (a softmax is many)
    macs: int  # as vela counts them
    compiled_bytes: int  # the compiled .tflite (an ethos-u custom operator)
    compiled_sha256: str
    vela_version: str
    basis: str = "estimate (vela)"

    @property
    def fully_mapped(self) -> bool:
        """Every operator of the model runs on the NPU."""
        return not self.cpu_operators


@dataclass(frozen=True)
class BundleResult:
    """Everything the bundle states; manifest.json is this, less the output folder."""

    FORMAT: ClassVar[str] = "mnist-edge-bundle/1"

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
    on_target: list[OnTarget] = field(default_factory=list)
    # The engines shipped: tflm (model_data.h/.cc for the interpreter), codegen (CEngine)
    engines: list[str] = field(default_factory=lambda: ["tflm"])
    c_engine: CEngine | None = None
    not_bundled: list[str] = field(default_factory=list)  # engines left out, and why
    # vela's compilations for Ethos-U NPUs (npu/): estimates, never verified on a device
    npu: list[NpuEstimate] = field(default_factory=list)


# ----------------------------------------------------------------- firmware.json


@dataclass(frozen=True)
class FlashSplit:
    """Flash bytes by what they are; the fields add up to the ELF's flash bytes exactly."""

    model: int
    images: int  # the images, their labels and golden outputs
    tflm_runtime: int  # interpreter, allocator, flatbuffer parsing
    kernels: int  # TFLM's kernels and their shared helpers
    cmsis_nn: int
    libc: int  # newlib-nano, libm, semihosting, libgcc
    app: int  # main, startup, board

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


@dataclass(frozen=True)
class EngineFlash:
    """Flash bytes by role, for either engine; they add up to the ELF's flash bytes."""

    engine_code: int  # TFLM: runtime, kernels, CMSIS-NN; C engine: model.c's code and CMSIS-NN
    engine_constants: int  # TFLM: the flatbuffer; C engine: weights, biases, requantization
    harness: int  # main, board, startup, libc, libgcc (and TFLM's built-in images)

    @property
    def total(self) -> int:
        return self.engine_code + self.engine_constants + self.harness


@dataclass(frozen=True)
class EngineRam:
    """RAM bytes by role, for either engine."""

    engine_buffers: int  # TFLM: the tensor arena; C engine: its one static arena
    stack: int  # peak, measured by painting (the reservation when not run)
    harness_statics: int  # everything else in .data and .bss

    @property
    def total(self) -> int:
        return self.engine_buffers + self.stack + self.harness_statics


@dataclass(frozen=True)
class LayerCost:
    """The instructions one layer took in a profiled inference on the device: TFLM's operator
    ("CONV_2D_0": its kind and index in the model), or one of the C engine's steps, named by
    the layers it runs ("conv_0+maxpool_1": fused into one loop)."""

    name: str
    instructions: int


@dataclass(frozen=True)
class FirmwareResult:
    """One CPU × engine × kernels configuration: built, run, checked, measured."""

    cpu: str
    board: str  # the QEMU machine
    kernels: str
    model: str
    model_sha256: str
    images: int
    golden_count: int  # images the firmware compared with host TFLM's outputs
    golden_identical: int  # ... and found equal, bit for bit
    correct: int
    accuracy: float | None
    agreement_with_host_tflm: float | None  # share of images with host TFLM's class
    mismatches: tuple[int, ...]  # test indices whose outputs differ from host TFLM's
    instructions_per_inference: int | None  # median over the images
    instructions_min: int | None
    instructions_max: int | None
    macs: int
    instructions_per_mac: float | None
    isa_limit_instructions: int  # MACs / the ISA's widest int8 MAC (2 SMLAD, 16 MVE)
    flash_bytes: int
    flash: FlashSplit | None  # TFLM's components (None for the C engine: see engine_flash)
    ram_bytes: int  # static + stack peak (the reserved stack when not run)
    static_bytes: int  # .data + .bss, the tensor arena included
    arena_bytes: int  # the tensor arena, sized to what TFLM used on this CPU
    arena_measured_on: str  # "device"; "host" (64-bit TFLM, an upper bound) when not run
    stack_bytes: int  # peak, measured by painting (the reservation when not run)
    stack_reserved_bytes: int
    project: str  # folder, relative to the output folder
    elf: str
    elf_sha256: str
    library_files: int
    library_cached: bool
    library_seconds: float  # compile time of the library (earlier, when cached)
    build_seconds: float  # this configuration's app build and links, now
    run_seconds: float | None
    exit_status: int | None  # QEMU's, the firmware's exit(): 0 when every output matched
    qemu_command: tuple[str, ...]
    ran: bool
    engine: str = "tflm"  # tflm (the interpreter) or codegen (the model compiled to C)
    engine_flash: EngineFlash | None = None
    engine_ram: EngineRam | None = None
    # Per layer, in order, of one profiled inference of test image `layers_image`: TFLM's in
    # its one-image sizing build (a MicroProfilerInterface), the C engine's an extra, untimed
    # inference (model.c's step hook). Empty when not run.
    layers: list[LayerCost] = field(default_factory=list)
    layers_image: int | None = None  # that image's test index

    @property
    def label(self) -> str:
        """How messages and tables name the configuration: "cortex-m4 tflm cmsis-nn"."""
        return f"{self.cpu} {self.engine} {self.kernels}"

    @property
    def passed(self) -> bool:
        """Ran, and every output matched host TFLM bit for bit (the firmware's own check, exit
        status 0, and ours on the printed outputs)."""
        return (
            self.ran
            and self.exit_status == 0
            and self.golden_count == self.images
            and self.golden_identical == self.golden_count
            and not self.mismatches
        )


@dataclass(frozen=True)
class FirmwareReport:
    """Every configuration's result, and what built and ran them; firmware.json is this, less
    the output folder."""

    FORMAT: ClassVar[str] = "mnist-edge-firmware/2"

    out: str
    model: str
    model_sha256: str
    images: int
    results: tuple[FirmwareResult, ...]
    toolchain: str
    qemu: str | None
    sources: dict[str, dict[str, str]]
    mnist_edge: str = ""  # the version that wrote it
    # Not built: why (`firmware --skip-missing-tools` where the toolchain or QEMU is missing)
    skipped: str | None = None
    # Configurations asked for with `all` that cannot be built (TFLM on a 16 KB board): why
    not_built: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every configuration ran and matched host TFLM bit for bit."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[str]:
        """One phrase per configuration that did not match host TFLM (or did not run)."""
        return [
            f"{r.label}: {r.golden_identical}/{r.golden_count} outputs identical to "
            f"host TFLM (first mismatch: test image {r.mismatches[0]})"
            if r.mismatches
            else f"{r.label}: "
            + (
                "not run"
                if not r.ran
                else f"{r.golden_identical}/{r.golden_count} outputs identical to host TFLM"
            )
            for r in self.results
            if not r.passed
        ]

    def __bool__(self) -> bool:
        return self.passed


@dataclass(frozen=True)
class OnTarget:
    """What a firmware run of a model's very bytes measured on one CPU × kernels: the figures
    the bundle's manifest and `bench --target mcu` show beside their own."""

    cpu: str
    kernels: str
    board: str
    arena_bytes: int
    arena_measured_on: str
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    instructions_per_inference: int | None
    golden_identical: int
    golden_count: int
    source: str  # the record it comes from, e.g. firmware/firmware.json
    artifact: str = ""  # bench: the export these figures belong to
    engine: str = "tflm"

    @classmethod
    def of(cls, result: FirmwareResult, source: str) -> OnTarget:
        """The on-target figures of one firmware configuration."""
        return cls(
            cpu=result.cpu,
            kernels=result.kernels,
            board=result.board,
            arena_bytes=result.arena_bytes,
            arena_measured_on=result.arena_measured_on,
            flash_bytes=result.flash_bytes,
            ram_bytes=result.ram_bytes,
            stack_bytes=result.stack_bytes,
            instructions_per_inference=result.instructions_per_inference,
            golden_identical=result.golden_identical,
            golden_count=result.golden_count,
            source=source,
            engine=result.engine,
        )

    @property
    def golden(self) -> str:
        return f"{self.golden_identical}/{self.golden_count}"
