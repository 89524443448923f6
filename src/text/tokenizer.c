// Encoding and decoding with a loaded tokenizer.json, in the order Hugging Face tokenizers runs
// its pipeline:
//   1. added tokens that match the raw text (normalized: false, e.g. <|im_start|>) are cut out;
//   2. each remaining piece is normalized (NFC, ...), then added tokens with normalized: true
//      are cut out of the normalized text;
//   3. each remaining piece goes through the pre-tokenizers in turn (Split, ByteLevel, Digits),
//      each refining the pieces of the one before;
//   4. every final piece is one BPE word (tokenizer_bpe.c);
//   5. with add_special, the post-processor's ids go around the sequence.
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "text/tokenizer_internal.h"
#include "base/utf8.h"

static int is_bytelevel_printable(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

uint32_t bytelevel_char(unsigned char b) {
    if (is_bytelevel_printable(b)) return b;
    // the others, in byte order, take U+0100, U+0101, ...
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++) n += !is_bytelevel_printable(c);
    return 256 + n;
}

// byte -> its byte-level character in UTF-8, and code point -> byte (-1: not a byte character)
static struct {
    char utf8[256][2];
    unsigned char len[256];
    int byte_of[512];
    int ready;
} BL;

static void bytelevel_tables(void) {
    if (BL.ready) return; // idempotent: racing initialisations write the same values
    for (int cp = 0; cp < 512; cp++) BL.byte_of[cp] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bytelevel_char((unsigned char)b);
        char buf[4];
        BL.len[b] = (unsigned char)utf8_encode(cp, buf);
        memcpy(BL.utf8[b], buf, BL.len[b]);
        BL.byte_of[cp] = b;
    }
    BL.ready = 1;
}

// ---- pieces: the (start, end) spans a splitting step makes of its input ----

typedef struct {
    size_t start, end;
    int match; // made by the pattern, not a gap between its matches
} Span;

typedef struct {
    Span *v;
    int n, cap;
} Spans;

static void spans_push(Spans *s, size_t start, size_t end, int match) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 32;
        s->v = realloc(s->v, sizeof(Span) * (size_t)s->cap);
        if (!s->v) gemc_fatal("out of memory");
    }
    s->v[s->n++] = (Span){start, end, match};
}

static size_t char_len_at(const char *s, size_t n, size_t i) {
    uint32_t cp;
    int l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
    return l ? (size_t)l : 1;
}

// Matches of a regex and the gaps between them, covering s[0..n).
static void regex_spans(Tokenizer *t, const pcre2_code *re, const char *s, size_t n, Spans *out) {
    size_t pos = 0, prev = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, t->md, NULL);
        if (rc < 0) {
            if (rc != PCRE2_ERROR_NOMATCH) {
                // a pattern that backtracks without end reaches PCRE2's match limit here
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                gemc_fatal("%s: a pre-tokenizer regex failed on the text at byte %zu: %s (HINT: "
                           "the tokenizer's Split or ByteLevel pattern does not suit this text; "
                           "use the model's original tokenizer.json)",
                           t->path, pos, (const char *)msg);
            }
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t st = ov[0], en = ov[1];
        if (st > prev) spans_push(out, prev, st, 0);
        spans_push(out, st, en, 1);
        prev = en;
        if (en == st) {
            if (en >= n) break;
            pos = en + char_len_at(s, n, en); // an empty match: go on after the next character
        } else {
            pos = en;
        }
    }
    if (prev < n) spans_push(out, prev, n, 0);
}

static void literal_spans(const char *lit, size_t lit_len, const char *s, size_t n, Spans *out) {
    size_t prev = 0;
    if (lit_len) {
        for (size_t i = 0; i + lit_len <= n;) {
            const char *hit = memmem(s + i, n - i, lit, lit_len);
            if (!hit) break;
            size_t st = (size_t)(hit - s);
            if (st > prev) spans_push(out, prev, st, 0);
            spans_push(out, st, st + lit_len, 1);
            prev = i = st + lit_len;
        }
    }
    if (prev < n) spans_push(out, prev, n, 0);
}

