
/* Run one slice of a convolution by mnist-edge's kernel (edge_conv_s8, kernels.h): its rows
 * max-pooled into one row at `output`, or without a pool (pool == NULL) its rows written to
 * `output` directly. The kernel pools as it goes: no row buffer. */
static arm_cmsis_nn_status edge_slice(const conv_layer_t *conv, const pool_layer_t *pool,
                                      const slice_t *slice, const int8_t *input, void *scratch,
                                      int8_t *output)
{
    cmsis_nn_context ctx;
    cmsis_nn_conv_params params = conv->params;
    cmsis_nn_dims in = conv->input;
    cmsis_nn_dims out = conv->output;
    cmsis_nn_dims pooled;

    ctx.buf = scratch;
    ctx.size = conv->scratch_bytes;
    in.h = slice->in_rows;
    params.padding.h = slice->conv_pad;
    out.h = slice->conv_rows;
    input += slice->in_row * in.w * in.c;
    if (pool == NULL) {
        return edge_conv_s8(&ctx, &params, &conv->quant, &in, input, &conv->filter, conv->weights,
                            conv->bias_data, NULL, NULL, &out, &out, output);
    }
    pooled = pool->output;
    pooled.h = 1;
    return edge_conv_s8(&ctx, &params, &conv->quant, &in, input, &conv->filter, conv->weights,
                        conv->bias_data, &pool->params, &pool->window, &out, &pooled, output);
}
