"""The constants of each layer in model.c: weights, biases, TFLM's requantization parameters
and the CMSIS-NN argument structs, with a one-line description of the layer above them."""

from __future__ import annotations

import numpy as np

from mnist_edge.codegen import quant
from mnist_edge.codegen.cmsis import depthwise_weights
from mnist_edge.codegen.layers import (
    Conv2D,
    FullyConnected,
    Layer,
    Pool2D,
    Softmax,
)
from mnist_edge.device.csource import c_values


def per_channel(layer) -> bool:
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
    """NHWC dims of a tensor of any rank up to 4 (leading dimensions of 1 added)."""
    padded = (1,) * (4 - len(shape)) + tuple(shape)
    return _dims(*padded)


def _tile(pair: tuple[int, int]) -> str:
    return f"{{.w = {pair[1]}, .h = {pair[0]}}}"


def describe(layer: Layer) -> str:
    """One line naming a layer, its shapes and its settings, for the comments."""
    shapes = f"{layer.input.dims()} -> {layer.output.dims()}"
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel
        quantized = "per-channel" if len(layer.weight_scales) > 1 else "per-tensor"
        return (
            f"{layer.name}: {layer.op} {shapes}, {kh}x{kw} stride {layer.stride[0]}x"
            f"{layer.stride[1]} {layer.padding_kind}, {layer.activation}, {quantized}"
        )
    if isinstance(layer, Pool2D):
        wh, ww = layer.window
        return (
            f"{layer.name}: {layer.op} {shapes}, {wh}x{ww} stride {layer.stride[0]}x"
            f"{layer.stride[1]} {layer.padding_kind}"
        )
    if isinstance(layer, FullyConnected):
        quantized = "per-channel" if per_channel(layer) else "per-tensor"
        return f"{layer.name}: FULLY_CONNECTED {shapes}, {layer.activation}, {quantized}"
    if len(layer.inputs) > 1:
        shapes = " + ".join(t.dims() for t in layer.inputs) + f" -> {layer.output.dims()}"
    if isinstance(layer, Softmax):
        return f"{layer.name}: SOFTMAX {shapes}, beta {layer.beta:g}"
    return f"{layer.name}: {layer.op} {shapes}"


def conv_constants(conv: Conv2D, scratch_bytes: int) -> str:
    """A convolution's (or a depthwise one's) weights, bias, multipliers and conv_layer_t."""
    out_ch = conv.weights.shape[0]
    mults, shifts = quant.channel_multipliers(
        conv.input.scale, conv.weight_scales, conv.output.scale, out_ch
    )
    low, high = quant.activation_range(conv.activation, conv.output.scale, conv.output.zero_point)
    n = conv.name
    kh, kw = conv.kernel
    if conv.depthwise:  # CMSIS-NN reads 1 x H x W x O, filter dims {1, h, w, O}
        weights, filter_dims = depthwise_weights(conv), _dims(1, kh, kw, out_ch)
    else:
        weights, filter_dims = conv.weights, _dims(out_ch, kh, kw, conv.weights.shape[3])
    ch_mult = conv.multiplier if conv.depthwise else 0
    struct = f"""static const conv_layer_t {n} = {{
    .params = {{.input_offset = {-conv.input.zero_point}, .output_offset = {conv.output.zero_point},
               .stride = {_tile(conv.stride)}, .padding = {_tile(conv.padding)},
               .dilation = {_tile(conv.dilation)}, .activation = {{.min = {low}, .max = {high}}}}},
    .quant = {{.multiplier = (int32_t *){n}_multipliers, .shift = (int32_t *){n}_shifts}},
    .input = {_nhwc(conv.input.shape)},
    .filter = {filter_dims},
    .bias = {_dims(1, 1, 1, out_ch)},
    .output = {_nhwc(conv.output.shape)},
    .weights = {n}_weights,
    .bias_data = {n}_bias,
    .scratch_bytes = {scratch_bytes},
    .ch_mult = {ch_mult},
}};
"""
    return (
        f"/* {describe(conv)} */\n"
        + c_array("int8_t", f"{n}_weights", weights)
        + c_array("int32_t", f"{n}_bias", conv.bias, 8)
        + c_array("int32_t", f"{n}_multipliers", np.array(mults), 8)
        + c_array("int32_t", f"{n}_shifts", np.array(shifts))
        + "/* CMSIS-NN's quant struct is not const-qualified; the kernel only reads it. */\n"
        + struct
    )


def pool_constants(pool: Pool2D) -> str:
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


def fc_constants(fc: FullyConnected) -> str:
    n, (out_ch, depth) = fc.name, fc.weights.shape
    low, high = quant.activation_range(fc.activation, fc.output.scale, fc.output.zero_point)
    parts = [f"/* {describe(fc)} */\n", c_array("int8_t", f"{n}_weights", fc.weights)]
    parts.append(c_array("int32_t", f"{n}_bias", fc.bias, 8))
    if per_channel(fc):
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


def layer_constants(layer: Layer, scratch_bytes: int) -> str:
    """Everything a layer's call reads from flash ("" for a layer with none)."""
    if isinstance(layer, Conv2D):
        return conv_constants(layer, scratch_bytes)
    if isinstance(layer, Pool2D):
        return pool_constants(layer)
    if isinstance(layer, FullyConnected):
        return fc_constants(layer)
    return ""
