/*
 * nf4_cpu.c: CPU reference for bitsandbytes-compatible NF4 / FP4 blockwise quantization (quant/nf4.h):
 * quantize (with double quantization of absmax), dequantize to f32 / bf16, the dequantize-then-sgemm matmul
 * reference, the CPU RK_OP_NF4_MATMUL (dequantize a panel of rows, then sgemm) with the helpers that put a weight
 * on a backend, and the loader for the tensors a bitsandbytes Linear4bit checkpoint stores.
 *
 * Bit-exactness notes (verified by tests/test_quant.c against tests/golden/gen_nf4.py, bitsandbytes 0.50.2):
 *   - 4-bit: bnb's CPU path (backends/default quantize_4bit) bucketizes x * (1/absmax) against float32
 *     midpoints; a tie goes to the lower level. bnb's CUDA decision tree uses the same float32 pivots with
 *     strict '>', so only all-zero blocks differ there (CUDA: 0 * inf = NaN -> code 0; CPU: code of 0.0).
 *   - 8-bit (double quantization): bnb's CPU path uses a 65536-point lookup table, reproduced here.
 * No FMA contraction: the build is -std=c11, for which GCC defaults to -ffp-contract=off.
 */
#include "quant/nf4.h"

#include "backend.h"
#include "check.h"
#include "io/safetensors.h"
#include "kernels/elementwise.h"

#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------------------
 * CPU reference */

static bool nf4_blocksize_ok(int64_t bs) {
    return bs >= RK_NF4_BLOCK_MIN && bs <= RK_NF4_BLOCK_MAX && (bs & (bs - 1)) == 0;
}

/* The 15 float32 midpoints of the levels in value order, and the code of each value-ordered level. */
static void quant4_bounds(enum rk_quant4_kind kind, float bounds[15], uint8_t order[16]) {
    float sorted[16];
    for (int k = 0; k < 16; k++) {
        order[k]  = kind == RK_QUANT4_NF4 ? (uint8_t) k : rk_fp4_sorted_idx[k];
        sorted[k] = kind == RK_QUANT4_NF4 ? rk_nf4_code[k] : rk_fp4_code[order[k]];
    }
    for (int k = 0; k < 15; k++) bounds[k] = (sorted[k] + sorted[k + 1]) / 2.0f;
}

/* torch.bucketize(right=False): the number of bounds strictly below v. NaN compares false: index 0. */
static inline uint8_t quant4_index(float v, const float bounds[15], const uint8_t order[16]) {
    int q = 0;
    while (q < 15 && bounds[q] < v) q++;
    return order[q];
}

static inline float clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

void rk_cpu_quant8_blockwise(const float * x, int64_t n, int64_t blocksize, const float * code, uint8_t * codes,
                             float * absmax) {
    enum { LUT_SIZE = 65536 };
    static _Thread_local uint8_t lut[LUT_SIZE];
    float mid[255];
    for (int i = 0; i < 255; i++) mid[i] = 0.5f * (code[i] + code[i + 1]);
    int c = 0;
    for (int i = 0; i < LUT_SIZE; i++) {
        float val = -1.0f + (2.0f * (float) i) / (float) (LUT_SIZE - 1);
        while (c < 255 && mid[c] < val) c++;
        lut[i] = (uint8_t) c;
    }
    int64_t n_blocks = (n + blocksize - 1) / blocksize;
    for (int64_t b = 0; b < n_blocks; b++) {
        int64_t lo = b * blocksize, hi = lo + blocksize < n ? lo + blocksize : n;
        float   am = 0.0f;
        for (int64_t i = lo; i < hi; i++) am = fmaxf(am, fabsf(x[i]));
        absmax[b] = am;
        if (am == 0.0f) {
            memset(codes + lo, 0, (size_t) (hi - lo));
            continue;
        }
        const float inv = 1.0f / am;
        for (int64_t i = lo; i < hi; i++) {
            float v = clampf(x[i] * inv, -1.0f, 1.0f);
            float t = (v + 1.0f) * 0.5f;
            t       = t * (float) (LUT_SIZE - 1);
            t       = t + 0.5f;
            codes[i] = lut[(uint16_t) t];
        }
    }
}

