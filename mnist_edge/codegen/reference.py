"""The operators TFLM's CMSIS-NN build runs with TFLM's own reference code: their integer
parameters, computed as TFLM's Prepare computes them, and the C that calls templates/reference.h
(or CMSIS-NN, where TFLM's CMSIS-NN build does: PAD, and ADD and MUL of equal shapes).

Each operator has a frozen dataclass of parameters and a function building it from what the
flatbuffer holds: the activation tensors (anything with `shape`, `scale` (the float32 scale as
a Python float, 0 for float32), `zero_point` and `dtype`, as layers.Activation) and the
operator's options as keywords. SUPPORTED maps TFLM's operator names to those functions;
`c_call` writes any of them as C. What TFLM would refuse, or what TFLM does that this module
cannot reproduce, is a ModelError of one line.

Sources (tensorflow/tflite-micro 90b983c, under tensorflow/lite/): micro/kernels/
reduce_common.cc, concatenation.cc, logistic_common.cc, quantize_common.cc,
dequantize_common.cc, add_common.cc, mul_common.cc, pad_common.cc, cmsis_nn/{add,mul,pad}.cc,
activations_common.cc; kernels/internal/quantization_util.cc and kernel_util.cc. Scales are
float32 in the flatbuffer; a Python float holds one exactly, so TFLM's
`static_cast<double>(scale)` arithmetic is Python's, and its float32 steps go through numpy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mnist_edge.codegen.quant import INT8_MAX, INT8_MIN, activation_range, quantize_multiplier
from mnist_edge.codegen.quant import round_half_away as _round
from mnist_edge.errors import ModelError

# Broadcasting shapes are handled up to 6-D (TFLM's RuntimeShape kMaxSmallSize).
MAX_DIMS = 6
# micro/kernels/concatenation.cc, kMaxInputNum.
MAX_CONCAT_INPUTS = 10
# The logistic's fixed-point input has 4 integer bits (logistic_common.cc, kInputIntegerBits).
LOGISTIC_INTEGER_BITS = 4
# add_common.cc: int8 inputs are shifted left by 20 bits before rescaling.
ADD_LEFT_SHIFT = 20


class Tensor(Protocol):
    """What a parameter function reads of an activation tensor (layers.Activation has it)."""

    shape: tuple[int, ...]
    scale: float
    zero_point: int
    dtype: str


@dataclass(frozen=True)
class MeanParams:
    """MEAN over one run of adjacent axes: the input seen as [outer, reduced, inner]."""

    outer: int
    reduced: int
    inner: int
    zero_point_sum: int  # input zero point * reduced
    multiplier: int  # already divided by `reduced`, as QuantizedMeanOrSum does
    shift: int
    output_zero_point: int


@dataclass(frozen=True)
class ConcatenationParams:
    """Per input, the bytes copied per outer block; `outer` blocks."""

    copy_sizes: tuple[int, ...]
    outer: int


@dataclass(frozen=True)
class LogisticParams:
    size: int
    input_zero_point: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


@dataclass(frozen=True)
class QuantizeParams:
    """QUANTIZE from float32: round(x / scale) + zero point in single precision."""

    size: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class RequantizeParams:
    """QUANTIZE int8 -> int8, and RELU: requantize, add the output zero point, clamp."""

    size: int
    input_zero_point: int
    multiplier: int
    shift: int
    output_zero_point: int
    low: int = INT8_MIN
    high: int = INT8_MAX


@dataclass(frozen=True)
class DequantizeParams:
    size: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class ClampParams:
    """RELU6: a clamp in the input's own quantization (TFLM does not requantize)."""

    size: int
    low: int
    high: int


@dataclass(frozen=True)
class BroadcastShape:
    """The output's dims as 6-D, and each input's element strides (0 where it broadcasts)."""

    dims: tuple[int, ...]
    strides1: tuple[int, ...]
    strides2: tuple[int, ...]


