// The run configuration: one table of keys, and everything else (defaults, YAML files, KEY=VALUE
// overrides, checks, the resolved config.yaml, --help) read from it.
//
// Defaults are written in the table as a user would write them and go through the same parser
// as user values, so a default can never be something a user could not set.
//
// A YAML file or an override is applied all or nothing: it is read into a copy of the
// configuration, which replaces the caller's only when the whole text was good. A failed call
// leaves the configuration as it was.
//
// An empty YAML file (or one holding only comments, or only "---") is accepted and changes
// nothing: a config that states no key asks for the defaults, and refusing it would only make
// users write a dummy key.
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "cli.h"
#include "common.h"
#include "strbuf.h"
#include "utf8.h"

// ---- the table

typedef enum { K_INT, K_U64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_LIST } KeyType;

// The names of an enum key and the values they stand for; for a string key with a fixed set of
// values, the names alone. Terminated by {0}.
typedef struct {
    const char *name;
    int value;
} Choice;

enum { R_LO = 1, R_LO_OPEN = 2, R_HI = 4, R_HI_OPEN = 8 };
typedef struct {
    double lo, hi;
    int flags;
} Range;

// Ranges, as the initializer of a Range without its braces (they pass through the KEY macro).
// clang-format off
#define ANY               0, 0, 0
#define AT_LEAST(a)       a, 0, R_LO                    // [a, inf)
#define ABOVE(a)          a, 0, R_LO | R_LO_OPEN        // (a, inf)
#define CLOSED(a, b)      a, b, R_LO | R_HI             // [a, b]
#define CLOSED_OPEN(a, b) a, b, R_LO | R_HI | R_HI_OPEN // [a, b)
#define OPEN_CLOSED(a, b) a, b, R_LO | R_LO_OPEN | R_HI // (a, b]
// clang-format on

enum {
    F_NONEMPTY = 1,     // a string that must not be ""
    F_WHOLE_ABOVE_1 = 2 // a float that is a fraction below 1 and a count from 1 on (score.top_m)
};

typedef struct {
    const char *name; // "section.key"
    KeyType type;
    size_t off;      // into GemConfig
    const char *def; // the default, as a user writes it
    Range range;     // K_INT, K_FLOAT
    const Choice *choices;
    int flags;
    const char *help;
} KeyDef;

// offsetof, refusing to compile when the field is not of type T: the table and the struct
// cannot drift apart silently (an int key pointing at a char * field would corrupt memory).
// Enum fields are read and written as int, so they need an int's size.
// clang-format off
#define FIELD(field, T)                                                                            \
    (offsetof(GemConfig, field) +                                                                  \
     0 * sizeof(char[_Generic(((GemConfig *)0)->field, T: 1, default: -1)]))
#define ENUM_FIELD(field)                                                                          \
    (offsetof(GemConfig, field) +                                                                  \
     0 * sizeof(char[sizeof(((GemConfig *)0)->field) == sizeof(int) ? 1 : -1]))

#define KEY(n, t, off, def, ch, flags, help, ...) {n, t, off, def, {__VA_ARGS__}, ch, flags, help}
#define INT(n, f, def, r, help)   KEY(n, K_INT, FIELD(f, int), def, NULL, 0, help, r)
#define U64(n, f, def, help)      KEY(n, K_U64, FIELD(f, uint64_t), def, NULL, 0, help, ANY)
#define FLT(n, f, def, r, help)   KEY(n, K_FLOAT, FIELD(f, float), def, NULL, 0, help, r)
#define BOOL(n, f, def, help)     KEY(n, K_BOOL, FIELD(f, int), def, NULL, 0, help, ANY)
#define STR(n, f, def, help)      KEY(n, K_STR, FIELD(f, char *), def, NULL, 0, help, ANY)
#define ENUM(n, f, def, ch, help) KEY(n, K_ENUM, ENUM_FIELD(f), def, ch, 0, help, ANY)
#define LIST(n, f, def, help)     KEY(n, K_LIST, FIELD(f, StrList), def, NULL, 0, help, ANY)
// clang-format on

static const Choice DTYPES[] = {
    {"bf16", DTYPE_NAME_BF16}, {"f32", DTYPE_NAME_F32}, {"f16", DTYPE_NAME_F16}, {0}};
static const Choice PROGRESS[] = {{"auto", -1}, {"true", 1}, {"false", 0}, {0}};
static const Choice CHAT_TEMPLATES[] = {
    {"auto", 0}, {"plain", 0}, {"chatml", 0}, {"llama3", 0}, {0}};
static const Choice ENTROPY_SOURCES[] = {{"raw", ENTROPY_RAW}, {"sampling", ENTROPY_SAMPLING}, {0}};
static const Choice FINAL_SPANS[] = {
    {"marker", SPAN_MARKER}, {"fraction", SPAN_FRACTION}, {"window", SPAN_WINDOW}, {0}};
static const Choice REWARD_MAPPINGS[] = {
    {"identity", REWARD_IDENTITY}, {"softmax", REWARD_SOFTMAX}, {0}};
static const Choice ADV_NORMS[] = {{"none", ADV_NONE}, {"std", ADV_STD}, {0}};
static const Choice LOGP_AGGS[] = {{"sum", LOGP_SUM}, {"mean", LOGP_MEAN}, {0}};
static const Choice SCHEDULES[] = {
    {"constant", LR_CONSTANT}, {"cosine", LR_COSINE}, {"linear", LR_LINEAR}, {0}};
static const Choice DPO_PAIRS[] = {{"data", DPO_PAIRS_DATA}, {"entropy", DPO_PAIRS_ENTROPY}, {0}};

