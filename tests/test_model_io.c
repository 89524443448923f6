// Hugging Face model folders: save and load round trips, and the errors of broken folders.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tests.h"

#define MAX_T 128

// A model of the tiny config of `type`, with every parameter distinct (norms and biases too, so
// a loader that puts a tensor in the wrong place cannot pass).
static void make_model(Model *m, ModelType type, uint64_t seed) {
    ModelConfig cfg;
    test_tiny_config(&cfg, type);
    model_init(m, &cfg);
    model_init_random(m, seed);
    for (size_t i = 0; i < m->layout.total; i++)
        m->params[i] += 0.001f * sinf((float)i * 0.7f + (float)seed);
}

// The model's tensors under their Hugging Face names, leaving out `skip` (may be NULL).
static int model_tensors(const Model *m, StWriteTensor *ts, char (*names)[128], const char *skip) {
    int n = 0;
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &m->layout.p[k];
        if (!s->size) continue;
        int nl = s->layered ? m->cfg.num_layers : 1;
        for (int l = 0; l < nl; l++) {
            param_hf_name((ParamKind)k, l, names[n], sizeof names[n]);
            if (skip && strcmp(names[n], skip) == 0) continue;
            ts[n].name = names[n];
            ts[n].ndim = s->ndim;
            ts[n].shape[0] = s->shape[0];
            ts[n].shape[1] = s->shape[1];
            ts[n].data = m->params + s->offset + (size_t)l * s->per_layer;
            n++;
        }
    }
    return n;
}

static void write_config(const char *dir, const ModelConfig *cfg) {
    char *json = model_config_to_json(cfg, "float32");
    char *p = path_join(dir, "config.json");
    test_write_file(p, json, strlen(json));
    free(p);
    free(json);
}

// model_load_hf must fail with -1, a zeroed model, and an error holding both phrases.
static void expect_load_fails(const char *dir, const char *phrase1, const char *phrase2) {
    Model m;
    CU_ASSERT_EQUAL(model_load_hf(&m, dir), -1);
    CU_ASSERT_PTR_NULL(m.params);
    const char *e = gemc_error();
    int ok = strstr(e, phrase1) && (!phrase2 || strstr(e, phrase2));
    CU_ASSERT(ok);
    if (!ok)
        fprintf(stderr, "\n  error was: %s\n  expected: %s / %s\n", e, phrase1,
                phrase2 ? phrase2 : "");
}

// Replaces the first `"dtype":"F32"` of a safetensors header with `to` (3 characters).
static void patch_first_dtype(const char *path, const char *to) {
    size_t n;
    char *b = read_text_file(path, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    char *at = strstr(b + 8, "\"dtype\":\"F32\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    memcpy(at + 9, to, 3);
    test_write_file(path, b, n);
    free(b);
}

// ---------------------------------------------------------------------------------------------

static void test_roundtrip_f32(void) {
    const char *names[] = {"llama", "qwen2", "mistral"};
    for (int t = 0; t < 3; t++) {
        Model m, back;
        make_model(&m, (ModelType)t, 11 + (uint64_t)t);
        char *base = test_tmpdir();
        char *dir = path_join(base, names[t]); // does not exist yet: save creates it
        CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_F32), 0);
        CU_ASSERT_EQUAL(test_count_dir_entries(dir), 2); // config.json, model.safetensors
        CU_ASSERT_EQUAL_FATAL(model_load_hf(&back, dir), 0);
        CU_ASSERT(memcmp(&back.cfg, &m.cfg, sizeof m.cfg) == 0);
        CU_ASSERT_EQUAL(back.layout.total, m.layout.total);
        CU_ASSERT(memcmp(back.params, m.params, m.layout.total * sizeof(float)) == 0);
        CU_ASSERT_PTR_NOT_NULL(back.rope_inv_freq);
        CU_ASSERT_EQUAL(back.rope_inv_freq[1], m.rope_inv_freq[1]);
        model_free(&back);
        model_free(&m);
        free(dir);
        free(base);
    }
}

