// The run configuration as a user meets it: the spec's defaults, YAML files and KEY=VALUE
// overrides of every type, one "FILE:LINE: ..." line for every kind of mistake (with the
// closest key), a failed load that changes nothing, and config.yaml round trips.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "config/config.h"
#include "tests.h"

// ---- helpers

// Writes `text` to a fresh DIR/x.yaml; returns the path.
static char *yaml_file(const char *text) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "x.yaml");
    test_write_file(path, text, strlen(text));
    free(dir);
    return path;
}

// The YAML config_write_yaml writes (malloc'd).
static char *yaml_of(const GemConfig *c) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    config_write_yaml(c, f);
    fclose(f);
    return buf;
}

static int error_has(const char *needle) {
    int ok = strstr(gemc_error(), needle) != NULL;
    if (!ok) fprintf(stderr, "\n  error [%s] lacks [%s]\n", gemc_error(), needle);
    return ok;
}

static void check_needles(const char *prefix, va_list ap) {
    const char *err = gemc_error();
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    int ok = strncmp(err, prefix, strlen(prefix)) == 0;
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  error [%s] does not begin with [%s]\n", err, prefix);
    for (const char *needle; (needle = va_arg(ap, const char *));) CU_ASSERT(error_has(needle));
}

// Loads `text` over the defaults and checks the failure contract: -1, one error line that
// begins with "PATH:LOC: " (LOC "7" or "7:3"; "" for "PATH: ") and holds every needle, and the
// configuration exactly as it was.
static void expect_yaml_error_v(const char *text, const char *loc, ...) {
    char *path = yaml_file(text);
    GemConfig c;
    config_defaults(&c);
    uint64_t before = config_hash(&c);
    CU_ASSERT_EQUAL(config_load_yaml(&c, path), -1);
    CU_ASSERT_EQUAL(config_hash(&c), before);
    CU_ASSERT_PTR_NULL(c.source);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s:%s%s ", path, loc, *loc ? ":" : "");
    va_list ap;
    va_start(ap, loc);
    check_needles(prefix, ap);
    va_end(ap);
    config_free(&c);
    free(path);
}
#define expect_yaml_error(text, loc, ...)                                                          \
    expect_yaml_error_v(text, loc, __VA_ARGS__, (const char *)NULL)

// An override that must fail with "command line: ASSIGNMENT: ..." and change nothing.
static void expect_override_error_v(const char *assignment, ...) {
    GemConfig c;
    config_defaults(&c);
    uint64_t before = config_hash(&c);
    CU_ASSERT_EQUAL(config_override(&c, assignment), -1);
    CU_ASSERT_EQUAL(config_hash(&c), before);
    char prefix[1024];
    snprintf(prefix, sizeof prefix, "command line: %s: ", assignment);
    va_list ap;
    va_start(ap, assignment);
    check_needles(prefix, ap);
    va_end(ap);
    config_free(&c);
}
#define expect_override_error(assignment, ...)                                                     \
    expect_override_error_v(assignment, __VA_ARGS__, (const char *)NULL)

static void override_ok(GemConfig *c, const char *assignment) {
    int rc = config_override(c, assignment);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "\n  %s: %s\n", assignment, gemc_error());
}

// Defaults, then the file; the load must succeed.
static void load_ok(GemConfig *c, const char *path) {
    config_defaults(c);
    int rc = config_load_yaml(c, path);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "\n  %s\n", gemc_error());
}

static void load_text_ok(GemConfig *c, const char *text) {
    char *path = yaml_file(text);
    load_ok(c, path);
    free(path);
}

// ---- defaults