// Sections in the order config.yaml lists them; the table below keeps each one's keys together.
static const char *const SECTIONS[] = {"run",   "model", "sampling", "score", "filter", "sega",
                                       "optim", "sft",   "train",    "dpo",   "eval",   "generate"};
#define N_SECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

// The stages' shared keys (model, dir, data, steps, batch_size, lr) with the defaults of each.
#define STAGE_KEYS(s, dir_def, data_help, batch_help, lr_def)                                      \
    STR(#s ".model", s.model, "", "starting model folder (Hugging Face format)"),                  \
        STR(#s ".dir", s.dir, dir_def, "run directory: config.yaml, metrics, checkpoints"),        \
        STR(#s ".data", s.data, "", data_help),                                                    \
        INT(#s ".steps", s.steps, "100", AT_LEAST(1), "optimizer steps"),                          \
        INT(#s ".batch_size", s.batch_size, "16", AT_LEAST(1), batch_help),                        \
        FLT(#s ".lr", s.lr, lr_def, ABOVE(0), "peak learning rate (AdamW)")

static const KeyDef KEYS[] = {
    U64("run.seed", run.seed, "1", "random seed of sampling, shuffling and initialisation"),
    INT("run.log_every", run.log_every, "1", AT_LEAST(1), "print a metrics line every N steps"),
    INT("run.save_every", run.save_every, "0", AT_LEAST(0),
        "save a checkpoint every N steps; 0 = only the final model"),
    ENUM("run.dtype", run.dtype, "bf16", DTYPES, "dtype of saved checkpoints"),
    ENUM("run.progress", run.progress, "auto", PROGRESS,
         "progress bars on stderr (auto: when stderr is a terminal)"),

    KEY("model.chat_template", K_STR, FIELD(model.chat_template, char *), "auto", CHAT_TEMPLATES, 0,
        "how prompts are wrapped; auto: from the model's tokenizer_config.json", ANY),
    STR("model.system_prompt", model.system_prompt, "", "system turn of every prompt; \"\" = none"),
    STR("model.ref", model.ref, "",
        "frozen reference model folder (KL, DPO, eval.use_ref); \"\" = the starting model"),

    INT("sampling.k", sampling.k, "4", AT_LEAST(1), "candidates sampled per prompt"),
    FLT("sampling.temperature", sampling.temperature, "1.0", AT_LEAST(0), "0 = greedy"),
    FLT("sampling.top_p", sampling.top_p, "1.0", OPEN_CLOSED(0, 1), "nucleus mass; 1.0 = off"),
    INT("sampling.top_k", sampling.top_k, "0", AT_LEAST(0), "keep the k likeliest tokens; 0 = off"),
    INT("sampling.max_new_tokens", sampling.max_new_tokens, "256", AT_LEAST(1),
        "candidates are cut here (finish_reason length)"),

    ENUM("score.entropy_source", score.entropy_source, "raw", ENTROPY_SOURCES,
         "entropy of the raw model distribution or of the one sampled from"),
    ENUM("score.final_span", score.final_span, "marker", FINAL_SPANS,
         "final-answer span: after answer_marker, the last 1 - final_split, or final_window"),
    KEY("score.answer_marker", K_STR, FIELD(score.answer_marker, char *), "Final Answer:", NULL,
        F_NONEMPTY, "the final span follows its last occurrence (final_span: marker)", ANY),
    FLT("score.final_split", score.final_split, "0.75", CLOSED(0, 1),
        "final_span fraction: the CoT span is this share of the tokens"),
    INT("score.final_window", score.final_window, "3", AT_LEAST(1),
        "final_span window: the final span is the last N tokens"),
    KEY("score.top_m", K_FLOAT, FIELD(score.top_m, float), "0.1", NULL, F_WHOLE_ABOVE_1,
        "fork term: mean of the top-m CoT entropies; < 1 a fraction, >= 1 a count", ABOVE(0)),
    FLT("score.lambda_fork", score.lambda_fork, "1.0", ANY, "weight of the fork term"),

    BOOL("filter.drop_truncated", filter.drop_truncated, "false",
         "candidates cut at max_new_tokens are invalid"),
    FLT("filter.trim_bottom", filter.trim_bottom, "0.0", CLOSED_OPEN(0, 1),
        "drop this share of the lowest-scored valid candidates"),
    BOOL("filter.pairs", filter.pairs, "false", "also emit (best, worst) pairs"),

    ENUM("sega.reward_mapping", sega.reward_mapping, "identity", REWARD_MAPPINGS,
         "reward from score: S itself or softmax(S / reward_temperature)"),
    FLT("sega.reward_temperature", sega.reward_temperature, "1.0", ABOVE(0),
        "temperature of reward_mapping softmax"),
    ENUM("sega.adv_norm", sega.adv_norm, "none", ADV_NORMS,
         "std: divide advantages by the group's std (skip near-constant groups)"),
    ENUM("sega.logp_agg", sega.logp_agg, "sum", LOGP_AGGS,
         "candidate log-prob: sum over tokens, or their mean"),
    FLT("sega.clip_eps", sega.clip_eps, "0.2", CLOSED_OPEN(0, 1),
        "PPO clip range for off-policy groups; 0 = no clipping"),
    FLT("sega.kl_coef", sega.kl_coef, "0.0", AT_LEAST(0), "KL penalty to model.ref (k3)"),

    FLT("optim.beta1", optim.beta1, "0.9", CLOSED_OPEN(0, 1), "AdamW first-moment decay"),
    FLT("optim.beta2", optim.beta2, "0.999", CLOSED_OPEN(0, 1), "AdamW second-moment decay"),
    FLT("optim.eps", optim.eps, "1e-8", ABOVE(0), "AdamW epsilon"),
    FLT("optim.weight_decay", optim.weight_decay, "0.0", AT_LEAST(0), "AdamW decoupled decay"),
    FLT("optim.grad_clip", optim.grad_clip, "1.0", AT_LEAST(0),
        "global gradient-norm clip; 0 = off"),
    INT("optim.warmup_steps", optim.warmup_steps, "0", AT_LEAST(0), "linear warmup from 0 to lr"),
    ENUM("optim.schedule", optim.schedule, "constant", SCHEDULES, "lr after the warmup"),
    FLT("optim.min_lr_ratio", optim.min_lr_ratio, "0.0", CLOSED(0, 1),
        "cosine/linear floor, as a share of lr"),
    INT("optim.micro_batch_tokens", optim.micro_batch_tokens, "8192", AT_LEAST(1),
        "tokens per forward/backward; gradients are accumulated"),

    STAGE_KEYS(sft, "runs/sft", "pairs JSONL {prompt, chosen, rejected}", "pairs per step", "2e-5"),
    STAGE_KEYS(train, "runs/gem", "prompts JSONL {prompt}", "prompts per step", "1e-5"),
    STAGE_KEYS(dpo, "runs/dpo", "pairs JSONL, or prompts JSONL when dpo.pairs is entropy",
               "pairs per step", "1e-6"),
    ENUM("dpo.pairs", dpo_pairs, "data", DPO_PAIRS,
         "data: the pairs of dpo.data; entropy: (best, worst) of the entropy ranking"),
    FLT("dpo.beta", dpo_beta, "0.1", ABOVE(0), "DPO inverse temperature"),

    LIST("eval.models", eval.models, "[]", "models to compare: LABEL=DIR or DIR"),
    STR("eval.dir", eval.dir, "runs/eval", "where results.json and results.md go"),
    STR("eval.pairs", eval.pairs, "", "preference pairs JSONL; \"\" = skip"),
    STR("eval.prompts", eval.prompts, "", "prompts with answers JSONL; \"\" = skip"),
    FLT("eval.beta", eval.beta, "1.0", ABOVE(0), "implicit reward scale"),
    BOOL("eval.use_ref", eval.use_ref, "false", "implicit reward relative to model.ref"),
    BOOL("eval.length_norm", eval.length_norm, "false", "divide l(a|q) by the response length"),
    INT("eval.majority_k", eval.majority_k, "1", AT_LEAST(1),
        "1 = greedy; > 1 = majority vote of k samples"),
    INT("eval.max_prompts", eval.max_prompts, "0", AT_LEAST(0), "0 = all"),
    INT("eval.max_pairs", eval.max_pairs, "0", AT_LEAST(0), "0 = all"),

    STR("generate.model", generate.model, "", "model folder to sample from"),
    STR("generate.prompts", generate.prompts, "", "prompts JSONL"),
    STR("generate.out", generate.out, "", "candidates JSONL written here"),
    INT("generate.max_prompts", generate.max_prompts, "0", AT_LEAST(0), "0 = all"),
};
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

// ---- small helpers

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mallocCheck(n);
    memcpy(d, s, n);
    return d;
}

static void *field(GemConfig *c, const KeyDef *k) {
    return (char *)c + k->off;
}

static const void *cfield(const GemConfig *c, const KeyDef *k) {
    return (const char *)c + k->off;
}

static const char *leaf_of(const KeyDef *k) {
    return strchr(k->name, '.') + 1;
}

// 1 when k is in `section` (the name up to the dot).
static int in_section(const KeyDef *k, const char *section) {
    size_t n = strlen(section);
    return strncmp(k->name, section, n) == 0 && k->name[n] == '.';
}

static const KeyDef *find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

static int find_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (strcmp(SECTIONS[i], name) == 0) return i;
    return -1;
}

// A YAML plain scalar that means "no value".
static int is_null_text(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void list_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void list_push(StrList *l, char *s) {
    char **items = realloc(l->items, sizeof(char *) * (l->n + 1));
    if (!items) gemc_fatal("out of memory");
    l->items = items;
    l->items[l->n++] = s;
}

// The "why" of a failed value: the key and what is wrong, without the location, which the
// caller knows (a file and line, or the command line) and puts in front.
#define WHY_MAX 768
static int why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int why_set(char *why, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

// A user's value for a message: quoted, cut short when long, "no value" for a null.
static const char *shown(const char *text, int plain, char buf[96]) {
    if (plain && is_null_text(text)) return "no value";
    size_t n = strlen(text);
    if (n > 60)
        snprintf(buf, 96, "'%.57s...'", text);
    else
        snprintf(buf, 96, "'%s'", text);
    return buf;
}

static const char *type_phrase(const KeyDef *k) {
    switch (k->type) {
    case K_INT:
        return "an integer";
    case K_U64:
        return "a non-negative integer";
    case K_FLOAT:
        return "a number";
    case K_BOOL:
        return "true or false";
    case K_STR:
        return "a string";
    case K_ENUM:
        return "one of its names";
    case K_LIST:
        return "a list of strings";
    }
    return "a value";
}

// "a, b, c" into buf.
static void choice_list(const Choice *ch, const char *sep, char *buf, size_t n) {
    buf[0] = 0;
    size_t len = 0;
    for (int i = 0; ch[i].name && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? sep : "", ch[i].name);
}

static const Choice *find_choice(const Choice *ch, const char *name) {
    for (int i = 0; ch[i].name; i++)
        if (strcmp(ch[i].name, name) == 0) return &ch[i];
    return NULL;
}

static int choice_error(const KeyDef *k, const char *text, int plain, char *why) {
    char names[256], sbuf[96];
    choice_list(k->choices, ", ", names, sizeof names);
    const char *all[16];
    int n = 0;
    for (; k->choices[n].name && n < 16; n++) all[n] = k->choices[n].name;
    const char *near = closest_name(text, all, n);
    if (near)
        return why_set(why, "%s: expected one of %s, got %s (did you mean '%s'?)", k->name, names,
                       shown(text, plain, sbuf), near);
    return why_set(why, "%s: expected one of %s, got %s", k->name, names, shown(text, plain, sbuf));
}

// "(0, 1]" for a two-sided range, ">= 1" or "> 0" for a one-sided one.
static void range_text(const Range *r, char *buf, size_t n) {
    if ((r->flags & R_LO) && (r->flags & R_HI))
        snprintf(buf, n, "%c%g, %g%c", r->flags & R_LO_OPEN ? '(' : '[', r->lo, r->hi,
                 r->flags & R_HI_OPEN ? ')' : ']');
    else if (r->flags & R_LO)
        snprintf(buf, n, "%s %g", r->flags & R_LO_OPEN ? ">" : ">=", r->lo);
    else
        snprintf(buf, n, "any");
}

// "0 < x <= 1", "x >= 1": the range as help shows it.
static void range_inequality(const Range *r, char *buf, size_t n) {
    const char *lo = r->flags & R_LO_OPEN ? "<" : "<=", *hi = r->flags & R_HI_OPEN ? "<" : "<=";
    if ((r->flags & R_LO) && (r->flags & R_HI))
        snprintf(buf, n, "%g %s x %s %g", r->lo, lo, hi, r->hi);
    else
        snprintf(buf, n, "x %s %g", r->flags & R_LO_OPEN ? ">" : ">=", r->lo);
}

static int in_range(const Range *r, double v) {
    if (r->flags & R_LO) {
        if (r->flags & R_LO_OPEN ? !(v > r->lo) : !(v >= r->lo)) return 0;
    }
    if (r->flags & R_HI) {
        if (r->flags & R_HI_OPEN ? !(v < r->hi) : !(v <= r->hi)) return 0;
    }
    return 1;
}

// The checks of a number once parsed (shared by parsing and config_check). `text` is the value
// as the user wrote it, so the message quotes that rather than a float's rounding of it.
static int check_number(const KeyDef *k, double v, const char *text, char *why) {
    char r[64];
    range_text(&k->range, r, sizeof r);
    if (!in_range(&k->range, v)) {
        if ((k->range.flags & R_LO) && (k->range.flags & R_HI))
            return why_set(why, "%s: %s is out of range %s", k->name, text, r);
        return why_set(why, "%s: %s is out of range (must be %s)", k->name, text, r);
    }
    if ((k->flags & F_WHOLE_ABOVE_1) && v >= 1 && v != floor(v))
        return why_set(why,
                       "%s: %s is not a whole number (HINT: a value below 1 is a fraction of the "
                       "CoT span, from 1 on a count of tokens, e.g. 0.1 or 5)",
                       k->name, text);
    return 0;
}

static int check_string(const KeyDef *k, const char *s, int plain, char *why) {
    if ((k->flags & F_NONEMPTY) && !*s)
        return why_set(why, "%s: must not be empty (HINT: the default is '%s')", k->name, k->def);
    if (k->choices && !find_choice(k->choices, s)) return choice_error(k, s, plain, why);
    return 0;
}

// Text that can be written back into config.yaml: valid UTF-8, no NUL inside.
static int check_text(const KeyDef *k, const char *s, size_t len, char *why) {
    if (strlen(s) != len) return why_set(why, "%s: the value contains a NUL character", k->name);
    size_t bad = utf8_invalid_offset(s, len);
    if (bad != len)
        return why_set(why, "%s: the value is not valid UTF-8 (byte %zu)", k->name, bad + 1);
    return 0;
}

// ---- typed values from text

static int parse_int(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) return -1;
    *out = v;
    return 0;
}

// One scalar value into key k of c. Only a value that parsed and passed its checks replaces
// the old one. `plain`: the YAML plain style, where null, ~ and empty mean "no value".
static int set_scalar(GemConfig *c, const KeyDef *k, const char *text, size_t len, int plain,
                      char *why) {
    char sbuf[96];
    if (check_text(k, text, len, why)) return -1;
    void *p = field(c, k);
    switch (k->type) {
    case K_INT: {
        long long v;
        if (parse_int(text, &v))
            return why_set(why, "%s: expected an integer, got %s", k->name,
                           shown(text, plain, sbuf));
        if (v < INT_MIN || v > INT_MAX)
            return why_set(why, "%s: %s does not fit in a 32-bit integer", k->name, text);
        if (check_number(k, (double)v, text, why)) return -1;
        *(int *)p = (int)v;
        return 0;
    }
    case K_U64: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        // strtoull takes "-1" as 2^64-1
        if (end == text || *end || errno || strchr(text, '-'))
            return why_set(why, "%s: expected a non-negative integer, got %s", k->name,
                           shown(text, plain, sbuf));
        *(uint64_t *)p = v;
        return 0;
    }
    case K_FLOAT: {
        // strtof, not strtod then a cast: rounding twice could turn the shortest text that
        // config_write_yaml prints for a float into a neighbouring float
        char *end;
        errno = 0;
        float v = strtof(text, &end);
        if (end == text || *end || isnan(v) || (isinf(v) && errno != ERANGE))
            return why_set(why, "%s: expected a number, got %s", k->name, shown(text, plain, sbuf));
        if (isinf(v)) return why_set(why, "%s: %s is too large for a float", k->name, text);
        if (check_number(k, v, text, why)) return -1;
        *(float *)p = v;
        return 0;
    }
    case K_BOOL: {
        static const Choice BOOLS[] = {{"true", 1},  {"True", 1},  {"TRUE", 1}, {"false", 0},
                                       {"False", 0}, {"FALSE", 0}, {0}};
        const Choice *ch = find_choice(BOOLS, text);
        if (!ch)
            return why_set(why, "%s: expected true or false, got %s", k->name,
                           shown(text, plain, sbuf));
        *(int *)p = ch->value;
        return 0;
    }
    case K_ENUM: {
        const Choice *ch = find_choice(k->choices, text);
        if (!ch) return choice_error(k, text, plain, why);
        *(int *)p = ch->value;
        return 0;
    }
    case K_STR: {
        const char *s = plain && is_null_text(text) ? "" : text;
        if (check_string(k, s, plain, why)) return -1;
        char **sp = p;
        free(*sp);
        *sp = dup_str(s);
        return 0;
    }
    case K_LIST:
        break; // lists are assembled by the callers, item by item
    }
    return why_set(why, "%s: internal error: not a scalar key", k->name);
}

static int check_item(const KeyDef *k, const char *s, size_t len, int index, char *why) {
    if (check_text(k, s, len, why)) return -1;
    if (!*s)
        return why_set(why, "%s: item %d is empty (HINT: write the items as a,b or [a, b])",
                       k->name, index);
    return 0;
}

// Replaces the list of k with `items` (taken over).
static void set_list(GemConfig *c, const KeyDef *k, StrList *items) {
    StrList *l = field(c, k);
    list_free(l);
    *l = *items;
}

// A list written as one scalar, as on the command line: "a,b" (items trimmed), a quoted
// scalar as one item, a null as the empty list.
static int set_list_from_scalar(GemConfig *c, const KeyDef *k, const char *text, size_t len,
                                int plain, char *why) {
    StrList items = {0};
    if (!plain) {
        if (check_item(k, text, len, 1, why)) return -1;
        list_push(&items, dup_str(text));
    } else if (!is_null_text(text)) {
        const char *p = text;
        for (int index = 1;; index++) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            while (n && (*p == ' ' || *p == '\t')) p++, n--;
            while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
            char *item = strndup(p, n);
            if (!item) gemc_fatal("out of memory");
            if (check_item(k, item, n, index, why)) {
                free(item);
                list_free(&items);
                return -1;
            }
            list_push(&items, item);
            if (!comma) break;
            p = comma + 1;
        }
    }
    set_list(c, k, &items);
    return 0;
}

static int set_from_scalar(GemConfig *c, const KeyDef *k, const char *text, size_t len, int plain,
                           char *why) {
    if (k->type == K_LIST) return set_list_from_scalar(c, k, text, len, plain, why);
    return set_scalar(c, k, text, len, plain, why);
}

// ---- "did you mean"

// The keys named `leaf` in any section; returns how many (at most max).
static int keys_named(const char *leaf, const KeyDef **hits, int max) {
    int n = 0;
    for (int i = 0; i < N_KEYS && n < max; i++)
        if (strcmp(leaf_of(&KEYS[i]), leaf) == 0) hits[n++] = &KEYS[i];
    return n;
}

// " (did you mean 'a'?)", " (did you mean 'a' or 'b'?)", " (did you mean 'a', 'b' or 'c'?)".
static void did_you_mean(const KeyDef **hits, int n, char *out, size_t size) {
    size_t len = (size_t)snprintf(out, size, " (did you mean ");
    for (int i = 0; i < n && len < size; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? " or " : ", ";
        len += (size_t)snprintf(out + len, size - len, "%s'%s'", sep, hits[i]->name);
    }
    if (len < size) snprintf(out + len, size - len, "?)");
}

// The suggestion for an unknown key "section.leaf" (section NULL for a bare name): the same
// name in another section first (a key in the wrong section, or a leaf without its section),
// then a misspelling in its own section, then one anywhere. Writes "" when nothing is close.
static void suggest_key(const char *section, const char *leaf, char *out, size_t size) {
    const KeyDef *hits[8];
    const char *names[N_KEYS];
    int n = keys_named(leaf, hits, 8);
    if (n) {
        did_you_mean(hits, n, out, size);
        return;
    }
    int sec = section ? find_section(section) : -1;
    if (sec >= 0) {
        int m = 0;
        for (int i = 0; i < N_KEYS; i++)
            if (in_section(&KEYS[i], section)) names[m++] = leaf_of(&KEYS[i]);
        const char *near = closest_name(leaf, names, m);
        if (near) {
            char full[128];
            snprintf(full, sizeof full, "%s.%s", section, near);
            hits[0] = find_key(full);
            did_you_mean(hits, 1, out, size);
            return;
        }
    } else if (section) {
        // "sampleing.k": the section misspelt, the leaf right
        const char *near = closest_name(section, SECTIONS, N_SECTIONS);
        if (near) {
            char full[128];
            snprintf(full, sizeof full, "%s.%s", near, leaf);
            if ((hits[0] = find_key(full))) {
                did_you_mean(hits, 1, out, size);
                return;
            }
        }
    }
    for (int i = 0; i < N_KEYS; i++) names[i] = leaf_of(&KEYS[i]);
    const char *near = closest_name(leaf, names, N_KEYS);
    if (near) {
        n = keys_named(near, hits, 8);
        did_you_mean(hits, n, out, size);
        return;
    }
    if (sec >= 0) {
        // nothing close: what the section holds
        size_t len = (size_t)snprintf(out, size, " (the keys of %s are", section);
        int first = 1;
        for (int i = 0; i < N_KEYS && len < size; i++) {
            if (!in_section(&KEYS[i], section)) continue;
            len += (size_t)snprintf(out + len, size - len, "%s %s", first ? "" : ",",
                                    leaf_of(&KEYS[i]));
            first = 0;
        }
        if (len < size) snprintf(out + len, size - len, ")");
        return;
    }
    out[0] = 0;
}

static void section_list(char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < N_SECTIONS && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", SECTIONS[i]);
}

// ---- deep copy and free, driven by the table

static void config_copy(GemConfig *dst, const GemConfig *src) {
    *dst = *src;
    for (int i = 0; i < N_KEYS; i++) {
        const KeyDef *k = &KEYS[i];
        if (k->type == K_STR) {
            char **d = field(dst, k);
            if (*d) *d = dup_str(*d);
        } else if (k->type == K_LIST) {
            const StrList *s = cfield(src, k);
            StrList *d = field(dst, k);
            *d = (StrList){0};
            for (int j = 0; j < s->n; j++) list_push(d, dup_str(s->items[j]));
        }
    }
    if (src->source) dst->source = dup_str(src->source);
}

void config_free(GemConfig *c) {
    for (int i = 0; i < N_KEYS; i++) {
        const KeyDef *k = &KEYS[i];
        if (k->type == K_STR) free(*(char **)field(c, k));
        if (k->type == K_LIST) list_free(field(c, k));
    }
    free(c->source);
    // zeroed, so that a second free or a config_defaults over it is safe
    memset(c, 0, sizeof *c);
}

// ---- reading YAML events

// Where values come from, for the messages: a file (with lines), or one command-line
// assignment / built-in default (the whole text is the place).
typedef struct {
    yaml_parser_t parser;
    const char *file;  // the YAML path as given, or NULL
    const char *place; // without a file: "command line: k=v"
    const char *text;  // the bytes being parsed (for the tab hint)
    size_t text_len;
    int *key_line;     // per key, the line of this file that set it (0 = none yet)
    int *section_line; // per section, likewise
    GemConfig *c;      // what the values go into
} Loader;

static int load_error(const Loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int load_error(const Loader *L, int line, const char *fmt, ...) {
    char msg[WHY_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->file)
        gemc_set_error("%s:%d: %s", L->file, line, msg);
    else
        gemc_set_error("%s: %s", L->place, msg);
    return -1;
}

// 1 when line `line` (1-based) of the parsed text is indented with a tab.
static int line_has_tab_indent(const Loader *L, int line) {
    const char *p = L->text, *end = L->text + L->text_len;
    for (int l = 1; l < line && p < end; p++)
        if (*p == '\n') l++;
    for (; p < end && (*p == ' ' || *p == '\t'); p++)
        if (*p == '\t') return 1;
    return 0;
}

static int syntax_error(const Loader *L) {
    const yaml_parser_t *p = &L->parser;
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_MEMORY_ERROR) gemc_fatal("out of memory parsing YAML");
    if (p->error == YAML_READER_ERROR) {
        // no line: the reader stops at bytes, before there are lines
        if (L->file)
            gemc_set_error("%s: YAML syntax error: %s (byte %zu)", L->file, problem,
                           p->problem_offset + 1);
        else
            gemc_set_error("%s: YAML syntax error: %s", L->place, problem);
        return -1;
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    char ctx[160] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s on line %d)", p->context, (int)p->context_mark.line + 1);
    const char *hint = "";
    if (!L->file)
        hint = " (HINT: a value that starts with a quote or '[' is read as YAML: quote the whole "
               "value, e.g. 'a b', or write a list as [a, b])";
    else if (line_has_tab_indent(L, line))
        hint = " (HINT: indent with spaces; YAML does not allow tabs)";
    else if (strstr(problem, "expected key"))
        hint = " (HINT: the keys of a section are indented alike, under the section)";
    if (L->file)
        gemc_set_error("%s:%d:%d: YAML syntax error: %s%s%s", L->file, line, col, problem, ctx,
                       hint);
    else
        gemc_set_error("%s: YAML syntax error at column %d of the value: %s%s%s", L->place, col,
                       problem, ctx, hint);
    return -1;
}

static int next_event(Loader *L, yaml_event_t *ev) {
    if (!yaml_parser_parse(&L->parser, ev)) return syntax_error(L);
    return 0;
}

static int line_of(const yaml_event_t *ev) {
    return (int)ev->start_mark.line + 1;
}

static const char *scalar_text(const yaml_event_t *ev) {
    return (const char *)ev->data.scalar.value;
}

static int is_plain(const yaml_event_t *ev) {
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static int is_null_event(const yaml_event_t *ev) {
    return ev->type == YAML_SCALAR_EVENT && is_plain(ev) && is_null_text(scalar_text(ev));
}

static const char *node_kind(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return "a scalar";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_ALIAS_EVENT:
        return "an alias";
    default:
        return "something else";
    }
}

// The items of a YAML sequence (after its SEQUENCE_START) into list key k.
static int read_list(Loader *L, const KeyDef *k) {
    StrList items = {0};
    char why[WHY_MAX];
    for (int index = 1;; index++) {
        yaml_event_t ev;
        if (next_event(L, &ev)) break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            set_list(L->c, k, &items);
            return 0;
        }
        int rc;
        if (ev.type != YAML_SCALAR_EVENT)
            rc = load_error(L, line_of(&ev), "%s: item %d: expected a string, got %s", k->name,
                            index, node_kind(&ev));
        else if (is_null_event(&ev))
            rc = load_error(L, line_of(&ev), "%s: item %d is empty (HINT: remove the empty item)",
                            k->name, index);
        else if (check_item(k, scalar_text(&ev), ev.data.scalar.length, index, why))
            rc = load_error(L, line_of(&ev), "%s", why);
        else {
            list_push(&items, dup_str(scalar_text(&ev)));
            rc = 0;
        }
        yaml_event_delete(&ev);
        if (rc) break;
    }
    list_free(&items);
    return -1;
}

// The value of key k, starting at its first event `ev` (a list is read to its end).
static int read_value(Loader *L, const KeyDef *k, const yaml_event_t *ev) {
    char why[WHY_MAX];
    int line = line_of(ev);
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (set_from_scalar(L->c, k, scalar_text(ev), ev->data.scalar.length, is_plain(ev), why))
            return load_error(L, line, "%s", why);
        return 0;
    case YAML_SEQUENCE_START_EVENT:
        if (k->type == K_LIST) return read_list(L, k);
        return load_error(L, line, "%s: expected %s, got a list", k->name, type_phrase(k));
    case YAML_ALIAS_EVENT:
        return load_error(L, line, "%s: YAML aliases (*%s) are not supported; write the value",
                          k->name, (const char *)ev->data.alias.anchor);
    default:
        return load_error(L, line,
                          "%s: expected %s, got %s (HINT: is the next line indented too deep?)",
                          k->name, type_phrase(k), node_kind(ev));
    }
}

// The keys of one section's mapping (after its MAPPING_START), to its MAPPING_END.
static int read_section(Loader *L, int sec) {
    const char *section = SECTIONS[sec];
    for (;;) {
        yaml_event_t ev;
        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        int line = line_of(&ev), rc = 0;
        const KeyDef *k = NULL;
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = load_error(L, line, "%s: expected a key name, got %s", section, node_kind(&ev));
        } else {
            const char *leaf = scalar_text(&ev);
            char full[256], hint[512];
            snprintf(full, sizeof full, "%s.%s", section, leaf);
            if (!(k = find_key(full))) {
                suggest_key(section, leaf, hint, sizeof hint);
                rc = load_error(L, line, "unknown key '%s'%s", full, hint);
            } else if (L->key_line[k - KEYS]) {
                rc = load_error(L, line, "duplicate key '%s' (first set on line %d; remove one)",
                                k->name, L->key_line[k - KEYS]);
            } else {
                L->key_line[k - KEYS] = line;
            }
        }
        yaml_event_delete(&ev);
        if (rc) return -1;
        if (next_event(L, &ev)) return -1;
        rc = read_value(L, k, &ev);
        yaml_event_delete(&ev);
        if (rc) return -1;
    }
}

