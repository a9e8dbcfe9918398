"""Latency and throughput of each export, with the setup written beside every figure."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.data import Mnist, ensure_mnist, to_float
from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.model import library_versions
from mnist_edge.runtimes import open_runners
from mnist_edge.verify import resolve_exports

log = logging.getLogger(__name__)

BENCH_JSON = "bench.json"
BENCH_CSV = "bench.csv"
BENCH_PNG = "bench.png"
DEFAULT_RUNS = 1000
DEFAULT_WARMUP = 50
DEFAULT_BATCH_SIZES = (1, 64)
# model.predict costs milliseconds per call: its runs are capped so a bench stays minutes long.
MAX_RUNS = {"keras-predict": 100}
SAMPLE_IMAGES = 100  # distinct test images cycled through the timed runs
DISTINCT_BATCHES = 10  # ready-made inputs cycled through the timed runs
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
class ModelCost:
    """What one image costs a model, counted from the model file itself."""

    macs: int | None  # multiply-accumulates of the convolutions and dense layers, batch 1
    params: int | None
    compute: str  # "int8" or "float32": which roofline applies


@dataclass(frozen=True)
class Roofline:
    """The best MAC rate this CPU reaches on a large matrix multiply, same run, same threads."""

    threads: int
    float32_gmacs: float | None  # onnxruntime MatMul, float32
    int8_gmacs: float | None  # onnxruntime MatMulInteger, uint8 × int8
    size: int
    note: str


@dataclass(frozen=True)
class BenchRow:
    """One export on one runtime at one thread count and batch size.

    Latency is of one call on a batch (batch 1: a single image): end to end (quantize, set the
    input, invoke, read and dequantize the output) and invoke alone.
    """

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
    peak_rss_mb: float
    macs: int | None = None
    params: int | None = None
    gmacs: float | None = None  # achieved: MACs per image × images per second (invoke p50)
    roofline_gmacs: float | None = None
    roofline_fraction: float | None = None
    speedup_vs_keras: float | None = None  # Keras direct call p50 / this p50, same threads/batch
    arena_bytes: int | None = None  # TFLM rows: the smallest working tensor arena, measured
    flash_bytes: int | None = None  # TFLM rows: the model's bytes, what a firmware image holds


@dataclass(frozen=True)
class BenchReport:
    """All rows, and the machine, versions and settings they were measured with."""

    machine: Machine
    versions: dict[str, str]
    peak_rss_mb: float
    results: list[BenchRow]
    target: str | None = None
    settings: dict = field(default_factory=dict)
    rooflines: list[Roofline] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def detect_machine() -> Machine:
    """CPU model and the SIMD/matrix features that decide which kernels run."""
    cpu, flags = "", set()
    # Linux names the model and its features per core; the first core's lines suffice.
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not cpu:
                cpu = value
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return Machine(
        cpu=cpu or platform.processor() or platform.machine() or "unknown",
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


def time_runner(runner, images: np.ndarray, runs: int, warmup: int, batch: int) -> dict:
    """Latency of one call on `batch` images, end to end and invoke only; throughput from p50."""
    runner.set_batch(batch)
    # Distinct ready-made batches, cycled: the same input every time would flatter caches.
    blocks = [
        np.resize(np.roll(images, -k * batch, axis=0), (batch, *images.shape[1:]))
        for k in range(DISTINCT_BATCHES)
    ]
    for i in range(warmup):  # untimed: first calls allocate, pack weights, fault pages in
        runner.feed(blocks[i % len(blocks)])
        runner.invoke()
        runner.fetch()
    total = np.empty(runs, dtype=np.int64)
    invoke = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        t0 = clock()
        runner.feed(blocks[i % len(blocks)])
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
    stats["throughput_ips"] = round(batch * 1e6 / stats["p50_us"], 1)
    return stats


def mcu_footprint(path: Path) -> dict[str, int]:
    """What a microcontroller must hold for a model: its tensor arena (measured) and its bytes."""
    from mnist_edge.bundle import measure_arena

    data = Path(path).read_bytes()
    return {"arena_bytes": measure_arena(data, str(path)).bytes, "flash_bytes": len(data)}


def _onnx_cost(path: Path) -> ModelCost:
    """MACs and parameters of an ONNX graph, by shape inference at batch 1 (needs onnx)."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        # No graph reader on a device: op types are plain strings in the protobuf, so a QDQ
        # model still shows itself; its MACs stay unknown.
        quantized = b"DequantizeLinear" in path.read_bytes()
        return ModelCost(None, None, "int8" if quantized else "float32")
    model = onnx.load(str(path))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        dim.dim_value = 1  # batch 1: the dynamic batch would leave every shape symbolic
    graph = shape_inference.infer_shapes(model).graph
    # A dimension left symbolic after fixing the input's batch at 1 is that batch: count it 1.
    shapes = {
        v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
        for v in [*graph.value_info, *graph.output, *graph.input]
    }
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # In a QDQ graph a weight reaches Conv/MatMul through DequantizeLinear: follow it back.
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    macs, params = 0, 0
    matmul_outputs = {n.output[0] for n in graph.node if n.op_type == "MatMul"}
    for node in graph.node:
        if node.op_type == "Add" and matmul_outputs & set(node.input):
            # tf2onnx writes a dense layer as MatMul, then Add of the bias.
            bias = [weights.get(dequantized.get(i, i)) for i in node.input]
            params += sum(b.size for b in bias if b is not None)
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        weight = weights.get(dequantized.get(node.input[1], node.input[1]))
        out = shapes.get(node.output[0])
        if weight is None or not out:
            continue
        params += weight.size
        if len(node.input) > 2:
            bias = weights.get(dequantized.get(node.input[2], node.input[2]))
            params += 0 if bias is None else bias.size
        if node.op_type == "Conv":  # weight O×I×H×W: every output sums I·H·W products
            macs += int(np.prod(out)) * int(np.prod(weight.shape[1:]))
        else:  # MatMul/Gemm: every output sums K products
            macs += int(np.prod(out)) * int(weight.shape[0])
    quantized = any(n.op_type in ("QuantizeLinear", "MatMulInteger") for n in graph.node)
    return ModelCost(macs, params, "int8" if quantized else "float32")


