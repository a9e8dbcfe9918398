/* The random-shape test of mnist-edge's own kernel (edge_conv_s8, kernels.h) against CMSIS-NN,
 * built for the host (plain C) and for QEMU's Cortex-M4 (DSP) and Cortex-M55 (Helium) boards
 * (startup.c, board.ld). tests/test_kernels.py writes the cases; this reads them with stdio
 * (semihosting on the boards), from the file named on the command line or "cases.bin".
 *
 * Each case is one convolution layer, maybe with the max-pool after it, and the calls of
 * edge_conv_s8 the generator makes for it (a pooled row's convolution rows, one convolution
 * row, or the whole layer), each call with the result it must give: success, or
 * ARM_CMSIS_NN_ARG_ERROR on a shape the kernel does not take. The reference is CMSIS-NN's
 * arm_convolve_s8 over the whole layer, then arm_max_pool_s8, each return code checked.
 *
 * Where the generator calls the kernel (requantization monotonic), every byte must match the
 * reference; where it would not, the kernel is run anyway and the calls that differ counted:
 * pooling before requantizing is what the generator's check rules out. Each call gets its
 * own scratch (the generator's size, 4 bytes off an 8-byte boundary), input (its rows only)
 * and output (canary bytes behind): a sanitizer, or the canaries, catch a kernel that strays.
 *
 * Prints each failure, then one line: cases, calls, matched, refused, unsafe (calls the
 * generator would not make), differ (of those, the ones that differ), bad, a checksum of the
 * matched outputs (the same on every architecture) and the kernel's path (plain, dsp,
 * helium). Exit status: 1 if any is bad.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* kernels.h's code path on this target, as CMSIS-NN's headers chose it. */
#if defined(ARM_MATH_MVEI)
#define PATH "helium"
#elif defined(ARM_MATH_DSP)
#define PATH "dsp"
#else
#define PATH "plain"
#endif

#define CANARY 16
#define CANARY_BYTE 0x55

enum { EXPECT_SUCCESS = 0, EXPECT_REFUSAL = 1 };

typedef struct {
    int32_t in_row, in_rows, conv_pad, conv_rows, expect;
} call_t;

static FILE *cases;
static long bad;

static int32_t next(void)
{
    int32_t word = 0;

    if (fread(&word, sizeof(word), 1, cases) != 1) {
        printf("cases file: ended early\n");
        exit(2);
    }
    return word;
}

static void *allocate(size_t bytes)
{
    void *p = malloc(bytes > 0 ? bytes : 1);

    if (p == NULL) {
        printf("out of memory (%lu bytes)\n", (unsigned long)bytes);
        exit(2);
    }
    return p;
}

static void read_bytes(int8_t *to, int32_t count)
{
    int32_t i;

    for (i = 0; i < count; ++i) {
        to[i] = (int8_t)next();
    }
}

static void read_words(int32_t *to, int32_t count)
{
    int32_t i;

    for (i = 0; i < count; ++i) {
        to[i] = next();
    }
}

static void fail(long k, long call, const char *what, long value)
{
    if (++bad <= 20) {
        printf("case %ld call %ld: %s (%ld)\n", k, call, what, value);
    }
}

static uint32_t checksum(uint32_t sum, const int8_t *data, int32_t count)
{
    int32_t i;

    for (i = 0; i < count; ++i) { /* FNV-1a */
        sum = (sum ^ (uint8_t)data[i]) * 16777619U;
    }
    return sum;
}