// A top-level name that is no section: the likely mistakes are a key without its section
// ("k"), a section misspelt, a dotted key at the top ("sampling.k"), a key misspelt.
static int unknown_top_level(const Loader *L, const char *name, int line) {
    char hint[512], buf[256];
    const KeyDef *hits[8];
    const KeyDef *k = find_key(name);
    if (k) {
        return load_error(L, line,
                          "unknown section '%s' (HINT: nest the key under its section: '%.*s:' "
                          "and on the next line '  %s: VALUE')",
                          name, (int)(leaf_of(k) - k->name - 1), k->name, leaf_of(k));
    }
    int n = keys_named(name, hits, 8);
    if (n) {
        did_you_mean(hits, n, hint, sizeof hint);
        return load_error(L, line, "unknown key '%s'%s", name, hint);
    }
    const char *near = closest_name(name, SECTIONS, N_SECTIONS);
    if (near) return load_error(L, line, "unknown section '%s' (did you mean '%s'?)", name, near);
    suggest_key(NULL, name, hint, sizeof hint);
    if (hint[0]) return load_error(L, line, "unknown key '%s'%s", name, hint);
    section_list(buf, sizeof buf);
    return load_error(L, line, "unknown section '%s' (the sections are %s)", name, buf);
}

// The top-level mapping (after its MAPPING_START): sections, each a mapping of keys.
static int read_sections(Loader *L) {
    for (;;) {
        yaml_event_t ev;
        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        int line = line_of(&ev), rc = 0, sec = -1;
        if (ev.type != YAML_SCALAR_EVENT)
            rc = load_error(L, line, "expected a section name, got %s", node_kind(&ev));
        else if ((sec = find_section(scalar_text(&ev))) < 0)
            rc = unknown_top_level(L, scalar_text(&ev), line);
        else if (L->section_line[sec])
            rc = load_error(L, line,
                            "duplicate section '%s' (first on line %d; put its keys together)",
                            SECTIONS[sec], L->section_line[sec]);
        else
            L->section_line[sec] = line;
        yaml_event_delete(&ev);
        if (rc) return -1;

        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_MAPPING_START_EVENT) {
            rc = read_section(L, sec);
        } else if (!is_null_event(&ev)) {
            // "model: runs/x" or "sampling: 4": the section given a value
            char hint[512];
            suggest_key(NULL, SECTIONS[sec], hint, sizeof hint);
            rc = load_error(L, line_of(&ev),
                            "section '%s' must hold keys, got %s%s (HINT: write '%s:' and on the "
                            "next lines '  KEY: VALUE')",
                            SECTIONS[sec], node_kind(&ev), hint, SECTIONS[sec]);
        }
        yaml_event_delete(&ev);
        if (rc) return -1;
    }
}

