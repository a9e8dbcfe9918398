"""onnxruntime's CPU execution provider: the session builder, and the runner over it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError, ModelError, first_line
from mnist_edge.options import ORT_OPTIMIZATION_LEVELS
from mnist_edge.runtimes.base import Runner
from mnist_edge.tensors import TensorSpec


def ort_session(model: Path | bytes, threads: int = 1, optimization: str = "all"):
    """An InferenceSession on the CPU with explicit threads and graph optimization level."""
    import onnxruntime as ort

    if optimization not in ORT_OPTIMIZATION_LEVELS:
        raise MnistEdgeError(
            f"Invalid optimization level {optimization!r}: expected one of "
            f"{', '.join(ORT_OPTIMIZATION_LEVELS)}."
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # One model, one request at a time: no inter-op parallelism to gain, only threads to park.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def best_rate(model: bytes, feed: dict[str, np.ndarray], macs: int, threads: int) -> float:
    """GMAC/s of the best of 10 timed runs (after 3 untimed) of a one-node model: a roofline."""
    session = ort_session(model, threads)
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(10):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times.append(time.perf_counter_ns() - t0)
    # The roofline is what the machine can do: the best run, not the typical one.
    return round(macs / (min(times) / 1e9) / 1e9, 2)


class OrtRunner(Runner):
    """onnxruntime's CPU execution provider, with explicit threads and optimization level."""

    engine = "onnxruntime"

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1, optimization: str = "all"):
        super().__init__(path, threads)
        self.optimization = optimization
        try:
            self._session = ort_session(self.path, threads, optimization)
        except MnistEdgeError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types.
            raise self._error("cannot load it", exc) from None
        inp, out = self._session.get_inputs()[0], self._session.get_outputs()[0]
        self.input = TensorSpec(inp.name, _ort_shape(inp.shape), _ort_dtype(inp.type))
        self.output = TensorSpec(out.name, _ort_shape(out.shape), _ort_dtype(out.type))
        self._check_io()
        self._input_name = inp.name
        self._feed: dict[str, np.ndarray] = {}
        self._result: np.ndarray | None = None

    def _error(self, what: str, exc: BaseException) -> ModelError:
        return ModelError(f"{self.path}: onnxruntime {what} ({first_line(exc)}).")

    def set_batch(self, n: int) -> None:
        pass  # The exported graph has a dynamic batch dimension.

    def feed_raw(self, x: np.ndarray) -> None:
        self._feed = {self._input_name: x}

    def invoke(self) -> None:
        try:
            self._result = self._session.run(None, self._feed)[0]
        except Exception as exc:  # onnxruntime's own exception types, not importable portably
            raise self._error("failed to run it", exc) from None

    def fetch_raw(self) -> np.ndarray:
        assert self._result is not None, "invoke() first"
        return self._result

    def describe(self) -> dict:
        return {**super().describe(), "graph_optimization": self.optimization}


def _ort_shape(shape) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def _ort_dtype(type_name: str) -> str:
    return {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}.get(
        type_name, type_name
    )