void rk_nf4_tensor_free(struct rk_nf4_tensor * t) {
    if (t == NULL) return;
    free(t->packed);
    free(t->absmax);
    free(t->absmax_q);
    free(t->absmax_scale);
    memset(t, 0, sizeof(*t));
}

/* Allocates the arrays of t for its shape/blocksize/double_quant (everything else already set). */
static enum rk_status nf4_alloc(struct rk_nf4_tensor * t) {
    t->n        = t->n_rows * t->n_cols;
    t->n_blocks = (t->n + t->blocksize - 1) / t->blocksize;
    t->packed   = malloc((size_t) (t->n + 1) / 2);
    if (t->double_quant) {
        int64_t n_nested = (t->n_blocks + t->nested_blocksize - 1) / t->nested_blocksize;
        t->absmax_q      = malloc((size_t) t->n_blocks);
        t->absmax_scale  = malloc((size_t) n_nested * sizeof(float));
    } else {
        t->absmax = malloc((size_t) t->n_blocks * sizeof(float));
    }
    if (!t->packed || (t->double_quant ? (!t->absmax_q || !t->absmax_scale) : !t->absmax)) {
        rk_nf4_tensor_free(t);
        return rk_set_error(RK_STATUS_OOM, "nf4: out of memory for a (%lld, %lld) tensor", (long long) t->n_rows,
                            (long long) t->n_cols);
    }
    return RK_OK;
}

enum rk_status rk_cpu_nf4_quantize(const float * w, int64_t n_rows, int64_t n_cols, int64_t blocksize,
                                   enum rk_quant4_kind kind, bool double_quant, struct rk_nf4_tensor * out) {
    // w is (n_rows, n_cols) row-major; out receives packed (n+1)/2 bytes and the absmax state
    memset(out, 0, sizeof(*out));
    if (n_rows < 1 || n_cols < 1 || !nf4_blocksize_ok(blocksize) || (int) kind < 0 || kind >= RK_QUANT4_COUNT) {
        return rk_set_error(RK_STATUS_ARG, "nf4_quantize: bad shape (%lld, %lld), blocksize %lld or kind %d",
                            (long long) n_rows, (long long) n_cols, (long long) blocksize, (int) kind);
    }
    out->kind             = kind;
    out->n_rows           = n_rows;
    out->n_cols           = n_cols;
    out->blocksize        = blocksize;
    out->double_quant     = double_quant;
    out->nested_blocksize = RK_NF4_NESTED_BLOCK;
    memcpy(out->code, kind == RK_QUANT4_NF4 ? rk_nf4_code : rk_fp4_code, sizeof(out->code));
    memcpy(out->nested_code, rk_dyn8_code, sizeof(out->nested_code));
    RK_TRY(nf4_alloc(out));

    float * absmax = double_quant ? malloc((size_t) out->n_blocks * sizeof(float)) : out->absmax;
    if (absmax == NULL) {
        rk_nf4_tensor_free(out);
        return rk_set_error(RK_STATUS_OOM, "nf4_quantize: out of memory");
    }
    float   bounds[15];
    uint8_t order[16];
    quant4_bounds(kind, bounds, order);
    const int64_t n = out->n;
    const uint8_t pad = quant4_index(0.0f, bounds, order); /* bnb pads an odd count with 0.0 */

    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < out->n_blocks; b++) {
        int64_t lo = b * blocksize, hi = lo + blocksize < n ? lo + blocksize : n;
        bool    partial = hi - lo < blocksize;
        float   am = 0.0f;
        for (int64_t i = lo; i < hi; i++) am = fmaxf(am, fabsf(w[i]));
        /* bnb: a full block keeps absmax 0 and scales by 1/clamp(absmax, 1e-38); the partial block stores the
         * clamped value and divides by it */
        float amc = fmaxf(am, 1e-38f);
        absmax[b] = partial ? amc : am;
        const float inv = 1.0f / amc;
        /* blocksize is even, so a block starts on a byte boundary */
        for (int64_t i = lo; i < hi; i += 2) {
            float   v0 = partial ? w[i] / amc : w[i] * inv;
            uint8_t q0 = quant4_index(clampf(v0, -1.0f, 1.0f), bounds, order);
            uint8_t q1 = pad;
            if (i + 1 < hi) {
                float v1 = partial ? w[i + 1] / amc : w[i + 1] * inv;
                q1       = quant4_index(clampf(v1, -1.0f, 1.0f), bounds, order);
            }
            out->packed[i / 2] = (uint8_t) (q0 << 4 | q1);
        }
    }

    if (double_quant) {
        double sum = 0.0;
        for (int64_t b = 0; b < out->n_blocks; b++) sum += absmax[b];
        const float offset = (float) (sum / (double) out->n_blocks);
        for (int64_t b = 0; b < out->n_blocks; b++) absmax[b] = absmax[b] - offset;
        out->absmax_offset = offset;
        rk_cpu_quant8_blockwise(absmax, out->n_blocks, out->nested_blocksize, out->nested_code, out->absmax_q,
                                out->absmax_scale);
        free(absmax);
    }
    return RK_OK;
}

