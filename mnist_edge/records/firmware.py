"""firmware.json: each engine × board × kernels built, run in QEMU, checked against host TFLM
and measured; and the on-target figures of a run that bundle and bench show beside their own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class EngineFlash:
    """Flash bytes by role, for either engine; they add up to the ELF's flash bytes."""

    engine_code: int  # TFLM: interpreter, kernels, CMSIS-NN, engine.cc; C engine: model.c's
    # code and CMSIS-NN
    engine_constants: int  # TFLM: the flatbuffer; C engine: weights, biases, requantization
    harness: int  # main, board, semihost, startup, libc, libgcc

    @property
    def total(self) -> int:
        return self.engine_code + self.engine_constants + self.harness


@dataclass(frozen=True)
class EngineRam:
    """RAM bytes by role, for either engine."""

    engine_buffers: int  # the engine's statics: TFLM's arena, interpreter and resolver; the C
    # engine's one static arena
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
class TflmBuild:
    """TFLM's build facts: its library (compiled once per configuration into the cache) and
    where its tensor arena was sized."""

    library_files: int
    library_cached: bool
    library_seconds: float  # compile time of the library (earlier, when cached)
    arena_measured_on: str  # "device"; "host" (64-bit TFLM, an upper bound) when not run


@dataclass(frozen=True)
class FirmwareResult:
    """One engine × CPU × kernels configuration: built, run, checked, measured; the same record
    for every engine (totals derived from the parts, which add up to the ELF's sections)."""

    cpu: str
    board: str  # the QEMU machine
    engine: str  # tflm (the interpreter) or codegen (the model compiled to C)
    kernels: str
    model: str
    model_sha256: str
    images: int
    golden_count: int  # inputs the firmware compared with host TFLM's outputs
    golden_identical: int  # ... and found equal, bit for bit
    correct: int
    accuracy: float | None
    agreement_with_host_tflm: float | None  # share of inputs with host TFLM's class
    mismatches: tuple[int, ...]  # indices whose outputs differ from host TFLM's
    instructions_per_inference: int | None  # median over the inputs
    instructions_min: int | None
    instructions_max: int | None
    macs: int
    instructions_per_mac: float | None
    isa_limit_instructions: int  # MACs / the ISA's widest int8 MAC (2 SMLAD, 16 MVE)
    flash: EngineFlash
    ram: EngineRam  # its stack is the peak when run, else the reservation
    arena_bytes: int  # the engine's buffer: TFLM's tensor arena as sized, the C engine's plan
    arena_measured_on: (
        str  # "device", "host" (TFLM not run), "speed plan" or "size plan" (the C engine)
    )
    stack_reserved_bytes: int
    project: str  # folder, relative to the output folder
    elf: str
    elf_sha256: str
    build_seconds: float  # this configuration's build and links, now
    run_seconds: float | None
    exit_status: int | None  # QEMU's, the firmware's exit(): 0 when every output matched
    qemu_command: tuple[str, ...]
    ran: bool
    # Per layer, in order, of one profiled inference of input `layers_image` (an extra,
    # untimed inference of the first input): TFLM's operators, the C engine's steps.
    layers: list[LayerCost] = field(default_factory=list)
    layers_image: int | None = None  # that input's index
    tflm: TflmBuild | None = None  # TFLM's build facts; None for the C engine

    @property
    def flash_bytes(self) -> int:
        return self.flash.total

    @property
    def ram_bytes(self) -> int:
        return self.ram.total

    @property
    def static_bytes(self) -> int:
        """.data and .bss: the engine's and the harness's statics."""
        return self.ram.engine_buffers + self.ram.harness_statics

    @property
    def stack_bytes(self) -> int:
        return self.ram.stack

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

    FORMAT: ClassVar[str] = "mnist-edge-firmware/3"

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
    # What the firmware ran: "MNIST test images 0..19", "random:20 (seed 0)", "x.npy (20)"
    inputs: str = ""

    @property
    def passed(self) -> bool:
        """Every configuration ran and matched host TFLM bit for bit."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[str]:
        """One phrase per configuration that did not match host TFLM (or did not run)."""
        return [
            f"{r.label}: {r.golden_identical}/{r.golden_count} outputs identical to "
            f"host TFLM (first mismatch: input {r.mismatches[0]})"
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