// A whole file: at most one document, a mapping of sections (or empty).
static int read_document(Loader *L) {
    yaml_event_t ev;
    if (next_event(L, &ev)) return -1; // STREAM_START
    yaml_event_delete(&ev);
    if (next_event(L, &ev)) return -1;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0; // no document: nothing but comments
    }
    yaml_event_delete(&ev); // DOCUMENT_START
    if (next_event(L, &ev)) return -1;
    int rc = 0;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = read_sections(L);
    else if (!is_null_event(&ev))
        rc = load_error(L, line_of(&ev),
                        "expected a mapping of sections (e.g. 'sampling:' and on the next line "
                        "'  k: 4'), got %s",
                        node_kind(&ev));
    yaml_event_delete(&ev);
    if (rc) return -1;
    if (next_event(L, &ev)) return -1; // DOCUMENT_END
    yaml_event_delete(&ev);
    if (next_event(L, &ev)) return -1;
    if (ev.type != YAML_STREAM_END_EVENT)
        rc = load_error(L, line_of(&ev),
                        "a second YAML document (HINT: one configuration per file; remove the "
                        "'---')");
    yaml_event_delete(&ev);
    return rc;
}

int config_load_yaml(GemConfig *c, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        gemc_set_error("%s: is a directory (HINT: name the YAML file, e.g. configs/demo.yaml)",
                       path);
        return -1;
    }
    size_t len;
    char *text = read_text_file(path, &len);
    if (!text) return -1;

    GemConfig work;
    config_copy(&work, c);
    Loader L = {.file = path, .text = text, .text_len = len, .c = &work};
    L.key_line = callocCheck(N_KEYS, sizeof(int));
    L.section_line = callocCheck(N_SECTIONS, sizeof(int));
    if (!yaml_parser_initialize(&L.parser)) gemc_fatal("out of memory");
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    int rc = read_document(&L);
    yaml_parser_delete(&L.parser);
    free(L.key_line);
    free(L.section_line);
    free(text);

    if (rc) {
        config_free(&work);
        return -1;
    }
    free(work.source);
    work.source = dup_str(path);
    config_free(c);
    *c = work;
    return 0;
}

