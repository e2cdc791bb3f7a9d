/*
 * split.c: iterative stratification (Sechidis et al. 2011, Algorithm 1; see split.h), the split file
 * writer (temporary file + rename) and reader, and fold index lists.
 */
#include "split.h"

#include "check.h"
#include "rng.h"
#include "csv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char * const split_names[RK_SPLIT_COUNT] = {
    [RK_SPLIT_TRAIN] = "train",
    [RK_SPLIT_VAL]   = "val",
    [RK_SPLIT_TEST]  = "test",
};
_Static_assert(sizeof(split_names) / sizeof(split_names[0]) == RK_SPLIT_COUNT, "split_names out of date");

const char * rk_split_name(int fold) { return (fold >= 0 && fold < RK_SPLIT_COUNT) ? split_names[fold] : NULL; }

/* ---- PRNG: host/rng.h (xoshiro256** seeded by splitmix64) ---------------------------------------- */

/* ---- iterative stratification ----------------------------------------------------------------- */

/* Desired counts are sums of products of fractions; values this close are the same count. */
#define RK_SPLIT_TIE_EPS 1e-6

/*
 * Among folds with the largest primary desire (per label; NULL to skip that stage), those with the largest
 * overall desire, then uniformly at random.
 */
static int pick_fold(const double * want_label, const double * want_total, int n_folds, struct rk_rng * r) {
    int cand[256];
    int n_cand = 0;
    for (int j = 0; j < n_folds; j++) cand[n_cand++] = j;
    for (int stage = 0; stage < 2; stage++) {
        const double * w = stage == 0 ? want_label : want_total;
        if (!w || n_cand == 1) continue;
        double best = -INFINITY;
        for (int k = 0; k < n_cand; k++) {
            if (w[cand[k]] > best) best = w[cand[k]];
        }
        int kept = 0;
        for (int k = 0; k < n_cand; k++) {
            if (w[cand[k]] >= best - RK_SPLIT_TIE_EPS) cand[kept++] = cand[k];
        }
        n_cand = kept;
    }
    return n_cand == 1 ? cand[0] : cand[rk_rng_below(r, (uint64_t) n_cand)];
}

