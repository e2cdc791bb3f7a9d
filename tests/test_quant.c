/*
 * test_quant.c: NF4 / FP4 blockwise quantization (quant/nf4.h) against bitsandbytes.
 *
 * Golden data: tests/golden/nf4.rkgd and nf4_linear4bit.{safetensors,rkgd}, written by tests/golden/gen_nf4.py
 * with the bitsandbytes package on the CPU. Packed bytes, absmax, double-quant codes/scales/offset and the
 * dequantized values must match bit for bit; bnb.matmul_4bit's forward (fp32 and bf16) bounds RK_OP_NF4_MATMUL on the
 * CPU, which is also checked against a plain double-precision reference on odd shapes. CUDA parity cases (dequant
 * bit-exact; RK_OP_NF4_MATMUL and every GEMV variant against the CPU op, with guard regions) skip without a GPU.
 */
#include "test_util.h"
#include "golden.h"

#include "backend.h"
#include "io/safetensors.h"
#include "quant/nf4.h"
#ifdef RK_HAVE_CUDA
#include "kernels/cuda_ops.h"
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

/* ---- RK_OP_NF4_MATMUL on the CPU -------------------------------------------------------------------------------- */

static uint32_t lcg(uint32_t * s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}
static float urand(uint32_t * s) { return (float) lcg(s) / (float) (1u << 24) * 2.0f - 1.0f; }

/* n weights uniform in [-1, 1) * 1.7 / sqrt(K): products of order 1 for x uniform in [-1, 1) */
static float * rand_weights(uint32_t * seed, int64_t n, int64_t K) {
    float * w = malloc((size_t) n * sizeof(float));
    for (int64_t i = 0; i < n; i++) w[i] = urand(seed) * 1.7f / sqrtf((float) K);
    return w;
}

/*
 * The plain reference: ref (M,N) = act(x (M,K) wd (N,K)^T + b) in double, and mag = sum |x w| + |b| per output (the
 * scale of the rounding error of any fp32 evaluation). GELU in the erf form.
 */
static void ref_linear(const float * x, int64_t ldx, const float * wd, const float * b, int64_t M, int64_t N,
                       int64_t K, bool gelu, double * ref, double * mag) {
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            double acc = b ? b[n] : 0.0, a = b ? fabs((double) b[n]) : 0.0;
            for (int64_t k = 0; k < K; k++) {
                const double p = (double) x[m * ldx + k] * wd[n * K + k];
                acc += p;
                a += fabs(p);
            }
            if (gelu) acc = 0.5 * acc * (1.0 + erf(acc / sqrt(2.0)));
            ref[m * N + n] = acc;
            mag[m * N + n] = a;
        }
    }
}

struct mm4_case {
    enum rk_quant4_kind kind;
    bool                dq;   /* double-quantized absmax */
    int64_t             bs, M, N, K;
    bool                bias, gelu;
    int64_t             pad;  /* floats after every x and dst row (strided views) */
};

static const struct mm4_case cpu_mm4_cases[] = {
    { RK_QUANT4_NF4, false, 64, 5, 37, 200, true, false, 0 },  /* n = 7400: not a multiple of 64 or 256 */
    { RK_QUANT4_NF4, true, 64, 3, 33, 77, true, true, 3 },     /* odd K: every other row starts mid-byte */
    { RK_QUANT4_FP4, false, 128, 1, 300, 130, false, true, 0 }, /* several panels */
    { RK_QUANT4_NF4, true, 256, 2, 45, 4100, true, true, 5 },   /* long rows: panels of a few rows */
    { RK_QUANT4_NF4, false, 64, 40, 70, 513, true, false, 0 },  /* M > 16: wide panels */
    { RK_QUANT4_FP4, true, 64, 130, 9, 31, true, true, 1 },     /* odd everything */
};

#define SENTINEL (-7777.0f)

