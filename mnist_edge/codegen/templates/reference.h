/* TFLM's reference integer kernels, in C99, for the operators TFLM's CMSIS-NN build runs with
 * its own reference code (MEAN, CONCATENATION, LOGISTIC, QUANTIZE, DEQUANTIZE, broadcasting ADD
 * and MUL, RELU, RELU6). Header-only (static inline functions): nothing else to build, no
 * allocation, no libm. Each function names the TFLM source (tensorflow/tflite-micro at
 * 90b983c) whose arithmetic it reproduces bit for bit; the parameters (multipliers, shifts,
 * radii, shapes) are computed at generation time as TFLM's Prepare computes them
 * (mnist_edge/codegen/reference.py).
 *
 * Requantization is TFLM's default double rounding (gemmlowp's SaturatingRoundingDoublingHighMul
 * then RoundingDivideByPOT): TFLITE_SINGLE_ROUNDING is not defined in TFLM's builds. Right
 * shifts of negative numbers are arithmetic, as in TFLM itself (GCC and Arm's compilers define
 * them so). Float arithmetic is IEEE single precision, as TFLM's: it compiles to soft-float
 * calls where there is no FPU.
 */
#ifndef MNIST_EDGE_REFERENCE_H_
#define MNIST_EDGE_REFERENCE_H_

#include <stdint.h>

#define REF_MAX_DIMS 6

/* ---- gemmlowp fixed point (gemmlowp/fixedpoint/fixedpoint.h), int32 lanes ---- */

/* SaturatingRoundingDoublingHighMul<int32_t>: (a * b * 2) >> 32, rounded to nearest. */
static inline int32_t ref_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    /* C99's division truncates toward zero, as C++'s does in gemmlowp. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* RoundingDivideByPOT<int32_t>: x / 2^exponent, halves away from zero (0 <= exponent <= 31). */
static inline int32_t ref_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0: a saturating left shift. */
static inline int32_t ref_saturating_left_shift(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* MultiplyByQuantizedMultiplier(int32_t, int32_t, int), double rounding
 * (tensorflow/lite/kernels/internal/common.cc). */
static inline int32_t ref_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier,
                                                           int32_t shift)
{
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    /* TFLM multiplies by (1 << left_shift) in int32; its Prepare keeps that in range. */
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return ref_rounding_divide_by_pot(ref_doubling_high_mul(shifted, multiplier), right_shift);
}

static inline int8_t ref_clamp_s8(int32_t value, int32_t low, int32_t high)
{
    return (int8_t)(value < low ? low : (value > high ? high : value));
}

/* ---- MEAN ---- */

/* tensorflow/lite/kernels/internal/reference/reduce.h, QuantizedMeanOrSum<int8_t, int32_t>
 * (micro/kernels/reduce_common.cc, EvalMeanHelper): sum each run of `reduced` values (int32,
 * wrapping), subtract input_zero_point * reduced, requantize with the multiplier already
 * divided by `reduced` (done in reference.py), add the output zero point, clamp. The input is
 * [outer, reduced, inner]: a contiguous run of reduced axes (height and width of NHWC). */
static inline void ref_mean_s8(const int8_t *input, int8_t *output, int32_t outer,
                               int32_t reduced, int32_t inner, int64_t zero_point_sum,
                               int32_t multiplier, int32_t shift, int32_t output_zero_point)
{
    for (int32_t o = 0; o < outer; ++o) {
        const int8_t *block = input + (int64_t)o * reduced * inner;
        for (int32_t i = 0; i < inner; ++i) {
            uint32_t sum = 0; /* TFLM's AddTensorValuesWithExpectedOverflow wraps */
            for (int32_t r = 0; r < reduced; ++r) {
                sum += (uint32_t)(int32_t)block[(int64_t)r * inner + i];
            }
            /* TFLM: static_cast<int32_t>(temp_sum - zero_point * count), in int64. */
            const int32_t shifted = (int32_t)(uint32_t)((uint64_t)(int64_t)(int32_t)sum -
                                                        (uint64_t)zero_point_sum);
            const int32_t value =
                ref_multiply_by_quantized_multiplier(shifted, multiplier, shift) +
                output_zero_point;
            output[(int64_t)o * inner + i] = ref_clamp_s8(value, INT8_MIN, INT8_MAX);
        }
    }
}