int main(int argc, char **argv)
{
    long k, total, calls = 0, matched = 0, refused = 0, unsafe = 0, differ = 0;
    uint32_t sum = 2166136261U;

    cases = fopen(argc > 1 ? argv[argc - 1] : "cases.bin", "rb");
    if (cases == NULL) {
        printf("cases file: cannot open\n");
        return 2;
    }
    total = next();
    for (k = 0; k < total; ++k) {
        cmsis_nn_conv_params cp;
        cmsis_nn_pool_params pp;
        cmsis_nn_per_channel_quant_params qp;
        cmsis_nn_dims in, fd, conv, win, od, bias_dims;
        cmsis_nn_context ctx;
        int32_t pooled, monotonic, scratch_bytes, count, c, n, row_bytes, at = 0;
        int8_t *input, *weights, *rows, *reference;
        int32_t *bias, *mult, *shift;
        call_t *plan;
        arm_cmsis_nn_status status;

        in.n = 1;
        in.h = next();
        in.w = next();
        in.c = next();
        fd.n = next();
        fd.h = next();
        fd.w = next();
        fd.c = in.c;
        cp.stride.h = next();
        cp.stride.w = next();
        cp.padding.h = next();
        cp.padding.w = next();
        cp.dilation.h = next();
        cp.dilation.w = next();
        cp.input_offset = next();
        cp.output_offset = next();
        cp.activation.min = next();
        cp.activation.max = next();
        conv.n = 1;
        conv.h = next();
        conv.w = next();
        conv.c = fd.n;
        pooled = next();
        win.n = 1;
        win.h = next();
        win.w = next();
        win.c = 1;
        pp.stride.h = next();
        pp.stride.w = next();
        pp.padding.h = next();
        pp.padding.w = next();
        pp.activation.min = next();
        pp.activation.max = next();
        od.n = 1;
        od.h = next();
        od.w = next();
        od.c = fd.n;
        monotonic = next();
        scratch_bytes = next();
        count = next();
        plan = allocate((size_t)count * sizeof(call_t));
        for (c = 0; c < count; ++c) {
            plan[c].in_row = next();
            plan[c].in_rows = next();
            plan[c].conv_pad = next();
            plan[c].conv_rows = next();
            plan[c].expect = next();
        }
        input = allocate((size_t)(in.h * in.w * in.c));
        weights = allocate((size_t)(fd.n * fd.h * fd.w * fd.c));
        bias = allocate((size_t)fd.n * sizeof(int32_t));
        mult = allocate((size_t)fd.n * sizeof(int32_t));
        shift = allocate((size_t)fd.n * sizeof(int32_t));
        read_bytes(input, in.h * in.w * in.c);
        read_bytes(weights, fd.n * fd.h * fd.w * fd.c);
        read_words(bias, fd.n);
        read_words(mult, fd.n);
        read_words(shift, fd.n);
        qp.multiplier = mult;
        qp.shift = shift;

        /* The reference: the whole layer by CMSIS-NN. */
        n = conv.h * conv.w * conv.c;
        rows = allocate((size_t)n);
        reference = pooled ? allocate((size_t)(od.h * od.w * od.c)) : rows;
        ctx.size = arm_convolve_s8_get_buffer_size(&in, &fd);
        ctx.buf = ctx.size > 0 ? allocate((size_t)ctx.size) : NULL;
        bias_dims.n = bias_dims.h = bias_dims.w = 1;
        bias_dims.c = fd.n;
        status = arm_convolve_s8(&ctx, &cp, &qp, &in, input, &fd, weights, &bias_dims, bias, NULL,
                                 &conv, rows);
        if (status != ARM_CMSIS_NN_SUCCESS) {
            fail(k, -1, "arm_convolve_s8 returned", status);
        }
        free(ctx.buf);
        if (pooled) {
            ctx.buf = NULL;
            ctx.size = 0;
            status = arm_max_pool_s8(&ctx, &pp, &conv, rows, &win, &od, reference);
            if (status != ARM_CMSIS_NN_SUCCESS) {
                fail(k, -1, "arm_max_pool_s8 returned", status);
            }
        }

        /* The generator's calls, each on its own rows, scratch and output. */
        row_bytes = (pooled ? od.w : conv.w) * fd.n;
        for (c = 0; c < count; ++c) {
            const call_t *call = &plan[c];
            const int32_t out_rows = pooled ? 1 : call->conv_rows;
            const int32_t out_bytes = out_rows * row_bytes;
            cmsis_nn_conv_params params = cp;
            cmsis_nn_dims slice_in = in, slice_conv = conv, slice_out = od;
            const int32_t slice_bytes = call->in_rows * in.w * in.c;
            int8_t *slice = allocate((size_t)slice_bytes);
            int8_t *out = allocate((size_t)(out_bytes + CANARY));
            int8_t *scratch;
            int32_t i, touched = 0, same;

            memcpy(slice, input + call->in_row * in.w * in.c, (size_t)slice_bytes);
            memset(out, CANARY_BYTE, (size_t)(out_bytes + CANARY));
            slice_in.h = call->in_rows;
            params.padding.h = call->conv_pad;
            slice_conv.h = call->conv_rows;
            slice_out.h = out_rows;
            /* What the kernel says it needs (no more: a sanitizer sees any byte past it), and
             * that within what the generator gives; a refused call gets the generator's. */
            ctx.size = scratch_bytes;
            if (call->expect == EXPECT_SUCCESS) {
                ctx.size = edge_conv_s8_get_buffer_size(&slice_in, &fd, pooled ? &win : NULL,
                                                        &slice_conv, &slice_out);
                if (ctx.size > scratch_bytes) {
                    fail(k, c, "needs more scratch than the generator gives", ctx.size);
                }
            }
            scratch = allocate((size_t)ctx.size + 4);
            ctx.buf = scratch + ((uintptr_t)scratch & 4U ? 0 : 4);
            status = edge_conv_s8(&ctx, &params, &qp, &slice_in, slice, &fd, weights, bias,
                                  pooled ? &pp : NULL, pooled ? &win : NULL, &slice_conv,
                                  pooled ? &slice_out : &slice_conv, out);
            for (i = call->expect == EXPECT_REFUSAL ? 0 : out_bytes; i < out_bytes + CANARY; ++i) {
                touched += out[i] != CANARY_BYTE;
            }
            same = memcmp(out, reference + at, (size_t)out_bytes) == 0;
            ++calls;
            if (call->expect == EXPECT_REFUSAL) {
                ++refused;
                if (status != ARM_CMSIS_NN_ARG_ERROR || touched) {
                    fail(k, c, "a shape it does not take: status, bytes written", touched);
                }
            } else if (status != ARM_CMSIS_NN_SUCCESS || touched) {
                fail(k, c, "status, or bytes written past the output", touched);
            } else if (!monotonic) {
                ++unsafe;
                differ += !same;
            } else if (!same) {
                fail(k, c, "differs from CMSIS-NN", 0);
            } else {
                ++matched;
                sum = checksum(sum, out, out_bytes);
            }
            at += out_bytes;
            free(scratch);
            free(out);
            free(slice);
        }
        if (pooled) {
            free(reference);
        }
        free(rows);
        free(shift);
        free(mult);
        free(bias);
        free(weights);
        free(input);
        free(plan);
    }
    fclose(cases);
    printf("cases %ld calls %ld matched %ld refused %ld unsafe %ld differ %ld bad %ld "
           "checksum %08lx path %s\n",
           total, calls, matched, refused, unsafe, differ, bad, (unsigned long)sum, PATH);
    return bad != 0;
}
