// gemc check-data: loads a JSONL file the way training will (fields, UTF-8, chat template,
// tokenizer, the model's context) and prints what the model will see, so that a bad line is
// found before a run starts rather than hours into it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "text/data.h"
#include "model/model_config.h"
#include "base/utf8.h"

typedef struct {
    long sum;
    int max, n;
} LenStats;

static void stats_add(LenStats *s, int len) {
    s->sum += len;
    s->n++;
    if (len > s->max) s->max = len;
}

static void stats_print(const char *what, const LenStats *s) {
    printf("  %-9s tokens: mean %.1f, max %d\n", what, s->n ? (double)s->sum / s->n : 0.0, s->max);
}

static void show_record(const Tokenizer *tok, const DataRecord *r) {
    StrBuf bytes = {0}, text = {0};
    printf("--- line %d: prompt as the model sees it (%d tokens)\n", r->line, r->prompt_ids.n);
    tokenizer_decode(tok, r->prompt_ids.v, r->prompt_ids.n, 0, &bytes);
    utf8_append_lossy(&text, bytes.p, bytes.len);
    printf("%s\n", text.p);
    if (r->chosen_ids.n) {
        bytes.len = text.len = 0;
        tokenizer_decode(tok, r->chosen_ids.v, r->chosen_ids.n, 0, &bytes);
        utf8_append_lossy(&text, bytes.p, bytes.len);
        printf("--- chosen (%d tokens, end of turn included)\n%s\n", r->chosen_ids.n, text.p);
    }
    free(bytes.p);
    free(text.p);
}

int cmd_check_data(int argc, char **argv) {
    const char *data = NULL, *kind_name = NULL, *model_dir = NULL, *tmpl_name = NULL;
    const char *system = NULL;
    int show = 0, max_line = 0;
    const CliOpt opts[] = {
        {"data", OPT_STR, &data, "FILE", "the JSONL file", 1},
        {"kind", OPT_STR, &kind_name, "KIND", "pairs or prompts", 1},
        {"model", OPT_STR, &model_dir, "DIR",
         "model folder: its config.json (context, EOS) and tokenizer", 1},
        {"chat-template", OPT_STR, &tmpl_name, "NAME",
         "plain, chatml, llama3, or auto (default: from tokenizer_config.json)", 0},
        {"system", OPT_STR, &system, "TEXT", "system prompt put before every prompt", 0},
        {"show", OPT_INT, &show, "N", "print the first N records as the model sees them", 0},
        {"max-line-bytes", OPT_INT, &max_line, "N", "longest line accepted (default 1 MiB)", 0},
        {0},
    };
    const CliCommand cmd = {
        "check-data",
        "Reads a JSONL file of pairs ({prompt, chosen, rejected}, or {question, answer_pos,\n"
        "answer_neg}) or prompts ({prompt} with an optional answer), puts every prompt through\n"
        "the chat template and the tokenizer, and checks it against the model's context.\n"
        "Prints the counts and token lengths, or the first defect as FILE:LINE: what is wrong.",
        "example:\n"
        "  gemc check-data --data data/arith/train_pairs.jsonl --kind pairs --model runs/tiny",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    DataKind kind;
    if (!strcmp(kind_name, "pairs"))
        kind = DATA_PAIRS;
    else if (!strcmp(kind_name, "prompts"))
        kind = DATA_PROMPTS;
    else {
        gemc_set_error("--kind: '%s' is not a kind of data (HINT: pairs or prompts)", kind_name);
        return cmd_fail();
    }

    ModelConfig cfg;
    char *cfg_path = path_join(model_dir, "config.json");
    rc = model_config_load(cfg_path, &cfg);
    free(cfg_path);
    if (rc) return cmd_fail();
    ChatTemplate tmpl;
    if (chat_template_resolve(tmpl_name, "--chat-template", model_dir, &tmpl)) return cmd_fail();
    Tokenizer *tok = tokenizer_load(model_dir);
    if (!tok) return cmd_fail();
    Dataset ds;
    if (dataset_load(&ds, data, kind, max_line) != 0) {
        tokenizer_free(tok);
        return cmd_fail();
    }
    int eos = cfg.num_eos ? cfg.eos_token_ids[0] : -1;
    rc = dataset_tokenize(&ds, tok, tmpl, system, eos, cfg.max_position_embeddings);
    if (!rc) {
        LenStats prompt = {0}, chosen = {0}, rejected = {0};
        int answers = 0;
        for (int i = 0; i < ds.n; i++) {
            const DataRecord *r = &ds.rec[i];
            stats_add(&prompt, r->prompt_ids.n);
            if (kind == DATA_PAIRS) {
                stats_add(&chosen, r->chosen_ids.n);
                stats_add(&rejected, r->rejected_ids.n);
            }
            answers += r->answer != NULL;
        }
        for (int i = 0; i < show && i < ds.n; i++) show_record(tok, &ds.rec[i]);
        printf("%s: %d %s, chat template %s, context %d\n", data, ds.n,
               kind == DATA_PAIRS ? "pairs" : "prompts", chat_template_name(tmpl),
               cfg.max_position_embeddings);
        stats_print("prompt", &prompt);
        if (kind == DATA_PAIRS) {
            stats_print("chosen", &chosen);
            stats_print("rejected", &rejected);
        } else {
            printf("  %d of %d prompts have an answer\n", answers, ds.n);
        }
    }
    dataset_free(&ds);
    tokenizer_free(tok);
    return rc ? cmd_fail() : 0;
}
