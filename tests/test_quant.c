/*
 * test_quant.c: NF4 / FP4 blockwise quantization (quant/nf4.h) against bitsandbytes.
 *
 * Golden data: tests/golden/nf4.rkgd and nf4_linear4bit.{safetensors,rkgd}, written by tests/golden/gen_nf4.py
 * with the bitsandbytes package on the CPU. Packed bytes, absmax, double-quant codes/scales/offset and the
 * dequantized values must match bit for bit. CUDA parity cases skip when no GPU is present.
 */
#include "test_util.h"
#include "golden.h"

#include "backend.h"
#include "io/safetensors.h"
#include "quant/nf4.h"
#ifdef RK_HAVE_CUDA
#include "quant/nf4_cuda.h"
#endif

#include <math.h>

static const char * const GOLD_CASES[] = {
    "nf4_4x64_b64", "nf4_3x70_b64", "nf4_5x33_b128", "nf4_6x100_b256_zero", "nf4_ties_b64", "nf4_40x512_b64",
    "fp4_4x64_b64", "fp4_3x70_b64", "fp4_5x33_b128", "fp4_6x100_b256_zero", "fp4_ties_b64", "fp4_9x300_b128",
};
#define N_GOLD_CASES ((int) (sizeof(GOLD_CASES) / sizeof(GOLD_CASES[0])))

static struct rk_gold load_gold(void) {
    char p[4096];
    return rk_gold_load(rk_test_path(p, sizeof(p), "tests/golden/nf4.rkgd"));
}

