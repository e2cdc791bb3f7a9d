/*
 * dataset.c: loads a multi-label CSV into a struct rk_dataset (schema rules in dataset.h).
 *
 * Loading runs in three steps: (1) every record is read into one byte arena (the whole table, so that
 * the auto schema can look at the values when the header alone does not tell the label columns apart),
 * (2) the ID, text and label columns are resolved, (3) IDs, rendered texts and the 0/1 label matrix are
 * built and validated, and the IDs are sorted for lookup and the duplicate check.
 */
#include "dataset.h"
#include "check.h"
#include "csv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the raw table ---------------------------------------------------------------------------- */

struct table {
    int64_t   n_rows, n_cols;
    char *    mem;        /* every field, NUL-terminated, back to back */
    size_t    mem_len, mem_cap;
    size_t *  off;        /* (n_rows, n_cols) field offsets into mem */
    int64_t * lines;      /* (n_rows) */
    int64_t   rows_cap;
};

static const char * table_get(const struct table * t, int64_t r, int64_t c) {
    return t->mem + t->off[r * t->n_cols + c];
}

static void table_free(struct table * t) {
    free(t->mem);
    free(t->off);
    free(t->lines);
}

static enum rk_status table_read(struct rk_csv * csv, struct table * t) {
    t->n_cols = rk_csv_header(csv)->n_fields;
    for (;;) {
        const struct rk_csv_row * row = NULL;
        RK_TRY(rk_csv_next(csv, &row));
        if (!row) return RK_OK;
        if (t->n_rows == t->rows_cap) {
            t->rows_cap = t->rows_cap ? 2 * t->rows_cap : 1024;
            t->off      = rk_xrealloc(t->off, (size_t) (t->rows_cap * t->n_cols) * sizeof(size_t));
            t->lines    = rk_xrealloc(t->lines, (size_t) t->rows_cap * sizeof(int64_t));
        }
        size_t need = 0;
        for (int64_t i = 0; i < row->n_fields; i++) need += row->lens[i] + 1;
        if (t->mem_len + need > t->mem_cap) {
            while (t->mem_len + need > t->mem_cap) t->mem_cap = t->mem_cap ? 2 * t->mem_cap : (1u << 20);
            t->mem = rk_xrealloc(t->mem, t->mem_cap);
        }
        for (int64_t i = 0; i < row->n_fields; i++) {
            t->off[t->n_rows * t->n_cols + i] = t->mem_len;
            memcpy(t->mem + t->mem_len, row->fields[i], row->lens[i] + 1);
            t->mem_len += row->lens[i] + 1;
        }
        t->lines[t->n_rows] = row->line;
        t->n_rows++;
    }
}

/* ---- column lists ----------------------------------------------------------------------------- */

struct col_list {
    int64_t   n;
    int64_t * idx; /* header column indices */
};

static bool is_known_text_name(const char * s) {
    static const char * const known[] = {"TITLE", "BODY", "ABSTRACT", "TEXT"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcasecmp(s, known[i]) == 0) return true;
    }
    return false;
}

static bool col_list_has(const struct col_list * l, int64_t c) {
    for (int64_t i = 0; i < l->n; i++) {
        if (l->idx[i] == c) return true;
    }
    return false;
}

static void col_list_push(struct col_list * l, int64_t c) {
    l->idx        = rk_xrealloc(l->idx, (size_t) (l->n + 1) * sizeof(int64_t));
    l->idx[l->n++] = c;
}

