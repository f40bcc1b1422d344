// u = x + bias[column], a = act(u): the feed-forward activation with its input bias, saving u.
// Element-wise, grid-stride. Twin: ops::activation::forward_cpu.
#include "activation.cuh"

template <typename T>
__device__ void bias_activation(const T* __restrict__ x, const T* __restrict__ bias,
                                T* __restrict__ u, T* __restrict__ a, ActivationParams p) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.elements;
         i += (size_t)gridDim.x * blockDim.x) {
        const float v = to_f32(x[i]) + to_f32(bias[i % p.width]);
        from_f32(v, &u[i]);
        from_f32(activation_value(v, p.activation), &a[i]);
    }
}

#define BIAS_ACTIVATION(T, SUFFIX)                                                             \
    extern "C" __global__ void bias_activation_##SUFFIX(const T* __restrict__ x,              \
                                                        const T* __restrict__ bias,           \
                                                        T* __restrict__ u, T* __restrict__ a, \
                                                        ActivationParams p) {                 \
        bias_activation<T>(x, bias, u, a, p);                                                  \
    }
SPANGRAD_FOR_EACH_TYPE(BIAS_ACTIVATION)
