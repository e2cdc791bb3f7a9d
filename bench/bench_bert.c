/*
 * bench_bert: BERT encoder inference throughput (sequences/s) on a backend, random weights at a named shape.
 *
 *   build/bench/bench_bert [--device cuda|cpu] [--config base|large|minilm] [--B 64] [--T 256] [--dtype bf16|f16]
 *                          [--reps 10]
 *
 * --reps 0 runs the correctness check below and times nothing.
 * Correctness first: a model of the same shape (2 layers) with the same seeded weights runs a padded batch on the
 * CPU backend (f32 reference) and on the chosen backend; the hidden states must agree (|diff| <= 0.05 max(1, |ref|)
 * for 16-bit activations and weights, about 6 bf16 ulps at |ref| = 2 after two layers; 1e-4 max(1, |ref|) on the
 * CPU), else nothing is timed. Then forward passes over B x T tokens (all valid)
 * are timed after 2 warm-ups; the median is reported. Peer: bench/peers/bert_hf.py (HF BertModel, same shape,
 * dtype and batch, random weights).
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "models/bert.h"
#include "models/encode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static struct rk_bert_config config_named(const char * name) {
    struct rk_bert_config c;
    if (rk_bert_config_named(name, &c) != RK_OK) {
        fprintf(stderr, "bench_bert: %s\n", rk_last_error());
        exit(2);
    }
    return c;
}

static void die(const char * what) {
    fprintf(stderr, "bench_bert: %s: %s\n", what, rk_last_error());
    exit(1);
}

static int run_one(const char * device, const char * cname, const char * dtype, int64_t B, int64_t T, int64_t reps) {
    struct rk_backend * be = rk_backend_from_name(device, 0);
    if (!be) {
        if (!strcmp(device, "cuda")) {
            printf("bench_bert: no CUDA device (%s); nothing timed\n", rk_last_error());
            return 0;
        }
        die("backend");
    }
    if (be->device == RK_DEVICE_CUDA) be->act_dtype = !strcmp(dtype, "bf16") ? RK_DTYPE_BF16 : RK_DTYPE_F16;
    struct rk_bert_config cfg = config_named(cname);

    /* ---- correctness: 2-layer model of this shape, CPU f32 vs this backend */
    {
        struct rk_bert_config small = cfg;
        small.n_layer = 2;
        struct rk_backend * cpu = rk_backend_cpu_init(0);
        struct rk_bert * mr = NULL, * mt = NULL;
        if (rk_bert_init_random(&small, cpu, 7, &mr) != RK_OK || rk_bert_init_random(&small, be, 7, &mt) != RK_OK) die("init");
        const int64_t b = 3, t = 77, C = cfg.hidden_size;
        int32_t ids[3 * 77], mask[3 * 77];
        for (int64_t i = 0; i < b * t; i++) {
            ids[i]  = (int32_t) ((i * 7919) % cfg.vocab_size);
            mask[i] = (i % t) < t - 20 * (i / t);
        }
        float * hr = malloc(sizeof(float) * (size_t) (b * t * C)), * ht = malloc(sizeof(float) * (size_t) (b * t * C));
        if (rk_bert_forward(mr, ids, mask, NULL, b, t) != RK_OK || rk_bert_hidden_f32(mr, hr) != RK_OK) die("cpu forward");
        if (rk_bert_forward(mt, ids, mask, NULL, b, t) != RK_OK || rk_bert_hidden_f32(mt, ht) != RK_OK) die("forward");
        double worst = 0, worst_abs = 0; /* the largest |diff| / max(1, |ref|), and that element's |diff| */
        for (int64_t i = 0; i < b * t; i++) {
            if (!mask[i]) continue;
            for (int64_t c = 0; c < C; c++) {
                double d = fabs((double) hr[i * C + c] - ht[i * C + c]);
                if (isnan(ht[i * C + c])) d = INFINITY;
                const double e = d / fmax(1.0, fabs((double) hr[i * C + c]));
                if (e > worst) {
                    worst     = e;
                    worst_abs = d;
                }
            }
        }
        const double lim = be->device == RK_DEVICE_CPU ? 1e-4 : 0.05;
        printf("bert_check config=%s device=%s dtype=%s max_rel_diff=%.4g (|diff| %.4g) limit=%.3g %s\n", cname,
               be->name, rk_dtype_traits[be->act_dtype].name, worst, worst_abs, lim, worst <= lim ? "ok" : "FAILED");
        free(hr);
        free(ht);
        rk_bert_free(mr);
        rk_bert_free(mt);
        rk_backend_free(cpu);
        if (!(worst <= lim)) return 1;
    }
    if (reps <= 0) { /* --reps 0: the check alone (the emulated suites, tests/emu/run_suites.sh) */
        rk_backend_free(be);
        return 0;
    }

    /* ---- timing */
    struct rk_bert * m = NULL;
    if (rk_bert_init_random(&cfg, be, 1, &m) != RK_OK) die("init");
    int32_t * ids = malloc(sizeof(int32_t) * (size_t) (B * T)), * mask = malloc(sizeof(int32_t) * (size_t) (B * T));
    for (int64_t i = 0; i < B * T; i++) {
        ids[i]  = (int32_t) (1000 + (i * 7919) % 29000);
        mask[i] = 1;
    }
    double t[64];
    if (reps > 64) reps = 64;
    for (int64_t r = -2; r < reps; r++) {
        be->synchronize(be);
        double t0 = rk_now();
        if (rk_bert_forward(m, ids, mask, NULL, B, T) != RK_OK) die("forward");
        be->synchronize(be);
        if (r >= 0) t[r] = rk_now() - t0;
    }
    qsort(t, (size_t) reps, sizeof(double), rk_bench_cmp_double);
    const double med = t[reps / 2];
    /* sequences/s = B / median forward time (ids upload included, pooling excluded) */
    printf("bert config=%s B=%lld T=%lld device=%s dtype=%s ours_ms=%.3f ours_seq_per_s=%.0f\n", cname, (long long) B,
           (long long) T, be->name, rk_dtype_traits[be->act_dtype].name, med * 1e3, (double) B / med);
    /* the key bench/peers/bert_hf.py prints for the same shape and dtype; with kernel variants forced through the
       environment (RK_ATTN_FWD_VARIANT, RK_GELU_VARIANT, RK_LAYERNORM_VARIANT, RK_BERT_RESIDUAL_VARIANT: 2 = the
       residual added by the LayerNorm instead of the GEMM, RK_MATMUL_GELU_VARIANT: 2 to 6 = the fused FFN-up
       GEMM + GELU) the key gets "@attn-vN-gelu-vN-ln-vN-res-vN-mmgelu-vN" (those set), which the device check's
       table joins with the same peer line */
    static const char * const envs[5][2] = { { "RK_ATTN_FWD_VARIANT", "attn" }, { "RK_GELU_VARIANT", "gelu" },
                                             { "RK_LAYERNORM_VARIANT", "ln" }, { "RK_BERT_RESIDUAL_VARIANT", "res" },
                                             { "RK_MATMUL_GELU_VARIANT", "mmgelu" } };
    char suffix[96] = "";
    for (int e = 0; e < 5; e++) {
        const char * v = getenv(envs[e][0]);
        if (!v || !*v || !strcmp(v, "0")) continue;
        const size_t n = strlen(suffix);
        snprintf(suffix + n, sizeof(suffix) - n, "%s%s-v%.4s", n ? "-" : "@", envs[e][1], v);
    }
    printf("RESULT %s_%s_B%lld_T%lld%s %.0f seq/s\n", !strcmp(cname, "minilm") ? "minilm_l6" : !strcmp(cname, "base") ? "bert_base" : "bert_large",
           be->act_dtype == RK_DTYPE_F16 ? "fp16" : be->act_dtype == RK_DTYPE_BF16 ? "bf16" : "fp32", (long long) B,
           (long long) T, suffix, (double) B / med);
    free(ids);
    free(mask);
    rk_bert_free(m);
    rk_backend_free(be);
    return 0;
}

int main(int argc, char ** argv) {
    const char * device = "cuda", * cname = NULL, * dtype = NULL;
    int64_t B = 64, T = 256, reps = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--config")) cname = argv[i + 1];
        else if (!strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--B")) B = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--T")) T = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoll(argv[i + 1]);
        else { fprintf(stderr, "bench_bert: unknown option %s\n", argv[i]); return 2; }
    }
    if (cname && dtype) return run_one(device, cname, dtype, B, T, reps);
    /* no config named: the shapes of the device check (peer: bench/peers/bert_hf.py) */
    const char * configs[] = { "base", "minilm" }, * dtypes[] = { "f16", "bf16" };
    int rc = 0;
    for (int c = 0; c < 2; c++) {
        if (cname && strcmp(cname, configs[c])) continue;
        for (int d = 0; d < 2; d++) {
            if (dtype && strcmp(dtype, dtypes[d])) continue;
            rc |= run_one(device, configs[c], dtypes[d], B, T, reps);
        }
    }
    return rc;
}
