"""Calibration study: int8 accuracy and agreement with Keras against the calibration set size.

Exports the trained model (artifacts/model.keras) to TFLite int8 and ONNX int8 QDQ with 10, 50,
100, 500 and 2000 calibration images (the first N training images), verifies each on the 10,000
test images with the default kernels (LiteRT with XNNPACK, onnxruntime CPU), then compares the
ONNX calibration methods at the default size. Prints a table; writes benchmarks/results/.

    python benchmarks/calibration.py [--artifacts artifacts] [--sizes 10,50,100,500,2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from mnist_edge.data import load_mnist
from mnist_edge.export import DEFAULT_CALIBRATION_SIZE, ONNX_CALIBRATION_METHODS, export
from mnist_edge.model import MODEL_FILE
from mnist_edge.verify import verify

RESULTS = Path(__file__).parent / "results" / "calibration.json"


def measure(model: Path, mnist, size: int, formats: list[str], method: str) -> list[dict]:
    """Export with `size` calibration images, verify, return one row per export."""
    with tempfile.TemporaryDirectory(prefix="mnist-edge-calibration-") as tmp:
        shutil.copy(model, Path(tmp) / MODEL_FILE)
        export(tmp, mnist, formats=formats, calibration_size=size, onnx_calibration=method)
        report = verify(tmp, mnist)
    return [
        {
            "calibration_images": size,
            "onnx_method": method,
            "artifact": row.artifact,
            "runtime": row.runtime,
            "kernels": row.kernels,
            "accuracy": row.accuracy,
            "delta_pp": row.delta_pp,
            "agreement": row.agreement,
            "keras_accuracy": report.reference.accuracy,
        }
        for row in report.results
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--sizes", default="10,50,100,500,2000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = args.artifacts / MODEL_FILE
    if not model.is_file():
        raise SystemExit(f"{model}: no trained model; run `mnist-edge train` first.")
    mnist = load_mnist()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure(model, mnist, size, ["tflite-int8", "onnx-int8"], "minmax")
    for method in ONNX_CALIBRATION_METHODS[1:]:
        rows += measure(model, mnist, DEFAULT_CALIBRATION_SIZE, ["onnx-int8"], method)

    print(f"{'images':>7} {'method':>10} {'artifact':<18} {'accuracy':>8} {'Δ pp':>6} {'agree':>7}")
    for r in rows:
        print(
            f"{r['calibration_images']:>7} {r['onnx_method']:>10} {r['artifact']:<18} "
            f"{r['accuracy']:>8.4f} {r['delta_pp']:>+6.2f} {r['agreement']:>7.4f}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"model": str(model), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
