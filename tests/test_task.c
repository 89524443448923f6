// The embedded default task (tools/make_task.c) as the demo and the stages read it: the same
// seed gives the same bytes, every chosen chain of thought is right, every rejected one has
// exactly one slip, the splits do not overlap, and the tokenizer and config.json are the tiny
// model's. The generator binary is $GEMC_MAKE_TASK (default build/make_task).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "text/chat_template.h"
#include "base/common.h"
#include "model/model_config.h"
#include "base/strbuf.h"
#include "tests.h"
#include "text/tokenizer.h"

static const char *const FILES[] = {
    "train_pairs.jsonl", "test_pairs.jsonl",      "train_prompts.jsonl", "test_prompts.jsonl",
    "tokenizer.json",    "tokenizer_config.json", "config.json",         "task.json",
};
#define NUM_FILES ((int)(sizeof FILES / sizeof FILES[0]))

static const char *make_task_bin(void) {
    const char *b = getenv("GEMC_MAKE_TASK");
    return b && *b ? b : "build/make_task";
}

// Runs the generator with `args` into a fresh directory; returns that directory.
static char *generate(const char *args) {
    char *dir = test_tmpdir();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --out %s/task %s", make_task_bin(), dir, args);
    char *out, *err;
    int rc = test_run(cmd, &out, &err);
    if (rc != 0) fprintf(stderr, "\n  command: %s\n  status %d, stderr: %s", cmd, rc, err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    free(out);
    free(err);
    char *task = path_join(dir, "task");
    free(dir);
    return task;
}

// The default task, as `make task` writes it, made once for the suite.
static char *g_default;
static const char *default_task(void) {
    if (!g_default) g_default = generate("--seed 1");
    return g_default;
}

static char *read_in(const char *dir, const char *name, size_t *len) {
    char *path = path_join(dir, name);
    char *s = read_text_file(path, len);
    if (!s) fprintf(stderr, "\n  %s\n", gemc_error());
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    free(path);
    return s;
}

// Every line of a JSONL file, parsed.
typedef struct {
    cJSON **obj;
    int n;
} Jsonl;

static Jsonl read_jsonl(const char *dir, const char *name) {
    char *text = read_in(dir, name, NULL);
    Jsonl j = {0};
    int cap = 0;
    for (char *line = text, *next; line && *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl) *nl = 0;
        cJSON *o = cJSON_Parse(line);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        if (j.n == cap) {
            cap = cap ? 2 * cap : 256;
            j.obj = realloc(j.obj, sizeof(cJSON *) * (size_t)cap);
        }
        j.obj[j.n++] = o;
    }
    free(text);
    return j;
}

static void jsonl_free(Jsonl *j) {
    for (int i = 0; i < j->n; i++) cJSON_Delete(j->obj[i]);
    free(j->obj);
}

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    CU_ASSERT_FATAL(cJSON_IsString(v));
    return v->valuestring;
}

// ---------------------------------------------------------------------------------------------
// A chain of thought: an intro line, arithmetic lines "A op B = C", "Final Answer: N".

#define MAX_LINES 16

typedef struct {
    long a, b, c;
    char op;
} Line;

typedef struct {
    char intro[256];
    Line line[MAX_LINES];
    int n;
    long final;
} Cot;

// Parses text in the fixed form; returns 0, or -1 when any line strays from it.
static int parse_cot(const char *text, Cot *cot) {
    memset(cot, 0, sizeof *cot);
    const char *nl = strchr(text, '\n');
    if (!nl || (size_t)(nl - text) >= sizeof cot->intro) return -1;
    memcpy(cot->intro, text, (size_t)(nl - text));
    const char *p = nl + 1;
    for (;;) {
        nl = strchr(p, '\n');
        if (!nl) break;
        // parsed in place, so that its padding stays zero for check_pair's memcmp
        Line *l = &cot->line[cot->n];
        char again[128], line[128];
        size_t len = (size_t)(nl - p);
        if (len >= sizeof line || cot->n == MAX_LINES) return -1;
        memcpy(line, p, len);
        line[len] = 0;
        if (sscanf(line, "%ld %c %ld = %ld", &l->a, &l->op, &l->b, &l->c) != 4) return -1;
        // the form is exact: printing the numbers back gives the same line
        snprintf(again, sizeof again, "%ld %c %ld = %ld", l->a, l->op, l->b, l->c);
        if (strcmp(again, line) != 0 || !strchr("+-*", l->op)) return -1;
        cot->n++;
        p = nl + 1;
    }
    char *end;
    if (strncmp(p, "Final Answer: ", 14) != 0) return -1;
    cot->final = strtol(p + 14, &end, 10);
    return *end || end == p + 14 ? -1 : 0;
}

