/*
 * forest.c: one-vs-rest random forests with sklearn RandomForestClassifier semantics (see forest.h).
 *
 * Layout. X is presorted once per fit (shared by all labels and trees): every value becomes its rank within
 * its feature, stored column-major (d, n), so gathering one feature over a node's samples reads one 24 KB
 * column (n = 6000) that stays in cache. A tree keeps its distinct bootstrap samples in idx[], and a node is a
 * range [start, end) of idx, partitioned in place (by rank) after each split.
 *
 * Split search (exact, no histograms). For each candidate feature the node's samples become 64-bit keys: the
 * rank in the high 32 bits, (bootstrap weight << 1 | label) in the low 32. One sort of the keys (insertion
 * sort for small nodes, LSD radix with 8-bit digits on the rank otherwise: 2 passes for n < 65536) gives
 * everything the scan needs without touching the samples again. The scan keeps integer left counts, scores
 * only boundaries where the class changes (see find_split) and maximises sklearn's gini proxy
 * sum_k c_left,k^2 / w_left + sum_k c_right,k^2 / w_right.
 *
 * Trees are stored in preorder, 12 bytes a node: the left child follows its parent, the right child's index is
 * stored. Work is a flat list of (label, tree) tasks under OpenMP's dynamic schedule; every task owns its RNG
 * stream and output slot, so results do not depend on the schedule.
 */
#include "classify/forest.h"
#include "classify/ovr.h"
#include "check.h"
#include "rng.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define FEATURE_THRESHOLD 1e-7 /* sklearn _splitter.pyx: consecutive values closer than this are not split */
#define INSERTION_SORT_MAX 48  /* nodes up to this size sort by insertion, larger ones by radix */

void rk_forest_params_default(struct rk_forest_params * p) {
    p->n_trees           = 100;
    p->max_features      = 0;
    p->max_depth         = 0;
    p->min_samples_split = 2;
    p->min_samples_leaf  = 1;
    p->bootstrap         = true;
    p->progress          = true;
}

/* ------------------------------------------------------------------------------------------------
 * RNG: splitmix64 to seed, xoshiro256** to draw (Blackman & Vigna, https://prng.di.unimi.it/) */

/* The stream of tree `tree` of label `label`: each coordinate goes through splitmix64 in turn. */
static void rng_seed(struct rk_rng * r, uint64_t seed, int64_t label, int64_t tree) {
    uint64_t s = seed;
    s          = rk_splitmix64(&s) ^ (uint64_t) label;
    s          = rk_splitmix64(&s) ^ (uint64_t) tree;
    for (int k = 0; k < 4; k++) r->s[k] = rk_splitmix64(&s);
}

/* ------------------------------------------------------------------------------------------------
 * trees */

struct node {
    int32_t feature; /* split feature; -1 for a leaf */
    int32_t right;   /* index of the right child (the left child is this index + 1) */
    float   value;   /* split: go left when x[feature] <= value; leaf: class-1 probability */
};
_Static_assert(sizeof(struct node) == 12, "struct node should stay 12 bytes");

struct tree {
    int32_t       n_nodes;
    struct node * nodes;
};

struct rk_forest {
    int64_t       d, L, n_trees;
    float *       constant; /* (L) 0 or 1 for a label constant in training, NaN for a fitted label */
    struct tree * trees;    /* (L, n_trees); empty for constant labels */
};

