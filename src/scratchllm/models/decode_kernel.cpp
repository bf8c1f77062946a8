// GPT's forward_step in one call (T new tokens per row appended to the KV cache, their
// logits out): the C++ twin of the modules and of gpt_decode.decode_token_torch.
//
// Why it exists: a decode step for a small model is a few hundred thousand multiply-adds,
// which take microseconds, while the same step in eager PyTorch is ~45 kernels at 2-170 us
// of dispatch each. Here the step is one loop over the layers with no allocation, and the
// matrix products stream each weight row once for every batch row.
//
// Layouts are PyTorch's (row-major, contiguous, float32):
//   Linear weight (out, in); KV cache (n_layer, 2, B, H, max_len, D); key mask (B, max_len)
//   bool; rope tables (block_size, D) with the angles repeated in both halves;
// except the blocks' four weight matrices, which decode_kernel.py packs into panels (see
// matmul_panels).
// Every formula follows the module it replaces (see gpt_decode.py); only the order of the
// additions differs, so results agree to float32 rounding (tests/models/test_decode_kernel.py),
// and that order never depends on the batch, the padding or the threads.
//
// Built by cpp_library.py with: g++ -O3 -march=native -fopenmp -shared -fPIC -std=c++17.
// No PyTorch headers: it compiles in 2-3 s and is called through ctypes.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernel_math.h"

extern "C" {

struct Layer {
    const float *ln1_w, *ln1_b;    // (C,); b may be null (no bias, or RMSNorm)
    const float *qkv_p, *qkv_b;    // (3C, C) packed in panels (see matmul_panels), (3C,)
    const float *proj_p, *proj_b;  // (C, C) packed, (C,)
    const float *ln2_w, *ln2_b;    // (C,)
    const float *fc_p, *fc_b;      // (F, C) packed, (F,)
    const float *out_p, *out_b;    // (C, F) packed, (C,)
    float ln1_eps, ln2_eps;
};

struct Model {
    int32_t n_layer, C, H, D, F, V;
    int32_t rms;  // 0: LayerNorm, 1: RMSNorm
    int32_t act;  // 0: exact (erf) GELU, 1: tanh GELU, 2: ReLU
    const Layer* layers;
    const float* wte;        // (V, C)
    const float* pos;        // (block_size, C) learned or sinusoidal, or null
    const float* rope_cos;   // (block_size, D), or null
    const float* rope_sin;
    const float *lnf_w, *lnf_b;
    float lnf_eps;
    const float* head;       // (V, C): lm_head, which may be wte itself (not packed)
};

struct Step {
    int32_t B, T;             // rows, and new tokens per row
    int32_t n_threads;
    int64_t start;            // the cache slot of each row's first new token
    int64_t max_len;          // slots per row in the cache
    const int64_t* tokens;    // (B, T), row b at b * tokens_stride
    int64_t tokens_stride;
    const int64_t* positions; // (B, T) each token's position, or null: start + t
    const uint8_t* key_mask;  // (B, max_len) 1 = a real token, or null: every slot is real
    float* kv;                // (n_layer, 2, B, H, max_len, D)
    float* logits;            // (B, T, V) out
    float* work;              // scratch, scratch_floats(...) floats
};

}  // extern "C"

static void activate(float* h, int64_t n, int act) {
    if (act == 0) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) h[i] = 0.5f * h[i] * (1.0f + erf_approx(h[i] * 0.70710678118654752f));
    } else if (act == 1) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            float x = h[i];
            h[i] = 0.5f * x * (1.0f + tanh_approx(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) h[i] = h[i] > 0.0f ? h[i] : 0.0f;
    }
}

static void norm_row(const float* x, float* y, int C, const float* w, const float* b, float eps,
                     int rms) {
    float mean = 0.0f;
    if (!rms) {
        for (int i = 0; i < C; i++) mean += x[i];
        mean /= (float)C;
    }
    float var = 0.0f;
    for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    float inv = 1.0f / std::sqrt(var / (float)C + eps);
    for (int i = 0; i < C; i++) {
        float v = (x[i] - mean) * inv * w[i];
        y[i] = b ? v + b[i] : v;
    }
}

