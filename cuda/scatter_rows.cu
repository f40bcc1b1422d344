// dE[v] = Σ_{n : ids[n] = v} G[n], summed in increasing n for every row, so the result is the
// same bit for bit on every run (no float atomics). scatter_count counts each id per chunk of
// SCATTER_CHUNK tokens (integer atomics: exact); scatter_rows then gives every vocabulary row to
// one block, which walks only the chunks holding its id, in order. Rows of unused ids are
// written as zeros, so every element of dE is written.
#include "common.cuh"

extern "C" __global__ void scatter_count(const unsigned* __restrict__ ids,
                                         unsigned* __restrict__ counts, RowsParams p) {
    const unsigned n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= p.tokens || ids[n] >= p.vocab) return;
    atomicAdd(&counts[(size_t)(n / SCATTER_CHUNK) * p.vocab + ids[n]], 1u);
}

template <typename T>
__device__ void scatter_rows(const T* __restrict__ g, const unsigned* __restrict__ ids,
                             const unsigned* __restrict__ counts, float* __restrict__ de,
                             RowsParams p) {
    __shared__ unsigned chunk_ids[SCATTER_CHUNK];
    const unsigned chunks = p.per_token;
    for (unsigned v = blockIdx.x; v < p.vocab; v += gridDim.x) {
        float acc[SCATTER_MAX_H] = {};
        for (unsigned c = 0; c < chunks; ++c) {
            if (counts[(size_t)c * p.vocab + v] == 0) continue;  // uniform across the block
            for (unsigned i = threadIdx.x; i < SCATTER_CHUNK; i += blockDim.x) {
                const unsigned n = c * SCATTER_CHUNK + i;
                chunk_ids[i] = n < p.tokens ? ids[n] : 0xffffffffu;
            }
            __syncthreads();
            for (unsigned i = 0; i < SCATTER_CHUNK; ++i) {
                if (chunk_ids[i] != v) continue;
                const T* row = g + (size_t)(c * SCATTER_CHUNK + i) * p.hidden;
#pragma unroll
                for (int j = 0; j < SCATTER_MAX_H; ++j) {
                    const unsigned h = threadIdx.x + j * blockDim.x;
                    if (h < p.hidden) acc[j] += to_f32(row[h]);
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int j = 0; j < SCATTER_MAX_H; ++j) {
            const unsigned h = threadIdx.x + j * blockDim.x;
            if (h < p.hidden) de[(size_t)v * p.hidden + h] = acc[j];
        }
    }
}

#define SCATTER_ROWS(T, SUFFIX)                                                              \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) scatter_rows_##SUFFIX(         \
        const T* __restrict__ g, const unsigned* __restrict__ ids,                           \
        const unsigned* __restrict__ counts, float* __restrict__ de, RowsParams p) {         \
        scatter_rows<T>(g, ids, counts, de, p);                                              \
    }
SPANGRAD_FOR_EACH_TYPE(SCATTER_ROWS)
