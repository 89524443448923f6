#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "base/common.h"
#include "model/model.h"
#include "base/rng.h"
#include "tests.h"
#include "text/tokenizer.h"

void add_suite(const char *name, const TestCase *tests) {
    CU_pSuite s = CU_add_suite(name, NULL, NULL);
    if (!s) {
        fprintf(stderr, "CUnit: cannot add suite %s\n", name);
        exit(1);
    }
    for (const TestCase *t = tests; t->name; t++) {
        if (!CU_add_test(s, t->name, t->fn)) {
            fprintf(stderr, "CUnit: cannot add test %s\n", t->name);
            exit(1);
        }
    }
}

static char **g_tmpdirs;
static int g_ntmpdirs;

static void remove_tmpdirs(void) {
    if (getenv("GEMC_KEEP_TEST_FILES")) return;
    for (int i = 0; i < g_ntmpdirs; i++) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdirs[i]);
        if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_tmpdirs[i]);
        free(g_tmpdirs[i]);
    }
    free(g_tmpdirs);
}

char *test_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *tmpl = path_join(base, "gemc-test-XXXXXX");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        exit(1);
    }
    if (g_ntmpdirs == 0) atexit(remove_tmpdirs);
    g_tmpdirs = realloc(g_tmpdirs, sizeof(char *) * (g_ntmpdirs + 1));
    g_tmpdirs[g_ntmpdirs++] = strdup(tmpl);
    return tmpl;
}

void test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

int test_count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

int test_run(const char *cmd, char **out, char **err) {
    char *dir = test_tmpdir();
    char *out_path = path_join(dir, "stdout"), *err_path = path_join(dir, "stderr");
    size_t n = strlen(cmd) + strlen(out_path) + strlen(err_path) + 32;
    char *full = mallocCheck(n);
    snprintf(full, n, "(%s) >'%s' 2>'%s'", cmd, out_path, err_path);
    int status = system(full);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (out) *out = read_text_file(out_path, NULL);
    if (err) *err = read_text_file(err_path, NULL);
    free(full);
    free(out_path);
    free(err_path);
    free(dir);
    return rc;
}

void test_tiny_config(ModelConfig *cfg, ModelType type) {
    memset(cfg, 0, sizeof *cfg);
    cfg->type = type;
    const char *names[] = {"llama", "qwen2", "mistral"};
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", names[type]);
    cfg->vocab_size = 37;
    cfg->hidden_size = 16;
    cfg->intermediate_size = 24;
    cfg->num_layers = 2;
    cfg->num_heads = 4;
    cfg->num_kv_heads = 2;
    cfg->head_dim = 4;
    cfg->max_position_embeddings = 64;
    cfg->rms_norm_eps = 1e-5f;
    cfg->initializer_range = 0.3f; // large enough that every path carries signal in a grad check
    cfg->rope_theta = 10000.0;
    cfg->rope_type = ROPE_DEFAULT;
    cfg->rope_factor = 1.0;
    cfg->bos_token_id = 1;
    cfg->eos_token_ids[0] = 2;
    cfg->num_eos = 1;
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "float32");
    switch (type) {
    case MODEL_QWEN2:
        cfg->qkv_bias = 1;
        cfg->tie_word_embeddings = 1;
        cfg->rope_theta = 1000000.0;
        break;
    case MODEL_LLAMA:
        cfg->qkv_bias = 1;
        cfg->o_bias = 1;
        cfg->rope_type = ROPE_LLAMA3;
        cfg->rope_theta = 500000.0;
        cfg->rope_factor = 8.0;
        cfg->rope_low_freq_factor = 1.0;
        cfg->rope_high_freq_factor = 4.0;
        cfg->rope_original_max_position_embeddings = 8;
        break;
    case MODEL_MISTRAL:
        cfg->sliding_window = 3;
        break;
    }
}

