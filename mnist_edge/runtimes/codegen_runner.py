"""The C engine: the model compiled to C99 + CMSIS-NN (mnist_edge.codegen), built with the
host's C compiler and called through ctypes."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.runtimes.base import Runner


class CodegenRunner(Runner):
    """The generated C engine (CMSIS-NN's plain-C kernels on the host), any batch size.

    Building is cached (mnist_edge.codegen.host): the first runner for a model compiles it
    (a few seconds), the next ones load the library. `sources` is the folder of the pinned
    source archives CMSIS-NN comes from (see mnist_edge.sources).
    """

    engine = "the C engine"
    runtime = "codegen"

    def __init__(
        self,
        path: Path,
        threads: int = 1,
        sources: Path | None = None,
        any_shape: bool = False,
    ):
        super().__init__(path, threads, any_shape)
        if threads != 1:
            raise MnistEdgeError(
                f"The C engine runs on one thread (one static arena); asked for {threads}."
            )
        from mnist_edge.codegen import generate
        from mnist_edge.codegen.host import build, library_sizes, load_library
        from mnist_edge.model_info import read_tflite, tensor_spec

        self._check_flatbuffer()
        data, info = read_tflite(self.path)
        self.generated = generate(data, self.path.name)
        self.build = build(self.generated, sources)
        self.input = tensor_spec(info, info.inputs[0])
        self.output = tensor_spec(info, info.outputs[0])
        self._check_io()
        g = self.generated
        self._library = load_library(self.build.path, g.prefix)
        self._infer_batch = getattr(self._library, f"{g.prefix}_infer_batch")
        # The library was built from what was just generated, not found stale in the cache.
        sizes = library_sizes(self._library, g.prefix)
        if sizes != (g.input_bytes, g.output_bytes, g.arena_bytes):
            raise MnistEdgeError(f"{self.build.path}: built for sizes {sizes}, not this model's.")
        # int8, or float32 for a full-integer model with float input or output (its QUANTIZE
        # and DEQUANTIZE are steps of the engine): the buffers are bytes of that dtype.
        self._input_dtype = np.dtype(self.input.dtype)
        self._output_dtype = np.dtype(self.output.dtype)
        self._batch = 1
        self._inputs = np.zeros((1, self.generated.input_bytes), np.uint8)
        self._outputs = np.zeros((1, self.generated.output_bytes), np.uint8)

    @property
    def kernels(self) -> str:
        return (
            "generated C99 calling CMSIS-NN (plain C on the host, "
            f"{self.generated.plan.level} memory plan, {self.generated.arena_bytes} B arena)"
        )

    def set_batch(self, n: int) -> None:
        if n < 1:
            raise MnistEdgeError(f"Invalid batch {n}: expected a positive integer.")
        if n != self._batch:
            self._batch = n
            self._outputs = np.zeros((n, self.generated.output_bytes), np.uint8)

    def feed_raw(self, x: np.ndarray) -> None:
        if np.asarray(x).dtype != self._input_dtype:
            raise ModelError(
                f"{self.path}: input | Received unexpected dtype: {np.asarray(x).dtype}. "
                f"Note: expected {self._input_dtype}"
            )
        x = np.ascontiguousarray(x)
        if x.nbytes != self._batch * self.generated.input_bytes:
            raise ModelError(
                f"{self.path}: input of {x.nbytes} bytes | Received unexpected size. Note: "
                f"expected batch {self._batch} x {self.generated.input_bytes}"
            )
        self._inputs = x

    def invoke(self) -> None:
        status = self._infer_batch(
            self._inputs.ctypes.data_as(ctypes.c_void_p),
            self._outputs.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int32(self._batch),
        )
        if status != 0:
            raise ModelError(f"{self.path}: the C engine failed at step {status - 1}.")

    def fetch_raw(self) -> np.ndarray:
        outputs = self._outputs.view(self._output_dtype)
        return outputs.reshape(self._batch, *self.output.shape[1:]).copy()

    def describe(self) -> dict:
        return {
            **super().describe(),
            "arena_bytes": self.generated.arena_bytes,
            "plan": self.generated.plan.level,
            "library": str(self.build.path),
        }
