// JSONL data as a user writes it: both pair forms, prompts with and without answers, and one
// "FILE:LINE: what is wrong" line for every kind of defect, with nothing left allocated; then
// the token ids dataset_tokenize makes through each chat template, and the context checks.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "text/chat_template.h"
#include "base/common.h"
#include "text/data.h"
#include "tests.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

// ---- helpers

// Writes `text` to a fresh DIR/data.jsonl; returns the path.
static char *data_file(const char *text, size_t n) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "data.jsonl");
    test_write_file(path, text, n);
    free(dir);
    return path;
}

static int load_text(Dataset *ds, const char *text, DataKind kind, char **path_out) {
    char *path = data_file(text, strlen(text));
    int rc = dataset_load(ds, path, kind, 0);
    if (rc != 0) fprintf(stderr, "\n  %s\n", gemc_error());
    if (path_out)
        *path_out = path;
    else
        free(path);
    return rc;
}

static int error_has(const char *needle) {
    int ok = strstr(gemc_error(), needle) != NULL;
    if (!ok) fprintf(stderr, "\n  error [%s] lacks [%s]\n", gemc_error(), needle);
    return ok;
}

static int is_zero(const Dataset *ds) {
    return !ds->path && !ds->rec && ds->n == 0;
}

// Loads bytes[0..n) and checks the failure contract: -1, nothing left in ds, one error line
// that begins with "PATH:LINE: " (or "PATH: " when line is 0) and holds every needle
// (NULL-terminated).
static void expect_error_n(const char *bytes, size_t n, DataKind kind, long max, int line, ...) {
    char *path = data_file(bytes, n);
    Dataset ds;
    memset(&ds, 0x5a, sizeof ds);
    CU_ASSERT_EQUAL(dataset_load(&ds, path, kind, max), -1);
    CU_ASSERT(is_zero(&ds));
    const char *err = gemc_error();
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    char prefix[4200];
    if (line)
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    else
        snprintf(prefix, sizeof prefix, "%s: ", path);
    int ok = strncmp(err, prefix, strlen(prefix)) == 0;
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  error [%s] does not begin with [%s]\n", err, prefix);
    va_list ap;
    va_start(ap, line);
    for (const char *needle; (needle = va_arg(ap, const char *));) CU_ASSERT(error_has(needle));
    va_end(ap);
    free(path);
}

#define expect_error(text, kind, line, ...)                                                        \
    expect_error_n(text, strlen(text), kind, 0, line, __VA_ARGS__, (const char *)NULL)

#define PAIR "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n"

// ---- loading

static void test_pairs(void) {
    Dataset ds;
    char *path;
    CU_ASSERT_EQUAL_FATAL(load_text(&ds,
                                    "{\"prompt\": \"What is 2+2?\", \"chosen\": \"4\", "
                                    "\"rejected\": \"5\"}\n"
                                    "\n"
                                    "{\"rejected\": \"bad\\nanswer\", \"id\": 7, \"meta\": "
                                    "{\"src\": [1, 2]}, \"prompt\": \"caf\\u00e9 \xe2\x98\x83\", "
                                    "\"chosen\": \"\"}\n",
                                    DATA_PAIRS, &path),
                          0);
    CU_ASSERT_STRING_EQUAL(ds.path, path);
    CU_ASSERT_EQUAL(ds.kind, DATA_PAIRS);
    CU_ASSERT_EQUAL_FATAL(ds.n, 2);
    CU_ASSERT_EQUAL(ds.rec[0].line, 1);
    CU_ASSERT_STRING_EQUAL(ds.rec[0].prompt, "What is 2+2?");
    CU_ASSERT_STRING_EQUAL(ds.rec[0].chosen, "4");
    CU_ASSERT_STRING_EQUAL(ds.rec[0].rejected, "5");
    CU_ASSERT_PTR_NULL(ds.rec[0].answer);
    // line numbers count the blank line; escapes are decoded; unknown fields are ignored;
    // field order does not matter; an empty response is a response
    CU_ASSERT_EQUAL(ds.rec[1].line, 3);
    CU_ASSERT_STRING_EQUAL(ds.rec[1].prompt, "caf\xc3\xa9 \xe2\x98\x83");
    CU_ASSERT_STRING_EQUAL(ds.rec[1].chosen, "");
    CU_ASSERT_STRING_EQUAL(ds.rec[1].rejected, "bad\nanswer");
    CU_ASSERT_EQUAL(ds.rec[1].prompt_ids.n, 0);
    dataset_free(&ds);
    CU_ASSERT(is_zero(&ds));
    free(path);
}

