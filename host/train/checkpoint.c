/*
 * checkpoint.c: training checkpoint folders (see checkpoint.h for the layout and the crash windows).
 */
#include "train/checkpoint.h"

#include "check.h"
#include "io/config.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char * rk_checkpoint_optim_name(char * buf, size_t n, const char * param, const char * slot) {
    snprintf(buf, n, "%s.%s", param, slot);
    return buf;
}

/* ------------------------------------------------------------------------------------------------
 * paths and folders */

static char * fmt_path(const char * a, const char * sep, const char * b) {
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char * p = rk_xmalloc(n);
    snprintf(p, n, "%s%s%s", a, sep, b);
    return p;
}

/* dir without trailing slashes ("/" stays "/"). */
static char * strip_dir(const char * dir) {
    char * d = rk_xstrdup(dir);
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') d[--n] = '\0';
    return d;
}

/* Splits d into its parent folder and base name (both allocated). */
static void split_dir(const char * d, char ** parent, char ** base) {
    const char * slash = strrchr(d, '/');
    if (!slash) {
        *parent = rk_xstrdup(".");
        *base   = rk_xstrdup(d);
        return;
    }
    size_t n = slash == d ? 1 : (size_t) (slash - d);
    *parent  = rk_xmalloc(n + 1);
    memcpy(*parent, d, n);
    (*parent)[n] = '\0';
    *base        = rk_xstrdup(slash + 1);
}

static int rm_one(const char * path, const struct stat * sb, int flag, struct FTW * ftw) {
    (void) sb;
    (void) flag;
    (void) ftw;
    remove(path);
    return 0; /* best effort: keep going */
}

