// The run configuration: one table of keys, and everything else (defaults, YAML files, KEY=VALUE
// overrides, checks, the resolved config.yaml, --help) read from it.
//
// This file holds the public API of config.h that is not parsing: defaults, KEY=VALUE
// overrides, the checks of a stage's configuration, the resolved config.yaml (written, saved,
// hashed), --help and the names of enum values. The table and the parsing and checking of one
// value are in config_keys.c, reading a YAML file in config_yaml.c.
//
// Defaults are written in the table as a user would write them and go through the same parser
// as user values, so a default can never be something a user could not set.
//
// A YAML file or an override is applied all or nothing: it is read into a copy of the
// configuration, which replaces the caller's only when the whole text was good. A failed call
// leaves the configuration as it was.
#include "config/config.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "config/config_internal.h"
#include "base/strbuf.h"
#include "base/utf8.h"

// ---- one value from text (overrides and defaults)

// The value of "key=value": text starting with a quote or '[' is YAML; anything else is taken
// as written (trimmed), so that "Final Answer:" or "a: b" need no quoting in a shell.
static int set_from_text(GemConfig *c, const KeyDef *k, const char *value, const char *place) {
    while (*value == ' ' || *value == '\t') value++;
    size_t n = strlen(value);
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t')) n--;
    char *v = strndup(value, n);
    if (!v) gemc_fatal("out of memory");
    int rc;
    if (v[0] == '"' || v[0] == '\'' || v[0] == '[') {
        rc = set_from_yaml_text(c, k, v, place);
    } else {
        char why[WHY_MAX];
        rc = set_from_scalar(c, k, v, n, 1, why);
        if (rc) gemc_set_error("%s: %s", place, why);
    }
    free(v);
    return rc;
}

int config_override(GemConfig *c, const char *assignment) {
    char place[WHY_MAX];
    snprintf(place, sizeof place, "command line: %.600s", assignment);
    const char *eq = strchr(assignment, '=');
    if (!eq) {
        gemc_set_error("%s: expected KEY=VALUE (HINT: overrides are key=value, e.g. "
                       "sampling.k=8)",
                       place);
        return -1;
    }
    const char *a = assignment, *b = eq;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    if (a == b) {
        gemc_set_error("%s: the key is missing (HINT: overrides are key=value, e.g. sampling.k=8)",
                       place);
        return -1;
    }
    char *key = strndup(a, (size_t)(b - a));
    if (!key) gemc_fatal("out of memory");
    const KeyDef *k = find_key(key);
    int rc = 0;
    if (!k) {
        char hint[512];
        char *dot = strchr(key, '.');
        if (!dot && find_section(key) >= 0) {
            gemc_set_error("%s: '%s' is a section, not a key (HINT: set one of its keys, e.g. "
                           "%s.KEY=VALUE; `gemc STAGE --help` lists them)",
                           place, key, key);
        } else {
            if (dot) *dot = 0;
            suggest_key(dot ? key : NULL, dot ? dot + 1 : key, hint, sizeof hint);
            if (dot) *dot = '.';
            if (!hint[0])
                snprintf(hint, sizeof hint, " (HINT: `gemc STAGE --help` lists the keys)");
            gemc_set_error("%s: unknown key '%s'%s", place, key, hint);
        }
        rc = -1;
    } else {
        // into a copy: a quoted value is set before libyaml sees what follows it ('a' b)
        GemConfig work;
        config_copy(&work, c);
        rc = set_from_text(&work, k, eq + 1, place);
        if (rc == 0) {
            config_free(c);
            *c = work;
        } else {
            config_free(&work);
        }
    }
    free(key);
    return rc;
}

void config_defaults(GemConfig *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_KEYS; i++) {
        char place[128];
        snprintf(place, sizeof place, "config_keys.c: the default of %s", KEYS[i].name);
        // a default the parser refuses is a bug of the table, found by the first test run
        if (set_from_text(c, &KEYS[i], KEYS[i].def, place)) gemc_fatal_last();
    }
}

// ---- writing

// The shortest text that reads back as the same float, with a ".0" so it looks like one.
static void format_float(float v, char *buf, size_t n) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEni")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static void put_escape(StrBuf *b, uint32_t cp) {
    char esc[12];
    switch (cp) {
    case '"':
        strbuf_puts(b, "\\\"");
        return;
    case '\\':
        strbuf_puts(b, "\\\\");
        return;
    case '\n':
        strbuf_puts(b, "\\n");
        return;
    case '\t':
        strbuf_puts(b, "\\t");
        return;
    case '\r':
        strbuf_puts(b, "\\r");
        return;
    }
    if (cp < 0x100)
        snprintf(esc, sizeof esc, "\\x%02x", (unsigned)cp);
    else
        snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
    strbuf_puts(b, esc);
}

