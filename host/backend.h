/*
 * backend.h: the op interface (STYLE.md 1.1-1.4). Every computation a model needs is an op; a backend is a
 * small table of function pointers; models call ops one at a time through rk_op().
 *
 * An op call carries the op, the destination, up to RK_MAX_SRC sources (NULL where optional and absent) and a
 * typed parameter struct. Tensors may be strided views (for example q/k/v as views into one fused QKV buffer);
 * each op's comment says what it requires.
 */
#ifndef RK_BACKEND_H
#define RK_BACKEND_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RK_MAX_SRC 6

enum rk_op {
    RK_OP_EMBED = 0,   /* dst(B,T,C) = wte[ids] + wpe[pos] + wtt[type_ids]                        */
    RK_OP_LAYERNORM,   /* dst(N,C) = LN(x (+ residual)) * w + b                                     */
    RK_OP_MATMUL,      /* dst(M,N) = x(M,K) @ w(N,K)^T (+ bias(N)), optional GELU epilogue          */
    RK_OP_GELU,        /* dst = gelu(x), erf form                                                    */
    RK_OP_ADD,         /* dst = a + b, same shape                                                    */
    RK_OP_SOFTMAX,     /* dst(N,C) = softmax over the last dim, scaled                              */
    RK_OP_ATTN_FWD,    /* dst(B,T,NH,HS) = softmax(q k^T * scale + mask) v                          */
    RK_OP_POOL,        /* dst(B,C) = pool of x(B,T,C) over valid tokens                             */
    RK_OP_L2NORM,      /* dst(N,C) = x / max(||x||_2, eps) per row                                  */
    /* backward ops and losses (tests/test_grad.c checks each against finite differences) */
    RK_OP_MATMUL_BWD,    /* dx = dout w; dw (+)= dout^T x; db (+)= colsum(dout)                        */
    RK_OP_GELU_BWD,      /* dx = dout * gelu'(x), erf form                                             */
    RK_OP_LAYERNORM_BWD, /* dx (of x + residual), dw += , db +=                                        */
    RK_OP_SOFTMAX_BWD,   /* dx = scale * y * (dy - sum(dy * y))                                        */
    RK_OP_ATTN_BWD,      /* dq, dk, dv of ATTN_FWD (FlashAttention-2 backward, recomputes P from lse)  */
    RK_OP_EMBED_BWD,     /* dwte, dwpe, dwtt += scatter of dout                                        */
    RK_OP_POOL_BWD,      /* dx(B,T,C) from dout(B,C)                                                   */
    RK_OP_BCE_LOGITS,    /* loss = mean BCE-with-logits, and dlogits                                   */
    RK_OP_SOFTMAX_XENT,  /* loss = mean cross-entropy over non-ignored rows, and dlogits               */
    RK_OP_DROPOUT,       /* y = x * keep / (1 - p), keep from Philox4x32-10(seed, offset); also its bwd */
    RK_OP_TANH,          /* dst = tanh(x) (the BERT pooler)                                            */
    RK_OP_TANH_BWD,      /* dx = dout * (1 - y^2), y = tanh(x) from the forward                        */
    RK_OP_FILL,          /* dst = value (zeroing gradients and accumulators on the device)             */
    /* quantized base weights and LoRA adapters (quant/, lora/) */
    RK_OP_NF4_MATMUL,    /* dst(M,N) = x(M,K) @ dequant(W4)^T (+ bias), W4 4-bit NF4/FP4 as bitsandbytes */
    RK_OP_LORA_FWD,      /* y(M,N) += s * (dropout(x) A^T) B^T; u = dropout(x) A^T kept                */
    RK_OP_LORA_BWD,      /* dA +=, dB +=, dx (+)= of LORA_FWD                                          */
    RK_OP_COUNT
};

extern const char * const rk_op_names[RK_OP_COUNT];

/* ---- per-op parameters ------------------------------------------------------------------------ */

