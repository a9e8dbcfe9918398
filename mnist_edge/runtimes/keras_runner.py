"""The original Keras model, called directly or through model.predict (the baselines)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mnist_edge.deps import require
from mnist_edge.runtimes.base import Runner
from mnist_edge.tensors import IMAGE_SHAPE, NUM_CLASSES, TensorSpec


class KerasRunner(Runner):
    """The original Keras model, called directly (no fit/predict loop overhead)."""

    engine = "Keras"

    def __init__(self, path: Path, threads: int = 1, use_predict: bool = False):
        super().__init__(path, threads)
        from mnist_edge.model import load_keras_model

        tf = require("tensorflow")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already started in this process; its thread pools are fixed now.
        # Record what TensorFlow really uses (0 means one thread per core).
        self.threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
        self._model = load_keras_model(self.path)
        # model.predict is what most Keras code calls; the direct call skips its loop machinery.
        self.use_predict = use_predict
        self.runtime = "keras-predict" if use_predict else "keras"
        self.input = TensorSpec("image", (-1, *IMAGE_SHAPE), "float32")
        self.output = TensorSpec("probabilities", (-1, NUM_CLASSES), "float32")
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None

    @property
    def model(self):
        """The underlying Keras model (its layers give the MAC count)."""
        return self._model

    def set_batch(self, n: int) -> None:
        pass

    def feed_raw(self, x: np.ndarray) -> None:
        self._x = x

    def invoke(self) -> None:
        if self.use_predict:
            self._y = self._model.predict(self._x, batch_size=len(self._x), verbose=0)
        else:
            self._y = self._model(self._x, training=False)

    def fetch_raw(self) -> np.ndarray:
        return np.asarray(self._y, dtype=np.float32)