/* One case through rk_op on the CPU backend against ref_linear on rk_cpu_nf4_dequantize's weights. */
static void run_cpu_mm4(struct rk_backend * cpu, const struct mm4_case * c, uint32_t * seed) {
    const int64_t M = c->M, N = c->N, K = c->K, ldx = K + c->pad, ldd = N + c->pad;
    char          cs[160];
    snprintf(cs, sizeof(cs), "NF4_MATMUL(cpu,%s,dq=%d,bs=%lld,M=%lld,N=%lld,K=%lld,bias=%d,gelu=%d,pad=%lld)",
             c->kind == RK_QUANT4_NF4 ? "nf4" : "fp4", c->dq, (long long) c->bs, (long long) M, (long long) N,
             (long long) K, c->bias, c->gelu, (long long) c->pad);
    float * w = rand_weights(seed, N * K, K);
    float * x = malloc((size_t) (M * ldx) * sizeof(float)), * b = malloc((size_t) N * sizeof(float));
    float * d = malloc((size_t) (M * ldd) * sizeof(float)), * wd = malloc((size_t) (N * K) * sizeof(float));
    for (int64_t i = 0; i < M * ldx; i++) x[i] = i % ldx < K ? urand(seed) : NAN; /* the gaps must not be read */
    for (int64_t i = 0; i < N; i++) b[i] = urand(seed);
    for (int64_t i = 0; i < M * ldd; i++) d[i] = SENTINEL;
    struct rk_nf4_tensor t;
    cr_assert(rk_cpu_nf4_quantize(w, N, K, c->bs, c->kind, c->dq, &t) == RK_OK, "%s", rk_last_error());
    rk_cpu_nf4_dequantize(&t, wd);
    struct rk_quant4_weight qw;
    cr_assert(rk_nf4_weight_upload(cpu, &t, &qw) == RK_OK, "%s", rk_last_error());

    struct rk_tensor tx = rk_tensor_host(x, RK_DTYPE_F32, 2, (int64_t[]) { M, K });
    struct rk_tensor td = rk_tensor_host(d, RK_DTYPE_F32, 2, (int64_t[]) { M, N });
    struct rk_tensor tb = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { N });
    tx.nb[0]            = ldx * 4;
    td.nb[0]            = ldd * 4;
    struct rk_op_call call = { .op = RK_OP_NF4_MATMUL, .dst = &td, .src = { &tx, c->bias ? &tb : NULL } };
    call.p.nf4_matmul      = (struct rk_nf4_matmul_params) { .w = &qw, .act = c->gelu ? RK_ACT_GELU : RK_ACT_NONE };
    cr_assert(rk_op(cpu, &call) == RK_OK, "%s: %s", cs, rk_last_error());

    double * ref = malloc((size_t) (M * N) * sizeof(double)), * mag = malloc((size_t) (M * N) * sizeof(double));
    ref_linear(x, ldx, wd, c->bias ? b : NULL, M, N, K, c->gelu, ref, mag);
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < ldd; n++) {
            const float got = d[m * ldd + n];
            if (n >= N) {
                cr_assert(got == SENTINEL, "%s: dst[%lld][%lld] outside the view was written", cs, (long long) m,
                          (long long) n);
                continue;
            }
            const double r = ref[m * N + n];
            cr_assert(fabs(got - r) <= 3e-6 * mag[m * N + n] + 1e-6, "%s: dst[%lld][%lld] = %.9g, reference %.9g", cs,
                      (long long) m, (long long) n, got, r);
        }
    }
    rk_nf4_weight_free(cpu, &qw);
    rk_nf4_tensor_free(&t);
    free(w), free(x), free(b), free(d), free(wd), free(ref), free(mag);
}

Test(quant, nf4_matmul_op_cpu_vs_reference) {
    struct rk_backend * cpu  = rk_backend_cpu_init(2);
    uint32_t            seed = 42;
    for (size_t i = 0; i < sizeof(cpu_mm4_cases) / sizeof(cpu_mm4_cases[0]); i++) run_cpu_mm4(cpu, &cpu_mm4_cases[i], &seed);
    rk_backend_free(cpu);
}

