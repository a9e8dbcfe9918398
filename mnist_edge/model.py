"""The seed's CNN, built and trained with Keras 3. TensorFlow is imported inside the functions."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_edge.artifacts import MODEL_FILE, TRAIN_JSON, record_payload
from mnist_edge.data import Mnist, ensure_mnist, to_float
from mnist_edge.deps import require
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import json_bytes, prepare_output_dir, refuse_overwrite, write_files_atomic
from mnist_edge.machine import library_versions
from mnist_edge.options import DEFAULT_RECIPE, DEFAULT_SEED, PRECISIONS, RECIPES, SCHEDULES
from mnist_edge.records import EpochStats, TrainResult
from mnist_edge.tensors import IMAGE_SHAPE

log = logging.getLogger(__name__)

KERAS_BATCH = 1000
NUM_PARAMS = 93_322  # the seed architecture's parameter count
ONE_CYCLE_WARMUP = 0.3  # share of the steps spent warming up to the peak learning rate
VALIDATION_SPLIT = 0.1  # the seed's held-out share (Keras takes the last 10% of the data)


# The CPU flags on which oneDNN (TensorFlow's CPU kernels) runs bfloat16 natively: AMX tiles, or
# AVX-512 BF16 (its dot-product instructions). Elsewhere it would emulate bfloat16, slower than
# float32. Measured with benchmarks/training.py: bf16 beat float32 at >= 0.991 on both (README).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def choose_precision(precision: str) -> tuple[str, str]:
    """The compute precision for training and why: bf16 on request, or where the CPU multiplies
    bfloat16 in hardware (amx_bf16 or avx512_bf16); float32 otherwise. From the CPU's flags."""
    from mnist_edge.machine import detect_machine

    machine = detect_machine()
    found = [flag for flag in BF16_FLAGS if flag in machine.features]
    has = f"has {' and '.join(found)}" if found else f"has neither {' nor '.join(BF16_FLAGS)}"
    if precision == "auto":
        return ("bf16" if found else "float32"), f"auto: {machine.cpu} {has}"
    return precision, f"asked for ({machine.cpu} {has})"


def learning_rate_schedule(keras, schedule: str, rate: float, steps: int):
    """Adam's learning rate: constant, cosine decay to zero, or one cycle (warm-up, decay)."""
    if schedule == "cosine":
        # Decays to zero over the whole run: a larger start rate, and the last steps fine-tune.
        return keras.optimizers.schedules.CosineDecay(rate, steps)
    if schedule == "one-cycle":
        warmup = max(1, int(ONE_CYCLE_WARMUP * steps))
        return keras.optimizers.schedules.CosineDecay(
            rate / 25, steps - warmup, warmup_target=rate, warmup_steps=warmup
        )
    return rate


def build_model(precision: str = "float32"):
    """The seed's architecture exactly: three convolutions, two max-pools, two dense layers.

    bf16: Keras' mixed_bfloat16 policy (bfloat16 compute, float32 weights), the softmax layer
    in float32 as Keras' mixed-precision guide asks.
    """
    keras = require("keras")
    layers = keras.layers
    policy = "mixed_bfloat16" if precision == "bf16" else "float32"
    return keras.Sequential(
        [
            keras.Input(shape=IMAGE_SHAPE, name="image"),
            layers.Conv2D(32, (3, 3), activation="relu", dtype=policy),
            layers.MaxPooling2D((2, 2), dtype=policy),
            layers.Conv2D(64, (3, 3), activation="relu", dtype=policy),
            layers.MaxPooling2D((2, 2), dtype=policy),
            layers.Conv2D(64, (3, 3), activation="relu", dtype=policy),
            layers.Flatten(dtype=policy),
            layers.Dense(64, activation="relu", dtype=policy),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ],
        name="mnist_cnn",
    )


def load_keras_model(path: Path):
    """Load a saved model.keras (safe mode on: no Lambda layers) and check its input shape."""
    keras = require("keras")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model; run `mnist-edge train` first.")
    # Keras numbers layer and tensor names per process ("dense_3"), and those names reach the
    # exported flatbuffers: start from a clean slate so one model always exports the same bytes.
    keras.backend.clear_session()
    try:
        # compile=False: nothing here trains or evaluates a loaded model, and restoring the
        # optimizer warned for a model trained in bfloat16 (saved with a fresh one).
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a bad archive.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load the Keras model ({first[:200]}).") from None
    shape = tuple(model.input_shape[1:])
    if shape != IMAGE_SHAPE:
        raise ModelError(f"{path}: model input shape is {shape}; expected {IMAGE_SHAPE}.")
    return model


def keras_probabilities(model, images: np.ndarray) -> np.ndarray:
    """Softmax outputs of a Keras model on uint8 images, in batches (direct call, no fit loop)."""
    x = to_float(images)
    chunks = [
        np.asarray(model(x[i : i + KERAS_BATCH], training=False))
        for i in range(0, len(x), KERAS_BATCH)
    ]
    return np.concatenate(chunks).astype(np.float32)


