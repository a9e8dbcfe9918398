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

from dataclasses import dataclass, field

from mnist_edge.codegen.cmsis import ANY
from mnist_edge.codegen.kernels import edge_applies
from mnist_edge.codegen.layers import Conv2D, Graph, MaxPool2D, Reference, Reshape
from mnist_edge.codegen.stages import (
    INPUT,
    OUTPUT,
    Feed,
    FusedStage,
    InPlaceStage,
    LayerStage,
    Slice,
    Stage,
    StreamStage,
    copy_feeds,
    fused_stage,
    in_place_rows,
    in_place_stage,
    scratch_of,
    slices_of,
    streamed,
)

__all__ = ["INPUT", "OUTPUT", "Feed", "FusedStage", "InPlaceStage", "LayerStage", "Slice",
           "StreamStage"]  # fmt: skip

LEVELS = ("layers", "fused", "streamed")
# speed: no convolution in place (its input rows copied, its kernel called per slice); size: in
# place wherever that makes the arena smaller.
OPTIMISE = ("speed", "size")
ALIGN = 4  # every buffer starts on a word: the scratch is int16, the arena itself 16-aligned


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
    isa: str  # the CMSIS-NN build its scratch is sized for: plain, dsp, mve, or any of them
    optimise: str  # speed or size (OPTIMISE)
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


def lower_bound(graph: Graph, isa: str) -> int:
    """The least arena a one-call-per-layer engine needs: max over layers of inputs + output +
    scratch, counting neither the caller's input nor its output (they are not in the arena)."""
    names = _buffer_names(graph, in_place=False)
    best = 0
    for layer in graph.layers:
        if isinstance(layer, Reshape):
            continue
        held = {names[t.index]: t.nbytes for t in (*layer.inputs, layer.output)}
        held = {k: v for k, v in held.items() if k not in (INPUT, OUTPUT)}
        best = max(best, sum(held.values()) + scratch_of(layer, isa)[1])
    return best


def _output_chain(graph: Graph) -> set[int]:
    """The model's output tensor and the tensors it is a reshape of: the caller's buffer."""
    chain = {graph.output.index}
    for layer in reversed(graph.layers):
        if isinstance(layer, Reshape) and layer.output.index in chain:
            chain.add(layer.input.index)
    return chain


def _in_place_safe(conv: Conv2D) -> bool:
    """Whether a convolution can write its output over its own input, row by row, with its
    input rows copied into a window before they are overwritten (_copy_feeds)."""
    return copy_feeds(conv, slices_of(conv, None, in_place_rows(conv))) is not None


def _buffer_names(graph: Graph, in_place: bool) -> dict[int, str]:
    """Tensor index -> the buffer holding it.

    A reshape's output is its input's bytes. An ADD or MUL writes over an operand that dies
    there (the kernels read each element before writing it); with `in_place`, so does a
    convolution computed by rows (InPlaceStage). The model's output, and what it is a reshape
    of, are the caller's output buffer.
    """
    last_read: dict[int, int] = {}
    for position, layer in enumerate(graph.layers):
        for tensor in layer.inputs:
            last_read[tensor.index] = position
    chain = _output_chain(graph)
    names = {graph.input.index: INPUT}
    members: dict[str, list[int]] = {INPUT: [graph.input.index]}

    def dies_here(tensor, position: int) -> bool:
        name = names[tensor.index]
        return name != INPUT and all(last_read.get(m, -1) <= position for m in members[name])

    for position, layer in enumerate(graph.layers):
        out = layer.output
        name = f"{layer.name}_out"
        if isinstance(layer, Reshape):
            name = names[layer.input.index]
        elif out.index not in chain:
            if isinstance(layer, Reference) and layer.elementwise:
                same = [
                    t for t in layer.inputs if t.nbytes == out.nbytes and dies_here(t, position)
                ]
                name = names[same[0].index] if same else name
            elif (
                in_place
                and isinstance(layer, Conv2D)
                and dies_here(layer.input, position)
                and _pool_after(graph, position) is None
                and _in_place_safe(layer)
            ):
                name = names[layer.input.index]
        names[out.index] = name
        members.setdefault(name, []).append(out.index)
    final = names[graph.output.index]
    return {k: OUTPUT if v == final else v for k, v in names.items()}