static const struct rk_gold_tensor * gget(const struct rk_gold * g, const char * c, const char * field) {
    char name[128];
    snprintf(name, sizeof(name), "%s.%s", c, field);
    return rk_gold_get(g, name);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/*
 * Bit-exact float comparison, printing the first mismatch. The one exception is the sign of a zero: bnb 0.50.2's
 * CPU dequantizer returns -0.0 for FP4 code 8 on its scalar path and +0.0 on its AVX2 path.
 */
static void assert_f32_bits(const float * got, const float * ref, int64_t n, const char * what) {
    for (int64_t i = 0; i < n; i++) {
        cr_assert(f32_bits(got[i]) == f32_bits(ref[i]) || (got[i] == 0.0f && ref[i] == 0.0f), "%s[%lld]: got %.9g (0x%08x), bnb %.9g (0x%08x)", what,
                  (long long) i, got[i], f32_bits(got[i]), ref[i], f32_bits(ref[i]));
    }
}

static void assert_u8_i32(const uint8_t * got, const int32_t * ref, int64_t n, const char * what) {
    for (int64_t i = 0; i < n; i++) {
        cr_assert(got[i] == (uint8_t) ref[i], "%s[%lld]: got 0x%02x, bnb 0x%02x", what, (long long) i, got[i],
                  (unsigned) ref[i]);
    }
}

struct gold_case {
    enum rk_quant4_kind kind;
    int64_t             bs, rows, cols;
};

static struct gold_case case_meta(const struct rk_gold * g, const char * c) {
    const int32_t * m = gget(g, c, "meta")->data;
    return (struct gold_case) { m[0] ? RK_QUANT4_FP4 : RK_QUANT4_NF4, m[1], m[2], m[3] };
}

/* ---- tables ----------------------------------------------------------------------------------------------- */

Test(quant, tables_match_anchors_and_bnb) {
    /* ANCHORS.md "Formats we must match bit for bit": the NF4 table as printed there */
    static const double anchors[16] = {
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    };
    for (int i = 0; i < 16; i++) cr_assert(rk_nf4_code[i] == (float) anchors[i], "nf4 code %d", i);
    cr_assert(sizeof(struct rk_nf4_block) == 32);
    cr_assert(rk_dtype_traits[RK_DTYPE_NF4].blck_size == RK_NF4_BLOCK);
    cr_assert(rk_dtype_traits[RK_DTYPE_NF4].type_size == sizeof(struct rk_nf4_block));
    struct rk_gold g = load_gold();
    assert_f32_bits(rk_nf4_code, rk_gold_get(&g, "code_nf4")->data, 16, "code_nf4");
    assert_f32_bits(rk_fp4_code, rk_gold_get(&g, "code_fp4")->data, 16, "code_fp4");
    assert_f32_bits(rk_dyn8_code, rk_gold_get(&g, "code_dyn8")->data, 256, "code_dyn8");
    /* FP4 sort order really sorts */
    for (int k = 0; k < 15; k++) cr_assert(rk_fp4_code[rk_fp4_sorted_idx[k]] <= rk_fp4_code[rk_fp4_sorted_idx[k + 1]]);
    rk_gold_free(&g);
}

/* ---- quantize / dequantize vs bitsandbytes ------------------------------------------------------------------ */

static void check_case(const struct rk_gold * g, const char * c) {
    struct gold_case m = case_meta(g, c);
    const float *    x = gget(g, c, "x")->data;
    char             what[160];

    struct rk_nf4_tensor t;
    cr_assert(rk_cpu_nf4_quantize(x, m.rows, m.cols, m.bs, m.kind, false, &t) == RK_OK, "%s", rk_last_error());
    cr_assert(t.n_blocks == gget(g, c, "absmax")->n, "%s: n_blocks", c);
    cr_assert((t.n + 1) / 2 == gget(g, c, "packed")->n, "%s: packed size", c);
    snprintf(what, sizeof(what), "%s.packed", c);
    assert_u8_i32(t.packed, gget(g, c, "packed")->data, (t.n + 1) / 2, what);
    snprintf(what, sizeof(what), "%s.absmax", c);
    assert_f32_bits(t.absmax, gget(g, c, "absmax")->data, t.n_blocks, what);

    float *    deq  = malloc((size_t) t.n * sizeof(float));
    uint16_t * deqb = malloc((size_t) t.n * sizeof(uint16_t));
    float *    deqw = malloc((size_t) t.n * sizeof(float));
    rk_cpu_nf4_dequantize(&t, deq);
    snprintf(what, sizeof(what), "%s.deq", c);
    assert_f32_bits(deq, gget(g, c, "deq")->data, t.n, what);
    rk_cpu_nf4_dequantize_bf16(&t, deqb);
    for (int64_t i = 0; i < t.n; i++) deqw[i] = rk_bf16_to_f32(deqb[i]);
    snprintf(what, sizeof(what), "%s.deq_bf16", c);
    assert_f32_bits(deqw, gget(g, c, "deq_bf16")->data, t.n, what);

    /* round trip: |x - deq| <= absmax * (half the largest gap between neighbouring levels) */
    float sorted[16], half_gap = 0.0f;
    for (int k = 0; k < 16; k++) sorted[k] = t.code[m.kind == RK_QUANT4_NF4 ? k : rk_fp4_sorted_idx[k]];
    for (int k = 0; k < 15; k++) half_gap = fmaxf(half_gap, 0.5f * (sorted[k + 1] - sorted[k]));
    for (int64_t i = 0; i < t.n; i++) {
        float am = t.absmax[i / t.blocksize];
        cr_assert(fabsf(x[i] - deq[i]) <= am * half_gap * (1.0f + 1e-6f) + 1e-37f, "%s: round trip [%lld] %g vs %g",
                  c, (long long) i, x[i], deq[i]);
    }
    rk_nf4_tensor_free(&t);

    /* double quantization */
    cr_assert(rk_cpu_nf4_quantize(x, m.rows, m.cols, m.bs, m.kind, true, &t) == RK_OK, "%s", rk_last_error());
    cr_assert(t.absmax == NULL && t.double_quant);
    snprintf(what, sizeof(what), "%s.packed(dq)", c);
    assert_u8_i32(t.packed, gget(g, c, "packed")->data, (t.n + 1) / 2, what);
    /* offset = mean(absmax): bnb takes torch's float32 mean, whose summation order we do not reproduce; ours is
     * the double-precision mean rounded once, so allow 1 ulp. When they differ, redo the 8-bit step from bnb's
     * offset (so codes, scales and everything after are still compared bit for bit). */
    const float gofs = *(const float *) gget(g, c, "dq_offset")->data;
    int32_t     ulps = (int32_t) f32_bits(t.absmax_offset) - (int32_t) f32_bits(gofs);
    cr_assert(ulps >= -1 && ulps <= 1, "%s: offset %.9g vs bnb %.9g", c, t.absmax_offset, gofs);
    if (ulps != 0) {
        const float * gam = gget(g, c, "absmax")->data;
        float *       d   = malloc((size_t) t.n_blocks * sizeof(float));
        for (int64_t b = 0; b < t.n_blocks; b++) d[b] = gam[b] - gofs;
        t.absmax_offset = gofs;
        rk_cpu_quant8_blockwise(d, t.n_blocks, t.nested_blocksize, t.nested_code, t.absmax_q, t.absmax_scale);
        free(d);
    }
    snprintf(what, sizeof(what), "%s.dq_codes", c);
    assert_u8_i32(t.absmax_q, gget(g, c, "dq_codes")->data, t.n_blocks, what);
    snprintf(what, sizeof(what), "%s.dq_scale", c);
    cr_assert(gget(g, c, "dq_scale")->n == (t.n_blocks + 255) / 256);
    assert_f32_bits(t.absmax_scale, gget(g, c, "dq_scale")->data, (t.n_blocks + 255) / 256, what);
    float * am = malloc((size_t) t.n_blocks * sizeof(float));
    rk_cpu_nf4_absmax(&t, am);
    snprintf(what, sizeof(what), "%s.dq_absmax", c);
    assert_f32_bits(am, gget(g, c, "dq_absmax")->data, t.n_blocks, what);
    rk_cpu_nf4_dequantize(&t, deq);
    snprintf(what, sizeof(what), "%s.dq_deq", c);
    assert_f32_bits(deq, gget(g, c, "dq_deq")->data, t.n, what);
    rk_nf4_tensor_free(&t);
    free(am);
    free(deq);
    free(deqb);
    free(deqw);
}

Test(quant, nf4_fp4_bit_exact_vs_bnb) {
    struct rk_gold g = load_gold();
    for (int i = 0; i < N_GOLD_CASES; i++) check_case(&g, GOLD_CASES[i]);
    rk_gold_free(&g);
}

Test(quant, quant8_blockwise_bit_exact_vs_bnb) {
    struct rk_gold                g  = load_gold();
    const struct rk_gold_tensor * gx = rk_gold_get(&g, "q8.x");
    uint8_t * codes  = malloc((size_t) gx->n);
    int64_t   nb     = (gx->n + 255) / 256;
    float *   absmax = malloc((size_t) nb * sizeof(float));
    rk_cpu_quant8_blockwise(gx->data, gx->n, 256, rk_dyn8_code, codes, absmax);
    cr_assert(rk_gold_get(&g, "q8.absmax")->n == nb);
    assert_f32_bits(absmax, rk_gold_get(&g, "q8.absmax")->data, nb, "q8.absmax");
    assert_u8_i32(codes, rk_gold_get(&g, "q8.codes")->data, gx->n, "q8.codes");
    free(codes);
    free(absmax);
    rk_gold_free(&g);
}

Test(quant, zero_block_and_ties) {
    /* a whole block of zeros: absmax 0, every nibble the code of 0.0, dequantizes to +0 */
    float w[128] = { 0 };
    w[64]        = 0.5f;
    for (int kind = 0; kind < RK_QUANT4_COUNT; kind++) {
        struct rk_nf4_tensor t;
        cr_assert(rk_cpu_nf4_quantize(w, 2, 64, 64, (enum rk_quant4_kind) kind, false, &t) == RK_OK);
        cr_assert(t.absmax[0] == 0.0f && t.absmax[1] == 0.5f);
        uint8_t zc = kind == RK_QUANT4_NF4 ? 7 : 0;
        for (int i = 0; i < 32; i++) cr_assert(t.packed[i] == (uint8_t) (zc << 4 | zc), "kind %d byte %d", kind, i);
        float out[128];
        rk_cpu_nf4_dequantize(&t, out);
        for (int i = 0; i < 64; i++) cr_assert(out[i] == 0.0f);
        cr_assert(out[64] == 0.5f);
        rk_nf4_tensor_free(&t);
    }
    /* exactly on a midpoint: the lower level (torch.bucketize right=False; CUDA's strict '>' tree agrees) */
    float v[64] = { 1.0f };
    v[1]        = (rk_nf4_code[12] + rk_nf4_code[13]) / 2.0f;
    v[2]        = (rk_nf4_code[2] + rk_nf4_code[3]) / 2.0f;
    v[3]        = nextafterf(v[1], 1.0f);
    struct rk_nf4_tensor t;
    cr_assert(rk_cpu_nf4_quantize(v, 1, 64, 64, RK_QUANT4_NF4, false, &t) == RK_OK);
    cr_assert(t.packed[0] == (15 << 4 | 12), "0x%02x", t.packed[0]);
    cr_assert(t.packed[1] == (2 << 4 | 13), "0x%02x", t.packed[1]);
    rk_nf4_tensor_free(&t);
}

Test(quant, bad_arguments) {
    float                w[64] = { 0 };
    struct rk_nf4_tensor t;
    cr_assert(rk_cpu_nf4_quantize(w, 1, 64, 96, RK_QUANT4_NF4, false, &t) == RK_STATUS_ARG);
    cr_assert(rk_cpu_nf4_quantize(w, 1, 64, 32, RK_QUANT4_NF4, false, &t) == RK_STATUS_ARG);
    cr_assert(rk_cpu_nf4_quantize(w, 0, 64, 64, RK_QUANT4_NF4, false, &t) == RK_STATUS_ARG);
    for (int bs = 64; bs <= 4096; bs *= 2) {
        cr_assert(rk_cpu_nf4_quantize(w, 1, 64, bs, RK_QUANT4_NF4, true, &t) == RK_OK);
        rk_nf4_tensor_free(&t);
    }
}

/* ---- matmul reference --------------------------------------------------------------------------------------- */

static uint32_t lcg(uint32_t * s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}
static float urand(uint32_t * s) { return (float) lcg(s) / (float) (1u << 24) * 2.0f - 1.0f; }

Test(quant, nf4_matmul_vs_double) {
    uint32_t seed = 42;
    const int64_t O = 37, I = 200, B = 5; /* n = 7400: not a multiple of 64 or 256 */
    float * w = malloc(O * I * sizeof(float)), * x = malloc(B * I * sizeof(float));
    for (int64_t i = 0; i < O * I; i++) w[i] = urand(&seed) * 0.1f;
    for (int64_t i = 0; i < B * I; i++) x[i] = urand(&seed);
    for (int dq = 0; dq < 2; dq++) {
        struct rk_nf4_tensor t;
        cr_assert(rk_cpu_nf4_quantize(w, O, I, 64, RK_QUANT4_NF4, dq, &t) == RK_OK);
        float * wd = malloc(O * I * sizeof(float)), * y = malloc(B * O * sizeof(float));
        rk_cpu_nf4_dequantize(&t, wd);
        cr_assert(rk_cpu_nf4_matmul(y, x, &t, B) == RK_OK);
        for (int64_t b = 0; b < B; b++) {
            for (int64_t o = 0; o < O; o++) {
                double ref = 0.0, mag = 0.0;
                for (int64_t i = 0; i < I; i++) {
                    ref += (double) x[b * I + i] * wd[o * I + i];
                    mag += fabs((double) x[b * I + i] * wd[o * I + i]);
                }
                cr_assert(fabs(y[b * O + o] - ref) <= 1e-6 * mag + 1e-7, "y[%lld,%lld] %g vs %g", (long long) b,
                          (long long) o, y[b * O + o], ref);
            }
        }
        rk_nf4_tensor_free(&t);
        free(wd);
        free(y);
    }
    free(w);
    free(x);
}

/* ---- bitsandbytes checkpoint loader ------------------------------------------------------------------------- */

Test(quant, load_bnb_linear4bit_checkpoint) {
    char                    p[4096];
    struct rk_safetensors * st = NULL;
    cr_assert(rk_safetensors_open(rk_test_path(p, sizeof(p), "tests/golden/nf4_linear4bit.safetensors"), &st) ==
              RK_OK, "%s", rk_last_error());
    struct rk_gold g = rk_gold_load(rk_test_path(p, sizeof(p), "tests/golden/nf4_linear4bit.rkgd"));
    static const char * const prefixes[2] = { "nf4.weight", "fp4.weight" };
    static const char * const gnames[2]   = { "lin_nf4", "lin_fp4" };
    for (int k = 0; k < 2; k++) {
        struct rk_nf4_tensor t;
        cr_assert(rk_nf4_load_bnb(st, prefixes[k], &t) == RK_OK, "%s", rk_last_error());
        cr_assert(t.kind == (k == 0 ? RK_QUANT4_NF4 : RK_QUANT4_FP4));
        cr_assert(t.double_quant == (k == 0));
        char name[64];
        snprintf(name, sizeof(name), "%s.deq", gnames[k]);
        const struct rk_gold_tensor * gd = rk_gold_get(&g, name);
        cr_assert(gd->ndim == 2 && gd->dims[0] == t.n_rows && gd->dims[1] == t.n_cols);
        float * out = malloc((size_t) t.n * sizeof(float));
        rk_cpu_nf4_dequantize(&t, out);
        assert_f32_bits(out, gd->data, t.n, name);
        /* our quantizer on the original weight reproduces the checkpoint's bytes */
        snprintf(name, sizeof(name), "%s.w", gnames[k]);
        struct rk_nf4_tensor q;
        cr_assert(rk_cpu_nf4_quantize(rk_gold_get(&g, name)->data, t.n_rows, t.n_cols, t.blocksize, t.kind,
                                      t.double_quant, &q) == RK_OK);
        cr_assert(memcmp(q.packed, t.packed, (size_t) (t.n + 1) / 2) == 0, "%s: packed bytes differ", name);
        if (t.double_quant) {
            cr_assert(memcmp(q.absmax_q, t.absmax_q, (size_t) t.n_blocks) == 0 && q.absmax_offset == t.absmax_offset);
        } else {
            cr_assert(memcmp(q.absmax, t.absmax, (size_t) t.n_blocks * sizeof(float)) == 0);
        }
        rk_nf4_tensor_free(&q);
        rk_nf4_tensor_free(&t);
        free(out);
    }
    struct rk_nf4_tensor t;
    cr_assert(rk_nf4_load_bnb(st, "nf4.bias", &t) == RK_STATUS_FORMAT); /* no quant_state: a clean error */
    rk_gold_free(&g);
    rk_safetensors_close(st);
}

/* ---- CUDA parity (skipped without a GPU) -------------------------------------------------------------------- */

#ifdef RK_HAVE_CUDA
static void * dev_copy(const void * src, size_t n) {
    void * d = NULL;
    cr_assert(cudaMalloc(&d, n ? n : 1) == cudaSuccess);
    if (n) cr_assert(cudaMemcpy(d, src, n, cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

static void get_back(void * dst, const void * d, size_t n) {
    cr_assert(cudaDeviceSynchronize() == cudaSuccess);
    cr_assert(cudaMemcpy(dst, d, n, cudaMemcpyDeviceToHost) == cudaSuccess);
}

/* Uploads t's packed bytes and its fp32 absmax (computed on the device from the double-quant state when set). */
static void upload(const struct rk_nf4_tensor * t, uint8_t ** packed, float ** absmax) {
    *packed = dev_copy(t->packed, (size_t) (t->n + 1) / 2);
    if (!t->double_quant) {
        *absmax = dev_copy(t->absmax, (size_t) t->n_blocks * sizeof(float));
        return;
    }
    uint8_t * q     = dev_copy(t->absmax_q, (size_t) t->n_blocks);
    float *   scale = dev_copy(t->absmax_scale, (size_t) ((t->n_blocks + 255) / 256) * sizeof(float));
    float *   code8 = dev_copy(t->nested_code, sizeof(t->nested_code));
    cr_assert(cudaMalloc((void **) absmax, (size_t) t->n_blocks * sizeof(float)) == cudaSuccess);
    rk_cuda_nf4_absmax(q, scale, code8, t->absmax_offset, t->n_blocks, t->nested_blocksize, *absmax, 0);
    float * ref = malloc((size_t) t->n_blocks * sizeof(float)), * got = malloc((size_t) t->n_blocks * sizeof(float));
    rk_cpu_nf4_absmax(t, ref);
    get_back(got, *absmax, (size_t) t->n_blocks * sizeof(float));
    assert_f32_bits(got, ref, t->n_blocks, "cuda absmax");
    free(ref);
    free(got);
    cudaFree(q);
    cudaFree(scale);
    cudaFree(code8);
}
#endif

Test(quant, cuda_dequantize_bit_exact) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (be == NULL) cr_skip_test("no CUDA device: %s", rk_last_error());
#ifdef RK_HAVE_CUDA
    /* (rows, cols, blocksize): aligned 16-byte path, ragged tail path, odd n */
    static const int64_t shapes[][3] = { { 64, 256, 64 }, { 37, 200, 128 }, { 5, 33, 256 }, { 128, 512, 4096 } };
    uint32_t seed = 7;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (int kind = 0; kind < RK_QUANT4_COUNT; kind++) {
            for (int dq = 0; dq < 2; dq++) {
                int64_t O = shapes[s][0], I = shapes[s][1], n = O * I;
                float * w = malloc((size_t) n * sizeof(float));
                for (int64_t i = 0; i < n; i++) w[i] = urand(&seed);
                struct rk_nf4_tensor t;
                cr_assert(rk_cpu_nf4_quantize(w, O, I, shapes[s][2], (enum rk_quant4_kind) kind, dq, &t) == RK_OK);
                uint8_t * packed;
                float *   absmax;
                upload(&t, &packed, &absmax);
                float *    ref  = malloc((size_t) n * sizeof(float)), * got = malloc((size_t) n * sizeof(float));
                uint16_t * refb = malloc((size_t) n * 2), * gotb = malloc((size_t) n * 2);
                void *     out;
                cr_assert(cudaMalloc(&out, (size_t) n * sizeof(float)) == cudaSuccess);
                rk_cpu_nf4_dequantize(&t, ref);
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, out, RK_DTYPE_F32, 0) == RK_OK);
                get_back(got, out, (size_t) n * sizeof(float));
                assert_f32_bits(got, ref, n, "cuda dequant f32");
                rk_cpu_nf4_dequantize_bf16(&t, refb);
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, out, RK_DTYPE_BF16, 0) ==
                          RK_OK);
                get_back(gotb, out, (size_t) n * 2);
                cr_assert(memcmp(gotb, refb, (size_t) n * 2) == 0, "cuda dequant bf16 differs (shape %zu)", s);
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, out, RK_DTYPE_I32, 0) ==
                          RK_STATUS_UNSUPPORTED);
                cudaFree(out);
                cudaFree(packed);
                cudaFree(absmax);
                free(ref);
                free(got);
                free(refb);
                free(gotb);
                free(w);
                rk_nf4_tensor_free(&t);
            }
        }
    }