/* Parses a comma list of column names ("TITLE, BODY") against the header. `what` names the spec field. */
static enum rk_status col_list_parse(const char * path, const struct rk_csv_row * header, const char * list,
                                     const char * what, struct col_list * out) {
    const char * p = list;
    for (;;) {
        const char * end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char * a = p;
        const char * b = end;
        while (a < b && isspace((unsigned char) *a)) a++;
        while (b > a && isspace((unsigned char) b[-1])) b--;
        if (a == b) return rk_set_error(RK_STATUS_ARG, "%s: %s '%s' has an empty column name", path, what, list);
        char * name = rk_xmalloc((size_t) (b - a) + 1);
        memcpy(name, a, (size_t) (b - a));
        name[b - a] = '\0';
        int64_t c = rk_csv_find_column(header, name);
        if (c < 0) {
            enum rk_status s = rk_set_error(RK_STATUS_ARG, "%s: line %lld: the header has no column '%s' (named in %s)",
                                            path, (long long) header->line, name, what);
            free(name);
            return s;
        }
        if (col_list_has(out, c)) {
            enum rk_status s = rk_set_error(RK_STATUS_ARG, "%s: column '%s' is named twice in %s", path, name, what);
            free(name);
            return s;
        }
        free(name);
        col_list_push(out, c);
        if (!*end) return RK_OK;
        p = end + 1;
    }
}

static bool is_label_value(const char * s) { return (s[0] == '0' || s[0] == '1') && s[1] == '\0'; }

/* ---- templates -------------------------------------------------------------------------------- */

/* A compiled template: literal pieces interleaved with column references. */
struct tmpl_part {
    char *  lit;     /* literal text (NULL for a column part) */
    size_t  lit_len;
    int64_t col;     /* header column for a column part, -1 for a literal */
};

struct tmpl {
    int64_t            n;
    struct tmpl_part * parts;
};

static void tmpl_free(struct tmpl * t) {
    for (int64_t i = 0; i < t->n; i++) free(t->parts[i].lit);
    free(t->parts);
}

static void tmpl_push(struct tmpl * t, char * lit, size_t lit_len, int64_t col) {
    t->parts                = rk_xrealloc(t->parts, (size_t) (t->n + 1) * sizeof(struct tmpl_part));
    t->parts[t->n].lit      = lit;
    t->parts[t->n].lit_len  = lit_len;
    t->parts[t->n].col      = col;
    t->n++;
}

static enum rk_status tmpl_compile(const char * path, const struct rk_csv_row * header, const char * src,
                                   struct tmpl * out) {
    size_t n   = strlen(src);
    char * lit = rk_xmalloc(n + 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '\\' && i + 1 < n && (src[i + 1] == 'n' || src[i + 1] == 't' || src[i + 1] == '\\')) {
            lit[len++] = src[i + 1] == 'n' ? '\n' : src[i + 1] == 't' ? '\t' : '\\';
            i++;
        } else if ((ch == '{' || ch == '}') && i + 1 < n && src[i + 1] == ch) {
            lit[len++] = ch;
            i++;
        } else if (ch == '}') {
            free(lit);
            return rk_set_error(RK_STATUS_ARG, "%s: template '%s': unmatched '}' at offset %zu (write '}}' for a "
                                "literal brace)", path, src, i);
        } else if (ch == '{') {
            const char * close = strchr(src + i + 1, '}');
            if (!close) {
                free(lit);
                return rk_set_error(RK_STATUS_ARG, "%s: template '%s': unclosed '{' at offset %zu", path, src, i);
            }
            size_t name_len = (size_t) (close - (src + i + 1));
            char * name     = rk_xmalloc(name_len + 1);
            memcpy(name, src + i + 1, name_len);
            name[name_len] = '\0';
            int64_t c = rk_csv_find_column(header, name);
            if (c < 0) {
                enum rk_status s = rk_set_error(RK_STATUS_ARG, "%s: line %lld: the header has no column '%s' "
                                                "(named in the template)", path, (long long) header->line, name);
                free(name);
                free(lit);
                return s;
            }
            free(name);
            if (len > 0) {
                tmpl_push(out, lit, len, -1);
                lit = rk_xmalloc(n + 1);
                len = 0;
            }
            tmpl_push(out, NULL, 0, c);
            i = (size_t) (close - src);
        } else {
            lit[len++] = ch;
        }
    }
    if (len > 0) {
        tmpl_push(out, lit, len, -1);
    } else {
        free(lit);
    }
    return RK_OK;
}

