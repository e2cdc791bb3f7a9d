/*
 * csv.c: streaming RFC 4180 reader (gzip or plain, through zlib) and a field writer. See csv.h for the
 * accepted syntax.
 *
 * The reader pulls 256 KiB chunks with gzread and runs a small state machine over the bytes. A record
 * is assembled in one growing buffer, each field followed by a NUL, so a row costs no allocation once
 * the buffers have grown to the widest record.
 */
#include "csv.h"
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define RK_CSV_CHUNK (256 * 1024)

/* byte codes returned by the input functions besides 0..255 */
#define CSV_EOF (-1)
#define CSV_ERR (-2)

struct rk_csv {
    gzFile          gz;
    char *          path;
    unsigned char * buf;        /* input chunk */
    size_t          buf_len;
    size_t          buf_pos;
    bool            at_eof;     /* gzread returned 0 */
    int64_t         line;       /* physical line of the next unread byte, 1-based */

    char *   rec;               /* current record: fields, each followed by '\0' */
    size_t   rec_len, rec_cap;
    size_t * starts;            /* (cap) field offsets into rec */
    size_t * lens;              /* (cap) field lengths */
    char **  ptrs;              /* (cap) field pointers, filled when the record is complete */
    int64_t  n, cap;            /* fields in the current record, capacity of the arrays */

    struct rk_csv_row row;
    struct rk_csv_row header;   /* its own copies of the header fields */
    char *            header_mem;
    char **           header_ptrs;
    size_t *          header_lens;

    enum rk_status err;         /* sticky error */
    char *         err_msg;
};

/* ---- input ------------------------------------------------------------------------------------ */

/* Refills the chunk; returns false at end of file or on a read error (c->err set). */
static bool csv_fill(struct rk_csv * c) {
    if (c->at_eof || c->err != RK_OK) return false;
    int got = gzread(c->gz, c->buf, RK_CSV_CHUNK);
    if (got < 0) {
        int          zerr = 0;
        const char * msg  = gzerror(c->gz, &zerr);
        c->err = rk_set_error(RK_STATUS_IO, "%s: read error near line %lld: %s", c->path, (long long) c->line,
                              zerr == Z_ERRNO ? strerror(errno) : msg);
        return false;
    }
    if (got == 0) {
        /* gzread returns 0 also for a gzip stream cut short; gzerror tells the two apart */
        int zerr = 0;
        const char * msg = gzerror(c->gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END) {
            c->err = rk_set_error(RK_STATUS_IO, "%s: read error near line %lld: %s", c->path, (long long) c->line,
                                  msg);
            return false;
        }
        c->at_eof = true;
        return false;
    }
    c->buf_len = (size_t) got;
    c->buf_pos = 0;
    return true;
}

static inline int csv_peek(struct rk_csv * c) {
    if (c->buf_pos == c->buf_len && !csv_fill(c)) return c->err != RK_OK ? CSV_ERR : CSV_EOF;
    return c->buf[c->buf_pos];
}

static inline int csv_get(struct rk_csv * c) {
    if (c->buf_pos == c->buf_len && !csv_fill(c)) return c->err != RK_OK ? CSV_ERR : CSV_EOF;
    return c->buf[c->buf_pos++];
}

/* ---- record assembly -------------------------------------------------------------------------- */

static inline void rec_put(struct rk_csv * c, char ch) {
    if (c->rec_len == c->rec_cap) {
        c->rec_cap = c->rec_cap ? 2 * c->rec_cap : 4096;
        c->rec     = rk_xrealloc(c->rec, c->rec_cap);
    }
    c->rec[c->rec_len++] = ch;
}

static void field_begin(struct rk_csv * c) {
    if (c->n == c->cap) {
        c->cap    = c->cap ? 2 * c->cap : 64;
        c->starts = rk_xrealloc(c->starts, (size_t) c->cap * sizeof(size_t));
        c->lens   = rk_xrealloc(c->lens, (size_t) c->cap * sizeof(size_t));
        c->ptrs   = rk_xrealloc(c->ptrs, (size_t) c->cap * sizeof(char *));
    }
    c->starts[c->n] = c->rec_len;
}