static long apply(const Line *l, long a) {
    return l->op == '+' ? a + l->b : l->op == '-' ? a - l->b : a * l->b;
}

// The first number in s, or -1.
static long first_number(const char *s) {
    while (*s && (*s < '0' || *s > '9')) s++;
    return *s ? strtol(s, NULL, 10) : -1;
}

// The prompt states the start and then each added or taken amount, in order (a doubling or
// tripling is said in words).
static int numbers_match(const char *prompt, const Cot *c) {
    long want[MAX_LINES + 1];
    int n = 0;
    want[n++] = c->line[0].a;
    for (int i = 0; i < c->n; i++)
        if (c->line[i].op != '*') want[n++] = c->line[i].b;
    int k = 0;
    for (const char *p = prompt; *p;) {
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (k == n || want[k++] != v) return 0;
        p = end;
    }
    return k == n;
}

// Checks one pair; returns the number of failed checks (and prints the first).
static int check_pair(const char *prompt, const char *chosen, const char *rejected) {
    Cot c, r;
    const char *why = NULL;
    if (parse_cot(chosen, &c) != 0) {
        why = "chosen is not in the fixed form";
    } else if (parse_cot(rejected, &r) != 0) {
        why = "rejected is not in the fixed form";
    } else if (c.n < 1 || c.line[0].a != first_number(c.intro)) {
        why = "the first step does not start from the intro's quantity";
    } else if (!numbers_match(prompt, &c)) {
        why = "the numbers of the prompt are not the steps' start and operands";
    } else if (strcmp(c.intro, r.intro) != 0 || c.n != r.n) {
        why = "rejected does not repeat chosen's intro and steps";
    } else {
        int wrong = 0, slip = -1;
        for (int i = 0; i < c.n && !why; i++) {
            const Line *lc = &c.line[i], *lr = &r.line[i];
            if (lc->c != apply(lc, lc->a) || lc->c < 0 || lc->b < 0)
                why = "a chosen line is wrong or negative";
            else if (i > 0 && lc->a != c.line[i - 1].c)
                why = "a chosen step does not start from the previous result";
            else if (lr->op != lc->op || lr->b != lc->b)
                why = "rejected changes an operation or operand";
            else if (i > 0 && lr->a != r.line[i - 1].c)
                why = "a rejected step does not start from the previous result";
            else if (lr->c < 0)
                why = "a rejected value is negative";
            else if (lr->c != apply(lr, lr->a)) {
                wrong++, slip = i;
                long d = labs(lr->c - apply(lr, lr->a));
                if (d > 3) why = "the slip is not small";
            }
        }
        if (!why && wrong != 1) why = "rejected does not have exactly one wrong line";
        if (!why && slip >= 0 && memcmp(c.line, r.line, sizeof(Line) * (size_t)slip) != 0)
            why = "rejected differs from chosen before its slip";
        if (!why && c.final != c.line[c.n - 1].c) why = "chosen's final answer is not its result";
        if (!why && r.final != r.line[r.n - 1].c) why = "rejected's answer is not its result";
        if (!why && r.final == c.final) why = "rejected's final answer equals chosen's";
    }
    if (why)
        fprintf(stderr, "\n  %s:\n  %s\n  chosen: %s\n  rejected: %s\n", why, prompt, chosen,
                rejected);
    return why != NULL;
}

// ---------------------------------------------------------------------------------------------