// Code points a double-quoted YAML scalar cannot hold as they are: controls, and the line
// breaks (NEL, LS, PS) and non-characters libyaml would fold or refuse.
static int needs_escape(uint32_t cp) {
    return cp == '"' || cp == '\\' || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

// s as a double-quoted YAML scalar that loads back as exactly s.
static void put_quoted(StrBuf *b, const char *s) {
    strbuf_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode(p + i, n - i, &cp);
        if (len == 0) {
            // not UTF-8 (only a program can put it there; parsing refuses it): keep the YAML
            // well-formed at least
            put_escape(b, p[i]);
            i++;
        } else if (needs_escape(cp)) {
            put_escape(b, cp);
            i += (size_t)len;
        } else {
            strbuf_put(b, (const char *)p + i, (size_t)len);
            i += (size_t)len;
        }
    }
    strbuf_put(b, "\"", 1);
}

static const char *choice_name(const Choice *ch, int value) {
    for (int i = 0; ch[i].name; i++)
        if (ch[i].value == value) return ch[i].name;
    return NULL;
}

// The value of k as config.yaml writes it.
static void format_value(const GemConfig *c, const KeyDef *k, StrBuf *b) {
    char buf[64];
    const void *p = cfield(c, k);
    switch (k->type) {
    case K_INT:
        snprintf(buf, sizeof buf, "%d", *(const int *)p);
        break;
    case K_U64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)p);
        break;
    case K_FLOAT:
        format_float(*(const float *)p, buf, sizeof buf);
        break;
    case K_BOOL:
        snprintf(buf, sizeof buf, "%s", *(const int *)p ? "true" : "false");
        break;
    case K_ENUM: {
        const char *name = choice_name(k->choices, *(const int *)p);
        // an invalid value stays visible (and fails to load) rather than becoming a valid one
        if (name)
            snprintf(buf, sizeof buf, "%s", name);
        else
            snprintf(buf, sizeof buf, "%d", *(const int *)p);
        break;
    }
    case K_STR: {
        const char *s = *(char *const *)p;
        put_quoted(b, s ? s : "");
        return;
    }
    case K_LIST: {
        const StrList *l = p;
        strbuf_puts(b, "[");
        for (int i = 0; i < l->n; i++) {
            if (i) strbuf_puts(b, ", ");
            put_quoted(b, l->items[i]);
        }
        strbuf_puts(b, "]");
        return;
    }
    }
    strbuf_puts(b, buf);
}

static void render_yaml(const GemConfig *c, StrBuf *b) {
    strbuf_puts(b, "# gemc resolved configuration\n");
    const char *section = NULL;
    size_t section_len = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const KeyDef *k = &KEYS[i];
        const char *leaf = leaf_of(k);
        size_t len = (size_t)(leaf - 1 - k->name);
        if (!section || len != section_len || strncmp(section, k->name, len) != 0) {
            section = k->name;
            section_len = len;
            strbuf_put(b, k->name, len);
            strbuf_puts(b, ":\n");
        }
        strbuf_puts(b, "  ");
        strbuf_puts(b, leaf);
        strbuf_puts(b, ": ");
        format_value(c, k, b);
        strbuf_puts(b, "\n");
    }
}

void config_write_yaml(const GemConfig *c, FILE *f) {
    StrBuf b = {0};
    render_yaml(c, &b);
    fwrite(b.p, 1, b.len, f);
    free(b.p);
}

int config_save(const GemConfig *c, const char *dir) {
    if (ensure_dir(dir)) return -1;
    StrBuf b = {0};
    render_yaml(c, &b);
    char *path = path_join(dir, "config.yaml");
    int rc = write_file_atomic(path, b.p, b.len);
    free(path);
    free(b.p);
    return rc;
}

uint64_t config_hash(const GemConfig *c) {
    StrBuf b = {0};
    render_yaml(c, &b);
    uint64_t h = fnv1a64(b.p, b.len);
    free(b.p);
    return h;
}

// What decides a shard's content: everything a generator reads, and the advantages' settings.
static const char *const SHARD_KEYS[] = {"run.seed",
                                         "model.",
                                         "sampling.",
                                         "score.",
                                         "filter.",
                                         "reward.",
                                         "sega.",
                                         "train.model",
                                         "train.data",
                                         "train.batch_size",
                                         "pipeline.generators",
                                         NULL};

