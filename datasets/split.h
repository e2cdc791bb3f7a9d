/*
 * split.h: seeded multi-label splitting by iterative stratification, and the split file "ID,split".
 *
 * Iterative stratification follows Algorithm 1 of Sechidis, Tsoumakas and Vlahavas (2011), "On the
 * stratification of multi-label data" (ECML PKDD), the order-1 algorithm that scikit-multilearn's
 * IterativeStratification implements:
 *   - fold j wants c_j = r_j * n_docs documents in all, and c_j^l = r_j * |D^l| documents of label l;
 *   - repeatedly take the label l with the fewest (but at least one) unassigned documents, ties broken
 *     at random; give each unassigned document of l to the fold with the largest c_j^l, ties broken by
 *     the largest c_j, then at random; decrement c_j and c_j^λ for every label λ of the document;
 *   - documents with no label go to the fold with the largest remaining c_j (ties at random).
 * "At random" is a xoshiro256** stream seeded through splitmix64, so a seed gives the same split on every
 * platform. The seed also fixes the order in which a label's documents are handed out (a seeded
 * permutation of all documents), so different seeds give different splits, not only different tie-breaks.
 */
#ifndef RK_SPLIT_H
#define RK_SPLIT_H

#include "dataset.h"
#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fold numbers used by the split file. */
enum rk_split_fold {
    RK_SPLIT_TRAIN = 0,
    RK_SPLIT_VAL   = 1,
    RK_SPLIT_TEST  = 2,
    RK_SPLIT_COUNT
};

/* "train", "val", "test"; NULL for any other value. Cannot fail. */
const char * rk_split_name(int fold);

/*
 * Assigns each document to a fold 0..n_folds-1 by iterative stratification (see above). labels is
 * (n_docs, n_labels) 0/1 row-major; fractions is (n_folds), each >= 0, summing to 1 (within 1e-6), e.g.
 * {0.80, 0.05, 0.15} for train/val/test; fold_out is (n_docs), caller-owned. Deterministic for a seed.
 * Returns RK_STATUS_ARG for n_docs < 0, n_labels < 0, n_folds outside 1..255, bad fractions or a label
 * value other than 0/1; fold_out is then untouched.
 */
enum rk_status rk_split_iterative(const uint8_t * labels, int64_t n_docs, int64_t n_labels, const double * fractions,
                                  int n_folds, uint64_t seed, uint8_t * fold_out);

/*
 * Writes the split of d as a CSV with header "ID,split" and one row per document in d's order, the split
 * being train, val or test (fold 0, 1, 2). The file is written to "<path>.tmp.<pid>" and renamed over
 * path only when complete, so path is either the old file or the whole new one. Failures: RK_STATUS_ARG
 * for a fold value above 2, RK_STATUS_IO when writing or renaming fails; no temporary file is left.
 */
enum rk_status rk_split_write(const char * path, const struct rk_dataset * d, const uint8_t * fold);

/*
 * Reads a split file written by rk_split_write (or by hand: columns ID and split in any order and case,
 * gzip or plain) and checks it against d: every ID of d exactly once, no other ID. fold is (d->n_docs),
 * caller-owned, indexed like d. Failures (message names the file and line): RK_STATUS_IO, RK_STATUS_FORMAT
 * for CSV errors, a missing ID/split column, an unknown ID, an ID listed twice, a split value other than
 * train/val/test, or IDs of d that the file lacks (the first is named).
 */
enum rk_status rk_split_read(const char * path, const struct rk_dataset * d, uint8_t * fold);

/*
 * Writes into idx_out (may be NULL to only count) the indices i, ascending, with fold[i] == which, and
 * returns how many there are. Cannot fail.
 */
int64_t rk_split_indices(const uint8_t * fold, int64_t n, uint8_t which, int64_t * idx_out);

#ifdef __cplusplus
}
#endif
#endif
