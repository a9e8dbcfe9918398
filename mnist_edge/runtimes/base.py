"""What every runner shares: the call shape (the tensor specs and quantization are in tensors)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.options import RUNTIMES
from mnist_edge.tensors import IMAGE_SHAPE, NUM_CLASSES, TensorSpec, dequantize, quantize

PREDICT_BATCH = 500


def check_spec(path: Path, spec: TensorSpec, expected: tuple[int, ...], what: str) -> None:
    """ModelError unless the tensor is N × `expected` (the MNIST image, or the 10 classes)."""
    if tuple(spec.shape[1:]) != expected:
        raise ModelError(
            f"{path}: {what} tensor {spec.name} | Received unexpected shape {spec.shape}. "
            f"Note: expected (N, {', '.join(map(str, expected))})"
        )


class Runner:
    """The common call shape: set_batch, feed, invoke, fetch; predict does all four in chunks."""

    runtime: str
    engine: str  # its name in messages: "LiteRT", "TFLM"
    max_batch: int | None = None
    input: TensorSpec
    output: TensorSpec

    def __init__(self, path: Path, threads: int = 1, any_shape: bool = False):
        self.path = Path(path)
        # MNIST's shapes are checked unless the caller feeds raw inputs of the model's own
        # shape (inputs.ModelInputs) and compares raw outputs.
        self.any_shape = any_shape
        if threads < 1:
            raise MnistEdgeError(f"Invalid threads {threads}: expected a positive integer.")
        self.threads = threads
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file.")

    def _check_flatbuffer(self) -> None:
        """Refuse a corrupt .tflite before an engine sees it: LiteRT and TFLM trust fields that
        a damaged or hostile file can make point anywhere (TFLM crashed on such a file)."""
        from mnist_edge.model_info import read_tflite

        try:
            read_tflite(self.path)
        except ModelError as exc:
            reason = str(exc).removeprefix(f"{self.path}: ").rstrip(".")
            raise ModelError(f"{self.path}: {self.engine} cannot load it ({reason}).") from None

    def _check_io(self) -> None:
        if self.any_shape:
            return
        check_spec(self.path, self.input, IMAGE_SHAPE, "input")
        check_spec(self.path, self.output, (NUM_CLASSES,), "output")

    @property
    def kernels(self) -> str:
        """What computes the outputs, to be written beside every figure."""
        return RUNTIMES[self.runtime][1]

    def set_batch(self, n: int) -> None:
        """Prepare for batches of n images."""
        raise NotImplementedError

    def feed_raw(self, x: np.ndarray) -> None:
        """Set the input tensor to x, already in the model's input dtype."""
        raise NotImplementedError

    def invoke(self) -> None:
        """Run the model on the fed input."""
        raise NotImplementedError

    def fetch_raw(self) -> np.ndarray:
        """The output tensor in the model's output dtype (int8 for an int8 model)."""
        raise NotImplementedError

    def feed(self, images: np.ndarray) -> None:
        """Set the input from float images N×28×28×1 in [0, 1], quantizing if the model needs it."""
        self.feed_raw(quantize(images, self.input))

    def fetch(self) -> np.ndarray:
        """Float class probabilities N×10, dequantized if the model's output is integer."""
        raw = self.fetch_raw()
        table = self._output_table
        if table is None:
            return np.asarray(raw, dtype=np.float32)
        # An int8 output has 256 values: dequantizing is one lookup. The table is in byte order,
        # so an int8 value v < 0 is entry v + 256: `mode="wrap"` indexes with the int8 values as
        # they are, with no uint8 view or index array made per call (the fastest of the ways
        # tried: benchmarks/README.md, per_call.py).
        return table.take(raw, mode="wrap")

    def feed_pixels(self, pixels: np.ndarray) -> None:
        """Set the input from uint8 images (MNIST's own format, N×28×28 or N×28×28×1).

        `pixel / 255`, quantized with the model's scale and zero point, takes one of 256 values:
        a table built once per runner, the same bytes `feed(to_float(pixels))` gives.
        """
        # A lookup instead of the float path (divide, scale, round, clip) per call: the figures
        # are in benchmarks/README.md (per_call.py).
        x = self._input_table.take(pixels)
        self.feed_raw(x if x.ndim == 4 else x.reshape(len(x), *IMAGE_SHAPE))

    @functools.cached_property
    def _input_table(self) -> np.ndarray:
        pixels = np.arange(256, dtype=np.float32) / np.float32(255.0)  # exactly data.to_float
        return quantize(pixels, self.input)

    @functools.cached_property
    def _output_table(self) -> np.ndarray | None:
        if not self.output.quantized or self.output.dtype not in ("int8", "uint8"):
            return None
        values = np.arange(256, dtype=np.uint8).view(self.output.dtype)
        return dequantize(values, self.output)

    def predict_raw(self, x: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
        """Raw outputs (the model's output dtype) for inputs already in its input dtype."""
        batch = max(1, min(batch, self.max_batch or batch, len(x)))
        outputs = []
        current = None
        for start in range(0, len(x), batch):
            chunk = x[start : start + batch]
            if len(chunk) != current:
                self.set_batch(len(chunk))
                current = len(chunk)
            self.feed_raw(chunk)
            self.invoke()
            outputs.append(np.array(self.fetch_raw()))  # a copy: the next invoke reuses buffers
        if not outputs:
            return np.zeros((0, *self.output.shape[1:]), self.output.dtype)
        return np.concatenate(outputs)

    def predict(self, images: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
        """Class probabilities N×10 (float32) for float images N×28×28×1 in [0, 1]."""
        return dequantize(self.predict_raw(quantize(images, self.input), batch), self.output)

    def describe(self) -> dict:
        """The runner's settings and I/O, for the JSON records."""
        return {
            "runtime": self.runtime,
            "kernels": self.kernels,
            "threads": self.threads,
            "input": self.input.__dict__,
            "output": self.output.__dict__,
        }
