// `parts` tensors [pairs, heads, queries, d] → [rows, parts·heads·d], token-major: attention's
// outputs and gradients back to the rows the linear layers read, one pass. Grid-stride over
// 16-byte vectors along d (or single elements). Twin: model::attention::merge_heads on the CPU.
#include "common.cuh"

template <typename T, int N>
__device__ void merge_heads(const T* __restrict__ a, const T* __restrict__ b,
                            const T* __restrict__ c, T* __restrict__ out, HeadsParams p) {
    const unsigned block = p.heads * p.head_dim, width = p.parts * block;
    const size_t vectors = (size_t)p.rows * width / N;
    for (size_t v = (size_t)blockIdx.x * blockDim.x + threadIdx.x; v < vectors;
         v += (size_t)gridDim.x * blockDim.x) {
        const size_t i = v * N;
        const unsigned row = i / width, col = i % width;
        const unsigned part = col / block, head = col % block / p.head_dim, d = col % p.head_dim;
        const unsigned pair = row / p.queries, q = row % p.queries;
        const T* src = part == 0 ? a : (part == 1 ? b : c);
        const size_t in = (((size_t)pair * p.heads + head) * p.queries + q) * p.head_dim + d;
        copy_vec<T, N>(src + in, out + i);
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