static void test_pairs_medical(void) {
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(
        load_text(&ds,
                  "{\"question\": \"Dose of X?\", \"answer_pos\": \"10 mg\", \"answer_neg\": "
                  "\"1 g\"}\n" PAIR,
                  DATA_PAIRS, NULL),
        0);
    CU_ASSERT_EQUAL_FATAL(ds.n, 2);
    CU_ASSERT_STRING_EQUAL(ds.rec[0].prompt, "Dose of X?");
    CU_ASSERT_STRING_EQUAL(ds.rec[0].chosen, "10 mg");
    CU_ASSERT_STRING_EQUAL(ds.rec[0].rejected, "1 g");
    // both forms may sit in one file, a line each
    CU_ASSERT_STRING_EQUAL(ds.rec[1].prompt, "p");
    CU_ASSERT_STRING_EQUAL(ds.rec[1].chosen, "c");
    CU_ASSERT_STRING_EQUAL(ds.rec[1].rejected, "r");
    dataset_free(&ds);
}

static void test_prompts(void) {
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(
        load_text(&ds,
                  "{\"prompt\": \"a\", \"answer\": \"seventy-two\"}\n"
                  "{\"prompt\": \"b\", \"answer\": 72}\n"
                  "{\"prompt\": \"c\",\"answer\":-3.50 }\n"
                  "{\"note\": {\"answer\": 1}, \"x\": \"\\\"answer\\\": 2\", \"answer\": 1e3, "
                  "\"prompt\": \"d\"}\n"
                  "{\"prompt\": \"e\"}\n"
                  "{\"prompt\": \"f\", \"answer\": null, \"chosen\": 5}\n"
                  "{\"question\": \"Natalia sold clips...\", \"answer\": \"She sold 48/2 = 24 "
                  "clips.\\n#### 72\"}\n",
                  DATA_PROMPTS, NULL),
        0);
    CU_ASSERT_EQUAL_FATAL(ds.n, 7);
    CU_ASSERT_EQUAL(ds.kind, DATA_PROMPTS);
    CU_ASSERT_STRING_EQUAL(ds.rec[0].answer, "seventy-two");
    // numbers come back as written, not as a double printed back
    CU_ASSERT_STRING_EQUAL(ds.rec[1].answer, "72");
    CU_ASSERT_STRING_EQUAL(ds.rec[2].answer, "-3.50");
    // the top-level "answer", not one inside a nested object or a string
    CU_ASSERT_STRING_EQUAL(ds.rec[3].answer, "1e3");
    CU_ASSERT_STRING_EQUAL(ds.rec[3].prompt, "d");
    CU_ASSERT_PTR_NULL(ds.rec[4].answer);
    // null is no answer; pair fields mean nothing to prompts
    CU_ASSERT_PTR_NULL(ds.rec[5].answer);
    CU_ASSERT_PTR_NULL(ds.rec[5].chosen);
    CU_ASSERT_PTR_NULL(ds.rec[5].rejected);
    // GSM8K's own form
    CU_ASSERT_STRING_EQUAL(ds.rec[6].prompt, "Natalia sold clips...");
    CU_ASSERT_STRING_EQUAL(ds.rec[6].answer, "She sold 48/2 = 24 clips.\n#### 72");
    for (int i = 0; i < ds.n; i++) CU_ASSERT_EQUAL(ds.rec[i].line, i + 1);
    dataset_free(&ds);
}