uint64_t config_shard_hash(const GemConfig *c) {
    StrBuf b = {0};
    for (int i = 0; i < N_KEYS; i++) {
        const KeyDef *k = &KEYS[i];
        int use = 0;
        for (int j = 0; SHARD_KEYS[j] && !use; j++) {
            size_t n = strlen(SHARD_KEYS[j]);
            use = SHARD_KEYS[j][n - 1] == '.' ? strncmp(k->name, SHARD_KEYS[j], n) == 0
                                              : strcmp(k->name, SHARD_KEYS[j]) == 0;
        }
        if (!use) continue;
        strbuf_puts(&b, k->name);
        strbuf_puts(&b, "=");
        format_value(c, k, &b);
        strbuf_puts(&b, "\n");
    }
    uint64_t h = fnv1a64(b.p, b.len);
    free(b.p);
    return h;
}

// ---- stages

typedef struct {
    const char *name;
    const char *sections[13]; // NULL-terminated
    const char *const *keys;  // single keys of the eval section it reads too (NULL-terminated)
} StageSections;

// What sft, train and dpo read of the eval section: the evaluations of eval.every.
static const char *const EVAL_EVERY_KEYS[] = {"eval.every", "eval.every_max",  "eval.prompts",
                                              "eval.pairs", "eval.majority_k", NULL};
// train's: the same and the probe of the signal check
static const char *const EVAL_TRAIN_KEYS[] = {
    "eval.every",      "eval.every_max", "eval.prompts",  "eval.pairs",
    "eval.majority_k", "eval.probe",     "eval.signal_k", NULL};

static const StageSections STAGES[] = {
    {"sft", {"run", "log", "model", "optim", "sft"}, EVAL_EVERY_KEYS},
    {"train",
     {"run", "log", "model", "sampling", "score", "filter", "reward", "sega", "optim", "train",
      "pipeline"},
     EVAL_TRAIN_KEYS},
    {"dpo",
     {"run", "log", "model", "optim", "dpo", "sampling", "score", "filter"},
     EVAL_EVERY_KEYS},
    {"eval", {"run", "log", "model", "sampling", "score", "eval"}, NULL},
    {"generate", {"run", "model", "sampling", "score", "generate"}, NULL},
};
#define N_STAGES ((int)(sizeof STAGES / sizeof STAGES[0]))

static const StageSections *find_stage(const char *stage) {
    for (int i = 0; i < N_STAGES; i++)
        if (strcmp(STAGES[i].name, stage) == 0) return &STAGES[i];
    // the stage names are the program's own, never a user's
    gemc_fatal("config: unknown stage '%s'", stage);
}

// "  key  default  help (range or names)"
static void print_key_help(const GemConfig *d, const KeyDef *k, FILE *f) {
    StrBuf val = {0};
    format_value(d, k, &val);
    char extra[256] = "";
    if (k->choices) {
        char names[200];
        choice_list(k->choices, "|", names, sizeof names);
        snprintf(extra, sizeof extra, " (%s)", names);
    } else if (k->range.flags) {
        char r[64];
        range_inequality(&k->range, r, sizeof r);
        snprintf(extra, sizeof extra, " (%s)", r);
    }
    fprintf(f, "  %-28s %-14s %s%s\n", k->name, val.p, k->help, extra);
    free(val.p);
}

void config_print_help(const char *stage, FILE *f) {
    const StageSections *st = find_stage(stage);
    GemConfig d;
    config_defaults(&d);
    fprintf(f, "configuration keys read by `gemc %s` (key, default, meaning):\n", stage);
    for (int s = 0; st->sections[s]; s++) {
        fprintf(f, "\n%s:\n", st->sections[s]);
        for (int i = 0; i < N_KEYS; i++)
            if (in_section(&KEYS[i], st->sections[s])) print_key_help(&d, &KEYS[i], f);
    }
    if (st->keys) fprintf(f, "\neval (the evaluations of eval.every):\n");
    for (int j = 0; st->keys && st->keys[j]; j++)
        for (int i = 0; i < N_KEYS; i++)
            if (!strcmp(KEYS[i].name, st->keys[j])) print_key_help(&d, &KEYS[i], f);
    config_free(&d);
}

