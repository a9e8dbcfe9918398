"""The static memory plan: which bytes of one arena hold what, during which steps.

The caller owns the model's input and output (the engine reads and writes them in place), so
the arena holds the intermediate tensors, the convolutions' im2col scratch, and the small row
buffers of fused layers; a convolution on mnist-edge's own kernel (kernels.py) has its columns
as scratch and no row buffer (it pools as it goes). Three levels, each a valid plan on its own:

- `layers`: one CMSIS-NN call per layer, every intermediate tensor stored whole.
- `fused`: each convolution computes its output in slices of the following max-pool's window
  height into a row buffer, and the pool turns each slice into one pooled row at once: the
  pre-pool tensor never exists.
- `streamed` (the default): a fused convolution feeding another convolution writes its pooled
  rows into a sliding window just tall enough for one slice of the consumer, instead of into a
  whole tensor; the consumer's loop asks the producer for the rows it lacks.

The program is a list of stages: one step each (a layer's call, or a fused slice loop), or
two for a streamed pair, whose one loop runs the producer's step and the consumer's step in
turn; whatever must survive from one iteration to the next (the producer's input, the window,
the consumer's output) lives over both. Lifetimes are counted in steps. Offsets come from
first-fit placement, largest or longest-lived buffer first (the idea of TFLM's
GreedyMemoryPlanner), and the planner asserts that no two buffers alive in the same step meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mnist_edge.codegen.graph import Conv2D, Graph, Layer, MaxPool2D, Reshape
from mnist_edge.codegen.kernels import edge_applies, edge_scratch_bytes

LEVELS = ("layers", "fused", "streamed")
ALIGN = 4  # every buffer starts on a word: the scratch is int16, the arena itself 16-aligned
INPUT, OUTPUT = "input", "output"  # the caller's buffers


def conv_scratch_bytes(conv: Conv2D) -> int:
    """arm_convolve_s8_get_buffer_size, the larger of its two answers.

    Plain C and DSP: two im2col columns of int16, 2 * align4(kh*kw*cin) * 2 bytes; Helium:
    four int8 columns padded to 16. The plan must hold on either, so it takes the larger.
    """
    kh, kw = conv.kernel
    columns = kh * kw * conv.input.shape[3]
    scalar = 2 * (-(-columns // 4) * 4) * 2
    helium = 4 * (-(-columns // 16) * 16)
    return max(scalar, helium)


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
    """One layer, one CMSIS-NN call, its whole input and output: one step."""

    layer: Layer
    source: str
    target: str
    scratch: str | None = None

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
    rows: str
    scratch: str
    slices: tuple[Slice, ...]

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


Stage = LayerStage | FusedStage | StreamStage


@dataclass(frozen=True)
class PlanRow:
    """One buffer of the plan, as a table prints it; offset None: the caller's buffer."""

    buffer: str
    offset: int | None
    bytes: int
    first_step: int
    last_step: int
    holds: str


@dataclass(frozen=True)
class Step:
    """One step of the timeline: its number and what runs in it."""

    index: int
    label: str


@dataclass(frozen=True, eq=False)
class MemoryPlan:
    """Where every buffer lives in the arena and when, and the program that uses them."""

    level: str
    stages: tuple[Stage, ...]
    steps: tuple[Step, ...]
    buffers: tuple[PlanRow, ...]
    peak_bytes: int  # the arena: the end of the highest buffer
    lower_bound_bytes: int  # max over layers of input + output + scratch, one call per layer

    def rows(self) -> list[PlanRow]:
        """Every buffer by offset (the caller's first), for printing."""
        return sorted(self.buffers, key=lambda r: (r.offset is not None, r.offset or 0, r.buffer))

    def offset(self, name: str) -> int | None:
        """A buffer's offset in the arena (None for the caller's input and output)."""
        return next(r.offset for r in self.buffers if r.buffer == name)


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _slices(conv: Conv2D, pool: MaxPool2D | None) -> tuple[Slice, ...]:
    """Every slice of a convolution computed by rows, in output order.

    With a pool, slice r holds the convolution rows under pooled row r's window (clipped to
    the tensor: the pool ignores padding); without, slice r is convolution row r alone.
    """
    in_h = conv.input.shape[1]
    conv_h = conv.output.shape[1]
    (kh, _), (sy, _), (dy, _), (pad_top, _) = conv.kernel, conv.stride, conv.dilation, conv.padding
    slices = []
    count = pool.output.shape[1] if pool else conv_h
    for r in range(count):
        if pool:
            start = r * pool.stride[0] - pool.padding[0]
            a, b = max(start, 0), min(start + pool.window[0], conv_h)
        else:
            start, a, b = r, r, r + 1
        assert b > a, f"{conv.name}: slice {r} computes no row"
        top = a * sy - pad_top  # the first input row the slice's first output row reads
        lo, hi = max(top, 0), min((b - 1) * sy - pad_top + (kh - 1) * dy + 1, in_h)
        slices.append(Slice(lo, hi - lo, lo - top, b - a, a - start))
    return tuple(slices)


