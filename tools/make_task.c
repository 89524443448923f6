// make_task: the embedded default task, so that `make demo` and the tests need no download.
//
// Writes into --out DIR, deterministically from --seed (same seed and knobs, same bytes):
//   train_pairs.jsonl, test_pairs.jsonl      {"prompt","chosen","rejected"} for SFT / DPO / eval
//   train_prompts.jsonl, test_prompts.jsonl  {"prompt","answer"} for GEM and task accuracy
//   tokenizer.json, tokenizer_config.json    a byte-level tokenizer in Hugging Face's format
//   config.json                              the tiny Llama of configs/models/tiny-llama.json
//   task.json                                the seed and knobs the data was made with
//
// A problem is a multi-step arithmetic word problem. Its chain of thought states the starting
// quantity, then one line "A op B = C" per step, then "Final Answer: N". The rejected response
// of a pair repeats the chosen one with exactly one slip: one step's result is off by a small
// nonzero amount and every later step is computed correctly from the wrong value, so the slip
// is the only defect and the final answer differs. data/README.md documents the knobs and how
// hard the defaults are for the tiny model.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/cli.h"
#include "base/common.h"
#include "base/json_file.h"
#include "model/model_config.h"
#include "base/rng.h"
#include "base/strbuf.h"
#include "text/tokenizer.h"

// configs/models/tiny-llama.json, embedded so that the generator needs no file but its output
// dir; test_task.c checks that the two agree field by field.
static const char TINY_LLAMA_JSON[] = "{\"architectures\": [\"LlamaForCausalLM\"],"
                                      " \"model_type\": \"llama\", \"vocab_size\": 260,"
                                      " \"hidden_size\": 128, \"intermediate_size\": 352,"
                                      " \"num_hidden_layers\": 4, \"num_attention_heads\": 4,"
                                      " \"num_key_value_heads\": 2,"
                                      " \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-05,"
                                      " \"rope_theta\": 10000.0, \"rope_scaling\": null,"
                                      " \"attention_bias\": false, \"hidden_act\": \"silu\","
                                      " \"initializer_range\": 0.02,"
                                      " \"tie_word_embeddings\": true, \"bos_token_id\": 256,"
                                      " \"eos_token_id\": 257, \"torch_dtype\": \"float32\"}";

#define MAX_STEPS 6
// Prompt + "\n" + the longer response + EOS, in bytes (= tokens of the byte-level tokenizer):
// below the tiny model's 512 positions with room left for a system prompt. Only extreme knobs
// (six steps of five-digit numbers) come near it; such a problem is drawn again.
#define MAX_SAMPLE_BYTES 448

typedef struct {
    int seed, train, test;
    int min_steps, max_steps;
    int max_start, max_operand, max_value;
    int mul_percent;
    int direct_percent; // share of train pairs whose responses skip the working
} Knobs;

typedef struct {
    char op; // '+', '-' or '*'
    int b;   // operand
} Step;

typedef struct {
    char *prompt, *chosen, *rejected;
    long answer;
} Problem;

// ---------------------------------------------------------------------------------------------
// Word lists. Names carry their pronoun so that follow-up sentences agree.

typedef struct {
    const char *name;
    int she;
} Person;

static const Person PEOPLE[] = {
    {"Mia", 1},   {"Leo", 0},   {"Ava", 1},   {"Noah", 0},  {"Zoe", 1},   {"Liam", 0},
    {"Emma", 1},  {"Omar", 0},  {"Lily", 1},  {"Ravi", 0},  {"Nora", 1},  {"Ben", 0},
    {"Ivy", 1},   {"Sam", 0},   {"Ella", 1},  {"Hugo", 0},  {"Maya", 1},  {"Eli", 0},
    {"Ruby", 1},  {"Finn", 0},  {"Aria", 1},  {"Theo", 0},  {"Sara", 1},  {"Max", 0},
    {"Lena", 1},  {"Kai", 0},   {"Chloe", 1}, {"Jack", 0},  {"Grace", 1}, {"Owen", 0},
    {"Hana", 1},  {"Luis", 0},  {"Iris", 1},  {"Adam", 0},  {"Julia", 1}, {"Tom", 0},
    {"Nina", 1},  {"Dev", 0},   {"Rosa", 1},  {"Yuki", 0},  {"Amara", 1}, {"Ethan", 0},
    {"Leila", 1}, {"Marco", 0}, {"Sofia", 1}, {"Oscar", 0}, {"Priya", 1}, {"Felix", 0},
};
#define NUM_PEOPLE ((int)(sizeof PEOPLE / sizeof PEOPLE[0]))