/* Appends "Title Cased Name" of a column header to buf (words split at '_' and ' '). */
static size_t title_case(char * dst, const char * name) {
    size_t len        = 0;
    bool   word_start = true;
    for (const char * p = name; *p; p++) {
        char ch = *p == '_' ? ' ' : *p;
        if (ch == ' ') {
            dst[len++] = ' ';
            word_start = true;
            continue;
        }
        dst[len++] = (char) (word_start ? toupper((unsigned char) ch) : tolower((unsigned char) ch));
        word_start = false;
    }
    return len;
}

/* Builds the default template source "<Name>: {COLUMN}\n..." (caller frees). Braces in a column name
 * would not survive the round trip, but such a name could not be used in a template either. */
static char * tmpl_default(const struct rk_csv_row * header, const struct col_list * text) {
    size_t cap = 1;
    for (int64_t i = 0; i < text->n; i++) cap += 2 * header->lens[text->idx[i]] + 8;
    char * s   = rk_xmalloc(cap);
    size_t len = 0;
    for (int64_t i = 0; i < text->n; i++) {
        const char * name = header->fields[text->idx[i]];
        if (i > 0) s[len++] = '\n';
        len += title_case(s + len, name);
        s[len++] = ':';
        s[len++] = ' ';
        s[len++] = '{';
        memcpy(s + len, name, header->lens[text->idx[i]]);
        len += header->lens[text->idx[i]];
        s[len++] = '}';
    }
    s[len] = '\0';
    return s;
}

static char * tmpl_render(const struct tmpl * t, const struct table * tab, int64_t r) {
    size_t n = 1;
    for (int64_t i = 0; i < t->n; i++) {
        n += t->parts[i].col >= 0 ? strlen(table_get(tab, r, t->parts[i].col)) : t->parts[i].lit_len;
    }
    char * s   = rk_xmalloc(n);
    size_t len = 0;
    for (int64_t i = 0; i < t->n; i++) {
        if (t->parts[i].col >= 0) {
            const char * v = table_get(tab, r, t->parts[i].col);
            size_t       k = strlen(v);
            memcpy(s + len, v, k);
            len += k;
        } else {
            memcpy(s + len, t->parts[i].lit, t->parts[i].lit_len);
            len += t->parts[i].lit_len;
        }
    }
    s[len] = '\0';
    return s;
}

/* ---- schema ----------------------------------------------------------------------------------- */

/* Resolves the ID column (-1 = none), text columns and label columns. */
static enum rk_status resolve_schema(const char * path, const struct rk_csv_row * header, const struct table * tab,
                                     const struct rk_dataset_spec * spec, int64_t * id_col, struct col_list * text,
                                     struct col_list * labels) {
    int64_t n_cols = header->n_fields;

    /* ID */
    *id_col = -1;
    if (spec->id_column) {
        *id_col = rk_csv_find_column(header, spec->id_column);
        if (*id_col < 0) {
            return rk_set_error(RK_STATUS_ARG, "%s: line %lld: the header has no column '%s' (named as the ID column)",
                                path, (long long) header->line, spec->id_column);
        }
    } else {
        for (int64_t c = 0; c < n_cols; c++) {
            if (strcasecmp(header->fields[c], "ID") == 0) {
                *id_col = c;
                break;
            }
        }
    }

    if (spec->label_columns) RK_TRY(col_list_parse(path, header, spec->label_columns, "label_columns", labels));
    if (spec->text_columns) RK_TRY(col_list_parse(path, header, spec->text_columns, "text_columns", text));

    /* text columns */
    if (!spec->text_columns) {
        for (int64_t c = 0; c < n_cols; c++) {
            if (c != *id_col && !col_list_has(labels, c) && is_known_text_name(header->fields[c])) {
                col_list_push(text, c);
            }
        }
        if (text->n == 0 && spec->label_columns) {
            for (int64_t c = 0; c < n_cols; c++) {
                if (c != *id_col && !col_list_has(labels, c)) col_list_push(text, c);
            }
        }
        if (text->n == 0) {
            /* no known names: labels are the longest trailing run of 0/1-only columns */
            int64_t first_label = n_cols;
            for (int64_t c = n_cols - 1; c >= 0; c--) {
                if (c == *id_col) continue;
                bool all01 = true;
                for (int64_t r = 0; r < tab->n_rows && all01; r++) all01 = is_label_value(table_get(tab, r, c));
                if (!all01) break;
                first_label = c;
            }
            for (int64_t c = 0; c < n_cols; c++) {
                if (c != *id_col && (c < first_label || text->n == 0)) col_list_push(text, c);
            }
        }
        if (text->n == 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: no text column (the header has only the ID column)", path);
        }
    }
    if (*id_col >= 0 && col_list_has(text, *id_col)) {
        return rk_set_error(RK_STATUS_ARG, "%s: column '%s' is both the ID column and a text column", path,
                            header->fields[*id_col]);
    }

    /* label columns */
    if (!spec->label_columns) {
        int64_t last_text = 0;
        for (int64_t i = 0; i < text->n; i++) {
            if (text->idx[i] > last_text) last_text = text->idx[i];
        }
        for (int64_t c = last_text + 1; c < n_cols; c++) {
            if (c != *id_col && !col_list_has(text, c)) col_list_push(labels, c);
        }
        if (labels->n == 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: no label columns after the text column '%s' (name them with "
                                "label_columns)", path, header->fields[last_text]);
        }
    }
    for (int64_t i = 0; i < labels->n; i++) {
        int64_t c = labels->idx[i];
        if (c == *id_col || col_list_has(text, c)) {
            return rk_set_error(RK_STATUS_ARG, "%s: column '%s' is a label column and also the ID or a text column",
                                path, header->fields[c]);
        }
    }
    return RK_OK;
}

