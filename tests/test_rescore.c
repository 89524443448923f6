// gemc rescore (src/cmd/cmd_rescore.c) and the within-group separation it reports
// (reward_group_separation): hand-made groups, then a 2-step train run of the tiny end-to-end
// fixture (test_e2e_root) whose shards rescore reproduces bit for bit, the same under other
// settings, the shard fields `gemc inspect` shows, and the errors a user meets.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "base/common.h"
#include "config/config.h"
#include "gem/gem.h"
#include "gem/reward.h"
#include "run/shard.h"
#include "base/strbuf.h"
#include "tests.h"
#include "text/tokenizer.h"

#define GEMC "./gemc"

static int contains(const char *s, const char *needle) {
    return s && strstr(s, needle) != NULL;
}

// ---- reward_group_separation -------------------------------------------------------------------

static void test_group_separation(void) {
    RewardSeparation s = {0};
    // right 0 and 2, wrong 1 and 3: pairs (0,1) (0,3) (2,3) won, (2,1) tied: 3.5 of 4
    const float v1[] = {0.9f, 0.5f, 0.5f, 0.1f};
    const int c1[] = {1, 0, 1, 0};
    reward_group_separation(v1, c1, 4, &s);
    CU_ASSERT_EQUAL(s.candidates, 4);
    CU_ASSERT_EQUAL(s.groups, 1);
    CU_ASSERT_EQUAL(s.mixed_groups, 1);
    CU_ASSERT_EQUAL(s.pairs, 4.0);
    CU_ASSERT_EQUAL(s.wins, 3.5);
    CU_ASSERT_EQUAL(reward_separation_auroc(&s), 3.5 / 4.0);
    CU_ASSERT_EQUAL(s.top, 1.0);
    CU_ASSERT_EQUAL(s.mean, 0.5);
    CU_ASSERT_EQUAL(s.bottom, 0.0);
    // an unlabelled candidate and a non-finite value are left out: two wrong ones, no pairs
    const float v2[] = {0.3f, 0.3f, NAN, 0.7f};
    const int c2[] = {0, 0, 1, -1};
    reward_group_separation(v2, c2, 4, &s);
    CU_ASSERT_EQUAL(s.candidates, 6);
    CU_ASSERT_EQUAL(s.groups, 2);
    CU_ASSERT_EQUAL(s.mixed_groups, 1);
    CU_ASSERT_EQUAL(s.pairs, 4.0);
    // ties: the top-ranked is the lower index (a wrong one), the bottom-ranked the higher
    const float v3[] = {1.0f, 1.0f, 0.0f, 0.0f};
    const int c3[] = {0, 1, 1, 0};
    RewardSeparation t = {0};
    reward_group_separation(v3, c3, 4, &t);
    CU_ASSERT_EQUAL(t.top, 0.0);
    CU_ASSERT_EQUAL(t.bottom, 0.0);
    CU_ASSERT_EQUAL(t.wins, 2.0); // (1,0) tie, (1,3) won, (2,0) lost, (2,3) tie
    const int c4[] = {1, 0, 0, 1};
    RewardSeparation u = {0};
    reward_group_separation(v3, c4, 4, &u);
    CU_ASSERT_EQUAL(u.top, 1.0);
    CU_ASSERT_EQUAL(u.bottom, 1.0);
    CU_ASSERT_EQUAL(u.mean, 0.5);
    // a group without one labelled candidate adds nothing
    const int none[] = {-1, -1, -1, -1};
    RewardSeparation before = u;
    reward_group_separation(v3, none, 4, &u);
    CU_ASSERT_EQUAL(memcmp(&before, &u, sizeof u), 0);
    CU_ASSERT(isnan(reward_separation_auroc(&(RewardSeparation){0})));
}

// ---- the command on a real run ---------------------------------------------------------------

static char run_dir[1024];

// A 2-step train run of the end-to-end fixture (3 prompts with answers of 3 candidates a step).
static const char *setup_run(void) {
    if (run_dir[0]) return run_dir;
    const char *root = test_e2e_root();
    char cmd[4096];
    snprintf(run_dir, sizeof run_dir, "%s/rescore_run", root);
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.dir=%s train.steps=2", root, run_dir);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    return run_dir;
}

