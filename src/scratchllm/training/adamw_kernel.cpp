// AdamW's update of a parameter group in one call (training/optimizer.py, AdamW.step).
//
// torch.optim.AdamW(fused=True) on a CPU runs its kernel once per parameter, each call its
// own parallel region: on a small GPT's 52 parameters that is 0.35 ms of a 0.85 ms step,
// for 0.8 M floats. Here the group's arrays are cut into chunks of CHUNK floats and the
// threads take the chunks of all of them in one region.
//
// The update is PyTorch's, operation for operation, so that it gives the same bits
// (tests/training/test_adamw_kernel.py): for step t (counted in the float32 `step` of each
// parameter's state, as the fused kernel keeps it), with the constants rounded to float32
// from doubles as PyTorch rounds them,
//
//   p = p * (1 - lr wd)                                   (when wd is not 0)
//   m = m + (1 - b1) (g - m)                              (one fused multiply-add)
//   v = (1 - b2) g * g + v b2                             (one fused multiply-add)
//   p = p + (-lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//
// on 16 floats at a time. Those two fused multiply-adds are the ones PyTorch's build makes;
// every other product and sum must round on its own, so this file is compiled with
// -ffp-contract=off (and -fno-math-errno, so that sqrt vectorises): optimizer.py's
// Library. An array's last n % 16 floats go through PyTorch's scalar tail, whose roundings
// are its compiler's choice: there v = v b2 + (1 - b2) g g is one fused multiply-add too,
// and p is within an ulp of PyTorch's (the same bits for 99 % of them).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include <omp.h>

namespace {

constexpr int64_t CHUNK = 16384;  // floats; a multiple of 16, so only an array's end is a tail

// One parameter's constants for this step, in float32 as the kernel uses them.
struct Step {
    float decay;      // 1 - lr wd
    float coef;       // the lerp weight 1 - b1, or 1 - b1 - 1 when that is 0.5 or more
    float beta2, one_minus_beta2, bc2_sqrt, eps;
    float neg_step;   // -lr / (1 - b1^t)
    bool decays;      // wd != 0
    bool small;       // |1 - b1| < 0.5: m moves from m toward g (else from g toward m)
};

template <bool DECAYS, bool SMALL>
void update(float* __restrict p, const float* __restrict g, float* __restrict m,
            float* __restrict v, int64_t n, const Step& s) {
    const int64_t whole = n & ~(int64_t)15;
#pragma omp simd
    for (int64_t j = 0; j < whole; j++) {
        const float pj = DECAYS ? p[j] * s.decay : p[j];
        const float mj = std::fma(s.coef, g[j] - m[j], SMALL ? m[j] : g[j]);
        const float vj = std::fma(s.one_minus_beta2 * g[j], g[j], v[j] * s.beta2);
        m[j] = mj;
        v[j] = vj;
        p[j] = pj + s.neg_step * mj / (std::sqrt(vj) / s.bc2_sqrt + s.eps);
    }
    const float w = SMALL ? s.coef : s.coef + 1.0f;  // the tail's lerp weight: 1 - b1
    const float step_size = -s.neg_step;
    for (int64_t j = whole; j < n; j++) {
        const float pj = DECAYS ? p[j] * s.decay : p[j];
        const float mj = SMALL ? std::fma(w, g[j] - m[j], m[j]) : std::fma(m[j] - g[j], 1.0f - w, g[j]);
        const float vj = std::fma(v[j], s.beta2, s.one_minus_beta2 * g[j] * g[j]);
        m[j] = mj;
        v[j] = vj;
        p[j] = pj - step_size * mj / (std::sqrt(vj) / s.bc2_sqrt + s.eps);
    }
}

int64_t chunks_of(int64_t n) { return (n + CHUNK - 1) / CHUNK; }

}  // namespace

extern "C" {

// One AdamW step of n parameters of one group (lr, betas, eps, weight decay): params,
// grads, exp_avgs and exp_avg_sqs are n contiguous float32 arrays of sizes[i] floats each,
// steps n float32 step counts, each advanced by 1 first. Each chunk is one thread's, in any
// order: no element depends on another, so neither does the result on the thread count.
void adamw_update(float* const* params, const float* const* grads, float* const* exp_avgs,
                  float* const* exp_avg_sqs, float* const* steps, const int64_t* sizes, int n,
                  double lr, double beta1, double beta2, double weight_decay, double eps,
                  int n_threads) {
    Step* consts = new Step[n];
    int64_t total = 0;
    const float coef = (float)(1 - beta1);
    const bool small = std::fabs(coef) < 0.5f;
    for (int i = 0; i < n; i++) {
        *steps[i] += 1.0f;
        const double t = *steps[i];
        const double bc1 = 1 - std::pow(beta1, t), bc2 = 1 - std::pow(beta2, t);
        consts[i] = {(float)(1 - lr * weight_decay), small ? coef : coef - 1.0f, (float)beta2,
                     (float)(1 - beta2), (float)std::sqrt(bc2), (float)eps, (float)(-(lr / bc1)),
                     weight_decay != 0.0, small};
        total += chunks_of(sizes[i]);
    }
#pragma omp parallel for schedule(dynamic, 2) num_threads(n_threads)
    for (int64_t k = 0; k < total; k++) {
        int i = 0;
        int64_t c = k;
        while (c >= chunks_of(sizes[i])) c -= chunks_of(sizes[i++]);
        const int64_t at = c * CHUNK, len = std::min(CHUNK, sizes[i] - at);
        float *p = params[i] + at, *m = exp_avgs[i] + at, *v = exp_avg_sqs[i] + at;
        const float* g = grads[i] + at;
        const Step& s = consts[i];
        if (s.decays)
            s.small ? update<true, true>(p, g, m, v, len, s) : update<true, false>(p, g, m, v, len, s);
        else
            s.small ? update<false, true>(p, g, m, v, len, s) : update<false, false>(p, g, m, v, len, s);
    }
    delete[] consts;
}

}  // extern "C"
