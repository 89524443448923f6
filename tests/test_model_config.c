// config.json parsing (old and new transformers styles), writing, and the errors users see.
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/model_config.h"
#include "tests.h"

#define PATH "/models/x/config.json"

// {EXTRA, "model_type": TYPE, <small valid sizes>}. cJSON keeps the first of duplicate keys, so
// EXTRA overrides the defaults that follow it.
static char *cfg_json(const char *type, const char *extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{%s%s\"model_type\": \"%s\", \"vocab_size\": 100, \"hidden_size\": 64, "
             "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
             "\"num_key_value_heads\": 2}",
             extra, *extra ? ", " : "", type);
    return buf;
}

// Parsing must fail, and the one error line must hold the path and each given phrase.
static void expect_error(const char *json, const char *phrase1, const char *phrase2) {
    ModelConfig cfg;
    CU_ASSERT_EQUAL(model_config_parse(json, PATH, &cfg), -1);
    const char *e = gemc_error();
    int ok = strncmp(e, PATH ": ", strlen(PATH) + 2) == 0 && strstr(e, phrase1) &&
             (!phrase2 || strstr(e, phrase2));
    CU_ASSERT(ok);
    if (!ok)
        fprintf(stderr, "\n  error was: %s\n  expected: %s / %s\n", e, phrase1,
                phrase2 ? phrase2 : "");
}

static void test_parse_llama_old_style(void) {
    // Llama 3.2 1B as transformers 4.4x writes it
    const char *json = "{\n"
                       "  \"architectures\": [\"LlamaForCausalLM\"],\n"
                       "  \"attention_bias\": false,\n"
                       "  \"attention_dropout\": 0.0,\n"
                       "  \"bos_token_id\": 128000,\n"
                       "  \"eos_token_id\": [128001, 128008, 128009],\n"
                       "  \"head_dim\": 64,\n"
                       "  \"hidden_act\": \"silu\",\n"
                       "  \"hidden_size\": 2048,\n"
                       "  \"initializer_range\": 0.02,\n"
                       "  \"intermediate_size\": 8192,\n"
                       "  \"max_position_embeddings\": 131072,\n"
                       "  \"mlp_bias\": false,\n"
                       "  \"model_type\": \"llama\",\n"
                       "  \"num_attention_heads\": 32,\n"
                       "  \"num_hidden_layers\": 16,\n"
                       "  \"num_key_value_heads\": 8,\n"
                       "  \"pretraining_tp\": 1,\n"
                       "  \"rms_norm_eps\": 1e-05,\n"
                       "  \"rope_scaling\": {\n"
                       "    \"factor\": 32.0,\n"
                       "    \"high_freq_factor\": 4.0,\n"
                       "    \"low_freq_factor\": 1.0,\n"
                       "    \"original_max_position_embeddings\": 8192,\n"
                       "    \"rope_type\": \"llama3\"\n"
                       "  },\n"
                       "  \"rope_theta\": 500000.0,\n"
                       "  \"tie_word_embeddings\": true,\n"
                       "  \"torch_dtype\": \"bfloat16\",\n"
                       "  \"transformers_version\": \"4.45.0.dev0\",\n"
                       "  \"use_cache\": true,\n"
                       "  \"vocab_size\": 128256\n"
                       "}\n";
    ModelConfig c;
    CU_ASSERT_EQUAL_FATAL(model_config_parse(json, PATH, &c), 0);
    CU_ASSERT_EQUAL(c.type, MODEL_LLAMA);
    CU_ASSERT_STRING_EQUAL(c.model_type, "llama");
    CU_ASSERT_EQUAL(c.vocab_size, 128256);
    CU_ASSERT_EQUAL(c.hidden_size, 2048);
    CU_ASSERT_EQUAL(c.intermediate_size, 8192);
    CU_ASSERT_EQUAL(c.num_layers, 16);
    CU_ASSERT_EQUAL(c.num_heads, 32);
    CU_ASSERT_EQUAL(c.num_kv_heads, 8);
    CU_ASSERT_EQUAL(c.head_dim, 64);
    CU_ASSERT_EQUAL(c.max_position_embeddings, 131072);
    CU_ASSERT_EQUAL(c.rms_norm_eps, 1e-5f);
    CU_ASSERT_EQUAL(c.initializer_range, 0.02f);
    CU_ASSERT_EQUAL(c.rope_theta, 500000.0);
    CU_ASSERT_EQUAL(c.rope_type, ROPE_LLAMA3);
    CU_ASSERT_EQUAL(c.rope_factor, 32.0);
    CU_ASSERT_EQUAL(c.rope_low_freq_factor, 1.0);
    CU_ASSERT_EQUAL(c.rope_high_freq_factor, 4.0);
    CU_ASSERT_EQUAL(c.rope_original_max_position_embeddings, 8192);
    CU_ASSERT_EQUAL(c.tie_word_embeddings, 1);
    CU_ASSERT_EQUAL(c.qkv_bias, 0);
    CU_ASSERT_EQUAL(c.o_bias, 0);
    CU_ASSERT_EQUAL(c.sliding_window, 0);
    CU_ASSERT_EQUAL(c.bos_token_id, 128000);
    CU_ASSERT_EQUAL(c.num_eos, 3);
    CU_ASSERT(c.eos_token_ids[0] == 128001 && c.eos_token_ids[1] == 128008 &&
              c.eos_token_ids[2] == 128009);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "bfloat16");

    // attention_bias true gives both q/k/v and o biases
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("llama", "\"attention_bias\": true"), PATH, &c), 0);
    CU_ASSERT(c.qkv_bias == 1 && c.o_bias == 1);
}