/*
 * EMBED. src[0] wte (V,C); src[1] ids (B,T) i32; src[2] wpe (P,C) or NULL; src[3] wtt (NTT,C) or NULL;
 * src[4] type ids (B,T) i32 or NULL (then type 0). Position of token t is pos_offset + t.
 */
struct rk_embed_params {
    int64_t pos_offset;  /* 0 for BERT (HF adds padding_idx+1 for RoBERTa: set it here) */
};

/*
 * LAYERNORM. src[0] x (N,C); src[1] w (C); src[2] b (C) or NULL; src[3] residual (N,C) or NULL, added to x
 * before normalising (post-LN BERT: LN(h + sublayer(h))). dst (N,C) may alias x or residual.
 */
struct rk_layernorm_params {
    float eps;           /* 1e-12 for BERT */
};

enum rk_act { RK_ACT_NONE = 0, RK_ACT_GELU, RK_ACT_COUNT };

/*
 * MATMUL. src[0] x (M,K) rows contiguous; src[1] w (N,K), PyTorch Linear layout; src[2] bias (N) or NULL.
 * dst (M,N) = act(x w^T + bias (+ dst)). Shapes given as 2-D; a (B,T,C) tensor is passed as a 2-D view (B*T,C).
 * dst must not overlap x, w or bias.
 */
struct rk_matmul_params {
    enum rk_act act;     /* epilogue after the bias */
    bool accumulate;     /* dst's old value is added before the activation (a residual added in the GEMM's
                            epilogue: beta = 1), else dst is only written */
};

/* SOFTMAX. src[0] x (N,C); dst (N,C) = softmax(x * scale) along C. */
struct rk_softmax_params {
    float scale;
};

/*
 * ATTN_FWD. Logical shapes (B, NH, T, HS) with arbitrary byte strides, so views into a fused QKV buffer work
 * without copies:
 *   src[0] q (B, NH,  Tq, HS)
 *   src[1] k (B, NKV, Tk, HS)     NH % NKV == 0 (grouped-query: head h reads kv head h / (NH/NKV))
 *   src[2] v (B, NKV, Tk, HS)
 *   src[3] key padding mask (B, Tk) i32, 1 = attend, 0 = padding; or NULL (all valid)
 *   dst    (B, NH, Tq, HS) strided likewise
 *   src[4] (optional, output) lse (B, NH, Tq) f32: the logsumexp of each row's scaled scores, for backward
 * A query row with no key to attend to (fully padded) gets zeros and lse = -inf.
 * Causal: query i (at absolute position q_offset + i) may attend keys j <= q_offset + i.
 * Sliding window w > 0: additionally j > q_offset + i - w (Mistral semantics).
 */
struct rk_attn_params {
    float   scale;       /* usually 1/sqrt(HS) */
    bool    causal;
    int64_t window;      /* 0 = no sliding window */
    int64_t q_offset;    /* absolute position of query row 0 (KV-cache decoding); 0 otherwise */
};

enum rk_pool_mode { RK_POOL_CLS = 0, RK_POOL_MEAN, RK_POOL_MAX, RK_POOL_LAST, RK_POOL_COUNT };

/*
 * POOL. src[0] x (B,T,C); src[1] mask (B,T) i32 (1 = real token) or NULL; dst (B,C).
 * CLS: token 0. MEAN: mean over masked tokens. MAX: max over masked tokens. LAST: the last masked token
 * (right padding). A row with no valid token gives zeros.
 */
struct rk_pool_params {
    enum rk_pool_mode mode;
};

/* L2NORM. src[0] x (N,C); dst (N,C); eps as sentence-transformers (1e-12). */
struct rk_l2norm_params {
    float eps;
};

/* ---- backward ops and losses -------------------------------------------------------------------
 * Ops with more than one output pass the extra outputs among the sources (as ATTN_FWD does with lse) or,
 * where the sources are full (ATTN_BWD), in the typed params. "(+)=" marks an output that is accumulated.
 * All are f32 on the CPU. */

