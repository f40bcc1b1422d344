// raw²[n] = Σ_v (G[n]·E[v])² without ever holding the [tokens, vocab] product: a register-tiled
// G·Eᵀ over shared-memory tiles of G and E, squared and summed over each vocabulary tile in
// registers. Grid: x over token tiles, y over vocabulary splits; each split writes its partial
// sums to partial[split][token], which streaming_finish adds in a fixed order (deterministic).
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void load4(const T* __restrict__ src, unsigned row, unsigned rows,
                                      unsigned k, unsigned hidden, float out[4]) {
    if (row < rows && k + 3 < hidden && sizeof(T) == 4 && hidden % 4 == 0) {
        const float4 v = *reinterpret_cast<const float4*>(src + (size_t)row * hidden + k);
        out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
        return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
        out[j] = (row < rows && k + j < hidden) ? to_f32(src[(size_t)row * hidden + k + j]) : 0.f;
}

template <typename T>
__device__ void streaming_partial(const T* __restrict__ g, const T* __restrict__ e,
                                  float* __restrict__ partial, StreamingParams p) {
    __shared__ __align__(16) float gs[SN_TILE_K][SN_TILE_TOKENS];
    __shared__ __align__(16) float es[SN_TILE_K][SN_TILE_VOCAB];
    constexpr int GROUPS = SN_TILE_VOCAB / SN_THREAD_VOCAB;  // threads sharing token rows
    const int tid = threadIdx.x;
    const int tx = tid % GROUPS;
    const int ty = tid / GROUPS;
    const unsigned n0 = blockIdx.x * SN_TILE_TOKENS;
    const unsigned v_begin = blockIdx.y * SN_VOCAB_PER_SPLIT;
    const unsigned v_end = min(v_begin + SN_VOCAB_PER_SPLIT, p.vocab);
    // Each thread stages 4 consecutive hidden elements of one row of each tile.
    const int load_row = tid / (SN_TILE_K / 4);
    const int load_k = (tid % (SN_TILE_K / 4)) * 4;

    float squares[SN_THREAD_TOKENS] = {};
    for (unsigned v0 = v_begin; v0 < v_end; v0 += SN_TILE_VOCAB) {
        float acc[SN_THREAD_TOKENS][SN_THREAD_VOCAB] = {};
        for (unsigned k0 = 0; k0 < p.hidden; k0 += SN_TILE_K) {
            float gv[4], ev[4];
            load4(g, n0 + load_row, p.tokens, k0 + load_k, p.hidden, gv);
            load4(e + (size_t)v0 * p.hidden, load_row, v_end - v0, k0 + load_k, p.hidden, ev);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                gs[load_k + j][load_row] = gv[j];
                es[load_k + j][load_row] = ev[j];
            }
            __syncthreads();
#pragma unroll
            for (int k = 0; k < SN_TILE_K; ++k) {
                float a[SN_THREAD_TOKENS], b[SN_THREAD_VOCAB];
#pragma unroll
                for (int i = 0; i < SN_THREAD_TOKENS; i += 4)
                    *reinterpret_cast<float4*>(&a[i]) =
                        *reinterpret_cast<const float4*>(&gs[k][ty * SN_THREAD_TOKENS + i]);
#pragma unroll
                for (int j = 0; j < SN_THREAD_VOCAB; j += 4)
                    *reinterpret_cast<float4*>(&b[j]) =
                        *reinterpret_cast<const float4*>(&es[k][tx * SN_THREAD_VOCAB + j]);
#pragma unroll
                for (int i = 0; i < SN_THREAD_TOKENS; ++i)
#pragma unroll
                    for (int j = 0; j < SN_THREAD_VOCAB; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
            __syncthreads();
        }
        // Rows past the vocabulary were staged as zeros and add nothing.
#pragma unroll
        for (int i = 0; i < SN_THREAD_TOKENS; ++i)
#pragma unroll
            for (int j = 0; j < SN_THREAD_VOCAB; ++j) squares[i] = fmaf(acc[i][j], acc[i][j], squares[i]);
    }
    // The GROUPS threads of a token row are adjacent lanes of one warp.
#pragma unroll
    for (int i = 0; i < SN_THREAD_TOKENS; ++i) {
#pragma unroll
        for (int offset = GROUPS / 2; offset > 0; offset /= 2)
            squares[i] += __shfl_xor_sync(0xffffffffu, squares[i], offset);
        const unsigned n = n0 + ty * SN_THREAD_TOKENS + i;
        if (tx == 0 && n < p.tokens) partial[(size_t)blockIdx.y * p.tokens + n] = squares[i];
    }
}

#define STREAMING_PARTIAL(T, SUFFIX)                                                         \
    extern "C" __global__ void __launch_bounds__(SN_THREADS) streaming_partial_##SUFFIX(     \
        const T* __restrict__ g, const T* __restrict__ e, float* __restrict__ partial,       \
        StreamingParams p) {                                                                 \
        streaming_partial<T>(g, e, partial, p);                                              \
    }
SPANGRAD_FOR_EACH_TYPE(STREAMING_PARTIAL)

extern "C" __global__ void streaming_finish(const float* __restrict__ partial,
                                            float* __restrict__ raw, StreamingParams p) {
    const unsigned n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= p.tokens) return;
    float sum = 0.f;
    for (unsigned s = 0; s < p.splits; ++s) sum += partial[(size_t)s * p.tokens + n];
    raw[n] = sqrtf(sum);
}
