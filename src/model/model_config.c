// config.json of Hugging Face Llama-family models: parsing (old and new transformers styles)
// and writing (the older style, which old and new transformers both read).
#include "model/model_config.h"

#include "base/strbuf.h"

#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json_file.h"

#define SUPPORTED_TYPES "llama, qwen2, mistral"

// ---------------------------------------------------------------------------------------------
// Reading helpers. Each returns 0, or -1 with the error set as "PATH: key 'K': ...".

// A short description of a JSON value for "got ..." in messages.
static void describe(const cJSON *j, char *buf, size_t n) {
    if (!j)
        snprintf(buf, n, "nothing");
    else if (cJSON_IsNull(j))
        snprintf(buf, n, "null");
    else if (cJSON_IsTrue(j))
        snprintf(buf, n, "true");
    else if (cJSON_IsFalse(j))
        snprintf(buf, n, "false");
    else if (cJSON_IsNumber(j))
        snprintf(buf, n, "%.17g", j->valuedouble);
    else if (cJSON_IsString(j))
        snprintf(buf, n, "the string \"%.40s\"", j->valuestring);
    else if (cJSON_IsArray(j))
        snprintf(buf, n, "an array");
    else if (cJSON_IsObject(j))
        snprintf(buf, n, "an object");
    else
        snprintf(buf, n, "an invalid value");
}

static int is_absent(const cJSON *j) {
    return !j || cJSON_IsNull(j);
}

static const cJSON *item(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int missing_key(const char *path, const char *prefix, const char *key, const char *why) {
    gemc_set_error("%s: missing required key '%s%s'%s", path, prefix, key, why);
    return -1;
}

static int bad_value(const char *path, const char *prefix, const char *key, const char *expected,
                     const cJSON *j) {
    char got[96];
    describe(j, got, sizeof got);
    gemc_set_error("%s: key '%s%s': expected %s, got %s", path, prefix, key, expected, got);
    return -1;
}

// An integer value in [lo, INT_MAX].
static int as_int(const cJSON *j, int lo, int *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= lo) || d > INT_MAX || d != floor(d)) return 0;
    *out = (int)d;
    return 1;
}

// The value of `key`, or *out = NULL when it is absent (or null) and optional. A required key
// that is absent is an error; a required key set to null is left for the caller to refuse.
static int lookup(const char *path, const cJSON *obj, const char *prefix, const char *key,
                  int required, const cJSON **out) {
    const cJSON *j = item(obj, key);
    *out = NULL;
    if (!j && required) return missing_key(path, prefix, key, "");
    if (j && !(cJSON_IsNull(j) && !required)) *out = j;
    return 0;
}

// Positive integer. Absent or null: `def` unless `required`.
static int get_pos_int(const char *path, const cJSON *obj, const char *prefix, const char *key,
                       int required, int def, int *out) {
    const cJSON *j;
    if (lookup(path, obj, prefix, key, required, &j) != 0) return -1;
    *out = def;
    if (j && !as_int(j, 1, out)) return bad_value(path, prefix, key, "a positive integer", j);
    return 0;
}

// Positive finite number. Absent or null: `def` unless `required`.
static int get_pos_num(const char *path, const cJSON *obj, const char *prefix, const char *key,
                       int required, double def, double *out) {
    const cJSON *j;
    if (lookup(path, obj, prefix, key, required, &j) != 0) return -1;
    *out = def;
    if (!j) return 0;
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0) || !isfinite(j->valuedouble))
        return bad_value(path, prefix, key, "a positive number", j);
    *out = j->valuedouble;
    return 0;
}

static int get_bool(const char *path, const cJSON *obj, const char *key, int def, int *out) {
    const cJSON *j = item(obj, key);
    if (is_absent(j)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(j)) return bad_value(path, "", key, "true or false", j);
    *out = cJSON_IsTrue(j) ? 1 : 0;
    return 0;
}

// String or absent/null (*out = NULL).
static int get_str(const char *path, const cJSON *obj, const char *prefix, const char *key,
                   const char **out) {
    const cJSON *j = item(obj, key);
    *out = NULL;
    if (is_absent(j)) return 0;
    if (!cJSON_IsString(j)) return bad_value(path, prefix, key, "a string", j);
    *out = j->valuestring;
    return 0;
}

// ---------------------------------------------------------------------------------------------