enum rk_status rk_split_iterative(const uint8_t * labels, int64_t n_docs, int64_t n_labels, const double * fractions,
                                  int n_folds, uint64_t seed, uint8_t * fold_out) {
    if (n_docs < 0 || n_labels < 0) {
        return rk_set_error(RK_STATUS_ARG, "rk_split_iterative: n_docs %lld and n_labels %lld must be >= 0",
                            (long long) n_docs, (long long) n_labels);
    }
    if (n_folds < 1 || n_folds > 255) {
        return rk_set_error(RK_STATUS_ARG, "rk_split_iterative: n_folds %d is outside 1..255", n_folds);
    }
    if (!fractions) return rk_set_error(RK_STATUS_ARG, "rk_split_iterative: fractions is NULL");
    double sum = 0.0;
    for (int j = 0; j < n_folds; j++) {
        if (!(fractions[j] >= 0.0 && fractions[j] <= 1.0)) {
            return rk_set_error(RK_STATUS_ARG, "rk_split_iterative: fraction %d is %g, not in [0, 1]", j, fractions[j]);
        }
        sum += fractions[j];
    }
    if (fabs(sum - 1.0) > 1e-6) {
        return rk_set_error(RK_STATUS_ARG, "rk_split_iterative: fractions sum to %.9g, not 1", sum);
    }
    if (n_docs == 0) return RK_OK;
    for (int64_t i = 0; i < n_docs * n_labels; i++) {
        if (labels[i] > 1) {
            return rk_set_error(RK_STATUS_ARG, "rk_split_iterative: labels[%lld, %lld] is %d, not 0 or 1",
                                (long long) (i / n_labels), (long long) (i % n_labels), labels[i]);
        }
    }

    struct rk_rng rng;
    rk_rng_seed(&rng, seed);

    /* a seeded order of the documents (Fisher-Yates) */
    int64_t * perm = rk_xmalloc((size_t) n_docs * sizeof(int64_t));
    for (int64_t i = 0; i < n_docs; i++) perm[i] = i;
    for (int64_t i = n_docs - 1; i > 0; i--) {
        int64_t k = (int64_t) rk_rng_below(&rng, (uint64_t) i + 1);
        int64_t t = perm[i];
        perm[i]   = perm[k];
        perm[k]   = t;
    }

    /* documents of each label, in permuted order (CSR) */
    int64_t * remaining = rk_xcalloc((size_t) n_labels + 1, sizeof(int64_t));
    int64_t * start     = rk_xcalloc((size_t) n_labels + 1, sizeof(int64_t));
    for (int64_t i = 0; i < n_docs; i++) {
        for (int64_t l = 0; l < n_labels; l++) remaining[l] += labels[i * n_labels + l];
    }
    for (int64_t l = 0; l < n_labels; l++) start[l + 1] = start[l] + remaining[l];
    int64_t * members = rk_xmalloc((size_t) (start[n_labels] + 1) * sizeof(int64_t));
    int64_t * fill    = rk_xmalloc(((size_t) n_labels + 1) * sizeof(int64_t));
    memcpy(fill, start, (size_t) n_labels * sizeof(int64_t));
    for (int64_t p = 0; p < n_docs; p++) {
        int64_t i = perm[p];
        for (int64_t l = 0; l < n_labels; l++) {
            if (labels[i * n_labels + l]) members[fill[l]++] = i;
        }
    }

    /* desired counts */
    double * want_total = rk_xmalloc((size_t) n_folds * sizeof(double));
    double * want       = rk_xmalloc(((size_t) n_labels + 1) * (size_t) n_folds * sizeof(double));
    for (int j = 0; j < n_folds; j++) want_total[j] = fractions[j] * (double) n_docs;
    for (int64_t l = 0; l < n_labels; l++) {
        for (int j = 0; j < n_folds; j++) want[l * n_folds + j] = fractions[j] * (double) remaining[l];
    }

    uint8_t * fold = rk_xmalloc((size_t) n_docs);
    memset(fold, 0xff, (size_t) n_docs);

    for (;;) {
        /* the label with the fewest unassigned documents (> 0), ties at random (reservoir sampling) */
        int64_t best   = -1;
        int64_t n_ties = 0;
        for (int64_t l = 0; l < n_labels; l++) {
            if (remaining[l] == 0) continue;
            if (best < 0 || remaining[l] < remaining[best]) {
                best   = l;
                n_ties = 1;
            } else if (remaining[l] == remaining[best]) {
                n_ties++;
                if (rk_rng_below(&rng, (uint64_t) n_ties) == 0) best = l;
            }
        }
        if (best < 0) break;

        for (int64_t k = start[best]; k < start[best + 1]; k++) {
            int64_t i = members[k];
            if (fold[i] != 0xff) continue;
            int m   = pick_fold(want + best * n_folds, want_total, n_folds, &rng);
            fold[i] = (uint8_t) m;
            want_total[m] -= 1.0;
            for (int64_t l = 0; l < n_labels; l++) {
                if (labels[i * n_labels + l]) {
                    want[l * n_folds + m] -= 1.0;
                    remaining[l]--;
                }
            }
        }
    }

    /* documents without any label: balance the overall desired counts */
    for (int64_t p = 0; p < n_docs; p++) {
        int64_t i = perm[p];
        if (fold[i] != 0xff) continue;
        int m   = pick_fold(NULL, want_total, n_folds, &rng);
        fold[i] = (uint8_t) m;
        want_total[m] -= 1.0;
    }

    memcpy(fold_out, fold, (size_t) n_docs);
    free(fold);
    free(want);
    free(want_total);
    free(fill);
    free(members);
    free(start);
    free(remaining);
    free(perm);
    return RK_OK;
}

int64_t rk_split_indices(const uint8_t * fold, int64_t n, uint8_t which, int64_t * idx_out) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fold[i] == which) {
            if (idx_out) idx_out[k] = i;
            k++;
        }
    }
    return k;
}

/* ---- split file ------------------------------------------------------------------------------- */

