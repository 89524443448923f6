// Chat templates: the exact text each one produces (what transformers' apply_chat_template gives
// for the same conversation), recognising a model's template from its tokenizer_config.json,
// and the token that ends an assistant turn.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "text/chat_template.h"
#include "base/common.h"
#include "tests.h"
#include "text/tokenizer.h"

// test_data.c: the byte-level test tokenizer (ids 0..255 are the bytes, then
// <|begin_of_text|> 256, <|end_of_text|> 257, <|im_start|> 258, <|im_end|> 259)

static char *fmt(ChatTemplate t, const char *system, const char *prompt, int gen) {
    StrBuf b = {0};
    chat_format(t, system, prompt, gen, &b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b.p);
    return b.p;
}

#define ASSERT_FORMAT(t, sys, prompt, gen, want)                                                   \
    do {                                                                                           \
        char *got_ = fmt(t, sys, prompt, gen);                                                     \
        CU_ASSERT_STRING_EQUAL(got_, want);                                                        \
        if (strcmp(got_, want)) fprintf(stderr, "\n  got  [%s]\n  want [%s]\n", got_, want);       \
        free(got_);                                                                                \
    } while (0)

static int error_has(const char *needle) {
    int ok = strstr(gemc_error(), needle) != NULL;
    if (!ok) fprintf(stderr, "\n  error [%s] lacks [%s]\n", gemc_error(), needle);
    return ok;
}

