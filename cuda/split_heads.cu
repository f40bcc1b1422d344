// [rows, parts·heads·d] (+ bias per column) → [parts, pairs, heads, queries, d]: the projection
// output into head layout with its bias added on the way, one pass. Grid-stride over 16-byte
// vectors along d (or single elements). Twin: model::attention::split_heads on the CPU.
#include "common.cuh"

template <typename T, int N>
__device__ void split_heads(const T* __restrict__ x, const T* __restrict__ bias,
                            T* __restrict__ out, HeadsParams p) {
    const size_t vectors = (size_t)p.rows * p.parts * p.heads * p.head_dim / N;
    for (size_t v = (size_t)blockIdx.x * blockDim.x + threadIdx.x; v < vectors;
         v += (size_t)gridDim.x * blockDim.x) {
        const size_t i = v * N;
        const HeadPosition h = head_position(i, p);
        const size_t o = head_offset(h, p);
        if (p.has_bias) {
            float a[N], b[N];
            load_f32<T, N>(x + i, a);
            load_f32<T, N>(bias + h.col, b);
#pragma unroll
            for (int k = 0; k < N; ++k) a[k] += b[k];
            store_f32<T, N>(out + o, a);
        } else {
            copy_vec<T, N>(x + i, out + o);
        }
    }
}

#define SPLIT_HEADS(T, SUFFIX)                                                                 \
    extern "C" __global__ void split_heads_##SUFFIX(const T* __restrict__ x,                  \
                                                    const T* __restrict__ bias,               \
                                                    T* __restrict__ out, HeadsParams p) {     \
        if (p.vectorised)                                                                      \
            split_heads<T, VEC<T>>(x, bias, out, p);                                           \
        else                                                                                   \
            split_heads<T, 1>(x, bias, out, p);                                                \
    }
SPANGRAD_FOR_EACH_TYPE(SPLIT_HEADS)