static void test_defaults_are_the_spec(void) {
    GemConfig c;
    config_defaults(&c);
    CU_ASSERT_EQUAL(c.run.seed, 1);
    CU_ASSERT_EQUAL(c.run.log_every, 1);
    CU_ASSERT_EQUAL(c.run.save_every, 0);
    CU_ASSERT_EQUAL(c.run.dtype, DTYPE_NAME_BF16);
    CU_ASSERT_EQUAL(c.run.progress, -1);
    CU_ASSERT_STRING_EQUAL(c.model.chat_template, "auto");
    CU_ASSERT_STRING_EQUAL(c.model.system_prompt, "");
    CU_ASSERT_STRING_EQUAL(c.model.ref, "");
    // docs/algorithm.md section 1
    CU_ASSERT_EQUAL(c.sampling.k, 4);
    CU_ASSERT_EQUAL(c.sampling.temperature, 1.0f);
    CU_ASSERT_EQUAL(c.sampling.top_p, 1.0f);
    CU_ASSERT_EQUAL(c.sampling.top_k, 0);
    CU_ASSERT_EQUAL(c.sampling.max_new_tokens, 256);
    // 2-3
    CU_ASSERT_EQUAL(c.score.entropy_source, ENTROPY_RAW);
    CU_ASSERT_EQUAL(c.score.final_span, SPAN_MARKER);
    CU_ASSERT_STRING_EQUAL(c.score.answer_marker, "Final Answer:");
    CU_ASSERT_EQUAL(c.score.final_split, 0.75f);
    CU_ASSERT_EQUAL(c.score.final_window, 3);
    CU_ASSERT_EQUAL(c.score.top_m, 0.1f);
    CU_ASSERT_EQUAL(c.score.lambda_fork, 1.0f);
    // 4
    CU_ASSERT_EQUAL(c.filter.drop_truncated, 0);
    CU_ASSERT_EQUAL(c.filter.trim_bottom, 0.0f);
    CU_ASSERT_EQUAL(c.filter.pairs, 0);
    // 5
    CU_ASSERT_EQUAL(c.sega.reward_mapping, REWARD_IDENTITY);
    CU_ASSERT_EQUAL(c.sega.reward_temperature, 1.0f);
    CU_ASSERT_EQUAL(c.sega.adv_norm, ADV_NONE);
    CU_ASSERT_EQUAL(c.sega.logp_agg, LOGP_SUM);
    CU_ASSERT_EQUAL(c.sega.clip_eps, 0.2f);
    CU_ASSERT_EQUAL(c.sega.kl_coef, 0.0f);
    CU_ASSERT_EQUAL(c.optim.beta1, 0.9f);
    CU_ASSERT_EQUAL(c.optim.beta2, 0.999f);
    CU_ASSERT_EQUAL(c.optim.eps, 1e-8f);
    CU_ASSERT_EQUAL(c.optim.weight_decay, 0.0f);
    CU_ASSERT_EQUAL(c.optim.micro_batch_tokens, 8192);
    CU_ASSERT_EQUAL(c.optim.max_nonfinite_steps, 5);
    CU_ASSERT_EQUAL(c.optim.shared_prefix, 1);
    // the stages
    CU_ASSERT_STRING_EQUAL(c.sft.model, "");
    CU_ASSERT_STRING_EQUAL(c.sft.dir, "runs/sft");
    CU_ASSERT_STRING_EQUAL(c.sft.data, "");
    CU_ASSERT_EQUAL(c.sft.steps, 100);
    CU_ASSERT_EQUAL(c.sft.batch_size, 16);
    CU_ASSERT_EQUAL(c.sft.lr, 2e-5f);
    CU_ASSERT_EQUAL(c.sft.warmup_steps, 0);
    CU_ASSERT_EQUAL(c.sft.schedule, LR_CONSTANT);
    CU_ASSERT_EQUAL(c.sft.min_lr_ratio, 0.0f);
    CU_ASSERT_EQUAL(c.sft.grad_clip, 1.0f);
    CU_ASSERT_STRING_EQUAL(c.train.dir, "runs/gem");
    CU_ASSERT_EQUAL(c.train.steps, 100);
    CU_ASSERT_EQUAL(c.train.batch_size, 16);
    CU_ASSERT_EQUAL(c.train.lr, 1e-5f);
    CU_ASSERT_EQUAL(c.train.warmup_steps, 10); // train's own: RL's first AdamW steps are warmed
    CU_ASSERT_EQUAL(c.train.schedule, LR_CONSTANT);
    CU_ASSERT_EQUAL(c.train.grad_clip, 1.0f);
    CU_ASSERT_STRING_EQUAL(c.dpo.dir, "runs/dpo");
    CU_ASSERT_EQUAL(c.dpo.lr, 1e-6f);
    CU_ASSERT_EQUAL(c.dpo.warmup_steps, 0);
    CU_ASSERT_EQUAL(c.dpo_pairs, DPO_PAIRS_DATA);
    CU_ASSERT_EQUAL(c.dpo_beta, 0.1f);
    CU_ASSERT_EQUAL(c.eval.models.n, 0);
    CU_ASSERT_STRING_EQUAL(c.eval.dir, "runs/eval");
    CU_ASSERT_STRING_EQUAL(c.eval.pairs, "");
    CU_ASSERT_STRING_EQUAL(c.eval.prompts, "");
    CU_ASSERT_EQUAL(c.eval.beta, 1.0f);
    CU_ASSERT_EQUAL(c.eval.use_ref, 0);
    CU_ASSERT_EQUAL(c.eval.length_norm, 0);
    CU_ASSERT_EQUAL(c.eval.majority_k, 1);
    CU_ASSERT_EQUAL(c.eval.max_prompts, 0);
    CU_ASSERT_EQUAL(c.eval.max_pairs, 0);
    CU_ASSERT_STRING_EQUAL(c.generate.model, "");
    CU_ASSERT_STRING_EQUAL(c.generate.prompts, "");
    CU_ASSERT_STRING_EQUAL(c.generate.out, "");
    CU_ASSERT_EQUAL(c.generate.max_prompts, 0);
    CU_ASSERT_PTR_NULL(c.source);
    CU_ASSERT_STRING_EQUAL(entropy_source_name(c.score.entropy_source), "raw");
    CU_ASSERT_STRING_EQUAL(entropy_source_name(ENTROPY_SAMPLING), "sampling");
    CU_ASSERT_STRING_EQUAL(final_span_name(c.score.final_span), "marker");
    CU_ASSERT_STRING_EQUAL(final_span_name(SPAN_WINDOW), "window");
    config_free(&c);
    // freed is zeroed: a second free and new defaults over it are safe
    CU_ASSERT_PTR_NULL(c.sft.dir);
    config_free(&c);
    config_defaults(&c);
    CU_ASSERT_STRING_EQUAL(c.sft.dir, "runs/sft");
    config_free(&c);
}

// ---- YAML

static void test_yaml_sets_nested_keys(void) {
    char *path = yaml_file("# a comment\n"
                           "run:\n"
                           "  seed: 18446744073709551615   # the largest seed\n"
                           "  dtype: f16\n"
                           "  progress: false\n"
                           "sampling:\n"
                           "  k: 8\n"
                           "  temperature: 0.9\n"
                           "  top_p: 0.95\n"
                           "score:\n"
                           "  final_span: window\n"
                           "  answer_marker: 'The answer is:'\n"
                           "  top_m: 5\n"
                           "  lambda_fork: -0.4\n"
                           "filter:\n"
                           "  drop_truncated: true\n"
                           "sega:\n"
                           "  reward_mapping: softmax\n"
                           "model:\n"
                           "  system_prompt: \"Think.\\nThen answer.\"\n"
                           "  ref:\n"
                           "dpo:\n"
                           "  pairs: entropy\n"
                           "  beta: 0.5\n"
                           "sft:\n"
                           "  lr: 3e-4\n");
    GemConfig c;
    load_ok(&c, path);
    CU_ASSERT_EQUAL(c.run.seed, UINT64_MAX);
    CU_ASSERT_EQUAL(c.run.dtype, DTYPE_NAME_F16);
    CU_ASSERT_EQUAL(c.run.progress, 0);
    CU_ASSERT_EQUAL(c.sampling.k, 8);
    CU_ASSERT_EQUAL(c.sampling.temperature, 0.9f);
    CU_ASSERT_EQUAL(c.sampling.top_p, 0.95f);
    CU_ASSERT_EQUAL(c.sampling.max_new_tokens, 256); // untouched keys keep their values
    CU_ASSERT_EQUAL(c.score.final_span, SPAN_WINDOW);
    CU_ASSERT_STRING_EQUAL(c.score.answer_marker, "The answer is:");
    CU_ASSERT_EQUAL(c.score.top_m, 5.0f);
    CU_ASSERT_EQUAL(c.score.lambda_fork, -0.4f);
    CU_ASSERT_EQUAL(c.filter.drop_truncated, 1);
    CU_ASSERT_EQUAL(c.sega.reward_mapping, REWARD_SOFTMAX);
    CU_ASSERT_STRING_EQUAL(c.model.system_prompt, "Think.\nThen answer.");
    CU_ASSERT_STRING_EQUAL(c.model.ref, ""); // a null string value is the empty string
    CU_ASSERT_EQUAL(c.dpo_pairs, DPO_PAIRS_ENTROPY);
    CU_ASSERT_EQUAL(c.dpo_beta, 0.5f);
    CU_ASSERT_EQUAL(c.sft.lr, 3e-4f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.source);
    CU_ASSERT_STRING_EQUAL(c.source, path);
    config_free(&c);
    free(path);
}

