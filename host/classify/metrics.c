/*
 * metrics.c: multi-label precision / recall / F1 (micro and macro), subset accuracy and Hamming loss,
 * matching sklearn.metrics with zero_division=0 (see metrics.h), and their JSON form.
 */
#include "classify/metrics.h"
#include "check.h"

#include <string.h>

/* sklearn _prf_divide with zero_division=0: a zero denominator gives 0. */
static double prf_divide(double num, double den) { return den == 0.0 ? 0.0 : num / den; }

enum rk_status rk_metrics_compute(const uint8_t * Y, const uint8_t * Yhat, int64_t n, int64_t L,
                                  struct rk_metrics * out) {
    memset(out, 0, sizeof(*out));
    if (!Y || !Yhat || n < 1 || L < 1) {
        return rk_set_error(RK_STATUS_ARG, "rk_metrics_compute: need Y, Yhat and n >= 1, L >= 1 (n=%lld L=%lld)",
                            (long long) n, (long long) L);
    }
    struct rk_label_scores * s = rk_xcalloc((size_t) L, sizeof(*s));
    int64_t n_exact = 0, n_wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t * y = Y + i * L;
        const uint8_t * p = Yhat + i * L;
        int64_t wrong = 0;
        for (int64_t l = 0; l < L; l++) {
            int t = y[l] != 0, q = p[l] != 0;
            s[l].tp += t & q;
            s[l].fp += (1 - t) & q;
            s[l].fn += t & (1 - q);
            wrong += t != q;
        }
        n_wrong += wrong;
        n_exact += wrong == 0;
    }
    int64_t tp = 0, fp = 0, fn = 0;
    double sum_p = 0.0, sum_r = 0.0, sum_f = 0.0;
    for (int64_t l = 0; l < L; l++) {
        s[l].support   = s[l].tp + s[l].fn;
        s[l].precision = prf_divide((double) s[l].tp, (double) (s[l].tp + s[l].fp));
        s[l].recall    = prf_divide((double) s[l].tp, (double) (s[l].tp + s[l].fn));
        /* sklearn: (1 + beta^2) tp / (beta^2 (tp + fn) + (tp + fp)) with beta = 1 */
        s[l].f1 = prf_divide(2.0 * (double) s[l].tp, (double) (s[l].tp + s[l].fn) + (double) (s[l].tp + s[l].fp));
        tp += s[l].tp;
        fp += s[l].fp;
        fn += s[l].fn;
        sum_p += s[l].precision;
        sum_r += s[l].recall;
        sum_f += s[l].f1;
    }
    out->n               = n;
    out->L               = L;
    out->per_label       = s;
    out->micro_precision = prf_divide((double) tp, (double) (tp + fp));
    out->micro_recall    = prf_divide((double) tp, (double) (tp + fn));
    out->micro_f1        = prf_divide(2.0 * (double) tp, (double) (tp + fn) + (double) (tp + fp));
    out->macro_precision = sum_p / (double) L;
    out->macro_recall    = sum_r / (double) L;
    out->macro_f1        = sum_f / (double) L;
    out->subset_accuracy = (double) n_exact / (double) n;
    out->hamming_loss    = (double) n_wrong / ((double) n * (double) L);
    return RK_OK;
}

void rk_metrics_free(struct rk_metrics * m) {
    if (!m) return;
    free(m->per_label);
    memset(m, 0, sizeof(*m));
}

cJSON * rk_metrics_to_json(const struct rk_metrics * m, char ** label_names) {
    cJSON * o = cJSON_CreateObject();
    if (!o) return NULL;
    bool ok = cJSON_AddNumberToObject(o, "n", (double) m->n) && cJSON_AddNumberToObject(o, "L", (double) m->L) &&
              cJSON_AddNumberToObject(o, "micro_f1", m->micro_f1) &&
              cJSON_AddNumberToObject(o, "macro_f1", m->macro_f1) &&
              cJSON_AddNumberToObject(o, "micro_precision", m->micro_precision) &&
              cJSON_AddNumberToObject(o, "micro_recall", m->micro_recall) &&
              cJSON_AddNumberToObject(o, "macro_precision", m->macro_precision) &&
              cJSON_AddNumberToObject(o, "macro_recall", m->macro_recall) &&
              cJSON_AddNumberToObject(o, "subset_accuracy", m->subset_accuracy) &&
              cJSON_AddNumberToObject(o, "hamming_loss", m->hamming_loss);
    cJSON * arr = ok ? cJSON_AddArrayToObject(o, "per_label") : NULL;
    for (int64_t l = 0; arr && l < m->L; l++) {
        const struct rk_label_scores * s = &m->per_label[l];
        cJSON *                        e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            arr = NULL;
            break;
        }
        bool named = label_names && label_names[l];
        ok = (named ? cJSON_AddStringToObject(e, "label", label_names[l]) != NULL
                    : cJSON_AddNumberToObject(e, "label", (double) l) != NULL) &&
             cJSON_AddNumberToObject(e, "precision", s->precision) &&
             cJSON_AddNumberToObject(e, "recall", s->recall) && cJSON_AddNumberToObject(e, "f1", s->f1) &&
             cJSON_AddNumberToObject(e, "support", (double) s->support) &&
             cJSON_AddNumberToObject(e, "tp", (double) s->tp) && cJSON_AddNumberToObject(e, "fp", (double) s->fp) &&
             cJSON_AddNumberToObject(e, "fn", (double) s->fn);
        if (!ok) arr = NULL;
    }
    if (!arr) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