/* ---- ID index --------------------------------------------------------------------------------- */

struct id_ref {
    const char * id;
    int64_t      idx;
};

static int id_ref_cmp(const void * a, const void * b) {
    const struct id_ref * x = a;
    const struct id_ref * y = b;
    int                   c = strcmp(x->id, y->id);
    if (c != 0) return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sorts the IDs into d->id_order; FORMAT error on a duplicate. */
static enum rk_status build_id_index(struct rk_dataset * d) {
    struct id_ref * refs = rk_xmalloc((size_t) d->n_docs * sizeof(*refs));
    for (int64_t i = 0; i < d->n_docs; i++) {
        refs[i].id  = d->ids[i];
        refs[i].idx = i;
    }
    qsort(refs, (size_t) d->n_docs, sizeof(*refs), id_ref_cmp);
    d->id_order = rk_xmalloc((size_t) d->n_docs * sizeof(int64_t));
    for (int64_t i = 0; i < d->n_docs; i++) {
        if (i > 0 && strcmp(refs[i].id, refs[i - 1].id) == 0) {
            enum rk_status s = rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: duplicate ID '%s' (first on line %lld)",
                                            d->path, (long long) d->lines[refs[i].idx], refs[i].id,
                                            (long long) d->lines[refs[i - 1].idx]);
            free(refs);
            return s;
        }
        d->id_order[i] = refs[i].idx;
    }
    free(refs);
    return RK_OK;
}