static const char *const OBJECTS[] = {
    "apples",   "marbles",  "stickers",  "coins", "books",    "pencils",  "cookies",
    "stamps",   "shells",   "cards",     "eggs",  "balloons", "crayons",  "beads",
    "candies",  "oranges",  "flowers",   "rocks", "buttons",  "toy cars", "erasers",
    "cupcakes", "feathers", "postcards", "seeds", "ribbons",  "puzzles",
};
#define NUM_OBJECTS ((int)(sizeof OBJECTS / sizeof OBJECTS[0]))

static const char *const CONTAINERS[] = {"box", "basket", "jar", "bag", "bin", "drawer", "crate"};
#define NUM_CONTAINERS ((int)(sizeof CONTAINERS / sizeof CONTAINERS[0]))

// Step phrases of the owner stories ("Mia has 7 apples. She buys 5 more, ..."): %d is the
// operand, %s another person (only where the phrase names one).
static const char *const OWNER_ADD[] = {
    "buys %d more", "finds %d more",          "gets %d more from %s", "picks up %d more",
    "wins %d more", "is given %d more by %s", "receives %d more",     "makes %d more",
};
static const char *const OWNER_SUB[] = {
    "gives %d to %s", "loses %d", "sells %d", "gives away %d", "trades %d to %s", "uses %d",
};
#define NUM_OWNER_ADD ((int)(sizeof OWNER_ADD / sizeof OWNER_ADD[0]))
#define NUM_OWNER_SUB ((int)(sizeof OWNER_SUB / sizeof OWNER_SUB[0]))

// Step phrases of the container stories ("There are 7 apples in a box. Leo adds 5, ...").
static const char *const BOX_ADD[] = {"puts in %d more", "adds %d", "drops in %d more",
                                      "places %d more inside"};
static const char *const BOX_SUB[] = {"takes out %d", "removes %d", "takes %d away",
                                      "pulls out %d"};
#define NUM_BOX_ADD ((int)(sizeof BOX_ADD / sizeof BOX_ADD[0]))
#define NUM_BOX_SUB ((int)(sizeof BOX_SUB / sizeof BOX_SUB[0]))

static const char *const OWNER_QUESTIONS[] = {
    "How many %s does %s have now?",
    "How many %s does %s have in the end?",
    "How many %s does %s have left?",
    "How many %s does %s end up with?",
};
#define NUM_OWNER_QUESTIONS ((int)(sizeof OWNER_QUESTIONS / sizeof OWNER_QUESTIONS[0]))

// ---------------------------------------------------------------------------------------------

static int pick(Rng *r, int n) {
    return (int)(rng_u64(r) % (uint64_t)n);
}

// Uniform in [lo, hi].
static int pick_range(Rng *r, int lo, int hi) {
    return lo + pick(r, hi - lo + 1);
}

// A phrase that may or may not name a second person: the format decides.
static void put_phrase(StrBuf *b, const char *fmt, int n, const char *other) {
    const char *s = strstr(fmt, "%s");
    if (s && strstr(fmt, "%d") > s)
        strbuf_printf(b, fmt, other, n);
    else if (s)
        strbuf_printf(b, fmt, n, other);
    else
        strbuf_printf(b, fmt, n);
}

// The steps, keeping every intermediate value in [0, max_value]. Returns the answer.
static long make_steps(Rng *r, const Knobs *k, int start, int n, Step *steps) {
    long v = start;
    for (int i = 0; i < n; i++) {
        int can_mul = v > 0 && v * 2 <= k->max_value;
        int can_add = v + 1 <= k->max_value;
        int can_sub = v >= 1;
        if (can_mul && pick(r, 100) < k->mul_percent) {
            int factor = v * 3 <= k->max_value ? pick_range(r, 2, 3) : 2;
            steps[i] = (Step){'*', factor};
            v *= factor;
            continue;
        }
        int add = can_add && (!can_sub || pick(r, 2) == 0);
        if (add) {
            int hi = k->max_operand < k->max_value - v ? k->max_operand : (int)(k->max_value - v);
            steps[i] = (Step){'+', pick_range(r, 1, hi)};
            v += steps[i].b;
        } else {
            int hi = k->max_operand < v ? k->max_operand : (int)v;
            steps[i] = (Step){'-', pick_range(r, 1, hi)};
            v -= steps[i].b;
        }
    }
    return v;
}

