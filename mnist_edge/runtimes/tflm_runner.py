"""TensorFlow Lite Micro's own interpreter (tflite-micro's Python wheel): the runner, and the
arena probes the bundle's bisection uses."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from mnist_edge.deps import require
from mnist_edge.errors import MnistEdgeError, ModelError, first_line
from mnist_edge.files import capture_native_output
from mnist_edge.runtimes.base import Runner
from mnist_edge.tensors import TensorSpec

# Enough for the seed CNN's int8 and float32 models in TFLM; bundle measures the real minimum.
TFLM_DEFAULT_ARENA = 256 * 1024


def _runtime():
    return require("tflite_micro.python.tflite_micro.runtime")


def _native_reason(text: str, exc: BaseException) -> str:
    """TFLM's own C message (it prints the reason, then raises a generic error), else exc's."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else first_line(exc)


class TFLMRunner(Runner):
    """TensorFlow Lite Micro's own interpreter (tflite-micro): reference kernels, batch 1."""

    engine = "TFLM"

    runtime = "tflm"
    max_batch = 1

    def __init__(self, path: Path, arena_size: int = TFLM_DEFAULT_ARENA, any_shape: bool = False):
        super().__init__(path, threads=1, any_shape=any_shape)
        self._check_flatbuffer()
        runtime = _runtime()
        self.arena_size = arena_size
        # TFLM prints from C while it builds the interpreter (and why it fails): keep it off the
        # terminal and put its reason in the one-line error instead.
        with capture_native_output() as text:
            try:
                self._interpreter = runtime.Interpreter.from_file(
                    str(self.path), arena_size=arena_size
                )
                error = None
            # Its Python side unpacks the whole flatbuffer first (struct/index errors there).
            except (RuntimeError, ValueError, IndexError, TypeError, struct.error) as exc:
                error = exc
        if error is not None:
            reason = _native_reason(text[0], error)
            raise ModelError(f"{self.path}: TFLM cannot load it ({reason}).") from None
        self.input = _tflm_spec(self._interpreter.get_input_details(0), "input")
        self.output = _tflm_spec(self._interpreter.get_output_details(0), "output")
        self._check_io()

    def set_batch(self, n: int) -> None:
        if n != 1:
            raise MnistEdgeError(f"TFLM runs one image at a time; asked for batch {n}.")

    def feed_raw(self, x: np.ndarray) -> None:
        self._interpreter.set_input(x, 0)

    def invoke(self) -> None:
        try:
            self._interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.path}: TFLM failed to run it ({first_line(exc)}).") from None

    def fetch_raw(self) -> np.ndarray:
        return np.array(self._interpreter.get_output(0))

    def describe(self) -> dict:
        return {**super().describe(), "arena_size": self.arena_size}


def _tflm_spec(detail: dict, name: str) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    zero_points = params.get("zero_points")
    quantized = dtype in TensorSpec.QUANTIZED_DTYPES and scales is not None and len(scales) > 0
    return TensorSpec(
        name=name,
        shape=(-1, *(int(d) for d in detail["shape"][1:])),
        dtype=dtype,
        scale=float(scales[0]) if quantized else None,
        zero_point=int(zero_points[0]) if quantized else None,
    )


def tflm_runs(model: bytes, arena_size: int, probe: np.ndarray) -> bool:
    """Whether TFLM allocates and invokes the model in `arena_size` bytes (one probe input).

    Call inside `capture_native_output()`: a failing allocation prints its reason from C.
    """
    try:
        interpreter = _runtime().Interpreter.from_bytes(model, arena_size=arena_size)
        interpreter.set_input(probe, 0)
        interpreter.invoke()
    except (RuntimeError, ValueError):
        return False
    return True


def tflm_allocation(model: bytes, arena_size: int) -> tuple[int | None, int | None]:
    """TFLM's own account of the arena: planned (head) and persistent (tail) bytes."""
    with capture_native_output((1,)):
        interpreter = _runtime().Interpreter.from_bytes(model, arena_size=arena_size)
    with capture_native_output((2,)) as text:
        interpreter.print_allocations()
    head = re.search(r"allocation head (\d+) bytes", text[0])
    tail = re.search(r"allocation tail (\d+) bytes", text[0])
    return (int(head.group(1)) if head else None, int(tail.group(1)) if tail else None)
