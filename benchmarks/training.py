"""Training time: the seed's own recipe against `mnist-edge train`, alternated in one run.

The seed recipe is the original single script's training, verbatim in spirit: the same
architecture, `model.compile(optimizer="adam", ...)` and
`model.fit(x, y, epochs=5, batch_size=128, validation_split=0.1)`, then `model.evaluate`.
Both run as fresh processes, alternately (seed, ours, seed, ours, ...), so machine load affects
both alike. `mnist-edge train` runs with --recipe (default: the fast recipe, 3 epochs of Adam
at 2e-3 with cosine decay; the same architecture and data). Each reports the wall time of its
fit (data loading and TensorFlow's import are excluded on both sides) and its test accuracy.
Prints the ratio of the medians; writes benchmarks/results/training.json.

    python benchmarks/training.py [--rounds 2] [--recipe "--epochs 3 ..."]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "training.json"

SEED_RECIPE = """
import json, sys, time
import numpy as np
from mnist_edge.data import load_mnist  # the seed used keras.datasets.mnist: same arrays
import keras
from keras import layers

mnist = load_mnist()
x_train = (mnist.x_train.astype("float32") / 255.0)[..., None]
x_test = (mnist.x_test.astype("float32") / 255.0)[..., None]
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.Flatten(),
    layers.Dense(64, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
started = time.perf_counter()
model.fit(x_train, mnist.y_train, epochs=EPOCHS, batch_size=128, validation_split=0.1, verbose=0)
seconds = time.perf_counter() - started
loss, accuracy = model.evaluate(x_test, mnist.y_test, verbose=0)
print(json.dumps({"seconds": seconds, "test_accuracy": accuracy}))
"""


def run_seed(epochs: int) -> dict:
    """The seed recipe in a fresh Python process."""
    code = SEED_RECIPE.replace("EPOCHS", str(epochs))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


FAST_RECIPE = "--epochs 3 --learning-rate 0.002 --schedule cosine"


def run_ours(recipe: str) -> dict:
    """`mnist-edge train RECIPE` in a fresh process; its train.json holds the fit time."""
    with tempfile.TemporaryDirectory(prefix="mnist-edge-training-") as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mnist_edge",
                "-q",
                "train",
                *recipe.split(),
                "--artifacts",
                tmp,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    record = json.loads(done.stdout)
    return {
        "seconds": record["seconds"],
        "test_accuracy": record["test_accuracy"],
        "epochs": record["epochs"],
        "learning_rate": record["learning_rate"],
        "schedule": record["schedule"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="the seed recipe's epochs")
    parser.add_argument("--recipe", default=FAST_RECIPE, help="options for mnist-edge train")
    args = parser.parse_args()
    seed, ours = [], []
    for round_ in range(1, args.rounds + 1):
        seed.append(run_seed(args.epochs))
        ours.append(run_ours(args.recipe))
        last_seed, last_ours = seed[-1], ours[-1]
        print(
            f"round {round_}: seed {last_seed['seconds']:.1f} s "
            f"(acc {last_seed['test_accuracy']:.4f})  mnist-edge {last_ours['seconds']:.1f} s "
            f"(acc {last_ours['test_accuracy']:.4f})",
            flush=True,
        )
    seed_s = statistics.median(r["seconds"] for r in seed)
    ours_s = statistics.median(r["seconds"] for r in ours)
    print(f"median fit time: seed recipe {seed_s:.1f} s, mnist-edge train {ours_s:.1f} s")
    print(f"ratio mnist-edge / seed: {ours_s / seed_s:.2f} (goal: at most 0.60)")
    from mnist_edge.bench import detect_machine

    RESULTS.parent.mkdir(exist_ok=True)
    payload = {
        "machine": detect_machine().__dict__,
        "seed_epochs": args.epochs,
        "recipe": f"mnist-edge train {args.recipe}",
        "seed_recipe": seed,
        "mnist_edge": ours,
        "median_seconds": {"seed_recipe": seed_s, "mnist_edge": ours_s},
        "ratio": ours_s / seed_s,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
