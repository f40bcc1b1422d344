/* Parameters and tile sizes shared by the kernels and the Rust launchers (through bindgen), so
 * the two sides cannot drift. Plain C only. */
#ifndef SPANGRAD_PARAMS_H
#define SPANGRAD_PARAMS_H

/* streaming_norms: a block computes SN_TILE_TOKENS x SN_TILE_VOCAB products at a time with
 * SN_THREADS threads, each holding SN_THREAD_TOKENS x SN_THREAD_VOCAB of them; the hidden
 * dimension is staged through shared memory SN_TILE_K at a time. */
#define SN_TILE_TOKENS 128
#define SN_TILE_VOCAB 128
#define SN_TILE_K 8
#define SN_THREAD_TOKENS 8
#define SN_THREAD_VOCAB 8
#define SN_THREADS 256
/* Vocabulary rows per block along grid y: partial sums land in [splits, tokens]. */
#define SN_VOCAB_PER_SPLIT 2048

/* Threads per block of the row kernels (one warp per row or per example chunk). */
#define ROW_THREADS 256

typedef struct StreamingParams {
    unsigned int tokens;
    unsigned int vocab;
    unsigned int hidden;
    unsigned int splits;
} StreamingParams;

typedef struct RowsParams {
    unsigned int tokens;
    unsigned int hidden;
    /* gather_dot: embedding rows per token. */
    unsigned int per_token;
    unsigned int vocab;
} RowsParams;

typedef struct NormaliseParams {
    unsigned int examples;
    unsigned int tokens;
} NormaliseParams;

/* The activations of bias_activation and activation_backward (Rust: model::Activation::code). */
#define ACT_GELU 0
#define ACT_GELU_TANH 1
#define ACT_RELU 2

/* layer_norm_forward / layer_norm_backward: one warp per row. The optional inputs are flags;
 * their pointers are then any valid pointer and never read. */
typedef struct LayerNormParams {
    unsigned int rows;
    unsigned int hidden;
    float eps;
    unsigned int has_residual;
    unsigned int has_bias;
    /* 16-byte loads and stores (common.cuh VEC): hidden a multiple of VEC, tensors aligned. */
    unsigned int vectorised;
} LayerNormParams;

/* bias_activation / activation_backward: element-wise over `elements` = rows x width. */
typedef struct ActivationParams {
    unsigned long long elements;
    unsigned int width;
    unsigned int activation;
    unsigned int vectorised;
} ActivationParams;

/* masked_softmax_forward / backward: one warp per row of `keys` scores; row r belongs to
 * example r / rows_per_example, whose keys at or past lengths[example] are padding. */
typedef struct SoftmaxParams {
    unsigned int rows;
    unsigned int keys;
    unsigned int rows_per_example;
    float scale;
    unsigned int vectorised;
} SoftmaxParams;

/* split_heads / merge_heads: `rows` = pairs x queries token rows of `parts` (Q, K, V: 3)
 * blocks of heads x head_dim columns, to and from [parts, pairs, heads, queries, head_dim]. */
typedef struct HeadsParams {
    unsigned int rows;
    unsigned int queries;
    unsigned int parts;
    unsigned int heads;
    unsigned int head_dim;
    unsigned int has_bias;
    unsigned int vectorised;
} HeadsParams;

#endif
