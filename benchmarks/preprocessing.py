"""Preprocessing check: MNIST's own test digits through `predict`'s preprocessing.

MNIST's digits are already fit to 20×20 and centered by mass in 28×28, so the preprocessing that
real photos and scans get should leave them nearly as they are. Counts, on the 10,000 test
images, those that come back pixel-identical, and the test images whose class on the int8 model
changes when preprocessed. Writes benchmarks/results/preprocessing.json.

    python benchmarks/preprocessing.py [--model artifacts/model_int8.tflite]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mnist_edge.data import load_mnist, to_float
from mnist_edge.predict import preprocess_digit
from mnist_edge.runtimes import open_runner

RESULTS = Path(__file__).parent / "results" / "preprocessing.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model_int8.tflite"))
    args = parser.parse_args()
    images = to_float(load_mnist().x_test)
    processed = np.stack([preprocess_digit(image[..., 0]) for image in images])[..., np.newaxis]
    identical = int(np.sum(np.all(processed == images, axis=(1, 2, 3))))
    runner = open_runner(args.model)
    before = runner.predict(images).argmax(axis=1)
    after = runner.predict(processed).argmax(axis=1)
    changed = np.flatnonzero(before != after).tolist()
    print(f"pixel-identical after preprocessing: {identical:,} of {len(images):,}")
    print(f"class changed on {args.model.name} ({runner.runtime}): {len(changed)} {changed}")
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {
        "model": str(args.model),
        "runtime": runner.runtime,
        "images": len(images),
        "pixel_identical": identical,
        "class_changed": changed,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