/* Removes a folder tree (does not follow links). Best effort; missing is fine. */
static void remove_tree(const char * path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool is_dir(const char * path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* If name is "<base><tag><digits>", returns the number; else -1. */
static long long leftover_pid(const char * name, const char * base, const char * tag) {
    size_t nb = strlen(base), nt = strlen(tag);
    if (strncmp(name, base, nb) != 0 || strncmp(name + nb, tag, nt) != 0) return -1;
    const char * p = name + nb + nt;
    if (!*p) return -1;
    long long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000000000000LL) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* Removes "<base>.old.*" and the "<base>.tmp.<pid>" of processes that no longer exist. Best effort. */
static void remove_leftovers(const char * parent, const char * base) {
    DIR * dp = opendir(parent);
    if (!dp) return;
    struct dirent * de;
    while ((de = readdir(dp)) != NULL) {
        long long old = leftover_pid(de->d_name, base, ".old.");
        long long tmp = leftover_pid(de->d_name, base, ".tmp.");
        bool      dead = tmp >= 0 && tmp != (long long) getpid() && kill((pid_t) tmp, 0) != 0 && errno == ESRCH;
        if (old >= 0 || dead) {
            char * p = fmt_path(parent, "/", de->d_name);
            remove_tree(p);
            free(p);
        }
    }
    closedir(dp);
}

enum rk_status rk_checkpoint_resolve(const char * dir, char * buf, size_t n) {
    char * d = strip_dir(dir);
    if (is_dir(d)) {
        snprintf(buf, n, "%s", d);
        free(d);
        return RK_OK;
    }
    char *parent, *base;
    split_dir(d, &parent, &base);
    DIR * dp = opendir(parent);
    bool  found = false;
    struct timespec best_t = { 0, 0 };
    char * best = NULL;
    struct dirent * de;
    while (dp && (de = readdir(dp)) != NULL) {
        if (leftover_pid(de->d_name, base, ".old.") < 0) continue;
        char *      p = fmt_path(parent, "/", de->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            const struct timespec t = sb.st_mtim;
            bool newer = !found || t.tv_sec > best_t.tv_sec ||
                         (t.tv_sec == best_t.tv_sec && t.tv_nsec > best_t.tv_nsec) ||
                         (t.tv_sec == best_t.tv_sec && t.tv_nsec == best_t.tv_nsec && strcmp(p, best) > 0);
            if (newer) {
                free(best);
                best   = p;
                p      = NULL;
                best_t = t;
                found  = true;
            }
        }
        free(p);
    }
    if (dp) closedir(dp);
    enum rk_status s = RK_OK;
    if (found) snprintf(buf, n, "%s", best);
    else s = rk_set_error(RK_STATUS_IO, "%s: no checkpoint (no such folder, and no %s.old.* from an interrupted save)",
                          d, d);
    free(best);
    free(parent);
    free(base);
    free(d);
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * save */

/* Re-sets the current error with "<file>: " in front (for writer argument errors that do not name the file). */
static enum rk_status prefix_error(enum rk_status s, const char * file) {
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", rk_last_error());
    return rk_set_error(s, "%s: %s", file, msg);
}

static enum rk_status save_tensors(const char * path, const struct rk_named_buffer * b, int64_t n) {
    struct rk_st_writer * w = rk_st_writer_new();
    rk_st_writer_set_meta(w, "format", "pt");
    enum rk_status s = rk_st_writer_add_all(w, b, n);
    if (s != RK_OK) s = prefix_error(s, path);
    if (s == RK_OK) s = rk_st_writer_write(w, path);
    rk_st_writer_free(w);
    return s;
}

static enum rk_status save_state(const char * path, const cJSON * state) {
    char * text = state ? cJSON_Print(state) : NULL;
    if (state && !text) return rk_set_error(RK_STATUS_OOM, "%s: cannot format JSON", path);
    const void * bufs[2] = { text ? text : "{}", "\n" };
    const size_t lens[2] = { text ? strlen(text) : 2, 1 };
    enum rk_status s     = rk_write_buffers_atomic(path, 2, bufs, lens);
    cJSON_free(text);
    return s;
}

enum rk_status rk_checkpoint_save(const char * dir, const struct rk_named_buffer * model, int64_t n_model,
                                  const struct rk_named_buffer * optim, int64_t n_optim, const cJSON * state) {
    if (!dir || !*dir) return rk_set_error(RK_STATUS_ARG, "checkpoint save: empty folder name");
    if (n_model < 0 || n_optim < 0 || (n_model > 0 && !model) || (n_optim > 0 && !optim)) {
        return rk_set_error(RK_STATUS_ARG, "%s: checkpoint save: bad buffer list", dir);
    }
    char * d = strip_dir(dir);
    char   pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long) getpid());
    char * tmp_base = fmt_path(d, ".tmp.", "");
    char * tmp      = fmt_path(tmp_base, "", pid);
    char * old_base = fmt_path(d, ".old.", "");
    char * old      = fmt_path(old_base, "", pid);
    char * f_model  = fmt_path(tmp, "/", RK_CKPT_MODEL_FILE);
    char * f_optim  = fmt_path(tmp, "/", RK_CKPT_OPTIM_FILE);
    char * f_state  = fmt_path(tmp, "/", RK_CKPT_STATE_FILE);
    char * parent, *base;
    split_dir(d, &parent, &base);
    enum rk_status s = RK_OK;

    struct stat sb;
    if (lstat(d, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        s = rk_set_error(RK_STATUS_IO, "%s: cannot save a checkpoint: exists and is not a folder", d);
        goto done;
    }
    remove_tree(tmp); /* a leftover of an earlier failure in this same process */
    if (mkdir(tmp, 0777) != 0) {
        s = rk_set_error(RK_STATUS_IO, "%s: cannot create folder: %s", tmp, strerror(errno));
        goto done;
    }
    s = save_tensors(f_model, model, n_model);
    if (s == RK_OK) s = save_tensors(f_optim, optim, n_optim);
    if (s == RK_OK) s = save_state(f_state, state);
    if (s == RK_OK) s = rk_fsync_dir(tmp);
    if (s != RK_OK) {
        remove_tree(tmp);
        goto done;
    }

    /* swap: <dir> -> <dir>.old.<pid>, <dir>.tmp.<pid> -> <dir> (crash windows in checkpoint.h) */
    const bool had_old = lstat(d, &sb) == 0;
    if (had_old) {
        remove_tree(old);
        if (rename(d, old) != 0) {
            s = rk_set_error(RK_STATUS_IO, "%s: cannot move the previous checkpoint aside: %s", d, strerror(errno));
            remove_tree(tmp);
            goto done;
        }
    }
    if (rename(tmp, d) != 0) {
        s = rk_set_error(RK_STATUS_IO, "%s: cannot move the new checkpoint into place: %s", d, strerror(errno));
        if (had_old) rename(old, d);
        remove_tree(tmp);
        goto done;
    }
    s = rk_fsync_dir(parent);
    if (had_old) remove_tree(old);
    remove_leftovers(parent, base);

done:
    free(d);
    free(tmp_base);
    free(tmp);
    free(old_base);
    free(old);
    free(f_model);
    free(f_optim);
    free(f_state);
    free(parent);
    free(base);
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * load */

static const char * format_shape(char * buf, size_t n, const int64_t * shape, int ndim) {
    size_t k = (size_t) snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t) snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long) shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static bool is_float(enum rk_dtype t) { return t == RK_DTYPE_F32 || t == RK_DTYPE_F16 || t == RK_DTYPE_BF16; }

/* Converts n elements between float dtypes; src may be unaligned. */
static void convert(const void * src, enum rk_dtype st, void * dst, enum rk_dtype dt, int64_t n) {
    enum { CHUNK = 4096 };
    uint32_t     raw[CHUNK];
    float        f32[CHUNK];
    const size_t ss = rk_dtype_traits[st].type_size, ds = rk_dtype_traits[dt].type_size;
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int64_t k = n - i < CHUNK ? n - i : CHUNK;
        memcpy(raw, (const uint8_t *) src + (size_t) i * ss, (size_t) k * ss);
        rk_dtype_traits[st].to_f32(raw, f32, k);
        rk_dtype_traits[dt].from_f32(f32, (uint8_t *) dst + (size_t) i * ds, k);
    }
}

static enum rk_status fill_buffers(const char * path, const struct rk_named_buffer * b, int64_t n) {
    struct rk_safetensors * st = NULL;
    RK_TRY(rk_safetensors_open(path, &st));
    enum rk_status s = RK_OK;
    char           want[128], got[128];
    for (int64_t i = 0; i < n && s == RK_OK; i++) {
        const char *               name = b[i].name ? b[i].name : "";
        const struct rk_st_entry * e    = rk_safetensors_find(st, name);
        if (!e) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' not found", path, name);
            break;
        }
        bool same = b[i].ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = b[i].shape[d] == e->shape[d];
        if (!same) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': shape %s in the file, %s expected", path, name,
                             format_shape(got, sizeof(got), e->shape, e->ndim),
                             format_shape(want, sizeof(want), b[i].shape, b[i].ndim < 0 || b[i].ndim > RK_MAX_DIMS ? 0 : b[i].ndim));
            break;
        }
        const int64_t nel = rk_st_entry_nelements(e);
        if (nel > 0 && !b[i].data) {
            s = rk_set_error(RK_STATUS_ARG, "%s: tensor '%s': the destination buffer is NULL", path, name);
        } else if (e->dtype == b[i].dtype) {
            if (e->nbytes) memcpy(b[i].data, e->data, e->nbytes);
        } else if (is_float(e->dtype) && is_float(b[i].dtype)) {
            convert(e->data, e->dtype, b[i].data, b[i].dtype, nel);
        } else {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': dtype %s in the file, %s expected", path, name,
                             rk_dtype_traits[e->dtype].name,
                             (unsigned) b[i].dtype < RK_DTYPE_COUNT ? rk_dtype_traits[b[i].dtype].name : "?");
        }
    }
    rk_safetensors_close(st);
    return s;
}

