#include "text/chat_template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "base/cli.h"
#include "base/common.h"
#include "base/json_file.h"
#include "base/utf8.h"

const char CHAT_PLAIN_JINJA[] =
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% endif %}{% endfor %}";

static const char *const TEMPLATE_NAMES[] = {"plain", "chatml", "llama3"};
#define N_TEMPLATES 3

int chat_template_from_name(const char *name, const char *what, ChatTemplate *out) {
    if (!name) name = "";
    for (int i = 0; i < N_TEMPLATES; i++) {
        if (strcmp(name, TEMPLATE_NAMES[i]) == 0) {
            *out = (ChatTemplate)i;
            return 0;
        }
    }
    const char *near = *name ? closest_name(name, TEMPLATE_NAMES, N_TEMPLATES) : NULL;
    if (near)
        gemc_set_error("%s: unknown template '%s' (did you mean '%s'? choose plain, chatml or "
                       "llama3)",
                       what, name, near);
    else
        gemc_set_error("%s: unknown template '%s' (choose plain, chatml or llama3)", what, name);
    return -1;
}

const char *chat_template_name(ChatTemplate t) {
    return (unsigned)t < N_TEMPLATES ? TEMPLATE_NAMES[t] : "?";
}

// Some tokenizer_config.json files hold several named templates (tool use, RAG, ...); the one
// transformers applies to a plain conversation is "default".
static const char *default_of_list(const cJSON *list) {
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0 &&
            cJSON_IsString(tmpl))
            return tmpl->valuestring;
    }
    return NULL;
}

int chat_template_detect(const char *tokenizer_config_path, ChatTemplate *out) {
    const char *path = tokenizer_config_path;
    char *text = read_text_file(path, NULL);
    if (!text) return -1;
    cJSON *root = json_parse(text, path);
    if (!root) {
        free(text);
        return -1;
    }
    free(text);
    int rc = 0;
    const cJSON *ct =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
    const char *tmpl = NULL;
    if (!cJSON_IsObject(root)) {
        gemc_set_error("%s: not a JSON object (HINT: tokenizer_config.json holds one object)",
                       path);
        rc = -1;
    } else if (!ct || cJSON_IsNull(ct)) {
        *out = CHAT_PLAIN; // a base model: no chat format of its own
    } else if (cJSON_IsString(ct)) {
        tmpl = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        tmpl = default_of_list(ct);
        if (!tmpl) {
            gemc_set_error("%s: chat_template is a list without a template named 'default' "
                           "(HINT: set chat_template: plain|chatml|llama3 in the config)",
                           path);
            rc = -1;
        }
    } else {
        gemc_set_error("%s: chat_template is neither a string nor a list of named templates "
                       "(HINT: set chat_template: plain|chatml|llama3 in the config)",
                       path);
        rc = -1;
    }
    if (rc == 0 && tmpl) {
        // Recognised by the markers each format cannot do without, so that the many variants
        // of one format (tool calls, thinking, dates) all map to it.
        if (strcmp(tmpl, CHAT_PLAIN_JINJA) == 0) {
            *out = CHAT_PLAIN;
        } else if (strstr(tmpl, "<|im_start|>")) {
            *out = CHAT_CHATML;
        } else if (strstr(tmpl, "<|start_header_id|>")) {
            *out = CHAT_LLAMA3;
        } else {
            gemc_set_error("%s: chat_template is none of the templates gemc implements (plain, "
                           "chatml, llama3) (HINT: set chat_template: plain|chatml|llama3 in the "
                           "config)",
                           path);
            rc = -1;
        }
    }
    cJSON_Delete(root);
    return rc;
}

// Python's str.isspace, which Jinja's trim filter (str.strip) uses.
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static void put_trimmed(StrBuf *out, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, begin = n, end = 0;
    while (i < n) {
        uint32_t cp;
        int len = utf8_decode(u + i, n - i, &cp);
        // an ill-formed byte is not whitespace; it stops the trim like any other character
        int space = len > 0 && py_isspace(cp);
        if (len == 0) len = 1;
        if (!space) {
            if (begin == n) begin = i;
            end = i + (size_t)len;
        }
        i += (size_t)len;
    }
    if (begin < end) strbuf_put(out, s + begin, end - begin);
}

void chat_format(ChatTemplate t, const char *system, const char *prompt, int add_generation_prompt,
                 StrBuf *out) {
    int has_system = system && *system;
    if (!prompt) prompt = "";
    switch (t) {
    case CHAT_CHATML:
        if (has_system) {
            strbuf_puts(out, "<|im_start|>system\n");
            strbuf_puts(out, system);
            strbuf_puts(out, "<|im_end|>\n");
        }
        strbuf_puts(out, "<|im_start|>user\n");
        strbuf_puts(out, prompt);
        strbuf_puts(out, "<|im_end|>\n");
        if (add_generation_prompt) strbuf_puts(out, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA3:
        strbuf_puts(out, "<|begin_of_text|>");
        if (has_system) {
            strbuf_puts(out, "<|start_header_id|>system<|end_header_id|>\n\n");
            put_trimmed(out, system);
            strbuf_puts(out, "<|eot_id|>");
        }
        strbuf_puts(out, "<|start_header_id|>user<|end_header_id|>\n\n");
        put_trimmed(out, prompt);
        strbuf_puts(out, "<|eot_id|>");
        if (add_generation_prompt)
            strbuf_puts(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_PLAIN:
    default:
        // the plain Jinja template has no generation header: the response follows directly
        if (has_system) {
            strbuf_puts(out, system);
            strbuf_puts(out, "\n\n");
        }
        strbuf_puts(out, prompt);
        strbuf_puts(out, "\n");
        break;
    }
}

int chat_end_of_turn_id(ChatTemplate t, const Tokenizer *tok, int eos_id) {
    int vocab = tokenizer_vocab_size(tok);
    if (t == CHAT_PLAIN) {
        if (eos_id < 0 || eos_id >= vocab) {
            if (eos_id < 0)
                gemc_set_error("%s: the model has no EOS token, which the plain chat template "
                               "ends a response with (HINT: set eos_token_id in config.json, or "
                               "choose chat_template: chatml or llama3 in the config)",
                               tokenizer_path(tok));
            else
                gemc_set_error("%s: the EOS token id %d is outside the vocabulary of %d tokens "
                               "(HINT: check eos_token_id in config.json)",
                               tokenizer_path(tok), eos_id, vocab);
            return -1;
        }
        return eos_id;
    }
    const char *token = t == CHAT_CHATML ? "<|im_end|>" : "<|eot_id|>";
    int id = tokenizer_token_id(tok, token);
    if (id < 0) {
        gemc_set_error("%s: no token %s, which the %s chat template ends a turn with (HINT: set "
                       "chat_template in the config to the model's own format)",
                       tokenizer_path(tok), token, chat_template_name(t));
        return -1;
    }
    return id;
}

int chat_template_resolve(const char *name, const char *what, const char *model_dir,
                          ChatTemplate *out) {
    if (name && name[0] && strcmp(name, "auto") != 0)
        return chat_template_from_name(name, what, out);
    char *path = path_join(model_dir, "tokenizer_config.json");
    int rc = 0;
    if (access(path, F_OK) == 0)
        rc = chat_template_detect(path, out);
    else
        *out = CHAT_PLAIN;
    free(path);
    return rc;
}