/* float -> unsigned integer with the same order (after mapping -0 to +0); no NaN in the input */
static uint32_t float_key(float v) {
    uint32_t u;
    v += 0.0f;
    memcpy(&u, &v, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/*
 * Sorts a[0..m) by the high 32 bits (ties in any order), which are ranks below 2^rank_bits; tmp has room
 * for m. LSD radix sort with 8-bit digits, skipping digits that are the same in every key; insertion sort for
 * small m. Returns the sorted array (a or tmp).
 */
static uint64_t * sort_keys(uint64_t * a, uint64_t * tmp, int64_t m, int rank_bits) {
    if (m <= INSERTION_SORT_MAX) {
        for (int64_t i = 1; i < m; i++) {
            uint64_t k = a[i];
            int64_t  j = i - 1;
            while (j >= 0 && (a[j] >> 32) > (k >> 32)) {
                a[j + 1] = a[j];
                j--;
            }
            a[j + 1] = k;
        }
        return a;
    }
    const int n_digit = (rank_bits + 7) / 8;
    uint32_t  cnt[4][256];
    memset(cnt, 0, (size_t) n_digit * sizeof(cnt[0]));
    for (int64_t i = 0; i < m; i++) {
        uint32_t h = (uint32_t) (a[i] >> 32);
        for (int b = 0; b < n_digit; b++) cnt[b][(h >> (8 * b)) & 0xff]++;
    }
    uint64_t *src = a, *dst = tmp;
    for (int b = 0; b < n_digit; b++) {
        int shift = 32 + 8 * b;
        if (cnt[b][(src[0] >> shift) & 0xff] == (uint32_t) m) continue; /* every key has this digit */
        uint32_t sum = 0;
        for (int k = 0; k < 256; k++) {
            uint32_t c = cnt[b][k];
            cnt[b][k]  = sum;
            sum += c;
        }
        for (int64_t i = 0; i < m; i++) dst[cnt[b][(src[i] >> shift) & 0xff]++] = src[i];
        uint64_t * t = src;
        src          = dst;
        dst          = t;
    }
    return src;
}

/* per-thread scratch for building trees on n samples and d features */
struct tree_ws {
    uint32_t *    idx;      /* (n) distinct samples of the tree, partitioned by node */
    uint32_t *    wy;       /* (n) per sample: bootstrap count << 1 | label */
    uint64_t *    keys;     /* (n) sort keys of one node and feature */
    uint64_t *    tmp;      /* (n) radix scratch */
    int32_t *     features; /* (d) permutation for feature sampling */
    struct node * nodes;    /* (2n) the tree being built */
    struct stack_item {
        int64_t start, end, depth, w, pos; /* samples range, depth, weight and weighted positives */
        int64_t parent;                    /* index of the parent node, -1 for the root */
        int     is_right;
    } * stack; /* (n + 1) */
};

static void tree_ws_init(struct tree_ws * ws, int64_t n, int64_t d) {
    ws->idx      = rk_xmalloc((size_t) n * sizeof(uint32_t));
    ws->wy       = rk_xmalloc((size_t) n * sizeof(uint32_t));
    ws->keys     = rk_xmalloc((size_t) n * sizeof(uint64_t));
    ws->tmp      = rk_xmalloc((size_t) n * sizeof(uint64_t));
    ws->features = rk_xmalloc((size_t) d * sizeof(int32_t));
    ws->nodes    = rk_xmalloc((size_t) (2 * n) * sizeof(struct node));
    ws->stack    = rk_xmalloc((size_t) (n + 1) * sizeof(*ws->stack));
}

static void tree_ws_free(struct tree_ws * ws) {
    free(ws->idx);
    free(ws->wy);
    free(ws->keys);
    free(ws->tmp);
    free(ws->features);
    free(ws->nodes);
    free(ws->stack);
}

/*
 * X presorted once per fit: each value is replaced by its rank within its feature, so that a node sorts small
 * integers instead of floats, finds split positions where the rank changes, and partitions by comparing ranks.
 * Values that sklearn would not split between (sorted neighbours no more than FEATURE_THRESHOLD apart) share a
 * rank: a rank is a chain of such values, bound[] holds its smallest and largest value. The one difference from
 * sklearn's per-node test is for a chain longer than FEATURE_THRESHOLD whose middle values are absent from a
 * node: sklearn could split between its ends there, we do not (values ~1e-7 apart, no practical effect).
 */
struct presort {
    uint32_t * rank;      /* (d, n) rank of X[i, f] among the value chains of feature f */
    float (*bound)[2];    /* (d, n) [lowest, highest] value of each rank of feature f (first n_rank used) */
    int        rank_bits; /* ranks are below 2^rank_bits */
};

/* a split position between two blocks of equal rank, waiting for the block after it to be complete */
struct candidate {
    int64_t  i, wl, pl;  /* position in the sorted node; left weight and weighted positives */
    uint32_t ra, rb;     /* ranks on either side */
    int      cls;        /* class of the block before, when pure */
    bool     pure;       /* the block before holds one class */
};

struct split {
    int64_t  feature;  /* -1: none found */
    int64_t  n_left;   /* distinct samples going left */
    int64_t  w_left, pos_left;
    uint32_t rank;     /* samples with rank <= this go left */
    float    threshold;
    double   proxy;
};

/*
 * Best split of the node idx[start, end) (weight w, weighted positives pos) over sampled features: the
 * feature loop of sklearn's BestSplitter.node_split.
 */
static struct split find_split(const struct rk_forest_params * p, const struct presort * ps, int64_t n, int64_t d,
                               int64_t max_features, struct tree_ws * ws, struct rk_rng * r, int64_t start,
                               int64_t end, int64_t w, int64_t pos) {
    const int64_t    m    = end - start;
    const uint32_t * idx  = ws->idx + start;
    struct split     best = {.feature = -1, .proxy = -INFINITY};
    int64_t          visited = 0, nonconst = 0;
    for (int64_t k = 0; k < d && (visited < max_features || nonconst == 0); k++) {
        /* partial Fisher-Yates: features[k] becomes a uniform draw from those not yet tried at this node */
        int64_t j       = k + rk_rng_below_fast(r, (uint32_t) (d - k));
        int32_t f       = ws->features[j];
        ws->features[j] = ws->features[k];
        ws->features[k] = f;
        visited++;

        const uint32_t * rank = ps->rank + (int64_t) f * n;
        for (int64_t i = 0; i < m; i++) {
            uint32_t s  = idx[i];
            ws->keys[i] = ((uint64_t) rank[s] << 32) | ws->wy[s];
        }
        uint64_t * keys = sort_keys(ws->keys, ws->tmp, m, ps->rank_bits);
        if ((keys[m - 1] >> 32) == (keys[0] >> 32)) continue; /* constant in this node */
        nonconst++;

        /*
         * Scan of the sorted ranks in blocks of equal rank; the candidate split between two blocks is scored
         * once the block after it is complete. The gini proxy, as a function of the split position inside a run
         * of samples of one class, is convex (a sum of two perspective functions |c|^2 / w of counts moving
         * along a line), so its maximum over the run sits at the run's ends: a split between two pure blocks of
         * the same class is skipped (Elomaa & Rousu, "General and efficient multisplitting of numerical
         * attributes", Machine Learning 36, 1999). With min_samples_leaf > 1 the ends can be out of bounds, so
         * every position is scored then.
         */
        const bool skip_runs = p->min_samples_leaf == 1;
        uint32_t   r_prev    = (uint32_t) (keys[0] >> 32);
        int        blk_cls   = (int) (keys[0] & 1);
        bool       blk_pure  = true, has_cand = false;
        int64_t    wl        = (uint32_t) keys[0] >> 1, pl = wl * blk_cls;
        struct candidate cand = {0};
        for (int64_t i = 1; i <= m; i++) {
            uint64_t key = i < m ? keys[i] : 0;
            uint32_t r   = (uint32_t) (key >> 32);
            int      y   = (int) (key & 1);
            if (i == m || r != r_prev) {
                /* the blocks on both sides of the candidate are known: score it */
                if (has_cand && !(skip_runs && cand.pure && blk_pure && cand.cls == blk_cls) &&
                    cand.i >= p->min_samples_leaf && m - cand.i >= p->min_samples_leaf) {
                    /* sklearn's proxy A / wl + B / wr (A, B: sums of squared class weights) as (A wr + B wl) /
                     * (wl wr), one division; exact integers below 2^53 for n < 2^17 */
                    double dl = (double) cand.wl, dr = (double) (w - cand.wl);
                    double ppl = (double) cand.pl, nl = dl - ppl, ppr = (double) (pos - cand.pl), nr = dr - ppr;
                    double proxy = ((ppl * ppl + nl * nl) * dr + (ppr * ppr + nr * nr) * dl) / (dl * dr);
                    if (proxy > best.proxy) {
                        /* midpoint of the two values as sklearn, kept in [va, vb) after rounding to f32 */
                        float va = ps->bound[f * n + cand.ra][1], vb = ps->bound[f * n + cand.rb][0];
                        float t  = (float) ((double) va / 2.0 + (double) vb / 2.0);
                        if (!(t < vb) || !isfinite(t)) t = va;
                        best = (struct split){f, cand.i, cand.wl, cand.pl, cand.ra, t, proxy};
                    }
                }
                if (i == m) break;
                cand     = (struct candidate){i, wl, pl, r_prev, r, blk_cls, blk_pure};
                has_cand = true;
                blk_cls  = y;
                blk_pure = true;
                r_prev   = r;
            }
            int64_t wt = (uint32_t) key >> 1;
            blk_pure   = blk_pure && y == blk_cls;
            wl += wt;
            pl += wt * y;
        }
    }
    return best;
}

/*
 * Grows one tree depth first (sklearn DepthFirstTreeBuilder order: left subtree first). y is the label's
 * column (n). Returns the tree with its own node array.
 */
static struct tree build_tree(const struct rk_forest_params * p, const struct presort * ps, const uint8_t * y,
                              int64_t n, int64_t d, int64_t max_features, struct tree_ws * ws, struct rk_rng * r) {
    /* bootstrap: counts per sample; the distinct drawn samples, in increasing order, form the root */
    memset(ws->wy, 0, (size_t) n * sizeof(uint32_t));
    if (p->bootstrap) {
        for (int64_t k = 0; k < n; k++) ws->wy[rk_rng_below_fast(r, (uint32_t) n)] += 2;
    } else {
        for (int64_t k = 0; k < n; k++) ws->wy[k] = 2;
    }
    int64_t m = 0, w = 0, pos = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!ws->wy[i]) continue;
        ws->idx[m++] = (uint32_t) i;
        w += ws->wy[i] >> 1;
        pos += y[i] ? ws->wy[i] >> 1 : 0;
        ws->wy[i] |= y[i] != 0;
    }
    for (int64_t f = 0; f < d; f++) ws->features[f] = (int32_t) f;

    int64_t n_nodes = 0, top = 0;
    ws->stack[top++] = (struct stack_item){0, m, 0, w, pos, -1, 0};
    while (top > 0) {
        struct stack_item it = ws->stack[--top];
        int64_t           id = n_nodes++;
        if (it.is_right) ws->nodes[it.parent].right = (int32_t) id;
        int64_t nm   = it.end - it.start;
        bool    leaf = it.pos == 0 || it.pos == it.w || nm < p->min_samples_split || nm < 2 * p->min_samples_leaf ||
                    (p->max_depth > 0 && it.depth >= p->max_depth);
        struct split sp = {.feature = -1};
        if (!leaf) sp = find_split(p, ps, n, d, max_features, ws, r, it.start, it.end, it.w, it.pos);
        if (sp.feature < 0) {
            ws->nodes[id] = (struct node){-1, -1, (float) ((double) it.pos / (double) it.w)};
            continue;
        }
        ws->nodes[id] = (struct node){(int32_t) sp.feature, -1, sp.threshold};
        /* partition idx[start, end) so that rank <= split rank (x <= threshold) comes first */
        const uint32_t * rank = ps->rank + sp.feature * n;
        int64_t          i = it.start, j = it.end - 1;
        while (i <= j) {
            if (rank[ws->idx[i]] <= sp.rank) {
                i++;
            } else {
                uint32_t t   = ws->idx[i];
                ws->idx[i]   = ws->idx[j];
                ws->idx[j--] = t;
            }
        }
        RK_ASSERT(i - it.start == sp.n_left);
        int64_t mid      = it.start + sp.n_left;
        ws->stack[top++] = (struct stack_item){mid, it.end, it.depth + 1, it.w - sp.w_left, it.pos - sp.pos_left,
                                               id, 1};
        ws->stack[top++] = (struct stack_item){it.start, mid, it.depth + 1, sp.w_left, sp.pos_left, id, 0};
    }
    struct tree t = {(int32_t) n_nodes, rk_xmalloc((size_t) n_nodes * sizeof(struct node))};
    memcpy(t.nodes, ws->nodes, (size_t) n_nodes * sizeof(struct node));
    return t;
}