static void test_same_seed_same_bytes(void) {
    char *a = generate("--seed 7 --train 400 --test 50 --mul-percent 20");
    char *b = generate("--seed 7 --train 400 --test 50 --mul-percent 20");
    char *c = generate("--seed 8 --train 400 --test 50 --mul-percent 20");
    for (int i = 0; i < NUM_FILES; i++) {
        size_t na, nb, nc;
        char *fa = read_in(a, FILES[i], &na), *fb = read_in(b, FILES[i], &nb);
        char *fc = read_in(c, FILES[i], &nc);
        int same = na == nb && memcmp(fa, fb, na) == 0;
        CU_ASSERT(same);
        if (!same) fprintf(stderr, "\n  %s differs between two runs with seed 7\n", FILES[i]);
        // the data changes with the seed; the tokenizer and the model do not
        int data = strstr(FILES[i], ".jsonl") != NULL;
        int same_c = na == nc && memcmp(fa, fc, na) == 0;
        CU_ASSERT(data ? !same_c : strcmp(FILES[i], "task.json") == 0 || same_c);
        free(fa);
        free(fb);
        free(fc);
    }
    free(a);
    free(b);
    free(c);
}

static void check_split(const char *dir, const char *split, int want_n, int max_len,
                        int *steps_seen) {
    char pairs_name[64], prompts_name[64];
    snprintf(pairs_name, sizeof pairs_name, "%s_pairs.jsonl", split);
    snprintf(prompts_name, sizeof prompts_name, "%s_prompts.jsonl", split);
    Jsonl pairs = read_jsonl(dir, pairs_name), prompts = read_jsonl(dir, prompts_name);
    CU_ASSERT_EQUAL(pairs.n, want_n);
    CU_ASSERT_EQUAL_FATAL(prompts.n, pairs.n);
    int bad = 0, longest = 0;
    for (int i = 0; i < pairs.n; i++) {
        const char *prompt = str_field(pairs.obj[i], "prompt");
        const char *chosen = str_field(pairs.obj[i], "chosen");
        bad += check_pair(prompt, chosen, str_field(pairs.obj[i], "rejected"));
        Cot c;
        if (parse_cot(chosen, &c) == 0 && c.n < MAX_LINES) steps_seen[c.n] = 1;
        // the GEM prompt is the same problem, with chosen's final answer as a JSON number
        CU_ASSERT_STRING_EQUAL(str_field(prompts.obj[i], "prompt"), prompt);
        const cJSON *ans = cJSON_GetObjectItemCaseSensitive(prompts.obj[i], "answer");
        CU_ASSERT_FATAL(cJSON_IsNumber(ans));
        CU_ASSERT_EQUAL(ans->valuedouble, (double)c.final);
        CU_ASSERT_EQUAL(cJSON_GetArraySize(prompts.obj[i]), 2);
        // plain template: "PROMPT\n" + response + EOS, one token a byte
        int len = (int)(strlen(prompt) + 1 + strlen(chosen) + 1);
        if (len > longest) longest = len;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(longest <= max_len);
    jsonl_free(&pairs);
    jsonl_free(&prompts);
}

static void test_chosen_right_rejected_one_slip(void) {
    int steps[MAX_LINES] = {0};
    check_split(default_task(), "train", 3000, 256, steps);
    check_split(default_task(), "test", 500, 256, steps);
    // the defaults make 2-step problems
    CU_ASSERT(steps[2] && !steps[1] && !steps[3]);

    // multiplication and long problems follow the same rules
    char *dir = generate("--seed 3 --train 500 --test 100 --mul-percent 40 --min-steps 1 "
                         "--max-steps 6 --max-value 500 --max-operand 90");
    int steps2[MAX_LINES] = {0};
    check_split(dir, "train", 500, 448, steps2);
    check_split(dir, "test", 100, 448, steps2);
    CU_ASSERT(steps2[1] && steps2[6]);
    size_t n;
    char *text = read_in(dir, "train_pairs.jsonl", &n);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " * 2 = "));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " * 3 = "));
    free(text);
    free(dir);

    // six steps of five-digit numbers: problems that would not fit are drawn again
    dir = generate("--seed 4 --train 300 --test 20 --mul-percent 30 --min-steps 6 --max-steps 6 "
                   "--max-value 99999 --max-start 99999 --max-operand 99999");
    check_split(dir, "train", 300, 448, steps2);
    check_split(dir, "test", 20, 448, steps2);
    free(dir);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_splits_disjoint_and_varied(void) {
    Jsonl train = read_jsonl(default_task(), "train_prompts.jsonl");
    Jsonl test = read_jsonl(default_task(), "test_prompts.jsonl");
    int n = train.n + test.n;
    const char **all = mallocCheck(sizeof(char *) * (size_t)n);
    for (int i = 0; i < train.n; i++) all[i] = str_field(train.obj[i], "prompt");
    for (int i = 0; i < test.n; i++) all[train.n + i] = str_field(test.obj[i], "prompt");
    qsort(all, (size_t)n, sizeof *all, cmp_str);
    int dups = 0;
    for (int i = 1; i < n; i++) dups += strcmp(all[i - 1], all[i]) == 0;
    CU_ASSERT_EQUAL(dups, 0); // within and across the splits
    // the texts vary: many first words (names, "There"), questions and answers
    int words = 0, questions = 0;
    char seen_words[64][16] = {{0}}, seen_q[16][48] = {{0}};
    for (int i = 0; i < n; i++) {
        char w[16] = {0}, q[48] = {0};
        sscanf(all[i], "%15s", w);
        const char *qm = strrchr(all[i], '?');
        const char *qs = qm;
        while (qs > all[i] && qs[-1] != '.') qs--;
        snprintf(q, sizeof q, "%.*s", (int)(qm - qs < 20 ? qm - qs : 20), qs);
        int k;
        for (k = 0; k < words && strcmp(seen_words[k], w); k++) {
        }
        if (k == words && words < 64) strcpy(seen_words[words++], w);
        for (k = 0; k < questions && strcmp(seen_q[k], q); k++) {
        }
        if (k == questions && questions < 16) strcpy(seen_q[questions++], q);
    }
    CU_ASSERT(words >= 30);
    CU_ASSERT(questions >= 3);
    free(all);
    jsonl_free(&train);
    jsonl_free(&test);
}

