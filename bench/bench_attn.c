/*
 * bench_attn: attention forward (RK_OP_ATTN_FWD) on CUDA, checked against the CPU reference, then timed.
 *
 *   build/bench/bench_attn [--variant N|all] [--shape NAME] [--reps 30] [--seed S]
 *   build/bench/bench_attn --check [--variant N|all]      awkward shapes and every option, no timing
 *
 * Shapes (bf16, (B, NH, T, HS) contiguous): bert_base B64 T256 H12 D64, bert_large B32 T512 H16 D64,
 * llama7b_causal B4 T2048 H32 D128 causal, minilm B64 T256 H12 D32. Inputs are uniform in [-1, 1] from a fixed
 * seed. Each variant is first checked against rk_cpu_attn_fwd (f32, on the bf16-rounded inputs) on B = 1 slices
 * (batch 0 and batch B-1; llama: batch 0, heads 0 and 1): output max abs error and normalized MSE, and the
 * logsumexp; a variant that fails is not timed. Timing: CUDA events, 5 warm-ups, the median of --reps runs, the L2
 * flushed by writing a 256 MB buffer before each run. One line per shape:
 *   attn <shape> ours_ms=... tflops=... max_err=... nmse=...
 * and, for the default variant, `RESULT attn_<shape>_B.._T.._H.._D.. <ms> ms` (joined with the peer's flash line
 * by .ci/device_check.sh).
 * Peer: bench/peers/attn_sdpa.py (torch SDPA flash / cuDNN / efficient, same shapes and method).
 * Without CUDA in the build it prints "no CUDA in this build" and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef RK_HAVE_CUDA
int main(void) {
    printf("no CUDA in this build\n");
    return 0;
}
#else

#include "cuda_check.h"
#include "kernels/attn.h"
#include "kernels/attn_cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <string.h>

/* ---- small helpers ----------------------------------------------------------------------------- */

static uint64_t rng_state = 0x5eed0001ull;