// ---- one value from text (overrides and defaults)

// A quoted scalar or a flow sequence ([a, b]), read by libyaml as a one-value document.
static int set_from_yaml_text(GemConfig *c, const KeyDef *k, const char *text, const char *place) {
    Loader L = {.place = place, .text = text, .text_len = strlen(text), .c = c};
    if (!yaml_parser_initialize(&L.parser)) gemc_fatal("out of memory");
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, L.text_len);
    yaml_event_t ev;
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) { // STREAM_START, DOCUMENT_START
        if ((rc = next_event(&L, &ev)) == 0) yaml_event_delete(&ev);
    }
    if (rc == 0 && (rc = next_event(&L, &ev)) == 0) {
        rc = read_value(&L, k, &ev);
        yaml_event_delete(&ev);
    }
    if (rc == 0 && (rc = next_event(&L, &ev)) == 0) yaml_event_delete(&ev); // DOCUMENT_END
    if (rc == 0 && (rc = next_event(&L, &ev)) == 0) {
        if (ev.type != YAML_STREAM_END_EVENT)
            rc = load_error(&L, 0, "unexpected text after the value (HINT: quote the whole value)");
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&L.parser);
    return rc;
}

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
        snprintf(place, sizeof place, "config.c: the default of %s", KEYS[i].name);
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
    uint64_t h = 14695981039346656037ULL; // FNV-1a 64
    for (size_t i = 0; i < b.len; i++) {
        h ^= (unsigned char)b.p[i];
        h *= 1099511628211ULL;
    }
    free(b.p);
    return h;
}

