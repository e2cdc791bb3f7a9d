/*
 * forest.h: one-vs-rest random forests: one binary forest per label, with the defaults of sklearn
 * RandomForestClassifier(): 100 trees, gini, max_features = floor(sqrt(d)), bootstrap samples of size n,
 * min_samples_split 2, min_samples_leaf 1, no depth limit. Like sklearn, a bootstrap draw is kept as a
 * per-sample weight (the number of times the sample was drawn), split positions need a gap > 1e-7 between
 * consecutive sorted values, the threshold is the midpoint of the two values, and a node stops splitting when it
 * is pure or no feature can split it (a split with zero gini gain is still made). A split draws features without
 * replacement until it has tried max_features of them and at least one was not constant in the node.
 *
 * A tree's randomness comes from its own xoshiro256** stream, seeded by splitmix64 from (seed, label, tree), so
 * a fit depends on the seed only, never on the thread count or scheduling. The numbers cannot equal sklearn's
 * (another RNG) but the statistics are the same.
 *
 * Prediction averages the trees' leaf probabilities of class 1 (each leaf holds its weighted class-1
 * fraction); sklearn's predict is the argmax of that average, i.e. proba > 0.5 (a tie at 0.5 gives 0).
 * A label that is all 0 or all 1 in training has no trees and predicts that constant (proba 0 or 1).
 */
#ifndef RK_CLASSIFY_FOREST_H
#define RK_CLASSIFY_FOREST_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_forest_params {
    int64_t n_trees;           /* trees per label: 100 */
    int64_t max_features;      /* features tried per split; 0 means floor(sqrt(d)) (sklearn "sqrt"): 0 */
    int64_t max_depth;         /* 0 means unlimited: 0 */
    int64_t min_samples_split; /* a node with fewer distinct samples is a leaf: 2 */
    int64_t min_samples_leaf;  /* distinct samples each child needs: 1 */
    bool    bootstrap;         /* resample n rows with replacement per tree; false uses every row once: true */
    bool    progress;          /* progress line on stderr for fits over 2 s: true */
};

/* Fills the defaults listed above; cannot fail. */
void rk_forest_params_default(struct rk_forest_params * p);

struct rk_forest; /* L fitted forests (opaque) */

/*
 * Fits one forest per label on X (n, d) f32 row-major and Y (n, L) uint8 row-major (non-zero = 1). Work is
 * spread over OpenMP threads by (label, tree); threads <= 0 uses OpenMP's default. On success *out is a new
 * model freed with rk_forest_free. Bad arguments (NULL, n/d/L < 1, n >= 2^31, non-finite X, bad params) give
 * RK_STATUS_ARG with the error set and *out NULL.
 */
enum rk_status rk_forest_fit(const struct rk_forest_params * p, const float * X, const uint8_t * Y, int64_t n,
                             int64_t d, int64_t L, uint64_t seed, int threads, struct rk_forest ** out);

/*
 * proba (n, L) = mean over the label's trees of the class-1 leaf probability for each row of X (n, d), summed
 * in tree order (thread-independent). threads <= 0 uses OpenMP's default. Cannot fail.
 */
void rk_forest_predict_proba(const struct rk_forest * f, const float * X, int64_t n, float * proba, int threads);

void    rk_forest_free(struct rk_forest * f); /* NULL is fine */
int64_t rk_forest_n_labels(const struct rk_forest * f);   /* L; cannot fail */
int64_t rk_forest_n_features(const struct rk_forest * f); /* d; cannot fail */
/* Total number of tree nodes over all labels (a size measure; 0 for constant labels). Cannot fail. */
int64_t rk_forest_n_nodes(const struct rk_forest * f);

#ifdef __cplusplus
}
#endif
#endif
