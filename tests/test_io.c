/*
 * test_io.c: the model file loaders: safetensors (single file and sharded directories), config.json and the
 * sentence-transformers head files. Fixtures are written from C into a fresh temporary directory per test;
 * the real all-MiniLM-L6-v2 checkpoint (make models) is opened too.
 */
#include "io/config.h"
#include "io/safetensors.h"
#include "test_util.h"

#include <math.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------------
 * fixture helpers */

/*
 * Writes dir/name as a safetensors file: the 8-byte little-endian header length (hlen, or strlen(header) when
 * hlen < 0), the header text, then data_len bytes of data. Returns the path in buf.
 */
static const char * write_st(char * buf, size_t n, const char * dir, const char * name, const char * header,
                             int64_t hlen, const void * data, size_t data_len) {
    snprintf(buf, n, "%s/%s", dir, name);
    FILE * f = fopen(buf, "wb");
    cr_assert(f != NULL, "cannot write %s", buf);
    uint64_t len = hlen < 0 ? (uint64_t) strlen(header) : (uint64_t) hlen;
    uint8_t  le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t) (len >> (8 * i));
    cr_assert(fwrite(le, 1, 8, f) == 8);
    cr_assert(fwrite(header, 1, strlen(header), f) == strlen(header));
    if (data_len) cr_assert(fwrite(data, 1, data_len, f) == data_len);
    cr_assert(fclose(f) == 0);
    return buf;
}

/* Opens path expecting failure with status want and a message holding the file name and each of the words. */
static void expect_open_error(const char * path, enum rk_status want, const char * const * words) {
    struct rk_safetensors * st = (struct rk_safetensors *) 1;
    rk_clear_error();
    enum rk_status s = rk_safetensors_open(path, &st);
    const char * msg = rk_last_error();
    cr_assert_eq(s, want, "status %s, want %s (message: %s)", rk_status_name(s), rk_status_name(want), msg);
    cr_assert_null(st, "out must be NULL on failure");
    cr_assert(strstr(msg, path) != NULL, "message does not name the file %s: %s", path, msg);
    for (const char * const * w = words; w && *w; w++) {
        cr_assert(strstr(msg, *w) != NULL, "message lacks '%s': %s", *w, msg);
    }
}

/* A small valid file: two f32 tensors, used by the corruption tests (64 + 16 bytes of data). */
static const char small_header[] =
    "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]},"
    "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[64,80]}}";

/* ------------------------------------------------------------------------------------------------
 * safetensors: valid files */

