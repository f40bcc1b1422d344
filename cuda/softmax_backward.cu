// ds = scale · p ⊙ (dp − Σ_k p_k·dp_k) per row: the softmax's input gradient, 0 on padding
// because p is. One warp per row, 16-byte vectors when the row allows.
// Twin: ops::softmax::backward_cpu.
#include "common.cuh"

template <typename T, int N>
__device__ void masked_softmax_backward(const T* __restrict__ dp, const T* __restrict__ prob,
                                        T* __restrict__ ds, const SoftmaxParams& p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.keys;
    float pv[N], dv[N];
    float dot = 0.f;
    for (unsigned k = lane * N; k < p.keys; k += 32 * N) {
        load_f32<T, N>(prob + base + k, pv);
        load_f32<T, N>(dp + base + k, dv);
#pragma unroll
        for (int j = 0; j < N; ++j) dot = fmaf(pv[j], dv[j], dot);
    }
    dot = warp_sum(dot);
    for (unsigned k = lane * N; k < p.keys; k += 32 * N) {
        load_f32<T, N>(prob + base + k, pv);
        load_f32<T, N>(dp + base + k, dv);
#pragma unroll
        for (int j = 0; j < N; ++j) dv[j] = p.scale * pv[j] * (dv[j] - dot);
        store_f32<T, N>(ds + base + k, dv);
    }
}

#define MASKED_SOFTMAX_BACKWARD(T, SUFFIX)                                                     \
    extern "C" __global__ void masked_softmax_backward_##SUFFIX(                              \
        const T* __restrict__ dp, const T* __restrict__ prob, T* __restrict__ ds,             \
        SoftmaxParams p) {                                                                     \
        if (p.vectorised)                                                                      \
            masked_softmax_backward<T, VEC<T>>(dp, prob, ds, p);                               \
        else                                                                                   \
            masked_softmax_backward<T, 1>(dp, prob, ds, p);                                    \
    }
SPANGRAD_FOR_EACH_TYPE(MASKED_SOFTMAX_BACKWARD)
