// The table of configuration keys (name, type, field, default, range or names, help) and
// everything that turns a user's text into a typed value of a key and checks it: numbers and
// their ranges, names, strings, lists, the "did you mean" of an unknown key, and the deep copy
// and free of a configuration, driven by the table.
//
// Defaults are written in the table as a user would write them and go through the same parser
// as user values, so a default can never be something a user could not set.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/common.h"
#include "config/config_internal.h"
#include "base/utf8.h"

// ---- the table

// Ranges, as the initializer of a Range without its braces (they pass through the KEY macro).
// clang-format off
#define ANY               0, 0, 0
#define AT_LEAST(a)       a, 0, R_LO                    // [a, inf)
#define ABOVE(a)          a, 0, R_LO | R_LO_OPEN        // (a, inf)
#define CLOSED(a, b)      a, b, R_LO | R_HI             // [a, b]
#define CLOSED_OPEN(a, b) a, b, R_LO | R_HI | R_HI_OPEN // [a, b)
#define OPEN_CLOSED(a, b) a, b, R_LO | R_LO_OPEN | R_HI // (a, b]
// clang-format on

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
static const Choice RESUME[] = {{"auto", RESUME_AUTO}, {"none", RESUME_NONE}, {0}};
static const Choice COLLECTIVES[] = {
    {"auto", COLLECTIVES_AUTO}, {"mpi", COLLECTIVES_MPI}, {"nccl", COLLECTIVES_NCCL}, {0}};
static const Choice DEVICES[] = {
    {"auto", DEVICE_AUTO}, {"cpu", DEVICE_CPU}, {"cuda", DEVICE_CUDA}, {0}};
static const Choice PROGRESS[] = {{"auto", -1}, {"true", 1}, {"false", 0}, {0}};
static const Choice CHAT_TEMPLATES[] = {
    {"auto", 0}, {"plain", 0}, {"chatml", 0}, {"llama3", 0}, {0}};
const Choice ENTROPY_SOURCES[] = {{"raw", ENTROPY_RAW}, {"sampling", ENTROPY_SAMPLING}, {0}};
const Choice FINAL_SPANS[] = {
    {"marker", SPAN_MARKER}, {"fraction", SPAN_FRACTION}, {"window", SPAN_WINDOW}, {0}};
static const Choice REWARD_MAPPINGS[] = {
    {"identity", REWARD_IDENTITY}, {"softmax", REWARD_SOFTMAX}, {0}};
static const Choice ADV_NORMS[] = {{"none", ADV_NONE}, {"std", ADV_STD}, {0}};
const Choice REWARD_SOURCES[] = {{"gem", REWARD_GEM},
                                 {"answer", REWARD_ANSWER},
                                 {"majority", REWARD_MAJORITY},
                                 {"self_certainty", REWARD_SELF_CERTAINTY},
                                 {"entropy", REWARD_ENTROPY},
                                 {"random", REWARD_RANDOM},
                                 {0}};
static const Choice LOSS_AGGS[] = {
    {"seq_sum", LOSS_SEQ_SUM}, {"token_mean", LOSS_TOKEN_MEAN}, {"constant", LOSS_CONSTANT}, {0}};
static const Choice GROUP_NORMS[] = {
    {"batch", GROUP_NORM_BATCH}, {"active", GROUP_NORM_ACTIVE}, {0}};
static const Choice LOGP_AGGS[] = {{"sum", LOGP_SUM}, {"mean", LOGP_MEAN}, {0}};
static const Choice SCHEDULES[] = {
    {"constant", LR_CONSTANT}, {"cosine", LR_COSINE}, {"linear", LR_LINEAR}, {0}};
static const Choice DPO_PAIRS[] = {{"data", DPO_PAIRS_DATA}, {"entropy", DPO_PAIRS_ENTROPY}, {0}};

// Sections in the order config.yaml lists them; the table below keeps each one's keys together.
const char *const SECTIONS[] = {"run",    "log",    "model", "sampling", "score",
                                "filter", "reward", "sega",  "optim",    "pipeline",
                                "sft",    "train",  "dpo",   "eval",     "generate"};
const int N_SECTIONS = (int)(sizeof SECTIONS / sizeof SECTIONS[0]);

