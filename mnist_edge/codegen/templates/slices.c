
/* Run one slice: the convolution's rows into `rows`, pooled into one row at `output`; without
 * a pool (pool == NULL), the convolution's rows go to `output` directly. */
static arm_cmsis_nn_status conv_slice(const conv_layer_t *conv, const pool_layer_t *pool,
                                      const slice_t *slice, const int8_t *input, int8_t *rows,
                                      void *scratch, int8_t *output)
{
    cmsis_nn_context ctx;
    cmsis_nn_conv_params params = conv->params;
    cmsis_nn_dims in = conv->input;
    cmsis_nn_dims out = conv->output;
    arm_cmsis_nn_status status;

    in.h = slice->in_rows;
    params.padding.h = slice->conv_pad;
    out.h = slice->conv_rows;
    status = conv_run(conv, &params, scratch, &in, input + slice->in_row * in.w * in.c, &out,
                      pool != NULL ? rows : output);
    if (status != ARM_CMSIS_NN_SUCCESS || pool == NULL) {
        return status;
    }
    {
        cmsis_nn_pool_params pool_params = pool->params;
        cmsis_nn_dims pooled = pool->output;

        pool_params.padding.h = slice->pool_pad;
        pooled.h = 1;
        ctx.buf = NULL;
        ctx.size = 0;
        return arm_max_pool_s8(&ctx, &pool_params, &out, rows, &pool->window, &pooled, output);
    }
}