void rk_cpu_nf4_absmax(const struct rk_nf4_tensor * t, float * absmax) {
    if (!t->double_quant) {
        memcpy(absmax, t->absmax, (size_t) t->n_blocks * sizeof(float));
        return;
    }
    for (int64_t b = 0; b < t->n_blocks; b++) {
        float v   = t->nested_code[t->absmax_q[b]] * t->absmax_scale[b / t->nested_blocksize];
        absmax[b] = v + t->absmax_offset;
    }
}

/*
 * Dequantizes the flat elements [i0, i1) of a 4-bit weight into out (i1 - i0 floats): out = code[nibble(i)] *
 * absmax[i / bs] in fp32, element 2j in the high nibble of byte j. Any i0 and any bs >= 1: a row of odd width starts
 * in the middle of a byte. The one inner loop of every CPU dequantization, so all of them give the same bits.
 */
static void quant4_dequant_range(const float code[16], const uint8_t * packed, const float * absmax, int64_t bs,
                                 int64_t i0, int64_t i1, float * out) {
    int64_t i = i0;
    while (i < i1) {
        const int64_t end = (i / bs + 1) * bs < i1 ? (i / bs + 1) * bs : i1;
        const float   am  = absmax[i / bs];
        if (i & 1) { /* a low nibble first */
            *out++ = code[packed[i / 2] & 0x0F] * am;
            i++;
        }
        for (; i + 1 < end; i += 2) {
            const uint8_t byte = packed[i / 2];
            out[0]             = code[byte >> 4] * am;
            out[1]             = code[byte & 0x0F] * am;
            out += 2;
        }
        if (i < end) { /* a high nibble last */
            *out++ = code[packed[i / 2] >> 4] * am;
            i++;
        }
    }
}

/* Dequantizes t with a ready absmax array into out_f32, or (out_f32 NULL) into out_bf16 rounded to nearest even. */
static void nf4_dequant(const struct rk_nf4_tensor * t, const float * absmax, float * out_f32, uint16_t * out_bf16) {
    // out is (n_rows, n_cols), n = n_rows * n_cols values
    const int64_t n = t->n;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < t->n_blocks; b++) {
        const int64_t lo = b * t->blocksize, hi = lo + t->blocksize < n ? lo + t->blocksize : n;
        if (out_f32) {
            quant4_dequant_range(t->code, t->packed, absmax, t->blocksize, lo, hi, out_f32 + lo);
            continue;
        }
        float tmp[RK_NF4_BLOCK_MAX];
        quant4_dequant_range(t->code, t->packed, absmax, t->blocksize, lo, hi, tmp);
        for (int64_t i = lo; i < hi; i++) out_bf16[i] = rk_f32_to_bf16(tmp[i - lo]);
    }
}

void rk_cpu_nf4_dequantize(const struct rk_nf4_tensor * t, float * out) {
    float * absmax = rk_xmalloc((size_t) t->n_blocks * sizeof(float));
    rk_cpu_nf4_absmax(t, absmax);
    nf4_dequant(t, absmax, out, NULL);
    free(absmax);
}

