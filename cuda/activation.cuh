// The feed-forward activations and their derivatives (see ops::activation for the formulas).
#pragma once
#include "common.cuh"

__device__ __forceinline__ float activation_value(float u, unsigned act) {
    switch (act) {
        case ACT_GELU: return 0.5f * u * (1.f + erff(u * 0.70710678f));
        case ACT_GELU_TANH: return 0.5f * u * (1.f + tanhf(0.7978846f * (u + 0.044715f * u * u * u)));
        default: return fmaxf(u, 0.f);
    }
}

__device__ __forceinline__ float activation_derivative(float u, unsigned act) {
    switch (act) {
        case ACT_GELU: return 0.5f * (1.f + erff(u * 0.70710678f)) + u * 0.39894228f * expf(-0.5f * u * u);
        case ACT_GELU_TANH: {
            const float t = tanhf(0.7978846f * (u + 0.044715f * u * u * u));
            return 0.5f * (1.f + t) + 0.5f * u * (1.f - t * t) * 0.7978846f * (1.f + 3.f * 0.044715f * u * u);
        }
        default: return u > 0.f ? 1.f : 0.f;
    }
}
