"""The stages of the engine's program: which layers run together in one step, by which
kernel, on which buffers, and by which slices of rows.

A stage is one layer on whole tensors (LayerStage); a convolution computed by row slices,
each max-pooled at once (FusedStage); a producer streamed into a consumer through a window of
rows (StreamStage); or a convolution writing over its own input, its input rows copied into a
window just before they are overwritten (InPlaceStage). Each records its kernel and scratch
bytes once, decided here; plan.py places the buffers, emit.py writes the C from them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mnist_edge.codegen.cmsis import avgpool_scratch_bytes, conv_scratch_bytes
from mnist_edge.codegen.kernels import edge_applies, edge_scratch_bytes
from mnist_edge.codegen.layers import AveragePool2D, Conv2D, Layer, MaxPool2D, Reference

INPUT, OUTPUT = "input", "output"  # the caller's buffers


def _row_bytes(tensor) -> int:
    return tensor.shape[2] * tensor.shape[3]


@dataclass(frozen=True)
class Slice:
    """One call of a convolution computed by rows: its input rows, output rows and padding.

    `in_row` is the first input row read, relative to where the step's input starts (a whole
    tensor, or a streaming window); `pool_pad` is the pool's padding above the slice's first
    convolution row (fused only).
    """

    in_row: int
    in_rows: int
    conv_pad: int
    conv_rows: int
    pool_pad: int = 0


@dataclass(frozen=True)
class Feed:
    """Before consumer slice i of a streamed pair: drop rows from the window's top, keep the
    rest, then run producer slices first..first+count-1 to append the rows it lacks."""

    drop: int
    keep: int
    first: int
    count: int


@dataclass(frozen=True, eq=False)
class LayerStage:
    """One layer, one kernel call on its whole tensors: one step."""

    layer: Layer
    sources: tuple[str, ...]  # the buffers of layer.inputs
    target: str
    scratch: str | None
    kernel: str  # "cmsis", "edge" (kernels.h) or "reference" (reference.h)
    scratch_bytes: int = 0

    @property
    def source(self) -> str:
        return self.sources[0]

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers the stage computes, in order."""
        return (self.layer,)


@dataclass(frozen=True, eq=False)
class FusedStage:
    """A convolution by row slices, each slice max-pooled at once into one output row (or, with
    no pool, each slice one output row of the convolution itself): one step."""

    conv: Conv2D
    pool: MaxPool2D | None
    source: str
    target: str
    rows: str  # the row buffer the pool reads ("": none, the kernel pools as it goes)
    scratch: str
    slices: tuple[Slice, ...]
    kernel: str  # "cmsis" or "edge"
    scratch_bytes: int

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (self.conv,) if self.pool is None else (self.conv, self.pool)

    @property
    def output(self):
        """The tensor the stage produces (the pool's, when there is one)."""
        return (self.pool or self.conv).output


