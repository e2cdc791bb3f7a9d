/*
 * test_gguf.c: the GGUF reader (host/io/gguf.c) and the ggml block types (quant/gguf_blocks_cpu.c).
 *
 * Golden data from tests/golden/gen_gguf.py (gguf-py 0.19.0): gguf_synth.gguf holds every metadata type and one
 * tensor per dequantized ggml type; gguf_synth.rkgd is gguf-py's numpy dequantization of each, which ours must
 * equal bit for bit. The SmolLM2 test reads the real checkpoint fetched by
 * `RK_FETCH_DECODER=1 datasets/fetch_models.sh` and fails (never skips) without it. The bad-input tests corrupt
 * copies of the synthetic file and expect a one-line error naming the file and byte offset.
 */
#include "golden.h"
#include "io/gguf.h"
#include "test_util.h"

#include <math.h>

static struct rk_gguf * open_ok(const char * path) {
    struct rk_gguf * g = NULL;
    enum rk_status   s = rk_gguf_open(path, &g);
    cr_assert(s == RK_OK, "rk_gguf_open(%s): %s: %s", path, rk_status_name(s), rk_last_error());
    return g;
}

static const char * synth_path(char * buf, size_t n) { return rk_test_path(buf, n, "tests/golden/gguf_synth.gguf"); }

/* ------------------------------------------------------------------------------------------------
 * block sizes */

Test(gguf_blocks, traits_match_structs) {
    static const struct { uint32_t t; int64_t bs; size_t ts; } want[] = {
        { RK_GGML_TYPE_F32, 1, 4 },      { RK_GGML_TYPE_F16, 1, 2 },      { RK_GGML_TYPE_BF16, 1, 2 },
        { RK_GGML_TYPE_Q4_0, 32, 18 },   { RK_GGML_TYPE_Q4_1, 32, 20 },   { RK_GGML_TYPE_Q5_0, 32, 22 },
        { RK_GGML_TYPE_Q5_1, 32, 24 },   { RK_GGML_TYPE_Q8_0, 32, 34 },   { RK_GGML_TYPE_Q2_K, 256, 84 },
        { RK_GGML_TYPE_Q3_K, 256, 110 }, { RK_GGML_TYPE_Q4_K, 256, 144 }, { RK_GGML_TYPE_Q5_K, 256, 176 },
        { RK_GGML_TYPE_Q6_K, 256, 210 }, { RK_GGML_TYPE_Q8_K, 256, 292 },
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct rk_ggml_type_traits * tr = rk_ggml_type_get(want[i].t);
        cr_assert(tr && tr->blck_size == want[i].bs && tr->type_size == want[i].ts, "type %u", want[i].t);
    }
    cr_assert(rk_ggml_type_get(4) == NULL && rk_ggml_type_get(5) == NULL && rk_ggml_type_get(99) == NULL);
}

/* ------------------------------------------------------------------------------------------------
 * the synthetic file */