static void field_end(struct rk_csv * c) {
    c->lens[c->n] = c->rec_len - c->starts[c->n];
    rec_put(c, '\0');
    c->n++;
}

static enum rk_status csv_fail(struct rk_csv * c, enum rk_status s) {
    c->err = s;
    free(c->err_msg);
    c->err_msg = rk_xstrdup(rk_last_error());
    return s;
}

/*
 * Reads one record into c->rec / c->starts / c->lens. *got = false at end of file. Blank lines before
 * the record are skipped.
 */
static enum rk_status csv_read_record(struct rk_csv * c, bool * got, int64_t * rec_line) {
    *got       = false;
    c->rec_len = 0;
    c->n       = 0;

    /* skip blank lines */
    for (;;) {
        int ch = csv_peek(c);
        if (ch == '\n') {
            c->buf_pos++;
            c->line++;
        } else if (ch == '\r') {
            c->buf_pos++;
            if (csv_peek(c) == '\n') c->buf_pos++;
            c->line++;
        } else if (ch == CSV_EOF) {
            return RK_OK;
        } else if (ch == CSV_ERR) {
            return csv_fail(c, c->err);
        } else {
            break;
        }
    }
    *rec_line = c->line;

    for (;;) { /* one field per iteration */
        field_begin(c);
        int ch = csv_get(c);
        if (ch == '"') {
            int64_t quote_line = c->line;
            for (;;) {
                ch = csv_get(c);
                if (ch == CSV_ERR) return csv_fail(c, c->err);
                if (ch == CSV_EOF) {
                    return csv_fail(c, rk_set_error(RK_STATUS_FORMAT,
                                                    "%s: line %lld: unterminated quoted field (quote opened on "
                                                    "line %lld, field %lld)",
                                                    c->path, (long long) *rec_line, (long long) quote_line,
                                                    (long long) c->n + 1));
                }
                if (ch == '"') {
                    if (csv_peek(c) == '"') {
                        c->buf_pos++;
                        rec_put(c, '"');
                        continue;
                    }
                    break; /* closing quote */
                }
                if (ch == '\n') {
                    c->line++;
                } else if (ch == '\r' && csv_peek(c) != '\n') {
                    c->line++; /* a lone CR is a line break too */
                }
                rec_put(c, (char) ch);
            }
            ch = csv_get(c);
            if (ch != ',' && ch != '\n' && ch != '\r' && ch != CSV_EOF) {
                if (ch == CSV_ERR) return csv_fail(c, c->err);
                char shown[8];
                if (ch >= 0x20 && ch < 0x7f) {
                    snprintf(shown, sizeof(shown), "'%c'", ch);
                } else {
                    snprintf(shown, sizeof(shown), "0x%02x", ch);
                }
                return csv_fail(c, rk_set_error(RK_STATUS_FORMAT,
                                                "%s: line %lld: unexpected character %s after the closing quote "
                                                "of field %lld (a quote inside a quoted field must be doubled)",
                                                c->path, (long long) c->line, shown, (long long) c->n + 1));
            }
        } else {
            while (ch != ',' && ch != '\n' && ch != '\r' && ch >= 0) {
                rec_put(c, (char) ch);
                ch = csv_get(c);
            }
            if (ch == CSV_ERR) return csv_fail(c, c->err);
        }
        field_end(c);
        if (ch == ',') continue;
        /* end of record */
        if (ch == '\r' && csv_peek(c) == '\n') c->buf_pos++;
        if (ch != CSV_EOF) c->line++;
        if (c->err != RK_OK) return csv_fail(c, c->err);
        *got = true;
        return RK_OK;
    }
}

static void csv_finish_row(struct rk_csv * c, int64_t line) {
    for (int64_t i = 0; i < c->n; i++) c->ptrs[i] = c->rec + c->starts[i];
    c->row.n_fields = c->n;
    c->row.fields   = c->ptrs;
    c->row.lens     = c->lens;
    c->row.line     = line;
}

/* ---- public API ------------------------------------------------------------------------------- */

