// gemc sft|train|dpo|eval|generate CONFIG [key=value ...]: the stages, configured by a YAML file
// whose keys can be overridden on the command line (src/config/config.h).
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"
#include "base/common.h"
#include "config/config.h"
#include "base/launch.h"
#include "pipeline/pipeline.h"
#include "stages/stage.h"

typedef struct {
    const char *name;
    int (*run)(const GemConfig *c);
    const char *what;
    const char *example;
} StageCommand;

static const StageCommand stages[] = {
    {"sft", stage_sft,
     "Supervised fine-tuning: cross-entropy on the chosen responses of preference pairs\n"
     "(sft.data), the prompt masked out. Writes sft.dir/final.",
     "gemc sft configs/demo.yaml sft.steps=50"},
    {"train", stage_train,
     "GEM, label-free: for batch_size prompts a step, sample sampling.k candidates, score\n"
     "them by their own token entropies (Eq. 1), filter and rank each group, and take one\n"
     "SEGA step (Eq. 2). Never reads chosen, rejected or answer. Writes train.dir/final.",
     "gemc train configs/demo.yaml sampling.k=8 score.top_m=0.2"},
    {"dpo", stage_dpo,
     "The DPO baseline against a frozen reference (the starting model, or model.ref), on the\n"
     "pairs of dpo.data, or (dpo.pairs=entropy) on the (best, worst) pairs of the entropy\n"
     "ranking of candidates sampled from dpo.data's prompts. Writes dpo.dir/final.",
     "gemc dpo configs/demo.yaml dpo.beta=0.2"},
    {"eval", stage_eval,
     "Evaluates each model of eval.models: preference accuracy on eval.pairs (implicit reward\n"
     "beta * log-prob) and task accuracy on eval.prompts (greedy or majority-of-k answers\n"
     "after score.answer_marker), with 95% intervals. Writes results.json and results.md.",
     "gemc eval configs/demo.yaml eval.models=[runs/demo/gem/final]"},
    {"generate", stage_generate,
     "Samples sampling.k candidates for each prompt of generate.prompts, scores and ranks\n"
     "them as train does, and writes one JSON line per candidate (text, Eq. 1 terms, rank,\n"
     "advantage, per-token log-probs and entropies) to generate.out.",
     "gemc generate configs/demo.yaml generate.model=runs/demo/sft/final "
     "generate.out=cands.jsonl"},
};

static void print_help(const StageCommand *s, FILE *f) {
    fprintf(f,
            "usage: gemc %s CONFIG.yaml [key=value ...]\n\n%s\n\n"
            "Any key below can be set in the YAML file (section: {key: value}) or overridden\n"
            "as section.key=value. The resolved configuration is saved as config.yaml in the\n"
            "run directory.\n\nexample:\n  %s\n\n",
            s->name, s->what, s->example);
    config_print_help(s->name, f);
}

static int run_stage(const char *name, int argc, char **argv) {
    const StageCommand *s = NULL;
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
        if (!strcmp(stages[i].name, name)) s = &stages[i];
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_help(s, stdout);
            return 0;
        }
    if (argc < 2 || argv[1][0] == '-' || strchr(argv[1], '=')) {
        if (argc >= 2 && argv[1][0] == '-')
            gemc_set_error("unknown option '%s' (HINT: gemc %s CONFIG.yaml [key=value ...]; "
                           "'gemc %s --help' lists the keys)",
                           argv[1], name, name);
        else
            gemc_set_error("missing the config file (HINT: gemc %s CONFIG.yaml [key=value ...], "
                           "e.g. gemc %s configs/demo.yaml)",
                           name, name);
        return cmd_fail();
    }
    GemConfig c;
    config_defaults(&c);
    int rc = config_load_yaml(&c, argv[1]);
    for (int i = 2; i < argc && rc == 0; i++) rc = config_override(&c, argv[i]);
    if (rc == 0) rc = config_check(&c, name);
    if (rc == 0 && s->run != stage_eval && s->run != stage_generate)
        rc = stage_eval_check_files(&c);
    if (rc == 0 && s->run == stage_train && launcher_world_size() > 1) {
        // under mpirun/srun: the distributed pipeline; alone: the single-process path
        rc = pipeline_check_launch(&c, launcher_world_size());
        if (rc == 0) rc = pipeline_train(&c);
    } else if (rc == 0) {
        rc = s->run(&c);
    }
    config_free(&c);
    return rc ? cmd_fail() : 0;
}

int cmd_sft(int argc, char **argv) {
    return run_stage("sft", argc, argv);
}
int cmd_train(int argc, char **argv) {
    return run_stage("train", argc, argv);
}
int cmd_dpo(int argc, char **argv) {
    return run_stage("dpo", argc, argv);
}
int cmd_eval(int argc, char **argv) {
    return run_stage("eval", argc, argv);
}
int cmd_generate(int argc, char **argv) {
    return run_stage("generate", argc, argv);
}