def seed_everything(seed: int) -> None:
    tf = require("tensorflow")
    keras = require("keras")
    keras.utils.set_random_seed(seed)
    # Same seed, same weights: deterministic kernels cost little on this small CNN.
    tf.config.experimental.enable_op_determinism()


def train(
    data: Mnist | Path | None,
    artifacts: Path,
    *,
    recipe: str = DEFAULT_RECIPE,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = DEFAULT_SEED,
    limit: int | None = None,
    learning_rate: float | None = None,
    schedule: str | None = None,
    precision: str = "auto",
    overwrite: bool = False,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> TrainResult:
    """Train the seed CNN (Adam, 10% held out) with a recipe; save model.keras, train.json.

    `recipe` names options.RECIPES' epochs, batch size, learning rate and schedule; any of them
    given here overrides it. `precision`: float32, bf16 (Keras' mixed_bfloat16, the last layer
    in float32) or auto (bf16 where the CPU has amx_bf16 or avx512_bf16). The saved model is
    float32 either way.
    `on_epoch` gets each epoch's figures; `on_step(epoch, step, steps)` each batch's end.
    """
    if recipe not in RECIPES:
        raise MnistEdgeError(f"Unknown recipe {recipe!r}: expected {', '.join(RECIPES)}.")
    if precision not in PRECISIONS:
        raise MnistEdgeError(f"Unknown precision {precision!r}: expected {', '.join(PRECISIONS)}.")
    chosen = RECIPES[recipe]
    epochs = int(chosen["epochs"]) if epochs is None else epochs
    batch_size = int(chosen["batch_size"]) if batch_size is None else batch_size
    learning_rate = float(chosen["learning_rate"]) if learning_rate is None else learning_rate
    schedule = str(chosen["schedule"]) if schedule is None else schedule
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("limit", limit)):
        if value is not None and value < 1:
            raise MnistEdgeError(f"Invalid {name} {value}: expected a positive integer.")
    if not learning_rate > 0:
        raise MnistEdgeError(f"Invalid learning rate {learning_rate}: expected a positive number.")
    if schedule not in SCHEDULES:
        raise MnistEdgeError(f"Unknown schedule {schedule!r}: expected {', '.join(SCHEDULES)}.")
    artifacts = prepare_output_dir(artifacts)
    model_path = artifacts / MODEL_FILE
    refuse_overwrite([model_path, artifacts / TRAIN_JSON], overwrite)
    keras = require("keras")
    mnist = ensure_mnist(data)
    seed_everything(seed)

    x_train, y_train = mnist.x_train, mnist.y_train
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    if len(x_train) < 10:
        raise MnistEdgeError(f"Invalid limit {limit}: need at least 10 training images.")

    steps = -(-int(len(x_train) * (1 - VALIDATION_SPLIT)) // batch_size)
    rate = learning_rate_schedule(keras, schedule, learning_rate, epochs * steps)
    precision_used, precision_reason = choose_precision(precision)
    model = build_model(precision_used)
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history: list[EpochStats] = []

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if on_step is not None:
                on_step(self.epoch, batch + 1, steps)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            stats = EpochStats(
                epoch=epoch + 1,
                loss=float(logs["loss"]),
                accuracy=float(logs["accuracy"]),
                val_loss=float(logs["val_loss"]),
                val_accuracy=float(logs["val_accuracy"]),
                seconds=round(time.perf_counter() - self.started, 3),
            )
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)

    started = time.perf_counter()
    model.fit(
        to_float(x_train),
        y_train.astype(np.int32),
        epochs=epochs,
        batch_size=batch_size,
        validation_split=VALIDATION_SPLIT,
        shuffle=True,
        verbose=0,
        callbacks=[Progress()],
    )
    seconds = time.perf_counter() - started
    if precision_used != "float32":
        # The model a device gets, and every export, is float32: the same weights (Keras keeps
        # them in float32 under mixed precision) in a float32 model.
        trained, model = model, build_model("float32")
        model.set_weights(trained.get_weights())
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    test_loss, test_accuracy = model.evaluate(
        to_float(mnist.x_test), mnist.y_test.astype(np.int32), batch_size=1000, verbose=0
    )
    with tempfile.TemporaryDirectory(prefix="mnist-edge-train-") as tmp:
        staged = Path(tmp) / MODEL_FILE  # Keras insists on the .keras suffix
        model.save(staged)
        model_bytes = staged.read_bytes()

    result = TrainResult(
        model_path=str(model_path),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        train_images=int(len(x_train)),
        seconds=round(seconds, 3),
        history=history,
        test_accuracy=float(test_accuracy),
        test_loss=float(test_loss),
        params=int(model.count_params()),
        data_source=mnist.source,
        data_sha256=dict(mnist.sha256),
        learning_rate=learning_rate,
        schedule=schedule,
        recipe=recipe,
        precision=precision_used,
        precision_reason=precision_reason,
        versions=library_versions("tensorflow", "keras", "numpy"),
    )
    write_files_atomic(
        {model_path: model_bytes, artifacts / TRAIN_JSON: json_bytes(record_payload(result))}
    )
    return result