// ---- stages

typedef struct {
    const char *name;
    const char *sections[9]; // NULL-terminated
} StageSections;

static const StageSections STAGES[] = {
    {"sft", {"run", "model", "optim", "sft"}},
    {"train", {"run", "model", "sampling", "score", "filter", "sega", "optim", "train"}},
    {"dpo", {"run", "model", "optim", "dpo", "sampling", "score", "filter"}},
    {"eval", {"run", "model", "sampling", "score", "eval"}},
    {"generate", {"run", "model", "sampling", "score", "generate"}},
};
#define N_STAGES ((int)(sizeof STAGES / sizeof STAGES[0]))

static const StageSections *find_stage(const char *stage) {
    for (int i = 0; i < N_STAGES; i++)
        if (strcmp(STAGES[i].name, stage) == 0) return &STAGES[i];
    // the stage names are the program's own, never a user's
    gemc_fatal("config: unknown stage '%s'", stage);
}

void config_print_help(const char *stage, FILE *f) {
    const StageSections *st = find_stage(stage);
    GemConfig d;
    config_defaults(&d);
    fprintf(f, "configuration keys read by `gemc %s` (key, default, meaning):\n", stage);
    StrBuf val = {0};
    for (int s = 0; st->sections[s]; s++) {
        fprintf(f, "\n%s:\n", st->sections[s]);
        for (int i = 0; i < N_KEYS; i++) {
            const KeyDef *k = &KEYS[i];
            if (!in_section(k, st->sections[s])) continue;
            val.len = 0;
            format_value(&d, k, &val);
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
        }
    }
    free(val.p);
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

int config_check(const GemConfig *c, const char *stage) {
    find_stage(stage);
    char why[WHY_MAX];
    for (int i = 0; i < N_KEYS; i++) {
        if (check_key(c, &KEYS[i], why)) {
            gemc_set_error("%s", why);
            return -1;
        }
    }
    if (!strcmp(stage, "sft")) return require_stage(&c->sft, "sft", "path/to/pairs.jsonl");
    if (!strcmp(stage, "train")) {
        if (require_stage(&c->train, "train", "path/to/prompts.jsonl")) return -1;
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

const char *final_span_name(FinalSpan s) {
    const char *n = choice_name(FINAL_SPANS, (int)s);
    return n ? n : "?";
}