/*
 * MATMUL_BWD, the backward of MATMUL without activation (run GELU_BWD first for RK_ACT_GELU):
 *   src[0] dout (M,N) rows contiguous; src[1] x (M,K) rows contiguous; src[2] w (N,K) contiguous
 *   dst    dx (M,K) rows contiguous = dout @ w           (not touched when skip_dx; data may then be NULL)
 *   src[3] (output) dw (N,K) contiguous = dout^T @ x, or NULL
 *   src[4] (output) db (N) = sum of dout's rows, or NULL
 */
struct rk_matmul_bwd_params {
    bool accumulate;     /* dw += and db += (gradient accumulation over micro-batches / shared weights) */
    bool dx_accumulate;  /* dx += (a residual stream that already holds a gradient); else dx = */
    bool skip_dx;        /* the input needs no gradient (frozen first layer) */
};

/*
 * GELU_BWD. src[0] dout; src[1] x, the pre-activation; dst dx = dout * (Phi(x) + x phi(x)). Same shape,
 * contiguous; dst may alias dout. No params.
 *
 * LAYERNORM_BWD. Backward of LAYERNORM; mean and rstd are recomputed from the forward's inputs (the forward
 * contract is unchanged), so those inputs must still hold their values: a training forward must not run
 * LAYERNORM in place over x or residual.
 *   src[0] dout (N,C); src[1] x (N,C); src[2] w (C); src[3] residual (N,C) or NULL, as in the forward
 *   dst    dx (N,C): the gradient of the normalised sum x + residual, which is the gradient of x and of
 *          residual alike (the caller adds it to both branches). Overwritten; may alias dout.
 *   src[4] (output) dw (C) +=, or NULL;   src[5] (output) db (C) +=, or NULL
 *   params: struct rk_layernorm_params (the forward's eps)
 *
 * SOFTMAX_BWD. src[0] dy (N,C); src[1] y (N,C), the forward's output; dst dx (N,C), may alias dy.
 *   dx = scale * y * (dy - sum_c dy*y). params: struct rk_softmax_params (the forward's scale).
 */

/*
 * ATTN_BWD: the CPU reference of the FlashAttention-2 backward. Same strided (B,NH,T,HS) views and the same
 * masking rules as ATTN_FWD:
 *   src[0] q (B,NH,Tq,HS); src[1] k (B,NKV,Tk,HS); src[2] v (B,NKV,Tk,HS)
 *   src[3] o (B,NH,Tq,HS), the forward output; src[4] dout (B,NH,Tq,HS); src[5] lse (B,NH,Tq) f32 contiguous
 *   dst    dq (B,NH,Tq,HS), overwritten
 *   params.mask (B,Tk) i32 or NULL; params.dk, params.dv (B,NKV,Tk,HS), overwritten; with grouped-query heads
 *   they hold the sum over the NH/NKV query heads that read each kv head.
 * P is recomputed as exp(s - lse); D = rowsum(dout * o); dP = dout v^T; dS = P (dP - D);
 * dq = scale dS k; dk = scale dS^T q; dv = P^T dout. A query row with lse = -inf (no valid key) contributes
 * nothing and gets dq = 0.
 */
struct rk_attn_bwd_params {
    struct rk_attn_params    attn;   /* exactly the forward's params */
    const struct rk_tensor * mask;
    struct rk_tensor *       dk;
    struct rk_tensor *       dv;
};

