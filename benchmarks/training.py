"""Training time and accuracy: the seed's own script against `mnist-edge train`, in one run.

The seed recipe is the original single script's training, verbatim in spirit: the same
architecture, `model.compile(optimizer="adam", ...)` and
`model.fit(x, y, epochs=5, batch_size=128, validation_split=0.1)`, then `model.evaluate`.
Against it, in fresh processes and alternated round by round (seed, default, float32, seed,
...) so that machine load falls on all alike: `mnist-edge train` with its default recipe and
precision (bfloat16 where the CPU has AMX), and, on a CPU with AMX, the same recipe forced to
float32. Each reports the wall time of its fit (data loading and TensorFlow's import excluded
on every side) and its test accuracy. Prints the ratios of the medians with the CPU and its
flags; writes benchmarks/results/training.json.

    python benchmarks/training.py [--rounds 2] [--options "--epochs 3 ..."]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rounds import alternate, median_seconds

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
    keys = ("seconds", "test_accuracy", "recipe", "epochs", "batch_size", "learning_rate")
    return {
        **{key: record[key] for key in keys},
        **{key: record.get(key) for key in ("schedule", "precision", "precision_reason")},
    }


def main() -> None:
    from mnist_edge.machine import detect_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="the seed recipe's epochs")
    parser.add_argument("--options", default="", help="extra options for mnist-edge train")
    args = parser.parse_args()
    machine = detect_machine()
    arms = {"seed script": lambda: run_seed(args.epochs), "default": lambda: run_ours(args.options)}
    if "amx_bf16" in machine.features:
        arms["default, float32"] = lambda: run_ours(f"{args.options} --precision float32")
    runs = alternate(
        arms, args.rounds, lambda r: f"{r['seconds']:.1f} s (acc {r['test_accuracy']:.4f})"
    )
    medians = median_seconds(runs)
    accuracy = {
        name: statistics.median(r["test_accuracy"] for r in rows) for name, rows in runs.items()
    }
    print(f"{machine.cpu} ({machine.cores} cores; {', '.join(machine.features)})")
    for name in arms:
        print(
            f"{name}: median fit {medians[name]:.1f} s, test accuracy {accuracy[name]:.4f}, "
            f"{medians[name] / medians['seed script']:.2f}x the seed script's time"
        )
    # Each round's own ratio too: the machine's speed drifts, and a round's arms run back to back.
    per_round = {
        name: [
            round(mine["seconds"] / seed["seconds"], 3)
            for mine, seed in zip(runs[name], runs["seed script"], strict=True)
        ]
        for name in arms
    }
    for name in arms:
        if name != "seed script":
            print(f"{name}: ratio per round {per_round[name]}")
    goals = {"default": 0.35 if "amx_bf16" in machine.features else 0.45}
    if "default, float32" in arms:
        # No machine without AMX here: the recipe in float32 stands in for one (its goal).
        goals["default, float32"] = 0.45
    for name, goal in goals.items():
        ratio = medians[name] / medians["seed script"]
        met = accuracy[name] >= 0.991 and ratio <= goal
        print(
            f"goal: {name} >= 0.991 in <= {goal}x the seed's time: accuracy "
            f"{accuracy[name]:.4f}, {ratio:.2f}x -> {'met' if met else 'NOT met'}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {
        "machine": machine.__dict__,
        "seed_epochs": args.epochs,
        "options": args.options,
        "runs": runs,
        "median_seconds": medians,
        "median_test_accuracy": accuracy,
        "ratio_to_seed": {name: medians[name] / medians["seed script"] for name in arms},
        "ratio_to_seed_per_round": per_round,
        "goal_ratio": goals,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