static void test_tokenizer_is_byte_level(void) {
    char *path = path_join(default_task(), "tokenizer.json");
    Tokenizer *tok = tokenizer_load(path);
    if (!tok) fprintf(stderr, "\n  %s\n", gemc_error());
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    CU_ASSERT_EQUAL(tokenizer_vocab_size(tok), 260);
    CU_ASSERT_EQUAL(tokenizer_token_id(tok, "<|begin_of_text|>"), 256);
    CU_ASSERT_EQUAL(tokenizer_token_id(tok, "<|end_of_text|>"), 257);
    CU_ASSERT_EQUAL(tokenizer_token_id(tok, "<|im_start|>"), 258);
    CU_ASSERT_EQUAL(tokenizer_token_id(tok, "<|im_end|>"), 259);
    for (int id = 256; id < 260; id++) CU_ASSERT(tokenizer_is_special(tok, id));

    // add_special prepends BOS; without it, one id a byte
    IntVec ids = {0};
    CU_ASSERT_EQUAL(tokenizer_encode(tok, "Mia 7", 5, 1, &ids), 0);
    int want[] = {256, 'M', 'i', 'a', ' ', '7'};
    CU_ASSERT_EQUAL_FATAL(ids.n, 6);
    CU_ASSERT(memcmp(ids.v, want, sizeof want) == 0);
    ids.n = 0;
    const char *eos_text = "9<|end_of_text|>";
    CU_ASSERT_EQUAL(tokenizer_encode(tok, eos_text, strlen(eos_text), 0, &ids), 0);
    CU_ASSERT(ids.n == 2 && ids.v[0] == '9' && ids.v[1] == 257);

    // round trip on every generated text and on bytes beyond ASCII
    Jsonl pairs = read_jsonl(default_task(), "test_pairs.jsonl");
    const char *extra = "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x8d\x8e x\ty\n  z\\\"";
    int bad = 0, checked = 0;
    for (int i = 0; i <= pairs.n; i++) {
        for (int f = 0; f < 3; f++) {
            static const char *keys[] = {"prompt", "chosen", "rejected"};
            const char *text = i < pairs.n ? str_field(pairs.obj[i], keys[f]) : extra;
            size_t len = strlen(text);
            ids.n = 0;
            StrBuf back = {0};
            int ok = tokenizer_encode(tok, text, len, 0, &ids) == 0 && ids.n == (int)len &&
                     tokenizer_decode(tok, ids.v, ids.n, 0, &back) == 0 && back.len == len &&
                     memcmp(back.p, text, len) == 0;
            for (int k = 0; ok && k < ids.n; k++) ok = ids.v[k] == (unsigned char)text[k];
            if (!ok && !bad) fprintf(stderr, "\n  no byte-level round trip: %s\n", text);
            bad += !ok;
            checked++;
            free(back.p);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(checked, 3 * (pairs.n + 1));
    jsonl_free(&pairs);
    intvec_free(&ids);
    tokenizer_free(tok);
    free(path);
}

static void test_tokenizer_config(void) {
    char *text = read_in(default_task(), "tokenizer_config.json", NULL);
    cJSON *o = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_STRING_EQUAL(str_field(o, "bos_token"), "<|begin_of_text|>");
    CU_ASSERT_STRING_EQUAL(str_field(o, "eos_token"), "<|end_of_text|>");
    CU_ASSERT_STRING_EQUAL(str_field(o, "chat_template"), CHAT_PLAIN_JINJA);
    CU_ASSERT_STRING_EQUAL(str_field(o, "tokenizer_class"), "PreTrainedTokenizerFast");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(o, "model_max_length");
    CU_ASSERT(cJSON_IsNumber(max) && max->valueint == 512);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(o, "added_tokens_decoder");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(dec), 4);
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(dec, "257");
    CU_ASSERT_STRING_EQUAL(str_field(eos, "content"), "<|end_of_text|>");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(eos, "special")));
    cJSON_Delete(o);
    free(text);
    // the stages recognise it as the plain template
    char *path = path_join(default_task(), "tokenizer_config.json");
    ChatTemplate t = CHAT_CHATML;
    CU_ASSERT_EQUAL(chat_template_detect(path, &t), 0);
    CU_ASSERT_EQUAL(t, CHAT_PLAIN);
    free(path);
}