Test(safetensors, dtypes_read_back_exactly) {
    const char * dir = rk_test_tmpdir();
    /* f32 (2,3) at 0; f16 (5) at 24; bf16 (2,2) at 34; i64 (3) at 42; bool (2) at 66; f32 scalar at 68 */
    uint8_t data[72];
    const float    f32[6]  = { 0.0f, -1.5f, 3.25f, 1e-30f, -65504.0f, 123456.789f };
    /* f16: 1, -2, 0.333251953125, 65504 (largest), 2^-24 (smallest subnormal) */
    const uint16_t f16[5]  = { 0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001 };
    const float    f16_want[5] = { 1.0f, -2.0f, 0.333251953125f, 65504.0f, 5.9604644775390625e-8f };
    /* bf16: 1, -3, 0.333984375, largest finite */
    const uint16_t bf16[4] = { 0x3F80, 0xC040, 0x3EAB, 0x7F7F };
    const float    bf16_want[4] = { 1.0f, -3.0f, 0.333984375f, 3.3895313892515355e38f };
    const int64_t  i64[3]  = { -1, 0, 1LL << 40 };
    const uint8_t  b[2]    = { 1, 0 };
    const float    scalar  = 7.0f;
    memcpy(data + 0, f32, 24);
    memcpy(data + 24, f16, 10);
    memcpy(data + 34, bf16, 8);
    memcpy(data + 42, i64, 24);
    memcpy(data + 66, b, 2);
    memcpy(data + 68, &scalar, 4);
    /* header padded with spaces to a multiple of 8, as the reference writer does */
    char header[1024];
    int  k = snprintf(header, sizeof(header),
                      "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
                      "\"bert.x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[24,34]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[34,42]},"
                      "\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[42,66]},"
                      "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[66,68]},"
                      "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[68,72]}}");
    while (k % 8 != 0) header[k++] = ' ';
    header[k] = '\0';
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", header, -1, data, sizeof(data));

    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(path, &st), RK_OK, "%s", rk_last_error());
    cr_assert_eq(st->n, 6);
    cr_assert_str_eq(rk_safetensors_meta(st, "format"), "pt");
    cr_assert_null(rk_safetensors_meta(st, "absent"));

    cr_assert_null(rk_safetensors_find(st, "x"));
    const struct rk_st_entry * e = rk_safetensors_find_any(st, "x", NULL);
    cr_assert_not_null(e);
    cr_assert_str_eq(e->name, "bert.x");
    cr_assert_eq(e->dtype, RK_DTYPE_F32);
    cr_assert_eq(e->ndim, 2);
    cr_assert_eq(e->shape[0], 2);
    cr_assert_eq(e->shape[1], 3);
    cr_assert_eq(e->nbytes, 24);
    cr_assert_eq(e->file, st);
    float got[6];
    cr_assert_eq(rk_safetensors_read_f32(st, e, got, 6), RK_OK, "%s", rk_last_error());
    cr_assert_arr_eq(got, f32, sizeof(f32));

    e = rk_safetensors_find(st, "h");
    cr_assert_not_null(e);
    cr_assert_eq(e->dtype, RK_DTYPE_F16);
    cr_assert_eq(rk_safetensors_read_f32(NULL, e, got, 5), RK_OK, "%s", rk_last_error());
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(got[i], f16_want[i], "f16[%d] = %.9g, want %.9g", i, got[i], f16_want[i]);
    }

    e = rk_safetensors_find(st, "b");
    cr_assert_not_null(e);
    cr_assert_eq(e->dtype, RK_DTYPE_BF16);
    cr_assert_eq(rk_safetensors_read_f32(st, e, got, 4), RK_OK, "%s", rk_last_error());
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(got[i], bf16_want[i], "bf16[%d] = %.9g, want %.9g", i, got[i], bf16_want[i]);
    }

    e = rk_safetensors_find(st, "ids");
    cr_assert_not_null(e);
    cr_assert_eq(e->dtype, RK_DTYPE_I64);
    cr_assert_arr_eq(e->data, i64, sizeof(i64));
    cr_assert_eq(rk_safetensors_read_f32(st, e, got, 3), RK_STATUS_UNSUPPORTED);
    cr_assert(strstr(rk_last_error(), "'ids'") != NULL, "%s", rk_last_error());

    e = rk_safetensors_find(st, "mask");
    cr_assert_not_null(e);
    cr_assert_eq(e->dtype, RK_DTYPE_U8);
    cr_assert_arr_eq(e->data, b, 2);

    e = rk_safetensors_find(st, "s");
    cr_assert_not_null(e);
    cr_assert_eq(e->ndim, 0);
    cr_assert_eq(rk_st_entry_nelements(e), 1);
    cr_assert_eq(rk_safetensors_read_f32(st, e, got, 1), RK_OK);
    cr_assert_eq(got[0], 7.0f);

    /* a wrong element count is the caller's error and names the tensor and its shape */
    e = rk_safetensors_find(st, "bert.x");
    cr_assert_eq(rk_safetensors_read_f32(st, e, got, 5), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), "'bert.x'") && strstr(rk_last_error(), "[2, 3]"), "%s", rk_last_error());
    rk_safetensors_close(st);
}

/* The format does not promise aligned offsets: an odd-length header puts f32 data at an odd address. */
Test(safetensors, unaligned_data) {
    const char * dir = rk_test_tmpdir();
    const float    f32[3] = { 1.0f, -2.0f, 0.1f };
    const uint16_t bf16[2] = { 0x3F80, 0xC040 };
    uint8_t data[17];
    data[0] = 0xAA;
    memcpy(data + 1, f32, 12);
    memcpy(data + 13, bf16, 4);
    const char * header = "{\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                          "\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]},"
                          "\"v\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[13,17]}}";
    char path[512];
    write_st(path, sizeof(path), dir, "u.safetensors", header, -1, data, sizeof(data));
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(path, &st), RK_OK, "%s", rk_last_error());
    float got[3];
    cr_assert_eq(rk_safetensors_read_f32(st, rk_safetensors_find(st, "w"), got, 3), RK_OK);
    cr_assert_arr_eq(got, f32, sizeof(f32));
    cr_assert_eq(rk_safetensors_read_f32(st, rk_safetensors_find(st, "v"), got, 2), RK_OK);
    cr_assert_eq(got[0], 1.0f);
    cr_assert_eq(got[1], -3.0f);
    rk_safetensors_close(st);
}

