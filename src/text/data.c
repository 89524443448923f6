#include "text/data.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/cli.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "base/utf8.h"

#define HINT_PAIRS                                                                                 \
    "a pair is {\"prompt\", \"chosen\", \"rejected\"} or {\"question\", \"answer_pos\", "          \
    "\"answer_neg\"}, all strings"
#define HINT_PROMPTS                                                                               \
    "a prompt is {\"prompt\"} or {\"question\"}, a string, with an optional \"answer\" (a "        \
    "string or a number)"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mallocCheck(n);
    memcpy(d, s, n);
    return d;
}

// ---- reading lines

// A line is read through a fixed buffer and kept only up to the limit, so a huge line (a
// binary file, a JSON array written on one line) costs time to count, never memory.
typedef struct {
    FILE *f;
    size_t pos, len;
    char buf[1 << 16];
} LineReader;

// The next line without its '\n': at most `keep` bytes of it go to `line`, *total is its full
// length and *last its last byte. Returns 1 for a line, 0 at the end of the file, -1 on a read
// error (errno set).
static int read_line(LineReader *r, size_t keep, StrBuf *line, size_t *total, char *last) {
    line->len = 0;
    if (line->p) line->p[0] = 0;
    *total = 0;
    *last = 0;
    int any = 0;
    for (;;) {
        if (r->pos == r->len) {
            r->pos = 0;
            r->len = fread(r->buf, 1, sizeof r->buf, r->f);
            if (r->len == 0) return ferror(r->f) ? -1 : any;
        }
        any = 1;
        const char *start = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        const char *nl = memchr(start, '\n', avail);
        size_t n = nl ? (size_t)(nl - start) : avail;
        if (line->len < keep) strbuf_put(line, start, n < keep - line->len ? n : keep - line->len);
        if (n) *last = start[n - 1];
        *total += n;
        r->pos += n + (nl != NULL);
        if (nl) return 1;
    }
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

// 1-based column of byte offset `off`, counting characters as an editor shows them (the line
// is valid UTF-8 by then; a stray byte would count as one).
static int column_of(const char *s, size_t off) {
    int col = 1;
    for (size_t i = 0; i < off; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) col++;
    return col;
}

// ---- one record

static const char *type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "an unknown value";
}

static const char *const KNOWN_FIELDS[] = {"prompt",     "chosen",     "rejected", "question",
                                           "answer_pos", "answer_neg", "answer"};
#define N_KNOWN_FIELDS ((int)(sizeof KNOWN_FIELDS / sizeof KNOWN_FIELDS[0]))

static int is_known_field(const char *k) {
    for (int i = 0; i < N_KNOWN_FIELDS; i++)
        if (strcmp(k, KNOWN_FIELDS[i]) == 0) return 1;
    return 0;
}

// A field gemc reads that the object holds twice, or NULL.
static const char *duplicate_field(const cJSON *obj) {
    for (int i = 0; i < N_KNOWN_FIELDS; i++) {
        int seen = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, obj) {
            if (e->string && strcmp(e->string, KNOWN_FIELDS[i]) == 0) seen++;
        }
        if (seen > 1) return KNOWN_FIELDS[i];
    }
    return NULL;
}

typedef struct {
    const char *path;
    int line;
    const cJSON *obj;
    const char *hint;
} LineCtx;

static int missing_field(const LineCtx *c, const char *field) {
    // a misspelt key is the likely cause: name it (known fields are other fields, not typos)
    const char *keys[64];
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, c->obj) {
        if (n < 64 && e->string && !is_known_field(e->string)) keys[n++] = e->string;
    }
    const char *near = closest_name(field, keys, n);
    if (near)
        gemc_set_error("%s:%d: missing field \"%s\" (the line has \"%s\"; HINT: rename it to "
                       "\"%s\")",
                       c->path, c->line, field, near, field);
    else
        gemc_set_error("%s:%d: missing field \"%s\" (HINT: %s)", c->path, c->line, field, c->hint);
    return -1;
}

static int get_string(const LineCtx *c, const char *field, char **out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c->obj, field);
    if (!j) return missing_field(c, field);
    if (!cJSON_IsString(j)) {
        gemc_set_error("%s:%d: field \"%s\" is %s, expected a string (HINT: %s)", c->path, c->line,
                       field, type_name(j), c->hint);
        return -1;
    }
    *out = dup_str(j->valuestring);
    return 0;
}

static void skip_space(const char **p, const char *end) {
    // what cJSON itself skips between tokens
    while (*p < end && (unsigned char)**p <= 32) (*p)++;
}

