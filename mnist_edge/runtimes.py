"""One small adapter per runtime, all with the same call shape.

Each runner is built from a path and explicit engine settings (threads, delegate on or off), and
owns its model's I/O: it quantizes float inputs and dequantizes outputs with the model's own
scale and zero point. Nothing outside this module touches an Interpreter or an InferenceSession.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.deps import require
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import stdout_to_stderr

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
PREDICT_BATCH = 500
# Enough for the seed CNN's int8 and float32 models in TFLM; bundle measures the real minimum.
TFLM_DEFAULT_ARENA = 256 * 1024

# runtime name -> (file suffix, what computes)
RUNTIMES = {
    "litert": (".tflite", "LiteRT, XNNPACK delegate (its default on CPUs)"),
    "litert-ref": (".tflite", "LiteRT, builtin reference kernels, no delegate"),
    "tflm": (".tflite", "TensorFlow Lite Micro, reference kernels"),
    "onnxruntime": (".onnx", "onnxruntime, CPU execution provider"),
    "keras": (".keras", "Keras 3 on TensorFlow, direct call"),
    "keras-predict": (".keras", "Keras 3 on TensorFlow, model.predict"),
}
DEFAULT_RUNTIME = {".tflite": "litert", ".onnx": "onnxruntime", ".keras": "keras"}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape, dtype and (for integer tensors) quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in ("int8", "uint8")


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float to the tensor's integer type with its scale and zero point (TFLite's rounding)."""
    if not spec.quantized:
        return np.asarray(x, dtype=spec.dtype)
    info = np.iinfo(spec.dtype)
    scaled = np.asarray(x, dtype=np.float32) / np.float32(spec.scale)
    # TFLite rounds half away from zero; numpy's round is half to even.
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + spec.zero_point
    return np.clip(rounded, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Integer tensor back to float with its scale and zero point."""
    if not spec.quantized:
        return np.asarray(q, dtype=np.float32)
    return ((q.astype(np.int32) - spec.zero_point) * np.float32(spec.scale)).astype(np.float32)


def _check_spec(path: Path, spec: TensorSpec, expected: tuple[int, ...], what: str) -> None:
    if tuple(spec.shape[1:]) != expected:
        raise ModelError(
            f"{path}: {what} tensor {spec.name} | Received unexpected shape {spec.shape}. "
            f"Note: expected (N, {', '.join(map(str, expected))})"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


class Runner:
    """The common call shape: set_batch, feed, invoke, fetch; predict does all four in chunks."""

    runtime: str
    max_batch: int | None = None
    input: TensorSpec
    output: TensorSpec

    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        if threads < 1:
            raise MnistEdgeError(f"Invalid threads {threads}: expected a positive integer.")
        self.threads = threads
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file.")

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
        return dequantize(self.fetch_raw(), self.output)

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
            return np.zeros((0, NUM_CLASSES), self.output.dtype)
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


def _litert_spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    quantized = dtype in ("int8", "uint8") and scale != 0.0
    return TensorSpec(
        name=detail["name"],
        shape=tuple(int(d) for d in detail["shape_signature"]),
        dtype=dtype,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else None,
    )


class LiteRTRunner(Runner):
    """The LiteRT interpreter (ai-edge-litert), with or without the XNNPACK delegate."""

    def __init__(self, path: Path, threads: int = 1, xnnpack: bool = True):
        super().__init__(path, threads)
        from ai_edge_litert import interpreter as litert

        self.xnnpack = xnnpack
        self.runtime = "litert" if xnnpack else "litert-ref"
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
            raise ModelError(f"{self.path}: LiteRT cannot load it ({_first_line(exc)}).") from None
        self._in = self._interpreter.get_input_details()[0]
        self._out = self._interpreter.get_output_details()[0]
        self.input = _litert_spec(self._in)
        self.output = _litert_spec(self._out)
        _check_spec(self.path, self.input, IMAGE_SHAPE, "input")
        _check_spec(self.path, self.output, (NUM_CLASSES,), "output")
        self._batch = int(self._in["shape"][0])

    def set_batch(self, n: int) -> None:
        if n != self._batch:
            self._interpreter.resize_tensor_input(self._in["index"], [n, *IMAGE_SHAPE])
            self._interpreter.allocate_tensors()
            self._batch = n

    def feed_raw(self, x: np.ndarray) -> None:
        self._interpreter.set_tensor(self._in["index"], x)

    def invoke(self) -> None:
        self._interpreter.invoke()

    def fetch_raw(self) -> np.ndarray:
        return self._interpreter.get_tensor(self._out["index"])

    def describe(self) -> dict:
        return {**super().describe(), "xnnpack": self.xnnpack}


ORT_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class OrtRunner(Runner):
    """onnxruntime's CPU execution provider, with explicit threads and optimization level."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1, optimization: str = "all"):
        super().__init__(path, threads)
        import onnxruntime as ort

        if optimization not in ORT_OPTIMIZATION_LEVELS:
            raise MnistEdgeError(
                f"Invalid optimization level {optimization!r}: expected one of "
                f"{', '.join(ORT_OPTIMIZATION_LEVELS)}."
            )
        self.optimization = optimization
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
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types.
            raise ModelError(
                f"{self.path}: onnxruntime cannot load it ({_first_line(exc)})."
            ) from None
        inp, out = self._session.get_inputs()[0], self._session.get_outputs()[0]
        self.input = TensorSpec(inp.name, _ort_shape(inp.shape), _ort_dtype(inp.type))
        self.output = TensorSpec(out.name, _ort_shape(out.shape), _ort_dtype(out.type))
        _check_spec(self.path, self.input, IMAGE_SHAPE, "input")
        _check_spec(self.path, self.output, (NUM_CLASSES,), "output")
        self._feed: dict[str, np.ndarray] = {}
        self._result: np.ndarray | None = None

    def set_batch(self, n: int) -> None:
        pass  # The exported graph has a dynamic batch dimension.

    def feed_raw(self, x: np.ndarray) -> None:
        self._feed = {self.input.name: x}

    def invoke(self) -> None:
        self._result = self._session.run(None, self._feed)[0]

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


class TFLMRunner(Runner):
    """TensorFlow Lite Micro's own interpreter (tflite-micro): reference kernels, batch 1."""

    runtime = "tflm"
    max_batch = 1

    def __init__(self, path: Path, arena_size: int = TFLM_DEFAULT_ARENA):
        super().__init__(path, threads=1)
        runtime = require("tflite_micro.python.tflite_micro.runtime")
        self.arena_size = arena_size
        try:
            # TFLM prints from C to stdout while it builds the interpreter.
            with stdout_to_stderr():
                self._interpreter = runtime.Interpreter.from_file(
                    str(self.path), arena_size=arena_size
                )
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.path}: TFLM cannot load it ({_first_line(exc)}).") from None
        self.input = _tflm_spec(self._interpreter.get_input_details(0), "input")
        self.output = _tflm_spec(self._interpreter.get_output_details(0), "output")
        _check_spec(self.path, self.input, IMAGE_SHAPE, "input")
        _check_spec(self.path, self.output, (NUM_CLASSES,), "output")

    def set_batch(self, n: int) -> None:
        if n != 1:
            raise MnistEdgeError(f"TFLM runs one image at a time; asked for batch {n}.")

    def feed_raw(self, x: np.ndarray) -> None:
        self._interpreter.set_input(x, 0)

    def invoke(self) -> None:
        self._interpreter.invoke()

    def fetch_raw(self) -> np.ndarray:
        return np.array(self._interpreter.get_output(0))

    def describe(self) -> dict:
        return {**super().describe(), "arena_size": self.arena_size}


