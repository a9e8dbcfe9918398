"""Latency and throughput of each export, with the setup written beside every figure."""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mnist_edge.arena import measure_arena
from mnist_edge.artifacts import (
    BENCH_CSV,
    BENCH_JSON,
    BENCH_PNG,
    MODEL_FILE,
    int8_model,
    on_target,
    record_payload,
    resolve_exports,
)
from mnist_edge.data import MnistTest, ensure_test_split
from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.files import json_bytes, write_files_atomic
from mnist_edge.machine import detect_machine, library_versions
from mnist_edge.model_info import ModelCost, model_cost
from mnist_edge.options import (
    BENCH_TARGETS,
    DEFAULT_BATCH_SIZES,
    DEFAULT_RUNS,
    DEFAULT_WARMUP,
    NPU_BASIS,
    NPU_CONFIG_FILE,
    NPU_HOST_CPU,
    NPU_TARGETS,
)
from mnist_edge.records import BenchReport, BenchRow, NpuEstimate, OnTarget, Roofline
from mnist_edge.roofline import measure_roofline
from mnist_edge.runtimes import open_runners
from mnist_edge.tensors import IMAGE_SHAPE

log = logging.getLogger(__name__)

# model.predict costs milliseconds per call: its runs are capped so a bench stays minutes long.
MAX_RUNS = {"keras-predict": 100}
SAMPLE_IMAGES = 100  # distinct test images cycled through the timed runs
DISTINCT_BATCHES = 10  # ready-made inputs cycled through the timed runs


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


def time_runner(
    runner, images: np.ndarray, runs: int, warmup: int, batch: int, raw: bool = False
) -> dict:
    """Latency of one call on `batch` images, end to end and invoke only; throughput from p50.
    `raw`: `images` are the model's own inputs (inputs.ModelInputs), fed and fetched as they
    are (feed_raw, fetch_raw); else MNIST's uint8 pixels, quantized by the runner."""
    runner.set_batch(batch)
    feed, fetch = (runner.feed_raw, runner.fetch_raw) if raw else (runner.feed_pixels, runner.fetch)
    if not raw:
        # uint8 in the model's N×28×28×1 layout, as a camera's frame buffer would be laid out.
        images = images.reshape(-1, *IMAGE_SHAPE)
    # Distinct ready-made batches, cycled: the same input every time would flatter caches.
    blocks = [
        np.resize(np.roll(images, -k * batch, axis=0), (batch, *images.shape[1:]))
        for k in range(DISTINCT_BATCHES)
    ]
    for i in range(warmup):  # untimed: first calls allocate, pack weights, fault pages in
        feed(blocks[i % len(blocks)])
        runner.invoke()
        fetch()
    stamps = np.empty((runs, 4), dtype=np.int64)  # before feed, invoke, fetch; after fetch
    clock = time.perf_counter_ns
    for i in range(runs):
        block = blocks[i % len(blocks)]  # picked outside the clock: the harness's, not the call's
        t0 = clock()
        feed(block)
        t1 = clock()
        runner.invoke()
        t2 = clock()
        fetch()
        stamps[i] = (t0, t1, t2, clock())
    feed, invoke, fetch = np.diff(stamps, axis=1).T
    stats = _percentiles(stamps[:, 3] - stamps[:, 0])
    stats["invoke_p50_us"] = round(float(np.percentile(invoke, 50)) / 1000, 2)
    stats["invoke_mean_us"] = round(float(invoke.mean()) / 1000, 2)
    # What a call adds around invoke: the input's quantization and copy, the output's read.
    stats["overhead_us"] = round(stats["p50_us"] - stats["invoke_p50_us"], 2)
    stats["feed_p50_us"] = round(float(np.percentile(feed, 50)) / 1000, 2)
    stats["fetch_p50_us"] = round(float(np.percentile(fetch, 50)) / 1000, 2)
    stats["throughput_ips"] = round(batch * 1e6 / stats["p50_us"], 1)
    return stats