def _keras_cost(runner) -> ModelCost:
    """MACs from the Keras layers' own shapes; the parameter count Keras reports."""
    macs = 0
    for layer in runner.model.layers:
        out = layer.output.shape
        if layer.__class__.__name__ == "Conv2D":
            kh, kw = layer.kernel_size
            macs += out[1] * out[2] * out[3] * kh * kw * layer.input.shape[-1]
        elif layer.__class__.__name__ == "Dense":
            macs += layer.units * layer.input.shape[-1]
    return ModelCost(int(macs), int(runner.model.count_params()), "float32")


def model_cost(path: Path, runner) -> ModelCost:
    """What one image costs the model in `path`, read from the model itself."""
    path = Path(path)
    if path.suffix == ".tflite":
        from mnist_edge.bundle import count_macs, count_params, model_kind, read_model

        info = read_model(path.read_bytes(), str(path))
        kind = model_kind(info)
        compute = "int8" if kind in ("int8", "uint8", "dynamic-range") else "float32"
        return ModelCost(count_macs(info), count_params(info), compute)
    if path.suffix == ".onnx":
        return _onnx_cost(path)
    return _keras_cost(runner)


ROOFLINE_SIZE = 1024  # 1024³ MACs per call: large enough to reach the kernels' peak
ONNX_FLOAT, ONNX_UINT8, ONNX_INT8, ONNX_INT32 = 1, 2, 3, 6  # TensorProto.DataType


def _proto_field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                return bytes(out)

    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def matmul_model(op: str, a_type: int, b_type: int, y_type: int, size: int) -> bytes:
    """A one-node ONNX model, A[size×size] op B[size×size] -> Y, written as protobuf directly.

    Written by hand (a few fields of onnx.proto) so that the roofline needs no onnx package and
    runs on a device install too.
    """
    f = _proto_field

    def value_info(name: str, elem_type: int) -> bytes:
        dims = b"".join(f(1, f(1, size)) for _ in range(2))  # shape.dim[].dim_value
        return f(1, name.encode()) + f(2, f(1, f(1, elem_type) + f(2, dims)))

    node = f(1, b"A") + f(1, b"B") + f(2, b"Y") + f(4, op.encode())
    graph = (
        f(1, node)
        + f(2, b"roofline")
        + f(11, value_info("A", a_type))
        + f(11, value_info("B", b_type))
        + f(12, value_info("Y", y_type))
    )
    return f(1, 8) + f(7, graph) + f(8, f(1, b"") + f(2, 17))  # IR 8, opset 17


