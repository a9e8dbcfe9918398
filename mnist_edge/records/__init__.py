"""Every record the pipeline writes and reads back, as frozen dataclasses (typed, not dicts).

One home, a module per subject: `pipeline` (train.json, export.json, verify.json, bench.json),
`model` (operators, minimum runtime, TFLM's arena), `compare` (agreement between runtimes),
`bundle` (manifest.json), `cengine` (the C engine the bundle ships), `firmware` (firmware.json
and the on-target figures bundle and bench show), `npu` (vela's estimates), `proofs` (a
platform proof, part of the manifest). Each stage returns one of these; the CLI renders it,
`dataclasses.asdict` makes its JSON, and `artifacts.load_record` — the one reader — reads it
back through `base.from_dict`, which fills fields an older version did not write with their
defaults and refuses, in one line, a record that lacks a required one.
Nothing here imports an engine.
"""

from mnist_edge.records.base import RecordError, from_dict
from mnist_edge.records.bundle import BundleFile, BundleResult, ExportCompat, RuntimeProof
from mnist_edge.records.cengine import CEngine, PlanBuffer
from mnist_edge.records.compare import Agreement, IdentityReport, IdentityRow, RuntimeAccuracy
from mnist_edge.records.firmware import (
    EngineFlash,
    EngineRam,
    FirmwareReport,
    FirmwareResult,
    LayerCost,
    OnTarget,
    TflmBuild,
)
from mnist_edge.records.model import ArenaReport, MinRuntime, OpUse
from mnist_edge.records.npu import NpuEstimate
from mnist_edge.records.pipeline import (
    BenchReport,
    BenchRow,
    Calibration,
    CrossAgreement,
    Disagreement,
    EpochStats,
    ExportedFile,
    ExportResult,
    Machine,
    Reference,
    Roofline,
    TrainResult,
    Unsupported,
    VerifyReport,
    VerifyRow,
)
from mnist_edge.records.proofs import TIMING_NOTE, Comparison, ModelRun, PredictCheck, Proof

__all__ = [
    "TIMING_NOTE",
    "Agreement",
    "IdentityReport",
    "IdentityRow",
    "ArenaReport",
    "BenchReport",
    "BenchRow",
    "BundleFile",
    "BundleResult",
    "CEngine",
    "Calibration",
    "Comparison",
    "CrossAgreement",
    "Disagreement",
    "EngineFlash",
    "EngineRam",
    "EpochStats",
    "ExportCompat",
    "ExportResult",
    "ExportedFile",
    "FirmwareReport",
    "FirmwareResult",
    "LayerCost",
    "Machine",
    "MinRuntime",
    "ModelRun",
    "NpuEstimate",
    "OnTarget",
    "OpUse",
    "PlanBuffer",
    "PredictCheck",
    "Proof",
    "RecordError",
    "Reference",
    "Roofline",
    "RuntimeAccuracy",
    "RuntimeProof",
    "TflmBuild",
    "TrainResult",
    "Unsupported",
    "VerifyReport",
    "VerifyRow",
    "from_dict",
]