// The text of a top-level value exactly as the line writes it: cJSON keeps a number only as a
// double, and "72" must not come back as "72.000000" nor "0.10" as "0.1". The line has already
// parsed as a whole, so this only steps over the layout between tokens and lets cJSON parse each
// key and value to find where it ends. Returns 0 with the first occurrence (the one cJSON's
// lookup returns), -1 when the key is not there.
static int value_literal(const char *text, size_t n, const char *key, const char **lit,
                         size_t *lit_len) {
    const char *p = text, *end = text + n;
    skip_space(&p, end);
    if (p == end || *p != '{') return -1;
    p++;
    for (;;) {
        skip_space(&p, end);
        if (p == end || *p != '"') return -1;
        const char *after = NULL;
        cJSON *k = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &after, 0);
        if (!k) return -1;
        int match = cJSON_IsString(k) && strcmp(k->valuestring, key) == 0;
        cJSON_Delete(k);
        p = after;
        skip_space(&p, end);
        if (p == end || *p != ':') return -1;
        p++;
        skip_space(&p, end);
        cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &after, 0);
        if (!v) return -1;
        cJSON_Delete(v);
        if (match) {
            *lit = p;
            *lit_len = (size_t)(after - p);
            return 0;
        }
        p = after;
        skip_space(&p, end);
        if (p == end || *p != ',') return -1;
        p++;
    }
}

static void record_free(DataRecord *r) {
    free(r->prompt);
    free(r->chosen);
    free(r->rejected);
    free(r->answer);
    intvec_free(&r->prompt_ids);
    intvec_free(&r->chosen_ids);
    intvec_free(&r->rejected_ids);
    memset(r, 0, sizeof *r);
}

// The first field of `a` and of `b` present in the object, for naming a mix of two forms.
static const char *first_present(const cJSON *obj, const char *const *names) {
    for (int i = 0; i < 3; i++)
        if (cJSON_GetObjectItemCaseSensitive(obj, names[i])) return names[i];
    return NULL;
}

static int parse_pair(const LineCtx *c, DataRecord *r) {
    static const char *const STD[] = {"prompt", "chosen", "rejected"};
    static const char *const MED[] = {"question", "answer_pos", "answer_neg"};
    const char *s = first_present(c->obj, STD), *m = first_present(c->obj, MED);
    if (s && m) {
        // which of the two is the prompt would be a guess: refuse rather than train on it
        gemc_set_error("%s:%d: mixes the two pair forms (\"%s\" and \"%s\") (HINT: use either "
                       "\"prompt\", \"chosen\", \"rejected\" or \"question\", \"answer_pos\", "
                       "\"answer_neg\")",
                       c->path, c->line, s, m);
        return -1;
    }
    const char *const *f = m ? MED : STD;
    if (get_string(c, f[0], &r->prompt) || get_string(c, f[1], &r->chosen) ||
        get_string(c, f[2], &r->rejected))
        return -1;
    return 0;
}

static int parse_prompt(const LineCtx *c, const char *text, size_t n, DataRecord *r) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->obj, "prompt");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c->obj, "question");
    if (p && q) {
        gemc_set_error("%s:%d: has both \"prompt\" and \"question\" (HINT: keep one of them)",
                       c->path, c->line);
        return -1;
    }
    if (get_string(c, q ? "question" : "prompt", &r->prompt)) return -1;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c->obj, "answer");
    if (!a || cJSON_IsNull(a)) return 0; // no reference answer
    if (cJSON_IsString(a)) {
        r->answer = dup_str(a->valuestring);
        return 0;
    }
    const char *lit;
    size_t len;
    if (cJSON_IsNumber(a) && value_literal(text, n, "answer", &lit, &len) == 0) {
        r->answer = mallocCheck(len + 1);
        memcpy(r->answer, lit, len);
        r->answer[len] = 0;
        return 0;
    }
    gemc_set_error("%s:%d: field \"answer\" is %s, expected a string or a number", c->path, c->line,
                   type_name(a));
    return -1;
}

