"""Write model.h and model.c (and kernels.h): the layers' constants, the memory plan, one call
per step.

The files are templates (`templates/model.h`, `model.c`, the shared C pieces `layer_types.c`,
`slices.c` and `slices_edge.c`, and mnist-edge's own kernel `kernels.h`, see kernels.py) filled
with string.Template; this module writes the parts that depend on the model: constant arrays,
the offsets of the plan, each step's call (CMSIS-NN's, or the own kernel's where it applies).
"""

from __future__ import annotations

import textwrap

from mnist_edge import __version__
from mnist_edge.codegen import cmsis, quant, reference
from mnist_edge.codegen.constants import (
    describe,
    layer_constants,
    per_channel,
)
from mnist_edge.codegen.kernels import EDGE_SLICE, GENERAL_SOURCES, KERNELS_H, edge_call
from mnist_edge.codegen.layers import (
    AveragePool2D,
    Conv2D,
    FullyConnected,
    Graph,
    MaxPool2D,
    Reference,
    Softmax,
)
from mnist_edge.codegen.plan import (
    INPUT,
    OUTPUT,
    FusedStage,
    InPlaceStage,
    LayerStage,
    MemoryPlan,
    StreamStage,
    fused_stages,
)
from mnist_edge.files import sha256_bytes
from mnist_edge.templates import FileTemplate
from mnist_edge.templates import template as package_template

OK = "ARM_CMSIS_NN_SUCCESS"
NO_CONTEXT = "no_context"

# The CMSIS-NN sources each kernel needs on any target (plain C, DSP or Helium: a file whose
# code is for another target compiles to nothing), relative to the CMSIS-NN root.
POOL_SOURCES = ("Source/PoolingFunctions/arm_max_pool_s8.c",)
FC_CHANNEL_SOURCES = (
    "Source/FullyConnectedFunctions/arm_fully_connected_per_channel_s8.c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_per_ch_s8.c",
)
FC_TENSOR_SOURCES = (
    "Source/FullyConnectedFunctions/arm_fully_connected_s8.c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c",
)
SOFTMAX_SOURCES = (
    "Source/SoftmaxFunctions/arm_softmax_s8.c",
    "Source/SoftmaxFunctions/arm_nn_softmax_common_s8.c",
)


def template(name: str) -> FileTemplate:
    """One of codegen's templates (templates.template, the one loader)."""
    return package_template(__package__, name)


def uses_edge(plan: MemoryPlan) -> bool:
    """Whether any convolution of the program runs on mnist-edge's kernel (kernels.h)."""
    return any(stage.kernel == "edge" for stage, _ in _convolutions(plan))


def _convolutions(plan: MemoryPlan) -> list[tuple[FusedStage | LayerStage, Conv2D]]:
    """Every stage computing a convolution (by slices, or whole), with its convolution."""
    whole = [s for s in plan.stages if isinstance(s, LayerStage) and isinstance(s.layer, Conv2D)]
    return [(f, f.conv) for f in fused_stages(plan)] + [(s, s.layer) for s in whole]


def _uses_reference(plan: MemoryPlan) -> bool:
    return any(isinstance(layer, Reference) for stage in plan.stages for layer in stage.layers)


def cmsis_sources(graph: Graph, plan: MemoryPlan) -> tuple[str, ...]:
    """The CMSIS-NN source files the engine calls into, relative to the CMSIS-NN root. The
    own kernel's general path needs CMSIS-NN's column conversions, and on Helium its
    convolution and max-pool: the files are listed for any target (one build list)."""
    found: list[str] = []
    for stage, conv in _convolutions(plan):
        if stage.kernel != "edge":
            found += cmsis.DEPTHWISE_SOURCES if conv.depthwise else cmsis.CONV_SOURCES
        elif conv.input.shape[3] > 1:
            found += GENERAL_SOURCES + cmsis.CONV_SOURCES + POOL_SOURCES
    for layer in graph.layers:
        if isinstance(layer, MaxPool2D):
            found += POOL_SOURCES
        elif isinstance(layer, AveragePool2D):
            found += cmsis.AVGPOOL_SOURCES
        elif isinstance(layer, FullyConnected):
            found += FC_CHANNEL_SOURCES if per_channel(layer) else FC_TENSOR_SOURCES
        elif isinstance(layer, Softmax):
            found += SOFTMAX_SOURCES
        elif isinstance(layer, Reference):
            found += (
                reference.CMSIS_SOURCES.get(layer.kind, ())
                if layer.elementwise or layer.kind.startswith("PAD")
                else ()
            )
    return tuple(dict.fromkeys(found))