static void roundtrip_half(DType dtype, ModelType type) {
    Model m, back;
    make_model(&m, type, 5);
    char *dir = test_tmpdir();
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, dtype), 0);
    CU_ASSERT_EQUAL_FATAL(model_load_hf(&back, dir), 0);
    CU_ASSERT_STRING_EQUAL(back.cfg.torch_dtype, dtype_torch_name(dtype));
    int bad = 0;
    for (size_t i = 0; i < m.layout.total; i++) {
        float want = dtype == DT_BF16 ? bf16_to_f32(f32_to_bf16(m.params[i]))
                                      : f16_to_f32(f32_to_f16(m.params[i]));
        if (back.params[i] != want) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    // the weights really are stored in that dtype
    char *p = path_join(dir, "model.safetensors");
    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, p), 0);
    const StTensor *t = st_find(&f, "model.embed_tokens.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(t->dtype, dtype);
    st_close(&f);
    free(p);
    model_free(&back);
    model_free(&m);
    free(dir);
}

static void test_roundtrip_bf16(void) {
    roundtrip_half(DT_BF16, MODEL_LLAMA);
    roundtrip_half(DT_BF16, MODEL_QWEN2);
}

static void test_roundtrip_f16(void) {
    roundtrip_half(DT_F16, MODEL_MISTRAL);
}

static void test_file_contents(void) {
    // tied qwen2: no lm_head.weight; q/k/v biases but no o bias
    Model m;
    make_model(&m, MODEL_QWEN2, 3);
    char *dir = test_tmpdir();
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_BF16), 0);
    char *p = path_join(dir, "model.safetensors");
    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, p), 0);
    CU_ASSERT_PTR_NULL(st_find(&f, "lm_head.weight"));
    CU_ASSERT_PTR_NOT_NULL(st_find(&f, "model.layers.1.self_attn.q_proj.bias"));
    CU_ASSERT_PTR_NULL(st_find(&f, "model.layers.0.self_attn.o_proj.bias"));
    const StTensor *t = st_find(&f, "model.layers.1.self_attn.k_proj.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(t->ndim == 2 && t->shape[0] == 8 && t->shape[1] == 16); // [Hkv*D, C]
    CU_ASSERT_EQUAL(f.n, 1 + 2 * 12 + 1);                             // embed, 12 per layer, norm
    st_close(&f);
    // config.json says what the weights are
    ModelConfig cfg;
    char *cp = path_join(dir, "config.json");
    CU_ASSERT_EQUAL(model_config_load(cp, &cfg), 0);
    CU_ASSERT_STRING_EQUAL(cfg.torch_dtype, "bfloat16");
    CU_ASSERT_EQUAL(cfg.tie_word_embeddings, 1);
    model_free(&m);

    // llama: o bias and an lm_head; tensors in order embed, layers, norm, head
    make_model(&m, MODEL_LLAMA, 4);
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_F32), 0);
    size_t n;
    char *raw = read_text_file(p, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    const char *order[] = {"model.embed_tokens.weight",
                           "model.layers.0.input_layernorm.weight",
                           "model.layers.0.self_attn.o_proj.bias",
                           "model.layers.0.mlp.down_proj.weight",
                           "model.layers.1.input_layernorm.weight",
                           "model.norm.weight",
                           "lm_head.weight"};
    const char *prev = raw + 8;
    for (int i = 0; i < 7; i++) {
        const char *at = strstr(raw + 8, order[i]);
        CU_ASSERT(at && at > prev);
        if (at) prev = at;
    }
    free(raw);
    model_free(&m);
    free(cp);
    free(p);
    free(dir);
}

