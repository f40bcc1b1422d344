// dz = rstd · (g − mean g − x̂ · mean(g ⊙ x̂)), g = γ ⊙ (dout + dresidual): LayerNorm's input
// gradient with the residual branch's gradient added as it is read. One warp per row.
// Twin: ops::layer_norm::backward_cpu.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ float upstream(const T* d, const T* r, const T* gamma, size_t i,
                                          unsigned h, LayerNormParams p) {
    float g = to_f32(d[i]);
    if (p.has_residual) g += to_f32(r[i]);
    return g * to_f32(gamma[h]);
}

template <typename T>
__device__ void layer_norm_backward(const T* __restrict__ dout, const T* __restrict__ dres,
                                    const T* __restrict__ xhat, const float* __restrict__ rstd,
                                    const T* __restrict__ gamma, T* __restrict__ dx,
                                    LayerNormParams p) {
    const unsigned row = warp_index(), lane = lane_index();
    if (row >= p.rows) return;
    const size_t base = (size_t)row * p.hidden;
    float sum_g = 0.f, sum_gx = 0.f;
    for (unsigned h = lane; h < p.hidden; h += 32) {
        const float g = upstream(dout, dres, gamma, base + h, h, p);
        sum_g += g;
        sum_gx = fmaf(g, to_f32(xhat[base + h]), sum_gx);
    }
    const float mean_g = warp_sum(sum_g) / p.hidden;
    const float mean_gx = warp_sum(sum_gx) / p.hidden;
    const float r = rstd[row];
    for (unsigned h = lane; h < p.hidden; h += 32) {
        const float g = upstream(dout, dres, gamma, base + h, h, p);
        from_f32(r * (g - mean_g - to_f32(xhat[base + h]) * mean_gx), &dx[base + h]);
    }
}

#define LAYER_NORM_BACKWARD(T, SUFFIX)                                                         \
    extern "C" __global__ void layer_norm_backward_##SUFFIX(                                  \
        const T* __restrict__ dout, const T* __restrict__ dres, const T* __restrict__ xhat,   \
        const float* __restrict__ rstd, const T* __restrict__ gamma, T* __restrict__ dx,      \
        LayerNormParams p) {                                                                   \
        layer_norm_backward<T>(dout, dres, xhat, rstd, gamma, dx, p);                          \
    }
SPANGRAD_FOR_EACH_TYPE(LAYER_NORM_BACKWARD)
