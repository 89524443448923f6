// The byte-level tokenizer of the embedded tiny model, written in Hugging Face's format so that
// it goes through the same loader as the real ones (and loads in transformers).
#include <stdio.h>
#include <stdlib.h>

#include "text/chat_template.h"
#include "base/json_file.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

static const char *const SPECIAL_TOKENS[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",
                                             "<|im_end|>"};
#define NUM_SPECIAL      4
#define FIRST_SPECIAL_ID 256

static int write_json(const char *dir, const char *name, cJSON *root) {
    char *path = path_join(dir, name);
    int rc = json_write_file(path, root);
    free(path);
    return rc;
}

static cJSON *special_token_json(int id, const char *content, int with_id) {
    cJSON *t = cJSON_CreateObject();
    if (with_id) cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddFalseToObject(t, "single_word");
    cJSON_AddFalseToObject(t, "lstrip");
    cJSON_AddFalseToObject(t, "rstrip");
    cJSON_AddFalseToObject(t, "normalized");
    cJSON_AddTrueToObject(t, "special");
    return t;
}

static cJSON *byte_level(int add_prefix_space) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddTrueToObject(o, "trim_offsets");
    cJSON_AddTrueToObject(o, "use_regex");
    return o;
}

// {"SpecialToken": {"id": ..., "type_id": t}} or {"Sequence": {...}} of a template
static cJSON *template_piece(const char *kind, const char *id, int type_id) {
    cJSON *o = cJSON_CreateObject();
    cJSON *in = cJSON_AddObjectToObject(o, kind);
    cJSON_AddStringToObject(in, "id", id);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    return o;
}

// The byte-level BPE with no merges: token b is byte b, so any text is encodable and the tiny
// model's 260-token vocabulary is the 256 bytes plus the four special tokens.
static int write_tokenizer(const char *dir) {
    const char *bos = SPECIAL_TOKENS[0];
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < NUM_SPECIAL; i++)
        cJSON_AddItemToArray(added, special_token_json(FIRST_SPECIAL_ID + i, SPECIAL_TOKENS[i], 1));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", byte_level(0));

    cJSON *post = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(post, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(post, "single");
    cJSON_AddItemToArray(single, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(single, template_piece("Sequence", "A", 0));
    cJSON *pair = cJSON_AddArrayToObject(post, "pair");
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 1));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "B", 1));
    cJSON *specials = cJSON_AddObjectToObject(post, "special_tokens");
    cJSON *st = cJSON_AddObjectToObject(specials, bos);
    cJSON_AddStringToObject(st, "id", bos);
    int bos_id = FIRST_SPECIAL_ID;
    cJSON_AddItemToObject(st, "ids", cJSON_CreateIntArray(&bos_id, 1));
    cJSON_AddItemToObject(st, "tokens", cJSON_CreateStringArray(&bos, 1));

    cJSON_AddItemToObject(root, "decoder", byte_level(1));

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int b = 0; b < 256; b++) {
        char key[5] = {0};
        utf8_encode(bytelevel_char((unsigned char)b), key);
        cJSON_AddNumberToObject(vocab, key, b);
    }
    cJSON_AddArrayToObject(model, "merges");
    return write_json(dir, "tokenizer.json", root);
}

static int write_tokenizer_config(const char *dir, int model_max_length) {
    cJSON *root = cJSON_CreateObject();
    cJSON *dec = cJSON_AddObjectToObject(root, "added_tokens_decoder");
    for (int i = 0; i < NUM_SPECIAL; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", FIRST_SPECIAL_ID + i);
        cJSON_AddItemToObject(dec, id, special_token_json(0, SPECIAL_TOKENS[i], 0));
    }
    cJSON_AddStringToObject(root, "bos_token", SPECIAL_TOKENS[0]);
    cJSON_AddStringToObject(root, "chat_template", CHAT_PLAIN_JINJA);
    cJSON_AddFalseToObject(root, "clean_up_tokenization_spaces");
    cJSON_AddStringToObject(root, "eos_token", SPECIAL_TOKENS[1]);
    cJSON_AddNumberToObject(root, "model_max_length", model_max_length);
    cJSON_AddStringToObject(root, "tokenizer_class", "PreTrainedTokenizerFast");
    return write_json(dir, "tokenizer_config.json", root);
}

int tokenizer_write_bytelevel(const char *dir, int model_max_length) {
    if (ensure_dir(dir) != 0) return -1;
    if (write_tokenizer(dir) != 0) return -1;
    return write_tokenizer_config(dir, model_max_length);
}
