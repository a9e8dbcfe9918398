"""The C engine's own convolution kernel (codegen/templates/kernels.h, edge_conv_s8) against
CMSIS-NN's arm_convolve_s8 and arm_max_pool_s8 on seeded random shapes."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.helpers import SOURCES_DIR, needs_sources


@pytest.fixture(scope="module")
def sources():
    """CMSIS-NN checked and extracted once into the test cache."""
    from mnist_edge.sources import prepare_sources

    prepare_sources(SOURCES_DIR)


# Random shapes through the own kernel and through CMSIS-NN's arm_convolve_s8 (+ its max-pool
# over the same rows): the C below reads the cases (int32 words) and counts those that differ.
DIFF_C = r"""
#include <stdio.h>
#include <string.h>
#include "kernels.h"
static int32_t words[1 << 22], bias[64], mult[64], shift[64], scratch[8192], im2col[8192];
static int8_t in_buf[4096], w_buf[8192], rows[8192], ref[8192], out[8192];
int main(int argc, char **argv) {
    FILE *f = fopen(argv[argc - 1], "rb");
    int32_t *w = words, k, i, n, bad = 0;
    if (f == NULL || fread(words, 4, 1 << 22, f) == 0) return 2;
    for (k = *w++; k > 0; --k) {
        cmsis_nn_conv_params cp; cmsis_nn_pool_params pp; cmsis_nn_per_channel_quant_params qp;
        cmsis_nn_dims in, fd, conv, win, od, bd = {1, 1, 1, 1};
        cmsis_nn_context ctx = {im2col, (int32_t)sizeof(im2col)};
        int32_t pooled;
        in.n = 1; in.h = *w++; in.w = *w++; in.c = *w++; fd.c = in.c;
        fd.n = *w++; fd.h = *w++; fd.w = *w++; cp.stride.h = *w++; cp.stride.w = *w++;
        cp.padding.h = *w++; cp.padding.w = *w++; cp.dilation.h = *w++; cp.dilation.w = *w++;
        cp.input_offset = *w++; cp.output_offset = *w++;
        cp.activation.min = *w++; cp.activation.max = *w++;
        conv.n = 1; conv.h = *w++; conv.w = *w++; conv.c = fd.n; bd.c = fd.n; pooled = *w++;
        win.n = 1; win.h = conv.h; win.w = *w++; win.c = 1; pp.stride.h = 1; pp.padding.h = 0;
        pp.stride.w = *w++; pp.padding.w = *w++;
        pp.activation.min = *w++; pp.activation.max = *w++;
        od = conv; if (pooled) od.h = 1; od.w = pooled ? *w : conv.w; w++;
        for (i = 0, n = in.h * in.w * in.c; i < n; ++i) in_buf[i] = (int8_t)*w++;
        for (i = 0, n = fd.n * fd.h * fd.w * fd.c; i < n; ++i) w_buf[i] = (int8_t)*w++;
        for (i = 0; i < fd.n; ++i) bias[i] = *w++;
        for (i = 0; i < fd.n; ++i) mult[i] = *w++;
        for (i = 0; i < fd.n; ++i) shift[i] = *w++;
        qp.multiplier = mult; qp.shift = shift;
        arm_convolve_s8(&ctx, &cp, &qp, &in, in_buf, &fd, w_buf, &bd, bias, NULL, &conv,
                        pooled ? rows : ref);
        ctx.buf = NULL; ctx.size = 0;
        if (pooled) arm_max_pool_s8(&ctx, &pp, &conv, rows, &win, &od, ref);
        ctx.buf = scratch;
        ctx.size = edge_conv_s8_get_buffer_size(&in, &fd, pooled ? &win : NULL, &conv, &od);
        memset(out, 0x55, sizeof(out));
        n = od.h * od.w * od.c;
        bad += ctx.size > (int32_t)sizeof(scratch) ||
               edge_conv_s8(&ctx, &cp, &qp, &in, in_buf, &fd, w_buf, bias, pooled ? &pp : NULL,
                            pooled ? &win : NULL, &conv, &od, out) != ARM_CMSIS_NN_SUCCESS ||
               memcmp(out, ref, (size_t)n) != 0 || out[n] != 0x55;
    }
    printf("%d\n", bad);
    return 0;
}
"""


def random_case(rng: np.random.Generator) -> list[int] | None:
    """One case's words: shapes, strides, padding, dilation, pool, data, requantization
    (multipliers and shifts TFLM could compute; accumulators far from overflowing)."""
    cin, (kh, kw), (sh, sw), (dh, dw) = rng.choice([1, 1, 4, 8, 12]), *rng.integers(1, 3, (3, 2))
    kh, kw = (kh, kw) if rng.random() < 0.6 else rng.integers(1, 5, 2)
    in_h, in_w, ph, pw = rng.integers(kh, 10), rng.integers(2, 13), *rng.integers(0, 2, 2)
    full_h = (in_h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    conv_w = (in_w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    pooled = rng.random() < 0.6
    if full_h < 1 or conv_w < 1:
        return None
    conv_h = int(rng.integers(1, min(full_h, 2 if pooled else 4) + 1))
    cout, pool = int(rng.integers(1, 21)), [0, 0, 0, 0]
    if pooled:
        width = int(rng.integers(1, 4 // conv_h + 1 if cin > 1 else 4))
        stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, width))
        reach = pad - 1 if rng.random() < 0.5 else pad - width  # windows clipped on the right
        count = max(1, (conv_w + reach) // stride + 1)
        while count > 1 and (count - 1) * stride - pad >= conv_w:
            count -= 1
        pool = [width, stride, pad, count]
    head = [in_h, in_w, cin, cout, kh, kw, sh, sw, ph, pw, dh, dw, int(rng.integers(-127, 129))]
    head += [int(rng.integers(-128, 128)), *[(-128, 127), (-20, 90)][rng.integers(0, 2)]]
    head += [conv_h, conv_w, int(pooled), *pool[:3], *[(-128, 127), (-60, 50)][rng.integers(2)]]
    data = [
        rng.integers(-128, 128, in_h * in_w * cin), rng.integers(-127, 128, cout * kh * kw * cin),
        rng.integers(-3000, 3000, cout), rng.integers(1 << 30, (1 << 31) - 1, cout),
        rng.integers(-16, 2, cout),
    ]  # fmt: skip
    return [int(v) for v in [*head, pool[3]]] + [int(v) for part in data for v in part]


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
def test_own_kernel_matches_cmsis_nn_on_random_shapes(sources, tmp_path):
    # The plain-C path on the host: 1 and 4k input channels, 1x1 to 4x4 taps, strides,
    # padding, dilation, pools clipped at either edge, several rows without a pool.
    from mnist_edge.codegen.emit import CONV_SOURCES, POOL_SOURCES, template
    from mnist_edge.codegen.host import cmsis_root, find_compiler
    from mnist_edge.codegen.kernels import GENERAL_SOURCES

    rng, cases = np.random.default_rng(21), []
    while len(cases) < 2000:
        cases += [case] if (case := random_case(rng)) else []
    words = [len(cases), *(word for case in cases for word in case)]
    (tmp_path / "cases.bin").write_bytes(np.array(words, "<i4").tobytes())
    fields = {"version": "test", "PREFIX": "TEST"}
    (tmp_path / "kernels.h").write_text(template("kernels.h").substitute(fields))
    (tmp_path / "diff.c").write_text(DIFF_C)
    root = cmsis_root()
    cmsis = [str(root / s) for s in dict.fromkeys(CONV_SOURCES + POOL_SOURCES + GENERAL_SOURCES)]
    build = [find_compiler(), "-O1", "-w", "-I", str(root / "Include"), "diff.c", *cmsis]
    subprocess.run([*build, "-o", "diff"], cwd=tmp_path, check=True, timeout=300)
    done = subprocess.run(
        ["./diff", "cases.bin"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0")
