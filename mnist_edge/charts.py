"""Figures for people: matplotlib charts rendered to PNG bytes, from the typed records only."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from mnist_edge.deps import require
from mnist_edge.tensors import NUM_CLASSES

if TYPE_CHECKING:
    from mnist_edge.records import BenchRow, EpochStats

DPI = 110


def _pyplot():
    matplotlib = require("matplotlib")
    # No display here or on a CI box: the file-only backend, chosen before pyplot loads.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    # Fixed metadata: the same figures give the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    fig.clf()
    return buffer.getvalue()


def training_curves(history: list[EpochStats]) -> bytes:
    """Loss and accuracy per epoch, training and validation (from train.json's history)."""
    plt = _pyplot()
    epochs = [h.epoch for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, title in ((loss_ax, "loss", "Loss"), (acc_ax, "accuracy", "Accuracy")):
        ax.plot(epochs, [getattr(h, key) for h in history], "o-", label="train")
        ax.plot(epochs, [getattr(h, f"val_{key}") for h in history], "s--", label="validation")
        ax.set(title=title, xlabel="epoch", xticks=epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def confusion_matrices(matrices: dict[str, list[list[int]]]) -> bytes:
    """Confusion matrices side by side (rows: true label, columns: predicted class)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.3), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        counts = np.array(matrix)
        # Log scale so the few errors show beside the ~1,000 correct per class.
        ax.imshow(np.log1p(counts), cmap="Blues")
        for (i, j), value in np.ndenumerate(counts):
            if value:
                color = "white" if i == j else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
        ax.set(
            title=name,
            xlabel="predicted",
            ylabel="true",
            xticks=range(NUM_CLASSES),
            yticks=range(NUM_CLASSES),
        )
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def per_class_accuracy(series: dict[str, list[float]]) -> bytes:
    """Per-class accuracy of each model, grouped by digit."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(NUM_CLASSES) + k * width - 0.4 + width / 2, values, width, label=name)
    low = min(min(v) for v in series.values())
    ax.set(
        xlabel="digit",
        ylabel="accuracy",
        xticks=range(NUM_CLASSES),
        ylim=(max(0.0, low - 0.01), 1.0),
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def bench_chart(results: list[BenchRow]) -> bytes:
    """Single-image p50 latency per export and runtime; throughput by batch size beside it."""
    plt = _pyplot()
    fig, (lat_ax, thr_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    singles = {}
    for r in results:
        singles.setdefault(f"{r.artifact}\n{r.runtime} ×{r.threads}", r.p50_us)
    names = list(singles)
    lat_ax.barh(names, [singles[n] for n in names], color="tab:blue")
    lat_ax.set(title="Single-image latency, p50 (µs)")
    lat_ax.invert_yaxis()
    lat_ax.tick_params(axis="y", labelsize=7)
    lat_ax.grid(axis="x", alpha=0.3)
    series: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        key = f"{r.artifact} {r.runtime} ×{r.threads}"
        series.setdefault(key, []).append((r.batch_size, r.throughput_ips))
    for key, points in series.items():
        points = sorted(set(points))
        thr_ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=key)
    thr_ax.set(title="Throughput (images/s)", xlabel="batch size", xscale="log", yscale="log")
    thr_ax.grid(alpha=0.3)
    thr_ax.legend(fontsize=6)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def digits(images: np.ndarray, captions: list[str], per_row: int = 10) -> bytes:
    """MNIST digits (uint8 N×28×28) in a grid, each with its caption beneath."""
    plt = _pyplot()
    rows = -(-len(images) // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 1.1, rows * 1.35), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def layer_chart(rows: dict[str, list[tuple[str, int]]]) -> bytes:
    """Where each firmware's instructions go: one stacked bar per configuration, one segment
    per layer (TFLM's operators, the C engine's steps), in millions of instructions."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.55 * len(rows)))
    cmap = plt.get_cmap("tab20")
    for y, layers in enumerate(rows.values()):
        left = 0.0
        for k, (name, instructions) in enumerate(layers):
            width = instructions / 1e6
            ax.barh(y, width, left=left, color=cmap(k % 20), edgecolor="white")
            if width > 0.25:  # only segments wide enough to hold their name
                ax.text(left + width / 2, y, name, ha="center", va="center", fontsize=6)
            left += width
    ax.set(
        yticks=range(len(rows)),
        yticklabels=list(rows),
        xlabel="instructions per inference (millions), by layer",
    )
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def search_chart(
    trials: list[tuple[int, float, bool]],
    front: list[tuple[int, float]],
    max_flash: int | None,
    min_accuracy: float | None,
) -> bytes:
    """A search's trials as accuracy against engine flash (feasible filled, infeasible hollow),
    its feasible Pareto front as a step line, and the budgets as dashed lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for feasible, style in ((True, {"color": "C0"}), (False, {"facecolors": "none"})):
        chosen = [(f, a) for f, a, ok in trials if ok is feasible]
        if chosen:
            flash, accuracy = zip(*chosen, strict=True)
            label = "feasible" if feasible else "infeasible"
            ax.scatter(flash, [100 * a for a in accuracy], label=label, edgecolors="C0", **style)
    if front:
        flash, accuracy = zip(*sorted(front), strict=True)
        ax.step(flash, [100 * a for a in accuracy], where="post", color="C1", label="front")
    if max_flash:
        ax.axvline(max_flash, color="C3", linestyle="--", label="flash budget")
    if min_accuracy:
        ax.axhline(100 * min_accuracy, color="C3", linestyle=":", label="accuracy floor")
    ax.set_xlabel("engine flash (code + constants), bytes")
    ax.set_ylabel("int8 accuracy, held-out images (%)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)
