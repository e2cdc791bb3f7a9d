/*
 * test_checkpoint.c: the safetensors writer (io/safetensors_write.h), checked with our reader, and training
 * checkpoint folders (train/checkpoint.h): round trips, exact bytes, errors and the crash-recovery path; converting a
 * file's f32 tensors to bf16 (rk_safetensors_convert).
 *
 * The Python side (that the files load with the `safetensors` package, byte-identical to what it writes) is
 * checked by tests/golden/gen_checkpoint_check.py, run by hand.
 */
#include "test_util.h"

#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "train/checkpoint.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------------------------------
 * helpers */

static uint8_t * read_all(const char * path, size_t * n) {
    FILE * f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t * b = malloc((size_t) len + 1);
    cr_assert(fread(b, 1, (size_t) len, f) == (size_t) len);
    fclose(f);
    *n = (size_t) len;
    return b;
}

/* Number of entries in dir whose name contains needle. */
static int count_entries(const char * dir, const char * needle) {
    DIR * dp = opendir(dir);
    cr_assert(dp != NULL, "cannot open %s", dir);
    int             n = 0;
    struct dirent * de;
    while ((de = readdir(dp)) != NULL) n += strstr(de->d_name, needle) != NULL;
    closedir(dp);
    return n;
}

static void assert_one_line(const char * msg) {
    cr_assert(strlen(msg) > 0);
    cr_assert(strchr(msg, '\n') == NULL, "error is not one line: %s", msg);
}

static struct rk_named_buffer nb(const char * name, enum rk_dtype dt, int ndim, int64_t d0, int64_t d1, int64_t d2,
                                 int64_t d3, void * data) {
    struct rk_named_buffer b = { name, dt, ndim, { d0, d1, d2, d3 }, data };
    return b;
}

/* ------------------------------------------------------------------------------------------------
 * writer */

/* The seven test tensors: every dtype, a scalar, 1-element, 3-D, 4-D and 0-size shapes. */
static float    w_f32[2 * 3 * 5];
static uint16_t w_f16[1];
static uint16_t w_bf16[7];
static int32_t  w_i32[1];
static int64_t  w_i64[4 * 1 * 2 * 1];
static uint8_t  w_u8[13];

static int fill_tensors(struct rk_named_buffer * b) {
    for (int i = 0; i < 30; i++) w_f32[i] = (float) i * 0.37f - 3.0f;
    w_f16[0] = rk_f32_to_f16(-1.5f);
    for (int i = 0; i < 7; i++) w_bf16[i] = rk_f32_to_bf16((float) i / 3.0f);
    w_i32[0] = -123456;
    for (int i = 0; i < 8; i++) w_i64[i] = (int64_t) 1 << (8 * i % 63);
    for (int i = 0; i < 13; i++) w_u8[i] = (uint8_t) (i * 19);
    int n = 0;
    b[n++] = nb("encoder.layer.0.weight", RK_DTYPE_F32, 3, 2, 3, 5, 1, w_f32);
    b[n++] = nb("one_f16", RK_DTYPE_F16, 1, 1, 1, 1, 1, w_f16);
    b[n++] = nb("bias_bf16", RK_DTYPE_BF16, 1, 7, 1, 1, 1, w_bf16);
    b[n++] = nb("scalar_i32", RK_DTYPE_I32, 0, 1, 1, 1, 1, w_i32);
    b[n++] = nb("ids.i64", RK_DTYPE_I64, 4, 4, 1, 2, 1, w_i64);
    b[n++] = nb("mask", RK_DTYPE_U8, 1, 13, 1, 1, 1, w_u8);
    b[n++] = nb("empty", RK_DTYPE_F32, 2, 0, 3, 1, 1, NULL);
    return n;
}

static const char * const test_meta[] = { "format", "pt", "note", "rk \"quoted\" ü", NULL };