Test(safetensors, empty_header_is_valid) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    write_st(path, sizeof(path), dir, "e.safetensors", "{}", -1, NULL, 0);
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(path, &st), RK_OK, "%s", rk_last_error());
    cr_assert_eq(st->n, 0);
    cr_assert_null(rk_safetensors_find(st, "x"));
    rk_safetensors_close(st);
}

Test(safetensors, real_minilm) {
    char dir[1024], path[1100];
    rk_test_model_dir(dir, sizeof(dir), "all-MiniLM-L6-v2");
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(path, &st), RK_OK, "%s", rk_last_error());
    const struct rk_st_entry * e = rk_safetensors_find_any(st, "embeddings.word_embeddings.weight", NULL);
    cr_assert_not_null(e);
    cr_assert_eq(e->dtype, RK_DTYPE_F32);
    cr_assert_eq(e->ndim, 2);
    cr_assert_eq(e->shape[0], 30522);
    cr_assert_eq(e->shape[1], 384);
    cr_assert_eq(e->nbytes, (size_t) 30522 * 384 * 4);

    /* layer 5 exists, layer 6 does not (6 layers); every tensor is read back finite */
    cr_assert_not_null(rk_safetensors_find_any(st, "encoder.layer.5.output.LayerNorm.weight", NULL));
    cr_assert_null(rk_safetensors_find_any(st, "encoder.layer.6.output.LayerNorm.weight", NULL));
    const struct rk_st_entry * ln = rk_safetensors_find_any(st, "embeddings.LayerNorm.weight", NULL);
    cr_assert_not_null(ln);
    float w[384];
    cr_assert_eq(rk_safetensors_read_f32(st, ln, w, 384), RK_OK, "%s", rk_last_error());
    for (int i = 0; i < 384; i++) cr_assert(isfinite(w[i]) && w[i] != 0.0f, "LayerNorm.weight[%d] = %g", i, w[i]);
    rk_safetensors_close(st);

    struct rk_st_set * set = NULL;
    cr_assert_eq(rk_safetensors_open_dir(dir, &set), RK_OK, "%s", rk_last_error());
    cr_assert_eq(set->n_files, 1);
    e = rk_st_set_find_any(set, "embeddings.word_embeddings.weight", NULL);
    cr_assert_not_null(e);
    cr_assert_eq(e->shape[0], 30522);
    rk_st_set_close(set);
}

/* ------------------------------------------------------------------------------------------------
 * safetensors: malformed files */

Test(safetensors, missing_file) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/nope.safetensors", dir);
    expect_open_error(path, RK_STATUS_IO, (const char * const[]) { "cannot open", NULL });
}

Test(safetensors, directory_is_not_a_file) {
    const char * dir = rk_test_tmpdir();
    expect_open_error(dir, RK_STATUS_IO, (const char * const[]) { "not a regular file", NULL });
}

Test(safetensors, shorter_than_length_field) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    rk_test_write_file(path, sizeof(path), dir, "short.safetensors", "abcde", 5);
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "too short", NULL });
}

Test(safetensors, truncated_in_header) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[80] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", small_header, -1, data, sizeof(data));
    cr_assert_eq(truncate(path, 8 + 20), 0);
    char want[64];
    snprintf(want, sizeof(want), "header length %zu runs past the end of the file (28 bytes", strlen(small_header));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "byte 0", want, NULL });
}

Test(safetensors, truncated_in_data) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[80] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", small_header, -1, data, sizeof(data));
    cr_assert_eq(truncate(path, (off_t) (8 + strlen(small_header) + 70)), 0);
    expect_open_error(path, RK_STATUS_FORMAT,
                      (const char * const[]) { "tensor 'a.bias'",
                                               "data_offsets [64, 80] run past the end of the data (70 bytes", NULL });
}