@dataclass(frozen=True)
class ArithmeticParams:
    """tflite::ArithmeticParams of an int8 ADD or MUL (add_common.cc, mul_common.cc).

    CMSIS-NN's arm_elementwise_add_s8 (equal shapes) takes input1_offset, input1_multiplier,
    input1_shift, input2_offset, input2_multiplier, input2_shift, left_shift, output_offset,
    output_multiplier, output_shift, activation_min, activation_max and `size`;
    arm_elementwise_mul_s8 takes input1_offset, input2_offset, output_offset,
    output_multiplier, output_shift, activation_min, activation_max and `size` (MUL leaves the
    input multipliers, input shifts and left_shift 0). `broadcast` is None where TFLM's
    ProcessBroadcastShapes finds the shapes equal (CMSIS-NN's call), else the reference
    broadcast loop's shape.
    """

    op: str  # "ADD" or "MUL"
    input1_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    left_shift: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    activation_min: int
    activation_max: int
    size: int
    broadcast: BroadcastShape | None


@dataclass(frozen=True)
class PadParams:
    """CMSIS-NN's arm_pad_s8 arguments: NHWC dims of the input, padding before and after."""

    input_dims: tuple[int, int, int, int]
    before: tuple[int, int, int, int]
    after: tuple[int, int, int, int]
    value: int


def _need_int8(op: str, *tensors: Tensor) -> None:
    for tensor in tensors:
        if tensor.dtype != "int8":
            raise ModelError(f"{op}: a {tensor.dtype} tensor; the C engine compiles int8 {op}.")


def _axis(op: str, axis: int, rank: int) -> int:
    resolved = axis + rank if axis < 0 else axis
    if not 0 <= resolved < rank:
        raise ModelError(f"{op}: axis {axis} of a {rank}-D tensor is out of range.")
    return resolved


def mean(inputs: list[Tensor], output: Tensor, *, axes, keep_dims: bool = True) -> MeanParams:
    """MEAN (reduce_common.cc, PrepareMeanOrSumHelper; reduce.h, QuantizedMeanOrSum)."""
    (source,) = inputs
    _need_int8("MEAN", source, output)
    rank = len(source.shape)
    resolved = sorted({_axis("MEAN", int(a), rank) for a in axes})
    if not resolved or resolved != list(range(resolved[0], resolved[-1] + 1)):
        raise ModelError(
            f"MEAN over axes {tuple(axes)} of a {rank}-D tensor is not supported: "
            "only one run of adjacent axes (height and width of NHWC)."
        )
    first, last = resolved[0], resolved[-1] + 1
    reduced = math.prod(source.shape[first:last])
    kept = [1 if first <= i < last else d for i, d in enumerate(source.shape)]
    expected = tuple(kept if keep_dims else [d for i, d in enumerate(kept) if i not in resolved])
    if math.prod(expected) != math.prod(output.shape) or reduced == 0:
        raise ModelError(f"MEAN: output shape {output.shape}, expected {expected}.")
    multiplier, shift = quantize_multiplier(source.scale / output.scale)
    # QuantizedMeanOrSum folds 1/reduced into the multiplier, clamping the shift it borrows.
    borrowed = min(reduced.bit_length() - 1, 32, 31 + shift)
    return MeanParams(
        outer=math.prod(source.shape[:first]),
        reduced=reduced,
        inner=math.prod(source.shape[last:]),
        zero_point_sum=source.zero_point * reduced,
        multiplier=(multiplier << borrowed) // reduced,
        shift=shift - borrowed,
        output_zero_point=output.zero_point,
    )


def concatenation(
    inputs: list[Tensor], output: Tensor, *, axis: int, activation: str = "NONE"
) -> ConcatenationParams:
    """CONCATENATION (concatenation.cc, ConcatenationPrepare): int8 inputs must share the
    output's scale and zero point; TFLM does not rescale."""
    _need_int8("CONCATENATION", output, *inputs)
    if activation != "NONE":
        raise ModelError(f"CONCATENATION with a fused {activation}: TFLM refuses it.")
    if not 1 <= len(inputs) <= MAX_CONCAT_INPUTS:
        raise ModelError(f"CONCATENATION of {len(inputs)} inputs: TFLM takes 1 to 10.")
    rank = len(output.shape)
    axis = _axis("CONCATENATION", axis, rank)
    for k, source in enumerate(inputs):
        if source.scale != output.scale or source.zero_point != output.zero_point:
            raise ModelError(
                f"CONCATENATION input {k}: scale {source.scale} zero point {source.zero_point}, "
                f"output {output.scale} {output.zero_point}; TFLM requires them equal for int8."
            )
        rest = _without(output.shape, axis)
        if len(source.shape) != rank or _without(source.shape, axis) != rest:
            raise ModelError(
                f"CONCATENATION input {k}: shape {source.shape} does not fit {output.shape}."
            )
    if sum(s.shape[axis] for s in inputs) != output.shape[axis]:
        raise ModelError(f"CONCATENATION: inputs' axis {axis} does not add up to {output.shape}.")
    return ConcatenationParams(
        copy_sizes=tuple(math.prod(s.shape[axis:]) for s in inputs),
        outer=math.prod(output.shape[:axis]),
    )