static long apply(long a, Step s) {
    return s.op == '+' ? a + s.b : s.op == '-' ? a - s.b : a * s.b;
}

// The arithmetic lines from `start`, with the result of step `slip` (-1: none) off by `delta`
// and the steps after it computed from the wrong value. Returns the final value, or -1 when a
// value would go negative.
static long put_lines(StrBuf *b, long start, const Step *steps, int n, int slip, int delta) {
    long v = start;
    for (int i = 0; i < n; i++) {
        long c = apply(v, steps[i]);
        if (i == slip) c += delta;
        if (c < 0) return -1;
        strbuf_printf(b, "%ld %c %d = %ld\n", v, steps[i].op, steps[i].b, c);
        v = c;
    }
    return v;
}

// One sentence's worth of a step in an owner story.
static void put_owner_step(Rng *r, StrBuf *b, Step s, const Person *who) {
    const Person *other;
    do other = &PEOPLE[pick(r, NUM_PEOPLE)];
    while (other == who);
    if (s.op == '+')
        put_phrase(b, OWNER_ADD[pick(r, NUM_OWNER_ADD)], s.b, other->name);
    else if (s.op == '-')
        put_phrase(b, OWNER_SUB[pick(r, NUM_OWNER_SUB)], s.b, other->name);
    else
        strbuf_puts(b, s.b == 2 ? "doubles them" : "triples them");
}

static void put_box_step(Rng *r, StrBuf *b, Step s, const char *container) {
    if (s.op == '+')
        put_phrase(b, BOX_ADD[pick(r, NUM_BOX_ADD)], s.b, NULL);
    else if (s.op == '-')
        put_phrase(b, BOX_SUB[pick(r, NUM_BOX_SUB)], s.b, NULL);
    else
        strbuf_printf(b, "%s what is in the %s", s.b == 2 ? "doubles" : "triples", container);
}

// The prompt text and the first CoT line of one problem.
static void make_story(Rng *r, int start, const Step *steps, int n, StrBuf *prompt, StrBuf *intro) {
    const char *obj = OBJECTS[pick(r, NUM_OBJECTS)];
    int style = pick(r, 3);
    if (style < 2) {
        // owner story: one person, their things, what happens to them
        const Person *who = &PEOPLE[pick(r, NUM_PEOPLE)];
        const char *pron = who->she ? "she" : "he";
        const char *Pron = who->she ? "She" : "He";
        strbuf_printf(prompt, "%s %s %d %s.", who->name, pick(r, 2) ? "has" : "starts with", start,
                      obj);
        if (style == 0) {
            // one sentence: "She buys 5 more, then gives 3 to Leo, and then ..."
            strbuf_printf(prompt, " %s ", Pron);
            for (int i = 0; i < n; i++) {
                if (i == 1) strbuf_puts(prompt, ", then ");
                if (i >= 2) strbuf_puts(prompt, i == n - 1 ? ", and finally " : ", and then ");
                put_owner_step(r, prompt, steps[i], who);
            }
            strbuf_puts(prompt, ".");
        } else {
            // one sentence a step: "First, she ... Next, she ... Finally, she ..."
            for (int i = 0; i < n; i++) {
                const char *lead = n == 1       ? "Then,"
                                   : i == 0     ? "First,"
                                   : i == n - 1 ? "Finally,"
                                                : "Next,";
                strbuf_printf(prompt, " %s %s ", lead, pron);
                put_owner_step(r, prompt, steps[i], who);
                strbuf_puts(prompt, ".");
            }
        }
        strbuf_puts(prompt, " ");
        strbuf_printf(prompt, OWNER_QUESTIONS[pick(r, NUM_OWNER_QUESTIONS)], obj, who->name);
        strbuf_printf(intro, "%s starts with %d %s.\n", who->name, start, obj);
    } else {
        // container story: several people put things in and take them out
        const char *box = CONTAINERS[pick(r, NUM_CONTAINERS)];
        strbuf_printf(prompt, "There are %d %s in a %s.", start, obj, box);
        for (int i = 0; i < n; i++) {
            const Person *who = &PEOPLE[pick(r, NUM_PEOPLE)];
            strbuf_printf(prompt, " %s%s ", i == n - 1 && n > 1 ? "Then " : "", who->name);
            put_box_step(r, prompt, steps[i], box);
            strbuf_puts(prompt, ".");
        }
        strbuf_printf(prompt, " How many %s are in the %s now?", obj, box);
        strbuf_printf(intro, "The %s starts with %d %s.\n", box, start, obj);
    }
}

