"""charts: PNG figures from typed records, the same bytes for the same figures."""

from __future__ import annotations

import pytest

from mnist_edge.records import EpochStats

pytest.importorskip("matplotlib")

from mnist_edge import charts  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_charts_are_png_and_reproducible():
    history = [EpochStats(e, 0.5 / e, 0.9, 0.4 / e, 0.95, 1.0) for e in (1, 2)]
    first = charts.training_curves(history)
    assert first.startswith(PNG) and first == charts.training_curves(history)
    matrix = [[10 if i == j else 0 for j in range(10)] for i in range(10)]
    assert charts.confusion_matrices({"a": matrix, "b": matrix}).startswith(PNG)
    assert charts.per_class_accuracy({"a": [0.99] * 10}).startswith(PNG)
