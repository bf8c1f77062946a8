// The passes of a CPU training step, forward and backward, called from train_kernel.py and
// train_block.py:
//
// * causal self-attention from c_attn's output: qkv (B, T, 3C) in, y (B, T, C) out, heads
//   side by side, ready for c_proj; the backward writes dqkv in qkv's layout. PyTorch's path
//   copies q, k, v into heads, runs the flash kernel (which recomputes the scores in its
//   backward) and copies y and the three gradients back. At the short sequences of a small
//   model the flash kernel's blocking costs more than the arithmetic; here each (batch, head)
//   is one task that keeps the softmax weights P (B, H, T, Tp) from the forward, and every
//   product is a register-tiled loop over one head's rows. c_attn's bias is added, and its
//   gradient summed, inside the same tasks.
// * the exact GELU: alone, its backward, which evaluates one exponential where PyTorch's
//   evaluates erf and exp; in an MLP, a forward that adds c_fc's bias and keeps the slope,
//   so the backward is one product that also sums the bias gradient;
// * layer norm, whose forward can first add a residual and a bias, and whose backward adds
//   the residual's gradient and sums the bias gradient of the layer before; a residual add;
// * the global gradient norm and the clip;
// * the matrix products (gemm), for the machines where PyTorch's are MKL's AVX2 path on a
//   CPU with AVX-512 (train_kernel.products()), and the transposes of the weights they read
//   (transpose_matrix, 16 x 16 blocks in registers, as are the attention heads').
//
// Formulas are the modules' (attention.py, ffn.py, norms.py, torch's clip_grad_norm_); only
// the order of additions differs, so results agree with PyTorch's to float32 rounding
// (tests/models/test_train_kernel.py, test_train_block.py), and that order depends on
// neither the batch nor the threads: sums over rows run over fixed blocks of rows, then the
// blocks in order. Layouts: row-major float32; Tp = T rounded up to 16 is P's row stride; a
// row's columns past its query are zeros for at least 16 columns (zero_after), and nothing
// reads further.
//
// Built by cpp_library.py with: g++ -O3 -march=native [-mprefer-vector-width=512] -fopenmp
// -shared -fPIC -std=c++17.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernel_math.h"

