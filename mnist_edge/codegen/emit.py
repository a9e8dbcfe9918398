"""Write model.h and model.c (and kernels.h): the layers' constants, the memory plan, one call
per step.

The files are templates (`templates/model.h`, `model.c`, the shared C pieces `layer_types.c`,
`slices.c` and `slices_edge.c`, and mnist-edge's own kernel `kernels.h`, see kernels.py) filled
with string.Template; this module writes the parts that depend on the model: constant arrays,
the offsets of the plan, each step's call (CMSIS-NN's, or the own kernel's where it applies).
"""

from __future__ import annotations

import textwrap

import numpy as np

from mnist_edge import __version__
from mnist_edge.codegen import quant
from mnist_edge.codegen.graph import Conv2D, FullyConnected, Graph, Layer, MaxPool2D, Softmax
from mnist_edge.codegen.kernels import (
    EDGE_SLICE,
    GENERAL_SOURCES,
    KERNELS_H,
    edge_applies,
    edge_call,
)
from mnist_edge.codegen.plan import (
    INPUT,
    OUTPUT,
    FusedStage,
    LayerStage,
    MemoryPlan,
    StreamStage,
    conv_scratch_bytes,
    conv_stages,
)
from mnist_edge.device.csource import c_values
from mnist_edge.files import sha256_bytes
from mnist_edge.templates import FileTemplate
from mnist_edge.templates import template as package_template

OK = "ARM_CMSIS_NN_SUCCESS"
NO_CONTEXT = "no_context"

# The CMSIS-NN sources each kernel needs on any target (plain C, DSP or Helium: a file whose
# code is for another target compiles to nothing), relative to the CMSIS-NN root.
CONV_SOURCES = (
    "Source/ConvolutionFunctions/arm_convolve_s8.c",
    "Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c",
    "Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c",
    "Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c",
    "Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c",
    "Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c",
)
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
    return any(edge_applies(conv, pool) for conv, pool in conv_stages(plan))


def cmsis_sources(graph: Graph, plan: MemoryPlan) -> tuple[str, ...]:
    """The CMSIS-NN source files the engine calls into, relative to the CMSIS-NN root. The
    own kernel's general path needs CMSIS-NN's column conversions, and on Helium its
    convolution and max-pool: the files are listed for any target (one build list)."""
    found: list[str] = []
    for conv, pool in conv_stages(plan):
        if not edge_applies(conv, pool):
            found += CONV_SOURCES
        elif conv.input.shape[3] > 1:
            found += GENERAL_SOURCES + CONV_SOURCES + POOL_SOURCES
    for layer in graph.layers:
        if isinstance(layer, MaxPool2D):
            found += POOL_SOURCES
        elif isinstance(layer, FullyConnected):
            found += FC_CHANNEL_SOURCES if _per_channel(layer) else FC_TENSOR_SOURCES
        elif isinstance(layer, Softmax):
            found += SOFTMAX_SOURCES
    return tuple(dict.fromkeys(found))


def _per_channel(layer: FullyConnected) -> bool:
    return len(layer.weight_scales) > 1


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    """A `static const` array definition, word-aligned, `per_line` numbers a line (the body is
    device.csource's one emitter)."""
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    body = c_values(flat, "    ", per_line)
    return f"static const {ctype} {name}[{len(flat)}] ALIGNED(4) = {{\n{body}\n}};\n"


def _dims(n: int, h: int, w: int, c: int) -> str:
    return f"{{.n = {n}, .h = {h}, .w = {w}, .c = {c}}}"


def _nhwc(shape: tuple[int, ...]) -> str:
    return _dims(*shape)


def _tile(pair: tuple[int, int]) -> str:
    return f"{{.w = {pair[1]}, .h = {pair[0]}}}"


def describe(layer: Layer) -> str:
    """One line naming a layer, its shapes and its settings, for the comments."""
    shapes = f"{layer.input.dims()} -> {layer.output.dims()}"
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel
        quantized = "per-channel" if len(layer.weight_scales) > 1 else "per-tensor"
        return (
            f"{layer.name}: CONV_2D {shapes}, {kh}x{kw} stride {layer.stride[0]}x"
            f"{layer.stride[1]} {layer.padding_kind}, {layer.activation}, {quantized}"
        )
    if isinstance(layer, MaxPool2D):
        wh, ww = layer.window
        return (
            f"{layer.name}: MAX_POOL_2D {shapes}, {wh}x{ww} stride {layer.stride[0]}x"
            f"{layer.stride[1]} {layer.padding_kind}"
        )
    if isinstance(layer, FullyConnected):
        quantized = "per-channel" if _per_channel(layer) else "per-tensor"
        return f"{layer.name}: FULLY_CONNECTED {shapes}, {layer.activation}, {quantized}"
    if isinstance(layer, Softmax):
        return f"{layer.name}: SOFTMAX {shapes}, beta {layer.beta:g}"
    return f"{layer.name}: {layer.op} {shapes}"


