"""Latency and throughput of each export, with the setup written beside every figure."""

from __future__ import annotations

import logging
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_edge.data import Mnist, ensure_mnist, to_float
from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import write_json
from mnist_edge.model import library_versions
from mnist_edge.runtimes import open_runners
from mnist_edge.verify import find_exports

log = logging.getLogger(__name__)

BENCH_JSON = "bench.json"
DEFAULT_RUNS = 1000
DEFAULT_WARMUP = 50
DEFAULT_BATCH = 64
SAMPLE_IMAGES = 100  # distinct test images cycled through the timed runs
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
# --target presets: the runtimes such a device runs, and its threads (None: every core).
BENCH_TARGETS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "cpu": (("litert", "onnxruntime"), None),  # a desktop or server: XNNPACK, all cores
    "embedded": (("litert-ref", "onnxruntime"), 1),  # a small Linux board without XNNPACK
    "mcu": (("tflm",), 1),  # a microcontroller: TFLM, one image at a time
}


@dataclass(frozen=True)
class Machine:
    """The CPU the figures came from: detected, never assumed."""

    cpu: str
    arch: str
    cores: int
    features: list[str]
    os: str


@dataclass(frozen=True)
class BenchRow:
    """One export on one runtime: latency percentiles (µs), throughput, set-up cost."""

    artifact: str
    runtime: str
    kernels: str
    threads: int
    batch_size: int
    runs: int
    warmup: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    std_us: float
    min_us: float
    max_us: float
    invoke_p50_us: float
    invoke_mean_us: float
    throughput_ips: float
    init_ms: float
    file_bytes: int
    arena_bytes: int | None = None  # TFLM rows: the smallest working tensor arena, measured
    flash_bytes: int | None = None  # TFLM rows: the model's bytes, what a firmware image holds


@dataclass(frozen=True)
class BenchReport:
    """All rows, and the machine and library versions they were measured with."""

    machine: Machine
    versions: dict[str, str]
    peak_rss_mb: float
    results: list[BenchRow]
    target: str | None = None


def detect_machine() -> Machine:
    """CPU model and the SIMD/matrix features that decide which kernels run."""
    cpu, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu in ("unknown", "", platform.machine()):
                    cpu = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return Machine(
        cpu=cpu,
        arch=platform.machine(),
        cores=os.cpu_count() or 1,
        features=[f for f in CPU_FEATURES if f in flags],
        os=f"{platform.system()} {platform.release()}",
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _percentiles(samples_ns: np.ndarray) -> dict[str, float]:
    us = samples_ns / 1000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {
        "p50_us": round(float(p50), 2),
        "p90_us": round(float(p90), 2),
        "p99_us": round(float(p99), 2),
        "mean_us": round(float(us.mean()), 2),
        "std_us": round(float(us.std()), 2),
        "min_us": round(float(us.min()), 2),
        "max_us": round(float(us.max()), 2),
    }


def time_runner(runner, images: np.ndarray, runs: int, warmup: int, batch_size: int) -> dict:
    """Single-image latency (end to end and invoke only), then throughput at `batch_size`."""
    runner.set_batch(1)
    singles = images[:, np.newaxis]  # N×1×28×28×1: one ready batch per image
    for i in range(warmup):  # untimed: first calls allocate, pack weights, fault pages in
        runner.feed(singles[i % len(singles)])
        runner.invoke()
        runner.fetch()
    total = np.empty(runs, dtype=np.int64)
    invoke = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        t0 = clock()
        runner.feed(singles[i % len(singles)])
        t1 = clock()
        runner.invoke()
        t2 = clock()
        runner.fetch()
        t3 = clock()
        total[i] = t3 - t0
        invoke[i] = t2 - t1
    stats = _percentiles(total)
    stats["invoke_p50_us"] = round(float(np.percentile(invoke, 50)) / 1000, 2)
    stats["invoke_mean_us"] = round(float(invoke.mean()) / 1000, 2)

    batch = min(batch_size, runner.max_batch or batch_size)
    if batch == 1:
        stats["throughput_ips"] = round(1e6 / stats["p50_us"], 1)
    else:
        runner.set_batch(batch)
        block = np.resize(images, (batch, *images.shape[1:]))
        batch_runs = max(5, min(200, runs // 10))
        for _ in range(max(2, warmup // 10)):
            runner.feed(block)
            runner.invoke()
            runner.fetch()
        times = np.empty(batch_runs, dtype=np.int64)
        for i in range(batch_runs):
            t0 = clock()
            runner.feed(block)
            runner.invoke()
            runner.fetch()
            times[i] = clock() - t0
        stats["throughput_ips"] = round(batch / (float(np.median(times)) / 1e9), 1)
    stats["batch_size"] = batch
    return stats


def mcu_footprint(path: Path) -> dict[str, int]:
    """What a microcontroller must hold for a model: its tensor arena (measured) and its bytes."""
    from mnist_edge.bundle import measure_arena

    data = Path(path).read_bytes()
    return {"arena_bytes": measure_arena(data, str(path)).bytes, "flash_bytes": len(data)}


def bench(
    artifacts: Path,
    data: Mnist | Path | None,
    *,
    models: list[Path] | None = None,
    runtimes: list[str] | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    target: str | None = None,
) -> BenchReport:
    """Benchmark every export (or `models`) on its runtimes, or a target's; write bench.json."""
    if target is not None:
        if target not in BENCH_TARGETS:
            raise MnistEdgeError(
                f"Invalid target {target!r}: expected one of {', '.join(BENCH_TARGETS)}."
            )
        if runtimes:
            raise MnistEdgeError("Pass --target or --runtime, not both: a target sets runtimes.")
        target_runtimes, target_threads = BENCH_TARGETS[target]
        runtimes = list(target_runtimes)
        if threads is None:  # an explicit thread count still wins over the preset
            threads = target_threads or os.cpu_count() or 1
    threads = 1 if threads is None else threads
    for name, value in (("runs", runs), ("threads", threads), ("batch size", batch_size)):
        if value < 1:
            raise MnistEdgeError(f"Invalid {name} {value}: expected a positive integer.")
    if warmup < 0:
        raise MnistEdgeError(f"Invalid warmup {warmup}: expected 0 or more.")
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        raise MnistEdgeError(f"{artifacts}: no such artifacts folder.")
    exports = list(models) if models else find_exports(artifacts)
    if not exports:
        raise MnistEdgeError(f"{artifacts}: no .tflite or .onnx exports; run `mnist-edge export`.")
    loaded = open_runners(exports, runtimes, threads)
    images = to_float(ensure_mnist(data).x_test[:SAMPLE_IMAGES])
    rows = []
    for item in loaded:
        log.info(
            "Benchmarking %s on %s (%d runs, %d threads)",
            item.path.name,
            item.runtime,
            runs,
            item.runner.threads,
        )
        rows.append(
            BenchRow(
                artifact=item.path.name,
                runtime=item.runtime,
                kernels=item.runner.kernels,
                threads=item.runner.threads,
                runs=runs,
                warmup=warmup,
                init_ms=item.init_ms,
                file_bytes=item.path.stat().st_size,
                **time_runner(item.runner, images, runs, warmup, batch_size),
                **(mcu_footprint(item.path) if item.runtime == "tflm" else {}),
            )
        )
    report = BenchReport(
        machine=detect_machine(),
        versions=library_versions("ai-edge-litert", "onnxruntime", "tflite-micro", "numpy"),
        peak_rss_mb=peak_rss_mb(),
        results=rows,
        target=target,
    )
    write_json(artifacts / BENCH_JSON, asdict(report))
    return report
