"""Comparison is numpy only: accuracy first (the task metric decides), output error second.

Polygraphy's comparator and ai-edge-quantizer's validation import no framework; neither does
this module. Tolerances are named here, once.
"""

from __future__ import annotations

import numpy as np

from mnist_edge.options import DEFAULT_TOLERANCE_PP
from mnist_edge.records import Agreement, CrossAgreement, Disagreement
from mnist_edge.tensors import NUM_CLASSES

# Tolerances: one table, named. verify fails an export whose accuracy falls more than
# `accuracy_drop_pp` percentage points below Keras' (the default of verify's --tolerance).
# Positions of differing images kept in an Agreement: enough to find them, not a copy of the set.
MAX_MISMATCHES = 100

TOLERANCES = {
    "accuracy_drop_pp": DEFAULT_TOLERANCE_PP,
}


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of raw or dequantized outputs (dequantizing is monotonic: same argmax)."""
    return float(np.mean(outputs.argmax(axis=1) == labels)) if len(labels) else 0.0


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """10×10 counts: row = true label, column = predicted class."""
    flat = labels.astype(np.int64) * NUM_CLASSES + predicted.astype(np.int64)
    return np.bincount(flat, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    """Recall of each class from a confusion matrix (0 for a class absent from the labels)."""
    totals = confusion.sum(axis=1)
    return [
        round(float(confusion[c, c] / totals[c]), 6) if totals[c] else 0.0
        for c in range(NUM_CLASSES)
    ]


def compare(reference: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, agreement with the reference's classes, and output error (float outputs).

    Output error is of the kind STM32Cube.AI's validation reports: mean cosine similarity of the
    probability vectors, mean and max absolute error, and the L2 relative error ||P-R|| / ||R||.
    """
    predicted = probabilities.argmax(axis=1)
    p = probabilities.astype(np.float64)
    r = reference.astype(np.float64)
    diff = np.abs(p - r)
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1)
    cosine = np.sum(p * r, axis=1) / np.where(norms == 0, 1.0, norms)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "agreement": float(np.mean(predicted == reference.argmax(axis=1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cosine_similarity": float(cosine.mean()),
        "l2_relative_error": float(np.linalg.norm(p - r) / max(np.linalg.norm(r), 1e-12)),
    }


def bit_agreement(a: str, b: str, x: np.ndarray, y: np.ndarray) -> Agreement:
    """How closely two runtimes' raw outputs match: bit-identical rows, same class, largest gap,
    and where they differ. The one comparison every device stage uses (bundle, firmware, the
    platform proofs)."""
    diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
    identical = np.all(x == y, axis=1) if len(x) else np.zeros(0, dtype=bool)
    return Agreement(
        a=a,
        b=b,
        images=len(x),
        bit_identical=int(identical.sum()),
        same_class=int(np.sum(x.argmax(axis=1) == y.argmax(axis=1))) if len(x) else 0,
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        mismatches=[int(i) for i in np.flatnonzero(~identical)[:MAX_MISMATCHES]],
    )


def disagreements(
    reference: np.ndarray, probabilities: np.ndarray, labels: np.ndarray
) -> list[Disagreement]:
    """Every test image on which the export's class differs from the reference's."""
    keras, export = reference.argmax(axis=1), probabilities.argmax(axis=1)
    return [
        Disagreement(int(i), int(labels[i]), int(keras[i]), int(export[i]))
        for i in np.flatnonzero(keras != export)
    ]


def cross_agreement(predictions: dict[str, np.ndarray]) -> CrossAgreement:
    """Share of images on which each pair of models predicts the same class."""
    names = list(predictions)
    matrix = [
        [round(float(np.mean(predictions[a] == predictions[b])), 6) for b in names] for a in names
    ]
    return CrossAgreement(names, matrix)