static void test_parse_qwen2(void) {
    // Qwen2.5-0.5B: no head_dim, biases implied, a sliding_window that is not in use
    const char *json = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0,"
                       " \"bos_token_id\": 151643, \"eos_token_id\": 151643,"
                       " \"hidden_act\": \"silu\", \"hidden_size\": 896,"
                       " \"initializer_range\": 0.02, \"intermediate_size\": 4864,"
                       " \"max_position_embeddings\": 32768, \"max_window_layers\": 24,"
                       " \"model_type\": \"qwen2\", \"num_attention_heads\": 14,"
                       " \"num_hidden_layers\": 24, \"num_key_value_heads\": 2,"
                       " \"rms_norm_eps\": 1e-06, \"rope_scaling\": null,"
                       " \"rope_theta\": 1000000.0, \"sliding_window\": 32768,"
                       " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
                       " \"use_cache\": true, \"use_sliding_window\": false,"
                       " \"vocab_size\": 151936}";
    ModelConfig c;
    CU_ASSERT_EQUAL_FATAL(model_config_parse(json, PATH, &c), 0);
    CU_ASSERT_EQUAL(c.type, MODEL_QWEN2);
    CU_ASSERT_EQUAL(c.hidden_size, 896);
    CU_ASSERT_EQUAL(c.num_heads, 14);
    CU_ASSERT_EQUAL(c.num_kv_heads, 2);
    CU_ASSERT_EQUAL(c.head_dim, 64); // 896 / 14
    CU_ASSERT_EQUAL(c.qkv_bias, 1);
    CU_ASSERT_EQUAL(c.o_bias, 0);
    CU_ASSERT_EQUAL(c.sliding_window, 0);
    CU_ASSERT_EQUAL(c.tie_word_embeddings, 1);
    CU_ASSERT_EQUAL(c.rope_type, ROPE_DEFAULT);
    CU_ASSERT_EQUAL(c.rope_theta, 1e6);
    CU_ASSERT_EQUAL(c.rms_norm_eps, 1e-6f);
    CU_ASSERT_EQUAL(c.bos_token_id, 151643);
    CU_ASSERT(c.num_eos == 1 && c.eos_token_ids[0] == 151643);
    // a qwen2 file without tie_word_embeddings: transformers' default, false
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("qwen2", ""), PATH, &c), 0);
    CU_ASSERT_EQUAL(c.tie_word_embeddings, 0);
    CU_ASSERT_EQUAL(c.qkv_bias, 1);
}