// An empty file, one of comments, or a bare "---" changes nothing (documented in config.c).
static void test_yaml_empty_is_defaults(void) {
    GemConfig d;
    config_defaults(&d);
    const char *texts[] = {"", "# nothing yet\n\n", "---\n", "sampling:\n"};
    for (int i = 0; i < 4; i++) {
        GemConfig c;
        load_text_ok(&c, texts[i]);
        CU_ASSERT_EQUAL(config_hash(&c), config_hash(&d));
        config_free(&c);
    }
    config_free(&d);
}

// Two files in turn: the later one wins key by key, and nothing leaks (the SAN build checks).
static void test_yaml_loaded_twice(void) {
    char *a = yaml_file("sft:\n  dir: runs/a\n  data: a.jsonl\neval:\n  models: [x, y]\n");
    char *b = yaml_file("sft:\n  dir: runs/b\neval:\n  models: [z]\n");
    GemConfig c;
    load_ok(&c, a);
    CU_ASSERT_EQUAL(config_load_yaml(&c, a), 0);
    CU_ASSERT_EQUAL(config_load_yaml(&c, b), 0);
    CU_ASSERT_STRING_EQUAL(c.sft.dir, "runs/b");
    CU_ASSERT_STRING_EQUAL(c.sft.data, "a.jsonl");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 1);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[0], "z");
    CU_ASSERT_STRING_EQUAL(c.source, b);
    override_ok(&c, "sft.dir=runs/c");
    override_ok(&c, "sft.dir=runs/d");
    override_ok(&c, "eval.models=p,q");
    override_ok(&c, "eval.models=[r]");
    CU_ASSERT_STRING_EQUAL(c.sft.dir, "runs/d");
    config_free(&c);
    free(a);
    free(b);
}

// ---- overrides

static void test_overrides_of_each_type(void) {
    GemConfig c;
    config_defaults(&c);
    override_ok(&c, "sampling.k=7");                 // int
    override_ok(&c, " sampling.top_k = 50 ");        // spaces around key and value
    override_ok(&c, "run.seed=12345678901234");      // 64-bit
    override_ok(&c, "sampling.temperature=0.7");     // float
    override_ok(&c, "optim.eps=1e-6");               // float, exponent
    override_ok(&c, "filter.pairs=true");            // bool
    override_ok(&c, "eval.use_ref=True");            // bool, YAML's other spelling
    override_ok(&c, "sega.adv_norm=std");            // enum
    override_ok(&c, "run.progress=true");            // enum whose names look like bools
    override_ok(&c, "sft.schedule=cosine");          // enum
    override_ok(&c, "sft.data=data/x y.jsonl");      // plain string with a space
    override_ok(&c, "score.answer_marker=Answer: "); // ': ' needs no quotes
    override_ok(&c, "model.system_prompt='a  b'");   // single quotes keep the spaces
    override_ok(&c, "model.ref=\"r\\tq\"");          // double quotes take escapes
    override_ok(&c, "model.chat_template=chatml");   // string with fixed names
    CU_ASSERT_EQUAL(c.sampling.k, 7);
    CU_ASSERT_EQUAL(c.sampling.top_k, 50);
    CU_ASSERT_EQUAL(c.run.seed, 12345678901234ULL);
    CU_ASSERT_EQUAL(c.sampling.temperature, 0.7f);
    CU_ASSERT_EQUAL(c.optim.eps, 1e-6f);
    CU_ASSERT_EQUAL(c.filter.pairs, 1);
    CU_ASSERT_EQUAL(c.eval.use_ref, 1);
    CU_ASSERT_EQUAL(c.sega.adv_norm, ADV_STD);
    CU_ASSERT_EQUAL(c.run.progress, 1);
    CU_ASSERT_EQUAL(c.sft.schedule, LR_COSINE);
    CU_ASSERT_STRING_EQUAL(c.sft.data, "data/x y.jsonl");
    CU_ASSERT_STRING_EQUAL(c.score.answer_marker, "Answer:");
    CU_ASSERT_STRING_EQUAL(c.model.system_prompt, "a  b");
    CU_ASSERT_STRING_EQUAL(c.model.ref, "r\tq");
    CU_ASSERT_STRING_EQUAL(c.model.chat_template, "chatml");
    // null and empty clear a string; quoted, "null" is a word
    override_ok(&c, "sft.data=");
    CU_ASSERT_STRING_EQUAL(c.sft.data, "");
    override_ok(&c, "sft.data=x");
    override_ok(&c, "sft.data=null");
    CU_ASSERT_STRING_EQUAL(c.sft.data, "");
    override_ok(&c, "sft.data='null'");
    CU_ASSERT_STRING_EQUAL(c.sft.data, "null");
    override_ok(&c, "sft.data=~");
    CU_ASSERT_STRING_EQUAL(c.sft.data, "");
    config_free(&c);
}

static void test_string_lists(void) {
    GemConfig c;
    // YAML block sequence
    load_text_ok(&c, "eval:\n  models:\n    - sft=runs/a\n    - runs/b\n");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 2);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[0], "sft=runs/a");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[1], "runs/b");
    config_free(&c);
    // YAML flow sequence, with a quoted item holding a comma
    load_text_ok(&c, "eval:\n  models: [a=x, 'b,c', \"d\"]\n");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 3);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[0], "a=x");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[1], "b,c");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[2], "d");
    // overrides: [a, b] and a,b
    override_ok(&c, "eval.models=[gem=runs/gem/final, runs/x]");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 2);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[0], "gem=runs/gem/final");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[1], "runs/x");
    override_ok(&c, "eval.models=p, q ,r");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 3);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[0], "p");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[1], "q");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[2], "r");
    override_ok(&c, "eval.models=one");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 1);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[0], "one");
    override_ok(&c, "eval.models=[]");
    CU_ASSERT_EQUAL(c.eval.models.n, 0);
    override_ok(&c, "eval.models=x");
    override_ok(&c, "eval.models=");
    CU_ASSERT_EQUAL(c.eval.models.n, 0);
    config_free(&c);
    expect_override_error("eval.models=a,,b", "eval.models: item 2 is empty");
    expect_override_error("eval.models=[a, [b]]", "eval.models: item 2: expected a string");
    expect_yaml_error("eval:\n  models:\n    - a\n    -\n", "4", "eval.models: item 2 is empty");
    expect_yaml_error("eval:\n  models:\n    - a\n    - {x: 1}\n", "4",
                      "eval.models: item 2: expected a string, got a mapping");
}

