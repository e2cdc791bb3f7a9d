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

/* Prints the metrics as a table: summary lines, then one row per label (name, support, P, R, F1). */
void rk_print_metrics(FILE * f, const struct rk_metrics * m, char ** label_names);

#ifdef __cplusplus
}
#endif
#endif
