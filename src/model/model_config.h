// The model's shape and hyper-parameters, read from a Hugging Face config.json, and the
// layout of its parameters in one contiguous slab.
#ifndef GEMC_MODEL_CONFIG_H
#define GEMC_MODEL_CONFIG_H

#include <stddef.h>

typedef enum { MODEL_LLAMA, MODEL_QWEN2, MODEL_MISTRAL } ModelType;

// Rotary embedding frequency schedules (transformers' rope_type).
typedef enum { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 } RopeType;

#define GEMC_MAX_EOS 8

typedef struct {
    ModelType type;
    char model_type[32]; // as written in config.json: "llama", "qwen2", "mistral"
    int vocab_size;
    int hidden_size;       // C
    int intermediate_size; // I (SwiGLU width)
    int num_layers;        // L (num_hidden_layers)
    int num_heads;         // Hq (num_attention_heads)
    int num_kv_heads;      // Hkv (num_key_value_heads; defaults to num_heads)
    int head_dim;          // D (head_dim when given, else hidden_size / num_heads)
    int max_position_embeddings;
    float rms_norm_eps;
    float initializer_range; // std of the random init (default 0.02)
    // rotary embeddings, from rope_theta/rope_scaling (older transformers) or rope_parameters
    double rope_theta;
    RopeType rope_type;
    double rope_factor;          // linear and llama3
    double rope_low_freq_factor; // llama3
    double rope_high_freq_factor;
    int rope_original_max_position_embeddings;
    int sliding_window; // Mistral; 0 means full causal attention
    int tie_word_embeddings;
    int qkv_bias;     // q/k/v projections carry a bias (Qwen2 always; Llama with attention_bias)
    int o_bias;       // o projection carries a bias (Llama with attention_bias)
    int bos_token_id; // -1 when absent
    int eos_token_ids[GEMC_MAX_EOS];
    int num_eos;
    char torch_dtype[16]; // as written ("bfloat16", ...), "" when absent
} ModelConfig;

// Parses config.json text; `path` only names the file in error messages.
// Returns 0, or -1 with one error line (naming path and key) in gemc_error().
int model_config_parse(const char *json_text, const char *path, ModelConfig *cfg);
// Reads and parses a config.json file.
int model_config_load(const char *path, ModelConfig *cfg);
// config.json text that transformers loads back (malloc'd, NUL-terminated). `torch_dtype`
// is the dtype the weights are saved in ("bfloat16", "float32", "float16").
char *model_config_to_json(const ModelConfig *cfg, const char *torch_dtype);

// ---------------------------------------------------------------------------------------------
// Parameter slab. Every parameter kind is one contiguous block; per-layer kinds stack the
// layers, so the slab reads like llm.c's ParameterTensors:
//   wte     [V, C]          token embedding (model.embed_tokens.weight)
//   ln1     [L, C]          input_layernorm.weight
//   wq      [L, Hq*D, C]    self_attn.q_proj.weight      bq [L, Hq*D]   (qkv_bias)
//   wk      [L, Hkv*D, C]   self_attn.k_proj.weight      bk [L, Hkv*D]  (qkv_bias)
//   wv      [L, Hkv*D, C]   self_attn.v_proj.weight      bv [L, Hkv*D]  (qkv_bias)
//   wo      [L, C, Hq*D]    self_attn.o_proj.weight      bo [L, C]      (o_bias)
//   ln2     [L, C]          post_attention_layernorm.weight
//   wgate   [L, I, C]       mlp.gate_proj.weight
//   wup     [L, I, C]       mlp.up_proj.weight
//   wdown   [L, C, I]       mlp.down_proj.weight
//   lnf     [C]             model.norm.weight
//   lm_head [V, C]          lm_head.weight (absent when tied: the head reads wte)
// A kind the config does not use has size 0.
typedef enum {
    P_WTE,
    P_LN1,
    P_WQ,
    P_BQ,
    P_WK,
    P_BK,
    P_WV,
    P_BV,
    P_WO,
    P_BO,
    P_LN2,
    P_WGATE,
    P_WUP,
    P_WDOWN,
    P_LNF,
    P_LM_HEAD,
    NUM_PARAM_KINDS
} ParamKind;

typedef struct {
    size_t offset;    // first element of this kind in the slab
    size_t size;      // elements of this kind in all (per_layer * L for layered kinds)
    size_t per_layer; // elements of one layer's tensor (== size for global kinds)
    int layered;      // 1 when the kind has one tensor per layer
    int ndim;         // of one tensor: 1 or 2
    int shape[2];     // of one tensor, as Hugging Face stores it ([out, in] for matrices)
} ParamSpec;

typedef struct {
    ParamSpec p[NUM_PARAM_KINDS];
    size_t total; // elements in the slab
} ParamLayout;

void param_layout_init(ParamLayout *layout, const ModelConfig *cfg);
// Hugging Face tensor name of kind k at layer `layer` (ignored for global kinds).
void param_hf_name(ParamKind k, int layer, char *buf, size_t n);
// Short name for messages: "wte", "wq", ...
const char *param_kind_name(ParamKind k);

#endif