// ---- mistakes: unknown keys

static void test_unknown_keys(void) {
    // a misspelt key: the closest key of the section
    expect_yaml_error("run:\n  seed: 3\nsampling:\n  k: 4\n\n\n  topk: 3\n", "7",
                      "unknown key 'sampling.topk' (did you mean 'sampling.top_k'?)");
    // a key in the wrong section: where it lives
    expect_yaml_error("sampling:\n  top_m: 0.2\n", "2",
                      "unknown key 'sampling.top_m' (did you mean 'score.top_m'?)");
    // a bare leaf at the top level: its full key
    expect_yaml_error("k: 8\n", "1", "unknown key 'k' (did you mean 'sampling.k'?)");
    // a leaf of several sections: all of them
    expect_yaml_error("\nlr: 1e-5\n", "2", "unknown key 'lr'", "'sft.lr', 'train.lr' or 'dpo.lr'");
    // the schedule moved from optim into each stage: the old key names its three new homes
    expect_yaml_error("optim:\n  warmup_steps: 10\n", "2", "unknown key 'optim.warmup_steps'",
                      "'sft.warmup_steps', 'train.warmup_steps' or 'dpo.warmup_steps'");
    // a misspelt section
    expect_yaml_error("samplng:\n  k: 8\n", "1", "unknown section 'samplng'",
                      "(did you mean 'sampling'?)");
    // a misspelt leaf at the top level
    expect_yaml_error("top_kk: 8\n", "1", "unknown key 'top_kk' (did you mean 'sampling.top_k'?)");
    // a dotted key at the top level: nest it
    expect_yaml_error("sampling.k: 8\n", "1", "unknown section 'sampling.k'", "'sampling:'",
                      "'  k: VALUE'");
    // nothing close: the section's keys, or the sections
    expect_yaml_error("filter:\n  zzzzzzzzzz: 1\n", "2", "unknown key 'filter.zzzzzzzzzz'",
                      "the keys of filter are drop_truncated, trim_bottom, pairs");
    expect_yaml_error("zzzzzzzzzz: 1\n", "1", "unknown section 'zzzzzzzzzz'",
                      "the sections are run, log, model, sampling");
    // the same on the command line
    expect_override_error("sampling.topk=3", "unknown key 'sampling.topk'",
                          "(did you mean 'sampling.top_k'?)");
    expect_override_error("k=8", "unknown key 'k' (did you mean 'sampling.k'?)");
    expect_override_error("sampleing.k=8", "did you mean 'sampling.k'?");
    expect_override_error("sampling.top_m=0.2", "did you mean 'score.top_m'?");
    expect_override_error("sampling=8", "'sampling' is a section, not a key");
    expect_override_error("sampling.k", "HINT: overrides are key=value");
    expect_override_error("=3", "the key is missing", "HINT: overrides are key=value");
}

// ---- mistakes: values

static void test_value_errors(void) {
    expect_yaml_error("\n\nsampling:\n  k: four\n", "4",
                      "sampling.k: expected an integer, got "
                      "'four'");
    expect_yaml_error("sampling:\n  k: 2.5\n", "2", "sampling.k: expected an integer, got '2.5'");
    expect_yaml_error("sampling:\n  k:\n", "2", "sampling.k: expected an integer, got no value");
    expect_yaml_error("sampling:\n  temperature: warm\n", "2",
                      "sampling.temperature: expected a number, got 'warm'");
    expect_yaml_error("sampling:\n  temperature: .inf\n", "2", "expected a number, got '.inf'");
    expect_yaml_error("sampling:\n  temperature: nan\n", "2", "expected a number, got 'nan'");
    expect_yaml_error("sampling:\n  temperature: 1e39\n", "2", "1e39 is too large for a float");
    expect_yaml_error("filter:\n  pairs: yes\n", "2",
                      "filter.pairs: expected true or false, got 'yes'");
    expect_yaml_error("sega:\n  reward_mapping: sofmax\n", "2",
                      "sega.reward_mapping: expected one of identity, softmax, got 'sofmax' (did "
                      "you mean 'softmax'?)");
    expect_yaml_error("run:\n  dtype: fp8\n", "2",
                      "run.dtype: expected one of bf16, f32, f16, got "
                      "'fp8'");
    expect_yaml_error("model:\n  chat_template: chatlm\n", "2",
                      "model.chat_template: expected one of auto, plain, chatml, llama3, got "
                      "'chatlm' (did you mean 'chatml'?)");
    expect_yaml_error("score:\n  answer_marker: ''\n", "2",
                      "score.answer_marker: must not be "
                      "empty");
    expect_yaml_error("run:\n  seed: -1\n", "2",
                      "run.seed: expected a non-negative integer, got '-1'");
    expect_yaml_error("sampling:\n  k: 99999999999\n", "2", "does not fit in a 32-bit integer");
    // a value of the wrong shape
    expect_yaml_error("sampling:\n  k: [4, 5]\n", "2",
                      "sampling.k: expected an integer, got a "
                      "list");
    expect_yaml_error("sampling:\n  k:\n    n: 4\n", "3",
                      "sampling.k: expected an integer, got a mapping");
    expect_yaml_error("sampling: 4\n", "1", "section 'sampling' must hold keys, got a scalar");
    expect_yaml_error("model: runs/x\n", "1", "section 'model' must hold keys",
                      "did you mean 'sft.model', 'train.model', 'dpo.model' or 'generate.model'?");
    expect_yaml_error("base: &b 4\nsampling:\n  k: *b\n", "1", "unknown section 'base'");
    expect_yaml_error("sampling:\n  k: &b 4\n  top_k: *b\n", "3",
                      "sampling.top_k: YAML aliases (*b) are not supported");
    // the same on the command line
    expect_override_error("sampling.k=four", "sampling.k: expected an integer, got 'four'");
    expect_override_error("sega.reward_mapping=sofmax", "did you mean 'softmax'?");
    expect_override_error("filter.pairs=1", "filter.pairs: expected true or false, got '1'");
    expect_override_error("sampling.k=[4]", "sampling.k: expected an integer, got a list");
    expect_override_error("sampling.k=", "sampling.k: expected an integer, got no value");
    expect_override_error("sft.data=\"abc", "YAML syntax error");
    expect_override_error("sft.data='a' b", "YAML syntax error");
    expect_override_error("sft.data=\xff\xfe", "not valid UTF-8");
}

