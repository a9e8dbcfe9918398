
/* Run a convolution (ch_mult 0) or a depthwise one (ch_mult > 0) on `in` into `out` with
 * CMSIS-NN's wrapper, as TFLM's CMSIS-NN build does: the wrapper picks the kernel for the
 * shapes (1x1, 1xN, 3x3 depthwise, ...). A slice of rows passes its own dims and padding. */
static arm_cmsis_nn_status conv_run(const conv_layer_t *conv, const cmsis_nn_conv_params *params,
                                    void *scratch, const cmsis_nn_dims *in, const int8_t *input,
                                    const cmsis_nn_dims *out, int8_t *output)
{
    cmsis_nn_context ctx;

    ctx.buf = scratch;
    ctx.size = conv->scratch_bytes;
#if ENGINE_DEPTHWISE
    if (conv->ch_mult > 0) {
        cmsis_nn_dw_conv_params dw;

        dw.input_offset = params->input_offset;
        dw.output_offset = params->output_offset;
        dw.ch_mult = conv->ch_mult;
        dw.stride = params->stride;
        dw.padding = params->padding;
        dw.dilation = params->dilation;
        dw.activation = params->activation;
        return arm_depthwise_conv_wrapper_s8(&ctx, &dw, &conv->quant, in, input, &conv->filter,
                                             conv->weights, &conv->bias, conv->bias_data, out,
                                             output);
    }
#endif
#if ENGINE_CONV
    return arm_convolve_wrapper_s8(&ctx, params, &conv->quant, in, input, &conv->filter,
                                   conv->weights, &conv->bias, conv->bias_data, out, output);
#else
    return ARM_CMSIS_NN_ARG_ERROR;
#endif
}
