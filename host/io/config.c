/*
 * config.c: the JSON file reader, the BERT config.json loader and the sentence-transformers head files
 * (see config.h for the contracts).
 */
#include "io/config.h"

#include "check.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------
 * JSON files */

/* 1-based line and column (in bytes) of position pos in text. */
static void line_col(const char * text, size_t pos, long * line, long * col) {
    *line = 1;
    *col  = 1;
    for (size_t i = 0; i < pos; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* Sets a FORMAT error "<path>:<line>:<col>: <what>" for position pos of text (len bytes). */
static enum rk_status json_error_at(const char * path, const char * text, size_t len, size_t pos,
                                    const char * what) {
    long line, col;
    if (pos > len) pos = len;
    line_col(text, pos, &line, &col);
    if (pos >= len) {
        return rk_set_error(RK_STATUS_FORMAT, "%s:%ld:%ld: %s (unexpected end of file)", path, line, col, what);
    }
    char   near[24];
    size_t k = 0;
    for (size_t i = pos; i < len && k < sizeof(near) - 1 && text[i] != '\n' && text[i] != '\0'; i++) {
        near[k++] = text[i];
    }
    near[k] = '\0';
    return rk_set_error(RK_STATUS_FORMAT, "%s:%ld:%ld: %s near '%s'", path, line, col, what, near);
}

enum rk_status rk_json_load_file(const char * path, cJSON ** out) {
    *out = NULL;
    FILE * f = fopen(path, "rb");
    if (!f) return rk_set_error(RK_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char * text = rk_xmalloc(cap);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            text = rk_xrealloc(text, cap);
        }
        size_t got = fread(text + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    bool failed = ferror(f) != 0;
    int  err    = errno;
    fclose(f);
    if (failed) {
        free(text);
        return rk_set_error(RK_STATUS_IO, "%s: cannot read: %s", path, strerror(err));
    }
    text[len] = '\0';

    /* an editor may have saved a UTF-8 byte order mark; JSON does not allow one, Python's reader skips it */
    size_t skip = (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    const char * end  = NULL;
    cJSON *      root = cJSON_ParseWithOpts(text + skip, &end, true);
    if (!root) {
        size_t pos = end ? (size_t) (end - text) : skip;
        enum rk_status s = json_error_at(path, text, len, pos, "malformed JSON");
        free(text);
        return s;
    }
    if ((size_t) (end - text) != len) { /* a NUL byte stopped the parser early */
        size_t pos = (size_t) (end - text);
        cJSON_Delete(root);
        enum rk_status s = json_error_at(path, text, len, pos, "malformed JSON: NUL byte in the file");
        free(text);
        return s;
    }
    free(text);
    *out = root;
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------------
 * typed fields */

static const char * json_type_name(const cJSON * j) {
    if (cJSON_IsNull(j))   return "null";
    if (cJSON_IsBool(j))   return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j))  return "a list";
    if (cJSON_IsObject(j)) return "an object";
    return "an invalid value";
}

/*
 * Reads integer field key of obj into *v. Absent (or null when optional): FORMAT "missing field" if required,
 * else *v is left alone. Returns a status with the error set.
 */
static enum rk_status field_int(const char * path, const cJSON * obj, const char * key, bool required,
                                int64_t * v) {
    const cJSON * j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || (!required && cJSON_IsNull(j))) {
        if (required) return rk_set_error(RK_STATUS_FORMAT, "%s: missing field '%s'", path, key);
        return RK_OK;
    }
    if (!cJSON_IsNumber(j)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be an integer, got %s", path, key,
                            json_type_name(j));
    }
    double d = j->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be an integer, got %g", path, key, d);
    }
    *v = (int64_t) d;
    return RK_OK;
}

static enum rk_status field_float(const char * path, const cJSON * obj, const char * key, bool required,
                                  float * v) {
    const cJSON * j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || (!required && cJSON_IsNull(j))) {
        if (required) return rk_set_error(RK_STATUS_FORMAT, "%s: missing field '%s'", path, key);
        return RK_OK;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be a finite number, got %s", path, key,
                            json_type_name(j));
    }
    *v = (float) j->valuedouble;
    return RK_OK;
}

/* Copies string field key into buf (n bytes); a longer string is a FORMAT error. */
static enum rk_status field_string(const char * path, const cJSON * obj, const char * key, bool required,
                                   char * buf, size_t n) {
    const cJSON * j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || (!required && cJSON_IsNull(j))) {
        if (required) return rk_set_error(RK_STATUS_FORMAT, "%s: missing field '%s'", path, key);
        return RK_OK;
    }
    if (!cJSON_IsString(j)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be a string, got %s", path, key,
                            json_type_name(j));
    }
    if (strlen(j->valuestring) >= n) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' is longer than %zu bytes", path, key, n - 1);
    }
    strcpy(buf, j->valuestring);
    return RK_OK;
}

static enum rk_status field_bool(const char * path, const cJSON * obj, const char * key, bool * v) {
    const cJSON * j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j)) return RK_OK;
    if (!cJSON_IsBool(j)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be true or false, got %s", path, key,
                            json_type_name(j));
    }
    *v = cJSON_IsTrue(j);
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------------
 * BERT config.json */