Test(quant, nf4_matmul_op_cpu_errors) {
    struct rk_backend * cpu  = rk_backend_cpu_init(1);
    uint32_t            seed = 5;
    float *             w    = rand_weights(&seed, 8 * 64, 64);
    float               x[2 * 64] = { 0 }, d[2 * 8], b[9] = { 0 };
    struct rk_nf4_tensor t;
    cr_assert(rk_cpu_nf4_quantize(w, 8, 64, 64, RK_QUANT4_NF4, true, &t) == RK_OK);
    struct rk_quant4_weight qw;
    cr_assert(rk_nf4_weight_upload(cpu, &t, &qw) == RK_OK);
    /* the uploaded absmax is the expanded double quantization, bit for bit */
    float am[8];
    rk_cpu_nf4_absmax(&t, am);
    cr_assert(memcmp(am, qw.absmax, (size_t) t.n_blocks * sizeof(float)) == 0 && memcmp(qw.packed, t.packed, 256) == 0);

    struct rk_tensor  tx = rk_tensor_host(x, RK_DTYPE_F32, 2, (int64_t[]) { 2, 64 });
    struct rk_tensor  td = rk_tensor_host(d, RK_DTYPE_F32, 2, (int64_t[]) { 2, 8 });
    struct rk_tensor  tb = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { 9 });
    struct rk_op_call call = { .op = RK_OP_NF4_MATMUL, .dst = &td, .src = { &tx, &tb } };
    call.p.nf4_matmul.w = &qw;
    cr_assert(rk_op(cpu, &call) == RK_STATUS_ARG, "bias of 9 for N = 8");
    call.src[1] = NULL;
    cr_assert(rk_op(cpu, &call) == RK_OK, "%s", rk_last_error());
    td.ne[1] = 7;
    cr_assert(rk_op(cpu, &call) == RK_STATUS_ARG, "dst (2, 7) for N = 8");
    td.ne[1] = 8;
    tx.ne[1] = 63;
    cr_assert(rk_op(cpu, &call) == RK_STATUS_ARG, "x (2, 63) for K = 64");
    tx.ne[1] = 64;
    qw.kind  = 7;
    cr_assert(rk_op(cpu, &call) == RK_STATUS_ARG, "unknown kind");
    qw.kind = RK_QUANT4_NF4;
    call.p.nf4_matmul.w = NULL;
    cr_assert(rk_op(cpu, &call) == RK_STATUS_UNSUPPORTED, "no weight");
    call.p.nf4_matmul.w = &qw;
    tx.dtype = RK_DTYPE_BF16;
    cr_assert(rk_op(cpu, &call) == RK_STATUS_UNSUPPORTED, "bf16 on the CPU backend");
    rk_nf4_weight_free(cpu, &qw);
    cr_assert(qw.packed == NULL && qw.absmax == NULL);
    /* a tensor with its own code table: the op only knows the built-in ones */
    t.code[3] += 0.01f;
    cr_assert(rk_nf4_weight_upload(cpu, &t, &qw) == RK_STATUS_UNSUPPORTED);
    rk_nf4_tensor_free(&t);
    free(w);
    rk_backend_free(cpu);
}

/* ---- bitsandbytes checkpoint loader ------------------------------------------------------------------------- */

/* The Linear4bit state dict and its golden tensors (tests/golden/gen_nf4.py). */
static struct rk_safetensors * open_linear4bit(struct rk_gold * g) {
    char                    p[4096];
    struct rk_safetensors * st = NULL;
    cr_assert(rk_safetensors_open(rk_test_path(p, sizeof(p), "tests/golden/nf4_linear4bit.safetensors"), &st) ==
              RK_OK, "%s", rk_last_error());
    *g = rk_gold_load(rk_test_path(p, sizeof(p), "tests/golden/nf4_linear4bit.rkgd"));
    return st;
}