Test(st_write, round_trip_every_dtype) {
    struct rk_named_buffer b[8];
    const int              n = fill_tensors(b);
    char                   path[512];
    snprintf(path, sizeof(path), "%s/all.safetensors", rk_test_tmpdir());
    cr_assert_eq(rk_safetensors_write(path, b, n, test_meta), RK_OK, "%s", rk_last_error());

    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(path, &st), RK_OK, "%s", rk_last_error());
    cr_assert_eq(st->n, n);
    cr_assert_str_eq(rk_safetensors_meta(st, "format"), "pt");
    cr_assert_str_eq(rk_safetensors_meta(st, "note"), "rk \"quoted\" ü");
    for (int i = 0; i < n; i++) {
        const struct rk_st_entry * e = rk_safetensors_find(st, b[i].name);
        cr_assert(e != NULL, "tensor %s missing", b[i].name);
        cr_assert_eq(e->dtype, b[i].dtype, "%s", b[i].name);
        cr_assert_eq(e->ndim, b[i].ndim, "%s", b[i].name);
        for (int d = 0; d < b[i].ndim; d++) cr_assert_eq(e->shape[d], b[i].shape[d], "%s dim %d", b[i].name, d);
        const size_t bytes = (size_t) rk_named_buffer_nelements(&b[i]) * rk_dtype_traits[b[i].dtype].type_size;
        cr_assert_eq(e->nbytes, bytes, "%s", b[i].name);
        if (bytes) cr_assert(memcmp(e->data, b[i].data, bytes) == 0, "%s: data differs", b[i].name);
        /* widest dtypes first: every tensor is aligned to its element size in the file */
        const size_t off = (size_t) ((const uint8_t *) e->data - (const uint8_t *) st->map);
        cr_assert_eq(off % rk_dtype_traits[b[i].dtype].type_size, 0, "%s at byte %zu", b[i].name, off);
    }
    /* header padded with spaces to a multiple of 8 */
    uint64_t hlen = 0;
    memcpy(&hlen, st->map, 8);
    cr_assert_eq(hlen % 8, 0);
    cr_assert_eq(((const char *) st->map)[8], '{');
    cr_assert(memcmp((const char *) st->map + 8, "{\"__metadata__\":{\"format\":\"pt\",\"note\":", 38) == 0,
              "metadata first, keys sorted");
    rk_safetensors_close(st);
}

Test(st_write, exact_layout_of_a_small_file) {
    /* the bytes the reference implementation writes for these tensors (safetensors 0.8.0, save_file) */
    float    a[2] = { 1.0f, 2.0f };
    int64_t  c[1] = { 7 };
    uint8_t  u[3] = { 1, 2, 3 };
    struct rk_named_buffer b[3] = {
        nb("u", RK_DTYPE_U8, 1, 3, 1, 1, 1, u),
        nb("a", RK_DTYPE_F32, 2, 1, 2, 1, 1, a),
        nb("c", RK_DTYPE_I64, 1, 1, 1, 1, 1, c),
    };
    char path[512];
    snprintf(path, sizeof(path), "%s/small.safetensors", rk_test_tmpdir());
    cr_assert_eq(rk_safetensors_write(path, b, 3, NULL), RK_OK, "%s", rk_last_error());
    size_t    n;
    uint8_t * bytes = read_all(path, &n);
    const char * want = "{\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]},"
                        "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}";
    const size_t hn = (strlen(want) + 7) / 8 * 8;
    cr_assert_eq(n, 8 + hn + 19);
    cr_assert_eq(bytes[0], (uint8_t) hn);
    cr_assert(memcmp(bytes + 8, want, strlen(want)) == 0, "header: %.*s", (int) hn, (const char *) bytes + 8);
    for (size_t i = strlen(want); i < hn; i++) cr_assert_eq(bytes[8 + i], ' ');
    cr_assert(memcmp(bytes + 8 + hn, c, 8) == 0 && memcmp(bytes + 8 + hn + 8, a, 8) == 0 &&
              memcmp(bytes + 8 + hn + 16, u, 3) == 0);
    free(bytes);
}