// The stages' shared keys (model, dir, data, steps, batch_size, and the optimizer's step size:
// lr, warmup, schedule, clipping) with the defaults of each.
#define STAGE_KEYS(s, dir_def, data_help, batch_help, lr_def, warmup_def)                          \
    STR(#s ".model", s.model, "", "starting model folder (Hugging Face format)"),                  \
        STR(#s ".dir", s.dir, dir_def, "run directory: config.yaml, metrics, checkpoints"),        \
        STR(#s ".data", s.data, "", data_help),                                                    \
        INT(#s ".steps", s.steps, "100", AT_LEAST(1), "optimizer steps"),                          \
        INT(#s ".batch_size", s.batch_size, "16", AT_LEAST(1), batch_help),                        \
        FLT(#s ".lr", s.lr, lr_def, ABOVE(0), "peak learning rate (AdamW)"),                       \
        INT(#s ".warmup_steps", s.warmup_steps, warmup_def, AT_LEAST(0),                           \
            "linear warmup from 0 to lr"),                                                         \
        ENUM(#s ".schedule", s.schedule, "constant", SCHEDULES, "lr after the warmup"),            \
        FLT(#s ".min_lr_ratio", s.min_lr_ratio, "0.0", CLOSED(0, 1),                               \
            "cosine/linear floor, as a share of lr"),                                              \
        FLT(#s ".grad_clip", s.grad_clip, "1.0", AT_LEAST(0),                                      \
            "global gradient-norm clip; 0 = off")

const KeyDef KEYS[] = {
    U64("run.seed", run.seed, "1", "seed of the data order and of every sampled token"),
    INT("run.log_every", run.log_every, "1", AT_LEAST(1),
        "a console line every N steps (metrics.jsonl gets every step)"),
    INT("run.save_every", run.save_every, "0", AT_LEAST(0),
        "save a checkpoint every N steps; 0 = only the final model"),
    ENUM("run.dtype", run.dtype, "bf16", DTYPES, "dtype of saved checkpoints"),
    ENUM("run.progress", run.progress, "auto", PROGRESS,
         "progress bars on stderr (auto: when stderr is a terminal)"),
    ENUM("run.device", run.device, "auto", DEVICES,
         "where models compute; auto: the GPU when gemc has CUDA and sees one, else the CPU"),
    ENUM("run.resume", run.resume, "auto", RESUME,
         "auto: continue from the run dir's newest complete checkpoint; none: refuse a used dir"),

    BOOL("log.tensorboard", log.tensorboard, "true",
         "TensorBoard event files of every metric in RUN_DIR/tb (tensorboard --logdir RUN_DIR)"),
    FLT("log.peak_tflops", log.peak_tflops, "0", AT_LEAST(0),
        "peak TFLOP/s of one device (H100 SXM bf16 dense: 989) for the mfu metric; 0 = none"),

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
    FLT("score.lambda_final", score.lambda_final, "1.0", ANY,
        "weight of the final term (0: S is the fork term alone, an ablation)"),

    BOOL("filter.drop_truncated", filter.drop_truncated, "false",
         "candidates cut at max_new_tokens are invalid"),
    FLT("filter.trim_bottom", filter.trim_bottom, "0.0", CLOSED_OPEN(0, 1),
        "drop this share of the lowest-scored valid candidates"),
    BOOL("filter.pairs", filter.pairs, "false", "also emit (best, worst) pairs"),
    BOOL("filter.skip_zero_adv", filter.skip_zero_adv, "true",
         "a group whose advantages are all 0 (every reward equal) is skipped and not counted in G"),

    ENUM("reward.source", reward.source, "gem", REWARD_SOURCES,
         "gem: Eq. 1's S; answer: 1 when the final answer is the prompt's (needs labels); "
         "majority: 1 when it is the group's majority answer; self_certainty: mean KL(uniform || "
         "p) of its tokens; entropy: minus the mean entropy of its last entropy_span; random: the "
         "group's answer rewards in a seeded random order (the control; needs labels)"),
    KEY("reward.entropy_span", K_FLOAT, FIELD(reward.entropy_span, float), "0.3333333", NULL, 0,
        "reward.source entropy: the share of the candidate's last tokens it reads",
        OPEN_CLOSED(0, 1)),

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
    ENUM("sega.loss_agg", sega.loss_agg, "seq_sum", LOSS_AGGS,
         "seq_sum: 1/(G k_g) per candidate (Eq. 2); token_mean: 1/(tokens of the batch) (DAPO); "
         "constant: 1/(G k_g loss_constant) (Dr. GRPO)"),
    FLT("sega.loss_constant", sega.loss_constant, "0", AT_LEAST(0),
        "loss_agg constant: the normaliser; 0 = sampling.max_new_tokens"),
    ENUM("sega.group_norm", sega.group_norm, "batch", GROUP_NORMS,
         "batch: G (and token_mean's token count) takes every group of the batch, skipped or not, "
         "as TRL and verl do, so a step with little signal is a small step; active: only the "
         "groups that were not skipped"),

    FLT("optim.beta1", optim.beta1, "0.9", CLOSED_OPEN(0, 1), "AdamW first-moment decay"),
    FLT("optim.beta2", optim.beta2, "0.999", CLOSED_OPEN(0, 1), "AdamW second-moment decay"),
    FLT("optim.eps", optim.eps, "1e-8", ABOVE(0), "AdamW epsilon"),
    FLT("optim.weight_decay", optim.weight_decay, "0.0", AT_LEAST(0), "AdamW decoupled decay"),
    INT("optim.micro_batch_tokens", optim.micro_batch_tokens, "8192", AT_LEAST(1),
        "tokens per forward/backward; gradients are accumulated"),
    BOOL("optim.shared_prefix", optim.shared_prefix, "true",
         "the learner computes a prompt once for the candidates (or the DPO pair) that share it; "
         "the same log-probs, the gradients within rounding"),
    INT("optim.max_nonfinite_steps", optim.max_nonfinite_steps, "5", AT_LEAST(0),
        "a NaN/Inf loss or gradient skips the update; after this many in a row the run stops "
        "with a checkpoint; 0 = never stop"),

    INT("pipeline.generators", pipeline.generators, "1", AT_LEAST(1),
        "ranks that sample, score and write shards (mpirun)"),
    INT("pipeline.learners", pipeline.learners, "1", AT_LEAST(1),
        "ranks that run the SEGA update; learners / tp data-parallel groups"),
    INT("pipeline.tp", pipeline.tp, "1", AT_LEAST(1), "tensor-parallel width of a learner group"),
    INT("pipeline.max_staleness", pipeline.max_staleness, "0", AT_LEAST(0),
        "policy versions generators run ahead of the learners; 0 = on-policy"),
    FLT("pipeline.timeout", pipeline.timeout, "600", ABOVE(0),
        "seconds a rank waits for another before the job stops with an error"),
    ENUM("pipeline.collectives", pipeline.collectives, "auto", COLLECTIVES,
         "auto: NCCL for GPU ranks on distinct GPUs, MPI otherwise"),
    INT("pipeline.bucket_mb", pipeline.bucket_mb, "64", AT_LEAST(1),
        "MiB per bucket of the learner-to-generator weight broadcast"),

    STAGE_KEYS(sft, "runs/sft", "pairs JSONL {prompt, chosen, rejected}", "pairs per step", "2e-5",
               "0"),
    // train's step size for RL (README, "The learner check"): the paper's lr 1e-5 for 0.5B-8B
    // models, 10 warmup steps (AdamW's first steps are the largest, before its second moment has
    // seen the noise of sampled rewards), then constant, as verl does; clipping at 1.0
    STAGE_KEYS(train, "runs/gem", "prompts JSONL {prompt}", "prompts per step", "1e-5", "10"),
    FLT("train.stop_on_collapse", train.stop_on_collapse, "0", AT_LEAST(0),
        "stop with a checkpoint when eval.probe accuracy falls this many points below its best; "
        "0 = never"),
    STAGE_KEYS(dpo, "runs/dpo", "pairs JSONL, or prompts JSONL when dpo.pairs is entropy",
               "pairs per step", "1e-6", "0"),
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
    INT("eval.signal_k", eval.signal_k, "0", AT_LEAST(0),
        "eval: also rank k sampled candidates per prompt by Eq. 1 and report the accuracy of the "
        "top- and bottom-ranked against the mean (0 = off); train: the group size of eval.probe "
        "(0 = sampling.k)"),
    INT("eval.pass_k", eval.pass_k, "0", AT_LEAST(0),
        "eval: also sample k candidates per prompt at the sampling settings and report pass@1, "
        "pass@k (some candidate right) and majority@k next to greedy accuracy (0 = off)"),
    INT("eval.max_prompts", eval.max_prompts, "0", AT_LEAST(0), "0 = all"),
    INT("eval.max_pairs", eval.max_pairs, "0", AT_LEAST(0), "0 = all"),
    INT("eval.every", eval.every, "0", AT_LEAST(0),
        "sft, train, dpo: task and preference accuracy every N steps and at the end; 0 = never"),
    INT("eval.every_max", eval.every_max, "64", AT_LEAST(0),
        "prompts and pairs in each of those evaluations (the first ones of each file); 0 = all"),
    STR("eval.probe", eval.probe, "",
        "train: prompts with answers; every eval.every steps, how well reward.source separates "
        "right from wrong candidates on them, and their accuracy; \"\" = none"),

    STR("generate.model", generate.model, "", "model folder to sample from"),
    STR("generate.prompts", generate.prompts, "", "prompts JSONL"),
    STR("generate.out", generate.out, "", "candidates JSONL written here"),
    INT("generate.max_prompts", generate.max_prompts, "0", AT_LEAST(0), "0 = all"),
};
const int N_KEYS = (int)(sizeof KEYS / sizeof KEYS[0]);

// ---- small helpers

char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mallocCheck(n);
    memcpy(d, s, n);
    return d;
}

static void *field(GemConfig *c, const KeyDef *k) {
    return (char *)c + k->off;
}

const void *cfield(const GemConfig *c, const KeyDef *k) {
    return (const char *)c + k->off;
}

const char *leaf_of(const KeyDef *k) {
    return strchr(k->name, '.') + 1;
}

// 1 when k is in `section` (the name up to the dot).
int in_section(const KeyDef *k, const char *section) {
    size_t n = strlen(section);
    return strncmp(k->name, section, n) == 0 && k->name[n] == '.';
}

const KeyDef *find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

int find_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (strcmp(SECTIONS[i], name) == 0) return i;
    return -1;
}

// A YAML plain scalar that means "no value".
int is_null_text(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

void list_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void list_push(StrList *l, char *s) {
    char **items = realloc(l->items, sizeof(char *) * (l->n + 1));
    if (!items) gemc_fatal("out of memory");
    l->items = items;
    l->items[l->n++] = s;
}

// The "why" of a failed value (config_internal.h).
int why_set(char *why, const char *fmt, ...) {
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

const char *type_phrase(const KeyDef *k) {
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
void choice_list(const Choice *ch, const char *sep, char *buf, size_t n) {
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

int choice_error(const KeyDef *k, const char *text, int plain, char *why) {
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
void range_inequality(const Range *r, char *buf, size_t n) {
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
int check_number(const KeyDef *k, double v, const char *text, char *why) {
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

int check_string(const KeyDef *k, const char *s, int plain, char *why) {
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

int check_item(const KeyDef *k, const char *s, size_t len, int index, char *why) {
    if (check_text(k, s, len, why)) return -1;
    if (!*s)
        return why_set(why, "%s: item %d is empty (HINT: write the items as a,b or [a, b])",
                       k->name, index);
    return 0;
}

// Replaces the list of k with `items` (taken over).
void set_list(GemConfig *c, const KeyDef *k, StrList *items) {
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

int set_from_scalar(GemConfig *c, const KeyDef *k, const char *text, size_t len, int plain,
                    char *why) {
    if (k->type == K_LIST) return set_list_from_scalar(c, k, text, len, plain, why);
    return set_scalar(c, k, text, len, plain, why);
}

// ---- "did you mean"

// The keys named `leaf` in any section; returns how many (at most max).
int keys_named(const char *leaf, const KeyDef **hits, int max) {
    int n = 0;
    for (int i = 0; i < N_KEYS && n < max; i++)
        if (strcmp(leaf_of(&KEYS[i]), leaf) == 0) hits[n++] = &KEYS[i];
    return n;
}

// " (did you mean 'a'?)", " (did you mean 'a' or 'b'?)", " (did you mean 'a', 'b' or 'c'?)".
void did_you_mean(const KeyDef **hits, int n, char *out, size_t size) {
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
void suggest_key(const char *section, const char *leaf, char *out, size_t size) {
    const KeyDef *hits[8];
    const char *names[sizeof KEYS / sizeof KEYS[0]];
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

void section_list(char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < N_SECTIONS && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", SECTIONS[i]);
}

// ---- deep copy and free, driven by the table

void config_copy(GemConfig *dst, const GemConfig *src) {
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