enum rk_status rk_split_write(const char * path, const struct rk_dataset * d, const uint8_t * fold) {
    size_t n   = strlen(path) + 32;
    char * tmp = rk_xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long) getpid());

    enum rk_status s = RK_OK;
    FILE *         f = fopen(tmp, "wb");
    if (!f) {
        s = rk_set_error(RK_STATUS_IO, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return s;
    }
    bool ok = fputs("ID,split\n", f) >= 0;
    for (int64_t i = 0; ok && i < d->n_docs; i++) {
        const char * name = rk_split_name(fold[i]);
        if (!name) {
            s = rk_set_error(RK_STATUS_ARG, "%s: document %lld (ID '%s') has fold %d; only 0 (train), 1 (val) "
                             "and 2 (test) can be written", path, (long long) i, d->ids[i], fold[i]);
            break;
        }
        ok = rk_csv_write_field(f, d->ids[i]) == 0 && fputc(',', f) != EOF && fputs(name, f) >= 0 &&
             fputc('\n', f) != EOF;
    }
    if (s == RK_OK && ok) ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (s == RK_OK && !ok) s = rk_set_error(RK_STATUS_IO, "%s: write to %s failed: %s", path, tmp, strerror(errno));
    if (fclose(f) != 0 && s == RK_OK) {
        s = rk_set_error(RK_STATUS_IO, "%s: closing %s failed: %s", path, tmp, strerror(errno));
    }
    if (s == RK_OK && rename(tmp, path) != 0) {
        s = rk_set_error(RK_STATUS_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    }
    if (s != RK_OK) unlink(tmp);
    free(tmp);
    return s;
}

static int parse_split_name(const char * s) {
    for (int j = 0; j < RK_SPLIT_COUNT; j++) {
        if (strcasecmp(s, split_names[j]) == 0) return j;
    }
    return -1;
}

enum rk_status rk_split_read(const char * path, const struct rk_dataset * d, uint8_t * fold) {
    struct rk_csv * csv = NULL;
    RK_TRY(rk_csv_open(path, &csv));
    const struct rk_csv_row * header = rk_csv_header(csv);
    int64_t                   c_id   = rk_csv_find_column(header, "ID");
    int64_t                   c_sp   = rk_csv_find_column(header, "split");
    if (c_id < 0 || c_sp < 0) {
        enum rk_status s = rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: the header needs the columns 'ID' and "
                                        "'split'", path, (long long) header->line);
        rk_csv_close(csv);
        return s;
    }

    int64_t *      seen = rk_xcalloc((size_t) d->n_docs + 1, sizeof(int64_t)); /* line where each doc was listed */
    uint8_t *      tmp  = rk_xmalloc((size_t) d->n_docs + 1);
    enum rk_status s    = RK_OK;
    for (;;) {
        const struct rk_csv_row * row = NULL;
        s = rk_csv_next(csv, &row);
        if (s != RK_OK || !row) break;
        const char * id = row->fields[c_id];
        int64_t      i  = rk_dataset_find_id(d, id);
        if (i < 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: unknown ID '%.80s' (not in %s)", path,
                             (long long) row->line, id, d->path);
            break;
        }
        if (seen[i]) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: ID '%.80s' listed twice (first on line %lld)", path,
                             (long long) row->line, id, (long long) seen[i]);
            break;
        }
        int j = parse_split_name(row->fields[c_sp]);
        if (j < 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: split '%.40s' is not train, val or test", path,
                             (long long) row->line, row->fields[c_sp]);
            break;
        }
        seen[i] = row->line;
        tmp[i]  = (uint8_t) j;
    }
    if (s == RK_OK) {
        int64_t n_missing = 0;
        int64_t first     = -1;
        for (int64_t i = 0; i < d->n_docs; i++) {
            if (!seen[i]) {
                if (first < 0) first = i;
                n_missing++;
            }
        }
        if (n_missing > 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: %lld of the %lld IDs of %s are missing, the first is '%.80s' (line "
                             "%lld there)", path, (long long) n_missing, (long long) d->n_docs, d->path,
                             d->ids[first], (long long) (d->lines ? d->lines[first] : 0));
        }
    }
    if (s == RK_OK) memcpy(fold, tmp, (size_t) d->n_docs);
    free(seen);
    free(tmp);
    rk_csv_close(csv);
    return s;
}