Test(st_write, deterministic_bytes) {
    struct rk_named_buffer b[8], r[8];
    const int              n = fill_tensors(b);
    for (int i = 0; i < n; i++) r[i] = b[n - 1 - i]; /* added in another order */
    const char * dir = rk_test_tmpdir();
    char         p1[512], p2[512];
    snprintf(p1, sizeof(p1), "%s/one.safetensors", dir);
    snprintf(p2, sizeof(p2), "%s/two.safetensors", dir);
    const char * const meta_rev[] = { "note", "rk \"quoted\" ü", "format", "pt", NULL };
    cr_assert_eq(rk_safetensors_write(p1, b, n, test_meta), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_safetensors_write(p2, r, n, meta_rev), RK_OK, "%s", rk_last_error());
    size_t    n1, n2;
    uint8_t * b1 = read_all(p1, &n1);
    uint8_t * b2 = read_all(p2, &n2);
    cr_assert_eq(n1, n2);
    cr_assert(memcmp(b1, b2, n1) == 0, "two writes of the same tensors differ");
    /* and writing over an existing file gives the same bytes again */
    cr_assert_eq(rk_safetensors_write(p1, r, n, test_meta), RK_OK, "%s", rk_last_error());
    free(b1);
    b1 = read_all(p1, &n1);
    cr_assert(n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    cr_assert_eq(count_entries(dir, ".tmp."), 0);
}

Test(st_write, converts_f32_to_bf16_and_f16) {
    float v[5] = { 1.0f, -0.333333f, 65504.0f, 1e-3f, 3.14159265f };
    float back[5];
    struct rk_named_buffer b  = nb("w", RK_DTYPE_F32, 1, 5, 1, 1, 1, v);
    struct rk_named_buffer b2 = nb("w16", RK_DTYPE_F32, 1, 5, 1, 1, 1, v);
    struct rk_st_writer *  w  = rk_st_writer_new();
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_BF16), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_st_writer_add(w, &b2, RK_DTYPE_F16), RK_OK, "%s", rk_last_error());
    char path[512];
    snprintf(path, sizeof(path), "%s/conv.safetensors", rk_test_tmpdir());
    cr_assert_eq(rk_st_writer_write(w, path), RK_OK, "%s", rk_last_error());
    rk_st_writer_free(w);

    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(path, &st), RK_OK, "%s", rk_last_error());
    const struct rk_st_entry * e = rk_safetensors_find(st, "w");
    cr_assert(e && e->dtype == RK_DTYPE_BF16 && e->nbytes == 10);
    for (int i = 0; i < 5; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *) e->data + 2 * i, 2);
        cr_assert_eq(h, rk_f32_to_bf16(v[i]), "bf16 element %d", i);
    }
    e = rk_safetensors_find(st, "w16");
    cr_assert(e && e->dtype == RK_DTYPE_F16);
    cr_assert_eq(rk_safetensors_read_f32(st, e, back, 5), RK_OK);
    for (int i = 0; i < 5; i++) cr_assert_eq(back[i], rk_f16_to_f32(rk_f32_to_f16(v[i])), "f16 element %d", i);
    rk_safetensors_close(st);
}

Test(st_write, bad_arguments) {
    float                  x[2] = { 0 };
    struct rk_st_writer *  w    = rk_st_writer_new();
    struct rk_named_buffer b    = nb("x", RK_DTYPE_F32, 1, 2, 1, 1, 1, x);
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_I32), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), "'x'") != NULL, "%s", rk_last_error());
    b.dtype = RK_DTYPE_NF4;
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_NF4), RK_STATUS_ARG);
    b.dtype = RK_DTYPE_F32;
    b.ndim  = 5;
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_F32), RK_STATUS_ARG);
    b.ndim     = 1;
    b.shape[0] = -1;
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_F32), RK_STATUS_ARG);
    b.shape[0] = 2;
    b.name     = "__metadata__";
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_F32), RK_STATUS_ARG);
    b.name = "x";
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_F32), RK_OK);
    cr_assert_eq(rk_st_writer_add(w, &b, RK_DTYPE_F32), RK_OK);
    const char * dir = rk_test_tmpdir();
    char         path[512];
    snprintf(path, sizeof(path), "%s/dup.safetensors", dir);
    cr_assert_eq(rk_st_writer_write(w, path), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), "'x' added twice") != NULL, "%s", rk_last_error());
    cr_assert(access(path, F_OK) != 0, "nothing written on error");
    rk_st_writer_free(w);
}

Test(st_write, unwritable_target_fails_cleanly) {
    float                  x[2] = { 1, 2 };
    struct rk_named_buffer b    = nb("x", RK_DTYPE_F32, 1, 2, 1, 1, 1, x);
    const char *           dir  = rk_test_tmpdir();
    char                   path[512];
    /* a folder that does not exist: the temporary file cannot be created */
    snprintf(path, sizeof(path), "%s/no_such_folder/x.safetensors", dir);
    cr_assert_eq(rk_safetensors_write(path, &b, 1, NULL), RK_STATUS_IO);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), path) != NULL, "error names the path: %s", rk_last_error());
    /* the target is a non-empty folder: the temporary file is written, the rename fails, the temp is removed */
    snprintf(path, sizeof(path), "%s/taken", dir);
    cr_assert_eq(mkdir(path, 0777), 0);
    char inner[600];
    rk_test_write_file(inner, sizeof(inner), path, "keep", "k", 1);
    cr_assert_eq(rk_safetensors_write(path, &b, 1, NULL), RK_STATUS_IO);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), path) != NULL, "error names the path: %s", rk_last_error());
    cr_assert_eq(count_entries(dir, ".tmp."), 0, "a temporary file was left behind");
    cr_assert_eq(access(inner, F_OK), 0);
    /* a read-only folder (only meaningful when not running as root) */
    if (geteuid() != 0) {
        char ro[400];
        snprintf(ro, sizeof(ro), "%s/ro", dir);
        cr_assert_eq(mkdir(ro, 0555), 0);
        snprintf(path, sizeof(path), "%s/x.safetensors", ro);
        cr_assert_eq(rk_safetensors_write(path, &b, 1, NULL), RK_STATUS_IO);
        assert_one_line(rk_last_error());
        cr_assert_eq(count_entries(ro, ".tmp."), 0);
    }
}