static void test_blank_lines_crlf_bom(void) {
    Dataset ds;
    // CRLF line ends, blank and whitespace-only lines, a BOM, no newline after the last line
    const char *text = "\xef\xbb\xbf{\"prompt\": \"p1\", \"chosen\": \"c1\", \"rejected\": "
                       "\"r1\"}\r\n"
                       "\r\n"
                       "   \t \r\n"
                       "\n"
                       "{\"prompt\": \"p2\", \"chosen\": \"c2\", \"rejected\": \"r2\"}  \r\n"
                       "{\"prompt\": \"p3\", \"chosen\": \"c3\", \"rejected\": \"r3\"}";
    CU_ASSERT_EQUAL_FATAL(load_text(&ds, text, DATA_PAIRS, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(ds.n, 3);
    CU_ASSERT_STRING_EQUAL(ds.rec[0].prompt, "p1");
    CU_ASSERT_STRING_EQUAL(ds.rec[0].rejected, "r1");
    CU_ASSERT_EQUAL(ds.rec[1].line, 5);
    CU_ASSERT_STRING_EQUAL(ds.rec[1].rejected, "r2");
    CU_ASSERT_EQUAL(ds.rec[2].line, 6);
    CU_ASSERT_STRING_EQUAL(ds.rec[2].rejected, "r3");
    dataset_free(&ds);
}

static void test_long_lines(void) {
    // lines far longer than the reader's buffer arrive whole
    size_t big = 300000;
    StrBuf b = {0};
    for (int k = 0; k < 2; k++) {
        strbuf_puts(&b, "{\"prompt\": \"");
        for (size_t i = 0; i < big; i++) strbuf_put(&b, k ? "b" : "a", 1);
        strbuf_puts(&b, "\", \"chosen\": \"c\", \"rejected\": \"r\"}\n");
    }
    char *path = data_file(b.p, b.len);
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(dataset_load(&ds, path, DATA_PAIRS, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ds.n, 2);
    CU_ASSERT_EQUAL(strlen(ds.rec[0].prompt), big);
    CU_ASSERT_EQUAL(strlen(ds.rec[1].prompt), big);
    CU_ASSERT(ds.rec[1].prompt[0] == 'b' && ds.rec[1].prompt[big - 1] == 'b');
    CU_ASSERT_STRING_EQUAL(ds.rec[1].chosen, "c");
    dataset_free(&ds);
    free(path);

    // a line of exactly the limit passes, with or without "\r"; one byte more does not
    const char *line = "{\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\"}"; // 41 bytes
    long len = (long)strlen(line);
    char text[256];
    snprintf(text, sizeof text, "%s\r\n%s\n%s", line, line, line);
    path = data_file(text, strlen(text));
    CU_ASSERT_EQUAL(dataset_load(&ds, path, DATA_PAIRS, len), 0);
    CU_ASSERT_EQUAL(ds.n, 3);
    dataset_free(&ds);
    free(path);
    char msg[128];
    snprintf(msg, sizeof msg, "line is %ld bytes, longer than the limit of %ld", len, len - 1);
    expect_error_n(text, strlen(text), DATA_PAIRS, len - 1, 1, msg, "HINT", (const char *)NULL);
    free(b.p);
}

// ---- each defect

static void test_error_too_long(void) {
    // counted to its end without being held: 300000 bytes against a limit of 1000, on line 2
    StrBuf b = {0};
    strbuf_puts(&b, PAIR);
    for (int i = 0; i < 300000; i++) strbuf_put(&b, "x", 1);
    strbuf_puts(&b, "\n" PAIR);
    expect_error_n(b.p, b.len, DATA_PAIRS, 1000, 2,
                   "line is 300000 bytes, longer than the limit of 1000", "max_line_bytes",
                   (const char *)NULL);
    free(b.p);
    // the default limit is 1 MiB
    b = (StrBuf){0};
    for (int i = 0; i < DATA_MAX_LINE_BYTES_DEFAULT + 1; i++) strbuf_put(&b, " ", 1);
    char msg[128];
    snprintf(msg, sizeof msg, "line is %d bytes, longer than the limit of %d",
             DATA_MAX_LINE_BYTES_DEFAULT + 1, DATA_MAX_LINE_BYTES_DEFAULT);
    expect_error_n(b.p, b.len, DATA_PAIRS, 0, 1, msg, (const char *)NULL);
    free(b.p);
}

static void test_error_malformed(void) {
    // a missing comma: the column points at what cJSON could not take
    expect_error(PAIR "{\"prompt\": \"a\", \"chosen\": \"b\" \"rejected\": \"c\"}\n" PAIR,
                 DATA_PAIRS, 2, "malformed JSON at column 31", "near '\"rejected\": \"c\"}'");
    // columns count characters, not bytes
    expect_error("{\"prompt\": \"\xc3\xa9\xc3\xa9\", \"chosen\" \"b\"}\n", DATA_PAIRS, 1,
                 "malformed JSON at column 27");
    // cut short
    expect_error(PAIR PAIR "{\"prompt\": \"a\", \"chosen\": \"b\"\n", DATA_PAIRS, 3,
                 "malformed JSON", "ends before");
    // two objects on one line, or trailing text
    expect_error("{\"prompt\": \"a\"} {\"prompt\": \"b\"}\n", DATA_PROMPTS, 1,
                 "malformed JSON at column 17", "near '{\"prompt\": \"b\"}'");
    // single quotes, as Python's repr writes them
    expect_error("{'prompt': 'a'}\n", DATA_PROMPTS, 1, "malformed JSON at column");
}

static void test_error_utf8(void) {
    // Latin-1 é
    expect_error(PAIR "{\"prompt\": \"caf\xe9\", \"chosen\": \"c\", \"rejected\": \"r\"}\n",
                 DATA_PAIRS, 2, "invalid UTF-8", "column 16", "0xE9");
    // a UTF-8 sequence cut short, after a valid one: column counts characters, byte counts
    // bytes
    expect_error("{\"prompt\": \"\xe2\x98\x83\xe2\x98\"}\n", DATA_PROMPTS, 1, "invalid UTF-8",
                 "column 14", "byte 16");
    // a NUL byte is not text
    expect_error_n("{\"prompt\": \"a\0b\"}\n", 18, DATA_PROMPTS, 0, 1, "NUL byte at column 14",
                   (const char *)NULL);
    // nor is an escaped one, which would cut the text short
    expect_error("{\"prompt\": \"a\\u0000b\"}\n", DATA_PROMPTS, 1, "\\u0000",
                 "(a NUL character) at column 14");
    // an escaped backslash before "u0000" is plain text
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(load_text(&ds, "{\"prompt\": \"a\\\\u0000b\"}\n", DATA_PROMPTS, NULL), 0);
    CU_ASSERT_STRING_EQUAL(ds.rec[0].prompt, "a\\u0000b");
    dataset_free(&ds);
}

static void test_error_duplicate(void) {
    // cJSON keeps the first, Python's json the last: a file that says both is refused
    expect_error(PAIR "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\", \"chosen\": "
                      "\"d\"}\n",
                 DATA_PAIRS, 2, "field \"chosen\" appears more than once");
    expect_error("{\"prompt\": \"a\", \"answer\": 1, \"answer\": 2}\n", DATA_PROMPTS, 1,
                 "field \"answer\" appears more than once");
    // fields gemc does not read may repeat
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(
        load_text(&ds, "{\"id\": 1, \"prompt\": \"a\", \"id\": 2}\n", DATA_PROMPTS, NULL), 0);
    dataset_free(&ds);
}

static void test_error_not_object(void) {
    expect_error(PAIR "[\"p\", \"c\", \"r\"]\n", DATA_PAIRS, 2, "expected a JSON object",
                 "found an array");
    expect_error("\"just a prompt\"\n", DATA_PROMPTS, 1, "expected a JSON object",
                 "found a string");
    expect_error(PAIR PAIR PAIR "42\n", DATA_PAIRS, 4, "found a number");
    expect_error("null\n", DATA_PAIRS, 1, "found null");
}

static void test_error_missing(void) {
    expect_error(PAIR "{\"prompt\": \"p\", \"rejected\": \"r\"}\n", DATA_PAIRS, 2,
                 "missing field \"chosen\"", "HINT");
    expect_error("{\"prompt\": \"p\", \"chosen\": \"c\"}\n", DATA_PAIRS, 1,
                 "missing field \"rejected\"");
    expect_error("{\"chosen\": \"c\", \"rejected\": \"r\"}\n", DATA_PAIRS, 1,
                 "missing field \"prompt\"");
    expect_error("{\"id\": 1}\n", DATA_PAIRS, 1, "missing field \"prompt\"", "\"question\"");
    expect_error("{\"question\": \"q\", \"answer_pos\": \"a\"}\n", DATA_PAIRS, 1,
                 "missing field \"answer_neg\"");
    // a misspelt key is named, with the fix
    expect_error("{\"prompt\": \"p\", \"choosen\": \"c\", \"rejected\": \"r\"}\n", DATA_PAIRS, 1,
                 "missing field \"chosen\"", "\"choosen\"", "rename it to \"chosen\"");
    // ... but another real field is not taken for a misspelling
    expect_error("{\"question\": \"q\", \"answer_pos\": \"a\"}\n", DATA_PAIRS, 1, "answer_neg");
    CU_ASSERT_PTR_NULL(strstr(gemc_error(), "rename"));
    expect_error("{\"answer\": \"4\"}\n", DATA_PROMPTS, 1, "missing field \"prompt\"");
    expect_error("{\"Prompt\": \"p\"}\n", DATA_PROMPTS, 1, "missing field \"prompt\"",
                 "\"Prompt\"");
}

static void test_error_wrong_type(void) {
    expect_error("{\"prompt\": \"p\", \"chosen\": 5, \"rejected\": \"r\"}\n", DATA_PAIRS, 1,
                 "field \"chosen\" is a number, expected a string");
    expect_error(PAIR "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": null}\n", DATA_PAIRS, 2,
                 "field \"rejected\" is null, expected a string");
    expect_error("{\"prompt\": [\"p\"], \"chosen\": \"c\", \"rejected\": \"r\"}\n", DATA_PAIRS, 1,
                 "field \"prompt\" is an array, expected a string");
    expect_error("{\"question\": {\"text\": \"q\"}, \"answer_pos\": \"a\", \"answer_neg\": "
                 "\"b\"}\n",
                 DATA_PAIRS, 1, "field \"question\" is an object, expected a string");
    expect_error("{\"prompt\": \"p\", \"answer\": true}\n", DATA_PROMPTS, 1,
                 "field \"answer\" is a boolean, expected a string or a number");
    expect_error("{\"prompt\": \"p\"}\n{\"prompt\": \"q\", \"answer\": [72]}\n", DATA_PROMPTS, 2,
                 "field \"answer\" is an array");
    expect_error("{\"prompt\": 3}\n", DATA_PROMPTS, 1, "field \"prompt\" is a number");
}

static void test_error_mixed_forms(void) {
    // which text is the prompt would be a guess
    expect_error("{\"prompt\": \"p\", \"answer_pos\": \"a\", \"answer_neg\": \"b\"}\n", DATA_PAIRS,
                 1, "mixes the two pair forms", "\"prompt\"", "\"answer_pos\"");
    expect_error(PAIR "{\"question\": \"q\", \"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": "
                      "\"r\"}\n",
                 DATA_PAIRS, 2, "mixes the two pair forms", "\"question\"");
    expect_error("{\"prompt\": \"p\", \"question\": \"q\"}\n", DATA_PROMPTS, 1, "\"prompt\"",
                 "\"question\"");
}

static void test_error_empty(void) {
    expect_error("", DATA_PAIRS, 0, "empty file (no JSON lines)");
    expect_error("\n\n   \r\n\t\n", DATA_PAIRS, 0, "empty file (no JSON lines)");
    expect_error("\xef\xbb\xbf\n", DATA_PROMPTS, 0, "empty file", "\"prompt\"");
}

static void test_error_files(void) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "nope.jsonl");
    Dataset ds;
    CU_ASSERT_EQUAL(dataset_load(&ds, path, DATA_PAIRS, 0), -1);
    CU_ASSERT(is_zero(&ds));
    char want[4200];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    CU_ASSERT_STRING_EQUAL(gemc_error(), want);
    // a folder given for the file
    CU_ASSERT_EQUAL(dataset_load(&ds, dir, DATA_PAIRS, 0), -1);
    CU_ASSERT(is_zero(&ds));
    CU_ASSERT(error_has(dir));
    CU_ASSERT(error_has("Is a directory"));
    free(path);
    free(dir);
}

