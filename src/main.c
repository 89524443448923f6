// gemc: one binary, one subcommand per stage. `gemc --help` lists them.
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "model/cpu/cpu_env.h"
#include "base/launch.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Subcommand;

static const Subcommand commands[] = {
    {"sft", cmd_sft, "supervised fine-tuning on the chosen responses of preference pairs"},
    {"train", cmd_train, "GEM: sample, score by entropy, filter, SEGA update (label-free)"},
    {"dpo", cmd_dpo, "the DPO baseline, on given pairs or on entropy-ranked pairs"},
    {"eval", cmd_eval, "task accuracy and preference accuracy of one or more models"},
    {"generate", cmd_generate, "sample, score and rank candidates, written as JSONL"},
    {"score", cmd_score, "per-position log-probs and entropies of a token sequence"},
    {"init", cmd_init, "write a randomly initialised model from a config.json"},
    {"convert", cmd_convert, "re-save a model folder in another dtype"},
    {"overfit", cmd_overfit, "train a model on one sequence (checks the training path)"},
    {"tokenize", cmd_tokenize, "text -> token ids with a Hugging Face tokenizer.json"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"check-data", cmd_check_data, "check a JSONL file against a model's tokenizer and context"},
    {"inspect", cmd_inspect, "print an HDF5 shard: provenance, prompts, ranked candidates"},
    {"rescore", cmd_rescore, "rank a train run's shards again under other scores or rewards"},
    {"report", cmd_report, "summary of a run directory: steps, time per phase, metrics, evals"},
    {"plot", cmd_plot, "draw the curves of one or more runs on one sheet (PNG or SVG)"},
    {"env", cmd_env, "what runs here: build target, CPU, GEMM kernels, BLAS, threads"},
};
#define NUM_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void print_usage(FILE *out) {
    fprintf(out,
            "gemc %s: entropy-guided preference alignment (GEM) for Llama-family models\n\n"
            "usage: gemc COMMAND [options]\n\ncommands:\n",
            GEMC_VERSION);
    for (int i = 0; i < NUM_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'gemc COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
#if defined(__x86_64__) && defined(__AVX2__)
    // built for x86-64-v3 (the Makefile's default): say so, rather than die of SIGILL later
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        gemc_fatal("this gemc is built for x86-64-v3 (AVX2 and FMA), which this CPU lacks "
                   "(HINT: rebuild on this machine with 'make clean && make NATIVE=1')");
#endif
    // past a file-size limit (ulimit -f, a quota) a write then fails with EFBIG and gemc stops
    // with the file and the cause, as on a full disk, instead of dying of SIGXFSZ mid-write
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        print_usage(stderr);
        return 1;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        CpuEnv e;
        cpu_env_get(&e);
        cpu_env_print(&e, stdout);
        return 0;
    }
    for (int i = 0; i < NUM_COMMANDS; i++) {
        if (strcmp(name, commands[i].name) != 0) continue;
        int world = launcher_world_size();
        // `gemc train` is the one command that runs as a pipeline of ranks
        // (src/pipeline/pipeline.h)
        if (world > 1 && strcmp(name, "train") != 0)
            gemc_fatal("gemc %s runs on one process, but was started as one of %d ranks "
                       "(HINT: run it without mpirun/srun)",
                       name, world);
        return commands[i].run(argc - 1, argv + 1);
    }
    const char *names[NUM_COMMANDS];
    for (int i = 0; i < NUM_COMMANDS; i++) names[i] = commands[i].name;
    const char *near = closest_name(name, names, NUM_COMMANDS);
    if (near) gemc_fatal("unknown command '%s' (did you mean '%s'?)", name, near);
    gemc_fatal("unknown command '%s' (HINT: 'gemc --help' lists the commands)", name);
}
