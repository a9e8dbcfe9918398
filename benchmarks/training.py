"""Training time and accuracy: the seed's own script against `mnist-edge train`, in one run.

The seed recipe is the original single script's training, verbatim in spirit: the same
architecture, `model.compile(optimizer="adam", ...)` and
`model.fit(x, y, epochs=5, batch_size=128, validation_split=0.1)`, then `model.evaluate`.
Against it, each in a fresh process: `mnist-edge train` with its default recipe and precision
(auto: bfloat16 where the CPU has amx_bf16 or avx512_bf16), and the same recipe forced to
`--precision bf16` and to `--precision float32`, so that both precisions are measured on this CPU
in the same run. Each reports the wall time of its fit (data loading and TensorFlow's import
excluded on every side) and its test accuracy.

Every round runs each arm once, back to back, in the order seed, default, bf16, float32, and
the reverse in even rounds: the seed script and the default are neighbours in every round and
neither always goes first. The machine's speed drifts by up to 1.6x between processes (and
other jobs may load it), so the verdict is the median of the per-round ratios (an arm's fit
over the seed script's fit in the same round), printed with their min-max spread and the seed
script's own spread in seconds. Writes benchmarks/results/training.json: every run (with its
round, position and the load average when it started), the ratios and the CPU's flags.

    python benchmarks/training.py [--rounds 3] [--options "--epochs 3 ..."]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rounds import alternate, spread

RESULTS = Path(__file__).parent / "results" / "training.json"
MIN_ACCURACY = 0.991
GOAL_WITH_AMX = 0.35  # the default's fit over the seed script's, where the CPU has amx_bf16
GOAL_WITHOUT_AMX = 0.45  # everywhere else
SEED = "seed script"

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


def run_ours(options: str) -> dict:
    """`mnist-edge train OPTIONS` in a fresh process; its train.json holds the fit time."""
    with tempfile.TemporaryDirectory(prefix="mnist-edge-training-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "mnist_edge", "-q", "train", *options.split()]
            + ["--artifacts", tmp, "--json"],
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


def cpu_flags() -> list[str]:
    """Every flag of the first core in /proc/cpuinfo (the machine record keeps a selection)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return sorted(value.split())
    except OSError:
        pass
    return []


def ratios(runs: dict[str, list[dict]], arm: str, over: str) -> list[float]:
    """Each round's fit time of `arm` over that of `over` (run back to back in that round)."""
    return [
        round(mine["seconds"] / theirs["seconds"], 3)
        for mine, theirs in zip(runs[arm], runs[over], strict=True)
    ]


def describe_ratios(values: list[float]) -> str:
    low, median, high = spread(values)
    rounds = ", ".join(f"{value:.2f}" for value in values)
    return f"per round [{rounds}]x, median {median:.2f}x, spread {low:.2f}-{high:.2f}x"


def main() -> None:
    from mnist_edge.machine import detect_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="the seed recipe's epochs")
    parser.add_argument("--options", default="", help="extra options for mnist-edge train")
    args = parser.parse_args()
    machine = detect_machine()
    arms = {
        SEED: lambda: run_seed(args.epochs),
        "default": lambda: run_ours(args.options),
        "bf16": lambda: run_ours(f"{args.options} --precision bf16"),
        "float32": lambda: run_ours(f"{args.options} --precision float32"),
    }
    runs = alternate(
        arms,
        args.rounds,
        lambda r: f"{r['seconds']:.1f} s (acc {r['test_accuracy']:.4f}, load {r['load_before']})",
        mirror=True,
    )
    print(f"{machine.cpu} ({machine.cores} cores; {', '.join(machine.features)})")
    print(f"default precision: {runs['default'][0]['precision_reason']}")
    seconds = {name: [r["seconds"] for r in rows] for name, rows in runs.items()}
    accuracy = {name: [r["test_accuracy"] for r in rows] for name, rows in runs.items()}
    low, median, high = spread(seconds[SEED])
    print(
        f"{SEED}: fit {low:.1f} / {median:.1f} / {high:.1f} s (min / median / max; "
        f"max/min {high / low:.2f}x), test accuracy {min(accuracy[SEED]):.4f}-"
        f"{max(accuracy[SEED]):.4f}"
    )
    per_round = {name: ratios(runs, name, SEED) for name in arms if name != SEED}
    for name, values in per_round.items():
        print(
            f"{name}: median fit {statistics.median(seconds[name]):.1f} s, test accuracy "
            f"{min(accuracy[name]):.4f}-{max(accuracy[name]):.4f}; over the seed script's fit "
            f"{describe_ratios(values)}"
        )
    bf16_over_float32 = ratios(runs, "bf16", "float32")
    faster = sum(value < 1 for value in bf16_over_float32)
    print(
        f"bf16 over float32 on this CPU: {describe_ratios(bf16_over_float32)}; bf16 faster in "
        f"{faster} of {len(bf16_over_float32)} rounds"
    )
    amx = "amx_bf16" in machine.features
    goals = {"default": GOAL_WITH_AMX if amx else GOAL_WITHOUT_AMX}
    if amx or "avx512_bf16" in machine.features:
        # float32 here runs the kernels a CPU without bfloat16 hardware runs: its stand-in.
        goals["float32"] = GOAL_WITHOUT_AMX
    verdicts = {}
    for name, goal in goals.items():
        worst = min(accuracy[name])
        median_ratio = statistics.median(per_round[name])
        met = worst >= MIN_ACCURACY and median_ratio <= goal
        within = sum(value <= goal for value in per_round[name])
        verdicts[name] = met
        print(
            f"goal: {name} >= {MIN_ACCURACY} at a median per-round ratio <= {goal}x: lowest "
            f"accuracy {worst:.4f}, median {median_ratio:.2f}x (spread "
            f"{min(per_round[name]):.2f}-{max(per_round[name]):.2f}x; {within} of "
            f"{len(per_round[name])} rounds within) -> {'met' if met else 'NOT met'}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {
        "command": " ".join(["python", "benchmarks/training.py", *sys.argv[1:]]),
        "machine": machine.__dict__,
        "cpu_flags": cpu_flags(),
        "load_average_after": os.getloadavg(),
        "seed_epochs": args.epochs,
        "options": args.options,
        "rounds": args.rounds,
        "runs": runs,
        "seed_seconds_spread": dict(
            zip(("min", "median", "max"), spread(seconds[SEED]), strict=True)
        ),
        "median_seconds": {name: statistics.median(values) for name, values in seconds.items()},
        "test_accuracy": accuracy,
        "ratio_to_seed_per_round": per_round,
        "ratio_to_seed_median": {name: statistics.median(v) for name, v in per_round.items()},
        "bf16_over_float32_per_round": bf16_over_float32,
        "goal_ratio": goals,
        "goal_accuracy": MIN_ACCURACY,
        "goal_met": verdicts,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