static int parse_rope(const char *path, const cJSON *root, ModelConfig *cfg) {
    if (get_pos_num(path, root, "", "rope_theta", 0, 10000.0, &cfg->rope_theta) != 0) return -1;
    const cJSON *rp = item(root, "rope_parameters");
    const cJSON *rs = item(root, "rope_scaling");
    const cJSON *sc = NULL;
    const char *prefix = "";
    if (!is_absent(rp)) {
        // newer transformers: everything, rope_theta included, lives in rope_parameters
        if (!cJSON_IsObject(rp)) return bad_value(path, "", "rope_parameters", "an object", rp);
        sc = rp;
        prefix = "rope_parameters.";
        if (get_pos_num(path, rp, prefix, "rope_theta", 0, cfg->rope_theta, &cfg->rope_theta) != 0)
            return -1;
    } else if (!is_absent(rs)) {
        if (!cJSON_IsObject(rs))
            return bad_value(path, "", "rope_scaling", "an object or null", rs);
        sc = rs;
        prefix = "rope_scaling.";
    }
    const char *type = NULL;
    const char *type_key = "rope_type";
    if (sc) {
        if (get_str(path, sc, prefix, "rope_type", &type) != 0) return -1;
        if (!type) {
            // older spelling
            type_key = "type";
            if (get_str(path, sc, prefix, "type", &type) != 0) return -1;
        }
    }
    if (!type) type = "default";
    cfg->rope_factor = 1.0;
    if (strcmp(type, "default") == 0) {
        cfg->rope_type = ROPE_DEFAULT;
        return 0;
    }
    if (strcmp(type, "linear") == 0) {
        cfg->rope_type = ROPE_LINEAR;
        return get_pos_num(path, sc, prefix, "factor", 1, 0, &cfg->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        cfg->rope_type = ROPE_LLAMA3;
        if (get_pos_num(path, sc, prefix, "factor", 1, 0, &cfg->rope_factor) != 0 ||
            get_pos_num(path, sc, prefix, "low_freq_factor", 1, 0, &cfg->rope_low_freq_factor) !=
                0 ||
            get_pos_num(path, sc, prefix, "high_freq_factor", 1, 0, &cfg->rope_high_freq_factor) !=
                0 ||
            get_pos_int(path, sc, prefix, "original_max_position_embeddings", 1, 0,
                        &cfg->rope_original_max_position_embeddings) != 0)
            return -1;
        if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor)) {
            gemc_set_error("%s: key '%shigh_freq_factor': %g must be greater than "
                           "low_freq_factor %g",
                           path, prefix, cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
            return -1;
        }
        return 0;
    }
    gemc_set_error("%s: key '%s%s': unsupported rope type '%s' (supported: default, linear, "
                   "llama3)",
                   path, prefix, type_key, type);
    return -1;
}

static int parse_tokens(const char *path, const cJSON *root, ModelConfig *cfg) {
    const cJSON *j = item(root, "bos_token_id");
    cfg->bos_token_id = -1;
    if (!is_absent(j) && !as_int(j, 0, &cfg->bos_token_id))
        return bad_value(path, "", "bos_token_id", "a non-negative integer or null", j);
    j = item(root, "eos_token_id");
    cfg->num_eos = 0;
    if (is_absent(j)) return 0;
    if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j);
        if (n > GEMC_MAX_EOS) {
            gemc_set_error("%s: key 'eos_token_id': %d ids, at most %d are supported", path, n,
                           GEMC_MAX_EOS);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(j, i);
            if (!as_int(e, 0, &cfg->eos_token_ids[i]))
                return bad_value(path, "", "eos_token_id", "non-negative integers in the list", e);
        }
        cfg->num_eos = n;
        return 0;
    }
    if (!as_int(j, 0, &cfg->eos_token_ids[0]))
        return bad_value(path, "", "eos_token_id", "a non-negative integer or a list of them", j);
    cfg->num_eos = 1;
    return 0;
}