/* ------------------------------------------------------------------------------------------------
 * converting a file (rk_safetensors_convert, used by .ci/st_convert for the bf16 model the GPU check carries) */

/* rk_f32_to_bf16 gives back every bf16 value it is handed as f32 (NaNs: the quiet ones, the only ones it makes), so a
   backend that rounds the weights of a bf16 file to bf16 again holds exactly what the file holds. */
Test(st_convert, bf16_rounding_is_idempotent) {
    for (uint32_t h = 0; h < 65536; h++) {
        const bool nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
        if (nan && !(h & 0x40u)) continue;
        cr_assert_eq(rk_f32_to_bf16(rk_bf16_to_f32((uint16_t) h)), h, "bf16 0x%04x", h);
    }
}

Test(st_convert, f32_to_bf16_keeps_the_rest) {
    /* a hand-written file: a U8 tensor first, so the F32 data starts at an odd offset; then I64; metadata */
    const char * hdr = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                       "\"m\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[3,35]},"
                       "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[35,51]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[51,53]}}";
    /* ties to even in both directions, a value that rounds up into the next binade, tiny, huge, infinity */
    const uint32_t wbits[8] = { 0x3f808000u, 0x3f818000u, 0xbf7fffffu, 0x00000001u,
                                0x7f7fffffu, 0x7f800000u, 0xc0490fdbu, 0x3dcccccdu };
    const uint8_t  m[3]     = { 7, 8, 9 };
    const int64_t  ids[2]   = { -1, 1234567890123ll };
    const uint16_t bb       = 0x3f80;
    uint8_t        file[8 + 512];
    const size_t   hlen     = strlen(hdr);
    cr_assert(hlen + 53 <= sizeof(file) - 8);
    for (int i = 0; i < 8; i++) file[i] = (uint8_t) ((uint64_t) hlen >> (8 * i));
    memcpy(file + 8, hdr, hlen);
    uint8_t * data = file + 8 + hlen;
    memcpy(data, m, 3);
    memcpy(data + 3, wbits, 32);
    memcpy(data + 35, ids, 16);
    memcpy(data + 51, &bb, 2);
    const char * dir = rk_test_tmpdir();
    char         src[600], dst[600];
    rk_test_write_file(src, sizeof(src), dir, "src.safetensors", file, 8 + hlen + 53);
    snprintf(dst, sizeof(dst), "%s/dst.safetensors", dir);

    int64_t n_conv = -1;
    cr_assert_eq(rk_safetensors_convert(src, dst, RK_DTYPE_F32, RK_DTYPE_BF16, &n_conv), RK_OK, "%s", rk_last_error());
    cr_assert_eq(n_conv, 1);
    cr_assert_eq(count_entries(dir, ".tmp."), 0);
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(dst, &st), RK_OK, "%s", rk_last_error());
    cr_assert_eq(st->n, 4);
    cr_assert_str_eq(rk_safetensors_meta(st, "format"), "pt");
    cr_assert_str_eq(rk_safetensors_meta(st, "k"), "v");
    const struct rk_st_entry * e = rk_safetensors_find(st, "w");
    cr_assert(e && e->dtype == RK_DTYPE_BF16 && e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 4);
    const uint16_t want[8] = { 0x3f80, 0x3f82, 0xbf80, 0x0000, 0x7f80, 0x7f80, 0xc049, 0x3dcd };
    for (int i = 0; i < 8; i++) {
        float f;
        memcpy(&f, &wbits[i], 4);
        uint16_t h;
        memcpy(&h, (const uint8_t *) e->data + 2 * i, 2);
        cr_assert_eq(h, rk_f32_to_bf16(f), "element %d: 0x%04x, rk_f32_to_bf16 0x%04x", i, h, rk_f32_to_bf16(f));
        cr_assert_eq(h, want[i], "element %d: 0x%04x, expected 0x%04x", i, h, want[i]);
    }
    e = rk_safetensors_find(st, "m");
    cr_assert(e && e->dtype == RK_DTYPE_U8 && e->nbytes == 3 && memcmp(e->data, m, 3) == 0);
    e = rk_safetensors_find(st, "ids");
    cr_assert(e && e->dtype == RK_DTYPE_I64 && e->nbytes == 16 && memcmp(e->data, ids, 16) == 0);
    e = rk_safetensors_find(st, "b");
    cr_assert(e && e->dtype == RK_DTYPE_BF16 && e->nbytes == 2 && memcmp(e->data, &bb, 2) == 0);
    rk_safetensors_close(st);

    /* errors: one line naming the file; nothing written */
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/absent.safetensors", dir);
    cr_assert_eq(rk_safetensors_convert(missing, dst, RK_DTYPE_F32, RK_DTYPE_BF16, NULL), RK_STATUS_IO);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), missing) != NULL, "%s", rk_last_error());
    cr_assert_eq(rk_safetensors_convert(src, dst, RK_DTYPE_F32, RK_DTYPE_I32, NULL), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), src) != NULL, "%s", rk_last_error());
    snprintf(missing, sizeof(missing), "%s/no_such_folder/x.safetensors", dir);
    cr_assert_eq(rk_safetensors_convert(src, missing, RK_DTYPE_F32, RK_DTYPE_BF16, NULL), RK_STATUS_IO);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), missing) != NULL, "%s", rk_last_error());
    cr_assert_eq(count_entries(dir, ".tmp."), 0);
}