// text[0..n) is one non-blank line, NUL-terminated at n.
static int parse_line(const char *path, int line, const char *text, size_t n, DataKind kind,
                      DataRecord *r) {
    size_t bad = utf8_invalid_offset(text, n);
    if (bad < n) {
        gemc_set_error("%s:%d: invalid UTF-8 at column %d (byte %zu of the line is 0x%02X) "
                       "(HINT: the file must be UTF-8; convert it, e.g. iconv -f latin1 -t utf-8)",
                       path, line, column_of(text, bad), bad + 1, (unsigned char)text[bad]);
        return -1;
    }
    const char *nul = memchr(text, 0, n);
    if (nul) {
        gemc_set_error("%s:%d: NUL byte at column %d (HINT: the file must be UTF-8 text, one JSON "
                       "object a line)",
                       path, line, column_of(text, (size_t)(nul - text)));
        return -1;
    }
    size_t esc = json_nul_escape_offset(text, n);
    if (esc < n) {
        // cJSON would decode it into a C string cut short at that point, losing the rest silently
        gemc_set_error("%s:%d: \\u0000 (a NUL character) at column %d (HINT: text fields cannot "
                       "hold NUL characters; remove it)",
                       path, line, column_of(text, esc));
        return -1;
    }
    const char *where = NULL;
    // n + 1: with require_null_terminated, cJSON wants the terminating NUL inside the length
    cJSON *obj = cJSON_ParseWithLengthOpts(text, n + 1, &where, 1);
    if (!obj) {
        size_t off = where && where >= text && where <= text + n ? (size_t)(where - text) : n;
        if (off >= n) {
            gemc_set_error("%s:%d: malformed JSON: the line ends before the value is complete "
                           "(HINT: each line must be one whole JSON object)",
                           path, line);
        } else {
            // a short excerpt, cut at a character boundary, without control characters
            char near[32];
            size_t k = 0;
            while (k < 24 && off + k < n) k++;
            while (off + k < n && k > 0 && ((unsigned char)text[off + k] & 0xC0) == 0x80) k--;
            memcpy(near, text + off, k);
            near[k] = 0;
            for (size_t i = 0; i < k; i++)
                if ((unsigned char)near[i] < 0x20) near[i] = ' ';
            gemc_set_error("%s:%d: malformed JSON at column %d, near '%s' (HINT: each line must be "
                           "one whole JSON object)",
                           path, line, column_of(text, off), near);
        }
        return -1;
    }
    int rc;
    LineCtx c = {path, line, obj, kind == DATA_PAIRS ? HINT_PAIRS : HINT_PROMPTS};
    const char *dup = NULL;
    if (!cJSON_IsObject(obj)) {
        gemc_set_error("%s:%d: expected a JSON object, found %s (HINT: %s)", path, line,
                       type_name(obj), c.hint);
        rc = -1;
    } else if ((dup = duplicate_field(obj))) {
        // cJSON would take the first, Python's json the last: neither is safe to assume
        gemc_set_error("%s:%d: field \"%s\" appears more than once (HINT: keep one of them)", path,
                       line, dup);
        rc = -1;
    } else {
        rc = kind == DATA_PAIRS ? parse_pair(&c, r) : parse_prompt(&c, text, n, r);
    }
    cJSON_Delete(obj);
    if (rc != 0) record_free(r);
    r->line = line;
    return rc;
}

// ---- the file