// ---- tokens

// The ids of ASCII text under the test tokenizer: its bytes.
static void push_bytes(IntVec *v, const char *s) {
    for (; *s; s++) intvec_push(v, (unsigned char)*s);
}

static int ids_equal(const IntVec *got, const IntVec *want) {
    int ok = got->n == want->n && (got->n == 0 || !memcmp(got->v, want->v, sizeof(int) * got->n));
    if (!ok) {
        fprintf(stderr, "\n  got  ");
        for (int i = 0; i < got->n; i++) fprintf(stderr, "%d ", got->v[i]);
        fprintf(stderr, "\n  want ");
        for (int i = 0; i < want->n; i++) fprintf(stderr, "%d ", want->v[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

enum { BOT = 256, EOT = 257, IM_START = 258, IM_END = 259 };

// <|im_start|>ROLE\nTEXT<|im_end|>\n, or with text NULL the open assistant header
static void push_chatml_turn(IntVec *v, const char *role, const char *text) {
    intvec_push(v, IM_START);
    push_bytes(v, role);
    push_bytes(v, "\n");
    if (!text) return;
    push_bytes(v, text);
    intvec_push(v, IM_END);
    push_bytes(v, "\n");
}

static void test_tokenize_chatml(void) {
    Tokenizer *tok = test_byte_tokenizer();
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(load_text(&ds,
                                    "{\"prompt\": \"Hi\", \"chosen\": \"Yes\", \"rejected\": "
                                    "\"No\"}\n",
                                    DATA_PAIRS, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(dataset_tokenize(&ds, tok, CHAT_CHATML, "Be brief.", EOT, 4096), 0);
    IntVec want = {0};
    push_chatml_turn(&want, "system", "Be brief.");
    push_chatml_turn(&want, "user", "Hi");
    push_chatml_turn(&want, "assistant", NULL);
    CU_ASSERT(ids_equal(&ds.rec[0].prompt_ids, &want));
    intvec_free(&want);
    // responses close with <|im_end|>
    push_bytes(&want, "Yes");
    intvec_push(&want, IM_END);
    CU_ASSERT(ids_equal(&ds.rec[0].chosen_ids, &want));
    intvec_free(&want);
    push_bytes(&want, "No");
    intvec_push(&want, IM_END);
    CU_ASSERT(ids_equal(&ds.rec[0].rejected_ids, &want));
    intvec_free(&want);

    // tokenizing again, without a system prompt, replaces the ids
    CU_ASSERT_EQUAL_FATAL(dataset_tokenize(&ds, tok, CHAT_CHATML, NULL, EOT, 4096), 0);
    push_chatml_turn(&want, "user", "Hi");
    push_chatml_turn(&want, "assistant", NULL);
    CU_ASSERT(ids_equal(&ds.rec[0].prompt_ids, &want));
    CU_ASSERT_EQUAL(ds.rec[0].chosen_ids.n, 4);
    intvec_free(&want);
    dataset_free(&ds);
    tokenizer_free(tok);
}

static void test_tokenize_plain(void) {
    Tokenizer *tok = test_byte_tokenizer();
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(load_text(&ds,
                                    "{\"question\": \"Q?\", \"answer_pos\": \"A.\", "
                                    "\"answer_neg\": \"\"}\n" PAIR,
                                    DATA_PAIRS, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(dataset_tokenize(&ds, tok, CHAT_PLAIN, "Sys", EOT, 4096), 0);
    IntVec want = {0};
    push_bytes(&want, "Sys\n\nQ?\n");
    CU_ASSERT(ids_equal(&ds.rec[0].prompt_ids, &want));
    intvec_free(&want);
    // plain responses end with the model's EOS; an empty response is just that
    push_bytes(&want, "A.");
    intvec_push(&want, EOT);
    CU_ASSERT(ids_equal(&ds.rec[0].chosen_ids, &want));
    intvec_free(&want);
    intvec_push(&want, EOT);
    CU_ASSERT(ids_equal(&ds.rec[0].rejected_ids, &want));
    intvec_free(&want);
    push_bytes(&want, "Sys\n\np\n");
    CU_ASSERT(ids_equal(&ds.rec[1].prompt_ids, &want));
    intvec_free(&want);
    dataset_free(&ds);
    tokenizer_free(tok);
}

static void test_tokenize_prompts(void) {
    Tokenizer *tok = test_byte_tokenizer();
    Dataset ds;
    CU_ASSERT_EQUAL_FATAL(
        load_text(&ds, "{\"prompt\": \"  Hi \", \"answer\": 4}\n", DATA_PROMPTS, NULL), 0);
    // prompts need no end-of-turn token: an EOS the tokenizer lacks does not matter, nor does
    // a template whose end token it lacks
    CU_ASSERT_EQUAL_FATAL(dataset_tokenize(&ds, tok, CHAT_LLAMA3, NULL, -1, 4096), 0);
    IntVec want = {0};
    intvec_push(&want, BOT); // <|begin_of_text|> is a special token here too
    push_bytes(&want, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CU_ASSERT(ids_equal(&ds.rec[0].prompt_ids, &want));
    CU_ASSERT_EQUAL(ds.rec[0].chosen_ids.n, 0);
    CU_ASSERT_EQUAL(ds.rec[0].rejected_ids.n, 0);
    intvec_free(&want);
    dataset_free(&ds);
    tokenizer_free(tok);
}

// Tokenizes and checks: -1, the error line begins with PATH:LINE: and has the needles, and no
// ids are left on any record (the text stays loaded).
static void expect_tokenize_error(Dataset *ds, Tokenizer *tok, ChatTemplate t, int n_ctx, int line,
                                  const char *n1, const char *n2) {
    CU_ASSERT_EQUAL(dataset_tokenize(ds, tok, t, NULL, EOT, n_ctx), -1);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s:%d: ", ds->path, line);
    int ok = strncmp(gemc_error(), prefix, strlen(prefix)) == 0;
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  error [%s] does not begin with [%s]\n", gemc_error(), prefix);
    CU_ASSERT(error_has(n1));
    if (n2) CU_ASSERT(error_has(n2));
    for (int i = 0; i < ds->n; i++) {
        CU_ASSERT_PTR_NULL(ds->rec[i].prompt_ids.v);
        CU_ASSERT_PTR_NULL(ds->rec[i].chosen_ids.v);
        CU_ASSERT_PTR_NULL(ds->rec[i].rejected_ids.v);
        CU_ASSERT_PTR_NOT_NULL(ds->rec[i].prompt);
    }
}

static void test_tokenize_context(void) {
    Tokenizer *tok = test_byte_tokenizer();
    Dataset ds;
    // plain: prompt "abc\n" is 4 tokens, so a context of 4 leaves no room for a response
    CU_ASSERT_EQUAL_FATAL(
        load_text(&ds, "{\"prompt\": \"a\"}\n\n{\"prompt\": \"abc\"}\n", DATA_PROMPTS, NULL), 0);
    CU_ASSERT_EQUAL(dataset_tokenize(&ds, tok, CHAT_PLAIN, NULL, EOT, 5), 0);
    CU_ASSERT_EQUAL(ds.rec[1].prompt_ids.n, 4);
    expect_tokenize_error(&ds, tok, CHAT_PLAIN, 4, 3,
                          "prompt is 4 tokens after the chat template; the model's context is 4 "
                          "(max_position_embeddings) and needs room for at least one response "
                          "token",
                          "HINT: shorten it or drop the line");
    dataset_free(&ds);

    // pairs: prompt "P\n" is 2 tokens, chosen "ccc" + EOS 4, rejected "r" + EOS 2
    CU_ASSERT_EQUAL_FATAL(
        load_text(&ds,
                  PAIR "{\"prompt\": \"P\", \"chosen\": \"ccc\", \"rejected\": \"r\"}\n"
                       "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"rrrrr\"}\n",
                  DATA_PAIRS, NULL),
        0);
    CU_ASSERT_EQUAL(dataset_tokenize(&ds, tok, CHAT_PLAIN, NULL, EOT, 8), 0);
    CU_ASSERT_EQUAL(ds.rec[1].prompt_ids.n + ds.rec[1].chosen_ids.n, 6);
    CU_ASSERT_EQUAL(ds.rec[2].prompt_ids.n + ds.rec[2].rejected_ids.n, 8);
    expect_tokenize_error(&ds, tok, CHAT_PLAIN, 5, 2, "prompt + chosen response is 6 tokens",
                          "the model's context is 5");
    expect_tokenize_error(&ds, tok, CHAT_PLAIN, 7, 3, "prompt + rejected response is 8 tokens",
                          "the model's context is 7");
    // the template's end token missing from the tokenizer stops it before any line
    CU_ASSERT_EQUAL(dataset_tokenize(&ds, tok, CHAT_LLAMA3, NULL, EOT, 4096), -1);
    CU_ASSERT(error_has("<|eot_id|>"));
    dataset_free(&ds);
    tokenizer_free(tok);
}

void register_data_tests(void) {
    static const TestCase tests[] = {
        {"pairs", test_pairs},
        {"pairs_medical", test_pairs_medical},
        {"prompts", test_prompts},
        {"blank_lines_crlf_bom", test_blank_lines_crlf_bom},
        {"long_lines", test_long_lines},
        {"error_too_long", test_error_too_long},
        {"error_malformed", test_error_malformed},
        {"error_utf8", test_error_utf8},
        {"error_duplicate", test_error_duplicate},
        {"error_not_object", test_error_not_object},
        {"error_missing", test_error_missing},
        {"error_wrong_type", test_error_wrong_type},
        {"error_mixed_forms", test_error_mixed_forms},
        {"error_empty", test_error_empty},
        {"error_files", test_error_files},
        {"tokenize_chatml", test_tokenize_chatml},
        {"tokenize_plain", test_tokenize_plain},
        {"tokenize_prompts", test_tokenize_prompts},
        {"tokenize_context", test_tokenize_context},
        {NULL, NULL},
    };
    add_suite("data", tests);
}