namespace {

inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int thread_count() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

inline int up16(int n) { return (n + 15) & ~15; }

// C[r, 0:16 NV] = sum_k A[r * ars + k * acs] * B[k * ldb + 0:16 NV] for r < MR (ACC: added
// to C): MR x NV accumulators live in registers (6 x 4 of the 32 AVX-512 ones at most)
// while k runs. A's strides let the same tile read A or A transposed.
template <int MR, int NV, bool ACC = false>
inline void tile(int K, const float* A, int64_t ars, int64_t acs, const float* B, int64_t ldb,
                 float* C, int64_t ldc) {
    v16 c[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) c[r][v] = v16{};
    for (int k = 0; k < K; k++) {
        v16 b[NV];
        for (int v = 0; v < NV; v++) b[v] = load16(B + k * ldb + 16 * v);
        for (int r = 0; r < MR; r++) {
            const float a = A[r * ars + k * acs];
            for (int v = 0; v < NV; v++) c[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            float* out = C + r * ldc + 16 * v;
            store16(out, ACC ? load16(out) + c[r][v] : c[r][v]);
        }
}

template <int MR>
inline void tile_row(int N, int K, const float* A, int64_t ars, int64_t acs, const float* B,
                     int64_t ldb, float* C, int64_t ldc) {
    int n = 0;
    for (; n + 64 <= N; n += 64) tile<MR, 4>(K, A, ars, acs, B + n, ldb, C + n, ldc);
    for (; n + 32 <= N; n += 32) tile<MR, 2>(K, A, ars, acs, B + n, ldb, C + n, ldc);
    for (; n < N; n += 16) tile<MR, 1>(K, A, ars, acs, B + n, ldb, C + n, ldc);
}

constexpr int MR = 6;  // rows per tile

// C[0:rows, 0:N] = A[0:rows, 0:K] B[0:K, 0:N] for rows <= MR; N a multiple of 16.
void matmul_rows(int rows, int N, int K, const float* A, int64_t ars, int64_t acs,
                 const float* B, int64_t ldb, float* C, int64_t ldc) {
    switch (rows) {
        case 1: tile_row<1>(N, K, A, ars, acs, B, ldb, C, ldc); break;
        case 2: tile_row<2>(N, K, A, ars, acs, B, ldb, C, ldc); break;
        case 3: tile_row<3>(N, K, A, ars, acs, B, ldb, C, ldc); break;
        case 4: tile_row<4>(N, K, A, ars, acs, B, ldb, C, ldc); break;
        case 5: tile_row<5>(N, K, A, ars, acs, B, ldb, C, ldc); break;
        default: tile_row<MR>(N, K, A, ars, acs, B, ldb, C, ldc); break;
    }
}

// -- transposes ---------------------------------------------------------------------------
//
// A 16 x 16 block transposed in registers: four rounds of two-register shuffles, each
// swapping one bit of an element's row index with the same bit of its column index (row r's
// lane c goes to row r ^ S, lane c ^ S when the two bits differ). 64 shuffles for 256
// floats, where a scalar transpose makes 256 strided loads and stores: on the attention
// kernel's (T, 64) heads, the scalar loop read each of a head's rows 64 times, from L2.
template <int S>
inline void swap_index_bit(v16* r) {
    static_assert(S == 1 || S == 2 || S == 4 || S == 8, "one bit of a 16-lane index");
    v16i lo, hi;  // lane c of row r (bit S of r clear) and of row r + S
    for (int c = 0; c < 16; c++) {
        lo[c] = c & S ? 16 + c - S : c;
        hi[c] = c & S ? 16 + c : c + S;
    }
    for (int i = 0; i < 16; i++)
        if (!(i & S)) {
            const v16 a = r[i], b = r[i + S];
            r[i] = __builtin_shuffle(a, b, lo);
            r[i + S] = __builtin_shuffle(a, b, hi);
        }
}

// dst[c * ldd + r] = src[r * lds + c] for r < 16, c < 16; rows r >= rows of src read as zeros.
inline void transpose16(const float* src, int64_t lds, int rows, float* dst, int64_t ldd) {
    v16 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < rows ? load16(src + i * lds) : v16{};
    swap_index_bit<1>(r);
    swap_index_bit<2>(r);
    swap_index_bit<4>(r);
    swap_index_bit<8>(r);
    for (int i = 0; i < 16; i++) store16(dst + i * ldd, r[i]);
}

// dst (D, Tp) = src (T, D; row stride ld) transposed, zero past T; D a multiple of 16.
void transpose(const float* src, int64_t ld, int T, int D, int Tp, float* dst) {
    for (int j = 0; j < Tp; j += 16)
        for (int d = 0; d < D; d += 16)
            transpose16(src + j * ld + d, ld, std::min(16, T - j), dst + (int64_t)d * Tp + j, Tp);
}

// Zeros in row[m16 : m16 + 16] (within Tp). A row i of weights or of dS is read up to
// column i + MR - 1 (a tile of MR rows reads as far as its last row does, and the
// transposed products read MR columns from the diagonal down), and m16 > i: so every
// product reads zeros, never what lies further right (left uninitialised).
inline void zero_after(float* row, int m16, int Tp) {
    static_assert(MR <= 16, "zero_after covers MR - 1 columns past a row's last key");
    if (m16 < Tp) store16(row + m16, v16{});  // both multiples of 16
}

// The passes over a head's rows of D floats (D a multiple of 16) on whole vectors: at D 32 a
// loop the compiler vectorised for any length spent more time on its set-up than on the sum.
inline void add_row(float* x, const float* y, int D) {
    for (int d = 0; d < D; d += 16) store16(x + d, load16(x + d) + load16(y + d));
}

inline float dot_row(const float* x, const float* y, int D) {
    v16 sum{};
    for (int d = 0; d < D; d += 16) sum += load16(x + d) * load16(y + d);
    return hsum(sum);
}

// p[0:n] = softmax(scale * p[0:n]), zeros after it (zero_after): on whole vectors, the keys
// past n masked, one horizontal max and one sum per row. (At T 64 a row is 32 keys on
// average, and loops the compiler vectorised spent half the softmax's time in scalar
// remainders.)
void softmax_row(float* p, int n, int Tp, float scale) {
    const int m16 = up16(n);
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const v16 none = splat16(-INFINITY);
    v16 top = none;
    for (int c = 0; c < m16; c += 16) {
        v16 v = load16(p + c);
        v = lane + c < n ? v : none;
        top = v > top ? v : top;
    }
    const float m = hmax(top);
    v16 sum{};
    for (int c = 0; c < m16; c += 16) {
        v16 e = exp16((load16(p + c) - m) * scale);
        e = lane + c < n ? e : v16{};
        store16(p + c, e);
        sum += e;
    }
    const float inv = 1.0f / hsum(sum);
    for (int c = 0; c < m16; c += 16) store16(p + c, load16(p + c) * inv);
    zero_after(p, m16, Tp);
}

// One (batch, head) task of attention: where its q, k, v rows start in qkv (row stride ld =
// 3C), and the shapes every pass needs.
struct Head {
    int b, h, C, Tp;
    int64_t ld;
    float scale;
    const float *q, *k, *v;
    Head(const float* qkv, int bh, int T, int H, int D)
        : b(bh / H), h(bh % H), C(H * D), Tp(up16(T)), ld(3 * (int64_t)H * D),
          scale(1.0f / std::sqrt((float)D)) {
        q = qkv + (int64_t)b * T * ld + h * D;
        k = q + C;
        v = q + 2 * C;
    }
};

// -- the matrix products ------------------------------------------------------------------
//
// C = A B for A (M, K) read through strides (A or A transposed), B (K, N) row-major and N a
// multiple of 16. Each thread takes a contiguous range of tiles of GEMM_MR rows and goes
// through B in blocks of GEMM_KC rows (a block stays in L2 while the thread's tiles read
// it). A transposed A feeding 6 or more 64-column strips is first copied, a tile and a
// block at a time, into a k-major panel that every strip reads from consecutive floats (a
// weight gradient's dY^T: 6 columns of dY read down 128 rows once per strip cost 10 % at
// 1536 x 2048 x 384); otherwise A is read where it is, as the copy costs more than it saves
// over a few strips. Each block's sum
// starts from zero in registers and is then added to C: a chain of at most GEMM_KC
// additions per element, where one chain over all of K (768 rows for a small model's weight
// gradient) made the error twice torch.mm's; at 128 it is at most torch.mm's
// (tests/models/test_train_products.py). Each C element is one thread's sum in a fixed
// order, so the result depends on neither the thread count nor the split.

constexpr int GEMM_MR = 6;
constexpr int GEMM_KC = 128;
// Past 512 columns, C is made in blocks of GEMM_NC columns, each over all of K, so that a
// thread's block of C stays in L2 while the K blocks add to it (at M 2048, N 1536: 390 ->
// 460 GFLOP/s); narrower products take all their columns at once.
constexpr int GEMM_NC = 256;

// Columns n0 .. n1 of MR rows, 64 at a time, then the 32- and 16-wide ends.
template <int MR, bool ACC>
void gemm_strips(int n0, int n1, int K, const float* A, int64_t ars, int64_t acs,
                 const float* B, int64_t ldb, float* C, int64_t ldc) {
    int n = n0;
    for (; n + 64 <= n1; n += 64) tile<MR, 4, ACC>(K, A, ars, acs, B + n, ldb, C + n, ldc);
    if (n + 32 <= n1) {
        tile<MR, 2, ACC>(K, A, ars, acs, B + n, ldb, C + n, ldc);
        n += 32;
    }
    if (n < n1) tile<MR, 1, ACC>(K, A, ars, acs, B + n, ldb, C + n, ldc);
}

template <bool ACC>
void gemm_rows(int rows, int n0, int n1, int K, const float* A, int64_t ars, int64_t acs,
               const float* B, int64_t ldb, float* C, int64_t ldc) {
    switch (rows) {
        case 1: gemm_strips<1, ACC>(n0, n1, K, A, ars, acs, B, ldb, C, ldc); break;
        case 2: gemm_strips<2, ACC>(n0, n1, K, A, ars, acs, B, ldb, C, ldc); break;
        case 3: gemm_strips<3, ACC>(n0, n1, K, A, ars, acs, B, ldb, C, ldc); break;
        case 4: gemm_strips<4, ACC>(n0, n1, K, A, ars, acs, B, ldb, C, ldc); break;
        case 5: gemm_strips<5, ACC>(n0, n1, K, A, ars, acs, B, ldb, C, ldc); break;
        default: gemm_strips<GEMM_MR, ACC>(n0, n1, K, A, ars, acs, B, ldb, C, ldc); break;
    }
}

}  // namespace

extern "C" {

// Scratch floats per thread for attention_forward / attention_backward.
int64_t attention_work_floats(int T, int D) {
    const int64_t Tp = up16(T);
    return (int64_t)D * Tp + (int64_t)T * Tp;
}

// qkv (B, T, 3C) -> y (B, T, C), P (B, H, T, Tp); C = H * D, D a multiple of 16. With bias
// (3C) not null, qkv is c_attn's product without it: each task first adds the bias to its
// head's q, k and v in place (addmm's copy of the bias into every row, fused here).
void attention_forward(float* qkv, const float* bias, float* y, float* P, float* work, int B,
                       int T, int H, int D, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int bh = 0; bh < B * H; bh++) {
        const Head t(qkv, bh, T, H, D);
        const int b = t.b, h = t.h, C = t.C, Tp = t.Tp;
        const int64_t ld = t.ld;
        if (bias) {
            float* row = qkv + (int64_t)b * T * ld + h * D;
            for (int i = 0; i < T; i++, row += ld)
                for (int part = 0; part < 3; part++)
                    add_row(row + part * C, bias + part * C + h * D, D);
        }
        float* Ph = P + (int64_t)bh * T * Tp;
        float* kt = work + thread_id() * attention_work_floats(T, D);  // (D, Tp)
        transpose(t.k, ld, T, D, Tp, kt);
        // scores Q K^T, only the tiles that reach the diagonal or below
        for (int i0 = 0; i0 < T; i0 += MR) {
            const int rows = std::min(MR, T - i0);
            matmul_rows(rows, up16(i0 + rows), D, t.q + i0 * ld, ld, 1, kt, Tp,
                        Ph + (int64_t)i0 * Tp, Tp);
        }
        for (int i = 0; i < T; i++) softmax_row(Ph + (int64_t)i * Tp, i + 1, Tp, t.scale);
        // y = P V: row i needs keys 0..i, and P is zero past them within a tile
        float* yh = y + (int64_t)b * T * C + h * D;
        for (int i0 = 0; i0 < T; i0 += MR) {
            const int rows = std::min(MR, T - i0);
            matmul_rows(rows, D, i0 + rows, Ph + (int64_t)i0 * Tp, Tp, 1, t.v, ld,
                        yh + (int64_t)i0 * C, C);
        }
    }
}

// The gradient of attention_forward: dy (B, T, C) -> dqkv (B, T, 3C), every element written.
//   dS = P * (dy V^T - rowsum(dy * y)) * scale;  dq = dS K;  dk = dS^T q;  dv = P^T dy.
// With bias_grad (3C) not null, also c_attn's bias gradient, dqkv summed over B and T: each
// task sums its head's T rows into partial (B, 3C), then the batches are summed in order.
void attention_backward(const float* qkv, const float* y, const float* P, const float* dy,
                        float* dqkv, float* bias_grad, float* partial, float* work, int B,
                        int T, int H, int D, int n_threads) {
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        const Head t(qkv, bh, T, H, D);
        const int b = t.b, h = t.h, C = t.C, Tp = t.Tp;
        const int64_t ld = t.ld;
        float* dq = dqkv + (int64_t)b * T * ld + h * D;
        float *dk = dq + C, *dv = dq + 2 * C;
        const float* Ph = P + (int64_t)bh * T * Tp;
        const float* dyh = dy + (int64_t)b * T * C + h * D;
        const float* yh = y + (int64_t)b * T * C + h * D;
        float* vt = work + thread_id() * attention_work_floats(T, D);  // (D, Tp)
        float* dS = vt + (int64_t)D * Tp;                               // (T, Tp)
        transpose(t.v, ld, T, D, Tp, vt);
        for (int i0 = 0; i0 < T; i0 += MR) {  // dP = dy V^T, on and below the diagonal
            const int rows = std::min(MR, T - i0);
            matmul_rows(rows, up16(i0 + rows), D, dyh + (int64_t)i0 * C, C, 1, vt, Tp,
                        dS + (int64_t)i0 * Tp, Tp);
        }
        for (int i = 0; i < T; i++) {
            float* ds = dS + (int64_t)i * Tp;
            const float* p = Ph + (int64_t)i * Tp;
            const float *dyi = dyh + (int64_t)i * C, *yi = yh + (int64_t)i * C;
            const float dot = dot_row(dyi, yi, D);  // rowsum(dy * y) = rowsum(P * dP)
            const int m16 = up16(i + 1);  // whole vectors: p is 0 past key i, so is ds
            const v16 dots = splat16(dot);
            for (int c = 0; c < m16; c += 16)
                store16(ds + c, load16(p + c) * (load16(ds + c) - dots) * t.scale);
            zero_after(ds, m16, Tp);
        }
        for (int i0 = 0; i0 < T; i0 += MR) {  // dq = dS K over keys 0..i
            const int rows = std::min(MR, T - i0);
            matmul_rows(rows, D, i0 + rows, dS + (int64_t)i0 * Tp, Tp, 1, t.k, ld,
                        dq + i0 * ld, ld);
        }
        for (int j0 = 0; j0 < T; j0 += MR) {  // dk = dS^T q, dv = P^T dy over queries >= j0
            const int rows = std::min(MR, T - j0);
            const int64_t at = (int64_t)j0 * Tp + j0;
            matmul_rows(rows, D, T - j0, dS + at, 1, Tp, t.q + j0 * ld, ld, dk + j0 * ld, ld);
            matmul_rows(rows, D, T - j0, Ph + at, 1, Tp, dyh + (int64_t)j0 * C, C,
                        dv + j0 * ld, ld);
        }
        if (bias_grad) {
            for (int part = 0; part < 3; part++) {
                float* sum = partial + (int64_t)b * 3 * C + part * C + h * D;
                const float* row = dq + part * C;
                std::memset(sum, 0, D * sizeof(float));
                for (int i = 0; i < T; i++, row += ld) add_row(sum, row, D);
            }
        }
    }
    if (bias_grad) {  // after the loop's barrier: every task's sums are written
#pragma omp for simd schedule(static)
        for (int c = 0; c < 3 * H * D; c++) {
            float sum = 0.0f;
            for (int b = 0; b < B; b++) sum += partial[(int64_t)b * 3 * H * D + c];
            bias_grad[c] = sum;
        }
    }
    }
}

