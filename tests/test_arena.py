"""arena: TFLM's tensor arena, estimated from the flatbuffer and measured in TFLM."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge.arena import ARENA_ALIGNMENT, estimate_arena, measure_arena
from mnist_edge.errors import ModelError
from tests.modelinfo_fixtures import tiny_model


def test_estimate_of_the_hand_built_model():
    """Live tensors (16-byte aligned) peak at two of them; bookkeeping per tensor, op, I/O and
    output channel of the int8 convolution."""
    estimate = estimate_arena(tiny_model())
    assert estimate.activations == 2 * ARENA_ALIGNMENT
    assert estimate.bookkeeping == 24 * 8 + 64 * 3 + 96 * 2 + 8 * 2
    assert estimate.total == estimate.activations + estimate.bookkeeping


def test_measure_refuses_what_is_not_a_model():
    with pytest.raises(ModelError, match="no TFL3 identifier"):
        measure_arena(b"not a model", "x.tflite")


def test_measured_arena_is_the_smallest_working_one_rounded_to_16(exported):
    """Every arena from the smallest working one up to the stated one works; one byte less
    fails. Measured on the quick model: TFLM's planned buffers equal the estimate's live-tensor
    peak, and the whole estimate is a few percent short (kernel op data is not counted)."""
    pytest.importorskip("tflite_micro")
    from mnist_edge.runtimes.tflm_runner import tflm_runs

    artifacts, _ = exported
    model = (artifacts / "model_int8.tflite").read_bytes()
    report = measure_arena(model, "model_int8.tflite")
    probe = np.zeros((1, 28, 28, 1), np.int8)
    arena, smallest = report.bytes, report.smallest_working
    assert arena % ARENA_ALIGNMENT == 0 and arena - ARENA_ALIGNMENT < smallest <= arena
    assert all(tflm_runs(model, size, probe) for size in range(smallest, arena + 1))
    assert not tflm_runs(model, smallest - 1, probe)
    assert report.head_bytes == report.estimate_activations
    assert report.error_bytes == report.estimate_bytes - arena
    assert -15 < report.error_pct < 0