Test(quant, load_bnb_linear4bit_checkpoint) {
    struct rk_gold          g;
    struct rk_safetensors * st = open_linear4bit(&g);
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

/*
 * bitsandbytes' own forward on the CPU: bnb.matmul_4bit(x, W, bias) of the two Linear4bit layers above, on a (3, in)
 * input (tests/golden/gen_nf4.py). In fp32 bnb dequantizes to fp32 and calls torch's linear: the same values as ours
 * summed in another order, so the bound is fp32 rounding (1e-6 of sum |x w| + |b|). With bf16 input bnb rounds x, the
 * dequantized W and the bias to bf16 and returns a bf16 result: our op on the bf16-rounded x and bias (W stays fp32)
 * must then be within the bf16 roundings of W and of the result: 2^-8 of sum |x w| + 2^-8 |y|.
 */
Test(quant, nf4_matmul_op_vs_bnb_matmul_4bit) {
    struct rk_gold          g;
    struct rk_safetensors * st  = open_linear4bit(&g);
    struct rk_backend *     cpu = rk_backend_cpu_init(2);
    static const char * const kinds[2] = { "nf4", "fp4" };
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof(name), "%s.weight", kinds[k]);
        struct rk_nf4_tensor t;
        cr_assert(rk_nf4_load_bnb(st, name, &t) == RK_OK, "%s", rk_last_error());
        struct rk_quant4_weight qw;
        cr_assert(rk_nf4_weight_upload(cpu, &t, &qw) == RK_OK, "%s", rk_last_error());
        snprintf(name, sizeof(name), "%s.bias", kinds[k]);
        const struct rk_st_entry * eb = rk_safetensors_find(st, name);
        cr_assert(eb && eb->dtype == RK_DTYPE_F32 && rk_st_entry_nelements(eb) == t.n_rows);
        const int64_t M = 3, N = t.n_rows, K = t.n_cols;
        float         bias[64], xb[3 * 128], bb[64], y[3 * 64];
        cr_assert(N <= 64 && K <= 128);
        memcpy(bias, eb->data, (size_t) N * sizeof(float));
        snprintf(name, sizeof(name), "lin_%s.x", kinds[k]);
        const struct rk_gold_tensor * gx = rk_gold_get(&g, name);
        cr_assert(gx->n == M * K);
        snprintf(name, sizeof(name), "lin_%s.deq", kinds[k]);
        const float * wd = rk_gold_get(&g, name)->data;
        double        ref[3 * 64], mag[3 * 64];
        ref_linear(gx->data, K, wd, bias, M, N, K, false, ref, mag); /* only mag is used */

        struct rk_tensor  tx = rk_tensor_host(gx->data, RK_DTYPE_F32, 2, (int64_t[]) { M, K });
        struct rk_tensor  ty = rk_tensor_host(y, RK_DTYPE_F32, 2, (int64_t[]) { M, N });
        struct rk_tensor  tb = rk_tensor_host(bias, RK_DTYPE_F32, 1, (int64_t[]) { N });
        struct rk_op_call call = { .op = RK_OP_NF4_MATMUL, .dst = &ty, .src = { &tx, &tb } };
        call.p.nf4_matmul.w = &qw;
        cr_assert(rk_op(cpu, &call) == RK_OK, "%s", rk_last_error());
        snprintf(name, sizeof(name), "lin_%s.y_f32", kinds[k]);
        const float * y32 = rk_gold_get(&g, name)->data;
        for (int64_t i = 0; i < M * N; i++) {
            cr_assert(fabs(y[i] - y32[i]) <= 1e-6 * mag[i], "%s y[%lld] = %.9g, bnb fp32 %.9g", kinds[k], (long long) i,
                      y[i], y32[i]);
        }

        for (int64_t i = 0; i < M * K; i++) xb[i] = rk_bf16_to_f32(rk_f32_to_bf16(((const float *) gx->data)[i]));
        for (int64_t i = 0; i < N; i++) bb[i] = rk_bf16_to_f32(rk_f32_to_bf16(bias[i]));
        tx.data = xb;
        tb.data = bb;
        cr_assert(rk_op(cpu, &call) == RK_OK, "%s", rk_last_error());
        snprintf(name, sizeof(name), "lin_%s.y_bf16", kinds[k]);
        const float * ybf = rk_gold_get(&g, name)->data;
        for (int64_t i = 0; i < M * N; i++) {
            cr_assert(fabs(y[i] - ybf[i]) <= (mag[i] + fabs(ybf[i])) / 256.0, "%s y[%lld] = %.9g, bnb bf16 %.9g",
                      kinds[k], (long long) i, y[i], ybf[i]);
        }
        rk_nf4_weight_free(cpu, &qw);
        rk_nf4_tensor_free(&t);
    }
    rk_backend_free(cpu);
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
                cr_assert(cudaMalloc(&out, (size_t) n * sizeof(float) + 16) == cudaSuccess);
                rk_cpu_nf4_dequantize(&t, ref);
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, out, RK_DTYPE_F32, 0) == RK_OK);
                get_back(got, out, (size_t) n * sizeof(float));
                assert_f32_bits(got, ref, n, "cuda dequant f32");
                rk_cpu_nf4_dequantize_bf16(&t, refb);
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, out, RK_DTYPE_BF16, 0) ==
                          RK_OK);
                get_back(gotb, out, (size_t) n * 2);
                cr_assert(memcmp(gotb, refb, (size_t) n * 2) == 0, "cuda dequant bf16 differs (shape %zu)", s);
                /* an output 2 bytes off its alignment takes the scalar path: the same bits */
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, (uint16_t *) out + 1,
                                                 RK_DTYPE_BF16, 0) == RK_OK);
                get_back(gotb, (uint16_t *) out + 1, (size_t) n * 2);
                cr_assert(memcmp(gotb, refb, (size_t) n * 2) == 0, "cuda dequant bf16, unaligned (shape %zu)", s);
                for (int64_t i = 0; i < n; i++) refb[i] = rk_f32_to_f16(ref[i]);
                cr_assert(rk_cuda_nf4_dequantize(t.kind, packed, absmax, n, t.blocksize, out, RK_DTYPE_F16, 0) ==
                          RK_OK);
                get_back(gotb, out, (size_t) n * 2);
                cr_assert(memcmp(gotb, refb, (size_t) n * 2) == 0, "cuda dequant f16 differs (shape %zu)", s);
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

