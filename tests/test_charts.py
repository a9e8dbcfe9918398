"""charts: PNG figures from typed records, the same bytes for the same figures."""

from __future__ import annotations

import pytest

from mnist_edge.records import EpochStats
from tests.helpers import need_module

need_module("matplotlib", "report")

from mnist_edge import charts  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_charts_are_png_and_reproducible():
    history = [EpochStats(e, 0.5 / e, 0.9, 0.4 / e, 0.95, 1.0) for e in (1, 2)]
    first = charts.training_curves(history)
    assert first.startswith(PNG) and first == charts.training_curves(history)
    matrix = [[10 if i == j else 0 for j in range(10)] for i in range(10)]
    assert charts.confusion_matrices({"a": matrix, "b": matrix}).startswith(PNG)
    assert charts.per_class_accuracy({"a": [0.99] * 10}).startswith(PNG)


def test_layer_chart_draws_a_stacked_bar_per_configuration(monkeypatch):
    rows = {
        "cortex-m4 tflm cmsis-nn": [
            ("CONV_2D_0", 1_677_263),
            ("CONV_2D_2", 4_159_438),
            ("SOFTMAX", 9_000),
        ],
        "cortex-m4 codegen cmsis-nn": [("conv_0+maxpool_1", 559_800), ("dense_5", 120_000)],
        "cortex-m0 codegen plain-c": [("conv_0+maxpool_1", 2_400_000)],
    }
    drawn = []
    to_png = charts._png

    def inspected(fig):
        # The figure as it is saved: its bars (row, left, width), labels and segment names.
        (ax,) = fig.axes
        bars = [(p.get_y() + p.get_height() / 2, p.get_x(), p.get_width()) for p in ax.patches]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        drawn.append((bars, labels, [t.get_text() for t in ax.texts]))
        return to_png(fig)

    monkeypatch.setattr(charts, "_png", inspected)
    png = charts.layer_chart(rows)
    assert png.startswith(PNG) and png == charts.layer_chart(rows)  # reproducible
    (bars, labels, names), _ = drawn
    # A bar per configuration, in order, a segment per layer, each starting where the last ended.
    expected = []
    for y, layers in enumerate(rows.values()):
        left = 0.0
        for _, instructions in layers:
            expected.append((y, left, instructions / 1e6))
            left += instructions / 1e6
    assert len(bars) == sum(len(layers) for layers in rows.values()) == 6
    assert [pytest.approx(bar) for bar in expected] == bars
    assert labels == list(rows)
    # Segment names where they fit (over 0.25 M instructions): not SOFTMAX's nor dense_5's.
    assert names == ["CONV_2D_0", "CONV_2D_2", "conv_0+maxpool_1", "conv_0+maxpool_1"]