/* Ranks of every feature's values (one radix sort of n float keys per feature), see struct presort. */
static void presort_init(struct presort * ps, const float * X, int64_t n, int64_t d, int threads) {
    ps->rank      = rk_xmalloc((size_t) (n * d) * sizeof(uint32_t));
    ps->bound     = rk_xmalloc((size_t) (n * d) * sizeof(ps->bound[0]));
    ps->rank_bits = 1;
    while (ps->rank_bits < 32 && ((int64_t) 1 << ps->rank_bits) < n) ps->rank_bits++;
#pragma omp parallel num_threads(threads)
    {
        uint64_t * keys = rk_xmalloc((size_t) n * sizeof(uint64_t));
        uint64_t * tmp  = rk_xmalloc((size_t) n * sizeof(uint64_t));
#pragma omp for schedule(dynamic, 8)
        for (int64_t f = 0; f < d; f++) {
            for (int64_t i = 0; i < n; i++) keys[i] = ((uint64_t) float_key(X[i * d + f]) << 32) | (uint64_t) i;
            uint64_t * sorted = sort_keys(keys, tmp, n, 32);
            uint32_t * rank   = ps->rank + f * n;
            float(*bound)[2]  = ps->bound + f * n;
            int64_t r         = -1;
            float   v_prev    = 0.0f;
            for (int64_t k = 0; k < n; k++) {
                uint32_t i = (uint32_t) sorted[k];
                float    v = X[i * d + f] + 0.0f;
                if (k == 0 || (double) v > (double) v_prev + FEATURE_THRESHOLD) bound[++r][0] = v;
                bound[r][1] = v;
                rank[i]     = (uint32_t) r;
                v_prev      = v;
            }
        }
        free(keys);
        free(tmp);
    }
}

