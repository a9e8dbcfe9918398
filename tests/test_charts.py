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


def test_layer_chart_is_a_png_with_a_bar_per_configuration():
    from mnist_edge import charts

    rows = {
        "cortex-m4 tflm cmsis-nn": [("CONV_2D_0", 1_677_263), ("CONV_2D_2", 4_159_438)],
        "cortex-m4 codegen cmsis-nn": [("conv_0+maxpool_1", 559_800)],
    }
    png = charts.layer_chart(rows)
    assert png.startswith(b"\x89PNG") and png == charts.layer_chart(rows)  # reproducible