// Every shard of the run scored with its config.yaml plus one override (NULL: none): each
// candidate's recomputed S against the stored score (same_s) and S against -final (lambda 0).
static void check_shards(const char *run, const char *override, int expect_same) {
    GemConfig c;
    config_defaults(&c);
    char *cfg = path_join(run, "config.yaml");
    CU_ASSERT_EQUAL_FATAL(config_load_yaml(&c, cfg), 0);
    if (override) CU_ASSERT_EQUAL_FATAL(config_override(&c, override), 0);
    Tokenizer *tok = tokenizer_load(c.train.model);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    char *dir = path_join(run, "shards");
    long checked = 0;
    for (long step = 1; step <= 2; step++) {
        char *path = shard_path(dir, step, 0);
        Shard s;
        CU_ASSERT_EQUAL_FATAL(shard_read(path, &s, 0), 0);
        const long n = shard_n_cands(&s);
        CandidateScore *sc = callocCheck((size_t)n, sizeof(CandidateScore));
        CU_ASSERT_EQUAL(rescore_shard_scores(&c.score, tok, &s, sc), 0);
        for (long i = 0; i < n; i++, checked++) {
            if (expect_same) {
                // the run's own settings: the stored numbers, bit for bit
                CU_ASSERT_EQUAL(memcmp(&sc[i].score, &s.score[i], sizeof(float)), 0);
                CU_ASSERT_EQUAL(memcmp(&sc[i].fork, &s.fork_entropy[i], sizeof(float)), 0);
                CU_ASSERT_EQUAL(memcmp(&sc[i].final, &s.final_entropy[i], sizeof(float)), 0);
                if (!strcmp(s.reward_source, "gem"))
                    CU_ASSERT_EQUAL(memcmp(&sc[i].score, &s.value[i], sizeof(float)), 0);
            } else {
                // lambda_fork 0: S is minus the final span's mean entropy, the stored one
                CU_ASSERT_EQUAL(sc[i].score, -sc[i].final);
                CU_ASSERT_EQUAL(sc[i].score, -s.final_entropy[i]);
            }
        }
        free(sc);
        shard_free(&s);
        free(path);
    }
    CU_ASSERT_EQUAL(checked, 18);
    tokenizer_free(tok);
    free(dir), free(cfg);
    config_free(&c);
}

