// The tokenizer.json pipeline piece by piece, on small hand-made tokenizers whose expected
// output can be worked out by hand (test_tokenizer_real.c checks whole real tokenizers against
// Hugging Face), and UTF-8 handling.
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/rng.h"
#include "tests.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

// ---- UTF-8 ----

static void test_utf8_decode(void) {
    uint32_t cp;
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xC3\xA9", 2, &cp), 2);
    CU_ASSERT_EQUAL(cp, 0xE9);
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    CU_ASSERT_EQUAL(cp, 0x1F600);
    // overlong, surrogate, above U+10FFFF, truncated, stray continuation
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xC0\x80", 2, &cp), 0);
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xE0\x80\x80", 3, &cp), 0);
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, &cp), 0);
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp), 0);
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\xE2\x82", 2, &cp), 0);
    CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)"\x80", 1, &cp), 0);
    CU_ASSERT_EQUAL(utf8_invalid_offset("ab\xC3\xA9"
                                        "c",
                                        5),
                    5);
    CU_ASSERT_EQUAL(utf8_invalid_offset("ab\xC3"
                                        "c",
                                        4),
                    2);
    char buf[4];
    for (uint32_t c = 0; c <= 0x10FFFF; c += 0x101) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        int n = utf8_encode(c, buf);
        CU_ASSERT_EQUAL(utf8_decode((const unsigned char *)buf, (size_t)n, &cp), n);
        CU_ASSERT_EQUAL(cp, c);
    }
}

static void check_lossy(const char *in, size_t n, const char *want) {
    StrBuf b = {0};
    utf8_append_lossy(&b, in, n);
    CU_ASSERT_STRING_EQUAL(b.p, want);
    free(b.p);
}