def _tflm_spec(detail: dict, name: str) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    zero_points = params.get("zero_points")
    quantized = dtype in ("int8", "uint8") and scales is not None and len(scales) > 0
    return TensorSpec(
        name=name,
        shape=(-1, *(int(d) for d in detail["shape"][1:])),
        dtype=dtype,
        scale=float(scales[0]) if quantized else None,
        zero_point=int(zero_points[0]) if quantized else None,
    )


class KerasRunner(Runner):
    """The original Keras model, called directly (no fit/predict loop overhead)."""

    def __init__(self, path: Path, threads: int = 1, use_predict: bool = False):
        super().__init__(path, threads)
        from mnist_edge.model import load_keras_model

        tf = require("tensorflow")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already started in this process; its thread pools are fixed now.
        # Record what TensorFlow really uses (0 means one thread per core).
        self.threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
        self._model = load_keras_model(self.path)
        # model.predict is what most Keras code calls; the direct call skips its loop machinery.
        self.use_predict = use_predict
        self.runtime = "keras-predict" if use_predict else "keras"
        self.input = TensorSpec("image", (-1, *IMAGE_SHAPE), "float32")
        self.output = TensorSpec("probabilities", (-1, NUM_CLASSES), "float32")
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None

    @property
    def model(self):
        """The underlying Keras model (for `model.predict` baselines)."""
        return self._model

    def set_batch(self, n: int) -> None:
        pass

    def feed_raw(self, x: np.ndarray) -> None:
        self._x = x

    def invoke(self) -> None:
        if self.use_predict:
            self._y = self._model.predict(self._x, batch_size=len(self._x), verbose=0)
        else:
            self._y = self._model(self._x, training=False)

    def fetch_raw(self) -> np.ndarray:
        return np.asarray(self._y, dtype=np.float32)


