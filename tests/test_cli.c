// The gemc binary as a user meets it: help texts, the score format, and one clear error line
// with exit status 1 for every kind of bad input, with nothing half-written left on disk.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "base/common.h"
#include "model/model_config.h"
#include "base/strbuf.h"
#include "tests.h"

#define GEMC "./gemc"

// A tiny llama written by `gemc init` into a fresh directory; returns that directory.
static char *make_model(const char *dtype) {
    char *dir = test_tmpdir();
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    char *json = model_config_to_json(&cfg, "float32");
    char *cfg_path = path_join(dir, "tiny.json");
    test_write_file(cfg_path, json, strlen(json));
    char *model = path_join(dir, "model");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, GEMC " init --config %s --out %s --seed 3 --dtype %s", cfg_path,
             model, dtype);
    char *out, *err;
    int rc = test_run(cmd, &out, &err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", err);
    free(out);
    free(err);
    free(json);
    free(cfg_path);
    free(dir);
    return model;
}

static void expect_error(const char *cmd, const char *needle) {
    test_expect_cli_error(cmd, needle, NULL);
}

static char *read_all(const char *path) {
    char *s = read_text_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

// Sets one key of a config.json to a JSON value, as a user editing the file would.
static void edit_config(const char *path, const char *key, const char *value_json) {
    char *text = read_all(path);
    cJSON *root = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    cJSON_ReplaceItemInObject(root, key, cJSON_Parse(value_json));
    char *out = cJSON_Print(root);
    test_write_file(path, out, strlen(out));
    cJSON_free(out);
    cJSON_Delete(root);
    free(text);
}

// A model folder holding the tiny config and a hand-built safetensors file.
static char *model_with_file(const void *bytes, size_t n) {
    char *src = make_model("f32");
    char *cfg = path_join(src, "config.json");
    char *dir = test_tmpdir();
    char *dst_cfg = path_join(dir, "config.json");
    char *json = read_all(cfg);
    test_write_file(dst_cfg, json, strlen(json));
    char *st = path_join(dir, "model.safetensors");
    test_write_file(st, bytes, n);
    free(json);
    free(st);
    free(dst_cfg);
    free(cfg);
    free(src);
    return dir;
}

// header JSON + data block, as the safetensors format lays them out
static char *safetensors_bytes(const char *header, size_t data_bytes, size_t *n_out) {
    size_t h = strlen(header);
    size_t n = 8 + h + data_bytes;
    char *b = callocCheck(n, 1);
    uint64_t len = h;
    memcpy(b, &len, 8);
    memcpy(b + 8, header, h);
    *n_out = n;
    return b;
}

static void score_cmd(char *buf, size_t n, const char *dir) {
    snprintf(buf, n, GEMC " score --model %s --ids 1,2,3", dir);
}

static void test_help(void) {
    char *out, *err;
    CU_ASSERT_EQUAL(test_run(GEMC " --help", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "score"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "COMMAND --help"));
    free(out);
    free(err);
    const char *cmds[] = {"score",    "init",       "convert",   "overfit",
                          "tokenize", "detokenize", "check-data"};
    for (int i = 0; i < (int)(sizeof cmds / sizeof cmds[0]); i++) {
        char cmd[128], want[64];
        snprintf(cmd, sizeof cmd, GEMC " %s --help", cmds[i]);
        snprintf(want, sizeof want, "usage: gemc %s", cmds[i]);
        CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "--help"));
        free(out);
        free(err);
    }
}

static void test_usage_errors(void) {
    expect_error(GEMC " scroe --model x --ids 1,2", "did you mean 'score'");
    expect_error(GEMC " score --modle x --ids 1,2", "did you mean '--model'");
    expect_error(GEMC " score --ids 1,2", "--model DIR is required");
    expect_error(GEMC " score --model x --ids 1,,2", "--ids: item 2");
    expect_error(GEMC " init --config x --out y --seed abc", "--seed: 'abc' is not an integer");
    expect_error("OMPI_COMM_WORLD_SIZE=2 " GEMC " score --model x --ids 1,2", "one process");
}