// One U+FFFD per maximal ill-formed subpart, as Rust's from_utf8_lossy (tokenizers' decode).
static void test_utf8_lossy(void) {
#define FFFD "\xEF\xBF\xBD"
    check_lossy("ok", 2, "ok");
    check_lossy("a\xF0\x9F\x98", 4, "a" FFFD); // a cut emoji: one
    check_lossy("\xC0\x80", 2, FFFD FFFD);     // overlong: two
    check_lossy("\xED\xA0\x80"
                "z",
                4, FFFD FFFD FFFD "z"); // surrogate: three
    check_lossy("\xE2\x82"
                "x\x80",
                4, FFFD "x" FFFD);
    check_lossy("\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD);
#undef FFFD
}

static void test_bytelevel_alphabet(void) {
    CU_ASSERT_EQUAL(bytelevel_char('A'), 'A');
    CU_ASSERT_EQUAL(bytelevel_char(' '), 0x120);  // "Ġ"
    CU_ASSERT_EQUAL(bytelevel_char('\n'), 0x10A); // "Ċ"
    CU_ASSERT_EQUAL(bytelevel_char(0), 0x100);
    CU_ASSERT_EQUAL(bytelevel_char(0xAD), 0x143); // soft hyphen: "Ń"
    CU_ASSERT_EQUAL(bytelevel_char(0xFF), 0xFF);
    int seen[512] = {0};
    for (int b = 0; b < 256; b++) seen[bytelevel_char((unsigned char)b)]++;
    for (int c = 0; c < 512; c++) CU_ASSERT(seen[c] <= 1); // a bijection
}

// ---- building small tokenizer.json files ----

typedef struct {
    const char *const *vocab; // NULL-terminated; id = index
    const char *merges;       // JSON list
    const char *added;        // JSON list or NULL
    const char *normalizer;   // JSON or NULL
    const char *pre;          // JSON or NULL
    const char *post;         // JSON or NULL
    const char *decoder;      // JSON or NULL
    int ignore_merges;
} TokSpec;

static char *spec_json(const TokSpec *s) {
    StrBuf b = {0};
    strbuf_puts(&b, "{\"version\": \"1.0\", \"added_tokens\": ");
    strbuf_puts(&b, s->added ? s->added : "[]");
    strbuf_puts(&b, ", \"normalizer\": ");
    strbuf_puts(&b, s->normalizer ? s->normalizer : "null");
    strbuf_puts(&b, ", \"pre_tokenizer\": ");
    strbuf_puts(&b, s->pre ? s->pre : "null");
    strbuf_puts(&b, ", \"post_processor\": ");
    strbuf_puts(&b, s->post ? s->post : "null");
    strbuf_puts(&b, ", \"decoder\": ");
    strbuf_puts(&b, s->decoder ? s->decoder : "null");
    strbuf_puts(&b, ", \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
                    "\"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": ");
    strbuf_puts(&b, s->ignore_merges ? "true" : "false");
    strbuf_puts(&b, ", \"vocab\": {");
    for (int i = 0; s->vocab[i]; i++) {
        char num[32];
        if (i) strbuf_puts(&b, ", ");
        strbuf_json_string(&b, s->vocab[i]);
        snprintf(num, sizeof num, ": %d", i);
        strbuf_puts(&b, num);
    }
    strbuf_puts(&b, "}, \"merges\": ");
    strbuf_puts(&b, s->merges ? s->merges : "[]");
    strbuf_puts(&b, "}}");
    return b.p;
}

static Tokenizer *load_text(const char *json) {
    char *dir = test_tmpdir(), *path = path_join(dir, "tokenizer.json");
    test_write_file(path, json, strlen(json));
    Tokenizer *t = tokenizer_load(path);
    free(path);
    free(dir);
    return t;
}

static Tokenizer *load_spec(const TokSpec *s) {
    char *json = spec_json(s);
    Tokenizer *t = load_text(json);
    free(json);
    return t;
}

// Encodes text and compares with the tokens given as "tok|tok|tok" (token strings, looked up).
static void expect_tokens(Tokenizer *t, const char *text, int add_special, const char *want) {
    IntVec ids = {0}, exp = {0};
    CU_ASSERT_EQUAL_FATAL(tokenizer_encode(t, text, strlen(text), add_special, &ids), 0);
    char *copy = strdup(want);
    for (char *save = NULL, *tok = strtok_r(copy, "|", &save); tok;
         tok = strtok_r(NULL, "|", &save)) {
        int id = tokenizer_token_id(t, tok);
        CU_ASSERT(id >= 0);
        intvec_push(&exp, id);
    }
    int same = ids.n == exp.n;
    for (int i = 0; same && i < ids.n; i++) same = ids.v[i] == exp.v[i];
    CU_ASSERT(same);
    if (!same) {
        fprintf(stderr, "\n  '%s': got", text);
        for (int i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fprintf(stderr, ", want %s\n", want);
    }
    free(copy);
    intvec_free(&ids);
    intvec_free(&exp);
}

// ---- BPE ----

static const char *const ABC_VOCAB[] = {"a",  "b",   "c",  "ab", "bc", "abc", "aa", "-",   "a-",
                                        "-b", "a-b", "--", "1",  "2",  "3",   "12", "123", NULL};

static void test_merge_order(void) {
    // "b c" has the lowest rank, so "abc" is a + bc -> abc, not ab + c
    TokSpec s = {.vocab = ABC_VOCAB, .merges = "[\"b c\", \"a b\", \"a bc\"]"};
    Tokenizer *t = load_spec(&s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_tokens(t, "abc", 0, "abc");
    expect_tokens(t, "abab", 0, "ab|ab");
    expect_tokens(t, "cab", 0, "c|ab");
    tokenizer_free(t);
    // the same merges as [left, right] arrays give the same ids
    TokSpec s2 = {.vocab = ABC_VOCAB,
                  .merges = "[[\"b\", \"c\"], [\"a\", \"b\"], [\"a\", \"bc\"]]"};
    t = load_spec(&s2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_tokens(t, "abc", 0, "abc");
    expect_tokens(t, "abab", 0, "ab|ab");
    tokenizer_free(t);
    // ranks reversed: ab first, and "ab c" is no merge
    TokSpec s3 = {.vocab = ABC_VOCAB, .merges = "[\"a b\", \"b c\", \"a bc\"]"};
    t = load_spec(&s3);
    expect_tokens(t, "abc", 0, "ab|c");
    tokenizer_free(t);
}

static void test_overlapping_pairs(void) {
    // "aaa" with the merge a+a: the leftmost pair merges first
    TokSpec s = {.vocab = ABC_VOCAB, .merges = "[\"a a\"]"};
    Tokenizer *t = load_spec(&s);
    expect_tokens(t, "aaa", 0, "aa|a");
    expect_tokens(t, "aaaa", 0, "aa|aa");
    tokenizer_free(t);
}

static void test_ignore_merges(void) {
    // with ignore_merges a word that is itself in the vocabulary is one token, even when the
    // merges would never build it ("abc" has no merge path here)
    TokSpec s = {.vocab = ABC_VOCAB, .merges = "[\"a b\"]", .ignore_merges = 1};
    Tokenizer *t = load_spec(&s);
    expect_tokens(t, "abc", 0, "abc");
    tokenizer_free(t);
    s.ignore_merges = 0;
    t = load_spec(&s);
    expect_tokens(t, "abc", 0, "ab|c");
    tokenizer_free(t);
}

// The reference: merge the lowest-ranked adjacent pair, leftmost first, until none is left.
static int naive_bpe(char toks[][64], int n, char (*merges)[2][64], int n_merges) {
    for (;;) {
        int best = -1, best_rank = n_merges;
        for (int i = 0; i + 1 < n; i++)
            for (int r = 0; r < best_rank; r++)
                if (!strcmp(toks[i], merges[r][0]) && !strcmp(toks[i + 1], merges[r][1])) {
                    best = i;
                    best_rank = r;
                    break;
                }
        if (best < 0) return n;
        size_t la = strlen(toks[best]), lb = strlen(toks[best + 1]); // la + lb < 20
        memcpy(toks[best] + la, toks[best + 1], lb + 1);
        memmove(toks[best + 1], toks[best + 2], sizeof(toks[0]) * (size_t)(n - best - 2));
        n--;
    }
}

// Random vocabularies and words: the heap-based merge loop (and its word cache) agrees with
// the quadratic reference on every word.
static void test_bpe_matches_reference(void) {
    Rng rng;
    rng_seed(&rng, 7);
    for (int trial = 0; trial < 20; trial++) {
        char vocab[80][64] = {"a", "b", "c", "d"};
        char merges[80][2][64];
        int nv = 4, nm = 0;
        while (nm < 60) {
            int x = (int)(rng_u64(&rng) % (uint64_t)nv), y = (int)(rng_u64(&rng) % (uint64_t)nv);
            if (strlen(vocab[x]) + strlen(vocab[y]) >= 20) continue;
            char joined[64];
            snprintf(joined, sizeof joined, "%s%s", vocab[x], vocab[y]);
            int dup = 0;
            for (int i = 0; i < nv; i++) dup |= !strcmp(vocab[i], joined);
            for (int r = 0; r < nm; r++)
                dup |= !strcmp(merges[r][0], vocab[x]) && !strcmp(merges[r][1], vocab[y]);
            if (dup) continue;
            strcpy(merges[nm][0], vocab[x]);
            strcpy(merges[nm][1], vocab[y]);
            nm++;
            strcpy(vocab[nv++], joined);
        }
        const char *vp[81];
        for (int i = 0; i < nv; i++) vp[i] = vocab[i];
        vp[nv] = NULL;
        StrBuf mj = {0};
        strbuf_puts(&mj, "[");
        for (int r = 0; r < nm; r++) {
            strbuf_puts(&mj, r ? ", \"" : "\"");
            strbuf_puts(&mj, merges[r][0]);
            strbuf_puts(&mj, " ");
            strbuf_puts(&mj, merges[r][1]);
            strbuf_puts(&mj, "\"");
        }
        strbuf_puts(&mj, "]");
        TokSpec s = {.vocab = vp, .merges = mj.p};
        Tokenizer *t = load_spec(&s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        for (int w = 0; w < 50; w++) {
            char word[48], toks[48][64];
            int len = 1 + (int)(rng_u64(&rng) % 40);
            for (int i = 0; i < len; i++) {
                word[i] = (char)('a' + rng_u64(&rng) % 4);
                toks[i][0] = word[i];
                toks[i][1] = 0;
            }
            word[len] = 0;
            int n = naive_bpe(toks, len, merges, nm);
            for (int pass = 0; pass < 2; pass++) { // the second pass hits the word cache
                IntVec ids = {0};
                CU_ASSERT_EQUAL(tokenizer_encode(t, word, (size_t)len, 0, &ids), 0);
                int same = ids.n == n;
                for (int i = 0; same && i < n; i++)
                    same = ids.v[i] == tokenizer_token_id(t, toks[i]);
                CU_ASSERT(same);
                intvec_free(&ids);
            }
        }
        tokenizer_free(t);
        free(mj.p);
    }
}

// A word of 20,000 letters: the merge loop stays O(n log n) and merges all the way up.
static void test_long_word(void) {
    static const char *const vocab[] = {"a", "aa", "aaaa", "aaaaaaaa", NULL};
    TokSpec s = {.vocab = vocab, .merges = "[\"a a\", \"aa aa\", \"aaaa aaaa\"]"};
    Tokenizer *t = load_spec(&s);
    size_t n = 20000;
    char *text = mallocCheck(n + 1);
    memset(text, 'a', n);
    text[n] = 0;
    IntVec ids = {0};
    CU_ASSERT_EQUAL(tokenizer_encode(t, text, n, 0, &ids), 0);
    CU_ASSERT_EQUAL(ids.n, (int)(n / 8));
    CU_ASSERT_EQUAL(ids.v[0], tokenizer_token_id(t, "aaaaaaaa"));
    intvec_free(&ids);
    free(text);
    tokenizer_free(t);
}

// ---- pre-tokenizers ----

#define SPLIT_DASH(behavior, invert)                                                               \
    "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"" behavior            \
    "\", \"invert\": " invert "}"

static void expect_split(const char *pre, const char *text, const char *want) {
    TokSpec s = {.vocab = ABC_VOCAB,
                 .merges = "[\"- b\", \"a -b\", \"a -\", \"- -\", \"1 2\", \"12 3\"]",
                 .pre = pre};
    Tokenizer *t = load_spec(&s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_tokens(t, text, 0, want);
    tokenizer_free(t);
}

// The five behaviours of tokenizers' Split. Without the split, "a-b" would merge whole.
static void test_split_behaviors(void) {
    expect_split(NULL, "a-b", "a-b");
    expect_split(SPLIT_DASH("Isolated", "false"), "a-b", "a|-|b");
    expect_split(SPLIT_DASH("Removed", "false"), "a-b", "a|b");
    expect_split(SPLIT_DASH("MergedWithPrevious", "false"), "a-b", "a-|b");
    expect_split(SPLIT_DASH("MergedWithNext", "false"), "a-b", "a|-b");
    expect_split(SPLIT_DASH("Contiguous", "false"), "a--b", "a|--|b");
    expect_split(SPLIT_DASH("Isolated", "false"), "a--b", "a|-|-|b");
    // invert: the pattern names what to keep, so Removed drops everything else
    expect_split(SPLIT_DASH("Removed", "true"), "a-b", "-");
    // a regex pattern, with a lookahead
    expect_split("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a(?=-)\"}, \"behavior\": "
                 "\"Isolated\", \"invert\": false}",
                 "a-b", "a|-b");
}

// A Split regex that backtracks without end (a hostile tokenizer.json) stops at PCRE2's match
// limit with one error line, in about a second, instead of hanging.
static void test_split_regex_match_limit(void) {
    TokSpec s = {.vocab = ABC_VOCAB,
                 .pre = "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a|aa)+$\"}, "
                        "\"behavior\": \"Isolated\", \"invert\": false}"};
    char *json = spec_json(&s), *dir = test_tmpdir(), *path = path_join(dir, "tokenizer.json");
    test_write_file(path, json, strlen(json));
    char cmd[1024], text[64];
    memset(text, 'a', 60);
    strcpy(text + 60, "b");
    snprintf(cmd, sizeof cmd, "./gemc tokenize --tokenizer %s --text %s", dir, text);
    test_expect_cli_error(cmd, "a pre-tokenizer regex failed on the text at byte 0: match limit",
                          "HINT");
    free(json), free(dir), free(path);
}

static void test_digits(void) {
    expect_split("{\"type\": \"Digits\", \"individual_digits\": true}", "a123", "a|1|2|3");
    expect_split("{\"type\": \"Digits\", \"individual_digits\": false}", "a123", "a|123");
    expect_split("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", "
                 "\"individual_digits\": false}, " SPLIT_DASH("Isolated", "false") "]}",
                 "12-3", "12|-|3");
}

// A byte-level tokenizer whose vocabulary is the 256 byte characters plus a few merges.
static char *bytelevel_json(const char *pre, const char *extra_vocab, const char *merges,
                            const char *added, const char *normalizer, const char *post) {
    StrBuf b = {0};
    strbuf_puts(&b, "{\"added_tokens\": ");
    strbuf_puts(&b, added ? added : "[]");
    strbuf_puts(&b, ", \"normalizer\": ");
    strbuf_puts(&b, normalizer ? normalizer : "null");
    strbuf_puts(&b, ", \"pre_tokenizer\": ");
    strbuf_puts(&b, pre);
    strbuf_puts(&b, ", \"post_processor\": ");
    strbuf_puts(&b, post ? post : "null");
    strbuf_puts(&b, ", \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {");
    for (int i = 0; i < 256; i++) {
        char c[5] = {0}, num[32];
        utf8_encode(bytelevel_char((unsigned char)i), c);
        if (i) strbuf_puts(&b, ", ");
        strbuf_json_string(&b, c);
        snprintf(num, sizeof num, ": %d", i);
        strbuf_puts(&b, num);
    }
    if (extra_vocab) strbuf_puts(&b, extra_vocab);
    strbuf_puts(&b, "}, \"merges\": ");
    strbuf_puts(&b, merges ? merges : "[]");
    strbuf_puts(&b, "}}");
    return b.p;
}

static Tokenizer *load_bytelevel(const char *pre, const char *extra_vocab, const char *merges,
                                 const char *added, const char *normalizer, const char *post) {
    char *json = bytelevel_json(pre, extra_vocab, merges, added, normalizer, post);
    Tokenizer *t = load_text(json);
    free(json);
    return t;
}

static void expect_ids(Tokenizer *t, const char *text, int add_special, const int *want, int n) {
    IntVec ids = {0};
    CU_ASSERT_EQUAL_FATAL(tokenizer_encode(t, text, strlen(text), add_special, &ids), 0);
    int same = ids.n == n;
    for (int i = 0; same && i < n; i++) same = ids.v[i] == want[i];
    CU_ASSERT(same);
    if (!same) {
        fprintf(stderr, "\n  '%s': got", text);
        for (int i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fprintf(stderr, "\n");
    }
    intvec_free(&ids);
}

static void test_bytelevel(void) {
    // "Ġh" (256) and "Ġhi" (257): a space joins the word after it
    const char *extra = ", \"\xC4\xA0h\": 256, \"\xC4\xA0hi\": 257";
    const char *merges = "[\"\xC4\xA0 h\", \"\xC4\xA0h i\"]";
    Tokenizer *t = load_bytelevel("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                                  "\"use_regex\": true}",
                                  extra, merges, NULL, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_ids(t, "hi hi", 0, (int[]){'h', 'i', 257}, 3);
    expect_ids(t, "\n", 0, (int[]){'\n'}, 1);
    // GPT-2's split keeps the last space of a run for the word after it
    expect_ids(t, "a   hi", 0, (int[]){'a', ' ', ' ', 257}, 4);
    tokenizer_free(t);
    // add_prefix_space: every piece that does not start with a space gets one
    t = load_bytelevel("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}",
                       extra, merges, NULL, NULL, NULL);
    expect_ids(t, "hi", 0, (int[]){257}, 1);
    tokenizer_free(t);
    // without use_regex the whole text is one word: the merges see "hiĠhi"
    t = load_bytelevel("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": "
                       "false}",
                       extra, merges, NULL, NULL, NULL);
    expect_ids(t, "hi hi", 0, (int[]){'h', 'i', 257}, 3);
    tokenizer_free(t);
}

static const char BL_PRE[] =
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";

#define ADDED(id, content, special, normalized, lstrip, rstrip, single)                            \
    "{\"id\": " #id ", \"content\": \"" content "\", \"special\": " special                        \
    ", \"normalized\": " normalized ", \"lstrip\": " lstrip ", \"rstrip\": " rstrip                \
    ", \"single_word\": " single "}"

static void test_added_tokens(void) {
    const char *added =
        "[" ADDED(256, "<s>", "true", "false", "false", "false", "false") ", " ADDED(
            257, "<s>x", "true", "false", "false", "false",
            "false") ", " ADDED(258, "[L]", "false", "false", "true", "false",
                                "false") ", " ADDED(259, "[R]", "false", "false", "false", "true",
                                                    "false") ", " ADDED(260, "word", "false",
                                                                        "false", "false", "false",
                                                                        "true") "]";
    Tokenizer *t = load_bytelevel(BL_PRE, NULL, NULL, added, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    // inside a word, and leftmost-longest: "<s>x" wins over "<s>"
    expect_ids(t, "a<s>b", 0, (int[]){'a', 256, 'b'}, 3);
    expect_ids(t, "<s>xy<s>", 0, (int[]){257, 'y', 256}, 3);
    expect_ids(t, "<s", 0, (int[]){'<', 's'}, 2);
    // lstrip takes the spaces before, rstrip the spaces after
    expect_ids(t, "a  [L]b", 0, (int[]){'a', 258, 'b'}, 3);
    expect_ids(t, "a[R]  b", 0, (int[]){'a', 259, 'b'}, 3);
    expect_ids(t, "a [R] b", 0, (int[]){'a', ' ', 259, 'b'}, 4);
    // single_word: only between non-word characters
    expect_ids(t, "a word.", 0, (int[]){'a', ' ', 260, '.'}, 4);
    expect_ids(t, "swordfish", 0, (int[]){'s', 'w', 'o', 'r', 'd', 'f', 'i', 's', 'h'}, 9);
    CU_ASSERT_EQUAL(tokenizer_token_id(t, "<s>x"), 257);
    CU_ASSERT(tokenizer_is_special(t, 256));
    CU_ASSERT(!tokenizer_is_special(t, 258));
    CU_ASSERT_EQUAL(tokenizer_vocab_size(t), 261);
    tokenizer_free(t);
}

// NFC composes "e" + U+0301 into U+00E9 before the bytes are mapped; added tokens marked
// normalized: false are matched on the raw text, before it.
static void test_nfc(void) {
    const char *added =
        "[" ADDED(256, "e\xCC\x81!", "true", "false", "false", "false", "false") "]";
    Tokenizer *t = load_bytelevel(BL_PRE, NULL, NULL, added, "{\"type\": \"NFC\"}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_ids(t, "e\xCC\x81", 0, (int[]){0xC3, 0xA9}, 2);
    expect_ids(t, "\xC3\xA9", 0, (int[]){0xC3, 0xA9}, 2);
    expect_ids(t, "e\xCC\x81!", 0, (int[]){256}, 1);
    // U+11A7 after a Hangul syllable stays (utf8proc alone would compose it away), and a mark
    // newer than Unicode 9.0 (U+1DF6) is not reordered, as in tokenizers' normalizer
    expect_ids(t, "\xEA\xB0\x80\xE1\x86\xA7", 0, (int[]){0xEA, 0xB0, 0x80, 0xE1, 0x86, 0xA7}, 6);
    expect_ids(t, "e\xE1\xB7\xB6\xCC\x81", 0, (int[]){'e', 0xE1, 0xB7, 0xB6, 0xCC, 0x81}, 6);
    tokenizer_free(t);
    // without the normalizer the decomposed form stays three bytes
    t = load_bytelevel(BL_PRE, NULL, NULL, NULL, NULL, NULL);
    expect_ids(t, "e\xCC\x81", 0, (int[]){'e', 0xCC, 0x81}, 3);
    tokenizer_free(t);
    // an added token marked normalized: true matches the normalized text
    const char *added_n =
        "[" ADDED(256, "\xC3\xA9", "false", "true", "false", "false", "false") "]";
    t = load_bytelevel(BL_PRE, NULL, NULL, added_n, "{\"type\": \"NFC\"}", NULL);
    expect_ids(t, "xe\xCC\x81", 0, (int[]){'x', 256}, 2);
    tokenizer_free(t);
}

static void test_post_processor(void) {
    const char *added =
        "[" ADDED(256, "<bos>", "true", "false", "false", "false",
                  "false") ", " ADDED(257, "<eos>", "true", "false", "false", "false", "false") "]";
    const char *templ =
        "{\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, {\"type\": "
        "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<bos>\", "
        "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": "
        "{\"id\": \"<eos>\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<bos>\": "
        "{\"id\": \"<bos>\", \"ids\": [256], \"tokens\": [\"<bos>\"]}, \"<eos>\": {\"id\": "
        "\"<eos>\", \"ids\": [257], \"tokens\": [\"<eos>\"]}}}]}";
    Tokenizer *t = load_bytelevel(BL_PRE, NULL, NULL, added, NULL, templ);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_ids(t, "hi", 1, (int[]){256, 'h', 'i', 257}, 4);
    expect_ids(t, "hi", 0, (int[]){'h', 'i'}, 2);
    expect_ids(t, "", 1, (int[]){256, 257}, 2);
    tokenizer_free(t);
    t = load_bytelevel(BL_PRE, NULL, NULL, added, NULL,
                       "{\"type\": \"RobertaProcessing\", \"sep\": [\"<eos>\", 257], \"cls\": "
                       "[\"<bos>\", 256]}");
    expect_ids(t, "x", 1, (int[]){256, 'x', 257}, 3);
    tokenizer_free(t);
}

static void test_decode(void) {
    const char *added =
        "[" ADDED(256, "<|im_end|>", "true", "false", "false", "false", "false") "]";
    const char *extra = ", \"\xC4\xA0h\": 257, \"\xC4\xA0hi\": 258";
    Tokenizer *t =
        load_bytelevel(BL_PRE, extra, "[\"\xC4\xA0 h\", \"\xC4\xA0h i\"]", added, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    const char *text = "say hi \xF0\x9F\x98\x80 <|im_end|>\r\n\tok";
    IntVec ids = {0};
    CU_ASSERT_EQUAL(tokenizer_encode(t, text, strlen(text), 0, &ids), 0);
    StrBuf b = {0};
    CU_ASSERT_EQUAL(tokenizer_decode(t, ids.v, ids.n, 0, &b), 0);
    CU_ASSERT_STRING_EQUAL(b.p, text);
    b.len = 0;
    CU_ASSERT_EQUAL(tokenizer_decode(t, ids.v, ids.n, 1, &b), 0);
    CU_ASSERT_STRING_EQUAL(b.p, "say hi \xF0\x9F\x98\x80 \r\n\tok");
    // raw bytes: a cut through the emoji gives its first bytes
    b.len = 0;
    int cut[] = {0xF0, 0x9F};
    CU_ASSERT_EQUAL(tokenizer_decode(t, cut, 2, 0, &b), 0);
    CU_ASSERT_EQUAL(b.len, 2);
    CU_ASSERT(!memcmp(b.p, "\xF0\x9F", 2));
    b.len = 0;
    int bad[] = {'a', 999};
    CU_ASSERT_EQUAL(tokenizer_decode(t, bad, 2, 0, &b), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "999"));
    free(b.p);
    intvec_free(&ids);
    tokenizer_free(t);
}

static void test_encode_rejects_invalid_utf8(void) {
    Tokenizer *t = load_bytelevel(BL_PRE, NULL, NULL, NULL, NULL, NULL);
    IntVec ids = {0};
    CU_ASSERT_EQUAL(tokenizer_encode(t, "ab\xFF", 3, 0, &ids), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "UTF-8"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "byte 2"));
    CU_ASSERT_EQUAL(tokenizer_encode(t, "", 0, 0, &ids), 0);
    CU_ASSERT_EQUAL(ids.n, 0);
    intvec_free(&ids);
    tokenizer_free(t);
}

// ---- loading errors: one line naming the file and what is wrong ----

static void expect_load_error(const char *json, const char *needle) {
    Tokenizer *t = load_text(json);
    CU_ASSERT_PTR_NULL(t);
    tokenizer_free(t);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "tokenizer.json"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), needle));
    if (!strstr(gemc_error(), needle)) fprintf(stderr, "\n  error was: %s\n", gemc_error());
}

static void test_load_errors(void) {
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},\n \"merges\": [}",
                      "not valid JSON (syntax error at line 2");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "'Unigram'");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": {\"type\": "
                      "\"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "'Metaspace'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                      "\"merges\": [\"a b\"]}}",
                      "merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
                      "[\"ab\"]}}",
                      "merges[0]");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": "
                      "\"(a\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "PCRE2");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, "
                      "\"merges\": []}}",
                      "dropout");
    expect_load_error("[1, 2]", "not a tokenizer.json");

    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NULL(tokenizer_load(dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "no tokenizer.json"));
    char *missing = path_join(dir, "nope.json");
    CU_ASSERT_PTR_NULL(tokenizer_load(missing));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "nope.json"));
    free(missing);
    free(dir);
}