def lower_bound(graph: Graph) -> int:
    """The least arena a one-call-per-layer engine needs: max over layers of input + output +
    scratch, counting neither the caller's input nor its output (they are not in the arena)."""
    names = _buffer_names(graph)
    best = 0
    for layer in graph.layers:
        if isinstance(layer, Reshape):
            continue
        held = [t for t in (layer.input, layer.output) if names[t.index] not in (INPUT, OUTPUT)]
        scratch = conv_scratch_bytes(layer) if isinstance(layer, Conv2D) else 0
        best = max(best, sum(t.nbytes for t in held) + scratch)
    return best


def _buffer_names(graph: Graph) -> dict[int, str]:
    """Tensor index -> the buffer holding it: a reshape's output is its input's bytes."""
    names = {graph.input.index: INPUT}
    for layer in graph.layers:
        if isinstance(layer, Reshape):
            names[layer.output.index] = names[layer.input.index]
        else:
            names[layer.output.index] = f"{layer.name}_out"
    final = names[graph.output.index]
    # The last computed tensor goes straight to the caller's output, through any reshapes.
    return {k: OUTPUT if v == final else v for k, v in names.items()}


def _stages(graph: Graph, level: str) -> list[Stage]:
    names = _buffer_names(graph)
    layers = [layer for layer in graph.layers if not isinstance(layer, Reshape)]
    stages: list[Stage] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        source, target = names[layer.input.index], names[layer.output.index]
        pool = layers[i + 1] if i + 1 < len(layers) else None
        if level != "layers" and isinstance(layer, Conv2D) and isinstance(pool, MaxPool2D):
            stages.append(
                FusedStage(
                    layer,
                    pool,
                    source,
                    names[pool.output.index],
                    rows=f"{layer.name}_rows",
                    scratch=f"{layer.name}_scratch",
                    slices=_slices(layer, pool),
                )
            )
            i += 2
            continue
        scratch = f"{layer.name}_scratch" if isinstance(layer, Conv2D) else None
        stages.append(LayerStage(layer, source, target, scratch))
        i += 1
    return _streamed(stages) if level == "streamed" else stages


def _as_fused(stage: Stage) -> FusedStage | None:
    """A convolution stage in its by-rows form, or None if it is not a convolution."""
    if isinstance(stage, FusedStage):
        return stage
    if isinstance(stage, LayerStage) and isinstance(stage.layer, Conv2D):
        conv = stage.layer
        # No pool: each slice is one output row, written in place (no row buffer).
        return FusedStage(
            conv, None, stage.source, stage.target, "", stage.scratch or "", _slices(conv, None)
        )
    return None


def _streamed(stages: list[Stage]) -> list[Stage]:
    """Pair each convolution stage whose output feeds another convolution into a stream."""
    result: list[Stage] = []
    i = 0
    while i < len(stages):
        producer = _as_fused(stages[i])
        consumer = _as_fused(stages[i + 1]) if i + 1 < len(stages) else None
        if producer is None or consumer is None or producer.target in (INPUT, OUTPUT):
            result.append(stages[i])
            i += 1
            continue
        result.append(_stream(producer, consumer))
        i += 2
    return result