int64_t rk_dataset_find_id(const struct rk_dataset * d, const char * id) {
    int64_t lo = 0;
    int64_t hi = d->n_docs;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int     c   = strcmp(d->ids[d->id_order[mid]], id);
        if (c == 0) return d->id_order[mid];
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* ---- public API ------------------------------------------------------------------------------- */

enum rk_status rk_dataset_load(const char * path, const struct rk_dataset_spec * spec_in, struct rk_dataset ** out) {
    *out = NULL;
    struct rk_dataset_spec spec = {0};
    if (spec_in) spec = *spec_in;

    struct rk_csv * csv = NULL;
    RK_TRY(rk_csv_open(path, &csv));
    const struct rk_csv_row * header = rk_csv_header(csv);

    struct table       tab    = {0};
    struct col_list    text   = {0};
    struct col_list    labels = {0};
    struct tmpl        tmpl   = {0};
    struct rk_dataset * d     = NULL;
    int64_t            id_col = -1;
    enum rk_status     s      = table_read(csv, &tab);
    if (s != RK_OK) goto done;
    if (tab.n_rows == 0) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: no data rows (only a header)", path);
        goto done;
    }
    s = resolve_schema(path, header, &tab, &spec, &id_col, &text, &labels);
    if (s != RK_OK) goto done;
    if (spec.template_) {
        s = tmpl_compile(path, header, spec.template_, &tmpl);
    } else {
        char * src = tmpl_default(header, &text);
        s          = tmpl_compile(path, header, src, &tmpl);
        free(src);
    }
    if (s != RK_OK) goto done;

    d              = rk_xcalloc(1, sizeof(*d));
    d->path        = rk_xstrdup(path);
    d->n_docs      = tab.n_rows;
    d->n_labels    = labels.n;
    d->ids         = rk_xcalloc((size_t) d->n_docs, sizeof(char *));
    d->texts       = rk_xcalloc((size_t) d->n_docs, sizeof(char *));
    d->label_names = rk_xcalloc((size_t) d->n_labels, sizeof(char *));
    d->labels      = rk_xmalloc((size_t) (d->n_docs * d->n_labels));
    d->lines       = rk_xmalloc((size_t) d->n_docs * sizeof(int64_t));
    for (int64_t j = 0; j < d->n_labels; j++) d->label_names[j] = rk_xstrdup(header->fields[labels.idx[j]]);

    for (int64_t r = 0; r < d->n_docs; r++) {
        d->lines[r] = tab.lines[r];
        for (int64_t j = 0; j < d->n_labels; j++) {
            const char * v = table_get(&tab, r, labels.idx[j]);
            if (!is_label_value(v)) {
                s = rk_set_error(RK_STATUS_FORMAT, "%s: line %lld: column '%s': label value '%.40s' is not 0 or 1",
                                 path, (long long) tab.lines[r], d->label_names[j], v);
                goto done;
            }
            d->labels[r * d->n_labels + j] = (uint8_t) (v[0] - '0');
        }
        if (id_col >= 0) {
            d->ids[r] = rk_xstrdup(table_get(&tab, r, id_col));
        } else {
            char buf[32];
            snprintf(buf, sizeof(buf), "%lld", (long long) r + 1);
            d->ids[r] = rk_xstrdup(buf);
        }
        d->texts[r] = tmpl_render(&tmpl, &tab, r);
    }
    s = build_id_index(d);

done:
    if (s != RK_OK) {
        rk_dataset_free(d);
        d = NULL;
    }
    tmpl_free(&tmpl);
    free(text.idx);
    free(labels.idx);
    table_free(&tab);
    rk_csv_close(csv);
    *out = d;
    return s;
}

void rk_dataset_free(struct rk_dataset * d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n_docs; i++) {
        if (d->ids) free(d->ids[i]);
        if (d->texts) free(d->texts[i]);
    }
    for (int64_t j = 0; j < d->n_labels; j++) {
        if (d->label_names) free(d->label_names[j]);
    }
    free(d->ids);
    free(d->texts);
    free(d->label_names);
    free(d->labels);
    free(d->lines);
    free(d->id_order);
    free(d->path);
    free(d);
}

enum rk_status rk_dataset_check_compatible(const struct rk_dataset * a, const struct rk_dataset * b) {
    if (a->n_labels != b->n_labels) {
        return rk_set_error(RK_STATUS_FORMAT, "%s has %lld labels but %s has %lld: the label columns must match",
                            b->path, (long long) b->n_labels, a->path, (long long) a->n_labels);
    }
    for (int64_t j = 0; j < a->n_labels; j++) {
        if (strcmp(a->label_names[j], b->label_names[j]) != 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: label %lld is '%s' but in %s it is '%s': the label columns "
                                "must match, in the same order", b->path, (long long) j + 1, b->label_names[j],
                                a->path, a->label_names[j]);
        }
    }
    return RK_OK;
}

int64_t rk_dataset_label_count(const struct rk_dataset * d, int64_t j) {
    int64_t n = 0;
    for (int64_t i = 0; i < d->n_docs; i++) n += d->labels[i * d->n_labels + j];
    return n;
}