// -- Y[b, n] = X[b, :] . W[n, :] + bias[n]  (or Y += that), W as PyTorch stores it ---------------
//
// For the lm_head, which is not packed (it may be the embedding, and a large vocabulary's
// copy would be costly). One weight row at a time, each 16-float chunk loaded once and multiplied into every batch
// row (up to 8 at once). Reading the weights strictly in order matters: on the 2-core AMD
// machine this was measured on, interleaving even two rows cut the streaming rate from
// memory from 18 GB/s to 8 GB/s (4 rows: 3 GB/s), and a 6 x 384 model's step is ~42 MB of
// weights. Each batch row has one accumulator, summed in the same order whatever the batch
// size: a row's logits do not depend on the other rows (splitting one row's sum over four
// accumulators was also measured slower, 2.6-3.1 ms against 2.2 ms a token at 6 x 384).

template <int BB>
static inline void row(const float* X, int K, const float* w, float* Y, int ldy, float bias,
                       bool add) {
    v16 acc[BB];
    for (int b = 0; b < BB; b++) acc[b] = v16{};
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        // With 4+ batch rows the loop is busy multiplying and the hardware prefetcher falls
        // behind: asking 2 KB ahead measured 20% faster (with one row it was slower).
        if (BB >= 4) __builtin_prefetch(w + k + 512, 0, 3);
        const v16 wk = load16(w + k);
        for (int b = 0; b < BB; b++) acc[b] += wk * load16(X + (int64_t)b * K + k);
    }
    for (int b = 0; b < BB; b++) {
        float s = hsum(acc[b]);
        for (int kk = k; kk < K; kk++) s += w[kk] * X[(int64_t)b * K + kk];
        s += bias;
        float* y = Y + (int64_t)b * ldy;
        *y = add ? *y + s : s;
    }
}

// Output rows [n0, n1) of Y = X W^T + bias (or Y += that), for all B batch rows.
static void matmul_rows(const float* X, int B, int K, const float* W, int N, const float* bias,
                        float* Y, bool add, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        const float* w = W + (int64_t)n * K;
        const float bn = bias ? bias[n] : 0.0f;
        for (int b0 = 0; b0 < B; b0 += 8) {
            const float* x = X + (int64_t)b0 * K;
            float* y = Y + (int64_t)b0 * N + n;
            switch (B - b0 < 8 ? B - b0 : 8) {
                case 1: row<1>(x, K, w, y, N, bn, add); break;
                case 2: row<2>(x, K, w, y, N, bn, add); break;
                case 3: row<3>(x, K, w, y, N, bn, add); break;
                case 4: row<4>(x, K, w, y, N, bn, add); break;
                case 5: row<5>(x, K, w, y, N, bn, add); break;
                case 6: row<6>(x, K, w, y, N, bn, add); break;
                case 7: row<7>(x, K, w, y, N, bn, add); break;
                default: row<8>(x, K, w, y, N, bn, add); break;
            }
        }
    }
}

// -- the same with W packed in panels ------------------------------------------------------------
//
// The dot-product form above loads a chunk of X for every multiply-add, and for 8 batch rows
// that, not memory, bounded the step (measured: 5.9 ms of matrix products a step at 6 x 384
// against 2.8 ms to stream the weights alone). Packed, W's output columns are cut into panels
// of PANEL = 48 (N rounded up to 16 with zero columns; the last panel 16 or 32 wide), each
// stored k-major (K, 48) and the panels one after another. A panel is then one sequential
// stream, and each step k multiplies one broadcast X[b, k] into 3 vectors of 16 columns for
// every batch row: 24 accumulators for 8 rows, no horizontal sums, a load per 3 multiply-adds
// (2.8 ms a step for 8 rows, as fast as streaming). Output n's sum runs over k = 0..K-1 in
// order, one fused multiply-add each, whatever the batch, the panel or the thread.

