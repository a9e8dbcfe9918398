"""compare: accuracy, agreement, output error and bit identity, numpy only."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge.compare import (
    TOLERANCES,
    accuracy,
    bit_agreement,
    compare,
    confusion_matrix,
    cross_agreement,
    disagreements,
    per_class_accuracy,
)
from mnist_edge.options import DEFAULT_TOLERANCE_PP


def one_hot(classes, n=10, value=1.0):
    out = np.zeros((len(classes), n), np.float32)
    out[np.arange(len(classes)), classes] = value
    return out


def test_compare_on_known_outputs():
    labels = np.array([0, 1, 2, 3])
    reference = one_hot([0, 1, 2, 2])
    export = one_hot([0, 1, 2, 3])
    metrics = compare(reference, export, labels)
    assert metrics["accuracy"] == 1.0 and metrics["agreement"] == 0.75
    assert metrics["max_abs_diff"] == 1.0
    assert metrics["mean_abs_diff"] == pytest.approx(2 / 40)
    assert metrics["cosine_similarity"] == pytest.approx(0.75)
    assert metrics["l2_relative_error"] == pytest.approx(np.sqrt(2) / 2)
    assert accuracy(reference, labels) == 0.75


def test_bit_agreement_counts_identical_rows_classes_and_the_largest_gap():
    x = np.array([[5, -128], [7, 1], [0, 3]], np.int8)
    y = np.array([[5, -128], [7, 2], [4, 3]], np.int8)
    agreement = bit_agreement("tflm", "litert", x, y)
    assert (agreement.images, agreement.bit_identical, agreement.same_class) == (3, 1, 2)
    assert agreement.max_abs_diff == 4.0  # int8 steps, computed without wrapping


def test_confusion_per_class_and_disagreements():
    labels = np.array([0, 0, 1, 9])
    predicted = np.array([0, 1, 1, 9])
    confusion = confusion_matrix(labels, predicted)
    assert confusion.sum() == 4 and confusion[0, 1] == 1 and confusion[9, 9] == 1
    recall = per_class_accuracy(confusion)
    assert recall[0] == 0.5 and recall[1] == 1.0 and recall[5] == 0.0
    found = disagreements(one_hot([0, 0, 1, 9]), one_hot(predicted), labels)
    assert [(d.index, d.label, d.keras, d.export) for d in found] == [(1, 0, 0, 1)]


def test_cross_agreement_is_symmetric_with_ones_on_the_diagonal():
    matrix = cross_agreement({"a": np.array([1, 2, 3]), "b": np.array([1, 2, 0])})
    assert matrix.models == ["a", "b"]
    assert matrix.matrix == [
        [1.0, pytest.approx(2 / 3, abs=1e-6)],
        [pytest.approx(2 / 3, abs=1e-6), 1.0],
    ]


def test_tolerances_are_one_named_table():
    assert TOLERANCES["accuracy_drop_pp"] == DEFAULT_TOLERANCE_PP == 0.5


def test_compare_is_plain_numpy():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    out = np.array([[0.7, 0.3], [0.6, 0.4], [0.6, 0.4]], np.float32)
    metrics = compare(ref, out, labels=np.array([0, 1, 1]))
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["agreement"] == pytest.approx(2 / 3)
    assert metrics["max_abs_diff"] == pytest.approx(0.4)


def test_confusion_and_per_class():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 2, 0])
    confusion = confusion_matrix(labels, predicted)
    assert confusion.sum() == 6 and confusion[0, 1] == 1 and confusion[2, 2] == 2
    assert per_class_accuracy(confusion)[:4] == [0.5, 1.0, pytest.approx(2 / 3, abs=1e-6), 0.0]


def test_cross_agreement_matrix():
    cross = cross_agreement({"a": np.array([1, 2, 3, 4]), "b": np.array([1, 2, 0, 4])})
    assert cross.models == ["a", "b"]
    assert cross.matrix == [[1.0, 0.75], [0.75, 1.0]]