void test_random_model(Model *m, const ModelConfig *cfg, uint64_t seed) {
    model_init(m, cfg);
    model_init_random(m, seed);
    Rng rng;
    rng_seed(&rng, seed ^ 0x5eed);
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &m->layout.p[k];
        if (s->ndim != 1) continue;
        const int is_norm = k == P_LN1 || k == P_LN2 || k == P_LNF;
        for (size_t i = 0; i < s->size; i++)
            m->params[s->offset + i] = (is_norm ? 1.0f : 0.0f) + 0.2f * rng_normal(&rng);
    }
}

Tokenizer *test_byte_tokenizer(void) {
    char *dir = test_tmpdir();
    Tokenizer *tok = NULL;
    if (tokenizer_write_bytelevel(dir, 512) == 0) tok = tokenizer_load(dir);
    if (!tok) fprintf(stderr, "\n  byte-level tokenizer: %s\n", gemc_error());
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    free(dir);
    return tok;
}

void test_expect_cli_error(const char *cmd, const char *needle, const char *needle2) {
    char *out, *err;
    int rc = test_run(cmd, &out, &err);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT(strncmp(err, "gemc: error: ", 13) == 0);
    size_t len = strlen(err);
    CU_ASSERT(len > 0 && err[len - 1] == '\n' && strchr(err, '\n') == err + len - 1);
    int found = strstr(err, needle) && (!needle2 || strstr(err, needle2));
    CU_ASSERT(found);
    if (rc != 1 || !found)
        fprintf(stderr, "\n  command: %s\n  status %d, stderr: %s", cmd, rc, err);
    free(out);
    free(err);
}

// 1 when `name` is one of the words of `list` (separated by spaces or commas).
static int in_list(const char *list, const char *name) {
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        p += strspn(p, " ,");
        const size_t len = strcspn(p, " ,");
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len;
    }
    return 0;
}

int test_run_suites(int argc, char **argv) {
    CU_basic_set_mode(CU_BRM_VERBOSE);
    // GEMC_TEST_SKIP="tp,pipeline": every suite but those (make test-valgrind)
    const char *skip = getenv("GEMC_TEST_SKIP");
    if (skip && *skip) {
        CU_set_fail_on_inactive(CU_FALSE);
        for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext)
            if (in_list(skip, s->pName)) {
                CU_set_suite_active(s, CU_FALSE);
                printf("suite %s skipped (GEMC_TEST_SKIP)\n", s->pName);
            }
    }
    if (argc > 1) {
        // suites by name, or tests by SUITE:PREFIX (those whose name starts with PREFIX):
        // build/test_gemc gemm "stages:micro-batches". Everything else is made inactive and the
        // registry runs once, so that one summary counts every failure.
        CU_set_fail_on_inactive(CU_FALSE);
        for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext) {
            CU_set_suite_active(s, CU_FALSE);
            for (CU_pTest t = s->pTest; t; t = t->pNext) CU_set_test_active(t, CU_FALSE);
        }
        for (int i = 1; i < argc; i++) {
            const char *colon = strchr(argv[i], ':');
            const int n = colon ? (int)(colon - argv[i]) : (int)strlen(argv[i]);
            CU_pSuite s = CU_get_registry()->pSuite;
            while (s && ((int)strlen(s->pName) != n || strncmp(s->pName, argv[i], n) != 0))
                s = s->pNext;
            if (!s) {
                fprintf(stderr, "no suite named '%.*s'\n", n, argv[i]);
                return 1;
            }
            int found = 0;
            for (CU_pTest t = s->pTest; t; t = t->pNext)
                if (!colon || strncmp(t->pName, colon + 1, strlen(colon + 1)) == 0) {
                    CU_set_test_active(t, CU_TRUE);
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "no test of suite '%.*s' starts with '%s'\n", n, argv[i],
                        colon ? colon + 1 : "");
                return 1;
            }
            if (!skip || !*skip || !in_list(skip, s->pName)) CU_set_suite_active(s, CU_TRUE);
        }
    }
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