// Every bound of every kind of range, from both sides.
static void test_ranges(void) {
    static const struct {
        const char *assignment;
        int ok;
    } cases[] = {
        {"sampling.k=1", 1},
        {"sampling.k=0", 0},
        {"sampling.temperature=0", 1},
        {"sampling.temperature=-0.1", 0},
        {"sampling.top_p=1", 1},
        {"sampling.top_p=1e-30", 1},
        {"sampling.top_p=0", 0},
        {"sampling.top_p=1.5", 0},
        {"sampling.top_p=1e-50", 0}, // rounds to 0 as a float
        {"sampling.top_k=0", 1},
        {"sampling.top_k=-1", 0},
        {"sampling.max_new_tokens=0", 0},
        {"score.final_split=0", 1},
        {"score.final_split=1", 1},
        {"score.final_split=1.01", 0},
        {"score.final_window=0", 0},
        {"score.top_m=0", 0},
        {"score.top_m=0.99", 1},
        {"score.top_m=3", 1},
        {"score.top_m=2.5", 0},
        {"score.lambda_fork=-100", 1},
        {"filter.trim_bottom=0", 1},
        {"filter.trim_bottom=0.99", 1},
        {"filter.trim_bottom=1", 0},
        {"sega.reward_temperature=0", 0},
        {"sega.clip_eps=0", 1},
        {"sega.clip_eps=1", 0},
        {"sega.kl_coef=-1", 0},
        {"optim.beta1=0", 1},
        {"optim.beta1=1", 0},
        {"optim.beta2=0.99999", 1},
        {"optim.eps=0", 0},
        {"train.grad_clip=0", 1},
        {"sft.min_lr_ratio=1", 1},
        {"dpo.min_lr_ratio=1.5", 0},
        {"train.warmup_steps=-1", 0},
        {"optim.micro_batch_tokens=0", 0},
        {"optim.max_nonfinite_steps=0", 1},
        {"optim.max_nonfinite_steps=-1", 0},
        {"sft.steps=0", 0},
        {"train.batch_size=0", 0},
        {"dpo.lr=0", 0},
        {"dpo.beta=0", 0},
        {"eval.beta=0", 0},
        {"eval.majority_k=0", 0},
        {"eval.max_pairs=-1", 0},
        {"run.log_every=0", 0},
        {"run.save_every=0", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        GemConfig c;
        config_defaults(&c);
        int rc = config_override(&c, cases[i].assignment);
        CU_ASSERT_EQUAL(rc, cases[i].ok ? 0 : -1);
        if (rc != (cases[i].ok ? 0 : -1))
            fprintf(stderr, "\n  %s: rc %d (%s)\n", cases[i].assignment, rc, gemc_error());
        if (!cases[i].ok && !strstr(gemc_error(), "out of range") &&
            !strstr(gemc_error(), "whole number")) {
            CU_FAIL("a range error that does not say so");
            fprintf(stderr, "\n  %s\n", gemc_error());
        }
        config_free(&c);
    }
    // the messages: two-sided with the interval, one-sided with the bound, the value as written
    expect_yaml_error("sampling:\n  top_p: 1.5\n", "2",
                      "sampling.top_p: 1.5 is out of range (0, 1]");
    expect_yaml_error("filter:\n  trim_bottom: 1.0\n", "2",
                      "filter.trim_bottom: 1.0 is out of range [0, 1)");
    expect_yaml_error("sampling:\n  k: 0\n", "2", "sampling.k: 0 is out of range (must be >= 1)");
    expect_yaml_error("optim:\n  eps: 0.0\n", "2", "optim.eps: 0.0 is out of range (must be > 0)");
    expect_yaml_error("score:\n  top_m: 2.5\n", "2", "score.top_m: 2.5 is not a whole number");
}

// ---- mistakes: the file itself

static void test_yaml_syntax_and_file_errors(void) {
    expect_yaml_error("sampling:\n  k: 4\n  top_p: 'open\n", "4:1",
                      "YAML syntax error: ", "found unexpected end of stream", "on line 3");
    expect_yaml_error("sampling:\n  k: 4\n top_p: 1\n", "3:2", "YAML syntax error: ");
    expect_yaml_error("sampling:\n\tk: 4\n", "2:1",
                      "YAML syntax error: ", "HINT: indent with spaces");
    expect_yaml_error("eval:\n  models: [a, b\n", "3:1", "YAML syntax error: ");
    // duplicates: both lines named
    expect_yaml_error("sampling:\n  k: 4\n  top_p: 0.9\n  k: 5\n", "4",
                      "duplicate key 'sampling.k' (first set on line 2");
    expect_yaml_error("sampling:\n  k: 4\nscore:\n  top_m: 1\nsampling:\n  top_k: 5\n", "5",
                      "duplicate section 'sampling' (first on line 1");
    // not a mapping of sections
    expect_yaml_error("just words\n", "1", "expected a mapping of sections", "got a scalar");
    expect_yaml_error("- sampling\n", "1", "expected a mapping of sections", "got a list");
    expect_yaml_error("sampling:\n  k: 4\n---\nsampling:\n  k: 5\n", "3", "a second YAML document");
    expect_yaml_error("sampling:\n  - k\n", "2", "section 'sampling' must hold keys, got a list");
    // a file that cannot be read
    char *dir = test_tmpdir();
    char *missing = path_join(dir, "nope.yaml");
    GemConfig c;
    config_defaults(&c);
    CU_ASSERT_EQUAL(config_load_yaml(&c, missing), -1);
    CU_ASSERT(strncmp(gemc_error(), missing, strlen(missing)) == 0);
    CU_ASSERT(error_has("No such file or directory"));
    CU_ASSERT_EQUAL(config_load_yaml(&c, dir), -1);
    CU_ASSERT(strncmp(gemc_error(), dir, strlen(dir)) == 0);
    CU_ASSERT(error_has("is a directory"));
    CU_ASSERT_PTR_NULL(c.source);
    config_free(&c);
    free(missing);
    free(dir);
}

// A bad file after a good one: the good one's values and source stay, all of them.
static void test_failed_load_changes_nothing(void) {
    char *good = yaml_file("sampling:\n  k: 6\neval:\n  models: [a, b]\n");
    char *bad = yaml_file("sampling:\n  k: 9\n  temperature: 0.5\neval:\n  models: [c]\n"
                          "score:\n  top_m: hot\n");
    GemConfig c;
    load_ok(&c, good);
    uint64_t h = config_hash(&c);
    CU_ASSERT_EQUAL(config_load_yaml(&c, bad), -1);
    CU_ASSERT(error_has(":7: score.top_m: expected a number, got 'hot'"));
    CU_ASSERT_EQUAL(config_hash(&c), h);
    CU_ASSERT_EQUAL(c.sampling.k, 6);
    CU_ASSERT_EQUAL(c.eval.models.n, 2);
    CU_ASSERT_STRING_EQUAL(c.source, good);
    config_free(&c);
    free(good);
    free(bad);
}

// ---- writing

// A value for every key, each different from its default (the test checks that it is), with
// strings that need every kind of escape.
static const char *const EVERY_KEY[] = {
    "run.seed=18446744073709551615",
    "run.log_every=5",
    "run.save_every=50",
    "run.dtype=f32",
    "run.progress=false",
    "run.resume=none",
    "run.device=cpu",
    "model.chat_template=llama3",
    "model.system_prompt=\"say \\\"hi\\\" \\\\ then\\n\\ttab \\x01 \\u00e9 \\u2028 \\x85 # x: y\"",
    "model.ref=' lead and trail '",
    "sampling.k=5",
    "sampling.temperature=0.9",
    "sampling.top_p=0.95",
    "sampling.top_k=40",
    "sampling.max_new_tokens=128",
    "score.entropy_source=sampling",
    "score.final_span=fraction",
    "score.answer_marker=null-ish: 'quoted' ~",
    "score.final_split=0.3333333",
    "score.final_window=7",
    "score.top_m=4",
    "score.lambda_fork=-1e-7",
    "score.lambda_final=0.5",
    "filter.drop_truncated=true",
    "filter.trim_bottom=0.1",
    "filter.pairs=true",
    "filter.skip_zero_adv=false",
    "reward.source=entropy",
    "reward.entropy_span=0.5",
    "sega.reward_mapping=softmax",
    "sega.reward_temperature=0.25",
    "sega.adv_norm=std",
    "sega.logp_agg=mean",
    "sega.clip_eps=0.1",
    "sega.kl_coef=0.05",
    "sega.loss_agg=token_mean",
    "sega.loss_constant=200",
    "sega.group_norm=active",
    "optim.beta1=0.8",
    "optim.beta2=0.95",
    "optim.eps=1.17549435e-38",
    "optim.weight_decay=0.01",
    "optim.micro_batch_tokens=4096",
    "optim.max_nonfinite_steps=2",
    "optim.shared_prefix=false",
    "sft.model='null'",
    "sft.dir=runs/s",
    "sft.data=p.jsonl",
    "sft.steps=3",
    "sft.batch_size=2",
    "sft.lr=3.14159274e-4",
    "sft.warmup_steps=7",
    "sft.schedule=linear",
    "sft.min_lr_ratio=0.1",
    "sft.grad_clip=0.5",
    "train.model=m",
    "train.dir=runs/t",
    "train.data=q.jsonl",
    "train.steps=4",
    "train.batch_size=3",
    "train.lr=2e-5",
    "train.warmup_steps=0",
    "train.schedule=cosine",
    "train.min_lr_ratio=0.25",
    "train.grad_clip=0",
    "train.stop_on_collapse=15",
    "dpo.model=d",
    "dpo.dir=runs/d",
    "dpo.data=r.jsonl",
    "dpo.steps=5",
    "dpo.batch_size=4",
    "dpo.lr=1e-7",
    "dpo.warmup_steps=3",
    "dpo.schedule=linear",
    "dpo.min_lr_ratio=0.5",
    "dpo.grad_clip=2",
    "dpo.pairs=entropy",
    "dpo.beta=0.2",
    "eval.models=[\"a=b\", \"c,d\", \"[e]\", \"'f'\"]",
    "eval.dir=runs/e",
    "eval.pairs=x.jsonl",
    "eval.prompts=y.jsonl",
    "eval.beta=0.5",
    "eval.use_ref=true",
    "eval.length_norm=true",
    "eval.majority_k=3",
    "eval.signal_k=5",
    "eval.pass_k=6",
    "eval.max_prompts=10",
    "eval.max_pairs=20",
    "eval.every=25",
    "eval.every_max=0",
    "eval.probe=probe.jsonl",
    "log.tensorboard=false",
    "log.peak_tflops=989",
    "generate.model=g",
    "generate.prompts=z.jsonl",
    "generate.out=out.jsonl",
    "generate.max_prompts=7",
    "pipeline.generators=3",
    "pipeline.learners=4",
    "pipeline.tp=2",
    "pipeline.max_staleness=1",
    "pipeline.timeout=30",
    "pipeline.collectives=mpi",
    "pipeline.bucket_mb=8",
};
#define N_EVERY_KEY ((int)(sizeof EVERY_KEY / sizeof EVERY_KEY[0]))

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_write_load_round_trip(void) {
    GemConfig d, c;
    config_defaults(&d);
    config_defaults(&c);
    for (int i = 0; i < N_EVERY_KEY; i++) override_ok(&c, EVERY_KEY[i]);
    char *dy = yaml_of(&d), *cy = yaml_of(&c);
    CU_ASSERT(strncmp(cy, "# gemc resolved configuration\n", 30) == 0);
    // every key line differs from the default's: the list above covers the whole table, so a
    // new key without a round-trip value fails here
    CU_ASSERT_EQUAL(count_lines(dy), count_lines(cy));
    CU_ASSERT_EQUAL(count_lines(dy), 1 + 15 + N_EVERY_KEY); // header, sections, keys
    char *sd, *sc;
    char *ld = strtok_r(dy, "\n", &sd), *lc = strtok_r(cy, "\n", &sc);
    for (; ld && lc; ld = strtok_r(NULL, "\n", &sd), lc = strtok_r(NULL, "\n", &sc)) {
        int is_key = strncmp(ld, "  ", 2) == 0;
        CU_ASSERT(is_key ? strcmp(ld, lc) != 0 : strcmp(ld, lc) == 0);
        if (is_key && !strcmp(ld, lc)) fprintf(stderr, "\n  not changed by EVERY_KEY: %s\n", ld);
    }
    free(dy);
    free(cy);

    // write, load over the defaults: the same values, the same text, the same hash
    char *dir = test_tmpdir();
    char *path = path_join(dir, "resolved.yaml");
    FILE *f = fopen(path, "w");
    config_write_yaml(&c, f);
    fclose(f);
    GemConfig r;
    load_ok(&r, path);
    char *a = yaml_of(&c), *b = yaml_of(&r);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_EQUAL(config_hash(&c), config_hash(&r));
    CU_ASSERT_NOT_EQUAL(config_hash(&c), config_hash(&d));
    CU_ASSERT_STRING_EQUAL(r.model.system_prompt,
                           "say \"hi\" \\ then\n\ttab \x01 \xc3\xa9 \xe2\x80\xa8 \xc2\x85 # x: y");
    CU_ASSERT_STRING_EQUAL(r.model.ref, " lead and trail ");
    CU_ASSERT_STRING_EQUAL(r.score.answer_marker, "null-ish: 'quoted' ~");
    CU_ASSERT_STRING_EQUAL(r.sft.model, "null");
    CU_ASSERT_EQUAL(r.run.seed, UINT64_MAX);
    CU_ASSERT_EQUAL(r.score.final_split, 0.3333333f);
    CU_ASSERT_EQUAL(r.optim.eps, 1.17549435e-38f);
    CU_ASSERT_EQUAL(r.sft.lr, 3.14159274e-4f);
    CU_ASSERT_EQUAL(r.score.lambda_fork, -1e-7f);
    CU_ASSERT_EQUAL_FATAL(r.eval.models.n, 4);
    CU_ASSERT_STRING_EQUAL(r.eval.models.items[1], "c,d");
    CU_ASSERT_STRING_EQUAL(r.eval.models.items[3], "'f'");
    // short floats stay short
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "  temperature: 0.9\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "  lr: 2e-05\n"));
    // one changed value changes the hash
    override_ok(&r, "sampling.top_k=41");
    CU_ASSERT_NOT_EQUAL(config_hash(&c), config_hash(&r));
    free(a);
    free(b);
    config_free(&r);

    // the defaults round-trip too
    f = fopen(path, "w");
    config_write_yaml(&d, f);
    fclose(f);
    load_ok(&r, path);
    CU_ASSERT_EQUAL(config_hash(&r), config_hash(&d));
    config_free(&r);
    config_free(&c);
    config_free(&d);
    free(path);
    free(dir);
}

static void test_save(void) {
    char *dir = test_tmpdir();
    char *run = path_join(dir, "runs/x"); // missing parents are made
    GemConfig c;
    config_defaults(&c);
    override_ok(&c, "sampling.k=6");
    CU_ASSERT_EQUAL_FATAL(config_save(&c, run), 0);
    CU_ASSERT_EQUAL(test_count_dir_entries(run), 1); // config.yaml, no temporary file left
    char *path = path_join(run, "config.yaml");
    char *text = read_text_file(path, NULL);
    char *expect = yaml_of(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_STRING_EQUAL(text, expect);
    // saved again over itself: still one file
    CU_ASSERT_EQUAL(config_save(&c, run), 0);
    CU_ASSERT_EQUAL(test_count_dir_entries(run), 1);
    GemConfig r;
    load_ok(&r, path);
    CU_ASSERT_EQUAL(r.sampling.k, 6);
    CU_ASSERT_EQUAL(config_hash(&r), config_hash(&c));
    // a run directory that cannot be made
    char *file = path_join(dir, "plain");
    test_write_file(file, "x", 1);
    char *under = path_join(file, "run");
    CU_ASSERT_EQUAL(config_save(&c, under), -1);
    CU_ASSERT(strlen(gemc_error()) > 0);
    config_free(&r);
    config_free(&c);
    free(under);
    free(file);
    free(text);
    free(expect);
    free(path);
    free(run);
    free(dir);
}

// ---- the shipped configs

static void test_shipped_configs_load(void) {
    GemConfig c;
    load_ok(&c, "configs/demo.yaml");
    CU_ASSERT_EQUAL(c.run.dtype, DTYPE_NAME_F32);
    CU_ASSERT_STRING_EQUAL(c.model.chat_template, "plain");
    CU_ASSERT_EQUAL(c.sampling.max_new_tokens, 96);
    CU_ASSERT_STRING_EQUAL(c.sft.model, "runs/demo/init");
    CU_ASSERT_STRING_EQUAL(c.train.data, "data/arith/train_prompts.jsonl");
    CU_ASSERT_EQUAL_FATAL(c.eval.models.n, 4);
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[1], "gem=runs/demo/gem/final");
    CU_ASSERT_STRING_EQUAL(c.eval.models.items[2], "answer=runs/demo/answer/final");
    const char *stages[] = {"sft", "train", "dpo", "eval"};
    for (int i = 0; i < 4; i++) {
        int rc = config_check(&c, stages[i]);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "\n  demo, %s: %s\n", stages[i], gemc_error());
    }
    config_free(&c);

    load_ok(&c, "configs/llama-3.1-8b.yaml");
    CU_ASSERT_STRING_EQUAL(c.model.chat_template, "llama3");
    CU_ASSERT_EQUAL(c.sampling.k, 5);
    CU_ASSERT_EQUAL(c.sampling.temperature, 0.9f);
    CU_ASSERT_EQUAL(c.sampling.max_new_tokens, 128);
    CU_ASSERT_EQUAL(c.train.lr, 1e-5f);
    CU_ASSERT_EQUAL(c.train.batch_size, 128);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.model.system_prompt, "Final Answer"));
    // the data is the user's to give: the check says which key
    CU_ASSERT_EQUAL(config_check(&c, "sft"), -1);
    CU_ASSERT(error_has("sft.data is not set"));
    override_ok(&c, "sft.data=data/uf/train_pairs.jsonl");
    CU_ASSERT_EQUAL(config_check(&c, "sft"), 0);
    config_free(&c);

    load_ok(&c, "configs/qwen2.5-0.5b.yaml");
    CU_ASSERT_STRING_EQUAL(c.model.chat_template, "chatml");
    CU_ASSERT_STRING_EQUAL(c.sft.model, "models/Qwen2.5-0.5B-Instruct");
    CU_ASSERT_EQUAL(c.sampling.temperature, 0.9f);
    config_free(&c);
}