// Rust's char::is_numeric: the Nd, Nl and No categories.
static int is_numeric_char(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

// Every numeric character is a match of its own; the rest are the gaps.
static void digit_spans(const char *s, size_t n, Spans *out) {
    size_t prev = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!l) l = 1;
        if (is_numeric_char(cp)) {
            if (i > prev) spans_push(out, prev, i, 0);
            spans_push(out, i, i + (size_t)l, 1);
            prev = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (prev < n) spans_push(out, prev, n, 0);
}

// What tokenizers' SplitDelimiterBehavior does with the matches: rewrites in into the pieces.
static void apply_behavior(SplitBehavior b, int invert, Spans *in, Spans *out) {
    if (invert)
        for (int i = 0; i < in->n; i++) in->v[i].match = !in->v[i].match;
    int prev_match = 0;
    switch (b) {
    case SPLIT_REMOVED:
        for (int i = 0; i < in->n; i++)
            if (!in->v[i].match) spans_push(out, in->v[i].start, in->v[i].end, 0);
        break;
    case SPLIT_ISOLATED:
        for (int i = 0; i < in->n; i++) spans_push(out, in->v[i].start, in->v[i].end, 0);
        break;
    case SPLIT_MERGED_WITH_PREVIOUS:
        for (int i = 0; i < in->n; i++) {
            Span sp = in->v[i];
            if (sp.match && !prev_match && out->n)
                out->v[out->n - 1].end = sp.end;
            else
                spans_push(out, sp.start, sp.end, 0);
            prev_match = sp.match;
        }
        break;
    case SPLIT_MERGED_WITH_NEXT: // the mirror image: walk backwards, then reverse
        for (int i = in->n - 1; i >= 0; i--) {
            Span sp = in->v[i];
            if (sp.match && !prev_match && out->n)
                out->v[out->n - 1].start = sp.start;
            else
                spans_push(out, sp.start, sp.end, 0);
            prev_match = sp.match;
        }
        for (int i = 0, j = out->n - 1; i < j; i++, j--) {
            Span tmp = out->v[i];
            out->v[i] = out->v[j];
            out->v[j] = tmp;
        }
        break;
    case SPLIT_CONTIGUOUS:
        for (int i = 0; i < in->n; i++) {
            Span sp = in->v[i];
            if (sp.match == prev_match && out->n)
                out->v[out->n - 1].end = sp.end;
            else
                spans_push(out, sp.start, sp.end, 0);
            prev_match = sp.match;
        }
        break;
    }
}

// ---- pre-tokenizers, applied in turn: each one's pieces are the next one's inputs ----

static void pretokenize(Tokenizer *t, int level, const char *s, size_t n, IntVec *out);

static void pretokenize_spans(Tokenizer *t, int level, const char *s, const Spans *sp,
                              IntVec *out) {
    for (int i = 0; i < sp->n; i++)
        if (sp->v[i].end > sp->v[i].start)
            pretokenize(t, level, s + sp->v[i].start, sp->v[i].end - sp->v[i].start, out);
}

static void bytelevel_map(Tokenizer *t, int level, const char *s, size_t n, IntVec *out) {
    char stack[256], *buf = n * 2 <= sizeof stack ? stack : mallocCheck(n * 2);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        memcpy(buf + m, BL.utf8[b], BL.len[b]);
        m += BL.len[b];
    }
    pretokenize(t, level + 1, buf, m, out);
    if (buf != stack) free(buf);
}

static void pretokenize(Tokenizer *t, int level, const char *s, size_t n, IntVec *out) {
    if (!n) return;
    if (level == t->n_pretok) {
        bpe_encode_word(t, s, n, out);
        return;
    }
    const PreTokenizer *p = &t->pretok[level];
    Spans found = {0}, pieces = {0};
    switch (p->kind) {
    case PRETOK_SPLIT:
        if (p->re)
            regex_spans(t, p->re, s, n, &found);
        else
            literal_spans(p->literal, p->literal_len, s, n, &found);
        apply_behavior(p->behavior, p->invert, &found, &pieces);
        pretokenize_spans(t, level + 1, s, &pieces, out);
        break;
    case PRETOK_DIGITS:
        digit_spans(s, n, &found);
        apply_behavior(p->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0, &found,
                       &pieces);
        pretokenize_spans(t, level + 1, s, &pieces, out);
        break;
    case PRETOK_BYTELEVEL: {
        char *prefixed = NULL;
        if (p->add_prefix_space && s[0] != ' ') {
            prefixed = mallocCheck(n + 1);
            prefixed[0] = ' ';
            memcpy(prefixed + 1, s, n);
            s = prefixed;
            n++;
        }
        if (p->use_regex) {
            regex_spans(t, t->gpt2_re, s, n, &found);
            for (int i = 0; i < found.n; i++)
                if (found.v[i].end > found.v[i].start)
                    bytelevel_map(t, level, s + found.v[i].start, found.v[i].end - found.v[i].start,
                                  out);
        } else {
            bytelevel_map(t, level, s, n, out);
        }
        free(prefixed);
        break;
    }
    }
    free(found.v);
    free(pieces.v);
}

// ---- normalizers ----

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

// Where utf8proc and tokenizers' normalizer part ways, the text is cut and the character passes
// through untouched (for tokenizers it is a starter that neither decomposes nor composes, so
// normalizing the two sides apart gives its result exactly):
//  - characters assigned after Unicode 9.0, whose data tokenizers' normalizer lacks;
//  - U+11A7, which utf8proc wrongly composes away as a Hangul trailing consonant of index 0.
static const uint32_t NEWER_THAN_UNICODE9[][2] = {
#include "text/nfc_unicode9.inc"
};

