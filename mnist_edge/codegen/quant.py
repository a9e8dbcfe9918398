"""TFLM's integer requantization parameters, computed exactly as its Prepare computes them.

Bit-exactness with TFLM starts here: every multiplier and shift the kernels use must be the
one TFLM derives from the float32 scales in the flatbuffer, including its choice of double or
float32 arithmetic at each step. Sources (tensorflow/tflite-micro 90b983c):
tensorflow/lite/kernels/internal/quantization_util.cc (QuantizeMultiplier,
PreprocessSoftmaxScaling, CalculateInputRadius), tensorflow/lite/kernels/kernel_util.cc
(PopulateConvolutionQuantizationParams, CalculateActivationRangeQuantized),
micro/kernels/fully_connected_common.cc and micro/kernels/softmax_common.cc. TFLM's exponent
is CMSIS-NN's shift (positive: left).
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MAX = (1 << 31) - 1
# The softmax's fixed-point input has 5 integer bits (softmax_common.cc, kScaledDiffIntegerBits).
SOFTMAX_INTEGER_BITS = 5


def round_half_away(x: float) -> int:
    """C's round(): halves go away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: (Q31 multiplier, shift) with real = m * 2^(shift - 31)."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    # mantissa * 2^31 is exact in a double, so adding 0.5 before the floor cannot round.
    fixed = round_half_away(mantissa * (1 << 31))
    if fixed == 1 << 31:  # the mantissa rounded up to 1.0
        fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: TFLM flushes it to zero
        return 0, 0
    return fixed, shift


def channel_multipliers(
    input_scale: float, weight_scales: tuple[float, ...], output_scale: float, channels: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-channel (multipliers, shifts) of a convolution or a dense layer.

    The effective scale is double(input) * double(weight[c]) / double(output), left to right
    (in float32 the product changes most multipliers); one weight scale (per tensor) is used
    for every channel, as TFLM broadcasts it.

    A per-tensor dense layer is computed the same way. The pinned TFLM source (90b983c,
    GetQuantizedConvolutionMultipler) and LiteRT 2.3 round that product to float32 first; the
    TFLM interpreter the tests compare with (the tflite-micro wheel, 8f6596d) does not: on the
    tests' per-tensor model, the float32 product left 2 of 10,000 outputs a step off it.
    """
    pairs = [
        quantize_multiplier(
            input_scale * weight_scales[c if len(weight_scales) > 1 else 0] / output_scale
        )
        for c in range(channels)
    ]
    return tuple(m for m, _ in pairs), tuple(s for _, s in pairs)


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """The int8 clamp of a fused activation (CalculateActivationRangeQuantized)."""

    def quantize(value: float) -> int:
        # TFLM divides in float32 and rounds with TfLiteRound (half away from zero).
        return zero_point + round_half_away(float(np.float32(value) / np.float32(scale)))

    if activation == "RELU":
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    return INT8_MIN, INT8_MAX


def softmax_parameters(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, diff_min) of the int8 softmax.

    PreprocessSoftmaxScaling caps beta * scale * 2^(31 - 5) at 2^31 - 1 (double rounding) and
    quantizes it; diff_min is minus CalculateInputRadius(5, shift), floored.
    """
    real = min(beta * input_scale * (1 << (31 - SOFTMAX_INTEGER_BITS)), float(INT32_MAX))
    multiplier, shift = quantize_multiplier(real)
    radius = ((1 << SOFTMAX_INTEGER_BITS) - 1) * (1 << (31 - SOFTMAX_INTEGER_BITS)) / (1 << shift)
    return multiplier, shift, -math.floor(radius)


def kernel_sums(
    weights: np.ndarray, bias: np.ndarray, input_offset: int, weight_offset: int
) -> np.ndarray:
    """arm_vector_sum_s8 on a dense layer's constant weights: bias + input_offset * (row sum
    + columns * weight_offset), in wrapping int32 as the C computes it.

    Only CMSIS-NN's Helium (MVE) path reads these; TFLM computes them in Prepare, we in Python.
    """
    rows = weights.astype(np.int64).sum(axis=1)
    if weight_offset:
        rows += weights.shape[1] * weight_offset
    sums = bias.astype(np.int64) + rows * input_offset if input_offset else bias.astype(np.int64)
    return ((sums + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