static int parse_root(const char *path, const cJSON *root, ModelConfig *cfg) {
    const char *mt;
    if (get_str(path, root, "", "model_type", &mt) != 0) return -1;
    if (!mt) return missing_key(path, "", "model_type", " (supported: " SUPPORTED_TYPES ")");
    if (strcmp(mt, "llama") == 0)
        cfg->type = MODEL_LLAMA;
    else if (strcmp(mt, "qwen2") == 0)
        cfg->type = MODEL_QWEN2;
    else if (strcmp(mt, "mistral") == 0)
        cfg->type = MODEL_MISTRAL;
    else {
        gemc_set_error("%s: unsupported model_type '%.64s' (supported: " SUPPORTED_TYPES ")", path,
                       mt);
        return -1;
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);

    if (get_pos_int(path, root, "", "vocab_size", 1, 0, &cfg->vocab_size) != 0 ||
        get_pos_int(path, root, "", "hidden_size", 1, 0, &cfg->hidden_size) != 0 ||
        get_pos_int(path, root, "", "intermediate_size", 1, 0, &cfg->intermediate_size) != 0 ||
        get_pos_int(path, root, "", "num_hidden_layers", 1, 0, &cfg->num_layers) != 0 ||
        get_pos_int(path, root, "", "num_attention_heads", 1, 0, &cfg->num_heads) != 0 ||
        get_pos_int(path, root, "", "num_key_value_heads", 0, cfg->num_heads, &cfg->num_kv_heads) !=
            0 ||
        get_pos_int(path, root, "", "max_position_embeddings", 0, 2048,
                    &cfg->max_position_embeddings) != 0)
        return -1;
    if (!is_absent(item(root, "head_dim"))) {
        if (get_pos_int(path, root, "", "head_dim", 1, 0, &cfg->head_dim) != 0) return -1;
    } else {
        if (cfg->hidden_size % cfg->num_heads != 0) {
            gemc_set_error("%s: key 'hidden_size': %d is not divisible by num_attention_heads %d "
                           "(HINT: give head_dim explicitly)",
                           path, cfg->hidden_size, cfg->num_heads);
            return -1;
        }
        cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    }
    if (cfg->num_heads % cfg->num_kv_heads != 0) {
        gemc_set_error("%s: key 'num_key_value_heads': num_attention_heads %d is not a multiple "
                       "of num_key_value_heads %d",
                       path, cfg->num_heads, cfg->num_kv_heads);
        return -1;
    }
    if (cfg->head_dim % 2 != 0) {
        gemc_set_error("%s: key 'head_dim': %d is odd; rotary embeddings need an even head_dim",
                       path, cfg->head_dim);
        return -1;
    }
    if ((long long)cfg->num_heads * cfg->head_dim > INT_MAX) {
        gemc_set_error("%s: key 'head_dim': num_attention_heads * head_dim is too large", path);
        return -1;
    }
    // a sanity bound (10 trillion parameters) that also keeps the slab size from overflowing
    double C = cfg->hidden_size, V = cfg->vocab_size, I = cfg->intermediate_size;
    double Q = (double)cfg->num_heads * cfg->head_dim,
           KV = (double)cfg->num_kv_heads * cfg->head_dim;
    double total = 2 * V * C + cfg->num_layers * (2 * C + 2 * Q * C + 2 * KV * C + 3 * I * C);
    if (total > 1e13) {
        gemc_set_error("%s: the sizes describe %.3g parameters; that is not a real model", path,
                       total);
        return -1;
    }

    double eps, init;
    if (get_pos_num(path, root, "", "rms_norm_eps", 0, 1e-6, &eps) != 0 ||
        get_pos_num(path, root, "", "initializer_range", 0, 0.02, &init) != 0)
        return -1;
    cfg->rms_norm_eps = (float)eps;
    cfg->initializer_range = (float)init;
    if (get_bool(path, root, "tie_word_embeddings", 0, &cfg->tie_word_embeddings) != 0) return -1;

    const char *act;
    if (get_str(path, root, "", "hidden_act", &act) != 0) return -1;
    if (act && strcmp(act, "silu") != 0) {
        gemc_set_error("%s: key 'hidden_act': unsupported activation '%.32s' (only 'silu' is "
                       "supported)",
                       path, act);
        return -1;
    }
    int mlp_bias;
    if (get_bool(path, root, "mlp_bias", 0, &mlp_bias) != 0) return -1;
    if (mlp_bias) {
        gemc_set_error("%s: key 'mlp_bias': true is not supported (MLP projections without bias "
                       "only)",
                       path);
        return -1;
    }
    // rotary embeddings over part of each head (top level, or inside rope_parameters)
    const cJSON *rp = item(root, "rope_parameters");
    const cJSON *holders[2] = {root, cJSON_IsObject(rp) ? rp : NULL};
    for (int h = 0; h < 2; h++) {
        double prf = 1.0;
        if (!holders[h]) continue;
        if (get_pos_num(path, holders[h], h ? "rope_parameters." : "", "partial_rotary_factor", 0,
                        1.0, &prf) != 0)
            return -1;
        if (prf != 1.0) {
            gemc_set_error(
                "%s: key 'partial_rotary_factor': %g is not supported (rotary embeddings "
                "over the whole head only)",
                path, prf);
            return -1;
        }
    }
    switch (cfg->type) {
    case MODEL_QWEN2: {
        cfg->qkv_bias = 1;
        cfg->o_bias = 0;
        int usw;
        if (get_bool(path, root, "use_sliding_window", 0, &usw) != 0) return -1;
        if (usw) {
            gemc_set_error("%s: key 'use_sliding_window': true is not supported for qwen2 "
                           "(HINT: set it to false to train with full attention)",
                           path);
            return -1;
        }
        break;
    }
    case MODEL_LLAMA: {
        int ab;
        if (get_bool(path, root, "attention_bias", 0, &ab) != 0) return -1;
        cfg->qkv_bias = cfg->o_bias = ab;
        break;
    }
    case MODEL_MISTRAL:
        if (get_pos_int(path, root, "", "sliding_window", 0, 0, &cfg->sliding_window) != 0)
            return -1;
        break;
    }
    if (parse_rope(path, root, cfg) != 0) return -1;
    if (parse_tokens(path, root, cfg) != 0) return -1;

    const char *dt = NULL;
    const char *dt_key = "dtype";
    if (get_str(path, root, "", "dtype", &dt) != 0) return -1;
    if (!dt) {
        dt_key = "torch_dtype";
        if (get_str(path, root, "", "torch_dtype", &dt) != 0) return -1;
    }
    if (dt) {
        if (strlen(dt) >= sizeof cfg->torch_dtype) {
            gemc_set_error("%s: key '%s': unknown dtype '%.32s'", path, dt_key, dt);
            return -1;
        }
        snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt);
    }
    return 0;
}

