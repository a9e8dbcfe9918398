"""Per-call costs around invoke, in-process: feeding uint8 pixels, invoke, fetching scores.

`mnist-edge bench` reports a call end to end and invoke alone (and, in bench.json, the medians of
the two halves around invoke); this prints just those halves for each runner, one image at a
time, through bench's own timing loop. The machine's speed drifts, so only the split
within one line means anything. Writes benchmarks/results/per_call.json.

    python benchmarks/per_call.py [--artifacts artifacts] [--calls 5000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mnist_edge.bench import time_runner
from mnist_edge.data import load_test_split
from mnist_edge.runtimes import open_runner

RESULTS = Path(__file__).parent / "results" / "per_call.json"
CASES = (
    ("model_int8.tflite", "litert"),
    ("model_int8.tflite", "litert-ref"),
    ("model.onnx", "onnxruntime"),
    ("model_int8.onnx", "onnxruntime"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    images = load_test_split().x_test[:100]
    rows = []
    for name, runtime in CASES:
        path = args.artifacts / name
        if not path.is_file():
            continue
        runner = open_runner(path, runtime)
        row = {"artifact": name, "runtime": runtime, "kernels": runner.kernels}
        # bench's own timing loop, one image per call: its feed and fetch medians.
        stats = time_runner(runner, images, args.calls, warmup=50, batch=1)
        row.update(
            feed_us=stats["feed_p50_us"],
            invoke_us=stats["invoke_p50_us"],
            fetch_us=stats["fetch_p50_us"],
        )
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