// The exact GELU's gradient, dx = dy (Phi(x) + x phi(x)) for y = x Phi(x): erf as in
// PyTorch's vectorised kernel, whose exp(-x^2 / 2) is also phi's (times 1 / sqrt(2 pi)), so
// it evaluates one exponential where PyTorch's gelu_backward evaluates erf and exp.
static inline void gelu_parts(float x, float* cdf, float* pdf) {
    const float z = x * 0.70710678118654752f;
    const float a = z < 0.0f ? -z : z;
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    const float r =
        ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
         0.254829592f) * t;
    const float e = exp_approx(-a * a);
    *cdf = 0.5f * (1.0f + (z < 0.0f ? r * e - 1.0f : 1.0f - r * e));
    *pdf = e * 0.39894228040143268f;
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, int n_threads) {
#pragma omp parallel for simd schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) {
        float cdf, pdf;
        gelu_parts(x[i], &cdf, &pdf);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

// The MLP's GELU (train_kernel._GeluMLP): the forward writes y = x Phi(x) and, over x, the
// slope Phi(x) + x phi(x), which is all the backward needs. The backward is then a product,
// dh = dy * slope, written over dy while the same pass sums dh's columns for c_fc's bias:
// one read of each array where PyTorch's path reads x again to evaluate erf and exp, and
// dh once more for the bias. The column sums run over fixed blocks of SUM_ROWS rows and then
// the blocks in order, so they do not depend on the thread count.
}  // extern "C"