// Returns 0, or -1 (nothing kept) when the problem is longer than MAX_SAMPLE_BYTES.
static int make_problem(Rng *r, const Knobs *k, Problem *p) {
    int n = pick_range(r, k->min_steps, k->max_steps);
    int start = pick_range(r, 2, k->max_start);
    Step steps[MAX_STEPS];
    p->answer = make_steps(r, k, start, n, steps);

    StrBuf prompt = {0}, intro = {0}, chosen = {0}, rejected = {0};
    make_story(r, start, steps, n, &prompt, &intro);

    strbuf_puts(&chosen, intro.p);
    put_lines(&chosen, start, steps, n, -1, 0);
    strbuf_printf(&chosen, "Final Answer: %ld", p->answer);

    // The slip: a small nonzero error in one step. A negative error can drive a later value
    // below zero; a positive one never can (every step is monotone in its input).
    int slip = pick(r, n);
    int delta = pick_range(r, 1, 3) * (pick(r, 2) ? 1 : -1);
    StrBuf lines = {0};
    long wrong = put_lines(&lines, start, steps, n, slip, delta);
    if (wrong < 0) {
        free(lines.p);
        lines = (StrBuf){0};
        delta = -delta;
        wrong = put_lines(&lines, start, steps, n, slip, delta);
    }
    strbuf_puts(&rejected, intro.p);
    strbuf_puts(&rejected, lines.p);
    strbuf_printf(&rejected, "Final Answer: %ld", wrong);
    if (wrong == p->answer) gemc_fatal("internal: a slip left the answer unchanged");
    free(intro.p);
    free(lines.p);
    size_t longer = chosen.len > rejected.len ? chosen.len : rejected.len;
    if (prompt.len + 1 + longer + 1 > MAX_SAMPLE_BYTES) {
        free(prompt.p);
        free(chosen.p);
        free(rejected.p);
        return -1;
    }
    p->prompt = prompt.p;
    p->chosen = chosen.p;
    p->rejected = rejected.p;
    return 0;
}

// --direct-percent: the train pair's responses become their last lines ("Final Answer: N", the
// rejected one's wrong N), with no working. The draw is a stream of its own, so the problems, and
// every other pair, are the same bytes as without the option.
static void make_direct(Problem *p) {
    const char *c = strrchr(p->chosen, '\n'), *r = strrchr(p->rejected, '\n');
    char *chosen = strdup(c ? c + 1 : p->chosen), *rejected = strdup(r ? r + 1 : p->rejected);
    if (!chosen || !rejected) gemc_fatal("out of memory");
    free(p->chosen);
    free(p->rejected);
    p->chosen = chosen;
    p->rejected = rejected;
}

// ---------------------------------------------------------------------------------------------
// Distinct prompts: an open-addressing set of strings (FNV-1a), so that no test problem is also
// a train problem and neither split repeats itself.

typedef struct {
    const char **slot;
    size_t cap;
} StrSet;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