enum rk_status rk_csv_open(const char * path, struct rk_csv ** out) {
    *out = NULL;
    if (!path || !*path) return rk_set_error(RK_STATUS_ARG, "rk_csv_open: empty path");
    errno    = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        return rk_set_error(RK_STATUS_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    }
    gzbuffer(gz, RK_CSV_CHUNK);

    struct rk_csv * c = rk_xcalloc(1, sizeof(*c));
    c->gz   = gz;
    c->path = rk_xstrdup(path);
    c->buf  = rk_xmalloc(RK_CSV_CHUNK);
    c->line = 1;

    /* skip a UTF-8 byte order mark */
    if (csv_peek(c) == 0xef) {
        static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
        /* the first chunk holds at least 3 bytes unless the file is shorter than that */
        if (c->buf_len - c->buf_pos >= 3 && memcmp(c->buf + c->buf_pos, bom, 3) == 0) c->buf_pos += 3;
    }
    if (c->err != RK_OK) {
        enum rk_status s = c->err;
        rk_csv_close(c);
        return s;
    }

    bool           got  = false;
    int64_t        line = 0;
    enum rk_status s    = csv_read_record(c, &got, &line);
    if (s == RK_OK && !got) s = rk_set_error(RK_STATUS_FORMAT, "%s: empty file (no header)", path);
    if (s != RK_OK) {
        rk_csv_close(c);
        return s;
    }

    /* keep a private copy of the header */
    c->header_mem  = rk_xmalloc(c->rec_len);
    c->header_ptrs = rk_xmalloc((size_t) c->n * sizeof(char *));
    c->header_lens = rk_xmalloc((size_t) c->n * sizeof(size_t));
    memcpy(c->header_mem, c->rec, c->rec_len);
    for (int64_t i = 0; i < c->n; i++) {
        c->header_ptrs[i] = c->header_mem + c->starts[i];
        c->header_lens[i] = c->lens[i];
    }
    c->header.n_fields = c->n;
    c->header.fields   = c->header_ptrs;
    c->header.lens     = c->header_lens;
    c->header.line     = line;
    *out = c;
    return RK_OK;
}

const struct rk_csv_row * rk_csv_header(const struct rk_csv * c) { return &c->header; }

const char * rk_csv_path(const struct rk_csv * c) { return c->path; }

enum rk_status rk_csv_next(struct rk_csv * c, const struct rk_csv_row ** row) {
    *row = NULL;
    if (c->err != RK_OK) return rk_set_error(c->err, "%s", c->err_msg ? c->err_msg : "csv reader failed");
    bool    got  = false;
    int64_t line = 0;
    RK_TRY(csv_read_record(c, &got, &line));
    if (!got) return RK_OK;
    if (c->n != c->header.n_fields) {
        return csv_fail(c, rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: row has %lld fields, header has %lld",
                                        c->path, (long long) line, (long long) c->n,
                                        (long long) c->header.n_fields));
    }
    csv_finish_row(c, line);
    *row = &c->row;
    return RK_OK;
}

void rk_csv_close(struct rk_csv * c) {
    if (!c) return;
    if (c->gz) gzclose(c->gz);
    free(c->path);
    free(c->buf);
    free(c->rec);
    free(c->starts);
    free(c->lens);
    free(c->ptrs);
    free(c->header_mem);
    free(c->header_ptrs);
    free(c->header_lens);
    free(c->err_msg);
    free(c);
}

int64_t rk_csv_find_column(const struct rk_csv_row * header, const char * name) {
    for (int64_t i = 0; i < header->n_fields; i++) {
        if (strcmp(header->fields[i], name) == 0) return i;
    }
    for (int64_t i = 0; i < header->n_fields; i++) {
        if (strcasecmp(header->fields[i], name) == 0) return i;
    }
    return -1;
}

int rk_csv_write_field(FILE * f, const char * s) {
    if (strpbrk(s, ",\"\r\n") == NULL) return fputs(s, f) < 0 ? -1 : 0;
    if (fputc('"', f) == EOF) return -1;
    for (const char * p = s; *p; p++) {
        if (*p == '"' && fputc('"', f) == EOF) return -1;
        if (fputc(*p, f) == EOF) return -1;
    }
    return fputc('"', f) == EOF ? -1 : 0;
}