template <bool BIAS>
static void gelu_slope_rows(float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                            int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < rows; r++) {
        float* xr = x + r * cols;
        float* yr = y + r * cols;
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) {
            float cdf, pdf;
            const float v = BIAS ? xr[c] + bias[c] : xr[c];
            gelu_parts(v, &cdf, &pdf);
            yr[c] = v * cdf;
            xr[c] = cdf + v * pdf;
        }
    }
}

extern "C" {

// x (rows, cols) is c_fc's product; with bias (cols) not null, its bias is added here (where
// addmm would first copy it into every row).
void gelu_forward_slope(float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                        int n_threads) {
    if (bias)
        gelu_slope_rows<true>(x, bias, y, rows, cols, n_threads);
    else
        gelu_slope_rows<false>(x, bias, y, rows, cols, n_threads);
}

constexpr int64_t SUM_ROWS = 32;

int64_t slope_work_floats(int64_t rows, int64_t cols) {
    return (rows + SUM_ROWS - 1) / SUM_ROWS * cols;
}

}  // extern "C"

// out (cols) = the column sums of x (rows, cols), unless null; with SCALE, x *= slope first,
// in place, in the same pass. The sums run over blocks of SUM_ROWS rows, then the blocks in
// order (work: slope_work_floats(rows, cols)), so they do not depend on the thread count.
template <bool SCALE>
static void column_sums_of(float* x, const float* slope, float* out, float* work,
                           int64_t rows, int64_t cols, int n_threads) {
    const int64_t blocks = (rows + SUM_ROWS - 1) / SUM_ROWS;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            float* part = work + b * cols;
            std::memset(part, 0, cols * sizeof(float));
            for (int64_t r = b * SUM_ROWS; r < std::min(rows, (b + 1) * SUM_ROWS); r++) {
                float* d = x + r * cols;
                const float* s = SCALE ? slope + r * cols : nullptr;
#pragma omp simd
                for (int64_t c = 0; c < cols; c++) {
                    if (SCALE) d[c] *= s[c];
                    part[c] += d[c];
                }
            }
        }
        if (out) {  // the implicit barrier above: every block's sums are written
#pragma omp for simd schedule(static)
            for (int64_t c = 0; c < cols; c++) {
                float sum = 0.0f;
                for (int64_t b = 0; b < blocks; b++) sum += work[b * cols + c];
                out[c] = sum;
            }
        }
    }
}