def _stream(producer: FusedStage, consumer: FusedStage) -> StreamStage:
    """The window and the feeding schedule of a producer streamed into a consumer."""
    window = f"{producer.target.removesuffix('_out')}_window"
    needed = [(s.in_row, s.in_row + s.in_rows) for s in consumer.slices]
    window_rows = max(hi - lo for lo, hi in needed)
    feeds, slices = [], []
    have_lo = have_hi = 0  # the producer rows the window holds: [have_lo, have_hi)
    for (lo, hi), piece in zip(needed, consumer.slices, strict=True):
        assert lo >= have_lo and hi >= have_hi, "a consumer slice went back up the tensor"
        keep_from = min(lo, have_hi)
        first = max(have_hi, lo)
        feeds.append(Feed(keep_from - have_lo, have_hi - keep_from, first, hi - first))
        have_lo, have_hi = lo, hi
        slices.append(Slice(0, piece.in_rows, piece.conv_pad, piece.conv_rows, piece.pool_pad))
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


@dataclass
class _Timeline:
    """Buffers and the steps each is alive in, collected while walking the stages."""

    sizes: dict[str, int] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)
    life: dict[str, tuple[int, int]] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)  # what runs in each

    def use(self, name: str, nbytes: int, holds: str, first: int, last: int) -> None:
        self.sizes[name] = max(self.sizes.get(name, 0), nbytes)
        self.holds.setdefault(name, holds)
        old = self.life.get(name, (first, last))
        self.life[name] = (min(old[0], first), max(old[1], last))


def _tensor(t: _Timeline, name: str, tensor, what: str, first: int, last: int) -> None:
    t.use(name, tensor.nbytes, f"{what} {tensor.dims()}", first, last)


def _row_bytes(tensor) -> int:
    return tensor.shape[2] * tensor.shape[3]


def _fused_temps(t: _Timeline, stage: FusedStage, k: int) -> None:
    """A fused stage's row buffer and scratch: alive in its one step, k. mnist-edge's own
    kernel (kernels.h) pools as it goes: columns in its scratch, no row buffer."""
    conv = stage.conv
    if edge_applies(conv, stage.pool):
        rows = [s.conv_rows for s in stage.slices]
        size = edge_scratch_bytes(conv, stage.pool, rows)
        t.use(stage.scratch, size, f"{conv.name} columns", k, k)
        return
    if stage.pool is not None:
        most = max(s.conv_rows for s in stage.slices)
        what = f"{most} of {conv.name}'s {conv.output.dims()} rows"
        t.use(stage.rows, most * _row_bytes(conv.output), what, k, k)
    t.use(stage.scratch, conv_scratch_bytes(conv), f"{conv.name} im2col scratch", k, k)


def _layer_scratch(conv: Conv2D) -> tuple[int, str]:
    """A convolution's scratch when it runs alone, on its whole tensors: bytes, and what."""
    if edge_applies(conv, None):
        return edge_scratch_bytes(conv, None, [conv.output.shape[1]]), f"{conv.name} columns"
    return conv_scratch_bytes(conv), f"{conv.name} im2col scratch"


def _walk(stages: list[Stage]) -> _Timeline:
    """Every buffer's size, content and life (first and last step), stage by stage."""
    t = _Timeline()
    for stage in stages:
        k = len(t.steps)
        if isinstance(stage, StreamStage):
            _walk_stream(t, stage, k)
            continue
        label = "+".join(x.name for x in stage.layers)
        if isinstance(stage, FusedStage):
            label += f" in {len(stage.slices)} slices"
            _fused_temps(t, stage, k)
        elif stage.scratch:
            t.use(stage.scratch, *_layer_scratch(stage.layer), k, k)
        t.steps.append(label)
        first, last = stage.layers[0], stage.layers[-1]
        _tensor(t, stage.source, first.input, f"{first.name} input", k, k)
        _tensor(t, stage.target, last.output, f"{last.name} output", k, k)
    return t