constexpr int PANEL = 48;

static inline int n_panels(int N) { return ((N + 15) / 16 * 16 + PANEL - 1) / PANEL; }

template <int BB, int NV>
static inline void panel(const float* X, int K, const float* p, float* Y, int N, int n0,
                         const float* bias, bool add) {
    v16 acc[BB][NV];
    for (int b = 0; b < BB; b++)
        for (int v = 0; v < NV; v++) acc[b][v] = v16{};
    for (int k = 0; k < K; k++) {
        __builtin_prefetch(p + (int64_t)(k + 16) * NV * 16, 0, 3);  // 3 KB ahead
        v16 w[NV];
        for (int v = 0; v < NV; v++) w[v] = load16(p + (int64_t)k * NV * 16 + 16 * v);
        for (int b = 0; b < BB; b++) {
            const float xb = X[(int64_t)b * K + k];
            for (int v = 0; v < NV; v++) acc[b][v] += xb * w[v];
        }
    }
    const int width = N - n0 < NV * 16 ? N - n0 : NV * 16;  // the zero columns are not written
    for (int b = 0; b < BB; b++) {
        float out[NV * 16];
        std::memcpy(out, acc[b], sizeof out);
        float* y = Y + (int64_t)b * N + n0;
        for (int i = 0; i < width; i++) {
            const float v = bias ? out[i] + bias[n0 + i] : out[i];
            y[i] = add ? y[i] + v : v;
        }
    }
}

template <int NV>
static void panel_rows(const float* X, int B, int K, const float* p, float* Y, int N, int n0,
                       const float* bias, bool add) {
    for (int b0 = 0; b0 < B; b0 += 8) {
        const float* x = X + (int64_t)b0 * K;
        float* y = Y + (int64_t)b0 * N;
        switch (B - b0 < 8 ? B - b0 : 8) {
            case 1: panel<1, NV>(x, K, p, y, N, n0, bias, add); break;
            case 2: panel<2, NV>(x, K, p, y, N, n0, bias, add); break;
            case 3: panel<3, NV>(x, K, p, y, N, n0, bias, add); break;
            case 4: panel<4, NV>(x, K, p, y, N, n0, bias, add); break;
            case 5: panel<5, NV>(x, K, p, y, N, n0, bias, add); break;
            case 6: panel<6, NV>(x, K, p, y, N, n0, bias, add); break;
            case 7: panel<7, NV>(x, K, p, y, N, n0, bias, add); break;
            default: panel<8, NV>(x, K, p, y, N, n0, bias, add); break;
        }
    }
}

// One batch row, NP full panels at once (NP streams, 3 * NP chains of multiply-adds): with
// one row, a panel alone is 3 chains of K dependent multiply-adds, bound by their latency
// rather than by memory. Each output's sum is still k = 0..K-1 in order, as in ``panel``.
template <int NP>
static inline void panels_one_row(const float* X, int K, const float* p, float* Y,
                                  const float* bias, bool add) {
    constexpr int NV = 3 * NP;
    const int64_t stride = (int64_t)PANEL * K;  // one panel to the next
    v16 acc[NV];
    for (int v = 0; v < NV; v++) acc[v] = v16{};
    for (int k = 0; k < K; k++) {
        const float xk = X[k];
        for (int j = 0; j < NP; j++) {
            const float* pk = p + j * stride + (int64_t)k * PANEL;
            for (int v = 0; v < 3; v++) acc[3 * j + v] += xk * load16(pk + 16 * v);
        }
    }
    float out[NV * 16];
    std::memcpy(out, acc, sizeof out);
    for (int j = 0; j < NP; j++)
        for (int i = 0; i < PANEL; i++) {  // output n0 + j * PANEL + i is out[j * PANEL + i]
            const float v = bias ? out[j * PANEL + i] + bias[j * PANEL + i] : out[j * PANEL + i];
            Y[j * PANEL + i] = add ? Y[j * PANEL + i] + v : v;
        }
}