def _slices_array(name: str, slices) -> str:
    rows = ",\n".join(
        f"    {{{s.in_row}, {s.in_rows}, {s.conv_pad}, {s.conv_rows}, {s.pool_pad}}}"
        for s in slices
    )
    return (
        "/* in_row, in_rows, conv_pad, conv_rows, pool_pad */\n"
        f"static const slice_t {name}[{len(slices)}] = {{\n{rows}\n}};\n"
    )


def _feeds_array(name: str, feeds) -> str:
    rows = ",\n".join(f"    {{{f.drop}, {f.keep}, {f.first}, {f.count}}}" for f in feeds)
    return (
        "/* drop, keep, first, count */\n"
        f"static const feed_t {name}[{len(feeds)}] = {{\n{rows}\n}};\n"
    )


def _schedules(plan: MemoryPlan) -> str:
    """The slice and feed tables of the fused, streamed and in-place stages."""
    parts = []
    for stage in plan.stages:
        if isinstance(stage, StreamStage | InPlaceStage):
            parts.append(_feeds_array(f"{stage.consumer.conv.name}_feeds", stage.feeds))
    parts += [_slices_array(f"{f.conv.name}_slices", f.slices) for f in fused_stages(plan)]
    return "\n".join(parts)


def _at(buffer: str, dtype: str = "int8") -> str:
    """The C expression of a buffer: the caller's pointers, or an offset into the arena (a
    float32 one, of a float model's QUANTIZE or DEQUANTIZE, as a float pointer)."""
    if buffer in (INPUT, OUTPUT):
        cast = "(const float *)" if buffer == INPUT else "(float *)"
        return buffer if dtype == "int8" else f"{cast}{buffer}"
    at = f"arena + {buffer.upper()}"
    return at if dtype == "int8" else f"(float *)(void *)({at})"


WIDTH = 100  # the generated C's line length


def _call(function: str, args: list[str], indent: int, lead: str = "", tail: str = ";") -> str:
    """A C call, its arguments wrapped under the first one to stay within WIDTH."""
    opening = " " * indent + lead + function + "("
    lines, line = [], opening
    for i, arg in enumerate(args):
        piece = arg + (", " if i < len(args) - 1 else ")" + tail)
        if line.strip() and len(line) + len(piece.rstrip()) > WIDTH and line != opening:
            lines.append(line.rstrip())
            line = " " * len(opening)
        line += piece
    return "\n".join([*lines, line]) + "\n"


def _comment(text: str, indent: int, lines: tuple[str, ...] = ()) -> str:
    """A C comment: one line when it fits, else a block wrapped to WIDTH (plus `lines`)."""
    pad = " " * indent
    if not lines and len(pad) + len(text) + 6 <= WIDTH:
        return f"{pad}/* {text} */\n"
    wrapped = textwrap.wrap(text, WIDTH - indent - 3)
    body = [f"{pad}/* {wrapped[0]}", *(f"{pad} * {line}" for line in [*wrapped[1:], *lines])]
    return "\n".join(body) + f"\n{pad} */\n"


def _checked(function: str, args: list[str], step: int, indent: int) -> str:
    """A kernel call whose refusal returns 1 + the step's number to the caller."""
    pad = " " * indent
    return (
        _call(function, args, indent, lead="if (", tail=f" != {OK}) {{")
        + f"{pad}    return {step + 1};\n{pad}}}\n"
    )


def _row_bytes(tensor) -> int:
    return tensor.shape[2] * tensor.shape[3]


