/*
 * adapter.c: PEFT-compatible LoRA adapter folders: adapter_config.json + adapter_model.safetensors.
 *
 * Tensor names follow PEFT's save_pretrained (peft >= 0.x, checked against 0.21.2): the adapter name ("default")
 * is removed from the state-dict key, so module `encoder.layer.0.attention.self.query` is stored as
 *     base_model.model.encoder.layer.0.attention.self.query.lora_A.weight   (r, K)
 *     base_model.model.encoder.layer.0.attention.self.query.lora_B.weight   (N, r)
 * The loader also accepts keys without the "base_model.model." prefix and keys that still carry an adapter name
 * ("...lora_A.default.weight"), as older files and hand-made files have.
 *
 * The safetensors writer here is the minimal one the format needs: an 8-byte little-endian header length, the
 * JSON header padded with spaces to a multiple of 8 (as the reference writer does, so the data is aligned), then
 * the raw little-endian data. Written to a temporary file and renamed into place.
 */
#include "lora/lora.h"
#include "io/safetensors_write.h"

#include "check.h"
#include "io/config.h"
#include "io/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_PREFIX "base_model.model."

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; add a byte swap");

static char * path_join(const char * dir, const char * name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char * p = rk_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ------------------------------------------------------------------------------------------------
 * save */

/* adapter_model.safetensors through the shared writer (host/io/safetensors_write.h): PEFT's names, F32 */
static enum rk_status save_tensors(const struct rk_lora_adapter * ad, const char * path) {
    struct rk_st_writer * w = rk_st_writer_new();
    enum rk_status        s = RK_OK;
    rk_st_writer_set_meta(w, "format", "pt");
    char                  name[RK_LORA_NAME_MAX + 64];
    for (int64_t i = 0; i < ad->n_module && s == RK_OK; i++) {
        const struct rk_lora_module * m = &ad->modules[i];
        snprintf(name, sizeof(name), ST_PREFIX "%s.lora_A.weight", m->name);
        const struct rk_named_buffer a = { name, RK_DTYPE_F32, 2, { ad->cfg.r, m->K, 0, 0 }, m->A };
        s = rk_st_writer_add(w, &a, RK_DTYPE_F32);
        snprintf(name, sizeof(name), ST_PREFIX "%s.lora_B.weight", m->name);
        const struct rk_named_buffer bb = { name, RK_DTYPE_F32, 2, { m->N, ad->cfg.r, 0, 0 }, m->B };
        if (s == RK_OK) s = rk_st_writer_add(w, &bb, RK_DTYPE_F32);
    }
    if (s == RK_OK) s = rk_st_writer_write(w, path);
    rk_st_writer_free(w);
    return s;
}

/* The shortest decimal that reads back as the same float (0.1f is written 0.1, not 0.100000001490116). */
static double float_decimal(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double) f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static enum rk_status save_config(const struct rk_lora_adapter * ad, const char * path) {
    const struct rk_lora_config * c = &ad->cfg;
    cJSON * j = cJSON_CreateObject();
    /* the LoraConfig fields PEFT needs to rebuild the adapter; the others take PEFT's defaults on load */
    cJSON_AddObjectToObject(j, "alpha_pattern");
    if (c->base_model[0]) cJSON_AddStringToObject(j, "base_model_name_or_path", c->base_model);
    else cJSON_AddNullToObject(j, "base_model_name_or_path");
    cJSON_AddStringToObject(j, "bias", c->bias[0] ? c->bias : "none");
    cJSON_AddFalseToObject(j, "fan_in_fan_out");
    cJSON_AddTrueToObject(j, "inference_mode");
    cJSON_AddTrueToObject(j, "init_lora_weights");
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", float_decimal(c->alpha));
    cJSON_AddNumberToObject(j, "lora_dropout", float_decimal(c->dropout));
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", (double) c->r);
    cJSON_AddObjectToObject(j, "rank_pattern");
    cJSON_AddNullToObject(j, "revision");
    if (c->target_is_regex && c->n_target == 1) {
        cJSON_AddStringToObject(j, "target_modules", c->target_modules[0]);
    } else {
        cJSON * t = cJSON_AddArrayToObject(j, "target_modules");
        for (int64_t i = 0; i < c->n_target; i++) cJSON_AddItemToArray(t, cJSON_CreateString(c->target_modules[i]));
    }
    if (c->task_type[0]) cJSON_AddStringToObject(j, "task_type", c->task_type);
    else cJSON_AddNullToObject(j, "task_type");
    cJSON_AddFalseToObject(j, "use_dora");
    cJSON_AddBoolToObject(j, "use_rslora", c->use_rslora);
    char * text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return rk_set_error(RK_STATUS_OOM, "%s: cannot format JSON", path);
    const size_t n  = strlen(text);
    const void * bufs[2] = { text, "\n" };
    const size_t lens[2] = { n, 1 };
    enum rk_status s     = rk_write_buffers_atomic(path, 2, bufs, lens);
    cJSON_free(text);
    return s;
}

enum rk_status rk_lora_adapter_save(const struct rk_lora_adapter * ad, const char * dir) {
    char * st_path  = path_join(dir, "adapter_model.safetensors");
    char * cfg_path = path_join(dir, "adapter_config.json");
    enum rk_status s = save_tensors(ad, st_path);
    if (s == RK_OK) s = save_config(ad, cfg_path);
    free(st_path);
    free(cfg_path);
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * load */

static bool json_is_empty_or_null(const cJSON * v) {
    return !v || cJSON_IsNull(v) || (cJSON_IsObject(v) && v->child == NULL) || (cJSON_IsArray(v) && v->child == NULL);
}

static enum rk_status load_config(const char * path, struct rk_lora_config * c) {
    cJSON * j = NULL;
    RK_TRY(rk_json_load_file(path, &j));
    rk_lora_config_default(c);
    enum rk_status s = RK_OK;
    const cJSON * v;
    if (!cJSON_IsObject(j)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "LORA") == 0)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: peft_type is %s, want \"LORA\"", path,
                         cJSON_IsString(v) ? v->valuestring : "not a string");
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble != (double) (int64_t) v->valuedouble) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: \"r\" missing or not a positive integer", path);
        goto done;
    }
    c->r = (int64_t) v->valuedouble;
    v    = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (v && !cJSON_IsNumber(v)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: \"lora_alpha\" is not a number", path);
        goto done;
    }
    if (v) c->alpha = (float) v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    if (v && !cJSON_IsNumber(v)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: \"lora_dropout\" is not a number", path);
        goto done;
    }
    if (v) c->dropout = (float) v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    c->use_rslora = v && cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "none") == 0)) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: bias %s: only \"none\" is supported", path,
                         cJSON_IsString(v) ? v->valuestring : "(not a string)");
        goto done;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_dora"))) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: use_dora: DoRA adapters are not supported", path);
        goto done;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out"))) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: fan_in_fan_out (Conv1D bases) is not supported", path);
        goto done;
    }
    if (!json_is_empty_or_null(cJSON_GetObjectItemCaseSensitive(j, "rank_pattern")) ||
        !json_is_empty_or_null(cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern"))) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: per-module rank_pattern/alpha_pattern is not supported", path);
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "task_type");
    if (cJSON_IsString(v)) snprintf(c->task_type, sizeof(c->task_type), "%s", v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (cJSON_IsString(v)) snprintf(c->base_model, sizeof(c->base_model), "%s", v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    if (cJSON_IsString(v)) {
        const char * one = v->valuestring;
        rk_lora_config_set_targets(c, &one, 1);
        c->target_is_regex = true;
    } else if (cJSON_IsArray(v)) {
        int64_t       n = cJSON_GetArraySize(v), i = 0;
        const char ** t = rk_xcalloc((size_t) (n > 0 ? n : 1), sizeof(char *));
        const cJSON * it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it)) {
                free(t);
                s = rk_set_error(RK_STATUS_FORMAT, "%s: target_modules[%lld] is not a string", path, (long long) i);
                goto done;
            }
            t[i++] = it->valuestring;
        }
        rk_lora_config_set_targets(c, t, n);
        free(t);
    } else if (v && !cJSON_IsNull(v)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: target_modules is neither a list nor a string", path);
        goto done;
    }