def _walk_stream(t: _Timeline, stage: StreamStage, k: int) -> None:
    """A streamed pair: its producer runs in step k, its consumer in step k + 1."""
    p, c = stage.producer, stage.consumer
    t.steps += [
        f"{'+'.join(x.name for x in p.layers)}: rows into {stage.window}",
        f"{'+'.join(x.name for x in c.layers)}: from {stage.window} (one loop with step {k})",
    ]
    # Read, written or kept across iterations of the one loop: alive in both steps.
    _tensor(t, p.source, p.conv.input, f"{p.conv.name} input", k, k + 1)
    _tensor(t, c.target, c.output, f"{c.layers[-1].name} output", k, k + 1)
    rows = stage.window_rows
    what = f"{rows} of {p.layers[-1].name}'s {p.output.dims()} rows"
    t.use(stage.window, rows * _row_bytes(p.output), what, k, k + 1)
    _fused_temps(t, p, k)
    _fused_temps(t, c, k + 1)


def _first_fit(t: _Timeline, order: list[str]) -> dict[str, int]:
    """Each buffer in turn at the lowest offset free for its whole life."""
    offsets: dict[str, int] = {}
    for name in order:
        first, last = t.life[name]
        busy = sorted(
            (offsets[o], offsets[o] + _align(t.sizes[o]))
            for o in offsets
            if t.life[o][0] <= last and first <= t.life[o][1]
        )
        at = 0
        for start, end in busy:
            if at + _align(t.sizes[name]) <= start:
                break
            at = max(at, end)
        offsets[name] = at
    return offsets


def _place(t: _Timeline) -> dict[str, int]:
    """First-fit in a few orders, the smallest arena kept; caller buffers take no space.

    Largest first is TFLM's greedy order; longest-lived first suits streamed loops, whose
    long-lived window and output would otherwise land above short-lived row buffers.
    """
    names = [n for n in t.sizes if n not in (INPUT, OUTPUT)]
    orders = [
        sorted(names, key=lambda n: (-t.sizes[n], t.life[n][0], n)),
        sorted(names, key=lambda n: (t.life[n][0] - t.life[n][1], -t.sizes[n], n)),
        sorted(names, key=lambda n: (t.life[n][0], -t.sizes[n], n)),
    ]
    candidates = [_first_fit(t, order) for order in orders]
    offsets = min(candidates, key=lambda o: max((o[n] + t.sizes[n] for n in o), default=0))
    _check_no_overlap(t, offsets)
    return offsets


def _check_no_overlap(t: _Timeline, offsets: dict[str, int]) -> None:
    names = list(offsets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            alive = t.life[a][0] <= t.life[b][1] and t.life[b][0] <= t.life[a][1]
            apart = offsets[a] + t.sizes[a] <= offsets[b] or offsets[b] + t.sizes[b] <= offsets[a]
            assert not alive or apart, f"plan error: {a} and {b} overlap while both alive"


def conv_stages(plan: MemoryPlan) -> list[tuple[Conv2D, MaxPool2D | None]]:
    """Every convolution of the program with the max-pool fused into it (None: not fused)."""
    found: list[tuple[Conv2D, MaxPool2D | None]] = []
    for stage in plan.stages:
        if isinstance(stage, StreamStage):
            found += [(stage.producer.conv, stage.producer.pool)]
            found += [(stage.consumer.conv, stage.consumer.pool)]
        elif isinstance(stage, FusedStage):
            found.append((stage.conv, stage.pool))
        elif isinstance(stage.layer, Conv2D):
            found.append((stage.layer, None))
    return found


def plan_memory(graph: Graph, level: str = "streamed") -> MemoryPlan:
    """The stages of the program and the arena offset of every buffer they use."""
    if level not in LEVELS:
        raise ValueError(f"unknown plan level {level!r}: expected one of {', '.join(LEVELS)}")
    stages = _stages(graph, level)
    t = _walk(stages)
    offsets = _place(t)
    rows = tuple(
        PlanRow(name, offsets.get(name), t.sizes[name], *t.life[name], t.holds[name])
        for name in t.sizes
    )
    peak = max((offsets[n] + t.sizes[n] for n in offsets), default=0)
    return MemoryPlan(
        level=level,
        stages=tuple(stages),
        steps=tuple(Step(i, label) for i, label in enumerate(t.steps)),
        buffers=rows,
        peak_bytes=_align(peak),
        lower_bound_bytes=lower_bound(graph),
    )
