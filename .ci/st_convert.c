/*
 * st_convert: rewrites a .safetensors file with every tensor of one float dtype stored in another, then checks the
 * result. Used by .ci/device_embed_prep.sh to make a bf16 copy of all-MiniLM-L6-v2 small enough to carry to a lent
 * GPU machine (90 MB f32 -> 45 MB bf16).
 *
 *   build/st_convert [--from f32] [--to bf16|f16] SRC DST        (make build/st_convert)
 *
 * The conversion is rk_safetensors_convert (io/safetensors_write.h): rk_dtype_traits' from_f32, round to nearest
 * even, the function rk_tensor_set_f32 uses when the model loader (host/models/bert.c, place) puts f32 weights into
 * the CUDA backend's bf16 (sm_80+) or f16 (sm_75) tensors. After writing, DST is opened with rk's loader and compared
 * with SRC tensor by tensor: each converted tensor must hold exactly the bytes the loader's path gives from SRC
 * (rk_safetensors_read_f32, then rk_tensor_set_f32 into a tensor of the target dtype) and must come back unchanged
 * through the same path from DST (so loading DST or SRC gives a 16-bit backend the same weights); every other tensor
 * must be byte-identical, and the metadata equal. Exit 0 when written and checked; 1 with one line on stderr naming
 * the file otherwise.
 */
#include "check.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "rk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char * msg) {
    fprintf(stderr, "st_convert: %s\n", msg);
    exit(1);
}

static bool parse_dtype(const char * s, enum rk_dtype * out) {
    const enum rk_dtype ok[] = { RK_DTYPE_F32, RK_DTYPE_F16, RK_DTYPE_BF16 };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(s, rk_dtype_traits[ok[i]].name) == 0) {
            *out = ok[i];
            return true;
        }
    }
    return false;
}

/* What the model loader stores for entry e in a tensor of dtype `to`: read as f32, then rk_tensor_set_f32. */
static enum rk_status loader_bytes(const struct rk_st_entry * e, enum rk_dtype to, void * out) {
    const int64_t n   = rk_st_entry_nelements(e);
    float *       f32 = rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(float));
    enum rk_status s  = rk_safetensors_read_f32(NULL, e, f32, n);
    if (s == RK_OK) {
        struct rk_tensor t = rk_tensor_host(out, to, 1, (int64_t[]) { n });
        s = rk_tensor_set_f32(&t, f32);
    }
    free(f32);
    return s;
}

/* Compares dst with src as described in the file comment. */
static enum rk_status check(const char * src_path, const char * dst_path, enum rk_dtype from, enum rk_dtype to) {
    struct rk_safetensors * src = NULL, * dst = NULL;
    RK_TRY(rk_safetensors_open(src_path, &src));
    enum rk_status s = rk_safetensors_open(dst_path, &dst);
    if (s != RK_OK) {
        rk_safetensors_close(src);
        return s;
    }
    if (dst->n != src->n) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: %lld tensors, %s has %lld", dst_path, (long long) dst->n, src_path,
                         (long long) src->n);
    }
    for (int64_t i = 0; i < src->n_meta && s == RK_OK; i++) {
        const char * v = rk_safetensors_meta(dst, src->meta_keys[i]);
        if (!v || strcmp(v, src->meta_values[i]) != 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: metadata '%s' differs from %s", dst_path, src->meta_keys[i],
                             src_path);
        }
    }
    if (s == RK_OK && dst->n_meta != src->n_meta) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: %lld metadata pairs, %s has %lld", dst_path, (long long) dst->n_meta,
                         src_path, (long long) src->n_meta);
    }
    for (int64_t i = 0; i < src->n && s == RK_OK; i++) {
        const struct rk_st_entry * a = &src->entries[i];
        const struct rk_st_entry * b = rk_safetensors_find(dst, a->name);
        if (!b) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' missing", dst_path, a->name);
            break;
        }
        bool same_shape = a->ndim == b->ndim;
        for (int d = 0; same_shape && d < a->ndim; d++) same_shape = a->shape[d] == b->shape[d];
        const bool          conv = a->dtype == from && from != to;
        const enum rk_dtype want = conv ? to : a->dtype;
        if (!same_shape || b->dtype != want) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': dtype %s / shape differ from %s (expected %s)",
                             dst_path, a->name, rk_dtype_traits[b->dtype].name, src_path, rk_dtype_traits[want].name);
            break;
        }
        if (!conv) {
            if (a->nbytes != b->nbytes || memcmp(a->data, b->data, a->nbytes) != 0) {
                s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' is not byte-identical to %s", dst_path, a->name,
                                 src_path);
            }
            continue;
        }
        uint8_t * from_src = rk_xmalloc(b->nbytes + 1), * from_dst = rk_xmalloc(b->nbytes + 1);
        s = loader_bytes(a, to, from_src);
        if (s == RK_OK) s = loader_bytes(b, to, from_dst);
        if (s == RK_OK && memcmp(b->data, from_src, b->nbytes) != 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' differs from the loader's %s rounding of %s", dst_path,
                             a->name, rk_dtype_traits[to].name, src_path);
        }
        if (s == RK_OK && memcmp(from_dst, from_src, b->nbytes) != 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' does not load to the same %s weights as %s", dst_path,
                             a->name, rk_dtype_traits[to].name, src_path);
        }
        free(from_src);
        free(from_dst);
    }
    rk_safetensors_close(src);
    rk_safetensors_close(dst);
    return s;
}

int main(int argc, char ** argv) {
    enum rk_dtype from = RK_DTYPE_F32, to = RK_DTYPE_BF16;
    const char *  paths[2];
    int           n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--from") == 0 || strcmp(argv[i], "--to") == 0) && i + 1 < argc) {
            if (!parse_dtype(argv[i + 1], argv[i][2] == 'f' ? &from : &to)) die("--from/--to: expected f32, f16 or bf16");
            i++;
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: st_convert [--from f32] [--to bf16|f16] SRC DST\n");
            return 0;
        } else if (argv[i][0] == '-' || n_paths == 2) {
            char m[300];
            snprintf(m, sizeof(m), "unexpected argument '%.200s' (usage: st_convert [--from f32] [--to bf16] SRC DST)",
                     argv[i]);
            die(m);
        } else {
            paths[n_paths++] = argv[i];
        }
    }
    if (n_paths != 2) die("expected SRC and DST (usage: st_convert [--from f32] [--to bf16] SRC DST)");
    if (from == to) die("--from and --to are the same dtype");
    char * rsrc = realpath(paths[0], NULL), * rdst = realpath(paths[1], NULL);
    const bool same = strcmp(paths[0], paths[1]) == 0 || (rsrc && rdst && strcmp(rsrc, rdst) == 0);
    free(rsrc);
    free(rdst);
    if (same) die("SRC and DST are the same file (the check compares DST with the original)");
    int64_t n_conv = 0;
    if (rk_safetensors_convert(paths[0], paths[1], from, to, &n_conv) != RK_OK) die(rk_last_error());
    if (check(paths[0], paths[1], from, to) != RK_OK) die(rk_last_error());
    printf("st_convert: %s -> %s: %lld tensors %s -> %s; checked: each equals the loader's %s rounding of the "
           "original and loads back unchanged, every other tensor and the metadata are identical\n",
           paths[0], paths[1], (long long) n_conv, rk_dtype_traits[from].name, rk_dtype_traits[to].name,
           rk_dtype_traits[to].name);
    return 0;
}
