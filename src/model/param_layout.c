// Where each parameter kind lives in the slab (see the table in model_config.h).
#include <stdio.h>
#include <string.h>

#include "model/model_config.h"

void param_layout_init(ParamLayout *layout, const ModelConfig *cfg) {
    memset(layout, 0, sizeof *layout);
    const int V = cfg->vocab_size, C = cfg->hidden_size, I = cfg->intermediate_size;
    const int Q = cfg->num_heads * cfg->head_dim, KV = cfg->num_kv_heads * cfg->head_dim;
    // {rows, cols} of one tensor; cols 0 means a vector; rows 0 means absent
    const int shapes[NUM_PARAM_KINDS][2] = {
        [P_WTE] = {V, C}, [P_LN1] = {C, 0},
        [P_WQ] = {Q, C},  [P_BQ] = {cfg->qkv_bias ? Q : 0, 0},
        [P_WK] = {KV, C}, [P_BK] = {cfg->qkv_bias ? KV : 0, 0},
        [P_WV] = {KV, C}, [P_BV] = {cfg->qkv_bias ? KV : 0, 0},
        [P_WO] = {C, Q},  [P_BO] = {cfg->o_bias ? C : 0, 0},
        [P_LN2] = {C, 0}, [P_WGATE] = {I, C},
        [P_WUP] = {I, C}, [P_WDOWN] = {C, I},
        [P_LNF] = {C, 0}, [P_LM_HEAD] = {cfg->tie_word_embeddings ? 0 : V, C},
    };
    size_t off = 0;
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        ParamSpec *s = &layout->p[k];
        s->layered = !(k == P_WTE || k == P_LNF || k == P_LM_HEAD);
        s->ndim = shapes[k][1] ? 2 : 1;
        s->shape[0] = shapes[k][0];
        s->shape[1] = shapes[k][1];
        s->per_layer = (size_t)shapes[k][0] * (size_t)(shapes[k][1] ? shapes[k][1] : 1);
        s->size = s->per_layer * (s->layered ? (size_t)cfg->num_layers : 1);
        s->offset = off;
        off += s->size;
    }
    layout->total = off;
}

static const char *const kind_names[NUM_PARAM_KINDS] = {
    "wte", "ln1", "wq",  "bq",    "wk",  "bk",    "wv",  "bv",
    "wo",  "bo",  "ln2", "wgate", "wup", "wdown", "lnf", "lm_head",
};

static const char *const hf_suffix[NUM_PARAM_KINDS] = {
    [P_LN1] = "input_layernorm.weight", [P_WQ] = "self_attn.q_proj.weight",
    [P_BQ] = "self_attn.q_proj.bias",   [P_WK] = "self_attn.k_proj.weight",
    [P_BK] = "self_attn.k_proj.bias",   [P_WV] = "self_attn.v_proj.weight",
    [P_BV] = "self_attn.v_proj.bias",   [P_WO] = "self_attn.o_proj.weight",
    [P_BO] = "self_attn.o_proj.bias",   [P_LN2] = "post_attention_layernorm.weight",
    [P_WGATE] = "mlp.gate_proj.weight", [P_WUP] = "mlp.up_proj.weight",
    [P_WDOWN] = "mlp.down_proj.weight",
};

const char *param_kind_name(ParamKind k) {
    return (k >= 0 && k < NUM_PARAM_KINDS) ? kind_names[k] : "?";
}

void param_hf_name(ParamKind k, int layer, char *buf, size_t n) {
    switch (k) {
    case P_WTE:
        snprintf(buf, n, "model.embed_tokens.weight");
        break;
    case P_LNF:
        snprintf(buf, n, "model.norm.weight");
        break;
    case P_LM_HEAD:
        snprintf(buf, n, "lm_head.weight");
        break;
    default:
        snprintf(buf, n, "model.layers.%d.%s", layer, hf_suffix[k]);
        break;
    }
}