def _layer_stage(stage: LayerStage, k: int) -> tuple[str, set[str]]:
    """One layer's step: one kernel call on whole tensors; the locals it uses."""
    layer, dst = stage.layer, _at(stage.target, stage.layer.output.dtype)
    sources = [_at(b, t.dtype) for b, t in zip(stage.sources, layer.inputs, strict=True)]
    src = sources[0]
    head = _comment(f"Step {k}: {describe(layer)}.", 4) + f"    STEP({k});\n"
    n = layer.name
    scratch = _at(stage.scratch) if stage.scratch else "NULL"
    if isinstance(layer, Conv2D) and stage.kernel == "edge":
        setup = f"    ctx.buf = {scratch};\n    ctx.size = {n}.scratch_bytes;\n"
        return head + setup + _checked(*edge_call(n, src, dst), k, 4), {"ctx"}
    if isinstance(layer, Conv2D):
        args = [f"&{n}", f"&{n}.params", scratch, f"&{n}.input", src, f"&{n}.output", dst]
        return head + _checked("conv_run", args, k, 4), set()
    if isinstance(layer, MaxPool2D):
        args = [f"&{NO_CONTEXT}", f"&{n}.params", f"&{n}.input", src, f"&{n}.window"]
        return head + _checked("arm_max_pool_s8", [*args, f"&{n}.output", dst], k, 4), {NO_CONTEXT}
    if isinstance(layer, AveragePool2D):
        setup = f"    ctx.buf = {scratch};\n    ctx.size = {stage.scratch_bytes};\n"
        args = ["&ctx", f"&{n}.params", f"&{n}.input", src, f"&{n}.window", f"&{n}.output", dst]
        return head + setup + _checked("arm_avgpool_s8", args, k, 4), {"ctx"}
    if isinstance(layer, FullyConnected):
        kernel = "arm_fully_connected_" + ("per_channel_s8" if per_channel(layer) else "s8")
        args = [
            f"&{n}_context", f"&{n}_params", f"&{n}_quant", f"&{n}_input_dims", src,
            f"&{n}_filter_dims", f"{n}_weights", f"&{n}_bias_dims", f"{n}_bias",
            f"&{n}_output_dims", dst,
        ]  # fmt: skip
        return head + _checked(kernel, args, k, 4), set()
    assert isinstance(layer, Softmax)
    mult, shift, diff_min = quant.softmax_parameters(layer.beta, layer.input.scale)
    row = layer.input.shape[-1]
    rows = layer.input.size // row
    return (
        head
        + f"    /* {rows} row(s) of {row}; input multiplier {mult}, left shift {shift}, "
        f"diff_min {diff_min} */\n"
        + _call("arm_softmax_s8", [src, str(rows), str(row), str(mult), str(shift),
                                   str(diff_min), dst], 4)
    ), set()  # fmt: skip


def _slice_function(stage: FusedStage) -> str:
    """The glue one slice of a fused stage calls: CMSIS-NN's, or the own kernel's."""
    return EDGE_SLICE if stage.kernel == "edge" else "conv_slice"


def _slice_args(stage: FusedStage, index: str, source: str, destination: str) -> list[str]:
    """The glue's arguments for one slice of a fused stage (conv_slice's take a row buffer)."""
    rows = [] if stage.kernel == "edge" else [_at(stage.rows) if stage.pool else "NULL"]
    return [
        f"&{stage.conv.name}",
        f"&{stage.pool.name}" if stage.pool else "NULL",
        f"&{stage.conv.name}_slices[{index}]",
        source,
        *rows,
        _at(stage.scratch) if stage.scratch_bytes else "NULL",
        destination,
    ]


def _out_row(stage: FusedStage) -> int:
    """Bytes of output one slice writes: a pooled row, or one convolution row."""
    return _row_bytes(stage.output)


def _fused_stage(stage: FusedStage, k: int) -> str:
    """A convolution and its max-pool in one loop over slices: one step."""
    conv, pool = stage.conv, stage.pool
    assert pool is not None, "a convolution alone is sliced only when streamed"
    most = max(s.conv_rows for s in stage.slices)
    head = _comment(
        f"Step {k}: {describe(conv)}, fused with {describe(pool)}: {len(stage.slices)} "
        f"slices of {most} rows, the {conv.output.dims()} tensor is never stored.",
        4,
    )
    out = f"{_at(stage.target)} + i * {_out_row(stage)}"
    loop = f"    STEP({k});\n    for (i = 0; i < {len(stage.slices)}; ++i) {{\n"
    args = _slice_args(stage, "i", _at(stage.source), out)
    call = _checked(_slice_function(stage), args, k, 8)
    return head + loop + call + "    }\n"