#ifdef RK_HAVE_CUDA
/* y (M, N) = the CPU op (the reference of every CUDA case) on t: x (M, K) contiguous, bias b (N) or NULL. */
static void cpu_nf4_op(const struct rk_nf4_tensor * t, const float * x, const float * b, int64_t M, enum rk_act act,
                       float * y) {
    struct rk_backend *     cpu = rk_backend_cpu_init(2);
    struct rk_quant4_weight qw;
    cr_assert(rk_nf4_weight_upload(cpu, t, &qw) == RK_OK, "%s", rk_last_error());
    struct rk_tensor  tx   = rk_tensor_host((void *) x, RK_DTYPE_F32, 2, (int64_t[]) { M, t->n_cols });
    struct rk_tensor  ty   = rk_tensor_host(y, RK_DTYPE_F32, 2, (int64_t[]) { M, t->n_rows });
    struct rk_tensor  tb   = rk_tensor_host((void *) b, RK_DTYPE_F32, 1, (int64_t[]) { t->n_rows });
    struct rk_op_call call = { .op = RK_OP_NF4_MATMUL, .dst = &ty, .src = { &tx, b ? &tb : NULL } };
    call.p.nf4_matmul      = (struct rk_nf4_matmul_params) { .w = &qw, .act = act };
    cr_assert(rk_op(cpu, &call) == RK_OK, "%s", rk_last_error());
    rk_nf4_weight_free(cpu, &qw);
    rk_backend_free(cpu);
}
#endif

