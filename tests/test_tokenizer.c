/*
 * test_tokenizer.c: the BERT WordPiece tokenizer (host/tokenizer/wordpiece.c) against Hugging Face's
 * BertTokenizerFast on models/all-MiniLM-L6-v2.
 *
 * Golden files, all written by tests/golden/gen_tokenizer.py:
 *   tokenizer_minilm.jsonl          {"text", "max_len", "ids"} per line: ids must match exactly
 *   tokenizer_minilm_configs.jsonl  the same with a "config" (tokenizer_config.json options) per line
 *   tokenizer_minilm_cps.txt        hashes of the ids of "x<c>x <c>" for every code point c, per 4096 block
 *   tokenizer_minilm_reuters.txt    hashes of the ids of the 7,770 Reuters-21578 training documents, per 50
 * The Reuters test reads $RK_DATASETS/reuters21578/train.csv.gz (RK_DATASETS defaults to
 * $RK_ROOT/../shared/datasets), like test_data.c; a missing file is a failure, not a skip.
 */
#include "datasets/dataset.h"
#include "test_util.h"
#include "tokenizer/wordpiece.h"

#include <cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#define MINILM "all-MiniLM-L6-v2"

/* ---- helpers ---------------------------------------------------------------------------------- */

static struct rk_wordpiece * load_minilm(void) {
    char dir[1024];
    rk_test_model_dir(dir, sizeof(dir), MINILM);
    struct rk_wordpiece * tok = NULL;
    enum rk_status        s   = rk_wordpiece_load(dir, &tok);
    cr_assert_eq(s, RK_OK, "rk_wordpiece_load(%s): %s", dir, rk_last_error());
    cr_assert(tok != NULL);
    return tok;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + 1e-9 * (double) t.tv_nsec;
}