// Adds s unless present; returns 1 when added.
static int strset_add(StrSet *set, const char *s) {
    size_t i = fnv1a(s) & (set->cap - 1);
    while (set->slot[i]) {
        if (!strcmp(set->slot[i], s)) return 0;
        i = (i + 1) & (set->cap - 1);
    }
    set->slot[i] = s;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Output

static char *json_line(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (!s) gemc_fatal("out of memory");
    cJSON_Delete(o);
    return s;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char *path = path_join(dir, name);
    int rc = write_file_atomic(path, text, strlen(text));
    free(path);
    return rc;
}

static int write_json(const char *dir, const char *name, cJSON *root) {
    char *path = path_join(dir, name);
    int rc = json_write_file(path, root);
    free(path);
    return rc;
}

static int write_split(const char *dir, const char *split, const Problem *p, int n) {
    StrBuf pairs = {0}, prompts = {0};
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", p[i].prompt);
        cJSON_AddStringToObject(o, "chosen", p[i].chosen);
        cJSON_AddStringToObject(o, "rejected", p[i].rejected);
        char *line = json_line(o);
        strbuf_puts(&pairs, line);
        strbuf_puts(&pairs, "\n");
        cJSON_free(line);

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", p[i].prompt);
        cJSON_AddNumberToObject(o, "answer", (double)p[i].answer);
        line = json_line(o);
        strbuf_puts(&prompts, line);
        strbuf_puts(&prompts, "\n");
        cJSON_free(line);
    }
    char name[64];
    snprintf(name, sizeof name, "%s_pairs.jsonl", split);
    int rc = write_text(dir, name, pairs.p);
    snprintf(name, sizeof name, "%s_prompts.jsonl", split);
    if (rc == 0) rc = write_text(dir, name, prompts.p);
    free(pairs.p);
    free(prompts.p);
    return rc;
}

static int write_model_config(const char *dir) {
    ModelConfig cfg;
    if (model_config_parse(TINY_LLAMA_JSON, "tiny-llama.json (embedded)", &cfg) != 0) return -1;
    char *json = model_config_to_json(&cfg, "float32");
    int rc = write_text(dir, "config.json", json);
    free(json);
    return rc;
}

static int write_knobs(const char *dir, const Knobs *k) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "task", "arith");
    cJSON_AddNumberToObject(root, "seed", k->seed);
    cJSON_AddNumberToObject(root, "train", k->train);
    cJSON_AddNumberToObject(root, "test", k->test);
    cJSON_AddNumberToObject(root, "min_steps", k->min_steps);
    cJSON_AddNumberToObject(root, "max_steps", k->max_steps);
    cJSON_AddNumberToObject(root, "max_start", k->max_start);
    cJSON_AddNumberToObject(root, "max_operand", k->max_operand);
    cJSON_AddNumberToObject(root, "max_value", k->max_value);
    cJSON_AddNumberToObject(root, "mul_percent", k->mul_percent);
    cJSON_AddNumberToObject(root, "direct_percent", k->direct_percent);
    cJSON_AddStringToObject(root, "answer_marker", "Final Answer:");
    cJSON_AddStringToObject(root, "chat_template", "plain");
    return write_json(dir, "task.json", root);
}

// ---------------------------------------------------------------------------------------------

static int check_range(const char *opt, int v, int lo, int hi) {
    if (v >= lo && v <= hi) return 0;
    gemc_set_error("gemc make_task: --%s: %d is outside [%d, %d]", opt, v, lo, hi);
    return -1;
}

