// y = LN(x + residual + bias) over each row, saving x̂ = (z − μ)·rstd and rstd (f32). One warp
// per row; the row is read three times (sum, centred squares, output), the later reads from
// cache: two passes give the variance without the cancellation of Σz² − (Σz)²/n.
// Twin: ops::layer_norm::forward_cpu.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ float input(const T* x, const T* r, const T* b, size_t i, unsigned h,
                                       LayerNormParams p) {
    float z = to_f32(x[i]);
    if (p.has_residual) z += to_f32(r[i]);
    if (p.has_bias) z += to_f32(b[h]);
    return z;
}

template <typename T>
__device__ void layer_norm_forward(const T* __restrict__ x, const T* __restrict__ residual,
                                   const T* __restrict__ bias, const T* __restrict__ gamma,
                                   const T* __restrict__ beta, T* __restrict__ y,
                                   T* __restrict__ xhat, float* __restrict__ rstd,
                                   LayerNormParams p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.hidden;
    float sum = 0.f;
    for (unsigned h = lane; h < p.hidden; h += 32) sum += input(x, residual, bias, base + h, h, p);
    const float mean = warp_sum(sum) / p.hidden;
    float squares = 0.f;
    for (unsigned h = lane; h < p.hidden; h += 32) {
        const float d = input(x, residual, bias, base + h, h, p) - mean;
        squares = fmaf(d, d, squares);
    }
    const float r = rsqrtf(warp_sum(squares) / p.hidden + p.eps);
    for (unsigned h = lane; h < p.hidden; h += 32) {
        const float xh = (input(x, residual, bias, base + h, h, p) - mean) * r;
        from_f32(xh, &xhat[base + h]);
        from_f32(fmaf(xh, to_f32(gamma[h]), to_f32(beta[h])), &y[base + h]);
    }
    if (lane == 0) rstd[row] = r;
}

#define LAYER_NORM_FORWARD(T, SUFFIX)                                                          \
    extern "C" __global__ void layer_norm_forward_##SUFFIX(                                   \
        const T* __restrict__ x, const T* __restrict__ residual, const T* __restrict__ bias,  \
        const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,           \
        T* __restrict__ xhat, float* __restrict__ rstd, LayerNormParams p) {                  \
        layer_norm_forward<T>(x, residual, bias, gamma, beta, y, xhat, rstd, p);              \
    }
SPANGRAD_FOR_EACH_TYPE(LAYER_NORM_FORWARD)