int model_config_parse(const char *json_text, const char *path, ModelConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = json_parse(json_text, path);
    if (!root) return -1;
    int rc;
    if (!cJSON_IsObject(root)) {
        gemc_set_error("%s: not a JSON object (HINT: config.json holds one object of settings)",
                       path);
        rc = -1;
    } else {
        rc = parse_root(path, root, cfg);
    }
    cJSON_Delete(root);
    if (rc != 0) memset(cfg, 0, sizeof *cfg);
    return rc;
}

int model_config_load(const char *path, ModelConfig *cfg) {
    char *text = read_text_file(path, NULL);
    if (!text) return -1;
    int rc = model_config_parse(text, path, cfg);
    free(text);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Writing

static void put_indent(StrBuf *b, int n) {
    for (int i = 0; i < n; i++) strbuf_puts(b, " ");
}

// Pretty-prints in the style of Python's json.dumps(indent=2); arrays stay on one line.
static void emit(StrBuf *b, const cJSON *j, int indent) {
    char num[64];
    if (cJSON_IsRaw(j))
        strbuf_puts(b, j->valuestring);
    else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(num, sizeof num, "%.0f", d);
        else
            snprintf(num, sizeof num, "%.17g", d);
        strbuf_puts(b, num);
    } else if (cJSON_IsString(j))
        strbuf_json_string(b, j->valuestring);
    else if (cJSON_IsTrue(j))
        strbuf_puts(b, "true");
    else if (cJSON_IsFalse(j))
        strbuf_puts(b, "false");
    else if (cJSON_IsArray(j)) {
        strbuf_puts(b, "[");
        for (const cJSON *e = j->child; e; e = e->next) {
            emit(b, e, indent);
            if (e->next) strbuf_puts(b, ", ");
        }
        strbuf_puts(b, "]");
    } else if (cJSON_IsObject(j)) {
        if (!j->child) {
            strbuf_puts(b, "{}");
            return;
        }
        strbuf_puts(b, "{\n");
        for (const cJSON *e = j->child; e; e = e->next) {
            put_indent(b, indent + 2);
            strbuf_json_string(b, e->string);
            strbuf_puts(b, ": ");
            emit(b, e, indent + 2);
            strbuf_puts(b, e->next ? ",\n" : "\n");
        }
        put_indent(b, indent);
        strbuf_puts(b, "}");
    } else
        strbuf_puts(b, "null");
}

