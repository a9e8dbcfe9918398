"""bench: both runtimes, the JSON contract, the setup beside the figures."""

from __future__ import annotations

import json

import pytest

from mnist_edge.bench import bench
from mnist_edge.errors import MnistEdgeError
from mnist_edge.machine import detect_machine

pytestmark = pytest.mark.slow


def test_bench_rows_for_both_runtimes(exported, mnist):
    artifacts, _ = exported
    report = bench(artifacts, mnist, runs=30, warmup=5, batch_sizes=[1, 16], roofline=False)
    runtimes = {(r.artifact, r.runtime) for r in report.results}
    assert ("model.onnx", "onnxruntime") in runtimes
    assert ("model_int8.tflite", "litert") in runtimes
    for row in report.results:
        assert 0 < row.min_us <= row.p50_us <= row.p90_us <= row.p99_us <= row.max_us
        assert row.invoke_p50_us <= row.p50_us
        assert row.overhead_us == round(row.p50_us - row.invoke_p50_us, 2)
        assert 0 < row.feed_p50_us < row.p50_us and 0 < row.fetch_p50_us < row.p50_us
        assert row.throughput_ips > 0 and row.batch_size in (1, 16) and row.threads == 1
    record = json.loads((artifacts / "bench.json").read_text())
    keys = {"artifact", "runtime", "threads", "batch_size", "p50_us", "p90_us", "p99_us"}
    keys |= {"mean_us", "throughput_ips"}
    assert all(keys <= set(row) for row in record["results"])
    assert record["machine"]["cores"] >= 1 and "onnxruntime" in record["versions"]


def test_bench_tflm_runs_one_image_at_a_time(exported, mnist):
    pytest.importorskip("tflite_micro")
    artifacts, _ = exported
    report = bench(
        artifacts, mnist, models=[artifacts / "model_int8.tflite"], runtimes=["tflm"], runs=5
    )
    (row,) = report.results
    assert row.runtime == "tflm" and row.batch_size == 1


def test_machine_is_detected():
    machine = detect_machine()
    assert machine.cores >= 1 and machine.arch and machine.cpu


@pytest.mark.parametrize(("option", "value"), [("runs", 0), ("threads", 0), ("batch_sizes", -1)])
def test_bench_rejects_bad_options(exported, mnist, option, value):
    with pytest.raises(MnistEdgeError, match="Invalid"):
        bench(exported[0], mnist, **{option: value})


def test_bench_all_runtimes_with_keras_baseline_and_roofline(exported_copy, mnist):
    report = bench(
        exported_copy,
        mnist,
        runtimes=["all"],
        runs=10,
        warmup=2,
        threads=[1, 2],
        batch_sizes=[1, 8],
    )
    rows = {(r.artifact, r.runtime, r.threads, r.batch_size): r for r in report.results}
    # TensorFlow fixes its threads once started (here by the training fixture): Keras rows say
    # which threads they really had.
    keras_batches = {(r.runtime, r.batch_size) for r in report.results if "keras" in r.runtime}
    assert keras_batches == {("keras", 1), ("keras", 8), ("keras-predict", 1), ("keras-predict", 8)}
    assert ("model_int8.tflite", "litert-ref", 2, 8) in rows
    assert ("model_int8.tflite", "tflm", 1, 1) in rows and (
        "model_int8.tflite",
        "tflm",
        1,
        8,
    ) not in rows
    # The model's cost is counted from each file: the same network in every format.
    assert {r.macs for r in report.results} == {2_794_240}
    assert {r.params for r in report.results} == {93_322}
    for row in report.results:
        assert row.speedup_vs_keras is not None and row.speedup_vs_keras > 0
        assert row.gmacs > 0 and row.roofline_fraction > 0
    assert {r.speedup_vs_keras for r in report.results if r.runtime == "keras"} == {1.0}
    assert [(r.threads, r.float32_gmacs > 0, r.int8_gmacs > 0) for r in report.rooflines] == [
        (1, True, True),
        (2, True, True),
    ]
    assert report.files == ["bench.json", "bench.csv", "bench.png"]
    csv_lines = (exported_copy / "bench.csv").read_text().strip().splitlines()
    assert len(csv_lines) == len(report.results) + 1 and csv_lines[0].startswith("artifact,")
    assert (exported_copy / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_xnnpack_runs_the_builtin_kernels(exported, mnist):
    artifacts, _ = exported
    report = bench(
        artifacts,
        mnist,
        runtimes=["litert", "onnxruntime"],
        runs=5,
        warmup=1,
        batch_sizes=[1],
        xnnpack=False,
        ort_optimization="disable",
        roofline=False,
    )
    assert {r.runtime for r in report.results} == {"litert-ref", "onnxruntime"}
    assert report.settings["xnnpack"] is False and report.settings["ort_optimization"] == "disable"


def test_bad_ort_optimization(exported, mnist):
    with pytest.raises(MnistEdgeError, match="Invalid optimization level 'max'"):
        bench(exported[0], mnist, runs=1, ort_optimization="max", roofline=False)