static void test_config_is_tiny_llama(void) {
    char *path = path_join(default_task(), "config.json");
    ModelConfig got, want;
    CU_ASSERT_EQUAL_FATAL(model_config_load(path, &got), 0);
    CU_ASSERT_EQUAL_FATAL(model_config_load("configs/models/tiny-llama.json", &want), 0);
    CU_ASSERT_EQUAL(got.type, want.type);
    CU_ASSERT_STRING_EQUAL(got.model_type, want.model_type);
    CU_ASSERT_EQUAL(got.vocab_size, want.vocab_size);
    CU_ASSERT_EQUAL(got.hidden_size, want.hidden_size);
    CU_ASSERT_EQUAL(got.intermediate_size, want.intermediate_size);
    CU_ASSERT_EQUAL(got.num_layers, want.num_layers);
    CU_ASSERT_EQUAL(got.num_heads, want.num_heads);
    CU_ASSERT_EQUAL(got.num_kv_heads, want.num_kv_heads);
    CU_ASSERT_EQUAL(got.head_dim, want.head_dim);
    CU_ASSERT_EQUAL(got.max_position_embeddings, want.max_position_embeddings);
    CU_ASSERT_EQUAL(got.rms_norm_eps, want.rms_norm_eps);
    CU_ASSERT_EQUAL(got.initializer_range, want.initializer_range);
    CU_ASSERT_EQUAL(got.rope_theta, want.rope_theta);
    CU_ASSERT_EQUAL(got.rope_type, want.rope_type);
    CU_ASSERT_EQUAL(got.rope_factor, want.rope_factor);
    CU_ASSERT_EQUAL(got.rope_low_freq_factor, want.rope_low_freq_factor);
    CU_ASSERT_EQUAL(got.rope_high_freq_factor, want.rope_high_freq_factor);
    CU_ASSERT_EQUAL(got.rope_original_max_position_embeddings,
                    want.rope_original_max_position_embeddings);
    CU_ASSERT_EQUAL(got.sliding_window, want.sliding_window);
    CU_ASSERT_EQUAL(got.tie_word_embeddings, want.tie_word_embeddings);
    CU_ASSERT_EQUAL(got.qkv_bias, want.qkv_bias);
    CU_ASSERT_EQUAL(got.o_bias, want.o_bias);
    CU_ASSERT_EQUAL(got.bos_token_id, want.bos_token_id);
    CU_ASSERT_EQUAL(got.num_eos, want.num_eos);
    CU_ASSERT_EQUAL(got.eos_token_ids[0], want.eos_token_ids[0]);
    CU_ASSERT_STRING_EQUAL(got.torch_dtype, want.torch_dtype);
    // and the values the task relies on
    CU_ASSERT(got.vocab_size == 260 && got.bos_token_id == 256 && got.eos_token_ids[0] == 257);
    CU_ASSERT_EQUAL(got.max_position_embeddings, 512);
    free(path);
}

