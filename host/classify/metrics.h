/*
 * metrics.h: multi-label classification metrics with scikit-learn semantics (zero_division=0).
 *
 * Y and Yhat are (n, L) uint8 row-major, 0/1 (any non-zero byte counts as 1). For each label l:
 *   tp = #{i : Y=1, Yhat=1}, fp = #{i : Y=0, Yhat=1}, fn = #{i : Y=1, Yhat=0}, support = tp + fn
 *   precision = tp / (tp + fp), recall = tp / (tp + fn), f1 = 2 tp / (2 tp + fp + fn)
 * and a zero denominator gives 0, as sklearn.metrics.precision_recall_fscore_support(zero_division=0) does.
 * A label that is never true and never predicted therefore scores f1 = 0 and still counts in the macro means
 * (sklearn's macro average is the plain mean over all L labels; only zero_division=np.nan drops labels).
 * micro_* divide the summed counts; subset_accuracy is sklearn accuracy_score (exact row match);
 * hamming_loss is the fraction of wrong (sample, label) cells.
 */
#ifndef RK_CLASSIFY_METRICS_H
#define RK_CLASSIFY_METRICS_H

#include "rk.h"

#include <cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rk_label_scores {
    double  precision, recall, f1;
    int64_t support;   /* number of true positives in Y: tp + fn */
    int64_t tp, fp, fn;
};

struct rk_metrics {
    double  micro_f1, macro_f1;
    double  micro_precision, micro_recall;
    double  macro_precision, macro_recall;
    double  subset_accuracy;  /* fraction of rows predicted exactly */
    double  hamming_loss;     /* fraction of wrong cells */
    int64_t n, L;
    struct rk_label_scores * per_label;  /* (L), owned by the struct, freed by rk_metrics_free */
};

/*
 * Fills *out (caller-owned struct; per_label is allocated here). n >= 1 and L >= 1, else RK_STATUS_ARG with
 * the error set and *out zeroed. On success the caller releases per_label with rk_metrics_free.
 */
enum rk_status rk_metrics_compute(const uint8_t * Y, const uint8_t * Yhat, int64_t n, int64_t L,
                                  struct rk_metrics * out);

/* Frees per_label and zeroes the struct; NULL or a zeroed struct is fine. Cannot fail. */
void rk_metrics_free(struct rk_metrics * m);

/*
 * A cJSON object with every field: {"n", "L", "micro_f1", ..., "per_label": [{"label", "precision", "recall",
 * "f1", "support", "tp", "fp", "fn"}, ...]}. label_names is (L) strings or NULL (then "label" is the index).
 * The caller owns the result (cJSON_Delete). Returns NULL only if cJSON runs out of memory.
 */
cJSON * rk_metrics_to_json(const struct rk_metrics * m, char ** label_names);

#ifdef __cplusplus
}
#endif
#endif