// A model folder is read through its tokenizer.json.
static void test_load_folder(void) {
    char *json = bytelevel_json(BL_PRE, NULL, NULL, NULL, NULL, NULL);
    char *dir = test_tmpdir();
    char *path = path_join(dir, "tokenizer.json");
    test_write_file(path, json, strlen(json));
    Tokenizer *a = tokenizer_load(dir), *b = tokenizer_load(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_STRING_EQUAL(tokenizer_path(a), path);
    CU_ASSERT_EQUAL(tokenizer_hash(a), tokenizer_hash(b));
    tokenizer_free(a);
    tokenizer_free(b);
    free(path);
    free(dir);
    free(json);
}

void register_utf8_tests(void) {
    static const TestCase tests[] = {
        {"decode, encode and validation", test_utf8_decode},
        {"lossy conversion: one U+FFFD per maximal subpart", test_utf8_lossy},
        {"byte-level alphabet", test_bytelevel_alphabet},
        {0},
    };
    add_suite("utf8", tests);
}

void register_tokenizer_tests(void) {
    static const TestCase tests[] = {
        {"merges apply lowest rank first, both merge forms", test_merge_order},
        {"overlapping pairs merge leftmost first", test_overlapping_pairs},
        {"ignore_merges takes whole words from the vocabulary", test_ignore_merges},
        {"BPE agrees with the quadratic reference on random merges", test_bpe_matches_reference},
        {"a 20,000-letter word", test_long_word},
        {"Split: the five behaviours, invert, regex", test_split_behaviors},
        {"Split: a regex that backtracks without end is one error", test_split_regex_match_limit},
        {"Digits pre-tokenizer", test_digits},
        {"ByteLevel: mapping, GPT-2 split, prefix space", test_bytelevel},
        {"added tokens: leftmost-longest, lstrip, rstrip, single_word", test_added_tokens},
        {"NFC normalizer and normalized added tokens", test_nfc},
        {"post-processors add BOS/EOS only when asked", test_post_processor},
        {"decode: round trip, skip_special, raw bytes, bad ids", test_decode},
        {"encode refuses invalid UTF-8", test_encode_rejects_invalid_utf8},
        {"load errors name the file and the problem", test_load_errors},
        {"a model folder loads its tokenizer.json", test_load_folder},
        {0},
    };
    add_suite("tokenizer", tests);
}