Test(quant, cuda_gemv_vs_cpu) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (be == NULL) cr_skip_test("no CUDA device: %s", rk_last_error());
#ifdef RK_HAVE_CUDA
    /* the fp32 launcher (the CUDA-core kernel); odd K included */
    static const int64_t shapes[][3] = { { 96, 1024, 64 }, { 37, 200, 128 }, { 300, 2048, 256 }, { 33, 77, 64 } };
    uint32_t seed = 11;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (int64_t B = 1; B <= RK_NF4_GEMV_MAX_B; B += 3) {
            int64_t O = shapes[s][0], I = shapes[s][1];
            float * w = rand_weights(&seed, O * I, I), * x = malloc((size_t) (B * I) * sizeof(float));
            for (int64_t i = 0; i < B * I; i++) x[i] = urand(&seed);
            struct rk_nf4_tensor t;
            cr_assert(rk_cpu_nf4_quantize(w, O, I, shapes[s][2], RK_QUANT4_NF4, true, &t) == RK_OK);
            uint8_t * packed;
            float *   absmax;
            upload(&t, &packed, &absmax);
            float * xd = dev_copy(x, (size_t) (B * I) * sizeof(float)), * yd;
            cr_assert(cudaMalloc((void **) &yd, (size_t) (B * O) * sizeof(float)) == cudaSuccess);
            float * ref = malloc((size_t) (B * O) * sizeof(float)), * got = malloc((size_t) (B * O) * sizeof(float));
            cpu_nf4_op(&t, x, NULL, B, RK_ACT_NONE, ref);
            cr_assert(rk_cuda_nf4_gemv(t.kind, packed, absmax, O, I, t.blocksize, xd, B, yd, 0) == RK_OK);
            get_back(got, yd, (size_t) (B * O) * sizeof(float));
            for (int64_t i = 0; i < B * O; i++) {
                cr_assert(fabsf(got[i] - ref[i]) <= 1e-4f + 1e-4f * fabsf(ref[i]),
                          "gemv shape %zu B %lld [%lld]: %g vs %g", s, (long long) B, (long long) i, got[i], ref[i]);
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

/* ---- CUDA RK_OP_NF4_MATMUL vs the CPU op ---------------------------------------------------------------------- */

#ifdef RK_HAVE_CUDA
#define GUARD_BYTES 256

/* Device memory: a guard | payload | guard, all 0xFF bytes to start with (NaN in every float dtype, so an output
 * element never written fails the comparison and a read past an input shows as NaN). */
struct guarded {
    uint8_t * base;
    size_t    payload;
};

static void * guarded_alloc(struct guarded * g, size_t payload) {
    g->payload = payload;
    cr_assert(cudaMalloc((void **) &g->base, payload + 2 * GUARD_BYTES) == cudaSuccess);
    cr_assert(cudaMemset(g->base, 0xFF, payload + 2 * GUARD_BYTES) == cudaSuccess);
    return g->base + GUARD_BYTES;
}

/* True when both guards still hold 0xFF (else prints how many bytes changed); frees the memory. */
static bool guarded_release(struct guarded * g, const char * cs, const char * what) {
    uint8_t h[2 * GUARD_BYTES];
    get_back(h, g->base, GUARD_BYTES);
    get_back(h + GUARD_BYTES, g->base + GUARD_BYTES + g->payload, GUARD_BYTES);
    int bad = 0;
    for (int i = 0; i < 2 * GUARD_BYTES; i++) bad += h[i] != 0xFF;
    if (bad) fprintf(stderr, "    %s: %s: %d guard bytes overwritten\n", cs, what, bad);
    cr_assert(cudaFree(g->base) == cudaSuccess);
    return bad == 0;
}

/* Normalized MSE and |got - ref| <= atol + rtol |ref| per element, as tests/test_ops.c; prints the first misses. */
static bool close_enough(const char * cs, const float * got, const float * ref, int64_t n, enum rk_dtype dt) {
    const double nmse_max = dt == RK_DTYPE_F32 ? 1e-9 : dt == RK_DTYPE_F16 ? 1e-5 : 1e-4;
    const double atol = dt == RK_DTYPE_F32 ? 1e-4 : dt == RK_DTYPE_F16 ? 2e-3 : 1e-2;
    const double rtol = dt == RK_DTYPE_F32 ? 1e-4 : dt == RK_DTYPE_F16 ? 4e-3 : 2e-2;
    double       e2 = 0.0, r2 = 0.0;
    int64_t      bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double) got[i] - ref[i]);
        e2 += e * e;
        r2 += (double) ref[i] * ref[i];
        if (!(e <= atol + rtol * fabs((double) ref[i]))) { /* NaN fails */
            if (bad++ < 4) fprintf(stderr, "    %s: dst[%lld]: ref %.7g got %.7g\n", cs, (long long) i, ref[i], got[i]);
        }
    }
    const double nmse = r2 > 0 ? e2 / r2 : e2;
    if (bad || nmse > nmse_max) {
        fprintf(stderr, "    %s: %lld of %lld out of tolerance, nmse %.3g (limit %.3g)\n", cs, (long long) bad,
                (long long) n, nmse, nmse_max);
    }
    return bad == 0 && nmse <= nmse_max;
}

struct cuda_mm4_shape {
    int64_t N, K, bs;
    bool    dq;
};

