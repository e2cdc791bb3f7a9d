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
 * dst (M,N). Shapes given as 2-D; a (B,T,C) tensor is passed as a 2-D view (B*T,C).
 */
struct rk_matmul_params {
    enum rk_act act;     /* epilogue after the bias */
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

#ifdef __cplusplus
}
#endif
#endif