extern "C" {

// dy (rows, cols) *= slope in place; bias_grad (cols) = its column sums unless null; work
// holds slope_work_floats(rows, cols) floats.
void gelu_slope_backward(float* dy, const float* slope, float* bias_grad, float* work,
                         int64_t rows, int64_t cols, int n_threads) {
    column_sums_of<true>(dy, slope, bias_grad, work, rows, cols, n_threads);
}

// out (cols) = the column sums of x (rows, cols), as gelu_slope_backward sums them (work:
// slope_work_floats(rows, cols)): c_proj's bias gradient in the block's backward.
void column_sums(const float* x, float* out, float* work, int64_t rows, int64_t cols,
                 int n_threads) {
    column_sums_of<false>(const_cast<float*>(x), nullptr, out, work, rows, cols, n_threads);
}

// -- the block's layer norms and residual adds (train_block.py) --------------------------

// Layer norm of rows of C floats: y = (x - mean) rstd gamma + beta (beta may be null), with
// mean and rstd kept per row for the backward. With res (rows, C) not null, x is first
// replaced in place by x + res + bias (bias may be null): the residual add of the layer whose
// product x is, with that layer's bias, in the same pass.
void layer_norm_forward(float* x, const float* res, const float* bias, const float* gamma,
                        const float* beta, float* y, float* mean, float* rstd, int64_t rows,
                        int64_t C, float eps, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < rows; r++) {
        float* xr = x + r * C;
        float sum = 0.0f;
        if (res) {
            const float* rr = res + r * C;
#pragma omp simd reduction(+ : sum)
            for (int64_t c = 0; c < C; c++) {
                xr[c] += rr[c] + (bias ? bias[c] : 0.0f);
                sum += xr[c];
            }
        } else {
#pragma omp simd reduction(+ : sum)
            for (int64_t c = 0; c < C; c++) sum += xr[c];
        }
        const float m = sum / C;
        float var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (int64_t c = 0; c < C; c++) var += (xr[c] - m) * (xr[c] - m);
        const float s = 1.0f / std::sqrt(var / C + eps);
        mean[r] = m;
        rstd[r] = s;
        float* yr = y + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            yr[c] = (xr[c] - m) * s * gamma[c] + (beta ? beta[c] : 0.0f);
    }
}

// x (rows, C) += res + bias (bias may be null): the block's last residual add.
void residual_add(float* x, const float* res, const float* bias, int64_t rows, int64_t C,
                  int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < rows; r++) {
        float* xr = x + r * C;
        const float* rr = res + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) xr[c] += rr[c] + (bias ? bias[c] : 0.0f);
    }
}

int64_t layer_norm_work_floats(int64_t rows, int64_t C) {
    return 3 * slope_work_floats(rows, C);
}

// The gradient of layer_norm_forward, with g = dy gamma and xhat = (x - mean) rstd:
//   dx = rstd (g - mean(g) - xhat mean(g xhat)) + dres;  dgamma = sum dy xhat;  dbeta = sum dy
// (sums over rows). dres (the gradient of the residual that went around the norm) may be
// null; so may dbeta and dsum, which if not null gets dx's column sums: the bias gradient of
// the layer whose product entered the residual. dx may be dy or dres. Column sums run over
// blocks of SUM_ROWS rows, then the blocks in order (work: layer_norm_work_floats).
void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd,
                         const float* gamma, const float* dres, float* dx, float* dgamma,
                         float* dbeta, float* dsum, float* work, int64_t rows, int64_t C,
                         int n_threads) {
    const int64_t blocks = (rows + SUM_ROWS - 1) / SUM_ROWS;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            float* pg = work + 3 * b * C;  // this block's sums for dgamma, dbeta, dsum
            float *pb = pg + C, *ps = pb + C;
            std::memset(pg, 0, 3 * C * sizeof(float));
            for (int64_t r = b * SUM_ROWS; r < std::min(rows, (b + 1) * SUM_ROWS); r++) {
                const float *dyr = dy + r * C, *xr = x + r * C;
                const float m = mean[r], s = rstd[r];
                float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
                for (int64_t c = 0; c < C; c++) {
                    const float xhat = (xr[c] - m) * s, g = dyr[c] * gamma[c];
                    sg += g;
                    sgx += g * xhat;
                    pg[c] += dyr[c] * xhat;
                    pb[c] += dyr[c];
                }
                const float mg = sg / C, mgx = sgx / C;
                float* dxr = dx + r * C;
                const float* dr = dres ? dres + r * C : nullptr;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    const float xhat = (xr[c] - m) * s;
                    const float v = s * (dyr[c] * gamma[c] - mg - xhat * mgx) + (dr ? dr[c] : 0.0f);
                    dxr[c] = v;
                    ps[c] += v;
                }
            }
        }
#pragma omp for simd schedule(static)
        for (int64_t c = 0; c < C; c++) {
            float g = 0.0f, be = 0.0f, su = 0.0f;
            for (int64_t b = 0; b < blocks; b++) {
                g += work[3 * b * C + c];
                be += work[3 * b * C + C + c];
                su += work[3 * b * C + 2 * C + c];
            }
            dgamma[c] = g;
            if (dbeta) dbeta[c] = be;
            if (dsum) dsum[c] = su;
        }
    }
}

// -- the global gradient norm for clipping (training/step.py) -----------------------------

constexpr int64_t NORM_CHUNK = 16384;

int64_t norm_chunks(const int64_t* sizes, int n) {
    int64_t chunks = 0;
    for (int i = 0; i < n; i++) chunks += (sizes[i] + NORM_CHUNK - 1) / NORM_CHUNK;
    return chunks;
}

}  // extern "C"

// Where chunk k of the arrays starts, and its length (a walk over tens of arrays).
template <class F>
static F* chunk(F* const* ptrs, const int64_t* sizes, int64_t k, int64_t* len) {
    int i = 0;
    while (k >= (sizes[i] + NORM_CHUNK - 1) / NORM_CHUNK) k -= (sizes[i++] + NORM_CHUNK - 1) / NORM_CHUNK;
    *len = std::min(NORM_CHUNK, sizes[i] - k * NORM_CHUNK);
    return ptrs[i] + k * NORM_CHUNK;
}