int dataset_load(Dataset *ds, const char *path, DataKind kind, long max_line_bytes) {
    memset(ds, 0, sizeof *ds);
    if (max_line_bytes <= 0) max_line_bytes = DATA_MAX_LINE_BYTES_DEFAULT;
    size_t max = (size_t)max_line_bytes;
    FILE *f = fopen(path, "rb");
    if (!f) {
        gemc_set_error("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    LineReader *rd = callocCheck(1, sizeof *rd);
    rd->f = f;
    StrBuf buf = {0};
    Dataset d = {.path = dup_str(path), .kind = kind};
    int cap = 0, line = 0, rc = 0;
    for (;;) {
        size_t total;
        char last;
        // one byte past the limit is kept so that a line of exactly `max` bytes + "\r" fits
        int got = read_line(rd, max + 1, &buf, &total, &last);
        if (got < 0) {
            gemc_set_error("%s: cannot read line %d: %s", path, line + 1, strerror(errno));
            rc = -1;
            break;
        }
        if (got == 0) break;
        line++;
        size_t n = total - (total > 0 && last == '\r');
        if (n > max) {
            gemc_set_error("%s:%d: line is %zu bytes, longer than the limit of %zu (HINT: a JSONL "
                           "file holds one object a line; raise max_line_bytes in the config if "
                           "this record is meant to be this long)",
                           path, line, n, max);
            rc = -1;
            break;
        }
        char *text = buf.p ? buf.p : (char *)"";
        if (buf.p) text[n] = 0;
        // a byte-order mark some editors write at the start of a UTF-8 file
        if (line == 1 && n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, n -= 3;
        if (is_blank(text, n)) continue;
        DataRecord r = {0};
        if (parse_line(path, line, text, n, kind, &r) != 0) {
            rc = -1;
            break;
        }
        if (d.n == cap) {
            cap = cap ? 2 * cap : 256;
            DataRecord *nr = realloc(d.rec, sizeof *nr * (size_t)cap);
            if (!nr) gemc_fatal("out of memory reading %s", path);
            d.rec = nr;
        }
        d.rec[d.n++] = r;
    }
    fclose(f);
    free(rd);
    free(buf.p);
    if (rc == 0 && d.n == 0) {
        gemc_set_error("%s: empty file (no JSON lines) (HINT: one JSON object a line; %s)", path,
                       kind == DATA_PAIRS ? HINT_PAIRS : HINT_PROMPTS);
        rc = -1;
    }
    if (rc != 0) {
        dataset_free(&d);
        return -1;
    }
    *ds = d;
    return 0;
}

// ---- tokens

static void free_ids(Dataset *ds) {
    for (int i = 0; i < ds->n; i++) {
        intvec_free(&ds->rec[i].prompt_ids);
        intvec_free(&ds->rec[i].chosen_ids);
        intvec_free(&ds->rec[i].rejected_ids);
    }
}

// Re-records the tokenizer's error with the file and line in front.
static int encode_at(const Dataset *ds, const DataRecord *r, Tokenizer *tok, const char *s,
                     size_t n, IntVec *out) {
    if (tokenizer_encode(tok, s, n, 0, out) == 0) return 0;
    char *msg = dup_str(gemc_error());
    gemc_set_error("%s:%d: %s", ds->path, r->line, msg);
    free(msg);
    return -1;
}

static int check_response(const Dataset *ds, const DataRecord *r, const IntVec *resp,
                          const char *which, int n_ctx) {
    long total = (long)r->prompt_ids.n + resp->n;
    if (total <= n_ctx) return 0;
    gemc_set_error("%s:%d: prompt + %s response is %ld tokens (%d + %d, the end-of-turn token "
                   "included); the model's context is %d (max_position_embeddings) (HINT: "
                   "shorten it or drop the line)",
                   ds->path, r->line, which, total, r->prompt_ids.n, resp->n, n_ctx);
    return -1;
}

static int tokenize_record(const Dataset *ds, DataRecord *r, Tokenizer *tok, ChatTemplate tmpl,
                           const char *system, int eot, int n_ctx) {
    StrBuf text = {0};
    chat_format(tmpl, system, r->prompt, 1, &text);
    int rc = encode_at(ds, r, tok, text.p ? text.p : "", text.len, &r->prompt_ids);
    free(text.p);
    if (rc) return -1;
    if (r->prompt_ids.n + 1 > n_ctx) {
        gemc_set_error("%s:%d: prompt is %d tokens after the chat template; the model's context "
                       "is %d (max_position_embeddings) and needs room for at least one response "
                       "token (HINT: shorten it or drop the line)",
                       ds->path, r->line, r->prompt_ids.n, n_ctx);
        return -1;
    }
    if (ds->kind != DATA_PAIRS) return 0;
    if (encode_at(ds, r, tok, r->chosen, strlen(r->chosen), &r->chosen_ids)) return -1;
    intvec_push(&r->chosen_ids, eot);
    if (check_response(ds, r, &r->chosen_ids, "chosen", n_ctx)) return -1;
    if (encode_at(ds, r, tok, r->rejected, strlen(r->rejected), &r->rejected_ids)) return -1;
    intvec_push(&r->rejected_ids, eot);
    return check_response(ds, r, &r->rejected_ids, "rejected", n_ctx);
}

int dataset_tokenize(Dataset *ds, Tokenizer *tok, ChatTemplate tmpl, const char *system, int eos_id,
                     int n_ctx) {
    free_ids(ds); // tokenizing again (another template, another model) starts afresh
    int eot = -1;
    if (ds->kind == DATA_PAIRS) {
        eot = chat_end_of_turn_id(tmpl, tok, eos_id);
        if (eot < 0) return -1;
    }
    for (int i = 0; i < ds->n; i++) {
        if (tokenize_record(ds, &ds->rec[i], tok, tmpl, system, eot, n_ctx) != 0) {
            free_ids(ds);
            return -1;
        }
    }
    return 0;
}

void dataset_free(Dataset *ds) {
    for (int i = 0; i < ds->n; i++) record_free(&ds->rec[i]);
    free(ds->rec);
    free(ds->path);
    memset(ds, 0, sizeof *ds);
}
