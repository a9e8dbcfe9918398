"""What TensorFlow's op determinism costs `mnist-edge train`, in one run.

`mnist-edge train` enables `tf.config.experimental.enable_op_determinism()` so that the same
seed gives the same weights; the seed's script does not. This trains one epoch of the default
recipe in float32 (seed 0, the full training set) in fresh processes, with and without it,
alternated round by round, and prints each fit's time and a digest of the trained weights
(equal digests within an arm: repeatable on this machine). Writes
benchmarks/results/determinism.json.

    python benchmarks/determinism.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rounds import alternate, median_seconds

RESULTS = Path(__file__).parent / "results" / "determinism.json"

ONE_EPOCH = """
import hashlib, json, sys, time
import keras, numpy as np, tensorflow as tf
from mnist_edge.data import load_mnist, to_float
from mnist_edge.model import VALIDATION_SPLIT, build_model, learning_rate_schedule
from mnist_edge.options import RECIPES

recipe = RECIPES["fast"]
keras.utils.set_random_seed(0)
if DETERMINISTIC:
    tf.config.experimental.enable_op_determinism()
mnist = load_mnist()
x, y = to_float(mnist.x_train), mnist.y_train.astype(np.int32)
steps = -(-int(len(x) * (1 - VALIDATION_SPLIT)) // recipe["batch_size"])
rate = learning_rate_schedule(keras, recipe["schedule"], recipe["learning_rate"], steps)
model = build_model("float32")
model.compile(
    optimizer=keras.optimizers.Adam(rate),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
started = time.perf_counter()
model.fit(
    x, y, epochs=1, batch_size=recipe["batch_size"], validation_split=VALIDATION_SPLIT, verbose=0
)
seconds = time.perf_counter() - started
digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
print(json.dumps({"seconds": seconds, "weights_sha256": digest[:16]}))
"""


def run(deterministic: bool) -> dict:
    code = ONE_EPOCH.replace("DETERMINISTIC", str(deterministic))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from mnist_edge.machine import detect_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    machine = detect_machine()
    arms = {"op determinism": lambda: run(True), "without": lambda: run(False)}
    runs = alternate(
        arms, args.rounds, lambda r: f"{r['seconds']:.1f} s (weights {r['weights_sha256']})"
    )
    medians = median_seconds(runs)
    print(f"{machine.cpu} ({machine.cores} cores)")
    for name, rows in runs.items():
        repeatable = len({r["weights_sha256"] for r in rows}) == 1
        print(
            f"{name}: median {medians[name]:.1f} s for one epoch; the same weights in every "
            f"round: {'yes' if repeatable else 'no'}"
        )
    ratio = medians["op determinism"] / medians["without"]
    print(f"op determinism costs {ratio:.2f}x the time without it")
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {
        "machine": machine.__dict__,
        "runs": runs,
        "median_seconds": medians,
        "ratio": ratio,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
