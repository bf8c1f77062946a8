// What the C++ kernels share (decode_kernel.cpp, train_kernel.cpp): the 16-float vector type
// and elementwise maths written to vectorise (no branches, no calls).
#pragma once

#include <cstdint>
#include <cstring>

typedef float v16 __attribute__((vector_size(64)));  // 16 floats: one AVX-512 register

static inline v16 load16(const float* p) {
    v16 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

typedef int32_t v16i __attribute__((vector_size(64)));

// The sum of the 16 lanes as a tree of 4 shuffle-and-adds (a serial sum is 16 dependent adds,
// which dominated the step of a small model: one sum per weight row).
static inline float hsum(v16 v) {
    v += __builtin_shuffle(v, v16i{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    v += __builtin_shuffle(v, v16i{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
    v += __builtin_shuffle(v, v16i{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
    v += __builtin_shuffle(v, v16i{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
    return v[0];
}

static inline void store16(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

// -- elementwise maths, written to vectorise (no branches, no calls) ----------------------

// exp(r) for r = x - n ln2 in [-ln2/2, ln2/2] (Cephes' polynomial, about 1 ulp), for a
// float or a v16.
template <class V>
static inline V exp_poly(V r) {
    V p = V{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}

// exp(x) for x <= 88: 2^n * exp_poly(r); very negative x flushes to 0, as softmax wants.
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float p = exp_poly(x - n * 0.693359375f + n * 2.12194440e-4f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): the formula PyTorch's vectorised
// CPU kernels use for the exact GELU.
static inline float erf_approx(float x) {
    float a = x < 0.0f ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float r = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
               0.254829592f) * t;
    float y = 1.0f - r * exp_approx(-a * a);
    return x < 0.0f ? -y : y;
}

static inline float tanh_approx(float x) {
    float a = x < 0.0f ? -x : x;
    a = a > 9.0f ? 9.0f : a;  // tanh(9) is 1 in float32
    float e = exp_approx(-2.0f * a);
    float y = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -y : y;
}

// -- the same on whole vectors (GCC's vector extensions), for loops the compiler would not
// vectorise as well ------------------------------------------------------------------------

static inline v16 splat16(float x) { return v16{} + x; }

static inline float hmax(v16 v) {
    v16 w = __builtin_shuffle(v, v16i{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    v = v > w ? v : w;
    w = __builtin_shuffle(v, v16i{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
    v = v > w ? v : w;
    w = __builtin_shuffle(v, v16i{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
    v = v > w ? v : w;
    w = __builtin_shuffle(v, v16i{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
    v = v > w ? v : w;
    return v[0];
}

// exp_approx on 16 lanes: the same polynomial; n rounded by adding and subtracting
// 1.5 * 2^23 (exact for |x| < 2^22, which the clamp ensures).
static inline v16 exp16(v16 x) {
    x = x < -87.0f ? splat16(-87.0f) : x;
    const v16 big = splat16(12582912.0f);
    const v16 n = (x * 1.44269504088896341f + big) - big;
    const v16 p = exp_poly(x - n * 0.693359375f + n * 2.12194440e-4f);
    const v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16 scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