static void test_parse_mistral_new_style(void) {
    // newer transformers: rope_parameters, "dtype"; head_dim differs from hidden/heads
    const char *json = "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\","
                       " \"vocab_size\": 131072, \"hidden_size\": 5120,"
                       " \"intermediate_size\": 14336, \"num_hidden_layers\": 40,"
                       " \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
                       " \"head_dim\": 128, \"max_position_embeddings\": 1024000,"
                       " \"rms_norm_eps\": 1e-05, \"sliding_window\": 4096,"
                       " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": "
                       "1000000.0}, \"dtype\": \"bfloat16\", \"bos_token_id\": 1,"
                       " \"eos_token_id\": 2, \"tie_word_embeddings\": false}";
    ModelConfig c;
    CU_ASSERT_EQUAL_FATAL(model_config_parse(json, PATH, &c), 0);
    CU_ASSERT_EQUAL(c.type, MODEL_MISTRAL);
    CU_ASSERT_EQUAL(c.head_dim, 128);
    CU_ASSERT_EQUAL(c.hidden_size, 5120);
    CU_ASSERT_EQUAL(c.sliding_window, 4096);
    CU_ASSERT_EQUAL(c.rope_type, ROPE_DEFAULT);
    CU_ASSERT_EQUAL(c.rope_theta, 1e6);
    CU_ASSERT_EQUAL(c.qkv_bias, 0);
    CU_ASSERT_EQUAL(c.o_bias, 0);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "bfloat16");
    CU_ASSERT_EQUAL(c.initializer_range, 0.02f); // default
    // sliding_window null means full attention
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("mistral", "\"sliding_window\": null"), PATH, &c),
                    0);
    CU_ASSERT_EQUAL(c.sliding_window, 0);
    // linear scaling in rope_parameters
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("mistral", "\"rope_parameters\": {\"rope_type\": "
                                                           "\"linear\", \"factor\": 2.5, "
                                                           "\"rope_theta\": 20000}"),
                                       PATH, &c),
                    0);
    CU_ASSERT_EQUAL(c.rope_type, ROPE_LINEAR);
    CU_ASSERT_EQUAL(c.rope_factor, 2.5);
    CU_ASSERT_EQUAL(c.rope_theta, 20000.0);
    // older "type" spelling in rope_scaling
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("llama", "\"rope_scaling\": {\"type\": "
                                                         "\"linear\", \"factor\": 4.0}"),
                                       PATH, &c),
                    0);
    CU_ASSERT_EQUAL(c.rope_type, ROPE_LINEAR);
    CU_ASSERT_EQUAL(c.rope_factor, 4.0);
    CU_ASSERT_EQUAL(c.rope_theta, 10000.0);
}

static void test_parse_defaults(void) {
    ModelConfig c;
    CU_ASSERT_EQUAL_FATAL(
        model_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 8, "
                           "\"intermediate_size\": 12, \"num_hidden_layers\": 1, "
                           "\"num_attention_heads\": 2}",
                           PATH, &c),
        0);
    CU_ASSERT_EQUAL(c.num_kv_heads, 2);
    CU_ASSERT_EQUAL(c.head_dim, 4);
    CU_ASSERT_EQUAL(c.max_position_embeddings, 2048);
    CU_ASSERT_EQUAL(c.rms_norm_eps, 1e-6f);
    CU_ASSERT_EQUAL(c.initializer_range, 0.02f);
    CU_ASSERT_EQUAL(c.rope_theta, 10000.0);
    CU_ASSERT_EQUAL(c.rope_type, ROPE_DEFAULT);
    CU_ASSERT_EQUAL(c.rope_factor, 1.0);
    CU_ASSERT_EQUAL(c.tie_word_embeddings, 0);
    CU_ASSERT_EQUAL(c.qkv_bias + c.o_bias, 0);
    CU_ASSERT_EQUAL(c.bos_token_id, -1);
    CU_ASSERT_EQUAL(c.num_eos, 0);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "");
    // nulls mean "use the default"
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("llama", "\"head_dim\": null, \"bos_token_id\": "
                                                         "null, \"eos_token_id\": null, "
                                                         "\"rope_scaling\": null"),
                                       PATH, &c),
                    0);
    CU_ASSERT_EQUAL(c.head_dim, 16);
    CU_ASSERT_EQUAL(c.bos_token_id, -1);
    CU_ASSERT_EQUAL(c.num_eos, 0);
}

