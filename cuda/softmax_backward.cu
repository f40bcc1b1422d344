// ds = scale · p ⊙ (dp − Σ_k p_k·dp_k) per row: the softmax's input gradient, 0 on padding
// because p is. One warp per row. Twin: ops::softmax::backward_cpu.
#include "common.cuh"

template <typename T>
__device__ void masked_softmax_backward(const T* __restrict__ dp, const T* __restrict__ prob,
                                        T* __restrict__ ds, SoftmaxParams p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.keys;
    float dot = 0.f;
    for (unsigned k = lane; k < p.keys; k += 32) dot = fmaf(to_f32(prob[base + k]), to_f32(dp[base + k]), dot);
    dot = warp_sum(dot);
    for (unsigned k = lane; k < p.keys; k += 32)
        from_f32(p.scale * to_f32(prob[base + k]) * (to_f32(dp[base + k]) - dot), &ds[base + k]);
}

#define MASKED_SOFTMAX_BACKWARD(T, SUFFIX)                                                     \
    extern "C" __global__ void masked_softmax_backward_##SUFFIX(                              \
        const T* __restrict__ dp, const T* __restrict__ prob, T* __restrict__ ds,             \
        SoftmaxParams p) {                                                                     \
        masked_softmax_backward<T>(dp, prob, ds, p);                                           \
    }
SPANGRAD_FOR_EACH_TYPE(MASKED_SOFTMAX_BACKWARD)