static const struct cuda_mm4_shape cuda_mm4_shapes[] = {
    { 37, 200, 64, false },   /* K % 32 != 0: the CUDA-core GEMV */
    { 33, 77, 64, true },     /* odd K: rows start mid-byte */
    { 100, 96, 64, false },   /* K % 128 != 0: a partial tensor-core span */
    { 130, 384, 128, true },  /* N % 16 != 0 */
    { 512, 1024, 64, true },  /* Llama-like, small */
    { 1376, 512, 64, false }, /* up-projection ratio (11008 / 8) */
    { 256, 2752, 64, true },  /* down-projection: K = 21.5 spans of 128 */
};

/*
 * One case: rk_op NF4_MATMUL on CUDA (variant 0; for M <= 8 also variants 1 and 2 through rk_cuda_nf4_gemv_ex)
 * against the CPU op on the same dtype-rounded x and bias. Returns 0 pass, 1 fail, 2 skipped (unsupported).
 */
static int run_cuda_mm4(struct rk_backend * be, enum rk_dtype dt, const struct cuda_mm4_shape * sh, int64_t M,
                        bool bias, bool gelu, int variant, uint32_t * seed) {
    const int64_t N = sh->N, K = sh->K;
    const size_t  es = rk_dtype_traits[dt].type_size;
    char          cs[200];
    snprintf(cs, sizeof(cs), "NF4_MATMUL(cuda,%s,M=%lld,N=%lld,K=%lld,bs=%lld,dq=%d,bias=%d,gelu=%d,variant=%d)",
             rk_dtype_traits[dt].name, (long long) M, (long long) N, (long long) K, (long long) sh->bs, sh->dq, bias,
             gelu, variant);
    float * w = rand_weights(seed, N * K, K), * x = malloc((size_t) (M * K) * sizeof(float));
    float * b = malloc((size_t) N * sizeof(float));
    float * ref = malloc((size_t) (M * N) * sizeof(float)), * got = malloc((size_t) (M * N) * sizeof(float));
    void *  buf = malloc((size_t) (M * (K > N ? K : N)) * es);
    for (int64_t i = 0; i < M * K; i++) x[i] = urand(seed);
    for (int64_t i = 0; i < N; i++) b[i] = urand(seed);
    /* round the inputs to dt: the CPU reference sees exactly what the device sees */
    rk_dtype_traits[dt].from_f32(x, buf, M * K);
    rk_dtype_traits[dt].to_f32(buf, x, M * K);
    rk_dtype_traits[dt].from_f32(b, buf, N);
    rk_dtype_traits[dt].to_f32(buf, b, N);
    struct rk_nf4_tensor t;
    cr_assert(rk_cpu_nf4_quantize(w, N, K, sh->bs, RK_QUANT4_NF4, sh->dq, &t) == RK_OK);
    cpu_nf4_op(&t, x, bias ? b : NULL, M, gelu ? RK_ACT_GELU : RK_ACT_NONE, ref);

    struct rk_quant4_weight qw;
    cr_assert(rk_nf4_weight_upload(be, &t, &qw) == RK_OK, "%s", rk_last_error());
    struct guarded   gx, gb, gd, gs;
    struct rk_tensor tx, tb, td;
    rk_tensor_init(&tx, dt, 2, (int64_t[]) { M, K }, "x");
    rk_tensor_init(&tb, dt, 1, (int64_t[]) { N }, "bias");
    rk_tensor_init(&td, dt, 2, (int64_t[]) { M, N }, "dst");
    tx.data = guarded_alloc(&gx, (size_t) (M * K) * es);
    tb.data = guarded_alloc(&gb, (size_t) N * es);
    td.data = guarded_alloc(&gd, (size_t) (M * N) * es);
    tx.backend = tb.backend = td.backend = be;
    rk_dtype_traits[dt].from_f32(x, buf, M * K);
    cr_assert(cudaMemcpy(tx.data, buf, (size_t) (M * K) * es, cudaMemcpyHostToDevice) == cudaSuccess);
    rk_dtype_traits[dt].from_f32(b, buf, N);
    cr_assert(cudaMemcpy(tb.data, buf, (size_t) N * es, cudaMemcpyHostToDevice) == cudaSuccess);
    const size_t scratch = M > RK_NF4_GEMV_MAX_B ? (size_t) (N * K) * es : 0;
    struct rk_nf4_matmul_params p = { .w = &qw, .act = gelu ? RK_ACT_GELU : RK_ACT_NONE };
    if (scratch) {
        p.scratch       = guarded_alloc(&gs, scratch);
        p.scratch_bytes = scratch - 1;
        struct rk_op_call small = { .op = RK_OP_NF4_MATMUL, .dst = &td, .src = { &tx, bias ? &tb : NULL } };
        small.p.nf4_matmul      = p;
        cr_assert(rk_op(be, &small) == RK_STATUS_ARG, "%s: a scratch one byte short must be refused", cs);
        p.scratch_bytes = scratch;
    }
    enum rk_status st;
    if (variant == 0) {
        struct rk_op_call call = { .op = RK_OP_NF4_MATMUL, .dst = &td, .src = { &tx, bias ? &tb : NULL } };
        call.p.nf4_matmul      = p;
        st                     = rk_op(be, &call);
    } else {
        st = rk_cuda_nf4_gemv_ex(variant, &td, &tx, bias ? &tb : NULL, &p, rk_backend_cuda_stream(be));
    }
    int rc = 0;
    if (st == RK_STATUS_UNSUPPORTED) {
        fprintf(stderr, "  skip %s: %s\n", cs, rk_last_error());
        rc = 2;
    } else {
        cr_assert(st == RK_OK, "%s: %s: %s", cs, rk_status_name(st), rk_last_error());
        cr_assert(be->synchronize(be) == RK_OK);
        get_back(buf, td.data, (size_t) (M * N) * es);
        rk_dtype_traits[dt].to_f32(buf, got, M * N);
        bool ok = close_enough(cs, got, ref, M * N, dt);
        ok      = guarded_release(&gd, cs, "dst") && ok;
        ok      = guarded_release(&gx, cs, "x") && ok;
        ok      = guarded_release(&gb, cs, "bias") && ok;
        if (scratch) ok = guarded_release(&gs, cs, "scratch") && ok;
        fprintf(stderr, "  %s %s\n", ok ? "ok  " : "FAIL", cs);
        rc = ok ? 0 : 1;
    }
    if (rc == 2) {
        cudaFree(gd.base), cudaFree(gx.base), cudaFree(gb.base);
        if (scratch) cudaFree(gs.base);
    }
    rk_nf4_weight_free(be, &qw);
    rk_nf4_tensor_free(&t);
    free(w), free(x), free(b), free(ref), free(got), free(buf);
    return rc;
}
#endif