// to_json -> parse gives back the same config, and the text is what transformers expects.
static void roundtrip(const ModelConfig *in, const char *must1, const char *must2) {
    char *json = model_config_to_json(in, "float32");
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    ModelConfig out;
    int rc = model_config_parse(json, "roundtrip.json", &out);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) fprintf(stderr, "\n  %s\n%s\n", gemc_error(), json);
    CU_ASSERT(memcmp(in, &out, sizeof out) == 0);
    CU_ASSERT_EQUAL(out.rope_type, in->rope_type);
    CU_ASSERT_EQUAL(out.rope_factor, in->rope_factor);
    CU_ASSERT_EQUAL(out.rope_theta, in->rope_theta);
    CU_ASSERT_EQUAL(out.sliding_window, in->sliding_window);
    CU_ASSERT_EQUAL(out.rms_norm_eps, in->rms_norm_eps);
    CU_ASSERT_EQUAL(out.initializer_range, in->initializer_range);
    CU_ASSERT_EQUAL(out.num_eos, in->num_eos);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, must1));
    if (must2) CU_ASSERT_PTR_NOT_NULL(strstr(json, must2));
    if (!strstr(json, must1) || (must2 && !strstr(json, must2)))
        fprintf(stderr, "\n  missing '%s' or '%s' in:\n%s\n", must1, must2 ? must2 : "", json);
    // older-style keys only, valid JSON, and no transformers_version
    cJSON *root = cJSON_Parse(json);
    CU_ASSERT_PTR_NOT_NULL(root);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(root, "rope_parameters"));
    CU_ASSERT(cJSON_IsString(cJSON_GetObjectItem(root, "torch_dtype")));
    CU_ASSERT(cJSON_IsString(cJSON_GetObjectItem(root, "hidden_act")));
    CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(root, "head_dim")));
    cJSON_Delete(root);
    free(json);
}

static void test_to_json_roundtrip(void) {
    ModelConfig c;
    test_tiny_config(&c, MODEL_LLAMA); // llama3 rope scaling, attention bias
    roundtrip(&c, "\"architectures\": [\"LlamaForCausalLM\"]", "\"rope_type\": \"llama3\"");
    roundtrip(&c, "\"attention_bias\": true", "\"rope_theta\": 500000.0");
    c.num_eos = 3;
    c.eos_token_ids[1] = 7;
    c.eos_token_ids[2] = 9;
    c.bos_token_id = -1;
    roundtrip(&c, "\"eos_token_id\": [2, 7, 9]", "\"bos_token_id\": null");
    c.rope_type = ROPE_LINEAR;
    c.rope_factor = 2.5;
    c.rope_low_freq_factor = c.rope_high_freq_factor = 0;
    c.rope_original_max_position_embeddings = 0;
    c.qkv_bias = c.o_bias = 0;
    roundtrip(&c, "\"rope_type\": \"linear\"", "\"attention_bias\": false");

    test_tiny_config(&c, MODEL_QWEN2); // tied, q/k/v biases
    roundtrip(&c, "\"architectures\": [\"Qwen2ForCausalLM\"]", "\"use_sliding_window\": false");
    roundtrip(&c, "\"tie_word_embeddings\": true", "\"rope_scaling\": null");

    test_tiny_config(&c, MODEL_MISTRAL); // sliding window 3
    roundtrip(&c, "\"architectures\": [\"MistralForCausalLM\"]", "\"sliding_window\": 3");
    c.sliding_window = 0;
    c.rms_norm_eps = 1e-6f;
    c.initializer_range = 0.02f;
    c.head_dim = 6; // differs from hidden / heads
    c.rope_theta = 1234567.891;
    roundtrip(&c, "\"sliding_window\": null", "\"rms_norm_eps\": 1e-06");

    // the torch_dtype argument is what is written
    test_tiny_config(&c, MODEL_LLAMA);
    char *json = model_config_to_json(&c, "bfloat16");
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"torch_dtype\": \"bfloat16\""));
    free(json);
}