def _stream_stage(stage: StreamStage, k: int) -> str:
    """A producer streamed into a consumer through a window: one loop, steps k and k + 1."""
    p, c = stage.producer, stage.consumer
    window = _at(stage.window)
    row = _out_row(p)
    stored = [x.output.dims() for x in (*p.layers, *c.layers[:-1])]
    head = _comment(
        f"Steps {k}-{k + 1}: {' + '.join(x.name for x in p.layers)} streamed into "
        f"{' + '.join(x.name for x in c.layers)} through a window of {stage.window_rows} rows "
        f"of {p.layers[-1].name}'s output: {', '.join(stored)} never stored whole.",
        4,
        tuple(f"  {describe(layer)}" for layer in (*p.layers, *c.layers)),
    )
    produce = _slice_args(
        p, "feed->first + j", _at(p.source), f"{window} + (feed->keep + j) * {row}"
    )
    consume = _slice_args(c, "i", window, f"{_at(c.target)} + i * {_out_row(c)}")
    slide = [window, f"{window} + feed->drop * {row}", f"(size_t)feed->keep * {row}"]
    return (
        head
        + f"    for (i = 0; i < {len(stage.feeds)}; ++i) {{\n"
        + f"        const feed_t *feed = &{c.conv.name}_feeds[i];\n\n"
        + f"        STEP({k});\n"
        + "        /* Slide the window: rows this slice shares with the last go to its top. */\n"
        + _call("memmove", slide, 8)
        + "        for (j = 0; j < feed->count; ++j) {\n"
        + _checked(_slice_function(p), produce, k, 12)
        + "        }\n"
        + f"        STEP({k + 1});\n"
        + _checked(_slice_function(c), consume, k + 1, 8)
        + "    }\n"
    )


def _in_place_stage(stage: InPlaceStage, k: int) -> str:
    """A convolution over its own input, by rows: one loop, one step."""
    c = stage.consumer
    window, buffer = _at(stage.window), _at(stage.buffer)
    row = _row_bytes(c.conv.input)
    head = _comment(
        f"Step {k}: {describe(c.conv)}, in place: before each output row overwrites the "
        f"input, the input rows it reads are copied into a window of {stage.window_rows} rows.",
        4,
    )
    slide = [window, f"{window} + feed->drop * {row}", f"(size_t)feed->keep * {row}"]
    copy = [f"{window} + feed->keep * {row}", f"{buffer} + feed->first * {row}",
            f"(size_t)feed->count * {row}"]  # fmt: skip
    step = c.slices[0].conv_rows * _out_row(c)  # every slice but the last is as tall
    consume = _slice_args(c, "i", window, f"{buffer} + i * {step}")
    return (
        head
        + f"    for (i = 0; i < {len(stage.feeds)}; ++i) {{\n"
        + f"        const feed_t *feed = &{c.conv.name}_feeds[i];\n\n"
        + f"        STEP({k});\n"
        + _call("memmove", slide, 8)
        + _call("memcpy", copy, 8)
        + _checked(_slice_function(c), consume, k, 8)
        + "    }\n"
    )


def _reference_stage(stage: LayerStage, k: int) -> tuple[str, str]:
    """A step of TFLM's reference code (reference.py): its statements and its constants."""
    layer = stage.layer
    sources = [_at(b, t.dtype) for b, t in zip(stage.sources, layer.inputs, strict=True)]
    target = _at(stage.target, layer.output.dtype)
    constants, call = reference.c_call(layer.params, sources, target, layer.name)
    head = _comment(f"Step {k}: {describe(layer)}.", 4) + f"    STEP({k});\n"
    return head + call, f"/* {describe(layer)} */\n{constants}" if constants else ""