done:
    cJSON_Delete(j);
    if (s != RK_OK) rk_lora_config_free(c);
    return s;
}

/*
 * Splits a tensor key into module path and kind ('A' or 'B'). Returns false when the key is not a LoRA A/B
 * weight. Accepts "[base_model.model.]<module>.lora_{A,B}[.<adapter>].weight".
 */
static bool parse_key(const char * key, char * module, size_t n, char * kind) {
    if (strncmp(key, ST_PREFIX, strlen(ST_PREFIX)) == 0) key += strlen(ST_PREFIX);
    const char * hit = NULL;
    for (const char * p = strstr(key, ".lora_"); p; p = strstr(p + 1, ".lora_"))
        if ((p[6] == 'A' || p[6] == 'B') && p[7] == '.') hit = p;
    if (!hit || hit == key) return false;
    const char * rest = hit + 8; /* after ".lora_A." */
    const char * dot  = strchr(rest, '.');
    if (strcmp(rest, "weight") != 0 && !(dot && dot != rest && strcmp(dot, ".weight") == 0 && !strchr(dot + 1, '.')))
        return false;
    size_t len = (size_t) (hit - key);
    if (len >= n) return false;
    memcpy(module, key, len);
    module[len] = '\0';
    *kind       = hit[6];
    return true;
}