#endif
    rk_backend_free(be);
}

Test(quant, cuda_gemv_vs_cpu) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (be == NULL) cr_skip_test("no CUDA device: %s", rk_last_error());
#ifdef RK_HAVE_CUDA
    static const int64_t shapes[][3] = { { 96, 1024, 64 }, { 37, 200, 128 }, { 300, 2048, 256 } };
    uint32_t seed = 11;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (int64_t B = 1; B <= RK_NF4_GEMV_MAX_B; B += 3) {
            int64_t O = shapes[s][0], I = shapes[s][1];
            float * w = malloc((size_t) (O * I) * sizeof(float)), * x = malloc((size_t) (B * I) * sizeof(float));
            for (int64_t i = 0; i < O * I; i++) w[i] = urand(&seed) * 0.05f;
            for (int64_t i = 0; i < B * I; i++) x[i] = urand(&seed);
            struct rk_nf4_tensor t;
            cr_assert(rk_cpu_nf4_quantize(w, O, I, shapes[s][2], RK_QUANT4_NF4, true, &t) == RK_OK);
            uint8_t * packed;
            float *   absmax;
            upload(&t, &packed, &absmax);
            float * xd = dev_copy(x, (size_t) (B * I) * sizeof(float)), * yd;
            cr_assert(cudaMalloc((void **) &yd, (size_t) (B * O) * sizeof(float)) == cudaSuccess);
            float * ref = malloc((size_t) (B * O) * sizeof(float)), * got = malloc((size_t) (B * O) * sizeof(float));
            cr_assert(rk_cpu_nf4_matmul(ref, x, &t, B) == RK_OK);
            cr_assert(rk_cuda_nf4_gemv(t.kind, packed, absmax, O, I, t.blocksize, xd, B, yd, 0) == RK_OK);
            get_back(got, yd, (size_t) (B * O) * sizeof(float));
            for (int64_t i = 0; i < B * O; i++) {
                cr_assert(fabsf(got[i] - ref[i]) <= 1e-3f + 8e-3f * fabsf(ref[i]), "gemv shape %zu B %lld [%lld]: %g vs %g",
                          s, (long long) B, (long long) i, got[i], ref[i]);
            }
            cr_assert(rk_cuda_nf4_gemv(t.kind, packed, absmax, O, I, t.blocksize, xd, 9, yd, 0) == RK_STATUS_ARG);
            cudaFree(xd);
            cudaFree(yd);
            cudaFree(packed);
            cudaFree(absmax);
            free(w);
            free(x);
            free(ref);
            free(got);
            rk_nf4_tensor_free(&t);
        }
    }
#endif
    rk_backend_free(be);
}