// ---- checks of a stage

static void expect_check_error(GemConfig *c, const char *stage, const char *needle) {
    CU_ASSERT_EQUAL(config_check(c, stage), -1);
    CU_ASSERT_PTR_NULL(strchr(gemc_error(), '\n'));
    CU_ASSERT(error_has(needle));
}

static void test_check(void) {
    GemConfig c;
    config_defaults(&c);
    expect_check_error(&c, "sft", "sft.model is not set (HINT: add sft.model:");
    override_ok(&c, "sft.model=m");
    expect_check_error(&c, "sft",
                       "sft.data is not set (HINT: add sft.data: path/to/pairs.jsonl to the config "
                       "or pass sft.data=PATH)");
    override_ok(&c, "sft.data=p.jsonl");
    CU_ASSERT_EQUAL(config_check(&c, "sft"), 0);

    override_ok(&c, "train.model=m");
    override_ok(&c, "train.data=q.jsonl");
    CU_ASSERT_EQUAL(config_check(&c, "train"), 0);
    override_ok(&c, "sampling.k=1");
    expect_check_error(&c, "train", "train needs sampling.k >= 2");
    CU_ASSERT_EQUAL(config_check(&c, "sft"), 0); // sft samples nothing
    override_ok(&c, "sampling.k=4");
    override_ok(&c, "sampling.temperature=0");
    expect_check_error(&c, "train", "sampling.temperature > 0");
    override_ok(&c, "sampling.temperature=1");

    override_ok(&c, "dpo.model=m");
    override_ok(&c, "dpo.data=p.jsonl");
    override_ok(&c, "sampling.k=1");
    CU_ASSERT_EQUAL(config_check(&c, "dpo"), 0); // given pairs: no sampling
    override_ok(&c, "dpo.pairs=entropy");
    expect_check_error(&c, "dpo", "dpo.pairs: entropy needs sampling.k >= 2");
    override_ok(&c, "sampling.k=2");
    CU_ASSERT_EQUAL(config_check(&c, "dpo"), 0);

    expect_check_error(&c, "eval", "eval.models is empty");
    override_ok(&c, "eval.models=a=runs/a,runs/b");
    expect_check_error(&c, "eval", "eval needs eval.pairs or eval.prompts");
    override_ok(&c, "eval.prompts=t.jsonl");
    CU_ASSERT_EQUAL(config_check(&c, "eval"), 0);
    override_ok(&c, "eval.use_ref=true");
    expect_check_error(&c, "eval", "model.ref is not set");
    override_ok(&c, "eval.use_ref=false");
    override_ok(&c, "eval.models=[=runs/a]");
    expect_check_error(&c, "eval", "eval.models: item 1 '=runs/a' has an empty label");

    expect_check_error(&c, "generate", "generate.model is not set");

    // values a program set directly get the parser's checks
    config_free(&c);
    config_defaults(&c);
    override_ok(&c, "sft.model=m");
    override_ok(&c, "sft.data=p.jsonl");
    c.sampling.top_p = 1.5f;
    expect_check_error(&c, "sft", "sampling.top_p: 1.5 is out of range (0, 1]");
    c.sampling.top_p = 1.0f;
    c.score.top_m = 2.5f;
    expect_check_error(&c, "sft", "score.top_m: 2.5 is not a whole number");
    c.score.top_m = 2.0f;
    CU_ASSERT_EQUAL(config_check(&c, "sft"), 0);
    free(c.model.chat_template);
    c.model.chat_template = strdup("jinja");
    expect_check_error(&c, "sft",
                       "model.chat_template: expected one of auto, plain, chatml, "
                       "llama3, got 'jinja'");
    config_free(&c);
}