enum rk_status rk_checkpoint_load(const char * dir, const struct rk_named_buffer * model, int64_t n_model,
                                  const struct rk_named_buffer * optim, int64_t n_optim, cJSON ** state) {
    if (state) *state = NULL;
    if (!dir || !*dir) return rk_set_error(RK_STATUS_ARG, "checkpoint load: empty folder name");
    if (n_model < 0 || n_optim < 0 || (n_model > 0 && !model) || (n_optim > 0 && !optim)) {
        return rk_set_error(RK_STATUS_ARG, "%s: checkpoint load: bad buffer list", dir);
    }
    char src[4096];
    RK_TRY(rk_checkpoint_resolve(dir, src, sizeof(src)));
    char * f_model = fmt_path(src, "/", RK_CKPT_MODEL_FILE);
    char * f_optim = fmt_path(src, "/", RK_CKPT_OPTIM_FILE);
    char * f_state = fmt_path(src, "/", RK_CKPT_STATE_FILE);
    cJSON * j = NULL;
    enum rk_status s = rk_json_load_file(f_state, &j);
    if (s == RK_OK) s = fill_buffers(f_model, model, n_model);
    if (s == RK_OK) s = fill_buffers(f_optim, optim, n_optim);
    if (s == RK_OK && state) *state = j;
    else cJSON_Delete(j);
    free(f_model);
    free(f_optim);
    free(f_state);
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * trainer_state.json */

static void add_u64(cJSON * j, const char * key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
    cJSON_AddStringToObject(j, key, buf);
}

cJSON * rk_trainer_state_to_json(const struct rk_trainer_state * ts, const cJSON * config) {
    cJSON * j = cJSON_CreateObject();
    RK_ASSERT(j != NULL);
    cJSON_AddNumberToObject(j, "step", (double) ts->step);
    cJSON_AddNumberToObject(j, "epoch", (double) ts->epoch);
    add_u64(j, "rng_seed", ts->rng_seed);
    add_u64(j, "rng_offset", ts->rng_offset);
    cJSON_AddNumberToObject(j, "sched_step", (double) ts->sched_step);
    cJSON_AddNumberToObject(j, "loss_scale", ts->loss_scale);
    cJSON_AddNumberToObject(j, "loss_scale_good", (double) ts->loss_scale_good);
    if (isfinite(ts->best_metric)) cJSON_AddNumberToObject(j, "best_metric", ts->best_metric);
    else cJSON_AddNullToObject(j, "best_metric");
    cJSON_AddNumberToObject(j, "best_step", (double) ts->best_step);
    if (config) cJSON_AddItemToObject(j, "config", cJSON_Duplicate(config, true));
    return j;
}

static enum rk_status get_int(const cJSON * j, const char * what, const char * key, int64_t * v) {
    const cJSON * x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || fabs(x->valuedouble) > 9007199254740992.0) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: \"%s\" missing or not an integer", what, key);
    }
    *v = (int64_t) x->valuedouble;
    return RK_OK;
}

