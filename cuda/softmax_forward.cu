// p = softmax(scale · s) over each row's real keys (those before lengths[example]), exactly 0
// on padding; a row with no real key is all zeros. One warp per row: max, sum, write.
// Twin: ops::softmax::forward_cpu.
#include "common.cuh"

template <typename T>
__device__ void masked_softmax_forward(const T* __restrict__ s, const unsigned* __restrict__ lengths,
                                       T* __restrict__ prob, SoftmaxParams p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.keys;
    const unsigned real = min(lengths[row / p.rows_per_example], p.keys);
    float m = -INFINITY;
    for (unsigned k = lane; k < real; k += 32) m = fmaxf(m, to_f32(s[base + k]));
    m = warp_max(m) * p.scale;
    float sum = 0.f;
    for (unsigned k = lane; k < real; k += 32) sum += expf(to_f32(s[base + k]) * p.scale - m);
    const float inv = 1.f / warp_sum(sum);
    for (unsigned k = lane; k < p.keys; k += 32)
        from_f32(k < real ? expf(to_f32(s[base + k]) * p.scale - m) * inv : 0.f, &prob[base + k]);
}

#define MASKED_SOFTMAX_FORWARD(T, SUFFIX)                                                      \
    extern "C" __global__ void masked_softmax_forward_##SUFFIX(                               \
        const T* __restrict__ s, const unsigned* __restrict__ lengths, T* __restrict__ prob,  \
        SoftmaxParams p) {                                                                     \
        masked_softmax_forward<T>(s, lengths, prob, p);                                        \
    }
SPANGRAD_FOR_EACH_TYPE(MASKED_SOFTMAX_FORWARD)
