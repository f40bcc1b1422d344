// `parts` tensors [pairs, heads, queries, d] → [rows, parts·heads·d], token-major: attention's
// outputs and gradients back to the rows the linear layers read, one pass. Grid-stride over
// 16-byte vectors along d (or single elements). Twin: model::attention::merge_heads on the CPU.
#include "common.cuh"

template <typename T, int N>
__device__ void merge_heads(const T* __restrict__ a, const T* __restrict__ b,
                            const T* __restrict__ c, T* __restrict__ out, HeadsParams p) {
    const size_t vectors = (size_t)p.rows * p.parts * p.heads * p.head_dim / N;
    for (size_t v = (size_t)blockIdx.x * blockDim.x + threadIdx.x; v < vectors;
         v += (size_t)gridDim.x * blockDim.x) {
        const size_t i = v * N;
        HeadPosition h = head_position(i, p);
        const T* src = h.part == 0 ? a : (h.part == 1 ? b : c);
        // Each part is its own [pairs, heads, queries, d] tensor.
        h.part = 0;
        copy_vec<T, N>(src + head_offset(h, p), out + i);
    }
}

#define MERGE_HEADS(T, SUFFIX)                                                                 \
    extern "C" __global__ void merge_heads_##SUFFIX(                                          \
        const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,            \
        T* __restrict__ out, HeadsParams p) {                                                  \
        if (p.vectorised)                                                                      \
            merge_heads<T, VEC<T>>(a, b, c, out, p);                                           \
        else                                                                                   \
            merge_heads<T, 1>(a, b, c, out, p);                                                \
    }
SPANGRAD_FOR_EACH_TYPE(MERGE_HEADS)