/*
 * EMBED_BWD. src[0] dout (B,T,C); src[1] ids (B,T) i32; src[2] type ids (B,T) i32 or NULL (type 0)
 *   dst    dwte (V,C) += dout rows scattered by id (repeated ids add up)
 *   src[3] (output) dwpe (P,C) += , or NULL;  src[4] (output) dwtt (NTT,C) +=, or NULL
 *   params: struct rk_embed_params (the forward's pos_offset). Deterministic: each channel range is summed
 *   by one thread over the tokens in order. RK_STATUS_ARG when an id is out of range (nothing written); the CUDA
 *   backend cannot check ids on the device and skips such tokens instead (kernels/cuda_train_ops.h).
 *
 * POOL_BWD. src[0] dout (B,C); src[1] x (B,T,C), the forward input (MAX needs it); src[2] mask (B,T) i32 or NULL
 *   dst    dx (B,T,C), overwritten (zero where a token got no gradient). params: struct rk_pool_params.
 *   MAX sends the gradient to the first token holding the maximum (ties: the lowest t).
 *
 * BCE_LOGITS (torch.nn.BCEWithLogitsLoss, reduction "mean"):
 *   src[0] logits (N,L); src[1] targets (N,L) f32 (0/1, soft targets allowed); src[2] pos_weight (L) or NULL
 *   dst    loss (1) f32 = mean over N*L of pw*y*softplus(-x) + (1-y)*softplus(x)
 *   src[3] (output) dlogits (N,L) = d loss / d logits, or NULL; may alias logits. No params.
 *
 * SOFTMAX_XENT (torch.nn.CrossEntropyLoss, reduction "mean", ignore_index RK_XENT_IGNORE_INDEX):
 *   src[0] logits (N,V) rows contiguous; src[1] targets (N) i32
 *   dst    loss (1) f32 = mean over the non-ignored rows of logsumexp(x) - x[target] (0 when all are ignored,
 *          where torch gives NaN)
 *   src[2] (output) dlogits (N,V) = d loss / d logits (zero rows for ignored targets), or NULL; may alias logits.
 *   RK_STATUS_ARG for a target outside [0,V) that is not the ignore index (CUDA, which cannot check device targets:
 *   NaN loss and a NaN dlogits row). No params.
 */
#define RK_XENT_IGNORE_INDEX (-100)

/* BCE_LOGITS and SOFTMAX_XENT: dlogits_scale multiplies dlogits (not the loss): dynamic loss scaling for fp16
 * training. 0 (a zero-initialised call) means 1. */
struct rk_loss_params {
    float dlogits_scale;
};

/* The multiplier a backend applies: dlogits_scale, or 1 when it is 0. */
static inline float rk_loss_dlogits_scale(const struct rk_loss_params * p) {
    return p->dlogits_scale == 0.0f ? 1.0f : p->dlogits_scale;
}

/*
 * DROPOUT. src[0] x; dst y (same shape, contiguous, may alias x): y = x * keep / (1 - p), where element i is
 * kept when the uniform drawn for it from Philox4x32-10 (key = seed, counter = (i / 4, offset)) is >= p.
 * Nothing is stored: the backward is this same op applied to dout with the same (p, seed, offset).
 * Use a fresh offset per call site and step. p = 0 copies; p = 1 gives zeros.
 */
struct rk_dropout_params {
    float    p;
    uint64_t seed;
    uint64_t offset;
};

/*
 * TANH. src[0] x; dst = tanh(x); same shape, rows contiguous; dst may alias x. No params.
 * TANH_BWD. src[0] dout; src[1] y, the forward's OUTPUT; dst dx = dout * (1 - y*y); dst may alias dout.
 * FILL. dst (rows contiguous, any float dtype or i32) = value. No sources.
 */
struct rk_fill_params {
    float value;
};

/*
 * NF4_MATMUL: a linear layer over a frozen 4-bit weight (bitsandbytes Linear4bit, quant/nf4.h).
 *   src[0] x (M,K) rows contiguous; src[1] bias (N) or NULL; dst (M,N) rows contiguous, x's dtype
 *   params.w: the weight (N,K) as it lives on the backend (device pointers on CUDA): packed nibbles, fp32 absmax
 *   per block (a double-quantized checkpoint's absmax is expanded to fp32 once at load: 0.5 bit/weight instead of
 *   0.127, a trade for a simpler kernel), the 16 levels of its kind. rk_nf4_weight_upload (quant/nf4.h) makes one
 *   from a loaded struct rk_nf4_tensor on any backend.
 *   dst = x @ dequant(W)^T (+ bias), then act; dequant(W) is code[nibble] * absmax in fp32, rounded to the
 *   activation dtype before the product (bitsandbytes dequantizes to the compute dtype the same way).
 *   params.scratch: (N*K) elements of x's dtype, or NULL: where a backend dequantizes W whole before a dense
 *   GEMM (CUDA at M > RK_NF4_GEMV_MAX_B = 8, quant/nf4_cuda.h); RK_STATUS_ARG when that path is needed and scratch
 *   is too small. The CPU never needs it (it dequantizes a few rows at a time). dst must not overlap x or scratch.
 */