@dataclass(frozen=True, eq=False)
class StreamStage:
    """A producer writing rows into a window that a consumer reads, interleaved in one loop:
    two steps, the producer's and the consumer's."""

    producer: FusedStage
    consumer: FusedStage
    window: str
    window_rows: int
    feeds: tuple[Feed, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.producer.layers + self.consumer.layers


@dataclass(frozen=True, eq=False)
class InPlaceStage:
    """A convolution whose output overwrites its input, by rows: before each slice, the input
    rows it reads are copied into a window (feeds: copy rows first..first+count-1), so the rows
    it overwrites have been saved: one step, and the input's buffer holds the output after."""

    consumer: FusedStage  # reads the window, writes into `buffer`
    buffer: str
    window: str
    window_rows: int
    feeds: tuple[Feed, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.consumer.layers


Stage = LayerStage | FusedStage | StreamStage | InPlaceStage


def slices_of(conv: Conv2D, pool: MaxPool2D | None, rows: int = 1) -> tuple[Slice, ...]:
    """Every slice of a convolution computed by rows, in output order.

    With a pool, slice r holds the convolution rows under pooled row r's window (clipped to
    the tensor: the pool ignores padding); without, slice r is convolution rows r * rows ..
    r * rows + rows - 1 (the last slice may hold fewer).
    """
    in_h = conv.input.shape[1]
    conv_h = conv.output.shape[1]
    (kh, _), (sy, _), (dy, _), (pad_top, _) = conv.kernel, conv.stride, conv.dilation, conv.padding
    slices = []
    count = pool.output.shape[1] if pool else -(-conv_h // rows)
    for r in range(count):
        if pool:
            start = r * pool.stride[0] - pool.padding[0]
            a, b = max(start, 0), min(start + pool.window[0], conv_h)
        else:
            start = a = r * rows
            b = min(a + rows, conv_h)
        assert b > a, f"{conv.name}: slice {r} computes no row"
        top = a * sy - pad_top  # the first input row the slice's first output row reads
        lo, hi = max(top, 0), min((b - 1) * sy - pad_top + (kh - 1) * dy + 1, in_h)
        slices.append(Slice(lo, hi - lo, lo - top, b - a, a - start))
    return tuple(slices)


def scratch_of(layer: Layer, isa: str, pool: MaxPool2D | None = None, rows=None) -> tuple[str, int]:
    """The kernel a layer (and its fused pool) runs on, and its scratch bytes on `isa`."""
    if isinstance(layer, Conv2D):
        if edge_applies(layer, pool):
            rows = rows or [layer.output.shape[1]]
            return "edge", edge_scratch_bytes(layer, pool, rows)
        return "cmsis", conv_scratch_bytes(layer, isa)
    if isinstance(layer, AveragePool2D):
        return "cmsis", avgpool_scratch_bytes(layer, isa)
    if isinstance(layer, Reference):
        return "reference", 0  # TFLM's reference kernels work in place of nothing
    return "cmsis", 0


def fused_stage(
    conv: Conv2D, pool: MaxPool2D | None, source: str, target: str, isa: str, rows: int = 1
) -> FusedStage:
    slices = slices_of(conv, pool, rows)
    kernel, scratch = scratch_of(conv, isa, pool, [s.conv_rows for s in slices])
    buffer = f"{conv.name}_rows" if pool is not None and kernel != "edge" else ""
    return FusedStage(
        conv, pool, source, target, buffer, f"{conv.name}_scratch", slices, kernel, scratch
    )


def in_place_rows(conv: Conv2D) -> int:
    """Output rows per slice of an in-place convolution: one, but for a 1×1 convolution enough
    rows for 16 pixels a call, in fours (CMSIS-NN's 1×1 kernel multiplies four pixels at once;
    a call of one short row runs mostly its leftover path)."""
    if conv.kernel != (1, 1) or conv.stride != (1, 1):
        return 1
    width = conv.output.shape[2]
    rows = max(1, -(-16 // width))
    while (rows * width) % 4 and rows < 4:
        rows += 1
    return min(rows, conv.output.shape[1])


def _as_fused(stage: Stage, isa: str) -> FusedStage | None:
    """A convolution stage in its by-rows form, or None if it is not a convolution."""
    if isinstance(stage, FusedStage):
        return stage
    if isinstance(stage, LayerStage) and isinstance(stage.layer, Conv2D):
        return fused_stage(stage.layer, None, stage.source, stage.target, isa)
    return None


def streamed(
    stages: list[Stage], readers: dict[str, set[str]], isa: str, edge_only: bool = False
) -> list[Stage]:
    """Pair each convolution stage whose output only feeds the next convolution into a
    stream (with `edge_only`, only where both run mnist-edge's own kernel)."""
    result: list[Stage] = []
    i = 0
    while i < len(stages):
        producer = _as_fused(stages[i], isa)
        consumer = _as_fused(stages[i + 1], isa) if i + 1 < len(stages) else None
        if (
            producer is None
            or consumer is None
            or producer.target in (INPUT, OUTPUT)
            or consumer.source != producer.target
            or readers.get(producer.target) != {consumer.conv.name}
            or (edge_only and not producer.kernel == consumer.kernel == "edge")
        ):
            result.append(stages[i])
            i += 1
            continue
        result.append(_stream(producer, consumer))
        i += 2
    return result


def _window_feeds(
    consumer_slices: tuple[Slice, ...],
) -> tuple[list[Feed], list[Slice], int]:
    """The feeding schedule of a window of producer rows that a consumer's slices read in
    turn: the feeds, the consumer's slices relative to the window, the window's rows."""
    needed = [(s.in_row, s.in_row + s.in_rows) for s in consumer_slices]
    window_rows = max(hi - lo for lo, hi in needed)
    feeds, slices = [], []
    have_lo = have_hi = 0  # the producer rows the window holds: [have_lo, have_hi)
    for (lo, hi), piece in zip(needed, consumer_slices, strict=True):
        assert lo >= have_lo and hi >= have_hi, "a consumer slice went back up the tensor"
        keep_from = min(lo, have_hi)
        first = max(have_hi, lo)
        feeds.append(Feed(keep_from - have_lo, have_hi - keep_from, first, hi - first))
        have_lo, have_hi = lo, hi
        slices.append(Slice(0, piece.in_rows, piece.conv_pad, piece.conv_rows, piece.pool_pad))
    return feeds, slices, window_rows


def copy_feeds(conv: Conv2D, slices: tuple[Slice, ...]):
    """The feeds of an in-place convolution, or None if some slice would write over input
    rows not yet copied into the window: what slices 0..i write must lie within the input
    rows already copied (or every row has been)."""
    if conv.input.dtype != "int8":
        return None
    feeds, _, _ = _window_feeds(slices)
    in_row, out_row = _row_bytes(conv.input), _row_bytes(conv.output)
    last_needed = max(s.in_row + s.in_rows for s in slices)
    copied = written = 0
    for piece, feed in zip(slices, feeds, strict=True):
        copied = max(copied, feed.first + feed.count)
        written += piece.conv_rows
        if copied < last_needed and written * out_row > copied * in_row:
            return None
    return feeds


def in_place_stage(fused: FusedStage) -> InPlaceStage:
    """A convolution writing over its input: each input row is copied into a window just
    before the slice that overwrites it, and read from there."""
    feeds, slices, window_rows = _window_feeds(fused.slices)
    assert copy_feeds(fused.conv, fused.slices) is not None, "unsafe in-place convolution"
    window = f"{fused.conv.name}_window"
    consumer = replace(fused, source=window, slices=tuple(slices))
    return InPlaceStage(consumer, fused.source, window, window_rows, tuple(feeds))


def _stream(producer: FusedStage, consumer: FusedStage) -> StreamStage:
    """The window and the feeding schedule of a producer streamed into a consumer."""
    window = f"{producer.target.removesuffix('_out')}_window"
    feeds, slices, window_rows = _window_feeds(consumer.slices)
    # Producer slices are independent (each reads the producer's whole input), so rows no
    # consumer slice needs (a stride taller than the window) are simply never produced.
    assert all(f.keep + f.count == n.in_rows for f, n in zip(feeds, slices, strict=True))
    return StreamStage(
        replace(producer, target=window),
        replace(consumer, source=window, slices=tuple(slices)),
        window,
        window_rows,
        tuple(feeds),
    )