static enum rk_status bert_config_parse(const char * path, const cJSON * root, struct rk_bert_config * c) {
    if (!cJSON_IsObject(root)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: top level must be a JSON object, got %s", path,
                            json_type_name(root));
    }
    /* model_type first: a RoBERTa or Llama config should say so, not complain about a missing BERT field */
    RK_TRY(field_string(path, root, "model_type", true, c->model_type, sizeof(c->model_type)));
    if (strcmp(c->model_type, "bert") != 0) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: model_type '%s' is not supported (only 'bert')", path,
                            c->model_type);
    }
    RK_TRY(field_int(path, root, "vocab_size", true, &c->vocab_size));
    RK_TRY(field_int(path, root, "hidden_size", true, &c->hidden_size));
    RK_TRY(field_int(path, root, "num_hidden_layers", true, &c->n_layer));
    RK_TRY(field_int(path, root, "num_attention_heads", true, &c->n_head));
    RK_TRY(field_int(path, root, "intermediate_size", true, &c->intermediate_size));
    RK_TRY(field_int(path, root, "max_position_embeddings", true, &c->max_position));
    /* optional fields keep Hugging Face BertConfig's defaults */
    c->type_vocab_size = 2;
    c->layer_norm_eps  = 1e-12f;
    c->pad_token_id    = 0;
    snprintf(c->hidden_act, sizeof(c->hidden_act), "gelu");
    RK_TRY(field_int(path, root, "type_vocab_size", false, &c->type_vocab_size));
    RK_TRY(field_float(path, root, "layer_norm_eps", false, &c->layer_norm_eps));
    RK_TRY(field_int(path, root, "pad_token_id", false, &c->pad_token_id));
    RK_TRY(field_string(path, root, "hidden_act", false, c->hidden_act, sizeof(c->hidden_act)));

    /* "gelu" is the erf form that RK_OP_GELU computes; "gelu_new" and friends are the tanh approximation */
    if (strcmp(c->hidden_act, "gelu") != 0) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: hidden_act '%s' is not supported (only 'gelu')", path,
                            c->hidden_act);
    }
    char pos_type[32] = "absolute";
    RK_TRY(field_string(path, root, "position_embedding_type", false, pos_type, sizeof(pos_type)));
    if (strcmp(pos_type, "absolute") != 0) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "%s: position_embedding_type '%s' is not supported (only 'absolute')", path, pos_type);
    }

    const struct { const char * key; int64_t v; } positive[] = {
        { "vocab_size",              c->vocab_size        },
        { "hidden_size",             c->hidden_size       },
        { "num_hidden_layers",       c->n_layer           },
        { "num_attention_heads",     c->n_head            },
        { "intermediate_size",       c->intermediate_size },
        { "max_position_embeddings", c->max_position      },
        { "type_vocab_size",         c->type_vocab_size   },
    };
    for (size_t i = 0; i < sizeof(positive) / sizeof(positive[0]); i++) {
        if (positive[i].v <= 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be positive, got %lld", path,
                                positive[i].key, (long long) positive[i].v);
        }
    }
    if (c->hidden_size % c->n_head != 0) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", path,
                            (long long) c->hidden_size, (long long) c->n_head);
    }
    if (!(c->layer_norm_eps > 0.0f)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: field 'layer_norm_eps' must be positive, got %g", path,
                            (double) c->layer_norm_eps);
    }
    if (c->pad_token_id < 0 || c->pad_token_id >= c->vocab_size) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: pad_token_id %lld is outside the vocabulary (%lld tokens)", path,
                            (long long) c->pad_token_id, (long long) c->vocab_size);
    }
    return RK_OK;
}

enum rk_status rk_bert_config_load(const char * path, struct rk_bert_config * cfg) {
    cJSON * root = NULL;
    RK_TRY(rk_json_load_file(path, &root));
    struct rk_bert_config c;
    memset(&c, 0, sizeof(c));
    enum rk_status s = bert_config_parse(path, root, &c);
    cJSON_Delete(root);
    if (s == RK_OK) *cfg = c;
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * sentence-transformers head */

static char * path_join(const char * a, const char * b) {
    size_t n = strlen(a) + 1 + strlen(b) + 1;
    char * p = rk_xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Like rk_json_load_file, but a file that does not exist gives RK_OK with *out NULL. */
static enum rk_status json_load_optional(const char * path, cJSON ** out) {
    *out = NULL;
    if (access(path, F_OK) != 0 && errno == ENOENT) return RK_OK;
    return rk_json_load_file(path, out);
}

/* Reads the pooling flags of a Pooling module config into out->mode. */
static enum rk_status pooling_parse(const char * path, const cJSON * root, struct rk_st_pooling * out) {
    if (!cJSON_IsObject(root)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: top level must be a JSON object, got %s", path,
                            json_type_name(root));
    }
    /* sentence-transformers Pooling flags; those without an rk op are refused rather than approximated */
    const struct { const char * key; enum rk_pool_mode mode; bool supported; } flags[] = {
        { "pooling_mode_cls_token",            RK_POOL_CLS,  true  },
        { "pooling_mode_mean_tokens",          RK_POOL_MEAN, true  },
        { "pooling_mode_max_tokens",           RK_POOL_MAX,  true  },
        { "pooling_mode_lasttoken",            RK_POOL_LAST, true  },
        { "pooling_mode_mean_sqrt_len_tokens", RK_POOL_MEAN, false },
        { "pooling_mode_weightedmean_tokens",  RK_POOL_MEAN, false },
    };
    int n_set = 0;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        bool on = false;
        RK_TRY(field_bool(path, root, flags[i].key, &on));
        if (!on) continue;
        if (!flags[i].supported) {
            return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: %s is not supported", path, flags[i].key);
        }
        out->mode = flags[i].mode;
        n_set++;
    }
    if (n_set == 0) return rk_set_error(RK_STATUS_FORMAT, "%s: no pooling_mode_* flag is true", path);
    if (n_set > 1) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "%s: %d pooling modes at once (concatenated embeddings) are not supported", path, n_set);
    }
    out->present = true;
    return RK_OK;
}