static int cmp_str(const void * a, const void * b) { return strcmp(*(char * const *) a, *(char * const *) b); }

enum rk_status rk_lora_adapter_load(const char * dir, struct rk_lora_adapter ** out) {
    *out                      = NULL;
    char *                  st_path  = path_join(dir, "adapter_model.safetensors");
    char *                  cfg_path = path_join(dir, "adapter_config.json");
    struct rk_safetensors * st       = NULL;
    struct rk_lora_config   cfg;
    bool                    have_cfg = false;
    char **                 names    = NULL;
    const struct rk_st_entry ** ea   = NULL, **eb = NULL;
    int64_t *               K        = NULL, *N = NULL;
    int64_t                 n_mod    = 0;
    struct rk_lora_adapter * ad      = NULL;
    enum rk_status          s        = load_config(cfg_path, &cfg);
    if (s != RK_OK) goto done;
    have_cfg = true;
    s        = rk_safetensors_open(st_path, &st);
    if (s != RK_OK) goto done;

    /* the modules: one per distinct module path, sorted */
    names = rk_xcalloc((size_t) (st->n > 0 ? st->n : 1), sizeof(char *));
    char mod[RK_LORA_NAME_MAX], kind;
    for (int64_t i = 0; i < st->n; i++) {
        const char * key = st->entries[i].name;
        if (!parse_key(key, mod, sizeof(mod), &kind)) {
            s = rk_set_error(RK_STATUS_UNSUPPORTED,
                             "%s: tensor %s: not a LoRA lora_A/lora_B weight (embedding LoRA, DoRA magnitudes, "
                             "lora bias and modules_to_save are not supported)", st_path, key);
            goto done;
        }
        bool seen = false;
        for (int64_t j = 0; j < n_mod && !seen; j++) seen = strcmp(names[j], mod) == 0;
        if (!seen) names[n_mod++] = rk_xstrdup(mod);
    }
    qsort(names, (size_t) n_mod, sizeof(char *), cmp_str);
    ea = rk_xcalloc((size_t) (n_mod > 0 ? n_mod : 1), sizeof(*ea));
    eb = rk_xcalloc((size_t) (n_mod > 0 ? n_mod : 1), sizeof(*eb));
    K  = rk_xcalloc((size_t) (n_mod > 0 ? n_mod : 1), sizeof(int64_t));
    N  = rk_xcalloc((size_t) (n_mod > 0 ? n_mod : 1), sizeof(int64_t));
    for (int64_t i = 0; i < st->n; i++) {
        const struct rk_st_entry * e = &st->entries[i];
        parse_key(e->name, mod, sizeof(mod), &kind);
        const char ** key = bsearch(&(const char *) { mod }, names, (size_t) n_mod, sizeof(char *), cmp_str);
        RK_ASSERT(key != NULL);
        const int64_t j = (int64_t) ((char **) key - names);
        const struct rk_st_entry ** slot = kind == 'A' ? &ea[j] : &eb[j];
        if (*slot) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor %s: a second lora_%c for module %s (also %s)", st_path,
                             e->name, kind, mod, (*slot)->name);
            goto done;
        }
        *slot = e;
    }
    for (int64_t j = 0; j < n_mod; j++) {
        if (!ea[j] || !eb[j]) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: module %s has lora_%c but no lora_%c", st_path, names[j],
                             ea[j] ? 'A' : 'B', ea[j] ? 'B' : 'A');
            goto done;
        }
        const struct rk_st_entry * a = ea[j], *b = eb[j];
        if (a->ndim != 2 || a->shape[0] != cfg.r) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor %s: shape must be (r=%lld, in_features)", st_path,
                             a->name, (long long) cfg.r);
            goto done;
        }
        if (b->ndim != 2 || b->shape[1] != cfg.r) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor %s: shape must be (out_features, r=%lld)", st_path,
                             b->name, (long long) cfg.r);
            goto done;
        }
        K[j] = a->shape[1];
        N[j] = b->shape[0];
    }
    s = rk_lora_adapter_new(&cfg, n_mod, (const char * const *) names, K, N, &ad);
    if (s != RK_OK) goto done;
    for (int64_t j = 0; j < n_mod && s == RK_OK; j++) {
        s = rk_safetensors_read_f32(st, ea[j], ad->modules[j].A, cfg.r * K[j]);
        if (s == RK_OK) s = rk_safetensors_read_f32(st, eb[j], ad->modules[j].B, N[j] * cfg.r);
    }
done:
    if (s == RK_OK) *out = ad;
    else rk_lora_adapter_free(ad);
    if (have_cfg) rk_lora_config_free(&cfg);
    for (int64_t j = 0; j < n_mod; j++) free(names[j]);
    free(names);
    free(ea);
    free(eb);
    free(K);
    free(N);
    rk_safetensors_close(st);
    free(st_path);
    free(cfg_path);
    return s;
}
