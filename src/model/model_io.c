// Hugging Face model folders: config.json + safetensors weights, read into and written from
// the parameter slab.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/common.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "text/tokenizer.h"

// What to tell the user when a parameter tensor is not in the checkpoint.
static const char *missing_hint(const ModelConfig *cfg, ParamKind k) {
    switch (k) {
    case P_LM_HEAD:
        return "config.json says tie_word_embeddings is false; if the checkpoint shares the "
               "embedding with the head, set it to true";
    case P_BQ:
    case P_BK:
    case P_BV:
    case P_BO:
        return cfg->type == MODEL_QWEN2 ? "qwen2 checkpoints carry q/k/v biases"
                                        : "config.json sets attention_bias true; set it to "
                                          "false if the checkpoint has no attention biases";
    default:
        return "the weights do not belong to this config.json, or the file is incomplete";
    }
}

static void format_dims(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Checks every parameter tensor of the collection (present, shape, dtype) and, with params,
// copies it there. The check runs before anything is allocated: once every tensor config.json
// implies is in the files with its shape, the slab is no larger than the files, so a hostile
// config.json cannot make gemc allocate more than the weights it comes with.
static int load_params(const ModelConfig *cfg, const ParamLayout *lay, const StCollection *c,
                       const char *dir, float *params) {
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &lay->p[k];
        if (s->size == 0) continue; // not used by this config (tied head, no biases)
        int nl = s->layered ? cfg->num_layers : 1;
        for (int l = 0; l < nl; l++) {
            char name[128];
            param_hf_name((ParamKind)k, l, name, sizeof name);
            const char *file = NULL;
            const StTensor *t = st_collection_find(c, name, &file);
            if (!t) {
                const char *where = c->nfiles == 1 ? c->files[0].path : dir;
                gemc_set_error("%s: missing tensor '%s' (HINT: %s)", where, name,
                               missing_hint(cfg, (ParamKind)k));
                return -1;
            }
            int64_t want[2] = {s->shape[0], s->shape[1]};
            int same = t->ndim == s->ndim;
            for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == want[d];
            if (!same) {
                char got_s[160], want_s[64];
                format_dims(got_s, sizeof got_s, t->shape, t->ndim);
                format_dims(want_s, sizeof want_s, want, s->ndim);
                gemc_set_error("%s: tensor '%s' has shape %s but config.json implies %s (HINT: "
                               "the weights and config.json come from different models)",
                               file, name, got_s, want_s);
                return -1;
            }
            if (!dtype_is_float_weight(t->dtype)) {
                gemc_set_error("%s: tensor '%s' has dtype %s; only F32, BF16 and F16 weights are "
                               "supported (HINT: quantized checkpoints must be dequantized "
                               "first)",
                               file, name, dtype_name(t->dtype));
                return -1;
            }
            if (params && st_tensor_to_f32(t, params + s->offset + (size_t)l * s->per_layer) != 0)
                return -1;
        }
    }
    return 0;
}

int model_load_hf(Model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char *cfg_path = path_join(dir, "config.json");
    struct stat st;
    if (stat(cfg_path, &st) != 0) {
        gemc_set_error("%s: not found (HINT: %s must be a Hugging Face model folder with "
                       "config.json and *.safetensors)",
                       cfg_path, dir);
        free(cfg_path);
        return -1;
    }
    ModelConfig cfg;
    int rc = model_config_load(cfg_path, &cfg);
    free(cfg_path);
    if (rc != 0) return -1;
    StCollection c;
    if (st_collection_open_dir(&c, dir) != 0) return -1;
    ParamLayout lay;
    param_layout_init(&lay, &cfg);
    rc = load_params(&cfg, &lay, &c, dir, NULL);
    if (rc == 0) {
        model_init(m, &cfg);
        rc = load_params(&cfg, &lay, &c, dir, m->params);
        if (rc != 0) model_free(m);
    }
    st_collection_close(&c);
    return rc;
}

int model_save_hf(const Model *m, const char *dir, DType dtype) {
    if (!dtype_is_float_weight(dtype)) {
        gemc_set_error("%s: cannot save weights as %s; use F32, BF16 or F16", dir,
                       dtype_name(dtype));
        return -1;
    }
    if (ensure_dir(dir) != 0) return -1;
    const ParamLayout *lay = &m->layout;
    const int L = m->cfg.num_layers;
    // embed, the layers in order, the final norm, the head
    int n = 0;
    for (int k = 0; k < NUM_PARAM_KINDS; k++)
        if (lay->p[k].size) n += lay->p[k].layered ? L : 1;
    StWriteTensor *ts = callocCheck((size_t)n + 1, sizeof *ts);
    char(*names)[128] = callocCheck((size_t)n + 1, sizeof *names);
    int i = 0;
    for (int pass = 0; pass < 3; pass++) {
        int nl = pass == 1 ? L : 1;
        for (int l = 0; l < nl; l++) {
            for (int k = 0; k < NUM_PARAM_KINDS; k++) {
                const ParamSpec *s = &lay->p[k];
                if (!s->size) continue;
                int in_pass = s->layered ? 1 : (k == P_WTE ? 0 : 2);
                if (in_pass != pass) continue;
                param_hf_name((ParamKind)k, l, names[i], sizeof names[i]);
                ts[i].name = names[i];
                ts[i].ndim = s->ndim;
                ts[i].shape[0] = s->shape[0];
                ts[i].shape[1] = s->shape[1];
                ts[i].data = m->params + s->offset + (size_t)l * s->per_layer;
                i++;
            }
        }
    }
    char *wpath = path_join(dir, "model.safetensors");
    int rc = st_write(wpath, ts, i, dtype);
    free(wpath);
    free(ts);
    free(names);
    if (rc != 0) return -1;
    char *json = model_config_to_json(&m->cfg, dtype_torch_name(dtype));
    char *cpath = path_join(dir, "config.json");
    rc = write_file_atomic(cpath, json, strlen(json));
    free(cpath);
    free(json);
    return rc;
}

int model_save_folder(const Model *m, const char *out, DType dtype, const char *tokenizer_src,
                      int required) {
    // the tokenizer goes first: a tokenizer that does not fit the model leaves no weights behind
    struct stat st;
    if (tokenizer_src && !required && stat(tokenizer_src, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *f = path_join(tokenizer_src, "tokenizer.json");
        if (stat(f, &st) != 0) tokenizer_src = NULL;
        free(f);
    }
    if (tokenizer_src && tokenizer_copy_files(tokenizer_src, out, m->cfg.vocab_size) != 0)
        return -1;
    return model_save_hf(m, out, dtype);
}