Test(safetensors, header_length_past_end) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", "{}", 123456789, NULL, 0);
    expect_open_error(path, RK_STATUS_FORMAT,
                      (const char * const[]) { "model.safetensors: byte 0: header length 123456789 runs past the end "
                                               "of the file (10 bytes",
                                               NULL });
}

/* A header over the format's 100 MB limit is refused before it is read (a sparse file costs no disk). */
Test(safetensors, header_over_limit) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    write_st(path, sizeof(path), dir, "big.safetensors", "{", 150000000, NULL, 0);
    cr_assert_eq(truncate(path, 200000000), 0);
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "exceeds the format's limit", NULL });
    cr_assert_eq(unlink(path), 0);
}

Test(safetensors, header_not_json) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", "{\"a\": {nope}}", -1, NULL, 0);
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "not valid JSON", "byte ", NULL });
}

Test(safetensors, header_not_object) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", "[1, 2]", -1, NULL, 0);
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "not a JSON object", NULL });
}

Test(safetensors, junk_after_header) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors", "{}  x", -1, NULL, 0);
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "byte 12: unexpected data", NULL });
}

Test(safetensors, offsets_not_matching_shape) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[80] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,80]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT,
                      (const char * const[]) { "model.safetensors: tensor 'x.weight': data_offsets [0, 80] do not "
                                               "match shape [4, 4] of F32 (64 bytes)",
                                               NULL });
}

Test(safetensors, offsets_past_end) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[64] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[32,96]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT,
                      (const char * const[]) { "tensor 'x'", "[32, 96] run past the end of the data (64 bytes", NULL });
}

Test(safetensors, offsets_reversed) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[64] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 'x'", "[8, 0] end before", NULL });
}

Test(safetensors, offsets_malformed) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[64] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64.5]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 'x'", "'data_offsets'", NULL });
}

Test(safetensors, unknown_dtype) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[16] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"enc.q\":{\"dtype\":\"Q9\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 'enc.q'", "unknown dtype 'Q9'", NULL });
}

/* F64 is a valid safetensors dtype that rk has no type for: unsupported rather than malformed. */
Test(safetensors, unsupported_dtype) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[16] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_UNSUPPORTED, (const char * const[]) { "tensor 'd'", "F64", NULL });
}

Test(safetensors, bad_shapes) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[16] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "neg.safetensors",
             "{\"n\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 'n'", "shape entry 0", NULL });
    write_st(path, sizeof(path), dir, "str.safetensors",
             "{\"n\":{\"dtype\":\"U8\",\"shape\":\"4\",\"data_offsets\":[0,4]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 'n'", "'shape'", NULL });
    write_st(path, sizeof(path), dir, "5d.safetensors",
             "{\"n\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,16],\"data_offsets\":[0,16]}}", -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_UNSUPPORTED, (const char * const[]) { "tensor 'n'", "5 dimensions", NULL });
    /* 2^32 * 2^32 elements overflow 64 bits: an error, not a wrapped-around size */
    write_st(path, sizeof(path), dir, "ovf.safetensors",
             "{\"n\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", -1, data,
             sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 'n'", "overflows", NULL });
}

Test(safetensors, duplicate_name) {
    const char * dir = rk_test_tmpdir();
    uint8_t data[8] = { 0 };
    char path[512];
    write_st(path, sizeof(path), dir, "model.safetensors",
             "{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
             "\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
             -1, data, sizeof(data));
    expect_open_error(path, RK_STATUS_FORMAT, (const char * const[]) { "tensor 't' appears twice", NULL });
}

/* ------------------------------------------------------------------------------------------------
 * safetensors: model directories */

