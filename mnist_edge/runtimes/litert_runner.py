"""The LiteRT interpreter (ai-edge-litert), with or without its XNNPACK delegate."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mnist_edge.errors import ModelError, first_line
from mnist_edge.runtimes.base import Runner
from mnist_edge.tensors import TensorSpec

_UINT8 = np.dtype(np.uint8)  # builtin dtypes are singletons: `is` is a third of `==`'s cost


def _unowned_view(interpreter, index: int) -> np.ndarray:
    """A numpy array over a tensor's buffer that does not count as a reference to LiteRT.

    LiteRT's own `tensor()` views keep the interpreter referenced, and `invoke` refuses to run
    while one is alive, so a view must be made and dropped on every call (half of a feed's
    time: benchmarks/README.md). This one is made once: it stays valid until the interpreter
    allocates again, which the caller must track (see LiteRTRunner._pin).
    """
    import ctypes  # only here: `predict` of one image pays every import at start-up

    view = interpreter.tensor(index)()
    memory = (ctypes.c_char * view.nbytes).from_address(view.ctypes.data)
    return np.frombuffer(memory, dtype=view.dtype).reshape(view.shape)


def _litert_spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    quantized = dtype in TensorSpec.QUANTIZED_DTYPES and scale != 0.0
    return TensorSpec(
        name=detail["name"],
        shape=tuple(int(d) for d in detail["shape_signature"]),
        dtype=dtype,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else None,
    )


class LiteRTRunner(Runner):
    """The LiteRT interpreter (ai-edge-litert), with or without the XNNPACK delegate."""

    engine = "LiteRT"

    def __init__(self, path: Path, threads: int = 1, xnnpack: bool = True, any_shape: bool = False):
        super().__init__(path, threads, any_shape)
        from ai_edge_litert import interpreter as litert

        self.xnnpack = xnnpack
        self.runtime = "litert" if xnnpack else "litert-ref"
        self._check_flatbuffer()
        # AUTO applies the default delegate (XNNPACK on CPUs); without it the builtin reference
        # kernels run, bit-identical to TFLM and to what a small device without XNNPACK computes.
        resolver = (
            litert.OpResolverType.AUTO
            if xnnpack
            else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        try:
            self._interpreter = litert.Interpreter(
                model_path=str(self.path),
                num_threads=threads,
                experimental_op_resolver_type=resolver,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise self._error("cannot load it", exc) from None
        self._in = self._interpreter.get_input_details()[0]
        self._out = self._interpreter.get_output_details()[0]
        self.input = _litert_spec(self._in)
        self.output = _litert_spec(self._out)
        self._check_io()
        # One input's shape: MNIST's image, or (any_shape) the model's own.
        self._sample = tuple(int(d) for d in self._in["shape"][1:])
        if self.input.shape[0] > 0:
            # A fixed batch (the MCU-lean model): its RESHAPE is to a constant shape.
            self.max_batch = self.input.shape[0]
        self._in_index, self._out_index = self._in["index"], self._out["index"]
        # Bound once: the per-call path below pays no attribute lookups it can avoid.
        self._set_tensor = self._interpreter.set_tensor
        self._get_tensor = self._interpreter.get_tensor
        self._unpin()
        self._batched(int(self._in["shape"][0]))

    def _error(self, what: str, exc: BaseException) -> ModelError:
        return ModelError(f"{self.path}: LiteRT {what} ({first_line(exc)}).")

    def _pin(self) -> None:
        """Pin the input and output buffers, once an invoke has run since the last allocation.

        Not before: XNNPACK is applied at the first invoke, and applying it allocates the
        tensors again (the output has no buffer at all until then). After it, the buffers of
        this model's static tensors stay where they are until `set_batch` allocates anew, and
        that unpins first. The tests check the pinned path against `set_tensor`/`get_tensor`
        on every layout, both batch sizes and both kernels.
        """
        self._pinned_output = _unowned_view(self._interpreter, self._out_index)
        if self._input_bytes_table is not None:
            pinned = _unowned_view(self._interpreter, self._in_index)
            self._pinned_input = memoryview(pinned).cast("B")
        self._pinned = True

    def _unpin(self) -> None:
        self._pinned = False
        self._pinned_input: memoryview | None = None
        self._pinned_output: np.ndarray | None = None

    def set_batch(self, n: int) -> None:
        if n != self._batch:
            self._unpin()
            try:
                self._interpreter.resize_tensor_input(self._in_index, [n, *self._sample])
                self._interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise self._error(f"cannot resize it to batch {n}", exc) from None
            self._batched(n)

    def _batched(self, n: int) -> None:
        """The allocated batch, and what the per-call path derives from it (kept, not derived
        per call)."""
        self._batch = n
        self._shape = (n, *self._sample)
        self._input_size = n * int(np.prod(self._sample))

    def feed_raw(self, x: np.ndarray) -> None:
        self._set_tensor(self._in_index, x)

    def feed_pixels(self, pixels: np.ndarray) -> None:
        # The per-call path. An int8 model's uint8 pixels are one byte-to-byte lookup:
        # `bytes.translate` with the 256-entry table, written straight into the interpreter's
        # pinned input buffer: one copy instead of `take` + `set_tensor`'s two (the figures:
        # benchmarks/README.md, per_call.py).
        pinned = self._pinned_input
        if pinned is not None and pixels.dtype is _UINT8 and pixels.size == self._input_size:
            pinned[:] = pixels.tobytes().translate(self._input_bytes_table)
        else:
            x = self._input_table.take(pixels)
            self._set_tensor(self._in_index, x if x.ndim == 4 else x.reshape(self._shape))

    @functools.cached_property
    def _input_bytes_table(self) -> bytes | None:
        table = self._input_table
        return table.tobytes() if table.dtype.itemsize == 1 else None

    def fetch(self) -> np.ndarray:
        # A new array either way (take, astype): no caller holds a view of LiteRT's buffer.
        raw = self._pinned_output
        if raw is None:
            raw = self._get_tensor(self._out_index)
        table = self._output_table
        return raw.astype(np.float32) if table is None else table.take(raw, mode="wrap")

    def invoke(self) -> None:
        try:
            self._interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            # A corrupt model can load yet fail here (XNNPACK prepares lazily): bad input.
            raise self._error("failed to run it", exc) from None
        if not self._pinned:
            self._pin()

    def fetch_raw(self) -> np.ndarray:
        return self._get_tensor(self._out_index)

    def describe(self) -> dict:
        return {**super().describe(), "xnnpack": self.xnnpack}
