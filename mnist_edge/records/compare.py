"""Comparisons of outputs: two runtimes' raw outputs against each other, and a runtime's
accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field


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