// The failure contract: status 1, nothing on stdout, one "gemc: error:" line naming `needle`.
static void expect_error(const char *args, const char *needle) {
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s %s", make_task_bin(), args);
    int rc = test_run(cmd, &out, &err);
    size_t len = strlen(err);
    int ok = rc == 1 && out[0] == 0 && strncmp(err, "gemc: error: ", 13) == 0 && len > 0 &&
             strchr(err, '\n') == err + len - 1 && strstr(err, needle);
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  command: %s\n  status %d, stderr: %s", cmd, rc, err);
    free(out);
    free(err);
}

// The defaults' answers are hard to guess: the most frequent answer of the train split (the best
// guess that ignores the problem) is right on fewer than 2% of the held-out problems, so a right
// answer comes from working (README, "The learner check").
static void test_default_answers_unguessable(void) {
    Jsonl train = read_jsonl(default_task(), "train_prompts.jsonl");
    Jsonl test = read_jsonl(default_task(), "test_prompts.jsonl");
    int *count = calloc(100001, sizeof(int)), best = 0;
    for (int i = 0; i < train.n; i++) {
        const int a = cJSON_GetObjectItemCaseSensitive(train.obj[i], "answer")->valueint;
        CU_ASSERT_FATAL(a >= 0 && a <= 100000);
        if (++count[a] > count[best]) best = a;
    }
    int hits = 0;
    for (int i = 0; i < test.n; i++)
        hits += cJSON_GetObjectItemCaseSensitive(test.obj[i], "answer")->valueint == best;
    CU_ASSERT(test.n == 500 && hits * 50 < test.n); // the best guess: under 2%
    CU_ASSERT(count[best] * 50 < train.n);          // and on the train split
    jsonl_free(&train), jsonl_free(&test);
    free(count);
}

