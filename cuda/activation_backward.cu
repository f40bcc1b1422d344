// du = dout · act'(u), element-wise, grid-stride. Twin: ops::activation::backward_cpu.
#include "activation.cuh"

template <typename T>
__device__ void activation_backward(const T* __restrict__ dout, const T* __restrict__ u,
                                    T* __restrict__ du, ActivationParams p) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.elements;
         i += (size_t)gridDim.x * blockDim.x)
        from_f32(to_f32(dout[i]) * activation_derivative(to_f32(u[i]), p.activation), &du[i]);
}

#define ACTIVATION_BACKWARD(T, SUFFIX)                                                         \
    extern "C" __global__ void activation_backward_##SUFFIX(                                  \
        const T* __restrict__ dout, const T* __restrict__ u, T* __restrict__ du,              \
        ActivationParams p) {                                                                  \
        activation_backward<T>(dout, u, du, p);                                                \
    }
SPANGRAD_FOR_EACH_TYPE(ACTIVATION_BACKWARD)