def _conv_constants(conv: Conv2D, scratch_bytes: int) -> str:
    out_ch = conv.weights.shape[0]
    mults, shifts = quant.channel_multipliers(
        conv.input.scale, conv.weight_scales, conv.output.scale, out_ch
    )
    low, high = quant.activation_range(conv.activation, conv.output.scale, conv.output.zero_point)
    n = conv.name
    kh, kw = conv.kernel
    struct = f"""static const conv_layer_t {n} = {{
    .params = {{.input_offset = {-conv.input.zero_point}, .output_offset = {conv.output.zero_point},
               .stride = {_tile(conv.stride)}, .padding = {_tile(conv.padding)},
               .dilation = {_tile(conv.dilation)}, .activation = {{.min = {low}, .max = {high}}}}},
    .quant = {{.multiplier = (int32_t *){n}_multipliers, .shift = (int32_t *){n}_shifts}},
    .input = {_nhwc(conv.input.shape)},
    .filter = {_dims(out_ch, kh, kw, conv.weights.shape[3])},
    .bias = {_dims(1, 1, 1, out_ch)},
    .output = {_nhwc(conv.output.shape)},
    .weights = {n}_weights,
    .bias_data = {n}_bias,
    .scratch_bytes = {scratch_bytes},
}};
"""
    return (
        f"/* {describe(conv)} */\n"
        + c_array("int8_t", f"{n}_weights", conv.weights)
        + c_array("int32_t", f"{n}_bias", conv.bias, 8)
        + c_array("int32_t", f"{n}_multipliers", np.array(mults), 8)
        + c_array("int32_t", f"{n}_shifts", np.array(shifts))
        + "/* CMSIS-NN's quant struct is not const-qualified; the kernel only reads it. */\n"
        + struct
    )


def _pool_constants(pool: MaxPool2D) -> str:
    low, high = quant.activation_range(pool.activation, pool.output.scale, pool.output.zero_point)
    return f"""/* {describe(pool)} */
static const pool_layer_t {pool.name} = {{
    .params = {{.stride = {_tile(pool.stride)}, .padding = {_tile(pool.padding)},
               .activation = {{.min = {low}, .max = {high}}}}},
    .input = {_nhwc(pool.input.shape)},
    .window = {_dims(1, pool.window[0], pool.window[1], 1)},
    .output = {_nhwc(pool.output.shape)},
}};
"""