static void test_error_unsupported_model_type(void) {
    expect_error(cfg_json("gpt2", ""),
                 PATH ": unsupported model_type 'gpt2' (supported: llama, qwen2, mistral)", NULL);
    expect_error("{\"vocab_size\": 3}", "missing required key 'model_type'", "llama, qwen2");
}

static void test_error_wrong_type(void) {
    expect_error(cfg_json("llama", "\"hidden_size\": \"64\""),
                 "key 'hidden_size': expected a positive integer, got the string \"64\"", NULL);
    expect_error(cfg_json("llama", "\"vocab_size\": 0"),
                 "key 'vocab_size': expected a positive integer, got 0", NULL);
    expect_error(cfg_json("llama", "\"num_hidden_layers\": -2"),
                 "key 'num_hidden_layers': expected a positive integer, got -2", NULL);
    expect_error(cfg_json("llama", "\"intermediate_size\": 12.5"),
                 "key 'intermediate_size': expected a positive integer, got 12.5", NULL);
    expect_error(cfg_json("llama", "\"num_key_value_heads\": [2]"),
                 "key 'num_key_value_heads': expected a positive integer, got an array", NULL);
    expect_error(cfg_json("llama", "\"head_dim\": true"),
                 "key 'head_dim': expected a positive integer, got true", NULL);
    expect_error(cfg_json("llama", "\"max_position_embeddings\": 1e12"),
                 "key 'max_position_embeddings': expected a positive integer", NULL);
    expect_error(cfg_json("llama", "\"rms_norm_eps\": \"1e-5\""),
                 "key 'rms_norm_eps': expected a positive number", NULL);
    expect_error(cfg_json("llama", "\"rope_theta\": -1"), "key 'rope_theta'", "positive number");
    expect_error(cfg_json("llama", "\"tie_word_embeddings\": 1"),
                 "key 'tie_word_embeddings': expected true or false, got 1", NULL);
    expect_error(cfg_json("llama", "\"eos_token_id\": \"</s>\""), "key 'eos_token_id'", NULL);
    expect_error(cfg_json("llama", "\"eos_token_id\": [1, 2, 3, 4, 5, 6, 7, 8, 9]"),
                 "key 'eos_token_id'", "at most 8");
    expect_error(cfg_json("llama", "\"bos_token_id\": -1"), "key 'bos_token_id'", NULL);
    expect_error(cfg_json("llama", "\"rope_scaling\": \"llama3\""), "key 'rope_scaling'", NULL);
    expect_error(cfg_json("llama", "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": "
                                   "\"2\"}"),
                 "key 'rope_scaling.factor': expected a positive number", NULL);
}