/* Reads a whole file (NUL-terminated); fails the test when it is missing. */
static char * read_text(const char * path) {
    FILE * f = fopen(path, "rb");
    cr_assert(f != NULL, "%s missing (regenerate with python3 tests/golden/gen_tokenizer.py)", path);
    cr_assert(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    cr_assert(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
    char * buf = malloc((size_t) n + 1);
    cr_assert(buf != NULL && fread(buf, 1, (size_t) n, f) == (size_t) n, "cannot read %s", path);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* FNV-1a 64 over each id as 4 little-endian bytes, then a 0xFFFFFFFF separator (as gen_tokenizer.py). */
static uint64_t fnv_ids(uint64_t h, const int32_t * ids, int64_t n) {
    for (int64_t i = 0; i <= n; i++) {
        uint32_t v = i < n ? (uint32_t) ids[i] : 0xFFFFFFFFu;
        for (int k = 0; k < 4; k++) {
            h ^= (v >> (8 * k)) & 0xFF;
            h *= 0x100000001B3ull;
        }
    }
    return h;
}
#define FNV_OFFSET 0xCBF29CE484222325ull

static const char * expect_status(enum rk_status got, enum rk_status want, const char * frag1, const char * frag2) {
    const char * msg = rk_last_error();
    cr_assert_eq(got, want, "status %s (want %s), message: %s", rk_status_name(got), rk_status_name(want), msg);
    if (frag1) cr_assert(strstr(msg, frag1) != NULL, "message lacks '%s': %s", frag1, msg);
    if (frag2) cr_assert(strstr(msg, frag2) != NULL, "message lacks '%s': %s", frag2, msg);
    return msg;
}

/*
 * Runs every line of a golden jsonl file through encode. With a "config" member, tok_for_config makes the
 * tokenizer for it (NULL: use tok). Reports the first mismatch (line, text as JSON, position, both id lists).
 */
typedef struct rk_wordpiece * (*tok_for_config_fn)(const cJSON * config);

static int64_t check_jsonl(const char * rel, struct rk_wordpiece * tok, tok_for_config_fn tok_for_config) {
    char path[4096];
    rk_test_path(path, sizeof(path), rel);
    char *  data    = read_text(path);
    int64_t n_cases = 0, n_bad = 0, line_no = 0;
    char    first[8192] = "";
    struct rk_wordpiece * cfg_tok  = NULL;
    char *                cfg_text = NULL;
    for (char * line = data; *line;) {
        char * nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        line_no++;
        if (*line) {
            cJSON * rec = cJSON_Parse(line);
            cr_assert(rec != NULL, "%s:%lld: bad JSON", path, (long long) line_no);
            const cJSON * text = cJSON_GetObjectItemCaseSensitive(rec, "text");
            const cJSON * ml   = cJSON_GetObjectItemCaseSensitive(rec, "max_len");
            const cJSON * ids  = cJSON_GetObjectItemCaseSensitive(rec, "ids");
            const cJSON * cfg  = cJSON_GetObjectItemCaseSensitive(rec, "config");
            cr_assert(cJSON_IsString(text) && cJSON_IsNumber(ml) && cJSON_IsArray(ids), "%s:%lld: bad record", path,
                      (long long) line_no);
            struct rk_wordpiece * use = tok;
            if (cfg) {
                char * key = cJSON_PrintUnformatted(cfg);
                if (cfg_text == NULL || strcmp(cfg_text, key) != 0) {
                    rk_wordpiece_free(cfg_tok);
                    free(cfg_text);
                    cfg_tok  = tok_for_config(cfg);
                    cfg_text = key;
                } else {
                    free(key);
                }
                use = cfg_tok;
            }
            int64_t   max_len = (int64_t) ml->valuedouble;
            int64_t   n_want  = cJSON_GetArraySize(ids);
            int32_t * got     = malloc((size_t) max_len * sizeof(int32_t));
            int64_t   n_got   = rk_wordpiece_encode(use, text->valuestring, got, max_len);
            int64_t   pos     = -1;
            for (int64_t i = 0; i < (n_got > n_want ? n_got : n_want); i++) {
                int32_t want = i < n_want ? (int32_t) cJSON_GetArrayItem(ids, (int) i)->valuedouble : -1;
                int32_t have = i < n_got ? got[i] : -1;
                if (want != have) {
                    pos = i;
                    break;
                }
            }
            if (pos >= 0 && n_bad++ == 0) {
                char * esc  = cJSON_PrintUnformatted(text);
                char * want = cJSON_PrintUnformatted(ids);
                char   have[2048];
                int    o = 0;
                for (int64_t i = 0; i < n_got && o < (int) sizeof(have) - 16; i++) {
                    o += snprintf(have + o, sizeof(have) - (size_t) o, "%s%d", i ? "," : "[", got[i]);
                }
                snprintf(have + o, sizeof(have) - (size_t) o, "]");
                snprintf(first, sizeof(first), "%.1000s:%lld: text %.600s%s%.200s (max_len %lld): first difference at "
                         "position %lld\n  want %.1200s\n  got  %.1200s", path, (long long) line_no, esc,
                         cfg ? " config " : "", cfg ? cfg_text : "", (long long) max_len, (long long) pos, want, have);
                free(esc);
                free(want);
            }
            n_cases++;
            free(got);
            cJSON_Delete(rec);
        }
        if (!nl) break;
        line = nl + 1;
    }
    rk_wordpiece_free(cfg_tok);
    free(cfg_text);
    free(data);
    cr_assert_eq(n_bad, 0, "%lld of %lld golden cases differ; the first:\n%s", (long long) n_bad,
                 (long long) n_cases, first);
    return n_cases;
}

/* A tokenizer over MiniLM's vocab.txt with the given tokenizer_config.json options (a fresh temp dir). */
static struct rk_wordpiece * tok_for_config(const cJSON * config) {
    char model[1024], src[2048], dst[2048], tmp[256];
    rk_test_model_dir(model, sizeof(model), MINILM);
    snprintf(tmp, sizeof(tmp), "%s", rk_test_tmpdir());
    snprintf(src, sizeof(src), "%s/vocab.txt", model);
    snprintf(dst, sizeof(dst), "%s/vocab.txt", tmp);
    cr_assert(symlink(src, dst) == 0, "symlink %s", dst);
    char * json = cJSON_PrintUnformatted(config);
    rk_test_write_file(dst, sizeof(dst), tmp, "tokenizer_config.json", json, strlen(json));
    free(json);
    struct rk_wordpiece * tok = NULL;
    cr_assert_eq(rk_wordpiece_load(tmp, &tok), RK_OK, "%s", rk_last_error());
    return tok;
}

/* Writes files into a fresh temp dir and loads it; returns the status (the dir path in dir_out). */
static enum rk_status load_files(char * dir_out, size_t n, const char * name1, const char * text1,
                                 const char * name2, const char * text2, struct rk_wordpiece ** tok) {
    snprintf(dir_out, n, "%s", rk_test_tmpdir());
    char path[4096];
    if (name1) rk_test_write_file(path, sizeof(path), dir_out, name1, text1, strlen(text1));
    if (name2) rk_test_write_file(path, sizeof(path), dir_out, name2, text2, strlen(text2));
    *tok = NULL;
    return rk_wordpiece_load(dir_out, tok);
}

static const char * small_vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\na\n##a\nhello\n,\n";

/* ---- golden ----------------------------------------------------------------------------------- */

Test(wordpiece, golden_minilm) {
    struct rk_wordpiece * tok = load_minilm();
    int64_t n = check_jsonl("tests/golden/tokenizer_minilm.jsonl", tok, NULL);
    cr_assert_geq(n, 300, "only %lld golden cases", (long long) n);
    cr_log_info("tokenizer: %lld golden strings match BertTokenizerFast", (long long) n);
    rk_wordpiece_free(tok);
}

Test(wordpiece, golden_configs) {
    int64_t n = check_jsonl("tests/golden/tokenizer_minilm_configs.jsonl", NULL, tok_for_config);
    cr_assert_geq(n, 100);
}

/* The same golden strings through tokenizer.json alone (no vocab.txt, no tokenizer_config.json). */
Test(wordpiece, golden_from_tokenizer_json) {
    char model[1024], src[2048], dst[2048], tmp[256];
    rk_test_model_dir(model, sizeof(model), MINILM);
    snprintf(tmp, sizeof(tmp), "%s", rk_test_tmpdir());
    snprintf(src, sizeof(src), "%s/tokenizer.json", model);
    snprintf(dst, sizeof(dst), "%s/tokenizer.json", tmp);
    cr_assert(symlink(src, dst) == 0);
    struct rk_wordpiece * tok = NULL;
    cr_assert_eq(rk_wordpiece_load(tmp, &tok), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_wordpiece_vocab_size(tok), 30522);
    check_jsonl("tests/golden/tokenizer_minilm.jsonl", tok, NULL);
    rk_wordpiece_free(tok);
}

/* Every code point, through "x<c>x <c>": hashes per 4096 block against the fast tokenizer's. */
Test(wordpiece, every_code_point) {
    struct rk_wordpiece * tok = load_minilm();
    char path[4096];
    rk_test_path(path, sizeof(path), "tests/golden/tokenizer_minilm_cps.txt");
    char *  data = read_text(path);
    int64_t n_blocks = 0, n_bad = 0;
    char    first[256] = "";
    for (char * line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        unsigned long      start;
        unsigned long long want;
        cr_assert(sscanf(line, "%lx %llx", &start, &want) == 2, "%s: bad line %s", path, line);
        uint64_t h = FNV_OFFSET;
        for (int32_t cp = (int32_t) start; cp < (int32_t) start + 4096; cp++) {
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) continue;
            char    c[5] = { 0 };
            if (cp < 0x80) {
                c[0] = (char) cp;
            } else if (cp < 0x800) {
                c[0] = (char) (0xC0 | (cp >> 6));
                c[1] = (char) (0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                c[0] = (char) (0xE0 | (cp >> 12));
                c[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
                c[2] = (char) (0x80 | (cp & 0x3F));
            } else {
                c[0] = (char) (0xF0 | (cp >> 18));
                c[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
                c[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
                c[3] = (char) (0x80 | (cp & 0x3F));
            }
            char    text[16];
            int32_t ids[16];
            snprintf(text, sizeof(text), "x%sx %s", c, c);
            int64_t n = rk_wordpiece_encode(tok, text, ids, 16);
            h = fnv_ids(h, ids, n);
        }
        if (h != want && n_bad++ == 0) {
            snprintf(first, sizeof(first), "code points U+%04lX..U+%04lX", start, start + 4095);
        }
        n_blocks++;
    }
    free(data);
    rk_wordpiece_free(tok);
    cr_assert_eq(n_blocks, 272);
    cr_assert_eq(n_bad, 0, "%lld of %lld blocks differ from BertTokenizerFast, the first: %s (compare word by word "
                 "with gen_tokenizer.py --tables and the normalizer)", (long long) n_bad, (long long) n_blocks, first);
}

static const char * reuters_path(void) { return rk_test_reuters_path(); }

/* All Reuters training documents at max_len 512: identical ids (hashed per 50 docs) and the speed. */
Test(wordpiece, reuters_all_documents, .timeout = 120) {
    struct rk_wordpiece * tok = load_minilm();
    struct rk_dataset *   d   = NULL;
    cr_assert_eq(rk_dataset_load(reuters_path(), NULL, &d), RK_OK, "%s", rk_last_error());
    char golden[4096];
    rk_test_path(golden, sizeof(golden), "tests/golden/tokenizer_minilm_reuters.txt");
    char * data = read_text(golden);

    const int64_t max_len = 512;
    int32_t *     ids     = malloc((size_t) (d->n_docs * max_len) * sizeof(int32_t));
    int64_t *     lens    = malloc((size_t) d->n_docs * sizeof(int64_t));
    double        t0      = now_s();
    int64_t       n_tok   = 0;
    for (int64_t i = 0; i < d->n_docs; i++) {
        lens[i] = rk_wordpiece_encode(tok, d->texts[i], ids + i * max_len, max_len);
        n_tok += lens[i];
    }
    double dt = now_s() - t0;
    cr_log_info("tokenizer: %lld Reuters docs, %lld tokens in %.3f s (%.1f ms per 1000 docs, one thread)",
                (long long) d->n_docs, (long long) n_tok, dt, 1e3 * dt / (double) d->n_docs * 1000.0);
    cr_expect_lt(dt / (double) d->n_docs * 1000.0, 1.0, "%.3f s per 1000 docs", dt / (double) d->n_docs * 1000.0);

    int64_t n_blocks = 0;
    for (char * line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            long long n_docs;
            cr_assert(sscanf(line, "# %lld", &n_docs) == 1);
            cr_assert_eq(n_docs, d->n_docs, "golden has %lld documents, the file %lld", n_docs,
                         (long long) d->n_docs);
            continue;
        }
        long long          start;
        unsigned long long want;
        cr_assert(sscanf(line, "%lld %llx", &start, &want) == 2);
        uint64_t h = FNV_OFFSET;
        for (int64_t i = start; i < start + 50 && i < d->n_docs; i++) h = fnv_ids(h, ids + i * max_len, lens[i]);
        cr_assert_eq(h, want, "Reuters documents %lld..%lld (first ID %s) differ from BertTokenizerFast", start,
                     start + 49, d->ids[start]);
        n_blocks++;
    }
    cr_assert_eq(n_blocks, (d->n_docs + 49) / 50);

    /* the batch helper (OpenMP) gives the same rows */
    int32_t * bids  = malloc((size_t) (d->n_docs * max_len) * sizeof(int32_t));
    int32_t * bmask = malloc((size_t) (d->n_docs * max_len) * sizeof(int32_t));
    int64_t * blens = malloc((size_t) d->n_docs * sizeof(int64_t));
    t0        = now_s();
    int64_t T = rk_wordpiece_encode_batch(tok, (const char * const *) d->texts, d->n_docs, max_len, false, bids,
                                          bmask, NULL, blens);
    cr_log_info("tokenizer: batch of %lld docs in %.3f s", (long long) d->n_docs, now_s() - t0);
    cr_assert_eq(T, max_len);
    for (int64_t i = 0; i < d->n_docs; i++) {
        cr_assert_eq(blens[i], lens[i]);
        cr_assert(memcmp(bids + i * T, ids + i * max_len, (size_t) lens[i] * sizeof(int32_t)) == 0, "row %lld",
                  (long long) i);
    }
    free(bids);
    free(bmask);
    free(blens);
    free(ids);
    free(lens);
    free(data);
    rk_dataset_free(d);
    rk_wordpiece_free(tok);
}

/* ---- API -------------------------------------------------------------------------------------- */

Test(wordpiece, special_ids_and_lookup) {
    struct rk_wordpiece * tok = load_minilm();
    const struct rk_wordpiece_special * sp = rk_wordpiece_special(tok);
    cr_assert_eq(sp->cls, 101);
    cr_assert_eq(sp->sep, 102);
    cr_assert_eq(sp->pad, 0);
    cr_assert_eq(sp->unk, 100);
    cr_assert_eq(sp->mask, 103);
    cr_assert_eq(rk_wordpiece_vocab_size(tok), 30522);
    cr_assert_eq(rk_wordpiece_token_id(tok, "[CLS]"), 101);
    cr_assert_eq(rk_wordpiece_token_id(tok, "the"), 1996);
    cr_assert_eq(rk_wordpiece_token_id(tok, "##s"), 2015);
    cr_assert_eq(rk_wordpiece_token_id(tok, "The"), -1);
    cr_assert_eq(rk_wordpiece_token_id(tok, ""), -1);
    cr_assert_eq(rk_wordpiece_token_id(tok, "no-such-token-here"), -1);
    rk_wordpiece_free(tok);
}

Test(wordpiece, truncation) {
    struct rk_wordpiece * tok = load_minilm();
    const char * text = "the quick brown fox jumps over the lazy dog and keeps on running far away from here";
    int32_t      full[512], cut[16], two[2], three[3];
    int64_t      n_full = rk_wordpiece_encode(tok, text, full, 512);
    cr_assert_gt(n_full, 16);
    int64_t n_cut = rk_wordpiece_encode(tok, text, cut, 16);
    cr_assert_eq(n_cut, 16);
    cr_assert(memcmp(cut, full, 15 * sizeof(int32_t)) == 0, "the first 15 ids are kept");
    cr_assert_eq(cut[15], 102);
    cr_assert_eq(rk_wordpiece_encode(tok, text, two, 2), 2);
    cr_assert(two[0] == 101 && two[1] == 102);
    cr_assert_eq(rk_wordpiece_encode(tok, text, three, 3), 3);
    cr_assert(three[0] == 101 && three[1] == full[1] && three[2] == 102);
    /* exactly fitting: no truncation */
    int32_t exact[64];
    cr_assert_eq(rk_wordpiece_encode(tok, text, exact, n_full), n_full);
    cr_assert(memcmp(exact, full, (size_t) n_full * sizeof(int32_t)) == 0);
    /* a word whose pieces straddle the limit is cut piece-wise */
    int32_t w[8], w4[4];
    int64_t nw = rk_wordpiece_encode(tok, "unaffable", w, 8);
    cr_assert_gt(nw, 4);
    cr_assert_eq(rk_wordpiece_encode(tok, "unaffable", w4, 4), 4);
    cr_assert(w4[1] == w[1] && w4[2] == w[2] && w4[3] == 102);
    rk_wordpiece_free(tok);
}

Test(wordpiece, invalid_utf8_is_dropped) {
    struct rk_wordpiece * tok = load_minilm();
    int32_t a[32], b[32];
    int64_t na = rk_wordpiece_encode(tok, "hello world", a, 32);
    int64_t nb = rk_wordpiece_encode(tok, "hel\xfflo wor\xc3ld\xe2\x82", b, 32);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(a, b, (size_t) na * sizeof(int32_t)) == 0);
    rk_wordpiece_free(tok);
}

Test(wordpiece, batch_padding_and_mask) {
    struct rk_wordpiece * tok = load_minilm();
    const char * texts[] = { "hello world", "", "a somewhat longer sentence, with punctuation!" };
    int64_t      lens[3], lens_single[3];
    int32_t      single[3][32];
    for (int i = 0; i < 3; i++) lens_single[i] = rk_wordpiece_encode(tok, texts[i], single[i], 32);
    int64_t longest = lens_single[2];

    int32_t ids[3 * 32], mask[3 * 32], type_ids[3 * 32];
    memset(type_ids, 0x55, sizeof(type_ids));
    int64_t T = rk_wordpiece_encode_batch(tok, texts, 3, 32, true, ids, mask, type_ids, lens);
    cr_assert_eq(T, longest);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lens[i], lens_single[i]);
        for (int64_t t = 0; t < T; t++) {
            bool real = t < lens[i];
            cr_assert_eq(ids[i * T + t], real ? single[i][t] : 0, "row %d col %lld", i, (long long) t);
            cr_assert_eq(mask[i * T + t], real ? 1 : 0);
            cr_assert_eq(type_ids[i * T + t], 0);
        }
    }

    /* fixed length, optional outputs NULL */
    T = rk_wordpiece_encode_batch(tok, texts, 3, 32, false, ids, NULL, NULL, NULL);
    cr_assert_eq(T, 32);
    for (int i = 0; i < 3; i++) {
        for (int64_t t = 0; t < 32; t++) cr_assert_eq(ids[i * 32 + t], t < lens_single[i] ? single[i][t] : 0);
    }

    /* pad_to_longest never exceeds max_len (rows truncated to 8) */
    T = rk_wordpiece_encode_batch(tok, texts, 3, 8, true, ids, mask, NULL, lens);
    cr_assert_eq(T, 8);
    cr_assert_eq(lens[2], 8);
    cr_assert_eq(ids[2 * 8 + 7], 102);
    cr_assert_eq(lens[1], 2);
    cr_assert(ids[8] == 101 && ids[9] == 102 && ids[10] == 0 && mask[9] == 1 && mask[10] == 0);

    /* empty batch */
    cr_assert_eq(rk_wordpiece_encode_batch(tok, NULL, 0, 8, true, ids, mask, type_ids, lens), 0);
    cr_assert_eq(rk_wordpiece_encode_batch(tok, NULL, 0, 8, false, ids, mask, type_ids, lens), 8);
    rk_wordpiece_free(tok);
}

/* Large batches run in parallel: rows must equal the one-at-a-time encoding. */
Test(wordpiece, batch_parallel_matches_serial) {
    struct rk_wordpiece * tok = load_minilm();
    enum { N = 500, L = 24 };
    static char   buf[N][128];
    const char *  texts[N];
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof(buf[i]), "doc %d: Straße naïve 東京 %s", i, i % 3 ? "tokenization works" : "");
        texts[i] = buf[i];
    }
    static int32_t ids[N * L], mask[N * L];
    int64_t        lens[N];
    int64_t        T = rk_wordpiece_encode_batch(tok, texts, N, L, true, ids, mask, NULL, lens);
    for (int i = 0; i < N; i++) {
        int32_t one[L];
        int64_t n = rk_wordpiece_encode(tok, texts[i], one, L);
        cr_assert_eq(lens[i], n);
        cr_assert(memcmp(ids + i * T, one, (size_t) n * sizeof(int32_t)) == 0, "row %d", i);
    }
    rk_wordpiece_free(tok);
}

