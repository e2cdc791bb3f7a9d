/*
 * tensor.c: tensor construction, views and host<->backend copies.
 */
#include "backend.h"
#include "check.h"

#include <string.h>

int64_t rk_tensor_nelements(const struct rk_tensor * t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

size_t rk_tensor_nbytes(const struct rk_tensor * t) {
    return rk_dtype_row_size(t->dtype, rk_tensor_nelements(t));
}

bool rk_tensor_is_contiguous(const struct rk_tensor * t) {
    int64_t expect = (int64_t) rk_dtype_traits[t->dtype].type_size / rk_dtype_traits[t->dtype].blck_size;
    if (rk_dtype_traits[t->dtype].is_quantized) return true; /* quantized tensors are always dense */
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->ne[i] != 1 && t->nb[i] != expect) return false;
        expect *= t->ne[i];
    }
    return true;
}

void rk_tensor_init(struct rk_tensor * t, enum rk_dtype dtype, int ndim, const int64_t * ne, const char * name) {
    RK_ASSERT(ndim >= 1 && ndim <= RK_MAX_DIMS);
    memset(t, 0, sizeof(*t));
    t->dtype = dtype;
    t->ndim  = ndim;
    for (int i = 0; i < RK_MAX_DIMS; i++) t->ne[i] = i < ndim ? ne[i] : 1;
    const struct rk_dtype_traits * tr = &rk_dtype_traits[dtype];
    /* plain types: the innermost stride is the element size; quantized types are dense blocks, addressed by rows
       only, so their innermost stride is 0 and a row is rk_dtype_row_size bytes */
    t->nb[ndim - 1] = tr->is_quantized ? 0 : (int64_t) tr->type_size;
    int64_t stride  = tr->is_quantized ? (int64_t) rk_dtype_row_size(dtype, ne[ndim - 1])
                                       : (int64_t) tr->type_size * ne[ndim - 1];
    for (int i = ndim - 2; i >= 0; i--) {
        t->nb[i] = stride;
        stride *= ne[i];
    }
    for (int i = ndim; i < RK_MAX_DIMS; i++) t->nb[i] = t->nb[ndim - 1];
    if (name) snprintf(t->name, sizeof(t->name), "%s", name);
}

struct rk_tensor * rk_tensor_new(struct rk_backend * be, enum rk_dtype dtype, int ndim, const int64_t * ne,
                                 const char * name) {
    RK_ASSERT(be != NULL);
    struct rk_tensor * t = rk_xcalloc(1, sizeof(*t));
    rk_tensor_init(t, dtype, ndim, ne, name);
    size_t n = rk_tensor_nbytes(t);
    t->data  = be->alloc(be, n);
    if (!t->data) {
        free(t);
        rk_set_error(RK_STATUS_OOM, "%s: cannot allocate %zu bytes for tensor '%s'", be->name, n, name ? name : "");
        return NULL;
    }
    t->backend   = be;
    t->owns_data = true;
    return t;
}

void rk_tensor_free(struct rk_tensor * t) {
    if (!t) return;
    if (t->owns_data && t->backend && t->data) t->backend->free(t->backend, t->data);
    free(t);
}

struct rk_tensor rk_tensor_view(const struct rk_tensor * t, int ndim, const int64_t * ne, const int64_t * nb,
                                size_t offset) {
    RK_ASSERT(ndim >= 1 && ndim <= RK_MAX_DIMS);
    struct rk_tensor v = *t;
    v.ndim      = ndim;
    v.owns_data = false;
    for (int i = 0; i < RK_MAX_DIMS; i++) {
        v.ne[i] = i < ndim ? ne[i] : 1;
        v.nb[i] = i < ndim ? nb[i] : nb[ndim - 1];
    }
    v.data = (char *) t->data + offset;
    return v;
}

struct rk_tensor rk_tensor_host(void * data, enum rk_dtype dtype, int ndim, const int64_t * ne) {
    struct rk_tensor t;
    rk_tensor_init(&t, dtype, ndim, ne, NULL);
    t.data = data;
    return t;
}

enum rk_status rk_tensor_set(struct rk_tensor * t, const void * src, size_t n) {
    if (n != rk_tensor_nbytes(t)) {
        return rk_set_error(RK_STATUS_ARG, "tensor '%s': set of %zu bytes, tensor holds %zu", t->name, n,
                            rk_tensor_nbytes(t));
    }
    if (!t->backend) {
        memcpy(t->data, src, n);
        return RK_OK;
    }
    return t->backend->copy_to_device(t->backend, t->data, src, n);
}

enum rk_status rk_tensor_get(const struct rk_tensor * t, void * dst, size_t n) {
    if (n != rk_tensor_nbytes(t)) {
        return rk_set_error(RK_STATUS_ARG, "tensor '%s': get of %zu bytes, tensor holds %zu", t->name, n,
                            rk_tensor_nbytes(t));
    }
    if (!t->backend) {
        memcpy(dst, t->data, n);
        return RK_OK;
    }
    return t->backend->copy_to_host(t->backend, dst, t->data, n);
}

enum rk_status rk_tensor_get_f32(const struct rk_tensor * t, float * dst) {
    const struct rk_dtype_traits * tr = &rk_dtype_traits[t->dtype];
    if (!tr->to_f32) return rk_set_error(RK_STATUS_UNSUPPORTED, "tensor '%s': no f32 view of %s", t->name, tr->name);
    int64_t n = rk_tensor_nelements(t);
    if (t->dtype == RK_DTYPE_F32) return rk_tensor_get(t, dst, (size_t) n * 4);
    size_t nb  = rk_tensor_nbytes(t);
    void * tmp = rk_xmalloc(nb);
    enum rk_status s = rk_tensor_get(t, tmp, nb);
    if (s == RK_OK) tr->to_f32(tmp, dst, n);
    free(tmp);
    return s;
}

enum rk_status rk_tensor_set_f32(struct rk_tensor * t, const float * src) {
    const struct rk_dtype_traits * tr = &rk_dtype_traits[t->dtype];
    if (!tr->from_f32) return rk_set_error(RK_STATUS_UNSUPPORTED, "tensor '%s': cannot store f32 as %s", t->name, tr->name);
    int64_t n = rk_tensor_nelements(t);
    if (t->dtype == RK_DTYPE_F32) return rk_tensor_set(t, src, (size_t) n * 4);
    size_t nb  = rk_tensor_nbytes(t);
    void * tmp = rk_xmalloc(nb);
    tr->from_f32(src, tmp, n);
    enum rk_status s = rk_tensor_set(t, tmp, nb);
    free(tmp);
    return s;
}
