/*
 * lora.h: LoRA adapters (Hu et al. 2021, arXiv 2106.09685) as PEFT implements them: the adapter math (CPU
 * reference in lora/lora_cpu.c), PEFT-compatible adapter files (lora/adapter.c), and PEFT's target-module matcher.
 *
 * For one adapted linear layer with frozen weight W (N,K) and optional frozen bias b (N):
 *
 *     y = x W^T + b + s * (dropout(x) A^T) B^T          A (r,K), B (N,r), s = alpha / r  (rsLoRA: alpha / sqrt(r))
 *
 * which is PEFT's `lora.Linear.forward` (result = base_layer(x); result += lora_B(lora_A(dropout(x))) * scaling).
 * The adapter parameters live in their own struct (struct rk_lora_adapter): the frozen base is never written,
 * except by the explicit merge/unmerge calls, which a caller makes on a copy it owns (STYLE.md 1.7).
 *
 * Dropout: the reference math (rk_cpu_lora_fwd/bwd) takes a dropout mask (M,K) of already-scaled keep factors
 * (0 or 1/(1-p)); NULL means no dropout (p = 0, PEFT's default). The ops RK_OP_LORA_FWD / RK_OP_LORA_BWD
 * (rk_cpu_lora_fwd_op / rk_cpu_lora_bwd_op here, rk_cuda_lora_fwd / rk_cuda_lora_bwd in lora/lora_cuda.h) store no
 * mask: they re-derive it from (p, seed, offset) with the DROPOUT op's Philox rule for flat index m*K + k, so the
 * forward and its backward, on any backend, drop the same elements.
 *
 * A 4-bit base (QLoRA): the base product is a separate NF4 op; rk_cpu_lora_merge_nf4 / rk_cpu_lora_unmerge_nf4
 * fold the adapter into a quantized weight the way PEFT's lora.bnb.Linear4bit.merge does.
 */
#ifndef RK_LORA_H
#define RK_LORA_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest module path kept (PEFT module names such as "encoder.layer.11.attention.self.query"). */
#define RK_LORA_NAME_MAX 160

/* ------------------------------------------------------------------------------------------------
 * configuration: the fields of PEFT's adapter_config.json that we read and write */
struct rk_lora_config {
    int64_t r;                        /* rank, 8 (PEFT default) */
    float   alpha;                    /* lora_alpha, 8 (PEFT default) */
    float   dropout;                  /* lora_dropout, 0.0; only p = 0 is trained for now */
    bool    use_rslora;               /* false: s = alpha / r; true: s = alpha / sqrt(r) */
    char    bias[16];                 /* "none" (the only value supported) */
    char    task_type[32];            /* "SEQ_CLS", "FEATURE_EXTRACTION", ... or "" (written as null) */
    char    base_model[256];          /* base_model_name_or_path, "sentence-transformers/all-MiniLM-L6-v2" or "" */
    int64_t n_target;                 /* entries in target_modules */
    char ** target_modules;           /* {"query", "value"}; owned by the config (rk_lora_config_free) */
    bool    target_is_regex;          /* target_modules was one string in the file (a regex PEFT full-matches,
                                         or "all-linear"): kept as n_target = 1 and written back as a string;
                                         rk_lora_target_match does not interpret it */
};

/* PEFT's defaults (r 8, alpha 8, dropout 0, bias "none", no rsLoRA, no targets). Cannot fail. */
void rk_lora_config_default(struct rk_lora_config * cfg);
/* Copies targets (n strings) into cfg->target_modules, replacing any there. Cannot fail (aborts on OOM). */
void rk_lora_config_set_targets(struct rk_lora_config * cfg, const char * const * targets, int64_t n);
/* Frees target_modules; the struct itself is the caller's. NULL is fine. */
void rk_lora_config_free(struct rk_lora_config * cfg);

/* The scaling s: alpha / r, or alpha / sqrt(r) with use_rslora (PEFT `LoraLayer.update_layer`). Cannot fail. */
float rk_lora_scale(const struct rk_lora_config * cfg);

/*
 * PEFT's target-module rule for a list of names (`check_target_module_exists`): module `name` matches when it
 * equals one of targets or ends with "." + target. Cannot fail.
 */
bool rk_lora_target_match(const char * name, const char * const * targets, int64_t n_target);

/* ------------------------------------------------------------------------------------------------
 * adapter parameters: separate from the frozen base, one contiguous allocation */
