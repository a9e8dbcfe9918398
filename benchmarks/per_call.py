"""Per-call costs around invoke, in-process: feeding uint8 pixels, invoke, fetching scores.

`mnist-edge bench` reports a call end to end and invoke alone; this splits the difference into
its two halves for each runner, one image at a time, with the runner's own methods (the same
calls `bench`, `verify` and `predict` make). The machine's speed drifts, so only the split
within one line means anything. Writes benchmarks/results/per_call.json.

    python benchmarks/per_call.py [--artifacts artifacts] [--calls 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mnist_edge.data import IMAGE_SHAPE, load_test_split
from mnist_edge.runtimes import open_runner

RESULTS = Path(__file__).parent / "results" / "per_call.json"
CASES = (
    ("model_int8.tflite", "litert"),
    ("model_int8.tflite", "litert-ref"),
    ("model.onnx", "onnxruntime"),
    ("model_int8.onnx", "onnxruntime"),
)


def split_call(runner, images: np.ndarray, calls: int) -> dict[str, float]:
    """Medians in µs of feed_pixels, invoke and fetch over `calls` single-image calls."""
    runner.set_batch(1)
    for image in images[:50]:  # untimed: allocation, XNNPACK's first-invoke setup, pinning
        runner.feed_pixels(image)
        runner.invoke()
        runner.fetch()
    clock = time.perf_counter_ns
    stamps = np.empty((calls, 4), dtype=np.int64)
    for i in range(calls):
        image = images[i % len(images)]
        t0 = clock()
        runner.feed_pixels(image)
        t1 = clock()
        runner.invoke()
        t2 = clock()
        runner.fetch()
        stamps[i] = (t0, t1, t2, clock())
    feed, invoke, fetch = np.median(np.diff(stamps, axis=1), axis=0) / 1000
    return {"feed_us": round(feed, 2), "invoke_us": round(invoke, 2), "fetch_us": round(fetch, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    # One image per call, uint8 in the model's N×28×28×1 layout, as bench feeds them.
    images = load_test_split().x_test[:100].reshape(-1, 1, *IMAGE_SHAPE)
    rows = []
    for name, runtime in CASES:
        path = args.artifacts / name
        if not path.is_file():
            continue
        runner = open_runner(path, runtime)
        row = {"artifact": name, "runtime": runtime, "kernels": runner.kernels}
        row.update(split_call(runner, images, args.calls))
        rows.append(row)
        print(
            f"{name:20s} {runtime:12s} feed {row['feed_us']:6.2f} µs  invoke "
            f"{row['invoke_us']:8.2f} µs  fetch {row['fetch_us']:5.2f} µs",
            flush=True,
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"calls": args.calls, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