extern "C" {

// sqrt of the sum of squares of n arrays, in one parallel pass: each chunk of NORM_CHUNK
// floats of an array is summed in double into partial (norm_chunks(sizes, n) doubles), then
// the chunks in order, so the result does not depend on the thread count. PyTorch's
// clip_grad_norm_ takes one norm per array (one call each) and then the norm of those.
float global_norm(const float* const* ptrs, const int64_t* sizes, int n, double* partial,
                  int n_threads) {
    const int64_t chunks = norm_chunks(sizes, n);
#pragma omp parallel for schedule(dynamic, 4) num_threads(n_threads)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t len;
        const float* p = chunk(ptrs, sizes, k, &len);
        double sum = 0.0;
        for (int64_t j0 = 0; j0 < len; j0 += 1024) {  // 16 float lanes over 1024, then double
            const int64_t j1 = std::min(len, j0 + 1024);
            v16 acc{};
            int64_t j = j0;
            for (; j + 16 <= j1; j += 16) {
                const v16 v = load16(p + j);
                acc += v * v;
            }
            float tail = 0.0f;
            for (; j < j1; j++) tail += p[j] * p[j];
            sum += (double)hsum(acc) + tail;
        }
        partial[k] = sum;
    }
    double total = 0.0;
    for (int64_t k = 0; k < chunks; k++) total += partial[k];
    return (float)std::sqrt(total);
}

// Clip the arrays in place to global norm max_norm, as clip_grad_norm_ does: the norm (as
// global_norm) and, where it exceeds max_norm, every element times
// max_norm / (norm + 1e-6), in float32. Returns the norm before clipping.
float clip_global_norm(float* const* ptrs, const int64_t* sizes, int n, float max_norm,
                       double* partial, int n_threads) {
    const float norm = global_norm(ptrs, sizes, n, partial, n_threads);
    const float coef = max_norm / (norm + 1e-6f);
    if (coef >= 1.0f) return norm;  // clamped to 1: nothing changes (a NaN norm scales by NaN)
    const int64_t chunks = norm_chunks(sizes, n);
#pragma omp parallel for schedule(dynamic, 4) num_threads(n_threads)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t len;
        float* p = chunk(ptrs, sizes, k, &len);
#pragma omp simd
        for (int64_t j = 0; j < len; j++) p[j] *= coef;
    }
    return norm;
}

// dst (cols, Rp) = src (rows, cols) transposed, both row-major, Rp = rows rounded up to 16
// and dst's columns rows .. Rp zeros: a linear layer's weight [out, in] as the row-major
// [in, out] operand gemm reads (train_kernel.mm_t; the head's, whose rows are the vocabulary,
// padded to whole vectors). The last cols % 16 columns of src are copied one by one.
void transpose_matrix(const float* src, float* dst, int64_t rows, int64_t cols, int n_threads) {
    const int64_t full = cols & ~(int64_t)15, Rp = up16((int)rows);
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < rows; r += 16) {
        const int n = (int)std::min<int64_t>(16, rows - r);
        for (int64_t c = 0; c < full; c += 16)
            transpose16(src + r * cols + c, cols, n, dst + c * Rp + r, Rp);
        for (int64_t c = full; c < cols; c++)
            for (int i = 0; i < 16; i++) dst[c * Rp + r + i] = i < n ? src[(r + i) * cols + c] : 0.0f;
    }
}

// C (M, N; row stride ldc) = A B, A[m, k] at A[m * ars + k * acs] (ars = K, acs = 1 for a
// row-major A; ars = 1, acs = M for the transpose of a row-major (K, M) matrix), B (K, N;
// row stride ldb), N a multiple of 16. C is written, never read first.
void gemm(int M, int N, int K, const float* A, int64_t ars, int64_t acs, const float* B,
          int64_t ldb, float* C, int64_t ldc, int n_threads) {
    if (K == 0) {
        for (int m = 0; m < M; m++) std::memset(C + m * ldc, 0, sizeof(float) * N);
        return;
    }
    const int tiles = (M + GEMM_MR - 1) / GEMM_MR;
    const int nc = N <= 512 ? N : GEMM_NC;
#pragma omp parallel num_threads(n_threads)
    {
        const int nt = thread_count(), id = thread_id();
        const int t0 = (int)((int64_t)tiles * id / nt), t1 = (int)((int64_t)tiles * (id + 1) / nt);
        float panel[GEMM_KC * GEMM_MR];
        for (int n0 = 0; n0 < N; n0 += nc) {
            const int n1 = std::min(N, n0 + nc);
            for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
                const int kc = std::min(GEMM_KC, K - k0);
                const float* b = B + k0 * ldb;
                for (int t = t0; t < t1; t++) {
                    const int r0 = t * GEMM_MR, rows = std::min(GEMM_MR, M - r0);
                    const float* a = A + r0 * ars + k0 * acs;
                    int64_t prs = ars, pcs = acs;  // a row-major A is read where it is
                    if (acs != 1 && n1 - n0 >= 384) {
                        for (int k = 0; k < kc; k++)
                            for (int r = 0; r < rows; r++) panel[k * rows + r] = a[r * ars + k * acs];
                        a = panel, prs = 1, pcs = rows;
                    }
                    float* c = C + r0 * ldc;
                    if (k0 == 0)
                        gemm_rows<false>(rows, n0, n1, kc, a, prs, pcs, b, ldb, c, ldc);
                    else
                        gemm_rows<true>(rows, n0, n1, kc, a, prs, pcs, b, ldb, c, ldc);
                }
            }
        }
    }
}

}  // extern "C"

// -- the two ends of a GPT (train_ends.py): the embedding, and the head's loss ------------

extern "C" {

// out (B T, C) = wte[idx] + wpe[t] for position t of each row (wpe may be null), the sum
// GPT._embed makes. Returns -1, or the first position whose id is outside [0, V) (then
// nothing is written).
int64_t embedding_forward(const int64_t* idx, const float* wte, const float* wpe, float* out,
                          int64_t B, int64_t T, int64_t C, int64_t V, int n_threads) {
    for (int64_t n = 0; n < B * T; n++)
        if (idx[n] < 0 || idx[n] >= V) return n;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < B * T; n++) {
        const float* e = wte + idx[n] * C;
        float* o = out + n * C;
        if (wpe) {
            const float* p = wpe + (n % T) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) o[c] = e[c] + p[c];
        } else {
            std::memcpy(o, e, C * sizeof(float));
        }
    }
    return -1;
}