struct rk_lora_module {
    char    name[RK_LORA_NAME_MAX]; /* module path in the base model, "encoder.layer.0.attention.self.query" */
    int64_t K;                      /* in_features, 384 */
    int64_t N;                      /* out_features, 384 */
    float * A;                      /* lora_A.weight (r, K), into the adapter's data */
    float * B;                      /* lora_B.weight (N, r), into the adapter's data */
};

struct rk_lora_adapter {
    struct rk_lora_config   cfg;
    int64_t                 n_module;
    struct rk_lora_module * modules;
    int64_t                 n_params; /* sum over modules of r*K + N*r */
    float *                 data;     /* every A and B, module by module (A then B) */
};

/*
 * Allocates an adapter for n_module modules named names[i] with in/out features K[i], N[i]; the config is
 * copied. A and B are zero. Returns RK_STATUS_ARG (r < 1, a size < 1, a name too long or repeated) or
 * RK_STATUS_OOM with the error set and *out NULL. Free with rk_lora_adapter_free.
 */
enum rk_status rk_lora_adapter_new(const struct rk_lora_config * cfg, int64_t n_module, const char * const * names,
                                   const int64_t * K, const int64_t * N, struct rk_lora_adapter ** out);
void rk_lora_adapter_free(struct rk_lora_adapter * ad); /* NULL is fine */

/* The module called name, or NULL. Cannot fail. */
struct rk_lora_module * rk_lora_adapter_find(const struct rk_lora_adapter * ad, const char * name);

/*
 * PEFT's init_lora_weights=True: A ~ Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(K), 1/sqrt(K))
 * (torch.nn.init.kaiming_uniform_: gain sqrt(2/(1+a^2)), bound gain*sqrt(3/fan_in), fan_in = K), B = 0.
 * Draws from our own xoshiro256** stream (host/rng.h) seeded by seed, so the values differ from torch's RNG
 * while the distribution is the same. Cannot fail.
 */
void rk_lora_adapter_init_peft(struct rk_lora_adapter * ad, uint64_t seed);

/* ------------------------------------------------------------------------------------------------
 * PEFT adapter files (lora/adapter.c) */

/*
 * Writes dir/adapter_model.safetensors (F32; tensor names "base_model.model.<module>.lora_A.weight" and
 * ".lora_B.weight", the adapter name dropped as PEFT's get_peft_model_state_dict does, metadata
 * {"format": "pt"}) and dir/adapter_config.json (peft_type "LORA"), each through a temporary file renamed into
 * place. dir must exist. Returns RK_STATUS_IO naming the file on failure.
 */
enum rk_status rk_lora_adapter_save(const struct rk_lora_adapter * ad, const char * dir);

/*
 * Reads a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors; F32, F16 or BF16 tensors,
 * converted to f32). Modules are found from the tensor names (prefix "base_model.model." optional, an adapter
 * name such as ".default" before ".weight" accepted); each needs both lora_A and lora_B with shapes (r, K) and
 * (N, r) agreeing with the config's r. Errors name the file and the tensor: RK_STATUS_IO (missing file),
 * RK_STATUS_FORMAT (bad JSON, shapes, a lone A or B, peft_type not LORA), RK_STATUS_UNSUPPORTED (bias other
 * than "none", DoRA, per-module rank/alpha patterns, other tensor kinds such as lora_embedding_A or a saved
 * modules_to_save head). Modules come out sorted by name. Free *out with rk_lora_adapter_free.
 */
enum rk_status rk_lora_adapter_load(const char * dir, struct rk_lora_adapter ** out);

/* ------------------------------------------------------------------------------------------------
 * CPU reference ops (lora/lora_cpu.c); all f32, contiguous row-major, through OpenBLAS */

struct rk_lora_shape {
    int64_t M; /* rows of x: tokens, B*T */
    int64_t K; /* in_features */
    int64_t N; /* out_features */
    int64_t r; /* rank */
};

/*
 * Forward of an adapted linear layer:
 *   x (M,K), W (N,K) frozen, b (N) frozen or NULL, A (r,K), B (N,r), mask (M,K) dropout keep factors or NULL
 *   u (M,r) out: (x * mask) A^T, kept for the backward
 *   y (M,N) out: x W^T + b + s * u B^T
 * With W NULL only the adapter path is computed: y += s * u B^T (y accumulated, for a caller that ran the base
 * matmul itself). The adapter path reads x once, in one GEMM, as PEFT's unmerged forward does. Cannot fail.
 */
void rk_cpu_lora_fwd(float * y, float * u, const float * x, const float * W, const float * b, const float * A,
                     const float * B, float s, const float * mask, struct rk_lora_shape sh);