def measure_roofline(threads: int, size: int = ROOFLINE_SIZE) -> Roofline:
    """The MAC rate of a large float32 and int8 matrix multiply in onnxruntime, best of 10."""
    import onnxruntime as ort

    def rate(model: bytes, a: np.ndarray, b: np.ndarray) -> float:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feed = {"A": a, "B": b}
        for _ in range(3):
            session.run(None, feed)
        times = []
        for _ in range(10):
            t0 = time.perf_counter_ns()
            session.run(None, feed)
            times.append(time.perf_counter_ns() - t0)
        # The roofline is what the machine can do: the best run, not the typical one.
        return round(size**3 / (min(times) / 1e9) / 1e9, 2)

    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((2, size, size), dtype=np.float32)
    u8 = rng.integers(0, 255, (size, size), dtype=np.uint8)
    i8 = rng.integers(-127, 127, (size, size), dtype=np.int8)
    float32 = rate(matmul_model("MatMul", ONNX_FLOAT, ONNX_FLOAT, ONNX_FLOAT, size), *f32)
    int8 = rate(matmul_model("MatMulInteger", ONNX_UINT8, ONNX_INT8, ONNX_INT32, size), u8, i8)
    return Roofline(threads, float32, int8, size, "onnxruntime MatMul / MatMulInteger, best of 10")


def _int_list(values, name: str) -> list[int]:
    items = [values] if isinstance(values, int) else list(values)
    if not items or any(v < 1 for v in items):
        raise MnistEdgeError(f"Invalid {name} {values}: expected positive integers.")
    return sorted(set(items), key=items.index)


def _keras_models(artifacts: Path, runtimes: list[str] | None) -> list[Path]:
    wanted = runtimes and ({"keras", "keras-predict", "all"} & set(runtimes))
    source = artifacts / "model.keras"
    return [source] if wanted and source.is_file() else []


def bench(
    artifacts: Path,
    data: Mnist | Path | None,
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
) -> BenchReport:
    """Benchmark every export (or `models`) on its runtimes; write bench.json, .csv and .png."""
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
    thread_counts = _int_list(1 if threads is None else threads, "threads")
    batches = _int_list(DEFAULT_BATCH_SIZES if batch_sizes is None else batch_sizes, "batch size")
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
    loaded = {n: open_runners(exports, selected, n, ort_optimization) for n in thread_counts}
    images = to_float(ensure_mnist(data).x_test[:SAMPLE_IMAGES])
    rooflines = {n: measure_roofline(n) for n in thread_counts} if roofline else {}
    costs: dict[Path, ModelCost] = {}
    rows: list[BenchRow] = []
    for n in thread_counts:
        for item in loaded[n]:
            cost = costs.setdefault(item.path, model_cost(item.path, item.runner))
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
                stats = time_runner(item.runner, images, row_runs, warmup, batch)
                rows.append(_row(item, cost, rooflines.get(n), stats, batch, row_runs, warmup))
    rows = _with_keras_speedups(rows)
    chart = _chart(rows)
    report = BenchReport(
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
            "max_runs": MAX_RUNS,
        },
        rooflines=list(rooflines.values()),
        files=[BENCH_JSON, BENCH_CSV] + ([BENCH_PNG] if chart else []),
    )
    write_bench_files(artifacts, report, chart)
    return report


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
    from dataclasses import replace

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
        return charts.bench_chart([asdict(r) for r in rows])
    except MissingDependencyError as exc:
        log.info("No bench chart: %s", exc)
        return None


def write_bench_files(artifacts: Path, report: BenchReport, chart: bytes | None) -> None:
    """bench.json, bench.csv and the chart, in one atomic step."""
    import csv
    import io

    from mnist_edge.files import json_bytes, write_files_atomic

    table = io.StringIO()
    rows = [asdict(r) for r in report.results]
    writer = csv.DictWriter(table, fieldnames=list(rows[0]) if rows else ["artifact"])
    writer.writeheader()
    writer.writerows(rows)
    contents = {artifacts / BENCH_CSV: table.getvalue().encode()}
    if chart is not None:
        contents[artifacts / BENCH_PNG] = chart
    contents[artifacts / BENCH_JSON] = json_bytes(asdict(report))
    write_files_atomic(contents)