void rk_cpu_nf4_dequantize_bf16(const struct rk_nf4_tensor * t, uint16_t * out) {
    float * absmax = rk_xmalloc((size_t) t->n_blocks * sizeof(float));
    rk_cpu_nf4_absmax(t, absmax);
    nf4_dequant(t, absmax, NULL, out);
    free(absmax);
}

/* ------------------------------------------------------------------------------------------------------------
 * RK_OP_NF4_MATMUL */

enum rk_status rk_nf4_weight_upload(struct rk_backend * be, const struct rk_nf4_tensor * t,
                                    struct rk_quant4_weight * w) {
    memset(w, 0, sizeof(*w));
    const float * std_code = t->kind == RK_QUANT4_NF4 ? rk_nf4_code : rk_fp4_code;
    for (int k = 0; k < 16; k++) {
        if (t->code[k] != std_code[k]) {
            return rk_set_error(RK_STATUS_UNSUPPORTED, "nf4 weight: code table entry %d is %g, not %s's %g", k,
                                (double) t->code[k], t->kind == RK_QUANT4_NF4 ? "nf4" : "fp4", (double) std_code[k]);
        }
    }
    const size_t n_packed = (size_t) (t->n + 1) / 2, n_absmax = (size_t) t->n_blocks * sizeof(float);
    uint8_t *    packed   = be->alloc(be, n_packed);
    float *      absmax   = be->alloc(be, n_absmax);
    float *      host_am  = t->double_quant ? malloc(n_absmax) : t->absmax;
    if (!packed || !absmax || !host_am) {
        if (packed) be->free(be, packed);
        if (absmax) be->free(be, absmax);
        if (t->double_quant) free(host_am);
        return rk_set_error(RK_STATUS_OOM, "nf4 weight: cannot allocate %zu + %zu bytes on %s", n_packed, n_absmax,
                            be->name);
    }
    if (t->double_quant) rk_cpu_nf4_absmax(t, host_am);
    enum rk_status s = be->copy_to_device(be, packed, t->packed, n_packed);
    if (s == RK_OK) s = be->copy_to_device(be, absmax, host_am, n_absmax);
    /* copy_to_device has staged the host data when it returns (host/backend.h), so host_am may go now */
    if (t->double_quant) free(host_am);
    if (s != RK_OK) {
        be->free(be, packed);
        be->free(be, absmax);
        return s;
    }
    *w = (struct rk_quant4_weight) {
        .kind = (int) t->kind, .n_rows = t->n_rows, .n_cols = t->n_cols, .blocksize = t->blocksize,
        .packed = packed, .absmax = absmax,
    };
    return RK_OK;
}

void rk_nf4_weight_free(struct rk_backend * be, struct rk_quant4_weight * w) {
    /* the pointers are const in the op's view of the weight; here they are ours again */
    if (w->packed) be->free(be, (void *) (uintptr_t) w->packed);
    if (w->absmax) be->free(be, (void *) (uintptr_t) w->absmax);
    memset(w, 0, sizeof(*w));
}

enum rk_status rk_nf4_matmul_check(const struct rk_nf4_matmul_params * p, int64_t M, int64_t K, int64_t dst_rows,
                                   int64_t dst_cols, int64_t bias_n) {
    const struct rk_quant4_weight * w = p->w;
    if (w == NULL || w->packed == NULL || w->absmax == NULL) {
        return rk_set_error(RK_STATUS_ARG, "nf4_matmul: no weight (params.w, its packed or absmax is NULL)");
    }
    if (w->kind < 0 || w->kind >= RK_QUANT4_COUNT || w->blocksize < 1 || w->n_rows < 1 || w->n_cols < 1) {
        return rk_set_error(RK_STATUS_ARG, "nf4_matmul: bad weight: kind %d, blocksize %lld, shape (%lld, %lld)",
                            w->kind, (long long) w->blocksize, (long long) w->n_rows, (long long) w->n_cols);
    }
    if (K != w->n_cols || dst_rows != M || dst_cols != w->n_rows || (bias_n >= 0 && bias_n != w->n_rows)) {
        return rk_set_error(RK_STATUS_ARG,
                            "nf4_matmul: shapes: x (%lld, %lld), W (%lld, %lld), dst (%lld, %lld), bias %lld",
                            (long long) M, (long long) K, (long long) w->n_rows, (long long) w->n_cols,
                            (long long) dst_rows, (long long) dst_cols, (long long) bias_n);
    }
    if ((int) p->act < 0 || (int) p->act >= RK_ACT_COUNT) {
        return rk_set_error(RK_STATUS_ARG, "nf4_matmul: activation %d", (int) p->act);
    }
    return RK_OK;
}

