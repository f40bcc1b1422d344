// dz = rstd · (g − mean g − x̂ · mean(g ⊙ x̂)), g = γ ⊙ (dout + dresidual): LayerNorm's input
// gradient with the residual branch's gradient added as it is read. One warp per row, 16-byte
// vectors when the row allows. Twin: ops::layer_norm::backward_cpu.
#include "common.cuh"

template <typename T, int N>
__device__ __forceinline__ void upstream(const T* d, const T* r, const T* gamma, size_t i,
                                         unsigned h, const LayerNormParams& p, float (&g)[N]) {
    load_f32<T, N>(d + i, g);
    if (p.has_residual) {
        float v[N];
        load_f32<T, N>(r + i, v);
#pragma unroll
        for (int k = 0; k < N; ++k) g[k] += v[k];
    }
    float gm[N];
    load_f32<T, N>(gamma + h, gm);
#pragma unroll
    for (int k = 0; k < N; ++k) g[k] *= gm[k];
}

template <typename T, int N>
__device__ void layer_norm_backward(const T* __restrict__ dout, const T* __restrict__ dres,
                                    const T* __restrict__ xhat, const float* __restrict__ rstd,
                                    const T* __restrict__ gamma, T* __restrict__ dx,
                                    const LayerNormParams& p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.hidden;
    float g[N], xh[N];
    float sum_g = 0.f, sum_gx = 0.f;
    for (unsigned h = lane * N; h < p.hidden; h += 32 * N) {
        upstream<T, N>(dout, dres, gamma, base + h, h, p, g);
        load_f32<T, N>(xhat + base + h, xh);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            sum_g += g[k];
            sum_gx = fmaf(g[k], xh[k], sum_gx);
        }
    }
    const float mean_g = warp_sum(sum_g) / p.hidden;
    const float mean_gx = warp_sum(sum_gx) / p.hidden;
    const float r = rstd[row];
    for (unsigned h = lane * N; h < p.hidden; h += 32 * N) {
        upstream<T, N>(dout, dres, gamma, base + h, h, p, g);
        load_f32<T, N>(xhat + base + h, xh);
#pragma unroll
        for (int k = 0; k < N; ++k) g[k] = r * (g[k] - mean_g - xh[k] * mean_gx);
        store_f32<T, N>(dx + base + h, g);
    }
}

#define LAYER_NORM_BACKWARD(T, SUFFIX)                                                         \
    extern "C" __global__ void layer_norm_backward_##SUFFIX(                                  \
        const T* __restrict__ dout, const T* __restrict__ dres, const T* __restrict__ xhat,   \
        const float* __restrict__ rstd, const T* __restrict__ gamma, T* __restrict__ dx,      \
        LayerNormParams p) {                                                                   \
        if (p.vectorised)                                                                      \
            layer_norm_backward<T, VEC<T>>(dout, dres, xhat, rstd, gamma, dx, p);              \
        else                                                                                   \
            layer_norm_backward<T, 1>(dout, dres, xhat, rstd, gamma, dx, p);                   \
    }
SPANGRAD_FOR_EACH_TYPE(LAYER_NORM_BACKWARD)
