// scores[i] = raw[i] / max(raw over i's example), examples given by offsets[b]..offsets[b + 1]
// of the concatenated real tokens (never padding); an all-zero example gives zeros. One block
// per example; max is order-independent, so the result is deterministic.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(ROW_THREADS)
    normalise(const float* __restrict__ raw, const unsigned* __restrict__ offsets,
              float* __restrict__ scores, NormaliseParams p) {
    __shared__ float warp_max[ROW_THREADS / 32];
    const unsigned b = blockIdx.x;
    if (b >= p.examples) return;
    const unsigned begin = offsets[b], end = min(offsets[b + 1], p.tokens);
    float m = 0.f;
    for (unsigned i = begin + threadIdx.x; i < end; i += blockDim.x) m = fmaxf(m, raw[i]);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = m;
    __syncthreads();
    m = 0.f;
#pragma unroll
    for (int w = 0; w < ROW_THREADS / 32; ++w) m = fmaxf(m, warp_max[w]);
    for (unsigned i = begin + threadIdx.x; i < end; i += blockDim.x) scores[i] = m > 0.f ? raw[i] / m : 0.f;
}
