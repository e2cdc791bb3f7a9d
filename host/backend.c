/*
 * backend.c: the op dispatcher entry (rk_op), op names, and backend selection from --device.
 */
#include "backend.h"
#include "check.h"

#include <stdio.h>
#include <string.h>

const char * const rk_op_names[RK_OP_COUNT] = {
    [RK_OP_EMBED]     = "EMBED",
    [RK_OP_LAYERNORM] = "LAYERNORM",
    [RK_OP_MATMUL]    = "MATMUL",
    [RK_OP_GELU]      = "GELU",
    [RK_OP_ADD]       = "ADD",
    [RK_OP_SOFTMAX]   = "SOFTMAX",
    [RK_OP_ATTN_FWD]  = "ATTN_FWD",
    [RK_OP_POOL]      = "POOL",
    [RK_OP_L2NORM]    = "L2NORM",
    [RK_OP_MATMUL_BWD]    = "MATMUL_BWD",
    [RK_OP_GELU_BWD]      = "GELU_BWD",
    [RK_OP_LAYERNORM_BWD] = "LAYERNORM_BWD",
    [RK_OP_SOFTMAX_BWD]   = "SOFTMAX_BWD",
    [RK_OP_ATTN_BWD]      = "ATTN_BWD",
    [RK_OP_EMBED_BWD]     = "EMBED_BWD",
    [RK_OP_POOL_BWD]      = "POOL_BWD",
    [RK_OP_BCE_LOGITS]    = "BCE_LOGITS",
    [RK_OP_SOFTMAX_XENT]  = "SOFTMAX_XENT",
    [RK_OP_DROPOUT]       = "DROPOUT",
    [RK_OP_TANH]          = "TANH",
    [RK_OP_TANH_BWD]      = "TANH_BWD",
    [RK_OP_FILL]          = "FILL",
    [RK_OP_NF4_MATMUL]    = "NF4_MATMUL",
    [RK_OP_LORA_FWD]      = "LORA_FWD",
    [RK_OP_LORA_BWD]      = "LORA_BWD",
};
_Static_assert(sizeof(rk_op_names) / sizeof(rk_op_names[0]) == RK_OP_COUNT, "rk_op_names out of date");

enum rk_status rk_op(struct rk_backend * be, const struct rk_op_call * call) {
    RK_ASSERT(be != NULL && call != NULL && call->dst != NULL);
    RK_ASSERT(call->op >= 0 && call->op < RK_OP_COUNT);
    if (!be->supports_op(be, call)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s backend: op %s on dtype %s is not supported", be->name,
                            rk_op_names[call->op], rk_dtype_traits[call->dst->dtype].name);
    }
    return be->compute(be, call);
}

struct rk_backend * rk_backend_from_name(const char * name, int threads) {
    if (!name || strcmp(name, "auto") == 0) {
        struct rk_backend * be = NULL;
        if (rk_backend_cuda_compiled()) be = rk_backend_cuda_init(0);
        if (be) return be;
        static bool said;
        if (!said) {
            fprintf(stderr, "rk: no usable GPU (%s); running on the CPU\n",
                    rk_backend_cuda_compiled() ? rk_last_error() : "this build has no CUDA backend");
            said = true;
        }
        rk_clear_error();
        return rk_backend_cpu_init(threads);
    }
    if (strcmp(name, "cpu") == 0) return rk_backend_cpu_init(threads);
    if (strcmp(name, "cuda") == 0) return rk_backend_cuda_init(0);
    rk_set_error(RK_STATUS_ARG, "--device: unknown device '%s' (expected auto, cpu or cuda)", name);
    return NULL;
}

void rk_backend_free(struct rk_backend * be) {
    if (be && be->destroy) be->destroy(be);
}
