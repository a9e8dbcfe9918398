"""The bundle's manifest.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mnist_edge.records.cengine import CEngine
from mnist_edge.records.compare import Agreement, RuntimeAccuracy
from mnist_edge.records.firmware import OnTarget
from mnist_edge.records.model import ArenaReport, MinRuntime, OpUse
from mnist_edge.records.npu import NpuEstimate
from mnist_edge.records.proofs import Proof
from mnist_edge.tensors import TensorSpec


@dataclass(frozen=True)
class BundleFile:
    """One file of the bundle."""

    name: str
    bytes: int
    sha256: str


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
    # Platform proofs asked for and not run, and why ("linux-aarch64: ..."): they run MNIST's
    # test images, which a model of other inputs does not take
    not_proven: list[str] = field(default_factory=list)
    # Target figures from a firmware run of these very bytes (firmware/firmware.json)
    on_target: list[OnTarget] = field(default_factory=list)
    # The engines shipped: tflm (model_data.h/.cc for the interpreter), codegen (CEngine)
    engines: list[str] = field(default_factory=lambda: ["tflm"])
    c_engine: CEngine | None = None
    not_bundled: list[str] = field(default_factory=list)  # engines left out, and why
    # vela's compilations for Ethos-U NPUs (npu/): estimates, never verified on a device
    npu: list[NpuEstimate] = field(default_factory=list)