/*
 * Rows of W per panel. A few (M <= 16: the product reads each panel once, so the panel only has to stay in the
 * core's L2 between its dequantization and the sgemm: 256 KiB) or many (larger M: sgemm packs x again for every
 * panel, so a panel must be wide enough to amortise that: 4 MiB, and at least 64 rows); never so many that a
 * thread is left without a panel.
 */
static int64_t nf4_panel_rows(int64_t M, int64_t N, int64_t K, int threads) {
    const int64_t budget = M <= 16 ? (int64_t) 1 << 16 : (int64_t) 1 << 20; /* floats */
    int64_t       rows   = budget / K;
    const int64_t lo = M <= 16 ? 4 : 64, per_thread = (N + threads - 1) / threads;
    if (rows < lo) rows = lo;
    if (rows > 1024) rows = 1024;
    if (rows > per_thread) rows = per_thread;
    return rows > 0 ? rows : 1;
}

enum rk_status rk_cpu_nf4_matmul(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * bias,
                                 const struct rk_nf4_matmul_params * p) {
    // x (M,K) rows contiguous, row stride x->nb[0]; W (N,K) 4-bit; bias (N) or NULL; dst (M,N) rows contiguous
    if (x->ndim != 2 || dst->ndim != 2 || x->nb[1] != 4 || dst->nb[1] != 4 || (bias && !rk_tensor_is_contiguous(bias))) {
        return rk_set_error(RK_STATUS_ARG, "nf4_matmul: x and dst must be 2-D with contiguous rows, bias contiguous");
    }
    const int64_t M = x->ne[0], K = x->ne[1];
    RK_TRY(rk_nf4_matmul_check(p, M, K, dst->ne[0], dst->ne[1], bias ? rk_tensor_nelements(bias) : -1));
    const struct rk_quant4_weight * w = p->w;
    const int64_t N = w->n_rows;
    if (M == 0) return RK_OK;
    const float * code     = w->kind == RK_QUANT4_NF4 ? rk_nf4_code : rk_fp4_code;
    const int     threads  = omp_get_max_threads();
    const int64_t P        = nf4_panel_rows(M, N, K, threads);
    const int64_t n_panels = (N + P - 1) / P;
    const int64_t lda = x->nb[0] / 4, ldc = dst->nb[0] / 4;
    const float * bv  = bias ? bias->data : NULL;
    float *       buf = malloc((size_t) threads * (size_t) (P * K) * sizeof(float));
    if (buf == NULL) {
        return rk_set_error(RK_STATUS_OOM, "nf4_matmul: no memory for %d panels of %lld x %lld", threads,
                            (long long) P, (long long) K);
    }
    /* one panel per iteration, on one thread: the OpenMP OpenBLAS runs a BLAS call made inside a parallel region on
     * its calling thread, so every panel is dequantized and consumed by the same core */
    #pragma omp parallel
    {
        float * wp = buf + (size_t) omp_get_thread_num() * (size_t) (P * K);
        #pragma omp for schedule(dynamic, 1)
        for (int64_t pi = 0; pi < n_panels; pi++) {
            const int64_t n0 = pi * P, np = N - n0 < P ? N - n0 : P;
            float *       d  = (float *) dst->data + n0;
            quant4_dequant_range(code, w->packed, w->absmax, w->blocksize, n0 * K, (n0 + np) * K, wp);
            /* the bias enters through beta = 1 on columns pre-filled with it, as rk_cpu_matmul does */
            if (bv) {
                for (int64_t m = 0; m < M; m++) memcpy(d + m * ldc, bv + n0, sizeof(float) * (size_t) np);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) np, (int) K, 1.0f, x->data,
                        (int) lda, wp, (int) K, bv ? 1.0f : 0.0f, d, (int) ldc);
            if (p->act == RK_ACT_GELU) {
                for (int64_t m = 0; m < M; m++) {
                    for (int64_t n = 0; n < np; n++) d[m * ldc + n] = rk_gelu_fast(d[m * ldc + n]);
                }
            }
        }
    }
    free(buf);
    return RK_OK;
}

