"""Classify what a user has: PNG/JPEG files, folders of them, or .npy arrays, with any export.

A bad input (empty, not an image, too large, blank) becomes a Prediction with an error; the
others are still classified.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.options import DEFAULT_TOP
from mnist_edge.preprocess import (
    ARRAY_SUFFIX,
    IMAGE_SUFFIXES,
    preprocess_digit,
    read_array,
    read_image,
)
from mnist_edge.runtimes import open_runner
from mnist_edge.tensors import NUM_CLASSES


@dataclass(frozen=True)
class Candidate:
    """One class and the model's probability for it."""

    digit: int
    probability: float


@dataclass(frozen=True)
class Prediction:
    """One input image: its class, probability and top candidates, or why it was skipped."""

    file: str
    digit: int | None = None
    probability: float | None = None
    top: list[Candidate] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class PredictResult:
    """Every input's prediction, in input order; true when none was skipped."""

    model: str
    runtime: str
    kernels: str
    predictions: list[Prediction]

    @property
    def skipped(self) -> list[Prediction]:
        """The inputs that could not be classified."""
        return [p for p in self.predictions if p.error is not None]

    def __bool__(self) -> bool:
        return not self.skipped


def collect_inputs(inputs: Iterable[Path | str]) -> list[Path]:
    """The files to classify: each file as given, each folder's PNG/JPEG files sorted by name."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                raise MnistEdgeError(
                    f"{path}: no {', '.join(IMAGE_SUFFIXES)} files in this folder "
                    "(folders are not searched recursively)."
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise MnistEdgeError(f"{path}: no such file or folder.")
    if not files:
        raise MnistEdgeError("Nothing to classify: pass PNG/JPEG files, folders or .npy arrays.")
    return files


def _candidates(probabilities: np.ndarray, top: int) -> list[Candidate]:
    # Stable, so equal probabilities keep argmax's order (the lower digit first).
    order = np.argsort(-probabilities, kind="stable")[:top]
    return [Candidate(int(d), round(float(probabilities[d]), 6)) for d in order]


def predict(
    inputs: Iterable[Path | str] | Path | str,
    *,
    model: Path | str,
    runtime: str | None = None,
    top: int = DEFAULT_TOP,
) -> PredictResult:
    """Classify images (files, folders) and .npy arrays with any export; bad inputs are skipped."""
    if not 1 <= top <= NUM_CLASSES:
        raise MnistEdgeError(f"Invalid top {top}: expected 1 to {NUM_CLASSES}.")
    if runtime == "all":
        raise MnistEdgeError("predict runs one runtime; `all` is for verify and bench.")
    model = Path(model)
    if not model.is_file():
        raise ModelError(
            f"{model}: no such model file; pass --model, or run `mnist-edge export --int8`."
        )
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files = collect_inputs(inputs)
    # The model first: a wrong model or a missing extra fails before any image is decoded.
    runner = open_runner(model, runtime)

    # (name, image or None, why it was skipped or None), in input order
    entries: list[tuple[str, np.ndarray | None, str | None]] = []
    for path in files:
        try:
            if path.suffix.lower() == ARRAY_SUFFIX:
                array = read_array(path)
                entries.extend((f"{path}[{i}]", image, None) for i, image in enumerate(array))
            else:
                entries.append((str(path), preprocess_digit(read_image(path)), None))
        except MnistEdgeError as exc:
            entries.append((str(path), None, str(exc)))

    valid = [image for _, image, _ in entries if image is not None]
    outputs = iter(runner.predict(np.stack(valid)[..., np.newaxis]) if valid else ())
    predictions = []
    for name, image, error in entries:
        if image is None:
            predictions.append(Prediction(file=name, error=error))
            continue
        candidates = _candidates(next(outputs), top)
        predictions.append(
            Prediction(
                file=name,
                digit=candidates[0].digit,
                probability=candidates[0].probability,
                top=candidates,
            )
        )
    return PredictResult(
        model=str(model), runtime=runner.runtime, kernels=runner.kernels, predictions=predictions
    )