Test(gguf, synth_metadata) {
    char             p[4096];
    struct rk_gguf * g = open_ok(synth_path(p, sizeof(p)));
    cr_assert_eq(g->version, 3);
    cr_assert_eq(g->alignment, 32);
    cr_assert_eq(g->n_tensors, 13);

    const char * s = NULL;
    cr_assert(rk_gguf_get_str(g, "general.architecture", &s) == RK_OK && strcmp(s, "rktest") == 0);
    cr_assert(rk_gguf_get_str(g, "t.str", &s) == RK_OK && strcmp(s, "h\xc3\xa9llo gguf") == 0, "%s", s);

    const struct rk_gguf_kv * kv;
    cr_assert((kv = rk_gguf_find_kv(g, "t.u8")) && kv->type == RK_GGUF_U8 && kv->u == 200);
    cr_assert((kv = rk_gguf_find_kv(g, "t.i8")) && kv->type == RK_GGUF_I8 && kv->i == -100);
    cr_assert((kv = rk_gguf_find_kv(g, "t.u16")) && kv->type == RK_GGUF_U16 && kv->u == 60000);
    cr_assert((kv = rk_gguf_find_kv(g, "t.i16")) && kv->type == RK_GGUF_I16 && kv->i == -30000);
    cr_assert((kv = rk_gguf_find_kv(g, "t.u32")) && kv->type == RK_GGUF_U32 && kv->u == 4000000000u);
    cr_assert((kv = rk_gguf_find_kv(g, "t.i32")) && kv->type == RK_GGUF_I32 && kv->i == -2000000000);
    cr_assert((kv = rk_gguf_find_kv(g, "t.u64")) && kv->type == RK_GGUF_U64 && kv->u == 10000000000000000000ull);
    cr_assert((kv = rk_gguf_find_kv(g, "t.i64")) && kv->type == RK_GGUF_I64 && kv->i == -9000000000000000000ll);
    cr_assert((kv = rk_gguf_find_kv(g, "t.f64")) && kv->type == RK_GGUF_F64 && kv->f == -2.718281828459045);
    cr_assert(rk_gguf_find_kv(g, "t.nope") == NULL);

    uint32_t u32 = 0;
    int64_t  i64 = 0;
    float    f   = 0;
    bool     b   = false;
    cr_assert(rk_gguf_get_u32(g, "t.u32", &u32) == RK_OK && u32 == 4000000000u);
    cr_assert(rk_gguf_get_u32(g, "t.u8", &u32) == RK_OK && u32 == 200);      /* widening is fine */
    cr_assert(rk_gguf_get_u32(g, "rktest.block_count", &u32) == RK_OK && u32 == 2);
    cr_assert(rk_gguf_get_u32(g, "t.i8", &u32) == RK_STATUS_FORMAT);         /* negative */
    cr_assert(rk_gguf_get_u32(g, "t.u64", &u32) == RK_STATUS_FORMAT);        /* too large */
    cr_assert(rk_gguf_get_i64(g, "t.i64", &i64) == RK_OK && i64 == -9000000000000000000ll);
    cr_assert(rk_gguf_get_i64(g, "t.u64", &i64) == RK_STATUS_FORMAT);
    cr_assert(rk_gguf_get_f32(g, "t.f32", &f) == RK_OK && f == 0.15625f);
    cr_assert(rk_gguf_get_bool(g, "t.bool", &b) == RK_OK && b);
    cr_assert(rk_gguf_get_str(g, "t.u8", &s) == RK_STATUS_FORMAT);
    cr_assert(strstr(rk_last_error(), "t.u8") && strstr(rk_last_error(), "byte "), "%s", rk_last_error());
    cr_assert(rk_gguf_get_u32(g, "missing.key", &u32) == RK_STATUS_FORMAT);
    cr_assert(strstr(rk_last_error(), "missing.key"), "%s", rk_last_error());

    enum rk_gguf_vtype et;
    int64_t            n = 0;
    int32_t            ai[5];
    float              af[3];
    cr_assert(rk_gguf_get_arr(g, "t.arr_i32", &et, &n) == RK_OK && et == RK_GGUF_I32 && n == 5);
    cr_assert(rk_gguf_arr_i32(g, "t.arr_i32", ai, 5) == RK_OK);
    cr_assert(ai[0] == 1 && ai[1] == -2 && ai[2] == 3 && ai[3] == -4 && ai[4] == 5);
    cr_assert(rk_gguf_arr_i32(g, "t.arr_i32", ai, 4) == RK_STATUS_ARG);
    cr_assert(rk_gguf_get_arr(g, "t.arr_f32", &et, &n) == RK_OK && et == RK_GGUF_F32 && n == 3);
    cr_assert(rk_gguf_arr_f32(g, "t.arr_f32", af, 3) == RK_OK && af[0] == 0.5f && af[1] == -1.25f && af[2] == 3.f);
    cr_assert(rk_gguf_arr_i32(g, "t.arr_f32", ai, 3) == RK_STATUS_FORMAT);

    static const char * strs[] = { "a", "", "\xc3\x9ftring three", "<|im_end|>" };
    kv = rk_gguf_find_kv(g, "t.arr_str");
    cr_assert(kv && kv->type == RK_GGUF_ARRAY && kv->arr_type == RK_GGUF_STRING && kv->arr_n == 4);
    for (int i = 0; i < 4; i++) {
        uint64_t     len = 0;
        const char * e   = rk_gguf_arr_str(kv, i, &len);
        cr_assert(e && len == strlen(strs[i]) && memcmp(e, strs[i], len) == 0, "string %d", i);
    }
    uint64_t len;
    cr_assert(rk_gguf_arr_str(kv, 4, &len) == NULL && rk_gguf_arr_str(kv, -1, &len) == NULL);
    rk_gguf_close(g);
}