// A float as Python prints it: the shortest decimal that reads back to the same value, with a
// ".0" when it would otherwise look like an integer. `single`: the value is an fp32.
static void add_float(cJSON *o, const char *key, double v, int single) {
    char buf[64];
    double a = fabs(v);
    if (a >= 1e-4 && a < 1e16) {
        // fixed notation, as Python's repr uses in this range
        for (int d = 0; d <= 30; d++) {
            snprintf(buf, sizeof buf, "%.*f", d, v);
            if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
        }
    } else {
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, v);
            if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
        }
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", sizeof buf - strlen(buf) - 1);
    cJSON_AddRawToObject(o, key, buf);
}

char *model_config_to_json(const ModelConfig *cfg, const char *torch_dtype) {
    static const char *arch[] = {
        [MODEL_LLAMA] = "LlamaForCausalLM",
        [MODEL_QWEN2] = "Qwen2ForCausalLM",
        [MODEL_MISTRAL] = "MistralForCausalLM",
    };
    static const char *types[] = {
        [MODEL_LLAMA] = "llama", [MODEL_QWEN2] = "qwen2", [MODEL_MISTRAL] = "mistral"};
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(arch[cfg->type]));
    cJSON_AddStringToObject(o, "model_type", types[cfg->type]);
    cJSON_AddNumberToObject(o, "vocab_size", cfg->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", cfg->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", cfg->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", cfg->num_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", cfg->num_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", cfg->num_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", cfg->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "max_position_embeddings", cfg->max_position_embeddings);
    add_float(o, "rms_norm_eps", cfg->rms_norm_eps, 1);
    add_float(o, "initializer_range", cfg->initializer_range, 1);
    add_float(o, "rope_theta", cfg->rope_theta, 0);
    if (cfg->rope_type == ROPE_DEFAULT) {
        cJSON_AddNullToObject(o, "rope_scaling");
    } else {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type",
                                cfg->rope_type == ROPE_LINEAR ? "linear" : "llama3");
        add_float(rs, "factor", cfg->rope_factor, 0);
        if (cfg->rope_type == ROPE_LLAMA3) {
            add_float(rs, "low_freq_factor", cfg->rope_low_freq_factor, 0);
            add_float(rs, "high_freq_factor", cfg->rope_high_freq_factor, 0);
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                                    cfg->rope_original_max_position_embeddings);
        }
    }
    switch (cfg->type) {
    case MODEL_LLAMA:
        cJSON_AddBoolToObject(o, "attention_bias", cfg->qkv_bias || cfg->o_bias);
        cJSON_AddFalseToObject(o, "mlp_bias");
        break;
    case MODEL_QWEN2:
        cJSON_AddFalseToObject(o, "use_sliding_window");
        break;
    case MODEL_MISTRAL:
        if (cfg->sliding_window > 0)
            cJSON_AddNumberToObject(o, "sliding_window", cfg->sliding_window);
        else
            cJSON_AddNullToObject(o, "sliding_window");
        break;
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", cfg->tie_word_embeddings);
    if (cfg->bos_token_id >= 0)
        cJSON_AddNumberToObject(o, "bos_token_id", cfg->bos_token_id);
    else
        cJSON_AddNullToObject(o, "bos_token_id");
    if (cfg->num_eos == 1) {
        cJSON_AddNumberToObject(o, "eos_token_id", cfg->eos_token_ids[0]);
    } else if (cfg->num_eos > 1) {
        cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
        for (int i = 0; i < cfg->num_eos && i < GEMC_MAX_EOS; i++)
            cJSON_AddItemToArray(e, cJSON_CreateNumber(cfg->eos_token_ids[i]));
    } else {
        cJSON_AddNullToObject(o, "eos_token_id");
    }
    const char *dt = (torch_dtype && *torch_dtype) ? torch_dtype : cfg->torch_dtype;
    if (dt && *dt) cJSON_AddStringToObject(o, "torch_dtype", dt);

    StrBuf b = {0};
    emit(&b, o, 0);
    strbuf_puts(&b, "\n");
    cJSON_Delete(o);
    return b.p;
}