static enum rk_status get_u64(const cJSON * j, const char * what, const char * key, uint64_t * v) {
    const cJSON * x = cJSON_GetObjectItemCaseSensitive(j, key);
    char *        end = NULL;
    if (cJSON_IsString(x) && x->valuestring[0] >= '0' && x->valuestring[0] <= '9') {
        errno = 0;
        unsigned long long u = strtoull(x->valuestring, &end, 10);
        if (errno == 0 && *end == '\0') {
            *v = u;
            return RK_OK;
        }
    }
    return rk_set_error(RK_STATUS_FORMAT, "%s: \"%s\" missing or not a decimal string of an unsigned 64-bit integer",
                        what, key);
}

enum rk_status rk_trainer_state_from_json(const cJSON * j, const char * what, struct rk_trainer_state * ts,
                                          const cJSON ** config) {
    if (!cJSON_IsObject(j)) return rk_set_error(RK_STATUS_FORMAT, "%s: trainer state is not a JSON object", what);
    RK_TRY(get_int(j, what, "step", &ts->step));
    RK_TRY(get_int(j, what, "epoch", &ts->epoch));
    RK_TRY(get_u64(j, what, "rng_seed", &ts->rng_seed));
    RK_TRY(get_u64(j, what, "rng_offset", &ts->rng_offset));
    RK_TRY(get_int(j, what, "sched_step", &ts->sched_step));
    RK_TRY(get_int(j, what, "loss_scale_good", &ts->loss_scale_good));
    RK_TRY(get_int(j, what, "best_step", &ts->best_step));
    const cJSON * x = cJSON_GetObjectItemCaseSensitive(j, "loss_scale");
    if (!cJSON_IsNumber(x)) return rk_set_error(RK_STATUS_FORMAT, "%s: \"loss_scale\" missing or not a number", what);
    ts->loss_scale = x->valuedouble;
    x = cJSON_GetObjectItemCaseSensitive(j, "best_metric");
    if (cJSON_IsNumber(x)) ts->best_metric = x->valuedouble;
    else if (cJSON_IsNull(x)) ts->best_metric = NAN;
    else return rk_set_error(RK_STATUS_FORMAT, "%s: \"best_metric\" missing or not a number or null", what);
    if (config) *config = cJSON_GetObjectItemCaseSensitive(j, "config");
    return RK_OK;
}
