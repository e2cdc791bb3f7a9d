/*
 * dataset.h: a multi-label text classification data set loaded from a CSV (gzip or plain) with a
 * header row: an optional ID column, one or more text columns rendered through a template, and 0/1
 * label columns.
 *
 * Auto schema (every field of rk_dataset_spec NULL):
 *   - ID column: the column named "ID" (any case) when present; otherwise the IDs are the 1-based row
 *     numbers ("1", "2", ...).
 *   - text columns: the columns named TITLE, BODY, ABSTRACT or TEXT (any case) that are present, in file
 *     order; when none is present, every non-ID column before the label columns, which are then the
 *     longest run of trailing columns holding only "0"/"1" (at least one text column is kept).
 *   - label columns: every non-ID column after the last text column.
 *   - template: one "<Name>: {COLUMN}" line per text column, joined by "\n", the name title-cased
 *     ("TITLE" -> "Title", "paper_text" -> "Paper Text"). Reuters: "Title: {TITLE}\nBody: {BODY}";
 *     arXiv: "Title: {TITLE}\nAbstract: {ABSTRACT}".
 * Columns that are neither ID, text nor label are ignored.
 *
 * Templates: "{NAME}" is replaced by the field of column NAME (exact name first, else any case); "{{"
 * and "}}" stand for literal braces; the two-character escapes "\n", "\t" and "\\" become a newline,
 * a tab and a backslash, so a template can be passed on a command line. Substitution is purely textual:
 * an empty field (Reuters BRIEF documents have an empty BODY) renders as an empty value and the line
 * stays, e.g. "Title: X\nBody: ", so every document has the same line structure.
 *
 * Label values must be exactly "0" or "1". IDs must be unique within a file.
 */
#ifndef RK_DATASET_H
#define RK_DATASET_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_dataset {
    int64_t   n_docs;      /* rows in the file */
    int64_t   n_labels;    /* label columns */
    char **   ids;         /* (n_docs) the ID column value, or the 1-based row number when there is none */
    char **   texts;       /* (n_docs) text rendered from the template */
    char **   label_names; /* (n_labels) label column names, in file order */
    uint8_t * labels;      /* (n_docs, n_labels) 0/1, row-major */
    char *    path;        /* the file it was loaded from */
    int64_t * lines;       /* (n_docs) physical line where each row starts, for messages */
    int64_t * id_order;    /* (n_docs) doc indices sorted by strcmp of ids, for rk_dataset_find_id */
};

struct rk_dataset_spec {       /* every field optional: NULL means auto (see the header comment) */
    const char * text_columns;  /* comma list, e.g. "TITLE,BODY" (spaces around names are trimmed) */
    const char * label_columns; /* comma list, or NULL = every non-ID column after the text columns */
    const char * template_;     /* e.g. "Title: {TITLE}\nBody: {BODY}" */
    const char * id_column;     /* default "ID" when present */
};

/*
 * Loads path (gzip or plain CSV). spec may be NULL (auto schema). On success *out is a data set the caller
 * frees with rk_dataset_free. On failure *out is NULL and the message names the file and, where there is
 * one, the line:
 *   RK_STATUS_IO      missing or unreadable file;
 *   RK_STATUS_FORMAT  CSV syntax, wrong field count, a label value other than 0/1
 *                     ("path: line 12: column 'Physics': label value '2' is not 0 or 1"), a duplicate ID,
 *                     no data rows, no text or no label column found by the auto schema;
 *   RK_STATUS_ARG     a column named in spec (or in the template) that the header lacks, a column named
 *                     twice, or a malformed template.
 */
enum rk_status rk_dataset_load(const char * path, const struct rk_dataset_spec * spec, struct rk_dataset ** out);

/* Frees everything the data set owns. NULL is fine. */
void rk_dataset_free(struct rk_dataset * d);

/*
 * Checks that b (e.g. a --test file) has the same label names, in the same order, as a. Returns RK_OK, or
 * RK_STATUS_FORMAT naming both files and the first difference. Does not modify either.
 */
enum rk_status rk_dataset_check_compatible(const struct rk_dataset * a, const struct rk_dataset * b);

/* Index of the document whose ID is id, or -1. O(log n_docs). Cannot fail. */
int64_t rk_dataset_find_id(const struct rk_dataset * d, const char * id);

/* Number of documents carrying label j. Cannot fail. */
int64_t rk_dataset_label_count(const struct rk_dataset * d, int64_t j);

#ifdef __cplusplus
}
#endif
#endif