// The gradients of embedding_forward for dx (B T, C): dwte (V, C) sums the rows of dx by
// their id; dwpe (P, C), unless null, sums them by position (rows T .. P are zeros). Threads
// take 16 columns at a time and each element sums its rows in order, so the result does not
// depend on the thread count.
void embedding_backward(const int64_t* idx, const float* dx, float* dwte, float* dwpe,
                        int64_t B, int64_t T, int64_t C, int64_t V, int64_t P, int n_threads) {
    const int64_t strips = (C + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t s = 0; s < strips; s++) {
        const int64_t c0 = 16 * s, w = std::min<int64_t>(16, C - c0);
        for (int64_t v = 0; v < V; v++) std::memset(dwte + v * C + c0, 0, w * sizeof(float));
        if (dwpe)
            for (int64_t t = 0; t < P; t++) std::memset(dwpe + t * C + c0, 0, w * sizeof(float));
        for (int64_t n = 0; n < B * T; n++) {
            const float* d = dx + n * C + c0;
            float* e = dwte + idx[n] * C + c0;
            float* p = dwpe ? dwpe + (n % T) * C + c0 : nullptr;
            if (w == 16) {
                const v16 v = load16(d);
                store16(e, load16(e) + v);
                if (p) store16(p, load16(p) + v);
            } else {
                for (int64_t c = 0; c < w; c++) {
                    e[c] += d[c];
                    if (p) p[c] += d[c];
                }
            }
        }
    }
}

// The loss: log-softmax cross-entropy of logits (N, ld), row r's V logits followed by
// padding (ld a multiple of 16, at least V; the padding is read and left out). For every
// row, lse[r] = log sum_j exp(logit_j) (on whole vectors, the padding masked), out (N, V)
// gets the row's V logits (the compact copy the model returns) and losses[r] = lse[r] -
// logit[target] where targets[r] != ignore, else 0. Returns the sum of the losses, in
// double and in row order, and the rows counted in *count; a target outside [0, V) that is
// not ignore stops it first: *count = -1 - that row, and nothing is written.
double cross_entropy_forward(const float* logits, int64_t ld, const int64_t* targets,
                             float* out, float* lse, float* losses, int64_t N, int64_t V,
                             int64_t ignore, int64_t* count, int n_threads) {
    for (int64_t r = 0; r < N; r++)
        if (targets[r] != ignore && (targets[r] < 0 || targets[r] >= V)) {
            *count = -1 - r;
            return 0.0;
        }
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const v16 none = splat16(-INFINITY);
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < N; r++) {
        const float* x = logits + r * ld;
        v16 top = none;
        for (int64_t c = 0; c < V; c += 16) {
            const v16 v = load16(x + c);
            top = lane + (int)c < (int)V ? (v > top ? v : top) : top;
        }
        const float m = hmax(top);
        v16 sum{};
        for (int64_t c = 0; c < V; c += 16) {
            const v16 e = exp16(load16(x + c) - m);
            sum += lane + (int)c < (int)V ? e : v16{};
        }
        lse[r] = m + std::log(hsum(sum));
        std::memcpy(out + r * V, x, V * sizeof(float));
        losses[r] = targets[r] == ignore ? 0.0f : lse[r] - x[targets[r]];
    }
    double total = 0.0;
    int64_t counted = 0;
    for (int64_t r = 0; r < N; r++) {
        total += losses[r];
        counted += targets[r] != ignore;
    }
    *count = counted;
    return total;
}

// Its gradient: dlogits (N, ld) = (softmax(row) - onehot(target)) scale for counted rows
// and 0 for ignored ones, plus dout (N, V) where not null (a gradient that reached the
// logits themselves); the padding columns get zeros.
void cross_entropy_backward(const float* logits, int64_t ld, const int64_t* targets,
                            const float* lse, const float* dout, float scale, float* dlogits,
                            int64_t N, int64_t V, int64_t ignore, int n_threads) {
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < N; r++) {
        const float* x = logits + r * ld;
        float* d = dlogits + r * ld;
        const bool counted = targets[r] != ignore;
        const v16 s = splat16(counted ? scale : 0.0f), l = splat16(lse[r]);
        for (int64_t c = 0; c < ld; c += 16) {
            const v16 p = exp16(load16(x + c) - l) * s;
            store16(d + c, lane + (int)c < (int)V ? p : v16{});
        }
        if (counted) d[targets[r]] -= scale;
        if (dout)
            for (int64_t c = 0; c < V; c++) d[c] += dout[r * V + c];
    }
}

}  // extern "C"

// -- a whole block, forward and backward, in one call each (train_block.py) ---------------
//
// The sequence train_block._Block runs from Python, kernel for kernel and product for
// product (so the same bits), for the machines whose products are gemm's: a small model's
// block is 13 calls forward and 17 backward, each with its tensors to allocate and its
// pointers to pass, and Python between them runs slower than alone, its caches evicted by
// the kernels. C = H * D and F (the MLP's width) are multiples of 16.

namespace {

// The arrays of a block's forward and backward, as block_array_floats lists them: the 12
// the forward keeps for the backward, the forward's scratch (the four weights transposed, the
// attention's work) and the backward's (the gradients inside the block, the kernels' work).
// Python allocates them (in chunks glibc keeps for reuse: one buffer for all of a larger
// block's would be past its mmap threshold and fault in again every step).
enum { SAVED = 12, FORWARD_SCRATCH = 5, BACKWARD_SCRATCH = 9 };

struct BlockSaved {
    float *qkv, *y, *P, *h1, *x1, *h2, *slope, *a, *mean1, *rstd1, *mean2, *rstd2;
    explicit BlockSaved(float* const* s)
        : qkv(s[0]), y(s[1]), P(s[2]), h1(s[3]), x1(s[4]), h2(s[5]), slope(s[6]), a(s[7]),
          mean1(s[8]), rstd1(s[9]), mean2(s[10]), rstd2(s[11]) {}
};

}  // namespace