/* WordPiece itself on a tiny vocabulary: greedy longest match, [UNK] for a word with no cover. */
Test(wordpiece, greedy_longest_match) {
    char dir[256];
    struct rk_wordpiece * tok;
    cr_assert_eq(load_files(dir, sizeof(dir), "vocab.txt", small_vocab, NULL, NULL, &tok), RK_OK, "%s",
                 rk_last_error());
    int32_t ids[16];
    int64_t n = rk_wordpiece_encode(tok, "UnAffable, hello aaa unaffablex", ids, 16);
    int32_t want[] = { 2, 5, 6, 7, 11, 10, 8, 9, 9, 1, 3 };
    cr_assert_eq(n, 11);
    cr_assert(memcmp(ids, want, sizeof(want)) == 0);
    cr_assert_eq(rk_wordpiece_vocab_size(tok), 12);
    cr_assert_eq(rk_wordpiece_special(tok)->mask, 4);
    /* a word of exactly 100 chars is split, 101 chars is [UNK] */
    char a100[102];
    memset(a100, 'a', 100);
    a100[100] = '\0';
    int32_t big[128];
    cr_assert_eq(rk_wordpiece_encode(tok, a100, big, 128), 102);
    a100[100] = 'a';
    a100[101] = '\0';
    cr_assert_eq(rk_wordpiece_encode(tok, a100, big, 128), 3);
    cr_assert_eq(big[1], 1);
    rk_wordpiece_free(tok);
}