def _pool_after(graph: Graph, position: int) -> MaxPool2D | None:
    """The max-pool that follows the layer at `position` (a convolution) and alone reads its
    output, which the two can compute together (FusedStage); None if there is none."""
    layer = graph.layers[position]
    after = graph.layers[position + 1] if position + 1 < len(graph.layers) else None
    fuses = (
        isinstance(layer, Conv2D)
        and isinstance(after, MaxPool2D)
        and after.input.index == layer.output.index
        and graph.readers(layer.output.index) == [after]
        and layer.output.index != graph.output.index
    )
    return after if fuses else None


def _stages(
    graph: Graph,
    level: str,
    isa: str,
    optimise: str,
    names: dict[int, str],
    rows: dict[str, int] | None = None,
) -> list[Stage]:
    """The program's stages. Optimised for speed, a convolution CMSIS-NN computes runs whole:
    called per slice (fused with its pool, streamed, in place) it pays the kernel's per-call
    setup once per slice. mnist-edge's own kernel is built to run by rows, so it still does."""
    layers = [layer for layer in graph.layers if not isinstance(layer, Reshape)]
    stages: list[Stage] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        position = graph.layers.index(layer)
        source, target = names[layer.input.index], names[layer.output.index]
        pool = _pool_after(graph, position) if level != "layers" else None
        if pool is not None and (optimise == "size" or edge_applies(layer, pool)):
            stages.append(fused_stage(layer, pool, source, names[pool.output.index], isa))
            i += 2
            continue
        if isinstance(layer, Conv2D) and source == target:
            tall = (rows or {}).get(layer.name, in_place_rows(layer))
            stages.append(in_place_stage(fused_stage(layer, None, source, target, isa, tall)))
            i += 1
            continue
        kernel, scratch = scratch_of(layer, isa)
        sources = tuple(names[t.index] for t in layer.inputs)
        name = f"{layer.name}_scratch" if scratch else None
        stages.append(LayerStage(layer, sources, target, name, kernel, scratch))
        i += 1
    if level != "streamed":
        return stages
    return streamed(stages, _buffer_readers(graph, names), isa, edge_only=optimise == "speed")


def _buffer_readers(graph: Graph, names: dict[int, str]) -> dict[str, set[str]]:
    """Buffer -> the layers reading it."""
    readers: dict[str, set[str]] = {}
    for layer in graph.layers:
        if not isinstance(layer, Reshape):
            for tensor in layer.inputs:
                readers.setdefault(names[tensor.index], set()).add(layer.name)
    return readers


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
    if stage.rows:
        most = max(s.conv_rows for s in stage.slices)
        what = f"{most} of {conv.name}'s {conv.output.dims()} rows"
        t.use(stage.rows, most * _row_bytes(conv.output), what, k, k)
    if stage.scratch_bytes:
        what = "columns" if stage.kernel == "edge" else "scratch"
        t.use(stage.scratch, stage.scratch_bytes, f"{conv.name} {what}", k, k)


def _walk(stages: list[Stage]) -> _Timeline:
    """Every buffer's size, content and life (first and last step), stage by stage."""
    t = _Timeline()
    for stage in stages:
        k = len(t.steps)
        if isinstance(stage, StreamStage):
            _walk_stream(t, stage, k)
            continue
        label = "+".join(x.name for x in stage.layers)
        if isinstance(stage, InPlaceStage):
            c = stage.consumer
            t.steps.append(f"{label} in place, by rows through {stage.window}")
            _tensor(t, stage.buffer, c.conv.input, f"{c.conv.name} input", k, k)
            _tensor(t, stage.buffer, c.output, f"{c.conv.name} output", k, k)
            what = f"{stage.window_rows} of {c.conv.name}'s input rows"
            t.use(stage.window, stage.window_rows * _row_bytes(c.conv.input), what, k, k)
            _fused_temps(t, c, k)
            continue
        if isinstance(stage, FusedStage):
            label += f" in {len(stage.slices)} slices"
            _fused_temps(t, stage, k)
            sources = ((stage.source, stage.conv.input),)
        else:
            sources = tuple(zip(stage.sources, stage.layer.inputs, strict=True))
            if stage.scratch:
                kind = "columns" if stage.kernel == "edge" else "scratch"
                what = f"{stage.layer.name} {kind}"
                t.use(stage.scratch, stage.scratch_bytes, what, k, k)
        t.steps.append(label)
        first, last = stage.layers[0], stage.layers[-1]
        for buffer, tensor in sources:
            _tensor(t, buffer, tensor, f"{first.name} input", k, k)
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


