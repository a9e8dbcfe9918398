"""The C engine the bundle ships: its files, its static memory plan, its check on the host."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_edge.records.compare import Agreement


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