def mcu_footprint(path: Path) -> dict[str, int]:
    """What a microcontroller must hold for a model: its tensor arena (measured) and its bytes."""
    data = Path(path).read_bytes()
    return {"arena_bytes": measure_arena(data, str(path)).bytes, "flash_bytes": len(data)}


def _samples(exports: list[Path], data, inputs: str | None, seed: int) -> dict[Path, np.ndarray]:
    """What each export is timed on: MNIST's first SAMPLE_IMAGES test images as uint8 pixels
    (as a camera or a file gives them), or with `inputs` the model's own inputs."""
    if inputs is None:
        images = ensure_test_split(data).x_test[:SAMPLE_IMAGES]
        return dict.fromkeys(exports, images)
    from mnist_edge.inputs import inputs_for

    others = [path.name for path in exports if path.suffix != ".tflite"]
    if others:
        raise MnistEdgeError(
            f"--inputs times .tflite models on their own inputs; got {', '.join(others)}."
        )
    return {
        path: inputs_for(path, inputs, count=SAMPLE_IMAGES, seed=seed, data=data).values
        for path in exports
    }


def _described(inputs: str | None, seed: int) -> str:
    if inputs is None:
        return f"MNIST test images 0..{SAMPLE_IMAGES - 1}, uint8 pixels"
    return f"--inputs {inputs} (seed {seed}), fed raw"


def _positive_ints(values, name: str) -> list[int]:
    items = [values] if isinstance(values, int) else list(values)
    if not items or any(v < 1 for v in items):
        raise MnistEdgeError(f"Invalid {name} {values}: expected positive integers.")
    return sorted(set(items), key=items.index)


def _keras_models(artifacts: Path, runtimes: list[str] | None) -> list[Path]:
    wanted = runtimes and ({"keras", "keras-predict", "all"} & set(runtimes))
    source = artifacts / MODEL_FILE
    return [source] if wanted and source.is_file() else []