static void test_from_name(void) {
    ChatTemplate t = CHAT_PLAIN;
    CU_ASSERT_EQUAL(chat_template_from_name("chatml", "config.yaml: chat_template", &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_CHATML);
    CU_ASSERT_EQUAL(chat_template_from_name("llama3", "config.yaml: chat_template", &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_LLAMA3);
    CU_ASSERT_EQUAL(chat_template_from_name("plain", "config.yaml: chat_template", &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_PLAIN);
    for (int i = 0; i < 3; i++) {
        ChatTemplate back;
        CU_ASSERT_EQUAL(chat_template_from_name(chat_template_name((ChatTemplate)i), "x", &back),
                        0);
        CU_ASSERT_EQUAL(back, (ChatTemplate)i);
    }
}

static void test_from_name_errors(void) {
    ChatTemplate t = CHAT_LLAMA3;
    CU_ASSERT_EQUAL(chat_template_from_name("chatmk", "config.yaml: chat_template", &t), -1);
    CU_ASSERT_STRING_EQUAL(gemc_error(), "config.yaml: chat_template: unknown template 'chatmk' "
                                         "(did you mean 'chatml'? choose plain, chatml or llama3)");
    CU_ASSERT_EQUAL(t, CHAT_LLAMA3); // untouched on error
    CU_ASSERT_EQUAL(chat_template_from_name("llama-3", "--chat-template", &t), -1);
    CU_ASSERT(error_has("--chat-template: unknown template 'llama-3' (did you mean 'llama3'?"));
    // nothing close: no suggestion, still the choices
    CU_ASSERT_EQUAL(chat_template_from_name("mistral-instruct", "config.yaml: chat_template", &t),
                    -1);
    CU_ASSERT_STRING_EQUAL(gemc_error(), "config.yaml: chat_template: unknown template "
                                         "'mistral-instruct' (choose plain, chatml or llama3)");
    // names are exact: a user's "ChatML" is refused, with the right spelling offered
    CU_ASSERT_EQUAL(chat_template_from_name("ChatML", "c", &t), -1);
    CU_ASSERT(error_has("did you mean 'chatml'?"));
    CU_ASSERT_EQUAL(chat_template_from_name("", "c", &t), -1);
    CU_ASSERT(error_has("unknown template ''"));
}

static void test_chatml(void) {
    ASSERT_FORMAT(CHAT_CHATML, "You are a helpful assistant.", "What is 2+2?", 1,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    ASSERT_FORMAT(CHAT_CHATML, NULL, "What is 2+2?", 1,
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    ASSERT_FORMAT(CHAT_CHATML, "SYS", "P", 0,
                  "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nP<|im_end|>\n");
    ASSERT_FORMAT(CHAT_CHATML, NULL, "P", 0, "<|im_start|>user\nP<|im_end|>\n");
    // an empty system prompt is no system turn (Qwen3 adds no default one either)
    ASSERT_FORMAT(CHAT_CHATML, "", "P", 1,
                  "<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n");
    // Qwen's template does not trim: the text goes in as it is
    ASSERT_FORMAT(CHAT_CHATML, " S\n", "  two\n\nlines \n", 1,
                  "<|im_start|>system\n S\n<|im_end|>\n<|im_start|>user\n  two\n\nlines "
                  "\n<|im_end|>\n<|im_start|>assistant\n");
}

static void test_chatml_appends(void) {
    // chat_format appends: what was in the buffer stays in front
    StrBuf b = {0};
    strbuf_puts(&b, "X");
    chat_format(CHAT_CHATML, NULL, "P", 0, &b);
    CU_ASSERT_STRING_EQUAL(b.p, "X<|im_start|>user\nP<|im_end|>\n");
    CU_ASSERT_EQUAL(b.len, strlen(b.p));
    free(b.p);
}

static void test_llama3(void) {
    ASSERT_FORMAT(CHAT_LLAMA3, "You are a helpful assistant.", "What is 2+2?", 1,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "You are a helpful assistant.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    // the BOS opens the first message, whichever it is
    ASSERT_FORMAT(CHAT_LLAMA3, NULL, "Hi", 1,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    ASSERT_FORMAT(CHAT_LLAMA3, "S", "Hi", 0,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    ASSERT_FORMAT(CHAT_LLAMA3, "", "Hi", 0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

static void test_llama3_trim(void) {
    // Jinja's trim is Python's str.strip(): ASCII whitespace and the Unicode spaces, both ends,
    // nothing inside
    ASSERT_FORMAT(CHAT_LLAMA3, " \t\n You are terse. \r\n", "\n\n  two  words \n\t", 0,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "You are terse.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\ntwo  words<|eot_id|>");
    // U+3000 ideographic space, U+00A0 no-break space, U+2003 em space, U+0085 next line,
    // \v \f and the \x1c..\x1f separators are all str.isspace()
    ASSERT_FORMAT(CHAT_LLAMA3, NULL,
                  "\xe3\x80\x80\xc2\xa0\v\f\x1c\x1f"
                  "caf\xc3\xa9 \xe2\x98\x83"
                  "\xe2\x80\x83\xc2\x85",
                  0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                  "caf\xc3\xa9 \xe2\x98\x83<|eot_id|>");
    // U+200B (zero width space) is not whitespace to Python, so it stays
    ASSERT_FORMAT(CHAT_LLAMA3, NULL, "\xe2\x80\x8bx\xe2\x80\x8b", 0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                  "\xe2\x80\x8bx\xe2\x80\x8b<|eot_id|>");
    // all whitespace trims to nothing
    ASSERT_FORMAT(CHAT_LLAMA3, NULL, " \n ", 0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>");
}

static void test_plain(void) {
    ASSERT_FORMAT(CHAT_PLAIN, "Think step by step.", "What is 2+2?", 1,
                  "Think step by step.\n\nWhat is 2+2?\n");
    ASSERT_FORMAT(CHAT_PLAIN, NULL, "What is 2+2?", 1, "What is 2+2?\n");
    ASSERT_FORMAT(CHAT_PLAIN, "", "What is 2+2?", 1, "What is 2+2?\n");
    // the plain Jinja template has no generation header, so the text is the same without one
    ASSERT_FORMAT(CHAT_PLAIN, "S", "P", 0, "S\n\nP\n");
    ASSERT_FORMAT(CHAT_PLAIN, NULL, "P", 0, "P\n");
    // and it does not trim
    ASSERT_FORMAT(CHAT_PLAIN, " S ", " P ", 1, " S \n\n P \n");
}

static void test_plain_jinja(void) {
    // the exact template gemc writes: transformers renders it to the text test_plain checks
    CU_ASSERT_STRING_EQUAL(
        CHAT_PLAIN_JINJA,
        "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] "
        "+ '\\n\\n' }}{% elif message['role'] == 'user' %}{{ message['content'] + '\\n' }}{% elif "
        "message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% "
        "endfor %}");
    // the newlines are Jinja escapes (backslash, n), not raw newlines
    CU_ASSERT_PTR_NULL(strchr(CHAT_PLAIN_JINJA, '\n'));
}

// Writes tokenizer_config.json text into a fresh directory; returns its path.
static char *config_file(const char *text) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "tokenizer_config.json");
    test_write_file(path, text, strlen(text));
    free(dir);
    return path;
}

// Like config_file, with "chat_template" set to a string (escaped by cJSON, as a real file is).
static char *config_with_template(const char *tmpl) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddFalseToObject(root, "add_bos_token");
    cJSON_AddStringToObject(root, "chat_template", tmpl);
    cJSON_AddStringToObject(root, "eos_token", "<|endoftext|>");
    char *text = cJSON_Print(root);
    char *path = config_file(text);
    cJSON_free(text);
    cJSON_Delete(root);
    return path;
}

static int detect(const char *path, ChatTemplate *t) {
    *t = (ChatTemplate)-1;
    return chat_template_detect(path, t);
}

static void test_detect_qwen3(void) {
    // the opening and the end of Qwen3-0.6B's tokenizer_config.json, template as stored there
    char *path = config_file(
        "{\n"
        "  \"add_bos_token\": false,\n"
        "  \"add_prefix_space\": false,\n"
        "  \"added_tokens_decoder\": {\n"
        "    \"151643\": {\"content\": \"<|endoftext|>\", \"lstrip\": false, \"normalized\": "
        "false, \"rstrip\": false, \"single_word\": false, \"special\": true},\n"
        "    \"151644\": {\"content\": \"<|im_start|>\", \"lstrip\": false, \"normalized\": "
        "false, \"rstrip\": false, \"single_word\": false, \"special\": true},\n"
        "    \"151645\": {\"content\": \"<|im_end|>\", \"lstrip\": false, \"normalized\": false, "
        "\"rstrip\": false, \"single_word\": false, \"special\": true}\n"
        "  },\n"
        "  \"bos_token\": null,\n"
        "  \"chat_template\": \"{%- if tools %}\\n    {{- '<|im_start|>system\\\\n' }}\\n    "
        "{%- if messages[0].role == 'system' %}\\n        {{- messages[0].content + "
        "'\\\\n\\\\n' }}\\n    {%- endif %}\\n{%- else %}\\n    {%- if messages[0].role == "
        "'system' %}\\n        {{- '<|im_start|>system\\\\n' + messages[0].content + "
        "'<|im_end|>\\\\n' }}\\n    {%- endif %}\\n{%- endif %}\\n{%- for message in messages "
        "%}\\n    {%- if (message.role == \\\"user\\\") %}\\n        {{- '<|im_start|>' + "
        "message.role + '\\\\n' + message.content + '<|im_end|>' + '\\\\n' }}\\n    {%- endif "
        "%}\\n{%- endfor %}\\n{%- if add_generation_prompt %}\\n    {{- "
        "'<|im_start|>assistant\\\\n' }}\\n    {%- if enable_thinking is defined and "
        "enable_thinking is false %}\\n        {{- '<think>\\\\n\\\\n</think>\\\\n\\\\n' }}\\n   "
        " {%- endif %}\\n{%- endif %}\",\n"
        "  \"clean_up_tokenization_spaces\": false,\n"
        "  \"eos_token\": \"<|im_end|>\",\n"
        "  \"errors\": \"replace\",\n"
        "  \"model_max_length\": 131072,\n"
        "  \"pad_token\": \"<|endoftext|>\",\n"
        "  \"split_special_tokens\": false,\n"
        "  \"tokenizer_class\": \"Qwen2Tokenizer\",\n"
        "  \"unk_token\": null\n"
        "}\n");
    ChatTemplate t;
    CU_ASSERT_EQUAL(detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_CHATML);
    free(path);
}

static void test_detect_llama3(void) {
    // Meta-Llama-3-8B-Instruct's template
    char *path = config_with_template(
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
        "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
        "%}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}");
    ChatTemplate t;
    CU_ASSERT_EQUAL(detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_LLAMA3);
    free(path);
}

static void test_detect_plain(void) {
    // what gemc writes for the plain template comes back as plain
    char *path = config_with_template(CHAT_PLAIN_JINJA);
    ChatTemplate t;
    CU_ASSERT_EQUAL(detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_PLAIN);
    free(path);
    // a base model without a template is plain, whether the key is absent or null
    path = config_file("{\"bos_token\": \"<|begin_of_text|>\", \"model_max_length\": 8192}");
    CU_ASSERT_EQUAL(detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_PLAIN);
    free(path);
    path = config_file("{\"chat_template\": null}");
    CU_ASSERT_EQUAL(detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_PLAIN);
    free(path);
}

static void test_detect_list(void) {
    // several named templates: "default" is the conversation template, wherever it is listed
    char *path = config_file(
        "{\"chat_template\": ["
        "{\"name\": \"tool_use\", \"template\": \"{{ '<|start_header_id|>tools' }}\"},"
        "{\"name\": \"default\", \"template\": \"{% for m in messages %}{{ '<|im_start|>' + "
        "m['role'] }}{% endfor %}\"},"
        "{\"name\": \"rag\", \"template\": \"{{ 'x' }}\"}]}");
    ChatTemplate t;
    CU_ASSERT_EQUAL(detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_CHATML);
    free(path);

    path = config_file("{\"chat_template\": [{\"name\": \"tool_use\", \"template\": "
                       "\"{{ '<|im_start|>' }}\"}]}");
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has(path));
    CU_ASSERT(error_has("'default'"));
    CU_ASSERT(error_has("chat_template: plain|chatml|llama3"));
    free(path);
}

static void test_detect_errors(void) {
    ChatTemplate t;
    // Gemma's turn markers: a format gemc does not implement
    char *path = config_with_template("{{ bos_token }}{% for message in messages %}"
                                      "{{ '<start_of_turn>' + message['role'] + '\\n' }}"
                                      "{% endfor %}");
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has(path));
    CU_ASSERT(error_has("HINT"));
    CU_ASSERT(error_has("chat_template: plain|chatml|llama3"));
    free(path);

    // close to plain is not plain: rendering would differ from what gemc trains on
    char *almost = mallocCheck(strlen(CHAT_PLAIN_JINJA) + 2);
    snprintf(almost, strlen(CHAT_PLAIN_JINJA) + 2, "%s ", CHAT_PLAIN_JINJA);
    path = config_with_template(almost);
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has("chat_template: plain|chatml|llama3"));
    free(path);
    free(almost);

    path = config_file("{\"chat_template\": 42}");
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has(path));
    CU_ASSERT(error_has("chat_template"));
    free(path);

    path = config_file("{\"chat_template\": \"<|im_start|>\",\n  \"eos_token\": }");
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has(path));
    CU_ASSERT(error_has("not valid JSON"));
    CU_ASSERT(error_has("line 2"));
    free(path);

    path = config_file("[\"<|im_start|>\"]");
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has(path));
    CU_ASSERT(error_has("not a JSON object"));
    free(path);

    char *dir = test_tmpdir();
    path = path_join(dir, "tokenizer_config.json");
    CU_ASSERT_EQUAL(detect(path, &t), -1);
    CU_ASSERT(error_has(path));
    CU_ASSERT(error_has("cannot open"));
    CU_ASSERT(error_has("No such file"));
    free(path);
    free(dir);
}

static void test_end_of_turn(void) {
    Tokenizer *tok = test_byte_tokenizer();
    CU_ASSERT_EQUAL(chat_end_of_turn_id(CHAT_CHATML, tok, 257), 259);
    CU_ASSERT_EQUAL(chat_end_of_turn_id(CHAT_PLAIN, tok, 257), 257);
    CU_ASSERT_EQUAL(chat_end_of_turn_id(CHAT_PLAIN, tok, 0), 0);
    // this tokenizer has no <|eot_id|>: llama3 cannot end a turn with it
    CU_ASSERT_EQUAL(chat_end_of_turn_id(CHAT_LLAMA3, tok, 257), -1);
    CU_ASSERT(error_has("<|eot_id|>"));
    CU_ASSERT(error_has("llama3"));
    CU_ASSERT(error_has(tokenizer_path(tok)));
    // plain needs the model's EOS, and one inside the vocabulary
    CU_ASSERT_EQUAL(chat_end_of_turn_id(CHAT_PLAIN, tok, -1), -1);
    CU_ASSERT(error_has("EOS"));
    CU_ASSERT_EQUAL(chat_end_of_turn_id(CHAT_PLAIN, tok, 260), -1);
    CU_ASSERT(error_has("260"));
    CU_ASSERT(error_has("vocabulary of 260 tokens"));
    tokenizer_free(tok);
}

void register_chat_template_tests(void) {
    static const TestCase tests[] = {
        {"from_name", test_from_name},
        {"from_name_errors", test_from_name_errors},
        {"chatml", test_chatml},
        {"chatml_appends", test_chatml_appends},
        {"llama3", test_llama3},
        {"llama3_trim", test_llama3_trim},
        {"plain", test_plain},
        {"plain_jinja", test_plain_jinja},
        {"detect_qwen3", test_detect_qwen3},
        {"detect_llama3", test_detect_llama3},
        {"detect_plain", test_detect_plain},
        {"detect_list", test_detect_list},
        {"detect_errors", test_detect_errors},
        {"end_of_turn", test_end_of_turn},
        {NULL, NULL},
    };
    add_suite("chat_template", tests);
}