/* Every tensor: shape in our order, and values bit-identical to gguf-py's numpy dequantization. */
Test(gguf, synth_tensors_match_gguf_py) {
    char             p[4096], gp[4096];
    struct rk_gguf * g    = open_ok(synth_path(p, sizeof(p)));
    struct rk_gold   gold = rk_gold_load(rk_test_path(gp, sizeof(gp), "tests/golden/gguf_synth.rkgd"));
    cr_assert_eq(gold.count, g->n_tensors);
    for (int k = 0; k < gold.count; k++) {
        const struct rk_gold_tensor * gt = &gold.t[k];
        const struct rk_gguf_tensor * t  = rk_gguf_find_tensor(g, gt->name);
        cr_assert(t != NULL, "tensor %s missing", gt->name);
        cr_assert_eq(t->ndim, gt->ndim, "%s: ndim", gt->name);
        for (int d = 0; d < t->ndim; d++) cr_assert_eq(t->ne[d], gt->dims[d], "%s: dim %d", gt->name, d);
        cr_assert_eq(t->nelements, gt->n);
        float * out = malloc((size_t) gt->n * sizeof(float));
        cr_assert(rk_gguf_read_f32(g, t, out, gt->n) == RK_OK, "%s: %s", gt->name, rk_last_error());
        const float * ref = gt->data;
        int64_t       bad = 0;
        for (int64_t i = 0; i < gt->n; i++) {
            if (memcmp(&out[i], &ref[i], 4) != 0 && bad++ < 5) {
                cr_log_error("%s[%lld]: got %.9g, gguf-py %.9g", gt->name, (long long) i, out[i], ref[i]);
            }
        }
        cr_assert_eq(bad, 0, "%s (%s): %lld of %lld values differ from gguf-py", gt->name,
                     rk_ggml_type_get(t->type)->name, (long long) bad, (long long) gt->n);
        cr_assert(rk_gguf_read_f32(g, t, out, gt->n - 1) == RK_STATUS_ARG);
        free(out);
    }
    rk_gold_free(&gold);
    rk_gguf_close(g);
}

/* ------------------------------------------------------------------------------------------------
 * the real checkpoint */