def _body(graph: Graph, plan: MemoryPlan) -> tuple[str, set[str], dict[str, str]]:
    """The inference function's statements, the locals they use, and the reference steps'
    file-scope constants by layer name."""
    parts, used, constants = [], set(), {}
    reshapes = [layer for layer in graph.layers if layer.op == "RESHAPE"]
    k = 0
    for stage in plan.stages:
        first = stage.layers[0].index
        for reshape in [r for r in reshapes if r.index < first]:
            what = f"{reshape.input.dims()} -> {reshape.output.dims()}"
            parts.append(_comment(f"{reshape.name}: RESHAPE {what} is the same bytes: no code.", 4))
            reshapes.remove(reshape)
        if isinstance(stage, StreamStage):
            parts.append(_stream_stage(stage, k))
            used |= {"i", "j"}
            k += 2
            continue
        if isinstance(stage, InPlaceStage):
            parts.append(_in_place_stage(stage, k))
            used.add("i")
        elif isinstance(stage, FusedStage):
            parts.append(_fused_stage(stage, k))
            used.add("i")
        elif isinstance(stage.layer, Reference):
            text, constants[stage.layer.name] = _reference_stage(stage, k)
            parts.append(text)
        else:
            text, needs = _layer_stage(stage, k)
            parts.append(text)
            used |= needs
        k += 1
    return "\n".join(parts), used, constants


def _offsets(plan: MemoryPlan) -> str:
    lines = []
    for row in plan.rows():
        life = f"steps {row.first_step}..{row.last_step}"
        if row.offset is None:
            lines.append(f"/* {row.buffer}: the caller's, {row.bytes:,} B, {life}: {row.holds} */")
        else:
            lines.append(
                f"#define {row.buffer.upper()} {row.offset} "
                f"/* {row.bytes:,} B, {life}: {row.holds} */"
            )
    return "\n".join(lines)


def _locals(used: set[str], plan: MemoryPlan) -> str:
    lines = []
    if "ctx" in used:
        lines.append("    cmsis_nn_context ctx;")
    loops = [v for v in ("i", "j") if v in used]
    if loops:
        lines.append(f"    int32_t {', '.join(loops)};")
    if all(row.offset is None for row in plan.rows()):
        lines.append("    (void)arena; /* every step reads and writes the caller's buffers */")
    return "\n".join(lines) + "\n"


def _scratch_bytes(plan: MemoryPlan) -> dict[str, int]:
    """Each layer's scratch bytes, as its stage in the plan decided them."""
    found = {f.conv.name: f.scratch_bytes for f in fused_stages(plan)}
    for stage in plan.stages:
        if isinstance(stage, LayerStage):
            found[stage.layer.name] = stage.scratch_bytes
    return found


def _constants(graph: Graph, plan: MemoryPlan, used: set[str], references: dict) -> str:
    parts = []
    if NO_CONTEXT in used:
        parts.append(
            f"/* For the kernels that need no scratch. */\n"
            f"static const cmsis_nn_context {NO_CONTEXT} = {{.buf = NULL, .size = 0}};\n"
        )
    scratch = _scratch_bytes(plan)
    for layer in graph.layers:
        if isinstance(layer, Reference):
            parts.append(references[layer.name])
        else:
            parts.append(layer_constants(layer, scratch.get(layer.name, 0)))
    schedules = _schedules(plan)
    return "\n".join(p for p in parts if p) + ("\n" + schedules if schedules else "")


def _quant_fields(graph: Graph) -> dict[str, str]:
    """The header's description of the input and output: shape, scale, zero point."""
    fields = {}
    for name, tensor in (("input", graph.input), ("output", graph.output)):
        zp = tensor.zero_point
        fields |= {
            f"{name}_shape": "x".join(map(str, tensor.shape)),
            f"{name}_scale": repr(tensor.scale),
            f"{name}_zero_point": f"({zp})" if zp < 0 else str(zp),
            f"{name}_real": f"(q {'+' if zp < 0 else '-'} {abs(zp)}) * {tensor.scale!r}",
            f"{name}_dtype": tensor.dtype,
        }
    # A float32 input or output is passed as a pointer to void (the caller's floats).
    fields["input_param"] = (
        "const int8_t *input" if graph.input.dtype == "int8" else "const void *input"
    )
    fields["output_param"] = "int8_t *output" if graph.output.dtype == "int8" else "void *output"
    return fields