static void test_rescore_reproduces_the_run(void) {
    const char *run = setup_run();
    check_shards(run, NULL, 1);
    check_shards(run, "score.lambda_fork=0", 0);

    char cmd[4096], *out, *err;
    snprintf(cmd, sizeof cmd, GEMC " rescore %s", run);
    int rc = test_run(cmd, &out, &err);
    if (rc) fprintf(stderr, "\n  %s: status %d: %s", cmd, rc, err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    CU_ASSERT(contains(out, "2 shards (steps 1..2), 6 groups, 18 candidates"));
    CU_ASSERT(contains(out, "S recomputed: equal to the shards' score for 18 of 18 candidates"));
    CU_ASSERT(contains(out, "gem recomputed: equal to the shards' value for 18 of the 18"));
    CU_ASSERT(contains(out, "labels: the shards' answer checks"));
    CU_ASSERT(contains(out, "| source | candidates | groups | mixed groups | AUROC in groups |"));
    // the configured source first and marked, then every other one, answer included
    const char *gem = strstr(out, "| gem * |"), *ans = strstr(out, "| answer |"),
               *maj = strstr(out, "| majority |"), *sc = strstr(out, "| self_certainty |"),
               *ent = strstr(out, "| entropy |");
    CU_ASSERT(gem && ans && maj && sc && ent && gem < ans && ans < maj && maj < sc && sc < ent);
    // the answer source is the labels themselves: it separates them perfectly
    CU_ASSERT(contains(out, "| answer | 18 | 6 |"));
    free(out), free(err);

    // another reward.source comes first; the scores no longer need to match
    snprintf(cmd, sizeof cmd, GEMC " rescore %s reward.source=majority score.lambda_fork=0", run);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    const char *m = strstr(out, "| majority * |"), *g = strstr(out, "| gem |");
    CU_ASSERT(m && g && m < g);
    CU_ASSERT(contains(out, "score.lambda_fork=0 "));
    free(out), free(err);

    // --json: the same as one object
    snprintf(cmd, sizeof cmd, GEMC " rescore --json %s score.top_m=5 reward.entropy_span=0.5", run);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT(out[0] == '{');
    CU_ASSERT(contains(out, "\"candidates\": 18"));
    CU_ASSERT(contains(out, "\"score.top_m\": 5,"));
    CU_ASSERT(contains(out, "\"reward.entropy_span\": 0.5,"));
    CU_ASSERT(contains(out, "{\"source\": \"gem\", \"configured\": true"));
    CU_ASSERT(contains(out, "\"auroc\": "));
    CU_ASSERT(contains(out, "\"labels\": \"shards\""));
    free(out), free(err);

    // --prompts without answers: no labels, the values of each source instead
    char *noans = path_join(run, "noans.jsonl");
    StrBuf lines = {0};
    for (int i = 0; i < 8; i++) strbuf_puts(&lines, "{\"prompt\": \"1 + 1?\"}\n");
    test_write_file(noans, lines.p, lines.len);
    free(lines.p);
    snprintf(cmd, sizeof cmd, GEMC " rescore %s --prompts %s", run, noans);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT(contains(out, "labels: none"));
    CU_ASSERT(contains(out, "| source | candidates | mean | std |"));
    CU_ASSERT(!contains(out, "| answer |"));
    free(out), free(err);
    // --prompts with the run's own prompts: the shards' labels again
    snprintf(cmd, sizeof cmd, GEMC " rescore %s --prompts %s/prompts.jsonl", run, test_e2e_root());
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT(contains(out, "| answer | 18 | 6 |"));
    CU_ASSERT(contains(out, "(18 candidates labelled)"));
    free(out), free(err);
    free(noans);
}

static void test_inspect_shows_new_fields(void) {
    const char *run = setup_run();
    char cmd[4096], *out, *err;
    snprintf(cmd, sizeof cmd, GEMC " inspect %s/shards/step_000001.gen_0.h5", run);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT(contains(out, "reward_source   gem\n"));
    CU_ASSERT(contains(out, " value "));
    CU_ASSERT(contains(out, " correct "));
    free(out), free(err);
}

static void test_rescore_errors(void) {
    const char *run = setup_run(), *root = test_e2e_root();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, GEMC " rescore %s score.lamda_fork=0", run);
    test_expect_cli_error(cmd, "score.lamda_fork", "score.lambda_fork");
    snprintf(cmd, sizeof cmd, GEMC " rescore %s score.entropy_source=sampling", run);
    test_expect_cli_error(cmd, "score.entropy_source=sampling", "HINT");
    // a run directory without shards (sft writes none), and none at all
    snprintf(cmd, sizeof cmd, GEMC " rescore %s/sft", root);
    test_expect_cli_error(cmd, "sft/shards: cannot open the shard folder", "HINT");
    snprintf(cmd, sizeof cmd, GEMC " rescore %s/nowhere", root);
    test_expect_cli_error(cmd, "nowhere/config.yaml: no such file", "HINT");
    test_expect_cli_error(GEMC " rescore score.top_m=5", "missing the run directory", "HINT");
    test_expect_cli_error(GEMC " rescore", "missing the run directory", NULL);
    // --prompts with fewer lines than the prompt indices of the shards
    char *few = path_join(run, "few.jsonl");
    const char *one = "{\"prompt\": \"1 + 2?\", \"answer\": 3}\n";
    test_write_file(few, one, strlen(one));
    snprintf(cmd, sizeof cmd, GEMC " rescore %s --prompts %s", run, few);
    test_expect_cli_error(cmd, "few.jsonl: group", "but the file holds 1 prompts");
    snprintf(cmd, sizeof cmd, GEMC " rescore %s --prompts %s/missing.jsonl", run, run);
    test_expect_cli_error(cmd, "missing.jsonl", NULL);
    free(few);
    char *out, *err;
    CU_ASSERT_EQUAL(test_run(GEMC " rescore --help", &out, &err), 0);
    CU_ASSERT(contains(out, "--prompts"));
    CU_ASSERT(contains(out, "KEY=VALUE"));
    free(out), free(err);
}

void register_rescore_tests(void) {
    static const TestCase tests[] = {
        {"within-group separation: AUROC, top/mean/bottom, ties", test_group_separation},
        {"rescore reproduces the run's S bit for bit, and rescores",
         test_rescore_reproduces_the_run},
        {"inspect shows reward source, value and correct", test_inspect_shows_new_fields},
        {"rescore errors: one line, exit 1", test_rescore_errors},
        {NULL, NULL},
    };
    add_suite("rescore", tests);
}