// The exact text the PyTorch reference wrote for the llama fixture.
static void test_score_format_matches_reference(void) {
    const char *dir = "tests/fixtures/parity/llama";
    char *expected = read_all("tests/fixtures/parity/llama/score_expected.tsv");
    // the ids are the first sequence of the fixture
    char *json = read_all("tests/fixtures/parity/llama/expected.json");
    cJSON *root = cJSON_Parse(json);
    cJSON *seq = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "sequences"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    char ids[2048] = "";
    for (int i = 0; i < cJSON_GetArraySize(seq); i++) {
        size_t len = strlen(ids);
        snprintf(ids + len, sizeof ids - len, "%s%d", i ? "," : "",
                 cJSON_GetArrayItem(seq, i)->valueint);
    }
    cJSON_Delete(root);
    free(json);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, GEMC " score --model %s --ids %s", dir, ids);
    char *out, *err;
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    // same lines, same positions and targets; values within the parity tolerance (1e-4)
    char *save_a, *save_b;
    char *la = strtok_r(out, "\n", &save_a), *lb = strtok_r(expected, "\n", &save_b);
    int lines = 0;
    while (la && lb) {
        int pa, ta, pb, tb;
        double lpa, ea, lpb, eb;
        CU_ASSERT_EQUAL(sscanf(la, "%d\t%d\t%lf\t%lf", &pa, &ta, &lpa, &ea), 4);
        CU_ASSERT_EQUAL(sscanf(lb, "%d\t%d\t%lf\t%lf", &pb, &tb, &lpb, &eb), 4);
        CU_ASSERT_EQUAL(pa, pb);
        CU_ASSERT_EQUAL(ta, tb);
        ASSERT_CLOSE(lpa, lpb, 1e-4);
        ASSERT_CLOSE(ea, eb, 1e-4);
        // %.6f, tab-separated, nothing else on the line
        const char *dot = strrchr(la, '.');
        CU_ASSERT(dot && strlen(dot) == 7);
        CU_ASSERT_EQUAL(strchr(la, ' '), NULL);
        lines++;
        la = strtok_r(NULL, "\n", &save_a);
        lb = strtok_r(NULL, "\n", &save_b);
    }
    CU_ASSERT(la == NULL && lb == NULL);
    CU_ASSERT(lines > 0);
    free(out);
    free(err);
    free(expected);
}

static void test_missing_and_truncated(void) {
    char cmd[1024];
    expect_error(GEMC " score --model /nonexistent/gemc-model --ids 1,2",
                 "/nonexistent/gemc-model");
    // no weights at all in a folder that has a config.json
    char *dir = model_with_file("", 0);
    char *st = path_join(dir, "model.safetensors");
    remove(st);
    score_cmd(cmd, sizeof cmd, dir);
    test_expect_cli_error(cmd, "model.safetensors", "Hugging Face model folder");
    // fewer than the 8 bytes of the header length
    test_write_file(st, "\x10\x00\x00", 3);
    test_expect_cli_error(cmd, "model.safetensors", "truncated");
    // a real model cut in half
    char *model = make_model("f32");
    char *real = path_join(model, "model.safetensors");
    size_t n;
    char *bytes = read_text_file(real, &n);
    test_write_file(real, bytes, n / 2);
    score_cmd(cmd, sizeof cmd, model);
    test_expect_cli_error(cmd, "model.safetensors", "truncated");
    free(bytes);
    free(real);
    free(model);
    free(st);
    free(dir);
}

// `gemc score` on a folder whose model.safetensors has this header (and data_bytes of data);
// header_len, when not 0, replaces the length field.
static void expect_header_error(const char *header, size_t data_bytes, uint64_t header_len,
                                const char *needle) {
    size_t n;
    char *b = safetensors_bytes(header, data_bytes, &n);
    if (header_len) memcpy(b, &header_len, 8);
    char *dir = model_with_file(b, n);
    char cmd[1024];
    score_cmd(cmd, sizeof cmd, dir);
    test_expect_cli_error(cmd, "model.safetensors", needle);
    free(b);
    free(dir);
}