Test(quant, cuda_nf4_matmul_op_vs_cpu) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (be == NULL) cr_skip_test("no CUDA device: %s", rk_last_error());
#ifdef RK_HAVE_CUDA
    static const int64_t Ms[] = { 1, 3, 8, 9, 64, 130 };
    const enum rk_dtype  dts[] = { be->act_dtype, RK_DTYPE_F16, RK_DTYPE_F32 };
    uint32_t             seed  = 2026;
    int                  n[3]  = { 0 };
    for (size_t di = 0; di < 3; di++) {
        if (di > 0 && dts[di] == dts[0]) continue;
        for (size_t si = 0; si < sizeof(cuda_mm4_shapes) / sizeof(cuda_mm4_shapes[0]); si++) {
            /* f16 and f32 on the smaller shapes only */
            if (di > 0 && cuda_mm4_shapes[si].N * cuda_mm4_shapes[si].K > 200000) continue;
            for (size_t mi = 0; mi < sizeof(Ms) / sizeof(Ms[0]); mi++) {
                const bool bias = (si + mi) % 2 == 0, gelu = (si + 2 * mi) % 3 == 0;
                for (int v = 0; v <= (Ms[mi] <= RK_NF4_GEMV_MAX_B ? 2 : 0); v++) {
                    n[run_cuda_mm4(be, dts[di], &cuda_mm4_shapes[si], Ms[mi], bias, gelu, v, &seed)]++;
                }
            }
        }
    }
    fprintf(stderr, "cuda NF4_MATMUL on %s: %d passed, %d failed, %d skipped as unsupported\n", be->name, n[0], n[1],
            n[2]);
    cr_assert(n[1] == 0, "%d NF4_MATMUL case(s) failed (see above)", n[1]);
    cr_assert(n[0] > 0);
#endif
    rk_backend_free(be);
}
