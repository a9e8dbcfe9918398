"""Inference: every export on every runtime against the Keras baseline and the roofline, one run.

Runs `mnist-edge bench -r all` (exports of artifacts/, plus model.keras called directly and
through model.predict) on a copy of the artifacts, single images and batches, then prints ratios
measured in this one run: each row's speed-up over Keras, and its distance to the roofline
(invoke p50 against the time the roofline's MAC rate would need for the model's MACs).
Writes benchmarks/results/inference.json.

    python benchmarks/inference.py [--artifacts artifacts] [--runs 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from mnist_edge.bench import bench

RESULTS = Path(__file__).parent / "results" / "inference.json"
GOAL_SPEEDUP = 1000  # int8, single image, invoke only, against Keras model.predict
GOAL_ROOFLINE = 2.0  # the best export within 2× of its roofline's time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--threads", default="1")
    parser.add_argument("--batch-sizes", default="1,64")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-inference-") as tmp:
        for path in args.artifacts.iterdir():
            if path.suffix in (".tflite", ".onnx", ".keras"):
                shutil.copy(path, tmp)
        report = bench(
            Path(tmp),
            None,
            runtimes=["all"],
            runs=args.runs,
            threads=[int(t) for t in args.threads.split(",")],
            batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        )
    predict_p50 = {
        (r.threads, r.batch_size): r.invoke_p50_us
        for r in report.results
        if r.runtime == "keras-predict"
    }
    print(f"{report.machine.cpu}, {report.machine.cores} cores, {report.machine.features}")
    for roof in report.rooflines:
        print(
            f"roofline at {roof.threads} thread(s): float32 {roof.float32_gmacs} GMAC/s, "
            f"int8 {roof.int8_gmacs} GMAC/s ({roof.note})"
        )
    header = (
        f"{'artifact':<22}{'runtime':<15}{'thr':>4}{'batch':>6}{'invoke p50 µs':>15}"
        f"{'× call':>9}{'× predict':>11}{'GMAC/s':>9}{'roof %':>8}{'× roof time':>12}"
    )
    print(header)
    rows = []
    for r in report.results:
        # How many times longer than the roofline would need for the same MACs the call takes
        # (GMAC/s × 1e3 = MACs per µs).
        rate = r.roofline_gmacs
        roof_time = r.macs * r.batch_size / (rate * 1e3) if r.macs and rate else None
        versus_predict = predict_p50.get((r.threads, r.batch_size))
        row = {
            **asdict(r),
            "speedup_vs_keras_predict_invoke": round(versus_predict / r.invoke_p50_us, 1)
            if versus_predict
            else None,
            "times_roofline_time": round(r.invoke_p50_us / roof_time, 2) if roof_time else None,
        }
        rows.append(row)
        print(
            f"{r.artifact:<22}{r.runtime:<15}{r.threads:>4}{r.batch_size:>6}"
            f"{r.invoke_p50_us:>15,.1f}{r.speedup_vs_keras or 0:>9,.1f}"
            f"{row['speedup_vs_keras_predict_invoke'] or 0:>11,.0f}{r.gmacs or 0:>9.1f}"
            f"{(r.roofline_fraction or 0) * 100:>7.0f}%{row['times_roofline_time'] or 0:>12.2f}"
        )
    singles = [row for row in rows if row["batch_size"] == 1 and row["times_roofline_time"]]
    int8 = next(
        (
            row
            for row in singles
            if row["artifact"] == "model_int8.tflite" and row["runtime"] == "litert"
        ),
        None,
    )
    best = min(singles, key=lambda row: row["times_roofline_time"], default=None)
    if int8:
        print(
            f"goal: int8 single-image invoke p50 {int8['invoke_p50_us']:.1f} µs is "
            f"{int8['speedup_vs_keras_predict_invoke']:,.0f}× faster than Keras model.predict "
            f"(goal ≥ {GOAL_SPEEDUP:,})"
        )
    if best:
        print(
            f"goal: best export {best['artifact']} on {best['runtime']} takes "
            f"{best['times_roofline_time']:.2f}× its roofline's time (goal ≤ {GOAL_ROOFLINE})"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {
        "machine": asdict(report.machine),
        "versions": report.versions,
        "settings": report.settings,
        "rooflines": [asdict(r) for r in report.rooflines],
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
