// y = LN(x + residual + bias) over each row, saving x̂ = (z − μ)·rstd and rstd (f32). One warp
// per row, 16-byte vectors when the row allows; the row is read three times (sum, centred
// squares, output), the later reads from cache: two passes give the variance without the
// cancellation of Σz² − (Σz)²/n. Twin: ops::layer_norm::forward_cpu.
#include "common.cuh"

template <typename T, int N>
__device__ __forceinline__ void input(const T* x, const T* r, const T* b, size_t i, unsigned h,
                                      const LayerNormParams& p, float (&z)[N]) {
    load_f32<T, N>(x + i, z);
    if (p.has_residual) {
        float v[N];
        load_f32<T, N>(r + i, v);
#pragma unroll
        for (int k = 0; k < N; ++k) z[k] += v[k];
    }
    if (p.has_bias) {
        float v[N];
        load_f32<T, N>(b + h, v);
#pragma unroll
        for (int k = 0; k < N; ++k) z[k] += v[k];
    }
}

template <typename T, int N>
__device__ void layer_norm_forward(const T* __restrict__ x, const T* __restrict__ residual,
                                   const T* __restrict__ bias, const T* __restrict__ gamma,
                                   const T* __restrict__ beta, T* __restrict__ y,
                                   T* __restrict__ xhat, float* __restrict__ rstd,
                                   const LayerNormParams& p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.hidden;
    float z[N];
    float sum = 0.f;
    for (unsigned h = lane * N; h < p.hidden; h += 32 * N) {
        input<T, N>(x, residual, bias, base + h, h, p, z);
#pragma unroll
        for (int k = 0; k < N; ++k) sum += z[k];
    }
    const float mean = warp_sum(sum) / p.hidden;
    float squares = 0.f;
    for (unsigned h = lane * N; h < p.hidden; h += 32 * N) {
        input<T, N>(x, residual, bias, base + h, h, p, z);
#pragma unroll
        for (int k = 0; k < N; ++k) squares = fmaf(z[k] - mean, z[k] - mean, squares);
    }
    const float r = rsqrtf(warp_sum(squares) / p.hidden + p.eps);
    for (unsigned h = lane * N; h < p.hidden; h += 32 * N) {
        input<T, N>(x, residual, bias, base + h, h, p, z);
        float g[N], b[N], out[N];
        load_f32<T, N>(gamma + h, g);
        load_f32<T, N>(beta + h, b);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            z[k] = (z[k] - mean) * r;
            out[k] = fmaf(z[k], g[k], b[k]);
        }
        store_f32<T, N>(xhat + base + h, z);
        store_f32<T, N>(y + base + h, out);
    }
    if (lane == 0) rstd[row] = r;
}

#define LAYER_NORM_FORWARD(T, SUFFIX)                                                          \
    extern "C" __global__ void layer_norm_forward_##SUFFIX(                                   \
        const T* __restrict__ x, const T* __restrict__ residual, const T* __restrict__ bias,  \
        const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,           \
        T* __restrict__ xhat, float* __restrict__ rstd, LayerNormParams p) {                  \
        if (p.vectorised)                                                                      \
            layer_norm_forward<T, VEC<T>>(x, residual, bias, gamma, beta, y, xhat, rstd, p);  \
        else                                                                                   \
            layer_norm_forward<T, 1>(x, residual, bias, gamma, beta, y, xhat, rstd, p);       \
    }
SPANGRAD_FOR_EACH_TYPE(LAYER_NORM_FORWARD)
