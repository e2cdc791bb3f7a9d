/*
 * cli.h: what every technique driver shares: numeric flag parsing, the data/split setup, atomic output files
 * and the results table. Drivers stay thin (STYLE.md 1.8); nothing here does math.
 */
#ifndef RK_CLI_H
#define RK_CLI_H

#include "classify/metrics.h"
#include "rk.h"

#include <cJSON.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rk_dataset;

/* Parses a whole-string integer in [lo, hi] for flag; RK_STATUS_ARG "--flag: 'x' is not an integer in [lo, hi]". */
enum rk_status rk_cli_int(const char * flag, const char * s, int64_t lo, int64_t hi, int64_t * out);
/* Parses "A,B,C" (train/val/test fractions, each in [0, 1], summing to 1 within 1e-6) into out[3]. */
enum rk_status rk_cli_fractions(const char * flag, const char * s, double out[3]);
/* Parses a whole-string double in [lo, hi]. */
enum rk_status rk_cli_double(const char * flag, const char * s, double lo, double hi, double * out);

/*
 * Writes text to path through "<path>.tmp.<pid>" + rename, so path is either untouched or complete.
 * RK_STATUS_IO naming the path on failure; no temporary file is left behind.
 */
enum rk_status rk_write_file_atomic(const char * path, const char * text);
/* Prints json (indented) to path atomically. */
enum rk_status rk_write_json_atomic(const char * path, const cJSON * json);

/*
 * The data split every technique shares: loads the split file at split_path when it exists (checked against d),
 * else computes a seeded iterative stratification with fractions (train, val, test) and writes it there
 * (creating the parent folder). fold is (d->n_docs), caller memory. *created tells which happened.
 */
enum rk_status rk_cli_split(const struct rk_dataset * d, const char * split_path, const double fractions[3],
                            uint64_t seed, uint8_t * fold, bool * created);

/* Default split path for a data file: "splits/<folder>-<name without .csv/.gz>.seed<seed>.csv" (the folder part is
 * left out for files in the current folder). buf of n bytes. */
void rk_cli_default_split_path(const char * data_path, uint64_t seed, char * buf, size_t n);

/*
 * The data every technique starts from: --data (and --test, checked to have the same labels) loaded with spec,
 * then the shared split (rk_cli_split at split_path or the default path for the seed). Call rk_cli_data_load first
 * (reads only), rk_cli_data_split once every other input has been read (it may write the split file).
 */
struct rk_cli_data {
    struct rk_dataset * data;
    struct rk_dataset * test;            /* --test, or NULL */
    uint8_t *           fold;            /* (data->n_docs) train/val/test */
    char                split_path[4096];
    bool                split_created;
};
enum rk_status rk_cli_data_load(struct rk_cli_data * d, const char * data_path, const char * test_path,
                                const void * spec /* const struct rk_dataset_spec * */);
enum rk_status rk_cli_data_split(struct rk_cli_data * d, const char * data_path, const char * split_opt,
                                 uint64_t seed, const double fractions[3]);
/* Indices of fold `which` of d->data (malloc'd, *n set), or of every row of d->test when which is the test fold
 * and d->test is set. */
int64_t * rk_cli_data_indices(const struct rk_cli_data * d, int which, int64_t * n);
/* The dataset rows of fold `which` come from: d->test for the test fold when given, else d->data. */
const struct rk_dataset * rk_cli_data_source(const struct rk_cli_data * d, int which);
void rk_cli_data_free(struct rk_cli_data * d);

/* Prints the metrics as a table: summary lines, then one row per label (name, support, P, R, F1). */
void rk_print_metrics(FILE * f, const struct rk_metrics * m, char ** label_names);

#ifdef __cplusplus
}
#endif
#endif