// A value of the configuration as it stands (a program may have set fields directly): the
// same checks as parsing.
static int check_key(const GemConfig *c, const KeyDef *k, char *why) {
    const void *p = cfield(c, k);
    char text[64];
    switch (k->type) {
    case K_INT:
        snprintf(text, sizeof text, "%d", *(const int *)p);
        return check_number(k, *(const int *)p, text, why);
    case K_FLOAT:
        if (!isfinite(*(const float *)p))
            return why_set(why, "%s: expected a finite number", k->name);
        format_float(*(const float *)p, text, sizeof text);
        return check_number(k, *(const float *)p, text, why);
    case K_ENUM:
        if (!choice_name(k->choices, *(const int *)p)) {
            snprintf(text, sizeof text, "%d", *(const int *)p);
            return choice_error(k, text, 0, why);
        }
        return 0;
    case K_STR: {
        const char *s = *(char *const *)p;
        return check_string(k, s ? s : "", 0, why);
    }
    case K_LIST: {
        const StrList *l = p;
        for (int i = 0; i < l->n; i++)
            if (check_item(k, l->items[i], strlen(l->items[i]), i + 1, why)) return -1;
        return 0;
    }
    case K_U64:
    case K_BOOL:
        return 0;
    }
    return 0;
}

static int is_unset(const char *s) {
    return !s || !*s;
}

static int require(const char *value, const char *key, const char *example) {
    if (!is_unset(value)) return 0;
    gemc_set_error("%s is not set (HINT: add %s: %s to the config or pass %s=PATH)", key, key,
                   example, key);
    return -1;
}

static int require_stage(const StageConfig *s, const char *stage, const char *data_example) {
    char key[64];
    snprintf(key, sizeof key, "%s.model", stage);
    if (require(s->model, key, "path/to/model")) return -1;
    snprintf(key, sizeof key, "%s.data", stage);
    if (require(s->data, key, data_example)) return -1;
    snprintf(key, sizeof key, "%s.dir", stage);
    return require(s->dir, key, "runs/NAME");
}

// A group needs two candidates to have an advantage (or a best and a worst), and two
// different ones: greedy sampling gives k copies of one.
static int require_groups(const GemConfig *c, const char *who) {
    if (c->sampling.k < 2) {
        gemc_set_error("%s needs sampling.k >= 2 (candidates are ranked within a group), got %d "
                       "(HINT: pass sampling.k=4)",
                       who, c->sampling.k);
        return -1;
    }
    if (c->sampling.temperature == 0) {
        gemc_set_error("%s needs sampling.temperature > 0 (greedy sampling gives %d copies of one "
                       "candidate) (HINT: pass sampling.temperature=1.0)",
                       who, c->sampling.k);
        return -1;
    }
    return 0;
}

// eval.models entries: "LABEL=DIR" or "DIR", neither part empty.
static int check_eval_models(const GemConfig *c) {
    const StrList *m = &c->eval.models;
    if (m->n == 0) {
        gemc_set_error("eval.models is empty (HINT: add eval.models: [sft=runs/sft/final, "
                       "gem=runs/gem/final] to the config or pass eval.models=DIR1,DIR2)");
        return -1;
    }
    for (int i = 0; i < m->n; i++) {
        const char *e = m->items[i], *eq = strchr(e, '=');
        if (eq && (eq == e || !eq[1])) {
            gemc_set_error("eval.models: item %d '%s' has an empty %s (HINT: an item is "
                           "LABEL=DIR or DIR)",
                           i + 1, e, eq == e ? "label" : "folder");
            return -1;
        }
    }
    return 0;
}

// eval.every in a training stage: the evaluations need something to evaluate on.
static int check_eval_every(const GemConfig *c, const char *stage) {
    if (c->eval.every == 0 || !strcmp(stage, "eval") || !strcmp(stage, "generate")) return 0;
    if (is_unset(c->eval.pairs) && is_unset(c->eval.prompts) && is_unset(c->eval.probe)) {
        gemc_set_error("eval.every is %d, but neither eval.prompts nor eval.pairs is set (HINT: "
                       "eval.prompts=PATH of held-out prompts with answers, or eval.every=0)",
                       c->eval.every);
        return -1;
    }
    return 0;
}

