// out[n, k] = G[n] · E[ids[n, k]]: the one-hot gradient at selected vocabulary rows (k = 1 with
// the token's own id is gradient x input). One warp per (token, row); an id outside the
// vocabulary gives NaN, never a silent number.
#include "common.cuh"

template <typename T>
__device__ void gather_dot(const T* __restrict__ g, const T* __restrict__ e,
                           const unsigned* __restrict__ ids, float* __restrict__ out,
                           RowsParams p) {
    const unsigned pair = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const unsigned lane = threadIdx.x % 32;
    if (pair >= p.tokens * p.per_token) return;
    const unsigned id = ids[pair];
    if (id >= p.vocab) {
        if (lane == 0) out[pair] = __int_as_float(0x7fc00000);
        return;
    }
    const T* gr = g + (size_t)(pair / p.per_token) * p.hidden;
    const T* er = e + (size_t)id * p.hidden;
    float sum = 0.f;
    for (unsigned h = lane; h < p.hidden; h += 32) sum = fmaf(to_f32(gr[h]), to_f32(er[h]), sum);
    sum = warp_sum(sum);
    if (lane == 0) out[pair] = sum;
}

#define GATHER_DOT(T, SUFFIX)                                                                \
    extern "C" __global__ void gather_dot_##SUFFIX(const T* __restrict__ g,                 \
                                                    const T* __restrict__ e,                 \
                                                    const unsigned* __restrict__ ids,        \
                                                    float* __restrict__ out, RowsParams p) { \
        gather_dot<T>(g, e, ids, out, p);                                                    \
    }
SPANGRAD_FOR_EACH_TYPE(GATHER_DOT)