static double rng_uniform(void) { /* [0, 1), splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double) (z >> 11) * (1.0 / 9007199254740992.0);
}

static uint16_t to_bits(enum rk_dtype dt, float x) {
    return dt == RK_DTYPE_BF16 ? rk_f32_to_bf16(x) : rk_f32_to_f16(x);
}
static float from_bits(enum rk_dtype dt, uint16_t u) {
    return dt == RK_DTYPE_BF16 ? rk_bf16_to_f32(u) : rk_f16_to_f32(u);
}

/* n values uniform in [-1, 1], rounded to dt and back (the CPU reference sees exactly what the GPU sees). */
static float * random_logical(int64_t n, enum rk_dtype dt) {
    float * x = rk_xmalloc((size_t) n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = from_bits(dt, to_bits(dt, (float) (2.0 * rng_uniform() - 1.0)));
    return x;
}


/* A (B, N, T, HS) view of 2-byte elements at byte offset `off` into a device allocation, strides nb (bytes). */
static struct rk_tensor dev_view(void * base, size_t off, enum rk_dtype dt, const int64_t ne[4], const int64_t nb[4]) {
    struct rk_tensor t;
    rk_tensor_init(&t, dt, 4, ne, NULL);
    for (int i = 0; i < 4; i++) t.nb[i] = nb[i];
    t.data = (char *) base + off;
    return t;
}

/* Writes logical (B, N, T, HS) f32 values into a host image of an allocation, at the view's strides. */
static void scatter(unsigned char * img, size_t off, const struct rk_tensor * t, const float * x) {
    const int64_t * ne = t->ne;
    for (int64_t b = 0; b < ne[0]; b++)
        for (int64_t h = 0; h < ne[1]; h++)
            for (int64_t i = 0; i < ne[2]; i++)
                for (int64_t d = 0; d < ne[3]; d++) {
                    const uint16_t u = to_bits(t->dtype, x[((b * ne[1] + h) * ne[2] + i) * ne[3] + d]);
                    memcpy(img + off + b * t->nb[0] + h * t->nb[1] + i * t->nb[2] + d * t->nb[3], &u, 2);
                }
}

/* Reads logical (B, N, T, HS) values (batches b0..b0+nb-1, heads 0..nh-1) out of a host image. */
static void gather(const unsigned char * img, size_t off, const struct rk_tensor * t, int64_t b0, int64_t nbat,
                   int64_t nh, float * x) {
    const int64_t * ne = t->ne;
    for (int64_t b = 0; b < nbat; b++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < ne[2]; i++)
                for (int64_t d = 0; d < ne[3]; d++) {
                    uint16_t u;
                    memcpy(&u, img + off + (b0 + b) * t->nb[0] + h * t->nb[1] + i * t->nb[2] + d * t->nb[3], 2);
                    x[((b * nh + h) * ne[2] + i) * ne[3] + d] = from_bits(t->dtype, u);
                }
}

/* ---- one problem: storage, CPU reference, comparison -------------------------------------------- */

struct attn_case {
    const char * name;
    int64_t      B, NH, NKV, Tq, Tk, HS;
    bool         causal;
    int64_t      window, q_offset;
    int          mask_kind;  /* 0 none; 1 batch b pads its last 7*b+3 keys; 2 batch 0 pads its first 40 keys,
                                the last batch is all padding */
    bool         fused;      /* q/k/v views into one (B, T, 3C) buffer, dst a (B, T, C) buffer (needs Tq == Tk) */
    enum rk_dtype dtype;
};

struct attn_problem {
    struct attn_case c;
    float *          q, * k, * v;        /* logical host values (B, NH|NKV, T, HS) */
    int32_t *        mask_h;
    void *           buf_in, * buf_out;  /* device allocations */
    size_t           in_bytes, out_bytes, out_guard;
    size_t           q_off, k_off, v_off;
    struct rk_tensor q_t, k_t, v_t, o_t, mask_t, lse_t;
    int32_t *        mask_d;
    float *          lse_d;
};

#define ATTN_GUARD_BYTES 4096
#define ATTN_GUARD_BYTE  0x5a

static void problem_init(struct attn_problem * P, const struct attn_case * c) {
    memset(P, 0, sizeof(*P));
    P->c                = *c;
    const int64_t B     = c->B, NH = c->NH, NKV = c->NKV, Tq = c->Tq, Tk = c->Tk, HS = c->HS;
    const int64_t es    = 2;
    P->q                = random_logical(B * NH * Tq * HS, c->dtype);
    P->k                = random_logical(B * NKV * Tk * HS, c->dtype);
    P->v                = random_logical(B * NKV * Tk * HS, c->dtype);
    const int64_t neq[4] = { B, NH, Tq, HS }, nek[4] = { B, NKV, Tk, HS };
    int64_t       nbq[4], nbk[4], nbo[4];
    if (c->fused) { /* (B, T, [q | k | v]) with q C = NH*HS wide and k, v NKV*HS wide each */
        RK_ASSERT(Tq == Tk);
        const int64_t row = (NH + 2 * NKV) * HS * es;
        nbq[0] = Tq * row; nbq[1] = HS * es; nbq[2] = row; nbq[3] = es;
        memcpy(nbk, nbq, sizeof(nbk));
        P->q_off    = 0;
        P->k_off    = (size_t) (NH * HS * es);
        P->v_off    = (size_t) ((NH + NKV) * HS * es);
        P->in_bytes = (size_t) (B * Tq * row);
        nbo[0] = Tq * NH * HS * es; nbo[1] = HS * es; nbo[2] = NH * HS * es; nbo[3] = es;
    } else {
        nbq[3] = es; nbq[2] = HS * es; nbq[1] = Tq * HS * es; nbq[0] = NH * Tq * HS * es;
        nbk[3] = es; nbk[2] = HS * es; nbk[1] = Tk * HS * es; nbk[0] = NKV * Tk * HS * es;
        memcpy(nbo, nbq, sizeof(nbo));
        P->q_off    = 0;
        P->k_off    = (size_t) (B * NH * Tq * HS * es);
        P->v_off    = P->k_off + (size_t) (B * NKV * Tk * HS * es);
        P->in_bytes = P->v_off + (size_t) (B * NKV * Tk * HS * es);
    }
    P->out_bytes = (size_t) (B * NH * Tq * HS * es);
    P->out_guard = ATTN_GUARD_BYTES;
    RK_CUDA_CHECK(cudaMalloc(&P->buf_in, P->in_bytes));
    RK_CUDA_CHECK(cudaMalloc(&P->buf_out, P->out_bytes + P->out_guard));
    P->q_t = dev_view(P->buf_in, P->q_off, c->dtype, neq, nbq);
    P->k_t = dev_view(P->buf_in, P->k_off, c->dtype, nek, nbk);
    P->v_t = dev_view(P->buf_in, P->v_off, c->dtype, nek, nbk);
    P->o_t = dev_view(P->buf_out, 0, c->dtype, neq, nbo);

    unsigned char * img = rk_xcalloc(P->in_bytes, 1);
    scatter(img, P->q_off, &P->q_t, P->q);
    scatter(img, P->k_off, &P->k_t, P->k);
    scatter(img, P->v_off, &P->v_t, P->v);
    RK_CUDA_CHECK(cudaMemcpy(P->buf_in, img, P->in_bytes, cudaMemcpyHostToDevice));
    free(img);

    if (c->mask_kind) {
        P->mask_h = rk_xmalloc((size_t) (B * Tk) * sizeof(int32_t));
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < Tk; j++) {
                int32_t ok = 1;
                if (c->mask_kind == 1) ok = j < Tk - (7 * b + 3);
                if (c->mask_kind == 2) ok = (b == B - 1 && B > 1) ? 0 : (b == 0 ? j >= 40 : 1);
                P->mask_h[b * Tk + j] = ok;
            }
        RK_CUDA_CHECK(cudaMalloc((void **) &P->mask_d, (size_t) (B * Tk) * sizeof(int32_t)));
        RK_CUDA_CHECK(cudaMemcpy(P->mask_d, P->mask_h, (size_t) (B * Tk) * sizeof(int32_t), cudaMemcpyHostToDevice));
        const int64_t nem[2] = { B, Tk };
        rk_tensor_init(&P->mask_t, RK_DTYPE_I32, 2, nem, "mask");
        P->mask_t.data = P->mask_d;
    }
    RK_CUDA_CHECK(cudaMalloc((void **) &P->lse_d, (size_t) (B * NH * Tq) * sizeof(float)));
    const int64_t nel[3] = { B, NH, Tq };
    rk_tensor_init(&P->lse_t, RK_DTYPE_F32, 3, nel, "lse");
    P->lse_t.data = P->lse_d;
}

static void problem_free(struct attn_problem * P) {
    free(P->q);
    free(P->k);
    free(P->v);
    free(P->mask_h);
    RK_CUDA_FREE(P->buf_in);
    RK_CUDA_FREE(P->buf_out);
    RK_CUDA_FREE(P->mask_d);
    RK_CUDA_FREE(P->lse_d);
}

static enum rk_status problem_run(struct attn_problem * P, int variant, bool sm75, cudaStream_t stream) {
    const struct rk_attn_params p = {
        .scale = 1.0f / sqrtf((float) P->c.HS), .causal = P->c.causal, .window = P->c.window,
        .q_offset = P->c.q_offset,
    };
    return rk_cuda_attn_fwd_variant(&P->o_t, &P->q_t, &P->k_t, &P->v_t, P->c.mask_kind ? &P->mask_t : NULL,
                                    &P->lse_t, &p, sm75, variant, stream);
}

struct attn_err {
    double max_err;   /* max |got - ref| over the output */
    double nmse;      /* sum (got - ref)^2 / sum ref^2 */
    double lse_err;   /* max |got - ref| over finite lse; inf when the -inf pattern differs */
    bool   guard_ok;  /* the bytes after the output are untouched */
    bool   nan;       /* a NaN anywhere in the checked output */
};

/*
 * Compares batches [b0, b0 + nbat) and heads [0, nh) of the GPU result with rk_cpu_attn_fwd on the same slice
 * (f32 tensors built from the logical values; kv heads 0 .. nh/group-1 are what those heads read).
 */
static struct attn_err problem_check(struct attn_problem * P, int64_t b0, int64_t nbat, int64_t nh) {
    const struct attn_case * c = &P->c;
    const int64_t group = c->NH / c->NKV, nkv = (nh + group - 1) / group;
    const int64_t Tq = c->Tq, Tk = c->Tk, HS = c->HS;
    struct attn_err e = { 0, 0, 0, true, false };

    /* CPU reference on the slice */
    float * qs = rk_xmalloc((size_t) (nbat * nh * Tq * HS) * sizeof(float));
    float * ks = rk_xmalloc((size_t) (nbat * nkv * Tk * HS) * sizeof(float));
    float * vs = rk_xmalloc((size_t) (nbat * nkv * Tk * HS) * sizeof(float));
    float * os = rk_xmalloc((size_t) (nbat * nh * Tq * HS) * sizeof(float));
    float * ls = rk_xmalloc((size_t) (nbat * nh * Tq) * sizeof(float));
    for (int64_t b = 0; b < nbat; b++) {
        for (int64_t h = 0; h < nh; h++)
            memcpy(qs + (b * nh + h) * Tq * HS, P->q + ((b0 + b) * c->NH + h) * Tq * HS, (size_t) (Tq * HS) * 4);
        for (int64_t h = 0; h < nkv; h++) {
            memcpy(ks + (b * nkv + h) * Tk * HS, P->k + ((b0 + b) * c->NKV + h) * Tk * HS, (size_t) (Tk * HS) * 4);
            memcpy(vs + (b * nkv + h) * Tk * HS, P->v + ((b0 + b) * c->NKV + h) * Tk * HS, (size_t) (Tk * HS) * 4);
        }
    }
    const int64_t neq[4] = { nbat, nh, Tq, HS }, nek[4] = { nbat, nkv, Tk, HS }, nem[2] = { nbat, Tk },
                  nel[3] = { nbat, nh, Tq };
    struct rk_tensor qt = rk_tensor_host(qs, RK_DTYPE_F32, 4, neq), kt = rk_tensor_host(ks, RK_DTYPE_F32, 4, nek),
                     vt = rk_tensor_host(vs, RK_DTYPE_F32, 4, nek), ot = rk_tensor_host(os, RK_DTYPE_F32, 4, neq),
                     lt = rk_tensor_host(ls, RK_DTYPE_F32, 3, nel);
    struct rk_tensor mt;
    if (c->mask_kind) mt = rk_tensor_host(P->mask_h + b0 * Tk, RK_DTYPE_I32, 2, nem);
    const struct rk_attn_params p = {
        .scale = 1.0f / sqrtf((float) HS), .causal = c->causal, .window = c->window, .q_offset = c->q_offset,
    };
    rk_cpu_attn_fwd(&ot, &qt, &kt, &vt, c->mask_kind ? &mt : NULL, &lt, &p);

    /* GPU result */
    unsigned char * img = rk_xmalloc(P->out_bytes + P->out_guard);
    RK_CUDA_CHECK(cudaMemcpy(img, P->buf_out, P->out_bytes + P->out_guard, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < P->out_guard; i++) {
        if (img[P->out_bytes + i] != ATTN_GUARD_BYTE) e.guard_ok = false;
    }
    float * og = rk_xmalloc((size_t) (nbat * nh * Tq * HS) * sizeof(float));
    gather(img, 0, &P->o_t, b0, nbat, nh, og);
    float * lg = rk_xmalloc((size_t) (nbat * nh * Tq) * sizeof(float));
    for (int64_t b = 0; b < nbat; b++) {
        RK_CUDA_CHECK(cudaMemcpy(lg + b * nh * Tq, P->lse_d + (b0 + b) * c->NH * Tq, (size_t) (nh * Tq) * sizeof(float),
                                 cudaMemcpyDeviceToHost));
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < nbat * nh * Tq * HS; i++) {
        if (isnan(og[i])) e.nan = true;
        const double d = (double) og[i] - (double) os[i];
        if (fabs(d) > e.max_err || isnan(d)) e.max_err = isnan(d) ? INFINITY : fmax(e.max_err, fabs(d));
        num += d * d;
        den += (double) os[i] * os[i];
    }
    e.nmse = den > 0 ? num / den : (num > 0 ? INFINITY : 0);
    for (int64_t i = 0; i < nbat * nh * Tq; i++) {
        if (isinf(ls[i]) || isinf(lg[i]) || isnan(lg[i])) {
            if (!(isinf(ls[i]) && isinf(lg[i]) && (ls[i] < 0) == (lg[i] < 0))) e.lse_err = INFINITY;
        } else {
            e.lse_err = fmax(e.lse_err, fabs((double) lg[i] - (double) ls[i]));
        }
    }
    free(qs); free(ks); free(vs); free(os); free(ls); free(img); free(og); free(lg);
    return e;
}

/* Limits for a 2-byte output of a softmax-weighted mean of values in [-1, 1] (P rounded to 16 bits on the GPU). */
static bool err_ok(const struct attn_err * e, enum rk_dtype dt) {
    const double max_lim = dt == RK_DTYPE_BF16 ? 2e-2 : 4e-3;
    const double nmse_lim = dt == RK_DTYPE_BF16 ? 1e-4 : 4e-6;
    return !e->nan && e->guard_ok && e->max_err <= max_lim && e->nmse <= nmse_lim && e->lse_err <= 2e-3;
}

static void problem_clear_out(struct attn_problem * P) {
    RK_CUDA_CHECK(cudaMemset(P->buf_out, 0xff, P->out_bytes)); /* NaN pattern: unwritten rows show up */
    RK_CUDA_CHECK(cudaMemset((char *) P->buf_out + P->out_bytes, ATTN_GUARD_BYTE, P->out_guard));
    RK_CUDA_CHECK(cudaMemset(P->lse_d, 0xff, (size_t) (P->c.B * P->c.NH * P->c.Tq) * sizeof(float)));
}

/* ---- --check: awkward shapes, every option ----------------------------------------------------------- */

static const struct attn_case check_cases[] = {
    /* name         B   NH NKV  Tq   Tk   HS  causal win  qoff mask fused dtype */
    { "pad_mask",   2,  4, 4,   77,  77,  64, false, 0,   0,   1, false, RK_DTYPE_BF16 },
    { "gqa_causal", 2,  8, 2,   100, 100, 128, true, 0,   0,   0, false, RK_DTYPE_BF16 },
    { "q_offset",   1,  4, 1,   33,  200, 64, true,  0,   167, 0, false, RK_DTYPE_BF16 },
    { "window",     2,  4, 2,   150, 150, 32, true,  37,  0,   0, false, RK_DTYPE_BF16 },
    { "window_nc",  1,  2, 2,   90,  90,  64, false, 16,  0,   0, false, RK_DTYPE_BF16 },
    { "fused_qkv",  3,  6, 6,   70,  70,  32, false, 0,   0,   2, true,  RK_DTYPE_BF16 },
    { "fused_caus", 2,  4, 4,   129, 129, 64, true,  0,   0,   2, true,  RK_DTYPE_BF16 },
    { "hs80",       2,  3, 3,   50,  50,  80, false, 0,   0,   1, false, RK_DTYPE_BF16 },
    { "decode",     2,  4, 4,   1,   300, 128, true, 0,   299, 1, false, RK_DTYPE_BF16 },
    { "long_caus",  1,  2, 1,   333, 333, 128, true, 0,   0,   1, false, RK_DTYPE_BF16 },
    { "pad_mask",   2,  4, 4,   77,  77,  64, false, 0,   0,   1, false, RK_DTYPE_F16 },
    { "gqa_causal", 2,  8, 2,   100, 100, 128, true, 0,   0,   0, false, RK_DTYPE_F16 },
    { "window",     2,  4, 2,   150, 150, 32, true,  37,  0,   0, false, RK_DTYPE_F16 },
    { "fused_caus", 2,  4, 4,   129, 129, 64, true,  0,   0,   2, true,  RK_DTYPE_F16 },
    { "hs96",       1,  2, 2,   40,  60,  96, false, 0,   0,   0, false, RK_DTYPE_F16 },
};

static int run_check(int v_lo, int v_hi) {
    int          fails = 0, runs = 0;
    cudaStream_t stream;
    RK_CUDA_CHECK(cudaStreamCreate(&stream));
    for (size_t ci = 0; ci < sizeof(check_cases) / sizeof(check_cases[0]); ci++) {
        struct attn_problem P;
        problem_init(&P, &check_cases[ci]);
        const struct attn_case * c = &P.c;
        for (int variant = v_lo; variant <= v_hi; variant++) {
            for (int sm75 = 0; sm75 <= 1; sm75++) {
                problem_clear_out(&P);
                const enum rk_status st = problem_run(&P, variant, sm75, stream);
                char tag[160];
                snprintf(tag, sizeof(tag), "check %-10s %s B%lld NH%lld/%lld Tq%lld Tk%lld HS%lld%s variant=%d(%s)%s",
                         c->name, rk_dtype_traits[c->dtype].name, (long long) c->B, (long long) c->NH,
                         (long long) c->NKV, (long long) c->Tq, (long long) c->Tk, (long long) c->HS,
                         c->causal ? " causal" : "", variant, rk_cuda_attn_fwd_variant_name(variant),
                         sm75 ? " sm75" : "");
                if (st == RK_STATUS_UNSUPPORTED) {
                    printf("%s skipped (%s)\n", tag, rk_last_error());
                    continue;
                }
                if (st != RK_OK) {
                    printf("%s FAILED to launch: %s\n", tag, rk_last_error());
                    fails++;
                    continue;
                }
                RK_CUDA_CHECK(cudaStreamSynchronize(stream));
                const struct attn_err e = problem_check(&P, 0, c->B, c->NH);
                const bool ok = err_ok(&e, c->dtype);
                printf("%s max_err=%.3g nmse=%.3g lse_err=%.3g%s%s %s\n", tag, e.max_err, e.nmse, e.lse_err,
                       e.guard_ok ? "" : " GUARD-OVERWRITTEN", e.nan ? " NaN" : "", ok ? "ok" : "FAILED");
                fails += !ok;
                runs++;
            }
        }
        problem_free(&P);
    }
    RK_CUDA_CHECK(cudaStreamDestroy(stream));
    printf("check: %d runs, %d failed\n", runs, fails);
    return fails ? 1 : 0;
}

/* ---- timed shapes ---------------------------------------------------------------------------------- */

static const struct attn_case bench_cases[] = {
    { "bert_base",      64, 12, 12, 256,  256,  64,  false, 0, 0, 0, false, RK_DTYPE_BF16 },
    { "bert_large",     32, 16, 16, 512,  512,  64,  false, 0, 0, 0, false, RK_DTYPE_BF16 },
    { "llama7b_causal", 4,  32, 32, 2048, 2048, 128, true,  0, 0, 0, false, RK_DTYPE_BF16 },
    { "minilm",         64, 12, 12, 256,  256,  32,  false, 0, 0, 0, false, RK_DTYPE_BF16 },
};

static int run_bench(const char * only, int v_lo, int v_hi, int reps, bool show_variant) {
    cudaStream_t stream;
    RK_CUDA_CHECK(cudaStreamCreate(&stream));
    const size_t flush_bytes = (size_t) 256 << 20;
    void *       flush;
    RK_CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
    cudaEvent_t ev0, ev1;
    RK_CUDA_CHECK(cudaEventCreate(&ev0));
    RK_CUDA_CHECK(cudaEventCreate(&ev1));
    float * times = rk_xmalloc((size_t) reps * sizeof(float));
    int     fails = 0;
    for (size_t si = 0; si < sizeof(bench_cases) / sizeof(bench_cases[0]); si++) {
        const struct attn_case * c = &bench_cases[si];
        if (only && strcmp(only, c->name) != 0) continue;
        struct attn_problem P;
        problem_init(&P, c);
        for (int variant = v_lo; variant <= v_hi; variant++) {
            char vtag[48] = "";
            if (show_variant) snprintf(vtag, sizeof(vtag), " variant=%d(%s)", variant, rk_cuda_attn_fwd_variant_name(variant));
            problem_clear_out(&P);
            const enum rk_status st = problem_run(&P, variant, false, stream);
            if (st != RK_OK) {
                printf("attn %s%s %s: %s\n", c->name, vtag, rk_status_name(st), rk_last_error());
                continue;
            }
            RK_CUDA_CHECK(cudaStreamSynchronize(stream));
            /* check on B = 1 slices: the first and the last batch; llama-sized problems: batch 0, heads 0..1 */
            const bool big = c->Tq * c->Tk * c->HS > 256 * 1024 * 1024 / 2;
            struct attn_err e = problem_check(&P, 0, 1, big ? 2 : c->NH);
            if (!big && c->B > 1) {
                const struct attn_err e2 = problem_check(&P, c->B - 1, 1, c->NH);
                e.max_err = fmax(e.max_err, e2.max_err);
                e.nmse    = fmax(e.nmse, e2.nmse);
                e.lse_err = fmax(e.lse_err, e2.lse_err);
                e.nan |= e2.nan;
            }
            if (!err_ok(&e, c->dtype)) {
                printf("attn %s%s FAILED check: max_err=%.3g nmse=%.3g lse_err=%.3g%s%s (not timed)\n", c->name, vtag,
                       e.max_err, e.nmse, e.lse_err, e.guard_ok ? "" : " GUARD-OVERWRITTEN", e.nan ? " NaN" : "");
                fails++;
                continue;
            }
            for (int w = 0; w < 5; w++) RK_ASSERT(problem_run(&P, variant, false, stream) == RK_OK);
            for (int r = 0; r < reps; r++) {
                RK_CUDA_CHECK(cudaMemsetAsync(flush, r & 0xff, flush_bytes, stream)); /* evict q, k, v, o from L2 */
                RK_CUDA_CHECK(cudaEventRecord(ev0, stream));
                RK_ASSERT(problem_run(&P, variant, false, stream) == RK_OK);
                RK_CUDA_CHECK(cudaEventRecord(ev1, stream));
                RK_CUDA_CHECK(cudaEventSynchronize(ev1));
                RK_CUDA_CHECK(cudaEventElapsedTime(&times[r], ev0, ev1));
            }
            qsort(times, (size_t) reps, sizeof(float), rk_bench_cmp_float);
            const double ms = times[reps / 2];
            /* flops = 4 * B * NH * Tq * Tk * HS (two matmuls, 2 flops per multiply-add), halved under a causal mask */
            const double flops = 4.0 * (double) c->B * c->NH * c->Tq * c->Tk * c->HS * (c->causal ? 0.5 : 1.0);
            printf("attn %s%s ours_ms=%.4f tflops=%.1f max_err=%.3g nmse=%.3g\n", c->name, vtag, ms,
                   flops / (ms * 1e-3) / 1e12, e.max_err, e.nmse);
            /* the key .ci/device_check.sh joins with bench/peers/attn_sdpa.py's flash line; a variant chosen by
               number gets "@vN" after it (joined with the same peer line) */
            char vkey[16] = "";
            if (variant != 0) snprintf(vkey, sizeof(vkey), "@v%d", variant);
            printf("RESULT attn_%s_B%lld_T%lld_H%lld_D%lld%s %.4f ms\n", c->name, (long long) c->B, (long long) c->Tq,
                   (long long) c->NH, (long long) c->HS, vkey, ms);
            fflush(stdout);
        }
        problem_free(&P);
    }
    free(times);
    RK_CUDA_CHECK(cudaEventDestroy(ev0));
    RK_CUDA_CHECK(cudaEventDestroy(ev1));
    RK_CUDA_FREE(flush);
    RK_CUDA_CHECK(cudaStreamDestroy(stream));
    return fails ? 1 : 0;
}

/* device and commit first; the commit comes from $RK_COMMIT (the device check sets it), or git when run by hand */
static void print_header(void) {
    if (!getenv("RK_COMMIT")) {
        char   commit[64] = "";
        FILE * g          = popen("git rev-parse --short HEAD 2>/dev/null", "r");
        if (g) {
            if (fgets(commit, sizeof(commit), g)) commit[strcspn(commit, "\n")] = '\0';
            pclose(g);
        }
        if (commit[0]) setenv("RK_COMMIT", commit, 0);
    }
    rk_bench_print_device("");
}

int main(int argc, char ** argv) {
    struct rk_bench_args args;
    if (!rk_bench_parse_args(argc, argv, RK_ATTN_FWD_N_VARIANTS, &args)) return 2;
    if (args.seed) rng_state = args.seed;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: nothing to do\n");
        return 0;
    }
    print_header();
    printf("seed=0x%llx\n", (unsigned long long) rng_state);
    return args.check ? run_check(args.v_lo, args.v_hi)
                      : run_bench(args.shape, args.v_lo, args.v_hi, args.reps, args.variant_given);
}
#endif