def bench(
    artifacts: Path,
    data: MnistTest | Path | None,
    *,
    models: list[Path] | None = None,
    runtimes: list[str] | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | list[int] | None = None,
    batch_sizes: int | list[int] | None = None,
    target: str | None = None,
    xnnpack: bool = True,
    ort_optimization: str = "all",
    roofline: bool = True,
    inputs: str | None = None,
    seed: int = 0,
) -> BenchReport:
    """Benchmark every export (or `models`) on its runtimes; write bench.json, .csv and .png.

    An Ethos-U `target` (options.NPU_TARGETS) times nothing: see bench_npu. `inputs`
    (inputs.model_inputs: mnist, random[:N], FILE.npy) times any .tflite model on its own
    inputs, fed raw, instead of MNIST's pixels.
    """
    if target is not None:
        if target not in BENCH_TARGETS:
            raise MnistEdgeError(
                f"Invalid target {target!r}: expected one of {', '.join(BENCH_TARGETS)}."
            )
        if runtimes:
            raise MnistEdgeError("Pass --target or --runtime, not both: a target sets runtimes.")
        if target in NPU_TARGETS:
            return bench_npu(artifacts, target, models=models)
        target_runtimes, target_threads = BENCH_TARGETS[target]
        runtimes = list(target_runtimes)
        if threads is None:  # an explicit thread count still wins over the preset
            threads = target_threads or os.cpu_count() or 1
    thread_counts = _positive_ints(1 if threads is None else threads, "threads")
    batches = _positive_ints(
        DEFAULT_BATCH_SIZES if batch_sizes is None else batch_sizes, "batch size"
    )
    if runs < 1:
        raise MnistEdgeError(f"Invalid runs {runs}: expected a positive integer.")
    if warmup < 0:
        raise MnistEdgeError(f"Invalid warmup {warmup}: expected 0 or more.")
    if not xnnpack and runtimes:
        # Without the delegate LiteRT runs its builtin kernels: that is the litert-ref runtime.
        runtimes = ["litert-ref" if r == "litert" else r for r in runtimes]
    artifacts = Path(artifacts)
    exports = resolve_exports(artifacts, models, also=_keras_models(artifacts, runtimes))
    selected = runtimes or (None if xnnpack else ["litert-ref", "onnxruntime", "keras"])
    # Every file is opened before any timing: one that will not load stops the run up front.
    opened = {
        n: open_runners(exports, selected, n, ort_optimization, any_shape=inputs is not None)
        for n in thread_counts
    }
    loaded = {n: runners for n, (runners, _) in opened.items()}
    unsupported = opened[thread_counts[0]][1]
    samples = _samples(exports, data, inputs, seed)
    rooflines = {n: measure_roofline(n) for n in thread_counts} if roofline else {}
    costs: dict[Path, ModelCost] = {}
    rows: list[BenchRow] = []
    for n in thread_counts:
        for item in loaded[n]:
            cost = costs.setdefault(
                item.path, model_cost(item.path, getattr(item.runner, "model", None))
            )
            for batch in batches:
                batch = min(batch, item.runner.max_batch or batch)
                if any(
                    (r.artifact, r.runtime, r.threads, r.batch_size)
                    == (item.path.name, item.runtime, item.runner.threads, batch)
                    for r in rows
                ):
                    continue  # TFLM runs one image at a time: batch 64 is batch 1 again
                row_runs = min(runs, MAX_RUNS.get(item.runtime, runs))
                log.info(
                    "Benchmarking %s on %s (%d threads, batch %d, %d runs)",
                    item.path.name,
                    item.runtime,
                    item.runner.threads,
                    batch,
                    row_runs,
                )
                sample = samples[item.path]
                stats = time_runner(
                    item.runner, sample, row_runs, warmup, batch, inputs is not None
                )
                rows.append(_row(item, cost, rooflines.get(n), stats, batch, row_runs, warmup))
    rows = _with_keras_speedups(rows)
    chart = _chart(rows)
    report = BenchReport(
        firmware=_firmware_rows(artifacts, exports) if target == "mcu" else [],
        unsupported=unsupported,
        machine=detect_machine(),
        versions=library_versions(
            "ai-edge-litert", "onnxruntime", "tflite-micro", "tensorflow", "keras", "numpy"
        ),
        peak_rss_mb=peak_rss_mb(),
        results=rows,
        target=target,
        settings={
            "runs": runs,
            "warmup": warmup,
            "threads": thread_counts,
            "batch_sizes": batches,
            "xnnpack": xnnpack,
            "ort_optimization": ort_optimization,
            "clock": "time.perf_counter_ns",
            "sample_images": SAMPLE_IMAGES,
            "inputs": _described(inputs, seed),
            "max_runs": MAX_RUNS,
        },
        rooflines=list(rooflines.values()),
        files=[BENCH_JSON, BENCH_CSV] + ([BENCH_PNG] if chart else []),
    )
    write_bench_files(artifacts, report, chart)
    return report