/*
 * NFD details invisible to MiniLM's vocabulary (its [UNK] hides them), on tokens made for them; expectations
 * checked against tokenizers 0.23: U+11938 does not decompose in its tables; marks it knows are put in canonical
 * order (U+1BAA ccc 9 before U+1D165 ccc 216, both kept as they are not Mn); a stripped mark of class 0 (U+034F)
 * still blocks the reordering, a dropped format char (U+200B) does not.
 */
Test(wordpiece, nfd_details) {
    char dir[256];
    struct rk_wordpiece * tok;
    const char * vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\U00011938y\na\u1baa\U0001d165\na\U0001d165\u1baa\n";
    cr_assert_eq(load_files(dir, sizeof(dir), "vocab.txt", vocab, NULL, NULL, &tok), RK_OK, "%s", rk_last_error());
    static const struct {
        const char * text;
        int32_t      id;
    } cases[] = {
        { "x\U00011938y", 4 },
        { "a\U0001d165\u1baa", 5 },
        { "a\u1baa\U0001d165", 5 },
        { "a\U0001d165\u034f\u1baa", 6 },
        { "a\U0001d165\u200b\u1baa", 5 },
        { "A\U0001d165\u0301\u1baa", 5 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int32_t ids[8];
        cr_assert_eq(rk_wordpiece_encode(tok, cases[i].text, ids, 8), 3, "case %zu", i);
        cr_assert_eq(ids[1], cases[i].id, "case %zu: id %d, want %d", i, ids[1], cases[i].id);
    }
    rk_wordpiece_free(tok);
}

Test(wordpiece, vocab_txt_crlf_and_duplicates) {
    char dir[256];
    struct rk_wordpiece * tok;
    cr_assert_eq(load_files(dir, sizeof(dir), "vocab.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nx\r\nx\r\ny", NULL,
                            NULL, &tok), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_wordpiece_token_id(tok, "x"), 5, "a repeated token keeps its last id, as HF");
    cr_assert_eq(rk_wordpiece_token_id(tok, "y"), 6, "the last line needs no newline");
    cr_assert_eq(rk_wordpiece_vocab_size(tok), 7);
    cr_assert_eq(rk_wordpiece_special(tok)->mask, -1);
    rk_wordpiece_free(tok);
}

/* ---- load errors ------------------------------------------------------------------------------ */

Test(wordpiece, missing_directory) {
    struct rk_wordpiece * tok = (struct rk_wordpiece *) 1;
    enum rk_status        s   = rk_wordpiece_load("/nonexistent/rk/model/dir", &tok);
    expect_status(s, RK_STATUS_IO, "/nonexistent/rk/model/dir", NULL);
    cr_assert_null(tok);
}

Test(wordpiece, no_vocabulary_file) {
    char dir[256];
    struct rk_wordpiece * tok;
    enum rk_status s = load_files(dir, sizeof(dir), "config.json", "{}", NULL, NULL, &tok);
    expect_status(s, RK_STATUS_IO, dir, "vocab.txt");
    cr_assert_null(tok);
}

Test(wordpiece, tokenizer_json_malformed) {
    char dir[256];
    struct rk_wordpiece * tok;
    enum rk_status s = load_files(dir, sizeof(dir), "tokenizer.json", "{\"model\": {\n  \"vocab\": {\"a\": 1,,}}}",
                                  NULL, NULL, &tok);
    expect_status(s, RK_STATUS_FORMAT, "tokenizer.json:2:", NULL);
    cr_assert_null(tok);
}

Test(wordpiece, tokenizer_json_bad_content) {
    char dir[256];
    struct rk_wordpiece * tok;
    expect_status(load_files(dir, sizeof(dir), "tokenizer.json", "{\"model\": {}}", NULL, NULL, &tok),
                  RK_STATUS_FORMAT, "tokenizer.json", "vocab");
    expect_status(load_files(dir, sizeof(dir), "tokenizer.json", "{\"model\": {\"vocab\": {\"[UNK]\": \"x\"}}}", NULL,
                             NULL, &tok), RK_STATUS_FORMAT, "tokenizer.json", "[UNK]");
    expect_status(load_files(dir, sizeof(dir), "tokenizer.json",
                             "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", NULL, NULL, &tok),
                  RK_STATUS_UNSUPPORTED, "tokenizer.json", "BPE");
    /* a minimal valid one */
    const char * ok = "{\"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": false}, \"model\": {\"type\": "
                      "\"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": {\"[PAD]\": 0, \"[UNK]\": 1, \"[CLS]\": 2, "
                      "\"[SEP]\": 3, \"Ab\": 4, \"##c\": 5, \"ab\": 6}}}";
    cr_assert_eq(load_files(dir, sizeof(dir), "tokenizer.json", ok, NULL, NULL, &tok), RK_OK, "%s", rk_last_error());
    int32_t ids[8];
    cr_assert_eq(rk_wordpiece_encode(tok, "Abc abc ABC", ids, 8), 7);
    int32_t want[] = { 2, 4, 5, 6, 5, 1, 3 };
    cr_assert(memcmp(ids, want, sizeof(want)) == 0, "cased (lowercase false in the normalizer)");
    rk_wordpiece_free(tok);
}

/* max_input_chars_per_word from tokenizer.json, above the 256 chars the encoder keeps on the stack. */
Test(wordpiece, long_word_limit_from_tokenizer_json) {
    char dir[256];
    struct rk_wordpiece * tok;
    const char * json = "{\"normalizer\": {\"type\": \"BertNormalizer\"}, "
                        "\"model\": {\"type\": \"WordPiece\", \"max_input_chars_per_word\": 300, \"vocab\": "
                        "{\"[PAD]\": 0, \"[UNK]\": 1, \"[CLS]\": 2, \"[SEP]\": 3, \"a\": 4, \"##a\": 5}}}";
    cr_assert_eq(load_files(dir, sizeof(dir), "tokenizer.json", json, NULL, NULL, &tok), RK_OK, "%s",
                 rk_last_error());
    char text[302];
    memset(text, 'a', 300);
    text[300]      = '\0';
    int32_t * ids  = malloc(400 * sizeof(int32_t));
    cr_assert_eq(rk_wordpiece_encode(tok, text, ids, 400), 302);
    cr_assert(ids[1] == 4 && ids[2] == 5 && ids[300] == 5 && ids[301] == 3);
    text[300] = 'a';
    text[301] = '\0';
    cr_assert_eq(rk_wordpiece_encode(tok, text, ids, 400), 3);
    cr_assert_eq(ids[1], 1);
    free(ids);
    rk_wordpiece_free(tok);
}

Test(wordpiece, vocab_errors) {
    char dir[256];
    struct rk_wordpiece * tok;
    expect_status(load_files(dir, sizeof(dir), "vocab.txt", "", NULL, NULL, &tok), RK_STATUS_FORMAT, "vocab.txt",
                  "empty");
    expect_status(load_files(dir, sizeof(dir), "vocab.txt", "[PAD]\n[UNK]\n[SEP]\n", NULL, NULL, &tok),
                  RK_STATUS_FORMAT, "vocab.txt", "[CLS]");
    cr_assert_null(tok);
}

Test(wordpiece, tokenizer_config_errors) {
    char dir[256];
    struct rk_wordpiece * tok;
    expect_status(load_files(dir, sizeof(dir), "vocab.txt", small_vocab, "tokenizer_config.json", "{\"do_lower_case\"",
                             &tok), RK_STATUS_FORMAT, "tokenizer_config.json:1:", NULL);
    expect_status(load_files(dir, sizeof(dir), "vocab.txt", small_vocab, "tokenizer_config.json",
                             "{\"do_lower_case\": \"yes\"}", &tok), RK_STATUS_FORMAT, "tokenizer_config.json",
                  "do_lower_case");
    expect_status(load_files(dir, sizeof(dir), "vocab.txt", small_vocab, "tokenizer_config.json",
                             "{\"do_basic_tokenize\": false}", &tok), RK_STATUS_UNSUPPORTED, "tokenizer_config.json",
                  "do_basic_tokenize");
    cr_assert_null(tok);
}

Test(wordpiece, unreadable_vocab_is_io) {
    char dir[256];
    struct rk_wordpiece * tok;
    snprintf(dir, sizeof(dir), "%s", rk_test_tmpdir());
    char path[4096];
    snprintf(path, sizeof(path), "%s/vocab.txt", dir);
    cr_assert(mkdir(path, 0700) == 0); /* a directory where the file should be */
    enum rk_status s = rk_wordpiece_load(dir, &tok);
    expect_status(s, RK_STATUS_IO, "vocab.txt", NULL);
}