/*
 * Reads modules.json: sets out->normalize and copies the Pooling module's folder into *pool_dir (malloc'd, NULL
 * when there is no Pooling module).
 */
static enum rk_status modules_parse(const char * path, const cJSON * root, struct rk_st_pooling * out,
                                    char ** pool_dir) {
    if (!cJSON_IsArray(root)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: top level must be a list of modules, got %s", path,
                            json_type_name(root));
    }
    int i = 0;
    for (const cJSON * m = root->child; m; m = m->next, i++) {
        const cJSON * type = cJSON_GetObjectItemCaseSensitive(m, "type");
        const cJSON * dir  = cJSON_GetObjectItemCaseSensitive(m, "path");
        if (!cJSON_IsObject(m) || !cJSON_IsString(type)) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: module %d has no string field 'type'", path, i);
        }
        const char * t = type->valuestring;
        if (strcmp(t, "sentence_transformers.models.Transformer") == 0) continue;
        if (strcmp(t, "sentence_transformers.models.Normalize") == 0) {
            out->normalize = true;
        } else if (strcmp(t, "sentence_transformers.models.Pooling") == 0) {
            if (!cJSON_IsString(dir)) {
                return rk_set_error(RK_STATUS_FORMAT, "%s: module %d (Pooling) has no string field 'path'", path,
                                    i);
            }
            free(*pool_dir);
            *pool_dir = rk_xstrdup(dir->valuestring);
        } else {
            /* a Dense projection or similar changes the embedding: ignoring it would be silently wrong */
            return rk_set_error(RK_STATUS_UNSUPPORTED,
                                "%s: module %d has type '%s' (rk supports Transformer, Pooling, Normalize)", path, i,
                                t);
        }
    }
    return RK_OK;
}

enum rk_status rk_st_pooling_load(const char * model_dir, struct rk_st_pooling * out) {
    struct rk_st_pooling p = { .present = false, .mode = RK_POOL_CLS, .normalize = false, .max_seq_length = 0 };
    enum rk_status s        = RK_OK;
    char *         pool_dir = NULL;
    cJSON *        root     = NULL;

    /* modules.json decides where the Pooling config lives; without it, the conventional 1_Pooling */
    char * path = path_join(model_dir, "modules.json");
    s = json_load_optional(path, &root);
    bool have_modules = root != NULL;
    if (s == RK_OK && root) s = modules_parse(path, root, &p, &pool_dir);
    cJSON_Delete(root);
    root = NULL;
    free(path);
    path = NULL;

    if (s == RK_OK && (pool_dir || !have_modules)) {
        char * dir = path_join(model_dir, pool_dir ? pool_dir : "1_Pooling");
        path = path_join(dir, "config.json");
        free(dir);
        /* a Pooling module listed in modules.json must have its config; the fallback guess need not exist */
        s = have_modules ? rk_json_load_file(path, &root) : json_load_optional(path, &root);
        if (s == RK_OK && root) s = pooling_parse(path, root, &p);
        cJSON_Delete(root);
        root = NULL;
        free(path);
        path = NULL;
    }

    if (s == RK_OK) {
        path = path_join(model_dir, "sentence_bert_config.json");
        s = json_load_optional(path, &root);
        if (s == RK_OK && root) {
            if (!cJSON_IsObject(root)) {
                s = rk_set_error(RK_STATUS_FORMAT, "%s: top level must be a JSON object, got %s", path,
                                 json_type_name(root));
            } else {
                s = field_int(path, root, "max_seq_length", false, &p.max_seq_length);
            }
            if (s == RK_OK && p.max_seq_length < 0) {
                s = rk_set_error(RK_STATUS_FORMAT, "%s: field 'max_seq_length' must not be negative, got %lld", path,
                                 (long long) p.max_seq_length);
            }
        }
        cJSON_Delete(root);
        free(path);
    }
    free(pool_dir);
    if (s == RK_OK) *out = p;
    return s;
}