void rk_cpu_nf4_to_f32_row(const struct rk_nf4_block * src, const float * absmax, float * dst, int64_t n) {
    RK_ASSERT(n % RK_NF4_BLOCK == 0);
    for (int64_t b = 0; b < n / RK_NF4_BLOCK; b++) {
        for (int j = 0; j < RK_NF4_BLOCK; j++) {
            uint8_t byte = src[b].qs[j / 2];
            dst[b * RK_NF4_BLOCK + j] = rk_nf4_code[(j & 1) ? (byte & 0x0F) : (byte >> 4)] * absmax[b];
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * loader for bitsandbytes checkpoints */

static const struct rk_st_entry * bnb_find(const struct rk_safetensors * st, const char * prefix, const char * suffix) {
    char name[RK_ST_NAME_MAX + 64];
    snprintf(name, sizeof(name), "%s%s", prefix, suffix);
    return rk_safetensors_find(st, name);
}

static enum rk_status bnb_read_f32(const struct rk_safetensors * st, const char * prefix, const char * suffix,
                                   float * dst, int64_t n) {
    const struct rk_st_entry * e = bnb_find(st, prefix, suffix);
    if (e == NULL) return rk_set_error(RK_STATUS_FORMAT, "%s: tensor %s%s missing", st->path, prefix, suffix);
    if (e->dtype != RK_DTYPE_F32) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: %s%s is not F32", st->path, prefix, suffix);
    }
    if (rk_st_entry_nelements(e) != n) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: %s%s has %lld values, expected %lld", st->path, prefix, suffix,
                            (long long) rk_st_entry_nelements(e), (long long) n);
    }
    memcpy(dst, e->data, (size_t) n * sizeof(float));
    return RK_OK;
}

static enum rk_status bnb_read_u8(const struct rk_safetensors * st, const char * prefix, const char * suffix,
                                  uint8_t * dst, int64_t n) {
    const struct rk_st_entry * e = bnb_find(st, prefix, suffix);
    if (e == NULL) return rk_set_error(RK_STATUS_FORMAT, "%s: tensor %s%s missing", st->path, prefix, suffix);
    if (e->dtype != RK_DTYPE_U8) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: %s%s is not U8 (quant_storage other than uint8)", st->path,
                            prefix, suffix);
    }
    if ((int64_t) e->nbytes != n) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: %s%s has %zu bytes, expected %lld", st->path, prefix, suffix,
                            e->nbytes, (long long) n);
    }
    memcpy(dst, e->data, (size_t) n);
    return RK_OK;
}

