
/* A convolution's arguments to CMSIS-NN's convolution wrapper, all in one constant; ch_mult > 0
 * makes it a depthwise convolution (the depthwise wrapper's arguments, its multiplier). */
typedef struct {
    cmsis_nn_conv_params params;
    cmsis_nn_per_channel_quant_params quant;
    cmsis_nn_dims input;
    cmsis_nn_dims filter;
    cmsis_nn_dims bias;
    cmsis_nn_dims output;
    const int8_t *weights;
    const int32_t *bias_data;
    int32_t scratch_bytes;
    int32_t ch_mult;
} conv_layer_t;

/* A pool's arguments to arm_max_pool_s8 or arm_avgpool_s8. */
typedef struct {
    cmsis_nn_pool_params params;
    cmsis_nn_dims input;
    cmsis_nn_dims window;
    cmsis_nn_dims output;
} pool_layer_t;

/* A convolution computed by rows: one slice reads input rows in_row .. in_row + in_rows - 1
 * (conv_pad rows of padding above them are the kernel's to add) and computes conv_rows output
 * rows; a max-pool then reduces them to one output row (pool_pad: its padding above). */
typedef struct {
    int16_t in_row;
    int16_t in_rows;
    int16_t conv_pad;
    int16_t conv_rows;
    int16_t pool_pad;
} slice_t;

/* A streamed pair's schedule, one entry per consumer slice: slide the window up by `drop`
 * rows, keeping `keep` rows, then run producer slices first .. first + count - 1 below them. */
typedef struct {
    int16_t drop;
    int16_t keep;
    int16_t first;
    int16_t count;
} feed_t;
