"""mnist-edge's own C kernel (templates/kernels.h), and when the generator calls it.

`edge_conv_s8` computes a convolution fused with the max-pool after it, where CMSIS-NN is
slow: one input channel (its im2col columns are 9 values long), or input channels a multiple
of 4 pooled by windows of at most 4 outputs (one weight read serves a whole window). It
takes the maximum of each window's accumulators before requantizing, which is exact only
while requantization is non-decreasing: a multiplier >= 0 and no accumulator whose left
shift overflows 32 bits. `edge_applies` checks both for every channel, with the largest
accumulator the weights and bias allow, before the generator emits a call; any other
convolution goes to CMSIS-NN's arm_convolve_s8.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnist_edge.codegen import quant
from mnist_edge.codegen.layers import Conv2D, MaxPool2D

MAX_TAPS = 64  # kernels.h's EDGE_1CH_MAX_TAPS: a channel's weights are locals
BLOCK = 4  # kernels.h's EDGE_BLOCK: the general path's columns at once
KERNELS_H = "kernels.h"
EDGE_SLICE = "edge_slice"  # the glue in templates/slices_edge.c
# What the kernel calls of CMSIS-NN on some target: its column conversions (DSP, plain C),
# and on Helium its convolution and max-pool (see kernels.h).
GENERAL_SOURCES = (
    "Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c",
    "Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c",
    "Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
)


def requantization_is_monotonic(conv: Conv2D) -> bool:
    """Whether every channel's requantization is non-decreasing over every accumulator the
    weights, the bias and int8 inputs allow: multiplier >= 0, left shift without overflow."""
    channels = conv.weights.shape[0]
    mults, shifts = quant.channel_multipliers(
        conv.input.scale, conv.weight_scales, conv.output.scale, channels
    )
    zero_point = conv.input.zero_point
    largest_input = max(abs(-128 - zero_point), abs(127 - zero_point))  # |q - zero point|
    weights = np.abs(conv.weights.reshape(channels, -1).astype(np.int64)).sum(axis=1)
    bounds = np.abs(conv.bias.astype(np.int64)) + largest_input * weights
    return all(
        mult >= 0 and int(bound) << max(shift, 0) < 1 << 31
        for mult, shift, bound in zip(mults, shifts, bounds, strict=True)
    )


def edge_applies(conv: Conv2D, pool: MaxPool2D | None) -> bool:
    """Whether the engine computes this convolution (and its pool) with edge_conv_s8: not a
    depthwise one, and not a 1×1 convolution alone (CMSIS-NN's 1×1 kernel needs no columns)."""
    kh, kw = conv.kernel
    if conv.depthwise or (kh * kw == 1 and pool is None):
        return False
    channels = conv.input.shape[3]
    if channels == 1:  # its win is pooling as it goes; alone, CMSIS-NN's kernel is as quick
        fits = kh * kw <= MAX_TAPS and pool is not None
    else:
        fits = channels % 4 == 0 and (pool is None or pool.window[0] * pool.window[1] <= BLOCK)
    return fits and requantization_is_monotonic(conv)


def column_length(conv: Conv2D) -> int:
    """int16 values in one of the kernel's columns: the taps, rounded up to a multiple of 4."""
    kh, kw = conv.kernel
    return -(-kh * kw * conv.input.shape[3] // 4) * 4


def edge_scratch_bytes(conv: Conv2D, pool: MaxPool2D | None, rows: Sequence[int]) -> int:
    """edge_conv_s8_get_buffer_size for the largest call on any target (`rows`: the
    convolution rows of each call), as kernels.h computes it: the columns, 4 bytes to align
    them to 8 (or on Helium, CMSIS-NN's row buffer and im2col scratch)."""
    length = column_length(conv)
    if conv.input.shape[3] == 1:  # int16 columns of taps rounded to 4; on Helium int8, to 16
        window = pool.window[1] * max(rows) if pool else 1
        width = (pool or conv).output.shape[2]
        helium = -(-length // 16) * 16
        return width * window * max(length * 2, helium) + 4
    kh, kw = conv.kernel
    helium = 4 * (-(-kh * kw * conv.input.shape[3] // 16) * 16)  # arm_convolve_s8's, MVE
    if pool is None:  # two columns
        return max(2 * length * 2 + 4, helium)
    # four columns; on Helium, with the row buffer arm_max_pool_s8 reads, 4-aligned
    helium += -(-max(rows) * conv.output.shape[2] * conv.output.shape[3] // 4) * 4
    return max(BLOCK * length * 2 + 4, helium)


def edge_call(name: str, source: str, target: str) -> tuple[str, list[str]]:
    """The kernel's call on a whole convolution without a pool (one call per layer)."""
    args = [
        "&ctx", f"&{name}.params", f"&{name}.quant", f"&{name}.input", source,
        f"&{name}.filter", f"{name}.weights", f"{name}.bias_data", "NULL", "NULL",
        f"&{name}.output", f"&{name}.output", target,
    ]  # fmt: skip
    return "edge_conv_s8", args