static void test_bad_headers(void) {
    expect_header_error("{}", 0, 1u << 20, "beyond the end of the file");
    expect_header_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]", 4,
                        0, "not valid JSON");
    expect_header_error("{\"a\": {\"dtype\": \"Q32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                        4, 0, "unknown dtype 'Q32'");
    expect_header_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
                        8, 0, "beyond the end of the data");
    expect_header_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                        " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                        12, 0, "overlap");
}

static void test_config_disagreements(void) {
    char cmd[1024];
    char *model = make_model("bf16");
    char *cfg = path_join(model, "config.json");
    score_cmd(cmd, sizeof cmd, model);
    // a third layer the file does not have: a missing tensor
    edit_config(cfg, "num_hidden_layers", "3");
    expect_error(cmd, "model.layers.2.");
    edit_config(cfg, "num_hidden_layers", "2");
    // a vocabulary the embedding does not have: a shape disagreement
    edit_config(cfg, "vocab_size", "38");
    expect_error(cmd, "shape");
    edit_config(cfg, "vocab_size", "37");
    // the model still loads after the edits were undone
    char *out, *err;
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    free(out);
    free(err);
    // an architecture gemc does not implement
    edit_config(cfg, "model_type", "\"gpt2\"");
    expect_error(cmd, "unsupported model_type 'gpt2'");
    free(cfg);
    free(model);
}

static void test_token_outside_vocab(void) {
    char *model = make_model("f32");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, GEMC " score --model %s --ids 1,2,37,4", model);
    expect_error(cmd, "token id 37 at position 2");
    snprintf(cmd, sizeof cmd, GEMC " score --model %s --ids 1,-1", model);
    expect_error(cmd, "token id -1 at position 1");
    free(model);
}

// A save that cannot complete leaves no file behind, neither temporary nor partial.
static void test_failed_save_leaves_nothing(void) {
    char *model = make_model("f32");
    char *out_dir = test_tmpdir();
    char *blocker = path_join(out_dir, "model.safetensors");
    CU_ASSERT_EQUAL(mkdir(blocker, 0755), 0); // the rename onto it must fail
    char cmd[1024];
    snprintf(cmd, sizeof cmd, GEMC " convert --model %s --out %s --dtype bf16", model, out_dir);
    expect_error(cmd, "model.safetensors");
    CU_ASSERT_EQUAL(test_count_dir_entries(out_dir), 1); // only the blocking directory
    free(blocker);
    free(out_dir);
    free(model);
}

// init -> convert -> overfit: the model a user saves loads again, and training lowers the loss.
static void test_convert_and_overfit(void) {
    char *model = make_model("f32");
    char *dir = test_tmpdir();
    char *bf16 = path_join(dir, "bf16"), *trained = path_join(dir, "trained");
    char cmd[2048];
    char *out, *err;
    snprintf(cmd, sizeof cmd, GEMC " convert --model %s --out %s --dtype bf16", model, bf16);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    free(out);
    free(err);
    // scores of the bf16 copy stay close to the f32 original
    char *a, *b;
    snprintf(cmd, sizeof cmd, GEMC " score --model %s --ids 1,5,9,20,3", model);
    CU_ASSERT_EQUAL(test_run(cmd, &a, &err), 0);
    free(err);
    snprintf(cmd, sizeof cmd, GEMC " score --model %s --ids 1,5,9,20,3", bf16);
    CU_ASSERT_EQUAL(test_run(cmd, &b, &err), 0);
    free(err);
    double lpa, lpb, ea, eb;
    int p, t;
    CU_ASSERT_EQUAL(sscanf(a, "%d\t%d\t%lf\t%lf", &p, &t, &lpa, &ea), 4);
    CU_ASSERT_EQUAL(sscanf(b, "%d\t%d\t%lf\t%lf", &p, &t, &lpb, &eb), 4);
    ASSERT_CLOSE(lpa, lpb, 0.05);
    free(a);
    free(b);
    snprintf(cmd, sizeof cmd,
             GEMC " overfit --model %s --ids 1,5,9,20,3,7,7,30 --steps 25 --lr 1e-2 --out %s", bf16,
             trained);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    double before = 0, after = 0;
    const char *line = strstr(out, "\nloss ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    CU_ASSERT_EQUAL(sscanf(line, "\nloss %lf -> %lf", &before, &after), 2);
    CU_ASSERT(after < 0.5 * before);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, GEMC " score --model %s --ids 1,5,9,20,3,7,7,30", trained);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    free(out);
    free(err);
    free(bf16);
    free(trained);
    free(dir);
    free(model);
}