// --direct-percent P: about P% of the train pairs answer with their last lines only (chosen
// "Final Answer: N" with the right N, rejected the slip's wrong one); every problem, every prompt
// file, the test pairs and the other train pairs are the bytes the same seed gives without it.
static void test_direct_percent(void) {
    char *base = generate("--seed 5 --train 400 --test 40");
    char *mixed = generate("--seed 5 --train 400 --test 40 --direct-percent 60");
    const char *same[] = {"train_prompts.jsonl", "test_prompts.jsonl", "test_pairs.jsonl"};
    for (int i = 0; i < 3; i++) {
        char *a = path_join(base, same[i]), *b = path_join(mixed, same[i]);
        CU_ASSERT(test_files_equal(a, b));
        free(a), free(b);
    }
    Jsonl pb = read_jsonl(base, "train_pairs.jsonl"), pm = read_jsonl(mixed, "train_pairs.jsonl");
    Jsonl prompts = read_jsonl(base, "train_prompts.jsonl");
    CU_ASSERT_FATAL(pb.n == 400 && pm.n == 400 && prompts.n == 400);
    int direct = 0;
    for (int i = 0; i < pm.n; i++) {
        const char *c = str_field(pm.obj[i], "chosen"), *r = str_field(pm.obj[i], "rejected");
        const char *bc = str_field(pb.obj[i], "chosen"), *br = str_field(pb.obj[i], "rejected");
        CU_ASSERT(!strcmp(str_field(pm.obj[i], "prompt"), str_field(pb.obj[i], "prompt")));
        if (!strcmp(c, bc)) {
            CU_ASSERT(!strcmp(r, br)); // shown working: untouched
            continue;
        }
        direct++;
        // the last lines of the working pair, nothing else
        CU_ASSERT(!strncmp(c, "Final Answer: ", 14) && !strchr(c, '\n') && !strchr(r, '\n'));
        CU_ASSERT(!strcmp(c, strrchr(bc, '\n') + 1) && !strcmp(r, strrchr(br, '\n') + 1));
        const cJSON *ans = cJSON_GetObjectItemCaseSensitive(prompts.obj[i], "answer");
        CU_ASSERT(cJSON_IsNumber(ans) && atol(c + 14) == (long)ans->valuedouble);
        CU_ASSERT(strcmp(c, r) != 0);
    }
    CU_ASSERT(direct > 200 && direct < 280); // 60% of 400, within a few standard deviations
    jsonl_free(&pb), jsonl_free(&pm), jsonl_free(&prompts);
    free(base), free(mixed);
}

static void test_bad_arguments(void) {
    char *dir = test_tmpdir();
    char *file = path_join(dir, "file");
    test_write_file(file, "x", 1);
    char args[512];
    snprintf(args, sizeof args, "--out %s/t --train 0", dir);
    expect_error(args, "--train");
    snprintf(args, sizeof args, "--out %s/t --test -3", dir);
    expect_error(args, "--test");
    snprintf(args, sizeof args, "--out %s/t --min-steps 4 --max-steps 2", dir);
    expect_error(args, "--min-steps");
    snprintf(args, sizeof args, "--out %s/t --max-steps 9", dir);
    expect_error(args, "--max-steps");
    snprintf(args, sizeof args, "--out %s/t --seed x", dir);
    expect_error(args, "not an integer");
    snprintf(args, sizeof args, "--out %s/t --trian 5", dir);
    expect_error(args, "did you mean '--train'");
    expect_error("--seed 1", "--out DIR is required");
    snprintf(args, sizeof args, "--out %s/t --max-value 5", dir);
    expect_error(args, "--max-value");
    snprintf(args, sizeof args, "--out %s/t --direct-percent 101", dir);
    expect_error(args, "--direct-percent");
    // an --out that cannot be a directory
    snprintf(args, sizeof args, "--out %s/sub", file);
    expect_error(args, file);
    // none of the failures above left anything behind
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 1);

    char cmd[512], *out, *err;
    snprintf(cmd, sizeof cmd, "%s --help", make_task_bin());
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--seed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--max-value"));
    free(out);
    free(err);
    free(file);
    free(dir);
}

static void cleanup(void) {
    free(g_default);
    g_default = NULL;
}

void register_task_tests(void) {
    static const TestCase tests[] = {
        {"same seed same bytes, another seed other data", test_same_seed_same_bytes},
        {"chosen is right, rejected has one slip", test_chosen_right_rejected_one_slip},
        {"splits disjoint and texts varied", test_splits_disjoint_and_varied},
        {"tokenizer.json is byte-level", test_tokenizer_is_byte_level},
        {"tokenizer_config.json", test_tokenizer_config},
        {"config.json is tiny-llama", test_config_is_tiny_llama},
        {"--direct-percent: answers without working, nothing else moved", test_direct_percent},
        {"default answers: the best guess is right under 2% of the time",
         test_default_answers_unguessable},
        {"bad arguments", test_bad_arguments},
        {0},
    };
    add_suite("task", tests);
    atexit(cleanup);
}