/* Two shards of two tensors each, and an index mapping them. */
static void write_shards(const char * dir, const char * index) {
    char path[512];
    float a[2] = { 1.0f, 2.0f }, b[2] = { 3.0f, 4.0f };
    write_st(path, sizeof(path), dir, "model-00001-of-00002.safetensors",
             "{\"bert.embeddings.word_embeddings.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             -1, a, sizeof(a));
    write_st(path, sizeof(path), dir, "model-00002-of-00002.safetensors",
             "{\"bert.pooler.dense.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, b,
             sizeof(b));
    rk_test_write_file(path, sizeof(path), dir, "model.safetensors.index.json", index, strlen(index));
}

Test(safetensors, sharded_dir) {
    const char * dir = rk_test_tmpdir();
    write_shards(dir, "{\"metadata\":{\"total_size\":16},\"weight_map\":{"
                      "\"bert.embeddings.word_embeddings.weight\":\"model-00001-of-00002.safetensors\","
                      "\"bert.pooler.dense.bias\":\"model-00002-of-00002.safetensors\"}}");
    struct rk_st_set * set = NULL;
    cr_assert_eq(rk_safetensors_open_dir(dir, &set), RK_OK, "%s", rk_last_error());
    cr_assert_eq(set->n_files, 2);
    const struct rk_st_entry * e = rk_st_set_find_any(set, "pooler.dense.bias", NULL);
    cr_assert_not_null(e);
    float got[2];
    cr_assert_eq(rk_safetensors_read_f32(NULL, e, got, 2), RK_OK, "%s", rk_last_error());
    cr_assert_eq(got[0], 3.0f);
    cr_assert_eq(got[1], 4.0f);
    cr_assert(strstr(e->file->path, "model-00002-of-00002.safetensors") != NULL);
    cr_assert_not_null(rk_st_set_find(set, "bert.embeddings.word_embeddings.weight"));
    cr_assert_null(rk_st_set_find(set, "pooler.dense.bias"));
    rk_st_set_close(set);
}

Test(safetensors, sharded_dir_wrong_shard) {
    const char * dir = rk_test_tmpdir();
    write_shards(dir, "{\"weight_map\":{"
                      "\"bert.embeddings.word_embeddings.weight\":\"model-00001-of-00002.safetensors\","
                      "\"bert.pooler.dense.bias\":\"model-00001-of-00002.safetensors\"}}");
    struct rk_st_set * set = NULL;
    cr_assert_eq(rk_safetensors_open_dir(dir, &set), RK_STATUS_FORMAT);
    cr_assert_null(set);
    const char * msg = rk_last_error();
    cr_assert(strstr(msg, "model.safetensors.index.json") && strstr(msg, "'bert.pooler.dense.bias'"), "%s", msg);
}

Test(safetensors, sharded_dir_missing_shard) {
    const char * dir = rk_test_tmpdir();
    write_shards(dir, "{\"weight_map\":{\"x\":\"model-00003-of-00002.safetensors\"}}");
    struct rk_st_set * set = NULL;
    cr_assert_eq(rk_safetensors_open_dir(dir, &set), RK_STATUS_IO);
    cr_assert(strstr(rk_last_error(), "model-00003-of-00002.safetensors"), "%s", rk_last_error());
}

Test(safetensors, sharded_dir_bad_index) {
    const char * dir = rk_test_tmpdir();
    write_shards(dir, "{\"weight_map\": [}");
    struct rk_st_set * set = NULL;
    cr_assert_eq(rk_safetensors_open_dir(dir, &set), RK_STATUS_FORMAT);
    cr_assert(strstr(rk_last_error(), "model.safetensors.index.json:1:"), "%s", rk_last_error());
}

Test(safetensors, empty_dir) {
    const char * dir = rk_test_tmpdir();
    struct rk_st_set * set = NULL;
    cr_assert_eq(rk_safetensors_open_dir(dir, &set), RK_STATUS_IO);
    cr_assert_null(set);
    cr_assert(strstr(rk_last_error(), dir) && strstr(rk_last_error(), "no model.safetensors"), "%s",
              rk_last_error());
}

/* ------------------------------------------------------------------------------------------------
 * JSON files and config.json */

/* Writes text to dir/name and expects rk_bert_config_load to fail with want and the file name plus word. */
static void expect_config_error(const char * text, enum rk_status want, const char * word) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    rk_test_write_file(path, sizeof(path), dir, "config.json", text, strlen(text));
    struct rk_bert_config cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    struct rk_bert_config before = cfg;
    enum rk_status s = rk_bert_config_load(path, &cfg);
    const char * msg = rk_last_error();
    cr_assert_eq(s, want, "status %s, want %s (message: %s)", rk_status_name(s), rk_status_name(want), msg);
    cr_assert(strstr(msg, path) != NULL, "message does not name %s: %s", path, msg);
    cr_assert(strstr(msg, word) != NULL, "message lacks '%s': %s", word, msg);
    cr_assert(memcmp(&cfg, &before, sizeof(cfg)) == 0, "cfg written on failure");
}

