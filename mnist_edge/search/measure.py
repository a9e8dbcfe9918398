"""One trial, end to end: train the architecture, export the MCU-lean int8 model the way
`export --int8` does, score it with the C engine on the host, link it (and run it in QEMU) for
the board, and judge it against the budgets. Nothing here knows Optuna."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_edge.artifacts import MCU_TFLITE, MODEL_FILE, record_payload
from mnist_edge.data import Mnist, to_float
from mnist_edge.errors import CheckFailed, DoesNotFit
from mnist_edge.files import json_bytes, sha256_bytes, write_files_atomic
from mnist_edge.model import VALIDATION_SPLIT, learning_rate_schedule
from mnist_edge.model_info import count_macs, read_model
from mnist_edge.search.records import Budgets, SearchSettings, TrialRecord
from mnist_edge.search.space import Architecture, build_keras

log = logging.getLogger(__name__)

TRIAL_JSON = "trial.json"
FIRMWARE_DIR = "firmware"
BATCH_SIZE = 128  # the fast recipe's
# The held-out images: the last 10% of the training set, as `train` holds out (Keras'
# validation_split). The study ranks by these; the test images are only reported.
HELD_OUT = int(60_000 * VALIDATION_SPLIT)


def held_out_split(mnist: Mnist, train_limit: int | None, eval_limit: int | None):
    """(training images and labels, held-out images and labels) of MNIST's training set."""
    cut = len(mnist.x_train) - HELD_OUT
    x, y = mnist.x_train[:cut], mnist.y_train[:cut]
    if train_limit is not None:
        x, y = x[:train_limit], y[:train_limit]
    held_x, held_y = mnist.x_train[cut:], mnist.y_train[cut:]
    if eval_limit is not None:
        held_x, held_y = held_x[:eval_limit], held_y[:eval_limit]
    return (x, y), (held_x, held_y)


def train_architecture(
    arch: Architecture,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    on_step: Callable[[int, int, int], None] | None = None,
):
    """The architecture trained with the fast recipe's Adam and one-cycle schedule; the model."""
    from mnist_edge.deps import require
    from mnist_edge.model import seed_everything

    keras = require("keras")
    keras.backend.clear_session()
    seed_everything(seed)
    model = build_keras(arch)
    steps = -(-len(images) // BATCH_SIZE)
    rate = learning_rate_schedule(keras, "one-cycle", arch.learning_rate, arch.epochs * steps)
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            if on_step is not None:
                on_step(self.epoch, batch + 1, steps)

    model.fit(
        to_float(images),
        labels.astype(np.int32),
        epochs=arch.epochs,
        batch_size=BATCH_SIZE,
        shuffle=True,
        verbose=0,
        callbacks=[Progress()],
    )
    return model


def _accuracy(runner, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(runner.predict(to_float(images)).argmax(axis=1) == labels))


def _violations(budgets: Budgets, accuracy: float, figures: dict) -> dict[str, float]:
    """Each budget the trial exceeds, with by how much (a figure not measured exceeds none)."""
    limits = {
        "ram": (figures.get("ram"), budgets.max_ram),
        "flash": (figures.get("flash"), budgets.max_flash),
        "instructions": (figures.get("instructions"), budgets.max_instructions),
    }
    over = {name: float(v - limit) for name, (v, limit) in limits.items() if None not in (v, limit)}
    if budgets.min_accuracy is not None:
        over["accuracy"] = budgets.min_accuracy - accuracy
    return {name: value for name, value in over.items() if value > 0}


def _on_board(model: Path, mnist: Mnist, settings: SearchSettings, folder: Path, sources):
    """The firmware's FirmwareResult, or the one-line reason the board cannot hold the model."""
    from mnist_edge.firmware import firmware

    images = settings.firmware_images
    try:
        report = firmware(
            model,
            mnist.x_test[:images],
            mnist.y_test[:images],
            cpus=[settings.board],
            kernels=["cmsis-nn"],
            engines=["codegen"],
            out=folder / FIRMWARE_DIR,
            sources=sources,
            run=settings.run,
            timeout_s=300.0 + 0.1 * images,
            # A search under a RAM budget wants the least RAM the engine can run in: the plan
            # for size (`firmware --optimise size` gives the trial's figures again).
            optimise="size",
        )
    except (CheckFailed, DoesNotFit) as exc:  # over a budget, or over the board's memory
        return None, str(exc)
    return report.results[0], ""


def measure(
    arch: Architecture,
    mnist: Mnist,
    settings: SearchSettings,
    folder: Path,
    *,
    number: int = 0,
    worker: str = "",
    sources: Path | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> TrialRecord:
    """Train, export, score and measure one architecture in `folder` (emptied first); write
    trial.json there and return the record."""
    from mnist_edge.export import export
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (x, y), (held_x, held_y) = held_out_split(mnist, settings.train_limit, settings.eval_limit)
    model = train_architecture(arch, x, y, settings.seed, on_step)
    model.save(folder / MODEL_FILE)
    # export's own road, from the saved file: `export --int8` of this model.keras later
    # writes the very same bytes.
    export(folder, mnist, formats=["tflite-int8-mcu"])
    tflite = folder / MCU_TFLITE
    runner = CodegenRunner(tflite, sources=sources)
    test_n = settings.eval_limit or len(mnist.x_test)
    accuracy = _accuracy(runner, held_x, held_y)
    test_accuracy = _accuracy(runner, mnist.x_test[:test_n], mnist.y_test[:test_n])
    result, reason = _on_board(tflite, mnist, settings, folder, sources)
    figures = {}
    if result is not None:
        figures = {
            "flash": result.flash.engine_code + result.flash.engine_constants,
            "ram": result.ram.engine_buffers + result.ram.stack,
            "instructions": result.instructions_per_inference,
        }
    data = tflite.read_bytes()
    violations = _violations(settings.budgets, accuracy, figures)
    if result is not None and result.ran and not result.passed:
        # An output unlike host TFLM's is the engine's fault, never a model worth picking.
        violations["golden"] = float(result.golden_count - result.golden_identical)
    record = TrialRecord(
        number=number,
        architecture=arch.describe(),
        spec=arch.as_dict(),
        params=int(model.count_params()),
        macs=count_macs(read_model(data, tflite.name)),
        accuracy=accuracy,
        test_accuracy=test_accuracy,
        held_out_images=len(held_x),
        test_images=test_n,
        model_sha256=sha256_bytes(data),
        tflite_bytes=len(data),
        arena_bytes=runner.generated.arena_bytes,
        fits_board=result is not None,
        flash_bytes=figures.get("flash"),
        ram_bytes=figures.get("ram"),
        stack_bytes=result.ram.stack if result is not None else None,
        harness_flash_bytes=result.flash.harness if result is not None else None,
        instructions=figures.get("instructions"),
        golden_identical=result.passed if result is not None and result.ran else None,
        violations=violations,
        reason=reason,
        worker=worker,
        folder=str(folder.resolve()),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_files_atomic({folder / TRIAL_JSON: json_bytes(record_payload(record))})
    return record
