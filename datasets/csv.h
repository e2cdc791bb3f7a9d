/*
 * csv.h: a streaming RFC 4180 CSV reader over gzip or plain files.
 *
 * The file is read through zlib (gzopen/gzread), which reads gzip-compressed and plain files alike.
 * The first record is the header; rk_csv_open reads it, and every later record must have the same
 * number of fields (RK_STATUS_FORMAT otherwise, naming the line).
 *
 * Accepted syntax:
 *   - fields separated by ',', records ended by LF, CRLF or a lone CR; the last record may lack an ending;
 *   - a field that starts with '"' is quoted: it may hold commas, line breaks (kept as they are in the
 *     file) and doubled quotes ("" stands for one "); after the closing quote only ',', a line ending
 *     or the end of the file may follow;
 *   - a '"' in the middle of an unquoted field is kept literally (as Python's csv module does);
 *   - a UTF-8 byte order mark at the start of the file is skipped;
 *   - lines that are completely empty (outside a quoted field) are skipped.
 * Line numbers are physical lines of the file, counted from 1 (the header is line 1); a record's line is
 * the line where it starts.
 */
#ifndef RK_CSV_H
#define RK_CSV_H

#include "rk.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rk_csv; /* opaque reader */

/* One record. The strings are NUL-terminated and owned by the reader: valid until the next
 * rk_csv_next or rk_csv_close. A field may itself contain NUL bytes; lens gives the true length. */
struct rk_csv_row {
    int64_t        n_fields;  /* equals the header's field count */
    char * const * fields;    /* (n_fields) */
    const size_t * lens;      /* (n_fields) byte lengths */
    int64_t        line;      /* physical line where the record starts, 1-based */
};

/*
 * Opens path (gzip or plain) and reads its header. On success *out is a reader the caller closes with
 * rk_csv_close. Failures: RK_STATUS_IO (cannot open or read, message names the path and the reason),
 * RK_STATUS_FORMAT ("path: empty file (no header)", or a malformed header naming its line).
 * *out is NULL on failure.
 */
enum rk_status rk_csv_open(const char * path, struct rk_csv ** out);

/* The header record (owned by the reader, valid until rk_csv_close). Cannot fail. */
const struct rk_csv_row * rk_csv_header(const struct rk_csv * c);

/* Path as given to rk_csv_open (owned by the reader). Cannot fail. */
const char * rk_csv_path(const struct rk_csv * c);

/*
 * Reads the next record into *row (owned by the reader, valid until the next call). At end of file
 * returns RK_OK with *row = NULL. Failures (*row = NULL, the reader stays in an error state and later
 * calls repeat the status): RK_STATUS_FORMAT "path: line 17: row has 5 fields, header has 96",
 * "path: line 9: unterminated quoted field (quote opened on line 9)", "path: line 4: unexpected
 * character 'x' after closing quote"; RK_STATUS_IO for a read error (e.g. a truncated gzip stream).
 */
enum rk_status rk_csv_next(struct rk_csv * c, const struct rk_csv_row ** row);

/* Closes the reader and frees everything it owns. NULL is fine. */
void rk_csv_close(struct rk_csv * c);

/* Index of the header column called name: an exact match first, else a case-insensitive one
 * (ASCII). Returns -1 when absent. Cannot fail. */
int64_t rk_csv_find_column(const struct rk_csv_row * header, const char * name);

/*
 * Writes s to f as one CSV field, quoted (inner quotes doubled) when it holds ',', '"', CR or LF.
 * Returns 0 on success, -1 when the write failed (errno is set).
 */
int rk_csv_write_field(FILE * f, const char * s);

#ifdef __cplusplus
}
#endif
#endif