static void test_extra_tensors_ignored(void) {
    // a tied model whose file still has lm_head.weight, plus a rotary buffer: both ignored
    Model m, back;
    make_model(&m, MODEL_QWEN2, 8);
    char *dir = test_tmpdir();
    write_config(dir, &m.cfg);
    StWriteTensor ts[MAX_T];
    char names[MAX_T][128];
    int n = model_tensors(&m, ts, names, NULL);
    float junk[37 * 16];
    for (int i = 0; i < 37 * 16; i++) junk[i] = 99.0f;
    ts[n++] = (StWriteTensor){.name = "lm_head.weight", .ndim = 2, .shape = {37, 16}, .data = junk};
    ts[n++] = (StWriteTensor){.name = "model.layers.0.self_attn.rotary_emb.inv_freq",
                              .ndim = 1,
                              .shape = {2},
                              .data = junk};
    char *p = path_join(dir, "model.safetensors");
    CU_ASSERT_EQUAL_FATAL(st_write(p, ts, n, DT_F32), 0);
    CU_ASSERT_EQUAL_FATAL(model_load_hf(&back, dir), 0);
    CU_ASSERT(memcmp(back.params, m.params, m.layout.total * sizeof(float)) == 0);
    model_free(&back);
    model_free(&m);
    free(p);
    free(dir);
}

static void test_sharded_load(void) {
    Model m, back;
    make_model(&m, MODEL_LLAMA, 21);
    char *dir = test_tmpdir();
    write_config(dir, &m.cfg);
    StWriteTensor ts[MAX_T];
    char names[MAX_T][128];
    int n = model_tensors(&m, ts, names, NULL);
    int half = n / 2;
    char *s1 = path_join(dir, "model-00001-of-00002.safetensors");
    char *s2 = path_join(dir, "model-00002-of-00002.safetensors");
    CU_ASSERT_EQUAL_FATAL(st_write(s1, ts, half, DT_BF16), 0);
    CU_ASSERT_EQUAL_FATAL(st_write(s2, ts + half, n - half, DT_F32), 0);
    size_t cap = 64 * 1024, len = 0;
    char *index = malloc(cap);
    len += (size_t)snprintf(index + len, cap - len, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(index + len, cap - len,
                                "%s\"%s\": \"model-0000%d-of-00002."
                                "safetensors\"",
                                i ? ", " : "", ts[i].name, i < half ? 1 : 2);
    len += (size_t)snprintf(index + len, cap - len, "}}");
    char *ip = path_join(dir, "model.safetensors.index.json");
    test_write_file(ip, index, len);
    CU_ASSERT_EQUAL_FATAL(model_load_hf(&back, dir), 0);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        size_t ne = (size_t)ts[i].shape[0] * (size_t)(ts[i].ndim == 2 ? ts[i].shape[1] : 1);
        size_t off = (size_t)(ts[i].data - m.params);
        for (size_t k = 0; k < ne; k++) {
            float want = i < half ? bf16_to_f32(f32_to_bf16(ts[i].data[k])) : ts[i].data[k];
            if (back.params[off + k] != want) bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    model_free(&back);
    model_free(&m);
    free(index);
    free(ip);
    free(s1);
    free(s2);
    free(dir);
}

// ---------------------------------------------------------------------------------------------
// Errors

static void test_missing_tensor(void) {
    Model m;
    make_model(&m, MODEL_LLAMA, 1);
    char *dir = test_tmpdir();
    write_config(dir, &m.cfg);
    StWriteTensor ts[MAX_T];
    char names[MAX_T][128];
    char *p = path_join(dir, "model.safetensors");
    int n = model_tensors(&m, ts, names, "model.layers.1.mlp.up_proj.weight");
    CU_ASSERT_EQUAL_FATAL(st_write(p, ts, n, DT_F32), 0);
    char want[512];
    snprintf(want, sizeof want, "%s: missing tensor 'model.layers.1.mlp.up_proj.weight'", p);
    expect_load_fails(dir, want, "HINT");
    // an untied model without its head: the hint points at tie_word_embeddings
    n = model_tensors(&m, ts, names, "lm_head.weight");
    CU_ASSERT_EQUAL_FATAL(st_write(p, ts, n, DT_F32), 0);
    expect_load_fails(dir, "missing tensor 'lm_head.weight'", "tie_word_embeddings");
    // a bias the config asks for
    n = model_tensors(&m, ts, names, "model.layers.0.self_attn.o_proj.bias");
    CU_ASSERT_EQUAL_FATAL(st_write(p, ts, n, DT_F32), 0);
    expect_load_fails(dir, "missing tensor 'model.layers.0.self_attn.o_proj.bias'",
                      "attention_bias");
    model_free(&m);
    free(p);
    free(dir);
}

static void test_shape_mismatch(void) {
    Model m;
    make_model(&m, MODEL_MISTRAL, 2);
    char *dir = test_tmpdir();
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_F32), 0);
    ModelConfig other = m.cfg;
    other.intermediate_size = 32;
    write_config(dir, &other);
    char *p = path_join(dir, "model.safetensors");
    char want[512];
    snprintf(want, sizeof want,
             "%s: tensor 'model.layers.0.mlp.gate_proj.weight' has shape [24, 16] but "
             "config.json implies [32, 16]",
             p);
    expect_load_fails(dir, want, NULL);
    // a 1-D tensor where the config wants 2-D: the vocabulary differs
    other = m.cfg;
    other.vocab_size = 40;
    write_config(dir, &other);
    expect_load_fails(dir, "'model.embed_tokens.weight' has shape [37, 16]", "[40, 16]");
    // a config.json that claims a huge (but possible) model next to tiny weights: refused before
    // anything is allocated (the slab would be 2^36 floats, 256 GiB)
    other = m.cfg;
    other.vocab_size = 1 << 20;
    other.hidden_size = 1 << 16;
    write_config(dir, &other);
    expect_load_fails(dir, "'model.embed_tokens.weight' has shape [37, 16]", "[1048576, 65536]");
    model_free(&m);
    free(p);
    free(dir);
}