def bench_npu(artifacts: Path, accelerator: str, models: list[Path] | None = None) -> BenchReport:
    """vela's estimates for each model (default: the int8 export for a device) on one Ethos-U
    configuration, beside what the Cortex-M55 firmware measured on the same bytes; writes
    bench.json and bench.csv. Nothing is timed: no NPU or emulator of one is reachable."""
    from mnist_edge.npu import estimate_npu

    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        raise MnistEdgeError(f"{artifacts}: no such artifacts folder.")
    paths = [Path(m) for m in models] if models else [int8_model(artifacts)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MnistEdgeError(
            f"{', '.join(missing)}: no such model; run `mnist-edge export --int8` (an Ethos-U "
            "runs int8 .tflite models) or pass --model."
        )
    estimates: list[NpuEstimate] = []
    for path in paths:
        log.info("Compiling %s with vela for %s", path.name, accelerator)
        estimates.append(estimate_npu(path, accelerator))
    system_config, memory_mode = NPU_TARGETS[accelerator]
    report = BenchReport(
        machine=detect_machine(),  # the host vela ran on, not the NPU
        versions=library_versions("ethos-u-vela", "numpy"),
        peak_rss_mb=peak_rss_mb(),
        results=[],
        target=accelerator,
        settings={
            "basis": NPU_BASIS,
            "accelerator": accelerator,
            "config_file": NPU_CONFIG_FILE,
            "system_config": system_config,
            "memory_mode": memory_mode,
        },
        files=[BENCH_JSON, BENCH_CSV],
        firmware=[f for f in _firmware_rows(artifacts, paths) if f.cpu == NPU_HOST_CPU],
        npu=estimates,
    )
    write_bench_files(artifacts, report, None)
    return report


def _firmware_rows(artifacts: Path, exports: list[Path]) -> list[OnTarget]:
    """The firmware run's figures (ARTIFACTS/firmware) for the .tflite models benchmarked."""
    from mnist_edge.files import sha256_file

    return [
        replace(figures, artifact=path.name)
        for path in exports
        if path.suffix == ".tflite"
        for figures in on_target(artifacts, sha256_file(path))
    ]


def _row(item, cost: ModelCost, roof: Roofline | None, stats, batch, runs, warmup) -> BenchRow:
    gmacs = None
    if cost.macs:
        gmacs = round(cost.macs * batch / (stats["invoke_p50_us"] / 1e6) / 1e9, 3)
    roofline_gmacs = None
    if roof is not None:
        roofline_gmacs = roof.int8_gmacs if cost.compute == "int8" else roof.float32_gmacs
    return BenchRow(
        artifact=item.path.name,
        runtime=item.runtime,
        kernels=item.runner.kernels,
        threads=item.runner.threads,
        batch_size=batch,
        runs=runs,
        warmup=warmup,
        init_ms=item.init_ms,
        file_bytes=item.path.stat().st_size,
        peak_rss_mb=peak_rss_mb(),
        macs=cost.macs,
        params=cost.params,
        gmacs=gmacs,
        roofline_gmacs=roofline_gmacs,
        roofline_fraction=round(gmacs / roofline_gmacs, 4) if gmacs and roofline_gmacs else None,
        **stats,
        **(mcu_footprint(item.path) if item.runtime == "tflm" else {}),
    )


def _with_keras_speedups(rows: list[BenchRow]) -> list[BenchRow]:
    """Each row's speed-up over the Keras direct call at the same batch, timed in this run.

    Same threads where Keras ran with them; TensorFlow fixes its thread pools once started, so
    in one process Keras may have run with other threads (its row says which).
    """
    keras = {(r.threads, r.batch_size): r.p50_us for r in rows if r.runtime == "keras"}
    by_batch = {batch: p50 for (_, batch), p50 in sorted(keras.items(), reverse=True)}

    def baseline(r: BenchRow) -> float | None:
        return keras.get((r.threads, r.batch_size), by_batch.get(r.batch_size))

    return [
        replace(r, speedup_vs_keras=round(baseline(r) / r.p50_us, 2)) if baseline(r) else r
        for r in rows
    ]


def _chart(rows: list[BenchRow]) -> bytes | None:
    """The bench chart as PNG, or None where matplotlib is not installed (a device install)."""
    from mnist_edge import charts

    try:
        return charts.bench_chart(rows)
    except MissingDependencyError as exc:
        log.info("No bench chart: %s", exc)
        return None


def write_bench_files(artifacts: Path, report: BenchReport, chart: bytes | None) -> None:
    """bench.json, bench.csv and the chart, in one atomic step."""
    import csv
    import io

    table = io.StringIO()
    # One CSV row per table row: the timings, or (bench --target ethos-u*) vela's estimates.
    rows = [
        {k: ";".join(v) if isinstance(v, list) else v for k, v in asdict(r).items()}
        for r in report.results or report.npu
    ]
    writer = csv.DictWriter(table, fieldnames=list(rows[0]) if rows else ["artifact"])
    writer.writeheader()
    writer.writerows(rows)
    contents = {artifacts / BENCH_CSV: table.getvalue().encode()}
    if chart is not None:
        contents[artifacts / BENCH_PNG] = chart
    contents[artifacts / BENCH_JSON] = json_bytes(record_payload(report))
    write_files_atomic(contents)