extern "C" {

// sizes (SAVED + FORWARD_SCRATCH + BACKWARD_SCRATCH) = each array's floats, in the order
// BlockSaved, block_forward's scratch and block_backward's take them. Returns their count.
int block_array_floats(int64_t B, int64_t T, int64_t C, int64_t H, int64_t F, int n_threads,
                       int64_t* sizes) {
    const int64_t N = B * T, work = n_threads * attention_work_floats((int)T, (int)(C / H));
    const int64_t all[] = {
        3 * N * C, N * C, B * H * T * up16((int)T), N * C, N * C, N * C, N * F, N * F,
        N, N, N, N,                                          // saved
        3 * C * C, C * C, F * C, C * F, work,                // forward: wat, wot, wft, wpt
        N * F, N * C, N * C, N * C, 3 * N * C,               // backward: dh, dh2, dx1, dy, dqkv
        layer_norm_work_floats(N, C), slope_work_floats(N, std::max(C, F)), work, 3 * B * C,
    };
    const int n = SAVED + FORWARD_SCRATCH + BACKWARD_SCRATCH;
    static_assert(sizeof all / sizeof all[0] == n, "every array listed");
    std::memcpy(sizes, all, sizeof all);
    return n;
}

// out (B T, C) = the block of x (B T, C); saved gets what block_backward reads.
void block_forward(const float* x, float* out, float* const* saved, float* const* scratch,
                   const float* g1, const float* be1, const float* wa, const float* ba,
                   const float* wo, const float* bo, const float* g2, const float* be2,
                   const float* wf, const float* bf, const float* wp, const float* bp, int B,
                   int T, int C, int H, int F, float eps1, float eps2, int n_threads) {
    const int64_t N = (int64_t)B * T;
    const BlockSaved s(saved);
    float *wat = scratch[0], *wot = scratch[1], *wft = scratch[2], *wpt = scratch[3];
    float* work = scratch[4];
    float* xf = const_cast<float*>(x);  // read only: no residual is added to it
    layer_norm_forward(xf, nullptr, nullptr, g1, be1, s.h1, s.mean1, s.rstd1, N, C, eps1,
                       n_threads);
    transpose_matrix(wa, wat, 3 * C, C, n_threads);
    gemm(N, 3 * C, C, s.h1, C, 1, wat, 3 * C, s.qkv, 3 * C, n_threads);
    attention_forward(s.qkv, ba, s.y, s.P, work, B, T, H, C / H, n_threads);
    transpose_matrix(wo, wot, C, C, n_threads);
    gemm(N, C, C, s.y, C, 1, wot, C, s.x1, C, n_threads);
    layer_norm_forward(s.x1, x, bo, g2, be2, s.h2, s.mean2, s.rstd2, N, C, eps2, n_threads);
    transpose_matrix(wf, wft, F, C, n_threads);
    gemm(N, F, C, s.h2, C, 1, wft, F, s.slope, F, n_threads);
    gelu_forward_slope(s.slope, bf, s.a, N, F, n_threads);
    transpose_matrix(wp, wpt, C, F, n_threads);
    gemm(N, C, F, s.a, F, 1, wpt, C, out, C, n_threads);
    residual_add(out, s.x1, bp, N, C, n_threads);
}

// The gradients of block_forward for dout (B T, C): dx (B T, C), and every parameter's
// gradient that is not null (the layer norms' gains always; the biases where the block has
// them, which the kernels sum in the same passes).
void block_backward(const float* dout, const float* x, float* const* saved,
                    float* const* scratch, float* dx, const float* g1, const float* wa,
                    const float* wo, const float* g2, const float* wf, const float* wp,
                    float* dg1, float* dbe1, float* dwa, float* dba, float* dwo, float* dbo,
                    float* dg2, float* dbe2, float* dwf, float* dbf, float* dwp, float* dbp,
                    int B, int T, int C, int H, int F, int n_threads) {
    const int64_t N = (int64_t)B * T;
    const BlockSaved s(saved);
    float *dh = scratch[0], *dh2 = scratch[1], *dx1 = scratch[2], *dy = scratch[3];
    float *dqkv = scratch[4], *lwork = scratch[5], *swork = scratch[6], *awork = scratch[7];
    float* partial = scratch[8];
    // the MLP: c_proj's bias gradient is dout's column sums (as gelu_slope_backward sums
    // them, with a slope of ones: the same blocks of rows in the same order)
    if (dbp) column_sums(dout, dbp, swork, N, C, n_threads);
    if (dwp) gemm(C, F, N, dout, 1, C, s.a, F, dwp, F, n_threads);
    gemm(N, F, C, dout, C, 1, wp, F, dh, F, n_threads);
    gelu_slope_backward(dh, s.slope, dbf, swork, N, F, n_threads);
    if (dwf) gemm(F, C, N, dh, 1, F, s.h2, C, dwf, C, n_threads);
    gemm(N, C, F, dh, F, 1, wf, C, dh2, C, n_threads);
    layer_norm_backward(dh2, s.x1, s.mean2, s.rstd2, g2, dout, dx1, dg2, dbe2, dbo, lwork, N,
                        C, n_threads);
    // attention, then ln_1 with the residual's gradient dx1 that went around it
    if (dwo) gemm(C, C, N, dx1, 1, C, s.y, C, dwo, C, n_threads);
    gemm(N, C, C, dx1, C, 1, wo, C, dy, C, n_threads);
    attention_backward(s.qkv, s.y, s.P, dy, dqkv, dba, partial, awork, B, T, H, C / H,
                       n_threads);
    if (dwa) gemm(3 * C, C, N, dqkv, 1, 3 * C, s.h1, C, dwa, C, n_threads);
    gemm(N, C, 3 * C, dqkv, 3 * C, 1, wa, C, dx, C, n_threads);
    layer_norm_backward(dx, x, s.mean1, s.rstd1, g1, dx1, dx, dg1, dbe1, nullptr, lwork, N, C,
                        n_threads);
}

}  // extern "C"
