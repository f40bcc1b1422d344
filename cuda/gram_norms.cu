// raw[n] = sqrt(max(0, Σ_h (G·EᵀE)[n,h] · G[n,h])): the per-token quadratic form of the Gram
// method, with the clamp and the root fused. `gm` = G·(EᵀE) comes from cuBLAS in f32. One warp
// per token.
#include "common.cuh"

template <typename T>
__device__ void gram_norms(const float* __restrict__ gm, const T* __restrict__ g,
                           float* __restrict__ raw, RowsParams p) {
    const unsigned warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const unsigned lane = threadIdx.x % 32;
    if (warp >= p.tokens) return;
    const size_t row = (size_t)warp * p.hidden;
    float sum = 0.f;
    for (unsigned h = lane; h < p.hidden; h += 32) sum = fmaf(gm[row + h], to_f32(g[row + h]), sum);
    sum = warp_sum(sum);
    if (lane == 0) raw[warp] = sqrtf(fmaxf(sum, 0.f));
}

#define GRAM_NORMS(T, SUFFIX)                                                                \
    extern "C" __global__ void gram_norms_##SUFFIX(const float* __restrict__ gm,            \
                                                    const T* __restrict__ g,                 \
                                                    float* __restrict__ raw, RowsParams p) { \
        gram_norms<T>(gm, g, raw, p);                                                        \
    }
SPANGRAD_FOR_EACH_TYPE(GRAM_NORMS)