static float tree_predict(const struct tree * t, const float * x) {
    const struct node * nd = t->nodes;
    int32_t             k  = 0;
    while (nd[k].feature >= 0) k = x[nd[k].feature] <= nd[k].value ? k + 1 : nd[k].right;
    return nd[k].value;
}

/* ------------------------------------------------------------------------------------------------
 * public API */

enum rk_status rk_forest_fit(const struct rk_forest_params * p, const float * X, const uint8_t * Y, int64_t n,
                             int64_t d, int64_t L, uint64_t seed, int threads, struct rk_forest ** out) {
    if (out) *out = NULL;
    if (!p || !X || !Y || !out || n < 1 || d < 1 || L < 1 || n >= INT32_MAX / 2 || d >= INT32_MAX) {
        return rk_set_error(RK_STATUS_ARG, "rk_forest_fit: need params, X, Y, out and 1 <= n < 2^30, d, L >= 1 "
                            "(n=%lld d=%lld L=%lld)", (long long) n, (long long) d, (long long) L);
    }
    if (p->n_trees < 1 || p->max_features < 0 || p->max_features > d || p->max_depth < 0 ||
        p->min_samples_split < 2 || p->min_samples_leaf < 1) {
        return rk_set_error(RK_STATUS_ARG, "rk_forest_fit: bad params (n_trees=%lld >= 1, 0 <= max_features=%lld "
                            "<= d, max_depth=%lld >= 0, min_samples_split=%lld >= 2, min_samples_leaf=%lld >= 1)",
                            (long long) p->n_trees, (long long) p->max_features, (long long) p->max_depth,
                            (long long) p->min_samples_split, (long long) p->min_samples_leaf);
    }
    for (int64_t k = 0; k < n * d; k++) {
        if (!isfinite(X[k])) {
            return rk_set_error(RK_STATUS_ARG, "rk_forest_fit: X[%lld, %lld] is not finite", (long long) (k / d),
                                (long long) (k % d));
        }
    }
    int64_t max_features = p->max_features;
    if (max_features == 0) {
        max_features = (int64_t) sqrt((double) d); /* sklearn: max(1, int(np.sqrt(n_features))) */
        while (max_features * max_features > d) max_features--;
        while ((max_features + 1) * (max_features + 1) <= d) max_features++;
        if (max_features < 1) max_features = 1;
    }

    struct rk_forest * f = rk_xcalloc(1, sizeof(*f));
    f->d        = d;
    f->L        = L;
    f->n_trees  = p->n_trees;
    f->constant = rk_xmalloc((size_t) L * sizeof(float));
    f->trees    = rk_xcalloc((size_t) (L * p->n_trees), sizeof(struct tree));

    /* label columns (L, n), constant labels, and the fitted labels' task list */
    uint8_t * Yt     = rk_xmalloc((size_t) (L * n));
    int64_t * fitted = rk_xmalloc((size_t) L * sizeof(int64_t));
    int64_t   n_fit  = 0;
    for (int64_t l = 0; l < L; l++) {
        int64_t n_pos = 0;
        for (int64_t i = 0; i < n; i++) {
            Yt[l * n + i] = Y[i * L + l] != 0;
            n_pos += Yt[l * n + i];
        }
        f->constant[l] = n_pos == 0 ? 0.0f : n_pos == n ? 1.0f : NAN;
        if (n_pos > 0 && n_pos < n) fitted[n_fit++] = l;
    }
    int            nt = threads > 0 ? threads : omp_get_max_threads();
    struct presort ps;
    presort_init(&ps, X, n, d, nt);

    const int64_t          n_task = n_fit * p->n_trees;
    struct rk_clf_progress prog;
    rk_clf_progress_init(&prog, "forest", n_task, p->n_trees, p->progress);
#pragma omp parallel num_threads(nt)
    {
        struct tree_ws ws;
        tree_ws_init(&ws, n, d);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_task; task++) {
            int64_t    l = fitted[task / p->n_trees], t = task % p->n_trees;
            struct rk_rng r;
            rng_seed(&r, seed, l, t);
            f->trees[l * p->n_trees + t] = build_tree(p, &ps, Yt + l * n, n, d, max_features, &ws, &r);
            rk_clf_progress_add(&prog, 1);
        }
        tree_ws_free(&ws);
    }
    rk_clf_progress_end(&prog);
    free(ps.rank);
    free(ps.bound);
    free(Yt);
    free(fitted);
    *out = f;
    return RK_OK;
}

void rk_forest_predict_proba(const struct rk_forest * f, const float * X, int64_t n, float * proba, int threads) {
    const int64_t L = f->L, d = f->d, T = f->n_trees;
    int           nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t l = 0; l < L; l++) {
            if (!isnan(f->constant[l])) {
                proba[i * L + l] = f->constant[l];
                continue;
            }
            double s = 0.0;
            for (int64_t t = 0; t < T; t++) s += tree_predict(&f->trees[l * T + t], X + i * d);
            proba[i * L + l] = (float) (s / (double) T);
        }
    }
}

void rk_forest_free(struct rk_forest * f) {
    if (!f) return;
    for (int64_t k = 0; k < f->L * f->n_trees; k++) free(f->trees[k].nodes);
    free(f->trees);
    free(f->constant);
    free(f);
}

int64_t rk_forest_n_labels(const struct rk_forest * f) { return f->L; }
int64_t rk_forest_n_features(const struct rk_forest * f) { return f->d; }

int64_t rk_forest_n_nodes(const struct rk_forest * f) {
    int64_t s = 0;
    for (int64_t k = 0; k < f->L * f->n_trees; k++) s += f->trees[k].n_nodes;
    return s;
}
