"""bench: both runtimes, the JSON contract, the setup beside the figures."""

from __future__ import annotations

import json

import pytest

from mnist_edge.bench import bench, detect_machine
from mnist_edge.errors import MnistEdgeError

pytestmark = pytest.mark.slow


def test_bench_rows_for_both_runtimes(exported, mnist):
    artifacts, _ = exported
    report = bench(artifacts, mnist, runs=30, warmup=5, batch_size=16)
    runtimes = {(r.artifact, r.runtime) for r in report.results}
    assert ("model.onnx", "onnxruntime") in runtimes
    assert ("model_int8.tflite", "litert") in runtimes
    for row in report.results:
        assert 0 < row.min_us <= row.p50_us <= row.p90_us <= row.p99_us <= row.max_us
        assert row.invoke_p50_us <= row.p50_us
        assert row.throughput_ips > 0 and row.batch_size == 16 and row.threads == 1
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


@pytest.mark.parametrize(("option", "value"), [("runs", 0), ("threads", 0), ("batch_size", -1)])
def test_bench_rejects_bad_options(exported, mnist, option, value):
    with pytest.raises(MnistEdgeError, match="Invalid"):
        bench(exported[0], mnist, **{option: value})