Test(config, real_minilm) {
    char dir[1024], path[1100];
    rk_test_model_dir(dir, sizeof(dir), "all-MiniLM-L6-v2");
    snprintf(path, sizeof(path), "%s/config.json", dir);
    struct rk_bert_config c;
    cr_assert_eq(rk_bert_config_load(path, &c), RK_OK, "%s", rk_last_error());
    cr_assert_eq(c.vocab_size, 30522);
    cr_assert_eq(c.hidden_size, 384);
    cr_assert_eq(c.n_layer, 6);
    cr_assert_eq(c.n_head, 12);
    cr_assert_eq(c.intermediate_size, 1536);
    cr_assert_eq(c.max_position, 512);
    cr_assert_eq(c.type_vocab_size, 2);
    cr_assert_eq(c.layer_norm_eps, 1e-12f);
    cr_assert_str_eq(c.hidden_act, "gelu");
    cr_assert_str_eq(c.model_type, "bert");
    cr_assert_eq(c.pad_token_id, 0);
}

#define MINI_FIELDS                                                                                      \
    "\"vocab_size\": 100, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"intermediate_size\": 16, " \
    "\"max_position_embeddings\": 32"

Test(config, optional_fields_default) {
    const char * dir = rk_test_tmpdir();
    const char * text = "{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 2, "
                        "\"pad_token_id\": null}";
    char path[512];
    rk_test_write_file(path, sizeof(path), dir, "config.json", text, strlen(text));
    struct rk_bert_config c;
    cr_assert_eq(rk_bert_config_load(path, &c), RK_OK, "%s", rk_last_error());
    cr_assert_eq(c.hidden_size, 8);
    cr_assert_eq(c.n_head, 2);
    cr_assert_eq(c.type_vocab_size, 2);
    cr_assert_eq(c.layer_norm_eps, 1e-12f);
    cr_assert_str_eq(c.hidden_act, "gelu");
    cr_assert_eq(c.pad_token_id, 0);
}

Test(config, missing_field) {
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS "}", RK_STATUS_FORMAT,
                        "config.json: missing field 'num_attention_heads'");
}

Test(config, wrong_type) {
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": \"2\"}",
                        RK_STATUS_FORMAT, "field 'num_attention_heads' must be an integer, got a string");
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 2.5}",
                        RK_STATUS_FORMAT, "field 'num_attention_heads' must be an integer, got 2.5");
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 2, "
                        "\"layer_norm_eps\": \"1e-12\"}",
                        RK_STATUS_FORMAT, "field 'layer_norm_eps' must be a finite number");
    expect_config_error("[1, 2]", RK_STATUS_FORMAT, "top level must be a JSON object");
}

Test(config, sanity_checks) {
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 3}", RK_STATUS_FORMAT,
                        "hidden_size 8 is not a multiple of num_attention_heads 3");
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 0}", RK_STATUS_FORMAT,
                        "field 'num_attention_heads' must be positive, got 0");
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 2, "
                        "\"pad_token_id\": 100}",
                        RK_STATUS_FORMAT, "pad_token_id 100 is outside the vocabulary");
}

Test(config, unsupported) {
    expect_config_error("{\"model_type\": \"roberta\", " MINI_FIELDS ", \"num_attention_heads\": 2}",
                        RK_STATUS_UNSUPPORTED, "model_type 'roberta' is not supported");
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 2, "
                        "\"hidden_act\": \"gelu_new\"}",
                        RK_STATUS_UNSUPPORTED, "hidden_act 'gelu_new' is not supported");
    expect_config_error("{\"model_type\": \"bert\", " MINI_FIELDS ", \"num_attention_heads\": 2, "
                        "\"position_embedding_type\": \"relative_key\"}",
                        RK_STATUS_UNSUPPORTED, "position_embedding_type 'relative_key'");
}