def runtimes_for(path: Path) -> tuple[str, ...]:
    """The runtimes that can run a model file, by its suffix."""
    suffix = Path(path).suffix
    return tuple(name for name, (ext, _) in RUNTIMES.items() if ext == suffix)


def select_runtimes(path: Path, requested: list[str] | None) -> list[str]:
    """The requested runtimes that apply to a model file; none requested means its default."""
    available = runtimes_for(path)
    if not requested:
        return [DEFAULT_RUNTIME[Path(path).suffix]]
    if "all" in requested:
        return list(available)
    return [name for name in requested if name in available]


def open_runner(
    path: Path, runtime: str | None = None, threads: int = 1, ort_optimization: str = "all"
) -> Runner:
    """Build the runner for a model file; the runtime defaults to the file type's usual one."""
    path = Path(path)
    runtime = runtime or DEFAULT_RUNTIME.get(path.suffix)
    if runtime is None or runtime not in runtimes_for(path):
        raise MnistEdgeError(
            f"{path}: cannot run a {path.suffix or 'suffix-less'} file with {runtime}; "
            "expected .tflite (litert, litert-ref, tflm), .onnx (onnxruntime) or .keras "
            "(keras, keras-predict)."
        )
    if runtime in ("litert", "litert-ref"):
        return LiteRTRunner(path, threads=threads, xnnpack=runtime == "litert")
    if runtime == "onnxruntime":
        return OrtRunner(path, threads=threads, optimization=ort_optimization)
    if runtime == "tflm":
        return TFLMRunner(path)
    return KerasRunner(path, threads=threads, use_predict=runtime == "keras-predict")


@dataclass(frozen=True)
class LoadedRunner:
    """A runner opened for a model file, with what opening it cost (load + allocate)."""

    path: Path
    runtime: str
    runner: Runner
    init_ms: float


def open_runners(
    paths: list[Path], runtimes: list[str] | None, threads: int = 1, ort_optimization: str = "all"
) -> list[LoadedRunner]:
    """Open a runner per file and runtime before any work, naming every file that won't load.

    A file that cannot be loaded is bad input: the caller stops before measuring or writing.
    """
    loaded, errors = [], []
    for path in paths:
        for runtime in select_runtimes(path, runtimes):
            started = time.perf_counter_ns()
            try:
                runner = open_runner(path, runtime, threads, ort_optimization)
                runner.set_batch(1)
            except ModelError as exc:
                errors.append(str(exc))
                continue
            init_ms = round((time.perf_counter_ns() - started) / 1e6, 2)
            loaded.append(LoadedRunner(Path(path), runtime, runner, init_ms))
    if errors:
        raise ModelError("; ".join(errors))
    return loaded