// ---- text: tokenize, detokenize, check-data, and tokenizers in model folders ----

// A small embedded task (make_task) in a fresh directory: tokenizer, config.json, JSONL.
static char *make_task_dir(void) {
    const char *bin = getenv("GEMC_MAKE_TASK");
    char *dir = test_tmpdir();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --seed 3 --train 40 --test 10 --out %s",
             bin && *bin ? bin : "build/make_task", dir);
    char *out, *err;
    int rc = test_run(cmd, &out, &err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "\n  %s: %s", cmd, err);
    free(out);
    free(err);
    return dir;
}

// Runs cmd, expects status 0 and exactly `want` on stdout.
static void expect_output(const char *cmd, const char *want) {
    char *out, *err;
    int rc = test_run(cmd, &out, &err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(out, want);
    if (rc || strcmp(out, want))
        fprintf(stderr, "\n  command: %s\n  stdout: %s  stderr: %s", cmd, out, err);
    free(out);
    free(err);
}

static void test_tokenize_commands(void) {
    char *task = make_task_dir();
    char cmd[2048];
    // byte-level: the ids of ASCII text are its bytes; special tokens in the text are one id
    snprintf(cmd, sizeof cmd, GEMC " tokenize --tokenizer %s --text 'Final Answer: 42'", task);
    expect_output(cmd, "70,105,110,97,108,32,65,110,115,119,101,114,58,32,52,50\n");
    snprintf(cmd, sizeof cmd,
             GEMC " tokenize --tokenizer %s --text 'Hi<|end_of_text|>' "
                  "--add-special",
             task);
    expect_output(cmd, "256,72,105,257\n");
    snprintf(cmd, sizeof cmd, GEMC " tokenize --tokenizer %s/tokenizer.json --text ''", task);
    expect_output(cmd, "\n");
    snprintf(cmd, sizeof cmd,
             "printf '{\"text\": \"ab\"}\\n\\n{\"text\": \"\\\\u00e9\", \"x\": 1}\\n' | " GEMC
             " tokenize --tokenizer %s --jsonl",
             task);
    expect_output(cmd, "{\"ids\": [97,98]}\n{\"ids\": [195,169]}\n");
    snprintf(cmd, sizeof cmd, GEMC " detokenize --tokenizer %s --ids 256,72,105,257", task);
    expect_output(cmd, "<|begin_of_text|>Hi<|end_of_text|>\n");
    snprintf(cmd, sizeof cmd,
             GEMC " detokenize --tokenizer %s --ids 256,72,105,257 "
                  "--skip-special",
             task);
    expect_output(cmd, "Hi\n");
    // a cut through a character prints U+FFFD, as transformers does
    snprintf(cmd, sizeof cmd, GEMC " detokenize --tokenizer %s --ids 72,195", task);
    expect_output(cmd, "H\xEF\xBF\xBD\n");

    snprintf(cmd, sizeof cmd, GEMC " tokenize --tokenizer %s", task);
    expect_error(cmd, "exactly one of --text");
    snprintf(cmd, sizeof cmd, GEMC " tokenize --tokenizer %s --text \"$(printf 'a\\377')\"", task);
    test_expect_cli_error(cmd, "--text", "UTF-8");
    snprintf(cmd, sizeof cmd,
             "printf '{\"text\": \"ok\"}\\n{\"txt\": 1}\\n' | " GEMC
             " tokenize --tokenizer %s --jsonl > /dev/null",
             task);
    char *out, *err;
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stdin:2:"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, GEMC " detokenize --tokenizer %s --ids 72,999", task);
    test_expect_cli_error(cmd, "--ids", "999");
    char *empty = test_tmpdir();
    snprintf(cmd, sizeof cmd, GEMC " tokenize --tokenizer %s --text hi", empty);
    expect_error(cmd, "no tokenizer.json");
    free(empty);
    free(task);
}

// A tokenizer goes into the model folder with init and travels with convert; check-data reads
// the JSONL through it, the chat template and the model's context.
static void test_model_folder_tokenizer_and_check_data(void) {
    char *task = make_task_dir();
    char *dir = test_tmpdir();
    char *model = path_join(dir, "model"), *copy = path_join(dir, "copy");
    char cmd[4096];
    char *out, *err;
    snprintf(cmd, sizeof cmd, GEMC " init --config %s/config.json --tokenizer %s --out %s", task,
             task, model);
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, GEMC " convert --model %s --out %s", model, copy);
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    free(out);
    free(err);
    char *src = path_join(task, "tokenizer.json"), *dst = path_join(copy, "tokenizer.json");
    char *a = read_all(src), *b = read_all(dst);
    CU_ASSERT_STRING_EQUAL(a, b);
    free(a);
    free(b);
    free(src);
    free(dst);
    dst = path_join(copy, "tokenizer_config.json");
    free(read_all(dst));
    free(dst);

    snprintf(cmd, sizeof cmd,
             GEMC " check-data --data %s/train_pairs.jsonl --kind pairs --model %s", task, copy);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "40 pairs, chat template plain, context 512"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd,
             GEMC " check-data --data %s/test_prompts.jsonl --kind prompts --model %s --show 1",
             task, copy);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "10 of 10 prompts have an answer"));
    free(out);
    free(err);

    // a defect names the file and the line
    char *bad = path_join(dir, "bad.jsonl");
    const char *lines = "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n"
                        "{\"prompt\": \"a\", \"chosen\": \"b\"}\n";
    test_write_file(bad, lines, strlen(lines));
    snprintf(cmd, sizeof cmd, GEMC " check-data --data %s --kind pairs --model %s", bad, copy);
    test_expect_cli_error(cmd, "bad.jsonl:2:", "rejected");
    // a prompt longer than the 512 positions of the tiny model
    StrBuf big = {0};
    strbuf_puts(&big, "{\"prompt\": \"");
    for (int i = 0; i < 600; i++) strbuf_puts(&big, "x");
    strbuf_puts(&big, "\", \"answer\": 1}\n");
    test_write_file(bad, big.p, big.len);
    free(big.p);
    snprintf(cmd, sizeof cmd, GEMC " check-data --data %s --kind prompts --model %s", bad, copy);
    test_expect_cli_error(cmd, "bad.jsonl:1:", "context is 512");
    free(bad);

    // a tokenizer with more ids than the model's vocabulary: refused, and no folder is made
    char *small_cfg = path_join(dir, "small.json"), *refused = path_join(dir, "refused");
    char *cfg_src = path_join(task, "config.json");
    char *cfg_text = read_all(cfg_src);
    test_write_file(small_cfg, cfg_text, strlen(cfg_text));
    edit_config(small_cfg, "vocab_size", "200");
    snprintf(cmd, sizeof cmd, GEMC " init --config %s --tokenizer %s --out %s", small_cfg, task,
             refused);
    test_expect_cli_error(cmd, "vocab_size is 200", "259");
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(refused, &st), 0);
    free(cfg_text);
    free(cfg_src);
    free(small_cfg);
    free(refused);
    free(model);
    free(copy);
    free(dir);
    free(task);
}

void register_cli_tests(void) {
    static const TestCase tests[] = {
        {"help texts", test_help},
        {"usage errors", test_usage_errors},
        {"score format matches the PyTorch reference", test_score_format_matches_reference},
        {"missing and truncated safetensors", test_missing_and_truncated},
        {"bad safetensors headers", test_bad_headers},
        {"config.json disagreements", test_config_disagreements},
        {"token id outside the vocabulary", test_token_outside_vocab},
        {"a failed save leaves nothing", test_failed_save_leaves_nothing},
        {"convert and overfit", test_convert_and_overfit},
        {"tokenize and detokenize", test_tokenize_commands},
        {"tokenizers in model folders; check-data", test_model_folder_tokenizer_and_check_data},
        {0},
    };
    add_suite("cli", tests);
}
