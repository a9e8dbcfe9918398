"""What a model is, as the device stages read it: its operators, the oldest runtime that takes
them, TFLM's tensor arena for it."""

from __future__ import annotations

from dataclasses import dataclass


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