/* ------------------------------------------------------------------------------------------------
 * checkpoints */

enum { P0 = 6, P1_R = 3, P1_C = 4 };

/* A tiny "model": two bf16 weights, with f32 master weights and AdamW moments. */
struct ckpt {
    uint16_t w0[P0], w1[P1_R * P1_C];
    float    m0[P0], m1[P1_R * P1_C];       /* masters */
    float    a0[P0], a1[P1_R * P1_C];       /* exp_avg */
    float    s0[P0], s1[P1_R * P1_C];       /* exp_avg_sq */
    char     names[6][64];
    struct rk_named_buffer model[2], optim[6];
};

static void ckpt_init(struct ckpt * c, float seed) {
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < P0; i++) {
        c->m0[i] = seed + 0.1f * (float) i;
        c->w0[i] = rk_f32_to_bf16(c->m0[i]);
        c->a0[i] = seed * 1e-3f * (float) i;
        c->s0[i] = seed * 1e-6f * (float) (i + 1);
    }
    for (int i = 0; i < P1_R * P1_C; i++) {
        c->m1[i] = -seed - 0.01f * (float) i;
        c->w1[i] = rk_f32_to_bf16(c->m1[i]);
        c->a1[i] = -seed * 2e-3f * (float) i;
        c->s1[i] = seed * 3e-6f * (float) (i + 1);
    }
    const char * p0 = "classifier.bias", *p1 = "classifier.weight";
    c->model[0] = nb(p0, RK_DTYPE_BF16, 1, P0, 1, 1, 1, c->w0);
    c->model[1] = nb(p1, RK_DTYPE_BF16, 2, P1_R, P1_C, 1, 1, c->w1);
    const char * slots[3] = { RK_CKPT_MASTER, RK_CKPT_EXP_AVG, RK_CKPT_EXP_AVG_SQ };
    float *      d0[3]    = { c->m0, c->a0, c->s0 };
    float *      d1[3]    = { c->m1, c->a1, c->s1 };
    for (int k = 0; k < 3; k++) {
        rk_checkpoint_optim_name(c->names[2 * k], 64, p0, slots[k]);
        rk_checkpoint_optim_name(c->names[2 * k + 1], 64, p1, slots[k]);
        c->optim[2 * k]     = nb(c->names[2 * k], RK_DTYPE_F32, 1, P0, 1, 1, 1, d0[k]);
        c->optim[2 * k + 1] = nb(c->names[2 * k + 1], RK_DTYPE_F32, 2, P1_R, P1_C, 1, 1, d1[k]);
    }
}

/* Points every buffer of dst at its own (zeroed) memory, keeping the names and shapes. */
static void ckpt_blank(struct ckpt * c) {
    memset(c->w0, 0, sizeof(c->w0));
    memset(c->w1, 0, sizeof(c->w1));
    memset(c->m0, 0, sizeof(c->m0));
    memset(c->m1, 0, sizeof(c->m1));
    memset(c->a0, 0, sizeof(c->a0));
    memset(c->a1, 0, sizeof(c->a1));
    memset(c->s0, 0, sizeof(c->s0));
    memset(c->s1, 0, sizeof(c->s1));
}

