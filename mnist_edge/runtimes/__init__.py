"""Every engine, one small adapter each, all with the same call shape.

Each runner is built from a path and explicit engine settings (threads, delegate on or off), and
owns its model's I/O: it quantizes float inputs and dequantizes outputs with the model's own
scale and zero point. Nothing outside this package creates an Interpreter, an InferenceSession
or a TFLM interpreter: LiteRT (`litert_runner`), onnxruntime (`ort_runner`, also the roofline's
sessions), TFLM (`tflm_runner`, also the arena probes), the C engine (`codegen_runner`: the
model compiled to C by mnist_edge.codegen, built for the host) and Keras (`keras_runner`). The
old tflite-runtime 2.14, in its own virtual environment, is a platform proof
(`proofs.legacy_runner`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.options import DEFAULT_RUNTIME, ORT_OPTIMIZATION_LEVELS, RUNTIMES
from mnist_edge.runtimes.base import PREDICT_BATCH, Runner

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RUNTIME",
    "ORT_OPTIMIZATION_LEVELS",
    "PREDICT_BATCH",
    "RUNTIMES",
    "LoadedRunner",
    "Runner",
    "open_runner",
    "open_runners",
    "runtimes_for",
    "select_runtimes",
    "unsupported_reason",
]


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
    path: Path,
    runtime: str | None = None,
    threads: int = 1,
    ort_optimization: str = "all",
    any_shape: bool = False,
) -> Runner:
    """Build the runner for a model file; the runtime defaults to the file type's usual one.
    `any_shape`: a .tflite of any input and output shape, fed raw (MNIST's is checked else)."""
    path = Path(path)
    runtime = runtime or DEFAULT_RUNTIME.get(path.suffix)
    if runtime is None or runtime not in runtimes_for(path):
        raise MnistEdgeError(
            f"{path}: cannot run a {path.suffix or 'suffix-less'} file with {runtime}; "
            "expected .tflite (litert, litert-ref, tflm), .onnx (onnxruntime) or .keras "
            "(keras, keras-predict)."
        )
    if runtime in ("litert", "litert-ref"):
        from mnist_edge.runtimes.litert_runner import LiteRTRunner

        return LiteRTRunner(path, threads=threads, xnnpack=runtime == "litert", any_shape=any_shape)
    if runtime == "onnxruntime":
        from mnist_edge.runtimes.ort_runner import OrtRunner

        return OrtRunner(path, threads=threads, optimization=ort_optimization)
    if runtime == "tflm":
        from mnist_edge.runtimes.tflm_runner import TFLMRunner

        return TFLMRunner(path, any_shape=any_shape)
    if runtime == "codegen":
        from mnist_edge.runtimes.codegen_runner import CodegenRunner

        # One thread, as on a device (one static arena).
        return CodegenRunner(path, any_shape=any_shape)
    from mnist_edge.runtimes.keras_runner import KerasRunner

    return KerasRunner(path, threads=threads, use_predict=runtime == "keras-predict")


@dataclass(frozen=True)
class LoadedRunner:
    """A runner opened for a model file, with what opening it cost (load + allocate)."""

    path: Path
    runtime: str
    runner: Runner
    init_ms: float


def unsupported_reason(path: Path, runtime: str) -> str | None:
    """Why `runtime` cannot run this model file at all (not a fault of the file), or None."""
    if runtime in ("tflm", "codegen") and Path(path).suffix == ".tflite":
        from mnist_edge.model_info import model_kind, read_tflite, tflm_refusal

        _, info = read_tflite(path)
        kind = model_kind(info)
        if runtime == "tflm":
            return tflm_refusal(info, kind)
        from mnist_edge.codegen.graph import refuse_unsupported

        try:
            refuse_unsupported(info, Path(path).name)
        except ModelError as exc:
            # The refusal's reason, without the file name it starts with (the row names it).
            return str(exc).removeprefix(f"{Path(path).name}: ").rstrip(".")
        return None
    return None


def open_runners(
    paths: list[Path],
    runtimes: list[str] | None,
    threads: int = 1,
    ort_optimization: str = "all",
    any_shape: bool = False,
) -> tuple[list[LoadedRunner], list]:
    """Open a runner per file and runtime before any work, naming every file that won't load.

    A file that cannot be loaded is bad input: the caller stops before measuring or writing.
    With `all`, a pair that cannot run (TFLM and a float16 model) or whose engine is not
    installed (the [micro] extra) is returned as `Unsupported` instead, missing extras named
    once on the log; a runtime asked for by name stays an error.
    """
    from mnist_edge.records import Unsupported

    everything = bool(runtimes) and "all" in runtimes
    loaded, errors, unsupported, missing = [], [], [], {}
    for path in paths:
        for runtime in select_runtimes(path, runtimes):
            started = time.perf_counter_ns()
            try:
                reason = unsupported_reason(path, runtime)
                if reason is not None:
                    if not everything:
                        raise ModelError(f"{path}: {runtime} cannot run it: {reason}.")
                    unsupported.append(Unsupported(Path(path).name, runtime, reason))
                    continue
                runner = open_runner(path, runtime, threads, ort_optimization, any_shape)
                runner.set_batch(1)
            except MissingDependencyError as exc:
                if not everything:
                    raise
                missing.setdefault(runtime, str(exc))
                unsupported.append(Unsupported(Path(path).name, runtime, "not installed"))
                continue
            except ModelError as exc:
                errors.append(str(exc))
                continue
            init_ms = round((time.perf_counter_ns() - started) / 1e6, 2)
            loaded.append(LoadedRunner(Path(path), runtime, runner, init_ms))
    if errors:
        raise ModelError("; ".join(errors))
    for runtime, why in missing.items():
        log.warning("Skipping %s: %s", runtime, why)
    return loaded, unsupported


# The runner classes, imported on first use: `from mnist_edge.runtimes import LiteRTRunner`
# works without every engine's module loading with the package.
_RUNNERS = {
    "LiteRTRunner": "litert_runner",
    "OrtRunner": "ort_runner",
    "TFLMRunner": "tflm_runner",
    "CodegenRunner": "codegen_runner",
    "KerasRunner": "keras_runner",
}


def __getattr__(name: str):
    if name in _RUNNERS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_RUNNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