/* ---- CONCATENATION ---- */

/* tensorflow/lite/kernels/internal/reference/concatenation.h, Concatenation<int8_t>: for each
 * of `outer` blocks, copy copy_sizes[k] bytes of each input in turn (int8 inputs share the
 * output's scale and zero point: micro/kernels/concatenation.cc refuses others). */
static inline void ref_concatenation_s8(const int8_t *const *inputs, const int32_t *copy_sizes,
                                        int32_t count, int32_t outer, int8_t *output)
{
    for (int32_t o = 0; o < outer; ++o) {
        for (int32_t k = 0; k < count; ++k) {
            const int8_t *from = inputs[k] + (int64_t)o * copy_sizes[k];
            for (int32_t j = 0; j < copy_sizes[k]; ++j) {
                *output++ = from[j];
            }
        }
    }
}

/* ---- LOGISTIC ---- */

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31. */
static inline int32_t ref_exp_on_quarter_interval(int32_t a)
{
    const int32_t constant_term = 1895147668;   /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = a + (1 << 28);             /* a + 1/8 */
    const int32_t x2 = ref_doubling_high_mul(x, x);
    const int32_t x3 = ref_doubling_high_mul(x2, x);
    const int32_t x4 = ref_doubling_high_mul(x2, x2);
    const int32_t x4_over_4 = ref_rounding_divide_by_pot(x4, 2);
    const int32_t polynomial = ref_rounding_divide_by_pot(
        ref_doubling_high_mul(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + ref_doubling_high_mul(constant_term, x + polynomial);
}

/* gemmlowp exp_on_negative_values for a Q4.27 input (kIntegerBits 4), Q0.31 result. */
static inline int32_t ref_exp_on_negative_values_q4(int32_t a)
{
    static const int32_t multipliers[6] = {/* exp(-2^k), k = -2 .. 3 */
                                           1672461947, 1302514674, 790015084,
                                           290630308,  39332535,   720401};
    const int32_t one_quarter = 1 << 25;
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    int32_t result =
        ref_exp_on_quarter_interval(ref_saturating_left_shift(a_mod_quarter_minus_one_quarter, 4));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    for (int32_t k = 0; k < 6; ++k) {
        if (remainder & (1 << (25 + k))) {
            result = ref_doubling_high_mul(result, multipliers[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Newton-Raphson, Q0.31 in and out. */
static inline int32_t ref_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX; /* RoundingHalfSum(a, One) */
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;   /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    int32_t x = constant_48_over_17 + ref_doubling_high_mul(half_denominator,
                                                            constant_neg_32_over_17);
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = ref_doubling_high_mul(half_denominator, x);
        const int32_t one_minus = (1 << 29) - half_denominator_times_x;
        x = x + ref_saturating_left_shift(ref_doubling_high_mul(x, one_minus), 2);
    }
    return ref_saturating_left_shift(x, 1);
}

/* gemmlowp logistic for a Q4.27 input: Q0.31 result. */
static inline int32_t ref_logistic_q4(int32_t a)
{
    if (a == 0) {
        return 1 << 30;
    }
    const int32_t magnitude = a > 0 ? a : (int32_t)(0u - (uint32_t)a);
    const int32_t positive = ref_one_over_one_plus_x(
        ref_exp_on_negative_values_q4((int32_t)(0u - (uint32_t)magnitude)));
    return a > 0 ? positive : INT32_MAX - positive;
}

/* tensorflow/lite/kernels/internal/reference/integer_ops/logistic.h, Logistic (int8)
 * (micro/kernels/logistic.cc): inputs beyond the radius saturate; others are rescaled to Q4.27,
 * go through gemmlowp's fixed-point logistic, and come back as int8 with zero point -128. */
static inline void ref_logistic_s8(const int8_t *input, int8_t *output, int32_t size,
                                   int32_t input_zero_point, int32_t input_range_radius,
                                   int32_t input_multiplier, int32_t input_left_shift)
{
    for (int32_t i = 0; i < size; ++i) {
        const int32_t value = (int32_t)input[i] - input_zero_point;
        if (value <= -input_range_radius) {
            output[i] = INT8_MIN;
        } else if (value >= input_range_radius) {
            output[i] = INT8_MAX;
        } else {
            const int32_t q4 =
                ref_multiply_by_quantized_multiplier(value, input_multiplier, input_left_shift);
            const int32_t q0 = ref_logistic_q4(q4);
            const int32_t out = ref_rounding_divide_by_pot(q0, 23) - 128;
            output[i] = ref_clamp_s8(out, INT8_MIN, INT8_MAX);
        }
    }
}

/* ---- QUANTIZE, DEQUANTIZE, requantizing activations ---- */

/* TfLiteRound on a float (std::round): halves away from zero, without libm. Magnitudes of
 * 2^23 and more are integers already. */
static inline float ref_round_half_away(float x)
{
    const float big = 8388608.0f; /* 2^23 */
    if (!(x > -big && x < big)) {
        return x;
    }
    const float truncated = (float)(int32_t)x;
    const float fraction = x - truncated; /* exact below 2^23 */
    if (fraction >= 0.5f) {
        return truncated + 1.0f;
    }
    if (fraction <= -0.5f) {
        return truncated - 1.0f;
    }
    return truncated;
}

/* tensorflow/lite/kernels/internal/reference/quantize.h, AffineQuantize<float, int8_t>
 * (micro/kernels/quantize_common.cc): round(x / scale) in single precision, plus the zero
 * point, clamped. TFLM converts the rounded float to int32 directly, which C leaves undefined
 * beyond the int32 range: here such values (and NaN) saturate as a Cortex-M's VCVT does. */
static inline void ref_quantize_f32_s8(const float *input, int8_t *output, int32_t size,
                                       float scale, int32_t zero_point)
{
    for (int32_t i = 0; i < size; ++i) {
        const float rounded = ref_round_half_away(input[i] / scale);
        int32_t value;
        if (rounded >= 2147483648.0f) {
            value = INT32_MAX;
        } else if (rounded < -2147483648.0f) {
            value = INT32_MIN;
        } else if (rounded == rounded) {
            value = (int32_t)rounded;
        } else {
            value = 0;
        }
        const int64_t shifted = (int64_t)value + zero_point;
        output[i] = (int8_t)(shifted < INT8_MIN ? INT8_MIN
                                                : (shifted > INT8_MAX ? INT8_MAX : shifted));
    }
}

/* tensorflow/lite/kernels/internal/reference/dequantize.h, Dequantize<int8_t, float>
 * (micro/kernels/dequantize.cc): (float)(double(scale) * (x - zero_point)). The double
 * product of a float and an integer below 2^9 is exact, so rounding it to float equals the
 * single-precision product, which is what this computes (no double arithmetic on an FPU
 * that has none). */
static inline void ref_dequantize_s8_f32(const int8_t *input, float *output, int32_t size,
                                         float scale, int32_t zero_point)
{
    for (int32_t i = 0; i < size; ++i) {
        output[i] = scale * (float)((int32_t)input[i] - zero_point);
    }
}

/* tensorflow/lite/kernels/internal/reference/requantize.h, Requantize<int8_t, int8_t> (QUANTIZE
 * int8 -> int8, micro/kernels/quantize_common.cc), and micro/kernels/activations.h,
 * ReluQuantized<int8_t> (RELU): (x - input zero point) requantized, plus the output zero point,
 * clamped to [low, high]. */
static inline void ref_requantize_s8(const int8_t *input, int8_t *output, int32_t size,
                                     int32_t input_zero_point, int32_t multiplier, int32_t shift,
                                     int32_t output_zero_point, int32_t low, int32_t high)
{
    for (int32_t i = 0; i < size; ++i) {
        const int32_t value =
            ref_multiply_by_quantized_multiplier((int32_t)input[i] - input_zero_point,
                                                 multiplier, shift) +
            output_zero_point;
        output[i] = ref_clamp_s8(value, low, high);
    }
}

/* micro/kernels/activations.h, Relu6Quantized<int8_t> (RELU6): a clamp to [zero, six] in the
 * input's quantization; TFLM does not requantize here. */
static inline void ref_clamp_s8_array(const int8_t *input, int8_t *output, int32_t size,
                                      int32_t low, int32_t high)
{
    for (int32_t i = 0; i < size; ++i) {
        output[i] = ref_clamp_s8(input[i], low, high);
    }
}

/* ---- ADD and MUL with broadcasting ---- */

/* tflite::ArithmeticParams as micro/kernels/add_common.cc and mul_common.cc fill it. MUL uses
 * the offsets, the output multiplier and shift and the clamp; the input multipliers, input
 * shifts and left_shift are ADD's. */
typedef struct {
    int32_t input1_offset;
    int32_t input1_multiplier;
    int32_t input1_shift;
    int32_t input2_offset;
    int32_t input2_multiplier;
    int32_t input2_shift;
    int32_t left_shift;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t activation_min;
    int32_t activation_max;
} ref_arithmetic_params;

/* Both inputs and the output as REF_MAX_DIMS-D shapes (leading 1s): the output's dims, and each
 * input's element strides (0 along a broadcast dimension). */
typedef struct {
    int32_t dims[REF_MAX_DIMS];
    int32_t strides1[REF_MAX_DIMS];
    int32_t strides2[REF_MAX_DIMS];
} ref_broadcast_shape;

/* tensorflow/lite/kernels/internal/reference/integer_ops/add.h, AddFunc (int8). */
static inline int8_t ref_add_s8(int32_t x, int32_t y, const ref_arithmetic_params *p)
{
    const int32_t shifted1 = (p->input1_offset + x) * (1 << p->left_shift);
    const int32_t shifted2 = (p->input2_offset + y) * (1 << p->left_shift);
    const int32_t scaled1 =
        ref_multiply_by_quantized_multiplier(shifted1, p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 =
        ref_multiply_by_quantized_multiplier(shifted2, p->input2_multiplier, p->input2_shift);
    const int32_t raw = ref_multiply_by_quantized_multiplier(scaled1 + scaled2,
                                                             p->output_multiplier,
                                                             p->output_shift) +
                        p->output_offset;
    return ref_clamp_s8(raw, p->activation_min, p->activation_max);
}

/* tensorflow/lite/kernels/internal/reference/integer_ops/mul.h, BroadcastMul6DSlow's op. */
static inline int8_t ref_mul_s8(int32_t x, int32_t y, const ref_arithmetic_params *p)
{
    const int32_t product = (p->input1_offset + x) * (p->input2_offset + y);
    const int32_t raw =
        ref_multiply_by_quantized_multiplier(product, p->output_multiplier, p->output_shift) +
        p->output_offset;
    return ref_clamp_s8(raw, p->activation_min, p->activation_max);
}

/* tensorflow/lite/kernels/internal/reference/broadcast_loop.h, BroadcastBinaryOpSimple, as
 * integer_ops/add.h BroadcastAdd4DSlow (is_mul 0) and integer_ops/mul.h BroadcastMul4DSlow
 * (is_mul 1) call it: the same element operation at every output index, the inputs read
 * through their strides. The order of the loops does not change any value. */
static inline void ref_broadcast_s8(const int8_t *input1, const int8_t *input2, int8_t *output,
                                    const ref_broadcast_shape *s, const ref_arithmetic_params *p,
                                    int32_t is_mul)
{
    const int32_t *d = s->dims;
    const int32_t *a = s->strides1;
    const int32_t *b = s->strides2;
    for (int32_t i0 = 0; i0 < d[0]; ++i0) {
        for (int32_t i1 = 0; i1 < d[1]; ++i1) {
            for (int32_t i2 = 0; i2 < d[2]; ++i2) {
                for (int32_t i3 = 0; i3 < d[3]; ++i3) {
                    for (int32_t i4 = 0; i4 < d[4]; ++i4) {
                        const int8_t *x =
                            input1 + i0 * a[0] + i1 * a[1] + i2 * a[2] + i3 * a[3] + i4 * a[4];
                        const int8_t *y =
                            input2 + i0 * b[0] + i1 * b[1] + i2 * b[2] + i3 * b[3] + i4 * b[4];
                        for (int32_t i5 = 0; i5 < d[5]; ++i5) {
                            *output++ = is_mul ? ref_mul_s8(x[i5 * a[5]], y[i5 * b[5]], p)
                                               : ref_add_s8(x[i5 * a[5]], y[i5 * b[5]], p);
                        }
                    }
                }
            }
        }
    }
}

#endif /* MNIST_EDGE_REFERENCE_H_ */
