"""The tensor arena TensorFlow Lite Micro needs for a model: estimated from the flatbuffer alone,
and measured by bisection in TFLM's own interpreter (the smallest arena in which it allocates and
runs). Both `bundle` and `bench --target mcu` state it; the firmware stage measures it on target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_edge.errors import ModelError
from mnist_edge.files import capture_native_output
from mnist_edge.machine import library_versions
from mnist_edge.model_info import CHANNEL_OPS, ModelInfo, read_model
from mnist_edge.records import ArenaReport
from mnist_edge.runtimes.tflm_runner import tflm_allocation, tflm_runs

ARENA_ALIGNMENT = 16  # TFLM aligns every arena buffer to 16 bytes; so does alignas(16) on a device
MAX_ARENA = 64 * 1024 * 1024  # past this the model does not belong on a microcontroller

# TFLM's bookkeeping per unit, on a 64-bit host, as its RecordingMicroAllocator reports it: what
# the arena estimate can know from the flatbuffer alone. Kernel op-data structs and the
# allocator's own objects are not counted; that is the estimate's (stated) error.
EVAL_TENSOR_BYTES = 24  # TfLiteEvalTensor per tensor: data and dims pointers, type
NODE_BYTES = 64  # NodeAndRegistration per operator
IO_TENSOR_BYTES = 64 + 32  # persistent TfLiteTensor per model input/output, + its quantization
PER_CHANNEL_BYTES = 8  # int32 multiplier + int32 shift per output channel of an int8 conv


@dataclass(frozen=True)
class ArenaEstimate:
    """The arena TFLM should need, from the flatbuffer alone."""

    activations: int  # largest sum of simultaneously live tensors, in execution order
    bookkeeping: int  # TFLM's known per-tensor, per-operator and per-channel structs
    total: int


def estimate_arena(info: ModelInfo) -> ArenaEstimate:
    """Peak of live non-constant tensors over the execution order, plus known bookkeeping."""

    def aligned(n: int) -> int:
        return -(-n // ARENA_ALIGNMENT) * ARENA_ALIGNMENT

    first: dict[int, int] = {i: 0 for i in info.inputs}
    last: dict[int, int] = {}
    for step, op in enumerate(info.operators):
        for index in (*op.inputs, *op.outputs):
            if index >= 0 and not info.tensors[index].constant:
                first.setdefault(index, step)
                last[index] = step
    for index in info.outputs:
        last[index] = len(info.operators) - 1
    peak = max(
        (
            sum(aligned(info.tensors[t].nbytes) for t in first if first[t] <= step <= last[t])
            for step in range(len(info.operators))
        ),
        default=0,
    )
    channels = sum(
        info.tensors[op.outputs[0]].shape[-1]
        for op in info.operators
        if op.op in CHANNEL_OPS and info.tensors[op.inputs[0]].dtype == "int8"
    )
    bookkeeping = (
        EVAL_TENSOR_BYTES * len(info.tensors)
        + NODE_BYTES * len(info.operators)
        + IO_TENSOR_BYTES * (len(info.inputs) + len(info.outputs))
        + PER_CHANNEL_BYTES * channels
    )
    return ArenaEstimate(peak, bookkeeping, peak + bookkeeping)


def measure_arena(
    model: bytes, origin: str = "model", info: ModelInfo | None = None
) -> ArenaReport:
    """Smallest arena in which TFLM allocates and invokes the model (bisection), and the estimate.

    TFLM fails at allocation when the arena is short, and a larger arena is assumed never to fail
    where a smaller one worked (the tests check this around the boundary), so bisection over
    arena_size finds the smallest in about twenty tries.
    """
    info = info if info is not None else read_model(model, origin)
    spec = info.tensors[info.inputs[0]]
    probe = np.zeros((1, *spec.shape[1:]), dtype=spec.dtype)
    estimate = estimate_arena(info)
    probes = 0

    def runs(size: int) -> bool:
        nonlocal probes
        probes += 1
        return tflm_runs(model, size, probe)

    with capture_native_output() as text:
        low, high = 0, max(4096, 2 * estimate.total)
        while not runs(high):
            low, high = high, high * 2
            if high > MAX_ARENA:
                break
        found = high <= MAX_ARENA
        while found and high - low > 1:
            middle = (low + high) // 2
            if runs(middle):
                high = middle
            else:
                low = middle
    if not found:
        reasons = [line.strip() for line in text[0].splitlines() if line.strip()]
        reason = next((r for r in reasons if "op" in r.lower()), reasons[-1] if reasons else "")
        raise ModelError(f"{origin}: TFLM cannot run it in up to {MAX_ARENA:,} bytes ({reason}).")
    smallest = high
    arena = -(-smallest // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    head, tail = tflm_allocation(model, arena)
    error = estimate.total - arena
    return ArenaReport(
        bytes=arena,
        smallest_working=smallest,
        head_bytes=head,
        tail_bytes=tail,
        estimate_bytes=estimate.total,
        estimate_activations=estimate.activations,
        estimate_bookkeeping=estimate.bookkeeping,
        error_bytes=error,
        error_pct=round(100 * error / arena, 2),
        probes=probes,
        measured_with=(
            f"tflite-micro {library_versions('tflite-micro').get('tflite-micro', '?')} Python "
            "interpreter, reference kernels, 64-bit host"
        ),
        note=(
            "A 32-bit MCU needs a little less (its structs hold 4-byte pointers); optimized "
            "kernels such as CMSIS-NN may request scratch buffers the reference kernels do not."
        ),
    )