struct rk_quant4_weight {
    int             kind;       /* enum rk_quant4_kind (quant/nf4.h): 0 NF4, 1 FP4 */
    int64_t         n_rows;     /* N, out_features */
    int64_t         n_cols;     /* K, in_features */
    int64_t         blocksize;  /* 64 */
    const uint8_t * packed;     /* (N*K + 1) / 2 bytes, first element in the high nibble */
    const float *   absmax;     /* (ceil(N*K / blocksize)) fp32 */
};

struct rk_nf4_matmul_params {
    const struct rk_quant4_weight * w;
    enum rk_act                     act;
    void *                          scratch;
    size_t                          scratch_bytes;
};

/*
 * LORA_FWD, the adapter half of an adapted linear layer (the base product is a MATMUL or NF4_MATMUL into y first):
 *   src[0] x (M,K) rows contiguous; src[1] A (r,K); src[2] B (N,r); A and B contiguous, x's dtype
 *   dst    y (M,N) rows contiguous: y += s * u B^T
 *   src[3] (output) u (M,r) contiguous = dropout(x) A^T, kept for the backward (may be NULL for inference)
 *   dropout: element (m,k) of x is kept with the DROPOUT op's rule for flat index m*K + k (Philox; p = 0: none).
 *   x is read once: u is formed per row tile and B applied from registers/shared memory (one launch on CUDA).
 *   Backends: CPU f32, dense tensors (lora/lora_cpu.c); CUDA f16/bf16, r <= 64, rows with any row stride for x and
 *   y (lora/lora.cu, where u is rounded to the dtype before it multiplies B, as PEFT's 16-bit forward does).
 *
 * LORA_BWD:
 *   src[0] dy (M,N); src[1] x (M,K); src[2] u (M,r) from the forward; src[3] A (r,K); src[4] B (N,r)
 *   dst    dx (M,K) +=  s * ((dy B) A) * keep/(1-p)   (dst->data NULL: no input gradient; rk_op needs the struct)
 *   params.dA (r,K) += s * (dy B)^T dropout(x);  params.dB (N,r) += s * dy^T u; either may be NULL (not wanted).
 *   On CUDA dA and dB may be f32 (master gradients) or x's dtype; the backend keeps a scratch buffer for the
 *   deterministic partial sums (grown on first use, freed with the backend).
 *   The frozen base's dx term (dy W) is the caller's MATMUL_BWD / NF4 product; this op adds the adapter's.
 */
struct rk_lora_params {
    float                 scale;   /* alpha / r, or alpha / sqrt(r) (rsLoRA) */
    float                 dropout; /* lora_dropout p */
    uint64_t              seed;    /* dropout key */
    uint64_t              offset;  /* dropout counter offset: the same in the forward and its backward */
    struct rk_tensor *    dA;      /* LORA_BWD only */
    struct rk_tensor *    dB;      /* LORA_BWD only */
};

struct rk_op_call {
    enum rk_op               op;
    struct rk_tensor *       dst;
    const struct rk_tensor * src[RK_MAX_SRC];
    union {
        struct rk_embed_params     embed;
        struct rk_layernorm_params layernorm;
        struct rk_matmul_params    matmul;
        struct rk_softmax_params   softmax;
        struct rk_attn_params      attn;
        struct rk_pool_params      pool;
        struct rk_l2norm_params    l2norm;
        struct rk_matmul_bwd_params matmul_bwd;
        struct rk_attn_bwd_params   attn_bwd;
        struct rk_dropout_params    dropout;
        struct rk_fill_params       fill;
        struct rk_loss_params       loss;
        struct rk_nf4_matmul_params nf4_matmul;
        struct rk_lora_params       lora;
    } p;
};