Test(gguf, smollm2_q4_1, .timeout = 120) {
    char path[4096], gp[4096];
    rk_test_path(path, sizeof(path), "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    cr_assert(access(path, R_OK) == 0, "%s not found: run RK_FETCH_DECODER=1 datasets/fetch_models.sh", path);
    struct rk_gguf * g    = open_ok(path);
    struct rk_gold   gold = rk_gold_load(rk_test_path(gp, sizeof(gp), "tests/golden/gguf_smollm2.rkgd"));
    const int32_t *  meta = rk_gold_get(&gold, "meta")->data; /* n_tensors, n_tokens, block_count, F32, Q4_1, Q8_0 */

    const char * arch = NULL;
    uint32_t     n_layer = 0;
    cr_assert(rk_gguf_get_str(g, "general.architecture", &arch) == RK_OK && strcmp(arch, "llama") == 0);
    cr_assert(rk_gguf_get_u32(g, "llama.block_count", &n_layer) == RK_OK && n_layer == 30);
    cr_assert_eq((int32_t) n_layer, meta[2]);
    cr_assert_eq(g->n_tensors, 272);
    cr_assert_eq(g->n_tensors, meta[0]);
    enum rk_gguf_vtype et;
    int64_t            n_tok = 0;
    cr_assert(rk_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok) == RK_OK && et == RK_GGUF_STRING);
    cr_assert_eq(n_tok, 49152);
    cr_assert_eq(n_tok, meta[1]);
    uint64_t     len = 0;
    const char * tok = rk_gguf_arr_str(rk_gguf_find_kv(g, "tokenizer.ggml.tokens"), 2, &len);
    cr_assert(tok && len == 10 && memcmp(tok, "<|im_end|>", 10) == 0, "token 2 is '%.*s'", (int) len, tok);

    int counts[RK_GGML_TYPE_COUNT] = { 0 };
    for (int64_t i = 0; i < g->n_tensors; i++) counts[g->tensors[i].type]++;
    cr_assert(counts[RK_GGML_TYPE_F32] == meta[3] && counts[RK_GGML_TYPE_Q4_1] == meta[4] &&
              counts[RK_GGML_TYPE_Q8_0] == meta[5] && meta[3] + meta[4] + meta[5] == meta[0]);

    const struct rk_gguf_tensor * emb = rk_gguf_find_tensor(g, "token_embd.weight");
    cr_assert(emb && emb->type == RK_GGML_TYPE_Q8_0 && emb->ndim == 2 && emb->ne[0] == 49152 && emb->ne[1] == 576,
              "token_embd is (V, C) = (49152, 576) in our order");

    float * buf = NULL;
    int64_t cap = 0;
    int     n_checked = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const struct rk_gguf_tensor * t = &g->tensors[i];
        if (t->nelements > cap) {
            cap = t->nelements;
            buf = realloc(buf, (size_t) cap * sizeof(float));
        }
        cr_assert(rk_gguf_read_f32(g, t, buf, t->nelements) == RK_OK, "%s", rk_last_error());
        double sum = 0, sum_abs = 0;
        for (int64_t j = 0; j < t->nelements; j++) {
            sum += buf[j];
            sum_abs += fabs(buf[j]);
        }
        char key[RK_GGUF_NAME_MAX + 16];
        snprintf(key, sizeof(key), "sum/%s", t->name);
        const float * ref = rk_gold_get(&gold, key)->data;
        double        want = (double) ref[0] + (double) ref[1];
        /* numpy sums pairwise, we sum in order: allow rounding of a float64 sum, nothing more */
        cr_assert(fabs(sum - want) <= 1e-12 * sum_abs + 1e-30, "%s: sum %.17g, gguf-py %.17g", t->name, sum, want);
        char key_last[RK_GGUF_NAME_MAX + 16];
        snprintf(key, sizeof(key), "first/%s", t->name);
        snprintf(key_last, sizeof(key_last), "last/%s", t->name);
        for (int gi = 0; gi < gold.count; gi++) {
            if (strcmp(gold.t[gi].name, key) != 0) continue;
            const float * first = gold.t[gi].data;
            const float * last  = rk_gold_get(&gold, key_last)->data;
            n_checked++;
            cr_assert(memcmp(buf, first, 64 * 4) == 0, "%s: first 64 values differ from gguf-py", t->name);
            cr_assert(memcmp(buf + t->nelements - 64, last, 64 * 4) == 0, "%s: last 64 differ", t->name);
        }
    }
    cr_assert_eq(n_checked, 3, "first/last values checked for %d tensors, want 3", n_checked);
    free(buf);
    rk_gold_free(&gold);
    rk_gguf_close(g);
}

/* ------------------------------------------------------------------------------------------------
 * bad input */

static uint8_t * slurp(const char * path, size_t * n) {
    FILE * f = fopen(path, "rb");
    cr_assert(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t) ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t * b = malloc(*n);
    cr_assert(fread(b, 1, *n, f) == *n);
    fclose(f);
    return b;
}