def _without(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(d for i, d in enumerate(shape) if i != axis)


def logistic(inputs: list[Tensor], output: Tensor) -> LogisticParams:
    """LOGISTIC (logistic_common.cc, CalculateArithmeticOpDataLogistic): the output's scale is
    taken as 1/256 whatever it is; its zero point must be -128."""
    (source,) = inputs
    _need_int8("LOGISTIC", source, output)
    if output.zero_point != INT8_MIN:
        raise ModelError(f"LOGISTIC: output zero point {output.zero_point}; TFLM requires -128.")
    real = source.scale * (1 << (31 - LOGISTIC_INTEGER_BITS))
    mantissa, shift = math.frexp(real)
    # CalculateInputRadius shifts by input_left_shift: C leaves it undefined outside [0, 63).
    if not 0 <= shift < 63:
        raise ModelError(f"LOGISTIC: input scale {source.scale} is outside TFLM's range.")
    radius = ((1 << LOGISTIC_INTEGER_BITS) - 1) * (1 << (31 - LOGISTIC_INTEGER_BITS))
    return LogisticParams(
        size=math.prod(source.shape),
        input_zero_point=source.zero_point,
        # A float32 scale has 24 significant bits: mantissa * 2^31 is an integer below 2^31.
        input_range_radius=math.floor(radius / (1 << shift)),
        input_multiplier=_round(mantissa * (1 << 31)),
        input_left_shift=shift,
    )


def quantize(inputs: list[Tensor], output: Tensor) -> QuantizeParams | RequantizeParams:
    """QUANTIZE (quantize_common.cc, PrepareQuantizeReference): float32 -> int8, or int8 ->
    int8 through a multiplier of double(input scale) / double(output scale)."""
    (source,) = inputs
    _need_int8("QUANTIZE", output)
    size = math.prod(source.shape)
    if source.dtype == "float32":
        return QuantizeParams(size=size, scale=output.scale, zero_point=output.zero_point)
    if source.dtype != "int8":
        raise ModelError(f"QUANTIZE from {source.dtype}: the C engine takes float32 or int8.")
    multiplier, shift = quantize_multiplier(source.scale / output.scale)
    return RequantizeParams(size, source.zero_point, multiplier, shift, output.zero_point)


def dequantize(inputs: list[Tensor], output: Tensor) -> DequantizeParams:
    """DEQUANTIZE (dequantize_common.cc, DequantizePrepare): int8 -> float32."""
    (source,) = inputs
    _need_int8("DEQUANTIZE", source)
    if output.dtype != "float32":
        raise ModelError(f"DEQUANTIZE to {output.dtype}: the C engine writes float32.")
    return DequantizeParams(math.prod(source.shape), source.scale, source.zero_point)


def relu(inputs: list[Tensor], output: Tensor) -> RequantizeParams:
    """RELU (activations_common.cc, CalculateReluOpData<int8_t>): requantized by
    double(float(input scale / output scale)), the float32 quotient, and clamped from the
    output's zero point."""
    (source,) = inputs
    _need_int8("RELU", source, output)
    quotient = float(np.float32(source.scale) / np.float32(output.scale))
    multiplier, shift = quantize_multiplier(quotient)
    return RequantizeParams(
        size=math.prod(source.shape),
        input_zero_point=source.zero_point,
        multiplier=multiplier,
        shift=shift,
        output_zero_point=output.zero_point,
        low=max(INT8_MIN, output.zero_point),
    )


def relu6(inputs: list[Tensor], output: Tensor) -> ClampParams:
    """RELU6 (activations_common.cc, Relu6Prepare): a clamp to [zero, six] quantized with the
    input's scale and zero point; the output's quantization is not read."""
    (source,) = inputs
    _need_int8("RELU6", source, output)
    six = _round(float(np.float32(6.0) / np.float32(source.scale))) + source.zero_point
    return ClampParams(
        math.prod(source.shape), source.zero_point, min(INT8_MAX, max(INT8_MIN, six))
    )


def _broadcast(op: str, first: tuple, second: tuple, target: tuple) -> BroadcastShape | None:
    """TFLM's ProcessBroadcastShapes (None: the shapes are equal once extended to one rank)
    and BroadcastBinaryOpSimple's strides."""
    rank = max(len(first), len(second), len(target))
    if rank > MAX_DIMS:
        raise ModelError(f"{op} of {rank}-D tensors: the C engine broadcasts up to {MAX_DIMS}-D.")
    a, b, out = ((1,) * (MAX_DIMS - len(s)) + tuple(s) for s in (first, second, target))
    for x, y, z in zip(a, b, out, strict=True):
        if not (x in (1, z) and y in (1, z) and z == max(x, y)):
            raise ModelError(f"{op}: shapes {first} and {second} do not broadcast to {target}.")
    if a == b:
        return None

    def strides(shape: tuple[int, ...]) -> tuple[int, ...]:
        steps = [math.prod(shape[i + 1 :]) for i in range(MAX_DIMS)]
        pairs = zip(shape, out, steps, strict=True)
        return tuple(0 if d == 1 and z != 1 else step for d, z, step in pairs)

    return BroadcastShape(out, strides(a), strides(b))


def _smaller_than_one(op: str, real: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: TFLM aborts unless 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise ModelError(f"{op}: a rescaling factor of {real}; TFLM requires it in (0, 1).")
    return quantize_multiplier(real)


def add(inputs: list[Tensor], output: Tensor, *, activation: str = "NONE") -> ArithmeticParams:
    """ADD (add_common.cc, CalculateOpDataAdd; cmsis_nn/add.cc): both inputs rescaled to twice
    the larger input scale, shifted left by 20 bits, summed, rescaled to the output."""
    first, second = inputs
    _need_int8("ADD", first, second, output)
    twice_max = 2 * max(first.scale, second.scale)
    m1, s1 = _smaller_than_one("ADD", first.scale / twice_max)
    m2, s2 = _smaller_than_one("ADD", second.scale / twice_max)
    mo, so = _smaller_than_one("ADD", twice_max / ((1 << ADD_LEFT_SHIFT) * output.scale))
    low, high = activation_range(activation, output.scale, output.zero_point)
    return ArithmeticParams(
        "ADD", -first.zero_point, m1, s1, -second.zero_point, m2, s2, ADD_LEFT_SHIFT,
        output.zero_point, mo, so, low, high, math.prod(output.shape),
        _broadcast("ADD", first.shape, second.shape, output.shape),
    )  # fmt: skip


def mul(inputs: list[Tensor], output: Tensor, *, activation: str = "NONE") -> ArithmeticParams:
    """MUL (mul_common.cc, CalculateOpDataMul; cmsis_nn/mul.cc): the product of the offset
    inputs requantized by double(s1) * double(s2) / double(output scale)."""
    first, second = inputs
    _need_int8("MUL", first, second, output)
    multiplier, shift = quantize_multiplier(first.scale * second.scale / output.scale)
    low, high = activation_range(activation, output.scale, output.zero_point)
    return ArithmeticParams(
        "MUL", -first.zero_point, 0, 0, -second.zero_point, 0, 0, 0,
        output.zero_point, multiplier, shift, low, high, math.prod(output.shape),
        _broadcast("MUL", first.shape, second.shape, output.shape),
    )  # fmt: skip


def pad(inputs: list[Tensor], output: Tensor, *, paddings, constant=None) -> PadParams:
    """PAD and PADV2 (pad_common.cc, PadPrepare; cmsis_nn/pad.cc, PadEvalInt8 calls
    arm_pad_s8 on the last four dims). `paddings` is (before, after) per input dim;
    `constant` is PADV2's (int8 value, scale, zero point), None pads with the output's zero
    point."""
    (source,) = inputs
    _need_int8("PAD", source, output)
    pairs = [tuple(int(v) for v in pair) for pair in paddings]
    rank = len(source.shape)
    if len(pairs) != rank or any(v < 0 for pair in pairs for v in pair):
        raise ModelError(f"PAD: paddings {pairs} for a {rank}-D input.")
    padded = tuple(d + b + a for d, (b, a) in zip(source.shape, pairs, strict=True))
    if padded != tuple(output.shape):
        raise ModelError(f"PAD: output shape {output.shape}, the paddings give {padded}.")
    # cmsis_nn/pad.cc passes arm_pad_s8 only the last four dims.
    shape = tuple(source.shape)
    while len(shape) > 4 and shape[0] == 1 and pairs[0] == (0, 0):
        shape, pairs = shape[1:], pairs[1:]
    if len(shape) > 4:
        raise ModelError(f"PAD of a {rank}-D tensor: TFLM's CMSIS-NN pad takes 4-D.")
    value = output.zero_point
    if constant is not None:
        value, scale, zero_point = constant
        if scale != output.scale or zero_point != output.zero_point:
            raise ModelError("PADV2: its constant's quantization differs from the output's.")
    lead = 4 - len(shape)
    return PadParams(
        input_dims=(1,) * lead + shape,
        before=(0,) * lead + tuple(b for b, _ in pairs),
        after=(0,) * lead + tuple(a for _, a in pairs),
        value=int(value),
    )


# TFLM's operator names -> parameter functions, called as f(inputs, output, **options):
# MEAN(axes=, keep_dims=), CONCATENATION(axis=, activation=), ADD/MUL(activation=),
# PAD(paddings=), PADV2(paddings=, constant=(value, scale, zero point)); the rest take none.
SUPPORTED = {
    "MEAN": mean,
    "CONCATENATION": concatenation,
    "LOGISTIC": logistic,
    "QUANTIZE": quantize,
    "DEQUANTIZE": dequantize,
    "ADD": add,
    "MUL": mul,
    "PAD": pad,
    "PADV2": pad,
    "RELU": relu,
    "RELU6": relu6,
}
# The CMSIS-NN sources each operator's call may need, relative to the CMSIS-NN root (ADD and
# MUL: only where the shapes are equal).
_PAD_SOURCES = ("Source/PadFunctions/arm_pad_s8.c",)
CMSIS_SOURCES = {
    **{op: () for op in SUPPORTED},
    "ADD": ("Source/BasicMathFunctions/arm_elementwise_add_s8.c",),
    "MUL": ("Source/BasicMathFunctions/arm_elementwise_mul_s8.c",),
    "PAD": _PAD_SOURCES,
    "PADV2": _PAD_SOURCES,
}


def c_float(value: float) -> str:
    """A float32 as an exact C99 hexadecimal literal."""
    if np.float32(value) != value:
        raise ValueError(f"{value} is not a float32")
    return f"{float(value).hex()}f"


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)


@functools.singledispatch
def c_call(params, sources: list[str], target: str, name: str) -> tuple[str, str]:
    """(C constants at file scope, or "", the call's statements indented 4 spaces) for one
    operator; `sources` are the input buffers' C expressions, `target` the output's, `name`
    a C identifier that prefixes the constants."""
    raise TypeError(f"no C for {type(params).__name__}")


@c_call.register
def _(params: MeanParams, sources, target, name):
    p = params
    args = (f"{p.outer}, {p.reduced}, {p.inner}, (int64_t){p.zero_point_sum}, "
            f"{p.multiplier}, {p.shift}, {p.output_zero_point}")  # fmt: skip
    return "", f"    ref_mean_s8({sources[0]}, {target}, {args});\n"


@c_call.register
def _(params: ConcatenationParams, sources, target, name):
    count = len(params.copy_sizes)
    constants = f"static const int32_t {name}_sizes[{count}] = {{{_ints(params.copy_sizes)}}};\n"
    call = (
        "    {\n"
        f"        const int8_t *const {name}_inputs[{count}] = {{{', '.join(sources)}}};\n"
        f"        ref_concatenation_s8({name}_inputs, {name}_sizes, {count}, {params.outer}, "
        f"{target});\n"
        "    }\n"
    )
    return constants, call


@c_call.register
def _(params: LogisticParams, sources, target, name):
    p = params
    args = (f"{p.size}, {p.input_zero_point}, {p.input_range_radius}, {p.input_multiplier}, "
            f"{p.input_left_shift}")  # fmt: skip
    return "", f"    ref_logistic_s8({sources[0]}, {target}, {args});\n"


@c_call.register
def _(params: QuantizeParams, sources, target, name):
    args = f"{params.size}, {c_float(params.scale)}, {params.zero_point}"
    return "", f"    ref_quantize_f32_s8({sources[0]}, {target}, {args});\n"


@c_call.register
def _(params: DequantizeParams, sources, target, name):
    args = f"{params.size}, {c_float(params.scale)}, {params.zero_point}"
    return "", f"    ref_dequantize_s8_f32({sources[0]}, {target}, {args});\n"


@c_call.register
def _(params: RequantizeParams, sources, target, name):
    p = params
    args = _ints((p.size, p.input_zero_point, p.multiplier, p.shift, p.output_zero_point,
                  p.low, p.high))  # fmt: skip
    return "", f"    ref_requantize_s8({sources[0]}, {target}, {args});\n"


@c_call.register
def _(params: ClampParams, sources, target, name):
    args = _ints((params.size, params.low, params.high))
    return "", f"    ref_clamp_s8_array({sources[0]}, {target}, {args});\n"


@c_call.register
def _(params: ArithmeticParams, sources, target, name):
    p = params
    first, second = sources
    if p.broadcast is None:  # CMSIS-NN's elementwise kernel, as cmsis_nn/add.cc and mul.cc
        if p.op == "ADD":
            args = _ints(
                (
                    p.input1_offset,
                    p.input1_multiplier,
                    p.input1_shift,
                    p.input2_offset,
                    p.input2_multiplier,
                    p.input2_shift,
                    p.left_shift,
                )
            )
            args += f", {target}, " + _ints((p.output_offset, p.output_multiplier,
                                            p.output_shift, p.activation_min,
                                            p.activation_max, p.size))  # fmt: skip
        else:
            args = f"{p.input1_offset}, {p.input2_offset}, {target}, " + _ints(
                (p.output_offset, p.output_multiplier, p.output_shift, p.activation_min,
                 p.activation_max, p.size))  # fmt: skip
        return "", f"    (void)arm_elementwise_{p.op.lower()}_s8({first}, {second}, {args});\n"
    s = p.broadcast
    constants = (
        f"static const ref_arithmetic_params {name}_params = {{"
        + _ints((p.input1_offset, p.input1_multiplier, p.input1_shift, p.input2_offset,
                 p.input2_multiplier, p.input2_shift, p.left_shift, p.output_offset,
                 p.output_multiplier, p.output_shift, p.activation_min, p.activation_max))
        + "};\n"
        f"static const ref_broadcast_shape {name}_shape = {{{{{_ints(s.dims)}}}, "
        f"{{{_ints(s.strides1)}}}, {{{_ints(s.strides2)}}}}};\n"
    )  # fmt: skip
    is_mul = int(p.op == "MUL")
    call = (f"    ref_broadcast_s8({first}, {second}, {target}, &{name}_shape, &{name}_params, "
            f"{is_mul});\n")  # fmt: skip
    return constants, call


@c_call.register
def _(params: PadParams, sources, target, name):
    constants = "".join(
        f"static const cmsis_nn_dims {name}_{part} = "
        f"{{.n = {n}, .h = {h}, .w = {w}, .c = {c}}};\n"
        for part, (n, h, w, c) in (
            ("input", params.input_dims), ("before", params.before), ("after", params.after)
        )
    )  # fmt: skip
    call = (f"    (void)arm_pad_s8({sources[0]}, {target}, {params.value}, &{name}_input, "
            f"&{name}_before, &{name}_after);\n")  # fmt: skip
    return constants, call
