// p = softmax(scale · s) over each row's real keys (those before lengths[example]), exactly 0
// on padding; a row with no real key is all zeros. One warp per row (max, sum, write), 16-byte
// vectors when the row allows. Twin: ops::softmax::forward_cpu.
#include "common.cuh"

template <typename T, int N>
__device__ void masked_softmax_forward(const T* __restrict__ s, const unsigned* __restrict__ lengths,
                                       T* __restrict__ prob, const SoftmaxParams& p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.keys;
    const unsigned real = min(lengths[row / p.rows_per_example], p.keys);
    float v[N];
    float m = -INFINITY;
    for (unsigned k = lane * N; k < real; k += 32 * N) {
        load_f32<T, N>(s + base + k, v);
#pragma unroll
        for (int j = 0; j < N; ++j)
            if (k + j < real) m = fmaxf(m, v[j]);
    }
    m = warp_max(m) * p.scale;
    float sum = 0.f;
    for (unsigned k = lane * N; k < real; k += 32 * N) {
        load_f32<T, N>(s + base + k, v);
#pragma unroll
        for (int j = 0; j < N; ++j)
            if (k + j < real) sum += expf(v[j] * p.scale - m);
    }
    const float inv = 1.f / warp_sum(sum);
    for (unsigned k = lane * N; k < p.keys; k += 32 * N) {
        load_f32<T, N>(s + base + k, v);
#pragma unroll
        for (int j = 0; j < N; ++j) v[j] = k + j < real ? expf(v[j] * p.scale - m) * inv : 0.f;
        store_f32<T, N>(prob + base + k, v);
    }
}

#define MASKED_SOFTMAX_FORWARD(T, SUFFIX)                                                      \
    extern "C" __global__ void masked_softmax_forward_##SUFFIX(                               \
        const T* __restrict__ s, const unsigned* __restrict__ lengths, T* __restrict__ prob,  \
        SoftmaxParams p) {                                                                     \
        if (p.vectorised)                                                                      \
            masked_softmax_forward<T, VEC<T>>(s, lengths, prob, p);                            \
        else                                                                                   \
            masked_softmax_forward<T, 1>(s, lengths, prob, p);                                 \
    }
SPANGRAD_FOR_EACH_TYPE(MASKED_SOFTMAX_FORWARD)