/* Writes len bytes of data as a file, opens it and expects status `want` with a one-line message naming the
 * file, "byte <want_at>" (want_at < 0: any "byte ") and `needle`. */
static void expect_fail(const void * data, size_t len, enum rk_status want, long long want_at, const char * needle) {
    char             path[4096];
    const char *     dir = rk_test_tmpdir();
    rk_test_write_file(path, sizeof(path), dir, "bad.gguf", data, len);
    struct rk_gguf * g = NULL;
    enum rk_status   s = rk_gguf_open(path, &g);
    const char *     e = rk_last_error();
    cr_assert(s == want, "got %s (%s), want %s", rk_status_name(s), e, rk_status_name(want));
    cr_assert(g == NULL);
    char at[64];
    if (want_at >= 0) snprintf(at, sizeof(at), "byte %lld:", want_at); else snprintf(at, sizeof(at), "byte ");
    cr_assert(strstr(e, path) == e && strstr(e, at) && strchr(e, '\n') == NULL, "message '%s' (want '%s')", e, at);
    cr_assert(strstr(e, needle), "message '%s' lacks '%s'", e, needle);
    cr_log_info("%s", e);
    unlink(path);
    rmdir(dir);
}

/* The byte offset inside tensor t's info record of its n_dims field, and of its type and offset fields. */
static size_t ndims_at(const struct rk_gguf_tensor * t) { return (size_t) t->info_offset + 8 + strlen(t->name); }
static size_t type_at(const struct rk_gguf_tensor * t) { return ndims_at(t) + 4 + 8 * (size_t) t->ndim; }

struct synth { uint8_t * b; size_t n; struct rk_gguf * g; };

static struct synth load_synth(void) {
    char         p[4096];
    struct synth s;
    s.b = slurp(synth_path(p, sizeof(p)), &s.n);
    s.g = open_ok(p);
    return s;
}

Test(gguf_bad, truncated_everywhere) {
    struct synth s  = load_synth();
    const struct rk_gguf_tensor * t0 = &s.g->tensors[0];
    expect_fail(s.b, 10, RK_STATUS_FORMAT, 8, "truncated");                       /* header */
    expect_fail(s.b, 40, RK_STATUS_FORMAT, 16, "cannot fit");                     /* counts vs size */
    expect_fail(s.b, (size_t) t0->info_offset - 5, RK_STATUS_FORMAT, -1, "truncated"); /* inside the last pair */
    expect_fail(s.b, (size_t) t0->info_offset + 12, RK_STATUS_FORMAT, -1, "truncated"); /* tensor info */
    expect_fail(s.b, s.n - 100, RK_STATUS_FORMAT, -1, "runs past the end");       /* data */
    expect_fail(s.b, 3, RK_STATUS_FORMAT, 0, "magic");
    expect_fail(s.b, 0, RK_STATUS_FORMAT, 0, "empty");
    /* every prefix fails cleanly (the data section ends at n) */
    const struct rk_gguf_tensor * last = &s.g->tensors[s.g->n_tensors - 1];
    size_t end = (size_t) s.g->data_offset + last->offset + last->nbytes; /* the rest is padding */
    const char * dir = rk_test_tmpdir();
    char         path[4096];
    for (size_t n = 0; n < end; n += 7) {
        rk_test_write_file(path, sizeof(path), dir, "cut.gguf", s.b, n);
        struct rk_gguf * g = NULL;
        cr_assert(rk_gguf_open(path, &g) == RK_STATUS_FORMAT && g == NULL, "prefix %zu", n);
    }
    unlink(path);
    rmdir(dir);
    rk_gguf_close(s.g);
    free(s.b);
}