static bool ckpt_equal(const struct ckpt * x, const struct ckpt * y) {
    return !memcmp(x->w0, y->w0, sizeof(x->w0)) && !memcmp(x->w1, y->w1, sizeof(x->w1)) &&
           !memcmp(x->m0, y->m0, sizeof(x->m0)) && !memcmp(x->m1, y->m1, sizeof(x->m1)) &&
           !memcmp(x->a0, y->a0, sizeof(x->a0)) && !memcmp(x->a1, y->a1, sizeof(x->a1)) &&
           !memcmp(x->s0, y->s0, sizeof(x->s0)) && !memcmp(x->s1, y->s1, sizeof(x->s1));
}

static cJSON * test_state(int64_t step) {
    struct rk_trainer_state ts = {
        .step = step, .epoch = 2, .rng_seed = 0xfedcba9876543210ull, .rng_offset = 123456789012345ull,
        .sched_step = step, .loss_scale = 32768.0, .loss_scale_good = 17, .best_metric = 0.8125, .best_step = 40,
    };
    cJSON * cfg = cJSON_CreateObject();
    cJSON_AddNumberToObject(cfg, "lr", 2e-5);
    cJSON_AddNumberToObject(cfg, "batch", 32);
    cJSON * j = rk_trainer_state_to_json(&ts, cfg);
    cJSON_Delete(cfg);
    return j;
}

static void save_ok(const char * dir, struct ckpt * c, int64_t step) {
    cJSON * st = test_state(step);
    cr_assert_eq(rk_checkpoint_save(dir, c->model, 2, c->optim, 6, st), RK_OK, "%s", rk_last_error());
    cJSON_Delete(st);
}

Test(checkpoint, save_load_round_trip) {
    static struct ckpt a, b;
    ckpt_init(&a, 1.25f);
    ckpt_init(&b, 0.0f);
    ckpt_blank(&b);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ckpt", rk_test_tmpdir());
    save_ok(dir, &a, 50);

    cJSON * state = NULL;
    cr_assert_eq(rk_checkpoint_load(dir, b.model, 2, b.optim, 6, &state), RK_OK, "%s", rk_last_error());
    cr_assert(ckpt_equal(&a, &b), "buffers differ after the round trip");
    struct rk_trainer_state ts;
    const cJSON *           cfg = NULL;
    cr_assert_eq(rk_trainer_state_from_json(state, "trainer_state.json", &ts, &cfg), RK_OK, "%s", rk_last_error());
    cr_assert_eq(ts.step, 50);
    cr_assert_eq(ts.epoch, 2);
    cr_assert_eq(ts.rng_seed, 0xfedcba9876543210ull, "64-bit seed kept exactly");
    cr_assert_eq(ts.rng_offset, 123456789012345ull);
    cr_assert_eq(ts.sched_step, 50);
    cr_assert_eq(ts.loss_scale, 32768.0);
    cr_assert_eq(ts.loss_scale_good, 17);
    cr_assert_eq(ts.best_metric, 0.8125);
    cr_assert_eq(ts.best_step, 40);
    cr_assert(cfg != NULL);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cfg, "lr")->valuedouble, 2e-5);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cfg, "batch")->valuedouble, 32);
    cJSON_Delete(state);

    /* the model file is a plain HF file: bf16 tensors under their names, format=pt */
    char mpath[600];
    snprintf(mpath, sizeof(mpath), "%s/model.safetensors", dir);
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(mpath, &st), RK_OK, "%s", rk_last_error());
    cr_assert_eq(st->n, 2);
    cr_assert_str_eq(rk_safetensors_meta(st, "format"), "pt");
    cr_assert_eq(rk_safetensors_find(st, "classifier.weight")->dtype, RK_DTYPE_BF16);
    rk_safetensors_close(st);

    /* an f32 buffer loads the bf16 model weight, converting */
    float                  wf[P1_R * P1_C];
    struct rk_named_buffer f = nb("classifier.weight", RK_DTYPE_F32, 2, P1_R, P1_C, 1, 1, wf);
    cr_assert_eq(rk_checkpoint_load(dir, &f, 1, NULL, 0, NULL), RK_OK, "%s", rk_last_error());
    for (int i = 0; i < P1_R * P1_C; i++) cr_assert_eq(wf[i], rk_bf16_to_f32(a.w1[i]));
}