// ---- help

static char *help_of(const char *stage) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    config_print_help(stage, f);
    fclose(f);
    return buf;
}

static void test_help(void) {
    char *sft = help_of("sft"), *train = help_of("train"), *eval = help_of("eval");
    CU_ASSERT_PTR_NOT_NULL(strstr(sft, "sft.lr"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sft, "2e-05"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sft, "optim.beta1"));
    CU_ASSERT_PTR_NULL(strstr(sft, "sampling.k")); // sft samples nothing
    CU_ASSERT_PTR_NULL(strstr(sft, "train.lr"));
    CU_ASSERT_PTR_NOT_NULL(strstr(train, "sampling.k "));
    CU_ASSERT_PTR_NOT_NULL(strstr(train, "sega.reward_mapping"));
    CU_ASSERT_PTR_NOT_NULL(strstr(train, "(identity|softmax)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(train, "(0 < x <= 1)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(train, "(x >= 1)"));
    CU_ASSERT_PTR_NULL(strstr(train, "eval.models"));
    CU_ASSERT_PTR_NOT_NULL(strstr(train, "eval.every ")); // its evaluations during training
    CU_ASSERT_PTR_NOT_NULL(strstr(sft, "log.tensorboard "));
    CU_ASSERT_PTR_NOT_NULL(strstr(eval, "eval.models"));
    CU_ASSERT_PTR_NOT_NULL(strstr(eval, "[]"));
    CU_ASSERT_PTR_NULL(strstr(eval, "optim."));
    free(sft);
    free(train);
    free(eval);
}

void register_config_tests(void) {
    static const TestCase tests[] = {
        {"defaults are the spec's", test_defaults_are_the_spec},
        {"YAML sets nested keys", test_yaml_sets_nested_keys},
        {"empty YAML is the defaults", test_yaml_empty_is_defaults},
        {"YAML loaded twice, overrides repeated", test_yaml_loaded_twice},
        {"overrides of each type", test_overrides_of_each_type},
        {"string lists in YAML and on the command line", test_string_lists},
        {"unknown keys: the closest key", test_unknown_keys},
        {"bad values: one line with file and line", test_value_errors},
        {"ranges", test_ranges},
        {"YAML syntax, duplicates, unreadable files", test_yaml_syntax_and_file_errors},
        {"a failed load changes nothing", test_failed_load_changes_nothing},
        {"write, load: the same values and hash", test_write_load_round_trip},
        {"config_save", test_save},
        {"configs/*.yaml load", test_shipped_configs_load},
        {"config_check per stage", test_check},
        {"help per stage", test_help},
        {NULL, NULL},
    };
    add_suite("config", tests);
}