/*
 * Backward, given dy (M,N) and the forward's x, u and mask (same shapes as the forward):
 *   g  = dy B                   (M,r)
 *   dA += s * g^T (x * mask)     (r,K); dA may be NULL (not wanted)
 *   dB += s * dy^T u             (N,r); dB may be NULL
 *   dx += dy W + s * (g A) * mask (M,K); dx may be NULL (first layer), W NULL skips the frozen-base term
 * Every gradient ACCUMULATES (zero them before the first micro-batch). No dW, no db: the base is frozen.
 * Cannot fail (scratch is allocated with rk_xmalloc, which aborts on OOM).
 */
void rk_cpu_lora_bwd(float * dx, float * dA, float * dB, const float * dy, const float * x, const float * u,
                     const float * W, const float * A, const float * B, float s, const float * mask,
                     struct rk_lora_shape sh);

/*
 * Merge: W (N,K) += s * B A (r from sh; M unused), so a plain matmul with W gives the adapted layer. Unmerge
 * subtracts the same product (exact up to f32 rounding, as in PEFT). These WRITE W: call them on a copy the
 * caller owns (export, inference), never on a frozen base shared with training. Cannot fail.
 */
void rk_cpu_lora_merge(float * W, const float * A, const float * B, float s, struct rk_lora_shape sh);
void rk_cpu_lora_unmerge(float * W, const float * A, const float * B, float s, struct rk_lora_shape sh);

/*
 * RK_OP_LORA_FWD on the CPU (host/backend.h has the op contract): y (M,N) += s * u B^T with u (M,r) =
 * dropout(x) A^T written to u (u NULL: inference, kept in a scratch). x, y, u, A (r,K), B (N,r) are f32 and
 * contiguous; x and y may have any number of outer dims (M = their element count / K, / N). The dropout keep mask
 * comes from (p->dropout, p->seed, p->offset) as the DROPOUT op draws it for flat index m*K + k (rk_cpu_dropout
 * builds it); the math is rk_cpu_lora_fwd. Returns RK_STATUS_ARG (error set, nothing written) for inconsistent
 * shapes or p->dropout outside [0,1]; else RK_OK.
 */
enum rk_status rk_cpu_lora_fwd_op(struct rk_tensor * y, struct rk_tensor * u, const struct rk_tensor * x,
                                  const struct rk_tensor * A, const struct rk_tensor * B,
                                  const struct rk_lora_params * p);

/*
 * RK_OP_LORA_BWD on the CPU: dx (M,K) += s * ((dy B) A) * keep/(1-p); p->dA (r,K) += s * (dy B)^T dropout(x);
 * p->dB (N,r) += s * dy^T u, with the forward's mask re-derived from (dropout, seed, offset). dx NULL or with
 * data NULL: no input gradient; p->dA / p->dB NULL: that gradient is not computed. Every gradient ACCUMULATES.
 * Same layout rules and errors as rk_cpu_lora_fwd_op; the math is rk_cpu_lora_bwd (with W NULL).
 */
enum rk_status rk_cpu_lora_bwd_op(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * x,
                                  const struct rk_tensor * u, const struct rk_tensor * A, const struct rk_tensor * B,
                                  const struct rk_lora_params * p);

/*
 * Merge into a 4-bit base, as PEFT's lora.bnb.Linear4bit.merge does: W4 (N,K) <- quantize(dequantize(W4) + s B A),
 * re-quantized with W4's own kind, blocksize and double quantization by rk_cpu_nf4_quantize (bitsandbytes' CPU
 * quantizer, bit for bit), so the result is what bnb's Params4bit stores. Unmerge subtracts s B A the same way;
 * both round through 4 bits, so merge then unmerge does NOT give back the original W4 exactly (as in PEFT).
 * A (r,K), B (N,r) f32 with K = w->n_cols, N = w->n_rows. The tables in w are replaced by the built-in ones
 * (a checkpoint's quant_map is the same NF4/FP4 code). The sum differs from PEFT's by the order of B A's fp32
 * terms and one fused rounding at most (1 ulp, which can move a value sitting on a code midpoint).
 * On success w's old buffers are freed and replaced. Returns RK_STATUS_OOM (w unchanged) when memory runs out,
 * RK_STATUS_ARG for r < 1.
 */
struct rk_nf4_tensor;
enum rk_status rk_cpu_lora_merge_nf4(struct rk_nf4_tensor * w, const float * A, const float * B, float s, int64_t r);
enum rk_status rk_cpu_lora_unmerge_nf4(struct rk_nf4_tensor * w, const float * A, const float * B, float s,
                                       int64_t r);

#ifdef __cplusplus
}
#endif
#endif