/* ---- backends --------------------------------------------------------------------------------- */

enum rk_device { RK_DEVICE_CPU = 0, RK_DEVICE_CUDA, RK_DEVICE_COUNT };

struct rk_backend {
    const char *   name;
    enum rk_device device;
    /* preferred dtype for activations and converted weights (f32 on the CPU, bf16/f16 on CUDA) */
    enum rk_dtype  act_dtype;
    bool           (*supports_op)(struct rk_backend * be, const struct rk_op_call * call);
    enum rk_status (*compute)(struct rk_backend * be, const struct rk_op_call * call);
    void *         (*alloc)(struct rk_backend * be, size_t nbytes);   /* NULL on failure */
    void           (*free)(struct rk_backend * be, void * ptr);
    enum rk_status (*copy_to_device)(struct rk_backend * be, void * dst, const void * src_host, size_t n);
    enum rk_status (*copy_to_host)(struct rk_backend * be, void * dst_host, const void * src, size_t n);
    enum rk_status (*synchronize)(struct rk_backend * be);
    void           (*destroy)(struct rk_backend * be);
    void *         ctx;
};

/* The CPU backend; threads <= 0 means all cores. Returns NULL only on allocation failure. */
struct rk_backend * rk_backend_cpu_init(int threads);
/* The CUDA backend on device `device`; NULL with the error set when none is usable or the build has no CUDA. */
struct rk_backend * rk_backend_cuda_init(int device);
/* True when this build has the CUDA backend compiled in. */
bool rk_backend_cuda_compiled(void);

/*
 * Picks a backend from a --device string: "cpu", "cuda" (fails with the error set when no GPU) or "auto"
 * (CUDA when present, else the CPU, printing once to stderr that no GPU was found). threads applies to the CPU.
 */
struct rk_backend * rk_backend_from_name(const char * name, int threads);
void rk_backend_free(struct rk_backend * be); /* NULL is fine */

/*
 * Runs one op on be: checks supports_op, returns RK_STATUS_UNSUPPORTED when not supported, else compute().
 */
enum rk_status rk_op(struct rk_backend * be, const struct rk_op_call * call);

/* ---- op-call shorthands for model code (C only: CUDA translation units call launchers directly) ---- */
#ifndef __cplusplus

/* RK_OP_MATMUL: dst = x w^T (+ b), then act. */
static inline enum rk_status rk_op_matmul(struct rk_backend * be, struct rk_tensor * dst, const struct rk_tensor * x,
                                          const struct rk_tensor * w, const struct rk_tensor * b, enum rk_act act) {
    struct rk_op_call c = { .op = RK_OP_MATMUL, .dst = dst, .src = { x, w, b } };
    c.p.matmul.act      = act;
    return rk_op(be, &c);
}

/* RK_OP_MATMUL with accumulate: dst += x w^T (+ b) (the residual added by the GEMM itself). */
static inline enum rk_status rk_op_matmul_add(struct rk_backend * be, struct rk_tensor * dst, const struct rk_tensor * x,
                                              const struct rk_tensor * w, const struct rk_tensor * b) {
    struct rk_op_call c    = { .op = RK_OP_MATMUL, .dst = dst, .src = { x, w, b } };
    c.p.matmul.accumulate = true;
    return rk_op(be, &c);
}

/* RK_OP_LAYERNORM: dst = LN(x (+ res)) * w + b. */
static inline enum rk_status rk_op_layernorm(struct rk_backend * be, struct rk_tensor * dst, const struct rk_tensor * x,
                                             const struct rk_tensor * w, const struct rk_tensor * b,
                                             const struct rk_tensor * res, float eps) {
    struct rk_op_call c = { .op = RK_OP_LAYERNORM, .dst = dst, .src = { x, w, b, res } };
    c.p.layernorm.eps   = eps;
    return rk_op(be, &c);
}
#endif

#ifdef __cplusplus
}
#endif
#endif