Test(config, malformed_json_line_col) {
    /* the stray ']' is on line 3, column 8 */
    expect_config_error("{\n  \"a\": 1,\n  \"b\": ],\n  \"c\": 2\n}\n", RK_STATUS_FORMAT,
                        "config.json:3:8: malformed JSON");
    /* a truncated file ends inside the object */
    expect_config_error("{\n  \"a\": 1,\n", RK_STATUS_FORMAT, "unexpected end of file");
    /* trailing data after a complete value */
    expect_config_error("{}\n{}\n", RK_STATUS_FORMAT, "config.json:2:1: malformed JSON");
}

Test(config, missing_file) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    struct rk_bert_config c;
    cr_assert_eq(rk_bert_config_load(path, &c), RK_STATUS_IO);
    cr_assert(strstr(rk_last_error(), path) && strstr(rk_last_error(), "cannot open"), "%s", rk_last_error());
}

Test(config, json_load_file_bom_and_nul) {
    const char * dir = rk_test_tmpdir();
    char path[512];
    rk_test_write_file(path, sizeof(path), dir, "bom.json", "\xEF\xBB\xBF{\"k\": 1}", 11);
    cJSON * root = NULL;
    cr_assert_eq(rk_json_load_file(path, &root), RK_OK, "%s", rk_last_error());
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(root, "k")->valueint, 1);
    cJSON_Delete(root);
    rk_test_write_file(path, sizeof(path), dir, "nul.json", "{}\0garbage", 10);
    cr_assert_eq(rk_json_load_file(path, &root), RK_STATUS_FORMAT);
    cr_assert_null(root);
    cr_assert(strstr(rk_last_error(), "nul.json:1:3:"), "%s", rk_last_error());
}

/* ------------------------------------------------------------------------------------------------
 * sentence-transformers head */

Test(pooling, real_minilm) {
    char dir[1024];
    rk_test_model_dir(dir, sizeof(dir), "all-MiniLM-L6-v2");
    struct rk_st_pooling p;
    cr_assert_eq(rk_st_pooling_load(dir, &p), RK_OK, "%s", rk_last_error());
    cr_assert(p.present);
    cr_assert_eq(p.mode, RK_POOL_MEAN);
    cr_assert(p.normalize);
    cr_assert_eq(p.max_seq_length, 256);
}

Test(pooling, plain_hf_dir_defaults) {
    const char * dir = rk_test_tmpdir();
    struct rk_st_pooling p;
    memset(&p, 0x5a, sizeof(p));
    cr_assert_eq(rk_st_pooling_load(dir, &p), RK_OK, "%s", rk_last_error());
    cr_assert(!p.present);
    cr_assert(!p.normalize);
    cr_assert_eq(p.max_seq_length, 0);
}

static void make_subdir(char * buf, size_t n, const char * dir, const char * sub) {
    snprintf(buf, n, "%s/%s", dir, sub);
    cr_assert_eq(mkdir(buf, 0755), 0, "mkdir %s", buf);
}

/* Without modules.json the conventional 1_Pooling folder is read; no Normalize then. */
Test(pooling, no_modules_json) {
    const char * dir = rk_test_tmpdir();
    char sub[512], path[600];
    make_subdir(sub, sizeof(sub), dir, "1_Pooling");
    const char * cfg = "{\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}";
    rk_test_write_file(path, sizeof(path), sub, "config.json", cfg, strlen(cfg));
    struct rk_st_pooling p;
    cr_assert_eq(rk_st_pooling_load(dir, &p), RK_OK, "%s", rk_last_error());
    cr_assert(p.present);
    cr_assert_eq(p.mode, RK_POOL_CLS);
    cr_assert(!p.normalize);
}

/* modules.json names the Pooling folder; it need not be 1_Pooling. */
Test(pooling, modules_json_path) {
    const char * dir = rk_test_tmpdir();
    char sub[512], path[600];
    make_subdir(sub, sizeof(sub), dir, "pool");
    const char * cfg = "{\"pooling_mode_max_tokens\": true}";
    rk_test_write_file(path, sizeof(path), sub, "config.json", cfg, strlen(cfg));
    const char * mods = "[{\"idx\": 0, \"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
                        " {\"idx\": 1, \"path\": \"pool\", \"type\": \"sentence_transformers.models.Pooling\"}]";
    rk_test_write_file(path, sizeof(path), dir, "modules.json", mods, strlen(mods));
    struct rk_st_pooling p;
    cr_assert_eq(rk_st_pooling_load(dir, &p), RK_OK, "%s", rk_last_error());
    cr_assert(p.present);
    cr_assert_eq(p.mode, RK_POOL_MAX);
    cr_assert(!p.normalize);
}