// The keys of the loss and the signal check that only mean something together.
static int check_train_keys(const GemConfig *c) {
    if (c->sega.loss_agg != LOSS_SEQ_SUM && c->sega.logp_agg == LOGP_MEAN) {
        gemc_set_error("sega.loss_agg is %s, which normalises by tokens itself, but sega.logp_agg "
                       "is mean (HINT: sega.logp_agg=sum, or sega.loss_agg=seq_sum)",
                       c->sega.loss_agg == LOSS_TOKEN_MEAN ? "token_mean" : "constant");
        return -1;
    }
    if (c->train.stop_on_collapse > 0 && (is_unset(c->eval.probe) || c->eval.every == 0)) {
        gemc_set_error("train.stop_on_collapse watches the probe accuracy, but %s (HINT: "
                       "eval.probe=PATH of prompts with answers and eval.every=N)",
                       is_unset(c->eval.probe) ? "eval.probe is not set" : "eval.every is 0");
        return -1;
    }
    if (!is_unset(c->eval.probe) && c->eval.every == 0) {
        gemc_set_error("eval.probe is set, but eval.every is 0, so it would never be read (HINT: "
                       "eval.every=10)");
        return -1;
    }
    return 0;
}

int config_check(const GemConfig *c, const char *stage) {
    find_stage(stage);
    char why[WHY_MAX];
    for (int i = 0; i < N_KEYS; i++) {
        if (check_key(c, &KEYS[i], why)) {
            gemc_set_error("%s", why);
            return -1;
        }
    }
    if (check_eval_every(c, stage)) return -1;
    if (!strcmp(stage, "sft")) return require_stage(&c->sft, "sft", "path/to/pairs.jsonl");
    if (!strcmp(stage, "train")) {
        if (require_stage(&c->train, "train", "path/to/prompts.jsonl")) return -1;
        if (check_train_keys(c)) return -1;
        return require_groups(c, "train");
    }
    if (!strcmp(stage, "dpo")) {
        int entropy = c->dpo_pairs == DPO_PAIRS_ENTROPY;
        if (require_stage(&c->dpo, "dpo",
                          entropy ? "path/to/prompts.jsonl" : "path/to/pairs.jsonl"))
            return -1;
        return entropy ? require_groups(c, "dpo with dpo.pairs: entropy") : 0;
    }
    if (!strcmp(stage, "eval")) {
        if (check_eval_models(c)) return -1;
        if (is_unset(c->eval.pairs) && is_unset(c->eval.prompts)) {
            gemc_set_error("eval needs eval.pairs or eval.prompts (HINT: add eval.pairs: "
                           "path/to/pairs.jsonl to the config or pass eval.prompts=PATH)");
            return -1;
        }
        if (c->eval.signal_k == 1) {
            gemc_set_error("eval.signal_k is 1, but ranking needs at least 2 candidates (HINT: "
                           "eval.signal_k=4, or 0 to skip)");
            return -1;
        }
        if (c->eval.signal_k > 0 && c->sampling.temperature == 0) {
            gemc_set_error("eval.signal_k samples at sampling.temperature, which is 0: the "
                           "candidates would all be the same (HINT: sampling.temperature=1.0)");
            return -1;
        }
        if (c->eval.pass_k > 0 && c->sampling.temperature == 0) {
            gemc_set_error(
                "eval.pass_k samples at sampling.temperature, which is 0: the k "
                "candidates would all be the greedy one (HINT: sampling.temperature=1.0)");
            return -1;
        }
        if (c->eval.pass_k > 0 && is_unset(c->eval.prompts)) {
            gemc_set_error("eval.pass_k needs eval.prompts, prompts with answers (HINT: "
                           "eval.prompts=PATH)");
            return -1;
        }
        if (c->eval.signal_k > 0 && is_unset(c->eval.prompts)) {
            gemc_set_error("eval.signal_k needs eval.prompts, prompts with answers (HINT: "
                           "eval.prompts=PATH)");
            return -1;
        }
        if (c->eval.use_ref && require(c->model.ref, "model.ref", "path/to/reference_model"))
            return -1;
        return require(c->eval.dir, "eval.dir", "runs/eval");
    }
    // generate
    if (require(c->generate.model, "generate.model", "path/to/model")) return -1;
    if (require(c->generate.prompts, "generate.prompts", "path/to/prompts.jsonl")) return -1;
    return require(c->generate.out, "generate.out", "runs/candidates.jsonl");
}

// ---- names

const char *entropy_source_name(EntropySource e) {
    const char *n = choice_name(ENTROPY_SOURCES, (int)e);
    return n ? n : "?";
}

const char *reward_source_name(RewardSource r) {
    const char *n = choice_name(REWARD_SOURCES, (int)r);
    return n ? n : "?";
}

const char *final_span_name(FinalSpan s) {
    const char *n = choice_name(FINAL_SPANS, (int)s);
    return n ? n : "?";
}
