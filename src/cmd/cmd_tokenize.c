// gemc tokenize / gemc detokenize: a tokenizer.json on the command line, for inspecting what
// the model sees and for checking gemc against Hugging Face tokenizers line by line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

static void put_ids(StrBuf *b, const IntVec *ids) {
    char num[16];
    for (int i = 0; i < ids->n; i++) {
        int k = snprintf(num, sizeof num, i ? ",%d" : "%d", ids->v[i]);
        strbuf_put(b, num, (size_t)k);
    }
}

// stdin: one {"text": "..."} a line -> stdout: one {"ids": [...]} a line. Blank lines are
// skipped, as JSONL readers do.
static int tokenize_jsonl(Tokenizer *tok, int add_special) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    StrBuf b = {0};
    IntVec ids = {0};
    int rc = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        size_t lead = strspn(line, " \t");
        if ((ssize_t)lead >= len) continue;
        size_t bad = utf8_invalid_offset(line, (size_t)len);
        if (bad < (size_t)len) {
            gemc_set_error("stdin:%ld: invalid UTF-8 at byte %zu", lineno, bad + 1);
            rc = -1;
            break;
        }
        if (json_nul_escape_offset(line, (size_t)len) < (size_t)len) {
            gemc_set_error("stdin:%ld: the text holds \\u0000, which gemc cannot read from "
                           "JSON (HINT: remove the NUL character)",
                           lineno);
            rc = -1;
            break;
        }
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (!cJSON_IsString(text)) {
            gemc_set_error("stdin:%ld: %s (HINT: each line must be {\"text\": \"...\"})", lineno,
                           o ? "no \"text\" string" : "malformed JSON");
            cJSON_Delete(o);
            rc = -1;
            break;
        }
        ids.n = 0;
        rc = tokenizer_encode(tok, text->valuestring, strlen(text->valuestring), add_special, &ids);
        cJSON_Delete(o);
        if (rc) break;
        b.len = 0;
        strbuf_puts(&b, "{\"ids\": [");
        put_ids(&b, &ids);
        strbuf_puts(&b, "]}\n");
        fwrite(b.p, 1, b.len, stdout);
    }
    free(line);
    free(b.p);
    intvec_free(&ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL;
    int jsonl = 0, add_special = 0;
    const CliOpt opts[] = {
        {"tokenizer", OPT_STR, &path, "PATH", "tokenizer.json, or a model folder holding one", 1},
        {"text", OPT_STR, &text, "STRING", "the text to encode", 0},
        {"jsonl", OPT_FLAG, &jsonl, NULL, "read {\"text\": ...} lines on stdin instead", 0},
        {"add-special", OPT_FLAG, &add_special, NULL,
         "apply the post-processor (BOS), like add_special_tokens=True", 0},
        {0},
    };
    const CliCommand cmd = {
        "tokenize",
        "Encodes text with a Hugging Face tokenizer.json. With --text it prints the ids,\n"
        "comma-separated, on one line; with --jsonl it reads lines {\"text\": \"...\"} on stdin\n"
        "and writes one line {\"ids\": [...]} for each. Special tokens written in the text\n"
        "(<|im_start|>, <|eot_id|>, ...) are recognised, as in transformers.",
        "examples:\n"
        "  gemc tokenize --tokenizer data/arith --text 'Final Answer: 42'\n"
        "  echo '{\"text\": \"hi\"}' | gemc tokenize --tokenizer Qwen3-0.6B --jsonl",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    if (!text == !jsonl) {
        gemc_set_error("gemc tokenize: give exactly one of --text STRING and --jsonl");
        return cmd_fail();
    }
    Tokenizer *tok = tokenizer_load(path);
    if (!tok) return cmd_fail();
    if (jsonl) {
        rc = tokenize_jsonl(tok, add_special);
    } else {
        IntVec ids = {0};
        rc = tokenizer_encode(tok, text, strlen(text), add_special, &ids);
        if (!rc) {
            StrBuf b = {0};
            put_ids(&b, &ids);
            printf("%s\n", b.p ? b.p : "");
            free(b.p);
        } else {
            char why[256];
            snprintf(why, sizeof why, "%s", gemc_error());
            gemc_set_error("--text: %s", why);
        }
        intvec_free(&ids);
    }
    tokenizer_free(tok);
    return rc ? cmd_fail() : 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL, *ids_text = NULL;
    int skip_special = 0;
    const CliOpt opts[] = {
        {"tokenizer", OPT_STR, &path, "PATH", "tokenizer.json, or a model folder holding one", 1},
        {"ids", OPT_STR, &ids_text, "LIST", "token ids, comma-separated: 1,2,3", 1},
        {"skip-special", OPT_FLAG, &skip_special, NULL, "leave special tokens out", 0},
        {0},
    };
    const CliCommand cmd = {
        "detokenize",
        "Decodes token ids back to text and prints it with a newline. Bytes that do not form\n"
        "UTF-8 (an id sequence cut inside a character) print as U+FFFD, as transformers does.",
        "example:\n  gemc detokenize --tokenizer data/arith --ids 70,105,110,97,108",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    int *ids, n;
    if (cli_parse_ids(ids_text, "--ids", &ids, &n) != 0) return cmd_fail();
    Tokenizer *tok = tokenizer_load(path);
    if (!tok) {
        free(ids);
        return cmd_fail();
    }
    StrBuf bytes = {0}, text = {0};
    rc = tokenizer_decode(tok, ids, n, skip_special, &bytes);
    if (!rc) {
        utf8_append_lossy(&text, bytes.p, bytes.len);
        fwrite(text.p, 1, text.len, stdout);
        fputc('\n', stdout);
    } else {
        char why[512];
        snprintf(why, sizeof why, "%s", gemc_error());
        gemc_set_error("--ids: %s", why);
    }
    free(bytes.p);
    free(text.p);
    free(ids);
    tokenizer_free(tok);
    return rc ? cmd_fail() : 0;
}