static int check_knobs(const Knobs *k) {
    if (check_range("train", k->train, 1, 1000000) || check_range("test", k->test, 1, 1000000) ||
        check_range("min-steps", k->min_steps, 1, MAX_STEPS) ||
        check_range("max-steps", k->max_steps, 1, MAX_STEPS) ||
        check_range("max-value", k->max_value, 10, 100000) ||
        check_range("max-start", k->max_start, 2, k->max_value) ||
        check_range("max-operand", k->max_operand, 1, k->max_value) ||
        check_range("mul-percent", k->mul_percent, 0, 100) ||
        check_range("direct-percent", k->direct_percent, 0, 100))
        return -1;
    if (k->min_steps > k->max_steps) {
        gemc_set_error("gemc make_task: --min-steps %d is above --max-steps %d", k->min_steps,
                       k->max_steps);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *out = NULL;
    Knobs k = {.seed = 1,
               .train = 3000,
               .test = 500,
               .min_steps = 2,
               .max_steps = 2,
               .max_start = 80,
               .max_operand = 9,
               .max_value = 99,
               .mul_percent = 0,
               .direct_percent = 0};
    const CliOpt opts[] = {
        {"out", OPT_STR, &out, "DIR", "output folder (created when missing)", 1},
        {"seed", OPT_INT, &k.seed, "N", "random seed (default 1)", 0},
        {"train", OPT_INT, &k.train, "N", "training problems (default 3000)", 0},
        {"test", OPT_INT, &k.test, "N", "test problems (default 500)", 0},
        {"min-steps", OPT_INT, &k.min_steps, "N", "fewest arithmetic steps a problem (default 2)",
         0},
        {"max-steps", OPT_INT, &k.max_steps, "N", "most arithmetic steps a problem (default 2)", 0},
        {"max-start", OPT_INT, &k.max_start, "N", "starting quantity in [2, N] (default 80)", 0},
        {"max-operand", OPT_INT, &k.max_operand, "N",
         "added or taken amounts in [1, N] (default 9)", 0},
        {"max-value", OPT_INT, &k.max_value, "N",
         "every intermediate value stays in [0, N] (default 99)", 0},
        {"mul-percent", OPT_INT, &k.mul_percent, "P",
         "chance in percent of a doubling/tripling step (default 0)", 0},
        {"direct-percent", OPT_INT, &k.direct_percent, "P",
         "share in percent of train pairs that answer with no working (default 0)", 0},
        {0},
    };
    const CliCommand cmd = {
        "make_task",
        "Writes the embedded default task: arithmetic word problems with a chain of thought\n"
        "(SFT pairs with a one-slip rejected answer, GEM prompts with answers, train and test),\n"
        "the byte-level tokenizer and the tiny model's config.json. The same seed and options\n"
        "give the same bytes.",
        "example:\n  build/make_task --seed 1 --out data/arith\n"
        "files: train_pairs.jsonl test_pairs.jsonl train_prompts.jsonl test_prompts.jsonl\n"
        "       tokenizer.json tokenizer_config.json config.json task.json (see data/README.md)",
        opts,
        "make_task",
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc > 0) return 0;
    if (rc < 0) gemc_fatal_last();
    if (check_knobs(&k) != 0) gemc_fatal_last();

    int total = k.train + k.test;
    Problem *p = callocCheck((size_t)total, sizeof *p);
    StrSet seen = {0};
    seen.cap = 1;
    while (seen.cap < 2 * (size_t)total) seen.cap *= 2;
    seen.slot = callocCheck(seen.cap, sizeof *seen.slot);
    Rng rng;
    rng_seed(&rng, (uint64_t)(int64_t)k.seed);
    // Knobs can allow fewer distinct problems than asked for: give up after many failed draws
    // in a row rather than loop forever.
    int made = 0, failed = 0;
    while (made < total) {
        if (make_problem(&rng, &k, &p[made]) == 0) {
            if (strset_add(&seen, p[made].prompt)) {
                made++;
                failed = 0;
                continue;
            }
            free(p[made].prompt);
            free(p[made].chosen);
            free(p[made].rejected);
        }
        if (++failed > 100000)
            gemc_fatal("cannot make %d distinct problems of at most %d bytes with these options, "
                       "only %d (HINT: ask for fewer, or change --max-value or --max-steps)",
                       total, MAX_SAMPLE_BYTES, made);
    }

    Rng direct;
    rng_seed(&direct, (uint64_t)(int64_t)k.seed ^ 0x646972656374ULL);
    for (int i = 0; i < k.train; i++)
        if ((int)(rng_u64(&direct) % 100) < k.direct_percent) make_direct(&p[i]);

    rc = ensure_dir(out);
    if (rc == 0) rc = write_split(out, "train", p, k.train);
    if (rc == 0) rc = write_split(out, "test", p + k.train, k.test);
    if (rc == 0) rc = tokenizer_write_bytelevel(out, 512);
    if (rc == 0) rc = write_model_config(out);
    if (rc == 0) rc = write_knobs(out, &k);
    if (rc == 0)
        printf("wrote %s: %d train and %d test problems (seed %d), tokenizer.json, "
               "tokenizer_config.json, config.json\n",
               out, k.train, k.test, k.seed);
    for (int i = 0; i < total; i++) {
        free(p[i].prompt);
        free(p[i].chosen);
        free(p[i].rejected);
    }
    free(p);
    free(seen.slot);
    if (rc != 0) gemc_fatal_last();
    return 0;
}