// Panels [j0, j1) of Y = X W^T + bias (or Y += that), for all B batch rows; P is W packed.
static void matmul_panels(const float* X, int B, int K, const float* P, int N, const float* bias,
                          float* Y, bool add, int j0, int j1) {
    const int padded = (N + 15) / 16 * 16;
    if (B == 1) {  // full panels 4, then 2 at a time (measured at 6 x 384, one thread: 2.8-3.2
                   // ms a token against 3.8-4.9 one panel at a time, 3.1-3.7 as dot products)
        auto run = [&](auto np) {
            constexpr int NP = decltype(np)::value;
            for (; j0 + NP <= j1 && (j0 + NP) * PANEL <= N; j0 += NP)
                panels_one_row<NP>(X, K, P + (int64_t)j0 * PANEL * K, Y + j0 * PANEL,
                                   bias ? bias + j0 * PANEL : nullptr, add);
        };
        run(std::integral_constant<int, 4>{});
        run(std::integral_constant<int, 2>{});
    }
    for (int j = j0; j < j1; j++) {
        const int n0 = j * PANEL;
        const int nv = (padded - n0 < PANEL ? padded - n0 : PANEL) / 16;
        const float* p = P + (int64_t)n0 * K;  // every panel before j is a full one
        if (nv == 3) panel_rows<3>(X, B, K, p, Y, N, n0, bias, add);
        else if (nv == 2) panel_rows<2>(X, B, K, p, Y, N, n0, bias, add);
        else panel_rows<1>(X, B, K, p, Y, N, n0, bias, add);
    }
}

// -- the step ----------------------------------------------------------------------------------

static inline int64_t wide_of(const Model* m) {
    return 3 * (int64_t)m->C > m->F ? 3 * (int64_t)m->C : m->F;
}

// Floats of scratch `work` must hold for `rows` = B * T tokens, `threads` threads and a cache
// of `max_len` slots.
extern "C" int64_t scratch_floats(const Model* m, int64_t rows, int32_t threads, int64_t max_len) {
    return rows * (2 * (int64_t)m->C + wide_of(m)) + (int64_t)threads * (rows * m->C + 2 * max_len);
}

static void rope_rotate(float* x, const float* cos, const float* sin, int D) {
    const int h = D / 2;
    for (int i = 0; i < h; i++) {
        float a = x[i], b = x[i + h];
        x[i] = a * cos[i] - b * sin[i];
        x[i + h] = b * cos[i + h] + a * sin[i + h];
    }
}

// A sum of n floats in a fixed order (16 lanes, then the lanes' tree, then the tail), so it
// does not depend on where the array lies in memory.
static inline float sum_of(const float* x, int64_t n) {
    v16 acc = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc += load16(x + i);
    float s = hsum(acc);
    for (; i < n; i++) s += x[i];
    return s;
}

// One head of one query: softmax(q . k * scale) . v over the cache slots `slots[0..n)` (the
// real keys it may see, oldest first). Every sum runs in the order of that list, so a row
// gives the same numbers whatever padding or batch it sits in. sc: n floats of scratch.
static void attend(const float* q, const float* keys, const float* values, const int32_t* slots,
                   int64_t n, int D, float scale, float* sc, float* out) {
    const bool vec = D % 16 == 0 && D <= 128;
    v16 qv[8];
    if (vec)
        for (int c = 0; c < D / 16; c++) qv[c] = load16(q + 16 * c);
    float top = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const float* kt = keys + (int64_t)slots[j] * D;
        float d;
        if (vec) {
            // With several batch rows the cache comes from memory: ask for this slot's values
            // now, which the weighted sum below reads (measured 20% faster attention at batch
            // 8; asking for keys ahead too was slower).
            for (int c = 0; c < D; c += 16) __builtin_prefetch(values + (int64_t)slots[j] * D + c, 0, 3);
            v16 a = load16(kt) * qv[0];
            for (int c = 1; c < D / 16; c++) a += load16(kt + 16 * c) * qv[c];
            d = hsum(a);
        } else {
            d = 0.0f;
            for (int i = 0; i < D; i++) d += q[i] * kt[i];
        }
        sc[j] = d * scale;
        top = sc[j] > top ? sc[j] : top;
    }
    for (int64_t j = 0; j < n; j++) sc[j] = exp_approx(sc[j] - top);
    const float inv = 1.0f / sum_of(sc, n);
    if (vec) {
        v16 acc[8];
        for (int c = 0; c < D / 16; c++) acc[c] = v16{};
        for (int64_t j = 0; j < n; j++) {
            const float* vt = values + (int64_t)slots[j] * D;
            for (int c = 0; c < D / 16; c++) acc[c] += sc[j] * load16(vt + 16 * c);
        }
        for (int c = 0; c < D / 16; c++) {
            v16 r = acc[c] * inv;
            std::memcpy(out + 16 * c, &r, sizeof r);
        }
    } else {
        for (int i = 0; i < D; i++) out[i] = 0.0f;
        for (int64_t j = 0; j < n; j++)
            for (int i = 0; i < D; i++) out[i] += sc[j] * values[(int64_t)slots[j] * D + i];
        for (int i = 0; i < D; i++) out[i] *= inv;
    }
}

static inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline void barrier() {
#pragma omp barrier
}

// Run by every thread of the team. Each thread owns a contiguous block of every weight
// matrix's panels or rows (so of every output's columns), and computes the norms itself into its own
// buffer, which saves a barrier each; the barriers left are where a thread reads what others
// wrote: five per layer for one new token per row.
static void body(const Model* m, const Step* s) {
    const int B = s->B, T = s->T, C = m->C, H = m->H, D = m->D, F = m->F, V = m->V;
    const int64_t L = s->max_len, R = (int64_t)B * T;  // R rows: token t of row b is row b*T+t
    const int tid = thread_id(), nt = team_size();
    const int64_t W3 = wide_of(m);
    float* x = s->work;                 // (R, C) the residual stream
    float* att = x + R * C;             // (R, C) attention output, heads side by side
    float* wide = att + R * C;          // (R, 3C) qkv, or (R, F) the MLP's hidden layer
    float* mine = wide + R * W3 + (int64_t)tid * (R * C + 2 * L);  // this thread's own:
    float* xn = mine;                                               // (R, C) norm of x
    float* sc = xn + R * C;                                         // L scores
    int32_t* slots = (int32_t*)(sc + L);                            // L slot numbers
    const float scale = 1.0f / std::sqrt((float)D);
    auto position = [&](int64_t r) { return s->positions ? s->positions[r] : s->start + r % T; };
    auto part = [&](int N, int& n0, int& n1) {  // this thread's rows of an N-row matrix
        n0 = (int)((int64_t)N * tid / nt);
        n1 = (int)((int64_t)N * (tid + 1) / nt);
    };
    auto panels = [&](int N, int& j0, int& j1) { part(n_panels(N), j0, j1); };  // packed: panels
    auto norm_all = [&](const float* w, const float* b, float eps) {
        for (int64_t r = 0; r < R; r++) norm_row(x + r * C, xn + r * C, C, w, b, eps, m->rms);
    };
    // rope on this head's query and key, and the key and value into the cache slot
    auto store = [&](int64_t r, int h, float* k_cache, float* v_cache) {
        const int64_t b = r / T, slot = s->start + r % T;
        float* q = wide + r * 3 * C + h * D;
        if (m->rope_cos) {
            const int64_t p = position(r);
            rope_rotate(q, m->rope_cos + p * D, m->rope_sin + p * D, D);
            rope_rotate(q + C, m->rope_cos + p * D, m->rope_sin + p * D, D);
        }
        std::memcpy(k_cache + ((b * H + h) * L + slot) * D, q + C, D * sizeof(float));
        std::memcpy(v_cache + ((b * H + h) * L + slot) * D, q + 2 * C, D * sizeof(float));
    };
    auto look = [&](int64_t r, int h, const float* k_cache, const float* v_cache) {
        const int64_t b = r / T, slot = s->start + r % T;
        // The keys this query may see: the real ones up to its own slot, and always its
        // own (a padding query has no real key before it), as the modules' mask says.
        const uint8_t* real = s->key_mask ? s->key_mask + b * L : nullptr;
        int64_t n = 0;
        for (int64_t t = 0; t <= slot; t++)
            if (!real || real[t] || t == slot) slots[n++] = (int32_t)t;
        const int64_t head = (b * H + h) * L * D;
        attend(wide + r * 3 * C + h * D, k_cache + head, v_cache + head, slots, n, D, scale, sc,
               att + r * C + h * D);
    };
    int n0, n1;

#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float* e = m->wte + s->tokens[(r / T) * s->tokens_stride + r % T] * C;
        const int64_t p = position(r);
        for (int i = 0; i < C; i++) x[r * C + i] = m->pos ? e[i] + m->pos[p * C + i] : e[i];
    }
    for (int l = 0; l < m->n_layer; l++) {
        const Layer& w = m->layers[l];
        float* k_cache = s->kv + (int64_t)(2 * l) * B * H * L * D;  // (B, H, L, D)
        float* v_cache = k_cache + (int64_t)B * H * L * D;
        norm_all(w.ln1_w, w.ln1_b, w.ln1_eps);
        panels(3 * C, n0, n1);
        matmul_panels(xn, (int)R, C, w.qkv_p, 3 * C, w.qkv_b, wide, false, n0, n1);  // q, k, v
        barrier();
        if (T == 1) {  // a query reads only its own head's cache: store and look in one pass
#pragma omp for schedule(static)
            for (int64_t rh = 0; rh < R * H; rh++) {
                store(rh / H, (int)(rh % H), k_cache, v_cache);
                look(rh / H, (int)(rh % H), k_cache, v_cache);
            }
        } else {  // a query reads the keys of the tokens before it in this call too
#pragma omp for schedule(static)
            for (int64_t rh = 0; rh < R * H; rh++) store(rh / H, (int)(rh % H), k_cache, v_cache);
#pragma omp for schedule(static)
            for (int64_t rh = 0; rh < R * H; rh++) look(rh / H, (int)(rh % H), k_cache, v_cache);
        }
        panels(C, n0, n1);
        matmul_panels(att, (int)R, C, w.proj_p, C, w.proj_b, x, true, n0, n1);  // x += proj(att)
        barrier();
        norm_all(w.ln2_w, w.ln2_b, w.ln2_eps);
        panels(F, n0, n1);
        matmul_panels(xn, (int)R, C, w.fc_p, F, w.fc_b, wide, false, n0, n1);  // (R, F)
        {
            const int c0 = n0 * PANEL < F ? n0 * PANEL : F, c1 = n1 * PANEL < F ? n1 * PANEL : F;
            for (int64_t r = 0; r < R; r++) activate(wide + r * F + c0, c1 - c0, m->act);
        }
        barrier();
        panels(C, n0, n1);
        matmul_panels(wide, (int)R, F, w.out_p, C, w.out_b, x, true, n0, n1);  // x += mlp(x)
        barrier();
    }
    norm_all(m->lnf_w, m->lnf_b, m->lnf_eps);
    part(V, n0, n1);
    matmul_rows(xn, (int)R, C, m->head, V, nullptr, s->logits, false, n0, n1);
}

// 0 on success; 1 for a bad step, 2 for a token id outside the vocabulary (nothing written).
extern "C" int32_t decode_step(const Model* m, const Step* s) {
    if (s->B < 1 || s->T < 1 || s->start < 0 || s->start + s->T > s->max_len) return 1;
    for (int64_t r = 0; r < (int64_t)s->B * s->T; r++) {
        const int64_t t = s->tokens[(r / s->T) * s->tokens_stride + r % s->T];
        if (t < 0 || t >= m->V) return 2;
    }
#pragma omp parallel num_threads(s->n_threads) if (s->n_threads > 1)
    body(m, s);
    return 0;
}
