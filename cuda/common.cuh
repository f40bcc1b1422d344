// Element types the kernels read (f32, f16, bf16); arithmetic is always f32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "params.h"

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ void from_f32(float x, float* out) { *out = x; }
__device__ __forceinline__ void from_f32(float x, __half* out) { *out = __float2half_rn(x); }
__device__ __forceinline__ void from_f32(float x, __nv_bfloat16* out) { *out = __float2bfloat16_rn(x); }

// Defines NAME_f32, NAME_f16 and NAME_bf16 as extern "C" entry points of one template.
#define SPANGRAD_FOR_EACH_TYPE(MACRO) \
    MACRO(float, f32)                 \
    MACRO(__half, f16)                \
    MACRO(__nv_bfloat16, bf16)

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

// One warp per row of the row kernels: the warp of this thread, and its lane.
__device__ __forceinline__ unsigned warp_index() { return (blockIdx.x * blockDim.x + threadIdx.x) / 32; }
__device__ __forceinline__ unsigned lane_index() { return threadIdx.x % 32; }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

// Where element `i` of the token-major layout [rows, parts·heads·head_dim] sits in the head
// layout [parts, pairs, heads, queries, head_dim] (split_heads, merge_heads).
struct HeadPosition {
    unsigned col, part, pair, head, query, d;
};

__device__ __forceinline__ HeadPosition head_position(size_t i, const HeadsParams& p) {
    const unsigned block = p.heads * p.head_dim, width = p.parts * block;
    const unsigned row = i / width, col = i % width;
    return {col, col / block, row / p.queries, col % block / p.head_dim, row % p.queries, col % p.head_dim};
}

__device__ __forceinline__ size_t head_offset(const HeadPosition& h, const HeadsParams& p) {
    const unsigned pairs = p.rows / p.queries;
    return ((((size_t)h.part * pairs + h.pair) * p.heads + h.head) * p.queries + h.query) * p.head_dim + h.d;
}

// 16-byte vectors: VEC<T> elements per load or store (4 f32, 8 f16/bf16). A kernel takes its
// vector path when the row width is a multiple of VEC<T> and the tensors start on 16 bytes
// (the launcher checks), else N = 1.
template <typename T>
constexpr int VEC = 16 / sizeof(T);

template <typename T, int N>
__device__ __forceinline__ void load_f32(const T* __restrict__ p, float (&out)[N]) {
    if constexpr (N == 1) {
        out[0] = to_f32(*p);
    } else {
        static_assert(N * sizeof(T) == 16, "one 16-byte vector");
        const uint4 raw = *reinterpret_cast<const uint4*>(p);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int i = 0; i < N; ++i) out[i] = to_f32(e[i]);
    }
}

template <typename T, int N>
__device__ __forceinline__ void store_f32(T* __restrict__ p, const float (&in)[N]) {
    if constexpr (N == 1) {
        from_f32(in[0], p);
    } else {
        static_assert(N * sizeof(T) == 16, "one 16-byte vector");
        uint4 raw;
        T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
        for (int i = 0; i < N; ++i) from_f32(in[i], &e[i]);
        *reinterpret_cast<uint4*>(p) = raw;
    }
}

template <typename T, int N>
__device__ __forceinline__ void copy_vec(const T* __restrict__ src, T* __restrict__ dst) {
    if constexpr (N == 1) {
        *dst = *src;
    } else {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    }
}