/* Reads the quant_state JSON into t's scalar fields; *nested_offset gets "nested_offset" when present. */
static enum rk_status bnb_parse_state(const struct rk_safetensors * st, const char * prefix,
                                      struct rk_nf4_tensor * t) {
    const struct rk_st_entry * e = bnb_find(st, prefix, ".quant_state.bitsandbytes__nf4");
    t->kind = RK_QUANT4_NF4;
    if (e == NULL) {
        e       = bnb_find(st, prefix, ".quant_state.bitsandbytes__fp4");
        t->kind = RK_QUANT4_FP4;
    }
    if (e == NULL) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: %s.quant_state.bitsandbytes__nf4/__fp4 missing", st->path, prefix);
    }
    cJSON * js = cJSON_ParseWithLength((const char *) e->data, e->nbytes);
    if (js == NULL) return rk_set_error(RK_STATUS_FORMAT, "%s: %s: quant_state is not JSON", st->path, e->name);
    enum rk_status s = RK_OK;
    const cJSON * qt    = cJSON_GetObjectItemCaseSensitive(js, "quant_type");
    const cJSON * bs    = cJSON_GetObjectItemCaseSensitive(js, "blocksize");
    const cJSON * shape = cJSON_GetObjectItemCaseSensitive(js, "shape");
    const cJSON * nbs   = cJSON_GetObjectItemCaseSensitive(js, "nested_blocksize");
    const cJSON * noff  = cJSON_GetObjectItemCaseSensitive(js, "nested_offset");
    const cJSON * ndt   = cJSON_GetObjectItemCaseSensitive(js, "nested_dtype");
    if (!cJSON_IsString(qt) || !cJSON_IsNumber(bs) || !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 1 ||
        cJSON_GetArraySize(shape) > 2) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: %s: quant_type, blocksize or shape missing or malformed", st->path,
                         e->name);
        goto done;
    }
    if (strcmp(qt->valuestring, t->kind == RK_QUANT4_NF4 ? "nf4" : "fp4") != 0) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: %s: quant_type \"%s\" does not match the key", st->path, e->name,
                         qt->valuestring);
        goto done;
    }
    t->blocksize = (int64_t) bs->valuedouble;
    t->n_rows    = cJSON_GetArraySize(shape) == 2 ? (int64_t) cJSON_GetArrayItem(shape, 0)->valuedouble : 1;
    t->n_cols    = (int64_t) cJSON_GetArrayItem(shape, cJSON_GetArraySize(shape) - 1)->valuedouble;
    if (!nf4_blocksize_ok(t->blocksize) && t->blocksize != 32) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: %s: blocksize %lld", st->path, e->name, (long long) t->blocksize);
        goto done;
    }
    if (t->n_rows < 1 || t->n_cols < 1) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: %s: bad shape", st->path, e->name);
        goto done;
    }
    t->double_quant = cJSON_IsNumber(noff);
    if (t->double_quant) {
        if (!cJSON_IsNumber(nbs) || nbs->valuedouble < 1 || (ndt && (!cJSON_IsString(ndt) ||
                                                                     strcmp(ndt->valuestring, "float32") != 0))) {
            s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: %s: nested_blocksize missing or nested_dtype not float32",
                             st->path, e->name);
            goto done;
        }
        t->nested_blocksize = (int64_t) nbs->valuedouble;
        t->absmax_offset    = (float) noff->valuedouble; /* written from a float32 .item(): exact */
    } else {
        t->nested_blocksize = RK_NF4_NESTED_BLOCK;
    }
done:
    cJSON_Delete(js);
    return s;
}

enum rk_status rk_nf4_load_bnb(const struct rk_safetensors * st, const char * prefix, struct rk_nf4_tensor * t) {
    memset(t, 0, sizeof(*t));
    RK_TRY(bnb_parse_state(st, prefix, t));
    RK_TRY(nf4_alloc(t));
    enum rk_status s = bnb_read_u8(st, prefix, "", t->packed, (t->n + 1) / 2);
    if (s == RK_OK) s = bnb_read_f32(st, prefix, ".quant_map", t->code, 16);
    if (s == RK_OK) {
        /* the standard table (equal in value, +0.0 vs -0.0 aside): use ours, which carries bnb's dequant zeros */
        const float * std_code = t->kind == RK_QUANT4_NF4 ? rk_nf4_code : rk_fp4_code;
        bool          same     = true;
        for (int k = 0; k < 16; k++) same = same && t->code[k] == std_code[k];
        if (same) memcpy(t->code, std_code, sizeof(t->code));
    }
    if (s == RK_OK && t->double_quant) {
        int64_t n_nested = (t->n_blocks + t->nested_blocksize - 1) / t->nested_blocksize;
        s = bnb_read_u8(st, prefix, ".absmax", t->absmax_q, t->n_blocks);
        if (s == RK_OK) s = bnb_read_f32(st, prefix, ".nested_absmax", t->absmax_scale, n_nested);
        if (s == RK_OK) s = bnb_read_f32(st, prefix, ".nested_quant_map", t->nested_code, 256);
    } else if (s == RK_OK) {
        s = bnb_read_f32(st, prefix, ".absmax", t->absmax, t->n_blocks);
    }
    if (s != RK_OK) rk_nf4_tensor_free(t);
    return s;
}