Test(gguf_bad, corrupt_fields) {
    struct synth s = load_synth();
    uint8_t *    b = malloc(s.n);

    memcpy(b, s.b, s.n);
    memcpy(b, "GGUG", 4);
    expect_fail(b, s.n, RK_STATUS_FORMAT, 0, "bad magic");

    memcpy(b, s.b, s.n);
    b[4] = 1;
    expect_fail(b, s.n, RK_STATUS_UNSUPPORTED, 4, "version 1");
    b[4] = 9;
    expect_fail(b, s.n, RK_STATUS_FORMAT, 4, "version");

    memcpy(b, s.b, s.n); /* first key's length (at byte 24) past the end */
    uint64_t big = 1ull << 40;
    memcpy(b + 24, &big, 8);
    expect_fail(b, s.n, RK_STATUS_FORMAT, 24, "string length");

    memcpy(b, s.b, s.n); /* absurd tensor count */
    memcpy(b + 8, &big, 8);
    expect_fail(b, s.n, RK_STATUS_FORMAT, 8, "tensor count");

    const struct rk_gguf_tensor * last = &s.g->tensors[s.g->n_tensors - 1];
    memcpy(b, s.b, s.n); /* tensor data offset past the end */
    uint64_t off = 1u << 20;
    memcpy(b + type_at(last) + 4, &off, 8);
    expect_fail(b, s.n, RK_STATUS_FORMAT, (long long) (s.g->data_offset + (int64_t) off), "runs past the end");

    memcpy(b, s.b, s.n); /* misaligned offset */
    off = last->offset + 4;
    memcpy(b + type_at(last) + 4, &off, 8);
    expect_fail(b, s.n, RK_STATUS_FORMAT, last->info_offset, "alignment");

    memcpy(b, s.b, s.n); /* n_dims 5 */
    uint32_t five = 5;
    memcpy(b + ndims_at(last), &five, 4);
    expect_fail(b, s.n, RK_STATUS_FORMAT, (long long) ndims_at(last), "n_dims 5");

    memcpy(b, s.b, s.n); /* unknown ggml type */
    uint32_t ty = 99;
    memcpy(b + type_at(last), &ty, 4);
    expect_fail(b, s.n, RK_STATUS_FORMAT, (long long) type_at(last), "unknown ggml type 99");

    memcpy(b, s.b, s.n); /* unknown metadata value type: first key is at 24, its type right after */
    uint64_t klen;
    memcpy(&klen, b + 24, 8);
    memcpy(b + 32 + klen, &ty, 4);
    expect_fail(b, s.n, RK_STATUS_FORMAT, (long long) (32 + klen), "unknown value type");

    free(b);
    rk_gguf_close(s.g);
    free(s.b);
}

/* A valid ggml type rk cannot dequantize opens fine and fails only when read. */
Test(gguf_bad, unsupported_type_on_read) {
    struct synth s = load_synth();
    const struct rk_gguf_tensor * q = rk_gguf_find_tensor(s.g, "q4_0");
    cr_assert(q);
    uint32_t iq4_nl = RK_GGML_TYPE_IQ4_NL; /* same block geometry as Q4_0: 32 values in 18 bytes */
    memcpy(s.b + type_at(q), &iq4_nl, 4);
    char path[4096];
    rk_test_write_file(path, sizeof(path), rk_test_tmpdir(), "iq.gguf", s.b, s.n);
    struct rk_gguf * g = open_ok(path);
    const struct rk_gguf_tensor * t = rk_gguf_find_tensor(g, "q4_0");
    float out[3 * 96];
    cr_assert(rk_gguf_read_f32(g, t, out, t->nelements) == RK_STATUS_UNSUPPORTED);
    cr_assert(strstr(rk_last_error(), "IQ4_NL") && strstr(rk_last_error(), "q4_0"), "%s", rk_last_error());
    rk_gguf_close(g);
    unlink(path);
    rk_gguf_close(s.g);
    free(s.b);
}

Test(gguf_bad, missing_file) {
    struct rk_gguf * g = NULL;
    cr_assert(rk_gguf_open("/nonexistent/x.gguf", &g) == RK_STATUS_IO && g == NULL);
    cr_assert(strstr(rk_last_error(), "/nonexistent/x.gguf"));
}
