"""Comparisons of outputs: two runtimes' raw outputs against each other, and a runtime's
accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


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
class RuntimeAccuracy:
    """Test accuracy of the bundled model on one runtime, and where the figure comes from."""

    runtime: str
    kernels: str
    accuracy: float
    images: int
    source: str  # "bundle" (measured now) or "verify.json"


@dataclass(frozen=True)
class IdentityRow:
    """One export on one runtime, run on the same inputs as host TFLM: its outputs against
    TFLM's, byte for byte, and its accuracy where the inputs have labels."""

    artifact: str
    runtime: str
    kernels: str
    sha256: str
    agreement: Agreement  # a: host TFLM, b: this runtime
    accuracy: float | None  # None: inputs without labels (random, a .npy file)
    must_match: bool  # an engine that promises TFLM's bytes (the C engine, reference kernels)

    @property
    def passed(self) -> bool:
        return not self.must_match or self.agreement.bit_identical == self.agreement.images


@dataclass(frozen=True)
class IdentityReport:
    """verify --inputs: every export on the runtimes asked for, against host TFLM (the
    tflite-micro interpreter) on the same inputs; identity.json is this."""

    FORMAT: ClassVar[str] = "mnist-edge-identity/1"

    inputs: str  # "random:1000 (seed 0)", "MNIST test images 0..9999", "x.npy (20)"
    count: int
    reference: str  # what computed the reference outputs
    results: list[IdentityRow]
    failures: list[str]
    unsupported: list = field(default_factory=list)  # records.Unsupported

    def __bool__(self) -> bool:
        return not self.failures
