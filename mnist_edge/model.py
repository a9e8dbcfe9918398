"""The seed's CNN, built and trained with Keras 3. TensorFlow is imported inside the functions."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_edge.artifacts import MODEL_FILE, TRAIN_JSON, library_versions, record_payload
from mnist_edge.data import IMAGE_SHAPE, Mnist, ensure_mnist, to_float
from mnist_edge.deps import require
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import json_bytes, prepare_output_dir, refuse_overwrite, write_files_atomic
from mnist_edge.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_SEED,
    SCHEDULES,
)
from mnist_edge.records import EpochStats, TrainResult

log = logging.getLogger(__name__)

KERAS_BATCH = 1000
NUM_PARAMS = 93_322  # the seed architecture's parameter count
VALIDATION_SPLIT = 0.1  # the seed's held-out share (Keras takes the last 10% of the data)


def build_model():
    """The seed's architecture exactly: three convolutions, two max-pools, two dense layers."""
    keras = require("keras")
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=IMAGE_SHAPE, name="image"),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
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
        model = keras.models.load_model(path, safe_mode=True)
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


def _seed_everything(seed: int) -> None:
    tf = require("tensorflow")
    keras = require("keras")
    keras.utils.set_random_seed(seed)
    # Same seed, same weights: deterministic kernels cost little on this small CNN.
    tf.config.experimental.enable_op_determinism()


def train(
    data: Mnist | Path | None,
    artifacts: Path,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = DEFAULT_SEED,
    limit: int | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    schedule: str = "constant",
    overwrite: bool = False,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> TrainResult:
    """Train the seed CNN as the seed does (Adam, 10% held out); save model.keras, train.json.

    `on_epoch` gets each epoch's figures; `on_step(epoch, step, steps)` each batch's end.
    """
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
    _seed_everything(seed)

    x_train, y_train = mnist.x_train, mnist.y_train
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    if len(x_train) < 10:
        raise MnistEdgeError(f"Invalid limit {limit}: need at least 10 training images.")

    model = build_model()
    if schedule == "cosine":
        # Decays to zero over the whole run: a larger start rate, and the last steps fine-tune.
        total = epochs * -(-int(len(x_train) * (1 - VALIDATION_SPLIT)) // batch_size)
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, total)
    else:
        rate = learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history: list[EpochStats] = []

    steps = -(-int(len(x_train) * (1 - VALIDATION_SPLIT)) // batch_size)

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
        versions=library_versions("tensorflow", "keras", "numpy"),
    )
    write_files_atomic(
        {model_path: model_bytes, artifacts / TRAIN_JSON: json_bytes(record_payload(result))}
    )
    return result