Test(checkpoint, shape_mismatch_names_file_and_tensor) {
    static struct ckpt a;
    ckpt_init(&a, 0.5f);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ckpt", rk_test_tmpdir());
    save_ok(dir, &a, 1);
    a.optim[3].shape[1] = P1_C + 1; /* classifier.weight.exp_avg */
    cr_assert_eq(rk_checkpoint_load(dir, a.model, 2, a.optim, 6, NULL), RK_STATUS_FORMAT);
    const char * e = rk_last_error();
    assert_one_line(e);
    cr_assert(strstr(e, "optimizer.safetensors") && strstr(e, "'classifier.weight.exp_avg'") &&
              strstr(e, "[3, 4] in the file, [3, 5] expected"), "%s", e);
    a.optim[3].shape[1] = P1_C;
    /* a tensor the file lacks */
    struct rk_named_buffer extra = nb("pooler.dense.weight", RK_DTYPE_BF16, 1, 2, 1, 1, 1, a.w0);
    cr_assert_eq(rk_checkpoint_load(dir, &extra, 1, NULL, 0, NULL), RK_STATUS_FORMAT);
    cr_assert(strstr(rk_last_error(), "model.safetensors: tensor 'pooler.dense.weight' not found"), "%s",
              rk_last_error());
    /* a dtype that cannot be converted */
    int32_t                ib[P0];
    struct rk_named_buffer bad = nb("classifier.bias", RK_DTYPE_I32, 1, P0, 1, 1, 1, ib);
    cr_assert_eq(rk_checkpoint_load(dir, &bad, 1, NULL, 0, NULL), RK_STATUS_FORMAT);
    cr_assert(strstr(rk_last_error(), "'classifier.bias': dtype bf16 in the file, i32 expected"), "%s", rk_last_error());
}

Test(checkpoint, missing_files) {
    static struct ckpt a;
    ckpt_init(&a, 0.5f);
    const char * root = rk_test_tmpdir();
    char         dir[512], p[600];
    snprintf(dir, sizeof(dir), "%s/ckpt", root);
    cr_assert_eq(rk_checkpoint_load(dir, a.model, 2, a.optim, 6, NULL), RK_STATUS_IO);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), dir) && strstr(rk_last_error(), "no checkpoint"), "%s", rk_last_error());

    save_ok(dir, &a, 1);
    snprintf(p, sizeof(p), "%s/optimizer.safetensors", dir);
    cr_assert_eq(unlink(p), 0);
    cJSON * state = (cJSON *) 1;
    cr_assert_eq(rk_checkpoint_load(dir, a.model, 2, a.optim, 6, &state), RK_STATUS_IO);
    cr_assert(state == NULL);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), p) != NULL, "%s", rk_last_error());

    snprintf(p, sizeof(p), "%s/trainer_state.json", dir);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(rk_checkpoint_load(dir, a.model, 2, NULL, 0, NULL), RK_STATUS_IO);
    cr_assert(strstr(rk_last_error(), p) != NULL, "%s", rk_last_error());
}

Test(checkpoint, overwrite_keeps_no_leftovers) {
    static struct ckpt a, b, c;
    ckpt_init(&a, 1.0f);
    ckpt_init(&b, 2.0f);
    ckpt_init(&c, 0.0f);
    ckpt_blank(&c);
    const char * root = rk_test_tmpdir();
    char         dir[512];
    snprintf(dir, sizeof(dir), "%s/ckpt/", root); /* a trailing slash is fine */
    save_ok(dir, &a, 10);
    save_ok(dir, &b, 20);
    cJSON * state = NULL;
    cr_assert_eq(rk_checkpoint_load(dir, c.model, 2, c.optim, 6, &state), RK_OK, "%s", rk_last_error());
    cr_assert(ckpt_equal(&b, &c), "the second save is what loads");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(state, "step")->valuedouble, 20);
    cJSON_Delete(state);
    cr_assert_eq(count_entries(root, ".tmp."), 0);
    cr_assert_eq(count_entries(root, ".old."), 0);
    cr_assert_eq(count_entries(root, "ckpt"), 1);
}