_OWN_KERNELS = (
    f" * and {KERNELS_H} beside this file: mnist-edge's own convolution kernel, where CMSIS-NN\n"
    " * is slow (header-only: nothing to add to the build)."
)


def _helpers(plan: MemoryPlan) -> str:
    """The C glue the stages call, each once, and only if called."""
    convs = [conv for stage, conv in _convolutions(plan) if stage.kernel != "edge"]
    depthwise = any(conv.depthwise for conv in convs)
    plain = any(not conv.depthwise for conv in convs)
    parts = []
    if convs:
        parts.append(
            f"#define ENGINE_CONV {int(plain)}\n#define ENGINE_DEPTHWISE {int(depthwise)}\n"
        )
        parts.append(template("conv_run.c").template)
    slices = {_slice_function(stage) for stage in fused_stages(plan)}
    if "conv_slice" in slices:
        parts.append(template("slices.c").template)
    if EDGE_SLICE in slices:
        parts.append(template("slices_edge.c").template)
    return "".join(parts)


def emit_files(
    graph: Graph, plan: MemoryPlan, model_bytes: bytes, origin: str, prefix: str
) -> dict[str, bytes]:
    """model.h and model.c for a graph and its memory plan."""
    body, used, references = _body(graph, plan)
    own = uses_edge(plan)
    ops = ", ".join(dict.fromkeys(layer.op for layer in graph.layers))
    fields = {
        "model": origin,
        "version": __version__,
        "sha256": sha256_bytes(model_bytes),
        "prefix": prefix,
        "PREFIX": prefix.upper(),
        "guard": f"{prefix.upper()}_MODEL_H_",
        "input_bytes": str(graph.input.nbytes),
        "output_bytes": str(graph.output.nbytes),
        "arena_bytes": str(plan.peak_bytes),
        "summary": f"{len(graph.layers)} operators ({ops}) in {len(plan.steps)} steps",
        "sources": "\n".join(
            [*(f" *   {s}" for s in cmsis_sources(graph, plan)), *([_OWN_KERNELS] if own else [])]
        ),
        "plan_summary": (
            f"{plan.level}, optimised for {plan.optimise}, scratch for {_ISA_NAMES[plan.isa]}: "
            f"{plan.peak_bytes:,} B (one call per layer would need at least "
            f"{plan.lower_bound_bytes:,} B)."
        ),
        "isa_guard": _isa_guard(plan.isa),
        "offsets": _offsets(plan),
        "types": template("layer_types.c").template,
        "constants": _constants(graph, plan, used, references),
        "helpers": _helpers(plan),
        "includes": (f'#include "{KERNELS_H}"\n' if own else "")
        + ('#include "reference.h"\n' if _uses_reference(plan) else ""),
        "locals": _locals(used, plan),
        "body": body,
        **_quant_fields(graph),
    }
    files = {
        "model.h": template("model.h").substitute(fields).encode(),
        "model.c": template("model.c").substitute(fields).encode(),
    }
    if own:
        files[KERNELS_H] = template(KERNELS_H).substitute(fields).encode()
    if _uses_reference(plan):
        files["reference.h"] = template("reference.h").template.encode()
    return files


_ISA_NAMES = {
    "any": "any CMSIS-NN build",
    "plain": "CMSIS-NN in plain C",
    "dsp": "CMSIS-NN's DSP build",
    "mve": "CMSIS-NN's Helium build",
}
_ISA_TESTS = {
    "plain": "defined(ARM_MATH_DSP) || defined(ARM_MATH_MVEI)",
    "dsp": "!defined(ARM_MATH_DSP) || defined(ARM_MATH_MVEI)",
    "mve": "!defined(ARM_MATH_MVEI)",
}


def _isa_guard(isa: str) -> str:
    """An arena sized for one CMSIS-NN build is too small for another's scratch: refuse to
    compile for it rather than let a kernel write past its buffer."""
    if isa == "any":
        return ""
    return (
        f"#if {_ISA_TESTS[isa]}\n"
        f'#error "model.c plans its arena for {_ISA_NAMES[isa]}: generate it for this target"\n'
        "#endif\n"
    )