/* Expects rk_st_pooling_load on dir to fail with want and a message holding each word. */
static void expect_pooling_error(const char * dir, enum rk_status want, const char * w1, const char * w2) {
    struct rk_st_pooling p;
    enum rk_status s = rk_st_pooling_load(dir, &p);
    const char * msg = rk_last_error();
    cr_assert_eq(s, want, "status %s, want %s (message: %s)", rk_status_name(s), rk_status_name(want), msg);
    cr_assert(strstr(msg, w1) != NULL, "message lacks '%s': %s", w1, msg);
    cr_assert(!w2 || strstr(msg, w2) != NULL, "message lacks '%s': %s", w2, msg);
}

Test(pooling, errors) {
    const char * dir = rk_test_tmpdir();
    char sub[512], path[600];
    make_subdir(sub, sizeof(sub), dir, "1_Pooling");

    const char * cfg = "{\"pooling_mode_mean_sqrt_len_tokens\": true}";
    rk_test_write_file(path, sizeof(path), sub, "config.json", cfg, strlen(cfg));
    expect_pooling_error(dir, RK_STATUS_UNSUPPORTED, "1_Pooling/config.json", "mean_sqrt_len");

    cfg = "{\"pooling_mode_mean_tokens\": true, \"pooling_mode_max_tokens\": true}";
    rk_test_write_file(path, sizeof(path), sub, "config.json", cfg, strlen(cfg));
    expect_pooling_error(dir, RK_STATUS_UNSUPPORTED, "1_Pooling/config.json", "2 pooling modes");

    cfg = "{\"pooling_mode_mean_tokens\": 1}";
    rk_test_write_file(path, sizeof(path), sub, "config.json", cfg, strlen(cfg));
    expect_pooling_error(dir, RK_STATUS_FORMAT, "1_Pooling/config.json", "must be true or false");

    cfg = "{\"pooling_mode_mean_tokens\": true}";
    rk_test_write_file(path, sizeof(path), sub, "config.json", cfg, strlen(cfg));
    const char * sbert = "{\"max_seq_length\": \"256\"}";
    rk_test_write_file(path, sizeof(path), dir, "sentence_bert_config.json", sbert, strlen(sbert));
    expect_pooling_error(dir, RK_STATUS_FORMAT, "sentence_bert_config.json", "'max_seq_length'");
    sbert = "{\"max_seq_length\": 128}";
    rk_test_write_file(path, sizeof(path), dir, "sentence_bert_config.json", sbert, strlen(sbert));

    const char * mods = "[{\"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"},\n"
                        " {\"path\": \"2_Dense\", \"type\": \"sentence_transformers.models.Dense\"}]";
    rk_test_write_file(path, sizeof(path), dir, "modules.json", mods, strlen(mods));
    expect_pooling_error(dir, RK_STATUS_UNSUPPORTED, "modules.json", "sentence_transformers.models.Dense");

    mods = "[{\"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"},\n oops]";
    rk_test_write_file(path, sizeof(path), dir, "modules.json", mods, strlen(mods));
    expect_pooling_error(dir, RK_STATUS_FORMAT, "modules.json:2:2: malformed JSON", NULL);

    /* a Pooling module listed in modules.json must have its config */
    mods = "[{\"path\": \"3_Pool\", \"type\": \"sentence_transformers.models.Pooling\"}]";
    rk_test_write_file(path, sizeof(path), dir, "modules.json", mods, strlen(mods));
    expect_pooling_error(dir, RK_STATUS_IO, "3_Pool/config.json", "cannot open");

    mods = "[{\"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"}, "
           "{\"path\": \"2_Normalize\", \"type\": \"sentence_transformers.models.Normalize\"}]";
    rk_test_write_file(path, sizeof(path), dir, "modules.json", mods, strlen(mods));
    struct rk_st_pooling p;
    cr_assert_eq(rk_st_pooling_load(dir, &p), RK_OK, "%s", rk_last_error());
    cr_assert(p.present && p.normalize);
    cr_assert_eq(p.mode, RK_POOL_MEAN);
    cr_assert_eq(p.max_seq_length, 128);
}