def fused_stages(plan: MemoryPlan) -> list[FusedStage]:
    """Every convolution computed by slices, in program order (a streamed pair gives two)."""
    found: list[FusedStage] = []
    for stage in plan.stages:
        if isinstance(stage, StreamStage):
            found += [stage.producer, stage.consumer]
        elif isinstance(stage, InPlaceStage):
            found.append(stage.consumer)
        elif isinstance(stage, FusedStage):
            found.append(stage)
    return found


def _plan(
    graph: Graph, level: str, isa: str, optimise: str, in_place: bool, rows=None
) -> MemoryPlan:
    names = _buffer_names(graph, in_place)
    stages = _stages(graph, level, isa, optimise, names, rows)
    t = _walk(stages)
    offsets = _place(t)
    rows = tuple(
        PlanRow(name, offsets.get(name), t.sizes[name], *t.life[name], t.holds[name])
        for name in t.sizes
    )
    peak = max((offsets[n] + t.sizes[n] for n in offsets), default=0)
    return MemoryPlan(
        level=level,
        isa=isa,
        optimise=optimise,
        stages=tuple(stages),
        steps=tuple(Step(i, label) for i, label in enumerate(t.steps)),
        buffers=rows,
        peak_bytes=_align(peak),
        lower_bound_bytes=lower_bound(graph, isa),
    )


def plan_memory(
    graph: Graph, level: str = "streamed", isa: str = ANY, optimise: str = "speed"
) -> MemoryPlan:
    """The stages of the program and the arena offset of every buffer they use.

    Above `layers`, convolutions may also run in place (InPlaceStage), which costs a copy of
    their input rows: the plan with them is kept only when its arena is smaller. `isa` sizes
    CMSIS-NN's scratch for one build of it (cmsis.ISAS), or for any ("any").
    """
    if level not in LEVELS:
        raise ValueError(f"unknown plan level {level!r}: expected one of {', '.join(LEVELS)}")
    if optimise not in OPTIMISE:
        raise ValueError(f"unknown optimise {optimise!r}: expected one of {', '.join(OPTIMISE)}")
    plan = _plan(graph, level, isa, optimise, in_place=False)
    if level != "layers" and optimise == "size":
        other = _taller_slices(graph, level, _plan(graph, level, isa, optimise, in_place=True))
        plan = other if other.peak_bytes < plan.peak_bytes else plan
    return plan


def _taller_slices(graph: Graph, level: str, plan: MemoryPlan) -> MemoryPlan:
    """The in-place plan with each in-place convolution's slices made as tall as the arena
    allows without growing (fewer, larger kernel calls run faster): the tallest of whole,
    half, quarter ... that keeps the peak."""
    rows: dict[str, int] = {}
    for stage in [s for s in plan.stages if isinstance(s, InPlaceStage)]:
        conv = stage.consumer.conv
        height, least = conv.output.shape[1], stage.consumer.slices[0].conv_rows
        tall = height
        while tall > least:
            if copy_feeds(conv, slices_of(conv, None, tall)) is not None:
                trial = _plan(graph, level, plan.isa, plan.optimise, True, rows | {conv.name: tall})
                if trial.peak_bytes <= plan.peak_bytes:
                    plan, rows = trial, rows | {conv.name: tall}
                    break
            tall = -(-tall // 2)
    return plan