static void test_error_missing_key(void) {
    const char *keys[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"};
    for (int skip = 0; skip < 5; skip++) {
        char json[512] = "{\"model_type\": \"qwen2\"";
        for (int k = 0; k < 5; k++) {
            if (k == skip) continue;
            char part[64];
            snprintf(part, sizeof part, ", \"%s\": 8", keys[k]);
            strcat(json, part);
        }
        strcat(json, "}");
        char want[96];
        snprintf(want, sizeof want, "missing required key '%s'", keys[skip]);
        expect_error(json, want, NULL);
    }
    // llama3 scaling needs all four of its fields
    expect_error(cfg_json("llama", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0,"
                                   " \"high_freq_factor\": 4.0, "
                                   "\"original_max_position_embeddings\": 8192}"),
                 "missing required key 'rope_scaling.low_freq_factor'", NULL);
    expect_error(cfg_json("mistral", "\"rope_parameters\": {\"rope_type\": \"linear\"}"),
                 "missing required key 'rope_parameters.factor'", NULL);
}

static void test_error_rope_type(void) {
    expect_error(cfg_json("llama", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}"),
                 "key 'rope_scaling.type': unsupported rope type 'yarn'", "llama3");
    expect_error(cfg_json("qwen2", "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2}"),
                 "key 'rope_scaling.rope_type': unsupported rope type 'dynamic'", NULL);
    expect_error(cfg_json("mistral", "\"rope_parameters\": {\"rope_type\": \"longrope\"}"),
                 "key 'rope_parameters.rope_type': unsupported rope type 'longrope'", NULL);
}

static void test_error_json_syntax(void) {
    expect_error("{\"model_type\": \"llama\",\n  \"vocab_size\": 10,,\n}", "not valid JSON",
                 "line 2");
    expect_error("", "not valid JSON", NULL);
    expect_error("[1, 2]", "not a JSON object", NULL);
}

static void test_error_unsupported_features(void) {
    expect_error(cfg_json("llama", "\"hidden_act\": \"gelu\""), "key 'hidden_act'", "'gelu'");
    expect_error(cfg_json("llama", "\"mlp_bias\": true"), "key 'mlp_bias'", "not supported");
    expect_error(cfg_json("qwen2", "\"use_sliding_window\": true"), "key 'use_sliding_window'",
                 "not supported");
    expect_error(cfg_json("mistral", "\"sliding_window\": \"4096\""), "key 'sliding_window'",
                 "positive integer");
    expect_error(cfg_json("llama", "\"num_key_value_heads\": 3"), "key 'num_key_value_heads'",
                 "not a multiple");
    expect_error(cfg_json("llama", "\"head_dim\": 7"), "key 'head_dim'", "even");
    expect_error(cfg_json("llama", "\"hidden_size\": 66"), "key 'hidden_size'", "not divisible");
    expect_error(cfg_json("llama", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0,"
                                   " \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
                                   "\"original_max_position_embeddings\": 8192}"),
                 "high_freq_factor", NULL);
    expect_error(cfg_json("llama", "\"partial_rotary_factor\": 0.5"), "key 'partial_rotary_factor'",
                 "not supported");
    expect_error(cfg_json("llama", "\"rope_parameters\": {\"rope_type\": \"default\", "
                                   "\"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.25}"),
                 "partial_rotary_factor", "not supported");
    // qwen2 and mistral ignore a llama-only key; a mistral sliding window on qwen2 is ignored
    ModelConfig c;
    CU_ASSERT_EQUAL(model_config_parse(cfg_json("qwen2", "\"sliding_window\": 4096"), PATH, &c), 0);
    CU_ASSERT_EQUAL(c.sliding_window, 0);
}

static void test_load_file(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "config.json");
    ModelConfig c;
    CU_ASSERT_EQUAL(model_config_load(p, &c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), p));
    const char *json = cfg_json("mistral", "\"sliding_window\": 16");
    test_write_file(p, json, strlen(json));
    CU_ASSERT_EQUAL(model_config_load(p, &c), 0);
    CU_ASSERT_EQUAL(c.sliding_window, 16);
    test_write_file(p, "{\"model_type\": 3}", 17);
    CU_ASSERT_EQUAL(model_config_load(p, &c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), p));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "'model_type'"));
    free(p);
    free(dir);
}

void register_model_config_tests(void) {
    static const TestCase tests[] = {
        {"llama, old-style llama3 rope_scaling", test_parse_llama_old_style},
        {"qwen2 without head_dim", test_parse_qwen2},
        {"mistral, new-style rope_parameters", test_parse_mistral_new_style},
        {"defaults and nulls", test_parse_defaults},
        {"to_json round trip, all three types", test_to_json_roundtrip},
        {"error: unsupported model_type", test_error_unsupported_model_type},
        {"error: key of the wrong type or value", test_error_wrong_type},
        {"error: missing required key", test_error_missing_key},
        {"error: unsupported rope type", test_error_rope_type},
        {"error: JSON syntax", test_error_json_syntax},
        {"error: unsupported features", test_error_unsupported_features},
        {"model_config_load", test_load_file},
        {NULL, NULL},
    };
    add_suite("model_config", tests);
}