static int passes_through(uint32_t cp) {
    if (cp == 0x11A7) return 1;
    int lo = 0, hi = (int)(sizeof NEWER_THAN_UNICODE9 / sizeof NEWER_THAN_UNICODE9[0]) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < NEWER_THAN_UNICODE9[mid][0])
            hi = mid - 1;
        else if (cp > NEWER_THAN_UNICODE9[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static void normalize_run(NormKind form, const char *s, size_t n, StrBuf *out) {
    int opts = UTF8PROC_STABLE;
    switch (form) {
    case NORM_NFC:
        opts |= UTF8PROC_COMPOSE;
        break;
    case NORM_NFD:
        opts |= UTF8PROC_DECOMPOSE;
        break;
    case NORM_NFKC:
        opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        break;
    case NORM_NFKD:
        opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
        break;
    }
    if (!n) return;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                        (utf8proc_option_t)opts);
    if (len < 0) gemc_fatal("normalization failed: %s", utf8proc_errmsg(len));
    strbuf_put(out, (const char *)dst, (size_t)len);
    free(dst);
}

// s[0..n) normalized; *owned is set when the result was allocated (to free).
static const char *normalize(const Tokenizer *t, const char *s, size_t *n, char **owned) {
    *owned = NULL;
    if (!t->n_norm || is_ascii(s, *n)) return s; // every form leaves ASCII as it is
    for (int k = 0; k < t->n_norm; k++) {
        StrBuf out = {0};
        size_t run = 0;
        for (size_t i = 0; i < *n;) {
            uint32_t cp;
            int l = utf8_decode((const unsigned char *)s + i, *n - i, &cp);
            if (!l) l = 1;
            if (cp >= 0x300 && passes_through(cp)) {
                normalize_run(t->norm[k], s + run, i - run, &out);
                strbuf_put(&out, s + i, (size_t)l);
                run = i + (size_t)l;
            }
            i += (size_t)l;
        }
        normalize_run(t->norm[k], s + run, *n - run, &out);
        if (!out.p) strbuf_put(&out, "", 0);
        free(*owned);
        *owned = out.p;
        s = out.p;
        *n = out.len;
    }
    return s;
}

// ---- added tokens ----

// Unicode White_Space, what the \s of Rust's regex crate matches.
static int is_white_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

// Rust regex's \w: letters, marks, decimal and letter numbers, connector punctuation, joiners.
static int is_word_char(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC || c == 0x200C || c == 0x200D;
}

// The code point that ends at s[end) (end > 0).
static uint32_t char_before(const char *s, size_t end, size_t *start) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp = 0;
    if (!utf8_decode((const unsigned char *)s + i, end - i, &cp)) cp = (unsigned char)s[end - 1];
    if (start) *start = i;
    return cp;
}

static uint32_t char_at(const char *s, size_t n, size_t i, size_t *len) {
    uint32_t cp = 0;
    int l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
    *len = l ? (size_t)l : 1;
    return l ? cp : (unsigned char)s[i];
}

// The longest added token of this pass (normalized or not) that starts at s[i], or NULL.
static const AddedToken *added_at(const Tokenizer *t, int normalized, const char *s, size_t n,
                                  size_t i) {
    const AddedToken *best = NULL;
    for (int k = 0; k < t->n_added; k++) {
        const AddedToken *a = &t->added[k];
        if (a->normalized != normalized || a->content[0] != s[i] || a->len > n - i) continue;
        if ((!best || a->len > best->len) && !memcmp(s + i, a->content, a->len)) best = a;
    }
    return best;
}

