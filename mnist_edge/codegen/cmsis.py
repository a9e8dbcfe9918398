"""What the engine calls of CMSIS-NN for each layer, and the scratch each call needs.

TFLM's CMSIS-NN build calls the wrappers (arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8),
which pick a kernel from the shapes at run time; the engine calls the same wrappers, so every
layer runs the kernel TFLM runs. The scratch a wrapper asks for depends on the instruction set
CMSIS-NN is compiled for (ISAS: plain C, the DSP extension, Helium), computed here as CMSIS-NN's
get_buffer_size functions compute it (pinned CMSIS-NN, Source/*/arm_*_get_buffer_sizes_s8.c).
A plan for one ISA is smallest there (an M4 never needs Helium's depthwise scratch); "any" takes
the largest of the three, so that one model.c serves every target. A slice of a convolution
computed by rows may take another kernel than the whole layer (a one-row slice of a 1×N
convolution is a 1_x_n call), so the sizes cover every kernel a slice can reach.
"""

from __future__ import annotations

from mnist_edge.codegen.layers import Conv2D, Pool2D

ISAS = ("plain", "dsp", "mve")  # ARM_MATH_DSP and ARM_MATH_MVEI undefined, the first, both
ANY = "any"
CH_IN_BLOCK_MVE = 124  # arm_nnsupportfunctions.h
ONE_INPUT_CHANNEL_THRESHOLD = 1  # CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD

CONV_SOURCES = (
    "Source/ConvolutionFunctions/arm_convolve_wrapper_s8.c",
    "Source/ConvolutionFunctions/arm_convolve_s8.c",
    "Source/ConvolutionFunctions/arm_convolve_1x1_s8.c",
    "Source/ConvolutionFunctions/arm_convolve_1x1_s8_fast.c",
    "Source/ConvolutionFunctions/arm_convolve_1_x_n_s8.c",
    "Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
    "Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c",
    "Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c",
    "Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c",
    "Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c",
    "Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c",
    "Source/NNSupportFunctions/arm_nn_mat_mul_core_1x_s8.c",
    "Source/NNSupportFunctions/arm_nn_mat_mul_core_4x_s8.c",
)
DEPTHWISE_SOURCES = (
    "Source/ConvolutionFunctions/arm_depthwise_conv_wrapper_s8.c",
    "Source/ConvolutionFunctions/arm_depthwise_conv_s8.c",
    "Source/ConvolutionFunctions/arm_depthwise_conv_s8_opt.c",
    "Source/ConvolutionFunctions/arm_depthwise_conv_3x3_s8.c",
    "Source/ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
    "Source/NNSupportFunctions/arm_nn_depthwise_conv_nt_t_padded_s8.c",
    "Source/NNSupportFunctions/arm_nn_depthwise_conv_nt_t_s8.c",
    "Source/ConvolutionFunctions/arm_nn_depthwise_conv_s8_core.c",
    # Helium runs a one-input-channel depthwise convolution as a convolution of its filter
    # transposed.
    "Source/TransposeFunctions/arm_transpose_s8.c",
) + CONV_SOURCES
AVGPOOL_SOURCES = (
    "Source/PoolingFunctions/arm_avgpool_s8.c",
    "Source/PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c",
)


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def _largest(size, layer, isa: str) -> int:
    """size(layer, isa) for one ISA, or the largest over all of them for "any"."""
    if isa == ANY:
        return max(size(layer, one) for one in ISAS)
    if isa not in ISAS:
        raise ValueError(f"unknown ISA {isa!r}: expected {ANY} or one of {', '.join(ISAS)}")
    return size(layer, isa)


def _conv_s8_bytes(columns: int, isa: str) -> int:
    """arm_convolve_s8: two int16 columns padded to 4 (plain C, DSP), or four int8 columns
    padded to 16 (Helium)."""
    return 4 * _align(columns, 16) if isa == "mve" else 2 * _align(columns, 4) * 2


def _conv_1xn_mve_bytes(conv: Conv2D, output_w: int) -> int:
    """arm_convolve_1_x_n_s8_get_buffer_size_mve."""
    in_w, channels = conv.input.shape[2], conv.input.shape[3]
    pad_x, kernel_x, stride_x = conv.padding[1], conv.kernel[1], conv.stride[1]
    total_pad = (output_w - 1) * stride_x + kernel_x - in_w
    asym = total_pad % 2
    right = max(1, (pad_x + asym + stride_x - 1) // stride_x) if pad_x + asym else 0
    left = max(1, (pad_x + stride_x - 1) // stride_x) if pad_x else 0
    middle = max(output_w - (right + left), 0)
    if right + middle + left != output_w:
        return _conv_s8_bytes(kernel_x * conv.kernel[0] * channels, "mve")
    pad_left = pad_x * channels
    pad_right = right * channels if asym else pad_left
    left_elems = kernel_x * channels
    return max(left_elems + pad_left, left_elems - channels + pad_right)


def conv_scratch_bytes(conv: Conv2D, isa: str = ANY) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size (or the depthwise wrapper's) on `isa`, for any
    slice of rows."""
    return _largest(_depthwise_bytes if conv.depthwise else _conv_bytes, conv, isa)


def _conv_bytes(conv: Conv2D, isa: str) -> int:
    kh, kw = conv.kernel
    channels = conv.input.shape[3]
    one_by_one = kh == kw == 1 and conv.padding == (0, 0) and conv.dilation == (1, 1)
    if one_by_one:
        # arm_convolve_1x1_s8_fast asks 2 * c * 2 bytes on DSP under Arm Compiler 6 only; 0
        # under GCC and elsewhere. Kept, so that a project built with armclang fits too.
        return 2 * channels * 2 if conv.stride == (1, 1) and isa == "dsp" else 0
    size = _conv_s8_bytes(kh * kw * channels, isa)
    one_by_n = kh == 1 and conv.dilation[1] == 1 and (conv.stride[1] * channels) % 4 == 0
    if one_by_n and isa == "mve":
        size = max(size, _conv_1xn_mve_bytes(conv, conv.output.shape[2]))
    return size


def _depthwise_bytes(conv: Conv2D, isa: str) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size."""
    kh, kw = conv.kernel
    in_c, out_c = conv.input.shape[3], conv.output.shape[3]
    if isa == "mve" and in_c == 1 and out_c > ONE_INPUT_CHANNEL_THRESHOLD:
        # Helium runs it as a convolution, plus the filter transposed.
        return _conv_s8_bytes(kh * kw, "mve") + out_c * kh * kw
    if in_c != out_c or conv.dilation != (1, 1):
        return 0
    if isa == "mve":
        return 4 * CH_IN_BLOCK_MVE * kh * kw
    if isa == "dsp" and not (kh == kw == 3 and max(conv.padding) <= 1):
        return in_c * kh * kw * 2  # arm_depthwise_conv_s8_opt's int16 columns
    return 0  # plain C, and the DSP's 3x3 kernel


def avgpool_scratch_bytes(pool: Pool2D, isa: str = ANY) -> int:
    """arm_avgpool_s8_get_buffer_size: one int32 per channel on DSP, none elsewhere."""
    return _largest(lambda p, one: p.input.shape[3] * 4 if one == "dsp" else 0, pool, isa)


def depthwise_weights(conv: Conv2D):
    """A depthwise convolution's weights as CMSIS-NN reads them: 1 × H × W × O."""
    return conv.weights.transpose(3, 1, 2, 0)
