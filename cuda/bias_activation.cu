// u = x + bias[column], a = act(u): the feed-forward activation with its input bias, saving u.
// Element-wise, grid-stride over 16-byte vectors when the width allows.
// Twin: ops::activation::forward_cpu.
#include "activation.cuh"

template <typename T, int N>
__device__ void bias_activation(const T* __restrict__ x, const T* __restrict__ bias,
                                T* __restrict__ u, T* __restrict__ a, const ActivationParams& p) {
    for (size_t v = (size_t)blockIdx.x * blockDim.x + threadIdx.x; v < p.elements / N;
         v += (size_t)gridDim.x * blockDim.x) {
        const size_t i = v * N;
        float z[N], b[N], out[N];
        load_f32<T, N>(x + i, z);
        load_f32<T, N>(bias + i % p.width, b);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            z[k] += b[k];
            out[k] = activation_value(z[k], p.activation);
        }
        store_f32<T, N>(u + i, z);
        store_f32<T, N>(a + i, out);
    }
}

#define BIAS_ACTIVATION(T, SUFFIX)                                                             \
    extern "C" __global__ void bias_activation_##SUFFIX(const T* __restrict__ x,              \
                                                        const T* __restrict__ bias,           \
                                                        T* __restrict__ u, T* __restrict__ a, \
                                                        ActivationParams p) {                 \
        if (p.vectorised)                                                                      \
            bias_activation<T, VEC<T>>(x, bias, u, a, p);                                      \
        else                                                                                   \
            bias_activation<T, 1>(x, bias, u, a, p);                                           \
    }
SPANGRAD_FOR_EACH_TYPE(BIAS_ACTIVATION)