// Cuts the added tokens of one pass out of s[0..n), leftmost-longest, with their lstrip,
// rstrip and single_word rules: ids for the tokens, spans for the text between them.
static void split_added(const Tokenizer *t, int normalized, const char *s, size_t n, Spans *gaps,
                        IntVec *ids, const unsigned char *first_bytes) {
    size_t start_offset = 0;
    for (size_t i = 0; i < n;) {
        const AddedToken *a =
            first_bytes[(unsigned char)s[i]] ? added_at(t, normalized, s, n, i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        size_t start = i, stop = i + a->len;
        i = stop;
        if (a->single_word) {
            if ((start > 0 && is_word_char(char_before(s, start, NULL))) ||
                (stop < n && is_word_char(char_at(s, n, stop, &(size_t){0}))))
                continue;
        }
        if (a->lstrip) {
            size_t b = start;
            while (b > start_offset) {
                size_t cs;
                if (!is_white_space(char_before(s, b, &cs))) break;
                b = cs;
            }
            start = b;
        }
        if (a->rstrip) {
            while (stop < n) {
                size_t cl;
                if (!is_white_space(char_at(s, n, stop, &cl))) break;
                stop += cl;
            }
            i = stop;
        }
        if (start > start_offset) spans_push(gaps, start_offset, start, 0);
        spans_push(gaps, start, stop, 1);
        intvec_push(ids, a->id);
        start_offset = stop;
    }
    if (start_offset < n) spans_push(gaps, start_offset, n, 0);
}

static void first_byte_table(const Tokenizer *t, int normalized, unsigned char table[256]) {
    memset(table, 0, 256);
    for (int k = 0; k < t->n_added; k++)
        if (t->added[k].normalized == normalized) table[(unsigned char)t->added[k].content[0]] = 1;
}

// Step 2 onwards for one piece of raw text that holds no un-normalized added token.
static void encode_piece(Tokenizer *t, const char *s, size_t n, const unsigned char *first_norm,
                         IntVec *out) {
    char *owned;
    const char *norm = normalize(t, s, &n, &owned);
    Spans gaps = {0};
    IntVec added = {0};
    split_added(t, 1, norm, n, &gaps, &added, first_norm);
    for (int i = 0, k = 0; i < gaps.n; i++) {
        if (gaps.v[i].match)
            intvec_push(out, added.v[k++]);
        else
            pretokenize(t, 0, norm + gaps.v[i].start, gaps.v[i].end - gaps.v[i].start, out);
    }
    free(gaps.v);
    intvec_free(&added);
    free(owned);
}

int tokenizer_encode(Tokenizer *t, const char *text, size_t len, int add_special, IntVec *out) {
    size_t bad = utf8_invalid_offset(text, len);
    if (bad < len) {
        gemc_set_error("text is not valid UTF-8 (byte %zu of %zu)", bad, len);
        return -1;
    }
    bytelevel_tables();
    if (add_special)
        for (int i = 0; i < t->post_prefix.n; i++) intvec_push(out, t->post_prefix.v[i]);
    unsigned char first_raw[256], first_norm[256];
    first_byte_table(t, 0, first_raw);
    first_byte_table(t, 1, first_norm);
    Spans gaps = {0};
    IntVec added = {0};
    split_added(t, 0, text, len, &gaps, &added, first_raw);
    for (int i = 0, k = 0; i < gaps.n; i++) {
        if (gaps.v[i].match)
            intvec_push(out, added.v[k++]);
        else
            encode_piece(t, text + gaps.v[i].start, gaps.v[i].end - gaps.v[i].start, first_norm,
                         out);
    }
    free(gaps.v);
    intvec_free(&added);
    if (add_special)
        for (int i = 0; i < t->post_suffix.n; i++) intvec_push(out, t->post_suffix.v[i]);
    return 0;
}

int tokenizer_decode(const Tokenizer *t, const int *ids, int n, int skip_special, StrBuf *out) {
    bytelevel_tables();
    strbuf_put(out, "", 0); // out->p is a string even when nothing is decoded
    int first = 1;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->vocab_size) {
            gemc_set_error("token id %d is outside the vocabulary (0..%d) of %s", id,
                           t->vocab_size - 1, t->path);
            return -1;
        }
        if (skip_special && t->is_special[id]) continue;
        const char *tok = t->arena + t->tok_off[id];
        size_t len = t->tok_len[id];
        if (!len) continue;              // an id no token has, as tokenizers skips it
        if (!t->has_bytelevel_decoder) { // tokenizers joins tokens with spaces without a decoder
            if (!first) strbuf_put(out, " ", 1);
            strbuf_put(out, tok, len);
            first = 0;
            continue;
        }
        // every character back to its byte; a token with any other character stays as it is
        char stack[256], *bytes = len <= sizeof stack ? stack : mallocCheck(len);
        size_t m = 0, j = 0;
        while (j < len) {
            uint32_t cp;
            int l = utf8_decode((const unsigned char *)tok + j, len - j, &cp);
            if (!l || cp >= 512 || BL.byte_of[cp] < 0) break;
            bytes[m++] = (char)BL.byte_of[cp];
            j += (size_t)l;
        }
        if (j == len)
            strbuf_put(out, bytes, m);
        else
            strbuf_put(out, tok, len);
        if (bytes != stack) free(bytes);
        first = 0;
    }
    return 0;
}

int tokenizer_vocab_size(const Tokenizer *t) {
    return t->vocab_size;
}

int tokenizer_token_id(const Tokenizer *t, const char *token) {
    size_t len = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->added[i].content, token, len))
            return t->added[i].id;
    return strmap_get(&t->vocab, t->arena, token, len);
}

int tokenizer_is_special(const Tokenizer *t, int id) {
    return id >= 0 && id < t->vocab_size && t->is_special[id];
}

const char *tokenizer_path(const Tokenizer *t) {
    return t->path;
}

uint64_t tokenizer_hash(const Tokenizer *t) {
    return t->file_hash;
}
