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