Test(checkpoint, failed_save_keeps_the_old_checkpoint) {
    static struct ckpt a, c;
    ckpt_init(&a, 1.0f);
    ckpt_init(&c, 0.0f);
    ckpt_blank(&c);
    const char * root = rk_test_tmpdir();
    char         dir[512];
    snprintf(dir, sizeof(dir), "%s/ckpt", root);
    save_ok(dir, &a, 10);
    /* a bad optimizer buffer: the save fails after model.safetensors was written into the temporary folder */
    static struct ckpt b;
    ckpt_init(&b, 3.0f);
    b.optim[4].dtype = RK_DTYPE_NF4;
    cr_assert_eq(rk_checkpoint_save(dir, b.model, 2, b.optim, 6, NULL), RK_STATUS_ARG);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), "optimizer.safetensors") && strstr(rk_last_error(), b.names[4]), "%s",
              rk_last_error());
    cr_assert_eq(count_entries(root, ".tmp."), 0, "temporary folder removed");
    cr_assert_eq(rk_checkpoint_load(dir, c.model, 2, c.optim, 6, NULL), RK_OK, "%s", rk_last_error());
    cr_assert(ckpt_equal(&a, &c), "the old checkpoint is intact");
    /* a parent folder that does not exist */
    char bad[600];
    snprintf(bad, sizeof(bad), "%s/nope/ckpt", root);
    cr_assert_eq(rk_checkpoint_save(bad, a.model, 2, a.optim, 6, NULL), RK_STATUS_IO);
    assert_one_line(rk_last_error());
    cr_assert(strstr(rk_last_error(), bad) != NULL, "%s", rk_last_error());
}

Test(checkpoint, recovers_from_a_crash_between_the_renames) {
    static struct ckpt a, b, c;
    ckpt_init(&a, 1.0f);
    ckpt_init(&b, 2.0f);
    ckpt_init(&c, 0.0f);
    ckpt_blank(&c);
    const char * root = rk_test_tmpdir();
    char         dir[512], old[600], tmp[600];
    snprintf(dir, sizeof(dir), "%s/ckpt", root);
    save_ok(dir, &a, 10);
    /* the state a crash after step 1 leaves: <dir> renamed to <dir>.old.N, the new one still in <dir>.tmp.N */
    /* a pid that is certainly not running: a child that has exited and been reaped */
    const pid_t dead = fork();
    if (dead == 0) _exit(0);
    cr_assert(dead > 0 && waitpid(dead, NULL, 0) == dead);
    snprintf(old, sizeof(old), "%s.old.%ld", dir, (long) dead);
    cr_assert_eq(rename(dir, old), 0);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", dir, (long) dead);
    cr_assert_eq(mkdir(tmp, 0777), 0);
    char junk[700];
    rk_test_write_file(junk, sizeof(junk), tmp, "model.safetensors", "partial", 7);

    char resolved[600];
    cr_assert_eq(rk_checkpoint_resolve(dir, resolved, sizeof(resolved)), RK_OK, "%s", rk_last_error());
    cr_assert_str_eq(resolved, old);
    cJSON * state = NULL;
    cr_assert_eq(rk_checkpoint_load(dir, c.model, 2, c.optim, 6, &state), RK_OK, "%s", rk_last_error());
    cr_assert(ckpt_equal(&a, &c), "the old checkpoint loads");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(state, "step")->valuedouble, 10);
    cJSON_Delete(state);

    /* the next save puts a checkpoint in place and clears the leftovers (their pid is not running) */
    cr_assert(kill(dead, 0) != 0, "pid %ld was reused", (long) dead);
    save_ok(dir, &b, 20);
    cr_assert_eq(count_entries(root, ".old."), 0);
    cr_assert_eq(count_entries(root, ".tmp."), 0);
    ckpt_blank(&c);
    cr_assert_eq(rk_checkpoint_load(dir, c.model, 2, c.optim, 6, NULL), RK_OK, "%s", rk_last_error());
    cr_assert(ckpt_equal(&b, &c));
}

Test(checkpoint, trainer_state_errors) {
    cJSON * j = test_state(5);
    cJSON_ReplaceItemInObject(j, "rng_seed", cJSON_CreateNumber(3.5));
    struct rk_trainer_state ts;
    cr_assert_eq(rk_trainer_state_from_json(j, "x/trainer_state.json", &ts, NULL), RK_STATUS_FORMAT);
    cr_assert(strstr(rk_last_error(), "x/trainer_state.json: \"rng_seed\""), "%s", rk_last_error());
    cJSON_Delete(j);
    struct rk_trainer_state none = { .best_metric = NAN, .best_step = -1, .loss_scale = 1.0 };
    j = rk_trainer_state_to_json(&none, NULL);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "best_metric")));
    const cJSON * cfg = (const cJSON *) 1;
    cr_assert_eq(rk_trainer_state_from_json(j, "s", &ts, &cfg), RK_OK, "%s", rk_last_error());
    cr_assert(isnan(ts.best_metric) && ts.best_step == -1 && cfg == NULL);
    cJSON_Delete(j);
}
