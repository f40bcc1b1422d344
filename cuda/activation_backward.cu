// du = dout · act'(u), element-wise, grid-stride over 16-byte vectors when the size allows.
// Twin: ops::activation::backward_cpu.
#include "activation.cuh"

template <typename T, int N>
__device__ void activation_backward(const T* __restrict__ dout, const T* __restrict__ u,
                                    T* __restrict__ du, const ActivationParams& p) {
    for (size_t v = (size_t)blockIdx.x * blockDim.x + threadIdx.x; v < p.elements / N;
         v += (size_t)gridDim.x * blockDim.x) {
        const size_t i = v * N;
        float d[N], x[N];
        load_f32<T, N>(dout + i, d);
        load_f32<T, N>(u + i, x);
#pragma unroll
        for (int k = 0; k < N; ++k) d[k] *= activation_derivative(x[k], p.activation);
        store_f32<T, N>(du + i, d);
    }
}

#define ACTIVATION_BACKWARD(T, SUFFIX)                                                         \
    extern "C" __global__ void activation_backward_##SUFFIX(                                  \
        const T* __restrict__ dout, const T* __restrict__ u, T* __restrict__ du,              \
        ActivationParams p) {                                                                  \
        if (p.vectorised)                                                                      \
            activation_backward<T, VEC<T>>(dout, u, du, p);                                    \
        else                                                                                   \
            activation_backward<T, 1>(dout, u, du, p);                                         \
    }
SPANGRAD_FOR_EACH_TYPE(ACTIVATION_BACKWARD)