def _fc_constants(fc: FullyConnected) -> str:
    n, (out_ch, depth) = fc.name, fc.weights.shape
    low, high = quant.activation_range(fc.activation, fc.output.scale, fc.output.zero_point)
    parts = [f"/* {describe(fc)} */\n", c_array("int8_t", f"{n}_weights", fc.weights)]
    parts.append(c_array("int32_t", f"{n}_bias", fc.bias, 8))
    if _per_channel(fc):
        mults, shifts = quant.channel_multipliers(
            fc.input.scale, fc.weight_scales, fc.output.scale, out_ch
        )
        parts += [
            c_array("int32_t", f"{n}_multipliers", np.array(mults), 8),
            c_array("int32_t", f"{n}_shifts", np.array(shifts)),
            f"static const cmsis_nn_per_channel_quant_params {n}_quant = {{\n"
            f"    .multiplier = (int32_t *){n}_multipliers, .shift = (int32_t *){n}_shifts}};\n",
        ]
    else:
        (mult,), (shift,) = quant.channel_multipliers(
            fc.input.scale, fc.weight_scales, fc.output.scale, 1
        )
        parts.append(
            f"static const cmsis_nn_per_tensor_quant_params {n}_quant = "
            f"{{.multiplier = {mult}, .shift = {shift}}};\n"
        )
    sums = quant.kernel_sums(fc.weights, fc.bias, -fc.input.zero_point, -fc.weight_zero_point)
    parts += [
        f"static const cmsis_nn_fc_params {n}_params = {{\n"
        f"    .input_offset = {-fc.input.zero_point}, .filter_offset = {-fc.weight_zero_point},\n"
        f"    .output_offset = {fc.output.zero_point}, "
        f".activation = {{.min = {low}, .max = {high}}}}};\n",
        f"static const cmsis_nn_dims {n}_input_dims = {_dims(1, 1, 1, depth)};\n",
        f"static const cmsis_nn_dims {n}_filter_dims = {_dims(depth, 1, 1, out_ch)};\n",
        f"static const cmsis_nn_dims {n}_bias_dims = {_dims(1, 1, 1, out_ch)};\n",
        f"static const cmsis_nn_dims {n}_output_dims = {_dims(1, 1, 1, out_ch)};\n",
        "#if defined(ARM_MATH_MVEI)\n"
        "/* Helium reads bias + input offset * row sums of the weights (TFLM computes them in\n"
        " * Prepare); the other targets need no context. */\n"
        + c_array("int32_t", f"{n}_kernel_sums", sums, 8)
        + f"static const cmsis_nn_context {n}_context = "
        f"{{.buf = (void *){n}_kernel_sums, .size = (int32_t)sizeof({n}_kernel_sums)}};\n"
        "#else\n"
        f"static const cmsis_nn_context {n}_context = {{.buf = NULL, .size = 0}};\n"
        "#endif\n",
    ]
    return "".join(parts)


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
    """The slice tables of the fused and streamed stages (computed with the plan)."""
    parts = []
    for stage in plan.stages:
        fused = [stage] if isinstance(stage, FusedStage) else []
        if isinstance(stage, StreamStage):
            fused = [stage.producer, stage.consumer]
            parts.append(_feeds_array(f"{stage.consumer.conv.name}_feeds", stage.feeds))
        parts += [_slices_array(f"{f.conv.name}_slices", f.slices) for f in fused]
    return "\n".join(parts)


def _at(buffer: str) -> str:
    """The C expression of a buffer: the caller's pointers, or an offset into the arena."""
    return buffer if buffer in (INPUT, OUTPUT) else f"arena + {buffer.upper()}"


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


def _layer_stage(stage: LayerStage, k: int) -> str:
    """One layer's step: one CMSIS-NN call on whole tensors."""
    layer, src, dst = stage.layer, _at(stage.source), _at(stage.target)
    head = _comment(f"Step {k}: {describe(layer)}.", 4) + f"    STEP({k});\n"
    n = layer.name
    if isinstance(layer, Conv2D):
        setup = f"    ctx.buf = {_at(stage.scratch or '')};\n    ctx.size = {n}.scratch_bytes;\n"
        if edge_applies(layer, None):
            return head + setup + _checked(*edge_call(n, src, dst), k, 4)
        args = [
            "&ctx", f"&{n}.params", f"&{n}.quant", f"&{n}.input", src, f"&{n}.filter",
            f"{n}.weights", f"&{n}.bias", f"{n}.bias_data", "NULL", f"&{n}.output", dst,
        ]  # fmt: skip
        return head + setup + _checked("arm_convolve_s8", args, k, 4)
    if isinstance(layer, MaxPool2D):
        args = [f"&{NO_CONTEXT}", f"&{n}.params", f"&{n}.input", src, f"&{n}.window"]
        return head + _checked("arm_max_pool_s8", [*args, f"&{n}.output", dst], k, 4)
    if isinstance(layer, FullyConnected):
        kernel = "arm_fully_connected_" + ("per_channel_s8" if _per_channel(layer) else "s8")
        args = [
            f"&{n}_context", f"&{n}_params", f"&{n}_quant", f"&{n}_input_dims", src,
            f"&{n}_filter_dims", f"{n}_weights", f"&{n}_bias_dims", f"{n}_bias",
            f"&{n}_output_dims", dst,
        ]  # fmt: skip
        return head + _checked(kernel, args, k, 4)
    assert isinstance(layer, Softmax)
    mult, shift, diff_min = quant.softmax_parameters(layer.beta, layer.input.scale)
    row = layer.input.shape[-1]
    rows = layer.input.nbytes // row
    return (
        head
        + f"    /* {rows} row(s) of {row}; input multiplier {mult}, left shift {shift}, "
        f"diff_min {diff_min} */\n"
        + _call("arm_softmax_s8", [src, str(rows), str(row), str(mult), str(shift),
                                   str(diff_min), dst], 4)
    )  # fmt: skip


