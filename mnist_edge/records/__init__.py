"""Every record the pipeline writes and reads back, as frozen dataclasses (typed, not dicts).

One home: `pipeline` (train.json, export.json, verify.json, bench.json), `device` (the bundle's
manifest.json, firmware.json, and the on-target figures both show), `proofs` (a platform proof,
part of the manifest). Each stage returns one of these; the CLI renders it, `dataclasses.asdict`
makes its JSON, and `artifacts.load_record` — the one reader — reads it back through
`base.from_dict`, which fills fields an older version did not write with their defaults and
refuses, in one line, a record that lacks a required one. Nothing here imports an engine.
"""

from mnist_edge.records.base import RecordError, from_dict
from mnist_edge.records.device import (
    Agreement,
    ArenaReport,
    BundleFile,
    BundleResult,
    CEngine,
    EngineFlash,
    EngineRam,
    ExportCompat,
    FirmwareReport,
    FirmwareResult,
    FlashSplit,
    LayerCost,
    MinRuntime,
    NpuEstimate,
    OnTarget,
    OpUse,
    PlanBuffer,
    RuntimeAccuracy,
    RuntimeProof,
)
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
    "FlashSplit",
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
    "TrainResult",
    "Unsupported",
    "VerifyReport",
    "VerifyRow",
    "from_dict",
]