static void test_bad_dtype(void) {
    Model m;
    make_model(&m, MODEL_LLAMA, 6);
    char *dir = test_tmpdir();
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_F32), 0);
    char *p = path_join(dir, "model.safetensors");
    patch_first_dtype(p, "I32"); // a real dtype, but not a float weight
    expect_load_fails(dir, "model.embed_tokens.weight' has dtype I32", p);
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_F32), 0);
    patch_first_dtype(p, "X32"); // not a dtype at all
    expect_load_fails(dir, "unknown dtype 'X32'", p);
    // saving in a dtype that cannot hold weights
    CU_ASSERT_EQUAL(model_save_hf(&m, dir, DT_I8), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "I8"));
    model_free(&m);
    free(p);
    free(dir);
}

static void test_missing_config(void) {
    char *dir = test_tmpdir();
    char *cp = path_join(dir, "config.json");
    expect_load_fails(dir, cp, "not found");
    // a config but no weights
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    write_config(dir, &cfg);
    expect_load_fails(dir, dir, "Hugging Face model folder");
    free(cp);
    free(dir);
}

static void test_unsupported_model_type(void) {
    Model m;
    make_model(&m, MODEL_LLAMA, 9);
    char *dir = test_tmpdir();
    CU_ASSERT_EQUAL_FATAL(model_save_hf(&m, dir, DT_F32), 0);
    const char *json = "{\"model_type\": \"gpt2\", \"vocab_size\": 37, \"hidden_size\": 16}";
    char *cp = path_join(dir, "config.json");
    test_write_file(cp, json, strlen(json));
    char want[512];
    snprintf(want, sizeof want, "%s: unsupported model_type 'gpt2'", cp);
    expect_load_fails(dir, want, "llama, qwen2, mistral");
    model_free(&m);
    free(cp);
    free(dir);
}

void register_model_io_tests(void) {
    static const TestCase tests[] = {
        {"F32 save/load bit-identical, all three types", test_roundtrip_f32},
        {"BF16 save/load gives bf16-rounded params", test_roundtrip_bf16},
        {"F16 save/load gives f16-rounded params", test_roundtrip_f16},
        {"saved tensors: names, tied head, order", test_file_contents},
        {"extra tensors and a tied lm_head are ignored", test_extra_tensors_ignored},
        {"sharded folder loads", test_sharded_load},
        {"error: missing tensor", test_missing_tensor},
        {"error: shape disagrees with config.json", test_shape_mismatch},
        {"error: dtype not a float weight / unknown", test_bad_dtype},
        {"error: missing config.json / weights", test_missing_config},
        {"error: unsupported model_type", test_unsupported_model_type},
        {NULL, NULL},
    };
    add_suite("model_io", tests);
}