def _slice_function(stage: FusedStage) -> str:
    """The glue one slice of a fused stage calls: CMSIS-NN's, or the one-channel kernel's."""
    return EDGE_SLICE if edge_applies(stage.conv, stage.pool) else "conv_slice"


def _slice_args(stage: FusedStage, index: str, destination: str) -> list[str]:
    """The glue's arguments for one slice of a fused stage (conv_slice's take a row buffer)."""
    own = edge_applies(stage.conv, stage.pool)
    rows = [] if own else [_at(stage.rows) if stage.pool else "NULL"]
    return [
        f"&{stage.conv.name}",
        f"&{stage.pool.name}" if stage.pool else "NULL",
        f"&{stage.conv.name}_slices[{index}]",
        _at(stage.source),
        *rows,
        _at(stage.scratch),
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
    call = _checked(_slice_function(stage), _slice_args(stage, "i", out), k, 8)
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
    produce = _slice_args(p, "feed->first + j", f"{window} + (feed->keep + j) * {row}")
    consume = _slice_args(c, "i", f"{_at(c.target)} + i * {_out_row(c)}")
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


def _body(graph: Graph, plan: MemoryPlan) -> tuple[str, set[str]]:
    """The inference function's statements, and the locals they use."""
    parts, used = [], set()
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
        if isinstance(stage, FusedStage):
            parts.append(_fused_stage(stage, k))
            used.add("i")
        else:
            parts.append(_layer_stage(stage, k))
            if isinstance(stage.layer, Conv2D):
                used.add("ctx")
            if isinstance(stage.layer, MaxPool2D):
                used.add(NO_CONTEXT)
        k += 1
    return "\n".join(parts), used


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


def _constants(graph: Graph, plan: MemoryPlan, used: set[str]) -> str:
    parts = []
    if NO_CONTEXT in used:
        parts.append(
            f"/* For the kernels that need no scratch. */\n"
            f"static const cmsis_nn_context {NO_CONTEXT} = {{.buf = NULL, .size = 0}};\n"
        )
    plan_bytes = {row.buffer: row.bytes for row in plan.rows()}
    for layer in graph.layers:
        if isinstance(layer, Conv2D):
            scratch = plan_bytes.get(f"{layer.name}_scratch", conv_scratch_bytes(layer))
            parts.append(_conv_constants(layer, scratch))
        elif isinstance(layer, MaxPool2D):
            parts.append(_pool_constants(layer))
        elif isinstance(layer, FullyConnected):
            parts.append(_fc_constants(layer))
    schedules = _schedules(plan)
    return "\n".join(parts) + ("\n" + schedules if schedules else "")


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
        }
    return fields


_OWN_KERNELS = (
    f" * and {KERNELS_H} beside this file: mnist-edge's own convolution kernel, where CMSIS-NN\n"
    " * is slow (header-only: nothing to add to the build)."
)


def _helpers(plan: MemoryPlan) -> str:
    """The C glue the fused and streamed stages call, each once, and only if called."""
    fused = []
    for stage in plan.stages:
        if isinstance(stage, StreamStage):
            fused += [stage.producer, stage.consumer]
        elif isinstance(stage, FusedStage):
            fused.append(stage)
    used = {_slice_function(stage) for stage in fused}
    parts = [template("slices.c").template] if "conv_slice" in used else []
    if EDGE_SLICE in used:
        parts.append(template("slices_edge.c").template)
    return "".join(parts)


def emit_files(
    graph: Graph, plan: MemoryPlan, model_bytes: bytes, origin: str, prefix: str
) -> dict[str, bytes]:
    """model.h and model.c for a graph and its memory plan."""
    body, used = _body(graph, plan)
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
            f"{plan.level}, {plan.peak_bytes:,} B (one call per layer would need at least "
            f"{plan.lower_bound_bytes:,} B)."
        ),
        "offsets": _offsets(plan),
        "types": template("layer_types.c").template,
        "constants": _constants(graph, plan, used),
        "helpers": _helpers(plan),
        "includes": f'#include "{KERNELS_H}"\n' if own else "",
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
    return files
