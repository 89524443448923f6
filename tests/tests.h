// Test suites of the CUnit runner (test_main.c) and the helpers they share.
#ifndef GEMC_TESTS_H
#define GEMC_TESTS_H

#include <CUnit/CUnit.h>

#include "model/model.h"
#include "model/model_config.h"

void register_dtype_tests(void);          // test_dtype.c
void register_safetensors_tests(void);    // test_safetensors.c
void register_model_config_tests(void);   // test_model_config.c
void register_model_io_tests(void);       // test_model_io.c
void register_kernel_grad_tests(void);    // test_kernel_grad.c
void register_model_grad_tests(void);     // test_model_grad.c
void register_optimizer_tests(void);      // test_optimizer.c
void register_parity_tests(void);         // test_parity.c
void register_cli_tests(void);            // test_cli.c
void register_utf8_tests(void);           // test_tokenizer.c
void register_tokenizer_tests(void);      // test_tokenizer.c
void register_tokenizer_real_tests(void); // test_tokenizer_real.c
void register_chat_template_tests(void);  // test_chat_template.c
void register_data_tests(void);           // test_data.c
void register_task_tests(void);           // test_task.c
void register_config_tests(void);         // test_config.c
void register_sampler_tests(void);        // test_sampler.c
void register_gem_tests(void);            // test_gem.c
void register_reward_tests(void);         // test_reward.c
void register_stage_tests(void);
void register_shard_tests(void);
void register_tp_tests(void);
void register_pipeline_tests(void); // test_stages.c
void register_tb_tests(void);       // test_tb.c
void register_report_tests(void);   // test_report.c
void register_gemm_tests(void);     // test_gemm.c
void register_golden_tests(void);   // test_golden.c
void register_exp_tests(void);      // test_exp.c
void register_rescore_tests(void);  // test_rescore.c

// Open MPI's mpirun options that hand the ranks of a SAN=1 build their leak-check settings (the
// variables are ignored by an uninstrumented build). Open MPI dlclose()s its plugins (and PMIx
// its own) in MPI_Finalize, before LeakSanitizer looks, so what they allocated is reported from
// "<unknown module>"; and those libraries are built without frame pointers, so ASan's fast
// unwinder stops right there. The slow unwinder (fast_unwind_on_malloc=0) walks on into the
// libraries that stay loaded (libmpi, libopen-pal, ...), which tests/lsan_mpi.supp names.
// Open MPI 5's mca_base_component_disable_dlclose would keep the plugins; 4.1 has no such
// parameter and ignores it.
#define TEST_MPI_SAN_X                                                                             \
    "--mca mca_base_component_disable_dlclose 1 "                                                  \
    "-x LSAN_OPTIONS=suppressions=tests/lsan_mpi.supp:print_suppressions=0 "                       \
    "-x ASAN_OPTIONS=\"$ASAN_OPTIONS:fast_unwind_on_malloc=0\""

// Runs the registered suites (or those argv[1..] name; SUITE:PREFIX names the tests of SUITE
// whose name starts with PREFIX) verbosely and cleans the registry up;
// the exit status of a test binary: 1 when a test failed or none ran. GEMC_TEST_SKIP names
// suites to leave out (spaces or commas between the names).
int test_run_suites(int argc, char **argv);

// Adds a suite with the given tests; aborts the run when CUnit cannot.
typedef struct {
    const char *name;
    CU_TestFunc fn;
} TestCase;
void add_suite(const char *name, const TestCase *tests);

// A fresh empty directory under $TMPDIR (or /tmp), removed at exit. Never NULL.
char *test_tmpdir(void);
// Writes bytes to a file (not atomically: tests build broken inputs on purpose).
void test_write_file(const char *path, const void *data, size_t n);
// Number of entries in a directory other than "." and "..".
int test_count_dir_entries(const char *dir);
// Runs `sh -c cmd`, capturing stdout and stderr (malloc'd, NUL-terminated); returns the exit
// status (or 128 + signal).
int test_run(const char *cmd, char **out, char **err);
// Runs a gemc command line and checks the failure contract: status 1, nothing on stdout,
// exactly one line on stderr that starts with "gemc: error: " and contains needle (and needle2
// unless NULL).
void test_expect_cli_error(const char *cmd, const char *needle, const char *needle2);
// test_run, printing the command, status and stderr when it fails; returns the status.
int test_run_ok(const char *cmd);
// Lines of a file that contain needle (every line when NULL); -1 when it cannot be read.
int test_count_lines(const char *path, const char *needle);
// 1 when both files exist and hold the same bytes.
int test_files_equal(const char *a, const char *b);
// The end-to-end fixture of the stage tests (tests/test_stages.c): a tiny byte-level model
// trained by a short sft (ROOT/sft/final), ROOT/prompts.jsonl, ROOT/pairs.jsonl and
// ROOT/cfg.yaml naming them. Built once per test run.
const char *test_e2e_root(void);

// A tiny config of each family for numeric tests: V=37, C=16, I=24, L=2, Hq=4, Hkv=2, D=4,
// qwen2 with q/k/v biases and tied embeddings, llama with llama3 rope scaling and o/qkv bias,
// mistral with a sliding window of 3.
void test_tiny_config(ModelConfig *cfg, ModelType type);

// A random model of the family in which every parameter matters: model_init_random, then the
// norms and biases randomized too (transformers' init makes them 1 and 0).
void test_random_model(Model *m, const ModelConfig *cfg, uint64_t seed);

// The embedded tiny model's byte-level tokenizer (tokenizer_write_bytelevel), loaded from a
// fresh directory: ASCII text encodes to its bytes, 256..259 are <|begin_of_text|>,
// <|end_of_text|>, <|im_start|> and <|im_end|>.
#include "text/tokenizer.h"
Tokenizer *test_byte_tokenizer(void);

#define ASSERT_CLOSE(a, b, tol) CU_ASSERT(fabs((double)(a) - (double)(b)) <= (tol))

#endif
